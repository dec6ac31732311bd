//! Freshness: commit → row visible in the sink, under generator traffic at a fixed
//! rate.
//!
//! ```text
//!  load writer ── generator transactions (made before the stage), paced every ───┐
//!                 10 ms to `rate` changes/s                                       │
//!  probe writer ─ every 25 ms: a lead, an inbound and a setter reply (one txn) ───┤─▶ source
//!                 t0 = when COMMIT returned                                        │
//!  poller ─────── every 2 ms: which pending probe anchors are in the sink? ◀──────┘ sink
//!                 latency = first poll that sees the row − t0
//! ```
//!
//! The latency includes up to one poll period (2 ms plus a query) of observation
//! delay; it is an upper bound of the true commit → visible time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replytime::workload::Generator;
use replytime::workload::sql::transaction_to_sql;

use crate::common;

const PROBE_EVERY: Duration = Duration::from_millis(25);
const PROBE_CHANGES: f64 = 3.0;
const LOAD_TICK: Duration = Duration::from_millis(10);
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How long a probe may take before it counts as missed.
const GIVE_UP: Duration = Duration::from_secs(10);

pub struct Figures {
    pub rate: u64,
    /// Row changes per second actually written (load and probes).
    pub achieved_rate: f64,
    pub latencies: Vec<Duration>,
    pub missed: usize,
    /// The slowest probes: (seconds into the stage when committed, latency).
    pub slowest: Vec<(f64, Duration)>,
    /// Server-side view, p50 and p99 in ms: the sink row's `"updatedAt"` (start of
    /// the sink transaction) − the probe reply's `"sentAt"` (start of the source
    /// transaction + 1 ms).
    pub server_p50_p99_ms: (f64, f64),
    /// The daemon's own view of the stage, from its histograms: per delivery
    /// stage, (label, p50 ms, p99 ms, observations).
    pub stages: Vec<(String, f64, f64, f64)>,
}

impl Figures {
    /// The `q`-quantile (nearest rank) of the latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1e3
    }
}

type Pending = Arc<Mutex<HashMap<String, Instant>>>;

/// What the poller saw: (commit instant, latency) per probe.
type Seen = Vec<(Instant, Duration)>;

/// Writes traffic at `rate` row changes per second for `duration` while a daemon
/// streams `url` into the sink at `sink_url`; returns the generator (its model
/// follows the database).
pub async fn run(
    url: &str,
    sink_url: &str,
    metrics_addr: &str,
    generator: Generator,
    rate: u64,
    duration: Duration,
) -> (Figures, Generator) {
    let histograms_before = Histograms::scrape(metrics_addr);
    eprintln!(
        "freshness at {rate}/s: stage starts at {}",
        chrono::Utc::now().to_rfc3339()
    );
    static STAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stage = STAGES.fetch_add(1, Ordering::Relaxed);
    let pending: Pending = Arc::default();
    let load_rate = (rate as f64 - PROBE_CHANGES / PROBE_EVERY.as_secs_f64()).max(0.0);
    // Generated before the clock starts: the generator's model of a large
    // backlog has pauses of its own (over a second of CPU once in a stage
    // after the 3M drain), and a pause in this process held the probes and the
    // poller too, then sent the load it owed in one burst.
    let (generator, planned) = plan_load(generator, load_rate, duration);
    let started = Instant::now();
    let deadline = started + duration;
    let load = tokio::spawn(write_load(common::connect(url).await, planned, load_rate));
    let probes = tokio::spawn(write_probes(
        common::connect(url).await,
        pending.clone(),
        stage,
        deadline,
    ));
    let probes_done = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_sink(
        common::connect(sink_url).await,
        pending.clone(),
        probes_done.clone(),
    ));
    let load_changes = load.await.expect("load writer");
    let probe_count = probes.await.expect("probe writer");
    let elapsed = started.elapsed().as_secs_f64();
    probes_done.store(true, Ordering::SeqCst);
    let seen = poller.await.expect("sink poller");
    let mut slowest: Vec<(f64, Duration)> = seen
        .iter()
        .map(|(t0, latency)| ((*t0 - started).as_secs_f64(), *latency))
        .collect();
    slowest.sort_by_key(|(_, latency)| std::cmp::Reverse(*latency));
    slowest.truncate(5);
    let figures = Figures {
        rate,
        achieved_rate: (load_changes as f64 + probe_count as f64 * PROBE_CHANGES) / elapsed,
        missed: probe_count - seen.len(),
        latencies: seen.iter().map(|(_, latency)| *latency).collect(),
        slowest,
        server_p50_p99_ms: server_side(sink_url, stage).await,
        stages: Histograms::scrape(metrics_addr).stages_since(&histograms_before),
    };
    (figures, generator)
}

