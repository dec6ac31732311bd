//! What operators see: metrics, health endpoints, status.

pub mod http;
pub mod metrics;
pub mod progress;
pub mod repair;
pub mod report;
pub mod simulate;
pub mod status;
