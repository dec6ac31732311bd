//! Applying one row change to the state: the rows themselves and the ordered
//! indexes the derivation navigates, and marking which anchors may have changed.
//!
//! A change at thread position p can only change two anchors: the message at p
//! itself (its successor changed or it moved) and the last inbound before p (whose
//! successor, or response window, contains p). Drafts, AI sends and jobs change the
//! anchor they point at; a lead's `clientId` changes all anchors of the lead.

use std::collections::BTreeSet;

use super::fresh::Fresh;
use super::keys::{self, thread_prefix};
use super::{EngineError, JobDelay, Stamp};
use crate::change::{
    AI_AUTO_SEND_DELAYED, CampaignRow, Change, DraftRow, JobRow, LeadRow, MessageRow, Row, Table,
    Timestamp,
};
use crate::engine::delay::{DEFAULT_DELAY_MAX_SECONDS, DEFAULT_DELAY_MIN_SECONDS};
use crate::store::{Cf, StoreTxn};
use crate::telemetry::metrics::ApplyStats;

/// Rows a TRUNCATE deletes per page.
pub(super) const TRUNCATE_PAGE: usize = 1024;

pub(super) const INBOUND: &str = "inbound";
pub(super) const OUTBOUND: &str = "outbound";

/// State of one application of changes.
pub(super) struct Apply<'t, 'a> {
    pub tx: &'t StoreTxn<'a>,
    pub dirty: &'t mut BTreeSet<String>,
    /// Anchors whose lead's `clientId` changed: the rest of their row stands
    /// (see `relabel.rs`), unless something else marks them dirty too.
    pub relabel: &'t mut BTreeSet<String>,
    pub stats: &'t mut ApplyStats,
    pub stamp: Stamp,
    /// Look up which existing anchors a change affects. Off while bulk loading:
    /// every anchor is derived afterwards anyway (see `Engine::derive_all`).
    pub track: bool,
    /// Inserts name ids the committed state does not hold (`fresh.rs`): set in a
    /// staged group of the live stream only.
    pub fresh: Option<Fresh<'t>>,
}

/// Where a message sits: (lead, channel, sentAt) when it is in a thread.
pub(super) fn thread_place(m: &MessageRow) -> Option<(&str, &str, Timestamp)> {
    let direction = m.direction.as_deref()?;
    if direction != INBOUND && direction != OUTBOUND {
        return None;
    }
    Some((m.lead_id.as_deref()?, m.channel.as_deref()?, m.sent_at?))
}

fn is_setter_response(m: &MessageRow) -> bool {
    m.direction.as_deref() == Some(OUTBOUND)
        && m.sent_by.as_deref() == Some("setter")
        && m.sent_by_user_id.is_some()
}

fn ai_send_draft(m: &MessageRow) -> Option<&str> {
    let qualifies = m.direction.as_deref() == Some(OUTBOUND)
        && m.sent_by.as_deref() == Some("ai")
        && m.sent_at.is_some();
    m.ai_draft_id.as_deref().filter(|_| qualifies)
}

impl Apply<'_, '_> {
    pub(super) fn change(&mut self, change: &Change) -> Result<(), EngineError> {
        match change {
            Change::Insert(row) => self.put(row.clone(), true, true),
            Change::Update {
                row,
                old_id,
                unchanged,
            } => {
                let mut row = row.clone();
                if !unchanged.is_empty()
                    && !self.keep_unchanged(&mut row, old_id.as_deref(), unchanged)?
                {
                    // No stored row under either id: only a re-applied update of a
                    // row that a later transaction renamed or deleted gets here
                    // (replay). Its unchanged values are unknowable, and the later
                    // changes being re-applied will set the row's final state, so
                    // the update is skipped rather than stored with nulls that a
                    // later rename would copy.
                    tracing::debug!(
                        id = row.id(),
                        "update of an absent row with unchanged TOAST values skipped"
                    );
                    return Ok(());
                }
                match old_id.as_deref().filter(|old| *old != row.id()) {
                    Some(old) => {
                        self.delete(row.table(), old)?;
                        self.put(row, true, false)
                    }
                    None => self.put(row, false, false),
                }
            }
            Change::Delete { table, id } => self.delete(*table, id),
            Change::Truncate(tables) => tables.iter().try_for_each(|t| self.truncate(*t)),
        }
    }