/// The stage's load, generated in advance: each transaction's row changes and
/// SQL, `rate` × `duration` changes in all.
fn plan_load(
    mut generator: Generator,
    rate: f64,
    duration: Duration,
) -> (Generator, Vec<(u64, String)>) {
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let mut planned = Vec::new();
    let mut changes = 0;
    while changes < total {
        let txn = generator.next_transaction();
        changes += txn.len() as u64;
        planned.push((txn.len() as u64, transaction_to_sql(&txn)));
    }
    (generator, planned)
}

/// Writes the planned transactions paced at `rate` changes per second; returns
/// the changes written.
async fn write_load(client: tokio_postgres::Client, planned: Vec<(u64, String)>, rate: f64) -> u64 {
    let started = Instant::now();
    let mut written = 0u64;
    let mut planned = planned.into_iter().peekable();
    let mut tick = tokio::time::interval(LOAD_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while planned.peek().is_some() {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        let mut script = String::new();
        // At most 2,000 changes per round trip, so a writer that fell behind
        // catches up in bounded steps instead of one huge script.
        let cap = written + 2_000;
        while written < due.min(cap) {
            let Some((changes, sql)) = planned.next() else {
                break;
            };
            written += changes;
            script.push_str(&sql);
        }
        if !script.is_empty() {
            client
                .batch_execute(&script)
                .await
                .unwrap_or_else(|e| panic!("load writer: {e:?}"));
        }
    }
    written
}

async fn write_probes(
    client: tokio_postgres::Client,
    pending: Pending,
    stage: u64,
    deadline: Instant,
) -> usize {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut count = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        let id = format!("probe-{stage}-{count}");
        let sql = format!(
            r#"BEGIN;
            INSERT INTO "Lead" (id, "clientId") VALUES ('{id}', 'probe-client');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "sentAt") VALUES
                ('{id}', '{id}', 'sms', 'inbound', NULL, NULL, now()),
                ('{id}-reply', '{id}', 'sms', 'outbound', 'setter', 'probe-user', now() + interval '1 ms');
            COMMIT;"#
        );
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("probe writer: {e:?}"));
        pending
            .lock()
            .expect("pending probes")
            .insert(id, Instant::now());
        count += 1;
    }
    count
}

