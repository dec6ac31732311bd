//! Unchanged TOAST values: pgoutput sends `u` instead of a column's value when the
//! update did not touch an out-of-line value. The generator imitates it on columns
//! an update left alone, so the consumers' "keep the stored value" path is tested.

use crate::change::Row;

use super::rng::Rng;

/// For each (column, field): when the value did not change and is not NULL, blank
/// it with probability 1/2 and list the column as unchanged.
macro_rules! blank {
    ($new:ident, $old:ident, $rng:ident, $unchanged:ident, $($column:literal => $field:ident),+ $(,)?) => {
        $(
            if $new.$field.is_some() && $new.$field == $old.$field && $rng.chance(0.5) {
                $new.$field = None;
                $unchanged.push($column.to_string());
            }
        )+
    };
}

/// Blanks (sets to NULL) a random subset of the non-NULL columns that `new` shares
/// with `old`, and returns their logical names as the update's `unchanged` list.
/// Leads and campaigns are left whole: their columns are never toasted in practice.
pub(super) fn blank_unchanged(new: Row, old: &Row, rng: &mut Rng) -> (Row, Vec<String>) {
    let mut unchanged = Vec::new();
    let row = match (new, old) {
        (Row::Message(mut m), Row::Message(o)) => {
            blank!(m, o, rng, unchanged,
                "leadId" => lead_id, "channel" => channel, "direction" => direction,
                "sentBy" => sent_by, "sentByUserId" => sent_by_user_id,
                "aiDraftId" => ai_draft_id, "sentAt" => sent_at);
            Row::Message(m)
        }
        (Row::Draft(mut d), Row::Draft(o)) => {
            blank!(d, o, rng, unchanged,
                "leadId" => lead_id, "triggerMessageId" => trigger_message_id,
                "channel" => channel, "responseDisposition" => response_disposition);
            Row::Draft(d)
        }
        (Row::Job(mut j), Row::Job(o)) => {
            blank!(j, o, rng, unchanged,
                "type" => job_type, "leadId" => lead_id, "messageId" => message_id,
                "draftId" => draft_id, "runAt" => run_at, "startedAt" => started_at,
                "finishedAt" => finished_at, "createdAt" => created_at);
            Row::Job(j)
        }
        (new, _) => new,
    };
    (row, unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{MessageRow, Timestamp};

    #[test]
    fn blanks_only_untouched_non_null_columns() {
        let old = MessageRow {
            id: "m".to_string(),
            lead_id: Some("L".to_string()),
            channel: Some("sms".to_string()),
            direction: Some("inbound".to_string()),
            sent_by: None,
            sent_by_user_id: None,
            ai_draft_id: None,
            sent_at: Some(Timestamp(1)),
        };
        let new = MessageRow {
            channel: Some("email".to_string()),
            ..old.clone()
        };
        let mut rng = Rng::new(0);
        for _ in 0..50 {
            let (row, unchanged) = blank_unchanged(
                Row::Message(new.clone()),
                &Row::Message(old.clone()),
                &mut rng,
            );
            let Row::Message(row) = row else { panic!() };
            assert_eq!(row.channel.as_deref(), Some("email"));
            for column in &unchanged {
                assert!(["leadId", "direction", "sentAt"].contains(&column.as_str()));
            }
            assert_eq!(
                row.sent_at.is_none(),
                unchanged.iter().any(|c| c == "sentAt")
            );
        }
    }
}
