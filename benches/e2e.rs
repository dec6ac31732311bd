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
//! Each drain also prints the daemon's CPU per change in each tenth of the
//! backlog's WAL, sampled as the daemon applies it (its `replytime_lsn` gauge read
//! every 200 ms): whether the cost climbs with the state as the drain goes on.
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
//! - `REPLYTIME_BENCH_REPEATS` [3]: drains of each backlog smaller than
//!   1,000,000 changes, each on a database and state of its own from the same
//!   seed. Such a drain lasts seconds, and its daemon CPU per change moves by up
//!   to a fifth from one drain to the next on a quiet machine, while a 3M drain
//!   moves by about 1 %: the table shows the drain with the median daemon CPU per
//!   change (each drain's figure on a line of its own), and the growth ratios are
//!   taken against it. Freshness is measured on the last drain's daemon;
//! - `REPLYTIME_BENCH_RATES` [1000,5000]: freshness rates, row changes per second,
//!   measured after every backlog size (the first rate right after the drain, then
//!   every rate once the slot reached the WAL tip), each with the daemon's own
//!   breakdown of the time from commit to sink (`replytime_delivery_age_seconds`);
//! - `REPLYTIME_BENCH_FRESHNESS_SECONDS` [15]: seconds of traffic per rate;
//! - `REPLYTIME_BENCH_MESSAGES` [1000000]: pre-existing messages for the initial
//!   load, the seed query and the state size (10000000 for the 10M figures);
//! - `REPLYTIME_BENCH_SEED_RUNS` [3]: runs of the seed query (the median is shown);
//! - `REPLYTIME_BENCH_STAGES` [throughput,freshness,load]: which stages to run
//!   (freshness needs throughput's daemon);
//! - `REPLYTIME_BENCH_LEADS` [arriving]: the generator's leads. `arriving`: 2,000
//!   leads are in conversation at once, a new one arrives every `CHANGES_PER_LEAD`
//!   changes and the oldest goes quiet, and 5 % of picks revive any earlier lead or
//!   row (as in a CRM where new leads keep coming in: what a change touches is
//!   mostly recent, however long the backlog). Two adversarial pools: `scaled`
//!   gives each backlog one lead per `CHANGES_PER_LEAD` changes (at least 2,000),
//!   every one of them in play from the first change, so the state a change may
//!   touch is all of it and outgrows any cache; `fixed` keeps 2,000 leads at
//!   every size, so each lead's history grows with the backlog (a lead moving to
//!   another client relabels ever more anchors);
//! - `REPLYTIME_BENCH_REVIVAL` [0.05]: the share of picks of arriving leads that
//!   revive an earlier lead or row; 0 keeps every change within the leads in
//!   conversation, so the state a change touches is the same at every size;
//! - `REPLYTIME_BENCH_SINK` [source]: `separate` puts the sink in a database of
//!   its own in the same cluster (`REPLYTIME_SINK_URL`) for the throughput and
//!   freshness stages: logical decoding skips another database's WAL records
//!   without decoding them;
//! - `REPLYTIME_BENCH_DAEMON_LOG` [info]: the daemon's `RUST_LOG`;
//! - `REPLYTIME_BLOCK_CACHE_BYTES`, `REPLYTIME_READ_CACHE_BYTES`,
//!   `REPLYTIME_SINK_BATCH_OPS` [the daemon's defaults]: passed to the daemon when
//!   set (to compare cache splits and sink batch sizes).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "history/mod.rs"]
mod history;
#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "e2e/freshness.rs"]
mod freshness;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/machine.rs"]
mod machine;
#[path = "tenths/mod.rs"]
mod tenths;
#[path = "e2e/throughput.rs"]
mod throughput;

use std::time::{Duration, Instant};

use history::LeadPool;
use replytime::workload::Generator;

