//! Checks and set-up on the source database over a plain SQL connection: server
//! settings, privileges, source tables, the publication and the slot's state.
//!
//! The publication never breaks the application's writes (SPEC 5): a column list is
//! used for a table only when it covers the table's replica identity; otherwise the
//! table is published with all columns (the decoder drops the extra ones).

use tokio_postgres::Client;

use super::SourceError;
use crate::change::Table;
use crate::lsn::Lsn;
use crate::shard::Shard;
use crate::tables::TableMapping;

/// What the source server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    pub system_identifier: String,
    pub timeline: i64,
    pub version_num: i32,
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Clone, Debug)]
pub(crate) struct SlotState {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub confirmed_flush_lsn: Option<Lsn>,
    pub wal_status: Option<String>,
    pub active_pid: Option<i32>,
}

fn lsn_text(text: Option<String>) -> Option<Lsn> {
    text.and_then(|t| t.parse().ok())
}

pub(crate) async fn server_info(client: &Client) -> Result<ServerInfo, SourceError> {
    let wal_level: String = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(SourceError::query("reading wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(SourceError::WalLevel(wal_level));
    }
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
                    (SELECT timeline_id::int8 FROM pg_control_checkpoint()), \
                    current_setting('server_version_num')::int4",
            &[],
        )
        .await
        .map_err(SourceError::query("reading the system identifier"))?;
    Ok(ServerInfo {
        system_identifier: row.get(0),
        timeline: row.get(1),
        version_num: row.get(2),
    })
}

/// The connecting role must be allowed to replicate.
pub(crate) async fn check_replication_privilege(client: &Client) -> Result<(), SourceError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(SourceError::query("reading the role's privileges"))?;
    let (role, allowed): (String, bool) = (row.get(0), row.get(1));
    if allowed {
        Ok(())
    } else {
        Err(SourceError::NoReplicationPrivilege(role))
    }
}

