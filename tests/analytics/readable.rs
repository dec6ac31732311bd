//! What a reader of `replytime report` meets: human units, counts that add up,
//! warnings, partial weeks, and the business-hours setter count; through the
//! real binary, as a user runs it.

use serde_json::Value;

use crate::fixtures::{Anchor, Lead, analytics_db};
use crate::outcomes::outcome_fixture;
use crate::report::run_report;

const MARCH: [&str; 6] = ["--from", "2024-03-01", "--to", "2024-04-01", "--tz", "UTC"];

fn json_report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn sum(rows: &Value, key: &str) -> i64 {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[key].as_i64().unwrap_or_else(|| panic!("{key}: {r}")))
        .sum()
}

#[tokio::test]
async fn each_section_adds_up_to_the_leads_with_a_response() {
    let db = analytics_db().await;
    outcome_fixture(&db).await;
    let (stdout, stderr, ok) = run_report(&db, &[&MARCH[..], &["--format", "json"]].concat());
    assert!(ok, "{stderr}");
    let json = json_report(&stdout);
    // 20 leads answered inside March; "prebooked" and "pending-pre" booked at or
    // before their response: excluded, in no other column.
    for section in ["setterResponseTime", "firstResponder"] {
        let rows = &json[section];
        assert_eq!(sum(rows, "excluded"), 2, "{section}: {rows}");
        let total: i64 = [
            "booked",
            "notBooked",
            "bookedNoTimestamp",
            "pending",
            "excluded",
        ]
        .iter()
        .map(|k| sum(rows, k))
        .sum();
        assert_eq!(total, 20, "{section}");
        assert!(sum(rows, "canceled") <= sum(rows, "notBooked"));
    }
    let (text, stderr, ok) = run_report(&db, &[&MARCH[..], &["--section", "setter"]].concat());
    assert!(ok, "{stderr}");
    assert!(
        text.contains(
            "leads counted: 20 = booked 4 + notBooked 9 + bookedNoTimestamp 3 + pending 2 + excluded 2 (canceled 2, inside notBooked)"
        ),
        "{text}"
    );
    assert!(text.contains("a subset of notBooked"), "{text}");
}

