//! `SinkError`: what went wrong in the sink, with the failed statement's cause
//! kept. Whether a retry can help is decided by the pipeline's error policy
//! (`pipeline::policy`): a lost connection, a server shutting down or busy, a
//! serialization or deadlock victim are retried; wrong credentials or database,
//! TLS, a schema replytime does not know, the local state store failing stop.

use crate::pgconn::{PgConnError, error_chain};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink connection: {0}")]
    Connect(#[from] PgConnError),
    /// A statement failed; `action` says which (with the batch size where it helps).
    #[error("sink {action} failed: {detail}")]
    Postgres {
        action: String,
        detail: String,
        #[source]
        cause: tokio_postgres::Error,
    },
    #[error(
        "the sink schema is version {found} (row 'sink' of replytime_schema_version) but this \
         replytime expects version {expected}: run the sink migration from version {found} to \
         {expected} (or run the replytime release made for version {found}), or drop the sink \
         tables and run `replytime rebuild`"
    )]
    SchemaVersion { found: i32, expected: i32 },
    #[error(
        "sink table {table} does not have the shape replytime needs: {problem}; fix the table \
         (see schema/sink.sql) or drop it and run `replytime rebuild`"
    )]
    Schema { table: String, problem: String },
    /// Another writer's claim on the sink overlaps this one's (see `registry`).
    #[error(
        "this {me} would write rows another writer owns: {others}. Two writers of the same \
         leads overwrite each other's rows. If that writer is gone for good (its state and \
         slot retired), remove its registration with `replytime release-writer --state-id ID`; \
         otherwise give this instance another sink or a shard of its own (REPLYTIME_SHARD)"
    )]
    WriterConflict { me: String, others: String },
    /// The local state (RocksDB) failed while feeding the sink.
    #[error("local state while feeding the sink: {0}")]
    State(Box<dyn std::error::Error + Send + Sync>),
}

impl SinkError {
    /// Wraps an error of the local state store (the sink never looks inside it).
    pub fn state(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SinkError {
        SinkError::State(err.into())
    }

    /// A failed statement; `action` names what the sink was doing.
    pub(super) fn postgres(
        action: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> SinkError {
        let action = action.into();
        move |cause| SinkError::Postgres {
            action,
            detail: describe(&cause),
            cause,
        }
    }
}

/// The server's message with its SQLSTATE and detail, else the error chain.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        }
        None => error_chain(err),
    }
}
