//! The engine and its state alone, draining the e2e bench's generator backlog: the
//! part of the daemon's cost per change that can grow with the backlog, measured in
//! minutes, without Postgres.
//!
//! ```text
//!  generator (history/, same seed and leads as e2e) ─▶ transactions in memory (untimed)
//!    ─▶ timed: Engine::apply per change, Engine::commit per transaction, group
//!       commits as the streaming loop makes them ─▶ Store (RocksDB, read cache)
//!              └─ beside it, a thread in the sink task's place: outbox read in
//!                 batches, Store::sync, outbox trimmed; event-log retention
//! ```
//!
//! What it measures, per change, over the apply phase only: the applying thread's
//! CPU (the engine, the read cache, RocksDB reads and commits on that thread), the
//! outbox consumer's and the retention's CPU, and RocksDB's flush and compaction
//! threads (the process's CPU less both); the state's reads (read cache hits,
//! RocksDB gets and seeks, block cache hits) and the work behind each change. After
//! the largest backlog, what the state's bytes are made of.
//!
//! What it leaves out, which does not grow with the backlog: decoding pgoutput, the
//! replication connection and its confirmations, Postgres itself, and the sink's
//! writes over the network (the consumer drops what it reads). Its cost per change
//! is therefore below the daemon's in `cargo bench --bench e2e`, and the ratio of
//! the largest backlog to the smallest above it: the parts that stay flat are not
//! in the denominator.
//!
//! The daemon's settings, as the daemon reads them: defaults, overridden by the
//! `REPLYTIME_*` environment (`REPLYTIME_READ_CACHE_BYTES`,
//! `REPLYTIME_BLOCK_CACHE_BYTES`, `REPLYTIME_CHUNK_CHANGES`,
//! `REPLYTIME_SINK_BATCH_OPS`, `REPLYTIME_EVENT_LOG_MAX_BYTES`, ...); the engine
//! options of the daemon's stream (`fresh_inserts` on, the event log kept).
//!
//! Run: `cargo bench --bench backlog` (4.5–7 minutes on 2 cores with the
//! defaults, most of it applying the 3M backlog, which takes about its 3.5 min
//! of CPU on a quiet machine; generating it takes about 13 s, untimed).
//! Environment variables (defaults in brackets):
//! - `REPLYTIME_BENCH_CHANGES` [300000,3000000]: backlog sizes, each applied to a
//!   state of its own; the first is the baseline of the ratios;
//! - `REPLYTIME_BENCH_REPEATS` [3]: runs of each backlog smaller than 1,000,000
//!   changes, each on a fresh state; the one with the median total CPU per change
//!   is shown (every run on a line of its own);
//! - `REPLYTIME_BENCH_LEADS` [arriving]: the generator's lead pool, as in e2e;
//! - `REPLYTIME_BENCH_REVIVAL` [0.05]: the share of picks of arriving leads that
//!   revive an earlier lead or row, as in e2e.
//!
//! Besides the totals it prints the applying thread's CPU per change in each
//! tenth of every drain, which shows whether the cost grows with the state as
//! the state grows or steps at one point (a flush, the first compaction).

#[path = "backlog/consumer.rs"]
mod consumer;
#[path = "history/mod.rs"]
mod history;
#[path = "backlog/report.rs"]
mod report;
#[path = "tenths/mod.rs"]
mod tenths;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use consumer::{Consumed, Consumer};

use history::LeadPool;
use replytime::change::{Change, Timestamp, TxnMeta};
use replytime::config::{Overrides, Settings};
use replytime::engine::{Engine, EngineOptions};
use replytime::lsn::Lsn;
use replytime::store::{ReadCounts, Store, StoreOptions};
use tenths::{Stretch, Tenths};

/// The daemon's allocator (src/main.rs): RocksDB's allocations go through it too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// WAL bytes per change of the e2e backlog (115 MB for 300,001 changes, 1,175 MB
/// for 3M): the LSNs advance as the real WAL's would, so the event log's
/// retention by WAL span (`event_log_max_bytes`) starts where it would.
const WAL_BYTES_PER_CHANGE: u64 = 390;

/// The streaming loop's group commit (`GROUP_MAX_WAIT` in
/// src/pipeline/streaming.rs): staged transactions commit once the oldest has
/// waited this long (or once they hold `chunk_changes` changes, in the engine).
/// During a drain the stream always has more to read, so this is what ends a group.
const GROUP_MAX_WAIT: Duration = Duration::from_millis(20);

/// Backlogs smaller than this are applied `REPLYTIME_BENCH_REPEATS` times.
const REPEATED_BELOW: u64 = 1_000_000;

