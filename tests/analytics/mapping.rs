//! `replytime report` on a deployment whose tables and columns have other names
//! than the reference schema: the analytics SQL follows the `[tables]` mapping.

use std::process::Command;

use serde_json::Value;

use crate::common::{self, TestDb};

const SINK_SQL: &str = include_str!("../../schema/sink.sql");

/// A schema `crm` with snake_case tables; no `"Lead"`, `"AIDraft"` or
/// `"Message"` anywhere, so a reference name left in the SQL cannot work.
const RENAMED_SOURCE: &str = r#"
CREATE SCHEMA crm;
CREATE TABLE crm.leads (
    lead_id text PRIMARY KEY, client text NOT NULL, campaign text,
    booked_at timestamptz, canceled_at timestamptz, ghl_id text,
    invitee_uri text, event_uri text);
CREATE TABLE crm.ai_drafts (
    draft_id text PRIMARY KEY, lead text NOT NULL, trigger_message text NOT NULL,
    chan text NOT NULL, disposition text);
CREATE TABLE crm."Sent Messages" (
    message_id text PRIMARY KEY, lead text NOT NULL, chan text NOT NULL,
    dir text NOT NULL, sent_by text, user_id text, draft text, sent_at timestamptz);
"#;

const MAPPING: &str = r#"
[tables]
schema = "crm"
[tables.lead]
table = "leads"
id = "lead_id"
client_id = "client"
email_campaign_id = "campaign"
[tables.lead_booking]
appointment_booked_at = "booked_at"
appointment_canceled_at = "canceled_at"
ghl_appointment_id = "ghl_id"
calendly_invitee_uri = "invitee_uri"
calendly_scheduled_event_uri = "event_uri"
[tables.ai_draft]
table = "ai_drafts"
id = "draft_id"
lead_id = "lead"
trigger_message_id = "trigger_message"
channel = "chan"
response_disposition = "disposition"
[tables.message]
table = "Sent Messages"
id = "message_id"
lead_id = "lead"
channel = "chan"
direction = "dir"
sent_by_user_id = "user_id"
ai_draft_id = "draft"
sent_at = "sent_at"
"#;

/// Three leads answered by a setter 2 minutes after their inbound: one booked
/// after, one never, one booked before (excluded); one AI draft sent to L1.
async fn renamed_fixture(db: &TestDb) {
    db.client.batch_execute(RENAMED_SOURCE).await.unwrap();
    db.client.batch_execute(SINK_SQL).await.unwrap();
    db.client
        .batch_execute(
            r#"
            INSERT INTO crm.leads (lead_id, client, booked_at) VALUES
                ('L1', 'c1', '2024-03-10 10:00+00'), ('L2', 'c1', NULL),
                ('L3', 'c1', '2024-03-01 08:00+00');
            INSERT INTO crm.ai_drafts VALUES ('d1', 'L1', 'in-L1', 'sms', 'AUTO_SENT');
            INSERT INTO crm."Sent Messages" VALUES
                ('m1', 'L1', 'sms', 'outbound', 'ai', NULL, 'd1', '2024-03-05 10:01+00');
            INSERT INTO "ResponseTimingEvent" (id, "clientId", "leadId", channel,
                "inboundMessageId", "inboundSentAt", "setterResponseMessageId",
                "setterResponseSentAt", "setterSentByUserId", "setterResponseMs")
            SELECT gen_random_uuid(), 'c1', l, 'sms', 'in-' || l, t, 'out-' || l,
                   t + interval '2 minutes', 'u1', 120000
            FROM (VALUES ('L1', timestamptz '2024-03-05 10:00+00'),
                         ('L2', timestamptz '2024-03-06 10:00+00'),
                         ('L3', timestamptz '2024-03-07 10:00+00')) AS v (l, t);
            "#,
        )
        .await
        .unwrap();
}

