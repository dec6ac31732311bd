//! The engine: applies source transactions to the derivation state and emits the
//! exact sink operations that keep `"ResponseTimingEvent"` equal to the rules of
//! SPEC section 3. Pure code over the state store: no async, no IO besides RocksDB.
//!
//! ```text
//!   Change ──▶ apply (rows + ordered indexes, marks dirty anchors)
//!                 │  at the end of the transaction
//!                 ▼
//!            refresh each dirty anchor: derive (anchor.rs) ─▶ compare with what the
//!            sink holds (anchors cf) ─▶ Upsert / Delete ─▶ outbox, applied LSN
//! ```
//!
//! The public API (everything else is private to the engine):
//! - [`Engine::new`]: an engine over a store; its modes (bulk load, event log,
//!   forced upserts, `emit_since`, interruption, chunk size) are [`EngineOptions`],
//!   fixed for its life.
//! - [`Engine::apply`]: changes of the open transaction; the one way a transaction
//!   reaches the engine, which applies a large one in chunks itself.
//! - [`Engine::commit`]: ends the transaction: a large one is finished at once, a
//!   small one staged for group commit.
//! - [`Engine::flush`]: commits the staged group (the durable boundary).
//! - [`Engine::discard`]: forgets what is staged or open (the stream restarts).
//! - [`Engine::derive_all`]: every anchor at once (after a bulk load; `rebuild`).
//! - [`Engine::take_stats`]: counters for the metrics.
//! - [`delay::chosen_delay`]: the delay the CRM chooses for a message (SPEC 3.6).
//!
//! Calls out of order (a commit of another transaction than the open one, deriving
//! everything with a transaction open) return [`EngineError::OutOfOrder`].
//!
//! Anchors are re-derived once per transaction, after all its changes, so the sink
//! never sees an intermediate state of a transaction. A large transaction is applied
//! in chunks (each its own RocksDB commit, together with the anchors it leaves to
//! refresh; the dirty set also spills to RocksDB past a bound) and its anchors are
//! refreshed in bounded batches: memory stays bounded, and a crash in between
//! loses no refresh.
//!
//! Decisions where the spec leaves room (also in the README):
//! - A job's `createdAt` NULL orders before every value ("latest" is the greatest
//!   (`createdAt`, `id`)); several drafts for one (trigger, channel) — impossible
//!   under the unique constraint — resolve to the smallest draft id.
//! - A campaign whose min or max is NULL contributes the default (180 / 420) for it.
//! - A lead whose `clientId` is NULL holds its anchors like an unknown lead.
//! - The delay record of a job carries the stream position (commit LSN, change
//!   number) of the insert that wrote it. Re-applying an insert or delete at or
//!   before that position leaves it alone: re-applied suffixes and replays never
//!   change a record.

mod anchor;
mod apply;
pub mod delay;
mod keys;
mod relabel;
mod toast;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::change::{Change, Table, Timestamp, TxnMeta};
use crate::lsn::Lsn;
use crate::row::{SinkOp, TimingRow};
use crate::store::{Cf, OutboxEntry, PendingWrites, Store, StoreError, StoreTxn, meta};
use crate::telemetry::metrics::ApplyStats;

pub use anchor::{DerivedAnchor, HeldReason};

/// Position of a change in the stream: (commit LSN of its transaction, its number).
pub type Stamp = (Lsn, u32);

/// The delay bounds recorded when a job's insert was applied (SPEC 3.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDelay {
    pub min: i32,
    pub max: i32,
    pub stamp: Stamp,
}

/// What the engine knows of an anchor: its lead and the row the sink holds for it
/// (`None` while held for an unknown lead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    pub lead_id: String,
    pub row: Option<TimingRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state is inconsistent: {0}; run `replytime rebuild`")]
    Inconsistent(String),
    #[error("stopped on request before the work was done")]
    Interrupted,
    /// A call out of order (a bug in the caller): nothing was applied.
    #[error("engine called out of order: {0}")]
    OutOfOrder(String),
}