/// Daemon settings of every stage: production logging (info unless
/// `REPLYTIME_BENCH_DAEMON_LOG` says otherwise), JSON so the load's own timing can
/// be read back; the safety net of skipped reads off, as in production (the
/// tests' daemons turn it on); the cache sizes when the bench's environment sets
/// them.
fn daemon_env() -> Vec<(&'static str, String)> {
    let level = std::env::var("REPLYTIME_BENCH_DAEMON_LOG").unwrap_or_else(|_| "info".into());
    let mut env = vec![
        ("RUST_LOG", level),
        ("REPLYTIME_LOG_FORMAT", "json".into()),
        (replytime::fault::VERIFY_KNOWN_ABSENT_ENV, "0".into()),
    ];
    for name in [
        "REPLYTIME_BLOCK_CACHE_BYTES",
        "REPLYTIME_READ_CACHE_BYTES",
        "REPLYTIME_SINK_BATCH_OPS",
    ] {
        if let Ok(value) = std::env::var(name) {
            env.push((name, value));
        }
    }
    env
}

struct Settings {
    changes: Vec<u64>,
    rates: Vec<u64>,
    freshness: Duration,
    messages: u64,
    seed_runs: usize,
    repeats: usize,
    stages: Vec<String>,
    separate_sink: bool,
    leads: LeadPool,
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
            repeats: var("REPLYTIME_BENCH_REPEATS", 3).max(1),
            stages: list("REPLYTIME_BENCH_STAGES", "throughput,freshness,load"),
            separate_sink: match var("REPLYTIME_BENCH_SINK", "source".to_string()).as_str() {
                "source" => false,
                "separate" => true,
                other => panic!("REPLYTIME_BENCH_SINK={other:?}: source or separate"),
            },
            leads: LeadPool::parse(&var("REPLYTIME_BENCH_LEADS", "arriving".to_string())),
        }
    }

    fn runs(&self, stage: &str) -> bool {
        self.stages.iter().any(|s| s == stage)
    }

    /// Drains of a backlog of `changes` row changes (`REPLYTIME_BENCH_REPEATS`).
    fn drains(&self, changes: u64) -> usize {
        if changes < REPEATED_BELOW {
            self.repeats
        } else {
            1
        }
    }
}

/// Backlogs smaller than this are drained `REPLYTIME_BENCH_REPEATS` times.
const REPEATED_BELOW: u64 = 1_000_000;

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
        let mut last: Option<Drained> = None;
        for &changes in &settings.changes {
            // The daemon of the smaller backlog stops before the next one starts.
            if let Some(mut done) = last.take() {
                sink_table_lines(&done, &mut lines).await;
                // A clean stop: the daemon logs RocksDB's compaction stats as it closes.
                done.daemon.stop();
            }
            let leads = history::history_config(changes, settings.leads).leads;
            let mut runs = Vec::new();
            let mut latest: Option<Drained> = None;
            for _ in 0..settings.drains(changes) {
                // Each drain alone on the machine: the one before stops first.
                if let Some(mut earlier) = latest.take() {
                    earlier.daemon.stop();
                }
                let (figures, done) = drain(&settings, &env, changes).await;
                runs.push(figures);
                latest = Some(done);
            }
            let mut done = latest.expect("at least one drain");
            let figures = median_drain(runs, &mut lines);
            per_change_us = Some(throughput_lines(&figures, leads, &mut lines));
            // Freshness after every backlog size: what grows with the drain
            // shows against the smallest one, in the same run.
            if settings.runs("freshness") {
                freshness_stages(&settings, &mut done, &mut lines).await;
            }
            last = Some(done);
            drained.push(figures);
        }
        if let [first, .., largest] = drained.as_slice() {
            growth_lines(first, largest, &mut lines);
        }
        let mut done = last.expect("at least one backlog size");
        sink_table_lines(&done, &mut lines).await;
        lines.push(line(
            "peak RSS of the daemon after throughput + freshness (VmHWM)",
            mib(machine::peak_rss_bytes(done.daemon.child.id())),
            String::new(),
            String::new(),
            "bounded",
        ));
        done.daemon.stop();
        eprintln!("daemon log: {}", done.daemon.log.display());
    }

    if settings.runs("load") {
        load_lines(&settings, per_change_us, &env, &mut lines).await;
    }

    print_report(&machine, &settings, &lines, started.elapsed());
}

/// A drained backlog: its databases and daemon, still streaming, caught up.
struct Drained {
    /// First, so it stops before its state directory goes.
    daemon: support::Daemon,
    changes: u64,
    /// The daemon's `/metrics` address.
    metrics_addr: String,
    db: common::TestDb,
    /// The sink's own database (`REPLYTIME_BENCH_SINK=separate`).
    sink: Option<common::TestDb>,
    _dir: tempfile::TempDir,
    generator: Option<Generator>,
}

