//! Applying `schema/analytics.sql` before a report, so the functions the report
//! calls are the ones this binary ships, reading the tables the `[tables]`
//! mapping names (see `source_sql`).
//!
//! ```text
//!  analytics.sql ─render([tables])─┬─▶ functions: one transaction, under an
//!                                  │   advisory lock (concurrent reports would
//!                                  │   race on pg_proc otherwise); skipped when
//!                                  │   replytime_analytics_version() already
//!                                  │   holds their digest, else the old ones are
//!                                  │   dropped first (result types change)
//!                                  └─▶ indexes: one statement at a time,
//!                                      CONCURRENTLY, skipped when valid
//! ```
//!
//! The indexes go on the application's own tables (`"Message"`) and on the sink
//! table the daemon writes: a plain CREATE INDEX would block their writes for the
//! whole build, so they are built concurrently, which cannot run in a
//! transaction. Missing indexes only make reports slower, so an index that cannot
//! be built (no privilege, another report building it) is a warning, not a
//! failure.

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::source_sql::{self, IndexSpec, NaiveColumns};
use crate::tables::TableMapping;

/// Serializes the function part across reports ("rt_analy" in ASCII).
const FUNCTIONS_LOCK_KEY: i64 = 0x7274_5f61_6e61_6c79;
/// Held (try-lock) by the one report that builds the indexes ("rt_index").
const INDEXES_LOCK_KEY: i64 = 0x7274_5f69_6e64_6578;
/// Returns the digest of the installed function part.
const VERSION_FUNCTION: &str = "replytime_analytics_version";

/// Creates or replaces the analytics functions for `mapping`, then makes sure the
/// indexes exist.
pub async fn apply_analytics_schema(client: &Client, mapping: &TableMapping) -> anyhow::Result<()> {
    let naive = naive_columns(client, mapping)
        .await
        .context("reading the types of the mapped timestamp columns")?;
    let sql = source_sql::render(mapping, &naive)?;
    apply_functions(client, &sql.functions).await?;
    ensure_indexes(client, &sql.indexes).await;
    Ok(())
}

/// Which mapped timestamp columns are `timestamp` without time zone.
async fn naive_columns(
    client: &Client,
    mapping: &TableMapping,
) -> Result<NaiveColumns, tokio_postgres::Error> {
    let q = source_sql::quote_ident;
    let naive = |table: String| async move {
        let rows = client
            .query(
                "SELECT a.attname::text FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.atttypid = 'timestamp'::regtype \
                   AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table],
            )
            .await?;
        Ok::<Vec<String>, tokio_postgres::Error>(rows.iter().map(|r| r.get(0)).collect())
    };
    Ok(NaiveColumns {
        lead: naive(format!("{}.{}", q(&mapping.schema), q(&mapping.lead.table))).await?,
        message: naive(format!(
            "{}.{}",
            q(&mapping.schema),
            q(&mapping.message.table)
        ))
        .await?,
    })
}

/// Hex SHA-256 of the function part: what `replytime_analytics_version()` returns.
fn digest(functions: &str) -> String {
    Sha256::digest(functions.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn apply_functions(client: &Client, functions: &str) -> anyhow::Result<()> {
    let version = digest(functions);
    client.batch_execute("BEGIN").await?;
    let applied = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&FUNCTIONS_LOCK_KEY])
            .await?;
        if installed_version(client).await?.as_deref() == Some(version.as_str()) {
            return Ok(());
        }
        drop_functions(client, functions).await?;
        client.batch_execute(functions).await?;
        client
            .batch_execute(&format!(
                "CREATE FUNCTION {VERSION_FUNCTION}() RETURNS text \
                 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT '{version}'::text $$"
            ))
            .await
    }
    .await;
    match applied {
        Ok(()) => client.batch_execute("COMMIT").await.map_err(Into::into),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e).context(
                "apply of schema/analytics.sql (it needs \"ResponseTimingEvent\" and the lead, \
                 draft and message tables of the [tables] config, with the columns it maps, \
                 in the sink database, and the right to create functions there)",
            )
        }
    }
}

/// The digest the installed functions were applied with, if any.
async fn installed_version(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regprocedure($1) IS NOT NULL",
            &[&format!("{VERSION_FUNCTION}()")],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(&format!("SELECT {VERSION_FUNCTION}()"), &[])
        .await?;
    Ok(Some(row.get(0)))
}

/// Drops every overload, in the current schema, of the functions `functions`
/// defines (and the version function): CREATE OR REPLACE cannot change a result
/// type or argument list, and an old overload would linger.
async fn drop_functions(client: &Client, functions: &str) -> Result<(), tokio_postgres::Error> {
    let mut names = source_sql::function_names(functions);
    names.push(VERSION_FUNCTION.to_string());
    let rows = client
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p \
             WHERE p.proname = ANY ($1) AND p.pronamespace = to_regnamespace(current_schema())",
            &[&names],
        )
        .await?;
    for row in rows {
        let signature: String = row.get(0);
        client
            .batch_execute(&format!("DROP FUNCTION {signature}"))
            .await?;
    }
    Ok(())
}

async fn ensure_indexes(client: &Client, indexes: &[IndexSpec]) {
    let locked: bool = match client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&INDEXES_LOCK_KEY])
        .await
    {
        Ok(row) => row.get(0),
        Err(e) => {
            eprintln!("replytime report: warning: analytics indexes not checked: {e}");
            return;
        }
    };
    if !locked {
        eprintln!(
            "replytime report: another report is building the analytics indexes; going on without waiting"
        );
        return;
    }
    for index in indexes {
        if let Err(e) = ensure_index(client, index).await {
            eprintln!(
                "replytime report: warning: {e:#}; reports still work, slower. Run as the table owner: {}",
                index.statement
            );
        }
    }
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&INDEXES_LOCK_KEY])
        .await;
}

/// Builds one index unless a valid one exists; an invalid one (a concurrent build
/// that failed) is dropped and rebuilt.
async fn ensure_index(client: &Client, index: &IndexSpec) -> anyhow::Result<()> {
    let name = &index.qualified_name;
    let valid: Option<bool> = client
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[name],
        )
        .await?
        .map(|row| row.get(0));
    match valid {
        Some(true) => return Ok(()),
        Some(false) => {
            eprintln!("replytime report: index {name} is invalid (a failed build); rebuilding");
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                .await
                .with_context(|| format!("drop of the invalid index {name}"))?;
        }
        None => {}
    }
    eprintln!("replytime report: creating index {name} concurrently (once)");
    client
        .batch_execute(&index.statement)
        .await
        .with_context(|| format!("create of index {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_hex_sha256_and_follows_the_sql() {
        let a = digest("SELECT 1");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, digest("SELECT 2"));
    }

    #[test]
    fn the_index_part_holds_only_concurrent_index_statements() {
        let sql = source_sql::render(&TableMapping::default(), &NaiveColumns::default()).unwrap();
        assert!(
            sql.functions
                .contains("CREATE OR REPLACE FUNCTION replytime_setter_buckets")
        );
        assert!(!sql.functions.lines().any(|l| l.starts_with("CREATE INDEX")));
        assert_eq!(sql.indexes.len(), 2);
        for index in &sql.indexes {
            assert!(
                index
                    .statement
                    .starts_with("CREATE INDEX CONCURRENTLY IF NOT EXISTS \""),
                "{index:?}"
            );
            assert!(index.qualified_name.ends_with("_idx\""));
        }
    }
}
