//! The streaming engine against the batch oracle on random histories (SPEC 3–4):
//! after every transaction, the sink as fed by the engine's operations equals the
//! oracle of the current tables, row for row and column for column; re-applying any
//! suffix of applied transactions changes nothing.
//!
//! Time-budgeted and replayable: `REPLYTIME_PROPTEST_SEED=<seed>` replays one
//! history; `REPLYTIME_PROPTEST_CASES` and `REPLYTIME_PROPTEST_SECONDS` make the run
//! longer (defaults: 2,000 and 500 cases within 150 s and 45 s; the histories are
//! short, 12–41 transactions each, and every one is checked after each transaction).

#[path = "engine/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::Harness;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use replytime::change::TxnMeta;
use replytime::engine::EngineOptions;
use replytime::lsn::Lsn;
use replytime::oracle::{SourceTables, derive};
use replytime::store::{Store, StoreOptions};
use replytime::workload::{HistoryConfig, history, seed_from_env};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn small_config(seed: u64) -> HistoryConfig {
    HistoryConfig {
        transactions: 12 + (seed % 30) as usize,
        ..HistoryConfig::default()
    }
}

/// How a history's transactions reach the state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// One RocksDB commit per transaction.
    Each,
    /// Staged in groups of 1–5 (by seed) that commit together, as the streaming
    /// loop does with small transactions.
    Grouped,
}

/// Applies the history transaction by transaction (or group by group), comparing
/// after each commit; then re-applies a suffix. Returns a description of the first
/// difference.
fn check_history(
    store: &Arc<Store>,
    seed: u64,
    options: EngineOptions,
    commit: Commit,
) -> Result<(), String> {
    let config = small_config(seed);
    let txns = history(seed, &config);
    let log_events = options.log_events;
    let mut h = Harness::reusing(store.clone(), options.clone());
    let mut tables = SourceTables::default();
    let mut metas: Vec<TxnMeta> = Vec::new();
    let group = 1 + (seed % 5) as usize;
    for (i, changes) in txns.iter().enumerate() {
        for change in changes {
            tables.apply(change);
        }
        match commit {
            Commit::Each => metas.push(h.txn(changes.clone())),
            Commit::Grouped => {
                let meta = h.next_meta();
                h.engine
                    .apply(meta.commit_lsn, changes.clone())
                    .map_err(|e| e.to_string())?;
                // A transaction with a TRUNCATE is applied in chunks and commits
                // at once (after the staged ones); small ones are staged.
                let committed = h.engine.commit(&meta).map_err(|e| e.to_string())?;
                metas.push(meta);
                if (i + 1) % group != 0 && i + 1 != txns.len() {
                    continue;
                }
                let committed = match committed {
                    Some(committed) => committed,
                    None => h
                        .engine
                        .flush()
                        .map_err(|e| e.to_string())?
                        .ok_or("a staged group commits")?,
                };
                let last = committed.0;
                if last != meta {
                    return Err(format!(
                        "seed {seed}: the group ended at {last:?}, not {meta:?}"
                    ));
                }
                if store.applied_lsn().map_err(|e| e.to_string())? != meta.end_lsn {
                    return Err(format!("seed {seed}: applied LSN is not the group's end"));
                }
                h.drain_outbox();
            }
        }
        let expected = derive(&tables);
        if h.sink != expected {
            return Err(describe(seed, i, &h.sink, &expected));
        }
    }
    let start = (seed as usize / 7) % txns.len().max(1);
    let before = h.sink.clone();
    // Re-applied in chunks of two changes (as a large transaction is applied),
    // then whole: the event log is written over in other chunk bounds each time.
    h.restart(EngineOptions {
        chunk_changes: 2,
        ..options.clone()
    });
    for (meta, changes) in metas[start..].iter().zip(&txns[start..]) {
        h.apply_whole(meta, changes).map_err(|e| e.to_string())?;
    }
    h.restart(options);
    for (meta, changes) in metas[start..].iter().zip(&txns[start..]) {
        h.apply_whole(meta, changes).map_err(|e| e.to_string())?;
    }
    h.drain_outbox();
    if h.sink != before {
        return Err(format!(
            "seed {seed}: re-applying the suffix from transaction {start} changed the sink\n{}",
            describe(seed, txns.len(), &h.sink, &before)
        ));
    }
    if log_events {
        let logged = store
            .logged_transactions(Lsn::ZERO, usize::MAX)
            .map_err(|e| e.to_string())?;
        let logged: Vec<_> = logged.iter().map(|t| (&t.meta, &t.changes)).collect();
        let applied: Vec<_> = metas.iter().zip(&txns).collect();
        if logged != applied {
            return Err(format!(
                "seed {seed}: the event log does not hold the {} transactions applied",
                applied.len()
            ));
        }
    }
    Ok(())
}

