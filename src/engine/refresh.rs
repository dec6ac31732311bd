//! Refreshing dirty anchors: each is derived again (`anchor.rs`), compared with
//! what the sink holds (the anchors column family) and turned into the upsert or
//! delete that makes the sink equal to the rules; the held counts and the metrics'
//! counters follow.

use super::{
    AnchorRecord, DerivedAnchor, Engine, EngineError, HeldReason, STATS_BOUND, anchor, keys,
};
use crate::lsn::Lsn;
use crate::row::{SinkOp, TimingRow};
use crate::store::{Cf, StoreTxn, meta};

impl Engine {
    /// Refreshes the next batch of dirty anchors; also says whether none is left.
    pub(super) fn refresh_batch(
        &mut self,
        tx: &StoreTxn<'_>,
        end_lsn: Lsn,
    ) -> Result<(Vec<SinkOp>, bool), EngineError> {
        let batch = self.next_dirty_batch(tx)?;
        let mut ops = Vec::new();
        for id in &batch {
            self.relabel.remove(id);
            if let Some(op) = self.refresh(tx, id, end_lsn)? {
                ops.push(op);
            }
        }
        if self.dirty.is_empty() && !self.spilled {
            let room = self
                .options
                .refresh_batch
                .saturating_sub(batch.len())
                .max(1);
            self.relabel_batch(tx, room, end_lsn, &mut ops)?;
        }
        self.bound_stats();
        let complete = self.dirty.is_empty() && !self.spilled && self.relabel.is_empty();
        Ok((ops, complete))
    }

    /// Records the counters into the metrics once they hold [`STATS_BOUND`]
    /// response times; [`Engine::take_stats`] returns the rest.
    pub(super) fn bound_stats(&mut self) {
        if self.stats.response_seconds.len() >= STATS_BOUND {
            crate::telemetry::metrics::METRICS.record_apply(&std::mem::take(&mut self.stats));
        }
    }

