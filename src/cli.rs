//! Command-line interface: parses flags, loads settings, sets up tracing, and calls
//! into the library. Thin on purpose.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{CONFIG_ENV, KEYS, LogFormat, Overrides, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "replytime",
    version,
    about = "Exact, fresh response-timing rows from a CRM's Postgres logical replication stream",
    after_help = "Settings come from a TOML file (--config or REPLYTIME_CONFIG), then REPLYTIME_* environment variables, then flags.\n\nExample:\n  REPLYTIME_SOURCE_URL=postgres://replytime@db/app REPLYTIME_STATE_DIR=/var/lib/replytime replytime run"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The flags every subcommand takes: `--config`, and one per key of
/// [`crate::config::KEYS`] that has a flag (`--source-url`, …), each overriding its
/// `REPLYTIME_*` variable. Built from that table, not declared again here.
#[derive(Debug, Clone, Default)]
pub struct CommonArgs {
    /// TOML config file (default: $REPLYTIME_CONFIG).
    pub config: Option<PathBuf>,
    /// `(key, value)` of each setting flag given.
    pub flags: Vec<(String, String)>,
}

const CONFIG_FLAG: &str = "config";

impl clap::FromArgMatches for CommonArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let flags = KEYS
            .iter()
            .filter(|key| key.flag.is_some())
            .filter_map(|key| {
                let value = matches.get_one::<String>(key.name)?;
                Some((key.name.to_string(), value.clone()))
            })
            .collect();
        Ok(CommonArgs {
            config: matches.get_one::<PathBuf>(CONFIG_FLAG).cloned(),
            flags,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for CommonArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let config = clap::Arg::new(CONFIG_FLAG)
            .long(CONFIG_FLAG)
            .global(true)
            .value_parser(clap::value_parser!(PathBuf))
            .help(format!("TOML config file (default: ${CONFIG_ENV})."));
        KEYS.iter().fold(command.arg(config), |command, key| {
            let Some(flag) = key.flag else {
                return command;
            };
            command.arg(
                clap::Arg::new(key.name)
                    .long(flag)
                    .global(true)
                    .value_name(key.name.to_ascii_uppercase())
                    .help(format!(
                        "{} (overrides {}).",
                        key.help.trim().trim_end_matches('.'),
                        key.env
                    )),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: set up publication and slot, load existing rows on first
    /// start, then stream. Stops cleanly on SIGTERM / SIGINT.
    #[command(after_help = "Example:\n  replytime run --state-dir /var/lib/replytime")]
    Run,
    /// Print slot, LSNs, lag, retained WAL, outbox and state size; exit 1 when unhealthy.
    #[command(after_help = "Example:\n  replytime status\n  replytime status --json")]
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Preflight / doctor: connect as the daemon would (admin, sink and replication
    /// connections) and report each check as ok or a problem with its fix; exit 1
    /// on problems. Changes nothing.
    #[command(
        after_help = "Example:\n  replytime check\n\nChecks: encryption of each connection, wal_level, REPLICATION, tables and\ncolumns, SELECT grants, the publication, replica identity, the slot and whose\nit is, sink privileges, the sink's registered writers."
    )]
    Check,
    /// Check the settings and print them with secrets removed.
    #[command(
        name = "validate-config",
        after_help = "Example:\n  REPLYTIME_CONFIG=/etc/replytime.toml replytime validate-config"
    )]
    ValidateConfig,
    /// Drop replytime's slot and publication (a forgotten slot pins WAL forever).
    #[command(after_help = "Example:\n  replytime teardown --yes")]
    Teardown {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Re-apply the event log from an LSN or a time and re-emit every anchor it
    /// touches (repairs a damaged sink; the daemon must be stopped).
    #[command(
        after_help = "Examples:\n  replytime replay --from-lsn 0/1A2B3C4D\n  replytime replay --from-time 2026-11-20T08:00:00Z"
    )]
    Replay {
        /// First commit LSN to re-apply (see `replytime status`).
        #[arg(
            long,
            conflicts_with = "from_time",
            required_unless_present = "from_time"
        )]
        from_lsn: Option<String>,
        /// First commit time to re-apply (RFC 3339).
        #[arg(long)]
        from_time: Option<String>,
    },
    /// Rebuild the state and the sink from the source tables at a new slot's
    /// snapshot (lost state, a lost or ahead slot, a failover; the daemon must be
    /// stopped). `run` then streams from the new slot.
    #[command(
        after_help = "Examples:\n  replytime backfill --dry-run\n  replytime backfill --lookback-days 90 --batch-size 5000\n\nThe source is read at one snapshot in keyset batches (never OFFSET), each batch\nunder the statement timeout (REPLYTIME_STATEMENT_TIMEOUT_MS); the sink is written\nin one transaction per batch. Progress (rows, rate, ETA) goes to stderr."
    )]
    Backfill {
        /// Write only anchors whose inbound message is at most this many days old
        /// (older ones are still derived into the state; their sink rows are left as
        /// they are).
        #[arg(long, value_name = "DAYS", value_parser = parse_days)]
        lookback_days: Option<u32>,
        /// Rows per source batch and row operations per sink transaction (default:
        /// load_batch_rows and sink_batch_ops).
        #[arg(long, value_name = "N", value_parser = parse_positive)]
        batch_size: Option<usize>,
        /// Read and derive into a throwaway directory, write nothing, and print what
        /// would be written.
        #[arg(long)]
        dry_run: bool,
        /// Drop an existing slot of the configured name that this state did not
        /// create (the state was lost, or a leftover slot), then create a new one.
        #[arg(long)]
        recreate_slot: bool,
    },
    /// Re-derive every anchor from the state and upsert every row (the sink lost
    /// rows; the daemon must be stopped).
    #[command(after_help = "Example:\n  replytime rebuild")]
    Rebuild,
    /// Write realistic CRM traffic into the source tables (demo, load tests).
    #[command(
        after_help = "Examples:\n  replytime simulate --duration 30s --rate 50\n  replytime simulate --transactions 100000 --create-schema"
    )]
    Simulate {
        /// Random seed: the same seed writes the same history.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Transactions to write (0 = until --duration ends).
        #[arg(long, default_value_t = 0)]
        transactions: u64,
        /// Transactions per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
        rate: f64,
        /// How long to run, e.g. 30s or 5m.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// Lead ids in play.
        #[arg(long, default_value_t = 2_000, value_parser = parse_positive)]
        leads: usize,
        /// Create the reference source tables first (schema/source.sql).
        #[arg(long)]
        create_schema: bool,
    },
    /// Remove a writer's registration from the sink (a writer whose state and slot
    /// were retired for good). Its rows stay; another writer may then claim them.
    #[command(
        name = "release-writer",
        after_help = "Example:\n  replytime release-writer --state-id 5f0c9e2b7a1d4c3e8f6a0b1c2d3e4f50\n\nA refused start names the writer it conflicts with and its state id."
    )]
    ReleaseWriter {
        /// State id of the writer to remove (printed by the refused start).
        #[arg(long)]
        state_id: String,
    },
    /// List quarantined rows (changes that could not be placed).
    #[command(after_help = "Example:\n  replytime quarantine --limit 20")]
    Quarantine {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Response time vs booking outcomes for a window of local days, from the SQL
    /// functions of schema/analytics.sql (applied first; idempotent); or one
    /// lead's timeline with --lead.
    #[command(
        after_help = "Example:\n  replytime report --from 2024-03-01 --to 2024-04-01 --tz America/New_York --client acme\n  replytime report --from 2024-03-01 --to 2024-04-01 --business-hours --format json\n  replytime report --lead lead_123 --tz Europe/Paris"
    )]
    Report(crate::commands::report::ReportArgs),
}