    /// Stores `row`; `inserted` when the change is the row's INSERT (not an
    /// update that renames it), whose old row `fresh.rs` may know absent.
    fn put(&mut self, row: Row, is_insert: bool, inserted: bool) -> Result<(), EngineError> {
        match row {
            Row::Message(m) => self.put_message(m, inserted),
            Row::Draft(d) => self.put_draft(d, inserted),
            Row::Job(j) => self.put_job(j, is_insert, inserted),
            Row::Lead(l) => self.put_lead(l),
            Row::Campaign(c) => self.put_campaign(c),
        }
    }

    pub(super) fn delete(&mut self, table: Table, id: &str) -> Result<(), EngineError> {
        match table {
            Table::Message => self.delete_message(id),
            Table::AiDraft => self.delete_draft(id),
            Table::BackgroundJob => self.delete_job(id),
            Table::Lead => self.delete_lead(id),
            Table::EmailCampaign => Ok(self.tx.delete(Cf::Campaigns, id.as_bytes())?),
        }
    }

    fn truncate(&mut self, table: Table) -> Result<(), EngineError> {
        while !self.truncate_page(table, TRUNCATE_PAGE)? {}
        Ok(())
    }

    /// Deletes up to `limit` rows of `table` (a page of a TRUNCATE); whether the
    /// table is empty now.
    pub(super) fn truncate_page(
        &mut self,
        table: Table,
        limit: usize,
    ) -> Result<bool, EngineError> {
        let cf = match table {
            Table::Message => Cf::Messages,
            Table::AiDraft => Cf::Drafts,
            Table::BackgroundJob => Cf::Jobs,
            Table::Lead => Cf::Leads,
            Table::EmailCampaign => Cf::Campaigns,
        };
        let ids = self.tx.keys_with_prefix(cf, &[], None, limit)?;
        for id in &ids {
            self.delete(table, &String::from_utf8_lossy(id))?;
        }
        Ok(ids.len() < limit)
    }

    // ── messages ──────────────────────────────────────────────────────────────

    /// The stored row `id` of `cf` before a put of it (`inserted`: by its INSERT).
    fn row_before_put<T: serde::de::DeserializeOwned>(
        &mut self,
        cf: Cf,
        id: &str,
        inserted: bool,
    ) -> Result<Option<T>, EngineError> {
        Ok(match (&mut self.fresh, inserted) {
            (Some(fresh), true) => fresh.row_before_insert(self.tx, cf, id)?,
            _ => self.tx.get_record(cf, id.as_bytes())?,
        })
    }

    fn put_message(&mut self, m: MessageRow, inserted: bool) -> Result<(), EngineError> {
        if let Some(old) = self.row_before_put::<MessageRow>(Cf::Messages, &m.id, inserted)? {
            self.unindex_message(&old)?;
        }
        if m.direction
            .as_deref()
            .is_some_and(|d| d != INBOUND && d != OUTBOUND)
        {
            self.stats.unknown_direction += 1;
        }
        self.index_message(&m)?;
        self.tx.put_record(Cf::Messages, m.id.as_bytes(), &m)?;
        Ok(())
    }

    fn delete_message(&mut self, id: &str) -> Result<(), EngineError> {
        if let Some(old) = self
            .tx
            .get_record::<MessageRow>(Cf::Messages, id.as_bytes())?
        {
            self.unindex_message(&old)?;
            self.tx.delete(Cf::Messages, id.as_bytes())?;
        }
        Ok(())
    }

    fn index_message(&mut self, m: &MessageRow) -> Result<(), EngineError> {
        self.message_entries(m, true)
    }

    /// Deletes exactly the entries `index_message` wrote for this stored row: a
    /// delete of an absent key would still store a tombstone that later seeks of
    /// the thread step over.
    fn unindex_message(&mut self, m: &MessageRow) -> Result<(), EngineError> {
        self.message_entries(m, false)
    }

