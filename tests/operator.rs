//! The operator surface of the real binary (SPEC 6, 8): what `/metrics`, `/healthz`
//! and `/readyz` say during a run, and how `run` and `validate-config` fail on bad
//! configuration — promptly, with a non-zero exit and a message that names the
//! setting or the thing and the reason, never a password.
//!
//! ```text
//!  generated history ──SQL──▶ Postgres ──slot──▶ replytime run ──▶ GET /metrics
//!        │                                                            │ compare
//!        └──▶ in-memory oracle, derived after every transaction ──▶ expected counters
//! ```
//!
//! ```text
//!  operator/scrape.rs      GET /metrics and parse it; promtool check metrics
//!  operator/metrics.rs     the counters, gauges and histograms of a run
//!  operator/outages.rs     slot lost, source unreachable, sink down: the alerts fire
//!  operator/bad_config.rs  one test per bad setting of `run` and `validate-config`
//! ```

mod common;
#[allow(dead_code)]
mod support;

#[path = "operator/bad_config.rs"]
mod bad_config;
#[path = "operator/metrics.rs"]
mod metrics;
#[path = "operator/outages.rs"]
mod outages;
#[allow(dead_code)]
#[path = "drills/proxy.rs"]
mod proxy;
#[path = "operator/scrape.rs"]
mod scrape;
#[path = "operator/validate_values.rs"]
mod validate_values;
