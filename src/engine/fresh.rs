//! Reads whose answer the engine already knows. Before an insert the engine looks
//! up the id's stored row (to unindex an old version), and the refresh of an
//! inbound message looks up its anchor record (to compare the derivation with what
//! the sink holds). For a new id both are absent, and on a large state each such
//! get still probes the filters of every L0 file and of L1; so does the read of a
//! new job's delay record (to keep a newer one). Where absence is
//! proven, the read of the committed state is skipped; the unit of work's own
//! writes still answer it ([`StoreTxn::get_known_absent`]).
//!
//! ```text
//!  INSERT x, staged, live ──▶ own writes of x? ── yes ─▶ their answer
//!                                   │ no
//!                                   ▼
//!                  absent (skipped read); x's anchor record absent too
//! ```
//!
//! **The claim.** Let T be a transaction of the live stream whose commit LSN is past
//! the state's applied LSN, staged (a small transaction, see `txn.rs`) once the
//! engine has committed a whole transaction since it started or the stream last
//! restarted, and G the staged group it joins (one unit of work, committed with
//! the applied LSN at once). If T inserts row x of `"Message"`, `"AIDraft"` or
//! `"BackgroundJob"` and G's own writes hold no entry for x, the committed state
//! holds no row x; for a message, no anchor record x either; for a job, no delay
//! record x either.
//!
//! **Why.** Postgres sends an INSERT of x only when the source held no row x just
//! before it (ids are unique: the daemon checks each table's id column before it
//! sets [`super::EngineOptions::fresh_inserts`]). Through a shard's row filter too:
//! a row that leaves the filter is sent as a DELETE and one that enters it as an
//! INSERT, so a shard's state mirrors its filtered tables. The committed state holds
//! the source as of the applied LSN: every earlier transaction was committed whole
//! (a group with its applied LSN, a chunked one with its final commit), and none
//! later. A row x there that the source no longer held before T was deleted or
//! renamed by a transaction of G, or by T itself, and that change wrote x into G's
//! writes. So no entry in G's writes means no row x committed.
//!
//! An anchor record x is written only by a refresh that derived an anchor, which
//! needs the inbound message x stored; every change of message x marks x dirty,
//! and every commit but a chunk's (or a partial refresh batch's) refreshes every
//! dirty anchor with it, deleting the record of a message that went. So a committed
//! anchor record x comes with a committed message x, and the second is proven
//! absent above. Records a chunked transaction left to refresh (in the `dirty`
//! family) are refreshed before that transaction ends, or by the first transaction
//! after a restart, before anything is skipped.
//!
//! A delay record x is written only with job x (`put_job`), and the stream deletes
//! it with its job: a record's stamp is the position of the insert that wrote it,
//! always before a later delete's. A load seeds records of the jobs the sink holds
//! before it copies the tables, and removes the seeds of jobs the snapshot does not
//! hold before it ends (`pipeline::kept_delays`); a replay (which may keep a record
//! past its job's re-applied delete until the later insert comes again) never
//! skips. So a committed delay record x comes with a committed job x, proven absent
//! above.
//!
//! **Where the claim does not hold, the reads stay:**
//! - `replay` re-applies inserts onto a state that holds them: its engine has
//!   `force_upsert` and never `fresh_inserts`; `rebuild` (derive_all), `backfill`
//!   and the initial load (bulk, into an emptied state) never set it either.
//! - A chunked transaction (large, or with a TRUNCATE) commits part of itself
//!   before its end; cut by a crash or a dropped stream, it is streamed again from
//!   its start over its own effects. Chunks never skip reads, and since a restart
//!   streams from the applied LSN, the cut transaction is the first one the engine
//!   gets after [`Engine::new`] or [`Engine::discard`]: whatever its size now (the
//!   chunk size is a setting), nothing is skipped until a commit has made it whole.
//! - An insert after a delete (or rename) of the same id in the same transaction or
//!   group: the delete's entry in the group's writes answers the row's read, and the
//!   anchor record is not taken as absent, since the committed state may still hold
//!   it until the refresh at the end of the transaction.
//! - A TRUNCATE makes its transaction a chunked one.
//! - The initial load and the stream do not overlap: the load copies the tables at
//!   the slot's exported snapshot, the state's applied LSN is the slot's consistent
//!   point, and the stream sends only transactions that commit after it.
//! - A re-seeded state (a load after a lost slot, or `backfill`) starts empty.
//! - A quarantined change is applied as a delete, never as an insert; an insert
//!   carries no unchanged TOAST values.
//! - Only an INSERT skips: an UPDATE (one that renames a row too) and a DELETE
//!   read the row, and a job's delay record, as before.
//!
//! With [`super::EngineOptions::verify_known_absent`] (the engine, oracle and
//! pipeline tests) every skipped read is made anyway and panics if it finds its key.

