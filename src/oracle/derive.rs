//! SPEC section 3, rule by rule, over full table contents: threads, anchors, response
//! windows, setter and AI responses, delay attribution, clientId.

use std::collections::BTreeMap;

use crate::change::{AI_AUTO_SEND_DELAYED, DraftRow, JobRow, MessageRow, Timestamp};
use crate::row::TimingRow;

use super::{SourceTables, chosen_delay};

const INBOUND: &str = "inbound";
const OUTBOUND: &str = "outbound";
const SENT_BY_SETTER: &str = "setter";
const SENT_BY_AI: &str = "ai";

/// The messages of one (leadId, channel), ordered by (sentAt, id bytes).
type Thread<'a> = Vec<&'a MessageRow>;

/// Lookups built once per derivation, so that each anchor costs O(log n).
struct Indexes<'a> {
    tables: &'a SourceTables,
    /// (triggerMessageId, channel) → the draft with the smallest id.
    drafts: BTreeMap<(&'a str, &'a str), &'a DraftRow>,
    /// draft id → its earliest (sentAt, id) AI send.
    ai_responses: BTreeMap<&'a str, &'a MessageRow>,
    /// (messageId, draftId) → the latest (createdAt, id) delayed auto-send job.
    jobs: BTreeMap<(&'a str, &'a str), &'a JobRow>,
}

/// Every `"ResponseTimingEvent"` row of the tables, keyed by inbound message id.
pub fn derive(tables: &SourceTables) -> BTreeMap<String, TimingRow> {
    let indexes = Indexes::build(tables);
    let mut rows = BTreeMap::new();
    for ((lead_id, channel), thread) in threads(tables) {
        for position in (0..thread.len()).filter(|&i| is_anchor(&thread, i)) {
            let anchor = thread[position];
            let window = response_window(&thread, position);
            if let Some(row) = indexes.timing_row(lead_id, channel, anchor, window) {
                rows.insert(anchor.id.clone(), row);
            }
        }
    }
    rows
}

fn is_direction(message: &MessageRow, direction: &str) -> bool {
    message.direction.as_deref() == Some(direction)
}

/// Rule 1: messages with a leadId, a channel, a sentAt and a direction of exactly
/// `inbound` or `outbound`, grouped by (leadId, channel), ordered by (sentAt, id).
fn threads(tables: &SourceTables) -> BTreeMap<(&str, &str), Thread<'_>> {
    let mut threads: BTreeMap<(&str, &str), Thread<'_>> = BTreeMap::new();
    for message in tables.messages.values() {
        let placed = message.sent_at.is_some()
            && (is_direction(message, INBOUND) || is_direction(message, OUTBOUND));
        if let (true, Some(lead_id), Some(channel)) = (
            placed,
            message.lead_id.as_deref(),
            message.channel.as_deref(),
        ) {
            threads.entry((lead_id, channel)).or_default().push(message);
        }
    }
    for thread in threads.values_mut() {
        // String's Ord compares bytes: the C collation of the spec.
        thread.sort_by(|a, b| (a.sent_at, &a.id).cmp(&(b.sent_at, &b.id)));
    }
    threads
}

/// Rule 2: an inbound message whose immediate successor is outbound.
fn is_anchor(thread: &[&MessageRow], position: usize) -> bool {
    is_direction(thread[position], INBOUND)
        && thread
            .get(position + 1)
            .is_some_and(|next| is_direction(next, OUTBOUND))
}

/// Rule 3: the messages after the anchor, up to the next inbound (excluded).
fn response_window<'t, 'a>(thread: &'t [&'a MessageRow], anchor: usize) -> &'t [&'a MessageRow] {
    let after = &thread[anchor + 1..];
    let end = after
        .iter()
        .position(|m| is_direction(m, INBOUND))
        .unwrap_or(after.len());
    &after[..end]
}

/// Rule 4: the first outbound of the window sent by a setter with a user id.
fn setter_response<'a>(window: &[&'a MessageRow]) -> Option<&'a MessageRow> {
    window.iter().copied().find(|m| {
        is_direction(m, OUTBOUND)
            && m.sent_by.as_deref() == Some(SENT_BY_SETTER)
            && m.sent_by_user_id.is_some()
    })
}

