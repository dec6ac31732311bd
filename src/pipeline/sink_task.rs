//! The sink task: moves outbox entries into the sink, oldest first, one Postgres
//! transaction per batch together with the progress row, then trims the outbox.
//! A sink that is down is retried with backoff; nothing is confirmed meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Context;
use super::policy::{Backoff, Next, classify};
use super::shutdown::CancellationToken;
use crate::fault;
use crate::lsn::Lsn;
use crate::sink::{Sink, SinkError};
use crate::store::Store;
use crate::telemetry::metrics::METRICS;

/// What the sink task tells the rest of the daemon. The fields are private: the
/// sink's LSN, one input of the confirm rule (`Context::confirmable`), only moves
/// forward, and only the sink task moves it.
#[derive(Default)]
pub struct SinkShared {
    /// End LSN of the last complete source transaction committed to the sink.
    done_lsn: AtomicU64,
    healthy: AtomicBool,
    wake: Notify,
    /// While set, the sink task moves nothing. The daemon starts its sink task
    /// paused: the outbox may hold what an interrupted initial load derived at an
    /// older snapshot, which that load clears first.
    paused: AtomicBool,
}

impl SinkShared {
    /// A sink task that starts paused (see `paused`).
    pub fn paused() -> Self {
        let shared = SinkShared::default();
        shared.paused.store(true, Ordering::SeqCst);
        shared
    }

    /// Tells the sink task the outbox holds something new.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether the sink's last attempt succeeded.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// The sink task's record of a committed batch: moves the sink's LSN forward
    /// (never back).
    fn record_done(&self, lsn: Lsn) {
        self.done_lsn.fetch_max(lsn.0, Ordering::SeqCst);
    }

    /// Lets the sink task move the outbox.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub(crate) fn done_lsn(&self) -> Lsn {
        Lsn(self.done_lsn.load(Ordering::SeqCst))
    }
}

pub(super) struct SinkTask {
    /// The store, the settings (sink, shard, slot, batch size) and what the task
    /// shares with the rest of the daemon (`ctx.sink`).
    pub ctx: Arc<Context>,
    /// Cancelled once the stream has closed: drain what is left, then stop. Not
    /// the daemon's shutdown token itself: the stream's close commits what it
    /// staged after the signal, and the sink task must still deliver that.
    pub stop: CancellationToken,
}

impl SinkTask {
    /// Runs until stopped (after draining the outbox) or a fatal sink error.
    pub(super) async fn run(self, mut sink: Option<Sink>) -> Result<(), SinkError> {
        let mut backoff = Backoff::SINK;
        loop {
            if self.ctx.sink.is_paused() {
                if self.stop.is_cancelled() {
                    return Ok(());
                }
                self.idle().await;
                continue;
            }
            let sink_ref = match sink.as_mut() {
                Some(s) => s,
                None => match Sink::for_settings(&self.ctx.settings).await {
                    Ok(s) => sink.insert(s),
                    Err(e) if classify(&e) == Next::Retry => {
                        if !self.unhealthy(&e, &mut backoff).await {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            match self.flush_once(sink_ref).await {
                Ok(true) => backoff.reset(),
                Ok(false) => {
                    if self.stop.is_cancelled() {
                        return Ok(());
                    }
                    self.idle().await;
                }
                Err(e) if classify(&e) == Next::Retry => {
                    sink = None;
                    if !self.unhealthy(&e, &mut backoff).await {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Until woken, stopped, or 50 ms passed.
    async fn idle(&self) {
        tokio::select! {
            _ = self.ctx.sink.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Records the failure and waits before the retry; `false` when stopped
    /// meanwhile (the outbox keeps what was not delivered).
    async fn unhealthy(&self, e: &SinkError, backoff: &mut Backoff) -> bool {
        self.ctx.sink.healthy.store(false, Ordering::SeqCst);
        METRICS.errors.with_label_values(&["sink"]).inc();
        tracing::warn!(error = %e, retry_in_ms = backoff.next_delay().as_millis() as u64, "sink unavailable, retrying");
        backoff.wait(&self.stop).await
    }

    /// Moves one batch; `Ok(false)` when the outbox was empty.
    async fn flush_once(&self, sink: &mut Sink) -> Result<bool, SinkError> {
        let settings = &self.ctx.settings;
        let moved = flush_batch(
            &self.ctx.store,
            sink,
            &settings.slot,
            settings.sink_batch_ops,
        )
        .await?;
        if let Some(Some(lsn)) = moved {
            self.ctx.sink.record_done(lsn);
            METRICS.set_lsn("sink", lsn);
        }
        self.ctx.sink.healthy.store(true, Ordering::SeqCst);
        Ok(moved.is_some())
    }
}

/// Moves the oldest outbox entries (up to `batch_ops` operations) into the sink in
/// one Postgres transaction with the progress row, then trims them from the outbox.
/// `None` when the outbox was empty; else the end LSN of the last complete source
/// transaction moved, if any.
pub(crate) async fn flush_batch(
    store: &Store,
    sink: &mut Sink,
    slot: &str,
    batch_ops: usize,
) -> Result<Option<Option<Lsn>>, SinkError> {
    let entries = store.read_outbox(batch_ops).map_err(SinkError::state)?;
    let Some((last_seq, _)) = entries.last() else {
        return Ok(None);
    };
    let last_seq = *last_seq;
    // The sink must never reflect state that RocksDB could lose.
    store.sync().map_err(SinkError::state)?;
    let progress = entries
        .iter()
        .filter(|(_, e)| e.complete)
        .map(|(_, e)| e.end_lsn)
        .max();
    let ops: Vec<_> = entries
        .into_iter()
        .flat_map(|(_, e)| e.ops.into_iter().map(move |op| (e.end_lsn, op)))
        .collect();
    let started = Instant::now();
    let stats = sink.write_batch(slot, &ops, progress).await?;
    METRICS
        .sink_batch_seconds
        .observe(started.elapsed().as_secs_f64());
    METRICS
        .sink_rows_written
        .with_label_values(&["upserted"])
        .inc_by(stats.upserted);
    METRICS
        .sink_rows_written
        .with_label_values(&["deleted"])
        .inc_by(stats.deleted);
    METRICS
        .sink_rows_written
        .with_label_values(&["unchanged"])
        .inc_by(stats.unchanged);
    fault::point(fault::AFTER_SINK_COMMIT);
    store
        .remove_outbox_through(last_seq)
        .map_err(SinkError::state)?;
    Ok(Some(progress))
}
