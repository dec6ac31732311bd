//! The checks of the admin connection: server, role, tables, publication,
//! replica identity and the slot.

use tokio_postgres::Client;

use super::{ADMIN, Report};
use crate::change::Table;
use crate::config::Settings;
use crate::source::admin;

pub(super) async fn checks(settings: &Settings, client: &Client, report: &mut Report) {
    match admin::server_info(client).await {
        Ok(server) => report.ok(
            ADMIN,
            "wal_level",
            format!(
                "logical (server {}, system {})",
                server.version_num, server.system_identifier
            ),
        ),
        Err(e) => report.problem(
            ADMIN,
            "wal_level",
            e.to_string(),
            "set wal_level = logical in postgresql.conf and restart Postgres",
        ),
    }
    match admin::check_replication_privilege(client).await {
        Ok(()) => report.ok(ADMIN, "REPLICATION", "the role may replicate"),
        Err(e) => report.problem(
            ADMIN,
            "REPLICATION",
            e.to_string(),
            "ALTER ROLE ... WITH REPLICATION (deploy/postgres/grants.sql)",
        ),
    }
    let tables_ok = match admin::check_tables(client, &settings.tables).await {
        Ok(()) => {
            report.ok(ADMIN, "tables", "the five tables with every mapped column");
            true
        }
        Err(e) => {
            report.problem(
                ADMIN,
                "tables",
                e.to_string(),
                "apply the application's schema, or fix the [tables] mapping",
            );
            false
        }
    };
    if tables_ok {
        match admin::tables_without_select(client, &settings.tables).await {
            Ok(missing) if missing.is_empty() => {
                report.ok(ADMIN, "SELECT grants", "the role may read every table")
            }
            Ok(missing) => {
                let role: String = client
                    .query_one("SELECT current_user::text", &[])
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or_else(|_| "<role>".into());
                report.problem(
                    ADMIN,
                    "SELECT grants",
                    format!("the role may not SELECT {}", missing.join(", ")),
                    format!(
                        "GRANT SELECT ON {} TO {} (deploy/postgres/grants.sql)",
                        missing.join(", "),
                        admin::quote_ident(&role)
                    ),
                )
            }
            Err(e) => report.problem(ADMIN, "SELECT grants", e.to_string(), "see the error"),
        }
        publication_check(settings, client, report).await;
    }
    slot_check(settings, client, report).await;
}

async fn publication_check(settings: &Settings, client: &Client, report: &mut Report) {
    let publication = &settings.publication;
    match admin::publication_origin(client, publication).await {
        Ok(Some(created)) => {
            let published: Result<Vec<String>, _> = client
                .query(
                    "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2",
                    &[publication, &settings.tables.schema],
                )
                .await
                .map(|rows| rows.iter().map(|r| r.get(0)).collect());
            let missing: Vec<&str> = match &published {
                Ok(names) => Table::ALL
                    .iter()
                    .map(|t| settings.tables.table_name(*t))
                    .filter(|n| !names.iter().any(|p| p == n))
                    .collect(),
                Err(_) => Vec::new(),
            };
            let by = if created { "replytime" } else { "an admin" };
            if missing.is_empty() {
                report.ok(
                    ADMIN,
                    "publication",
                    format!("{publication:?} publishes the five tables (created by {by})"),
                );
            } else {
                report.problem(
                    ADMIN,
                    "publication",
                    format!("{publication:?} does not publish {}", missing.join(", ")),
                    format!("ALTER PUBLICATION {publication} ADD TABLE ... (as its owner)"),
                );
            }
        }
        Ok(None) => match can_create_publication(settings, client).await {
            Ok(None) => report.ok(
                ADMIN,
                "publication",
                format!("{publication:?} does not exist; `run` creates it"),
            ),
            Ok(Some(why)) => report.problem(
                ADMIN,
                "publication",
                format!("{publication:?} does not exist and this role cannot create it: {why}"),
                "have an admin create it (deploy/postgres/grants.sql)",
            ),
            Err(e) => report.problem(ADMIN, "publication", e.to_string(), "see the error"),
        },
        Err(e) => report.problem(ADMIN, "publication", e.to_string(), "see the error"),
    }
    identity_check(settings, client, report).await;
}

/// Why the role could not create the publication (`None`: it can).
async fn can_create_publication(
    settings: &Settings,
    client: &Client,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT rolsuper OR has_database_privilege(current_database(), 'CREATE') \
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(Some("it lacks CREATE on the database".into()));
    }
    let mut not_owned = Vec::new();
    for table in Table::ALL {
        let qualified = format!(
            "{}.{}",
            admin::quote_ident(&settings.tables.schema),
            admin::quote_ident(settings.tables.table_name(table))
        );
        let owns: bool = client
            .query_one(
                "SELECT pg_has_role(c.relowner, 'USAGE') OR r.rolsuper \
                 FROM pg_class c, pg_roles r WHERE c.oid = $1::text::regclass AND r.rolname = current_user",
                &[&qualified],
            )
            .await?
            .get(0);
        if !owns {
            not_owned.push(qualified);
        }
    }
    Ok((!not_owned.is_empty()).then(|| format!("it does not own {}", not_owned.join(", "))))
}

