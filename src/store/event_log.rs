//! The event log: decoded changes in commit-LSN order, kept for `replay` with a
//! retention window by age and size. Written by the engine in the same RocksDB
//! transaction as the state change (key: commit LSN ++ change number; the
//! transaction's `TxnMeta` under change number `u32::MAX`).

use super::{Cf, Store, StoreError, decode};
use crate::change::{Change, Timestamp, TxnMeta};
use crate::lsn::Lsn;

/// One logged source transaction.
pub struct LoggedTxn {
    pub meta: TxnMeta,
    pub changes: Vec<Change>,
}

fn lsn_of(key: &[u8]) -> Lsn {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    Lsn(u64::from_be_bytes(b))
}

fn is_meta(key: &[u8]) -> bool {
    key[8..12] == u32::MAX.to_be_bytes()
}

impl Store {
    /// Complete logged transactions with commit LSN ≥ `from`, in order, up to `limit`.
    pub fn logged_transactions(
        &self,
        from: Lsn,
        limit: usize,
    ) -> Result<Vec<LoggedTxn>, StoreError> {
        let tx = self.begin();
        let mut out = Vec::new();
        let mut changes = Vec::new();
        let mut start = from.to_be_bytes().to_vec();
        start.extend_from_slice(&0u32.to_be_bytes());
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = match &after {
                Some(a) => tx.keys_with_prefix(Cf::EventLog, &[], Some(a), 1024)?,
                None => tx
                    .scan(Cf::EventLog, &start, 1024)?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect(),
            };
            let Some(last) = batch.last().cloned() else {
                return Ok(out);
            };
            for key in batch {
                let bytes = tx.get(Cf::EventLog, &key)?.unwrap_or_default();
                if is_meta(&key) {
                    let meta: TxnMeta = decode(Cf::EventLog, &bytes)?;
                    out.push(LoggedTxn {
                        meta,
                        changes: std::mem::take(&mut changes),
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                } else {
                    changes.push(decode(Cf::EventLog, &bytes)?);
                }
            }
            after = Some(last);
        }
    }

    /// Commit LSN of the first logged transaction committed at or after `time`.
    pub fn first_logged_at(&self, time: Timestamp) -> Result<Option<Lsn>, StoreError> {
        let tx = self.begin();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let keys = tx.keys_with_prefix(Cf::EventLog, &[], after.as_deref(), 4096)?;
            let Some(last) = keys.last().cloned() else {
                return Ok(None);
            };
            for key in keys.iter().filter(|k| is_meta(k)) {
                let meta: TxnMeta = decode(
                    Cf::EventLog,
                    &tx.get(Cf::EventLog, key)?.unwrap_or_default(),
                )?;
                if meta.commit_time >= time {
                    return Ok(Some(lsn_of(key)));
                }
            }
            after = Some(last);
        }
    }

    /// Deletes logged transactions committed before `older_than`, and the oldest ones
    /// while more than `max_entries` entries remain; returns entries deleted.
    pub fn trim_event_log(
        &self,
        older_than: Timestamp,
        max_entries: u64,
    ) -> Result<u64, StoreError> {
        let tx = self.begin();
        let keys = tx.keys_with_prefix(Cf::EventLog, &[], None, 100_000)?;
        let total_hint = keys.len() as u64;
        let mut deleted = 0u64;
        let mut pending: Vec<Vec<u8>> = Vec::new();
        for key in keys {
            let is_end = is_meta(&key);
            pending.push(key.clone());
            if !is_end {
                continue;
            }
            let meta: TxnMeta = decode(
                Cf::EventLog,
                &tx.get(Cf::EventLog, &key)?.unwrap_or_default(),
            )?;
            let over_size = total_hint.saturating_sub(deleted) > max_entries;
            if meta.commit_time >= older_than && !over_size {
                break;
            }
            for k in pending.drain(..) {
                tx.delete(Cf::EventLog, &k)?;
                deleted += 1;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }
}
