//! The Postgres sink and its connections against a real server (SPEC sections 2, 5,
//! 6, 8): idempotent upserts, deletes, dedupe, monotonic progress, atomic batches,
//! migrations and their version check, and connection errors that say what happened.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use replytime::change::Timestamp;
use replytime::lsn::Lsn;
use replytime::pgconn::{self, PgConnError};
use replytime::row::{SinkOp, TimingRow, row_id};
use replytime::sink::{SCHEMA_VERSION, Sink, SinkError, WriteStats};
use tokio_postgres::types::PgLsn;

const SLOT: &str = "replytime";

async fn migrated_sink() -> (common::TestDb, Sink) {
    let db = common::fresh_database().await;
    let sink = Sink::connect(&db.url).await.expect("connect the sink");
    sink.migrate().await.expect("migrate the sink");
    (db, sink)
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_pg_text(text).unwrap()
}

fn minimal_row(inbound: &str) -> TimingRow {
    TimingRow::unanswered(
        "client".into(),
        "lead",
        "sms",
        inbound,
        ts("2024-03-01 10:00:00.000001+00"),
    )
}

/// Every column set, with awkward values: text needing quotes, a pre-2000 and a
/// negative-duration timestamp, extreme integers.
fn full_row(inbound: &str) -> TimingRow {
    TimingRow {
        client_id: "client \"Ω\" 'x'".into(),
        lead_id: "lead-Ω-42".into(),
        channel: "linkedin".into(),
        inbound_message_id: inbound.into(),
        inbound_sent_at: ts("2024-03-01 10:00:00.123456+00"),
        setter_response_message_id: Some("out1".into()),
        setter_response_sent_at: Some(ts("2024-03-01 10:01:30.999999+00")),
        setter_sent_by_user_id: Some("user7".into()),
        setter_response_ms: Some(90_876),
        ai_draft_id: Some("draft1".into()),
        ai_response_message_id: Some("ai1".into()),
        ai_response_sent_at: Some(ts("1999-12-31 23:59:59.5+00")),
        ai_response_ms: Some(-765_081_600_624),
        ai_delay_min_seconds: Some(i32::MIN),
        ai_delay_max_seconds: Some(i32::MAX),
        ai_chosen_delay_seconds: Some(314),
        ai_actual_delay_seconds: Some(i64::MIN),
        ai_scheduled_run_at: Some(ts("2024-03-01 10:05:14+00")),
        ai_background_job_id: Some("job1".into()),
        ai_job_started_at: Some(ts("2024-03-01 10:05:14.2+00")),
        ai_job_finished_at: Some(ts("2024-03-01 10:05:15.6+00")),
    }
}

fn upsert(row: TimingRow, lsn: u64) -> (Lsn, SinkOp) {
    let op = SinkOp::Upsert {
        row,
        source_lsn: Lsn(lsn),
    };
    (Lsn(lsn), op)
}

/// A delete later than anything the test stored.
fn delete(inbound: &str) -> (Lsn, SinkOp) {
    delete_at(inbound, u64::MAX >> 1)
}

fn delete_at(inbound: &str, lsn: u64) -> (Lsn, SinkOp) {
    let op = SinkOp::Delete {
        inbound_message_id: inbound.into(),
    };
    (Lsn(lsn), op)
}

fn stats(upserted: u64, deleted: u64, unchanged: u64) -> WriteStats {
    WriteStats {
        upserted,
        deleted,
        unchanged,
    }
}

/// A stored row with its bookkeeping columns.
#[derive(Debug, PartialEq)]
struct Stored {
    row: TimingRow,
    id: uuid::Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    source_lsn: Lsn,
}

