//! Unchanged TOAST values: pgoutput sends `u` instead of a value that did not change
//! and lives out of line. The stored value is kept for those columns (SPEC 4).
//! Column names are the logical names of SPEC section 1.

use crate::change::{CampaignRow, DraftRow, JobRow, LeadRow, MessageRow};

macro_rules! keep {
    ($new:ident, $old:ident, $keep:ident, { $($column:literal => $field:ident),* $(,)? }) => {
        $(if $keep($column) { $new.$field = $old.$field.clone(); })*
    };
}

pub(super) fn merge_message(new: &mut MessageRow, old: &MessageRow, keep: impl Fn(&str) -> bool) {
    keep!(new, old, keep, {
        "leadId" => lead_id, "channel" => channel, "direction" => direction,
        "sentBy" => sent_by, "sentByUserId" => sent_by_user_id,
        "aiDraftId" => ai_draft_id, "sentAt" => sent_at,
    });
}

pub(super) fn merge_draft(new: &mut DraftRow, old: &DraftRow, keep: impl Fn(&str) -> bool) {
    keep!(new, old, keep, {
        "leadId" => lead_id, "triggerMessageId" => trigger_message_id,
        "channel" => channel, "responseDisposition" => response_disposition,
    });
}

pub(super) fn merge_job(new: &mut JobRow, old: &JobRow, keep: impl Fn(&str) -> bool) {
    keep!(new, old, keep, {
        "type" => job_type, "leadId" => lead_id, "messageId" => message_id,
        "draftId" => draft_id, "runAt" => run_at, "startedAt" => started_at,
        "finishedAt" => finished_at, "createdAt" => created_at,
    });
}

pub(super) fn merge_lead(new: &mut LeadRow, old: &LeadRow, keep: impl Fn(&str) -> bool) {
    keep!(new, old, keep, { "clientId" => client_id, "emailCampaignId" => email_campaign_id });
}

pub(super) fn merge_campaign(
    new: &mut CampaignRow,
    old: &CampaignRow,
    keep: impl Fn(&str) -> bool,
) {
    keep!(new, old, keep, {
        "aiAutoSendDelayMinSeconds" => delay_min_seconds,
        "aiAutoSendDelayMaxSeconds" => delay_max_seconds,
        "responseMode" => response_mode,
    });
}