    /// Up to `refresh_batch` dirty anchors, from memory first, then from the spill.
    fn next_dirty_batch(&mut self, tx: &StoreTxn<'_>) -> Result<Vec<String>, EngineError> {
        let mut batch = Vec::new();
        while batch.len() < self.options.refresh_batch {
            match self.dirty.pop_first() {
                Some(id) => batch.push(id),
                None => break,
            }
        }
        if self.spilled && batch.len() < self.options.refresh_batch {
            let want = self.options.refresh_batch - batch.len();
            let keys = tx.keys_with_prefix(Cf::Dirty, &[], None, want)?;
            for key in &keys {
                tx.delete(Cf::Dirty, key)?;
            }
            self.spilled = keys.len() == want;
            batch.extend(keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()));
        }
        Ok(batch)
    }

    /// Re-derives one anchor and returns the sink operation, if the sink must change.
    pub(super) fn refresh(
        &mut self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        end_lsn: Lsn,
    ) -> Result<Option<SinkOp>, EngineError> {
        let derived = anchor::derive(tx, inbound_id)?;
        self.stats.derived += 1;
        self.settle(tx, inbound_id, derived, end_lsn)
    }

    /// Records an anchor as `derived` now and returns the sink operation, if the
    /// sink must change.
    pub(super) fn settle(
        &mut self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        derived: Option<DerivedAnchor>,
        end_lsn: Lsn,
    ) -> Result<Option<SinkOp>, EngineError> {
        let old = self.anchor_record(tx, inbound_id)?;
        let held = derived.as_ref().and_then(|d| d.held);
        let new = derived.map(|d| AnchorRecord {
            lead_id: d.lead_id,
            row: d.row,
        });
        if old == new {
            if held.is_some() {
                // Still held, maybe for another reason (its lead row arrived
                // without a client, or went).
                self.account_held(tx, inbound_id, true, held)?;
            }
            return Ok(match new.and_then(|r| r.row) {
                Some(row) if self.options.force_upsert => Some(SinkOp::Upsert {
                    row,
                    source_lsn: end_lsn,
                }),
                _ => None,
            });
        }
        self.write_anchor_record(tx, inbound_id, old.as_ref(), new.as_ref())?;
        let was_held = old.as_ref().is_some_and(|r| r.row.is_none());
        self.account_held(tx, inbound_id, was_held, held)?;
        let old_row = old.and_then(|r| r.row);
        let new_row = new.and_then(|r| r.row);
        if let (Some(cutoff), Some(row)) = (self.options.emit_since, &new_row)
            && row.inbound_sent_at < cutoff
        {
            return Ok(None);
        }
        Ok(match (old_row, new_row) {
            (old, Some(row)) if old.as_ref() != Some(&row) => {
                self.count_upsert(old.as_ref(), &row);
                Some(SinkOp::Upsert {
                    row,
                    source_lsn: end_lsn,
                })
            }
            (Some(_), None) => {
                self.stats.deletes += 1;
                Some(SinkOp::Delete {
                    inbound_message_id: inbound_id.to_string(),
                })
            }
            _ => None,
        })
    }

    fn write_anchor_record(
        &self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        old: Option<&AnchorRecord>,
        new: Option<&AnchorRecord>,
    ) -> Result<(), EngineError> {
        let lead_key = |lead: &str| {
            let mut key = keys::lead_anchor_prefix(lead);
            key.extend_from_slice(inbound_id.as_bytes());
            key
        };
        // The lead's index entry changes only when the anchor appears, goes or
        // moves to another lead (most refreshes change the row alone).
        let old_lead = old.map(|r| r.lead_id.as_str());
        let new_lead = new.map(|r| r.lead_id.as_str());
        if old_lead != new_lead {
            if let Some(lead) = old_lead {
                tx.delete(Cf::LeadAnchors, &lead_key(lead))?;
            }
            if let Some(lead) = new_lead {
                tx.put(Cf::LeadAnchors, &lead_key(lead), &[])?;
            }
        }
        match new {
            Some(new) => tx.put_record(Cf::Anchors, inbound_id.as_bytes(), new)?,
            None => tx.delete(Cf::Anchors, inbound_id.as_bytes())?,
        }
        Ok(())
    }

    /// Keeps the held counts (`meta::HELD_ANCHORS`, and `meta::HELD_NO_CLIENT` of
    /// them) and each held anchor's reason (`Cf::Held`) in step with an anchor
    /// that was held or not and is now held for `now` (or not held).
    fn account_held(
        &self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        was_held: bool,
        now: Option<HeldReason>,
    ) -> Result<(), EngineError> {
        let key = inbound_id.as_bytes();
        // A state of an earlier release holds anchors without a recorded reason.
        let before = match was_held {
            true => tx
                .get(Cf::Held, key)?
                .and_then(|b| b.first().copied().and_then(HeldReason::from_byte)),
            false => None,
        };
        if was_held == now.is_some() && before == now {
            return Ok(());
        }
        let step = |key: &[u8], up: bool| -> Result<(), EngineError> {
            let n = tx.get_record::<u64>(Cf::Meta, key)?.unwrap_or(0);
            let n = if up { n + 1 } else { n.saturating_sub(1) };
            tx.put_record(Cf::Meta, key, &n)?;
            Ok(())
        };
        if was_held != now.is_some() {
            step(meta::HELD_ANCHORS, now.is_some())?;
        }
        let no_client = |r: Option<HeldReason>| r == Some(HeldReason::NoClient);
        if no_client(before) != no_client(now) {
            step(meta::HELD_NO_CLIENT, no_client(now))?;
        }
        match now {
            Some(reason) => tx.put(Cf::Held, key, &[reason.to_byte()])?,
            None => tx.delete(Cf::Held, key)?,
        }
        Ok(())
    }

    fn count_upsert(&mut self, old: Option<&TimingRow>, row: &TimingRow) {
        self.stats.upserts += 1;
        let job_changed = old.map(|o| (&o.ai_background_job_id, o.ai_scheduled_run_at))
            != Some((&row.ai_background_job_id, row.ai_scheduled_run_at));
        if job_changed && anchor::delay_mismatch(row) {
            self.stats.delay_mismatch += 1;
        }
        if let Some(ms) = row.setter_response_ms
            && old.and_then(|o| o.setter_response_ms) != Some(ms)
        {
            let seconds = ms as f64 / 1000.0;
            self.stats
                .response_seconds
                .push((row.channel.clone(), false, seconds));
        }
        if let Some(ms) = row.ai_response_ms
            && old.and_then(|o| o.ai_response_ms) != Some(ms)
        {
            let seconds = ms as f64 / 1000.0;
            self.stats
                .response_seconds
                .push((row.channel.clone(), true, seconds));
        }
    }
}
