//! One function per subcommand. Each loads the settings it needs and calls into the
//! library; errors carry their context up to `main`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub mod backfill;
pub mod check;
pub mod ownership;
pub mod repair;
pub mod report;
pub mod simulate;
pub mod status;

use crate::cli::{Cli, Command};
use crate::pipeline;
use crate::telemetry::health::Fatal;
use crate::telemetry::http::{self, Health};
use crate::telemetry::metrics::METRICS;

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.common.settings()?;
    if matches!(
        cli.command,
        Command::Run
            | Command::Status { .. }
            | Command::Quarantine { .. }
            | Command::Replay { .. }
            | Command::Rebuild
    ) {
        settings.require_state_dir()?;
    }
    match cli.command {
        Command::ValidateConfig => {
            settings.check_paths()?;
            let unknown = crate::config::unknown_env_names(std::env::vars().map(|(k, _)| k));
            if !unknown.is_empty() {
                return Err(crate::config::ConfigError::new(
                    "environment",
                    format!(
                        "unknown variables {}: replytime does not read them (see the README's settings table)",
                        unknown.join(", ")
                    ),
                )
                .into());
            }
            print!("{}", settings.redacted());
            println!("# config ok");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            crate::cli::init_tracing(settings.log_format, &settings.log_level);
            for name in crate::config::unknown_env_names(std::env::vars().map(|(k, _)| k)) {
                tracing::warn!(variable = %name, "unknown REPLYTIME_* variable: not read");
            }
            run(settings).await
        }
        Command::Status { json } => status::print(&settings, json).await,
        Command::Check => {
            let report = crate::commands::check::run(&settings).await;
            print!("{}", report.render());
            Ok(if report.problems() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Report(args) => crate::commands::report::run(&settings, args).await,
        Command::Teardown { yes } => {
            if !yes {
                anyhow::bail!(
                    "teardown drops slot {:?} and publication {:?} (if replytime created it): pass --yes",
                    settings.slot,
                    settings.publication
                );
            }
            let client =
                crate::pgconn::connect(settings.source_url(), "replytime-teardown").await?;
            let done =
                crate::source::admin::teardown(&client, &settings.slot, &settings.publication)
                    .await?;
            crate::commands::ownership::print_teardown(&settings, &done);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            from_lsn,
            from_time,
        } => {
            crate::cli::init_tracing(settings.log_format, &settings.log_level);
            let from = match (from_lsn, from_time) {
                (Some(lsn), _) => crate::commands::repair::ReplayFrom::Lsn(lsn.parse()?),
                (None, Some(time)) => {
                    let t = chrono::DateTime::parse_from_rfc3339(&time)
                        .map_err(|e| anyhow::anyhow!("--from-time {time:?}: {e}"))?;
                    crate::commands::repair::ReplayFrom::Time(
                        crate::change::Timestamp::from_chrono(t.with_timezone(&chrono::Utc)),
                    )
                }
                (None, None) => anyhow::bail!("give --from-lsn or --from-time"),
            };
            let n = crate::commands::repair::replay(&settings, from).await?;
            println!("replayed {n} transactions");
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill {
            lookback_days,
            batch_size,
            dry_run,
            recreate_slot,
        } => {
            crate::cli::init_tracing(settings.log_format, &settings.log_level);
            let options = crate::commands::backfill::BackfillOptions {
                lookback_days,
                batch_size,
                dry_run,
                recreate_slot,
            };
            let summary = crate::commands::backfill::backfill(&settings, &options).await?;
            summary.print(&options);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild => {
            crate::cli::init_tracing(settings.log_format, &settings.log_level);
            let n = crate::commands::repair::rebuild(&settings).await?;
            println!("rebuilt: {n} rows upserted");
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            seed,
            transactions,
            rate,
            duration,
            leads,
            create_schema,
        } => {
            let args = crate::commands::simulate::SimulateArgs {
                seed,
                transactions,
                rate,
                duration,
                leads,
                create_schema,
            };
            crate::commands::simulate::run(&settings, &args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ReleaseWriter { state_id } => {
            let released = crate::commands::ownership::release_writer(&settings, &state_id).await?;
            println!("released the sink registration of the {released}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Quarantine { limit } => {
            let store = pipeline::open_store(&settings)?;
            for record in store.quarantined(limit)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    record.commit_lsn,
                    record.table,
                    record.row_id.as_deref().unwrap_or("-"),
                    record.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The daemon: the HTTP endpoints and the health poller run for the life of the
/// process; the pipeline runs until a signal or an error. A definite error (one a
/// retry cannot fix, SPEC 5) stops the pipeline but not the process: it keeps
/// serving `/metrics` and `/readyz` with the reason, so alerts fire, until it is
/// stopped, and then exits non-zero with the error.
async fn run(settings: crate::config::Settings) -> anyhow::Result<ExitCode> {
    let health = Arc::new(Health::default());
    let listener = http::bind(settings.metrics_addr).await?;
    tracing::info!(addr = %settings.metrics_addr, "serving /metrics, /healthz, /readyz");
    health.live.store(true, Ordering::SeqCst);
    tokio::spawn(http::serve(listener, health.clone()));
    tokio::spawn(crate::pipeline::poller::run(
        settings.clone(),
        health.clone(),
    ));
    // The signal raises `stopping` at once (for work that cannot await) and ends
    // the future the daemon waits on.
    let signal = shutdown_signal()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = health.stopping.clone();
    tokio::spawn(async move {
        signal.await;
        stopping.store(true, Ordering::SeqCst);
        let _ = stop.send(true);
    });
    let mut until_stopped = stopped.clone();
    let shutdown = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    let Err(error) = pipeline::run(settings, health.clone(), shutdown).await else {
        return Ok(ExitCode::SUCCESS);
    };
    // A setting to fix (wrong password or database, missing privilege, table or
    // wal_level) ends the process at once with the message, as bad configuration
    // does (SPEC 8); every other definite error keeps it up and visible.
    let kind = fatal_kind(&error);
    if is_definite(&error) && kind != "config" && !health.stopping.load(Ordering::SeqCst) {
        let message = crate::pgconn::error_chain(&error);
        tracing::error!(
            kind,
            error = %message,
            "definite error: the pipeline stopped; /metrics and /readyz report it until replytime is stopped"
        );
        METRICS.fatal_error.with_label_values(&[kind]).set(1);
        health.set_fatal(Fatal { kind, message });
        let _ = until_stopped.wait_for(|stopped| *stopped).await;
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

/// Resolves on SIGTERM or SIGINT. The handlers are installed here, before the
/// daemon starts: a signal during start-up or the initial load stops it cleanly
/// instead of killing it.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
