//! Everything that is not an append: edits and deletes of messages, drafts and jobs,
//! id changes, campaign and lead changes, truncates' victims.

use crate::change::{AI_AUTO_SEND_DELAYED, CampaignRow, Change, LeadRow, Row, Table, Timestamp};

use super::conversation::{DISPOSITIONS, OTHER_JOB_TYPES};
use super::generator::{DRAFT_PREFIXES, Generator, JOB_PREFIXES, MESSAGE_PREFIXES};

const SENDERS: &[Option<&str>] = &[Some("setter"), Some("ai"), None, Some("system")];
const DELAY_BOUNDS: &[i32] = &[0, 60, 120, 180, 240, 300, 420, 480, 600];
const RESPONSE_MODES: &[Option<&str>] = &[Some("AI_AUTO_SEND"), Some("SETTER_ONLY"), None];

impl Generator {
    /// One edit of a message: sentAt set (from NULL), cleared or back-dated; moved to
    /// another lead or channel; direction flipped; sender or draft changed.
    pub(super) fn message_edit(&mut self, out: &mut Vec<Change>) {
        let Some(old) = self
            .model
            .messages
            .pick(&mut self.rng, self.recency)
            .cloned()
        else {
            return;
        };
        let mut message = old.clone();
        match self.rng.below(5) {
            0 => {
                message.sent_at = match old.sent_at {
                    None => Some(Timestamp(self.clock)),
                    Some(_) if self.rng.chance(0.1) => None,
                    Some(_) => {
                        let back = self.rng.between(0, self.config.max_backdate_micros.max(0));
                        Some(Timestamp(self.clock - back))
                    }
                }
            }
            1 if self.rng.chance(0.5) => message.lead_id = Some(self.pick_lead()),
            1 => message.channel = Some(self.pick_channel()),
            2 => message.direction = Some(self.flipped_direction(old.direction.as_deref())),
            3 => {
                let sent_by = self.rng.pick(SENDERS).expect("not empty");
                message.sent_by = sent_by.map(String::from);
                message.sent_by_user_id = match self.rng.chance(0.5) {
                    true => Some(self.pick_user()),
                    false => None,
                };
            }
            _ => {
                let draft = self.model.drafts.pick(&mut self.rng, self.recency);
                message.ai_draft_id = draft.map(|d| d.id.clone()).filter(|_| self.rng.chance(0.7));
            }
        }
        self.emit_update(out, Row::Message(message), &Row::Message(old));
    }

    fn flipped_direction(&mut self, direction: Option<&str>) -> String {
        let flipped = match direction {
            Some("inbound") => "outbound",
            Some("outbound") if self.chance(|o| o.unknown_direction) => "system",
            _ => "inbound",
        };
        flipped.to_string()
    }

    pub(super) fn message_delete(&mut self, out: &mut Vec<Change>) {
        if let Some(message) = self.model.messages.pick(&mut self.rng, self.recency) {
            let id = message.id.clone();
            self.emit_delete(out, Table::Message, id);
        }
    }

    /// A draft is deleted, changes disposition, or points to another trigger and
    /// channel (when the unique index allows it).
    pub(super) fn draft_edit(&mut self, out: &mut Vec<Change>) {
        let Some(old) = self.model.drafts.pick(&mut self.rng, self.recency).cloned() else {
            return;
        };
        let mut draft = old.clone();
        match self.rng.below(3) {
            0 => return self.emit_delete(out, Table::AiDraft, old.id),
            1 => {
                let disposition = self.rng.pick(DISPOSITIONS).expect("not empty");
                draft.response_disposition = disposition.map(String::from);
            }
            _ => {
                let trigger = self
                    .model
                    .messages
                    .pick(&mut self.rng, self.recency)
                    .map(|m| m.id.clone());
                let channel = self.pick_channel();
                let Some(trigger) = trigger else { return };
                if !self.model.draft_key_free(&trigger, &channel, &old.id) {
                    return;
                }
                draft.trigger_message_id = Some(trigger);
                draft.channel = Some(channel);
            }
        }
        self.emit_update(out, Row::Draft(draft), &Row::Draft(old));
    }