/// How an engine works, fixed for its life.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Keep decoded changes in the event log (off while replaying the log itself).
    pub log_events: bool,
    /// Dirty anchors kept in memory before spilling to RocksDB.
    pub dirty_spill: usize,
    /// Anchors refreshed per RocksDB commit (and per outbox entry).
    pub refresh_batch: usize,
    /// Changes of one transaction buffered before they are applied as a chunk of
    /// their own (its own RocksDB commit); also the staged changes that make
    /// [`Engine::commit`] commit the group.
    pub chunk_changes: usize,
    /// Bulk load into an empty state: changes are applied without looking up the
    /// anchors they affect, every [`Engine::apply`] is a chunk of its own, and
    /// [`Engine::derive_all`] derives every anchor afterwards, in thread order.
    pub bulk: bool,
    /// Emit upserts of unchanged rows too (replay into or rebuild of a damaged sink).
    pub force_upsert: bool,
    /// Anchors whose inbound message was sent before this are derived and recorded
    /// but not upserted into the sink (`backfill --lookback-days`); later changes
    /// emit them in full.
    pub emit_since: Option<Timestamp>,
    /// Once cancelled (the daemon's shutdown), [`Engine::derive_all`] returns
    /// [`EngineError::Interrupted`] at its next batch (what it committed stays
    /// committed).
    pub interrupt: CancellationToken,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            log_events: true,
            dirty_spill: 50_000,
            refresh_batch: 10_000,
            chunk_changes: 10_000,
            bulk: false,
            force_upsert: false,
            emit_since: None,
            interrupt: CancellationToken::new(),
        }
    }
}

/// Response times an engine keeps before it hands its counters to the metrics
/// itself: one long operation (an initial load, a rebuild) would otherwise hold one
/// per anchor until [`Engine::take_stats`] (450 MiB at 4 million anchors).
const STATS_BOUND: usize = 1 << 16;

/// Result of a finished transaction.
#[derive(Clone, Debug, Default)]
pub struct TxnOutcome {
    /// Outbox sequence numbers written, in order.
    pub outbox: Vec<u64>,
    pub ops: usize,
}

/// What a commit made durable: everything through `last` (the state's applied
/// LSN is now `last.end_lsn`), with the outbox entries written.
pub type Committed = Option<(TxnMeta, TxnOutcome)>;

/// Small source transactions applied but not committed yet: they share one RocksDB
/// commit (group commit, see [`Engine::commit`]). Each keeps its own outbox entry:
/// the sink orders writes by the end LSN of the transaction that made them
/// (SPEC 9), so an operation never takes a later transaction's LSN.
#[derive(Default)]
struct Group {
    writes: PendingWrites,
    txns: Vec<(TxnMeta, Vec<SinkOp>)>,
    changes: usize,
}

/// The transaction [`Engine::apply`] receives changes of.
struct OpenTxn {
    commit_lsn: Lsn,
    /// Changes not applied yet.
    buffer: Vec<Change>,
    /// Number of the first change in `buffer`.
    next_seq: u32,
    /// Some of it is applied and committed already (a large transaction).
    chunked: bool,
}

impl TxnOutcome {
    /// Appends (part of) `meta`'s sink operations to the outbox as one entry.
    fn push(
        &mut self,
        tx: &StoreTxn<'_>,
        meta: &TxnMeta,
        complete: bool,
        ops: Vec<SinkOp>,
    ) -> Result<(), StoreError> {
        self.ops += ops.len();
        let entry = OutboxEntry {
            end_lsn: meta.end_lsn,
            commit_time: meta.commit_time,
            complete,
            ops,
        };
        self.outbox.push(tx.push_outbox(&entry)?);
        Ok(())
    }
}

pub struct Engine {
    store: Arc<Store>,
    group: Group,
    open: Option<OpenTxn>,
    options: EngineOptions,
    dirty: BTreeSet<String>,
    /// Anchors to relabel with their lead's new `clientId` (`relabel.rs`);
    /// refreshed after `dirty`, which wins when an anchor is in both.
    relabel: BTreeSet<String>,
    spilled: bool,
    stats: ApplyStats,
}

impl Engine {
    /// An engine over `store`, working as `options` say for its whole life.
    pub fn new(store: Arc<Store>, options: EngineOptions) -> Self {
        if options.bulk {
            store.set_bulk_reads(true);
        }
        Engine {
            store,
            group: Group::default(),
            open: None,
            options,
            dirty: BTreeSet::new(),
            relabel: BTreeSet::new(),
            // Anchors a crashed run left to refresh are refreshed with the first
            // transaction (the one it was applying, streamed again).
            spilled: true,
            stats: ApplyStats::default(),
        }
    }

