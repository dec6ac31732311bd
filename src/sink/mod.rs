//! The Postgres sink: keeps `"ResponseTimingEvent"` equal to the derivation and
//! records, in the same transaction, the LSN the rows reflect.
//!
//! ```text
//!  outbox ops ─▶ write_batch ─ one transaction ──────────────────────────────┐
//!   (each with    │ dedupe by inbound message id (last op wins)              │
//!    its LSN)     ├─ DELETE … rows last written before the delete's LSN      │
//!                 ├─ INSERT … SELECT * FROM UNNEST(arrays) ON CONFLICT       │
//!                 │    DO UPDATE … WHERE derived columns IS DISTINCT FROM    │
//!                 │    AND stored "sourceLsn" <= the upsert's                │
//!                 └─ replytime_progress: lsn = GREATEST(stored, new)         │
//!                                                                   COMMIT ◀─┘
//! ```
//!
//! Rows move between shards (SPEC 9): a lead merge deletes an anchor in the old
//! shard and upserts it in the new one, with the same commit LSN, each delivered in
//! its own time. The streaming rule orders writes by LSN, not by who owns the row:
//! an upsert applies when its LSN is ≥ the stored row's `sourceLsn`, a delete only
//! when the stored row's is lower than its own. A repairing sink (`replay`,
//! `rebuild`, `backfill`: [`Sink::repairing`]) writes its shard's rows regardless of
//! their LSN, and only those.
//!
//! Why this shape: delivery is at-least-once, so every write must be idempotent
//! (SPEC 5). An upsert equal to the stored row writes nothing, not even
//! `updatedAt`/`sourceLsn`, so replays and restarts leave no trace; the progress
//! row commits atomically with the rows and never moves backwards, so the sink's
//! LSN is always one it really reflects.
//!
//! The sink knows nothing of the engine or the store: it takes `SinkOp`s.

mod columns;
mod error;
mod migrate;
pub(crate) mod registry;
mod sql;

use std::collections::BTreeMap;

use tokio_postgres::types::PgLsn;
use tokio_postgres::{Client, Statement};

pub use error::SinkError;
pub use migrate::SCHEMA_VERSION;

use crate::lsn::Lsn;
use crate::row::{SinkOp, TimingRow};
use crate::shard::Shard;
use columns::UpsertColumns;

/// Rows per statement: large enough to amortize round trips, small enough to keep
/// one statement's arrays modest (see MACHINE-NOTES).
const ROWS_PER_STATEMENT: usize = 2_000;
/// Undefined table: the sink was never migrated.
const UNDEFINED_TABLE: &str = "42P01";

/// What one batch changed. `unchanged` counts ops (after dedupe) that wrote
/// nothing: upserts equal to the stored row, deletes of absent rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub upserted: u64,
    pub deleted: u64,
    pub unchanged: u64,
}

/// Statements prepared once per connection.
#[derive(Clone)]
struct Statements {
    upsert: Statement,
    delete: Statement,
    save_progress: Statement,
}

/// A connection to the sink database.
pub struct Sink {
    client: Client,
    statements: Option<Statements>,
    /// A repairing sink's shard: it writes and deletes only rows of its own leads
    /// (see `crate::shard`).
    shard: Option<Shard>,
    /// Repair (regardless of LSN, own shard only) instead of the streaming rule.
    repair: bool,
}

impl Sink {
    pub async fn connect(url: &str) -> Result<Sink, SinkError> {
        let client = crate::pgconn::connect(url, "replytime-sink").await?;
        // A commit the server acknowledges must be durable: the outbox is trimmed
        // and the LSN confirmed after it. A server (or role) configured with
        // `synchronous_commit = off` would acknowledge commits it can still lose
        // in a crash, so the sink's session asks for `on` whatever the default.
        //
        // Every statement of the session finds its rows by key (the upsert's
        // conflict target, the delete's and the repair's pages by inbound message
        // id, the progress row by slot), so sequential scans are off. Left to its
        // statistics, Postgres deletes by scanning the whole table while the table
        // has never been analyzed (a fresh sink, until autovacuum gets to it) and
        // keeps a prepared statement's plan made then: one scan of a growing table
        // per batch.
        client
            .batch_execute("SET synchronous_commit = on; SET enable_seqscan = off")
            .await
            .map_err(SinkError::postgres("setting the sink session's parameters"))?;
        Ok(Sink {
            client,
            statements: None,
            shard: None,
            repair: false,
        })
    }