const SELECT_ROWS: &str = r#"SELECT "clientId", "leadId", channel, "inboundMessageId", "inboundSentAt",
    "setterResponseMessageId", "setterResponseSentAt", "setterSentByUserId", "setterResponseMs",
    "aiDraftId", "aiResponseMessageId", "aiResponseSentAt", "aiResponseMs",
    "aiDelayMinSeconds", "aiDelayMaxSeconds", "aiChosenDelaySeconds", "aiActualDelaySeconds",
    "aiScheduledRunAt", "aiBackgroundJobId", "aiJobStartedAt", "aiJobFinishedAt",
    id, "createdAt", "updatedAt", "sourceLsn"
    FROM "ResponseTimingEvent" ORDER BY "inboundMessageId""#;

async fn stored_rows(client: &tokio_postgres::Client) -> Vec<Stored> {
    let t = |v: DateTime<Utc>| Timestamp::from_chrono(v);
    let ot = |v: Option<DateTime<Utc>>| v.map(Timestamp::from_chrono);
    let rows = client
        .query(SELECT_ROWS, &[])
        .await
        .expect("read the sink table");
    rows.iter()
        .map(|r| Stored {
            row: TimingRow {
                client_id: r.get(0),
                lead_id: r.get(1),
                channel: r.get(2),
                inbound_message_id: r.get(3),
                inbound_sent_at: t(r.get(4)),
                setter_response_message_id: r.get(5),
                setter_response_sent_at: ot(r.get(6)),
                setter_sent_by_user_id: r.get(7),
                setter_response_ms: r.get(8),
                ai_draft_id: r.get(9),
                ai_response_message_id: r.get(10),
                ai_response_sent_at: ot(r.get(11)),
                ai_response_ms: r.get(12),
                ai_delay_min_seconds: r.get(13),
                ai_delay_max_seconds: r.get(14),
                ai_chosen_delay_seconds: r.get(15),
                ai_actual_delay_seconds: r.get(16),
                ai_scheduled_run_at: ot(r.get(17)),
                ai_background_job_id: r.get(18),
                ai_job_started_at: ot(r.get(19)),
                ai_job_finished_at: ot(r.get(20)),
            },
            id: r.get(21),
            created_at: r.get(22),
            updated_at: r.get(23),
            source_lsn: Lsn(u64::from(r.get::<_, PgLsn>(24))),
        })
        .collect()
}

fn only<'a>(rows: &'a [Stored], inbound: &str) -> &'a Stored {
    rows.iter()
        .find(|s| s.row.inbound_message_id == inbound)
        .unwrap_or_else(|| panic!("no row for {inbound}"))
}

fn inbound_ids(rows: &[Stored]) -> Vec<&str> {
    rows.iter()
        .map(|s| s.row.inbound_message_id.as_str())
        .collect()
}

// ---- writes ----