/// Every mapped table exists with its required columns.
pub(crate) async fn check_tables(
    client: &Client,
    mapping: &TableMapping,
) -> Result<(), SourceError> {
    for table in Table::ALL {
        let name = mapping.table_name(table);
        let columns: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&mapping.schema, &name],
            )
            .await
            .map_err(SourceError::query("reading table columns"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if columns.is_empty() {
            return Err(SourceError::MissingTable(format!(
                "{}.{}",
                mapping.schema, name
            )));
        }
        for column in mapping.column_names(table) {
            if !columns.iter().any(|c| c == column) {
                return Err(SourceError::MissingColumn {
                    table: format!("{}.{}", mapping.schema, name),
                    column: column.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// `name` as a quoted identifier (`"` doubled), as libpq's `PQescapeIdentifier`.
pub(crate) fn quote_ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// `text` as a quoted literal, as libpq's `PQescapeLiteral`: `'` doubled, and the
/// `E'…'` form when it holds a backslash, so it reads the same under either
/// `standard_conforming_strings`.
fn quote_literal(text: &str) -> String {
    postgres_protocol::escape::escape_literal(text)
}

/// The columns replytime reads of `table`, quoted, in [`Table::logical_columns`]
/// order: the publication's column list, and what the initial load selects.
pub(crate) fn column_list(mapping: &TableMapping, table: Table) -> Vec<String> {
    mapping
        .column_names(table)
        .into_iter()
        .map(quote_ident)
        .collect()
}

/// The publication entry of one table: with a column list when that list covers
/// the replica identity, else all columns; with a row filter on the lead id when
/// sharded, which the replica identity must cover (else the application's UPDATE
/// and DELETE fail: SPEC 9).
async fn publication_entry(
    client: &Client,
    mapping: &TableMapping,
    table: Table,
    shard: Option<Shard>,
) -> Result<String, SourceError> {
    let qualified = format!(
        "{}.{}",
        quote_ident(&mapping.schema),
        quote_ident(mapping.table_name(table))
    );
    let row = client
        .query_one(
            "SELECT c.relreplident::text, \
                    coalesce((SELECT array_agg(a.attname::text) FROM pg_index i \
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                      WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) \
                         OR (c.relreplident = 'i' AND i.indisreplident))), '{}') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&mapping.schema, &mapping.table_name(table)],
        )
        .await
        .map_err(SourceError::query("reading the replica identity"))?;
    let identity: String = row.get(0);
    let identity_columns: Vec<String> = row.get(1);
    let wanted = mapping.column_names(table);
    let covered = identity != "f"
        && identity_columns
            .iter()
            .all(|c| wanted.contains(&c.as_str()));
    let mut entry = if covered {
        format!("{qualified} ({})", column_list(mapping, table).join(", "))
    } else {
        qualified.clone()
    };
    if let (Some(shard), Some(lead)) = (shard, mapping.lead_column(table)) {
        if identity != "f" && !identity_columns.iter().any(|c| c == lead) {
            return Err(SourceError::ShardIdentity {
                shard: shard.to_string(),
                table: qualified,
                column: lead.to_string(),
            });
        }
        entry = format!("{entry} WHERE {}", shard.predicate(&quote_ident(lead)));
    }
    Ok(entry)
}

/// Creates the publication if it does not exist. An existing publication is left
/// as the operator made it, but it must publish every mapped table.
pub(crate) async fn ensure_publication(
    client: &Client,
    publication: &str,
    mapping: &TableMapping,
    shard: Option<Shard>,
) -> Result<(), SourceError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(SourceError::query("reading publications"))?
        .is_some();
    if !exists {
        let mut entries = Vec::new();
        for table in Table::ALL {
            entries.push(publication_entry(client, mapping, table, shard).await?);
        }
        // The comment records that replytime created it: `teardown` drops only
        // a publication replytime made, never one an admin made for it.
        let sql = format!(
            "BEGIN; CREATE PUBLICATION {0} FOR TABLE {1} WITH (publish = 'insert, update, delete, truncate'); \
             COMMENT ON PUBLICATION {0} IS {2}; COMMIT",
            quote_ident(publication),
            entries.join(", "),
            quote_literal(CREATED_BY_REPLYTIME),
        );
        if let Err(e) = client.batch_execute(&sql).await {
            // The failed statement left the explicit transaction open.
            let _ = client.batch_execute("ROLLBACK").await;
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                // A role without ownership of the tables (deploy/postgres/grants.sql)
                // cannot add them to a publication: an admin makes it.
                return Err(SourceError::PublicationNotCreatable {
                    publication: publication.to_string(),
                    reason: e
                        .as_db_error()
                        .map_or(e.to_string(), |d| d.message().to_string()),
                });
            }
            return Err(SourceError::query("creating the publication")(e));
        }
        tracing::info!(publication, "created publication");
        return Ok(());
    }
    let published: Vec<(String, Option<String>)> = client
        .query(
            "SELECT tablename::text, rowfilter FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2",
            &[&publication, &mapping.schema],
        )
        .await
        .map_err(SourceError::query("reading the publication's tables"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for table in Table::ALL {
        let name = mapping.table_name(table);
        let Some((_, filter)) = published.iter().find(|(p, _)| p == name) else {
            return Err(SourceError::PublicationIncomplete {
                publication: publication.to_string(),
                table: name.to_string(),
            });
        };
        // A sharded table carries this shard's filter (as Postgres deparses it:
        // `((hashtext("leadId") & 2147483647) % N) = k`); nothing else is filtered.
        let sharded = shard.filter(|_| mapping.lead_column(table).is_some());
        let matches = match (sharded, filter) {
            (None, None) => true,
            (Some(shard), Some(filter)) => {
                let text: String = filter.chars().filter(|c| !c.is_whitespace()).collect();
                text.contains("hashtext(")
                    && text.contains(&format!("%{})={}", shard.count, shard.index))
            }
            _ => false,
        };
        if !matches {
            return Err(SourceError::ShardMismatch {
                publication: publication.to_string(),
                table: name.to_string(),
                expected: sharded.map_or("no row filter".to_string(), |s| format!("shard {s}")),
            });
        }
    }
    super::sent_columns::warn_unread_columns(client, publication, mapping).await;
    Ok(())
}

pub(crate) async fn slot_state(
    client: &Client,
    slot: &str,
) -> Result<Option<SlotState>, SourceError> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, confirmed_flush_lsn::text, \
                    wal_status, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(SourceError::query("reading the replication slot"))?;
    Ok(row.map(|r| SlotState {
        plugin: r.get(0),
        database: r.get(1),
        confirmed_flush_lsn: lsn_text(r.get(2)),
        wal_status: r.get(3),
        active_pid: r.get(4),
    }))
}

/// The server's current WAL insert position.
pub(crate) async fn current_wal_lsn(client: &Client) -> Result<Lsn, SourceError> {
    let text: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(SourceError::query("reading the current WAL position"))?
        .get(0);
    Ok(text.parse().unwrap_or(Lsn::ZERO))
}

/// The comment on a publication replytime created.
pub(crate) const CREATED_BY_REPLYTIME: &str = "created by replytime";

/// What `teardown` did.
#[derive(Debug, Default)]
pub(crate) struct Teardown {
    pub slot_dropped: bool,
    /// A slot of the name that is not replytime's (another plugin or database),
    /// described; kept.
    pub slot_kept: Option<String>,
    pub publication_dropped: bool,
    /// A publication that exists but was made by someone else (kept).
    pub publication_kept: bool,
}

/// Whether the publication exists, and whether replytime created it.
pub(crate) async fn publication_origin(
    client: &Client,
    publication: &str,
) -> Result<Option<bool>, SourceError> {
    let row = client
        .query_opt(
            "SELECT coalesce(obj_description(oid, 'pg_publication') = $2, false) \
             FROM pg_publication WHERE pubname = $1",
            &[&publication, &CREATED_BY_REPLYTIME],
        )
        .await
        .map_err(SourceError::query("reading the publication"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Drops the slot (if present and a pgoutput slot of this database) and the
/// publication if replytime created it; a publication an admin created
/// (deploy/postgres/grants.sql) and a slot of another tool are left in place.
pub(crate) async fn teardown(
    client: &Client,
    slot: &str,
    publication: &str,
) -> Result<Teardown, SourceError> {
    let mut done = Teardown::default();
    if let Some(found) = slot_state(client, slot).await? {
        let database: String = client
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(SourceError::query("reading the database name"))?
            .get(0);
        // A slot of another plugin or database is not replytime's.
        if found.plugin.as_deref() == Some("pgoutput")
            && found.database.as_deref() == Some(database.as_str())
        {
            drop_slot(client, slot).await?;
            done.slot_dropped = true;
        } else {
            done.slot_kept = Some(format!(
                "plugin {}, database {}",
                found.plugin.as_deref().unwrap_or("none"),
                found.database.as_deref().unwrap_or("none")
            ));
        }
    }
    match publication_origin(client, publication).await? {
        Some(true) => {
            client
                .batch_execute(&format!(
                    "DROP PUBLICATION IF EXISTS {}",
                    quote_ident(publication)
                ))
                .await
                .map_err(SourceError::query("dropping the publication"))?;
            done.publication_dropped = true;
        }
        Some(false) => done.publication_kept = true,
        None => {}
    }
    Ok(done)
}

/// Emits a non-transactional heartbeat message into the WAL.
pub(crate) async fn emit_heartbeat(
    client: &Client,
    prefix: &str,
    payload: &str,
) -> Result<(), SourceError> {
    client
        .execute(
            &format!(
                "SELECT pg_logical_emit_message(false, {}, {})",
                quote_literal(prefix),
                quote_literal(payload)
            ),
            &[],
        )
        .await
        .map_err(SourceError::query("emitting a heartbeat"))?;
    Ok(())
}

/// Drops the slot if it exists (and is not in use).
pub(crate) async fn drop_slot(client: &Client, slot: &str) -> Result<(), SourceError> {
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(SourceError::query("dropping the slot"))?;
    Ok(())
}

/// Drops the slot once no connection holds it (a replication connection that just
/// closed leaves its walsender for a moment); gives up after `wait`.
pub(crate) async fn drop_inactive_slot(
    client: &Client,
    slot: &str,
    wait: std::time::Duration,
) -> Result<(), SourceError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let dropped = client
            .query_opt(
                "SELECT pg_drop_replication_slot(slot_name)::text FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active_pid IS NULL",
                &[&slot],
            )
            .await;
        let busy = match dropped {
            Ok(_) => slot_state(client, slot).await?.is_some(),
            // Taken again between the check and the drop (SQLSTATE 55006).
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => true,
            Err(e) => return Err(SourceError::query("dropping the slot")(e)),
        };
        if !busy {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(SourceError::SlotBusy {
                slot: slot.to_string(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Tables of the mapping the connecting role may not SELECT (the initial load and
/// `backfill` read them), as `schema.table`.
pub(crate) async fn tables_without_select(
    client: &Client,
    mapping: &TableMapping,
) -> Result<Vec<String>, SourceError> {
    let mut missing = Vec::new();
    for table in Table::ALL {
        let qualified = format!(
            "{}.{}",
            quote_ident(&mapping.schema),
            quote_ident(mapping.table_name(table))
        );
        let allowed: bool = client
            .query_one("SELECT has_table_privilege($1, 'SELECT')", &[&qualified])
            .await
            .map_err(SourceError::query("reading table privileges"))?
            .get(0);
        if !allowed {
            missing.push(qualified);
        }
    }
    Ok(missing)
}

/// The role may SELECT every mapped table: checked before a slot is created.
pub(crate) async fn check_select_privileges(
    client: &Client,
    mapping: &TableMapping,
) -> Result<(), SourceError> {
    let missing = tables_without_select(client, mapping).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let role: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(SourceError::query("reading the role"))?
        .get(0);
    Err(SourceError::NoSelect {
        role,
        tables: missing.join(", "),
    })
}

/// Retained WAL of the slot in bytes, and its wal_status.
pub(crate) async fn slot_retention(
    client: &Client,
    slot: &str,
) -> Result<Option<(i64, Option<String>)>, SourceError> {
    let row = client
        .query_opt(
            "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), restart_lsn), 0)::int8, wal_status \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(SourceError::query("reading the slot's retained WAL"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Whether each of `tables` has a valid unique index (its primary key, or another)
/// on its mapped `id` column alone, without a predicate: then an INSERT the stream
/// sends names an id the table did not hold just before (what the engine's
/// `fresh_inserts` relies on). A mapping onto a non-unique column, or a table whose
/// replica identity is FULL without such an index, does not.
pub(crate) async fn ids_are_unique(
    client: &Client,
    mapping: &TableMapping,
    tables: &[Table],
) -> Result<bool, SourceError> {
    for &table in tables {
        let id = mapping.column_names(table)[0];
        let unique: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i \
                   JOIN pg_class c ON c.oid = i.indrelid \
                   JOIN pg_namespace n ON n.oid = c.relnamespace \
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
                   WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 \
                     AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 \
                     AND i.indpred IS NULL AND i.indexprs IS NULL)",
                &[&mapping.schema, &mapping.table_name(table), &id],
            )
            .await
            .map_err(SourceError::query("reading the unique indexes"))?
            .get(0);
        if !unique {
            tracing::info!(
                table = mapping.table_name(table),
                column = id,
                "no unique index on the id column alone: inserts of it are looked up in the state"
            );
            return Ok(false);
        }
    }
    Ok(true)
}