fn describe(
    seed: u64,
    txn: usize,
    got: &std::collections::BTreeMap<String, replytime::row::TimingRow>,
    want: &std::collections::BTreeMap<String, replytime::row::TimingRow>,
) -> String {
    let mut lines = vec![format!(
        "seed {seed}: sink differs from the oracle after transaction {txn}"
    )];
    for (id, row) in want {
        match got.get(id) {
            None => lines.push(format!("  missing row {id}: {row:?}")),
            Some(g) if g != row => {
                lines.push(format!("  row {id}\n    got  {g:?}\n    want {row:?}"))
            }
            _ => {}
        }
    }
    for id in got.keys().filter(|id| !want.contains_key(*id)) {
        lines.push(format!("  extra row {id}"));
    }
    lines.join("\n")
}

fn run_property(
    name: &str,
    options: EngineOptions,
    store_options: StoreOptions,
    commit: Commit,
    default_cases: u64,
    default_seconds: u64,
) {
    let open = || {
        let dir = harness::temp_dir();
        let store = Arc::new(Store::open(dir.path(), &store_options).unwrap());
        (dir, store)
    };
    let (dir, store) = open();
    if let Some(seed) = seed_from_env() {
        check_history(&store, seed, options, commit).unwrap();
        return;
    }
    let cases = env_number("REPLYTIME_PROPTEST_CASES", default_cases) as u32;
    let budget = Duration::from_secs(env_number("REPLYTIME_PROPTEST_SECONDS", default_seconds));
    let started = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ran = std::sync::atomic::AtomicU64::new(0);
    // Opening RocksDB costs more than a history: one store serves 10 histories,
    // emptied between them, then a fresh one keeps tombstones from piling up.
    let current = std::sync::Mutex::new((dir, store));
    let result = runner.run(&any::<u64>(), |seed| {
        if started.elapsed() > budget {
            return Ok(());
        }
        let n = ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut current = current.lock().unwrap();
        if n > 0 && n.is_multiple_of(10) {
            *current = open();
        }
        check_history(&current.1, seed, options.clone(), commit).map_err(|e| {
            TestCaseError::fail(format!("{e}\nreplay: REPLYTIME_PROPTEST_SEED={seed} cargo test --test engine_vs_oracle {name}"))
        })
    });
    eprintln!(
        "{name}: {} histories in {:.1} s",
        ran.into_inner(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn engine_equals_oracle_after_every_transaction() {
    run_property(
        "engine_equals_oracle_after_every_transaction",
        EngineOptions::default(),
        StoreOptions::default(),
        Commit::Each,
        2_000,
        150,
    );
}

/// Also with a read cache of a few entries: nearly every read misses, and what
/// is cached is evicted and filled again between commits.
#[test]
fn engine_equals_oracle_with_tiny_chunks_and_spills() {
    let options = EngineOptions {
        log_events: true,
        dirty_spill: 2,
        refresh_batch: 3,
        ..EngineOptions::default()
    };
    let store_options = StoreOptions {
        read_cache_bytes: 2048,
        ..StoreOptions::default()
    };
    run_property(
        "engine_equals_oracle_with_tiny_chunks_and_spills",
        options,
        store_options,
        Commit::Each,
        500,
        45,
    );
}

#[test]
fn engine_equals_oracle_with_group_commit() {
    let options = EngineOptions {
        log_events: true,
        dirty_spill: 4,
        refresh_batch: 3,
        ..EngineOptions::default()
    };
    run_property(
        "engine_equals_oracle_with_group_commit",
        options,
        StoreOptions::default(),
        Commit::Grouped,
        1_000,
        60,
    );
}
