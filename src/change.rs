//! Typed row changes of the five source tables, independent of how they were decoded
//! (pgoutput, the initial copy, a test generator or the event log).
//!
//! Only the columns replytime reads exist here: everything else (message bodies) is
//! dropped at decode and never stored or logged. A change carries the values of a
//! row after the change; deletes carry only the key, because with
//! `REPLICA IDENTITY DEFAULT` Postgres sends nothing else.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

mod timestamp;

pub use timestamp::{TimeError, Timestamp};

/// The source tables replytime reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Lead,
    EmailCampaign,
    Message,
    AiDraft,
    BackgroundJob,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Lead,
        Table::EmailCampaign,
        Table::Message,
        Table::AiDraft,
        Table::BackgroundJob,
    ];

    /// The table's default (reference schema) name.
    pub fn default_name(self) -> &'static str {
        match self {
            Table::Lead => "Lead",
            Table::EmailCampaign => "EmailCampaign",
            Table::Message => "Message",
            Table::AiDraft => "AIDraft",
            Table::BackgroundJob => "BackgroundJob",
        }
    }

    /// Lowercase label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Table::Lead => "lead",
            Table::EmailCampaign => "email_campaign",
            Table::Message => "message",
            Table::AiDraft => "ai_draft",
            Table::BackgroundJob => "background_job",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadRow {
    pub id: String,
    pub client_id: Option<String>,
    pub email_campaign_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRow {
    pub id: String,
    pub delay_min_seconds: Option<i32>,
    pub delay_max_seconds: Option<i32>,
    pub response_mode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub lead_id: Option<String>,
    pub channel: Option<String>,
    pub direction: Option<String>,
    pub sent_by: Option<String>,
    pub sent_by_user_id: Option<String>,
    pub ai_draft_id: Option<String>,
    pub sent_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftRow {
    pub id: String,
    pub lead_id: Option<String>,
    pub trigger_message_id: Option<String>,
    pub channel: Option<String>,
    pub response_disposition: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: String,
    pub job_type: Option<String>,
    pub lead_id: Option<String>,
    pub message_id: Option<String>,
    pub draft_id: Option<String>,
    pub run_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
}

/// The job type whose delay replytime attributes.
pub const AI_AUTO_SEND_DELAYED: &str = "AI_AUTO_SEND_DELAYED";

/// One row of one source table, with the columns replytime reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Row {
    Lead(LeadRow),
    Campaign(CampaignRow),
    Message(MessageRow),
    Draft(DraftRow),
    Job(JobRow),
}

impl Row {
    pub fn table(&self) -> Table {
        match self {
            Row::Lead(_) => Table::Lead,
            Row::Campaign(_) => Table::EmailCampaign,
            Row::Message(_) => Table::Message,
            Row::Draft(_) => Table::AiDraft,
            Row::Job(_) => Table::BackgroundJob,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Row::Lead(r) => &r.id,
            Row::Campaign(r) => &r.id,
            Row::Message(r) => &r.id,
            Row::Draft(r) => &r.id,
            Row::Job(r) => &r.id,
        }
    }
}

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
