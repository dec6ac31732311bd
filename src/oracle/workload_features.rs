//! Test support: which edge cases of SPEC sections 3–4 a change exercises, judged
//! against the tables before it, so a test can prove the generator produces all.

use std::collections::BTreeSet;

use super::SourceTables;
use crate::change::{CampaignRow, Change, JobRow, LeadRow, MessageRow, Row, Table};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Feature {
    BackdatedMessage,
    SameMicrosecondTie,
    NullSentAtInsert,
    SentAtSetLater,
    ThreadMove,
    DirectionFlip,
    UnknownDirection,
    UnknownSentBy,
    SetterWithoutUser,
    AiSendBeforeTrigger,
    MessageDelete,
    DraftBeforeMessage,
    DraftAfterMessage,
    JobBeforeMessage,
    JobAfterMessage,
    JobProgress,
    CampaignMaxNotAboveMin,
    CampaignBoundsChange,
    LeadCampaignChange,
    LeadClientChange,
    LeadAfterMessages,
    LeadDelete,
    Truncate,
    NonAsciiId,
    UpperCaseId,
    Rename,
    UnchangedColumns,
}

impl Feature {
    pub(crate) const ALL: [Feature; 27] = [
        Feature::BackdatedMessage,
        Feature::SameMicrosecondTie,
        Feature::NullSentAtInsert,
        Feature::SentAtSetLater,
        Feature::ThreadMove,
        Feature::DirectionFlip,
        Feature::UnknownDirection,
        Feature::UnknownSentBy,
        Feature::SetterWithoutUser,
        Feature::AiSendBeforeTrigger,
        Feature::MessageDelete,
        Feature::DraftBeforeMessage,
        Feature::DraftAfterMessage,
        Feature::JobBeforeMessage,
        Feature::JobAfterMessage,
        Feature::JobProgress,
        Feature::CampaignMaxNotAboveMin,
        Feature::CampaignBoundsChange,
        Feature::LeadCampaignChange,
        Feature::LeadClientChange,
        Feature::LeadAfterMessages,
        Feature::LeadDelete,
        Feature::Truncate,
        Feature::NonAsciiId,
        Feature::UpperCaseId,
        Feature::Rename,
        Feature::UnchangedColumns,
    ];
}

/// Records the features `change` exercises, given the tables before it.
pub(crate) fn observe(before: &SourceTables, change: &Change, seen: &mut BTreeSet<Feature>) {
    match change {
        Change::Insert(row) => observe_insert(before, row, seen),
        Change::Update {
            row,
            old_id,
            unchanged,
        } => {
            if old_id.is_some() {
                seen.insert(Feature::Rename);
            }
            if !unchanged.is_empty() {
                seen.insert(Feature::UnchangedColumns);
            }
            let key = old_id.as_deref().unwrap_or(row.id());
            let touched = |column: &str| !unchanged.iter().any(|u| u == column);
            observe_update(before, row, key, &touched, seen);
        }
        Change::Delete { table, .. } => {
            match table {
                Table::Lead => seen.insert(Feature::LeadDelete),
                Table::Message => seen.insert(Feature::MessageDelete),
                _ => false,
            };
        }
        Change::Truncate(_) => _ = seen.insert(Feature::Truncate),
    }
}

fn observe_insert(before: &SourceTables, row: &Row, seen: &mut BTreeSet<Feature>) {
    if !row.id().is_ascii() {
        seen.insert(Feature::NonAsciiId);
    }
    if row.id().starts_with(|c: char| c.is_ascii_uppercase()) {
        seen.insert(Feature::UpperCaseId);
    }
    match row {
        Row::Message(m) => observe_message_insert(before, m, seen),
        Row::Draft(d) => {
            let exists = d
                .trigger_message_id
                .as_ref()
                .is_some_and(|id| before.messages.contains_key(id));
            seen.insert(
                [Feature::DraftBeforeMessage, Feature::DraftAfterMessage][usize::from(exists)],
            );
        }
        Row::Job(j) => {
            let exists = j
                .message_id
                .as_ref()
                .is_some_and(|id| before.messages.contains_key(id));
            seen.insert([Feature::JobBeforeMessage, Feature::JobAfterMessage][usize::from(exists)]);
        }
        Row::Campaign(c) => observe_campaign(c, seen),
        Row::Lead(l) => {
            let lead_id = Some(&l.id);
            if before
                .messages
                .values()
                .any(|m| m.lead_id.as_ref() == lead_id)
            {
                seen.insert(Feature::LeadAfterMessages);
            }
        }
    }
}

