//! Shards whose rows move (SPEC 9): a lead merge moves an inbound message with its
//! drafts, AI sends and jobs to a lead of another shard in one transaction. The old
//! shard sees deletes, the new one inserts, each in its own time; the shared sink
//! must end equal to the oracle whatever order the shards deliver in.

mod common;
#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::*;

const CONVERGE: Duration = Duration::from_secs(90);

async fn database() -> common::TestDb {
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    db.client.batch_execute(ORACLE_SUPPORT_SQL).await.unwrap();
    // Row filters on "leadId" need a replica identity that covers it.
    db.client
        .batch_execute(
            r#"ALTER TABLE "Message" REPLICA IDENTITY FULL;
               ALTER TABLE "AIDraft" REPLICA IDENTITY FULL;
               ALTER TABLE "BackgroundJob" REPLICA IDENTITY FULL;"#,
        )
        .await
        .unwrap();
    db
}

/// The settings of shard `k` of `n` sharing the database's sink.
fn shard_env(url: &str, k: usize, n: usize) -> Vec<(String, String)> {
    let base = slot_for(url);
    vec![
        ("REPLYTIME_SHARD".into(), format!("{k}/{n}")),
        ("REPLYTIME_SLOT".into(), format!("{base}_s{k}")),
        ("REPLYTIME_PUBLICATION".into(), format!("{base}_p{k}")),
    ]
}

fn spawn_shard(db: &common::TestDb, dir: &std::path::Path, k: usize, n: usize) -> Daemon {
    let env = shard_env(&db.url, k, n);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Daemon::spawn(&db.url, &dir.join(format!("state{k}")), &env)
}

async fn wait_active_slots(db: &common::TestDb, count: i64) {
    let pattern = format!("{}_s%", slot_for(&db.url));
    eventually(CONVERGE, "every shard to stream", || async {
        let active: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1 AND active",
                &[&pattern],
            )
            .await
            .unwrap()
            .get(0);
        active == count
    })
    .await;
}

/// A lead id of shard `k` of `n` (the row filter's own hash).
async fn lead_of_shard(db: &common::TestDb, prefix: &str, k: i32, n: i32) -> String {
    db.client
        .query_one(
            "SELECT id FROM (SELECT $1 || g AS id FROM generate_series(1, 1000) g) c \
             WHERE (hashtext(id) & 2147483647) % $2 = $3 LIMIT 1",
            &[&prefix, &n, &k],
        )
        .await
        .unwrap()
        .get(0)
}

/// Moves every message, draft and job of lead `from` to lead `to`, in one
/// transaction (a lead merge).
fn merge_sql(from: &str, to: &str) -> String {
    format!(
        r#"BEGIN;
           UPDATE "Message" SET "leadId" = '{to}' WHERE "leadId" = '{from}';
           UPDATE "AIDraft" SET "leadId" = '{to}' WHERE "leadId" = '{from}';
           UPDATE "BackgroundJob" SET "leadId" = '{to}' WHERE "leadId" = '{from}';
           COMMIT;"#
    )
}

async fn sink_lead_of(db: &common::TestDb, inbound: &str) -> Option<String> {
    db.client
        .query_opt(
            r#"SELECT "leadId" FROM "ResponseTimingEvent" WHERE "inboundMessageId" = $1"#,
            &[&inbound],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// The harmful order, forced: the old shard is stopped while the merge commits, so
/// the new shard's upsert lands first and the old shard's delete (same commit LSN)
/// arrives later. The row must survive, with the delay record of the job's insert.
#[tokio::test(flavor = "multi_thread")]
async fn a_merge_whose_new_shard_delivers_first_keeps_the_row() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let old = lead_of_shard(&db, "old_lead_", 0, 2).await;
    let new = lead_of_shard(&db, "new_lead_", 1, 2).await;
    let mut daemons = [
        spawn_shard(&db, dir.path(), 0, 2),
        spawn_shard(&db, dir.path(), 1, 2),
    ];
    wait_active_slots(&db, 2).await;
    db.client
        .batch_execute(&format!(
            r#"INSERT INTO "EmailCampaign" (id, "aiAutoSendDelayMinSeconds", "aiAutoSendDelayMaxSeconds")
                   VALUES ('slow', 200, 300), ('fast', 10, 20);
               INSERT INTO "Lead" (id, "clientId", "emailCampaignId")
                   VALUES ('{old}', 'client', 'slow'), ('{new}', 'client', 'fast');
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt")
                   VALUES ('in1', '{old}', 'sms', 'inbound', '2024-03-01 10:00:00+00');
               INSERT INTO "AIDraft" (id, "leadId", "triggerMessageId", channel, "responseDisposition")
                   VALUES ('draft1', '{old}', 'in1', 'sms', 'AUTO_SENT');
               INSERT INTO "BackgroundJob" (id, type, "leadId", "messageId", "draftId", "runAt", "createdAt")
                   VALUES ('job1', 'AI_AUTO_SEND_DELAYED', '{old}', 'in1', 'draft1',
                           '2024-03-01 10:04:05+00', '2024-03-01 10:00:01+00');
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "aiDraftId", "sentAt")
                   VALUES ('ai1', '{old}', 'sms', 'outbound', 'ai', 'draft1', '2024-03-01 10:04:06.5+00');"#
        ))
        .await
        .unwrap();
    converge(&db.client, CONVERGE).await;
    assert_eq!(
        sink_lead_of(&db, "in1").await.as_deref(),
        Some(old.as_str())
    );

    // Pause the old shard, merge, and let the new shard deliver first.
    assert!(daemons[0].stop().success());
    db.client
        .batch_execute(&merge_sql(&old, &new))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the new shard's upsert to land before the old shard's delete",
        || async { sink_lead_of(&db, "in1").await.as_deref() == Some(new.as_str()) },
    )
    .await;

    // Now the old shard delivers its delete of the same commit.
    daemons[0] = spawn_shard(&db, dir.path(), 0, 2);
    wait_active_slots(&db, 2).await;
    // Confirmed past the merge: the old shard's delete is in the sink.
    let old_slot = format!("{}_s0", slot_for(&db.url));
    let after_merge = current_lsn(&db.client).await;
    eventually(CONVERGE, "the old shard to pass the merge", || async {
        confirmed_lsn(&db.client, &old_slot)
            .await
            .is_some_and(|lsn| lsn >= after_merge)
    })
    .await;
    converge(&db.client, CONVERGE).await;
    let rows = sink_rows(&db.client).await;
    let row = &rows["in1"];
    assert_eq!(row.lead_id, new);
    assert_eq!(
        (row.ai_delay_min_seconds, row.ai_delay_max_seconds),
        (Some(200), Some(300)),
        "the job keeps the delay record of its insert"
    );
}

