//! The health poller: lag, retained WAL, the slot's `wal_status` and the
//! reachability of the source and the sink, measured from outside the stream.
//!
//! The streaming loop can only report what it sees, and it sees nothing while it is
//! down, stuck or stopped by a definite error: exactly when the alerts matter. So a
//! task of its own, with connections of its own, asks the servers every
//! [`POLL_INTERVAL`]:
//!
//! ```text
//!  source: pg_current_wal_lsn(), pg_replication_slots row ──┐
//!  sink:   replytime_progress row of the slot ──────────────┼─▶ gauges, Health::set_poll
//!  own (time, current WAL LSN) samples ─────────────────────┘
//! ```
//!
//! What the sink reflects is `max(sink progress, slot confirmed_flush_lsn)`: the
//! slot is only told an LSN once everything below it is in the sink (or produced
//! nothing for it). Lag in bytes is the current WAL position minus that; lag in
//! seconds is the age of the oldest WAL the sink does not reflect, estimated from
//! the poller's own samples ([`WalSamples`]), because commit timestamps are off by
//! default (`track_commit_timestamp`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::config::Settings;
use crate::lsn::Lsn;
use crate::telemetry::health::{Health, PollView, SlotView};
use crate::telemetry::metrics::METRICS;

/// How often the servers are asked. Alerts should move within seconds of a fault.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// A connect or query that takes longer counts as unreachable.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// Samples kept at most (a day of continuous WAL growth at the poll interval).
const MAX_SAMPLES: usize = 50_000;

const SOURCE_QUERY: &str = "SELECT pg_current_wal_lsn()::text, s.slot_name IS NOT NULL, \
        s.wal_status, coalesce(s.active, false), s.confirmed_flush_lsn::text, \
        coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::int8 \
     FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots s ON s.slot_name = $1";
const SINK_QUERY: &str = "SELECT lsn::text FROM replytime_progress WHERE slot = $1";
/// Undefined table: the sink was not migrated yet.
const UNDEFINED_TABLE: &str = "42P01";

/// (time, WAL position) samples, kept while they can still date WAL the sink does
/// not reflect. Pure: no clock, no IO.
#[derive(Debug, Default)]
pub(crate) struct WalSamples {
    /// Unix seconds, and the WAL position first seen then; positions increase.
    samples: VecDeque<(f64, Lsn)>,
}

impl WalSamples {
    /// Records the WAL position seen at `time`; an unchanged position keeps the
    /// time it was first seen.
    pub(crate) fn record(&mut self, time: f64, lsn: Lsn) {
        if self.samples.back().is_some_and(|(_, last)| *last >= lsn) {
            return;
        }
        self.samples.push_back((time, lsn));
        if self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Forgets samples the sink reflects, but the last of them (the base of the
    /// interpolation below).
    pub(crate) fn prune(&mut self, reflected: Lsn) {
        while self
            .samples
            .get(1)
            .is_some_and(|(_, lsn)| *lsn <= reflected)
        {
            self.samples.pop_front();
        }
    }

    /// Seconds since the WAL first went past `reflected`: 0 when the sink reflects
    /// every sample. Between two samples the WAL is taken to grow evenly, so the
    /// estimate is within one poll interval; before the first sample it is a lower
    /// bound (the age of that sample).
    pub(crate) fn staleness(&self, now: f64, reflected: Lsn) -> f64 {
        let Some(first_after) = self.samples.iter().position(|(_, lsn)| *lsn > reflected) else {
            return 0.0;
        };
        let (t1, l1) = self.samples[first_after];
        let since = match first_after.checked_sub(1).map(|i| self.samples[i]) {
            None => t1,
            Some((t0, l0)) => {
                let span = l1.saturating_bytes_since(l0) as f64;
                let into = reflected.saturating_bytes_since(l0) as f64;
                t0 + (t1 - t0) * (into / span)
            }
        };
        (now - since).max(0.0)
    }
}

/// Polls until the process exits (the task is never stopped: it keeps reporting
/// after the pipeline stopped).
pub(crate) async fn run(settings: Settings, health: Arc<Health>) {
    let mut poller = Poller {
        settings,
        health,
        source: None,
        sink: None,
        samples: WalSamples::default(),
        reflected: Lsn::ZERO,
    };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        poller.poll().await;
    }
}

struct Poller {
    settings: Settings,
    health: Arc<Health>,
    source: Option<Client>,
    sink: Option<Client>,
    samples: WalSamples,
    /// The highest LSN the sink is known to reflect.
    reflected: Lsn,
}

/// One row of [`SOURCE_QUERY`].
struct SourceRow {
    current: Lsn,
    slot: Option<SlotView>,
    retained_bytes: i64,
}

impl Poller {
    async fn poll(&mut self) {
        let now = unix_now();
        let source = self.poll_source().await;
        let sink = self.poll_sink().await;
        METRICS.source_up.set(i64::from(source.is_ok()));
        METRICS.sink_up.set(i64::from(sink.is_ok()));
        if let Ok(Some(lsn)) = &sink {
            self.reflected = self.reflected.max(*lsn);
            METRICS.set_lsn("sink", *lsn);
        }
        if let Ok(row) = &source {
            let confirmed = row.slot.as_ref().and_then(|s| s.confirmed_flush_lsn);
            self.reflected = self.reflected.max(confirmed.unwrap_or(Lsn::ZERO));
            self.samples.record(now, row.current);
            METRICS
                .lag_bytes
                .set(row.current.saturating_bytes_since(self.reflected) as i64);
            METRICS.slot_retained_wal_bytes.set(row.retained_bytes);
            let status = row.slot.as_ref().and_then(|s| s.wal_status.as_deref());
            METRICS.set_wal_status(status.unwrap_or(""));
        }
        self.samples.prune(self.reflected);
        METRICS
            .lag_seconds
            .set(self.samples.staleness(now, self.reflected));
        self.health.set_poll(PollView {
            source: source.map(|row| row.slot),
            sink,
        });
    }