    /// Adds `changes` to the transaction of commit LSN `commit_lsn` (the first call
    /// opens it; [`Engine::commit`] ends it). Once it holds
    /// [`EngineOptions::chunk_changes`] changes not applied yet, or a TRUNCATE, the
    /// staged transactions are committed (returned) and its changes applied as a
    /// chunk: its own RocksDB commit, with the anchors it leaves to refresh, so
    /// memory stays bounded and a crash in between loses no refresh. A TRUNCATE
    /// deletes its tables' rows a page at a time, each page its own commit. In
    /// bulk mode every call is a chunk.
    pub fn apply(
        &mut self,
        commit_lsn: Lsn,
        changes: impl IntoIterator<Item = Change>,
    ) -> Result<Committed, EngineError> {
        match &self.open {
            Some(open) if open.commit_lsn != commit_lsn => {
                return Err(EngineError::OutOfOrder(format!(
                    "changes of {commit_lsn} while {} is open",
                    open.commit_lsn
                )));
            }
            Some(_) => {}
            None => {
                self.open = Some(OpenTxn {
                    commit_lsn,
                    buffer: Vec::new(),
                    next_seq: 0,
                    chunked: false,
                });
            }
        }
        let mut committed = None;
        for change in changes {
            let truncate = matches!(change, Change::Truncate(_));
            let open = self.open.as_mut().expect("opened above");
            open.buffer.push(change);
            let full = open.buffer.len() >= self.options.chunk_changes || truncate;
            if full && !self.options.bulk {
                // A large transaction is applied in chunks, after what was staged.
                if let Some(group) = self.flush()? {
                    committed = Some(group);
                }
                self.apply_buffered()?;
                crate::fault::point(crate::fault::BETWEEN_CHUNKS);
            }
        }
        if self.options.bulk {
            // Each call is committed whole: nothing stays open for `derive_all`.
            self.apply_buffered()?;
            self.open = None;
        }
        Ok(committed)
    }

    /// Ends the transaction `meta` (its changes given to [`Engine::apply`], maybe
    /// none). A large one (applied in chunks) is finished at once: its anchors
    /// refreshed in bounded batches, their operations written to the outbox and
    /// `meta.end_lsn` recorded as applied. A small one is applied on top of the
    /// staged ones without committing; the group commits here once it holds
    /// [`EngineOptions::chunk_changes`] changes, else with [`Engine::flush`]. Until
    /// then nothing of it is durable or visible to the sink, and a crash re-reads
    /// it from the slot. Returns what became durable.
    pub fn commit(&mut self, meta: &TxnMeta) -> Result<Committed, EngineError> {
        let open = self.open.take().unwrap_or(OpenTxn {
            commit_lsn: meta.commit_lsn,
            buffer: Vec::new(),
            next_seq: 0,
            chunked: false,
        });
        if open.commit_lsn != meta.commit_lsn {
            let open_lsn = open.commit_lsn;
            self.open = Some(open);
            return Err(EngineError::OutOfOrder(format!(
                "commit of {} while {open_lsn} is open",
                meta.commit_lsn
            )));
        }
        if open.chunked {
            self.apply_chunk(meta.commit_lsn, open.next_seq, &open.buffer)?;
            let store = self.store.clone();
            let outcome = self.finish_in(&store, store.begin(), meta)?;
            return Ok(Some((*meta, outcome)));
        }
        self.stage(meta, &open.buffer)?;
        if self.group.changes >= self.options.chunk_changes {
            return self.flush();
        }
        Ok(None)
    }

    /// Commits the staged transactions (see [`Engine::commit`]): one RocksDB write,
    /// one outbox entry per transaction with its own operations (the last one's
    /// written even without: it carries the group's progress to the sink), and
    /// the last one's end LSN as applied. `None` when nothing was staged.
    pub fn flush(&mut self) -> Result<Committed, EngineError> {
        let mut group = std::mem::take(&mut self.group);
        let Some((last, last_ops)) = group.txns.pop() else {
            return Ok(None);
        };
        let tx = self.store.begin_with(group.writes);
        let mut outcome = TxnOutcome::default();
        for (meta, ops) in group.txns {
            if !ops.is_empty() {
                outcome.push(&tx, &meta, true, ops)?;
            }
        }
        // The last entry is written even without operations: it carries the
        // group's progress to the sink.
        outcome.push(&tx, &last, true, last_ops)?;
        record_applied(&tx, last.end_lsn)?;
        tx.commit()?;
        Ok(Some((last, outcome)))
    }