use std::collections::HashSet;

use serde::de::DeserializeOwned;

use super::{AnchorRecord, Engine, EngineError};
use crate::lsn::Lsn;
use crate::store::{Cf, StoreError, StoreTxn, decode};

/// Ids a staged group inserted while its own writes held nothing of them: their
/// anchor records are absent from the committed state (module doc). Facts about
/// the committed state, so they live exactly as long as the group.
#[derive(Default)]
pub(super) struct FreshIds(HashSet<String>);

/// What an application of changes in a staged group may skip.
pub(super) struct Fresh<'t> {
    pub ids: &'t mut FreshIds,
    pub verify: bool,
}

impl Fresh<'_> {
    /// The row `id` of `cf` before it is inserted: the group's own write of it, or
    /// none (the committed state holds none). A message id that the group had not
    /// written has no anchor record committed either, a job id no delay record
    /// (`cf` is then [`Cf::JobDelay`], read after the job's row).
    pub(super) fn row_before_insert<T: DeserializeOwned>(
        &mut self,
        tx: &StoreTxn<'_>,
        cf: Cf,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let value = match tx.own_write(cf, id.as_bytes()) {
            Some(value) => value,
            None => {
                tx.known_absent(cf, id.as_bytes(), self.verify)?;
                if cf == Cf::Messages {
                    self.ids.0.insert(id.to_string());
                }
                None
            }
        };
        value.map(|bytes| decode(cf, &bytes)).transpose()
    }
}

impl Engine {
    /// The anchor record of `inbound_id`: what the sink holds for it.
    pub(super) fn anchor_record(
        &self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
    ) -> Result<Option<AnchorRecord>, EngineError> {
        let key = inbound_id.as_bytes();
        let bytes = match self.group.fresh.0.contains(inbound_id) {
            true => tx.get_known_absent(Cf::Anchors, key, self.options.verify_known_absent)?,
            false => tx.get(Cf::Anchors, key)?,
        };
        Ok(bytes.map(|b| decode(Cf::Anchors, &b)).transpose()?)
    }

    /// Whether the transaction of commit LSN `commit_lsn`, staged now, may skip
    /// the reads of this module.
    pub(super) fn fresh_allowed(&self, commit_lsn: Lsn) -> bool {
        let o = &self.options;
        o.fresh_inserts
            && !o.bulk
            && !o.force_upsert
            && self.fresh_ready
            && self.applied.is_some_and(|applied| commit_lsn >= applied)
    }

    /// Bookkeeping of a commit that made whole transactions durable through
    /// `end_lsn`: the committed state holds whole transactions only.
    pub(super) fn committed_whole(&mut self, end_lsn: Lsn) {
        self.applied = self.applied.map(|applied| applied.max(end_lsn));
        self.fresh_ready = true;
    }
}

#[cfg(test)]
mod tests {
    //! Each exclusion of the module doc, with the safety net on: a test fails (the
    //! net panics) if its exclusion is removed.

    use std::sync::Arc;

    use super::super::EngineOptions;
    use super::*;
    use crate::change::{
        AI_AUTO_SEND_DELAYED, Change, JobRow, LeadRow, MessageRow, Row, Table, Timestamp, TxnMeta,
    };
    use crate::row::SinkOp;
    use crate::store::{Store, StoreOptions};

    fn streamed() -> EngineOptions {
        EngineOptions {
            fresh_inserts: true,
            verify_known_absent: true,
            ..EngineOptions::default()
        }
    }

    fn meta(n: u64) -> TxnMeta {
        TxnMeta {
            commit_lsn: Lsn(0x1000 * n),
            end_lsn: Lsn(0x1000 * n + 0x10),
            commit_time: Timestamp(n as i64),
        }
    }

    fn lead() -> Change {
        Change::Insert(Row::Lead(LeadRow {
            id: "lead-1".into(),
            client_id: Some("client-1".into()),
            email_campaign_id: None,
        }))
    }

