//! `replytime simulate`: writes realistic CRM traffic (leads, inbound bursts, setter
//! and AI replies, drafts, delayed auto-send jobs) into the source tables, from the
//! shared workload generator, at a chosen rate or as fast as possible.

use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::workload::sql::transaction_to_sql;
use crate::workload::{Generator, HistoryConfig};

/// What to write.
#[derive(Clone, Debug)]
pub struct SimulateArgs {
    pub seed: u64,
    /// Source transactions to write (0 = until `duration` ends).
    pub transactions: u64,
    /// Transactions per second (0 = as fast as possible).
    pub rate: f64,
    pub duration: Option<Duration>,
    /// Lead ids in play.
    pub leads: usize,
    /// Apply `schema/source.sql` first (idempotent).
    pub create_schema: bool,
}

pub const SOURCE_SQL: &str = include_str!("../../schema/source.sql");

pub async fn run(settings: &Settings, args: &SimulateArgs) -> anyhow::Result<()> {
    let client = crate::pgconn::connect(settings.source_url(), "replytime-simulate").await?;
    if args.create_schema {
        client.batch_execute(SOURCE_SQL).await?;
    }
    let config = HistoryConfig {
        leads: args.leads,
        ..HistoryConfig::realistic()
    };
    let mut generator = Generator::new(args.seed, config);
    let started = Instant::now();
    let mut written = 0u64;
    let mut changes = 0usize;
    let mut last_report = Instant::now();
    loop {
        if args.transactions > 0 && written >= args.transactions {
            break;
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let txn = generator.next_transaction();
        changes += txn.len();
        client.batch_execute(&transaction_to_sql(&txn)).await?;
        written += 1;
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(written as f64 / args.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(transactions = written, changes, "simulating");
            eprintln!("simulate: {written} transactions, {changes} row changes");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "simulate: wrote {written} transactions ({changes} row changes) in {secs:.1} s, {:.0} changes/s",
        changes as f64 / secs.max(1e-9)
    );
    Ok(())
}
