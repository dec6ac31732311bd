//! Applying analytics.sql (twice) and the real `replytime report` binary.

use std::process::Command;

use serde_json::Value;

use crate::common::TestDb;
use crate::fixtures::analytics_db;
use crate::outcomes::outcome_fixture;

#[tokio::test]
async fn applying_twice_is_idempotent_and_builds_valid_indexes() {
    let db = analytics_db().await;
    replytime::commands::report::apply_analytics_schema(&db.client, &Default::default())
        .await
        .expect("second apply");
    let rows = db
        .client
        .query(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname IN ('ResponseTimingEvent_inboundSentAt_idx', \
                                 'Message_draftSend_sentAt_idx') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let found: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        found,
        vec![
            ("Message_draftSend_sentAt_idx".into(), true),
            ("ResponseTimingEvent_inboundSentAt_idx".into(), true),
        ]
    );
    let volatile: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'replytime\\_%' \
             AND provolatile = 'v'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(volatile, 0, "analytics functions are STABLE or IMMUTABLE");
}

/// `replytime report …` with only the two required settings; (stdout, stderr, ok).
pub fn run_report(db: &TestDb, args: &[&str]) -> (String, String, bool) {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_replytime"))
        .arg("report")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REPLYTIME_SOURCE_URL", &db.url)
        .env("REPLYTIME_STATE_DIR", state.path())
        .output()
        .expect("run replytime report");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[tokio::test]
async fn report_binary_prints_the_fixture_as_json_csv_and_a_timeline() {
    let db = analytics_db().await;
    outcome_fixture(&db).await;
    let window = ["--from", "2024-03-01", "--to", "2024-04-01", "--tz", "UTC"];

    let (stdout, stderr, ok) = run_report(&db, &[&window[..], &["--format", "json"]].concat());
    assert!(ok, "report failed: {stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(json["parameters"]["from"], "2024-03-01T00:00:00+00:00");
    assert_eq!(json["parameters"]["to"], "2024-04-01T00:00:00+00:00");
    assert_eq!(json["parameters"]["clientId"], Value::Null);
    let first = &json["setterResponseTime"][0];
    assert_eq!(first["bucket"], "< 5 min");
    let numbers: Vec<i64> = [
        "booked",
        "notBooked",
        "bookedNoTimestamp",
        "pending",
        "canceled",
        "eligible",
    ]
    .iter()
    .map(|k| first[*k].as_i64().unwrap_or_else(|| panic!("{k}: {first}")))
    .collect();
    assert_eq!(numbers, vec![4, 9, 3, 2, 2, 13]);
    assert!((first["bookingRate"].as_f64().unwrap() - 4.0 / 13.0).abs() < 1e-12);
    assert_eq!(json["setterResponseTime"].as_array().unwrap().len(), 6);
    assert_eq!(json["setterResponseTime"][5]["bookingRate"], Value::Null);
    for key in [
        "aiChosenDelay",
        "aiDrift",
        "firstResponder",
        "aiDrafts",
        "daily",
        "weekly",
        "topSetters",
    ] {
        assert!(json[key].is_array(), "{key} missing: {stdout}");
    }
    assert_eq!(json["daily"].as_array().unwrap().len(), 31);
    assert_eq!(json["firstResponder"][0]["eligible"], 13);

    let csv_args = [&window[..], &["--format", "csv", "--section", "setter"]].concat();
    let (stdout, stderr, ok) = run_report(&db, &csv_args);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "section,bucket,bucketOrder,booked,notBooked,bookedNoTimestamp,pending,canceled,eligible,bookingRate,excluded"
    );
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(lines[1].starts_with("setterResponseTime,< 5 min,1,4,9,3,2,2,13,0.307"));

    let (stdout, stderr, ok) = run_report(&db, &["--lead", "booked", "--format", "json"]);
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["lead"][0]["id"], "booked");
    assert_eq!(json["anchors"][0]["inboundMessageId"], "in-booked");
    assert_eq!(json["anchors"][0]["setterResponseMs"], 120_000);

    let (_, stderr, ok) = run_report(&db, &[&window[..4], &["--tz", "Mars/Olympus"]].concat());
    assert!(!ok);
    assert!(stderr.contains("Mars/Olympus"), "{stderr}");
    let (_, stderr, ok) = run_report(&db, &["--from", "2024-04-01", "--to", "2024-03-01"]);
    assert!(!ok);
    assert!(stderr.contains("must be before"), "{stderr}");
}
