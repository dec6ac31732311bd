//! The alerts an operator relies on, fed by the daemon's own `/metrics` while things
//! break (SPEC 5 "Definite errors stay visible", SPEC 6): the slot invalidated under
//! a running daemon, the source unreachable, the sink down. For each, the metrics
//! an alert reads move within 10 s, and `promtool test rules` over scrapes captured
//! from this daemon shows the alert firing, where healthy scrapes stay silent.
//!
//! ```text
//!  daemon /metrics ──scrape A, scrape B (3 s later)──▶ promtool input series:
//!     gauges held at B, counters and *_timestamp_seconds continued at their A→B rate
//!  deploy/prometheus/alerts.yml (annotations dropped) ──▶ promtool test rules
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::proxy::Proxy;
use crate::scrape::{Scrape, http_get, scrape};
use crate::support::*;

/// How fast the alerting metrics must move after a fault.
const REACT: Duration = Duration::from_secs(10);
/// Seconds between the two scrapes of a pair.
const GAP: u64 = 3;

/// Two scrapes `GAP` seconds apart, with the wall-clock time of the first.
struct Captured {
    first: Scrape,
    second: Scrape,
    first_unix: f64,
}

async fn capture(addr: &str) -> Captured {
    let first_unix = unix_now();
    let first = scrape(addr).await;
    tokio::time::sleep(Duration::from_secs(GAP)).await;
    let second = scrape(addr).await;
    Captured {
        first,
        second,
        first_unix,
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Scrapes until `done` holds, within [`REACT`]; returns the scrape and the time it
/// took.
async fn within_react(addr: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        // A daemon just started may not listen yet.
        let text = match http_get(addr, "/metrics").await {
            Ok((200, body)) => body,
            _ => String::new(),
        };
        let now = Scrape::parse(text);
        if done(&now) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < REACT,
            "{what}: not within {REACT:?}; last scrape:\n{}",
            now.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The alert rules without annotations (promtool compares them too; the tests
/// check what fires, by labels).
fn rules_without_annotations() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rules: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            rule.as_mapping_mut().expect("rule").remove("annotations");
        }
    }
    serde_norway::to_string(&rules).unwrap()
}

fn alert_names(rules: &str) -> Vec<String> {
    let rules: serde_norway::Value = serde_norway::from_str(rules).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

/// promtool input series from a scrape pair, over an hour at `GAP` s per sample.
fn input_series(captured: &Captured) -> String {
    let samples = 3600 / GAP;
    let first: BTreeMap<String, f64> = series(&captured.first).into_iter().collect();
    let mut out = format!(
        "      - series: 'up{{instance=\"test\", job=\"replytime\"}}'\n        values: '1x{samples}'\n"
    );
    for (name, value) in series(&captured.second) {
        if !value.is_finite() {
            continue;
        }
        let before = first.get(&name).copied().unwrap_or(value);
        let metric = name.split('{').next().unwrap();
        let timestamp = metric.ends_with("_timestamp_seconds");
        let counter = metric.ends_with("_total")
            || metric.ends_with("_count")
            || metric.ends_with("_sum")
            || metric.ends_with("_bucket");
        let values = if timestamp || counter {
            // Rebased: promtool's clock starts at 0 where the first scrape was taken.
            let start = if timestamp {
                before - captured.first_unix
            } else {
                before
            };
            let step = value - before;
            let sign = if step < 0.0 { '-' } else { '+' };
            format!("{start}{sign}{}x{samples}", step.abs())
        } else {
            format!("{value}x{samples}")
        };
        out.push_str(&format!(
            "      - series: '{name}'\n        values: '{values}'\n"
        ));
    }
    out
}

/// `name{labels…, instance="test", job="replytime"}` → value, for replytime's series.
fn series(scrape: &Scrape) -> Vec<(String, f64)> {
    scrape
        .text
        .lines()
        .filter(|line| line.starts_with("replytime_"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let labels = "instance=\"test\", job=\"replytime\"";
            let name = match series.split_once('{') {
                Some((name, rest)) => format!("{name}{{{}, {labels}}}", rest.trim_end_matches('}')),
                None => format!("{series}{{{labels}}}"),
            };
            Some((name, value))
        })
        .collect()
}

/// Runs `promtool test rules`: `firing` alerts (name, extra labels besides
/// instance and job) fire at 30 minutes; with `firing` empty, no alert at all
/// fires.
fn promtool_alerts(captured: &Captured, firing: &[(&str, &[(&str, &str)])]) {
    let rules = rules_without_annotations();
    let mut tests = String::new();
    let names: Vec<String> = if firing.is_empty() {
        alert_names(&rules)
    } else {
        firing.iter().map(|(name, _)| name.to_string()).collect()
    };
    for name in &names {
        tests.push_str(&format!(
            "      - eval_time: 30m\n        alertname: {name}\n        exp_alerts:"
        ));
        match firing.iter().find(|(n, _)| n == name) {
            None => tests.push_str(" []\n"),
            Some((_, labels)) => {
                tests.push_str("\n          - exp_labels:\n              instance: test\n              job: replytime\n");
                for (k, v) in labels.iter() {
                    tests.push_str(&format!("              {k}: {v}\n"));
                }
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let test = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: {GAP}s\n    input_series:\n{}    alert_rule_test:\n{tests}",
        input_series(captured)
    );
    let test_path = dir.path().join("test.yml");
    std::fs::write(&test_path, &test).unwrap();
    let out = std::process::Command::new(crate::scrape::promtool())
        .args(["test", "rules"])
        .arg(&test_path)
        .current_dir(dir.path())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool test rules (expecting {names:?} {}):\n{}{}\n--- scrape ---\n{}",
        if firing.is_empty() {
            "silent"
        } else {
            "firing"
        },
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        captured.second.text
    );
}

async fn healthy_and_silent(addr: &str) {
    eventually(Duration::from_secs(30), "ready", || async {
        scrape(addr).await.value("replytime_ready", &[]) == 1.0
    })
    .await;
    promtool_alerts(&capture(addr).await, &[]);
}

async fn source_database(cluster_url: Option<&str>) -> crate::common::TestDb {
    let db = match cluster_url {
        None => crate::common::fresh_database().await,
        Some(url) => crate::common::TestDb {
            url: url.to_string(),
            name: url.rsplit('/').next().unwrap().to_string(),
            client: crate::common::connect(url).await,
        },
    };
    db.apply_source_schema().await;
    db
}

/// Writes WAL past `max_slot_wal_keep_size` while the daemon is paused, then
/// checkpoints: the server invalidates the slot (and ends its walsender).
async fn invalidate_slot(daemon: &Daemon, client: &tokio_postgres::Client, slot: &str) {
    crate::metrics::signal(daemon, "STOP");
    client
        .batch_execute("CREATE TABLE wal_filler (x text)")
        .await
        .unwrap();
    for _ in 0..4 {
        client
            .batch_execute(
                "INSERT INTO wal_filler SELECT repeat('x', 1000) FROM generate_series(1, 3000); \
                 SELECT pg_switch_wal();",
            )
            .await
            .unwrap();
    }
    client.batch_execute("CHECKPOINT").await.unwrap();
    let status: Option<String> = client
        .query_one(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    crate::metrics::signal(daemon, "CONT");
    assert_eq!(
        status.as_deref(),
        Some("lost"),
        "the slot was not invalidated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slot_invalidated_while_running_fires_slot_lost_and_a_restart_stays_up_stopped() {
    let cluster = crate::common::start_cluster_with("max_slot_wal_keep_size = 1MB");
    let admin = crate::common::connect(&cluster.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE crm").await.unwrap();
    let db = source_database(Some(&cluster.url("crm"))).await;
    let slot = slot_for(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [("REPLYTIME_METRICS_ADDR", addr.as_str())];
    let mut daemon = Daemon::spawn(&db.url, &state, &env);
    wait_streaming(&db.client, &db.url).await;
    healthy_and_silent(&addr).await;

    invalidate_slot(&daemon, &db.client, &slot).await;
    let took = within_react(&addr, "wal_status lost and ready 0", |s| {
        s.value("replytime_slot_wal_status", &[("status", "lost")]) == 1.0
            && s.value("replytime_ready", &[]) == 0.0
    })
    .await;
    eprintln!("slot lost: metrics moved in {took:?}");
    let (status, body) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("wal_status = lost"), "{body}");
    let captured = capture(&addr).await;
    promtool_alerts(
        &captured,
        &[
            (
                "ReplytimeSlotLost",
                &[("severity", "critical"), ("status", "lost")],
            ),
            ("ReplytimeNotReady", &[("severity", "warning")]),
        ],
    );
    daemon.stop();

    // Started again on the invalidated slot: a definite error. The process stays up
    // and says so until it is stopped, then exits non-zero with the error.
    let mut daemon = Daemon::spawn(&db.url, &state, &env);
    let took = within_react(&addr, "replytime_fatal_error{kind=slot} 1", |s| {
        s.value("replytime_fatal_error", &[("kind", "slot")]) == 1.0
    })
    .await;
    eprintln!("restart on a lost slot: fatal error reported in {took:?}");
    let captured = capture(&addr).await;
    assert!(
        daemon.exited().is_none(),
        "the process must stay up: {}",
        daemon.log_text()
    );
    let (status, body) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(
        body.contains("stopped by a definite error (slot)") && body.contains("replytime backfill"),
        "{body}"
    );
    assert_eq!(captured.second.value("replytime_ready", &[]), 0.0);
    promtool_alerts(
        &captured,
        &[
            (
                "ReplytimeStopped",
                &[("severity", "critical"), ("kind", "slot")],
            ),
            (
                "ReplytimeSlotLost",
                &[("severity", "critical"), ("status", "lost")],
            ),
        ],
    );
    let exit = daemon.stop();
    assert!(!exit.success(), "exit after a definite error: {exit}");
    let log = daemon.log_text();
    assert!(
        log.contains("replytime run stopped") && log.contains("is invalidated"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn source_unreachable_fires_source_down() {
    let db = source_database(None).await;
    let port = crate::common::cluster().port;
    let proxy = Proxy::start(port).await;
    let source_url = proxy.url_for(&db.url, port);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _daemon = Daemon::spawn(
        &source_url,
        &dir.path().join("state"),
        &[
            ("REPLYTIME_METRICS_ADDR", &addr),
            ("REPLYTIME_SINK_URL", &db.url),
        ],
    );
    wait_streaming(&db.client, &source_url).await;
    healthy_and_silent(&addr).await;

    proxy.down();
    let took = within_react(&addr, "source_up 0 and ready 0", |s| {
        s.value("replytime_source_up", &[]) == 0.0
            && s.value("replytime_ready", &[]) == 0.0
            && s.value("replytime_sink_up", &[]) == 1.0
    })
    .await;
    eprintln!("source unreachable: metrics moved in {took:?}");
    let (status, body) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("source unreachable"), "{body}");
    promtool_alerts(
        &capture(&addr).await,
        &[
            ("ReplytimeSourceDown", &[("severity", "critical")]),
            ("ReplytimeNotReady", &[("severity", "warning")]),
        ],
    );
    proxy.up();
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_down_fires_sink_down_and_lag_grows() {
    let db = source_database(None).await;
    db.client.batch_execute(ORACLE_SUPPORT_SQL).await.unwrap();
    let port = crate::common::cluster().port;
    let proxy = Proxy::start(port).await;
    let sink_url = proxy.url_for(&db.url, port);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _daemon = Daemon::spawn(
        &db.url,
        &dir.path().join("state"),
        &[
            ("REPLYTIME_METRICS_ADDR", &addr),
            ("REPLYTIME_SINK_URL", &sink_url),
        ],
    );
    wait_streaming(&db.client, &db.url).await;
    healthy_and_silent(&addr).await;

    proxy.down();
    let mut generator =
        replytime::workload::Generator::new(5, replytime::workload::HistoryConfig::realistic());
    let txns: Vec<_> = (0..20).map(|_| generator.next_transaction()).collect();
    write_history(&db.client, &txns).await;
    let took = within_react(&addr, "sink_up 0, ready 0, lag > 0", |s| {
        s.value("replytime_sink_up", &[]) == 0.0
            && s.value("replytime_ready", &[]) == 0.0
            && s.value("replytime_replication_lag_seconds", &[]) > 0.0
    })
    .await;
    eprintln!("sink down: metrics moved in {took:?}");
    let (status, body) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("sink unreachable"), "{body}");
    let captured = capture(&addr).await;
    let lag = |s: &Scrape| s.value("replytime_replication_lag_seconds", &[]);
    assert!(
        lag(&captured.second) >= lag(&captured.first) + 1.0,
        "lag in seconds must keep growing while the sink is down: {} then {}",
        lag(&captured.first),
        lag(&captured.second)
    );
    promtool_alerts(
        &captured,
        &[
            ("ReplytimeSinkDown", &[("severity", "critical")]),
            ("ReplytimeNotReady", &[("severity", "warning")]),
        ],
    );
    proxy.up();
}