/// Round `r`'s traffic: ten conversations, each on its own lead (an inbound, an
/// AI draft with its delayed job and AI send, a setter reply), then merges that
/// move whole leads (messages, drafts, jobs) onto leads of this and the previous
/// round, across shards. Every thread moves whole, as a real merge does.
fn round_sql(r: usize) -> String {
    let mut sql = String::new();
    for i in 0..10 {
        let (lead, at) = (format!("lead_{r}_{i}"), 1_000 * r + 60 * i);
        let t = |seconds: usize| {
            format!(
                "timestamptz '2024-03-01 00:00:00+00' + interval '{} seconds'",
                at + seconds
            )
        };
        sql.push_str(&format!(
            r#"BEGIN;
               INSERT INTO "Lead" (id, "clientId", "emailCampaignId") VALUES ('{lead}', 'client{c}', 'camp{p}');
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt") VALUES ('in_{r}_{i}', '{lead}', 'sms', 'inbound', {t0});
               INSERT INTO "AIDraft" (id, "leadId", "triggerMessageId", channel) VALUES ('d_{r}_{i}', '{lead}', 'in_{r}_{i}', 'sms');
               INSERT INTO "BackgroundJob" (id, type, "leadId", "messageId", "draftId", "runAt", "createdAt")
                   VALUES ('j_{r}_{i}', 'AI_AUTO_SEND_DELAYED', '{lead}', 'in_{r}_{i}', 'd_{r}_{i}', {t200}, {t1});
               COMMIT;
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "aiDraftId", "sentAt")
                   VALUES ('ai_{r}_{i}', '{lead}', 'sms', 'outbound', 'ai', 'd_{r}_{i}', {t201});
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "sentAt")
                   VALUES ('out_{r}_{i}', '{lead}', 'sms', 'outbound', 'setter', 'u{c}', {t30});
               UPDATE "BackgroundJob" SET "startedAt" = {t200}, "finishedAt" = {t201} WHERE id = 'j_{r}_{i}';"#,
            c = i % 3,
            p = i % 2,
            t0 = t(0),
            t1 = t(1),
            t30 = t(30 + i),
            t200 = t(200),
            t201 = t(201),
        ));
    }
    for i in 0..10 {
        // Into a lead of this round and, from the previous round, into this one.
        let to = format!("lead_{r}_{}", (i * 7 + 3) % 10);
        if i % 3 == 0 && to != format!("lead_{r}_{i}") {
            sql.push_str(&merge_sql(&format!("lead_{r}_{i}"), &to));
        }
        if r > 0 && i % 2 == 1 {
            sql.push_str(&merge_sql(&format!("lead_{}_{i}", r - 1), &to));
        }
    }
    sql
}

#[tokio::test(flavor = "multi_thread")]
async fn three_shards_with_lead_merges_and_kill_9s_equal_the_oracle() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    db.client
        .batch_execute(
            r#"INSERT INTO "EmailCampaign" (id, "aiAutoSendDelayMinSeconds", "aiAutoSendDelayMaxSeconds")
                   VALUES ('camp0', 100, 200), ('camp1', 150, 400)"#,
        )
        .await
        .unwrap();
    db.client.batch_execute(&round_sql(0)).await.unwrap();
    // The initial load records the delay bounds in force at its snapshot.
    delay_records_as_of_now(&db.client).await;
    let mut daemons: Vec<Daemon> = (0..3).map(|k| spawn_shard(&db, dir.path(), k, 3)).collect();
    wait_active_slots(&db, 3).await;
    for round in 1..10usize {
        let writer = {
            let (url, sql) = (db.url.clone(), round_sql(round));
            tokio::spawn(async move {
                common::connect(&url)
                    .await
                    .batch_execute(&sql)
                    .await
                    .unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(50 + (round as u64 * 173) % 400)).await;
        let victim = round % 3;
        daemons[victim].kill9();
        writer.await.unwrap();
        daemons[victim] = spawn_shard(&db, dir.path(), victim, 3);
    }
    wait_active_slots(&db, 3).await;
    converge(&db.client, CONVERGE).await;
    let moved: i64 = db
        .client
        .query_one(
            r#"SELECT count(*) FROM "ResponseTimingEvent"
               WHERE "leadId" <> 'lead_' || split_part("inboundMessageId", '_', 2) || '_' || split_part("inboundMessageId", '_', 3)"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(moved >= 20, "only {moved} anchors were moved by merges");
    let shards_used: i64 = db
        .client
        .query_one(
            r#"SELECT count(DISTINCT (hashtext("leadId") & 2147483647) % 3) FROM "ResponseTimingEvent""#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shards_used, 3, "every shard's leads are in the shared sink");
}
