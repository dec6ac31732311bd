//! Generated changes as SQL statements for the reference schema (`schema/source.sql`),
//! so integration tests can replay a history into a real Postgres and let the
//! replication stream carry it back.
//!
//! Literals are inlined (no parameters) so a failing history can be pasted into
//! psql as is: text is single-quoted with quotes doubled (the schema's
//! `standard_conforming_strings` default makes backslashes plain), timestamps are
//! `'…Z'::timestamptz` with all six fractional digits.

use crate::change::{
    CampaignRow, Change, DraftRow, JobRow, LeadRow, MessageRow, Row, Table, Timestamp,
};

/// One SQL statement (without the trailing `;`) with the effect of `change`.
///
/// An insert names its columns; an update sets every mapped column except the
/// `unchanged` ones (keeping the stored value, as an unchanged TOAST value does) and
/// finds the row by its old id; a truncate lists all its tables in one statement.
/// A message insert also fills the reference schema's `body`, which replytime drops.
pub(crate) fn change_to_sql(change: &Change) -> String {
    match change {
        Change::Insert(row) => insert_sql(row),
        Change::Update {
            row,
            old_id,
            unchanged,
        } => update_sql(row, old_id.as_deref().unwrap_or(row.id()), unchanged),
        Change::Delete { table, id } => {
            format!(
                "DELETE FROM {} WHERE id = {}",
                table_ident(*table),
                text(id)
            )
        }
        Change::Truncate(tables) => {
            let names: Vec<String> = tables.iter().map(|&t| table_ident(t)).collect();
            format!("TRUNCATE {}", names.join(", "))
        }
    }
}

/// A whole transaction as one `BEGIN; …; COMMIT;` script.
pub fn transaction_to_sql(changes: &[Change]) -> String {
    let mut script = String::from("BEGIN;\n");
    for change in changes {
        script.push_str(&change_to_sql(change));
        script.push_str(";\n");
    }
    script.push_str("COMMIT;\n");
    script
}

fn insert_sql(row: &Row) -> String {
    let mut columns = row_columns(row);
    if let Row::Message(message) = row {
        columns.push(("body", text(&format!("Hi, it's {} — é ✓", message.id))));
    }
    let names: Vec<String> = columns.iter().map(|(name, _)| ident(name)).collect();
    let values: Vec<&str> = columns.iter().map(|(_, value)| value.as_str()).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table_ident(row.table()),
        names.join(", "),
        values.join(", ")
    )
}

fn update_sql(row: &Row, old_id: &str, unchanged: &[String]) -> String {
    let assignments: Vec<String> = row_columns(row)
        .into_iter()
        .filter(|(name, _)| !unchanged.iter().any(|u| u == name))
        .map(|(name, value)| format!("{} = {value}", ident(name)))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE id = {}",
        table_ident(row.table()),
        assignments.join(", "),
        text(old_id)
    )
}

/// (logical column name, SQL literal) of every mapped column, `id` first.
fn row_columns(row: &Row) -> Vec<(&'static str, String)> {
    match row {
        Row::Lead(r) => lead_columns(r),
        Row::Campaign(r) => campaign_columns(r),
        Row::Message(r) => message_columns(r),
        Row::Draft(r) => draft_columns(r),
        Row::Job(r) => job_columns(r),
    }
}

fn lead_columns(r: &LeadRow) -> Vec<(&'static str, String)> {
    vec![
        ("id", text(&r.id)),
        ("clientId", opt_text(&r.client_id)),
        ("emailCampaignId", opt_text(&r.email_campaign_id)),
    ]
}

fn campaign_columns(r: &CampaignRow) -> Vec<(&'static str, String)> {
    vec![
        ("id", text(&r.id)),
        ("aiAutoSendDelayMinSeconds", opt_int(r.delay_min_seconds)),
        ("aiAutoSendDelayMaxSeconds", opt_int(r.delay_max_seconds)),
        ("responseMode", opt_text(&r.response_mode)),
    ]
}

fn message_columns(r: &MessageRow) -> Vec<(&'static str, String)> {
    vec![
        ("id", text(&r.id)),
        ("leadId", opt_text(&r.lead_id)),
        ("channel", opt_text(&r.channel)),
        ("direction", opt_text(&r.direction)),
        ("sentBy", opt_text(&r.sent_by)),
        ("sentByUserId", opt_text(&r.sent_by_user_id)),
        ("aiDraftId", opt_text(&r.ai_draft_id)),
        ("sentAt", opt_timestamp(r.sent_at)),
    ]
}

