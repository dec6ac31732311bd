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

use crate::config::Settings;

/// One reported check.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub connection: &'static str,
    pub name: &'static str,
    /// `None` when it passed, else how to fix it.
    pub fix: Option<String>,
    pub detail: String,
}

/// Every check of one `replytime check` run.
#[derive(Debug, Default)]
pub(crate) struct Report {
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

    pub(crate) fn problems(&self) -> usize {
        self.checks.iter().filter(|c| c.fix.is_some()).count()
    }

    /// The text `replytime check` prints.
    pub(crate) fn render(&self) -> String {
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

mod sink;
mod source;

const ADMIN: &str = "admin";
const SINK: &str = "sink";
const REPLICATION: &str = "replication";

/// Runs every check.
pub(crate) async fn run(settings: &Settings) -> Report {
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
        source::checks(settings, admin, &mut report).await;
    }
    sink::checks(settings, &mut report).await;
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

/// `validate-config`: the settings parse, their files exist, no unknown
/// `REPLYTIME_*` variable is set; prints the settings with secrets redacted.
pub(crate) fn validate_config(settings: &Settings) -> anyhow::Result<std::process::ExitCode> {
    settings.check_paths()?;
    let unknown = crate::config::unknown_env_names(std::env::vars().map(|(k, _)| k));
    if !unknown.is_empty() {
        return Err(crate::config::ConfigError::new(
            "environment",
            format!(
                "unknown variables {}: replytime does not read them (see the README's settings table)",
                unknown.join(", ")
            ),
        )
        .into());
    }
    print!("{}", settings.redacted());
    println!("# config ok");
    Ok(std::process::ExitCode::SUCCESS)
}