    /// Forgets the staged transactions and the open one (the stream restarts
    /// before them).
    pub fn discard(&mut self) {
        self.group = Group::default();
        self.open = None;
        self.dirty.clear();
        self.relabel.clear();
    }

    /// Counters since the last call (less what a long operation already recorded
    /// into the metrics, see [`STATS_BOUND`]).
    pub fn take_stats(&mut self) -> ApplyStats {
        std::mem::take(&mut self.stats)
    }

    /// Applies the open transaction's buffered changes as a chunk.
    fn apply_buffered(&mut self) -> Result<(), EngineError> {
        let open = self.open.as_mut().expect("a transaction is open");
        let buffer = std::mem::take(&mut open.buffer);
        let (commit_lsn, first) = (open.commit_lsn, open.next_seq);
        open.next_seq += buffer.len() as u32;
        open.chunked = true;
        self.apply_chunk(commit_lsn, first, &buffer)
    }

    /// Fails unless every transaction was committed and flushed.
    fn ensure_idle(&self, what: &str) -> Result<(), EngineError> {
        match (&self.open, self.group.txns.last()) {
            (None, None) => Ok(()),
            (Some(open), _) => Err(EngineError::OutOfOrder(format!(
                "{what} while transaction {} is open",
                open.commit_lsn
            ))),
            (None, Some((meta, _))) => Err(EngineError::OutOfOrder(format!(
                "{what} while transactions through {} are staged",
                meta.end_lsn
            ))),
        }
    }

    /// Applies a chunk of a transaction's changes (numbered from `first_seq`) and
    /// commits it to RocksDB; anchors are refreshed by `finish_in`. A TRUNCATE in
    /// it deletes its tables' rows a page at a time, each page its own commit.
    fn apply_chunk(
        &mut self,
        commit_lsn: Lsn,
        first_seq: u32,
        changes: &[Change],
    ) -> Result<(), EngineError> {
        let store = self.store.clone();
        let mut seq = first_seq;
        for run in changes.split_inclusive(|c| matches!(c, Change::Truncate(_))) {
            let (last, rest) = run
                .split_last()
                .expect("split_inclusive yields no empty run");
            let (others, truncate) = match last {
                Change::Truncate(tables) => (rest, Some((last, tables))),
                _ => (run, None),
            };
            let tx = store.begin();
            if self.options.log_events {
                tx.log_changes(commit_lsn, seq, others)?;
            }
            self.apply_in(&tx, commit_lsn, seq, others)?;
            self.spill_dirty(&tx)?;
            tx.commit()?;
            seq += others.len() as u32;
            if let Some((change, tables)) = truncate {
                self.truncate_in_pages(commit_lsn, seq, change, tables)?;
                seq += 1;
            }
        }
        Ok(())
    }

    /// Applies TRUNCATE `change` (change number `seq`) a page of rows per commit,
    /// each commit carrying the anchors left to refresh.
    fn truncate_in_pages(
        &mut self,
        commit_lsn: Lsn,
        seq: u32,
        change: &Change,
        tables: &[Table],
    ) -> Result<(), EngineError> {
        let store = self.store.clone();
        self.count_change(change);
        let mut logged = !self.options.log_events;
        for table in tables {
            loop {
                let tx = store.begin();
                if !logged {
                    tx.log_changes(commit_lsn, seq, std::slice::from_ref(change))?;
                    logged = true;
                }
                let done = self
                    .applier(&tx, (commit_lsn, seq))
                    .truncate_page(*table, apply::TRUNCATE_PAGE)?;
                self.after_apply(&tx)?;
                self.spill_dirty(&tx)?;
                tx.commit()?;
                if done {
                    break;
                }
                crate::fault::point(crate::fault::BETWEEN_CHUNKS);
            }
        }
        Ok(())
    }
    /// Applies a whole small transaction on top of the staged ones without
    /// committing (see [`Engine::commit`]).
    fn stage(&mut self, meta: &TxnMeta, changes: &[Change]) -> Result<(), EngineError> {
        let store = self.store.clone();
        let tx = store.begin_with(std::mem::take(&mut self.group.writes));
        self.apply_in(&tx, meta.commit_lsn, 0, changes)?;
        let mut staged = Vec::new();
        loop {
            let (ops, complete) = self.refresh_batch(&tx, meta.end_lsn)?;
            staged.extend(ops);
            if complete {
                break;
            }
        }
        if self.options.log_events {
            tx.log_changes(meta.commit_lsn, 0, changes)?;
            tx.log_transaction(meta)?;
        }
        self.group.writes = tx.into_pending();
        self.group.txns.push((*meta, staged));
        self.group.changes += changes.len();
        Ok(())
    }

