//! `/metrics`, `/healthz` and `/readyz` during a run (SPEC 6): lag rises under a
//! burst and returns to zero, counters and histograms equal what the written
//! history implies, and the exposition passes promtool.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use replytime::change::{Change, Table};
use replytime::oracle::{self, SourceTables};
use replytime::row::TimingRow;
use replytime::workload::{Generator, HistoryConfig};

use crate::scrape::{Scrape, http_get, promtool_check_metrics, scrape};
use crate::support::*;

const CONVERGE: Duration = Duration::from_secs(90);

async fn database() -> crate::common::TestDb {
    let db = crate::common::fresh_database().await;
    db.apply_source_schema().await;
    db.client.batch_execute(ORACLE_SUPPORT_SQL).await.unwrap();
    db
}

/// What the daemon's counters must say after applying `txns` to empty tables.
#[derive(Debug, Default)]
struct Expected {
    /// (table label, operation label) → changes.
    changes: BTreeMap<(&'static str, &'static str), u64>,
    upserts: u64,
    deletes: u64,
    /// (channel, responder) → every observed response time in seconds.
    responses: BTreeMap<(String, &'static str), Vec<f64>>,
}

/// Replays `txns` through the in-memory oracle, deriving after every transaction:
/// the engine derives each touched anchor once per transaction and (see
/// `Engine::refresh` / `count_upsert`) counts an upsert when the row's content
/// changed, a delete when a row went away, and observes a setter or AI response
/// time when the upserted row carries one that differs from the row's previous
/// one. The engine equals the oracle after every transaction, so the oracle's
/// row-by-row differences give every counter exactly.
fn expected_metrics(txns: &[Vec<Change>]) -> Expected {
    let mut expected = Expected::default();
    let mut tables = SourceTables::default();
    let mut before: BTreeMap<String, TimingRow> = BTreeMap::new();
    for txn in txns {
        for change in txn {
            let op = change.operation().label();
            let touched = match change {
                Change::Insert(row) | Change::Update { row, .. } => vec![row.table()],
                Change::Delete { table, .. } => vec![*table],
                Change::Truncate(tables) => tables.clone(),
            };
            for table in touched {
                *expected.changes.entry((table.label(), op)).or_default() += 1;
            }
            tables.apply(change);
        }
        let after = oracle::derive(&tables);
        for (id, row) in &after {
            let old = before.get(id);
            if old == Some(row) {
                continue;
            }
            expected.upserts += 1;
            let responses = [
                (
                    "setter",
                    row.setter_response_ms,
                    old.and_then(|o| o.setter_response_ms),
                ),
                ("ai", row.ai_response_ms, old.and_then(|o| o.ai_response_ms)),
            ];
            for (responder, new_ms, old_ms) in responses {
                if let Some(ms) = new_ms.filter(|ms| old_ms != Some(*ms)) {
                    expected
                        .responses
                        .entry((row.channel.clone(), responder))
                        .or_default()
                        .push(ms as f64 / 1000.0);
                }
            }
        }
        expected.deletes += before.keys().filter(|id| !after.contains_key(*id)).count() as u64;
        before = after;
    }
    expected
}

/// `kill -NAME` to the daemon (STOP and CONT pause and resume it).
pub(crate) fn signal(daemon: &Daemon, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(daemon.child.id().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name} failed");
}

/// Compares `replytime_response_seconds{channel,responder}` (count, sum and every
/// cumulative bucket) with the observations expected.
fn assert_response_histograms(scrape: &Scrape, expected: &Expected) {
    let name = "replytime_response_seconds";
    let mut seen: Vec<(String, String)> = scrape
        .matching("replytime_response_seconds_count", &[])
        .map(|(labels, _)| (labels["channel"].clone(), labels["responder"].clone()))
        .collect();
    seen.sort();
    let mut want: Vec<(String, String)> = expected
        .responses
        .keys()
        .map(|(channel, responder)| (channel.clone(), responder.to_string()))
        .collect();
    want.sort();
    assert_eq!(seen, want, "{name} series (channel, responder)");
    for ((channel, responder), observed) in &expected.responses {
        let labels = [("channel", channel.as_str()), ("responder", *responder)];
        let count = scrape.value(&format!("{name}_count"), &labels);
        assert_eq!(count, observed.len() as f64, "{name}_count {labels:?}");
        let sum = scrape.value(&format!("{name}_sum"), &labels);
        let want_sum: f64 = observed.iter().sum();
        assert!(
            (sum - want_sum).abs() <= 1e-6 * want_sum.abs().max(1.0),
            "{name}_sum {labels:?}: {sum} != {want_sum}"
        );
        let bucket_name = format!("{name}_bucket");
        let buckets: Vec<_> = scrape.matching(&bucket_name, &labels).collect();
        assert!(!buckets.is_empty(), "no buckets for {labels:?}");
        for (bucket, value) in buckets {
            let le: f64 = match bucket["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap(),
            };
            let want = observed.iter().filter(|s| **s <= le).count() as f64;
            assert_eq!(value, want, "{name}_bucket {labels:?} le={le}");
        }
    }
}

/// Sink rows per (channel, responder) with a response time: every one of them was
/// observed at least once (when its row took its current value).
fn sink_responses(rows: &BTreeMap<String, TimingRow>) -> BTreeMap<(String, &'static str), usize> {
    let mut counts = BTreeMap::new();
    for row in rows.values() {
        if row.setter_response_ms.is_some() {
            *counts.entry((row.channel.clone(), "setter")).or_default() += 1;
        }
        if row.ai_response_ms.is_some() {
            *counts.entry((row.channel.clone(), "ai")).or_default() += 1;
        }
    }
    counts
}

/// Waits for `/healthz` and `/readyz` to answer 200; unknown paths are 404.
async fn wait_healthy(addr: &str) {
    for path in ["/healthz", "/readyz"] {
        eventually(Duration::from_secs(30), path, || async {
            matches!(http_get(addr, path).await, Ok((200, _)))
        })
        .await;
    }
    let (status, _) = http_get(addr, "/nothing-here").await.unwrap();
    assert_eq!(status, 404);
}

/// Writes `txns` while the daemon is paused (SIGSTOP), so it is certainly behind
/// when it resumes; the pause outlasts one 5 s lag check, which then runs at once.
async fn burst_while_paused(
    daemon: &Daemon,
    client: &tokio_postgres::Client,
    txns: &[Vec<Change>],
) {
    const PAUSE: Duration = Duration::from_secs(6);
    signal(daemon, "STOP");
    let paused = Instant::now();
    write_history(client, txns).await;
    tokio::time::sleep(PAUSE.saturating_sub(paused.elapsed())).await;
    signal(daemon, "CONT");
}

/// Scrapes until both lag gauges are back to 0 with nothing pending for the sink,
/// after the lag in bytes rose; returns the highest lag seen (bytes, seconds).
async fn watch_lag_until_caught_up(addr: &str, daemon: &Daemon) -> (f64, f64) {
    let (mut max_bytes, mut max_seconds) = (0f64, 0f64);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let now = scrape(addr).await;
        let bytes = now.value("replytime_replication_lag_bytes", &[]);
        let seconds = now.value("replytime_replication_lag_seconds", &[]);
        max_bytes = max_bytes.max(bytes);
        max_seconds = max_seconds.max(seconds);
        let pending = now.value("replytime_outbox_pending", &[]);
        if bytes == 0.0 && seconds == 0.0 && pending == 0.0 && max_bytes > 0.0 {
            return (max_bytes, max_seconds);
        }
        assert!(
            Instant::now() < deadline,
            "lag did not rise and return to 0 (now {bytes} bytes, {seconds} s, {pending} pending; \
             max {max_bytes} bytes); log {}",
            daemon.log.display()
        );
        // The burst drains in a fraction of a second: scrape often enough to see it.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Changes by table and operation, anchors upserted and deleted, response times.
fn assert_counters(last: &Scrape, expected: &Expected) {
    for table in Table::ALL {
        for op in ["insert", "update", "delete", "truncate"] {
            let want = expected
                .changes
                .get(&(table.label(), op))
                .copied()
                .unwrap_or(0);
            let labels = [("table", table.label()), ("operation", op)];
            assert_eq!(
                last.value("replytime_changes_total", &labels),
                want as f64,
                "replytime_changes_total {labels:?}"
            );
        }
    }
    assert_eq!(
        last.value("replytime_anchors_upserted_total", &[]),
        expected.upserts as f64
    );
    assert_eq!(
        last.value("replytime_anchors_deleted_total", &[]),
        expected.deletes as f64
    );
    assert_response_histograms(last, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_a_burst_of_writes_and_pass_promtool() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // 1.3 s: heartbeats rarely coincide with the 5 s lag check.
    let daemon = Daemon::spawn(
        &db.url,
        &dir.path().join("state"),
        &[
            ("REPLYTIME_METRICS_ADDR", &addr),
            ("REPLYTIME_HEARTBEAT_INTERVAL_MS", "1300"),
        ],
    );
    wait_streaming(&db.client, &db.url).await;
    wait_healthy(&addr).await;
    let baseline = scrape(&addr).await;
    for name in [
        "replytime_replication_lag_bytes",
        "replytime_replication_lag_seconds",
        "replytime_ready",
    ] {
        assert!(baseline.has(name), "{name} missing:\n{}", baseline.text);
    }
    assert!(
        !baseline.has("replytime_changes_total"),
        "no change was applied yet:\n{}",
        baseline.text
    );

    // A history on an empty database (the initial load copied nothing), and every
    // counter it must produce.
    let mut config = HistoryConfig::realistic();
    config.leads = 150;
    let mut generator = Generator::new(7, config);
    let txns: Vec<Vec<Change>> = (0..1200).map(|_| generator.next_transaction()).collect();
    let expected = expected_metrics(&txns);
    assert!(
        expected.responses.len() >= 4,
        "the history must answer on several channels: {:?}",
        expected.responses.keys()
    );

    burst_while_paused(&daemon, &db.client, &txns).await;
    let (max_lag_bytes, max_lag_seconds) = watch_lag_until_caught_up(&addr, &daemon).await;
    eprintln!(
        "burst: {} changes, {} upserts, {} deletes, {} response times; max lag {max_lag_bytes} bytes, {max_lag_seconds} s",
        expected.changes.values().sum::<u64>(),
        expected.upserts,
        expected.deletes,
        expected.responses.values().map(Vec::len).sum::<usize>()
    );
    assert!(
        max_lag_seconds >= 1.0,
        "lag in seconds stayed under 1 s after a pause of seconds: {max_lag_seconds}"
    );
    converge(&db.client, CONVERGE).await;

    let last = scrape(&addr).await;
    assert_counters(&last, &expected);
    for (key, rows) in sink_responses(&sink_rows(&db.client).await) {
        let observed = expected.responses.get(&key).map_or(0, Vec::len);
        assert!(
            observed >= rows,
            "{key:?}: {rows} sink rows, {observed} observations"
        );
    }
    assert_eq!(last.value("replytime_ready", &[]), 1.0);
    assert!(last.value("replytime_lsn", &[("kind", "confirmed")]) > 0.0);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(http_get(&addr, path).await.unwrap().0, 200, "{path}");
    }
    promtool_check_metrics(&last.text);
}
