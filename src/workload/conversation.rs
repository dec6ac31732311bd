//! The appends of a conversation: inbound bursts, setter replies, and the AI path
//! (draft → delayed job → job progress → AI send), with their edge cases.

use crate::change::{
    AI_AUTO_SEND_DELAYED, Change, DraftRow, JobRow, LeadRow, MessageRow, Row, Timestamp,
};

use super::generator::{DRAFT_PREFIXES, Generator, JOB_PREFIXES, MESSAGE_PREFIXES, ThreadCursor};

const UNKNOWN_DIRECTIONS: &[&str] = &["system", "note", "OUTBOUND"];
const UNKNOWN_SENT_BY: &[Option<&str>] = &[None, Some("system"), Some("Setter")];
pub(super) const DISPOSITIONS: &[Option<&str>] =
    &[Some("AUTO_SENT"), Some("APPROVED"), Some("EDITED"), None];
pub(super) const OTHER_JOB_TYPES: &[&str] = &["AI_AUTO_SEND", "SYNC_LEAD"];

fn thread_key(lead_id: &str, channel: &str) -> String {
    format!("{lead_id}\u{0}{channel}")
}

fn micros(seconds: i64) -> i64 {
    seconds * 1_000_000
}

impl Generator {
    /// A thread to append to: usually a known one when following the conversation,
    /// else any (lead, channel) of the pools.
    pub(super) fn pick_thread(&mut self) -> (String, String) {
        if self.threads.len() > 0 && self.chance(|o| o.follow_conversation) {
            let cursor = self
                .threads
                .pick(&mut self.rng, self.recency)
                .expect("not empty");
            return (cursor.lead_id.clone(), cursor.channel.clone());
        }
        let lead_id = self.pick_lead();
        let channel = self.pick_channel();
        (lead_id, channel)
    }

    fn cursor(&mut self, lead_id: &str, channel: &str) -> &mut ThreadCursor {
        let key = thread_key(lead_id, channel);
        if !self.threads.contains(&key) {
            let cursor = ThreadCursor {
                lead_id: lead_id.to_string(),
                channel: channel.to_string(),
                last_inbound: None,
                last_sent_at: None,
            };
            self.threads.put(key.clone(), cursor);
        }
        self.threads.get_mut(&key).expect("just inserted")
    }

    /// The sentAt of a new message of the thread: now, NULL, back-dated, or the
    /// same microsecond as the thread's last message.
    fn stamp(&mut self, lead_id: &str, channel: &str) -> Option<Timestamp> {
        if self.chance(|o| o.null_sent_at) {
            return None;
        }
        let last = self.cursor(lead_id, channel).last_sent_at;
        let at = match last {
            Some(last) if self.chance(|o| o.same_microsecond) => last,
            _ if self.chance(|o| o.backdated) => {
                let back = self.rng.between(1, self.config.max_backdate_micros.max(1));
                Timestamp(self.clock - back)
            }
            _ => Timestamp(self.clock),
        };
        self.cursor(lead_id, channel).last_sent_at = Some(at);
        Some(at)
    }

    fn new_message(&mut self, lead_id: &str, channel: &str, direction: &str) -> MessageRow {
        let mut message = MessageRow {
            id: self.new_id(MESSAGE_PREFIXES),
            lead_id: Some(lead_id.to_string()),
            channel: Some(channel.to_string()),
            direction: Some(direction.to_string()),
            sent_by: None,
            sent_by_user_id: None,
            ai_draft_id: None,
            sent_at: self.stamp(lead_id, channel),
        };
        if self.chance(|o| o.null_message_key) {
            match self.rng.below(3) {
                0 => message.lead_id = None,
                1 => message.channel = None,
                _ => message.direction = None,
            }
        }
        message
    }

    /// 1–3 inbound messages on one thread (its lead first, sometimes).
    pub(super) fn inbound_burst(&mut self, out: &mut Vec<Change>, budget: usize) {
        let (lead_id, channel) = self.pick_thread();
        let mut budget = budget.max(1);
        if !self.model.leads.contains(&lead_id)
            && budget > 1
            && self.chance(|o| o.lead_before_messages)
        {
            let lead = LeadRow {
                id: lead_id.clone(),
                client_id: self.client_ref(),
                email_campaign_id: self.campaign_ref(),
            };
            self.emit_insert(out, Row::Lead(lead));
            budget -= 1;
        }
        for _ in 0..1 + self.rng.below(budget.min(3)) {
            let direction = match self.chance(|o| o.unknown_direction) {
                true => *self.rng.pick(UNKNOWN_DIRECTIONS).expect("not empty"),
                false => "inbound",
            };
            let message = self.new_message(&lead_id, &channel, direction);
            if direction == "inbound" {
                self.cursor(&lead_id, &channel).last_inbound = Some(message.id.clone());
            }
            self.emit_insert(out, Row::Message(message));
            self.clock += self.rng.between(0, micros(5));
        }
    }

