//! End-to-end figures of the real `replytime run` binary against one throwaway local
//! PostgreSQL 15 (the test harness's cluster), with the references they are judged
//! against, measured in the same run and printed as a markdown table with ratios.
//!
//! ```text
//!  one cluster (tests/common) ─┬─ db 1: generator WAL ─▶ pg_recvlogical vs replytime (throughput)
//!                              │        └─ same daemon, paced traffic + probes (freshness)
//!                              └─ db 2: N bulk-generated messages ─▶ COPY reference,
//!                                       the seed design's window query, replytime's
//!                                       initial load, peak RSS and RocksDB size
//! ```
//!
//! Run: `cargo bench --bench e2e` (about 10 minutes on 2 cores with the defaults).
//! The machine and versions are printed with the results; compare ratios within a
//! run, not absolute figures across machines.
//!
//! Environment variables (defaults in brackets):
//! - `REPLYTIME_BENCH_CHANGES` [300000,1000000]: backlog sizes, row changes of
//!   generator traffic in the throughput WAL; each size is drained on a database and
//!   state of its own, and the first and last are compared (cost per change as the
//!   backlog and the state behind it grow: `300000,3000000` for the 3M figures);
//! - `REPLYTIME_BENCH_RATES` [1000,5000]: freshness rates, row changes per second;
//! - `REPLYTIME_BENCH_FRESHNESS_SECONDS` [15]: seconds of traffic per rate;
//! - `REPLYTIME_BENCH_MESSAGES` [1000000]: pre-existing messages for the initial
//!   load, the seed query and the state size (10000000 for the 10M figures);
//! - `REPLYTIME_BENCH_SEED_RUNS` [3]: runs of the seed query (the median is shown);
//! - `REPLYTIME_BENCH_STAGES` [throughput,freshness,load]: which stages to run
//!   (freshness needs throughput's daemon);
//! - `REPLYTIME_BENCH_DAEMON_LOG` [info]: the daemon's `RUST_LOG`.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "e2e/freshness.rs"]
mod freshness;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/machine.rs"]
mod machine;
#[path = "e2e/throughput.rs"]
mod throughput;

use std::time::{Duration, Instant};

use replytime::workload::{Generator, HistoryConfig};

/// Daemon settings of every stage: production logging (info unless
/// `REPLYTIME_BENCH_DAEMON_LOG` says otherwise), JSON so the load's own timing can
/// be read back.
fn daemon_env() -> Vec<(&'static str, String)> {
    let level = std::env::var("REPLYTIME_BENCH_DAEMON_LOG").unwrap_or_else(|_| "info".into());
    vec![("RUST_LOG", level), ("REPLYTIME_LOG_FORMAT", "json".into())]
}

struct Settings {
    changes: Vec<u64>,
    rates: Vec<u64>,
    freshness: Duration,
    messages: u64,
    seed_runs: usize,
    stages: Vec<String>,
}

impl Settings {
    fn from_env() -> Settings {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?} is not valid")),
                Err(_) => default,
            }
        }
        let list = |name: &str, default: &str| -> Vec<String> {
            var(name, default.to_string())
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Settings {
            changes: list("REPLYTIME_BENCH_CHANGES", "300000,1000000")
                .iter()
                .map(|n| n.parse().expect("REPLYTIME_BENCH_CHANGES: numbers"))
                .collect(),
            rates: list("REPLYTIME_BENCH_RATES", "1000,5000")
                .iter()
                .map(|r| r.parse().expect("REPLYTIME_BENCH_RATES: numbers"))
                .collect(),
            freshness: Duration::from_secs(var("REPLYTIME_BENCH_FRESHNESS_SECONDS", 15)),
            messages: var("REPLYTIME_BENCH_MESSAGES", 1_000_000),
            seed_runs: var("REPLYTIME_BENCH_SEED_RUNS", 3),
            stages: list("REPLYTIME_BENCH_STAGES", "throughput,freshness,load"),
        }
    }

    fn runs(&self, stage: &str) -> bool {
        self.stages.iter().any(|s| s == stage)
    }
}

