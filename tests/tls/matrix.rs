//! Every `sslmode` (and none) against every kind of server: replytime's three
//! connections (admin, sink, replication) end as libpq's psql 15 does with the same
//! URL: refused, in clear text, or encrypted, as `pg_stat_ssl` shows each of them
//! (the walsender's own row for the replication connection).

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgwire_replication::ReplicationClient;
use replytime::lsn::Lsn;
use replytime::pgconn;
use replytime::source::stream::{StreamOptions, conn_params, replication_config};

use crate::common::tls_cluster::{
    Hba, TLS_PASSWORD, TLS_USER, TlsCluster, TlsClusterSpec, start_tls_cluster,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Encrypted,
    Clear,
    Refused,
}

impl Outcome {
    fn of_ssl(ssl: bool) -> Outcome {
        if ssl {
            Outcome::Encrypted
        } else {
            Outcome::Clear
        }
    }

    fn of_text(text: &str) -> Outcome {
        match text.trim() {
            "t" => Outcome::Encrypted,
            "f" => Outcome::Clear,
            other => panic!("pg_stat_ssl.ssl should be t or f, got {other:?}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Encrypted => "encrypted",
            Outcome::Clear => "clear",
            Outcome::Refused => "refused",
        })
    }
}

const MODES: [Option<&str>; 7] = [
    None,
    Some("disable"),
    Some("allow"),
    Some("prefer"),
    Some("require"),
    Some("verify-ca"),
    Some("verify-full"),
];

const OWN_SSL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// The URL of `TLS_USER` at `host` of `cluster`, with the TLS parameters given.
pub fn url(
    cluster: &TlsCluster,
    host: &str,
    mode: Option<&str>,
    root: Option<&str>,
    client_cert: bool,
) -> String {
    let mut params = vec!["connect_timeout=10".to_string()];
    if let Some(mode) = mode {
        params.push(format!("sslmode={mode}"));
    }
    if let Some(root) = root {
        params.push(format!("sslrootcert={root}"));
    }
    if client_cert {
        params.push(format!("sslcert={}", cluster.client_cert.display()));
        params.push(format!("sslkey={}", cluster.client_key.display()));
    }
    format!(
        "postgres://{TLS_USER}:{TLS_PASSWORD}@{host}:{}/postgres?{}",
        cluster.cluster.port,
        params.join("&")
    )
}

/// libpq's answer: psql 15 with the same URL.
fn psql_outcome(cluster: &TlsCluster, url: &str) -> (Outcome, String) {
    let out = Command::new(cluster.cluster.bindir.join("psql"))
        .arg(url)
        .args(["-X", "-A", "-t", "-q", "-c", OWN_SSL])
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGSSLCERT")
        .env_remove("PGSSLKEY")
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql (Debian's postgresql-client-15)");
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        (Outcome::of_text(&text), String::new())
    } else {
        let error = String::from_utf8_lossy(&out.stderr);
        (Outcome::Refused, error.trim().replace('\n', " "))
    }
}

/// The admin connection (`pgconn::connect`), as its own `pg_stat_ssl` row says.
pub async fn admin_outcome(url: &str) -> (Outcome, String) {
    match pgconn::connect(url, "rt-tls-admin").await {
        Ok(client) => {
            let target = pgconn::parse_url(url).expect("parsed once already");
            let facts = pgconn::tls_facts(&client, &target)
                .await
                .expect("read pg_stat_ssl");
            (Outcome::of_ssl(facts.ssl), facts.server_check)
        }
        Err(e) => (Outcome::Refused, e.to_string()),
    }
}

/// The sink's connection, found by its application name in `pg_stat_ssl`.
async fn sink_outcome(url: &str, superuser: &tokio_postgres::Client) -> (Outcome, String) {
    const SINK_SSL: &str = "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                            WHERE a.application_name = 'replytime-sink'";
    match replytime::sink::Sink::connect(url).await {
        Ok(sink) => {
            let rows = superuser
                .query(SINK_SSL, &[])
                .await
                .expect("read pg_stat_ssl");
            assert_eq!(rows.len(), 1, "one sink connection");
            let ssl: bool = rows[0].get(0);
            drop(sink);
            // The next case looks the sink up by name again.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !superuser.query(SINK_SSL, &[]).await.unwrap().is_empty() {
                assert!(Instant::now() < deadline, "the sink connection did not end");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (Outcome::of_ssl(ssl), String::new())
        }
        Err(e) => (Outcome::Refused, e.to_string()),
    }
}

/// The replication connection as the daemon makes it (`source::stream`), asked
/// over the walsender session itself which `pg_stat_ssl` row it has.
pub async fn replication_outcome(url: &str) -> (Outcome, String) {
    let params = match conn_params(url) {
        Ok(params) => params,
        Err(e) => return (Outcome::Refused, e.to_string()),
    };
    let options = StreamOptions {
        slot: "unused".into(),
        publication: "unused".into(),
        start_lsn: Lsn::ZERO,
        ack_lsn: Lsn::ZERO,
        status_interval: Duration::from_secs(10),
        application_name: "rt-tls-replication".into(),
    };
    let config = match replication_config(&params, &options) {
        Ok(config) => config,
        Err(e) => return (Outcome::Refused, e.to_string()),
    };
    let mut client = match ReplicationClient::connect_gated(config).await {
        Ok(client) => client,
        Err(e) => return (Outcome::Refused, e.to_string()),
    };
    let sql = "SELECT s.ssl::text, a.backend_type FROM pg_stat_ssl s \
               JOIN pg_stat_activity a USING (pid) WHERE s.pid = pg_backend_pid()";
    match client.simple_query(sql).await {
        Ok(rows) => {
            let text = |i: usize| {
                rows[0][i]
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            assert_eq!(
                text(1),
                "walsender",
                "the replication session is a walsender"
            );
            let ssl = text(0);
            (Outcome::of_text(if ssl == "true" { "t" } else { "f" }), ssl)
        }
        Err(e) => (Outcome::Refused, e.to_string()),
    }
}

struct Scenario<'a> {
    name: &'static str,
    cluster: &'a TlsCluster,
    host: &'static str,
    root: Option<&'a Path>,
    client_cert: bool,
}