impl Drained {
    fn sink_url(&self) -> &str {
        self.sink.as_ref().map_or(&self.db.url, |s| &s.url)
    }
}

/// Writes a backlog of `changes` generator row changes into a fresh database and
/// drains it with `pg_recvlogical` and with a daemon on a fresh state.
async fn drain(
    settings: &Settings,
    env: &[(&str, &str)],
    changes: u64,
) -> (throughput::Figures, Drained) {
    let db = fresh_source().await;
    let sink = if settings.separate_sink {
        Some(common::fresh_database().await)
    } else {
        None
    };
    let mut env = env.to_vec();
    let metrics_addr = format!("127.0.0.1:{}", support::free_port());
    env.push(("REPLYTIME_METRICS_ADDR", metrics_addr.as_str()));
    if let Some(sink) = &sink {
        env.push(("REPLYTIME_SINK_URL", sink.url.as_str()));
    }
    let dir = tempfile::tempdir().expect("state tempdir");
    let state = dir.path().join("state");
    // Each backlog (and each drain of it) its own generator, from the same seed.
    let mut generator = history::generator(changes, settings.leads);
    let sink_client = sink.as_ref().map_or(&db.client, |s| &s.client);
    let (figures, daemon) = throughput::run(
        &db,
        sink_client,
        &state,
        &mut generator,
        changes,
        &env,
        &metrics_addr,
    )
    .await;
    let done = Drained {
        metrics_addr: metrics_addr.clone(),
        changes: figures.changes,
        db,
        sink,
        _dir: dir,
        generator: Some(generator),
        daemon,
    };
    (figures, done)
}