#[tokio::test]
async fn rows_round_trip_every_column_exactly() {
    let (db, mut sink) = migrated_sink().await;
    let (full, minimal) = (full_row("in-full"), minimal_row("in-min"));
    let written = sink
        .write_batch(
            SLOT,
            &[
                upsert(full.clone(), 0x1_0000_0010),
                upsert(minimal.clone(), 7),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(written, stats(2, 0, 0));
    let rows = stored_rows(&db.client).await;
    assert_eq!(rows.len(), 2);
    let stored = only(&rows, "in-full");
    assert_eq!(stored.row, full);
    assert_eq!(stored.id, row_id("in-full"));
    assert_eq!(stored.source_lsn, Lsn(0x1_0000_0010));
    assert_eq!(stored.created_at, stored.updated_at);
    assert_eq!(only(&rows, "in-min").row, minimal);
    let lsn_text: String = db
        .client
        .query_one(r#"SELECT "sourceLsn"::text FROM "ResponseTimingEvent" WHERE "inboundMessageId" = 'in-full'"#, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lsn_text, "1/10");
}

#[tokio::test]
async fn an_equal_upsert_writes_nothing() {
    let (db, mut sink) = migrated_sink().await;
    let ops = [upsert(full_row("a"), 100), upsert(minimal_row("b"), 100)];
    assert_eq!(
        sink.write_batch(SLOT, &ops, Some(Lsn(100))).await.unwrap(),
        stats(2, 0, 0)
    );
    let before = stored_rows(&db.client).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Same content from a later transaction (a replay, a restart): nothing changes,
    // not even updatedAt or sourceLsn.
    let again = [upsert(full_row("a"), 200), upsert(minimal_row("b"), 200)];
    assert_eq!(
        sink.write_batch(SLOT, &again, Some(Lsn(200)))
            .await
            .unwrap(),
        stats(0, 0, 2)
    );
    assert_eq!(stored_rows(&db.client).await, before);
    assert_eq!(sink.progress(SLOT).await.unwrap(), Some(Lsn(200)));
}

#[tokio::test]
async fn changed_content_updates_the_row_and_its_bookkeeping() {
    let (db, mut sink) = migrated_sink().await;
    sink.write_batch(
        SLOT,
        &[upsert(full_row("a"), 100), upsert(full_row("b"), 100)],
        None,
    )
    .await
    .unwrap();
    let before = stored_rows(&db.client).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    // A response deleted in the source: the fields go back to null.
    let mut changed = full_row("a");
    changed.setter_response_message_id = None;
    changed.setter_response_sent_at = None;
    changed.setter_sent_by_user_id = None;
    changed.setter_response_ms = None;
    let ops = [upsert(changed.clone(), 300), upsert(full_row("b"), 300)];
    assert_eq!(
        sink.write_batch(SLOT, &ops, None).await.unwrap(),
        stats(1, 0, 1)
    );

    let after = stored_rows(&db.client).await;
    let (old, new) = (only(&before, "a"), only(&after, "a"));
    assert_eq!(new.row, changed);
    assert_eq!(new.source_lsn, Lsn(300));
    assert_eq!(new.created_at, old.created_at);
    assert!(
        new.updated_at > old.updated_at,
        "updatedAt must move on a real change"
    );
    assert_eq!(only(&after, "b"), only(&before, "b"));
}

#[tokio::test]
async fn deletes_remove_rows_and_count_only_real_deletes() {
    let (db, mut sink) = migrated_sink().await;
    let ops = [
        upsert(minimal_row("a"), 1),
        upsert(minimal_row("b"), 1),
        upsert(minimal_row("c"), 1),
    ];
    sink.write_batch(SLOT, &ops, None).await.unwrap();
    let written = sink
        .write_batch(
            SLOT,
            &[delete("a"), delete("c"), delete("never-there")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(written, stats(0, 2, 1));
    assert_eq!(inbound_ids(&stored_rows(&db.client).await), vec!["b"]);
}

#[tokio::test]
async fn the_last_op_of_an_inbound_message_in_a_batch_wins() {
    let (db, mut sink) = migrated_sink().await;
    sink.write_batch(SLOT, &[upsert(minimal_row("b"), 1)], None)
        .await
        .unwrap();
    let mut a2 = minimal_row("a");
    a2.client_id = "second".into();
    let ops = [
        upsert(minimal_row("a"), 10),
        upsert(a2.clone(), 11),
        delete("b"),
        upsert(minimal_row("b"), 12),
        upsert(minimal_row("c"), 13),
        delete("c"),
    ];
    assert_eq!(
        sink.write_batch(SLOT, &ops, None).await.unwrap(),
        stats(1, 0, 2)
    );
    let rows = stored_rows(&db.client).await;
    assert_eq!(inbound_ids(&rows), vec!["a", "b"]);
    assert_eq!(only(&rows, "a").row, a2);
    assert_eq!(only(&rows, "a").source_lsn, Lsn(11));
    assert_eq!(only(&rows, "b").source_lsn, Lsn(1), "b was unchanged");
}

#[tokio::test]
async fn batches_larger_than_one_statement_are_written_whole() {
    let (db, mut sink) = migrated_sink().await;
    let ops: Vec<(Lsn, SinkOp)> = (0..4_500)
        .map(|i| upsert(minimal_row(&format!("m{i:05}")), 5))
        .collect();
    assert_eq!(
        sink.write_batch(SLOT, &ops, Some(Lsn(5))).await.unwrap(),
        stats(4_500, 0, 0)
    );
    let deletes: Vec<(Lsn, SinkOp)> = (0..4_500)
        .step_by(2)
        .map(|i| delete(&format!("m{i:05}")))
        .collect();
    assert_eq!(
        sink.write_batch(SLOT, &deletes, None).await.unwrap(),
        stats(0, 2_250, 0)
    );
    let count: i64 = db
        .client
        .query_one(r#"SELECT count(*) FROM "ResponseTimingEvent""#, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2_250);
}

#[tokio::test]
async fn progress_is_per_slot_and_never_moves_backwards() {
    let (_db, mut sink) = migrated_sink().await;
    assert_eq!(sink.progress(SLOT).await.unwrap(), None);
    sink.write_batch(SLOT, &[], Some(Lsn(0x200))).await.unwrap();
    assert_eq!(sink.progress(SLOT).await.unwrap(), Some(Lsn(0x200)));
    sink.write_batch(SLOT, &[upsert(minimal_row("a"), 0x100)], Some(Lsn(0x100)))
        .await
        .unwrap();
    assert_eq!(
        sink.progress(SLOT).await.unwrap(),
        Some(Lsn(0x200)),
        "progress moved backwards"
    );
    sink.write_batch(SLOT, &[], Some(Lsn(0x3_0000_0000)))
        .await
        .unwrap();
    assert_eq!(sink.progress(SLOT).await.unwrap(), Some(Lsn(0x3_0000_0000)));
    sink.write_batch(SLOT, &[upsert(minimal_row("b"), 1)], None)
        .await
        .unwrap();
    assert_eq!(sink.progress(SLOT).await.unwrap(), Some(Lsn(0x3_0000_0000)));
    assert_eq!(sink.progress("other-shard").await.unwrap(), None);
}

#[tokio::test]
async fn a_failed_batch_writes_neither_rows_nor_progress() {
    let (db, mut sink) = migrated_sink().await;
    sink.write_batch(SLOT, &[upsert(minimal_row("a"), 1)], Some(Lsn(1)))
        .await
        .unwrap();
    let mut bad = minimal_row("z");
    bad.client_id = "nul\0byte".into(); // text cannot hold NUL: the server refuses it
    let ops = [delete("a"), upsert(minimal_row("b"), 2), upsert(bad, 2)];
    let err = sink
        .write_batch(SLOT, &ops, Some(Lsn(2)))
        .await
        .unwrap_err();
    assert!(!retryable(&err), "bad data is not transient: {err}");
    assert!(err.to_string().contains("upsert of 2 rows"), "{err}");
    assert_eq!(inbound_ids(&stored_rows(&db.client).await), vec!["a"]);
    assert_eq!(sink.progress(SLOT).await.unwrap(), Some(Lsn(1)));
    // The connection is still usable after the rollback.
    sink.write_batch(SLOT, &[upsert(minimal_row("b"), 3)], Some(Lsn(3)))
        .await
        .unwrap();
    assert_eq!(inbound_ids(&stored_rows(&db.client).await), vec!["a", "b"]);
}

#[tokio::test]
async fn a_lost_connection_is_retryable() {
    let (db, mut sink) = migrated_sink().await;
    sink.write_batch(SLOT, &[upsert(minimal_row("a"), 1)], None)
        .await
        .unwrap();
    db.client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'replytime-sink'",
            &[],
        )
        .await
        .unwrap();
    let err = sink
        .write_batch(SLOT, &[upsert(minimal_row("b"), 2)], None)
        .await
        .unwrap_err();
    assert!(
        retryable(&err),
        "a terminated connection must be retryable: {err:?}"
    );
}

// ---- schema ----

#[tokio::test]
async fn migrate_is_idempotent_and_records_the_version() {
    let (db, sink) = migrated_sink().await;
    sink.migrate().await.expect("second migrate");
    let other = Sink::connect(&db.url).await.unwrap();
    let (a, b) = tokio::join!(sink.migrate(), other.migrate());
    a.expect("concurrent migrate");
    b.expect("concurrent migrate");
    let version: i32 = db
        .client
        .query_one(
            "SELECT version FROM replytime_schema_version WHERE component = 'sink'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);
    let indexes: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'ResponseTimingEvent'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        indexes, 6,
        "primary key, unique inboundMessageId and the four indexes"
    );
}

#[tokio::test]
async fn another_schema_version_is_a_clear_fatal_error() {
    let (db, sink) = migrated_sink().await;
    let newer = SCHEMA_VERSION + 1;
    db.client
        .execute(
            "UPDATE replytime_schema_version SET version = $1 WHERE component = 'sink'",
            &[&newer],
        )
        .await
        .unwrap();
    let err = sink.migrate().await.unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::SchemaVersion { found, expected } if found == newer && expected == SCHEMA_VERSION
        ),
        "{err:?}"
    );
    assert!(!retryable(&err));
    let text = err.to_string();
    for part in [
        format!("version {newer}"),
        format!("expects version {SCHEMA_VERSION}"),
        "migration".to_string(),
        "replytime rebuild".to_string(),
    ] {
        assert!(text.contains(&part), "{part:?} missing from: {text}");
    }
}

#[tokio::test]
async fn a_sink_of_schema_version_1_is_migrated_to_the_writers_registry() {
    let (db, sink) = migrated_sink().await;
    db.client
        .batch_execute(
            "DROP TABLE replytime_writers; \
             UPDATE replytime_schema_version SET version = 1 WHERE component = 'sink'",
        )
        .await
        .unwrap();
    sink.migrate()
        .await
        .expect("version 1 is brought up to date");
    let (version, registry): (i32, bool) = {
        let row = db
            .client
            .query_one(
                "SELECT version, to_regclass('replytime_writers') IS NOT NULL \
                 FROM replytime_schema_version WHERE component = 'sink'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(version, SCHEMA_VERSION);
    assert!(registry);
}

#[tokio::test]
async fn a_table_of_another_shape_is_a_clear_fatal_error() {
    let db = common::fresh_database().await;
    db.client
        .batch_execute(
            r#"CREATE TABLE "ResponseTimingEvent" (id uuid PRIMARY KEY, "clientId" text NOT NULL,
               "leadId" text NOT NULL, channel text NOT NULL, "inboundMessageId" text NOT NULL,
               "inboundSentAt" timestamp NOT NULL)"#,
        )
        .await
        .unwrap();
    let sink = Sink::connect(&db.url).await.unwrap();
    let err = sink.migrate().await.unwrap_err();
    assert!(matches!(err, SinkError::Schema { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("\"sourceLsn\" (pg_lsn) is missing"), "{text}");
    assert!(
        text.contains("\"inboundSentAt\" is timestamp without time zone"),
        "{text}"
    );
    // Nothing was left half-made: the failed migration rolled back.
    let version_table: bool = db
        .client
        .query_one(
            "SELECT to_regclass('replytime_schema_version') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!version_table);
}

#[tokio::test]
async fn progress_of_a_sink_never_migrated_is_none() {
    let db = common::fresh_database().await;
    let sink = Sink::connect(&db.url).await.unwrap();
    assert_eq!(sink.progress(SLOT).await.unwrap(), None);
}

// ---- connections ----

fn assert_names(err: &dyn std::fmt::Display, parts: &[&str], secret: Option<&str>) {
    let text = err.to_string();
    for part in parts {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    if let Some(secret) = secret {
        assert!(!text.contains(secret), "the password leaked: {text}");
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://someone:hunter2@127.0.0.1:{port}/db");
    let err = pgconn::connect(&url, "test").await.unwrap_err();
    assert!(matches!(err, PgConnError::Unreachable { .. }), "{err:?}");
    assert!(retryable(&err));
    assert_names(
        &err,
        &[&format!("127.0.0.1:{port}"), "someone", "cannot reach"],
        Some("hunter2"),
    );

    let err = Sink::connect(&url)
        .await
        .err()
        .expect("the sink cannot connect");
    assert!(retryable(&err));
    assert_names(&err, &["sink connection", "cannot reach"], Some("hunter2"));
}

#[tokio::test]
async fn an_unknown_host_is_unreachable() {
    let err = pgconn::connect("postgres://u:pw@no-such-host.invalid:5432/db", "test")
        .await
        .unwrap_err();
    assert!(matches!(err, PgConnError::Unreachable { .. }), "{err:?}");
    assert_names(&err, &["no-such-host.invalid:5432"], None);
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_failure() {
    let db = common::fresh_database().await;
    let user = db.create_password_user("right-horse").await;

    let client = pgconn::connect(&db.url_as(&user, Some("right-horse"), ""), "test")
        .await
        .expect("the right password connects");
    client.simple_query("SELECT 1").await.unwrap();

    let port = common::cluster().port;
    let err = pgconn::connect(&db.url_as(&user, Some("wrong-staple"), ""), "test")
        .await
        .unwrap_err();
    assert!(matches!(err, PgConnError::AuthFailed { .. }), "{err:?}");
    assert!(!retryable(&err));
    assert_names(
        &err,
        &[
            "authentication failed",
            &user,
            &format!("127.0.0.1:{port}"),
            "28P01",
        ],
        Some("wrong-staple"),
    );

    let err = pgconn::connect(&db.url_as(&user, None, ""), "test")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PgConnError::AuthFailed { .. }),
        "no password: {err:?}"
    );
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let cluster = common::cluster();
    let err = pgconn::connect(&cluster.url("no_such_db"), "test")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PgConnError::DatabaseMissing { .. }),
        "{err:?}"
    );
    assert!(!retryable(&err));
    assert_names(
        &err,
        &[
            "\"no_such_db\" does not exist",
            &format!("127.0.0.1:{}", cluster.port),
        ],
        None,
    );
}

#[tokio::test]
async fn a_bad_sslmode_is_an_invalid_url() {
    let err = pgconn::connect("postgres://u:secret@127.0.0.1/db?sslmode=maybe", "test")
        .await
        .unwrap_err();
    assert!(matches!(err, PgConnError::InvalidUrl { .. }), "{err:?}");
    assert_names(
        &err,
        &["sslmode \"maybe\"", "u:***@127.0.0.1"],
        Some("secret"),
    );
}

/// Whether the connection of `client` is encrypted.
async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sslmodes_encrypt_and_verify_as_libpq_does() {
    let db = common::fresh_database().await;
    let Some(tls) = &common::cluster().tls else {
        eprintln!("skipped: the test cluster has no TLS (openssl missing)");
        return;
    };
    let (ca, other_ca) = (tls.ca_cert.display(), tls.other_ca_cert.display());
    let connect = |params: String| {
        let url = db.url_as("postgres", None, &params);
        async move { pgconn::connect(&url, "test").await }
    };

    assert!(!uses_tls(&connect("sslmode=disable".into()).await.unwrap()).await);
    assert!(
        uses_tls(&connect(String::new()).await.unwrap()).await,
        "prefer uses TLS when offered"
    );
    assert!(uses_tls(&connect("sslmode=require".into()).await.unwrap()).await);
    let verify_ca = connect(format!("sslmode=verify-ca&sslrootcert={ca}")).await;
    assert!(uses_tls(&verify_ca.expect("verify-ca ignores the host name")).await);

    // The certificate names localhost, not 127.0.0.1.
    let err = connect(format!("sslmode=verify-full&sslrootcert={ca}"))
        .await
        .unwrap_err();
    assert!(matches!(err, PgConnError::Tls { .. }), "{err:?}");
    assert!(!retryable(&err));
    assert_names(
        &err,
        &[
            "TLS failure",
            "sslmode=verify-full",
            "127.0.0.1",
            "not valid for name",
        ],
        None,
    );
    let by_name = format!(
        "postgres://postgres@localhost:{}/{}?sslmode=verify-full&sslrootcert={ca}",
        common::cluster().port,
        db.name
    );
    let client = pgconn::connect(&by_name, "test")
        .await
        .expect("verify-full by the certificate's name");
    assert!(uses_tls(&client).await);

    let err = connect(format!("sslmode=verify-ca&sslrootcert={other_ca}"))
        .await
        .unwrap_err();
    assert!(matches!(err, PgConnError::Tls { .. }), "{err:?}");
    assert_names(&err, &["UnknownIssuer"], None);

    let err = connect("sslmode=require&sslrootcert=/nonexistent/ca.pem".into())
        .await
        .unwrap_err();
    assert!(matches!(err, PgConnError::TlsSetup { .. }), "{err:?}");
    assert_names(&err, &["/nonexistent/ca.pem"], None);
}

#[tokio::test]
async fn the_sink_writes_over_verified_tls() {
    let db = common::fresh_database().await;
    let Some(tls) = &common::cluster().tls else {
        eprintln!("skipped: the test cluster has no TLS (openssl missing)");
        return;
    };
    let url = format!(
        "postgres://postgres@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        common::cluster().port,
        db.name,
        tls.ca_cert.display()
    );
    let mut sink = Sink::connect(&url).await.unwrap();
    sink.migrate().await.unwrap();
    sink.write_batch(SLOT, &[upsert(full_row("a"), 9)], Some(Lsn(9)))
        .await
        .unwrap();
    assert_eq!(sink.progress(SLOT).await.unwrap(), Some(Lsn(9)));
    assert!(uses_tls(sink.client()).await);
}

#[tokio::test]
async fn commits_are_durable_even_where_synchronous_commit_is_off() {
    let db = common::fresh_database().await;
    db.client
        .batch_execute(&format!(
            r#"ALTER DATABASE "{}" SET synchronous_commit = off"#,
            db.name
        ))
        .await
        .unwrap();
    let sink = Sink::connect(&db.url).await.unwrap();
    let setting: String = sink
        .client()
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, "on");
}

/// Sequential scans of the sink table so far, as the server's statistics count them
/// once `sink`'s session has flushed its own.
async fn sink_seq_scans(db: &common::TestDb, sink: &Sink) -> i64 {
    sink.client()
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    db.client
        .query_one(
            r#"SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'ResponseTimingEvent'"#,
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn deletes_find_rows_by_index_after_the_table_grew_from_empty() {
    // Never analyzed (autovacuum has not got to it yet), a table of 20,000 rows
    // looks small enough to Postgres to delete 100 of them by scanning it whole;
    // and a prepared statement keeps the plan it made while the table was empty.
    let (db, mut sink) = migrated_sink().await;
    for i in 0..10 {
        let ops = [delete(&format!("absent-{i}"))];
        sink.write_batch(SLOT, &ops, None).await.unwrap();
    }
    let rows: Vec<(Lsn, SinkOp)> = (0..20_000)
        .map(|i| upsert(minimal_row(&format!("m{i}")), 1))
        .collect();
    sink.write_batch(SLOT, &rows, None).await.unwrap();
    let before = sink_seq_scans(&db, &sink).await;

    let mut deleted = 0;
    for batch in 0..5 {
        let ops: Vec<(Lsn, SinkOp)> = (0..100)
            .map(|i| delete(&format!("m{}", batch * 100 + i)))
            .collect();
        deleted += sink.write_batch(SLOT, &ops, None).await.unwrap().deleted;
    }

    assert_eq!(deleted, 500);
    assert_eq!(
        sink_seq_scans(&db, &sink).await,
        before,
        "deletes scanned the table"
    );
}

/// What the daemon's error policy says about a sink error.
fn retryable(err: &(dyn std::error::Error + 'static)) -> bool {
    replytime::pipeline::policy::classify(err) == replytime::pipeline::policy::Next::Retry
}

// ---- rows that move between shards (SPEC 9) ----

fn on_lead(inbound: &str, lead: &str) -> TimingRow {
    TimingRow {
        lead_id: lead.into(),
        ..minimal_row(inbound)
    }
}

async fn stored_lead(db: &common::TestDb, inbound: &str) -> Option<String> {
    db.client
        .query_opt(
            r#"SELECT "leadId" FROM "ResponseTimingEvent" WHERE "inboundMessageId" = $1"#,
            &[&inbound],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test]
async fn writes_settle_by_lsn_whichever_shard_delivers_first() {
    let (db, mut old_shard) = migrated_sink().await;
    let mut new_shard = Sink::connect(&db.url).await.unwrap();
    for (first, second) in [("new", "old"), ("old", "new")] {
        let id = format!("moved-{first}-first");
        old_shard
            .write_batch(SLOT, &[upsert(on_lead(&id, "a"), 10)], None)
            .await
            .unwrap();
        // The merge commits at 20: the old shard deletes, the new one upserts.
        for who in [first, second] {
            let (sink, op) = match who {
                "new" => (&mut new_shard, upsert(on_lead(&id, "b"), 20)),
                _ => (&mut old_shard, delete_at(&id, 20)),
            };
            sink.write_batch(SLOT, &[op], None).await.unwrap();
        }
        assert_eq!(stored_lead(&db, &id).await.as_deref(), Some("b"), "{id}");
        // A late upsert of the old lead (before the merge) changes nothing.
        old_shard
            .write_batch(SLOT, &[upsert(on_lead(&id, "a"), 15)], None)
            .await
            .unwrap();
        assert_eq!(stored_lead(&db, &id).await.as_deref(), Some("b"), "{id}");
    }
    // A later delete still removes the row.
    new_shard
        .write_batch(SLOT, &[delete_at("moved-new-first", 21)], None)
        .await
        .unwrap();
    assert_eq!(stored_lead(&db, "moved-new-first").await, None);
}

#[tokio::test]
async fn a_repairing_sink_writes_regardless_of_lsn_but_only_its_shards_rows() {
    let (db, mut sink) = migrated_sink().await;
    let shard: replytime::shard::Shard = "0/2".parse().unwrap();
    let client = &db.client;
    let lead_of = |k: i32| async move {
        let lead: String = client
            .query_one(
                "SELECT id FROM (SELECT 'lead' || g AS id FROM generate_series(1, 100) g) c \
                 WHERE (hashtext(id) & 2147483647) % 2 = $1 LIMIT 1",
                &[&k],
            )
            .await
            .unwrap()
            .get(0);
        lead
    };
    let (mine, theirs) = (lead_of(0).await, lead_of(1).await);
    let ops = [
        upsert(on_lead("m", &mine), 50),
        upsert(on_lead("t", &theirs), 50),
    ];
    sink.write_batch(SLOT, &ops, None).await.unwrap();
    let mut repair = Sink::connect(&db.url)
        .await
        .unwrap()
        .with_shard(Some(shard))
        .repairing();
    let older = [
        upsert(
            TimingRow {
                client_id: "repaired".into(),
                ..on_lead("m", &mine)
            },
            7,
        ),
        delete_at("t", 7),
    ];
    repair.write_batch(SLOT, &older, None).await.unwrap();
    let rows = stored_rows(&db.client).await;
    assert_eq!(rows[0].row.client_id, "repaired", "regardless of its LSN");
    assert_eq!(
        inbound_ids(&rows),
        vec!["m", "t"],
        "never another shard's row"
    );
}
