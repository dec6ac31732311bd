//! `replytime simulate`: writes realistic CRM traffic (leads, inbound bursts, setter
//! and AI replies, drafts, delayed auto-send jobs, bookings) into the source tables,
//! from the shared workload generator, at a chosen rate or as fast as possible.
//!
//! Bookings live in `"Lead"` columns replytime does not derive from (SPEC 7 reads
//! them for the analytics), so they are written here rather than by the generator:
//! every `BOOKING_EVERY` transactions a random unbooked lead, if answered, books between one
//! hour and three days after its last reply, more often when a setter replied; one
//! in ten bookings is later canceled, one in twenty has only a GHL id.

use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::workload::sql::transaction_to_sql;
use crate::workload::{Generator, HistoryConfig};

/// What to write.
#[derive(Clone, Debug)]
pub(crate) struct SimulateArgs {
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

pub(crate) const SOURCE_SQL: &str = include_str!("../../schema/source.sql");

const BOOKING_EVERY: u64 = 10;

/// Books one answered, unbooked lead (see the module doc). `random()` is seeded per
/// session, so a seed writes the same bookings for the same traffic.
const BOOK_ONE_LEAD: &str = r#"
WITH pick AS (
    SELECT l.id FROM "Lead" l
    WHERE l."appointmentBookedAt" IS NULL AND l."ghlAppointmentId" IS NULL
    ORDER BY random() LIMIT 1
), candidate AS (
    SELECT p.id AS lead_id,
           max(m."sentAt") AS last_reply,
           min(m."sentAt") FILTER (WHERE m."sentBy" = 'setter') AS first_setter
    FROM pick p
    JOIN "Message" m ON m."leadId" = p.id
    WHERE m.direction = 'outbound' AND m."sentAt" IS NOT NULL
    GROUP BY p.id
)
UPDATE "Lead" l SET
    "appointmentBookedAt" = CASE WHEN r.no_timestamp THEN NULL
                                 ELSE c.last_reply + interval '1 hour' + r.delay END,
    "appointmentCanceledAt" = CASE WHEN r.cancel AND NOT r.no_timestamp
                                   THEN c.last_reply + interval '1 hour' + r.delay + interval '1 day' END,
    "ghlAppointmentId" = 'ghl_' || l.id
FROM candidate c,
     LATERAL (SELECT random() * interval '3 days' AS delay,
                     random() < 0.1 AS cancel,
                     random() < 0.05 AS no_timestamp,
                     random() AS roll) r
WHERE l.id = c.lead_id
  AND r.roll < CASE WHEN c.first_setter IS NULL THEN 0.5 ELSE 0.8 END
"#;

pub(crate) async fn run(settings: &Settings, args: &SimulateArgs) -> anyhow::Result<()> {
    let client = crate::pgconn::connect(settings.source_url(), "replytime-simulate").await?;
    if args.create_schema {
        client.batch_execute(SOURCE_SQL).await?;
    }
    let config = HistoryConfig {
        leads: args.leads,
        ..HistoryConfig::realistic()
    };
    let mut generator = Generator::new(args.seed, config);
    client
        .execute(
            "SELECT setseed($1)",
            &[&((args.seed % 1000) as f64 / 1000.0)],
        )
        .await?;
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
        if written.is_multiple_of(BOOKING_EVERY) {
            client.batch_execute(BOOK_ONE_LEAD).await?;
        }
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