#[tokio::test]
async fn text_reads_in_human_units_and_json_adds_seconds() {
    let db = analytics_db().await;
    outcome_fixture(&db).await;
    let (text, stderr, ok) = run_report(&db, &MARCH);
    assert!(ok, "{stderr}");
    assert!(!text.contains("bucketOrder"), "{text}");
    assert!(!text.contains("Ms "), "no millisecond headers: {text}");
    // Every setter answer took 2 minutes.
    let march_5 = text
        .lines()
        .find(|l| l.starts_with("2024-03-05"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(march_5.contains(" 2m "), "{march_5}");
    assert!(text.contains("30.8%"), "booking rate in percent: {text}");
    assert!(!text.contains("businessDays"), "{text}");
    let (with_hours, _, ok) = run_report(&db, &[&MARCH[..], &["--business-hours"]].concat());
    assert!(ok);
    assert!(
        with_hours.contains("businessDays") && with_hours.contains("mon,tue,wed,thu,fri"),
        "{with_hours}"
    );

    let (stdout, _, ok) = run_report(&db, &[&MARCH[..], &["--format", "json"]].concat());
    assert!(ok);
    let json = json_report(&stdout);
    let day = json["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == "2024-03-05")
        .unwrap();
    assert_eq!(day["setterP50Ms"], 120_000.0);
    assert_eq!(day["setterP50Seconds"], 120.0);
    assert_eq!(day["aiP50Seconds"], Value::Null);
    // The business-hours parameters stay in JSON (today's keys).
    assert_eq!(json["parameters"]["businessTime"], "09:00-17:00");
    let first = &json["setterResponseTime"][0];
    assert_eq!(first["bucketOrder"], 1);
    let (low, high) = (
        first["bookingRateLow95"].as_f64().unwrap(),
        first["bookingRateHigh95"].as_f64().unwrap(),
    );
    assert!((low - 0.1268).abs() < 1e-3 && (high - 0.5763).abs() < 1e-3);
}

#[tokio::test]
async fn unknown_client_and_empty_window_are_warned() {
    let db = analytics_db().await;
    outcome_fixture(&db).await;
    let json_args = [&MARCH[..], &["--format", "json", "--client", "C1"]].concat();
    let (stdout, stderr, ok) = run_report(&db, &json_args);
    assert!(ok, "{stderr}");
    let warnings = json_report(&stdout)["warnings"].clone();
    let warning = warnings[0].as_str().unwrap_or_else(|| panic!("{warnings}"));
    assert!(
        warning.starts_with("client \"C1\" has no leads and no anchors"),
        "{warning}"
    );
    assert!(warning.ends_with("did you mean \"c1\"?"), "{warning}");
    assert!(stderr.contains("warning: client \"C1\""), "{stderr}");
    let (text, _, ok) = run_report(&db, &[&MARCH[..], &["--client", "C1"]].concat());
    assert!(ok);
    assert!(text.contains("\nwarning: client \"C1\""), "{text}");

    let january = [
        "--from",
        "2024-01-01",
        "--to",
        "2024-02-01",
        "--format",
        "json",
    ];
    let (stdout, _, ok) = run_report(&db, &january);
    assert!(ok);
    let warnings = json_report(&stdout)["warnings"].clone();
    assert_eq!(warnings.as_array().unwrap().len(), 1, "{warnings}");
    let warning = warnings[0].as_str().unwrap();
    assert!(warning.starts_with("no anchors in the window"), "{warning}");
    assert!(
        warning.ends_with("the anchors run from 2024-02-29 to 2024-04-01"),
        "{warning}"
    );

    let (stdout, _, ok) = run_report(&db, &[&MARCH[..], &["--format", "json"]].concat());
    assert!(ok);
    assert_eq!(json_report(&stdout)["warnings"], serde_json::json!([]));
}

#[tokio::test]
async fn a_week_cut_by_the_window_is_partial() {
    let db = analytics_db().await;
    outcome_fixture(&db).await;
    let (stdout, _, ok) = run_report(&db, &[&MARCH[..], &["--format", "json"]].concat());
    assert!(ok);
    let json = json_report(&stdout);
    // March 2024 starts on a Friday: its first ISO week starts on 02-26.
    let weeks: Vec<(String, bool)> = json["weekly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["weekStart"].as_str().unwrap().to_string(),
                w["partial"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(weeks[0], ("2024-02-26".to_string(), true));
    assert!(
        weeks[1..]
            .iter()
            .all(|(start, partial)| !partial || start == "2024-03-25")
    );
    let (text, _, ok) = run_report(&db, &[&MARCH[..], &["--section", "weekly"]].concat());
    assert!(ok);
    assert!(text.contains("2024-02-26 (partial)"), "{text}");
    assert!(
        text.contains("(partial) = the week starts before --from"),
        "{text}"
    );
}

#[tokio::test]
async fn business_hours_count_only_in_hours_setter_answers() {
    let db = analytics_db().await;
    // Tuesday 2024-03-12, UTC: one answer inside 09:00-17:00, one at night.
    Lead::new("in").insert(&db).await;
    Lead::new("out").insert(&db).await;
    Anchor::new("a-in", "in", "2024-03-12 10:00")
        .setter_after(60_000)
        .insert(&db)
        .await;
    Anchor::new("a-out", "out", "2024-03-12 20:00")
        .setter_after(120_000)
        .insert(&db)
        .await;
    let day = |json: &Value| {
        json["daily"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["day"] == "2024-03-12")
            .cloned()
            .unwrap()
    };
    let args = [&MARCH[..], &["--format", "json", "--section", "daily"]].concat();
    let (stdout, _, ok) = run_report(&db, &args);
    assert!(ok);
    let all = day(&json_report(&stdout));
    assert_eq!(
        (all["setterAnswered"].as_i64(), all["answered"].as_i64()),
        (Some(2), Some(2))
    );
    let (stdout, _, ok) = run_report(&db, &[&args[..], &["--business-hours"]].concat());
    assert!(ok);
    let in_hours = day(&json_report(&stdout));
    assert_eq!(in_hours["setterAnswered"], 1, "{in_hours}");
    assert_eq!(in_hours["setterP50Ms"], 60_000.0);
    assert_eq!(in_hours["answered"], 2, "answered counts every response");
}
