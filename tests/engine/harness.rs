//! A real RocksDB in a temp dir, an engine over it, and the sink as a map fed from
//! the outbox exactly as the daemon's sink is.

use std::collections::BTreeMap;
use std::sync::Arc;

use replytime::change::{
    CampaignRow, Change, DraftRow, JobRow, LeadRow, MessageRow, Row, Timestamp, TxnMeta,
};
use replytime::engine::{Engine, EngineError, EngineOptions, TxnOutcome};
use replytime::lsn::Lsn;
use replytime::row::{SinkOp, TimingRow, apply_ops};
use replytime::store::{Store, StoreOptions};

pub struct Harness {
    _dir: Option<tempfile::TempDir>,
    pub engine: Engine,
    pub store: Arc<Store>,
    pub sink: BTreeMap<String, TimingRow>,
    pub next_lsn: u64,
}

/// `options` as the daemon's stream runs them (inserts of new ids skip their
/// lookups), with the safety net on: a skipped read that would have found its key
/// panics.
pub fn streamed(options: EngineOptions) -> EngineOptions {
    EngineOptions {
        fresh_inserts: true,
        verify_known_absent: true,
        ..options
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_options(EngineOptions::default())
    }

    pub fn with_options(options: EngineOptions) -> Self {
        let dir = temp_dir();
        let store = Arc::new(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        Harness {
            _dir: Some(dir),
            engine: Engine::new(store.clone(), streamed(options)),
            store,
            sink: BTreeMap::new(),
            next_lsn: 0x1000,
        }
    }

    /// A harness over an existing store, emptied first: opening RocksDB costs far
    /// more than a short history, so property tests reuse one store.
    pub fn reusing(store: Arc<Store>, options: EngineOptions) -> Self {
        store.clear(&replytime::store::Cf::ALL).unwrap();
        Harness {
            _dir: None,
            engine: Engine::new(store.clone(), streamed(options)),
            store,
            sink: BTreeMap::new(),
            next_lsn: 0x1000,
        }
    }

    pub fn next_meta(&mut self) -> TxnMeta {
        self.next_lsn += 0x100;
        TxnMeta {
            commit_lsn: Lsn(self.next_lsn),
            end_lsn: Lsn(self.next_lsn + 0x10),
            commit_time: Timestamp(self.next_lsn as i64),
        }
    }

    /// Applies one transaction and feeds its outbox entries to the sink map.
    pub fn txn(&mut self, changes: Vec<Change>) -> TxnMeta {
        let meta = self.next_meta();
        self.apply_whole(&meta, &changes).unwrap();
        self.drain_outbox();
        meta
    }

    /// Applies and commits one transaction (the group it is in is flushed at once)
    /// and returns what its commit wrote.
    pub fn apply_whole(
        &mut self,
        meta: &TxnMeta,
        changes: &[Change],
    ) -> Result<TxnOutcome, EngineError> {
        self.engine.apply(meta.commit_lsn, changes.to_vec())?;
        let committed = match self.engine.commit(meta)? {
            Some(committed) => committed,
            None => self.engine.flush()?.expect("a staged transaction commits"),
        };
        assert_eq!(committed.0, *meta, "the commit ends at this transaction");
        Ok(committed.1)
    }

    /// A new engine over the same store (a restart: what the old one held in
    /// memory is gone).
    pub fn restart(&mut self, options: EngineOptions) {
        self.engine = Engine::new(self.store.clone(), streamed(options));
    }

    pub fn drain_outbox(&mut self) -> usize {
        let store = self.store.clone();
        let entries = store.read_outbox(usize::MAX).unwrap();
        let mut ops = 0;
        if let Some((last, _)) = entries.last() {
            store.remove_outbox_through(*last).unwrap();
        }
        for (_, entry) in entries {
            ops += entry.ops.len();
            // The sink orders writes by the entry's end LSN (SPEC 9, a delete has
            // no other): every operation of an entry comes from the transaction
            // that ends there.
            for op in &entry.ops {
                if let SinkOp::Upsert { row, source_lsn } = op {
                    assert_eq!(
                        *source_lsn, entry.end_lsn,
                        "the upsert of {} is of another transaction than its outbox entry",
                        row.inbound_message_id
                    );
                }
            }
            apply_ops(&mut self.sink, entry.ops);
        }
        ops
    }

    pub fn row(&self, inbound: &str) -> &TimingRow {
        self.sink
            .get(inbound)
            .unwrap_or_else(|| panic!("no row for {inbound}: {:?}", self.sink.keys()))
    }
}

/// Seconds since 2024-01-01 as a timestamp.
pub fn t(seconds: f64) -> Timestamp {
    Timestamp(1_704_067_200_000_000 + (seconds * 1_000_000.0).round() as i64)
}

pub fn lead(id: &str, client: &str) -> Change {
    Change::Insert(Row::Lead(LeadRow {
        id: id.into(),
        client_id: Some(client.into()),
        email_campaign_id: None,
    }))
}

pub fn lead_in(id: &str, client: &str, campaign: &str) -> Row {
    Row::Lead(LeadRow {
        id: id.into(),
        client_id: Some(client.into()),
        email_campaign_id: Some(campaign.into()),
    })
}

pub fn campaign(id: &str, min: i32, max: i32) -> Row {
    Row::Campaign(CampaignRow {
        id: id.into(),
        delay_min_seconds: Some(min),
        delay_max_seconds: Some(max),
        response_mode: None,
    })
}

pub fn message(id: &str, lead: &str, direction: &str, at: f64) -> MessageRow {
    MessageRow {
        id: id.into(),
        lead_id: Some(lead.into()),
        channel: Some("sms".into()),
        direction: Some(direction.into()),
        sent_by: None,
        sent_by_user_id: None,
        ai_draft_id: None,
        sent_at: Some(t(at)),
    }
}

pub fn inbound(id: &str, lead: &str, at: f64) -> Change {
    Change::Insert(Row::Message(message(id, lead, "inbound", at)))
}

pub fn outbound(id: &str, lead: &str, at: f64) -> Change {
    Change::Insert(Row::Message(message(id, lead, "outbound", at)))
}

pub fn setter_msg(id: &str, lead: &str, user: &str, at: f64) -> MessageRow {
    MessageRow {
        sent_by: Some("setter".into()),
        sent_by_user_id: Some(user.into()),
        ..message(id, lead, "outbound", at)
    }
}

pub fn setter(id: &str, lead: &str, user: &str, at: f64) -> Change {
    Change::Insert(Row::Message(setter_msg(id, lead, user, at)))
}

pub fn ai_msg(id: &str, lead: &str, draft: &str, at: f64) -> MessageRow {
    MessageRow {
        sent_by: Some("ai".into()),
        ai_draft_id: Some(draft.into()),
        ..message(id, lead, "outbound", at)
    }
}

pub fn ai_send(id: &str, lead: &str, draft: &str, at: f64) -> Change {
    Change::Insert(Row::Message(ai_msg(id, lead, draft, at)))
}

pub fn draft(id: &str, lead: &str, trigger: &str) -> Change {
    Change::Insert(Row::Draft(DraftRow {
        id: id.into(),
        lead_id: Some(lead.into()),
        trigger_message_id: Some(trigger.into()),
        channel: Some("sms".into()),
        response_disposition: Some("AUTO_SENT".into()),
    }))
}

pub fn job_row(id: &str, lead: &str, message: &str, draft: &str, created: f64) -> JobRow {
    JobRow {
        id: id.into(),
        job_type: Some("AI_AUTO_SEND_DELAYED".into()),
        lead_id: Some(lead.into()),
        message_id: Some(message.into()),
        draft_id: Some(draft.into()),
        run_at: Some(t(created + 300.0)),
        started_at: None,
        finished_at: None,
        created_at: Some(t(created)),
    }
}

pub fn job(id: &str, lead: &str, message: &str, draft: &str, created: f64) -> Change {
    Change::Insert(Row::Job(job_row(id, lead, message, draft, created)))
}

pub fn update(row: Row) -> Change {
    Change::update(row)
}

pub fn delete(table: replytime::change::Table, id: &str) -> Change {
    Change::Delete {
        table,
        id: id.into(),
    }
}

/// A temp dir on tmpfs when there is one: RocksDB's fsyncs at open and flush cost
/// nothing there, which keeps thousands of property cases fast.
pub fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}