    /// Writes (`put`) or deletes a message's index entries: its place in the
    /// thread, the inbound and setter entries where it is one, its AI send. One
    /// list for both, so an unindex removes what the index wrote, no more.
    fn message_entries(&mut self, m: &MessageRow, put: bool) -> Result<(), EngineError> {
        self.dirty.insert(m.id.clone());
        if let Some((lead, channel, sent_at)) = thread_place(m) {
            let prefix = thread_prefix(lead, channel);
            let mut key = prefix.clone();
            keys::push_pos(&mut key, sent_at, &m.id);
            let inbound = m.direction.as_deref() == Some(INBOUND);
            let entries: [(Cf, bool, &[u8]); 3] = [
                (Cf::Thread, true, if inbound { b"i" } else { b"o" }),
                (Cf::Inbound, inbound, b""),
                (Cf::Setter, is_setter_response(m), b""),
            ];
            for (cf, has, value) in entries {
                if has {
                    self.entry(cf, &key, value, put)?;
                }
            }
            self.mark_window_owner(&prefix, &key)?;
        }
        if let Some(draft) = ai_send_draft(m) {
            let mut key = keys::ai_send_prefix(draft);
            keys::push_pos(
                &mut key,
                m.sent_at.expect("qualifying sends have sentAt"),
                &m.id,
            );
            self.entry(Cf::AiSend, &key, &[], put)?;
            self.mark_draft_trigger(draft)?;
        }
        Ok(())
    }

    /// Writes an index entry (`put`) or deletes it.
    fn entry(&self, cf: Cf, key: &[u8], value: &[u8], put: bool) -> Result<(), EngineError> {
        if put {
            self.tx.put(cf, key, value)?;
        } else {
            self.tx.delete(cf, key)?;
        }
        Ok(())
    }

    /// Marks the last inbound strictly before `key`: its successor or its response
    /// window is where the change happened.
    fn mark_window_owner(&mut self, prefix: &[u8], key: &[u8]) -> Result<(), EngineError> {
        if !self.track {
            return Ok(());
        }
        if let Some(owner) = self.tx.prev_key(Cf::Inbound, prefix, Some(key))? {
            self.dirty.insert(keys::id_after_pos(&owner, prefix.len()));
        }
        Ok(())
    }

    fn mark_draft_trigger(&mut self, draft_id: &str) -> Result<(), EngineError> {
        if !self.track {
            return Ok(());
        }
        if let Some(draft) = self
            .tx
            .get_record::<DraftRow>(Cf::Drafts, draft_id.as_bytes())?
            && let Some(trigger) = draft.trigger_message_id
        {
            self.dirty.insert(trigger);
        }
        Ok(())
    }

    // ── drafts ────────────────────────────────────────────────────────────────

    fn put_draft(&mut self, d: DraftRow, inserted: bool) -> Result<(), EngineError> {
        let old = self.row_before_put::<DraftRow>(Cf::Drafts, &d.id, inserted)?;
        self.unindex_draft(&d.id, old)?;
        if let (Some(trigger), Some(channel)) = (&d.trigger_message_id, &d.channel) {
            let mut key = keys::draft_trigger_prefix(trigger, channel);
            key.extend_from_slice(d.id.as_bytes());
            self.tx.put(Cf::DraftTrigger, &key, &[])?;
            self.dirty.insert(trigger.clone());
        }
        self.tx.put_record(Cf::Drafts, d.id.as_bytes(), &d)?;
        Ok(())
    }

    fn delete_draft(&mut self, id: &str) -> Result<(), EngineError> {
        let old = self.tx.get_record::<DraftRow>(Cf::Drafts, id.as_bytes())?;
        self.unindex_draft(id, old)?;
        self.tx.delete(Cf::Drafts, id.as_bytes())?;
        Ok(())
    }

    /// Removes the trigger entry of draft `id`'s stored row `old`.
    fn unindex_draft(&mut self, id: &str, old: Option<DraftRow>) -> Result<(), EngineError> {
        let Some(old) = old else {
            return Ok(());
        };
        if let (Some(trigger), Some(channel)) = (old.trigger_message_id, old.channel) {
            let mut key = keys::draft_trigger_prefix(&trigger, &channel);
            key.extend_from_slice(id.as_bytes());
            self.tx.delete(Cf::DraftTrigger, &key)?;
            self.dirty.insert(trigger);
        }
        Ok(())
    }

