//! The initial load, its `COPY` reference, and the seed design's batch query, all on
//! the same N pre-existing messages (bulk-generated with `generate_series`).
//!
//! ```text
//!  generate_series ─▶ "EmailCampaign", "Lead", "Message" (threads of 10 per
//!                     (lead, channel)), "AIDraft" and "BackgroundJob" for AI replies
//!    ├─▶ psql COPY (SELECT <columns replytime reads>) TO STDOUT > /dev/null   (timed)
//!    ├─▶ the cron's LAG/LEAD window query over a 90-day lookback              (timed)
//!    └─▶ replytime run on an empty state: slot + snapshot + copy + derive + sink
//!        (timed until the sink's progress row appears: every anchor is written)
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::machine;
use crate::support::{Daemon, slot_for};

/// The rows the bulk generator wrote.
pub struct Dataset {
    pub messages: u64,
    pub rows: u64,
    pub seconds: f64,
}

/// Fills the reference schema with `messages` messages and what goes with them:
/// threads of 10 (5 inbound, 5 outbound: 4 anchors), one lead per two threads, a
/// third of the threads answered by the AI (draft + delayed job), sentAt spread over
/// the last 60 days.
pub async fn generate(client: &tokio_postgres::Client, messages: u64) -> Dataset {
    let started = Instant::now();
    let leads = messages.div_ceil(20);
    let step_micros = 60 * 86_400 * 1_000_000 / messages.max(1);
    let inbound = "i % 10 IN (0, 2, 3, 5, 7)";
    let ai = "i % 10 IN (1, 4, 6, 8) AND (i / 10) % 3 = 0";
    let channel = "CASE WHEN (i / 10) % 2 = 0 THEN 'sms' ELSE 'email' END";
    let at = |offset: &str| {
        format!(
            "(now() - interval '60 days' + ((i {offset})::bigint * {step_micros}) * interval '1 microsecond')"
        )
    };
    let script = format!(
        r#"
        INSERT INTO "EmailCampaign" (id, "aiAutoSendDelayMinSeconds", "aiAutoSendDelayMaxSeconds", "responseMode")
        SELECT 'camp-' || g, 120 + g * 3, 360 + g * 6, CASE WHEN g % 2 = 0 THEN 'auto' ELSE 'review' END
        FROM generate_series(0, 19) g;

        INSERT INTO "Lead" (id, "clientId", "emailCampaignId")
        SELECT 'lead-' || g, 'client-' || (g % 50), CASE WHEN g % 5 = 0 THEN NULL ELSE 'camp-' || (g % 20) END
        FROM generate_series(0, {leads} - 1) g;

        INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "aiDraftId", "sentAt", body)
        SELECT 'msg-' || i, 'lead-' || (i / 20), {channel},
               CASE WHEN {inbound} THEN 'inbound' ELSE 'outbound' END,
               CASE WHEN {inbound} THEN NULL WHEN {ai} THEN 'ai' ELSE 'setter' END,
               CASE WHEN NOT ({inbound}) AND NOT ({ai}) THEN 'user-' || (i % 25) END,
               CASE WHEN {ai} THEN 'draft-' || i END,
               {sent_at},
               'Hi, this is message ' || i || ' about the listing — thanks for reaching out, talk soon.'
        FROM generate_series(0, {messages} - 1) i;

        INSERT INTO "AIDraft" (id, "leadId", "triggerMessageId", channel, "responseDisposition", content)
        SELECT 'draft-' || i, 'lead-' || (i / 20), 'msg-' || (i - 1), {channel},
               (ARRAY['AUTO_SENT', 'APPROVED', 'EDITED'])[i % 3 + 1], 'Draft reply text for message ' || (i - 1)
        FROM generate_series(0, {messages} - 1) i WHERE {ai};

        INSERT INTO "BackgroundJob" (id, type, "leadId", "messageId", "draftId", "runAt", "startedAt", "finishedAt", "createdAt")
        SELECT 'job-' || i, 'AI_AUTO_SEND_DELAYED', 'lead-' || (i / 20), 'msg-' || (i - 1), 'draft-' || i,
               {trigger_at} + interval '300 s', {trigger_at} + interval '300.2 s',
               {trigger_at} + interval '301 s', {trigger_at} + interval '1 s'
        FROM generate_series(0, {messages} - 1) i WHERE {ai};

        ANALYZE;
        "#,
        sent_at = at(""),
        trigger_at = at("- 1"),
    );
    client
        .batch_execute(&script)
        .await
        .unwrap_or_else(|e| panic!("bulk generation: {e:?}"));
    let rows: i64 = client
        .query_one(
            r#"SELECT (SELECT count(*) FROM "EmailCampaign") + (SELECT count(*) FROM "Lead")
                    + (SELECT count(*) FROM "Message") + (SELECT count(*) FROM "AIDraft")
                    + (SELECT count(*) FROM "BackgroundJob")"#,
            &[],
        )
        .await
        .expect("count the generated rows")
        .get(0);
    Dataset {
        messages,
        rows: rows as u64,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The columns replytime reads (SPEC 1) of every source table, as `COPY … TO STDOUT`
/// into /dev/null through psql; returns seconds.
pub fn copy_reference(db: &common::TestDb) -> f64 {
    let queries = [
        r#"COPY (SELECT id, "aiAutoSendDelayMinSeconds", "aiAutoSendDelayMaxSeconds", "responseMode" FROM "EmailCampaign") TO STDOUT"#,
        r#"COPY (SELECT id, "clientId", "emailCampaignId" FROM "Lead") TO STDOUT"#,
        r#"COPY (SELECT id, "leadId", channel, direction, "sentBy", "sentByUserId", "aiDraftId", "sentAt" FROM "Message") TO STDOUT"#,
        r#"COPY (SELECT id, "leadId", "triggerMessageId", channel, "responseDisposition" FROM "AIDraft") TO STDOUT"#,
        r#"COPY (SELECT id, type, "leadId", "messageId", "draftId", "runAt", "startedAt", "finishedAt", "createdAt" FROM "BackgroundJob") TO STDOUT"#,
    ];
    let cluster = common::cluster();
    let mut psql = Command::new(cluster.bindir.join("psql"));
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U"])
        .args(["postgres", "-p", &cluster.port.to_string(), "-d", &db.name]);
    for query in queries {
        psql.args(["-c", query]);
    }
    let started = Instant::now();
    let status = psql
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql COPY failed: {status}");
    started.elapsed().as_secs_f64()
}

/// What the cron job of the seed design ran every few minutes: anchors by LEAD()
/// over each thread, response windows by a running count of inbound messages, the
/// first setter reply per window (a second window pass), the draft, the first AI
/// send and the latest job, over a 90-day lookback. Only the `SELECT`: the cron's
/// `INSERT … ON CONFLICT DO NOTHING` would add to it.
pub const SEED_QUERY: &str = r#"
WITH numbered AS (
    SELECT m.id, m."leadId", m.channel, m.direction, m."sentBy", m."sentByUserId", m."sentAt",
           LEAD(m.direction) OVER w AS next_direction,
           count(*) FILTER (WHERE m.direction = 'inbound') OVER w AS window_no
    FROM "Message" m
    WHERE m."sentAt" >= now() - interval '90 days'
      AND m.direction IN ('inbound', 'outbound')
    WINDOW w AS (PARTITION BY m."leadId", m.channel ORDER BY m."sentAt", m.id COLLATE "C")
), windowed AS (
    SELECT n.*,
           min(n."sentAt") FILTER (WHERE n.direction = 'outbound' AND n."sentBy" = 'setter'
                                     AND n."sentByUserId" IS NOT NULL)
               OVER (PARTITION BY n."leadId", n.channel, n.window_no) AS setter_at
    FROM numbered n
)
SELECT count(*), count(a.setter_at), count(ai."sentAt"), count(job.id)
FROM windowed a
JOIN "Lead" l ON l.id = a."leadId"
LEFT JOIN "AIDraft" d ON d."triggerMessageId" = a.id AND d.channel = a.channel
LEFT JOIN LATERAL (
    SELECT x."sentAt" FROM "Message" x
    WHERE x."aiDraftId" = d.id AND x."sentBy" = 'ai' AND x.direction = 'outbound'
      AND x."sentAt" IS NOT NULL
    ORDER BY x."sentAt", x.id LIMIT 1) ai ON true
LEFT JOIN LATERAL (
    SELECT j.id FROM "BackgroundJob" j
    WHERE j."messageId" = a.id AND j."draftId" = d.id AND j.type = 'AI_AUTO_SEND_DELAYED'
    ORDER BY j."createdAt" DESC, j.id DESC LIMIT 1) job ON true
WHERE a.direction = 'inbound' AND a.next_direction = 'outbound'
  AND l."clientId" IS NOT NULL
"#;

/// Runs the seed query `runs` times; returns (median seconds, anchors found).
pub async fn seed_query(client: &tokio_postgres::Client, runs: usize) -> (f64, i64) {
    let mut times = Vec::new();
    let mut anchors = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let row = client
            .query_one(SEED_QUERY, &[])
            .await
            .unwrap_or_else(|e| panic!("seed query: {e:?}"));
        times.push(started.elapsed().as_secs_f64());
        anchors = row.get(0);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], anchors)
}

