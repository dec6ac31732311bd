//! One sink transaction's worth of the outbox: entries read oldest first, each
//! anchor's operations coalesced to the last, and the rule for how long the sink
//! task lets such a batch grow before it writes it.
//!
//! ```text
//!  outbox  seq 7 [a b] · seq 8 [b c] · seq 9 [a] · seq 10 [d …(part of a txn)
//!            │ read a part at a time, folded in order
//!            ▼
//!  batch   a←9  b←8  c←8  d←10   last_seq 10, progress = end LSN of 9
//! ```
//!
//! Why: an anchor is rewritten several times as its thread goes on (a setter
//! reply, then the AI job, its start and end…). While the daemon drains a
//! backlog, one batch that spans more of the outbox writes such an anchor once
//! instead of once per rewrite: fewer sink rows, less Postgres CPU and less WAL
//! (which the walsender must read through before it reaches new traffic).
//! Entries are read in sequence order, the order the engine committed them in,
//! so an anchor's last operation is also its latest in LSN order: the rule the
//! sink applies between batches holds within one.

use std::collections::HashMap;
use std::time::Duration;

use crate::change::Timestamp;
use crate::lsn::Lsn;
use crate::row::SinkOp;
use crate::store::{OutboxEntry, Store, StoreError};

/// How far one batch may read into the outbox, in operations before coalescing,
/// as a multiple of its limit of distinct anchors: bounds the reading (and the
/// memory of one part read) when few operations coalesce.
const READ_OPS_PER_BATCH_OP: usize = 8;

/// Operations read from the outbox at a time: what one read holds in memory
/// besides the batch.
const READ_PART_OPS: usize = 1_000;

/// A batch is let grow (see [`Batch::may_wait`]) only while the newest
/// transaction in it is at least this old: the daemon is that far behind the
/// source, so a short wait changes little for how fresh the sink is. Live
/// traffic is never held back.
pub(super) const BEHIND: Duration = Duration::from_secs(10);
/// At most this long, and at most a tenth of how far behind the daemon is.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(30);
/// A batch no longer waits once the outbox has gained nothing for this long. The
/// engine commits every 20 ms or so while it drains; a longer gap (a large
/// transaction's chunk, a busy machine) still lets the batch grow.
pub(super) const QUIET: Duration = Duration::from_millis(500);

/// Outbox entries read for one sink transaction, each anchor's operations
/// coalesced to the last.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// The last operation per inbound message id, with the end LSN of its source
    /// transaction.
    ops: HashMap<String, (Lsn, SinkOp)>,
    /// Sequence number of the last entry read: the outbox is trimmed through it.
    pub(super) last_seq: Option<u64>,
    /// End LSN of the last complete source transaction read: the part of a
    /// transaction read without its last entry moves no progress.
    pub(super) progress: Option<Lsn>,
    /// Commit time of the oldest transaction read.
    pub(super) oldest_commit: Option<Timestamp>,
    /// Commit time of the newest transaction read.
    newest_commit: Option<Timestamp>,
    /// Operations read, before coalescing.
    read: usize,
}

impl Batch {
    /// Whether nothing was read.
    pub(super) fn is_empty(&self) -> bool {
        self.last_seq.is_none()
    }

    /// Operations read from the outbox, before coalescing.
    pub(super) fn ops_read(&self) -> usize {
        self.read
    }

    /// The coalesced operations, one per anchor, each with the end LSN of its
    /// source transaction.
    pub(super) fn into_ops(self) -> Vec<(Lsn, SinkOp)> {
        self.ops.into_values().collect()
    }

    fn add(&mut self, seq: u64, entry: OutboxEntry) {
        self.read += entry.ops.len();
        for op in entry.ops {
            self.ops
                .insert(op.inbound_message_id().to_owned(), (entry.end_lsn, op));
        }
        if entry.complete {
            self.progress = self.progress.max(Some(entry.end_lsn));
        }
        self.oldest_commit = Some(
            self.oldest_commit
                .map_or(entry.commit_time, |t| t.min(entry.commit_time)),
        );
        self.newest_commit = self.newest_commit.max(Some(entry.commit_time));
        self.last_seq = Some(seq);
    }

    /// Full: `batch_ops` distinct anchors, or the bound on operations read.
    pub(super) fn is_full(&self, batch_ops: usize) -> bool {
        self.ops.len() >= batch_ops || self.read >= batch_ops.saturating_mul(READ_OPS_PER_BATCH_OP)
    }