    // ── jobs ──────────────────────────────────────────────────────────────────

    fn job_index_key(j: &JobRow) -> Option<(Vec<u8>, &str)> {
        if j.job_type.as_deref() != Some(AI_AUTO_SEND_DELAYED) {
            return None;
        }
        let (message, draft) = (j.message_id.as_deref()?, j.draft_id.as_deref()?);
        let mut key = keys::job_index_prefix(message, draft);
        keys::push_created_id(&mut key, j.created_at, &j.id);
        Some((key, message))
    }

    fn put_job(&mut self, j: JobRow, is_insert: bool, inserted: bool) -> Result<(), EngineError> {
        let old = self.row_before_put::<JobRow>(Cf::Jobs, &j.id, inserted)?;
        let index = Self::job_index_key(&j);
        match old.as_ref().and_then(Self::job_index_key) {
            // Most updates of a job move its runAt, startedAt or finishedAt on: its
            // index entry stays, and writing it again would store the same bytes.
            Some((old_key, message)) if index.as_ref().is_some_and(|(key, _)| *key == old_key) => {
                self.dirty.insert(message.to_string());
            }
            _ => {
                if let Some(old) = &old {
                    self.unindex_job(old)?;
                }
                if let Some((key, message)) = &index {
                    self.tx.put(Cf::JobIndex, key, &[])?;
                    self.dirty.insert(message.to_string());
                }
            }
        }
        let recorded = self.row_before_put::<JobDelay>(Cf::JobDelay, &j.id, inserted)?;
        let record_now = match &recorded {
            Some(rec) => is_insert && rec.stamp < self.stamp,
            None => true,
        };
        if record_now {
            let delay = self.delay_of_lead(j.lead_id.as_deref())?;
            self.tx.put_record(Cf::JobDelay, j.id.as_bytes(), &delay)?;
        }
        self.tx.put_record(Cf::Jobs, j.id.as_bytes(), &j)?;
        Ok(())
    }

    fn delete_job(&mut self, id: &str) -> Result<(), EngineError> {
        if let Some(old) = self.tx.get_record::<JobRow>(Cf::Jobs, id.as_bytes())? {
            self.unindex_job(&old)?;
            self.tx.delete(Cf::Jobs, id.as_bytes())?;
        }
        // A record newer than this delete belongs to a later insert being re-applied.
        if let Some(rec) = self
            .tx
            .get_record::<JobDelay>(Cf::JobDelay, id.as_bytes())?
            && rec.stamp < self.stamp
        {
            self.tx.delete(Cf::JobDelay, id.as_bytes())?;
        }
        Ok(())
    }

    fn unindex_job(&mut self, j: &JobRow) -> Result<(), EngineError> {
        if let Some((key, message)) = Self::job_index_key(j) {
            self.tx.delete(Cf::JobIndex, &key)?;
            self.dirty.insert(message.to_string());
        }
        Ok(())
    }

    /// The delay bounds of the campaign the lead belongs to now (SPEC 3.6).
    fn delay_of_lead(&self, lead: Option<&str>) -> Result<JobDelay, EngineError> {
        let campaign = match lead {
            Some(lead) => self
                .tx
                .get_record::<LeadRow>(Cf::Leads, lead.as_bytes())?
                .and_then(|l| l.email_campaign_id),
            None => None,
        };
        let campaign = match campaign {
            Some(c) => self
                .tx
                .get_record::<CampaignRow>(Cf::Campaigns, c.as_bytes())?,
            None => None,
        };
        Ok(JobDelay {
            min: campaign
                .as_ref()
                .and_then(|c| c.delay_min_seconds)
                .unwrap_or(DEFAULT_DELAY_MIN_SECONDS),
            max: campaign
                .as_ref()
                .and_then(|c| c.delay_max_seconds)
                .unwrap_or(DEFAULT_DELAY_MAX_SECONDS),
            stamp: self.stamp,
        })
    }

