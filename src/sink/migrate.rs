//! Creating and checking the sink schema (`schema/sink.sql`, version
//! `SCHEMA_VERSION`): one instance at a time (advisory lock), the version row
//! checked before anything is created, the table's shape checked after.

use tokio_postgres::Client;

use super::SinkError;
use super::sql::{TABLE, all_columns};

/// The sink schema this binary writes: 1 = `schema/sink.sql`, 2 = with the
/// writers' registry (`registry::REGISTRY_SQL`). An older sink is brought up to
/// date automatically; a newer one is refused.
pub const SCHEMA_VERSION: i32 = 2;

const SINK_SQL: &str = include_str!("../../schema/sink.sql");
const COMPONENT: &str = "sink";
/// Serializes migrations of concurrent instances ("replytim" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7265_706c_7974_696d;

/// Applies the schema in one transaction; a failure leaves nothing half-made.
pub(super) async fn migrate(client: &Client) -> Result<(), SinkError> {
    in_transaction(client, "the migration", migrate_in_transaction(client)).await
}

/// Runs `body` (statements on `client`) between BEGIN and COMMIT, or ROLLBACK when
/// it fails; `what` names it in errors. The body's error comes first.
pub(super) async fn in_transaction<T>(
    client: &Client,
    what: &str,
    body: impl std::future::Future<Output = Result<T, SinkError>>,
) -> Result<T, SinkError> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(SinkError::postgres(format!("begin of {what}")))?;
    let done = body.await;
    let end = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client
        .batch_execute(end)
        .await
        .map_err(SinkError::postgres(format!("end of {what}")));
    let value = done?;
    ended?;
    Ok(value)
}

async fn migrate_in_transaction(client: &Client) -> Result<(), SinkError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(SinkError::postgres("lock for the migration"))?;
    if let Some(found) = stored_version(client).await?
        && found > SCHEMA_VERSION
    {
        return Err(SinkError::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    // A table made before (by hand, by the app) must fit before indexes go on it.
    if table_exists(client).await? {
        check_table_shape(client).await?;
    }
    // Every start re-applies the idempotent schema; its "already exists, skipping"
    // notices say nothing to an operator (the setting ends with the transaction).
    client
        .batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(SinkError::postgres("quieting the migration's notices"))?;
    client
        .batch_execute(SINK_SQL)
        .await
        .map_err(SinkError::postgres("apply of schema/sink.sql"))?;
    client
        .batch_execute(super::registry::REGISTRY_SQL)
        .await
        .map_err(SinkError::postgres("creation of replytime_writers"))?;
    client
        .execute(
            "INSERT INTO replytime_schema_version (component, version) VALUES ($1, $2) \
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version \
             WHERE replytime_schema_version.version < EXCLUDED.version",
            &[&COMPONENT, &SCHEMA_VERSION],
        )
        .await
        .map_err(SinkError::postgres("record of the schema version"))?;
    check_table_shape(client).await
}

/// The recorded sink schema version, `None` on a database replytime never touched.
async fn stored_version(client: &Client) -> Result<Option<i32>, SinkError> {
    let read = SinkError::postgres("read of replytime_schema_version");
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('replytime_schema_version') IS NOT NULL",
            &[],
        )
        .await
        .map_err(SinkError::postgres("lookup of replytime_schema_version"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT version FROM replytime_schema_version WHERE component = $1",
            &[&COMPONENT],
        )
        .await
        .map_err(read)?;
    Ok(row.map(|row| row.get(0)))
}

async fn table_exists(client: &Client) -> Result<bool, SinkError> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TABLE])
        .await
        .map_err(SinkError::postgres("lookup of the sink table"))?;
    Ok(row.get(0))
}

/// A table that existed before (made by hand or by the application) must still have
/// every column with the type the sink writes.
async fn check_table_shape(client: &Client) -> Result<(), SinkError> {
    let rows = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&TABLE],
        )
        .await
        .map_err(SinkError::postgres("read of the sink table's columns"))?;
    let actual: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let problems: Vec<String> = all_columns()
        .into_iter()
        .filter_map(|(name, ty)| match actual.iter().find(|(n, _)| n == name) {
            None => Some(format!("column \"{name}\" ({ty}) is missing")),
            Some((_, found)) if found != ty => {
                Some(format!("column \"{name}\" is {found}, expected {ty}"))
            }
            Some(_) => None,
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(SinkError::Schema {
        table: TABLE.to_string(),
        problem: problems.join(", "),
    })
}