fn observe_message_insert(before: &SourceTables, m: &MessageRow, seen: &mut BTreeSet<Feature>) {
    let direction = m.direction.as_deref();
    if !matches!(direction, Some("inbound" | "outbound") | None) {
        seen.insert(Feature::UnknownDirection);
    }
    if !matches!(m.sent_by.as_deref(), Some("setter" | "ai")) && direction == Some("outbound") {
        seen.insert(Feature::UnknownSentBy);
    }
    if m.sent_by.as_deref() == Some("setter") && m.sent_by_user_id.is_none() {
        seen.insert(Feature::SetterWithoutUser);
    }
    let Some(sent_at) = m.sent_at else {
        seen.insert(Feature::NullSentAtInsert);
        return;
    };
    let same_thread = |o: &&MessageRow| o.lead_id == m.lead_id && o.channel == m.channel;
    for other in before.messages.values().filter(same_thread) {
        match other.sent_at {
            Some(t) if t == sent_at => _ = seen.insert(Feature::SameMicrosecondTie),
            Some(t) if t > sent_at => _ = seen.insert(Feature::BackdatedMessage),
            _ => {}
        }
    }
    let trigger_at = m
        .ai_draft_id
        .as_ref()
        .and_then(|d| before.drafts.get(d)?.trigger_message_id.as_ref())
        .and_then(|t| before.messages.get(t)?.sent_at);
    if m.sent_by.as_deref() == Some("ai") && trigger_at.is_some_and(|t| t > sent_at) {
        seen.insert(Feature::AiSendBeforeTrigger);
    }
}

fn observe_campaign(c: &CampaignRow, seen: &mut BTreeSet<Feature>) {
    if let (Some(min), Some(max)) = (c.delay_min_seconds, c.delay_max_seconds)
        && max <= min
    {
        seen.insert(Feature::CampaignMaxNotAboveMin);
    }
}

fn observe_update(
    before: &SourceTables,
    row: &Row,
    key: &str,
    touched: &dyn Fn(&str) -> bool,
    seen: &mut BTreeSet<Feature>,
) {
    match row {
        Row::Message(new) => {
            let Some(old) = before.messages.get(key) else {
                return;
            };
            if touched("sentAt") && old.sent_at.is_none() && new.sent_at.is_some() {
                seen.insert(Feature::SentAtSetLater);
            }
            let moved = (touched("leadId") && old.lead_id != new.lead_id)
                || (touched("channel") && old.channel != new.channel);
            if moved {
                seen.insert(Feature::ThreadMove);
            }
            if touched("direction") && old.direction != new.direction {
                seen.insert(Feature::DirectionFlip);
            }
        }
        Row::Job(new) => observe_job_update(before.jobs.get(key), new, touched, seen),
        Row::Campaign(new) => {
            observe_campaign(new, seen);
            let old = before.campaigns.get(key);
            if old.is_some_and(|o| {
                (o.delay_min_seconds, o.delay_max_seconds)
                    != (new.delay_min_seconds, new.delay_max_seconds)
            }) {
                seen.insert(Feature::CampaignBoundsChange);
            }
        }
        Row::Lead(new) => observe_lead_update(before.leads.get(key), new, seen),
        Row::Draft(_) => {}
    }
}

fn observe_job_update(
    old: Option<&JobRow>,
    new: &JobRow,
    touched: &dyn Fn(&str) -> bool,
    seen: &mut BTreeSet<Feature>,
) {
    let Some(old) = old else { return };
    let progressed = (touched("runAt") && old.run_at != new.run_at)
        || (touched("startedAt") && old.started_at != new.started_at)
        || (touched("finishedAt") && old.finished_at != new.finished_at);
    if progressed {
        seen.insert(Feature::JobProgress);
    }
}

fn observe_lead_update(old: Option<&LeadRow>, new: &LeadRow, seen: &mut BTreeSet<Feature>) {
    let Some(old) = old else { return };
    if old.email_campaign_id != new.email_campaign_id {
        seen.insert(Feature::LeadCampaignChange);
    }
    if old.client_id != new.client_id {
        seen.insert(Feature::LeadClientChange);
    }
}
