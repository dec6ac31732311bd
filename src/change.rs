//! Typed row changes of the five source tables, independent of how they were decoded
//! (pgoutput, the initial copy, a test generator or the event log).
//!
//! The rows themselves, with the columns replytime reads, come from the one
//! description of each table's columns in [`crate::tables`] (re-exported here). A
//! change carries the values of a row after the change; deletes carry only the key,
//! because with `REPLICA IDENTITY DEFAULT` Postgres sends nothing else.

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

pub use crate::tables::{CampaignRow, DraftRow, JobRow, LeadRow, MessageRow, Row, Table};
pub use crate::timestamp::{TimeError, Timestamp};

/// The job type whose delay replytime attributes.
pub const AI_AUTO_SEND_DELAYED: &str = "AI_AUTO_SEND_DELAYED";

/// The kind of a change, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    pub fn label(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Truncate => "truncate",
        }
    }
}

/// One row change, as applied to the state in stream order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Insert(Row),
    /// The row's new values. `old_id` is set when the update changed the key.
    /// `unchanged` lists columns sent as unchanged TOAST values: their stored value
    /// is kept, whatever `row` says.
    Update {
        row: Row,
        old_id: Option<String>,
        unchanged: Vec<String>,
    },
    Delete {
        table: Table,
        id: String,
    },
    /// Every row of the tables is gone.
    Truncate(Vec<Table>),
}

impl Change {
    pub fn operation(&self) -> Operation {
        match self {
            Change::Insert(_) => Operation::Insert,
            Change::Update { .. } => Operation::Update,
            Change::Delete { .. } => Operation::Delete,
            Change::Truncate(_) => Operation::Truncate,
        }
    }

    pub fn update(row: Row) -> Self {
        Change::Update {
            row,
            old_id: None,
            unchanged: Vec::new(),
        }
    }
}

/// What identifies a source transaction in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// LSN of the commit record (pgoutput Begin's `final_lsn`): orders transactions.
    pub commit_lsn: Lsn,
    /// End LSN of the commit: what the slot is confirmed to once the effects are durable.
    pub end_lsn: Lsn,
    pub commit_time: Timestamp,
}