fn draft_columns(r: &DraftRow) -> Vec<(&'static str, String)> {
    vec![
        ("id", text(&r.id)),
        ("leadId", opt_text(&r.lead_id)),
        ("triggerMessageId", opt_text(&r.trigger_message_id)),
        ("channel", opt_text(&r.channel)),
        ("responseDisposition", opt_text(&r.response_disposition)),
    ]
}

fn job_columns(r: &JobRow) -> Vec<(&'static str, String)> {
    vec![
        ("id", text(&r.id)),
        ("type", opt_text(&r.job_type)),
        ("leadId", opt_text(&r.lead_id)),
        ("messageId", opt_text(&r.message_id)),
        ("draftId", opt_text(&r.draft_id)),
        ("runAt", opt_timestamp(r.run_at)),
        ("startedAt", opt_timestamp(r.started_at)),
        ("finishedAt", opt_timestamp(r.finished_at)),
        ("createdAt", opt_timestamp(r.created_at)),
    ]
}

fn table_ident(table: Table) -> String {
    ident(table.default_name())
}

/// A quoted identifier (quoting also keeps camelCase).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A text literal. Postgres text cannot hold NUL, which the generator never makes.
fn text(value: &str) -> String {
    debug_assert!(!value.contains('\0'), "NUL in a text literal");
    format!("'{}'", value.replace('\'', "''"))
}

fn opt_text(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "NULL".to_string(), text)
}

fn opt_int(value: Option<i32>) -> String {
    value.map_or_else(|| "NULL".to_string(), |v| v.to_string())
}

/// `'2024-03-01T00:00:00.000001Z'::timestamptz`: UTC, microseconds.
fn opt_timestamp(value: Option<Timestamp>) -> String {
    value.map_or_else(|| "NULL".to_string(), |t| format!("'{t}'::timestamptz"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> MessageRow {
        MessageRow {
            id: "m'1".to_string(),
            lead_id: Some("Лид-1".to_string()),
            channel: Some("sms".to_string()),
            direction: Some("inbound".to_string()),
            sent_by: None,
            sent_by_user_id: None,
            ai_draft_id: None,
            sent_at: Some(Timestamp(1_709_251_200_000_001)),
        }
    }

    #[test]
    fn insert_names_columns_quotes_literals_and_fills_body() {
        let sql = change_to_sql(&Change::Insert(Row::Message(message())));
        assert_eq!(
            sql,
            "INSERT INTO \"Message\" (\"id\", \"leadId\", \"channel\", \"direction\", \
             \"sentBy\", \"sentByUserId\", \"aiDraftId\", \"sentAt\", \"body\") VALUES \
             ('m''1', 'Лид-1', 'sms', 'inbound', NULL, NULL, NULL, \
             '2024-03-01T00:00:00.000001Z'::timestamptz, 'Hi, it''s m''1 — é ✓')"
        );
    }

    #[test]
    fn update_skips_unchanged_columns_and_targets_old_id() {
        let change = Change::Update {
            row: Row::Campaign(CampaignRow {
                id: "c2".to_string(),
                delay_min_seconds: Some(420),
                delay_max_seconds: None,
                response_mode: None,
            }),
            old_id: Some("c'1".to_string()),
            unchanged: vec!["responseMode".to_string()],
        };
        assert_eq!(
            change_to_sql(&change),
            "UPDATE \"EmailCampaign\" SET \"id\" = 'c2', \"aiAutoSendDelayMinSeconds\" = 420, \
             \"aiAutoSendDelayMaxSeconds\" = NULL WHERE id = 'c''1'"
        );
    }

    #[test]
    fn delete_and_truncate() {
        let delete = Change::Delete {
            table: Table::AiDraft,
            id: "d'1".to_string(),
        };
        assert_eq!(
            change_to_sql(&delete),
            "DELETE FROM \"AIDraft\" WHERE id = 'd''1'"
        );
        let truncate = Change::Truncate(vec![Table::Lead, Table::BackgroundJob]);
        assert_eq!(
            change_to_sql(&truncate),
            "TRUNCATE \"Lead\", \"BackgroundJob\""
        );
        let script = transaction_to_sql(&[delete, truncate]);
        assert!(script.starts_with("BEGIN;\nDELETE") && script.ends_with(";\nCOMMIT;\n"));
    }

    #[test]
    fn negative_and_fractional_timestamps_keep_microseconds() {
        assert_eq!(
            opt_timestamp(Some(Timestamp(-1))),
            "'1969-12-31T23:59:59.999999Z'::timestamptz"
        );
    }
}
