//! The transaction path: how a source transaction reaches the state. A small one
//! is staged on top of the others and committed with them (group commit); a large
//! one is applied in chunks, each its own RocksDB commit, then finished with its
//! anchors refreshed in bounded batches (see the module doc of [`super`]).
//!
//! ```text
//!  apply ──▶ buffer ──(chunk_changes or TRUNCATE)──▶ apply_chunk ──▶ commit ──▶ finish_in
//!  commit (small) ──▶ stage ──▶ group ──(chunk_changes, or flush)──▶ one RocksDB write
//! ```

use super::fresh::{Fresh, FreshIds};
use super::{Committed, Engine, EngineError, Stamp, TxnOutcome, apply};
use crate::change::{Change, Table, TxnMeta};
use crate::lsn::Lsn;
use crate::row::SinkOp;
use crate::store::{Cf, OutboxEntry, PendingWrites, Store, StoreError, StoreTxn, meta};

/// Small source transactions applied but not committed yet: they share one RocksDB
/// commit (group commit, see [`Engine::commit`]). Each keeps its own outbox entry:
/// the sink orders writes by the end LSN of the transaction that made them
/// (SPEC 9), so an operation never takes a later transaction's LSN.
#[derive(Default)]
pub(super) struct Group {
    writes: PendingWrites,
    /// What the group's unit of work knows absent from the committed state.
    pub(super) fresh: FreshIds,
    txns: Vec<(TxnMeta, Vec<SinkOp>)>,
    changes: usize,
}

/// The transaction [`Engine::apply`] receives changes of.
pub(super) struct OpenTxn {
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
    pub(super) fn push(
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

impl Engine {
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
            self.committed_whole(meta.end_lsn);
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
        self.committed_whole(last.end_lsn);
        Ok(Some((last, outcome)))
    }

    /// Forgets the staged transactions and the open one (the stream restarts
    /// before them).
    pub fn discard(&mut self) {
        self.group = Group::default();
        // The first transaction streamed again may be a chunked one a crash or a
        // dropped stream cut (see `fresh.rs`).
        self.fresh_ready = false;
        self.open = None;
        self.dirty.clear();
        self.relabel.clear();
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
    pub(super) fn ensure_idle(&self, what: &str) -> Result<(), EngineError> {
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
            self.apply_in(&tx, commit_lsn, seq, others, false)?;
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
                    .applier(&tx, (commit_lsn, seq), false)
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
        let fresh = self.fresh_allowed(meta.commit_lsn);
        self.apply_in(&tx, meta.commit_lsn, 0, changes, fresh)?;
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

    pub(super) fn apply_in(
        &mut self,
        tx: &StoreTxn<'_>,
        commit_lsn: Lsn,
        first_seq: u32,
        changes: &[Change],
        fresh: bool,
    ) -> Result<(), EngineError> {
        for (i, change) in changes.iter().enumerate() {
            let seq = first_seq + i as u32;
            self.count_change(change);
            self.applier(tx, (commit_lsn, seq), fresh).change(change)?;
        }
        self.after_apply(tx)
    }

    /// Application of changes stamped `stamp` within `tx`; with `fresh`, within
    /// the staged group, skipping the reads `fresh.rs` proves absent.
    fn applier<'t, 'a>(
        &'t mut self,
        tx: &'t StoreTxn<'a>,
        stamp: Stamp,
        fresh: bool,
    ) -> apply::Apply<'t, 'a> {
        let verify = self.options.verify_known_absent;
        apply::Apply {
            tx,
            dirty: &mut self.dirty,
            relabel: &mut self.relabel,
            stats: &mut self.stats,
            stamp,
            track: !self.options.bulk,
            fresh: fresh.then_some(Fresh {
                ids: &mut self.group.fresh,
                verify,
            }),
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

    pub(super) fn finish_in<'s>(
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
}

/// Raises the applied LSN to `end_lsn` (never lowers it).
pub(super) fn record_applied(tx: &StoreTxn<'_>, end_lsn: Lsn) -> Result<(), StoreError> {
    let applied = tx.get_record::<Lsn>(Cf::Meta, meta::APPLIED_LSN)?;
    let applied = applied.unwrap_or(Lsn::ZERO).max(end_lsn);
    tx.put_record(Cf::Meta, meta::APPLIED_LSN, &applied)
}
