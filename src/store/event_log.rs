//! The event log: decoded changes in commit-LSN order, kept for `replay` with a
//! retention window by age and size. Written by the engine in the same RocksDB
//! transaction as the state change:
//!
//! ```text
//!  key                                     value
//!  commit LSN u64 BE ++ first seq u32 BE   CHUNK ++ the changes numbered from first seq
//!                                          (layout 1: one change, without the marker)
//!  commit LSN u64 BE ++ u32::MAX           the transaction's TxnMeta
//! ```
//!
//! A transaction is in the log once its meta entry is. It is logged in the chunks it
//! is applied in (one for a transaction applied whole), one write per chunk rather
//! than one per change. Entries of layout 1 (one change each, written by earlier
//! releases) stay readable: a change's encoding never starts with [`CHUNK`].
//!
//! A transaction streamed again after a crash is logged again, over what its first
//! application logged; chunk bounds can differ between the two (another chunk size,
//! or layout 1 before), so a reader assembles a transaction from its pieces by
//! change number: overlapping pieces hold the same changes, and each number is
//! taken once.

use std::sync::atomic::Ordering;

use super::{Cf, Store, StoreError, StoreTxn, decode, meta};
use crate::change::{Change, Timestamp, TxnMeta};
use crate::lsn::Lsn;

/// Changes [`Store::logged_transactions`] reads at most at once (past its first
/// transaction, which comes whole).
#[cfg(not(test))]
pub(super) const CHANGES_PER_READ: usize = 100_000;
#[cfg(test)]
pub(crate) const CHANGES_PER_READ: usize = 8;

/// Entries one [`Store::trim_event_log`] steps over at most. A trim reads them
/// and writes one key, so it can keep up with a drain: the retention runs every
/// 5 s, and a drain of 21,000 changes/s appends about 17,000 entries/s (a
/// chunk and a meta entry per transaction). At 50,000 a 10M-change drain left
/// the log twice the size its retention allows.
#[cfg(not(test))]
const TRIM_BUDGET: u64 = 1_000_000;
#[cfg(test)]
const TRIM_BUDGET: u64 = 50_000;

/// Change number of a transaction's meta entry.
const META_SEQ: u32 = u32::MAX;

/// First byte of a chunk entry. A layout-1 entry is one postcard-encoded
/// [`Change`], whose first byte is its variant's index (0 to 3).
const CHUNK: u8 = 0xFF;

/// Event log key: commit LSN then change number, both big-endian.
pub(crate) fn event_key(commit_lsn: Lsn, seq: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&commit_lsn.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&key[8..12]);
    u32::from_be_bytes(b)
}

/// The changes of an entry that is not a meta entry, either layout.
fn decode_changes(bytes: &[u8]) -> Result<Vec<Change>, StoreError> {
    match bytes.split_first() {
        Some((&CHUNK, chunk)) => decode(Cf::EventLog, chunk),
        _ => Ok(vec![decode(Cf::EventLog, bytes)?]),
    }
}

/// A transaction's changes from its logged pieces (first change number, changes),
/// in key order (by first change number), each change number taken once.
fn assemble(commit_lsn: Lsn, pieces: Vec<(u32, Vec<Change>)>) -> Result<Vec<Change>, StoreError> {
    let mut changes = Vec::new();
    for (first, piece) in pieces {
        let first = first as usize;
        if first > changes.len() {
            return Err(StoreError::Corrupt {
                cf: Cf::EventLog.name(),
                reason: format!(
                    "the transaction committed at {commit_lsn} lacks changes {} to {}",
                    changes.len(),
                    first - 1
                ),
            });
        }
        changes.extend(piece.into_iter().skip(changes.len() - first));
    }
    Ok(changes)
}

impl StoreTxn<'_> {
    /// Logs changes of a transaction, numbered from `first_seq`.
    pub(crate) fn log_changes(
        &self,
        commit_lsn: Lsn,
        first_seq: u32,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let value =
            postcard::to_extend(&changes, vec![CHUNK]).expect("postcard serializes every change");
        self.put(Cf::EventLog, &event_key(commit_lsn, first_seq), &value)
    }

    /// Logs a transaction's meta, which completes it in the log.
    pub(crate) fn log_transaction(&self, meta: &TxnMeta) -> Result<(), StoreError> {
        self.put_record(Cf::EventLog, &event_key(meta.commit_lsn, META_SEQ), meta)
    }
}

