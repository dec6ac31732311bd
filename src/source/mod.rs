//! The source: the application database seen through logical replication.
//!
//! ```text
//!  admin.rs   SQL checks and set-up: wal_level, privileges, tables, publication, slot state
//!  load.rs    the initial copy of the tables at the slot's exported snapshot
//!  stream.rs  the replication connection (pgwire-replication) and its events
//!  relay.rs   hands those events to the streaming loop in batches
//!  pgoutput.rs, decode.rs   bytes → pgoutput messages → typed changes (pure)
//!  framing.rs  Begin … changes … Commit, or a protocol anomaly (pure)
//! ```

pub(crate) mod admin;
pub(crate) mod decode;
pub(crate) mod framing;
pub(crate) mod load;
pub(crate) mod pgoutput;
pub(crate) mod relay;
pub(crate) mod sent_columns;
pub mod stream;

use crate::lsn::Lsn;

/// Errors of the source, each saying what to do. What happens next (reconnect with
/// backoff from the durable LSN, or stop) is `pipeline::policy`'s decision.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source database: {context}: {source}")]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("replication connection: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    #[error(
        "wal_level is {0:?} on the source, logical replication needs 'logical': set wal_level = logical in postgresql.conf and restart Postgres"
    )]
    WalLevel(String),
    #[error(
        "role {0:?} lacks the REPLICATION privilege: ALTER ROLE {quoted} WITH REPLICATION (see deploy/postgres/grants.sql)",
        quoted = admin::quote_ident(.0)
    )]
    NoReplicationPrivilege(String),
    #[error("source table {0} does not exist (check the [tables] mapping in the config)")]
    MissingTable(String),
    #[error(
        "source table {table} has no column {column:?} (check the [tables] mapping in the config)"
    )]
    MissingColumn { table: String, column: String },
    #[error(
        "publication {publication:?} exists but does not publish table {table:?}: ALTER PUBLICATION {publication} ADD TABLE ..., or drop it and let replytime create it"
    )]
    PublicationIncomplete { publication: String, table: String },
    #[error(
        "shard {shard}: table {table}'s replica identity does not cover {column:?}, so a row filter on it would make the application's UPDATE and DELETE fail. ALTER TABLE {table} REPLICA IDENTITY FULL (every UPDATE and DELETE then logs the whole old row), or use a unique index that includes {column:?} as the replica identity; replytime never changes it itself"
    )]
    ShardIdentity {
        shard: String,
        table: String,
        column: String,
    },
    #[error(
        "publication {publication:?} does not match the shard setting ({expected}) for table {table:?}: every shard needs its own publication with a row filter on the lead id; drop it (`replytime teardown --yes` when replytime created it, else `DROP PUBLICATION {publication}` as its owner) and let replytime create it"
    )]
    ShardMismatch {
        publication: String,
        table: String,
        expected: String,
    },
    #[error(
        "replication slot {slot:?} is at {slot_lsn}, ahead of replytime's durable high-water mark {durable}: WAL in between is gone (slot recreated or advanced by someone else). Recover with `replytime backfill` (the daemon stopped): it drops this slot, creates a new one and rebuilds the state and the sink rows from the tables, keeping the delay bounds the sink recorded"
    )]
    SlotAhead {
        slot: String,
        slot_lsn: Lsn,
        durable: Lsn,
    },
    #[error(
        "replication slot {slot:?} is invalidated (wal_status = lost): the WAL it needed was removed (max_slot_wal_keep_size). Recover with `replytime backfill` (the daemon stopped): it drops this slot, creates a new one and rebuilds the state and the sink rows from the tables, keeping the delay bounds the sink recorded"
    )]
    SlotLost { slot: String },
    #[error(
        "replication slot {slot:?} is missing but the state in {state_dir} has progress up to {durable}: the slot was dropped or the database failed over. Recover with `replytime backfill` (it recreates the slot)"
    )]
    SlotMissing {
        slot: String,
        state_dir: String,
        durable: Lsn,
    },
    #[error(
        "replication slot {slot:?} belongs to database {database:?}: slot names are global to the cluster, choose another REPLYTIME_SLOT"
    )]
    SlotOtherDatabase { slot: String, database: String },
    #[error(
        "replication slot {slot:?} uses plugin {plugin:?}, replytime needs pgoutput: drop it or choose another REPLYTIME_SLOT"
    )]
    SlotPlugin { slot: String, plugin: String },
    #[error(
        "the source is a different Postgres cluster (system identifier {found}, state was built from {expected}): after a failover the slot is gone; run `replytime backfill` with a fresh state directory"
    )]
    SystemChanged { expected: String, found: String },
    #[error(
        "publication {publication:?} does not exist and this role cannot create it ({reason}): have an admin create it with deploy/postgres/grants.sql (which publishes the five tables and leaves it to replytime); nothing was created"
    )]
    PublicationNotCreatable { publication: String, reason: String },
    #[error("replication slot {slot:?} is still in use by another connection: it was not dropped")]
    SlotBusy { slot: String },
    #[error(
        "role {role:?} may not SELECT {tables}: the initial load and `replytime backfill` read them. GRANT SELECT ON {tables} TO {quoted} (see deploy/postgres/grants.sql)",
        quoted = admin::quote_ident(.role)
    )]
    NoSelect { role: String, tables: String },
    #[error("pgoutput stream: {0}")]
    Decode(#[from] decode::DecodeError),
    #[error(transparent)]
    Protocol(#[from] framing::ProtocolError),
    #[error("bad source URL: {0}")]
    Url(String),
    #[error("TLS setup for the replication connection: {0}")]
    TlsSetup(String),
}

impl SourceError {
    pub(crate) fn query(
        context: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
        move |source| SourceError::Query { context, source }
    }
}