/// Polls until the probes are done and each was seen or gave up; returns the
/// latencies seen.
async fn poll_sink(
    client: tokio_postgres::Client,
    pending: Pending,
    probes_done: Arc<AtomicBool>,
) -> Seen {
    let statement = client
        .prepare(r#"SELECT "inboundMessageId" FROM "ResponseTimingEvent" WHERE "inboundMessageId" = ANY($1)"#)
        .await
        .expect("prepare the sink poll");
    let mut latencies = Vec::new();
    loop {
        let ids: Vec<String> = pending
            .lock()
            .expect("pending probes")
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            if probes_done.load(Ordering::SeqCst) {
                return latencies;
            }
        } else {
            let rows = client
                .query(&statement, &[&ids])
                .await
                .expect("poll the sink");
            let seen_at = Instant::now();
            let mut pending = pending.lock().expect("pending probes");
            for row in rows {
                let id: String = row.get(0);
                if let Some(t0) = pending.remove(&id) {
                    latencies.push((t0, seen_at - t0));
                }
            }
            pending.retain(|_, t0| seen_at - *t0 < GIVE_UP);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn server_side(url: &str, stage: u64) -> (f64, f64) {
    let client = common::connect(url).await;
    let row = client
        .query_one(
            r#"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
               FROM (SELECT extract(epoch FROM "updatedAt" - "setterResponseSentAt") * 1000 AS ms
                     FROM "ResponseTimingEvent" WHERE "inboundMessageId" LIKE $1) probes"#,
            &[&format!("probe-{stage}-%")],
        )
        .await
        .expect("server-side freshness");
    let p50: Option<f64> = row.get(0);
    let p99: Option<f64> = row.get(1);
    (p50.unwrap_or(f64::NAN), p99.unwrap_or(f64::NAN))
}

/// The daemon's histograms of one stage: what each part of the delivery took.
const HISTOGRAMS: [(&str, &str); 7] = [
    (
        "commit → received",
        "replytime_delivery_age_seconds_bucket{stage=\"received\",",
    ),
    (
        "commit → applied (group's oldest)",
        "replytime_delivery_age_seconds_bucket{stage=\"applied\",",
    ),
    (
        "commit → sink batch start (batch's oldest)",
        "replytime_delivery_age_seconds_bucket{stage=\"batch_started\",",
    ),
    (
        "commit → RocksDB fsync done",
        "replytime_delivery_age_seconds_bucket{stage=\"state_synced\",",
    ),
    (
        "commit → sink commit done",
        "replytime_delivery_age_seconds_bucket{stage=\"sink_committed\",",
    ),
    ("RocksDB fsync", "replytime_state_sync_seconds_bucket{"),
    ("sink transaction", "replytime_sink_batch_seconds_bucket{"),
];

/// Cumulative bucket counts per histogram of [`HISTOGRAMS`]: (upper bound, count).
struct Histograms(Vec<Vec<(f64, f64)>>);

impl Histograms {
    fn scrape(addr: &str) -> Histograms {
        let text = crate::throughput::metrics_text(addr);
        Histograms(
            HISTOGRAMS
                .iter()
                .map(|(_, prefix)| {
                    text.lines()
                        .filter_map(|line| {
                            let rest = line.strip_prefix(prefix)?.strip_prefix("le=\"")?;
                            let (le, count) = rest.split_once("\"} ")?;
                            let le = if le == "+Inf" {
                                f64::INFINITY
                            } else {
                                le.parse().ok()?
                            };
                            Some((le, count.trim().parse().ok()?))
                        })
                        .collect()
                })
                .collect(),
        )
    }

    /// Per histogram, p50 and p99 in ms (linear within a bucket) of what was
    /// observed since `before`, and the number of observations.
    fn stages_since(&self, before: &Histograms) -> Vec<(String, f64, f64, f64)> {
        HISTOGRAMS
            .iter()
            .zip(self.0.iter().zip(&before.0))
            .map(|((label, _), (after, before))| {
                let delta: Vec<(f64, f64)> = after
                    .iter()
                    .map(|&(le, n)| {
                        let was = before.iter().find(|(l, _)| *l == le).map_or(0.0, |b| b.1);
                        (le, n - was)
                    })
                    .collect();
                let total = delta.last().map_or(0.0, |b| b.1);
                let quantile = |q: f64| {
                    let rank = q * total;
                    let mut lower = (0.0, 0.0);
                    for &(le, n) in &delta {
                        if n >= rank && n > 0.0 {
                            if le.is_infinite() {
                                return lower.0 * 1e3;
                            }
                            let within = (rank - lower.1) / (n - lower.1).max(f64::MIN_POSITIVE);
                            return (lower.0 + (le - lower.0) * within) * 1e3;
                        }
                        lower = (le, n);
                    }
                    f64::NAN
                };
                (label.to_string(), quantile(0.5), quantile(0.99), total)
            })
            .collect()
    }
}
