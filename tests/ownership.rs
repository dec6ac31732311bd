//! Ownership and recovery that keeps history (SPEC 5 "One writer", "Ownership",
//! "Recovery keeps history"), end to end: the real binary against a real server.
//!
//! ```text
//!  a second instance, empty state ──▶ refused at once; owner streams on, restarts
//!  a foreign slot of the same name ──▶ refused; the slot is untouched
//!  a first start that fails ─────────▶ no slot left behind
//!  two unsharded writers, one sink ──▶ the second refused; release-writer frees it
//!  backfill / teardown + backfill ───▶ every delay record and the quarantine kept,
//!   as the least-privilege role of deploy/postgres/grants.sql
//!  a transaction the stream cannot apply ──▶ backfill, then streaming again
//!  replytime check ──────────────────▶ ok / problem / fix, exit status
//! ```

mod common;
#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use replytime::workload::{Generator, HistoryConfig};
use support::*;

const CONVERGE: Duration = Duration::from_secs(60);
const GRANTS_SQL: &str = include_str!("../deploy/postgres/grants.sql");

async fn database() -> common::TestDb {
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    db.client.batch_execute(ORACLE_SUPPORT_SQL).await.unwrap();
    db
}

/// Applies deploy/postgres/grants.sql to `db` (as the superuser) and returns the
/// URL of its role, `replytime`. Roles are global to the cluster: one at a time.
async fn least_privilege(db: &common::TestDb) -> String {
    static GRANTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = GRANTS.lock().await;
    db.client
        .batch_execute(GRANTS_SQL)
        .await
        .unwrap_or_else(|e| panic!("deploy/postgres/grants.sql: {e:?}"));
    db.url_as("replytime", None, "")
}

/// The binary run to completion as `url`, with the slot of `slot_url`'s test.
fn cli(url: &str, slot_url: &str, state: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replytime"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REPLYTIME_SOURCE_URL", url)
        .env("REPLYTIME_STATE_DIR", state)
        .env("REPLYTIME_SLOT", slot_for(slot_url))
        .env(
            "REPLYTIME_METRICS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
}

/// A daemon as `url` (the slot of `db_url`'s test).
fn daemon_as(url: &str, db_url: &str, state: &Path, env: &[(&str, &str)]) -> Daemon {
    let slot = slot_for(db_url);
    let mut all = vec![
        ("REPLYTIME_SOURCE_URL", url),
        ("REPLYTIME_SLOT", slot.as_str()),
    ];
    all.extend_from_slice(env);
    Daemon::spawn(db_url, state, &all)
}

