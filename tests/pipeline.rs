//! The daemon end to end against a real PostgreSQL (SPEC sections 1, 2, 4, 5, 8):
//! the real binary, a real server, a fresh database per test.

mod common;
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use replytime::change::Timestamp;
use replytime::workload::{Generator, HistoryConfig};
use support::*;

const CONVERGE: Duration = Duration::from_secs(60);

async fn database() -> common::TestDb {
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    db.client.batch_execute(ORACLE_SUPPORT_SQL).await.unwrap();
    db
}

fn ts(client_text: &str) -> Timestamp {
    Timestamp::parse_pg_text(client_text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn scripted_conversation_produces_exactly_the_expected_rows() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let _daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    db.client
        .batch_execute(
            r#"
            INSERT INTO "EmailCampaign" (id, "aiAutoSendDelayMinSeconds", "aiAutoSendDelayMaxSeconds") VALUES ('camp', 200, 300);
            INSERT INTO "Lead" (id, "clientId", "emailCampaignId") VALUES ('lead', 'client', 'camp');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt", body)
                VALUES ('in1', 'lead', 'sms', 'inbound', '2024-03-01 10:00:00.000000+00', 'hi, is this available?');
            INSERT INTO "AIDraft" (id, "leadId", "triggerMessageId", channel, "responseDisposition")
                VALUES ('draft1', 'lead', 'in1', 'sms', 'AUTO_SENT');
            INSERT INTO "BackgroundJob" (id, type, "leadId", "messageId", "draftId", "runAt", "createdAt")
                VALUES ('job1', 'AI_AUTO_SEND_DELAYED', 'lead', 'in1', 'draft1', '2024-03-01 10:04:05+00', '2024-03-01 10:00:01+00');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "sentAt", body)
                VALUES ('out1', 'lead', 'sms', 'outbound', 'setter', 'user7', '2024-03-01 10:01:30.123456+00', 'yes!');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "aiDraftId", "sentAt", body)
                VALUES ('ai1', 'lead', 'sms', 'outbound', 'ai', 'draft1', '2024-03-01 10:04:06.5+00', 'auto reply');
            UPDATE "BackgroundJob" SET "startedAt" = '2024-03-01 10:04:05.2+00', "finishedAt" = '2024-03-01 10:04:06.6+00' WHERE id = 'job1';
            "#,
        )
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
    let rows = sink_rows(&db.client).await;
    assert_eq!(rows.len(), 1);
    let row = &rows["in1"];
    assert_eq!(row.client_id, "client");
    assert_eq!(row.lead_id, "lead");
    assert_eq!(row.channel, "sms");
    assert_eq!(row.inbound_sent_at, ts("2024-03-01 10:00:00+00"));
    assert_eq!(row.setter_response_message_id.as_deref(), Some("out1"));
    assert_eq!(row.setter_sent_by_user_id.as_deref(), Some("user7"));
    assert_eq!(row.setter_response_ms, Some(90_123));
    assert_eq!(row.ai_draft_id.as_deref(), Some("draft1"));
    assert_eq!(row.ai_response_message_id.as_deref(), Some("ai1"));
    assert_eq!(row.ai_response_ms, Some(246_500));
    assert_eq!(row.ai_actual_delay_seconds, Some(246));
    assert_eq!(row.ai_delay_min_seconds, Some(200));
    assert_eq!(row.ai_delay_max_seconds, Some(300));
    assert_eq!(
        row.ai_chosen_delay_seconds,
        Some(replytime::engine::delay::chosen_delay("in1", 200, 300))
    );
    assert_eq!(row.ai_scheduled_run_at, Some(ts("2024-03-01 10:04:05+00")));
    assert_eq!(row.ai_background_job_id.as_deref(), Some("job1"));
    assert_eq!(row.ai_job_started_at, Some(ts("2024-03-01 10:04:05.2+00")));
    assert_eq!(row.ai_job_finished_at, Some(ts("2024-03-01 10:04:06.6+00")));
    let id: uuid::Uuid = db
        .client
        .query_one(
            r#"SELECT id FROM "ResponseTimingEvent" WHERE "inboundMessageId" = 'in1'"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, replytime::row::row_id("in1"));
}

