//! Each source table's columns, described once (SPEC section 1), in the
//! [`source_tables!`] invocation below. From that one description come:
//!
//! - [`Table`], the tables replytime reads;
//! - the typed rows ([`LeadRow`] … [`JobRow`], [`Row`]) that changes carry, and
//!   their construction from a row's decoded values ([`Row::from_values`]), which
//!   the stream's decoder and the initial load share;
//! - the names an operator maps in the `[tables]` section of the config
//!   ([`TableMapping`]), with the reference schema as defaults;
//! - how each column is read ([`LogicalColumn`]): the decoder's checks of a Relation
//!   message, the initial load's `SELECT` list and the publication's column list.
//!
//! Only the columns replytime reads exist here: everything else (message bodies) is
//! dropped at decode and never stored or logged.

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// How replytime reads a column's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Any type: its text output is kept as is (text, varchar, uuid, enums, …).
    Text,
    /// `int2`, `int4` or `int8`, read into an `i32`.
    Int,
    /// `timestamptz`, or `timestamp` read as UTC.
    Timestamp,
}

/// A column replytime reads, by its reference (logical) name of SPEC section 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogicalColumn {
    pub name: &'static str,
    pub kind: ValueKind,
}

/// One decoded value of a column other than `id` (a NULL, and an unchanged TOAST
/// value the row does not carry, are `Null`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Int(i32),
    Time(Timestamp),
}

/// The Rust type of a column's values, which says how it is read.
pub trait ColumnType: Sized {
    const KIND: ValueKind;
    /// The typed value; `None` for `Null` (and for a value of another kind, which
    /// the decoder never produces: it parses each column by its kind).
    fn from_value(value: Value) -> Option<Self>;
}

/// Implements [`ColumnType`] for a Rust type read from values of one kind.
macro_rules! column_type {
    ($($ty:ty => $kind:ident, $variant:ident;)+) => {$(
        impl ColumnType for $ty {
            const KIND: ValueKind = ValueKind::$kind;
            fn from_value(value: Value) -> Option<Self> {
                debug_assert!(matches!(value, Value::Null | Value::$variant(_)), "{value:?}");
                match value {
                    Value::$variant(inner) => Some(inner),
                    _ => None,
                }
            }
        }
    )+};
}

column_type! {
    String => Text, Text;
    i32 => Int, Int;
    Timestamp => Timestamp, Time;
}

/// Generates, from one description per table, everything listed in the module
/// doc. Per table: its [`Table`] variant and metrics label, the `[tables]` config
/// key and its names struct, the [`Row`] variant and its row struct, the default
/// (reference schema) table name, then its columns: `id` first, each other column
/// as `field: Type = "referenceName"`, read as `Option<Type>` (every column but
/// `id` may be NULL). Attributes on a column apply to its config name (a config
/// key other than the field's name).
macro_rules! source_tables {
    ($(
        $(#[$doc:meta])*
        $table:ident, label $label:literal, config $key:ident: $names:ident,
        row $variant:ident($row:ident), default $default:literal {
            id = $id:literal,
            $($(#[$attr:meta])* $field:ident: $ty:ty = $column:literal,)+
        }
    )+) => {
        /// The source tables replytime reads.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Table {
            $($(#[$doc])* $table,)+
        }

        impl Table {
            pub const ALL: [Table; [$(stringify!($table),)+].len()] = [$(Table::$table,)+];

            /// The table's default (reference schema) name.
            pub fn default_name(self) -> &'static str {
                match self {
                    $(Table::$table => $default,)+
                }
            }

            /// Lowercase label for metrics and logs.
            pub fn label(self) -> &'static str {
                match self {
                    $(Table::$table => $label,)+
                }
            }

            /// The columns replytime reads, by reference name, in SPEC section 1
            /// order: `id` first.
            pub fn logical_columns(self) -> &'static [LogicalColumn] {
                match self {
                    $(Table::$table => &[
                        LogicalColumn { name: $id, kind: ValueKind::Text },
                        $(LogicalColumn { name: $column, kind: <$ty as ColumnType>::KIND },)+
                    ],)+
                }
            }
        }

        $(
            #[doc = concat!("One row of `\"", $default, "\"`, with the columns replytime reads.")]
            #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
            pub struct $row {
                pub id: String,
                $(pub $field: Option<$ty>,)+
            }

            #[doc = concat!("The names of `\"", $default, "\"` and of its columns in the source schema.")]
            #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $names {
                /// The table's name in the source schema.
                pub table: String,
                #[doc = concat!("Source column read as `", $id, "`.")]
                pub id: String,
                $(
                    #[doc = concat!("Source column read as `", $column, "`.")]
                    $(#[$attr])*
                    pub $field: String,
                )+
            }

            impl Default for $names {
                fn default() -> Self {
                    $names {
                        table: $default.to_string(),
                        id: $id.to_string(),
                        $($field: $column.to_string(),)+
                    }
                }
            }

            impl $names {
                fn source_names(&self) -> Vec<&str> {
                    vec![self.id.as_str(), $(self.$field.as_str(),)+]
                }
            }
        )+

        /// One row of one source table, with the columns replytime reads.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Row {
            $($variant($row),)+
        }

        impl Row {
            pub fn table(&self) -> Table {
                match self {
                    $(Row::$variant(_) => Table::$table,)+
                }
            }

            pub fn id(&self) -> &str {
                match self {
                    $(Row::$variant(row) => &row.id,)+
                }
            }

            /// The row of `table` with key `id` and the decoded `values` of its
            /// other columns, in [`Table::logical_columns`] order.
            pub fn from_values(table: Table, id: String, values: impl IntoIterator<Item = Value>) -> Row {
                let mut values = values.into_iter();
                let mut next = || values.next().unwrap_or(Value::Null);
                match table {
                    $(Table::$table => Row::$variant($row {
                        id,
                        $($field: <$ty as ColumnType>::from_value(next()),)+
                    }),)+
                }
            }
        }

        /// Names of the five source tables and of the columns replytime reads (the
        /// `[tables]` section of the config). Defaults: the reference schema in `public`.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct TableMapping {
            pub schema: String,
            $(pub $key: $names,)+
            pub lead_booking: BookingNames,
        }

        impl Default for TableMapping {
            fn default() -> Self {
                TableMapping {
                    schema: "public".to_string(),
                    $($key: $names::default(),)+
                    lead_booking: BookingNames::default(),
                }
            }
        }

        impl TableMapping {
            /// The table's name in the source schema.
            pub fn table_name(&self, table: Table) -> &str {
                match table {
                    $(Table::$table => &self.$key.table,)+
                }
            }

            /// Source names of the columns replytime reads, in the order of
            /// [`Table::logical_columns`] (SPEC section 1): `id` first.
            pub fn column_names(&self, table: Table) -> Vec<&str> {
                match table {
                    $(Table::$table => self.$key.source_names(),)+
                }
            }
        }
    };
}