/// One logged source transaction.
pub struct LoggedTxn {
    pub meta: TxnMeta,
    pub changes: Vec<Change>,
}

/// Commit LSN of an event log key (without its family tag).
pub(super) fn lsn_of(key: &[u8]) -> Lsn {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    Lsn(u64::from_be_bytes(b))
}

fn is_meta(key: &[u8]) -> bool {
    key[8..12] == META_SEQ.to_be_bytes()
}

impl Store {
    /// Complete logged transactions with commit LSN ≥ `from`, in order, up to `limit`
    /// of them and, past the first, up to [`CHANGES_PER_READ`] changes in all.
    pub fn logged_transactions(
        &self,
        from: Lsn,
        limit: usize,
    ) -> Result<Vec<LoggedTxn>, StoreError> {
        let tx = self.begin();
        let mut out = Vec::new();
        let mut pieces = Vec::new();
        let mut pieces_lsn = None;
        let mut read = 0;
        let from = from.max(self.event_log_floor());
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
                let lsn = lsn_of(&key);
                if pieces_lsn != Some(lsn) {
                    // Pieces without a meta entry: a transaction whose application
                    // never finished (it is streamed again, logged again, whole).
                    pieces.clear();
                    pieces_lsn = Some(lsn);
                }
                if is_meta(&key) {
                    let changes = assemble(lsn, std::mem::take(&mut pieces))?;
                    read += changes.len();
                    out.push(LoggedTxn {
                        meta: decode(Cf::EventLog, &bytes)?,
                        changes,
                    });
                    if out.len() >= limit || read >= CHANGES_PER_READ {
                        return Ok(out);
                    }
                } else {
                    pieces.push((seq_of(&key), decode_changes(&bytes)?));
                }
            }
            after = Some(last);
        }
    }

    /// Commit LSN of the first logged transaction committed at or after `time`.
    pub(crate) fn first_logged_at(&self, time: Timestamp) -> Result<Option<Lsn>, StoreError> {
        let tx = self.begin();
        // Keys from the floor on: `after` is exclusive, so start after the last
        // key below it.
        let floor = self.event_log_floor();
        let mut after: Option<Vec<u8>> =
            (floor > Lsn::ZERO).then(|| event_key(Lsn(floor.0 - 1), META_SEQ).to_vec());
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

    /// Commit LSN below which the event log is trimmed.
    pub(crate) fn event_log_floor(&self) -> Lsn {
        Lsn(self.event_log_floor.load(Ordering::SeqCst))
    }

    /// Trims whole logged transactions, oldest first, while they were committed
    /// before `older_than` or lie more than `max_wal_bytes` of WAL behind `newest`
    /// (the log holds only the decoded columns of published changes, so the WAL
    /// span it covers bounds its size). Steps over at most about [`TRIM_BUDGET`]
    /// entries per call. Returns the entries trimmed.
    ///
    /// A trim writes no tombstones: it raises the log's floor
    /// ([`meta::EVENT_LOG_FLOOR`]), below which no read looks, and then drops the
    /// SST files that lie wholly below it. Tombstones at the head of the log,
    /// flushed beside the appends at its tail, made every flushed file span the
    /// whole log, so each L0 -> L1 compaction rewrote all of it; without them
    /// the log's files follow its key order and compactions hardly rewrite it.
    /// Entries below the floor in a file that also holds newer ones stay on disk
    /// until that file is dropped or compacted (at most a file's worth).
    /// Public for the backlog bench, which runs the daemon's retention without it.
    pub fn trim_event_log(
        &self,
        older_than: Timestamp,
        newest: Lsn,
        max_wal_bytes: u64,
    ) -> Result<u64, StoreError> {
        let before = self.event_log_floor();
        let trimmed = self.raise_event_log_floor(older_than, newest, max_wal_bytes, TRIM_BUDGET)?;
        let floor = self.event_log_floor();
        if floor > before {
            // The files go only once the floor that hides them is durable: a
            // crash must never leave a log whose head lost part of a transaction
            // that its persisted floor still shows.
            self.sync()?;
            let (physical, tag) = Cf::EventLog.physical();
            let handle = self.db().cf_handle(physical).expect("column family exists");
            let last_below = event_key(Lsn(floor.0 - 1), META_SEQ);
            self.db()
                .delete_file_in_range_cf(handle, vec![tag], [&[tag][..], &last_below].concat())
                .map_err(|e| self.err(e))?;
        }
        Ok(trimmed)
    }

    /// Raises the floor past the expired transactions from the current floor
    /// on, stepping over about `budget` entries at most, and persists it.
    /// Returns the entries now below it.
    fn raise_event_log_floor(
        &self,
        older_than: Timestamp,
        newest: Lsn,
        max_wal_bytes: u64,
        budget: u64,
    ) -> Result<u64, StoreError> {
        let floor = self.event_log_floor();
        let mut start = floor.to_be_bytes().to_vec();
        start.extend_from_slice(&0u32.to_be_bytes());
        let tx = self.begin();
        let mut pending = 0u64;
        let mut trimmed = 0u64;
        let mut new_floor = floor;
        'pages: while trimmed < budget {
            let page = tx.scan(Cf::EventLog, &start, 1024)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start = last.clone();
            start.push(0);
            for (key, value) in page {
                pending += 1;
                if !is_meta(&key) {
                    continue;
                }
                let meta = decode::<TxnMeta>(Cf::EventLog, &value)?;
                let lsn = lsn_of(&key);
                let expired = meta.commit_time < older_than
                    || newest.saturating_bytes_since(lsn) > max_wal_bytes;
                if !expired {
                    break 'pages;
                }
                trimmed += std::mem::take(&mut pending);
                new_floor = Lsn(lsn.0 + 1);
            }
        }
        if new_floor > floor {
            tx.put_record(Cf::Meta, meta::EVENT_LOG_FLOOR, &new_floor)?;
            tx.commit()?;
            self.event_log_floor
                .fetch_max(new_floor.0, Ordering::SeqCst);
        }
        Ok(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::event_key;
    use super::*;
    use crate::change::{MessageRow, Row};
    use crate::store::StoreOptions;

    fn change(id: &str) -> Change {
        Change::Insert(Row::Message(MessageRow {
            id: id.into(),
            lead_id: None,
            channel: None,
            direction: None,
            sent_by: None,
            sent_by_user_id: None,
            ai_draft_id: None,
            sent_at: None,
        }))
    }

    fn meta(lsn: u64, time: i64) -> TxnMeta {
        TxnMeta {
            commit_lsn: Lsn(lsn),
            end_lsn: Lsn(lsn + 1),
            commit_time: Timestamp(time),
        }
    }

    /// A one-change transaction in layout 1 (one entry per change).
    fn log(store: &Store, lsn: u64, time: i64) {
        let tx = store.begin();
        tx.put_record(
            Cf::EventLog,
            &event_key(Lsn(lsn), 0),
            &change(&format!("m{lsn}")),
        )
        .unwrap();
        tx.log_transaction(&meta(lsn, time)).unwrap();
        tx.commit().unwrap();
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        (dir, store)
    }

    fn changes(range: std::ops::Range<u32>) -> Vec<Change> {
        range.map(|i| change(&format!("c{i}"))).collect()
    }

    #[test]
    fn a_transaction_logged_again_in_other_chunks_reads_back_once_in_order() {
        let (_dir, store) = open();
        let all = changes(0..10);
        let tx = store.begin();
        // First application: changes 0..=2 one entry each (layout 1), then a chunk
        // of 3..7, then a crash before the meta.
        for (seq, c) in all[..3].iter().enumerate() {
            tx.put_record(Cf::EventLog, &event_key(Lsn(500), seq as u32), c)
                .unwrap();
        }
        tx.log_changes(Lsn(500), 3, &all[3..7]).unwrap();
        // Streamed again: chunks 0..4 and 4..10, then the meta.
        tx.log_changes(Lsn(500), 0, &all[..4]).unwrap();
        tx.log_changes(Lsn(500), 4, &all[4..]).unwrap();
        tx.log_transaction(&meta(500, 1)).unwrap();
        tx.commit().unwrap();

        let logged = store.logged_transactions(Lsn(0), 10).unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].changes, all);
    }

    #[test]
    fn a_read_stops_after_the_transaction_that_reaches_the_change_budget() {
        let (_dir, store) = open();
        let tx = store.begin();
        for lsn in [100, 200, 300, 400] {
            tx.log_changes(Lsn(lsn), 0, &changes(0..3)).unwrap();
            tx.log_transaction(&meta(lsn, 1)).unwrap();
        }
        tx.commit().unwrap();

        let read: Vec<Lsn> = store
            .logged_transactions(Lsn(0), 10)
            .unwrap()
            .iter()
            .map(|t| t.meta.commit_lsn)
            .collect();
        assert_eq!(
            read,
            vec![Lsn(100), Lsn(200), Lsn(300)],
            "9 changes read, budget 8"
        );
        let rest = store.logged_transactions(Lsn(301), 10).unwrap();
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn pieces_of_a_transaction_that_never_finished_are_not_read_into_the_next() {
        let (_dir, store) = open();
        let tx = store.begin();
        tx.log_changes(Lsn(100), 0, &changes(0..3)).unwrap();
        tx.log_changes(Lsn(200), 0, &changes(5..7)).unwrap();
        tx.log_transaction(&meta(200, 1)).unwrap();
        tx.log_changes(Lsn(300), 0, &changes(9..10)).unwrap();
        tx.commit().unwrap();

        let logged = store.logged_transactions(Lsn(0), 10).unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].meta.commit_lsn, Lsn(200));
        assert_eq!(logged[0].changes, changes(5..7));
    }

    #[test]
    fn a_transaction_missing_changes_is_a_corruption_naming_them() {
        let (_dir, store) = open();
        let tx = store.begin();
        tx.log_changes(Lsn(100), 0, &changes(0..3)).unwrap();
        tx.log_changes(Lsn(100), 5, &changes(5..7)).unwrap();
        tx.log_transaction(&meta(100, 1)).unwrap();
        tx.commit().unwrap();

        let err = store.logged_transactions(Lsn(0), 10).err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("event_log") && text.contains("lacks changes 3 to 4"),
            "{text}"
        );
    }

    #[test]
    fn retention_trims_whole_transactions_by_age_and_by_wal_span() {
        let (_dir, store) = open();
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

    #[test]
    fn a_long_trim_stops_at_its_budget() {
        let (_dir, store) = open();
        // 30,000 one-change transactions: 60,000 entries, all expired.
        for i in 1..=30_000u64 {
            log(&store, i * 100, 1);
        }
        let first = store
            .trim_event_log(Timestamp(2), Lsn(u64::MAX), u64::MAX)
            .unwrap();
        assert!((50_000..52_000).contains(&first), "{first}");
        let second = store
            .trim_event_log(Timestamp(2), Lsn(u64::MAX), u64::MAX)
            .unwrap();
        assert_eq!(first + second, 60_000);
        assert!(store.logged_transactions(Lsn(0), 10).unwrap().is_empty());
    }

    /// `n` one-change transactions from LSN `first` on, 100 apart, committed at t=1,
    /// flushed to an SST file of their own.
    fn log_file(store: &Store, first: u64, n: u64) {
        for i in 0..n {
            log(store, first + i * 100, 1);
        }
        store.db().flush_cf(event_log_family(store)).unwrap();
    }

    fn event_log_family(store: &Store) -> &rocksdb::ColumnFamily {
        store.db().cf_handle(Cf::EventLog.physical().0).unwrap()
    }

    fn event_log_files(store: &Store) -> Vec<rocksdb::LiveFile> {
        let name = Cf::EventLog.physical().0;
        let files = store.db().live_files().unwrap();
        files
            .into_iter()
            .filter(|f| f.column_family_name == name)
            .collect()
    }

    #[test]
    fn a_trim_writes_no_tombstones_and_drops_the_files_below_the_floor() {
        let (_dir, store) = open();
        // Three files of 100 transactions each, moved out of L0 (a trim drops
        // files of L1 and below).
        log_file(&store, 100, 100);
        log_file(&store, 145_000, 100);
        log_file(&store, 200_000, 100);
        store
            .db()
            .compact_range_cf(event_log_family(&store), None::<&[u8]>, None::<&[u8]>);
        let files = event_log_files(&store);
        assert!(
            files.len() >= 2 && files.iter().all(|f| f.level > 0),
            "{files:?}"
        );
        assert!(
            files
                .iter()
                .any(|f| lsn_of(&f.end_key.as_ref().unwrap()[1..]) < Lsn(150_000))
        );
        // Everything below LSN 150,000 goes: the first file and half the second.
        let trimmed = store
            .trim_event_log(Timestamp(0), Lsn(250_000), 100_000)
            .unwrap();
        assert_eq!(trimmed, 2 * 150);
        let property = |name: &str| {
            store
                .db()
                .property_int_value_cf(event_log_family(&store), name)
                .unwrap()
                .unwrap()
        };
        assert_eq!(property("rocksdb.num-deletes-active-mem-table"), 0);
        assert_eq!(property("rocksdb.num-entries-active-mem-table"), 0);
        let oldest = store.logged_transactions(Lsn(0), 1).unwrap();
        assert_eq!(oldest[0].meta.commit_lsn, Lsn(150_000));
        // No file left holds only trimmed entries.
        for file in event_log_files(&store) {
            let largest = file.end_key.clone().unwrap();
            assert!(lsn_of(&largest[1..]) >= Lsn(150_000), "{file:?}");
        }
        // Every transaction above the floor reads back (in reads of a few each).
        let mut count = 0;
        let mut next = Lsn(0);
        loop {
            let txns = store.logged_transactions(next, 1_000).unwrap();
            let Some(last) = txns.last() else { break };
            next = Lsn(last.meta.commit_lsn.0 + 1);
            count += txns.len();
        }
        assert_eq!(count, 150);
    }

    #[test]
    fn the_floor_outlives_a_restart_and_hides_what_is_still_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            for i in 1..=10u64 {
                log(&store, i * 100, i as i64 * 1_000);
            }
            // Still in the memtable (and the WAL): nothing to drop, all hidden.
            assert_eq!(
                store
                    .trim_event_log(Timestamp(5_500), Lsn(1_000), u64::MAX)
                    .unwrap(),
                10
            );
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let lsns = |from: u64| -> Vec<Lsn> {
            store
                .logged_transactions(Lsn(from), 100)
                .unwrap()
                .iter()
                .map(|t| t.meta.commit_lsn)
                .collect()
        };
        assert_eq!(lsns(0), [600, 700, 800, 900, 1_000].map(Lsn));
        assert_eq!(lsns(300), lsns(0));
        assert_eq!(lsns(800), [800, 900, 1_000].map(Lsn));
        assert_eq!(store.first_logged_at(Timestamp(0)).unwrap(), Some(Lsn(600)));
        assert_eq!(
            store.first_logged_at(Timestamp(7_000)).unwrap(),
            Some(Lsn(700))
        );
        drop(store);
        let summary = super::super::StateSummary::read(dir.path()).unwrap();
        assert_eq!(summary.oldest_event_lsn, Some(Lsn(600)));
    }

    #[test]
    fn clearing_the_log_starts_it_over_below_the_old_floor() {
        let (_dir, store) = open();
        for i in 1..=5u64 {
            log(&store, i * 100, 1);
        }
        store.trim_event_log(Timestamp(2), Lsn(500), 0).unwrap();
        assert!(store.logged_transactions(Lsn(0), 10).unwrap().is_empty());
        // An initial load clears the log; another source's LSNs may be lower.
        store.clear(&[Cf::EventLog]).unwrap();
        log(&store, 50, 1);
        let logged = store.logged_transactions(Lsn(0), 10).unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].meta.commit_lsn, Lsn(50));
    }
}