fn main() {
    // `RUST_LOG` shows the store's own logs, e.g. what it read from RocksDB and
    // what the read cache holds when it closes (`RUST_LOG=replytime::store=info`).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let bench = Bench::from_env();
    let started = Instant::now();
    let mut results: Vec<(Applied, Vec<f64>)> = Vec::new();
    let mut composition = None;
    for (index, &changes) in bench.changes.iter().enumerate() {
        let runs = if changes < REPEATED_BELOW {
            bench.repeats
        } else {
            1
        };
        let largest = index + 1 == bench.changes.len();
        let mut applied = Vec::new();
        for run in 0..runs {
            let backlog = Backlog::generate(changes, bench.leads);
            let (figures, store) = apply(&bench, backlog);
            eprintln!(
                "backlog {changes}, run {}: {:.1} µs per change ({:.1} s)",
                run + 1,
                figures.total_cpu_us(),
                figures.wall_seconds
            );
            if largest && run + 1 == runs {
                composition = Some(store.state_composition().expect("scan the state"));
            }
            // The store closes (and its RocksDB threads stop) before the next run.
            drop(store);
            applied.push(figures);
        }
        results.push(median(applied));
    }
    report::print(&bench, &results, composition.as_ref(), started.elapsed());
}

/// The bench's settings and the daemon's.
struct Bench {
    changes: Vec<u64>,
    repeats: usize,
    leads: LeadPool,
    settings: Settings,
}

impl Bench {
    fn from_env() -> Bench {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
        let changes = var("REPLYTIME_BENCH_CHANGES", "300000,3000000")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|n| n.parse().expect("REPLYTIME_BENCH_CHANGES: numbers"))
            .collect();
        let repeats = var("REPLYTIME_BENCH_REPEATS", "3")
            .trim()
            .parse::<usize>()
            .expect("REPLYTIME_BENCH_REPEATS: a number")
            .max(1);
        // The daemon's settings from the same environment; the source URL is
        // required by validation only, nothing connects to it.
        let env = |name: &str| match name {
            "REPLYTIME_SOURCE_URL" => Some("postgres://bench@127.0.0.1/bench".into()),
            "REPLYTIME_SINK_URL" | "REPLYTIME_CONFIG" => None,
            _ => std::env::var(name).ok(),
        };
        let settings = Settings::load(None, &env, &Overrides::default())
            .unwrap_or_else(|e| panic!("daemon settings from the environment: {e}"));
        Bench {
            changes,
            repeats,
            leads: LeadPool::parse(&var("REPLYTIME_BENCH_LEADS", "arriving")),
            settings,
        }
    }

    /// The daemon's store options (`Store::open` in `replytime run`).
    fn store_options(&self) -> StoreOptions {
        StoreOptions::for_settings(&self.settings)
    }

    /// The engine options of the daemon's stream (src/pipeline/mod.rs): the
    /// source's ids are unique, so inserts skip the reads `fresh.rs` proves
    /// absent; the safety net of skipped reads off, as in production.
    fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            chunk_changes: self.settings.chunk_changes,
            fresh_inserts: true,
            verify_known_absent: false,
            ..EngineOptions::default()
        }
    }
}

/// One source transaction as the stream delivers it.
struct Txn {
    meta: TxnMeta,
    changes: Vec<Change>,
}

/// A generated backlog, in memory before the timed part starts.
struct Backlog {
    txns: Vec<Txn>,
    changes: u64,
    generate_seconds: f64,
}

