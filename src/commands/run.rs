//! `run`: the daemon. The HTTP endpoints and the health poller run for the life of
//! the process; the pipeline runs until a signal or an error.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::pipeline;
use crate::pipeline::shutdown::CancellationToken;
use crate::telemetry::health::Fatal;
use crate::telemetry::health::Health;
use crate::telemetry::http;
use crate::telemetry::metrics::METRICS;

/// The daemon: the HTTP endpoints and the health poller run for the life of the
/// process; the pipeline runs until a signal or an error. A definite error (one a
/// retry cannot fix, SPEC 5) stops the pipeline but not the process: it keeps
/// serving `/metrics` and `/readyz` with the reason, so alerts fire, until it is
/// stopped, and then exits non-zero with the error.
///
/// `shutdown` is the one token every part of the daemon stops on; SIGTERM and
/// SIGINT cancel it.
pub(crate) async fn run(
    settings: crate::config::Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    pipeline::shutdown::cancel_on_signal(&shutdown)?;
    let health = Arc::new(Health::new(shutdown.clone()));
    let listener = http::bind(settings.metrics_addr).await?;
    tracing::info!(addr = %settings.metrics_addr, "serving /metrics, /healthz, /readyz");
    health.live.store(true, Ordering::SeqCst);
    tokio::spawn(http::serve(listener, health.clone()));
    tokio::spawn(crate::pipeline::poller::run(
        settings.clone(),
        health.clone(),
    ));
    let Err(error) = pipeline::run(settings, health.clone(), shutdown.clone()).await else {
        return Ok(ExitCode::SUCCESS);
    };
    // A setting to fix (wrong password or database, missing privilege, table or
    // wal_level) ends the process at once with the message, as bad configuration
    // does (SPEC 8); every other definite error keeps it up and visible.
    let kind = fatal_kind(&error);
    if is_definite(&error) && kind != "config" && !shutdown.is_cancelled() {
        let message = crate::pgconn::error_chain(&error);
        tracing::error!(
            kind,
            error = %message,
            "definite error: the pipeline stopped; /metrics and /readyz report it until replytime is stopped"
        );
        METRICS.fatal_error.with_label_values(&[kind]).set(1);
        health.set_fatal(Fatal { kind, message });
        shutdown.cancelled().await;
    }
    Err(anyhow::Error::new(error).context("replytime run stopped"))
}

/// Whether a retry cannot fix `error`: the pipeline stays stopped.
fn is_definite(error: &pipeline::PipelineError) -> bool {
    !error.is_retryable()
}

/// The `kind` label of `replytime_fatal_error` (one of `FATAL_KINDS`).
fn fatal_kind(error: &pipeline::PipelineError) -> &'static str {
    use crate::source::SourceError as S;
    use pipeline::PipelineError as P;
    match error {
        P::Source(
            S::SlotAhead { .. }
            | S::SlotLost { .. }
            | S::SlotMissing { .. }
            | S::SlotOtherDatabase { .. }
            | S::SlotPlugin { .. },
        ) => "slot",
        P::Source(S::SystemChanged { .. }) => "failover",
        P::Source(S::Decode(_)) => "decode",
        P::Source(S::Query { .. } | S::Replication(_)) => "other",
        // Another writer's slot or sink: refused at once, like a setting to fix.
        P::Ownership(_) | P::Sink(crate::sink::SinkError::WriterConflict { .. }) => "config",
        P::Source(_) | P::Connect(_) | P::Sink(crate::sink::SinkError::Connect(_)) => "config",
        P::Sink(_) | P::SinkDown(_) => "sink",
        P::Store(_) | P::Engine(_) => "state",
        P::Other(_) => "other",
    }
}