impl<'a> Indexes<'a> {
    fn build(tables: &'a SourceTables) -> Self {
        let mut drafts = BTreeMap::new();
        // Drafts iterate in id order: the first one kept per key has the smallest id.
        for draft in tables.drafts.values() {
            if let (Some(trigger), Some(channel)) = (&draft.trigger_message_id, &draft.channel) {
                drafts
                    .entry((trigger.as_str(), channel.as_str()))
                    .or_insert(draft);
            }
        }
        let mut ai_responses: BTreeMap<&str, &MessageRow> = BTreeMap::new();
        for message in tables.messages.values().filter(|m| is_ai_send(m)) {
            let draft_id = message
                .ai_draft_id
                .as_deref()
                .expect("checked by is_ai_send");
            let best = ai_responses.entry(draft_id).or_insert(message);
            if (message.sent_at, &message.id) < (best.sent_at, &best.id) {
                *best = message;
            }
        }
        let mut jobs: BTreeMap<(&str, &str), &JobRow> = BTreeMap::new();
        for job in tables.jobs.values() {
            let (Some(AI_AUTO_SEND_DELAYED), Some(message_id), Some(draft_id)) = (
                job.job_type.as_deref(),
                job.message_id.as_deref(),
                job.draft_id.as_deref(),
            ) else {
                continue;
            };
            let latest = jobs.entry((message_id, draft_id)).or_insert(job);
            // Option orders None first: a NULL createdAt is older than any value.
            if (job.created_at, &job.id) > (latest.created_at, &latest.id) {
                *latest = job;
            }
        }
        Indexes {
            tables,
            drafts,
            ai_responses,
            jobs,
        }
    }

    /// The row of one anchor; `None` when its lead is unknown or has no clientId.
    fn timing_row(
        &self,
        lead_id: &str,
        channel: &str,
        anchor: &MessageRow,
        window: &[&MessageRow],
    ) -> Option<TimingRow> {
        let client_id = self.tables.leads.get(lead_id)?.client_id.clone()?;
        let inbound_sent_at = anchor.sent_at?;
        let mut row = empty_row(client_id, lead_id, channel, anchor, inbound_sent_at);
        if let Some(setter) = setter_response(window) {
            fill_setter_response(&mut row, setter);
        }
        let Some(draft) = self.drafts.get(&(anchor.id.as_str(), channel)) else {
            return Some(row);
        };
        row.ai_draft_id = Some(draft.id.clone());
        if let Some(ai) = self.ai_responses.get(draft.id.as_str()) {
            fill_ai_response(&mut row, ai);
        }
        if let Some(job) = self.jobs.get(&(anchor.id.as_str(), draft.id.as_str())) {
            self.fill_delay_attribution(&mut row, job);
        }
        Some(row)
    }

    /// Rule 6, for an anchor with a job: the recorded bounds, the chosen delay and
    /// the job's times. A job without a record (inserted before the recording
    /// trigger existed) gets the bounds in force now, as after a backfill.
    fn fill_delay_attribution(&self, row: &mut TimingRow, job: &JobRow) {
        let (min, max) = self
            .tables
            .job_delays
            .get(&job.id)
            .copied()
            .unwrap_or_else(|| self.tables.current_delay_bounds(job.lead_id.as_deref()));
        row.ai_delay_min_seconds = Some(min);
        row.ai_delay_max_seconds = Some(max);
        row.ai_chosen_delay_seconds = Some(chosen_delay(&row.inbound_message_id, min, max));
        row.ai_scheduled_run_at = job.run_at;
        row.ai_background_job_id = Some(job.id.clone());
        row.ai_job_started_at = job.started_at;
        row.ai_job_finished_at = job.finished_at;
    }
}

/// Rule 5: an AI send of a draft (any thread, any lead).
fn is_ai_send(message: &MessageRow) -> bool {
    message.ai_draft_id.is_some()
        && message.sent_by.as_deref() == Some(SENT_BY_AI)
        && is_direction(message, OUTBOUND)
        && message.sent_at.is_some()
}

fn fill_setter_response(row: &mut TimingRow, setter: &MessageRow) {
    let sent_at = setter.sent_at.expect("thread messages have a sentAt");
    row.setter_response_message_id = Some(setter.id.clone());
    row.setter_response_sent_at = Some(sent_at);
    row.setter_sent_by_user_id = setter.sent_by_user_id.clone();
    row.setter_response_ms = Some(floor_millis(sent_at, row.inbound_sent_at));
}

/// Rule 5 and the actual delay of rule 6, which holds with or without a job.
fn fill_ai_response(row: &mut TimingRow, ai: &MessageRow) {
    let sent_at = ai.sent_at.expect("checked by is_ai_send");
    row.ai_response_message_id = Some(ai.id.clone());
    row.ai_response_sent_at = Some(sent_at);
    row.ai_response_ms = Some(floor_millis(sent_at, row.inbound_sent_at));
    row.ai_actual_delay_seconds = Some(floor_seconds(sent_at, row.inbound_sent_at));
}

/// Whole milliseconds from `from` to `to`, rounded toward negative infinity.
fn floor_millis(to: Timestamp, from: Timestamp) -> i64 {
    (to.0 - from.0).div_euclid(1_000)
}

/// Whole seconds from `from` to `to`, rounded toward negative infinity.
fn floor_seconds(to: Timestamp, from: Timestamp) -> i64 {
    (to.0 - from.0).div_euclid(1_000_000)
}

fn empty_row(
    client_id: String,
    lead_id: &str,
    channel: &str,
    anchor: &MessageRow,
    inbound_sent_at: Timestamp,
) -> TimingRow {
    TimingRow::unanswered(client_id, lead_id, channel, &anchor.id, inbound_sent_at)
}