    /// This connection's TLS, as the server sees it (`target`: its parsed URL).
    pub async fn tls_facts(
        &self,
        target: &crate::pgconn::ConnTarget,
    ) -> Result<crate::pgconn::TlsFacts, String> {
        crate::pgconn::tls_facts(&self.client, target).await
    }

    /// The daemon's sink: `settings`' URL, restricted to its shard.
    pub(crate) async fn for_settings(
        settings: &crate::config::Settings,
    ) -> Result<Sink, SinkError> {
        Ok(Sink::connect(settings.sink_url())
            .await?
            .with_shard(settings.shard))
    }

    /// The shard whose rows a repairing sink (and `prune`) may touch.
    pub fn with_shard(mut self, shard: Option<Shard>) -> Sink {
        self.shard = shard;
        self.statements = None;
        self
    }

    /// Writes regardless of the stored rows' LSN, restricted to the shard's leads
    /// (`replay`, `rebuild`, `backfill`, with the daemon stopped).
    pub fn repairing(mut self) -> Sink {
        self.repair = true;
        self.statements = None;
        self
    }

    /// SQL true for the rows this sink may touch, over the lead id `column`.
    pub fn owns(&self, column: &str) -> String {
        self.shard
            .map_or_else(|| "true".to_string(), |s| s.predicate(column))
    }

    /// The connection, for read-only queries (status, checks).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the sink tables if needed and checks their version and shape.
    pub async fn migrate(&self) -> Result<(), SinkError> {
        migrate::migrate(&self.client).await
    }

    /// Applies `ops`, each with the end LSN of the source transaction that made it,
    /// and, when given, moves the slot's progress row to `progress` (never
    /// backwards), all in one transaction.
    pub async fn write_batch(
        &mut self,
        slot: &str,
        ops: &[(Lsn, SinkOp)],
        progress: Option<Lsn>,
    ) -> Result<WriteStats, SinkError> {
        let batch = Batch::new(ops);
        if batch.is_empty() && progress.is_none() {
            return Ok(WriteStats::default());
        }
        let statements = self.statements().await?;
        let tx = self
            .client
            .transaction()
            .await
            .map_err(SinkError::postgres("begin of a batch"))?;
        let mut stats = WriteStats::default();
        for deletes in batch.deletes.chunks(ROWS_PER_STATEMENT) {
            let ids: Vec<&str> = deletes.iter().map(|(id, _)| *id).collect();
            let lsns: Vec<PgLsn> = deletes.iter().map(|(_, lsn)| PgLsn::from(lsn.0)).collect();
            let result = if self.repair {
                tx.execute(&statements.delete, &[&ids]).await
            } else {
                tx.execute(&statements.delete, &[&ids, &lsns]).await
            };
            let deleted =
                result.map_err(SinkError::postgres(format!("delete of {} rows", ids.len())))?;
            stats.deleted += deleted;
            stats.unchanged += ids.len() as u64 - deleted;
        }
        for rows in batch.upserts.chunks(ROWS_PER_STATEMENT) {
            let columns = UpsertColumns::new(rows);
            let written = tx
                .execute(&statements.upsert, &columns.params())
                .await
                .map_err(SinkError::postgres(format!(
                    "upsert of {} rows",
                    rows.len()
                )))?;
            stats.upserted += written;
            stats.unchanged += rows.len() as u64 - written;
        }
        if let Some(lsn) = progress {
            tx.execute(&statements.save_progress, &[&slot, &PgLsn::from(lsn.0)])
                .await
                .map_err(SinkError::postgres(format!(
                    "save of progress {lsn} for slot {slot}"
                )))?;
        }
        tx.commit()
            .await
            .map_err(SinkError::postgres("commit of a batch"))?;
        Ok(stats)
    }