    /// Message `id` of lead-1's sms thread, inserted.
    fn message(id: &str, direction: &str, sent_at: Option<i64>) -> MessageRow {
        MessageRow {
            id: id.into(),
            lead_id: Some("lead-1".into()),
            channel: Some("sms".into()),
            direction: Some(direction.into()),
            sent_by: None,
            sent_by_user_id: None,
            ai_draft_id: None,
            sent_at: sent_at.map(Timestamp),
        }
    }

    fn inbound(id: &str, sent_at: Option<i64>) -> Change {
        Change::Insert(Row::Message(message(id, "inbound", sent_at)))
    }

    /// A setter's reply to `msg-1`: it makes `msg-1` an anchor with a row.
    fn reply(id: &str, sent_at: i64) -> Change {
        Change::Insert(Row::Message(MessageRow {
            sent_by: Some("setter".into()),
            sent_by_user_id: Some("user-1".into()),
            ..message(id, "outbound", Some(sent_at))
        }))
    }

    fn upserts(ops: &[SinkOp]) -> usize {
        ops.iter()
            .filter(|op| matches!(op, SinkOp::Upsert { .. }))
            .count()
    }

    /// Applies transaction `n` whole: staged, and committed with its group.
    fn whole(engine: &mut Engine, n: u64, changes: Vec<Change>) {
        engine.apply(meta(n).commit_lsn, changes).unwrap();
        if engine.commit(&meta(n)).unwrap().is_none() {
            engine
                .flush()
                .unwrap()
                .expect("a staged transaction commits");
        }
    }