/// One line of the results table.
struct Line {
    figure: String,
    value: String,
    reference: String,
    ratio: String,
    target: String,
}

fn line(figure: &str, value: String, reference: String, ratio: String, target: &str) -> Line {
    Line {
        figure: figure.to_string(),
        value,
        reference,
        ratio,
        target: target.to_string(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let settings = Settings::from_env();
    let started = Instant::now();
    let admin = common::connect(&common::cluster().url("postgres")).await;
    let machine = machine::describe(&admin).await;
    let mut lines = Vec::new();
    let mut per_change_us = None;
    let env = daemon_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    if settings.runs("throughput") {
        let mut drained = Vec::new();
        let mut last = None;
        for &changes in &settings.changes {
            // The daemon of the smaller backlog stops before the next one starts.
            drop(last.take());
            let db = fresh_source().await;
            let dir = tempfile::tempdir().expect("state tempdir");
            let state = dir.path().join("state");
            let mut generator = Generator::new(2024, HistoryConfig::realistic());
            let (figures, daemon) =
                throughput::run(&db, &state, &mut generator, changes, &env).await;
            per_change_us = Some(throughput_lines(&figures, &mut lines));
            drained.push(figures);
            last = Some((db, dir, generator, daemon));
        }
        if let [first, .., largest] = drained.as_slice() {
            growth_lines(first, largest, &mut lines);
        }
        let (db, _dir, mut generator, daemon) = last.expect("at least one backlog size");
        if settings.runs("freshness") {
            for &rate in &settings.rates {
                let (figures, back) =
                    freshness::run(&db.url, generator, rate, settings.freshness).await;
                generator = back;
                freshness_lines(&figures, &mut lines);
            }
        }
        lines.push(line(
            "peak RSS of the daemon after throughput + freshness (VmHWM)",
            mib(machine::peak_rss_bytes(daemon.child.id())),
            String::new(),
            String::new(),
            "bounded",
        ));
        drop(daemon);
    }

    if settings.runs("load") {
        load_lines(&settings, per_change_us, &env, &mut lines).await;
    }

    print_report(&machine, &settings, &lines, started.elapsed());
}

/// A database with the reference schema. The harness runs the cluster with
/// `synchronous_commit = off` (test speed), which leaves a commit's WAL unflushed
/// for up to `wal_writer_delay` (200 ms) — and a walsender only decodes flushed WAL.
/// Production commits synchronously, so the bench databases do too (fsync stays off).
async fn fresh_source() -> common::TestDb {
    let db = common::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = on",
            db.name
        ))
        .await
        .expect("synchronous_commit on");
    let db = common::TestDb {
        client: common::connect(&db.url).await,
        ..db
    };
    db.apply_source_schema().await;
    db
}

/// Adds the throughput lines; returns replytime's wall time per change in µs.
fn throughput_lines(f: &throughput::Figures, lines: &mut Vec<Line>) -> f64 {
    let changes = f.changes as f64;
    let recv = changes / f.recv_seconds;
    let ours = changes / f.replytime_seconds;
    lines.push(line(
        "WAL drained",
        format!(
            "{} row changes, {} txns, {:.0} MB WAL",
            f.changes,
            f.transactions,
            f.wal_bytes as f64 / 1e6
        ),
        format!("written at {:.0} changes/s", changes / f.write_seconds),
        String::new(),
        "",
    ));
    lines.push(line(
        "ceiling: pg_recvlogical (pgoutput → /dev/null)",
        format!("{recv:.0} changes/s"),
        format!("walsender CPU {:.2} s", f.recv_walsender_cpu),
        "1.00".into(),
        "",
    ));
    lines.push(line(
        "replytime run end to end (start → confirmed_flush_lsn ≥ WAL end)",
        format!("{ours:.0} changes/s"),
        format!(
            "daemon CPU {:.2} s ({:.1} µs/change); Postgres: walsender {:.2} s ({:.1} µs/change), sink session {:.2} s ({:.1} µs/change)",
            f.replytime_daemon_cpu,
            f.replytime_daemon_cpu / changes * 1e6,
            f.replytime_walsender_cpu,
            f.replytime_walsender_cpu / changes * 1e6,
            f.replytime_sink_session_cpu,
            f.replytime_sink_session_cpu / changes * 1e6
        ),
        pct(ours / recv),
        "≥ 50 %",
    ));
    f.replytime_seconds / changes * 1e6
}