/// A sharded daemon's row filter needs a replica identity covering the lead id.
async fn identity_check(settings: &Settings, client: &Client, report: &mut Report) {
    let Some(shard) = settings.shard else {
        report.ok(
            ADMIN,
            "replica identity",
            "unsharded: any replica identity is safe (column lists only where they cover it)",
        );
        return;
    };
    let mut uncovered = Vec::new();
    for table in Table::ALL {
        let Some(lead) = settings.tables.lead_column(table) else {
            continue;
        };
        let covered: Result<bool, _> = client
            .query_one(
                "SELECT c.relreplident = 'f' OR EXISTS (SELECT 1 FROM pg_index i \
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                   WHERE i.indrelid = c.oid AND a.attname = $3 \
                     AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&settings.tables.schema, &settings.tables.table_name(table), &lead],
            )
            .await
            .map(|r| r.get(0));
        if !covered.unwrap_or(false) {
            uncovered.push(settings.tables.table_name(table).to_string());
        }
    }
    if uncovered.is_empty() {
        report.ok(
            ADMIN,
            "replica identity",
            format!("shard {shard}: every filtered table's identity covers the lead id"),
        );
    } else {
        report.problem(
            ADMIN,
            "replica identity",
            format!(
                "shard {shard}: the replica identity of {} does not cover the lead id: a row filter would make the application's UPDATE and DELETE fail",
                uncovered.join(", ")
            ),
            "ALTER TABLE ... REPLICA IDENTITY FULL (or an identity index with the lead id)",
        );
    }
}

async fn slot_check(settings: &Settings, client: &Client, report: &mut Report) {
    let slot = &settings.slot;
    let state = match admin::slot_state(client, slot).await {
        Ok(state) => state,
        Err(e) => return report.problem(ADMIN, "slot", e.to_string(), "see the error"),
    };
    let Some(state) = state else {
        return report.ok(
            ADMIN,
            "slot",
            format!("{slot:?} does not exist; `run` creates it"),
        );
    };
    let plugin = state.plugin.clone().unwrap_or_default();
    let described = format!(
        "{slot:?} exists (plugin {plugin}, {}, wal_status {})",
        state
            .active_pid
            .map_or("inactive".to_string(), |p| format!("active, process {p}")),
        state.wal_status.as_deref().unwrap_or("unknown")
    );
    if state.wal_status.as_deref() == Some("lost") {
        return report.problem(
            ADMIN,
            "slot",
            described,
            "`replytime backfill` (the daemon stopped)",
        );
    }
    match slot_owner(settings, &state) {
        SlotOwnerCheck::Ours => report.ok(ADMIN, "slot", format!("{described}, created by this state")),
        SlotOwnerCheck::StateInUse => report.ok(
            ADMIN,
            "slot",
            format!("{described}; the state directory is in use (a daemon runs)"),
        ),
        SlotOwnerCheck::NotOurs => report.problem(
            ADMIN,
            "slot",
            format!("{described}, not created by the state in {}", settings.state_dir().display()),
            "`run` refuses it: another REPLYTIME_SLOT, or `replytime backfill --recreate-slot` if it is the slot of this instance's lost state",
        ),
    }
}

enum SlotOwnerCheck {
    Ours,
    NotOurs,
    StateInUse,
}

fn slot_owner(settings: &Settings, state: &admin::SlotState) -> SlotOwnerCheck {
    if settings.state_dir.is_none() || !settings.state_dir().exists() {
        return SlotOwnerCheck::NotOurs;
    }
    let Ok(store) = crate::pipeline::open_store(settings) else {
        return SlotOwnerCheck::StateInUse;
    };
    let owner = crate::pipeline::ownership::recorded(&store).ok().flatten();
    let state_id = store
        .get_meta::<String>(crate::store::meta::STATE_ID)
        .ok()
        .flatten();
    let system = store
        .get_meta::<String>(crate::store::meta::SYSTEM_ID)
        .ok()
        .flatten();
    match (owner, state_id, system) {
        (Some(owner), Some(id), Some(system))
            if crate::pipeline::ownership::is_ours(
                Some(&owner),
                &settings.slot,
                state.database.as_deref(),
                &system,
                &id,
            ) =>
        {
            SlotOwnerCheck::Ours
        }
        _ => SlotOwnerCheck::NotOurs,
    }
}