    fn apply_in(
        &mut self,
        tx: &StoreTxn<'_>,
        commit_lsn: Lsn,
        first_seq: u32,
        changes: &[Change],
    ) -> Result<(), EngineError> {
        for (i, change) in changes.iter().enumerate() {
            let seq = first_seq + i as u32;
            self.count_change(change);
            self.applier(tx, (commit_lsn, seq)).change(change)?;
        }
        self.after_apply(tx)
    }

    /// Application of changes stamped `stamp` within `tx`.
    fn applier<'t, 'a>(&'t mut self, tx: &'t StoreTxn<'a>, stamp: Stamp) -> apply::Apply<'t, 'a> {
        apply::Apply {
            tx,
            dirty: &mut self.dirty,
            relabel: &mut self.relabel,
            stats: &mut self.stats,
            stamp,
            track: !self.options.bulk,
        }
    }

    /// Bounds the dirty set after applying changes (bulk mode tracks none).
    fn after_apply(&mut self, tx: &StoreTxn<'_>) -> Result<(), EngineError> {
        if self.options.bulk {
            self.dirty.clear();
            self.relabel.clear();
        }
        if self.dirty.len() + self.relabel.len() > self.options.dirty_spill {
            self.spill_dirty(tx)?;
        }
        Ok(())
    }

    /// Moves the dirty set into the state, to commit with `tx`. Whenever a commit
    /// makes part of a transaction durable (a chunk applied, a batch of anchors
    /// refreshed) the anchors left to refresh go with it: after a crash the
    /// transaction is streamed again and applied over its own effects, where a
    /// delete or a move no longer finds the position it changed, so its marks
    /// could not be found again.
    fn spill_dirty(&mut self, tx: &StoreTxn<'_>) -> Result<(), EngineError> {
        // The spill keeps no reason: spilled anchors are derived in full.
        let relabel = std::mem::take(&mut self.relabel);
        for id in std::mem::take(&mut self.dirty).into_iter().chain(relabel) {
            tx.put(Cf::Dirty, id.as_bytes(), &[])?;
            self.spilled = true;
        }
        Ok(())
    }

    fn count_change(&mut self, change: &Change) {
        let op = change.operation();
        let mut count = |table: Table| {
            *self
                .stats
                .changes
                .entry((table.label(), op.label()))
                .or_default() += 1
        };
        match change {
            Change::Insert(row) | Change::Update { row, .. } => count(row.table()),
            Change::Delete { table, .. } => count(*table),
            Change::Truncate(tables) => tables.iter().for_each(|t| count(*t)),
        }
    }