    /// Reads the entries after the last one read, [`READ_PART_OPS`] operations
    /// at a time, until the batch is full or the outbox ends; whole entries only.
    /// Returns the number of entries read.
    pub(super) fn read_more(
        &mut self,
        store: &Store,
        batch_ops: usize,
    ) -> Result<usize, StoreError> {
        let mut entries_read = 0;
        while !self.is_full(batch_ops) {
            let entries = store.read_outbox_after(self.last_seq, READ_PART_OPS)?;
            let ops: usize = entries.iter().map(|(_, e)| e.ops.len()).sum();
            if entries.is_empty() {
                break;
            }
            for (seq, entry) in entries {
                self.add(seq, entry);
                entries_read += 1;
                if self.is_full(batch_ops) {
                    break;
                }
            }
            // A part shorter than asked for is the end of the outbox.
            if ops < READ_PART_OPS {
                break;
            }
        }
        Ok(entries_read)
    }

    /// Whether a batch that is not full may wait for more of the outbox, having
    /// waited `waited` so far, with nothing new in the outbox for `quiet`, when
    /// the source server's clock (sent with every replication message, the clock
    /// of the commit times) reads `now`: only while its newest transaction is at
    /// least [`BEHIND`] old, for at most a tenth of that age (and [`MAX_WAIT`]),
    /// and while the outbox keeps growing (quiet for less than [`QUIET`]: once it
    /// stops, the daemon has reached the end of what the source sent).
    pub(super) fn may_wait(&self, waited: Duration, quiet: Duration, now: Timestamp) -> bool {
        let Some(newest) = self.newest_commit else {
            return false;
        };
        let behind = Duration::from_micros(u64::try_from(now.0 - newest.0).unwrap_or(0));
        behind >= BEHIND && waited < (behind / 10).min(MAX_WAIT) && quiet < QUIET
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::TimingRow;

    /// An upsert of anchor `id` whose content names its LSN.
    fn upsert(id: &str, lsn: u64) -> SinkOp {
        let row = TimingRow::unanswered(format!("client-{lsn}"), "lead", "sms", id, Timestamp(0));
        SinkOp::Upsert {
            row,
            source_lsn: Lsn(lsn),
        }
    }

    fn delete(id: &str) -> SinkOp {
        SinkOp::Delete {
            inbound_message_id: id.into(),
        }
    }

    fn entry(end_lsn: u64, complete: bool, ops: Vec<SinkOp>) -> OutboxEntry {
        OutboxEntry {
            end_lsn: Lsn(end_lsn),
            commit_time: Timestamp(end_lsn as i64 * 1_000_000),
            complete,
            ops,
        }
    }

    fn store_with(entries: &[OutboxEntry]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        for e in entries {
            let tx = store.begin();
            tx.push_outbox(e).unwrap();
            tx.commit().unwrap();
        }
        (dir, store)
    }

    fn ops_by_id(batch: Batch) -> Vec<(String, Lsn, Option<String>)> {
        let mut ops: Vec<_> = batch
            .into_ops()
            .into_iter()
            .map(|(lsn, op)| {
                let client = match &op {
                    SinkOp::Upsert { row, .. } => Some(row.client_id.clone()),
                    SinkOp::Delete { .. } => None,
                };
                (op.inbound_message_id().to_string(), lsn, client)
            })
            .collect();
        ops.sort();
        ops
    }

    #[test]
    fn an_anchor_rewritten_across_entries_is_written_once_with_its_last_op() {
        let (_dir, store) = store_with(&[
            entry(1, true, vec![upsert("a", 1), upsert("b", 1)]),
            entry(2, true, vec![upsert("b", 2), upsert("c", 2)]),
            entry(3, true, vec![delete("c"), upsert("a", 3)]),
        ]);
        let mut batch = Batch::default();
        batch.read_more(&store, 100).unwrap();
        assert_eq!(batch.ops_read(), 6);
        assert_eq!(batch.last_seq, Some(2));
        assert_eq!(batch.progress, Some(Lsn(3)));
        assert_eq!(
            ops_by_id(batch),
            vec![
                ("a".into(), Lsn(3), Some("client-3".into())),
                ("b".into(), Lsn(2), Some("client-2".into())),
                ("c".into(), Lsn(3), None),
            ]
        );
    }

    #[test]
    fn a_transaction_read_without_its_last_entry_moves_no_progress() {
        let (_dir, store) = store_with(&[
            entry(1, true, vec![upsert("a", 1)]),
            entry(2, false, vec![upsert("b", 2)]),
        ]);
        let mut batch = Batch::default();
        batch.read_more(&store, 100).unwrap();
        assert_eq!(batch.last_seq, Some(1));
        assert_eq!(batch.progress, Some(Lsn(1)));
    }

    #[test]
    fn reading_stops_at_the_entry_that_fills_the_batch_and_goes_on_from_there() {
        // Distinct anchors fill a batch of 3 within the second entry.
        let (_dir, store) = store_with(&[
            entry(1, true, vec![upsert("a", 1), upsert("b", 1)]),
            entry(2, true, vec![upsert("c", 2), upsert("d", 2)]),
            entry(3, true, vec![upsert("e", 3)]),
        ]);
        let mut batch = Batch::default();
        batch.read_more(&store, 3).unwrap();
        assert!(batch.is_full(3));
        assert_eq!((batch.last_seq, batch.progress), (Some(1), Some(Lsn(2))));
        store.remove_outbox_through(1).unwrap();
        let mut next = Batch::default();
        next.read_more(&store, 3).unwrap();
        assert_eq!((next.last_seq, next.progress), (Some(2), Some(Lsn(3))));
    }

    #[test]
    fn the_same_anchor_over_and_over_fills_a_batch_by_the_read_bound() {
        let entries: Vec<_> = (1..=40)
            .map(|i| entry(i, true, vec![upsert("a", i)]))
            .collect();
        let (_dir, store) = store_with(&entries);
        let mut batch = Batch::default();
        batch.read_more(&store, 2).unwrap();
        assert_eq!(batch.ops_read(), 2 * READ_OPS_PER_BATCH_OP);
        assert!(batch.is_full(2));
        assert_eq!(
            ops_by_id(batch),
            vec![("a".into(), Lsn(16), Some("client-16".into()))]
        );
    }

    #[test]
    fn a_batch_reads_on_where_it_stopped_when_the_outbox_grows() {
        let (_dir, store) = store_with(&[entry(1, true, vec![upsert("a", 1)])]);
        let mut batch = Batch::default();
        assert_eq!(batch.read_more(&store, 100).unwrap(), 1);
        assert_eq!(batch.read_more(&store, 100).unwrap(), 0, "nothing new");
        let tx = store.begin();
        tx.push_outbox(&entry(2, true, vec![upsert("a", 2), upsert("b", 2)]))
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(batch.read_more(&store, 100).unwrap(), 1);
        assert_eq!((batch.ops_read(), batch.last_seq), (3, Some(1)));
        assert_eq!(batch.progress, Some(Lsn(2)));
    }

    #[test]
    fn only_a_batch_well_behind_the_source_waits_and_briefly() {
        let mut batch = Batch::default();
        let now = |behind: Duration| Timestamp(1_000_000_000 + behind.as_micros() as i64);
        let (zero, secs) = (Duration::ZERO, Duration::from_secs);
        assert!(!batch.may_wait(zero, zero, now(zero)), "empty");
        batch.add(0, entry(1_000, true, vec![upsert("a", 1)]));
        // Live traffic is written at once.
        assert!(!batch.may_wait(zero, zero, now(Duration::from_millis(50))));
        assert!(!batch.may_wait(zero, zero, now(secs(9))));
        // 20 s behind: up to 2 s; an hour behind: up to MAX_WAIT.
        assert!(batch.may_wait(zero, zero, now(secs(20))));
        assert!(batch.may_wait(Duration::from_millis(1_999), zero, now(secs(20))));
        assert!(!batch.may_wait(secs(2), zero, now(secs(20))));
        let hour = now(secs(3_600));
        assert!(batch.may_wait(MAX_WAIT - Duration::from_millis(1), zero, hour));
        assert!(!batch.may_wait(MAX_WAIT, zero, hour));
        // The outbox stopped growing: the end of the backlog.
        assert!(batch.may_wait(zero, QUIET - Duration::from_millis(1), hour));
        assert!(!batch.may_wait(zero, QUIET, hour));
    }
}