    /// The LSN the sink reflects for `slot`; `None` before the first batch (or
    /// before the sink schema exists).
    pub async fn progress(&self, slot: &str) -> Result<Option<Lsn>, SinkError> {
        match self.client.query_opt(sql::READ_PROGRESS, &[&slot]).await {
            Ok(row) => Ok(row.map(|row| Lsn(u64::from(row.get::<_, PgLsn>(0))))),
            Err(err) if err.code().is_some_and(|c| c.code() == UNDEFINED_TABLE) => Ok(None),
            Err(err) => Err(SinkError::postgres(format!(
                "read of progress for slot {slot}"
            ))(err)),
        }
    }

    async fn statements(&mut self) -> Result<Statements, SinkError> {
        if let Some(statements) = &self.statements {
            return Ok(statements.clone());
        }
        let prepare =
            |what: &'static str| SinkError::postgres(format!("prepare of the {what} statement"));
        let (upsert, delete) = if self.repair {
            (
                sql::upsert(&self.owns("t.\"leadId\"")),
                sql::delete(&self.owns("\"leadId\"")),
            )
        } else {
            (
                sql::upsert(sql::UPSERT_IN_LSN_ORDER),
                sql::delete_in_lsn_order(),
            )
        };
        let statements = Statements {
            upsert: self
                .client
                .prepare(&upsert)
                .await
                .map_err(prepare("upsert"))?,
            delete: self
                .client
                .prepare(&delete)
                .await
                .map_err(prepare("delete"))?,
            save_progress: self
                .client
                .prepare(sql::SAVE_PROGRESS)
                .await
                .map_err(prepare("progress"))?,
        };
        self.statements = Some(statements.clone());
        Ok(statements)
    }
}

/// A batch after dedupe: the last op of each inbound message id, sorted by id (a
/// stable lock order).
struct Batch<'a> {
    /// Inbound message id and the end LSN of the delete's source transaction.
    deletes: Vec<(&'a str, Lsn)>,
    upserts: Vec<(&'a TimingRow, Lsn)>,
}

impl<'a> Batch<'a> {
    fn new(ops: &'a [(Lsn, SinkOp)]) -> Self {
        let last: BTreeMap<&str, (Lsn, &SinkOp)> = ops
            .iter()
            .map(|(lsn, op)| (op.inbound_message_id(), (*lsn, op)))
            .collect();
        let mut batch = Batch {
            deletes: Vec::new(),
            upserts: Vec::new(),
        };
        for (id, (lsn, op)) in last {
            match op {
                SinkOp::Delete { .. } => batch.deletes.push((id, lsn)),
                SinkOp::Upsert { row, source_lsn } => batch.upserts.push((row, *source_lsn)),
            }
        }
        batch
    }

    fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.upserts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Timestamp;

    fn row(id: &str, client: &str) -> TimingRow {
        TimingRow::unanswered(client.to_string(), "lead", "sms", id, Timestamp(0))
    }

    #[test]
    fn batch_keeps_the_last_op_per_inbound_message() {
        let upsert = |id: &str, client: &str, lsn: u64| {
            let op = SinkOp::Upsert {
                row: row(id, client),
                source_lsn: Lsn(lsn),
            };
            (Lsn(lsn), op)
        };
        let delete = |id: &str, lsn: u64| {
            let op = SinkOp::Delete {
                inbound_message_id: id.into(),
            };
            (Lsn(lsn), op)
        };
        let ops = vec![
            upsert("b", "c1", 1),
            delete("a", 1),
            upsert("a", "c1", 2),
            upsert("b", "c2", 3),
            delete("c", 3),
        ];
        let batch = Batch::new(&ops);
        assert_eq!(batch.deletes, vec![("c", Lsn(3))]);
        let upserts: Vec<(&str, &str, Lsn)> = batch
            .upserts
            .iter()
            .map(|(r, lsn)| (r.inbound_message_id.as_str(), r.client_id.as_str(), *lsn))
            .collect();
        assert_eq!(upserts, vec![("a", "c1", Lsn(2)), ("b", "c2", Lsn(3))]);
    }
}