impl CommonArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            pairs: self.flags.clone(),
        }
    }

    pub fn settings(&self) -> Result<Settings, crate::config::ConfigError> {
        Settings::from_env(self.config.as_deref(), &self.overrides())
    }
}

/// Loads the settings and runs the subcommand; tracing is set up here for the
/// subcommands that log.
///
/// `shutdown` is the process's one cancellation token: the daemon (and the
/// long-running commands) stop when it is cancelled.
pub async fn dispatch(
    cli: Cli,
    shutdown: crate::pipeline::shutdown::CancellationToken,
) -> anyhow::Result<ExitCode> {
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
        Command::ValidateConfig => crate::commands::check::validate_config(&settings),
        Command::Run => {
            init_tracing(settings.log_format, &settings.log_level);
            for name in crate::config::unknown_env_names(std::env::vars().map(|(k, _)| k)) {
                tracing::warn!(variable = %name, "unknown REPLYTIME_* variable: not read");
            }
            crate::commands::run::run(settings, shutdown).await
        }
        Command::Status { json } => crate::commands::status::print(&settings, json).await,
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
        Command::Teardown { yes } => crate::commands::ownership::teardown(&settings, yes).await,
        Command::Replay {
            from_lsn,
            from_time,
        } => {
            init_tracing(settings.log_format, &settings.log_level);
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
            crate::pipeline::shutdown::cancel_on_signal(&shutdown)?;
            let n = crate::commands::repair::replay(&settings, from, &shutdown).await?;
            println!("replayed {n} transactions");
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill {
            lookback_days,
            batch_size,
            dry_run,
            recreate_slot,
        } => {
            init_tracing(settings.log_format, &settings.log_level);
            let options = crate::commands::backfill::BackfillOptions {
                lookback_days,
                batch_size,
                dry_run,
                recreate_slot,
            };
            crate::pipeline::shutdown::cancel_on_signal(&shutdown)?;
            let summary =
                crate::commands::backfill::backfill(&settings, &options, &shutdown).await?;
            summary.print(&options);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild => {
            init_tracing(settings.log_format, &settings.log_level);
            crate::pipeline::shutdown::cancel_on_signal(&shutdown)?;
            let n = crate::commands::repair::rebuild(&settings, &shutdown).await?;
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
            crate::commands::status::print_quarantine(&settings, limit)
        }
    }
}

/// Sets up `tracing` as configured (stderr; JSON or pretty).
/// Whether [`init_tracing`] set up JSON logs: `main` then logs a fatal error as a
/// JSON line too.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::SeqCst)
}

