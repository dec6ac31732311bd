//! Reading the source tables directly (the initial load and `backfill`): keyset
//! pages ordered by id (never OFFSET), one bounded batch per query, typed values.

use tokio_postgres::Client;

use super::SourceError;
use super::admin::quote_ident;
use super::decode::TableMapping;
use crate::change::{CampaignRow, DraftRow, JobRow, LeadRow, MessageRow, Row, Table, Timestamp};

/// Value types of the logical columns, in the order of SPEC section 1.
fn casts(table: Table) -> &'static [&'static str] {
    match table {
        Table::Lead => &["text", "text", "text"],
        Table::EmailCampaign => &["text", "int4", "int4", "text"],
        Table::Message => &[
            "text",
            "text",
            "text",
            "text",
            "text",
            "text",
            "text",
            "timestamptz",
        ],
        Table::AiDraft => &["text", "text", "text", "text", "text"],
        Table::BackgroundJob => &[
            "text",
            "text",
            "text",
            "text",
            "text",
            "timestamptz",
            "timestamptz",
            "timestamptz",
            "timestamptz",
        ],
    }
}

/// `SELECT` of one keyset page: `$1` is the last id of the previous page (or NULL).
pub fn page_sql(
    mapping: &TableMapping,
    table: Table,
    limit: usize,
    shard: Option<crate::shard::Shard>,
) -> String {
    let columns: Vec<String> = mapping
        .column_names(table)
        .iter()
        .zip(casts(table))
        .map(|(c, cast)| format!("{}::{cast}", quote_ident(c)))
        .collect();
    let id = quote_ident(mapping.column_names(table)[0]);
    let owned = match (shard, mapping.lead_column(table)) {
        (Some(shard), Some(lead)) => format!(" AND {}", shard.predicate(&quote_ident(lead))),
        _ => String::new(),
    };
    format!(
        "SELECT {} FROM {}.{} WHERE ($1::text IS NULL OR {id}::text > $1::text){owned} ORDER BY {id}::text LIMIT {limit}",
        columns.join(", "),
        quote_ident(&mapping.schema),
        quote_ident(mapping.table_name(table)),
    )
}

fn ts(row: &tokio_postgres::Row, i: usize) -> Option<Timestamp> {
    row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
        .map(Timestamp::from_chrono)
}

fn text(row: &tokio_postgres::Row, i: usize) -> Option<String> {
    row.get(i)
}

/// A typed row from one result row of [`page_sql`]; `None` when the id is NULL.
pub fn row_from_sql(table: Table, r: &tokio_postgres::Row) -> Option<Row> {
    let id: String = text(r, 0)?;
    Some(match table {
        Table::Lead => Row::Lead(LeadRow {
            id,
            client_id: text(r, 1),
            email_campaign_id: text(r, 2),
        }),
        Table::EmailCampaign => Row::Campaign(CampaignRow {
            id,
            delay_min_seconds: r.get(1),
            delay_max_seconds: r.get(2),
            response_mode: text(r, 3),
        }),
        Table::Message => Row::Message(MessageRow {
            id,
            lead_id: text(r, 1),
            channel: text(r, 2),
            direction: text(r, 3),
            sent_by: text(r, 4),
            sent_by_user_id: text(r, 5),
            ai_draft_id: text(r, 6),
            sent_at: ts(r, 7),
        }),
        Table::AiDraft => Row::Draft(DraftRow {
            id,
            lead_id: text(r, 1),
            trigger_message_id: text(r, 2),
            channel: text(r, 3),
            response_disposition: text(r, 4),
        }),
        Table::BackgroundJob => Row::Job(JobRow {
            id,
            job_type: text(r, 1),
            lead_id: text(r, 2),
            message_id: text(r, 3),
            draft_id: text(r, 4),
            run_at: ts(r, 5),
            started_at: ts(r, 6),
            finished_at: ts(r, 7),
            created_at: ts(r, 8),
        }),
    })
}

/// A row of the snapshot that cannot be placed (SPEC 4): quarantined by the load
/// exactly as the stream quarantines it, never silently left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaceable {
    pub table: Table,
    pub row_id: Option<String>,
    pub reason: String,
}

/// One page of a table: the rows to apply and those to quarantine.
#[derive(Debug, Default)]
pub struct Page {
    /// Result rows read (applied and quarantined).
    pub read: usize,
    pub rows: Vec<Row>,
    pub unplaceable: Vec<Unplaceable>,
}

/// Why `row` cannot be placed, as the stream's decoder says it: a message needs a
/// thread (`leadId`, `channel` and `direction` not null).
pub fn unplaceable_reason(row: &Row) -> Option<String> {
    let Row::Message(m) = row else {
        return None;
    };
    let null: Vec<&str> = [
        ("leadId", m.lead_id.is_none()),
        ("channel", m.channel.is_none()),
        ("direction", m.direction.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, null)| null.then_some(name))
    .collect();
    (!null.is_empty()).then(|| format!("null {}", null.join(", ")))
}

/// Reads one page after `after`; returns it and the last id seen.
pub async fn read_page(
    client: &Client,
    sql: &tokio_postgres::Statement,
    table: Table,
    after: Option<&str>,
) -> Result<(Page, Option<String>), SourceError> {
    let rows = client
        .query(sql, &[&after])
        .await
        .map_err(SourceError::query("reading a batch of source rows"))?;
    let last = rows.last().and_then(|r| text(r, 0));
    let mut page = Page {
        read: rows.len(),
        ..Page::default()
    };
    for r in &rows {
        match row_from_sql(table, r) {
            None => page.unplaceable.push(Unplaceable {
                table,
                row_id: None,
                reason: "null id".into(),
            }),
            Some(row) => match unplaceable_reason(&row) {
                Some(reason) => page.unplaceable.push(Unplaceable {
                    table,
                    row_id: Some(row.id().to_string()),
                    reason,
                }),
                None => page.rows.push(row),
            },
        }
    }
    Ok((page, last))
}

/// Tables in load order: leads and campaigns first, so that jobs loaded later see
/// them (the delay bounds recorded for a job come from its lead's campaign).
pub const LOAD_ORDER: [Table; 5] = [
    Table::EmailCampaign,
    Table::Lead,
    Table::AiDraft,
    Table::Message,
    Table::BackgroundJob,
];