    /// An outbound reply, usually by a setter with a user id, sometimes made from
    /// the AI draft of the thread's latest inbound.
    pub(super) fn setter_reply(&mut self, out: &mut Vec<Change>) {
        let (lead_id, channel) = self.pick_thread();
        let mut message = self.new_message(&lead_id, &channel, "outbound");
        message.sent_by = match self.chance(|o| o.unknown_sent_by) {
            true => self
                .rng
                .pick(UNKNOWN_SENT_BY)
                .expect("not empty")
                .map(String::from),
            false => Some("setter".to_string()),
        };
        if !self.chance(|o| o.setter_without_user) {
            message.sent_by_user_id = Some(self.pick_user());
        }
        let last_inbound = self.cursor(&lead_id, &channel).last_inbound.clone();
        if let Some(inbound) = last_inbound
            && self.chance(|o| o.setter_used_draft)
        {
            message.ai_draft_id = self.model.draft_for(&inbound, &channel).map(String::from);
        }
        self.emit_insert(out, Row::Message(message));
    }

    /// The message an AI draft answers: the latest inbound of a thread, or any.
    fn pick_trigger(&mut self) -> Option<MessageRow> {
        if self.chance(|o| o.follow_conversation) {
            // A few tries: some threads have no inbound yet.
            for _ in 0..3 {
                let (lead_id, channel) = self.pick_thread();
                let last = self.cursor(&lead_id, &channel).last_inbound.clone();
                if let Some(message) = last.and_then(|id| self.model.messages.get(&id)) {
                    return Some(message.clone());
                }
            }
        }
        self.model
            .messages
            .pick(&mut self.rng, self.recency)
            .cloned()
    }

    pub(super) fn ai_draft(&mut self, out: &mut Vec<Change>) {
        let Some(trigger) = self.pick_trigger() else {
            return;
        };
        let channel = match trigger.channel.clone() {
            Some(channel) if !self.chance(|o| o.draft_other_channel) => channel,
            _ => self.pick_channel(),
        };
        if !self.model.draft_key_free(&trigger.id, &channel, "") {
            return;
        }
        let draft = self.new_draft(trigger.lead_id.clone(), trigger.id.clone(), channel);
        self.awaiting_job.push_back(draft.id.clone());
        self.bound_queues();
        self.emit_insert(out, Row::Draft(draft));
    }

    fn new_draft(&mut self, lead_id: Option<String>, trigger: String, channel: String) -> DraftRow {
        DraftRow {
            id: self.new_id(DRAFT_PREFIXES),
            lead_id,
            trigger_message_id: Some(trigger),
            channel: Some(channel),
            response_disposition: self
                .rng
                .pick(DISPOSITIONS)
                .expect("not empty")
                .map(String::from),
        }
    }

    pub(super) fn ai_job(&mut self, out: &mut Vec<Change>) {
        let mut draft = None;
        if self.chance(|o| o.follow_conversation) {
            while let Some(id) = self.awaiting_job.pop_front() {
                draft = self.model.drafts.get(&id).cloned();
                if draft.is_some() {
                    break;
                }
            }
        }
        let Some(draft) =
            draft.or_else(|| self.model.drafts.pick(&mut self.rng, self.recency).cloned())
        else {
            return;
        };
        let job = self.new_job(&draft);
        self.awaiting_send.push_back(job.id.clone());
        self.bound_queues();
        self.emit_insert(out, Row::Job(job));
    }

    /// With locality, a draft or job still waiting when its conversation has gone
    /// quiet is never followed up (an auto-send cancelled): each queue keeps at
    /// most one entry per active lead, dropping the oldest.
    fn bound_queues(&mut self) {
        let Some(locality) = &self.config.locality else {
            return;
        };
        let cap = locality.active_leads.max(1);
        for queue in [&mut self.awaiting_job, &mut self.awaiting_send] {
            while queue.len() > cap {
                queue.pop_front();
            }
        }
    }

    fn trigger_sent_at(&self, trigger: Option<&str>) -> Option<Timestamp> {
        self.model.messages.get(trigger?)?.sent_at
    }

    fn new_job(&mut self, draft: &DraftRow) -> JobRow {
        let trigger_at = self.trigger_sent_at(draft.trigger_message_id.as_deref());
        let delay = self.rng.between(micros(180), micros(420));
        let job_type = match self.chance(|o| o.job_other_type) {
            true => *self.rng.pick(OTHER_JOB_TYPES).expect("not empty"),
            false => AI_AUTO_SEND_DELAYED,
        };
        let created_at = match self.chance(|o| o.null_created_at) {
            true => None,
            false => Some(Timestamp(self.clock)),
        };
        JobRow {
            id: self.new_id(JOB_PREFIXES),
            job_type: Some(job_type.to_string()),
            lead_id: draft.lead_id.clone(),
            message_id: draft.trigger_message_id.clone(),
            draft_id: Some(draft.id.clone()),
            run_at: Some(Timestamp(trigger_at.map_or(self.clock, |t| t.0) + delay)),
            started_at: None,
            finished_at: None,
            created_at,
        }
    }