/// `replytime report …` with the mapping in a config file; (stdout, stderr, ok).
fn report_with_mapping(db: &TestDb, args: &[&str]) -> (String, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("replytime.toml");
    std::fs::write(&config, MAPPING).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_replytime"))
        .arg("report")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REPLYTIME_SOURCE_URL", &db.url)
        .env("REPLYTIME_STATE_DIR", dir.path().join("state"))
        .env("REPLYTIME_CONFIG", &config)
        .output()
        .expect("run replytime report");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[tokio::test]
async fn report_follows_the_tables_mapping() {
    let db = common::fresh_database().await;
    renamed_fixture(&db).await;
    let window = [
        "--from",
        "2024-03-01",
        "--to",
        "2024-04-01",
        "--format",
        "json",
    ];
    let (stdout, stderr, ok) = report_with_mapping(&db, &window);
    assert!(ok, "report failed: {stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let first = &json["setterResponseTime"][0];
    assert_eq!(first["bucket"], "< 5 min");
    let counts: Vec<i64> = ["booked", "notBooked", "excluded", "eligible"]
        .iter()
        .map(|k| first[*k].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![1, 1, 1, 2], "{first}");
    let sms_auto = json["aiDrafts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "sms" && c["responseDisposition"] == "AUTO_SENT")
        .cloned()
        .unwrap();
    assert_eq!(sms_auto["booked"], 1, "{sms_auto}");
    assert_eq!(json["warnings"], serde_json::json!([]));

    // The client check and a lead's timeline read the mapped lead table too.
    let (stdout, stderr, ok) =
        report_with_mapping(&db, &[&window[..], &["--client", "C1"]].concat());
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("did you mean \"c1\"?")
    );
    let (stdout, stderr, ok) = report_with_mapping(&db, &["--lead", "L1", "--format", "json"]);
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["lead"][0]["appointmentBookedAt"],
        "2024-03-10T10:00:00+00:00"
    );

    // The draft-send index went on the mapped message table.
    let index: Option<String> = db
        .client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'crm' \
             AND indexname = 'Sent Messages_draftSend_sentAt_idx'",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .ok();
    let index = index.unwrap_or_else(|| panic!("no index on crm.\"Sent Messages\": {stderr}"));
    assert!(index.contains("(sent_at) INCLUDE (draft)"), "{index}");

    // The source functions are inlined: the plans read the mapped tables.
    let window = "timestamptz '2024-03-01 00:00+00', timestamptz '2024-04-01 00:00+00'";
    for (call, table) in [
        (format!("replytime_setter_buckets({window})"), "crm.leads"),
        (
            format!("replytime_ai_drafts({window})"),
            "crm.\"Sent Messages\"",
        ),
    ] {
        let plan: Vec<String> = db
            .client
            .query(&format!("EXPLAIN (VERBOSE) SELECT * FROM {call}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Function Scan on replytime_"),
            "{call} not inlined:\n{plan}"
        );
        assert!(
            plan.contains(table),
            "{call} does not read {table}:\n{plan}"
        );
    }
}

#[tokio::test]
async fn an_upgrade_replaces_functions_whose_result_changed() {
    let db = crate::fixtures::analytics_db().await;
    // A function of an older release with another result type and an old overload.
    db.client
        .batch_execute(
            "DROP FUNCTION replytime_analytics_version(); \
             DROP FUNCTION replytime_tally(text[]) CASCADE; \
             CREATE FUNCTION replytime_tally(p_outcomes text[]) \
             RETURNS TABLE (booked bigint) LANGUAGE sql AS $$ SELECT 0::bigint $$; \
             CREATE FUNCTION replytime_outcome(timestamptz, \"Lead\") RETURNS text \
             LANGUAGE sql AS $$ SELECT 'old' $$;",
        )
        .await
        .unwrap();
    replytime::commands::report::apply_analytics_schema(&db.client, &Default::default())
        .await
        .expect("apply over an older release");
    let overloads: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname = 'replytime_outcome'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(overloads, 1, "the old overload is gone");
    let excluded: i64 = db
        .client
        .query_one("SELECT excluded FROM replytime_tally('{excluded}')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(excluded, 1);
}

/// A mapped lead and message table whose times are `timestamp` without time
/// zone: read as UTC (as the daemon reads them), whatever `--tz` is.
#[tokio::test]
async fn naive_timestamps_of_mapped_tables_are_utc() {
    let db = common::fresh_database().await;
    let naive = RENAMED_SOURCE
        .replace("booked_at timestamptz", "booked_at timestamp")
        .replace("sent_at timestamptz", "sent_at timestamp");
    db.client.batch_execute(&naive).await.unwrap();
    db.client.batch_execute(SINK_SQL).await.unwrap();
    // Booked at 10:01 UTC, answered at 10:02 UTC: excluded (in New York time
    // the booking would read 15:01 UTC, after the answer). The draft was sent
    // at 02:00 UTC on 03-01, before the window's New York midnight (05:00 UTC).
    db.client
        .batch_execute(
            r#"
            INSERT INTO crm.leads (lead_id, client, booked_at) VALUES ('L1', 'c1', '2024-03-05 10:01');
            INSERT INTO crm.ai_drafts VALUES ('d1', 'L1', 'in-L1', 'sms', 'AUTO_SENT');
            INSERT INTO crm."Sent Messages" VALUES
                ('m1', 'L1', 'sms', 'outbound', 'ai', NULL, 'd1', '2024-03-01 02:00');
            INSERT INTO "ResponseTimingEvent" (id, "clientId", "leadId", channel,
                "inboundMessageId", "inboundSentAt", "setterResponseMessageId",
                "setterResponseSentAt", "setterSentByUserId", "setterResponseMs")
            VALUES (gen_random_uuid(), 'c1', 'L1', 'sms', 'in-L1', '2024-03-05 10:00+00',
                    'out-L1', '2024-03-05 10:02+00', 'u1', 120000);
            "#,
        )
        .await
        .unwrap();
    let args = [
        "--from",
        "2024-03-01",
        "--to",
        "2024-04-01",
        "--tz",
        "America/New_York",
        "--format",
        "json",
    ];
    let (stdout, stderr, ok) = report_with_mapping(&db, &args);
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let first = &json["setterResponseTime"][0];
    assert_eq!(
        (&first["excluded"], &first["booked"]),
        (&Value::from(1), &Value::from(0)),
        "{first}"
    );
    let sent: i64 = json["aiDrafts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["booked"].as_i64().unwrap()
                + c["notBooked"].as_i64().unwrap()
                + c["excluded"].as_i64().unwrap()
        })
        .sum();
    assert_eq!(
        sent, 0,
        "the draft was sent before the window: {}",
        json["aiDrafts"]
    );
}