    async fn poll_source(&mut self) -> Result<SourceRow, String> {
        let url = self.settings.source_url().to_string();
        let client = connected(&mut self.source, &url).await?;
        let row = tokio::time::timeout(
            POLL_TIMEOUT,
            client.query_one(SOURCE_QUERY, &[&self.settings.slot]),
        )
        .await;
        let row = match row {
            Ok(Ok(row)) => row,
            failed => {
                self.source = None;
                return Err(query_failure(failed.map(|r| r.map(|_| ()))));
            }
        };
        let lsn = |text: Option<String>| text.and_then(|t| t.parse::<Lsn>().ok());
        let exists: bool = row.get(1);
        Ok(SourceRow {
            current: lsn(row.get(0)).unwrap_or(Lsn::ZERO),
            slot: exists.then(|| SlotView {
                wal_status: row.get(2),
                active: row.get(3),
                confirmed_flush_lsn: lsn(row.get(4)),
            }),
            retained_bytes: row.get(5),
        })
    }

    async fn poll_sink(&mut self) -> Result<Option<Lsn>, String> {
        let url = self.settings.sink_url().to_string();
        let client = connected(&mut self.sink, &url).await?;
        let row = tokio::time::timeout(
            POLL_TIMEOUT,
            client.query_opt(SINK_QUERY, &[&self.settings.slot]),
        )
        .await;
        match row {
            Ok(Ok(row)) => Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok())),
            Ok(Err(e)) if e.code().is_some_and(|c| c.code() == UNDEFINED_TABLE) => Ok(None),
            failed => {
                self.sink = None;
                Err(query_failure(failed.map(|r| r.map(|_| ()))))
            }
        }
    }
}

/// The open client in `slot`, connecting first when there is none or it closed.
async fn connected<'c>(slot: &'c mut Option<Client>, url: &str) -> Result<&'c Client, String> {
    if slot.as_ref().is_some_and(Client::is_closed) {
        *slot = None;
    }
    if slot.is_none() {
        let client = tokio::time::timeout(
            POLL_TIMEOUT,
            crate::pgconn::connect(url, "replytime-health"),
        )
        .await
        .map_err(|_| format!("no connection within {POLL_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        *slot = Some(client);
    }
    Ok(slot.as_ref().expect("connected above"))
}

fn query_failure(
    failed: Result<Result<(), tokio_postgres::Error>, tokio::time::error::Elapsed>,
) -> String {
    match failed {
        Err(_) => format!("no answer within {POLL_TIMEOUT:?}"),
        Ok(Err(e)) => crate::pgconn::error_chain(&e),
        Ok(Ok(())) => "unexpected answer".into(),
    }
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(points: &[(f64, u64)]) -> WalSamples {
        let mut s = WalSamples::default();
        for (t, lsn) in points {
            s.record(*t, Lsn(*lsn));
        }
        s
    }

    #[test]
    fn caught_up_is_zero() {
        let s = samples(&[(10.0, 100), (12.0, 200)]);
        assert_eq!(s.staleness(20.0, Lsn(200)), 0.0);
        assert_eq!(s.staleness(20.0, Lsn(500)), 0.0);
        assert_eq!(WalSamples::default().staleness(20.0, Lsn(0)), 0.0);
    }

    #[test]
    fn age_of_the_first_unreflected_wal_is_interpolated() {
        // WAL went from 100 to 300 between t=10 and t=12; the sink reflects 200,
        // so WAL past it was written at about t=11.
        let s = samples(&[(10.0, 100), (12.0, 300), (14.0, 400)]);
        assert!((s.staleness(20.0, Lsn(200)) - 9.0).abs() < 1e-9);
        // Nothing reflected past the first sample: at least its age.
        assert!((s.staleness(20.0, Lsn(50)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn staleness_grows_while_the_sink_stands_still() {
        let mut s = samples(&[(0.0, 100), (2.0, 200)]);
        let first = s.staleness(4.0, Lsn(100));
        s.record(4.0, Lsn(300));
        let later = s.staleness(60.0, Lsn(100));
        assert!(
            later > first && (later - 60.0).abs() < 1e-9,
            "{first} {later}"
        );
    }

    #[test]
    fn an_unchanged_position_keeps_its_first_time_and_pruning_keeps_the_base() {
        let mut s = samples(&[(0.0, 100), (2.0, 100), (4.0, 200), (6.0, 300)]);
        assert_eq!(s.samples.len(), 3);
        s.prune(Lsn(250));
        assert_eq!(s.samples.front(), Some(&(4.0, Lsn(200))));
        assert!((s.staleness(10.0, Lsn(250)) - 5.0).abs() < 1e-9);
    }
}