    /// A job is deleted, changes type, or is re-pointed to another draft.
    pub(super) fn job_edit(&mut self, out: &mut Vec<Change>) {
        let Some(old) = self.model.jobs.pick(&mut self.rng, self.recency).cloned() else {
            return;
        };
        let mut job = old.clone();
        match self.rng.below(3) {
            0 => return self.emit_delete(out, Table::BackgroundJob, old.id),
            1 if job.job_type.as_deref() == Some(AI_AUTO_SEND_DELAYED) => {
                let other = self.rng.pick(OTHER_JOB_TYPES).expect("not empty");
                job.job_type = Some(other.to_string());
            }
            1 => job.job_type = Some(AI_AUTO_SEND_DELAYED.to_string()),
            _ => {
                let Some(draft) = self.model.drafts.pick(&mut self.rng, self.recency) else {
                    return;
                };
                job.draft_id = Some(draft.id.clone());
                job.message_id = draft.trigger_message_id.clone();
                job.lead_id = draft.lead_id.clone();
            }
        }
        self.emit_update(out, Row::Job(job), &Row::Job(old));
    }

    /// A message, draft or job gets a new id (an UPDATE of the primary key).
    pub(super) fn rename(&mut self, out: &mut Vec<Change>) {
        let old = match self.rng.below(3) {
            0 => self
                .model
                .messages
                .pick(&mut self.rng, self.recency)
                .cloned()
                .map(Row::Message),
            1 => self
                .model
                .drafts
                .pick(&mut self.rng, self.recency)
                .cloned()
                .map(Row::Draft),
            _ => self
                .model
                .jobs
                .pick(&mut self.rng, self.recency)
                .cloned()
                .map(Row::Job),
        };
        let Some(old) = old else { return };
        let mut row = old.clone();
        match &mut row {
            Row::Message(m) => m.id = self.new_id(MESSAGE_PREFIXES),
            Row::Draft(d) => d.id = self.new_id(DRAFT_PREFIXES),
            Row::Job(j) => j.id = self.new_id(JOB_PREFIXES),
            Row::Lead(_) | Row::Campaign(_) => unreachable!("only messages, drafts, jobs"),
        }
        self.emit_update(out, row, &old);
    }

    /// A campaign is created, or changes its delay bounds (max ≤ min and NULLs
    /// included) or mode, or is deleted.
    pub(super) fn campaign_change(&mut self, out: &mut Vec<Change>) {
        let id = self.pick_campaign();
        let Some(old) = self.model.campaigns.get(&id).cloned() else {
            let campaign = CampaignRow {
                id,
                delay_min_seconds: self.delay_bound(),
                delay_max_seconds: self.delay_bound(),
                response_mode: self
                    .rng
                    .pick(RESPONSE_MODES)
                    .expect("not empty")
                    .map(String::from),
            };
            return self.emit_insert(out, Row::Campaign(campaign));
        };
        let mut campaign = old.clone();
        match self.rng.below(8) {
            0 => return self.emit_delete(out, Table::EmailCampaign, id),
            1 => {
                let mode = self.rng.pick(RESPONSE_MODES).expect("not empty");
                campaign.response_mode = mode.map(String::from);
            }
            2 => campaign.delay_min_seconds = self.delay_bound(),
            3 => campaign.delay_max_seconds = self.delay_bound(),
            _ => {
                campaign.delay_min_seconds = self.delay_bound();
                campaign.delay_max_seconds = self.delay_bound();
            }
        }
        self.emit_update(out, Row::Campaign(campaign), &Row::Campaign(old));
    }

    fn delay_bound(&mut self) -> Option<i32> {
        match self.chance(|o| o.null_delay_bound) {
            true => None,
            false => self.rng.pick(DELAY_BOUNDS).copied(),
        }
    }

    /// A lead arrives, moves to another campaign or client, or is deleted.
    pub(super) fn lead_change(&mut self, out: &mut Vec<Change>) {
        let id = self.pick_lead();
        let Some(old) = self.model.leads.get(&id).cloned() else {
            let lead = LeadRow {
                id,
                client_id: self.client_ref(),
                email_campaign_id: self.campaign_ref(),
            };
            return self.emit_insert(out, Row::Lead(lead));
        };
        if self.chance(|o| o.lead_delete) {
            return self.emit_delete(out, Table::Lead, id);
        }
        let mut lead = old.clone();
        match self.rng.chance(0.6) {
            true => lead.email_campaign_id = self.campaign_ref(),
            false => lead.client_id = self.client_ref(),
        }
        self.emit_update(out, Row::Lead(lead), &Row::Lead(old));
    }

    pub(super) fn client_ref(&mut self) -> Option<String> {
        match self.chance(|o| o.null_client_id) {
            true => None,
            false => Some(self.pick_client()),
        }
    }

    /// A campaign id of the pool (which may not exist), or NULL.
    pub(super) fn campaign_ref(&mut self) -> Option<String> {
        match self.rng.chance(0.15) {
            true => None,
            false => Some(self.pick_campaign()),
        }
    }
}
