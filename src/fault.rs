//! Named fault-injection points for crash tests (SPEC 5 "proof points").
//!
//! `REPLYTIME_FAULT=<point>[:<n>]` aborts the process (as kill -9 would) the n-th
//! time (default 1st) execution reaches `<point>`. Unset in production: one relaxed
//! atomic load per call.
//!
//! `REPLYTIME_VERIFY_KNOWN_ABSENT=1` turns on the safety net of the reads the engine
//! skips because it has proven their key absent (`engine::fresh`): each is made
//! anyway and a key found panics with [`KNOWN_ABSENT_FOUND`]. The tests that run
//! the binary set it; unset in production.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// After a transaction's state and outbox are committed to RocksDB, before the sink.
pub(crate) const AFTER_STATE_WRITE: &str = "after_state_write";
/// After the sink committed a batch, before the outbox is trimmed and the LSN confirmed.
pub(crate) const AFTER_SINK_COMMIT: &str = "after_sink_commit";
/// Between two chunks of a large transaction (or two pages of a TRUNCATE), after
/// the first was committed to RocksDB.
pub(crate) const BETWEEN_CHUNKS: &str = "between_chunks";
/// Inside the initial load, after the first batch of copied rows was applied.
pub(crate) const INSIDE_INITIAL_LOAD: &str = "inside_initial_load";
/// After the initial load derived every anchor (the sink may be delivering them),
/// before the load is marked done.
pub(crate) const BEFORE_LOAD_DONE: &str = "before_load_done";

/// The variable that turns the safety net of skipped reads on (any value but `0`).
pub const VERIFY_KNOWN_ABSENT_ENV: &str = "REPLYTIME_VERIFY_KNOWN_ABSENT";

/// What the safety net panics with when a read skipped as known absent would have
/// found its key (tests look for it in a daemon's log).
pub const KNOWN_ABSENT_FOUND: &str = "a read skipped as known absent found its key";

/// Whether [`VERIFY_KNOWN_ABSENT_ENV`] is set (read once).
pub fn verify_known_absent() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(VERIFY_KNOWN_ABSENT_ENV).is_ok_and(|v| v != "0"))
}

fn armed() -> &'static Option<(String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var("REPLYTIME_FAULT").ok()?;
        let (name, n) = spec.split_once(':').unwrap_or((&spec, "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    })
}

static HITS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn point(name: &str) {
    if let Some((armed, n)) = armed()
        && armed == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n
    {
        eprintln!("replytime: fault injection at {name}: aborting");
        std::process::abort();
    }
}
