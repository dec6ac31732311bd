//! Event log retention, off the streaming loop.
//!
//! One trim steps over up to about a million logged entries, raises the log's
//! floor past the expired ones, syncs it and drops the files below it
//! (`Store::trim_event_log`). Once a long drain has pushed the log past its WAL
//! span (`event_log_max_bytes`), every trim has that much to read until the log
//! is back inside it; when trims still deleted entry by entry, one took
//! 150–280 ms, and run on the streaming loop it held every transaction
//! committed meanwhile back by as much. It runs on a blocking thread instead,
//! at most one at a time; the loop only starts it and reads how the last one
//! went.
//!
//! ```text
//!  streaming loop ── every slot check ──▶ trim running? ── yes ─▶ nothing
//!                                              │ no
//!                                              ▼
//!                   report the last trim, start the next (blocking thread)
//! ```
//!
//! A trim only drops transactions older than what the engine appends, so it
//! never touches what the loop writes meanwhile.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::change::Timestamp;
use crate::config::Settings;
use crate::lsn::Lsn;
use crate::store::{Store, StoreError};

/// What one trim did: entries deleted and how long it took, or its error.
type Trimmed = Result<(u64, f64), StoreError>;

/// The event log trim in flight, if any. Outlives a replication session, so a
/// reconnect never starts a second trim beside a running one.
#[derive(Default)]
pub(super) struct EventLogTrim {
    running: Option<JoinHandle<Trimmed>>,
}

impl EventLogTrim {
    /// Starts a trim of what lies beyond the retention window (by age, and by the
    /// WAL span behind `applied`), unless the last one is still running; reports
    /// the last one once it has finished.
    pub(super) async fn tick(&mut self, store: &Arc<Store>, settings: &Settings, applied: Lsn) {
        if self.running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.finish().await;
        let age = chrono::Duration::hours(settings.event_log_retention_hours as i64);
        let cutoff = Timestamp::from_chrono(chrono::Utc::now() - age);
        let max_wal_bytes = settings.event_log_max_bytes;
        let store = store.clone();
        self.running = Some(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let deleted = store.trim_event_log(cutoff, applied, max_wal_bytes)?;
            Ok((deleted, started.elapsed().as_secs_f64()))
        }));
    }

    /// Waits for the trim in flight, if any, and reports it.
    pub(super) async fn finish(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        match running.await {
            Ok(Ok((0, _))) => {}
            Ok(Ok((entries, seconds))) => {
                tracing::debug!(entries, seconds, "trimmed the event log")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "event log retention failed"),
            Err(e) => tracing::warn!(error = %e, "event log retention did not finish"),
        }
    }
}