pub fn init_tracing(format: LogFormat, level: &str) {
    JSON_LOGS.store(
        format == LogFormat::Json,
        std::sync::atomic::Ordering::SeqCst,
    );
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Parses `30s`, `5m`, `2h`, `250ms` or plain seconds: a finite, non-negative
/// amount that fits a `Duration` (never a panic on `-5s`, `inf` or `1e300h`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{text:?} is not a duration like 30s, 5m, 2h or 250ms");
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is too long a duration"))
}

/// A rate per second: a finite number ≥ 0 (`0` = as fast as possible).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: give a number of transactions per second, 0 or more"
        )),
    }
}

/// A count that must be at least 1 (a batch size, a number of leads).
pub fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of 1 or more")),
    }
}

/// Days of lookback: 0 to 1,000,000 (about 2,700 years; more is no date).
pub fn parse_days(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(days) if days <= 1_000_000 => Ok(days),
        _ => Err(format!(
            "{text:?} is not a number of days from 0 to 1000000"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_or_say_why_never_panic() {
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("1.5"),
            Ok(std::time::Duration::from_millis(1500))
        );
        for bad in [
            "-5s",
            "inf",
            "-inf",
            "infs",
            "nan",
            "NaN",
            "1e400s",
            "1e30h",
            "",
            "s",
            "5 s",
            "+5s",
            "5x",
            "99999999999999999999999h",
            ".",
            "1..2s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn numbers_parse_or_say_why() {
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["-1", "inf", "NaN", "1e999", "x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_positive("5"), Ok(5));
        for bad in ["0", "-1", "1.5", "x"] {
            assert!(parse_positive(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_days("90"), Ok(90));
        assert!(parse_days("4294967295").is_err());
    }
}
