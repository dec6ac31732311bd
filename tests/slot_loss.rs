//! A slot invalidated or dropped under a running daemon (SPEC 5 "Never skip WAL",
//! "Definite errors stay visible"; SPEC 8): the pipeline stops with the same clear
//! error a start gives, instead of reconnecting forever.

mod common;
#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::*;

const SLOT_LOST: &str = "is invalidated (wal_status = lost)";
const SLOT_MISSING: &str = "is missing but the state in";
const RECONNECTING: &str = "reconnecting";

/// A fresh database with the source tables on `cluster`.
async fn database_on(cluster: &common::TestCluster, name: &str) -> common::TestDb {
    let admin = common::connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = cluster.url(name);
    let client = common::connect(&url).await;
    let db = common::TestDb {
        url,
        name: name.to_string(),
        client,
    };
    db.apply_source_schema().await;
    db
}

/// Waits for the daemon to report `error`, then checks that it stopped trying:
/// no reconnect attempt follows.
async fn assert_stops_with(daemon: &mut Daemon, error: &str) {
    eventually(Duration::from_secs(30), error, || async {
        daemon.log_text().contains(error)
    })
    .await;
    let retries = daemon.log_text().matches(RECONNECTING).count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = daemon.log_text();
    assert_eq!(
        log.matches(RECONNECTING).count(),
        retries,
        "the daemon kept reconnecting after a definite error:\n{log}"
    );
    assert!(
        log.contains("replytime backfill"),
        "names the way out:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_invalidated_while_running_stops_the_pipeline_with_the_start_error() {
    let cluster = tokio::task::spawn_blocking(|| {
        common::start_cluster_with("max_slot_wal_keep_size = 1MB\nmax_wal_size = 64MB\n")
    })
    .await
    .unwrap();
    let db = database_on(&cluster, "slot_invalidated").await;
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    wait_streaming(&db.client, &db.url).await;

    // Pending work the daemon cannot deliver holds the slot's position back...
    let locker = lock_sink(&db.url).await;
    db.client
        .batch_execute(
            r#"INSERT INTO "Lead" (id, "clientId") VALUES ('L', 'C');
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt")
                   VALUES ('i', 'L', 'sms', 'inbound', now());
               CREATE TABLE filler (x text);"#,
        )
        .await
        .unwrap();
    // ...while the application writes far more WAL than max_slot_wal_keep_size.
    let slot = slot_for(&db.url);
    eventually(
        Duration::from_secs(60),
        "the slot to be invalidated",
        || async {
            db.client
                .batch_execute(
                    "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 4000); \
                 SELECT pg_switch_wal(); CHECKPOINT;",
                )
                .await
                .unwrap();
            let status: Option<String> = db
                .client
                .query_one(
                    "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .unwrap()
                .get(0);
            status.as_deref() == Some("lost")
        },
    )
    .await;
    assert_stops_with(&mut daemon, SLOT_LOST).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_dropped_while_running_stops_the_pipeline_with_the_start_error() {
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    wait_streaming(&db.client, &db.url).await;
    db.client
        .batch_execute(r#"INSERT INTO "Lead" (id, "clientId") VALUES ('L', 'C')"#)
        .await
        .unwrap();
    // The daemon reconnects within a second; drop the slot between its sessions.
    let slot = slot_for(&db.url);
    eventually(
        Duration::from_secs(30),
        "the slot to be dropped",
        || async {
            db.client
                .query(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active_pid IS NOT NULL",
                    &[&slot],
                )
                .await
                .unwrap();
            db.client
                .query(
                    "SELECT pg_drop_replication_slot($1) FROM pg_replication_slots \
                 WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .is_ok_and(|rows| rows.len() == 1)
        },
    )
    .await;
    assert_stops_with(&mut daemon, SLOT_MISSING).await;
}
