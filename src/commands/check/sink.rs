//! The checks of the sink connection: encryption, privileges, registered writers.

use tokio_postgres::Client;

use super::{Report, SINK, encryption};
use crate::config::Settings;

pub(super) async fn checks(settings: &Settings, report: &mut Report) {
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