fn scenario<'a>(
    name: &'static str,
    cluster: &'a TlsCluster,
    host: &'static str,
    root: Option<&'a Path>,
    client_cert: bool,
) -> Scenario<'a> {
    Scenario {
        name,
        cluster,
        host,
        root,
        client_cert,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_ends_as_libpq_does_on_all_three_connections() {
    let spec = |ssl, hba, server_names| TlsClusterSpec {
        ssl,
        hba,
        server_names,
    };
    let tls = start_tls_cluster(&spec(true, Hba::Any, "DNS:localhost"));
    let hostssl = start_tls_cluster(&spec(true, Hba::HostsslOnly, "DNS:localhost"));
    let plain = start_tls_cluster(&spec(false, Hba::Any, "DNS:localhost"));
    let ip = start_tls_cluster(&spec(true, Hba::HostsslOnly, "IP:127.0.0.1"));
    let cert = start_tls_cluster(&spec(true, Hba::ClientCert, "DNS:localhost"));
    let scenarios = [
        scenario(
            "TLS server",
            &tls,
            "localhost",
            Some(tls.ca.as_path()),
            false,
        ),
        scenario("TLS server, no sslrootcert", &tls, "localhost", None, false),
        scenario(
            "hostssl-only server",
            &hostssl,
            "localhost",
            Some(hostssl.ca.as_path()),
            false,
        ),
        scenario(
            "plain server",
            &plain,
            "localhost",
            Some(plain.ca.as_path()),
            false,
        ),
        scenario(
            "wrong CA",
            &tls,
            "localhost",
            Some(tls.other_ca.as_path()),
            false,
        ),
        scenario(
            "wrong CA, hostssl-only",
            &hostssl,
            "localhost",
            Some(hostssl.other_ca.as_path()),
            false,
        ),
        scenario(
            "wrong host (cert names localhost)",
            &hostssl,
            "127.0.0.1",
            Some(hostssl.ca.as_path()),
            false,
        ),
        scenario(
            "IP host (cert names 127.0.0.1)",
            &ip,
            "127.0.0.1",
            Some(ip.ca.as_path()),
            false,
        ),
        scenario(
            "client certificate required",
            &cert,
            "localhost",
            Some(cert.ca.as_path()),
            true,
        ),
        scenario(
            "client certificate required, none sent",
            &cert,
            "localhost",
            Some(cert.ca.as_path()),
            false,
        ),
    ];

    let mut table = Vec::new();
    let mut mismatches = Vec::new();
    let mut outcomes = std::collections::HashMap::new();
    for scenario in &scenarios {
        let superuser = crate::common::connect(&scenario.cluster.superuser_url()).await;
        for mode in MODES {
            let root = scenario.root.map(|p| p.display().to_string());
            let url = url(
                scenario.cluster,
                scenario.host,
                mode,
                root.as_deref(),
                scenario.client_cert,
            );
            let (libpq, libpq_error) = psql_outcome(scenario.cluster, &url);
            let (admin, admin_note) = admin_outcome(&url).await;
            let (sink, sink_note) = sink_outcome(&url, &superuser).await;
            let (replication, replication_note) = replication_outcome(&url).await;
            let mode_name = mode.unwrap_or("(none)");
            table.push(format!(
                "{:<42} {mode_name:<12} psql {libpq:<9} admin {admin:<9} sink {sink:<9} replication {replication}",
                scenario.name
            ));
            outcomes.insert((scenario.name, mode_name), libpq);
            for (connection, outcome, note) in [
                ("admin", admin, &admin_note),
                ("sink", sink, &sink_note),
                ("replication", replication, &replication_note),
            ] {
                if outcome != libpq {
                    mismatches.push(format!(
                        "{} sslmode={mode_name}: {connection} {outcome} ({note}), psql {libpq} ({libpq_error})",
                        scenario.name
                    ));
                }
            }
        }
    }
    let table = table.join("\n");
    eprintln!("{table}");
    assert!(
        mismatches.is_empty(),
        "replytime differs from libpq:\n{}\n\nall cases:\n{table}",
        mismatches.join("\n")
    );

    // What libpq itself does, so that a broken reference cannot pass the test.
    use Outcome::*;
    for (scenario, mode, expected) in [
        ("TLS server", "(none)", Encrypted),
        ("hostssl-only server", "(none)", Encrypted),
        ("hostssl-only server", "allow", Encrypted),
        ("plain server", "(none)", Clear),
        ("plain server", "require", Refused),
        ("TLS server, no sslrootcert", "require", Encrypted),
        ("TLS server, no sslrootcert", "verify-ca", Refused),
        ("wrong CA", "prefer", Clear),
        ("wrong CA", "require", Refused),
        ("wrong host (cert names localhost)", "verify-ca", Encrypted),
        ("wrong host (cert names localhost)", "verify-full", Refused),
        ("IP host (cert names 127.0.0.1)", "verify-full", Encrypted),
        ("client certificate required", "verify-full", Encrypted),
        ("client certificate required, none sent", "require", Refused),
    ] {
        assert_eq!(
            outcomes[&(scenario, mode)],
            expected,
            "libpq's outcome for {scenario}, sslmode={mode}"
        );
    }
}
