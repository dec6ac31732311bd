//! What operators see and run: metrics, health endpoints, status, progress, and the
//! long operations (backfill, replay, rebuild, report, simulate).

pub mod backfill;
pub mod check;
pub mod health;
pub mod http;
pub mod metrics;
pub mod ownership;
pub mod poller;
pub mod progress;
pub mod repair;
pub mod report;
pub mod simulate;
pub mod status;
