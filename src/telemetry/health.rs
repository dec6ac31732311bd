//! What `/healthz`, `/readyz` and `replytime_ready` say, and why.
//!
//! Readiness is judged in one place, [`Health::readiness`], from three inputs that do
//! not depend on each other:
//!
//! ```text
//!  streaming loop ──ready (streaming, sink healthy)──┐
//!  health poller ──source/sink reachable, slot row──┼──▶ readiness() ──▶ /readyz body
//!  run wrapper ──definite error that stopped it─────┘          └──────▶ replytime_ready
//! ```
//!
//! The poller (`crate::pipeline::poller`) keeps its own connections, so a stream that is down,
//! stuck or stopped still shows as not ready, with the reason.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use crate::lsn::Lsn;

/// Liveness and readiness as the daemon reports them.
#[derive(Default)]
pub struct Health {
    pub live: AtomicBool,
    /// Set by the streaming loop: a replication session is open and the sink is
    /// healthy.
    pub ready: AtomicBool,
    /// The daemon's shutdown token, cancelled by SIGTERM or SIGINT: `/readyz`
    /// says "shutting down" from then on.
    stopping: CancellationToken,
    /// The last health poll, once there was one.
    poll: Mutex<Option<PollView>>,
    /// The definite error that stopped the pipeline (the process stays up).
    fatal: Mutex<Option<Fatal>>,
}

/// What the health poller saw last.
#[derive(Clone, Debug)]
pub struct PollView {
    /// `Err` with the reason when the source could not be queried.
    pub source: Result<Option<SlotView>, String>,
    /// `Err` with the reason when the sink could not be queried; `Ok(None)` before
    /// the sink holds progress for the slot.
    pub sink: Result<Option<Lsn>, String>,
}

/// The slot's row in `pg_replication_slots` (`None` in [`PollView::source`] when
/// the slot does not exist).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlotView {
    pub wal_status: Option<String>,
    pub active: bool,
    pub confirmed_flush_lsn: Option<Lsn>,
}

/// A definite error that stopped the pipeline.
#[derive(Clone, Debug)]
pub struct Fatal {
    /// One of [`FATAL_KINDS`]: the `kind` label of `replytime_fatal_error`.
    pub kind: &'static str,
    pub message: String,
}

/// The `kind` label values of `replytime_fatal_error`, all present from the start.
pub(crate) const FATAL_KINDS: &[&str] = &[
    "slot", "failover", "config", "decode", "sink", "state", "other",
];

impl Health {
    /// Health of a daemon that stops when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Health {
        Health {
            stopping: shutdown,
            ..Health::default()
        }
    }

    /// Whether the daemon was told to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    pub fn set_poll(&self, view: PollView) {
        *self.poll.lock().expect("health lock") = Some(view);
    }

    pub fn poll(&self) -> Option<PollView> {
        self.poll.lock().expect("health lock").clone()
    }

    pub(crate) fn set_fatal(&self, fatal: Fatal) {
        *self.fatal.lock().expect("health lock") = Some(fatal);
    }

    pub fn fatal(&self) -> Option<Fatal> {
        self.fatal.lock().expect("health lock").clone()
    }

    /// `Ok` when ready; else every reason, most fundamental first.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if let Some(fatal) = self.fatal() {
            reasons.push(format!(
                "stopped by a definite error ({}): {}",
                fatal.kind, fatal.message
            ));
        }
        if self.is_stopping() {
            reasons.push("shutting down".into());
        }
        if let Some(poll) = self.poll() {
            match &poll.source {
                Err(e) => reasons.push(format!("source unreachable: {e}")),
                Ok(None) => reasons.push("the replication slot does not exist".into()),
                Ok(Some(slot)) if slot.wal_status.as_deref() == Some("lost") => reasons.push(
                    "the replication slot is invalidated (wal_status = lost): recover with \
                     `replytime teardown` then `replytime backfill`"
                        .into(),
                ),
                Ok(Some(_)) => {}
            }
            if let Err(e) = &poll.sink {
                reasons.push(format!("sink unreachable: {e}"));
            }
        }
        if reasons.is_empty() && !self.ready.load(Ordering::SeqCst) {
            reasons.push(
                "not streaming: starting, loading the tables, waiting for the slot, \
                 reconnecting, or the sink is failing"
                    .into(),
            );
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streaming() -> Health {
        let health = Health::default();
        health.ready.store(true, Ordering::SeqCst);
        health.set_poll(PollView {
            source: Ok(Some(SlotView {
                wal_status: Some("reserved".into()),
                active: true,
                confirmed_flush_lsn: Some(Lsn(100)),
            })),
            sink: Ok(Some(Lsn(100))),
        });
        health
    }

    #[test]
    fn ready_only_when_streaming_and_every_poll_is_healthy() {
        assert_eq!(streaming().readiness(), Ok(()));
        let starting = Health::default();
        let reasons = starting.readiness().unwrap_err();
        assert!(reasons[0].starts_with("not streaming"), "{reasons:?}");
    }

    #[test]
    fn the_poll_overrides_a_stream_that_still_says_ready() {
        let health = streaming();
        health.set_poll(PollView {
            source: Ok(Some(SlotView {
                wal_status: Some("lost".into()),
                ..SlotView::default()
            })),
            sink: Err("connection refused".into()),
        });
        let reasons = health.readiness().unwrap_err();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("wal_status = lost"));
        assert!(reasons[1].contains("sink unreachable: connection refused"));
        health.set_poll(PollView {
            source: Err("timed out".into()),
            sink: Ok(None),
        });
        assert_eq!(
            health.readiness().unwrap_err(),
            vec!["source unreachable: timed out".to_string()]
        );
    }

    #[test]
    fn a_shutdown_makes_it_unready() {
        let token = CancellationToken::new();
        let health = Health::new(token.clone());
        health.ready.store(true, Ordering::SeqCst);
        assert_eq!(health.readiness(), Ok(()));
        token.cancel();
        assert_eq!(
            health.readiness().unwrap_err(),
            vec!["shutting down".to_string()]
        );
    }

    #[test]
    fn a_definite_error_is_named_first() {
        let health = streaming();
        health.set_fatal(Fatal {
            kind: "slot",
            message: "slot lost".into(),
        });
        let reasons = health.readiness().unwrap_err();
        assert_eq!(
            reasons,
            vec!["stopped by a definite error (slot): slot lost".to_string()]
        );
    }
}