pub struct LoadFigures {
    /// Spawn → the sink's progress row (every anchor written).
    pub seconds: f64,
    /// The daemon's own figures: tables copied into RocksDB ("tables copied"), then
    /// every anchor derived into the outbox ("anchors derived").
    pub copy_seconds: Option<f64>,
    pub derive_seconds: Option<f64>,
    pub sink_rows: i64,
    pub peak_rss_bytes: Option<u64>,
    pub state_bytes: u64,
}

/// Starts replytime on an empty state against the generated data; returns when the
/// sink holds the load's result, with the daemon still running.
pub async fn initial_load(
    db: &common::TestDb,
    state: &std::path::Path,
    daemon_env: &[(&str, &str)],
) -> (LoadFigures, Daemon) {
    let slot = slot_for(&db.url);
    let started = Instant::now();
    let daemon = Daemon::spawn(db.url.as_str(), state, daemon_env);
    loop {
        let progress = db
            .client
            .query_opt(
                "SELECT lsn::text FROM replytime_progress WHERE slot = $1",
                &[&slot],
            )
            .await;
        if matches!(progress, Ok(Some(_))) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "initial load did not finish within an hour:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let sink_rows: i64 = db
        .client
        .query_one(r#"SELECT count(*) FROM "ResponseTimingEvent""#, &[])
        .await
        .expect("count the sink")
        .get(0);
    let log = daemon.log_text();
    let figures = LoadFigures {
        seconds,
        copy_seconds: logged_seconds(&log, "tables copied"),
        derive_seconds: logged_seconds(&log, "anchors derived"),
        sink_rows,
        peak_rss_bytes: machine::peak_rss_bytes(daemon.child.id()),
        state_bytes: machine::dir_bytes(state),
    };
    (figures, daemon)
}

/// `seconds` of the daemon's JSON log line `message`.
fn logged_seconds(log: &str, message: &str) -> Option<f64> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|v| v["fields"]["message"] == message)
        .and_then(|v| v["fields"]["seconds"].as_f64())
}

/// What Postgres alone needs to write the load's anchors into the sink: `INSERT …
/// SELECT` of every sink row into a new table with the sink table's columns and
/// indexes (`LIKE … INCLUDING ALL`), in one statement; returns seconds. No client
/// can write these rows faster through this table shape, so `COPY` seconds over this
/// bounds the whole load's ratio to `COPY`.
pub async fn sink_floor(client: &tokio_postgres::Client) -> f64 {
    client
        .batch_execute(
            r#"DROP TABLE IF EXISTS replytime_bench_floor;
               CREATE TABLE replytime_bench_floor (LIKE "ResponseTimingEvent" INCLUDING ALL)"#,
        )
        .await
        .expect("create the floor table");
    let started = Instant::now();
    client
        .batch_execute(r#"INSERT INTO replytime_bench_floor SELECT * FROM "ResponseTimingEvent""#)
        .await
        .expect("insert the sink rows into the floor table");
    let seconds = started.elapsed().as_secs_f64();
    client
        .batch_execute("DROP TABLE replytime_bench_floor")
        .await
        .expect("drop the floor table");
    seconds
}
