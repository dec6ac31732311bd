//! `replytime check`: the preflight (and doctor) of a deployment. It connects as
//! the daemon would, with each connection the daemon uses, and reports every
//! check as ok or as a problem with how to fix it; it changes nothing.
//!
//! ```text
//!  admin (source URL, SQL)     connect + TLS, wal_level, REPLICATION, tables and
//!                              columns, SELECT grants, publication, replica
//!                              identity, the slot and whose it is
//!  sink (sink URL, SQL)        connect + TLS, schema version, privileges, writers
//!  replication (source URL,    connect + TLS (its walsender's pg_stat_ssl row,
//!   replication protocol)      found by application_name), IDENTIFY_SYSTEM
//! ```
//!
//! The exit status is 0 when every check passed, 1 otherwise (for scripts and
//! init containers).

use std::fmt::Write as _;

use tokio_postgres::Client;

use crate::change::Table;
use crate::config::Settings;
use crate::source::admin;

/// One reported check.
#[derive(Clone, Debug)]
pub struct Check {
    pub connection: &'static str,
    pub name: &'static str,
    /// `None` when it passed, else how to fix it.
    pub fix: Option<String>,
    pub detail: String,
}

/// Every check of one `replytime check` run.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn ok(&mut self, connection: &'static str, name: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            connection,
            name,
            fix: None,
            detail: detail.into(),
        });
    }

    fn problem(
        &mut self,
        connection: &'static str,
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            connection,
            name,
            fix: Some(fix.into()),
            detail: detail.into(),
        });
    }

    pub fn problems(&self) -> usize {
        self.checks.iter().filter(|c| c.fix.is_some()).count()
    }

    /// The text `replytime check` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut connection = "";
        for check in &self.checks {
            if check.connection != connection {
                connection = check.connection;
                let _ = writeln!(out, "{connection} connection");
            }
            match &check.fix {
                None => {
                    let _ = writeln!(out, "  ok       {:<18} {}", check.name, check.detail);
                }
                Some(fix) => {
                    let _ = writeln!(out, "  PROBLEM  {:<18} {}", check.name, check.detail);
                    let _ = writeln!(out, "           {:<18} fix: {fix}", "");
                }
            }
        }
        let problems = self.problems();
        if problems == 0 {
            let _ = writeln!(out, "all {} checks passed", self.checks.len());
        } else {
            let _ = writeln!(out, "{problems} problem(s) in {} checks", self.checks.len());
        }
        out
    }
}

const ADMIN: &str = "admin";
const SINK: &str = "sink";
const REPLICATION: &str = "replication";

/// Runs every check.
pub async fn run(settings: &Settings) -> Report {
    let mut report = Report::default();
    let admin = match crate::pgconn::connect(settings.source_url(), "replytime-check").await {
        Ok(client) => {
            let tls = encryption(&client, "pg_backend_pid()").await;
            report.ok(ADMIN, "connect", tls);
            Some(client)
        }
        Err(e) => {
            report.problem(
                ADMIN,
                "connect",
                e.to_string(),
                "fix REPLYTIME_SOURCE_URL (host, user, password, sslmode) or pg_hba.conf",
            );
            None
        }
    };
    if let Some(admin) = &admin {
        source_checks(settings, admin, &mut report).await;
    }
    sink_checks(settings, &mut report).await;
    replication_checks(settings, admin.as_ref(), &mut report).await;
    report
}

/// "TLS 1.3 (cipher)" or "not encrypted", from `pg_stat_ssl` of backend `pid`.
async fn encryption(client: &Client, pid: &str) -> String {
    let row = client
        .query_opt(
            &format!(
                "SELECT current_user::text, ssl, version, cipher FROM pg_stat_ssl WHERE pid = {pid}"
            ),
            &[],
        )
        .await;
    match row {
        Ok(Some(row)) => describe_ssl(
            row.get(0),
            row.get(1),
            row.get::<_, Option<String>>(2),
            row.get::<_, Option<String>>(3),
        ),
        Ok(None) => "connected; encryption unknown (no pg_stat_ssl row)".into(),
        Err(e) => format!("connected; encryption unknown ({e})"),
    }
}

fn describe_ssl(
    user: String,
    ssl: bool,
    version: Option<String>,
    cipher: Option<String>,
) -> String {
    if ssl {
        format!(
            "as {user}, encrypted ({}, {})",
            version.unwrap_or_default(),
            cipher.unwrap_or_default()
        )
    } else {
        format!("as {user}, NOT encrypted (sslmode=require or verify-full in the URL to insist)")
    }
}

