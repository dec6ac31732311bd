//! The event log: decoded changes in commit-LSN order, kept for `replay` with a
//! retention window by age and size. Written by the engine in the same RocksDB
//! transaction as the state change (key: commit LSN ++ change number; the
//! transaction's `TxnMeta` under change number `u32::MAX`).

use std::sync::atomic::Ordering;

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

    /// Deletes whole logged transactions, oldest first, while they were committed
    /// before `older_than` or lie more than `max_wal_bytes` of WAL behind `newest`
    /// (the log holds only the decoded columns of published changes, so the WAL
    /// span it covers bounds its size). Deletes at most about 50,000 entries per
    /// call, so the caller (the streaming loop) never stalls on it; returns entries
    /// deleted. Starts after what earlier calls deleted, not over their tombstones.
    pub fn trim_event_log(
        &self,
        older_than: Timestamp,
        newest: Lsn,
        max_wal_bytes: u64,
    ) -> Result<u64, StoreError> {
        const BUDGET: u64 = 50_000;
        let floor = Lsn(self.event_log_floor.load(Ordering::SeqCst));
        let mut start = floor.to_be_bytes().to_vec();
        start.extend_from_slice(&0u32.to_be_bytes());
        let tx = self.begin();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut deleted = 0u64;
        let mut new_floor = floor;
        'pages: while deleted < BUDGET {
            let page = tx.scan(Cf::EventLog, &start, 1024)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start = last.clone();
            start.push(0);
            for (key, value) in page {
                let meta = is_meta(&key).then(|| decode::<TxnMeta>(Cf::EventLog, &value));
                pending.push(key);
                let Some(meta) = meta else { continue };
                let meta = meta?;
                let lsn = lsn_of(pending.last().expect("just pushed"));
                let expired = meta.commit_time < older_than
                    || newest.saturating_bytes_since(lsn) > max_wal_bytes;
                if !expired {
                    break 'pages;
                }
                for k in pending.drain(..) {
                    tx.delete(Cf::EventLog, &k)?;
                    deleted += 1;
                }
                new_floor = Lsn(lsn.0 + 1);
            }
        }
        tx.commit()?;
        self.event_log_floor
            .fetch_max(new_floor.0, Ordering::SeqCst);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{MessageRow, Row};
    use crate::engine::event_key;
    use crate::store::StoreOptions;

    fn log(store: &Store, lsn: u64, time: i64) {
        let tx = store.begin();
        let change = Change::Insert(Row::Message(MessageRow {
            id: format!("m{lsn}"),
            lead_id: None,
            channel: None,
            direction: None,
            sent_by: None,
            sent_by_user_id: None,
            ai_draft_id: None,
            sent_at: None,
        }));
        tx.put_record(Cf::EventLog, &event_key(Lsn(lsn), 0), &change)
            .unwrap();
        let meta = TxnMeta {
            commit_lsn: Lsn(lsn),
            end_lsn: Lsn(lsn + 1),
            commit_time: Timestamp(time),
        };
        tx.put_record(Cf::EventLog, &event_key(Lsn(lsn), u32::MAX), &meta)
            .unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn retention_trims_whole_transactions_by_age_and_by_wal_span() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        for i in 1..=10u64 {
            log(&store, i * 100, i as i64 * 1_000);
        }
        // By age: transactions committed before t=3,500 go.
        let deleted = store
            .trim_event_log(Timestamp(3_500), Lsn(1_000), u64::MAX)
            .unwrap();
        assert_eq!(deleted, 6);
        assert_eq!(store.logged_transactions(Lsn(0), 100).unwrap().len(), 7);
        // By WAL span: at most 250 bytes behind LSN 1,000 stay (800, 900, 1,000).
        let deleted = store.trim_event_log(Timestamp(0), Lsn(1_000), 250).unwrap();
        assert_eq!(deleted, 8);
        let left: Vec<Lsn> = store
            .logged_transactions(Lsn(0), 100)
            .unwrap()
            .iter()
            .map(|t| t.meta.commit_lsn)
            .collect();
        assert_eq!(left, vec![Lsn(800), Lsn(900), Lsn(1_000)]);
        // Nothing expired: nothing deleted.
        assert_eq!(
            store.trim_event_log(Timestamp(0), Lsn(1_000), 250).unwrap(),
            0
        );
    }
}