    fn open() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        (dir, store)
    }

    fn point_reads(store: &Store) -> u64 {
        let counts = store.read_counts();
        counts.read_cache[0].2 + counts.read_cache[1].2
    }

    fn sink_ops(store: &Store) -> Vec<SinkOp> {
        let entries = store.read_outbox(usize::MAX).unwrap();
        if let Some((last, _)) = entries.last() {
            store.remove_outbox_through(*last).unwrap();
        }
        entries.into_iter().flat_map(|(_, e)| e.ops).collect()
    }

    /// Point reads of transaction 2 (inbound `msg-1`) after transaction 1.
    fn reads_of_an_insert(options: EngineOptions) -> u64 {
        let (_dir, store) = open();
        let mut engine = Engine::new(store.clone(), options);
        whole(&mut engine, 1, vec![lead()]);
        let before = point_reads(&store);
        whole(&mut engine, 2, vec![inbound("msg-1", Some(1_000))]);
        point_reads(&store) - before
    }

    #[test]
    fn an_inserted_message_skips_the_reads_of_its_row_and_its_anchor() {
        let read = reads_of_an_insert(EngineOptions::default());
        let skipped = reads_of_an_insert(streamed());
        assert_eq!(skipped + 2, read, "the old row and the anchor record");
    }

    /// A delayed auto-send job of lead-1 for `msg-1`, inserted.
    fn job(id: &str) -> Change {
        Change::Insert(Row::Job(JobRow {
            id: id.into(),
            job_type: Some(AI_AUTO_SEND_DELAYED.into()),
            lead_id: Some("lead-1".into()),
            message_id: Some("msg-1".into()),
            draft_id: Some("draft-1".into()),
            run_at: Some(Timestamp(5_000_000)),
            started_at: None,
            finished_at: None,
            created_at: Some(Timestamp(1_000_000)),
        }))
    }

    /// Point reads of transaction 3 (`job`) after a lead and `msg-1`.
    fn reads_of_a_job_insert(options: EngineOptions, job: Change) -> u64 {
        let (_dir, store) = open();
        let mut engine = Engine::new(store.clone(), options);
        whole(&mut engine, 1, vec![lead()]);
        whole(&mut engine, 2, vec![inbound("msg-1", Some(1_000))]);
        let before = point_reads(&store);
        whole(&mut engine, 3, vec![job]);
        point_reads(&store) - before
    }

    #[test]
    fn an_inserted_job_skips_the_reads_of_its_row_and_its_delay_record() {
        let read = reads_of_a_job_insert(EngineOptions::default(), job("job-1"));
        let skipped = reads_of_a_job_insert(streamed(), job("job-1"));
        assert_eq!(skipped + 2, read, "the old row and the delay record");
    }

    #[test]
    fn a_job_inserted_again_in_its_deleting_transaction_records_its_delay_anew() {
        let (_dir, store) = open();
        let mut engine = Engine::new(store.clone(), streamed());
        whole(&mut engine, 1, vec![lead()]);
        whole(&mut engine, 2, vec![job("job-1")]);
        let delete = Change::Delete {
            table: Table::BackgroundJob,
            id: "job-1".into(),
        };
        whole(&mut engine, 3, vec![delete, job("job-1")]);
        let record = store.begin().get(Cf::JobDelay, b"job-1").unwrap().unwrap();
        let record: crate::engine::JobDelay = decode(Cf::JobDelay, &record).unwrap();
        assert_eq!(record.stamp, (meta(3).commit_lsn, 1), "the insert's record");
    }

    #[test]
    fn the_first_transaction_skips_nothing() {
        // A chunked transaction cut by a crash, streamed again from its start: its
        // first chunk is committed, and it is small enough to be staged now.
        let (_dir, store) = open();
        let mut small_chunks = Engine::new(
            store.clone(),
            EngineOptions {
                chunk_changes: 2,
                ..streamed()
            },
        );
        whole(&mut small_chunks, 1, vec![lead()]);
        let cut = vec![
            inbound("msg-1", Some(1_000)),
            reply("out-1", 2_000),
            inbound("msg-3", Some(3_000)),
        ];
        small_chunks.apply(meta(2).commit_lsn, cut.clone()).unwrap();
        drop(small_chunks);
        sink_ops(&store);

        let mut restarted = Engine::new(store.clone(), streamed());
        whole(&mut restarted, 2, cut);
        assert_eq!(upserts(&sink_ops(&store)), 1, "msg-1 is an anchor");
        let thread = store.begin().scan(Cf::Thread, &[], usize::MAX).unwrap();
        assert_eq!(thread.len(), 3);
    }

    #[test]
    fn a_transaction_before_the_applied_lsn_skips_nothing() {
        let (_dir, store) = open();
        let mut engine = Engine::new(store.clone(), streamed());
        whole(&mut engine, 1, vec![lead()]);
        let txn = vec![inbound("msg-1", Some(1_000)), reply("out-1", 2_000)];
        whole(&mut engine, 2, txn.clone());
        assert_eq!(upserts(&sink_ops(&store)), 1);
        // Applied again over its own effects (a suffix re-applied).
        whole(&mut engine, 2, txn);
        assert_eq!(sink_ops(&store), Vec::new(), "nothing changed");
    }

    #[test]
    fn replay_skips_nothing() {
        let (_dir, store) = open();
        let mut engine = Engine::new(store.clone(), streamed());
        whole(&mut engine, 1, vec![lead()]);
        let txn = vec![inbound("msg-1", Some(1_000)), reply("out-1", 2_000)];
        whole(&mut engine, 2, txn.clone());
        sink_ops(&store);
        // Inserts applied onto a state that holds them, past the applied LSN.
        let mut replay = Engine::new(
            store.clone(),
            EngineOptions {
                force_upsert: true,
                log_events: false,
                ..streamed()
            },
        );
        whole(&mut replay, 3, vec![]);
        whole(&mut replay, 4, txn);
        assert_eq!(upserts(&sink_ops(&store)), 1, "replay re-emits the anchor");
    }

    #[test]
    fn an_insert_after_a_delete_of_its_id_reads_its_anchor() {
        let (_dir, store) = open();
        let mut engine = Engine::new(store.clone(), streamed());
        whole(&mut engine, 1, vec![lead()]);
        whole(
            &mut engine,
            2,
            vec![inbound("msg-1", Some(1_000)), reply("out-1", 2_000)],
        );
        assert_eq!(upserts(&sink_ops(&store)), 1);
        // Deleted and inserted again unsent in one transaction: the anchor record
        // committed by transaction 2 goes, and the sink row with it.
        let delete = Change::Delete {
            table: Table::Message,
            id: "msg-1".into(),
        };
        whole(&mut engine, 3, vec![delete, inbound("msg-1", None)]);
        let ops = sink_ops(&store);
        assert!(
            ops.iter().any(|op| matches!(op, SinkOp::Delete { .. })),
            "{ops:?}"
        );
        assert_eq!(store.begin().get(Cf::Anchors, b"msg-1").unwrap(), None);
    }
}