    /// A job moves on: started, then finished, then (a retry) rescheduled.
    pub(super) fn job_progress(&mut self, out: &mut Vec<Change>) {
        let next = match self.chance(|o| o.follow_conversation) {
            true => self
                .awaiting_send
                .front()
                .and_then(|id| self.model.jobs.get(id)),
            false => None,
        };
        let Some(old) = next
            .or_else(|| self.model.jobs.pick(&mut self.rng, self.recency))
            .cloned()
        else {
            return;
        };
        let mut job = old.clone();
        let jitter = self.rng.between(0, micros(2));
        match (job.started_at, job.finished_at) {
            (None, _) => {
                job.started_at = Some(Timestamp(job.run_at.map_or(self.clock, |t| t.0) + jitter))
            }
            (Some(started), None) => job.finished_at = Some(Timestamp(started.0 + jitter)),
            _ => job.run_at = Some(Timestamp(self.clock + self.rng.between(0, micros(600)))),
        }
        self.emit_update(out, Row::Job(job), &Row::Job(old));
    }

    /// The AI send of a draft: at its job's runAt when following a job, sometimes
    /// stamped before its trigger.
    pub(super) fn ai_send(&mut self, out: &mut Vec<Change>) {
        let (draft, run_at) = match self.next_job_to_send() {
            Some((draft, job)) => (draft, job.run_at),
            None => match self.model.drafts.pick(&mut self.rng, self.recency).cloned() {
                Some(draft) => (draft, None),
                None => return,
            },
        };
        let lead_id = draft.lead_id.clone().unwrap_or_else(|| self.pick_lead());
        let channel = draft.channel.clone().unwrap_or_else(|| self.pick_channel());
        let mut message = self.new_message(&lead_id, &channel, "outbound");
        message.sent_by = match self.chance(|o| o.unknown_sent_by) {
            true => self
                .rng
                .pick(UNKNOWN_SENT_BY)
                .expect("not empty")
                .map(String::from),
            false => Some("ai".to_string()),
        };
        message.ai_draft_id = Some(draft.id.clone());
        let trigger_at = self.trigger_sent_at(draft.trigger_message_id.as_deref());
        if let Some(trigger_at) = trigger_at.filter(|_| self.chance(|o| o.ai_send_before_trigger)) {
            message.sent_at = Some(Timestamp(trigger_at.0 - self.rng.between(1, micros(10))));
        } else if let (Some(run_at), Some(_)) = (run_at, message.sent_at) {
            message.sent_at = Some(Timestamp(run_at.0 + self.rng.between(0, micros(3))));
        }
        self.emit_insert(out, Row::Message(message));
    }

    fn next_job_to_send(&mut self) -> Option<(DraftRow, JobRow)> {
        if !self.chance(|o| o.follow_conversation) {
            return None;
        }
        while let Some(id) = self.awaiting_send.pop_front() {
            let job = self.model.jobs.get(&id);
            let draft = job.and_then(|j| self.model.drafts.get(j.draft_id.as_deref()?));
            if let (Some(job), Some(draft)) = (job, draft) {
                return Some((draft.clone(), job.clone()));
            }
        }
        None
    }

    /// A draft (and its job) for an inbound message that is inserted only in a
    /// later transaction.
    pub(super) fn ai_before_message(&mut self, out: &mut Vec<Change>, budget: usize) {
        let (lead_id, channel) = self.pick_thread();
        let message = self.new_message(&lead_id, &channel, "inbound");
        let draft = self.new_draft(message.lead_id.clone(), message.id.clone(), channel);
        let job = (budget >= 2).then(|| self.new_job(&draft));
        self.emit_insert(out, Row::Draft(draft));
        if let Some(job) = job {
            self.awaiting_send.push_back(job.id.clone());
            self.bound_queues();
            self.emit_insert(out, Row::Job(job));
        }
        self.held_messages.push_back(message);
    }

    pub(super) fn release_held_messages(&mut self, out: &mut Vec<Change>, limit: usize) {
        while out.len() < limit {
            let Some(message) = self.held_messages.pop_front() else {
                return;
            };
            if let (Some(lead_id), Some(channel)) = (&message.lead_id, &message.channel) {
                let (lead_id, channel) = (lead_id.clone(), channel.clone());
                self.cursor(&lead_id, &channel).last_inbound = Some(message.id.clone());
            }
            self.emit_insert(out, Row::Message(message));
        }
    }
}
