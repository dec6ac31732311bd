//! What an operator sees of TLS: `status` shows each connection's TLS as the
//! server has it (the running daemon's replication session included), and
//! `validate-config` refuses TLS settings that cannot work before anything
//! connects.

use std::process::Command;

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