/// A `"Message"` table whose ids are not unique (no primary key, REPLICA IDENTITY
/// FULL): an INSERT no longer proves its id new, so the daemon keeps the reads
/// before inserts (engine `fresh.rs`) and says why.
#[tokio::test(flavor = "multi_thread")]
async fn ids_without_a_unique_index_keep_the_reads_before_inserts() {
    let db = database().await;
    db.client
        .batch_execute(
            r#"ALTER TABLE "Message" REPLICA IDENTITY FULL;
               ALTER TABLE "Message" DROP CONSTRAINT "Message_pkey" CASCADE;"#,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    wait_streaming(&db.client, &db.url).await;
    db.client
        .batch_execute(
            r#"
            INSERT INTO "Lead" (id, "clientId") VALUES ('lead', 'client');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt")
                VALUES ('in1', 'lead', 'sms', 'inbound', '2024-03-01 10:00:00+00');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "sentAt")
                VALUES ('out1', 'lead', 'sms', 'outbound', 'setter', 'user7', '2024-03-01 10:01:00+00');
            "#,
        )
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
    let rows = sink_rows(&db.client).await;
    assert_eq!(
        rows["in1"].setter_response_message_id.as_deref(),
        Some("out1")
    );
    assert!(
        daemon
            .log_text()
            .contains("no unique index on the id column alone"),
        "the daemon says why inserts are looked up"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn random_workloads_through_the_real_server_equal_the_oracle() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let _daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    wait_streaming(&db.client, &db.url).await;
    // The adversarial generator (few leads, every edge case), in three rounds with
    // the sink compared to the oracle after each.
    let mut generator = Generator::new(1, HistoryConfig::default());
    for _round in 0..3 {
        let txns: Vec<_> = (0..150).map(|_| generator.next_transaction()).collect();
        write_history(&db.client, &txns).await;
        converge(&db.client, CONVERGE).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_under_load_converges() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut generator = Generator::new(42, HistoryConfig::realistic());
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    for round in 0..12u64 {
        let txns: Vec<_> = (0..40).map(|_| generator.next_transaction()).collect();
        let writer = {
            let url = db.url.clone();
            tokio::spawn(async move {
                let client = common::connect(&url).await;
                write_history(&client, &txns).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(150 + (round * 137) % 700)).await;
        daemon.kill9();
        writer.await.unwrap();
        daemon = Daemon::spawn(&db.url, &state, &[]);
    }
    converge(&db.client, CONVERGE).await;
    let dupes: i64 = db
        .client
        .query_one(
            r#"SELECT count(*) - count(DISTINCT "inboundMessageId") FROM "ResponseTimingEvent""#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dupes, 0);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_points_lose_nothing() {
    for point in [
        "after_state_write:3",
        "after_sink_commit:2",
        "inside_initial_load:1",
    ] {
        let db = database().await;
        let mut generator = existing_history(&db.client, 7, 30).await;
        freeze_campaigns(&mut generator);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut faulty = Daemon::spawn(
            &db.url,
            &state,
            &[
                ("REPLYTIME_FAULT", point),
                ("REPLYTIME_LOAD_BATCH_ROWS", "7"),
            ],
        );
        if !point.starts_with("inside_initial_load") {
            wait_streaming(&db.client, &db.url).await;
        }
        let after: Vec<_> = (0..30).map(|_| generator.next_transaction()).collect();
        write_history(&db.client, &after).await;
        // Transactions that arrive together commit as one group: keep writing, one
        // transaction at a time, until the fault point has been reached often enough.
        let deadline = Instant::now() + Duration::from_secs(60);
        while faulty.exited().is_none() && Instant::now() < deadline {
            write_history(&db.client, &[generator.next_transaction()]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = wait_exit(&mut faulty.child, Duration::from_secs(5));
        assert!(
            !status.success(),
            "{point}: the fault point aborts the process"
        );
        let confirmed = confirmed_lsn(&db.client, &slot_for(&db.url)).await;
        let _daemon = Daemon::spawn(&db.url, &state, &[]);
        converge(&db.client, CONVERGE).await;
        eprintln!("{point}: recovered (slot had confirmed {confirmed:?})");
    }
}

/// A transaction larger than a chunk is applied chunk by chunk, each a RocksDB
/// commit. Killed after a chunk of deletes and moves was committed, the daemon
/// streams the transaction again and applies it over its own first chunk, where
/// the deletes find nothing and the moves nothing to move: the anchors they changed
/// must still leave the sink or change in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_chunks_of_a_large_transaction_loses_nothing() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    streamed_history(&db, &state, 5, 300).await;

    let chunked = [("REPLYTIME_CHUNK_CHANGES", "20")];
    let faulty_env = [chunked[0], ("REPLYTIME_FAULT", "between_chunks")];
    let mut faulty = Daemon::spawn(&db.url, &state, &faulty_env);
    wait_streaming(&db.client, &db.url).await;
    db.client
        .batch_execute(
            r#"BEGIN;
               DELETE FROM "Message" WHERE id IN (SELECT id FROM "Message"
                 WHERE direction = 'outbound' ORDER BY id LIMIT 15);
               UPDATE "Message" SET "sentAt" = "sentAt" - interval '3 days'
                 WHERE id IN (SELECT id FROM "Message" WHERE direction = 'outbound'
                              ORDER BY id DESC LIMIT 10);
               COMMIT;"#,
        )
        .await
        .unwrap();
    let status = wait_exit(&mut faulty.child, Duration::from_secs(30));
    assert!(!status.success(), "the fault point aborts the daemon");

    let _daemon = Daemon::spawn(&db.url, &state, &chunked);
    converge(&db.client, CONVERGE).await;
}

/// A TRUNCATE deletes its table a page of rows at a time, each page a RocksDB
/// commit (memory stays bounded whatever the table holds): killed after the first
/// page, the daemon applies the transaction again over what it deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_inside_a_truncate_loses_nothing() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    streamed_history(&db, &state, 9, 1_500).await;
    let messages: i64 = db
        .client
        .query_one(r#"SELECT count(*) FROM "Message""#, &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        messages > 2 * 1024,
        "{messages} messages: more than two pages"
    );

    let mut faulty = Daemon::spawn(&db.url, &state, &[("REPLYTIME_FAULT", "between_chunks")]);
    wait_streaming(&db.client, &db.url).await;
    db.client
        .batch_execute(
            r#"BEGIN;
               TRUNCATE "Message";
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt")
                 SELECT 'after-' || id, id, 'sms', 'inbound', now() FROM "Lead" LIMIT 5;
               COMMIT;"#,
        )
        .await
        .unwrap();
    let status = wait_exit(&mut faulty.child, Duration::from_secs(30));
    assert!(!status.success(), "the fault point aborts the daemon");

    let _daemon = Daemon::spawn(&db.url, &state, &[]);
    converge(&db.client, CONVERGE).await;
}

/// The daemon's sink task delivers while an initial load derives. A load that dies
/// after that starts over at a new snapshot: a row the first attempt delivered whose
/// inbound message is deleted before the second attempt must not stay in the sink.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_load_that_reached_the_sink_leaves_no_stale_rows() {
    let db = database().await;
    existing_history(&db.client, 11, 40).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut faulty = Daemon::spawn(&db.url, &state, &[("REPLYTIME_FAULT", "before_load_done")]);
    let status = wait_exit(&mut faulty.child, Duration::from_secs(60));
    assert!(!status.success(), "the fault point aborts the load");

    // Whatever the sink task delivered before the abort: make sure the first
    // attempt's row for one anchor is there, then delete its inbound message.
    let oracle = oracle_rows(&db.client).await;
    let (gone, row) = oracle.iter().next().expect("the history has anchors");
    db.client
        .execute(
            r#"INSERT INTO "ResponseTimingEvent"
                   (id, "clientId", "leadId", channel, "inboundMessageId", "inboundSentAt", "sourceLsn")
               VALUES (gen_random_uuid(), $1, $2, $3, $4, now(), '0/1')
               ON CONFLICT ("inboundMessageId") DO NOTHING"#,
            &[&row.client_id, &row.lead_id, &row.channel, gone],
        )
        .await
        .unwrap();
    db.client
        .execute(r#"DELETE FROM "Message" WHERE id = $1"#, &[gone])
        .await
        .unwrap();

    let daemon = Daemon::spawn(&db.url, &state, &[]);
    converge(&db.client, CONVERGE).await;
    assert!(
        !sink_rows(&db.client).await.contains_key(gone),
        "the deleted inbound message's row is gone"
    );
    assert!(
        daemon
            .log_text()
            .contains("deleted sink rows of an interrupted initial load"),
        "{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_the_initial_load_stops_cleanly_and_the_next_start_loads_again() {
    let db = database().await;
    existing_history(&db.client, 12, 1500).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // One row per copy page: the load takes seconds, with an await per row.
    let mut daemon = Daemon::spawn(&db.url, &state, &[("REPLYTIME_LOAD_BATCH_ROWS", "1")]);
    eventually(Duration::from_secs(30), "the load to start copying", || {
        let log = daemon.log_text();
        async move { log.contains("copying tables") }
    })
    .await;
    let status = daemon.stop();
    let log = daemon.log_text();
    assert!(status.success(), "SIGTERM during the load: {status}\n{log}");
    assert!(
        log.contains("stopped before streaming began"),
        "the load was still running when the signal came\n{log}"
    );

    let _daemon = Daemon::spawn(&db.url, &state, &[]);
    converge(&db.client, CONVERGE).await;
}

async fn sink_stamp(c: &tokio_postgres::Client) -> tokio_postgres::Row {
    c.query_one(
        r#"SELECT coalesce(max("updatedAt")::text, ''), count(*) FROM "ResponseTimingEvent""#,
        &[],
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_restart_resumes_without_re_emitting_and_a_slot_ahead_is_refused() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut generator = Generator::new(9, HistoryConfig::realistic());
    let txns: Vec<_> = (0..50).map(|_| generator.next_transaction()).collect();
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    write_history(&db.client, &txns).await;
    converge(&db.client, CONVERGE).await;
    let target = current_lsn(&db.client).await;
    eventually(CONVERGE, "confirmation of the current LSN", || async {
        confirmed_lsn(&db.client, &slot_for(&db.url))
            .await
            .is_some_and(|c| c >= target)
    })
    .await;
    assert!(
        daemon.stop().success(),
        "clean stop exits 0:\n{}",
        daemon.log_text()
    );
    let before = sink_stamp(&db.client).await;
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sink_stamp(&db.client).await;
    assert_eq!(
        before.get::<_, String>(0),
        after.get::<_, String>(0),
        "nothing re-emitted"
    );
    assert_eq!(before.get::<_, i64>(1), after.get::<_, i64>(1));
    assert!(
        !daemon.log_text().contains("initial load"),
        "no second initial load"
    );
    assert!(daemon.stop().success());

    // Someone advances the slot past replytime's durable state while it is stopped.
    db.client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS unrelated (x int); INSERT INTO unrelated VALUES (1)",
        )
        .await
        .unwrap();
    // The advance fails while the stopped daemon's walsender still holds the slot,
    // and can succeed without moving it: retry until it moved.
    let stopped_at = confirmed_lsn(&db.client, &slot_for(&db.url)).await;
    eventually(CONVERGE, "advancing the released slot", || async {
        let advanced = db
            .client
            .batch_execute(&format!(
                "SELECT pg_replication_slot_advance('{}', pg_current_wal_insert_lsn())",
                slot_for(&db.url)
            ))
            .await
            .is_ok();
        advanced && confirmed_lsn(&db.client, &slot_for(&db.url)).await > stopped_at
    })
    .await;
    let advanced = confirmed_lsn(&db.client, &slot_for(&db.url)).await;
    eprintln!("slot advanced to {advanced:?}");
    let mut refused = Daemon::spawn(&db.url, &state, &[]);
    let status = stopped_by_definite_error(&mut refused, Duration::from_secs(30));
    assert!(!status.success());
    let log = refused.log_text();
    assert!(
        log.contains("ahead of replytime's durable high-water mark"),
        "{log}"
    );
    assert!(
        log.contains("backfill"),
        "names the recovery command: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_database_with_quiet_published_tables_keeps_advancing_the_slot() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let _daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    eventually(CONVERGE, "the slot", || async {
        confirmed_lsn(&db.client, &slot_for(&db.url))
            .await
            .is_some()
    })
    .await;
    db.client
        .batch_execute("CREATE TABLE noise (id serial primary key, payload text)")
        .await
        .unwrap();
    let start = confirmed_lsn(&db.client, &slot_for(&db.url)).await.unwrap();
    for _ in 0..20 {
        db.client
            .batch_execute(
                "INSERT INTO noise (payload) SELECT repeat('x', 200) FROM generate_series(1, 200)",
            )
            .await
            .unwrap();
    }
    let target = current_lsn(&db.client).await;
    assert!(target > start);
    eventually(
        Duration::from_secs(30),
        "confirmed_flush_lsn to pass the noise",
        || async {
            confirmed_lsn(&db.client, &slot_for(&db.url))
                .await
                .is_some_and(|c| c >= target)
        },
    )
    .await;
}

/// A daemon streaming with lead `L` delivered, then the sink locked by the returned
/// session and a reply pair committed behind it: the pending work, whose commit
/// record lies after the returned LSN.
async fn pending_behind_a_blocked_sink(
    db: &common::TestDb,
    state: &std::path::Path,
) -> (Daemon, tokio_postgres::Client, replytime::lsn::Lsn) {
    let daemon = Daemon::spawn(&db.url, state, &[]);
    wait_streaming(&db.client, &db.url).await;
    db.client
        .batch_execute(r#"INSERT INTO "Lead" (id, "clientId") VALUES ('L', 'C')"#)
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
    let locker = lock_sink(&db.url).await;
    let inside = commit_reply_pair(&db.client).await;
    (daemon, locker, inside)
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_work_is_never_confirmed_while_the_sink_is_blocked() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, locker, inside) =
        pending_behind_a_blocked_sink(&db, &dir.path().join("state")).await;
    let pending = current_lsn(&db.client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let confirmed = confirmed_lsn(&db.client, &slot_for(&db.url)).await.unwrap();
    assert!(
        confirmed <= inside,
        "confirmed {confirmed} reached pending work committed after {inside}"
    );
    locker.batch_execute("COMMIT").await.unwrap();
    converge(&db.client, CONVERGE).await;
    eventually(
        CONVERGE,
        "confirmation after the sink recovered",
        || async {
            confirmed_lsn(&db.client, &slot_for(&db.url))
                .await
                .is_some_and(|c| c >= pending)
        },
    )
    .await;
}

/// A stop while the sink cannot commit ends within the shutdown budget (the
/// systemd unit and the pods allow it that long, see tests/deploy.rs), cleanly,
/// without confirming the pending work; the next start delivers it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_with_the_sink_blocked_ends_within_the_budget_and_confirms_nothing_pending() {
    use replytime::pipeline::shutdown::SHUTDOWN_BUDGET;
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (mut daemon, locker, inside) = pending_behind_a_blocked_sink(&db, &state).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopping = Instant::now();
    let status = daemon.stop();
    let took = stopping.elapsed();
    assert!(status.success(), "{status}\n{}", daemon.log_text());
    assert!(
        took < SHUTDOWN_BUDGET + Duration::from_secs(5),
        "the stop took {took:?}, more than the {SHUTDOWN_BUDGET:?} budget"
    );
    let confirmed = confirmed_lsn(&db.client, &slot_for(&db.url)).await.unwrap();
    assert!(
        confirmed <= inside,
        "confirmed {confirmed} reached pending work committed after {inside}"
    );
    assert!(
        daemon
            .log_text()
            .contains("not drained within the shutdown budget"),
        "{}",
        daemon.log_text()
    );
    locker.batch_execute("COMMIT").await.unwrap();
    let _daemon = Daemon::spawn(&db.url, &state, &[]);
    converge(&db.client, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_load_of_existing_rows_converges_while_writes_go_on() {
    let db = database().await;
    let mut generator = existing_history(&db.client, 11, 300).await;
    freeze_campaigns(&mut generator);
    let more: Vec<_> = (0..150).map(|_| generator.next_transaction()).collect();
    let writer = {
        let url = db.url.clone();
        tokio::spawn(async move {
            let client = common::connect(&url).await;
            write_history(&client, &more).await;
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let _daemon = Daemon::spawn(
        &db.url,
        &dir.path().join("state"),
        &[("REPLYTIME_LOAD_BATCH_ROWS", "50")],
    );
    writer.await.unwrap();
    converge(&db.client, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_application_can_still_update_and_delete_every_source_table() {
    let db = database().await;
    db.client
        .batch_execute(r#"ALTER TABLE "Lead" REPLICA IDENTITY FULL"#)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    eventually(CONVERGE, "the publication", || async {
        db.client
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = 'replytime'",
                &[],
            )
            .await
            .unwrap()
            .is_some()
    })
    .await;
    db.client
        .batch_execute(
            r#"
            INSERT INTO "EmailCampaign" (id) VALUES ('c');
            INSERT INTO "Lead" (id, "clientId") VALUES ('l', 'x');
            INSERT INTO "Message" (id, "leadId", channel, direction) VALUES ('m', 'l', 'sms', 'inbound');
            INSERT INTO "AIDraft" (id, "leadId", "triggerMessageId", channel) VALUES ('d', 'l', 'm', 'sms');
            INSERT INTO "BackgroundJob" (id, type, "leadId") VALUES ('j', 'AI_AUTO_SEND_DELAYED', 'l');
            UPDATE "EmailCampaign" SET "responseMode" = 'auto'; DELETE FROM "EmailCampaign";
            UPDATE "Lead" SET "clientId" = 'y'; DELETE FROM "Lead";
            UPDATE "Message" SET body = 'b'; DELETE FROM "Message";
            UPDATE "AIDraft" SET "responseDisposition" = 'EDITED'; DELETE FROM "AIDraft";
            UPDATE "BackgroundJob" SET "runAt" = now(); DELETE FROM "BackgroundJob";
            "#,
        )
        .await
        .expect("the application's writes never fail because of the publication");
    converge(&db.client, CONVERGE).await;
}

fn cli(url: &str, state: &std::path::Path, args: &[&str]) -> std::process::Output {
    cli_with(url, state, args, &[])
}

/// The binary run to completion with the test's settings, `env` overriding them.
fn cli_with(
    url: &str,
    state: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_replytime"))
        .args(args)
        .env("REPLYTIME_SOURCE_URL", url)
        .env("REPLYTIME_STATE_DIR", state)
        .env("REPLYTIME_SLOT", slot_for(url))
        .env(
            "REPLYTIME_METRICS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// A daemon streams `count` generated transactions into the sink, then stops
/// cleanly; returns the generator to go on with.
async fn streamed_history(
    db: &common::TestDb,
    state: &std::path::Path,
    seed: u64,
    count: usize,
) -> Generator {
    let mut daemon = Daemon::spawn(&db.url, state, &[]);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(seed, HistoryConfig::realistic());
    let txns: Vec<_> = (0..count).map(|_| generator.next_transaction()).collect();
    write_history(&db.client, &txns).await;
    converge(&db.client, CONVERGE).await;
    assert!(daemon.stop().success());
    generator
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_and_rebuild_repair_a_damaged_sink() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    streamed_history(&db, &state, 5, 200).await;

    let status = cli(&db.url, &state, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let from = status["state"]["oldest_event_lsn"]
        .as_str()
        .unwrap()
        .to_string();

    db.client
        .batch_execute(
            r#"DELETE FROM "ResponseTimingEvent" WHERE ctid IN (SELECT ctid FROM "ResponseTimingEvent" LIMIT 10);
               UPDATE "ResponseTimingEvent" SET "setterResponseMs" = -42, channel = 'fax'
                 WHERE ctid IN (SELECT ctid FROM "ResponseTimingEvent" LIMIT 10)"#,
        )
        .await
        .unwrap();
    // A stop already requested: replay stops after its first batch (delivered)
    // and names where to continue; rebuild stops before it derives anything.
    let env = |key: &str| match key {
        "REPLYTIME_SOURCE_URL" => Some(db.url.clone()),
        "REPLYTIME_STATE_DIR" => Some(state.display().to_string()),
        "REPLYTIME_SLOT" => Some(slot_for(&db.url)),
        _ => None,
    };
    let settings = replytime::config::Settings::load(None, &env, &Default::default()).unwrap();
    let stopped = replytime::pipeline::shutdown::CancellationToken::new();
    stopped.cancel();
    let from_lsn = replytime::commands::repair::ReplayFrom::Lsn(from.parse().unwrap());
    let err = replytime::commands::repair::replay(&settings, from_lsn, &stopped)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stopped on request") && err.contains("replytime replay --from-lsn"),
        "{err}"
    );
    let err = replytime::commands::repair::rebuild(&settings, &stopped)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("stopped on request"), "{err}");
    // Chunks of two changes: the larger transactions are replayed chunk by chunk,
    // as the daemon applies a transaction larger than `chunk_changes`.
    let out = cli_with(
        &db.url,
        &state,
        &["replay", "--from-lsn", &from],
        &[("REPLYTIME_CHUNK_CHANGES", "2")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    converge(&db.client, Duration::from_secs(1)).await;
    // Default chunks: every transaction of the history is small, so the replay
    // stages them and commits them together (group commit), as the daemon does.
    db.client
        .batch_execute(
            r#"DELETE FROM "ResponseTimingEvent" WHERE ctid IN (SELECT ctid FROM "ResponseTimingEvent" LIMIT 10);
               UPDATE "ResponseTimingEvent" SET "aiResponseMs" = -7
                 WHERE ctid IN (SELECT ctid FROM "ResponseTimingEvent" LIMIT 10)"#,
        )
        .await
        .unwrap();
    let out = cli(&db.url, &state, &["replay", "--from-lsn", &from]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    converge(&db.client, Duration::from_secs(1)).await;
    // Below what the log holds: refused, naming the oldest LSN it holds.
    let out = cli(&db.url, &state, &["replay", "--from-lsn", "0/1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("event log holds ({from})")),
        "{stderr}"
    );

    db.client
        .batch_execute(
            r#"TRUNCATE "ResponseTimingEvent";
               INSERT INTO "ResponseTimingEvent"
                   (id, "clientId", "leadId", channel, "inboundMessageId", "inboundSentAt")
               VALUES (gen_random_uuid(), 'c', 'l', 'sms', 'not-an-anchor', now())"#,
        )
        .await
        .unwrap();
    let out = cli(&db.url, &state, &["rebuild"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    converge(&db.client, Duration::from_secs(1)).await;

    // Both refuse to run against a live daemon's state.
    let _daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    let out = cli(&db.url, &state, &["rebuild"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("daemon stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_rebuilds_lost_state_and_a_damaged_sink_from_the_tables() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut generator = streamed_history(&db, &state, 23, 200).await;

    // Lost state and a damaged sink.
    std::fs::remove_dir_all(&state).unwrap();
    db.client
        .batch_execute(
            r#"DELETE FROM "ResponseTimingEvent" WHERE ctid IN (SELECT ctid FROM "ResponseTimingEvent" LIMIT 10);
               UPDATE "ResponseTimingEvent" SET "setterResponseMs" = -42
                 WHERE ctid IN (SELECT ctid FROM "ResponseTimingEvent" LIMIT 10);
               INSERT INTO "ResponseTimingEvent"
                   (id, "clientId", "leadId", channel, "inboundMessageId", "inboundSentAt")
               VALUES (gen_random_uuid(), 'c', 'l', 'sms', 'not-an-anchor', '2024-03-01')"#,
        )
        .await
        .unwrap();
    // The backfill keeps the delay bounds the sink recorded for the jobs it holds;
    // jobs it does not hold take the snapshot's.
    delay_records_as_of_now_unless_in_sink(&db.client).await;
    let slot = slot_for(&db.url);
    let slot_before = confirmed_lsn(&db.client, &slot).await;
    let damaged = sink_rows(&db.client).await;

    // A dry run reads and derives, prints what it would write, and writes nothing.
    let out = cli(&db.url, &state, &["backfill", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let anchors = oracle_rows(&db.client).await.len();
    assert!(
        stdout.contains(&format!("would upsert {anchors} rows")),
        "{stdout}"
    );
    assert!(
        stdout.contains("would delete 1 sink rows that are not anchors"),
        "{stdout}"
    );
    assert_eq!(sink_rows(&db.client).await, damaged);
    assert_eq!(confirmed_lsn(&db.client, &slot).await, slot_before);
    assert!(!state.exists() || std::fs::read_dir(&state).unwrap().next().is_none());

    // The lost state did not create the slot: a backfill drops it only when told.
    let out = cli(&db.url, &state, &["backfill"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--recreate-slot"), "{stderr}");
    assert_eq!(confirmed_lsn(&db.client, &slot).await, slot_before);

    // The real one: new slot, state and sink from the tables, in small batches.
    let out = cli(
        &db.url,
        &state,
        &["backfill", "--batch-size", "37", "--recreate-slot"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    converge(&db.client, Duration::from_secs(1)).await;

    // `run` streams on from the new slot.
    let _daemon = Daemon::spawn(&db.url, &state, &[]);
    freeze_campaigns(&mut generator);
    let more: Vec<_> = (0..100).map(|_| generator.next_transaction()).collect();
    write_history(&db.client, &more).await;
    converge(&db.client, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_lookback_writes_only_recent_anchors() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    db.client
        .batch_execute(
            r#"
            INSERT INTO "Lead" (id, "clientId") VALUES ('lead', 'client');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt", "sentBy", "sentByUserId") VALUES
                ('old-in', 'lead', 'sms', 'inbound', now() - interval '40 days', NULL, NULL),
                ('old-out', 'lead', 'sms', 'outbound', now() - interval '40 days' + interval '1 minute', 'setter', 'u1'),
                ('new-in', 'lead', 'sms', 'inbound', now() - interval '2 days', NULL, NULL),
                ('new-out', 'lead', 'sms', 'outbound', now() - interval '2 days' + interval '1 minute', 'setter', 'u1');
            "#,
        )
        .await
        .unwrap();
    let out = cli(&db.url, &state, &["backfill", "--lookback-days", "30"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = sink_rows(&db.client).await.into_keys().collect();
    assert_eq!(ids, vec!["new-in".to_string()]);

    // The old anchor is in the state: a later change to its thread writes it in full.
    let _daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    db.client
        .batch_execute(r#"UPDATE "Message" SET "sentByUserId" = 'u2' WHERE id = 'old-out'"#)
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_on_one_machine_together_equal_the_oracle() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let base = slot_for(&db.url);
    let shard_env = |k: usize| {
        [
            ("REPLYTIME_SHARD", format!("{k}/2")),
            ("REPLYTIME_SLOT", format!("{base}_s{k}")),
            ("REPLYTIME_PUBLICATION", format!("{base}_p{k}")),
        ]
    };

    // A row filter on "leadId" without a replica identity that covers it would make
    // the application's UPDATE and DELETE fail: refused, and nothing is created.
    let env = shard_env(0);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cli_with(&db.url, &dir.path().join("refused"), &["run"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("REPLICA IDENTITY FULL") && stderr.contains("leadId"),
        "{stderr}"
    );
    db.client
        .batch_execute(
            r#"INSERT INTO "Message" (id, "leadId", channel, direction) VALUES ('m', 'l', 'sms', 'inbound');
               UPDATE "Message" SET "sentAt" = now() WHERE id = 'm';
               DELETE FROM "Message" WHERE id = 'm';"#,
        )
        .await
        .expect("the application's writes still work");

    db.client
        .batch_execute(
            r#"ALTER TABLE "Message" REPLICA IDENTITY FULL;
               ALTER TABLE "AIDraft" REPLICA IDENTITY FULL;
               ALTER TABLE "BackgroundJob" REPLICA IDENTITY FULL;"#,
        )
        .await
        .unwrap();
    let mut generator = existing_history(&db.client, 31, 100).await;
    freeze_campaigns(&mut generator);

    let daemons: Vec<Daemon> = (0..2)
        .map(|k| {
            let env = shard_env(k);
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Daemon::spawn(&db.url, &dir.path().join(format!("state{k}")), &env)
        })
        .collect();
    eventually(CONVERGE, "both shards to stream", || async {
        let active: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1 AND active",
                &[&format!("{base}_s%")],
            )
            .await
            .unwrap()
            .get(0);
        active == 2
    })
    .await;
    let more: Vec<_> = (0..300).map(|_| generator.next_transaction()).collect();
    write_history(&db.client, &more).await;
    converge(&db.client, CONVERGE).await;

    // Each shard wrote its own leads' rows, and the app can still update and delete.
    let per_slot: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM replytime_progress WHERE slot LIKE $1",
            &[&format!("{base}_s%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(per_slot, 2);
    db.client
        .batch_execute(
            r#"UPDATE "Message" SET "sentByUserId" = 'x' WHERE id IN (SELECT id FROM "Message" LIMIT 5);
               DELETE FROM "BackgroundJob" WHERE id IN (SELECT id FROM "BackgroundJob" LIMIT 5);"#,
        )
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
    drop(daemons);

    // A publication whose filters do not match the shard setting is refused.
    for shard in ["0/3", ""] {
        let slot = format!("{base}_mismatch");
        let publication = format!("{base}_p0");
        let mut env = vec![
            ("REPLYTIME_SLOT", slot.as_str()),
            ("REPLYTIME_PUBLICATION", publication.as_str()),
        ];
        if !shard.is_empty() {
            env.push(("REPLYTIME_SHARD", shard));
        }
        let out = cli_with(&db.url, &dir.path().join("mismatch"), &["run"], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("does not match the shard setting"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_column_is_ignored_and_an_incompatible_type_stops_without_confirming() {
    let db = database().await;
    // With a column list Postgres itself refuses to change a published column's
    // type; with REPLICA IDENTITY FULL every column is published and it allows it.
    db.client
        .batch_execute(r#"ALTER TABLE "Message" REPLICA IDENTITY FULL"#)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(&db.url, &dir.path().join("state"), &[]);
    wait_streaming(&db.client, &db.url).await;
    db.client
        .batch_execute(
            r#"
            INSERT INTO "Lead" (id, "clientId") VALUES ('lead', 'client');
            ALTER TABLE "Message" ADD COLUMN "mood" text;
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt", mood)
                VALUES ('in1', 'lead', 'sms', 'inbound', '2024-03-01 10:00:00+00', 'curious');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "sentAt")
                VALUES ('out1', 'lead', 'sms', 'outbound', 'setter', 'u1', '2024-03-01 10:05:00+00');
            "#,
        )
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
    assert_eq!(sink_rows(&db.client).await.len(), 1);

    let slot = slot_for(&db.url);
    let before = current_lsn(&db.client).await;
    db.client
        .batch_execute(
            r#"
            ALTER TABLE "Message" ALTER COLUMN "sentAt" TYPE text USING "sentAt"::text;
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt")
                VALUES ('in2', 'lead', 'sms', 'inbound', '2024-03-01 11:00:00+00');
            "#,
        )
        .await
        .unwrap();
    let status = stopped_by_definite_error(&mut daemon, Duration::from_secs(60));
    assert!(!status.success());
    let log = daemon.log_text();
    assert!(
        log.contains("sentAt") && log.contains("Message"),
        "the error names the table and the column:\n{log}"
    );
    let confirmed = confirmed_lsn(&db.client, &slot).await.unwrap();
    assert!(
        confirmed <= before,
        "confirmed {confirmed} past the schema change at {before}"
    );
}

/// A definite error stops the pipeline but keeps the process up (SPEC 5): waits
/// for the daemon to report one, then stops it; it exits non-zero with the error.
fn stopped_by_definite_error(daemon: &mut Daemon, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    while !daemon.log_text().contains("definite error") {
        assert!(
            std::time::Instant::now() < deadline,
            "no definite error within {timeout:?}:\n{}",
            daemon.log_text()
        );
        assert!(
            daemon.exited().is_none(),
            "exited instead of staying up:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_log_is_trimmed_to_its_wal_span_while_streaming() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A span of one WAL byte: every logged transaction expires.
    let mut daemon = Daemon::spawn(&db.url, &state, &[("REPLYTIME_EVENT_LOG_MAX_BYTES", "1")]);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(21, HistoryConfig::realistic());
    let first: Vec<_> = (0..100).map(|_| generator.next_transaction()).collect();
    write_history(&db.client, &first).await;
    let between = current_lsn(&db.client).await;
    let second: Vec<_> = (0..100).map(|_| generator.next_transaction()).collect();
    write_history(&db.client, &second).await;
    converge(&db.client, CONVERGE).await;
    // The streaming loop starts a trim at each slot check (every 5 s); a clean
    // stop waits for the one running.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        daemon.stop().success(),
        "clean stop exits 0:\n{}",
        daemon.log_text()
    );
    // (`status` exits 1 here: it reports that no daemon is streaming.)
    let status = cli(&db.url, &state, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let oldest = status["state"]
        .get("oldest_event_lsn")
        .expect("status names the oldest logged LSN");
    let trimmed = match oldest.as_str() {
        None => true,
        Some(lsn) => lsn.parse::<replytime::lsn::Lsn>().unwrap() > between,
    };
    assert!(
        trimmed,
        "the first 100 transactions were trimmed: oldest logged {oldest}, second batch from {between}"
    );
}