/// Waits until `daemon` exits or its log says `needle`; returns the log.
fn wait_refused(daemon: &mut Daemon, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = daemon.log_text();
        if daemon.exited().is_some() || log.contains(needle) {
            daemon.kill9();
            return daemon.log_text();
        }
        assert!(
            Instant::now() < deadline,
            "neither an exit nor {needle:?} within 30 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn slot_row(client: &tokio_postgres::Client, slot: &str) -> Option<(String, String)> {
    client
        .query_opt(
            "SELECT plugin::text, coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

fn history(generator: &mut Generator, n: usize) -> Vec<Vec<replytime::change::Change>> {
    (0..n).map(|_| generator.next_transaction()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_instance_with_empty_state_refuses_and_the_owner_streams_on() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let (owner_state, other_state) = (dir.path().join("owner"), dir.path().join("other"));
    let mut owner = Daemon::spawn(&db.url, &owner_state, &[]);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(41, HistoryConfig::realistic());
    write_history(&db.client, &history(&mut generator, 100)).await;
    converge(&db.client, CONVERGE).await;

    // While the owner streams: refused at once, not left waiting for the slot.
    let started = Instant::now();
    let out = cli(&db.url, &db.url, &other_state, &["run"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not create it") && stderr.contains("backfill --recreate-slot"),
        "{stderr}"
    );
    write_history(&db.client, &history(&mut generator, 50)).await;
    converge(&db.client, CONVERGE).await;

    // The owner stops: the other instance still refuses, and touches nothing.
    assert!(owner.stop().success());
    let slot = slot_for(&db.url);
    let (sink_before, slot_before) = (
        sink_rows(&db.client).await,
        slot_row(&db.client, &slot).await,
    );
    let mut other = Daemon::spawn(&db.url, &other_state, &[]);
    let log = wait_refused(&mut other, "did not create it");
    assert!(log.contains("did not create it"), "{log}");
    assert!(!log.contains("starting it over"), "{log}");
    assert_eq!(slot_row(&db.client, &slot).await, slot_before);
    assert_eq!(sink_rows(&db.client).await, sink_before);

    // The owner restarts fine and streams on.
    let _owner = Daemon::spawn(&db.url, &owner_state, &[]);
    wait_streaming(&db.client, &db.url).await;
    write_history(&db.client, &history(&mut generator, 50)).await;
    converge(&db.client, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_state_waits_while_its_slot_is_held_elsewhere() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    assert!(daemon.stop().success());

    // Another connection holds the slot (the walsender of a pod that is still
    // going away): the same state waits for it, writing nothing, and never refuses.
    use replytime::source::stream::{StreamOptions, conn_params, start_stream};
    let options = StreamOptions {
        slot: slot_for(&db.url),
        publication: "replytime".into(),
        start_lsn: replytime::lsn::Lsn::ZERO,
        ack_lsn: replytime::lsn::Lsn::ZERO,
        status_interval: Duration::from_secs(10),
        application_name: "previous-pod".into(),
    };
    let holder = start_stream(&conn_params(&db.url).unwrap(), &options)
        .await
        .unwrap();
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    eventually(CONVERGE, "the daemon to wait for its slot", || async {
        daemon
            .log_text()
            .contains("slot is in use by another connection; waiting")
    })
    .await;
    assert!(daemon.exited().is_none(), "{}", daemon.log_text());
    assert!(!daemon.log_text().contains("did not create it"));
    drop(holder);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(59, HistoryConfig::realistic());
    write_history(&db.client, &history(&mut generator, 30)).await;
    converge(&db.client, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_slot_of_the_same_name_is_untouched() {
    let db = database().await;
    let slot = slot_for(&db.url);
    db.client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&slot],
        )
        .await
        .unwrap();
    let before = slot_row(&db.client, &slot).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = cli(&db.url, &db.url, &state, &["run"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin test_decoding") && stderr.contains("did not create it"),
        "{stderr}"
    );
    // A backfill drops it only when told to.
    let out = cli(&db.url, &db.url, &state, &["backfill"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--recreate-slot"),
        "{}",
        text(&out)
    );
    // Neither does teardown.
    let out = cli(&db.url, &db.url, &state, &["teardown", "--yes"], &[]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept slot"),
        "{}",
        text(&out)
    );
    assert_eq!(slot_row(&db.client, &slot).await, before);
    assert_eq!(before.unwrap().0, "test_decoding");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_start_that_fails_leaves_no_slot() {
    let db = database().await;
    let slot = slot_for(&db.url);
    let dir = tempfile::tempdir().unwrap();

    // A missing SELECT grant is found before anything is created.
    let url = least_privilege(&db).await;
    db.client
        .batch_execute(r#"REVOKE SELECT ON "BackgroundJob" FROM replytime"#)
        .await
        .unwrap();
    let out = cli(&url, &db.url, &dir.path().join("a"), &["run"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"GRANT SELECT ON "public"."BackgroundJob" TO "replytime""#),
        "{stderr}"
    );
    assert_eq!(slot_row(&db.client, &slot).await, None);

    // So is a publication the role cannot create (it does not own the tables).
    db.client
        .batch_execute(
            r#"GRANT SELECT ON "BackgroundJob" TO replytime; DROP PUBLICATION replytime"#,
        )
        .await
        .unwrap();
    let out = cli(&url, &db.url, &dir.path().join("a"), &["run"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot create it") && stderr.contains("grants.sql"),
        "{stderr}"
    );
    assert_eq!(slot_row(&db.client, &slot).await, None);
    least_privilege(&db).await;

    // A load that fails after creating its slot drops it: a value of the copy
    // that is not of the type replytime reads (a bound stored as text).
    db.client
        .batch_execute(
            // The publication's column list pins the column's type: take the table
            // out of it around the change.
            r#"ALTER PUBLICATION replytime DROP TABLE "EmailCampaign";
               ALTER TABLE "EmailCampaign" ALTER COLUMN "aiAutoSendDelayMinSeconds" TYPE text;
               ALTER PUBLICATION replytime ADD TABLE "EmailCampaign";
               INSERT INTO "EmailCampaign" (id, "aiAutoSendDelayMinSeconds") VALUES ('c', 'soon')"#,
        )
        .await
        .unwrap();
    let mut daemon = Daemon::spawn(&db.url, &dir.path().join("b"), &[]);
    let log = wait_refused(&mut daemon, "dropped the slot it created");
    assert!(log.contains("dropped the slot it created"), "{log}");
    assert!(log.contains("created slot"), "the slot was created: {log}");
    assert_eq!(slot_row(&db.client, &slot).await, None, "{log}");
    db.client
        .batch_execute(
            r#"DELETE FROM "EmailCampaign" WHERE id = 'c';
               ALTER PUBLICATION replytime DROP TABLE "EmailCampaign";
               ALTER TABLE "EmailCampaign" ALTER COLUMN "aiAutoSendDelayMinSeconds" TYPE integer
                   USING "aiAutoSendDelayMinSeconds"::integer;
               ALTER PUBLICATION replytime ADD TABLE "EmailCampaign""#,
        )
        .await
        .unwrap();

    // The next start loads and streams.
    let _daemon = Daemon::spawn(&db.url, &dir.path().join("b"), &[]);
    wait_streaming(&db.client, &db.url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_unsharded_writers_on_one_sink_refuse_until_the_stale_one_is_released() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = Daemon::spawn(&db.url, &dir.path().join("first"), &[]);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(43, HistoryConfig::realistic());
    write_history(&db.client, &history(&mut generator, 60)).await;
    converge(&db.client, CONVERGE).await;
    let first_id: String = db
        .client
        .query_one("SELECT state_id FROM replytime_writers", &[])
        .await
        .unwrap()
        .get(0);

    // Another slot, another state, the same sink and leads: refused, naming the writer.
    let second_slot = format!("{}_b", slot_for(&db.url));
    let second_env = [("REPLYTIME_SLOT", second_slot.as_str())];
    let second_state = dir.path().join("second");
    let out = cli(&db.url, &db.url, &second_state, &["run"], &second_env);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "another writer owns",
        &slot_for(&db.url),
        &first_id,
        "release-writer",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
    }
    assert_eq!(slot_row(&db.client, &second_slot).await, None);

    // A restart of the first writer (same state) is no conflict, even after kill -9.
    first.kill9();
    let mut first = Daemon::spawn(&db.url, &dir.path().join("first"), &[]);
    wait_streaming(&db.client, &db.url).await;
    assert!(first.stop().success());

    // The first writer is retired: its registration is released explicitly.
    let out = cli(
        &db.url,
        &db.url,
        &second_state,
        &["release-writer", "--state-id", "nope"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&first_id),
        "{}",
        text(&out)
    );
    let out = cli(
        &db.url,
        &db.url,
        &second_state,
        &["release-writer", "--state-id", &first_id],
        &[],
    );
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("released"),
        "{}",
        text(&out)
    );
    db.client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot_for(&db.url)])
        .await
        .unwrap();
    let _second = Daemon::spawn(&db.url, &second_state, &second_env);
    eventually(CONVERGE, "the second writer to stream", || async {
        slot_row(&db.client, &second_slot).await.is_some()
    })
    .await;
    write_history(&db.client, &history(&mut generator, 40)).await;
    converge(&db.client, CONVERGE).await;
}

/// Quarantined rows as (table, row id, reason), from `replytime quarantine`.
fn quarantine(url: &str, db_url: &str, state: &Path) -> BTreeSet<String> {
    let out = cli(url, db_url, state, &["quarantine"], &[]);
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            line.split_once('\t')
                .map_or(line, |(_, rest)| rest)
                .to_string()
        })
        .collect()
}

/// Sink rows whose recorded delay bounds differ from the bounds in force now.
async fn rows_with_history(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            r#"SELECT count(*) FROM "ResponseTimingEvent" r
               JOIN "BackgroundJob" j ON j.id = r."aiBackgroundJobId"
               LEFT JOIN "Lead" l ON l.id = j."leadId"
               LEFT JOIN "EmailCampaign" c ON c.id = l."emailCampaignId"
               WHERE (r."aiDelayMinSeconds", r."aiDelayMaxSeconds") IS DISTINCT FROM
                     (coalesce(c."aiAutoSendDelayMinSeconds", 180), coalesce(c."aiAutoSendDelayMaxSeconds", 420))"#,
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_alone_and_after_teardown_keep_every_delay_record_and_the_quarantine() {
    let db = database().await;
    let url = least_privilege(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut daemon = daemon_as(&url, &db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(47, HistoryConfig::realistic());
    write_history(&db.client, &history(&mut generator, 300)).await;
    db.client
        .batch_execute(
            r#"INSERT INTO "Message" (id, "leadId", channel, direction) VALUES
                 ('unplaceable-1', NULL, 'sms', 'inbound'),
                 ('unplaceable-2', 'lead-x', NULL, NULL)"#,
        )
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
    assert!(daemon.stop().success());
    let sink_before = sink_rows(&db.client).await;
    let quarantine_before = quarantine(&url, &db.url, &state);
    assert_eq!(quarantine_before.len(), 2, "{quarantine_before:?}");
    let history_rows = rows_with_history(&db.client).await;
    assert!(
        history_rows > 0,
        "the traffic must change campaigns after jobs were recorded"
    );
    eprintln!("{history_rows} sink rows hold delay bounds a snapshot cannot give");

    // Backfill alone (the runbooks' recovery), as the least-privilege role.
    let out = cli(&url, &db.url, &state, &["backfill"], &[]);
    assert_ok(&out);
    assert_eq!(sink_rows(&db.client).await, sink_before, "backfill alone");
    assert_eq!(quarantine(&url, &db.url, &state), quarantine_before);

    // Teardown, then backfill, as the same role: the admin's publication is kept.
    let out = cli(&url, &db.url, &state, &["teardown", "--yes"], &[]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept publication"),
        "{}",
        text(&out)
    );
    let out = cli(&url, &db.url, &state, &["backfill"], &[]);
    assert_ok(&out);
    assert_eq!(
        sink_rows(&db.client).await,
        sink_before,
        "teardown + backfill"
    );
    assert_eq!(quarantine(&url, &db.url, &state), quarantine_before);

    // And the daemon streams on from the new slot.
    let metrics = format!("127.0.0.1:{}", free_port());
    let metrics_env = [("REPLYTIME_METRICS_ADDR", metrics.as_str())];
    let mut daemon = daemon_as(&url, &db.url, &state, &metrics_env);
    wait_streaming(&db.client, &db.url).await;
    freeze_campaigns(&mut generator);
    write_history(&db.client, &history(&mut generator, 50)).await;
    converge(&db.client, CONVERGE).await;
    // `status` of the running daemon, as that role, sees what the walsender sent.
    // (pg_stat_replication hides it from this role: it asks the daemon.)
    let out = cli(&url, &db.url, &state, &["status", "--json"], &metrics_env);
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert!(status["received_lsn"].is_string(), "{status:#}");
    assert!(daemon.stop().success());

    // The other commands the runbooks print work as that role too.
    let out = cli(&url, &db.url, &state, &["status", "--json"], &[]);
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let from = status["state"]["oldest_event_lsn"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        vec!["replay", "--from-lsn", from.as_str()],
        vec!["rebuild"],
        vec!["check"],
    ] {
        let out = cli(&url, &db.url, &state, &args, &[]);
        assert_ok(&out);
    }
    converge(&db.client, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_the_stream_cannot_apply_is_left_by_a_backfill() {
    let db = database().await;
    db.client
        .batch_execute(r#"ALTER TABLE "Message" REPLICA IDENTITY FULL"#)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut generator = Generator::new(53, HistoryConfig::realistic());
    freeze_campaigns(&mut generator);
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    write_history(&db.client, &history(&mut generator, 100)).await;
    converge(&db.client, CONVERGE).await;

    // A column's type changes mid-stream: the stream stops on it, and stops on it
    // again after the change is reverted (the transaction is in the WAL).
    db.client
        .batch_execute(
            r#"ALTER TABLE "Message" ALTER COLUMN "sentAt" TYPE text USING "sentAt"::text;
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt")
                   VALUES ('typed-in', 'lead-typed', 'sms', 'inbound', '2024-03-01 11:00:00+00');
               ALTER TABLE "Message" ALTER COLUMN "sentAt" TYPE timestamptz USING "sentAt"::timestamptz;"#,
        )
        .await
        .unwrap();
    let log = wait_refused(&mut daemon, "sentAt");
    assert!(log.contains("sentAt"), "{log}");
    let mut again = Daemon::spawn(&db.url, &state, &[]);
    let log = wait_refused(&mut again, "sentAt");
    assert!(
        log.contains("sentAt"),
        "the same error after the revert: {log}"
    );

    // The way out: a backfill (a re-snapshot that keeps the sink's history), then run.
    let out = cli(&db.url, &db.url, &state, &["backfill"], &[]);
    assert_ok(&out);
    converge(&db.client, Duration::from_secs(1)).await;
    let _daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    write_history(&db.client, &history(&mut generator, 50)).await;
    converge(&db.client, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_each_connection_and_problem_with_its_fix() {
    let db = database().await;
    let url = least_privilege(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let healthy = cli(&url, &db.url, &state, &["check"], &[]);
    let healthy_text = String::from_utf8_lossy(&healthy.stdout).to_string();
    eprintln!("replytime check, healthy:\n{healthy_text}");
    assert_ok(&healthy);
    for needle in [
        "admin connection",
        "sink connection",
        "replication connection",
        "as replytime, ",
        "all 12 checks passed",
    ] {
        assert!(healthy_text.contains(needle), "{needle:?}:\n{healthy_text}");
    }
    // TLS shows per connection.
    let tls_url = db.url_as("replytime", None, "sslmode=require");
    let tls = cli(&tls_url, &db.url, &state, &["check"], &[]);
    let tls_text = String::from_utf8_lossy(&tls.stdout).to_string();
    eprintln!("replytime check, sslmode=require:\n{tls_text}");
    assert!(tls_text.contains("encrypted (TLS"), "{tls_text}");

    // Broken: a missing grant, a foreign slot of the configured name.
    db.client
        .batch_execute(r#"REVOKE SELECT ON "Message" FROM replytime"#)
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&slot_for(&db.url)],
        )
        .await
        .unwrap();
    let broken = cli(&url, &db.url, &state, &["check"], &[]);
    let broken_text = String::from_utf8_lossy(&broken.stdout).to_string();
    eprintln!("replytime check, broken:\n{broken_text}");
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    for needle in [
        r#"PROBLEM  SELECT grants"#,
        r#"GRANT SELECT ON "public"."Message" TO "replytime""#,
        "PROBLEM  slot",
        "plugin test_decoding",
        "2 problem(s)",
    ] {
        assert!(broken_text.contains(needle), "{needle:?}:\n{broken_text}");
    }
}
