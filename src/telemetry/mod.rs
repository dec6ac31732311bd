//! What operators watch: the Prometheus metrics, the health and readiness state, the
//! progress lines of long operations, and the HTTP server of `/metrics`, `/healthz`
//! and `/readyz`. A leaf: every layer may report here, and nothing here imports the
//! layers that report.

pub(crate) mod health;
pub(crate) mod http;
pub mod metrics;
pub(crate) mod progress;