    fn finish_in<'s>(
        &mut self,
        store: &'s Store,
        mut tx: StoreTxn<'s>,
        meta: &TxnMeta,
    ) -> Result<TxnOutcome, EngineError> {
        let mut outcome = TxnOutcome::default();
        loop {
            let (ops, complete) = self.refresh_batch(&tx, meta.end_lsn)?;
            if !ops.is_empty() || complete {
                outcome.push(&tx, meta, complete, ops)?;
            }
            if complete {
                if self.options.log_events {
                    tx.log_transaction(meta)?;
                }
                record_applied(&tx, meta.end_lsn)?;
                tx.commit()?;
                return Ok(outcome);
            }
            self.spill_dirty(&tx)?;
            tx.commit()?;
            tx = store.begin();
        }
    }

    /// Refreshes the next batch of dirty anchors; also says whether none is left.
    fn refresh_batch(
        &mut self,
        tx: &StoreTxn<'_>,
        end_lsn: Lsn,
    ) -> Result<(Vec<SinkOp>, bool), EngineError> {
        let batch = self.next_dirty_batch(tx)?;
        let mut ops = Vec::new();
        for id in &batch {
            self.relabel.remove(id);
            if let Some(op) = self.refresh(tx, id, end_lsn)? {
                ops.push(op);
            }
        }
        if self.dirty.is_empty() && !self.spilled {
            let room = self
                .options
                .refresh_batch
                .saturating_sub(batch.len())
                .max(1);
            self.relabel_batch(tx, room, end_lsn, &mut ops)?;
        }
        self.bound_stats();
        let complete = self.dirty.is_empty() && !self.spilled && self.relabel.is_empty();
        Ok((ops, complete))
    }

    /// Records the counters into the metrics once they hold [`STATS_BOUND`]
    /// response times; [`Engine::take_stats`] returns the rest.
    fn bound_stats(&mut self) {
        if self.stats.response_seconds.len() >= STATS_BOUND {
            crate::telemetry::metrics::METRICS.record_apply(&std::mem::take(&mut self.stats));
        }
    }

    /// Up to `refresh_batch` dirty anchors, from memory first, then from the spill.
    fn next_dirty_batch(&mut self, tx: &StoreTxn<'_>) -> Result<Vec<String>, EngineError> {
        let mut batch = Vec::new();
        while batch.len() < self.options.refresh_batch {
            match self.dirty.pop_first() {
                Some(id) => batch.push(id),
                None => break,
            }
        }
        if self.spilled && batch.len() < self.options.refresh_batch {
            let want = self.options.refresh_batch - batch.len();
            let keys = tx.keys_with_prefix(Cf::Dirty, &[], None, want)?;
            for key in &keys {
                tx.delete(Cf::Dirty, key)?;
            }
            self.spilled = keys.len() == want;
            batch.extend(keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()));
        }
        Ok(batch)
    }

    /// Re-derives one anchor and returns the sink operation, if the sink must change.
    fn refresh(
        &mut self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        end_lsn: Lsn,
    ) -> Result<Option<SinkOp>, EngineError> {
        let derived = anchor::derive(tx, inbound_id)?;
        self.settle(tx, inbound_id, derived, end_lsn)
    }

    /// Records an anchor as `derived` now and returns the sink operation, if the
    /// sink must change.
    fn settle(
        &mut self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        derived: Option<DerivedAnchor>,
        end_lsn: Lsn,
    ) -> Result<Option<SinkOp>, EngineError> {
        let old = tx.get_record::<AnchorRecord>(Cf::Anchors, inbound_id.as_bytes())?;
        let held = derived.as_ref().and_then(|d| d.held);
        let new = derived.map(|d| AnchorRecord {
            lead_id: d.lead_id,
            row: d.row,
        });
        if old == new {
            if held.is_some() {
                // Still held, maybe for another reason (its lead row arrived
                // without a client, or went).
                self.account_held(tx, inbound_id, true, held)?;
            }
            return Ok(match new.and_then(|r| r.row) {
                Some(row) if self.options.force_upsert => Some(SinkOp::Upsert {
                    row,
                    source_lsn: end_lsn,
                }),
                _ => None,
            });
        }
        self.write_anchor_record(tx, inbound_id, old.as_ref(), new.as_ref())?;
        let was_held = old.as_ref().is_some_and(|r| r.row.is_none());
        self.account_held(tx, inbound_id, was_held, held)?;
        let old_row = old.and_then(|r| r.row);
        let new_row = new.and_then(|r| r.row);
        if let (Some(cutoff), Some(row)) = (self.options.emit_since, &new_row)
            && row.inbound_sent_at < cutoff
        {
            return Ok(None);
        }
        Ok(match (old_row, new_row) {
            (old, Some(row)) if old.as_ref() != Some(&row) => {
                self.count_upsert(old.as_ref(), &row);
                Some(SinkOp::Upsert {
                    row,
                    source_lsn: end_lsn,
                })
            }
            (Some(_), None) => {
                self.stats.deletes += 1;
                Some(SinkOp::Delete {
                    inbound_message_id: inbound_id.to_string(),
                })
            }
            _ => None,
        })
    }

    fn write_anchor_record(
        &self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        old: Option<&AnchorRecord>,
        new: Option<&AnchorRecord>,
    ) -> Result<(), EngineError> {
        let lead_key = |lead: &str| {
            let mut key = keys::lead_anchor_prefix(lead);
            key.extend_from_slice(inbound_id.as_bytes());
            key
        };
        // The lead's index entry changes only when the anchor appears, goes or
        // moves to another lead (most refreshes change the row alone).
        let old_lead = old.map(|r| r.lead_id.as_str());
        let new_lead = new.map(|r| r.lead_id.as_str());
        if old_lead != new_lead {
            if let Some(lead) = old_lead {
                tx.delete(Cf::LeadAnchors, &lead_key(lead))?;
            }
            if let Some(lead) = new_lead {
                tx.put(Cf::LeadAnchors, &lead_key(lead), &[])?;
            }
        }
        match new {
            Some(new) => tx.put_record(Cf::Anchors, inbound_id.as_bytes(), new)?,
            None => tx.delete(Cf::Anchors, inbound_id.as_bytes())?,
        }
        Ok(())
    }

    /// Keeps the held counts (`meta::HELD_ANCHORS`, and `meta::HELD_NO_CLIENT` of
    /// them) and each held anchor's reason (`Cf::Held`) in step with an anchor
    /// that was held or not and is now held for `now` (or not held).
    fn account_held(
        &self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        was_held: bool,
        now: Option<HeldReason>,
    ) -> Result<(), EngineError> {
        let key = inbound_id.as_bytes();
        // A state of an earlier release holds anchors without a recorded reason.
        let before = match was_held {
            true => tx
                .get(Cf::Held, key)?
                .and_then(|b| b.first().copied().and_then(HeldReason::from_byte)),
            false => None,
        };
        if was_held == now.is_some() && before == now {
            return Ok(());
        }
        let step = |key: &[u8], up: bool| -> Result<(), EngineError> {
            let n = tx.get_record::<u64>(Cf::Meta, key)?.unwrap_or(0);
            let n = if up { n + 1 } else { n.saturating_sub(1) };
            tx.put_record(Cf::Meta, key, &n)?;
            Ok(())
        };
        if was_held != now.is_some() {
            step(meta::HELD_ANCHORS, now.is_some())?;
        }
        let no_client = |r: Option<HeldReason>| r == Some(HeldReason::NoClient);
        if no_client(before) != no_client(now) {
            step(meta::HELD_NO_CLIENT, no_client(now))?;
        }
        match now {
            Some(reason) => tx.put(Cf::Held, key, &[reason.to_byte()])?,
            None => tx.delete(Cf::Held, key)?,
        }
        Ok(())
    }

    fn count_upsert(&mut self, old: Option<&TimingRow>, row: &TimingRow) {
        self.stats.upserts += 1;
        let job_changed = old.map(|o| (&o.ai_background_job_id, o.ai_scheduled_run_at))
            != Some((&row.ai_background_job_id, row.ai_scheduled_run_at));
        if job_changed && anchor::delay_mismatch(row) {
            self.stats.delay_mismatch += 1;
        }
        if let Some(ms) = row.setter_response_ms
            && old.and_then(|o| o.setter_response_ms) != Some(ms)
        {
            let seconds = ms as f64 / 1000.0;
            self.stats
                .response_seconds
                .push((row.channel.clone(), false, seconds));
        }
        if let Some(ms) = row.ai_response_ms
            && old.and_then(|o| o.ai_response_ms) != Some(ms)
        {
            let seconds = ms as f64 / 1000.0;
            self.stats
                .response_seconds
                .push((row.channel.clone(), true, seconds));
        }
    }

    /// Derives every anchor, writes the operations to the outbox in bounded
    /// entries and records `meta.end_lsn` as applied; `progress` hears of each
    /// batch. In bulk mode (after a bulk load into an empty state) it derives the
    /// anchor of every inbound message, walking the threads in order: only inbound
    /// messages can be anchors, and no anchor was recorded before. Otherwise it
    /// re-derives every message's anchor against what was recorded (`rebuild`;
    /// with [`EngineOptions::force_upsert`] every row is upserted, changed or not).
    pub fn derive_all(
        &mut self,
        meta: &TxnMeta,
        progress: &mut dyn FnMut(u64),
    ) -> Result<TxnOutcome, EngineError> {
        self.ensure_idle("deriving every anchor")?;
        if !self.options.bulk {
            return self.rederive_every_message(meta, progress);
        }
        let store = self.store.clone();
        store.set_bulk_reads(true);
        let outcome = self.derive_every_inbound(&store, meta, progress);
        store.set_bulk_reads(self.options.bulk);
        outcome
    }

    /// Two threads: a helper derives the next batch of anchors (reads only: the
    /// rows and indexes it reads do not change while every anchor is derived)
    /// while this one records the previous batch and writes its outbox entry.
    fn derive_every_inbound(
        &mut self,
        store: &Store,
        meta: &TxnMeta,
        progress: &mut dyn FnMut(u64),
    ) -> Result<TxnOutcome, EngineError> {
        let batch = self.options.refresh_batch.max(1);
        std::thread::scope(|scope| {
            let (derived_tx, derived_rx) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || derive_batches(store, batch, &derived_tx));
            let mut outcome = TxnOutcome::default();
            loop {
                if self.options.interrupt.is_cancelled() {
                    return Err(EngineError::Interrupted);
                }
                let derived: DerivedBatch = derived_rx.recv().map_err(|_| {
                    EngineError::Inconsistent("the deriving thread ended early".into())
                })??;
                let complete = derived.len() < batch;
                let count = derived.len() as u64;
                let tx = store.begin();
                let mut ops = Vec::new();
                for (id, anchor) in derived {
                    if let Some(op) = self.settle(&tx, &id, anchor, meta.end_lsn)? {
                        ops.push(op);
                    }
                }
                self.bound_stats();
                if !ops.is_empty() || complete {
                    outcome.push(&tx, meta, complete, ops)?;
                }
                if complete {
                    record_applied(&tx, meta.end_lsn)?;
                    tx.commit()?;
                    return Ok(outcome);
                }
                tx.commit()?;
                progress(count);
            }
        })
    }

    /// Re-derives every message's anchor (see [`Engine::derive_all`]).
    fn rederive_every_message(
        &mut self,
        meta: &TxnMeta,
        progress: &mut dyn FnMut(u64),
    ) -> Result<TxnOutcome, EngineError> {
        let store = self.store.clone();
        let mut after: Option<Vec<u8>> = None;
        loop {
            // Between batches, as a crash would: what is marked stays to refresh.
            if self.options.interrupt.is_cancelled() {
                return Err(EngineError::Interrupted);
            }
            let tx = store.begin();
            let keys = tx.keys_with_prefix(Cf::Messages, &[], after.as_deref(), 10_000)?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in &keys {
                self.dirty.insert(String::from_utf8_lossy(key).into_owned());
            }
            self.apply_in(&tx, meta.commit_lsn, 0, &[])?;
            tx.commit()?;
            progress(keys.len() as u64);
            after = Some(last);
        }
        self.finish_in(&store, store.begin(), meta)
    }
}

