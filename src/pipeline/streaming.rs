//! The streaming loop: one replication session at a time, reconnecting with backoff
//! from the durable position after a dropped connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgwire_replication::ReplicationEvent;

use super::policy::{Backoff, Next, classify};
use super::retention::EventLogTrim;
use super::shutdown;
use super::{Context, PipelineError};
use crate::change::{Change, Timestamp, TxnMeta};
use crate::engine::Engine;
use crate::fault;
use crate::lsn::Lsn;
use crate::source::SourceError;
use crate::source::admin;
use crate::source::decode::{Decoded, Decoder};
use crate::source::framing::Framing;
use crate::source::relay::{Received, Relay};
use crate::source::stream::{StreamOptions, start_stream};
use crate::store::{QuarantineRecord, meta};
use crate::telemetry::metrics::METRICS;

/// Prefix of replytime's heartbeat messages in the WAL.
pub(super) const HEARTBEAT_PREFIX: &str = "replytime.heartbeat";

/// Staged source transactions commit together once they hold this many row
/// changes, or once the oldest has waited this long, or as soon as the stream has
/// nothing more to read right away.
const GROUP_MAX_WAIT: Duration = Duration::from_millis(20);

/// A source transaction being received.
struct OpenTxn {
    commit_lsn: Lsn,
    /// Already applied (at-least-once redelivery): read and drop.
    skip: bool,
    /// Changes given to the engine so far (the next one's number).
    changes: u32,
}

/// Streams until `ctx.shutdown` is cancelled (then drains the outbox within the
/// shutdown budget, confirms what is durable and closes the session cleanly) or a
/// fatal error.
pub(super) async fn stream_forever(
    ctx: Arc<Context>,
    admin: tokio_postgres::Client,
    mut engine: Engine,
) -> Result<(), PipelineError> {
    let shutdown = ctx.shutdown.clone();
    let mut backoff = Backoff::STREAM;
    let mut admin = Some(admin);
    let mut retention = EventLogTrim::default();
    let result = loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        let started = Instant::now();
        let result = Session::open(&ctx, &mut engine, admin.take(), &mut retention).await;
        let err = match result {
            Ok(mut session) => match session.run().await {
                Ok(()) => break Ok(()),
                Err(e) => {
                    // A closed admin connection is replaced on the next attempt.
                    admin = session.admin.take().filter(|a| !a.is_closed());
                    e
                }
            },
            Err(e) => e,
        };
        // A slot invalidated or dropped under the session ends it with a server
        // error (or a terminated connection): name it as a start would.
        if let Some(slot_error) = slot_unusable(&ctx, &mut admin).await {
            break Err(slot_error);
        }
        if classify(&err) != Next::Retry {
            break Err(err);
        }
        if started.elapsed() > Duration::from_secs(60) {
            // The session worked for a while: this is a new incident.
            backoff.reset();
        }
        METRICS.errors.with_label_values(&["source"]).inc();
        ctx.health.ready.store(false, Ordering::SeqCst);
        tracing::warn!(error = %err, retry_in_ms = backoff.next_delay().as_millis() as u64, "replication connection lost, reconnecting");
        if !backoff.wait(&shutdown).await {
            break Ok(());
        }
    };
    // The state is closed after this returns: no trim may still be writing to it.
    retention.finish().await;
    result
}

struct Session<'e> {
    ctx: Arc<Context>,
    engine: &'e mut Engine,
    relay: Relay,
    /// Events taken from the relay and not handled yet.
    batch: Vec<Received>,
    admin: Option<tokio_postgres::Client>,
    decoder: Decoder,
    /// Begin … changes … Commit: anything else stops the pipeline.
    framing: Framing,
    txn: Option<OpenTxn>,
    applied: Lsn,
    confirmed: Lsn,
    /// Since when the sink has been unreachable with work pending.
    sink_down_since: Option<Instant>,
    /// When the oldest staged transaction was staged.
    staged_since: Option<Instant>,
    /// The event log trim, run beside the loop.
    retention: &'e mut EventLogTrim,
    /// Commit time of the oldest transaction not yet committed to the state.
    oldest_uncommitted: Option<Timestamp>,
}