    // ── leads and campaigns ───────────────────────────────────────────────────

    fn put_lead(&mut self, l: LeadRow) -> Result<(), EngineError> {
        let old = self.tx.get_record::<LeadRow>(Cf::Leads, l.id.as_bytes())?;
        if old.map(|o| o.client_id) != Some(l.client_id.clone()) {
            self.mark_lead_anchors(&l.id)?;
        }
        self.tx.put_record(Cf::Leads, l.id.as_bytes(), &l)?;
        Ok(())
    }

    fn delete_lead(&mut self, id: &str) -> Result<(), EngineError> {
        if self.tx.contains(Cf::Leads, id.as_bytes())? {
            self.mark_lead_anchors(id)?;
            self.tx.delete(Cf::Leads, id.as_bytes())?;
        }
        Ok(())
    }

    fn mark_lead_anchors(&mut self, lead: &str) -> Result<(), EngineError> {
        if !self.track {
            return Ok(());
        }
        let prefix = keys::lead_anchor_prefix(lead);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch =
                self.tx
                    .keys_with_prefix(Cf::LeadAnchors, &prefix, after.as_deref(), 1024)?;
            for key in &batch {
                self.relabel
                    .insert(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
            }
            match batch.last() {
                Some(last) => after = Some(last.clone()),
                None => return Ok(()),
            }
        }
    }

    fn put_campaign(&mut self, c: CampaignRow) -> Result<(), EngineError> {
        self.tx.put_record(Cf::Campaigns, c.id.as_bytes(), &c)?;
        Ok(())
    }

    // ── unchanged TOAST values ────────────────────────────────────────────────

    /// Columns sent as "unchanged TOAST" keep their stored value: the row's under its
    /// old id, or (when a re-applied rename finds the old id gone) under its new id.
    /// False when neither is stored.
    fn keep_unchanged(
        &self,
        row: &mut Row,
        old_id: Option<&str>,
        unchanged: &[String],
    ) -> Result<bool, EngineError> {
        let ids: Vec<String> = old_id
            .into_iter()
            .chain([row.id()])
            .map(str::to_string)
            .collect();
        let keep = |name: &str| unchanged.iter().any(|u| u == name);
        macro_rules! merge {
            ($row:expr, $ty:ty, $cf:expr, $merge:path) => {
                match self.stored::<$ty>($cf, &ids)? {
                    Some(old) => {
                        $merge($row, &old, keep);
                        true
                    }
                    None => false,
                }
            };
        }
        Ok(match row {
            Row::Message(m) => merge!(m, MessageRow, Cf::Messages, super::toast::merge_message),
            Row::Draft(d) => merge!(d, DraftRow, Cf::Drafts, super::toast::merge_draft),
            Row::Job(j) => merge!(j, JobRow, Cf::Jobs, super::toast::merge_job),
            Row::Lead(l) => merge!(l, LeadRow, Cf::Leads, super::toast::merge_lead),
            Row::Campaign(c) => merge!(c, CampaignRow, Cf::Campaigns, super::toast::merge_campaign),
        })
    }

