//! Which columns an existing publication sends that replytime does not read. A
//! publication made by hand without column lists ships message bodies and draft
//! contents over the replication connection although the decoder drops them
//! (README, "What replytime receives"); the daemon says so once at start.

use tokio_postgres::Client;

use super::SourceError;
use crate::change::Table;
use crate::tables::TableMapping;

/// Logs a warning per table of `publication` that sends columns replytime does
/// not read. Advice only: a failure to read the catalog is logged, never fatal.
pub(crate) async fn warn_unread_columns(
    client: &Client,
    publication: &str,
    mapping: &TableMapping,
) {
    if let Err(e) = check(client, publication, mapping).await {
        tracing::debug!(publication, error = %e, "could not read the publication's columns");
    }
}

/// `pg_publication_tables.attnames` (PostgreSQL 15+) against the mapped columns.
async fn check(
    client: &Client,
    publication: &str,
    mapping: &TableMapping,
) -> Result<(), SourceError> {
    let rows = client
        .query(
            "SELECT tablename::text, attnames::text[] FROM pg_publication_tables \
             WHERE pubname = $1 AND schemaname = $2",
            &[&publication, &mapping.schema],
        )
        .await
        .map_err(SourceError::query("reading the publication's columns"))?;
    for table in Table::ALL {
        let name = mapping.table_name(table);
        let Some(row) = rows.iter().find(|r| r.get::<_, String>(0) == name) else {
            continue;
        };
        let sent: Vec<String> = row.get(1);
        let read = mapping.column_names(table);
        let unread: Vec<&str> = sent
            .iter()
            .map(String::as_str)
            .filter(|column| !read.contains(column))
            .collect();
        if !unread.is_empty() {
            tracing::warn!(
                publication,
                table = name,
                columns = %unread.join(", "),
                "the publication sends columns replytime does not read; give it a column list \
                 (deploy/postgres/grants.sql) unless the table's replica identity is FULL"
            );
        }
    }
    Ok(())
}