async fn source_checks(settings: &Settings, client: &Client, report: &mut Report) {
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

async fn sink_checks(settings: &Settings, report: &mut Report) {
    let client = match crate::pgconn::connect(settings.sink_url(), "replytime-check-sink").await {
        Ok(client) => client,
        Err(e) => {
            return report.problem(
                SINK,
                "connect",
                e.to_string(),
                "fix REPLYTIME_SINK_URL (host, user, password, sslmode) or pg_hba.conf",
            );
        }
    };
    let tls = encryption(&client, "pg_backend_pid()").await;
    report.ok(SINK, "connect", tls);
    let privileges = client
        .query_one(
            r#"SELECT has_schema_privilege(current_schema(), 'CREATE'),
                      to_regclass('"ResponseTimingEvent"') IS NULL
                        OR pg_has_role((SELECT relowner FROM pg_class WHERE oid = to_regclass('"ResponseTimingEvent"')), 'USAGE'),
                      current_schema()::text"#,
            &[],
        )
        .await;
    match privileges {
        Ok(row) => {
            let (create, owns, schema): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
            if create && owns {
                report.ok(
                    SINK,
                    "privileges",
                    format!("CREATE on schema {schema}, owner of the sink tables"),
                );
            } else {
                report.problem(
                    SINK,
                    "privileges",
                    format!(
                        "CREATE on schema {schema}: {create}; owner of \"ResponseTimingEvent\": {owns}"
                    ),
                    "GRANT CREATE ON SCHEMA ... and hand the sink tables to the role (deploy/postgres/grants.sql)",
                );
            }
        }
        Err(e) => report.problem(SINK, "privileges", e.to_string(), "see the error"),
    }
    writers_check(settings, &client, report).await;
}

async fn writers_check(settings: &Settings, client: &Client, report: &mut Report) {
    use crate::sink::registry;
    let exists: bool = client
        .query_one("SELECT to_regclass('replytime_writers') IS NOT NULL", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(false);
    if !exists {
        return report.ok(SINK, "writers", "none registered yet (`run` registers)");
    }
    let writers = match registry::writers(client).await {
        Ok(w) => w,
        Err(e) => return report.problem(SINK, "writers", e.to_string(), "see the error"),
    };
    let state_id = local_state_id(settings);
    let me = registry::Writer {
        state_id: state_id.clone().unwrap_or_default(),
        slot: settings.slot.clone(),
        shard: settings.shard,
        host: registry::host_name(),
        last_seen: String::new(),
    };
    let conflicts = registry::conflicts(&me, &writers);
    if conflicts.is_empty() {
        report.ok(
            SINK,
            "writers",
            format!(
                "{} registered, none overlapping this instance's claim",
                writers.len()
            ),
        );
    } else {
        let named: Vec<String> = conflicts.iter().map(|w| w.describe()).collect();
        report.problem(
            SINK,
            "writers",
            format!("another writer owns these rows: {}", named.join("; ")),
            "`replytime release-writer --state-id ID` if it is gone for good, else another sink or shard",
        );
    }
}

/// This instance's state id, when its state directory can be read now.
fn local_state_id(settings: &Settings) -> Option<String> {
    if settings.state_dir.is_none() || !settings.state_dir().exists() {
        return None;
    }
    let store = crate::pipeline::open_store(settings).ok()?;
    store
        .get_meta::<String>(crate::store::meta::STATE_ID)
        .ok()
        .flatten()
}

async fn replication_checks(settings: &Settings, admin: Option<&Client>, report: &mut Report) {
    use crate::source::stream::{StreamOptions, conn_params, replication_config};
    let application_name = format!("replytime-check-{}", std::process::id());
    let opened = async {
        let params = conn_params(settings.source_url())?;
        let options = StreamOptions {
            slot: settings.slot.clone(),
            publication: settings.publication.clone(),
            start_lsn: crate::lsn::Lsn::ZERO,
            ack_lsn: crate::lsn::Lsn::ZERO,
            status_interval: settings.status_interval(),
            application_name: application_name.clone(),
        };
        let cfg = replication_config(&params, &options)?;
        let mut session = pgwire_replication::ReplicationClient::connect_gated(cfg).await?;
        let system = session.simple_query("IDENTIFY_SYSTEM").await?;
        Ok::<_, crate::source::SourceError>((session, system.len()))
    }
    .await;
    match opened {
        Ok((session, _)) => {
            let tls = match admin {
                Some(admin) => {
                    let pid = format!(
                        "(SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = '{}' LIMIT 1)",
                        application_name.replace('\'', "")
                    );
                    encryption(admin, &pid).await
                }
                None => "connected; encryption unknown (no admin connection)".into(),
            };
            report.ok(REPLICATION, "connect", tls);
            drop(session);
        }
        Err(e) => report.problem(
            REPLICATION,
            "connect",
            e.to_string(),
            "the role needs REPLICATION and a pg_hba.conf entry for this database (not the `replication` keyword)",
        ),
    }
}
