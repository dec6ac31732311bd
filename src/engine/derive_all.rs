//! Deriving every anchor at once ([`Engine::derive_all`]): after a bulk load (the
//! anchor of every inbound message, in thread order, derived by a helper thread
//! while this one records) and for `rebuild` (every message's anchor again).

use super::txn::record_applied;
use super::{DerivedAnchor, Engine, EngineError, TxnOutcome, anchor, keys};
use crate::change::TxnMeta;
use crate::store::{Cf, Store};

impl Engine {
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
            self.apply_in(&tx, meta.commit_lsn, 0, &[], false)?;
            tx.commit()?;
            progress(keys.len() as u64);
            after = Some(last);
        }
        self.finish_in(&store, store.begin(), meta)
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