/// How the cost per change grows from the smallest backlog to the largest.
fn growth_lines(small: &throughput::Figures, large: &throughput::Figures, lines: &mut Vec<Line>) {
    let per_change = |cpu: f64, f: &throughput::Figures| cpu / f.changes as f64 * 1e6;
    let rate = |f: &throughput::Figures| f.recv_seconds / f.replytime_seconds;
    let sizes = format!("{} vs {} changes", large.changes, small.changes);
    let costs = [
        (
            "daemon CPU per change",
            per_change(large.replytime_daemon_cpu, large),
            per_change(small.replytime_daemon_cpu, small),
            "≤ 1.30",
        ),
        (
            "Postgres walsender CPU per change",
            per_change(large.replytime_walsender_cpu, large),
            per_change(small.replytime_walsender_cpu, small),
            "",
        ),
        (
            "Postgres sink session CPU per change",
            per_change(large.replytime_sink_session_cpu, large),
            per_change(small.replytime_sink_session_cpu, small),
            "",
        ),
    ];
    for (what, at_large, at_small, target) in costs {
        lines.push(line(
            &format!("{what}, backlog {sizes}"),
            format!("{at_large:.1} µs"),
            format!("{at_small:.1} µs"),
            format!("{:.2}", at_large / at_small),
            target,
        ));
    }
    lines.push(line(
        &format!("drain rate relative to pg_recvlogical, backlog {sizes}"),
        pct(rate(large)),
        pct(rate(small)),
        format!("{:.2}", rate(large) / rate(small)),
        "",
    ));
}

fn freshness_lines(f: &freshness::Figures, lines: &mut Vec<Line>) {
    let slowest: Vec<String> = f
        .slowest
        .iter()
        .map(|(at, latency)| format!("{:.0} ms at {at:.1} s", latency.as_secs_f64() * 1e3))
        .collect();
    eprintln!(
        "freshness at {}/s: slowest probes {}",
        f.rate,
        slowest.join(", ")
    );
    lines.push(line(
        &format!("freshness at {} changes/s: commit → row in sink", f.rate),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            f.quantile_ms(0.5),
            f.quantile_ms(0.99),
            f.quantile_ms(1.0)
        ),
        format!(
            "{} probes, {} missed; achieved {:.0} changes/s; server-side p50 {:.1} ms, p99 {:.1} ms",
            f.latencies.len() + f.missed,
            f.missed,
            f.achieved_rate,
            f.server_p50_p99_ms.0,
            f.server_p50_p99_ms.1
        ),
        String::new(),
        if f.rate <= 1_000 {
            "p99 ≤ 100 ms"
        } else {
            "sub-second"
        },
    ));
}