    /// The first of `ids` stored in `cf`.
    fn stored<T: serde::de::DeserializeOwned>(
        &self,
        cf: Cf,
        ids: &[String],
    ) -> Result<Option<T>, EngineError> {
        for id in ids {
            if let Some(row) = self.tx.get_record::<T>(cf, id.as_bytes())? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    //! What one change writes: the entries it really changes, no more (a write of
    //! the stored bytes, or a delete of an absent key, still costs a memtable entry,
    //! its flush and compaction, and a tombstone is stepped over by later seeks).

    use super::*;
    use crate::lsn::Lsn;
    use crate::store::{Store, StoreOptions};

    fn apply(tx: &StoreTxn<'_>, changes: &[Change]) {
        let mut dirty = BTreeSet::new();
        let mut relabel = BTreeSet::new();
        let mut stats = ApplyStats::default();
        for (seq, change) in changes.iter().enumerate() {
            Apply {
                tx,
                dirty: &mut dirty,
                relabel: &mut relabel,
                stats: &mut stats,
                stamp: (Lsn(0x100), seq as u32),
                track: true,
                fresh: None,
            }
            .change(change)
            .unwrap();
        }
    }

    fn committed(store: &Store, changes: &[Change]) {
        let tx = store.begin();
        apply(&tx, changes);
        tx.commit().unwrap();
    }

    fn job(started_at: Option<i64>) -> Row {
        Row::Job(JobRow {
            id: "job-1".into(),
            job_type: Some(AI_AUTO_SEND_DELAYED.into()),
            lead_id: Some("lead-1".into()),
            message_id: Some("msg-1".into()),
            draft_id: Some("draft-1".into()),
            run_at: Some(Timestamp(5_000_000)),
            started_at: started_at.map(Timestamp),
            finished_at: None,
            created_at: Some(Timestamp(1_000_000)),
        })
    }

    fn message(id: &str, direction: &str, sent_by: Option<&str>, at: i64) -> Row {
        Row::Message(MessageRow {
            id: id.into(),
            lead_id: Some("lead-1".into()),
            channel: Some("sms".into()),
            direction: Some(direction.into()),
            sent_by: sent_by.map(str::to_string),
            sent_by_user_id: sent_by.map(|_| "user-1".to_string()),
            ai_draft_id: None,
            sent_at: Some(Timestamp(at)),
        })
    }

    fn update(row: Row) -> Change {
        Change::Update {
            row,
            old_id: None,
            unchanged: Vec::new(),
        }
    }

    #[test]
    fn a_job_whose_index_entry_stays_does_not_write_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        committed(&store, &[Change::Insert(job(None))]);
        let before = store.begin().scan(Cf::JobIndex, &[], usize::MAX).unwrap();
        assert_eq!(before.len(), 1);

        let tx = store.begin();
        apply(&tx, &[update(job(Some(5_100_000)))]);
        assert_eq!(tx.pending(Cf::JobIndex), Vec::new());
        assert_eq!(tx.pending(Cf::Jobs).len(), 1, "the job row itself changed");
        tx.commit().unwrap();
        assert_eq!(
            store.begin().scan(Cf::JobIndex, &[], usize::MAX).unwrap(),
            before
        );

        // A job that moves to another message still leaves its old entry.
        let tx = store.begin();
        let Row::Job(mut moved) = job(Some(5_100_000)) else {
            unreachable!()
        };
        moved.message_id = Some("msg-2".into());
        apply(&tx, &[update(Row::Job(moved))]);
        let writes = tx.pending(Cf::JobIndex);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes.iter().filter(|(_, v)| v.is_none()).count(), 1);
    }

    #[test]
    fn unindexing_a_message_deletes_only_the_entries_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let inbound = message("msg-1", INBOUND, None, 1_000_000);
        let setter = message("msg-2", OUTBOUND, Some("setter"), 2_000_000);
        committed(
            &store,
            &[Change::Insert(inbound), Change::Insert(setter.clone())],
        );
        let delete = |id: &str| Change::Delete {
            table: Table::Message,
            id: id.into(),
        };

        let tx = store.begin();
        apply(&tx, &[delete("msg-2")]);
        assert_eq!(tx.pending(Cf::Inbound), Vec::new(), "msg-2 is outbound");
        assert_eq!(tx.pending(Cf::Setter).len(), 1);
        assert_eq!(tx.pending(Cf::Thread).len(), 1);
        drop(tx);

        let tx = store.begin();
        apply(&tx, &[delete("msg-1")]);
        assert_eq!(tx.pending(Cf::Setter), Vec::new(), "msg-1 is inbound");
        assert_eq!(tx.pending(Cf::Inbound).len(), 1);
        assert_eq!(tx.pending(Cf::Thread).len(), 1);
        tx.commit().unwrap();
        let tx = store.begin();
        assert_eq!(tx.scan(Cf::Inbound, &[], usize::MAX).unwrap(), Vec::new());
        assert_eq!(tx.scan(Cf::Setter, &[], usize::MAX).unwrap().len(), 1);
    }
}