/// The drain with the median daemon CPU per change among `runs` of the same
/// backlog; with more than one, a line lists every drain's figure.
fn median_drain(mut runs: Vec<throughput::Figures>, lines: &mut Vec<Line>) -> throughput::Figures {
    let per_change = |f: &throughput::Figures| f.replytime_daemon_cpu / f.changes as f64 * 1e6;
    if runs.len() > 1 {
        lines.push(line(
            &format!(
                "daemon CPU per change, {} drains of the same backlog, in order",
                runs.len()
            ),
            runs.iter()
                .map(|f| format!("{:.1} µs", per_change(f)))
                .collect::<Vec<_>>()
                .join(", "),
            "the median drain stands for this backlog below".into(),
            String::new(),
            "",
        ));
    }
    runs.sort_by(|a, b| per_change(a).total_cmp(&per_change(b)));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

/// Freshness at the first rate right after the drain, then, once the slot's
/// `confirmed_flush_lsn` reached the WAL tip (the walsender read everything the
/// drain left behind it, the sink's own writes included), at every rate.
async fn freshness_stages(settings: &Settings, done: &mut Drained, lines: &mut Vec<Line>) {
    let slot = support::slot_for(&done.db.url);
    let sink_url = done.sink_url().to_string();
    let mut generator = done.generator.take().expect("the backlog's generator");
    if let Some(&first) = settings.rates.first() {
        let (figures, back) = freshness::run(
            &done.db.url,
            &sink_url,
            &done.metrics_addr,
            generator,
            first,
            settings.freshness,
        )
        .await;
        generator = back;
        let when = format!("backlog {}, right after the drain", done.changes);
        freshness_lines(&figures, &when, lines);
    }
    let waited = Instant::now();
    let tip = support::current_lsn(&done.db.client).await;
    while support::confirmed_lsn(&done.db.client, &slot)
        .await
        .is_none_or(|c| c < tip)
    {
        assert!(
            waited.elapsed() < Duration::from_secs(600),
            "the slot did not reach the WAL tip {tip} within 10 min"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "freshness: slot at the WAL tip {:.1} s after the first stage",
        waited.elapsed().as_secs_f64()
    );
    for &rate in &settings.rates {
        let (figures, back) = freshness::run(
            &done.db.url,
            &sink_url,
            &done.metrics_addr,
            generator,
            rate,
            settings.freshness,
        )
        .await;
        generator = back;
        let when = format!("backlog {}, walsender caught up", done.changes);
        freshness_lines(&figures, &when, lines);
    }
    done.generator = Some(generator);
}

/// What the sink's writes cost Postgres for one backlog: rows by kind (updates
/// that were HOT apart) and WAL per change, from `pg_stat_user_tables` (which also
/// counts what freshness stages after the drain wrote).
async fn sink_table_lines(done: &Drained, lines: &mut Vec<Line>) {
    // The sink session's counters reach pg_stat_user_tables at most once a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let sink = done.sink.as_ref().map_or(&done.db.client, |s| &s.client);
    let stats = throughput::SinkTableStats::read(sink).await;
    let per_change = |n: i64| n as f64 / done.changes as f64;
    lines.push(line(
        &format!("sink table rows written, backlog {}", done.changes),
        format!(
            "{} inserted, {} updated ({} HOT), {} deleted",
            stats.inserted, stats.updated, stats.hot_updated, stats.deleted
        ),
        format!(
            "per change: {:.2} inserted, {:.2} updated, {:.2} deleted",
            per_change(stats.inserted),
            per_change(stats.updated),
            per_change(stats.deleted)
        ),
        String::new(),
        "",
    ));
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
fn throughput_lines(f: &throughput::Figures, leads: usize, lines: &mut Vec<Line>) -> f64 {
    let changes = f.changes as f64;
    let recv = changes / f.recv_seconds;
    let ours = changes / f.replytime_seconds;
    lines.push(line(
        "WAL drained",
        format!(
            "{} row changes, {} txns, {} leads, {:.0} MB WAL",
            f.changes,
            f.transactions,
            leads,
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
    let stretches: Vec<String> = f
        .tenths
        .iter()
        .map(|t| {
            let tenths = if t.to == t.from + 1 {
                format!("{}", t.to)
            } else {
                format!("{}–{}", t.from + 1, t.to)
            };
            format!("{tenths}: {:.1}", t.us_per_change)
        })
        .collect();
    lines.push(line(
        "  daemon CPU per change (µs) by tenth of the backlog's WAL, as the daemon applied it (the first with start-up, the last with the sink's last writes)",
        stretches.join(", "),
        String::new(),
        String::new(),
        "",
    ));
    lines.push(line(
        "  RocksDB flush and compaction threads: CPU in the drain; 5.5 s after it",
        format!(
            "{:.2} s; {:.2} s",
            f.replytime_rocksdb_background_cpu, f.rocksdb_background_cpu_after
        ),
        format!(
            "{:.1} µs/change in the drain, {:.1} µs/change after",
            f.replytime_rocksdb_background_cpu / changes * 1e6,
            (f.rocksdb_background_cpu_after - f.replytime_rocksdb_background_cpu) / changes * 1e6
        ),
        String::new(),
        "",
    ));
    lines.push(line(
        "  WAL written while draining (the sink's writes, heartbeats, autovacuum)",
        format!("{:.0} MB", f.drain_wal_bytes as f64 / 1e6),
        format!("{:.0} bytes per change", f.drain_wal_bytes as f64 / changes),
        format!(
            "{:.2} of the backlog's WAL",
            f.drain_wal_bytes as f64 / f.wal_bytes as f64
        ),
        "",
    ));
    let c = &f.counters;
    let sink_rows = c.upserted + c.deleted;
    let written = c.upserted + c.deleted + c.unchanged;
    lines.push(line(
        "  sink transactions; outbox operations they coalesced away",
        format!("{:.0}; {:.0}", c.batches, c.coalesced),
        format!(
            "{:.0} operations per transaction; {:.2} of those read coalesced",
            written / c.batches.max(1.0),
            c.coalesced / (written + c.coalesced).max(1.0)
        ),
        String::new(),
        "",
    ));
    lines.push(line(
        "  anchors refreshed by the daemon; sink rows it wrote",
        format!(
            "{:.0} derived, {:.0} relabelled; {:.0} upserted, {:.0} deleted, {:.0} unchanged",
            c.derived, c.relabelled, c.upserted, c.deleted, c.unchanged
        ),
        format!(
            "per change: {:.2} derived, {:.2} relabelled, {:.2} sink rows written",
            c.derived / changes,
            c.relabelled / changes,
            sink_rows / changes
        ),
        String::new(),
        "",
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
            "  of it, RocksDB's flush and compaction threads",
            per_change(large.replytime_rocksdb_background_cpu, large),
            per_change(small.replytime_rocksdb_background_cpu, small),
            "",
        ),
        (
            "  of it, every other thread (decoding, the engine, the sink task)",
            per_change(
                large.replytime_daemon_cpu - large.replytime_rocksdb_background_cpu,
                large,
            ),
            per_change(
                small.replytime_daemon_cpu - small.replytime_rocksdb_background_cpu,
                small,
            ),
            "",
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
    // The work behind each change: anchors relabelled and sink rows written grow
    // with the history of each lead when leads move between clients (a fixed lead
    // pool lets that history grow with the backlog).
    let work = |f: &throughput::Figures| {
        let changes = f.changes as f64;
        let c = &f.counters;
        [
            c.derived / changes,
            c.relabelled / changes,
            (c.upserted + c.deleted) / changes,
            f.drain_wal_bytes as f64 / changes,
        ]
    };
    let names = [
        "anchors derived per change",
        "anchors relabelled per change",
        "sink rows written per change",
        "WAL bytes written while draining, per change",
    ];
    for (what, (at_large, at_small)) in names
        .into_iter()
        .zip(work(large).into_iter().zip(work(small)))
    {
        lines.push(line(
            &format!("{what}, backlog {sizes}"),
            format!("{at_large:.2}"),
            format!("{at_small:.2}"),
            format!("{:.2}", at_large / at_small),
            "",
        ));
    }
    read_growth_lines(small, large, &sizes, lines);
    lines.push(line(
        &format!("drain rate relative to pg_recvlogical, backlog {sizes}"),
        pct(rate(large)),
        pct(rate(small)),
        format!("{:.2}", rate(large) / rate(small)),
        "",
    ));
}

/// The state's reads per change at both sizes, and the caches' hit rates.
fn read_growth_lines(
    small: &throughput::Figures,
    large: &throughput::Figures,
    sizes: &str,
    lines: &mut Vec<Line>,
) {
    let per_change = |f: &throughput::Figures| f.counters.reads.map(|(_, n)| n / f.changes as f64);
    let (at_large, at_small) = (per_change(large), per_change(small));
    for (index, (label, _)) in throughput::READS.iter().enumerate() {
        lines.push(line(
            &format!("{label} per change, backlog {sizes}"),
            format!("{:.3}", at_large[index]),
            format!("{:.3}", at_small[index]),
            format!("{:.2}", at_large[index] / at_small[index]),
            "",
        ));
    }
    // Hit rates: (label, index of the hits in READS, index of the misses).
    let rates = [
        ("read cache point hit rate", 0, 1),
        ("read cache range hit rate", 2, 3),
        ("block cache data hit rate", 10, 11),
        ("block cache index hit rate", 12, 13),
        ("block cache filter hit rate", 14, 15),
    ];
    let rate = |f: &throughput::Figures, hits: usize, misses: usize| {
        let (h, m) = (f.counters.reads[hits].1, f.counters.reads[misses].1);
        h / (h + m)
    };
    for (label, hits, misses) in rates {
        let (l, s) = (rate(large, hits, misses), rate(small, hits, misses));
        lines.push(line(
            &format!("{label}, backlog {sizes}"),
            pct(l),
            pct(s),
            format!("{:.2}", l / s),
            "",
        ));
    }
}

fn freshness_lines(f: &freshness::Figures, when: &str, lines: &mut Vec<Line>) {
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
    for (stage, p50, p99, count) in &f.stages {
        eprintln!(
            "freshness at {}/s: {stage}: p50 {p50:.1} ms, p99 {p99:.1} ms ({count:.0} observations)",
            f.rate
        );
    }
    lines.push(line(
        &format!(
            "freshness at {} changes/s, {when}: commit → row in sink",
            f.rate
        ),
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
    let stages: Vec<String> = f
        .stages
        .iter()
        .map(|(stage, p50, p99, _)| format!("{stage} p50 {p50:.1} / p99 {p99:.1} ms"))
        .collect();
    lines.push(line(
        &format!("  the daemon's view at {} changes/s, {when}", f.rate),
        stages.join("; "),
        "from its histograms (bucket-interpolated; per sink batch for the sink stages)".into(),
        String::new(),
        "",
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
        "- settings: {:?} changes ({}), rates {:?}/s for {} s each, {} messages, {} seed runs; took {:.0} s\n",
        settings.changes,
        settings.leads.describe(),
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