async fn load_lines(
    settings: &Settings,
    per_change_us: Option<f64>,
    env: &[(&str, &str)],
    lines: &mut Vec<Line>,
) {
    let db = fresh_source().await;
    let data = load::generate(&db.client, settings.messages).await;
    eprintln!(
        "load: generated {} rows ({} messages) in {:.1} s",
        data.rows, data.messages, data.seconds
    );
    let copy_seconds = load::copy_reference(&db);
    let (seed_seconds, seed_anchors) = load::seed_query(&db.client, settings.seed_runs).await;
    eprintln!("load: COPY {copy_seconds:.2} s; seed query {seed_seconds:.2} s");
    let dir = tempfile::tempdir().expect("state tempdir");
    let state = dir.path().join("state");
    let (load, daemon) = load::initial_load(&db, &state, env).await;
    drop(daemon);
    let rows = data.rows as f64;
    let copy_rate = rows / copy_seconds;
    let load_rate = rows / load.seconds;
    lines.push(line(
        &format!(
            "initial load of {} rows ({} messages), start → every anchor in the sink",
            data.rows, data.messages
        ),
        format!("{load_rate:.0} rows/s ({:.1} s)", load.seconds),
        format!("COPY (SELECT …) TO STDOUT: {copy_rate:.0} rows/s ({copy_seconds:.2} s)"),
        pct(load_rate / copy_rate),
        "≥ 30 %",
    ));
    let phases = [
        ("tables copied into RocksDB", load.copy_seconds),
        ("every anchor derived into the outbox", load.derive_seconds),
        (
            "the rest: start-up, and delivery still pending when the derivation ended",
            load.copy_seconds
                .zip(load.derive_seconds)
                .map(|(c, d)| load.seconds - c - d),
        ),
    ];
    for (what, seconds) in phases {
        if let Some(seconds) = seconds {
            lines.push(line(
                &format!("  of which {what}"),
                format!("{seconds:.1} s ({} of it)", pct(seconds / load.seconds)),
                String::new(),
                String::new(),
                "",
            ));
        }
    }
    let floor = load::sink_floor(&db.client).await;
    lines.push(line(
        &format!(
            "  Postgres floor of the sink part: INSERT … SELECT of the {} anchors into a table shaped like the sink (same indexes)",
            load.sink_rows
        ),
        format!("{floor:.1} s"),
        format!("bounds the load's ratio to COPY at {}", pct(copy_seconds / floor)),
        String::new(),
        "",
    ));
    lines.push(line(
        "anchors: sink rows after the load vs the seed query's count",
        load.sink_rows.to_string(),
        seed_anchors.to_string(),
        String::new(),
        "equal",
    ));
    let (reference, ratio) = match per_change_us {
        Some(us) => (
            format!("replytime: {us:.1} µs wall per change (throughput stage)"),
            format!(
                "1 run = {:.0} changes",
                seed_seconds * 1e6 / us.max(f64::MIN_POSITIVE)
            ),
        ),
        None => (String::new(), String::new()),
    };
    lines.push(line(
        &format!(
            "seed design: 90-day LAG/LEAD window query at {} messages",
            data.messages
        ),
        format!("{seed_seconds:.2} s per run"),
        reference,
        ratio,
        "O(change) vs O(lookback)",
    ));
    lines.push(line(
        &format!(
            "peak RSS of the daemon, initial load of {} messages (VmHWM)",
            data.messages
        ),
        mib(load.peak_rss_bytes),
        String::new(),
        String::new(),
        "bounded",
    ));
    lines.push(line(
        &format!(
            "RocksDB directory after the load of {} messages",
            data.messages
        ),
        format!("{:.0} MiB", load.state_bytes as f64 / 1048576.0),
        format!("{:.0} bytes per source row", load.state_bytes as f64 / rows),
        String::new(),
        "",
    ));
}

fn pct(ratio: f64) -> String {
    format!("{:.0} %", ratio * 100.0)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("unknown".into(), |b| {
        format!("{:.0} MiB", b as f64 / 1048576.0)
    })
}

fn print_report(
    machine: &[(String, String)],
    settings: &Settings,
    lines: &[Line],
    elapsed: Duration,
) {
    println!("\n## replytime end-to-end benchmark\n");
    for (key, value) in machine {
        println!("- {key}: {value}");
    }
    println!("- load average at end: {}", machine::load_average());
    println!(
        "- settings: {:?} changes, rates {:?}/s for {} s each, {} messages, {} seed runs; took {:.0} s\n",
        settings.changes,
        settings.rates,
        settings.freshness.as_secs(),
        settings.messages,
        settings.seed_runs,
        elapsed.as_secs_f64()
    );
    println!("| figure | measured | reference | ratio | target |");
    println!("|---|---|---|---|---|");
    for l in lines {
        println!(
            "| {} | {} | {} | {} | {} |",
            l.figure, l.value, l.reference, l.ratio, l.target
        );
    }
}
