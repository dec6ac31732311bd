//! Applying `schema/analytics.sql` before a report, so the functions the report
//! calls are the ones this binary ships.
//!
//! ```text
//!  analytics.sql ──split at INDEX_MARKER──┬─▶ functions: one transaction, under an
//!                                         │   advisory lock (concurrent reports
//!                                         │   would race on pg_proc otherwise)
//!                                         └─▶ indexes: one statement at a time,
//!                                             CONCURRENTLY, skipped when valid
//! ```
//!
//! The indexes go on the application's own tables (`"Message"`) and on the sink
//! table the daemon writes: a plain CREATE INDEX would block their writes for the
//! whole build, so they are built concurrently, which cannot run in a
//! transaction. Missing indexes only make reports slower, so an index that cannot
//! be built (no privilege, another report building it) is a warning, not a
//! failure.

use anyhow::Context as _;
use tokio_postgres::Client;

const ANALYTICS_SQL: &str = include_str!("../../../schema/analytics.sql");
/// Everything below this line of analytics.sql is CREATE INDEX statements.
const INDEX_MARKER: &str = "-- ---- indexes";
/// Serializes the function part across reports ("rt_analy" in ASCII).
const FUNCTIONS_LOCK_KEY: i64 = 0x7274_5f61_6e61_6c79;
/// Held (try-lock) by the one report that builds the indexes ("rt_index").
const INDEXES_LOCK_KEY: i64 = 0x7274_5f69_6e64_6578;

/// Creates or replaces the analytics functions, then makes sure the indexes exist.
pub async fn apply_analytics_schema(client: &Client) -> anyhow::Result<()> {
    let (functions, indexes) = split_schema();
    apply_functions(client, functions).await?;
    ensure_indexes(client, &index_statements(indexes)).await;
    Ok(())
}

/// The function part and the index part of analytics.sql.
fn split_schema() -> (&'static str, &'static str) {
    ANALYTICS_SQL
        .split_once(INDEX_MARKER)
        .expect("schema/analytics.sql has the index marker")
}

/// The index statements: comments dropped, one per `;`.
fn index_statements(part: &str) -> Vec<String> {
    let code: String = part
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

async fn apply_functions(client: &Client, sql: &str) -> anyhow::Result<()> {
    client.batch_execute("BEGIN").await?;
    let applied = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&FUNCTIONS_LOCK_KEY])
            .await?;
        client.batch_execute(sql).await
    }
    .await;
    match applied {
        Ok(()) => client.batch_execute("COMMIT").await.map_err(Into::into),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e).context(
                "apply of schema/analytics.sql (it needs \"ResponseTimingEvent\", \"Lead\", \
                 \"AIDraft\" and \"Message\" in the sink database, and the right to create \
                 functions there)",
            )
        }
    }
}

async fn ensure_indexes(client: &Client, statements: &[String]) {
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
    for statement in statements {
        if let Err(e) = ensure_index(client, statement).await {
            eprintln!(
                "replytime report: warning: {e:#}; reports still work, slower. Run as the table owner: {statement}"
            );
        }
    }
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&INDEXES_LOCK_KEY])
        .await;
}

/// Builds one index unless a valid one exists; an invalid one (a concurrent build
/// that failed) is dropped and rebuilt.
async fn ensure_index(client: &Client, statement: &str) -> anyhow::Result<()> {
    let name = index_name(statement).context("index statement without a quoted name")?;
    let quoted = format!("\"{name}\"");
    let valid: Option<bool> = client
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&quoted],
        )
        .await?
        .map(|row| row.get(0));
    match valid {
        Some(true) => return Ok(()),
        Some(false) => {
            eprintln!("replytime report: index {name} is invalid (a failed build); rebuilding");
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {quoted}"))
                .await
                .with_context(|| format!("drop of the invalid index {name}"))?;
        }
        None => {}
    }
    eprintln!("replytime report: creating index {name} concurrently (once)");
    client
        .batch_execute(statement)
        .await
        .with_context(|| format!("create of index {name}"))
}

/// The first double-quoted identifier: the index name in
/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS "name" ON …`.
fn index_name(statement: &str) -> Option<&str> {
    let start = statement.find('"')? + 1;
    let len = statement[start..].find('"')?;
    Some(&statement[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_part_holds_only_named_concurrent_index_statements() {
        let (functions, indexes) = split_schema();
        assert!(functions.contains("CREATE OR REPLACE FUNCTION replytime_setter_buckets"));
        assert!(!functions.lines().any(|l| l.starts_with("CREATE INDEX")));
        let statements = index_statements(indexes);
        assert_eq!(statements.len(), 2, "{statements:#?}");
        for statement in &statements {
            assert!(
                statement.starts_with("CREATE INDEX CONCURRENTLY IF NOT EXISTS \""),
                "{statement}"
            );
            assert!(index_name(statement).is_some_and(|n| n.ends_with("_idx")));
        }
    }

    #[test]
    fn index_name_is_the_first_quoted_identifier() {
        assert_eq!(
            index_name(r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS "a_idx" ON "T" (x)"#),
            Some("a_idx")
        );
        assert_eq!(index_name("CREATE INDEX a ON t (x)"), None);
    }
}