impl Backlog {
    /// The e2e throughput stage's backlog: its generator's transactions until
    /// they hold `target` changes (`write_changes` in benches/e2e/throughput.rs),
    /// at LSNs spaced like its WAL and commit times of now.
    fn generate(target: u64, leads: LeadPool) -> Backlog {
        let started = Instant::now();
        let mut generator = history::generator(target, leads);
        let now = chrono::Utc::now().timestamp_micros();
        let mut lsn = 0x0100_0000u64;
        let (mut txns, mut changes) = (Vec::new(), 0u64);
        while changes < target {
            let txn = generator.next_transaction();
            changes += txn.len() as u64;
            if txn.is_empty() {
                // An empty transaction reaches no consumer (pgoutput skips it).
                continue;
            }
            lsn += txn.len() as u64 * WAL_BYTES_PER_CHANGE;
            let meta = TxnMeta {
                commit_lsn: Lsn(lsn),
                end_lsn: Lsn(lsn + 48),
                commit_time: Timestamp(now + txns.len() as i64),
            };
            txns.push(Txn { meta, changes: txn });
        }
        Backlog {
            txns,
            changes,
            generate_seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Figures of one run over one backlog.
struct Applied {
    changes: u64,
    transactions: u64,
    generate_seconds: f64,
    wall_seconds: f64,
    /// CPU seconds: the applying thread, the outbox consumer and retention
    /// thread, the whole process (RocksDB's threads are the rest).
    apply_cpu: f64,
    /// The applying thread's CPU per change along the drain, by tenth of the
    /// changes applied (a transaction counts in the tenth it starts in).
    tenths: Vec<Stretch>,
    consumer_cpu: f64,
    process_cpu: f64,
    /// State commits (groups and chunks) the engine made.
    commits: u64,
    consumer: Consumed,
    derived: u64,
    relabelled: u64,
    upserts: u64,
    deletes: u64,
    reads: ReadCounts,
}

impl Applied {
    fn per_change_us(&self, seconds: f64) -> f64 {
        seconds / self.changes as f64 * 1e6
    }

    fn background_cpu(&self) -> f64 {
        (self.process_cpu - self.apply_cpu - self.consumer_cpu).max(0.0)
    }

    fn total_cpu_us(&self) -> f64 {
        self.per_change_us(self.process_cpu)
    }
}

/// Applies `backlog` to a fresh store the way the daemon's stream does, with the
/// outbox consumed beside it; returns the figures and the store, still open.
fn apply(bench: &Bench, backlog: Backlog) -> (Applied, StoreInDir) {
    let dir = tempfile::tempdir().expect("state tempdir");
    let store = Arc::new(Store::open(&dir.path().join("state"), &bench.store_options()).unwrap());
    let mut engine = Engine::new(store.clone(), bench.engine_options());
    let consumer = Consumer::spawn(&store, &bench.settings);
    let (changes, transactions) = (backlog.changes, backlog.txns.len() as u64);
    let mut committed = Committed::default();

    let (wall, thread, process) = (Instant::now(), cpu::thread(), cpu::process());
    let (mut tenths, mut applied) = (Tenths::new(changes, changes, thread), 0);
    let mut staged_since: Option<Instant> = None;
    for txn in backlog.txns {
        tenths.reached(applied, || Some(cpu::thread()));
        applied += txn.changes.len() as u64;
        for change in txn.changes {
            let chunk = engine.apply(txn.meta.commit_lsn, [change]).expect("apply");
            if let Some((last, _)) = chunk {
                staged_since = None;
                committed.record(&mut engine, &consumer, last.end_lsn);
            }
        }
        if let Some((last, _)) = engine.commit(&txn.meta).expect("commit") {
            staged_since = None;
            committed.record(&mut engine, &consumer, last.end_lsn);
            continue;
        }
        if staged_since.get_or_insert_with(Instant::now).elapsed() >= GROUP_MAX_WAIT {
            staged_since = None;
            if let Some((last, _)) = engine.flush().expect("flush") {
                committed.record(&mut engine, &consumer, last.end_lsn);
            }
        }
    }
    if let Some((last, _)) = engine.flush().expect("flush") {
        committed.record(&mut engine, &consumer, last.end_lsn);
    }
    let apply_cpu = cpu::thread() - thread;
    let tenths = tenths.finish(cpu::thread());
    // The consumer delivers the rest of the outbox, as the sink task would.
    let consumed = consumer.finish();
    let (wall_seconds, process_cpu) = (wall.elapsed().as_secs_f64(), cpu::process() - process);
    drop(engine);
    let figures = Applied {
        changes,
        transactions,
        generate_seconds: backlog.generate_seconds,
        wall_seconds,
        apply_cpu,
        tenths,
        consumer_cpu: consumed.cpu,
        process_cpu,
        commits: committed.commits,
        consumer: consumed,
        derived: committed.derived,
        relabelled: committed.relabelled,
        upserts: committed.upserts,
        deletes: committed.deletes,
        reads: store.read_counts(),
    };
    (figures, StoreInDir { store, _dir: dir })
}

/// A store and the temporary directory it lives in (removed after it closes).
struct StoreInDir {
    store: Arc<Store>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for StoreInDir {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// The streaming loop's bookkeeping after each state commit.
#[derive(Default)]
struct Committed {
    commits: u64,
    derived: u64,
    relabelled: u64,
    upserts: u64,
    deletes: u64,
}

impl Committed {
    fn record(&mut self, engine: &mut Engine, consumer: &Consumer, end_lsn: Lsn) {
        self.commits += 1;
        // The daemon hands these to its metrics after every commit.
        let stats = engine.take_stats();
        self.derived += stats.derived;
        self.relabelled += stats.relabelled;
        self.upserts += stats.upserts;
        self.deletes += stats.deletes;
        consumer.applied.fetch_max(end_lsn.0, Ordering::SeqCst);
    }
}

/// The run with the median total CPU per change.
fn median(mut runs: Vec<Applied>) -> (Applied, Vec<f64>) {
    let all: Vec<f64> = runs.iter().map(Applied::total_cpu_us).collect();
    runs.sort_by(|a, b| a.total_cpu_us().total_cmp(&b.total_cpu_us()));
    let middle = runs.len() / 2;
    (runs.swap_remove(middle), all)
}

/// CPU clocks of this thread and of the whole process, in seconds.
mod cpu {
    fn clock(id: libc::clockid_t) -> f64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec for the call's duration, and
        // both clock ids exist on Linux.
        let rc = unsafe { libc::clock_gettime(id, &mut now) };
        assert_eq!(rc, 0, "clock_gettime({id})");
        now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
    }

    /// The calling thread's CPU time.
    pub fn thread() -> f64 {
        clock(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    /// Every thread's CPU time, RocksDB's included.
    pub fn process() -> f64 {
        clock(libc::CLOCK_PROCESS_CPUTIME_ID)
    }
}
