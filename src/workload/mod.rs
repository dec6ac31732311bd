//! Deterministic random source histories: transactions of `Change`s that a real
//! Postgres with the reference schema could have produced, a pure function of a
//! `u64` seed.
//!
//! One generator feeds the property tests (engine vs. oracle), the integration
//! tests against a real Postgres (through `sql::change_to_sql`), the `simulate`
//! subcommand and the benchmarks, so that a failing seed found anywhere replays
//! everywhere.
//!
//! ```text
//!  seed ──▶ Generator ──next_transaction──▶ Vec<Change> ──▶ engine / oracle::SourceTables
//!              │ model of current rows                 └──sql::change_to_sql──▶ Postgres
//!              └ (keys and unique indexes always hold)
//! ```
//!
//! `HistoryConfig::default()` is adversarial (few leads, so threads collide; every
//! edge case of SPEC sections 3–4 at a visible rate); `HistoryConfig::realistic()`
//! mostly appends in time order, like production traffic.

mod config;
mod conversation;
mod edits;
mod generator;
mod model;
mod rng;
pub mod sql;
mod toast;

pub use config::{HistoryConfig, Locality, Odds, OperationMix};
pub use generator::Generator;

use crate::change::Change;

/// The environment variable that pins the seed of the property tests, to replay a
/// failure: `REPLYTIME_PROPTEST_SEED=1234 cargo test …`.
pub(crate) const PROPTEST_SEED_ENV: &str = "REPLYTIME_PROPTEST_SEED";

/// The seed pinned by `REPLYTIME_PROPTEST_SEED`, if set (decimal or `0x` hex).
///
/// # Panics
/// When the variable is set but is not a number: a typo must not silently run
/// random seeds instead.
pub fn seed_from_env() -> Option<u64> {
    let text = std::env::var(PROPTEST_SEED_ENV).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{PROPTEST_SEED_ENV}={text:?} is not a u64")))
}

/// The first `config.transactions` transactions of the history of `seed`.
pub fn history(seed: u64, config: &HistoryConfig) -> Vec<Vec<Change>> {
    let mut generator = Generator::new(seed, config.clone());
    (0..config.transactions)
        .map(|_| generator.next_transaction())
        .collect()
}