/// How long the sink may be down with work pending before the replication stream
/// is closed until it is back. A stopping server's walsender waits for its client
/// to confirm the end of the WAL before it exits; replytime cannot confirm while
/// the sink (often the same server) refuses connections, so it lets go instead of
/// holding the shutdown up.
const SINK_DOWN_RELEASE: Duration = Duration::from_secs(5);

impl<'e> Session<'e> {
    async fn open(
        ctx: &Arc<Context>,
        engine: &'e mut Engine,
        admin: Option<tokio_postgres::Client>,
        retention: &'e mut EventLogTrim,
    ) -> Result<Session<'e>, PipelineError> {
        let admin = match admin {
            Some(a) => a,
            None => crate::pgconn::connect(ctx.settings.source_url(), "replytime-admin").await?,
        };
        let confirmed = ctx.confirmable()?;
        let applied = ctx.store.applied_lsn()?;
        let options = StreamOptions {
            slot: ctx.settings.slot.clone(),
            publication: ctx.settings.publication.clone(),
            start_lsn: applied,
            ack_lsn: confirmed,
            status_interval: ctx.settings.status_interval(),
            application_name: format!("replytime-{}", ctx.settings.slot),
        };
        // Transactions staged by a session that failed are read again from `applied`.
        engine.discard();
        let client = start_stream(&ctx.params, &options).await?;
        tracing::info!(slot = %options.slot, start = %applied, confirmed = %confirmed, "streaming");
        ctx.health.ready.store(true, Ordering::SeqCst);
        Ok(Session {
            ctx: ctx.clone(),
            engine,
            relay: Relay::spawn(client, confirmed),
            batch: Vec::new(),
            admin: Some(admin),
            decoder: Decoder::new(ctx.settings.tables.clone()),
            framing: Framing::default(),
            txn: None,
            applied,
            confirmed,
            sink_down_since: None,
            staged_since: None,
            retention,
            oldest_uncommitted: None,
        })
    }

    async fn run(&mut self) -> Result<(), PipelineError> {
        let stop = self.ctx.shutdown.clone();
        let mut status = tokio::time::interval(self.ctx.settings.status_interval());
        let heartbeat_every = Duration::from_millis(self.ctx.settings.heartbeat_interval_ms.max(1));
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        let mut slot_check = tokio::time::interval(Duration::from_secs(5));
        loop {
            // In this order: timers first (they are rarely ready and must not starve
            // under load), then the stream; the staged transactions commit when the
            // stream has nothing ready.
            tokio::select! {
                biased;
                () = stop.cancelled() => return self.close(shutdown::deadline()).await,
                _ = status.tick() => self.confirm()?,
                _ = heartbeat.tick(), if self.ctx.settings.heartbeat_interval_ms > 0 => self.heartbeat().await,
                _ = slot_check.tick() => self.check_slot().await?,
                () = self.relay.next_batch(&mut self.batch) => self.on_batch()?,
                () = std::future::ready(()), if self.staged_since.is_some() => self.commit_staged()?,
            }
        }
    }

    /// Graceful end, by `deadline`: drop the open transaction (it is re-sent on
    /// restart), let the sink drain the outbox, send the final confirmation (what is
    /// durable, never more) and close the stream. What the budget leaves undrained
    /// stays in the outbox and is confirmed after the next start.
    async fn close(&mut self, deadline: tokio::time::Instant) -> Result<(), PipelineError> {
        self.commit_staged()?;
        tracing::info!("shutting down: draining the outbox");
        // The connection sends a raised position within one status interval.
        let final_status = self.ctx.settings.status_interval() + Duration::from_millis(100);
        let drain_by = deadline
            .checked_sub(final_status + shutdown::CLOSE_RESERVE)
            .unwrap_or(deadline);
        let store = &self.ctx.store;
        let drained =
            shutdown::drain_until(|| store.outbox_len(), || self.ctx.sink.wake(), drain_by).await?;
        if !drained {
            tracing::warn!(
                pending = self.ctx.store.outbox_len()?,
                "outbox not drained within the shutdown budget; it is durable and resumes on restart"
            );
        }
        self.confirm()?;
        let sent_by = deadline.min(tokio::time::Instant::now() + final_status);
        tokio::time::sleep_until(sent_by).await;
        match tokio::time::timeout_at(deadline, self.relay.shutdown()).await {
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the replication stream"),
            Err(_) => {
                tracing::warn!("the replication stream did not close within the shutdown budget")
            }
            Ok(Ok(())) => {}
        }
        tracing::info!(confirmed = %self.confirmed, "final status sent");
        Ok(())
    }

    fn on_batch(&mut self) -> Result<(), PipelineError> {
        let mut batch = std::mem::take(&mut self.batch);
        for received in batch.drain(..) {
            match received? {
                Some(event) => self.on_event(event)?,
                None => return Err(PipelineError::Other("replication stream ended".into())),
            }
        }
        self.batch = batch;
        Ok(())
    }

    fn on_event(&mut self, event: ReplicationEvent) -> Result<(), PipelineError> {
        match event {
            ReplicationEvent::Begin { final_lsn, .. } => {
                let commit_lsn = Lsn::from(final_lsn);
                self.framing.begin(commit_lsn).map_err(SourceError::from)?;
                self.txn = Some(OpenTxn {
                    commit_lsn,
                    skip: commit_lsn < self.applied,
                    changes: 0,
                });
            }
            ReplicationEvent::XLogData {
                data,
                wal_start,
                wal_end,
                server_time_micros,
            } => {
                let clock = Timestamp::from_pg_micros(server_time_micros);
                self.ctx.sink.observe_source_clock(clock);
                METRICS.set_lsn("received", Lsn::from(wal_end));
                self.on_data(&data, Lsn::from(wal_start))?;
            }
            ReplicationEvent::Commit {
                lsn,
                end_lsn,
                commit_time_micros,
            } => {
                self.framing
                    .commit(Lsn::from(lsn), Lsn::from(end_lsn))
                    .map_err(SourceError::from)?;
                let commit_time = Timestamp::from_pg_micros(commit_time_micros);
                METRICS.observe_delivery_age("received", commit_time.0);
                self.on_commit(Lsn::from(end_lsn), commit_time)?;
            }
            ReplicationEvent::Message {
                prefix, content, ..
            } => {
                if prefix == HEARTBEAT_PREFIX {
                    observe_heartbeat(&content);
                }
            }
            ReplicationEvent::KeepAlive {
                wal_end,
                server_time_micros,
                ..
            } => {
                let clock = Timestamp::from_pg_micros(server_time_micros);
                self.ctx.sink.observe_source_clock(clock);
                self.on_keepalive(Lsn::from(wal_end))?
            }
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    fn on_data(&mut self, data: &[u8], at: Lsn) -> Result<(), PipelineError> {
        let decoded = self.decoder.decode(data).map_err(SourceError::from)?;
        if !matches!(decoded, Decoded::Change(_) | Decoded::Quarantine(_)) {
            return Ok(());
        }
        self.framing.change(at).map_err(SourceError::from)?;
        let txn = self
            .txn
            .as_mut()
            .expect("the framing has a transaction open");
        if txn.skip {
            return Ok(());
        }
        // The engine applies a large transaction (or one with a TRUNCATE) chunk by
        // chunk, committing the staged transactions first.
        let change = match decoded {
            Decoded::Change(change) => change,
            Decoded::Quarantine(q) => {
                METRICS.quarantined.inc();
                tracing::warn!(table = %q.table, row_id = ?q.row_id, reason = %q.reason, lsn = %txn.commit_lsn, "quarantined a row");
                let record = QuarantineRecord {
                    commit_lsn: txn.commit_lsn,
                    table: q.table,
                    row_id: q.row_id.clone(),
                    reason: q.reason,
                };
                let tx = self.ctx.store.begin();
                tx.put_quarantine(txn.changes, &record)?;
                tx.commit()?;
                // A row that cannot be placed is absent from the state, as in the
                // initial load, which never stores it.
                match q.row_id {
                    Some(id) => Change::Delete { table: q.table, id },
                    None => return Ok(()),
                }
            }
            _ => return Ok(()),
        };
        txn.changes += 1;
        let commit_lsn = txn.commit_lsn;
        if let Some((last, _)) = self.engine.apply(commit_lsn, [change])? {
            self.staged_since = None;
            self.committed(&last);
        }
        Ok(())
    }

    fn on_commit(&mut self, end_lsn: Lsn, commit_time: Timestamp) -> Result<(), PipelineError> {
        let txn = self.txn.take().expect("the framing had a transaction open");
        if txn.skip {
            return Ok(());
        }
        let meta = TxnMeta {
            commit_lsn: txn.commit_lsn,
            end_lsn,
            commit_time,
        };
        self.oldest_uncommitted.get_or_insert(commit_time);
        // A large transaction commits at once, small ones in groups (the engine
        // commits a group that holds `chunk_changes` changes itself).
        if let Some((last, _)) = self.engine.commit(&meta)? {
            self.staged_since = None;
            self.committed(&last);
            return Ok(());
        }
        let since = *self.staged_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= GROUP_MAX_WAIT {
            self.commit_staged()?;
        }
        Ok(())
    }

    /// Commits the staged transactions, if any.
    fn commit_staged(&mut self) -> Result<(), PipelineError> {
        self.staged_since = None;
        if let Some((last, _)) = self.engine.flush()? {
            self.committed(&last);
        }
        Ok(())
    }

    /// Bookkeeping once the state holds everything through `last`.
    fn committed(&mut self, last: &TxnMeta) {
        fault::point(fault::AFTER_STATE_WRITE);
        self.applied = self.applied.max(last.end_lsn);
        METRICS.set_lsn("applied", self.applied);
        METRICS.record_apply(&self.engine.take_stats());
        let oldest = self.oldest_uncommitted.take().unwrap_or(last.commit_time);
        METRICS.observe_delivery_age("applied", oldest.0);
        let lag = (now_micros() - last.commit_time.0).max(0) as f64 / 1e6;
        tracing::debug!(
            end_lsn = %last.end_lsn,
            oldest_age_ms = (now_micros() - oldest.0) as f64 / 1e3,
            newest_age_ms = lag * 1e3,
            "committed to the state"
        );
        METRICS.lag_seconds.set(lag);
        self.ctx.sink.wake();
    }

    /// Idle advance: with no transaction open and nothing pending for the sink,
    /// everything before `wal_end` is applied.
    fn on_keepalive(&mut self, wal_end: Lsn) -> Result<(), PipelineError> {
        if self.txn.is_none()
            && self.staged_since.is_none()
            && wal_end > self.applied
            && self.ctx.store.outbox_len()? == 0
        {
            self.ctx.store.put_meta(meta::APPLIED_LSN, &wal_end)?;
            self.applied = wal_end;
            METRICS.set_lsn("applied", wal_end);
            METRICS.lag_seconds.set(0.0);
        }
        Ok(())
    }

    fn confirm(&mut self) -> Result<(), PipelineError> {
        let lsn = self.ctx.confirmable()?;
        if lsn > self.confirmed {
            self.relay.update_applied_lsn(lsn);
            self.confirmed = lsn;
            METRICS.set_lsn("confirmed", lsn);
            METRICS.last_progress_seconds.set(now_micros() as f64 / 1e6);
        }
        METRICS
            .outbox_pending
            .set(self.ctx.store.outbox_len()? as i64);
        let (lead_missing, no_client) = self.ctx.store.held_by_reason()?;
        for (reason, held) in crate::telemetry::metrics::HELD_REASONS
            .into_iter()
            .zip([lead_missing, no_client])
        {
            METRICS
                .held_anchors
                .with_label_values(&[reason])
                .set(i64::try_from(held).unwrap_or(i64::MAX));
        }
        let ready = self.ctx.sink.is_healthy();
        self.ctx.health.ready.store(ready, Ordering::SeqCst);
        METRICS.ready.set(i64::from(ready));
        if ready || self.ctx.store.outbox_len()? == 0 {
            self.sink_down_since = None;
        } else {
            let since = *self.sink_down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= SINK_DOWN_RELEASE {
                return Err(PipelineError::SinkDown(since.elapsed()));
            }
        }
        Ok(())
    }

    async fn heartbeat(&mut self) {
        let Some(admin) = self.admin.as_ref() else {
            return;
        };
        let payload = now_micros().to_string();
        if let Err(e) = admin::emit_heartbeat(admin, HEARTBEAT_PREFIX, &payload).await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
    }

    /// A slot found lost or gone stops the pipeline; the state's size and memory,
    /// and the event log's retention. (Lag, retained WAL and `wal_status` come from
    /// the health poller, which also sees them while the stream is down:
    /// `crate::pipeline::poller`.)
    async fn check_slot(&mut self) -> Result<(), PipelineError> {
        if let Some(admin) = self.admin.as_ref() {
            match admin::slot_retention(admin, &self.ctx.settings.slot).await {
                Ok(Some((_, status))) if status.as_deref() == Some("lost") => {
                    return Err(slot_lost(&self.ctx));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(slot_missing(&self.ctx)?),
                Err(e) => tracing::debug!(error = %e, "slot check failed"),
            }
        }
        if let Ok(size) = i64::try_from(self.ctx.store.approximate_size()) {
            METRICS.state_bytes.set(size);
        }
        for (kind, bytes) in self.ctx.store.memory_usage() {
            METRICS
                .state_memory_bytes
                .with_label_values(&[kind])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        publish_read_counts(&self.ctx.store.read_counts());
        self.retention
            .tick(&self.ctx.store, &self.ctx.settings, self.applied)
            .await;
        Ok(())
    }
}

/// The definite error of a slot that was invalidated or dropped, if it was: the
/// same errors `run` gives at start. `None` when the slot is usable, or when its
/// state cannot be read right now (the retry will tell).
async fn slot_unusable(
    ctx: &Context,
    admin: &mut Option<tokio_postgres::Client>,
) -> Option<PipelineError> {
    if admin.is_none() {
        *admin = crate::pgconn::connect(ctx.settings.source_url(), "replytime-admin")
            .await
            .ok();
    }
    let state = admin::slot_state(admin.as_ref()?, &ctx.settings.slot).await;
    match state {
        Ok(Some(state)) if state.wal_status.as_deref() == Some("lost") => Some(slot_lost(ctx)),
        Ok(Some(_)) => None,
        Ok(None) => Some(slot_missing(ctx).unwrap_or_else(|e| e)),
        Err(e) => {
            tracing::debug!(error = %e, "reading the slot's state failed");
            None
        }
    }
}

fn slot_lost(ctx: &Context) -> PipelineError {
    SourceError::SlotLost {
        slot: ctx.settings.slot.clone(),
    }
    .into()
}

fn slot_missing(ctx: &Context) -> Result<PipelineError, PipelineError> {
    Ok(SourceError::SlotMissing {
        slot: ctx.settings.slot.clone(),
        state_dir: ctx.settings.state_dir().display().to_string(),
        durable: ctx.store.applied_lsn()?,
    }
    .into())
}

fn observe_heartbeat(content: &[u8]) {
    let sent: Option<i64> = std::str::from_utf8(content)
        .ok()
        .and_then(|s| s.parse().ok());
    if let Some(sent) = sent {
        METRICS
            .heartbeat_freshness_seconds
            .observe((now_micros() - sent).max(0) as f64 / 1e6);
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The state's read counters as metrics (`replytime_read_cache_total`,
/// `replytime_rocksdb_reads_total`, `replytime_rocksdb_events_total`).
fn publish_read_counts(counts: &crate::store::ReadCounts) {
    use crate::telemetry::metrics::set_counter;
    for (kind, result, count) in counts.read_cache {
        set_counter(
            &METRICS.read_cache.with_label_values(&[kind, result]),
            count,
        );
    }
    for (kind, count) in counts.rocksdb {
        set_counter(&METRICS.rocksdb_reads.with_label_values(&[kind]), count);
    }
    for (event, count) in counts.tickers {
        set_counter(&METRICS.rocksdb_events.with_label_values(&[event]), count);
    }
}
