//! What an operator sees of TLS: `status` shows each connection's TLS as the
//! server has it (the running daemon's replication session included), and
//! `validate-config` refuses TLS settings that cannot work before anything
//! connects.

use std::process::Command;
use std::time::Duration;

use crate::common::{cluster, fresh_database};
use crate::support::{Daemon, slot_for, wait_streaming};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_connection_encrypted_with_the_default_url() {
    assert!(cluster().tls.is_some(), "the harness cluster runs with TLS");
    let db = fresh_database().await;
    db.apply_source_schema().await;
    let state = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(&db.url, state.path(), &[]);
    wait_streaming(&db.client, &db.url).await;

    let out = Command::new(env!("CARGO_BIN_EXE_replytime"))
        .args(["status", "--json"])
        .env_clear()
        .env("REPLYTIME_SOURCE_URL", &db.url)
        .env("REPLYTIME_SLOT", slot_for(&db.url))
        .env("REPLYTIME_STATE_DIR", state.path())
        .output()
        .expect("run replytime status");
    let text = String::from_utf8_lossy(&out.stdout);
    let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let connections = status["connections"].as_array().expect("connections");
    for name in ["admin", "sink", "replication"] {
        let connection = connections
            .iter()
            .find(|c| c["connection"] == name)
            .unwrap_or_else(|| panic!("no {name} connection in {text}"));
        assert_eq!(connection["ssl"], true, "{name}: {text}");
        assert!(
            connection["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{name}: {text}"
        );
        assert!(connection["cipher"].is_string(), "{name}: {text}");
        // The default sslmode (prefer) checks nothing of the certificate.
        assert_eq!(connection["server_check"], "none", "{name}: {text}");
    }
    assert!(
        daemon.stop().success(),
        "daemon log:\n{}",
        daemon.log_text()
    );
}

fn validate_config(source_url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_replytime"))
        .arg("validate-config")
        .env_clear()
        .env("REPLYTIME_SOURCE_URL", source_url)
        .env("REPLYTIME_STATE_DIR", "/tmp/replytime-unused")
        .output()
        .expect("run replytime validate-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn validate_config_refuses_tls_settings_that_cannot_work() {
    for (url, expected) in [
        (
            "postgres://rt:s3cret@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert /nonexistent/ca.pem",
        ),
        (
            "postgres://rt:s3cret@db/app?sslmode=require&sslrootcert=system",
            "weak sslmode \"require\" may not be used with sslrootcert=system",
        ),
        (
            "postgres://rt:s3cret@db/app?sslcert=/nonexistent/client.crt",
            "sslcert /nonexistent/client.crt",
        ),
        (
            "postgres://rt:s3cret@db/app?sslmode=sometimes",
            "unknown sslmode \"sometimes\"",
        ),
    ] {
        let (ok, text) = validate_config(url);
        assert!(!ok, "{url} was accepted:\n{text}");
        assert!(text.contains("source_url"), "names the setting: {text}");
        assert!(text.contains(expected), "says why ({expected}): {text}");
        assert!(!text.contains("s3cret"), "no password: {text}");
    }
    let (ok, text) =
        validate_config("postgres://rt:s3cret@db/app?sslmode=verify-full&sslrootcert=system");
    assert!(ok, "system roots (ca-certificates) are valid: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_streams_over_verify_full_with_a_client_certificate_from_a_hostssl_only_server()
{
    use crate::common::tls_cluster::{Hba, TLS_USER, TlsClusterSpec, start_tls_cluster};
    use crate::support::{confirmed_lsn, current_lsn, eventually};

    let server = start_tls_cluster(&TlsClusterSpec {
        ssl: true,
        hba: Hba::ClientCert,
        server_names: "DNS:localhost",
    });
    let superuser = crate::common::connect(&server.superuser_url()).await;
    superuser
        .batch_execute(&format!("CREATE DATABASE app OWNER {TLS_USER}"))
        .await
        .expect("create the application database");
    let app = crate::common::connect(&format!("{} dbname=app", server.superuser_url())).await;
    // The tables belong to the role, so it may publish them.
    app.batch_execute(&format!(
        "SET ROLE {TLS_USER}; {}; RESET ROLE",
        include_str!("../../schema/source.sql")
    ))
    .await
    .expect("the source schema");
    let ca = server.ca.display().to_string();
    let url = crate::matrix::url(&server, "localhost", Some("verify-full"), Some(&ca), true)
        .replace("/postgres?", "/app?");
    let state = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(&url, state.path(), &[]);
    wait_streaming(&app, &url).await;
    app.batch_execute(
        "INSERT INTO \"Message\" (id, \"leadId\", channel, direction, \"sentAt\") \
         VALUES ('m-1', 'lead-1', 'email', 'inbound', now())",
    )
    .await
    .expect("the application's insert");
    let written = current_lsn(&app).await;
    let slot = slot_for(&url);
    eventually(
        Duration::from_secs(60),
        "the slot to confirm the insert",
        || async {
            confirmed_lsn(&app, &slot)
                .await
                .is_some_and(|lsn| lsn >= written)
        },
    )
    .await;
    // Every connection of the daemon, the walsender included, is TLS with its
    // client certificate.
    let rows = superuser
        .query(
            "SELECT a.backend_type, s.ssl, coalesce(s.client_dn, '') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1",
            &[&TLS_USER],
        )
        .await
        .expect("read pg_stat_ssl");
    assert!(
        rows.iter().any(|r| r.get::<_, String>(0) == "walsender"),
        "the replication session is among the daemon's connections"
    );
    assert!(rows.len() >= 2, "admin or sink, and the walsender");
    for row in &rows {
        let (kind, ssl, dn): (String, bool, String) = (row.get(0), row.get(1), row.get(2));
        assert!(ssl, "{kind} is not encrypted");
        assert!(
            dn.contains(TLS_USER),
            "{kind} without the client certificate: {dn:?}"
        );
    }
    assert!(
        daemon.stop().success(),
        "daemon log:\n{}",
        daemon.log_text()
    );
}
