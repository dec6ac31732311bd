//! The sink task: moves outbox entries into the sink, oldest first, one Postgres
//! transaction per batch together with the progress row, then trims the outbox.
//! A sink that is down is retried with backoff; nothing is confirmed meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Context;
use super::policy::{Backoff, Next, classify};
use super::shutdown::CancellationToken;
use super::sink_batch::Batch;
use crate::change::Timestamp;
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
    /// The source server's clock as of its latest replication message (µs since
    /// the Unix epoch; 0 before the first): how far behind a batch is, measured
    /// against the same clock its commit times come from.
    source_clock: AtomicI64,
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

    /// Records the source server's clock as sent with a replication message.
    pub(crate) fn observe_source_clock(&self, at: Timestamp) {
        self.source_clock.fetch_max(at.0, Ordering::SeqCst);
    }

    /// The source server's clock as of its latest replication message, if any.
    fn source_clock(&self) -> Option<Timestamp> {
        let at = self.source_clock.load(Ordering::SeqCst);
        (at != 0).then_some(Timestamp(at))
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
        // The batch being read, kept between passes while it may grow.
        let mut pending = None;
        loop {
            if self.ctx.sink.is_paused() {
                // What a paused sink task read may be cleared meanwhile.
                pending = None;
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
            match self.pass(sink_ref, &mut pending).await {
                Ok(Pass::Wrote) => backoff.reset(),
                Ok(Pass::Waiting) => self.idle().await,
                Ok(Pass::Empty) => {
                    if self.stop.is_cancelled() {
                        return Ok(());
                    }
                    self.idle().await;
                }
                Err(e) if classify(&e) == Next::Retry => {
                    pending = None;
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

    /// Reads what the outbox gained into the pending batch (from its oldest
    /// entry when there is none), then writes the batch, unless it is not full
    /// and may wait for more ([`Batch::may_wait`]: only while the daemon is well
    /// behind the source and the outbox keeps growing); never while stopping.
    async fn pass(
        &self,
        sink: &mut Sink,
        pending_slot: &mut Option<Pending>,
    ) -> Result<Pass, SinkError> {
        let settings = &self.ctx.settings;
        let pending = pending_slot.get_or_insert_with(|| Pending {
            batch: Batch::default(),
            since: Instant::now(),
            grew_at: Instant::now(),
        });
        let read = pending
            .batch
            .read_more(&self.ctx.store, settings.sink_batch_ops)
            .map_err(SinkError::state)?;
        if read > 0 {
            pending.grew_at = Instant::now();
        }
        if pending.batch.is_empty() {
            *pending_slot = None;
            self.ctx.sink.healthy.store(true, Ordering::SeqCst);
            return Ok(Pass::Empty);
        }
        let stopping = self.stop.is_cancelled() || self.ctx.shutdown.is_cancelled();
        // The source's clock, not the daemon's: a batch's age is then measured
        // on the clock of its commit times, whatever the daemon's clock says.
        let now = self.ctx.sink.source_clock();
        let (waited, quiet) = (pending.since.elapsed(), pending.grew_at.elapsed());
        if !stopping
            && !pending.batch.is_full(settings.sink_batch_ops)
            && now.is_some_and(|now| pending.batch.may_wait(waited, quiet, now))
        {
            return Ok(Pass::Waiting);
        }
        let batch = pending_slot.take().expect("a batch was read").batch;
        let moved = write(&self.ctx.store, sink, &settings.slot, batch).await?;
        if let Some(Some(lsn)) = moved {
            self.ctx.sink.record_done(lsn);
            METRICS.set_lsn("sink", lsn);
        }
        self.ctx.sink.healthy.store(true, Ordering::SeqCst);
        Ok(Pass::Wrote)
    }
}

/// The batch the sink task is reading, kept between passes while it may grow.
struct Pending {
    batch: Batch,
    /// When its first entry was read.
    since: Instant,
    /// When the outbox last gave it something new.
    grew_at: Instant,
}

/// What one pass of the sink task did.
enum Pass {
    /// The outbox was empty.
    Empty,
    /// A batch was written.
    Wrote,
    /// A batch that is not full was kept to grow.
    Waiting,
}

/// Moves the oldest outbox entries into the sink in one Postgres transaction with
/// the progress row, then trims them from the outbox: up to `batch_ops` anchors,
/// each anchor's operations coalesced to the last (see [`Batch`]). `None` when the
/// outbox was empty; else the end LSN of the last complete source transaction
/// moved, if any.
pub(crate) async fn flush_batch(
    store: &Store,
    sink: &mut Sink,
    slot: &str,
    batch_ops: usize,
) -> Result<Option<Option<Lsn>>, SinkError> {
    let mut batch = Batch::default();
    batch
        .read_more(store, batch_ops)
        .map_err(SinkError::state)?;
    write(store, sink, slot, batch).await
}

/// Writes `batch` in one Postgres transaction with the progress row, then trims
/// the outbox through its last entry. `None` when the batch is empty.
async fn write(
    store: &Store,
    sink: &mut Sink,
    slot: &str,
    batch: Batch,
) -> Result<Option<Option<Lsn>>, SinkError> {
    let Some(last_seq) = batch.last_seq else {
        return Ok(None);
    };
    let oldest = batch.oldest_commit.map_or(0, |t| t.0);
    let age = |stage| METRICS.observe_delivery_age(stage, oldest);
    age("batch_started");
    // The sink must never reflect state that RocksDB could lose.
    let started = Instant::now();
    store.sync().map_err(SinkError::state)?;
    let synced = started.elapsed();
    METRICS.state_sync_seconds.observe(synced.as_secs_f64());
    age("state_synced");
    let progress = batch.progress;
    let ops_read = batch.ops_read();
    let ops = batch.into_ops();
    let started = Instant::now();
    let stats = sink.write_batch(slot, &ops, progress).await?;
    let written = started.elapsed();
    METRICS.sink_batch_seconds.observe(written.as_secs_f64());
    age("sink_committed");
    tracing::debug!(
        ops_read,
        ops = ops.len(),
        oldest_age_ms = (chrono::Utc::now().timestamp_micros() - oldest) as f64 / 1e3,
        sync_ms = synced.as_secs_f64() * 1e3,
        write_ms = written.as_secs_f64() * 1e3,
        "sink batch committed"
    );
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
    METRICS
        .sink_ops_coalesced
        .inc_by((ops_read - ops.len()) as u64);
    fault::point(fault::AFTER_SINK_COMMIT);
    store
        .remove_outbox_through(last_seq)
        .map_err(SinkError::state)?;
    Ok(Some(progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_aged_on_the_source_servers_clock_only() {
        let shared = SinkShared::default();
        assert_eq!(
            shared.source_clock(),
            None,
            "no message yet: no batch waits"
        );
        shared.observe_source_clock(Timestamp(5_000_000));
        // Messages may carry times out of order (a keepalive sent before a
        // data message that arrives after it): the clock never goes back.
        shared.observe_source_clock(Timestamp(3_000_000));
        assert_eq!(shared.source_clock(), Some(Timestamp(5_000_000)));
    }
}
