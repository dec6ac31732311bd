//! Reading the source tables directly (the initial load and `backfill`): keyset
//! pages ordered by id (never OFFSET), one bounded batch per query. Every value is
//! read as its text output and decoded by the stream's own decoding
//! ([`LoadShape`]), so a row is derived, quarantined or refused the same way
//! whether it arrives through the load or through the slot.

use tokio_postgres::Client;

use super::SourceError;
use super::admin::{column_list, quote_ident};
use super::decode::{Decoded, LoadShape, Quarantined};
use crate::change::{Change, Table};
use crate::tables::TableMapping;

/// `SELECT` of one keyset page: `$1` is the last id of the previous page (or NULL).
pub(crate) fn page_sql(
    mapping: &TableMapping,
    table: Table,
    limit: usize,
    shard: Option<crate::shard::Shard>,
) -> String {
    let shape = LoadShape::new(mapping, table);
    let columns: Vec<String> = column_list(mapping, table)
        .iter()
        .enumerate()
        .map(|(position, c)| shape.select_text(position, c))
        .collect();
    let id = quote_ident(mapping.column_names(table)[0]);
    let owned = match (shard, mapping.lead_column(table)) {
        (Some(shard), Some(lead)) => format!(" AND {}", shard.predicate(&quote_ident(lead))),
        _ => String::new(),
    };
    format!(
        "SELECT {} FROM {}.{} WHERE {id} IS NOT NULL AND ($1::text IS NULL OR {id}::text > $1::text){owned} ORDER BY {id}::text LIMIT {limit}",
        columns.join(", "),
        quote_ident(&mapping.schema),
        quote_ident(mapping.table_name(table)),
    )
}

/// Counts the rows without an id, which keyset pages cannot reach: each is
/// quarantined ("null id"), as the stream quarantines such a change.
pub(crate) fn null_ids_sql(
    mapping: &TableMapping,
    table: Table,
    shard: Option<crate::shard::Shard>,
) -> String {
    let id = quote_ident(mapping.column_names(table)[0]);
    let owned = match (shard, mapping.lead_column(table)) {
        (Some(shard), Some(lead)) => format!(" AND {}", shard.predicate(&quote_ident(lead))),
        _ => String::new(),
    };
    format!(
        "SELECT count(*) FROM {}.{} WHERE {id} IS NULL{owned}",
        quote_ident(&mapping.schema),
        quote_ident(mapping.table_name(table)),
    )
}

/// One page of a table, decoded: the inserts to apply and the rows to quarantine.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub changes: Vec<Change>,
    pub quarantined: Vec<Quarantined>,
}

/// Reads one page after `after`; returns the page and the last id seen (`None`
/// once the table is done).
pub(crate) async fn read_page(
    client: &Client,
    sql: &tokio_postgres::Statement,
    shape: &LoadShape,
    after: Option<&str>,
) -> Result<(Page, Option<String>), SourceError> {
    let rows = client
        .query(sql, &[&after])
        .await
        .map_err(SourceError::query("reading a batch of source rows"))?;
    let last = rows.last().and_then(|r| r.get::<_, Option<String>>(0));
    let mut page = Page::default();
    for row in &rows {
        let values = (0..row.len())
            .map(|i| row.get::<_, Option<&str>>(i))
            .collect();
        match shape.decode(values)? {
            Decoded::Change(change) => page.changes.push(change),
            Decoded::Quarantine(q) => page.quarantined.push(q),
            other => unreachable!("a loaded row decodes to a change or a quarantine: {other:?}"),
        }
    }
    Ok((page, last))
}

/// Tables in load order: leads and campaigns first, so that jobs loaded later see
/// them (the delay bounds recorded for a job come from its lead's campaign).
pub(crate) const LOAD_ORDER: [Table; 5] = [
    Table::EmailCampaign,
    Table::Lead,
    Table::AiDraft,
    Table::Message,
    Table::BackgroundJob,
];

/// Planner estimates of the mapped tables' row counts, for the ETA.
pub(crate) async fn estimate_rows(
    client: &tokio_postgres::Client,
    mapping: &TableMapping,
) -> Option<u64> {
    let mut total = 0u64;
    for table in Table::ALL {
        let row = client
            .query_opt(
                "SELECT greatest(c.reltuples, 0)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&mapping.schema, &mapping.table_name(table)],
            )
            .await
            .ok()??;
        total += row.get::<_, i64>(0) as u64;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapping that renames a table and every column it can.
    fn renamed() -> TableMapping {
        toml::from_str(
            r#"schema = "crm"
               [background_job]
               table = "jobs"
               id = "job_id"
               type = "kind"
               run_at = "run_time"
               lead_id = "lead""#,
        )
        .unwrap()
    }

    /// The load selects exactly the publication's column list, in the same order:
    /// both come from the one description of the table's columns.
    #[test]
    fn the_load_selects_the_publication_columns() {
        for mapping in [TableMapping::default(), renamed()] {
            for table in Table::ALL {
                let sql = page_sql(&mapping, table, 10, None);
                let select = sql
                    .strip_prefix("SELECT ")
                    .and_then(|rest| rest.split(" FROM ").next())
                    .unwrap();
                let selected: Vec<&str> = select
                    .split(", ")
                    .map(|c| {
                        c.trim_end_matches("::text")
                            .trim_end_matches("::timestamptz")
                    })
                    .collect();
                assert_eq!(selected, column_list(&mapping, table), "{sql}");
                assert_eq!(selected.len(), table.logical_columns().len());
            }
        }
        let jobs = page_sql(&renamed(), Table::BackgroundJob, 10, None);
        assert!(
            jobs.starts_with(
                r#"SELECT "job_id"::text, "kind"::text, "lead"::text, "messageId"::text, "draftId"::text, "run_time"::timestamptz::text,"#
            ),
            "{jobs}"
        );
        assert!(
            jobs.contains(r#" FROM "crm"."jobs" WHERE "job_id" IS NOT NULL"#),
            "{jobs}"
        );
    }
}
