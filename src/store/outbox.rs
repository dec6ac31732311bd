//! The outbox: sink operations that are durable in RocksDB but not yet committed to
//! the sink. Written in the same RocksDB transaction as the state change that
//! produced them, removed once the sink committed them, so nothing is lost between
//! the two commits (a crash re-sends what is left; the sink's upserts are idempotent).

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::{Cf, Store, StoreError, StoreTxn, decode};
use crate::change::Timestamp;
use crate::lsn::Lsn;
use crate::row::SinkOp;

/// Operations of (part of) one source transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub end_lsn: Lsn,
    pub commit_time: Timestamp,
    /// The last entry of its source transaction: once it is in the sink, the sink
    /// reflects `end_lsn`.
    pub complete: bool,
    pub ops: Vec<SinkOp>,
}

impl StoreTxn<'_> {
    /// Appends an entry; returns its sequence number.
    pub(crate) fn push_outbox(&self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        let seq = self.store().next_outbox_seq.fetch_add(1, Ordering::SeqCst);
        self.put_record(Cf::Outbox, &seq.to_be_bytes(), entry)?;
        Ok(seq)
    }
}

impl Store {
    pub(super) fn last_outbox_seq(&self) -> Result<Option<u64>, StoreError> {
        let key = self.begin().prev_key(Cf::Outbox, &[], None)?;
        Ok(key.map(|k| seq_of(&k)))
    }

    pub(super) fn first_outbox_seq(&self) -> Result<Option<u64>, StoreError> {
        let key = self.begin().next_key(Cf::Outbox, &[], None)?;
        Ok(key.map(|k| seq_of(&k)))
    }

    /// Key just before the head: `next_key` after it starts at the head.
    fn before_head(&self) -> Option<Vec<u8>> {
        let head = self.outbox_head.load(Ordering::SeqCst);
        head.checked_sub(1).map(|s| s.to_be_bytes().to_vec())
    }

    /// Up to `max_ops` operations' worth of entries, oldest first (at least one entry
    /// when any exists).
    pub fn read_outbox(&self, max_ops: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.read_outbox_after(None, max_ops)
    }

    /// As [`Store::read_outbox`], from the entry after sequence number `after`
    /// (from the oldest when `None`): reads a long outbox a part at a time.
    pub fn read_outbox_after(
        &self,
        after: Option<u64>,
        max_ops: usize,
    ) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let tx = self.begin();
        let mut out = Vec::new();
        let mut ops = 0;
        let mut after: Option<Vec<u8>> = match after {
            Some(seq) => Some(seq.to_be_bytes().to_vec()),
            None => self.before_head(),
        };
        while let Some(key) = tx.next_key(Cf::Outbox, &[], after.as_deref())? {
            let bytes = tx.get(Cf::Outbox, &key)?.unwrap_or_default();
            let entry: OutboxEntry = decode(Cf::Outbox, &bytes)?;
            ops += entry.ops.len();
            out.push((seq_of(&key), entry));
            if ops >= max_ops {
                break;
            }
            after = Some(key);
        }
        Ok(out)
    }

    /// Removes entries up to and including `seq` (they are in the sink).
    pub fn remove_outbox_through(&self, seq: u64) -> Result<(), StoreError> {
        let tx = self.begin();
        let mut after: Option<Vec<u8>> = self.before_head();
        while let Some(key) = tx.next_key(Cf::Outbox, &[], after.as_deref())? {
            if seq_of(&key) > seq {
                break;
            }
            tx.delete(Cf::Outbox, &key)?;
            after = Some(key);
        }
        tx.commit()?;
        self.outbox_head.fetch_max(seq + 1, Ordering::SeqCst);
        Ok(())
    }

    /// Number of entries waiting for the sink, from memory: entries are appended
    /// with increasing sequence numbers and removed oldest first, so they are the
    /// range [head, next). A number reserved by a transaction that has not committed
    /// yet counts too, which only ever delays an idle advance. (Counting keys would
    /// step over the tombstones of every removed entry, on every status tick.)
    pub(crate) fn outbox_len(&self) -> Result<u64, StoreError> {
        let next = self.next_outbox_seq.load(Ordering::SeqCst);
        let head = self.outbox_head.load(Ordering::SeqCst);
        Ok(next.saturating_sub(head))
    }
}

fn seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}