source_tables! {
    Lead, label "lead", config lead: LeadNames, row Lead(LeadRow), default "Lead" {
        id = "id",
        client_id: String = "clientId",
        email_campaign_id: String = "emailCampaignId",
    }
    EmailCampaign, label "email_campaign", config email_campaign: CampaignNames,
    row Campaign(CampaignRow), default "EmailCampaign" {
        id = "id",
        #[serde(rename = "ai_auto_send_delay_min_seconds")]
        delay_min_seconds: i32 = "aiAutoSendDelayMinSeconds",
        #[serde(rename = "ai_auto_send_delay_max_seconds")]
        delay_max_seconds: i32 = "aiAutoSendDelayMaxSeconds",
        response_mode: String = "responseMode",
    }
    Message, label "message", config message: MessageNames, row Message(MessageRow),
    default "Message" {
        id = "id",
        lead_id: String = "leadId",
        channel: String = "channel",
        direction: String = "direction",
        sent_by: String = "sentBy",
        sent_by_user_id: String = "sentByUserId",
        ai_draft_id: String = "aiDraftId",
        sent_at: Timestamp = "sentAt",
    }
    AiDraft, label "ai_draft", config ai_draft: DraftNames, row Draft(DraftRow),
    default "AIDraft" {
        id = "id",
        lead_id: String = "leadId",
        trigger_message_id: String = "triggerMessageId",
        channel: String = "channel",
        response_disposition: String = "responseDisposition",
    }
    BackgroundJob, label "background_job", config background_job: JobNames,
    row Job(JobRow), default "BackgroundJob" {
        id = "id",
        #[serde(rename = "type")]
        job_type: String = "type",
        lead_id: String = "leadId",
        message_id: String = "messageId",
        draft_id: String = "draftId",
        run_at: Timestamp = "runAt",
        started_at: Timestamp = "startedAt",
        finished_at: Timestamp = "finishedAt",
        created_at: Timestamp = "createdAt",
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.default_name())
    }
}

/// The booking columns of the lead table (`[tables.lead_booking]`), which only the
/// analytics SQL reads (SPEC 1); the table is `[tables.lead] table`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookingNames {
    pub appointment_booked_at: String,
    pub appointment_canceled_at: String,
    pub ghl_appointment_id: String,
    pub calendly_invitee_uri: String,
    pub calendly_scheduled_event_uri: String,
}

impl Default for BookingNames {
    fn default() -> Self {
        BookingNames {
            appointment_booked_at: "appointmentBookedAt".to_string(),
            appointment_canceled_at: "appointmentCanceledAt".to_string(),
            ghl_appointment_id: "ghlAppointmentId".to_string(),
            calendly_invitee_uri: "calendlyInviteeUri".to_string(),
            calendly_scheduled_event_uri: "calendlyScheduledEventUri".to_string(),
        }
    }
}

impl TableMapping {
    /// The lead id column of the tables sharded by lead (SPEC 9); `None` for the
    /// tables every shard reads. `"BackgroundJob"` goes to every shard: a job that a
    /// lead merge moves to another shard is then an update there, not an insert,
    /// and keeps the delay record of its original insert.
    pub fn lead_column(&self, table: Table) -> Option<&str> {
        match table {
            Table::Message => Some(&self.message.lead_id),
            Table::AiDraft => Some(&self.ai_draft.lead_id),
            Table::BackgroundJob | Table::Lead | Table::EmailCampaign => None,
        }
    }

    /// The mapped table a relation is, if any.
    pub fn table_named(&self, namespace: &str, name: &str) -> Option<Table> {
        if namespace != self.schema {
            return None;
        }
        Table::ALL
            .into_iter()
            .find(|&table| self.table_name(table) == name)
    }
}