impl Drop for Engine {
    /// A bulk engine sized the store's read cache down for itself.
    fn drop(&mut self) {
        if self.options.bulk {
            self.store.set_bulk_reads(false);
        }
    }
}

/// Inbound message ids with their anchors as derived now.
type DerivedBatch = Vec<(String, Option<DerivedAnchor>)>;

/// The anchors of every inbound message in thread order, `batch` at a time, into
/// `out`; stops at the first error (sent on) or when the receiver is gone.
fn derive_batches(
    store: &Store,
    batch: usize,
    out: &std::sync::mpsc::SyncSender<Result<DerivedBatch, EngineError>>,
) {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let derived = (|| {
            let tx = store.begin();
            let keys = tx.keys_with_prefix(Cf::Inbound, &[], after.as_deref(), batch)?;
            let mut derived = Vec::with_capacity(keys.len());
            for key in &keys {
                let prefix_len = keys::thread_prefix_len(key).ok_or_else(|| {
                    EngineError::Inconsistent("inbound index key without a thread".into())
                })?;
                let id = keys::id_after_pos(key, prefix_len);
                let anchor = anchor::derive(&tx, &id)?;
                derived.push((id, anchor));
            }
            after = keys.last().cloned();
            Ok(derived)
        })();
        let last = derived.as_ref().map_or(true, |d| d.len() < batch);
        if out.send(derived).is_err() || last {
            return;
        }
    }
}

/// Raises the applied LSN to `end_lsn` (never lowers it).
fn record_applied(tx: &StoreTxn<'_>, end_lsn: Lsn) -> Result<(), StoreError> {
    let applied = tx.get_record::<Lsn>(Cf::Meta, meta::APPLIED_LSN)?;
    let applied = applied.unwrap_or(Lsn::ZERO).max(end_lsn);
    tx.put_record(Cf::Meta, meta::APPLIED_LSN, &applied)
}
