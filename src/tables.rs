//! Each source table's columns, described once (SPEC section 1): the names an
//! operator maps in the `[tables]` section of the config, with the reference schema
//! as defaults, and how replytime reads each column. The stream's decoder, the
//! initial load's query and its decoding, the analytics SQL and the checks all take
//! their columns from here.

use serde::{Deserialize, Serialize};

use crate::change::Table;

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

/// One source table's names: a struct per table so that a typo in the config is an
/// unknown-field error, with the reference schema as defaults.
macro_rules! table_names {
    ($(#[$doc:meta])* $names:ident, $table:literal,
     [$($field:ident: $column:literal $kind:ident),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $names {
            /// The table's name in the source schema.
            pub table: String,
            $(#[doc = concat!("Source column read as `", $column, "`.")] pub $field: String,)+
        }

        impl Default for $names {
            fn default() -> Self {
                $names { table: $table.to_string(), $($field: $column.to_string(),)+ }
            }
        }

        impl $names {
            const LOGICAL: &'static [LogicalColumn] =
                &[$(LogicalColumn { name: $column, kind: ValueKind::$kind },)+];

            fn source_names(&self) -> Vec<&str> {
                vec![$(self.$field.as_str(),)+]
            }
        }
    };
}

table_names!(
    /// `"Lead"`.
    LeadNames, "Lead",
    [id: "id" Text, client_id: "clientId" Text, email_campaign_id: "emailCampaignId" Text]
);
table_names!(
    /// `"EmailCampaign"`.
    CampaignNames, "EmailCampaign",
    [
        id: "id" Text,
        ai_auto_send_delay_min_seconds: "aiAutoSendDelayMinSeconds" Int,
        ai_auto_send_delay_max_seconds: "aiAutoSendDelayMaxSeconds" Int,
        response_mode: "responseMode" Text,
    ]
);
table_names!(
    /// `"Message"`.
    MessageNames, "Message",
    [
        id: "id" Text,
        lead_id: "leadId" Text,
        channel: "channel" Text,
        direction: "direction" Text,
        sent_by: "sentBy" Text,
        sent_by_user_id: "sentByUserId" Text,
        ai_draft_id: "aiDraftId" Text,
        sent_at: "sentAt" Timestamp,
    ]
);
table_names!(
    /// `"AIDraft"`.
    DraftNames, "AIDraft",
    [
        id: "id" Text,
        lead_id: "leadId" Text,
        trigger_message_id: "triggerMessageId" Text,
        channel: "channel" Text,
        response_disposition: "responseDisposition" Text,
    ]
);
table_names!(
    /// `"BackgroundJob"`.
    JobNames, "BackgroundJob",
    [
        id: "id" Text,
        r#type: "type" Text,
        lead_id: "leadId" Text,
        message_id: "messageId" Text,
        draft_id: "draftId" Text,
        run_at: "runAt" Timestamp,
        started_at: "startedAt" Timestamp,
        finished_at: "finishedAt" Timestamp,
        created_at: "createdAt" Timestamp,
    ]
);

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

/// Names of the five source tables and of the columns replytime reads (the
/// `[tables]` section of the config). Defaults: the reference schema in `public`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableMapping {
    pub schema: String,
    pub lead: LeadNames,
    pub email_campaign: CampaignNames,
    pub message: MessageNames,
    pub ai_draft: DraftNames,
    pub background_job: JobNames,
    pub lead_booking: BookingNames,
}

impl Default for TableMapping {
    fn default() -> Self {
        TableMapping {
            schema: "public".to_string(),
            lead: LeadNames::default(),
            email_campaign: CampaignNames::default(),
            message: MessageNames::default(),
            ai_draft: DraftNames::default(),
            background_job: JobNames::default(),
            lead_booking: BookingNames::default(),
        }
    }
}

impl TableMapping {
    /// The table's name in the source schema.
    pub fn table_name(&self, table: Table) -> &str {
        match table {
            Table::Lead => &self.lead.table,
            Table::EmailCampaign => &self.email_campaign.table,
            Table::Message => &self.message.table,
            Table::AiDraft => &self.ai_draft.table,
            Table::BackgroundJob => &self.background_job.table,
        }
    }

    /// Source names of the columns replytime reads, in the order of
    /// [`TableMapping::logical_columns`] (SPEC section 1): `id` first.
    pub fn column_names(&self, table: Table) -> Vec<&str> {
        match table {
            Table::Lead => self.lead.source_names(),
            Table::EmailCampaign => self.email_campaign.source_names(),
            Table::Message => self.message.source_names(),
            Table::AiDraft => self.ai_draft.source_names(),
            Table::BackgroundJob => self.background_job.source_names(),
        }
    }

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

    /// The columns replytime reads, by reference name, in SPEC section 1 order.
    pub fn logical_columns(table: Table) -> &'static [LogicalColumn] {
        match table {
            Table::Lead => LeadNames::LOGICAL,
            Table::EmailCampaign => CampaignNames::LOGICAL,
            Table::Message => MessageNames::LOGICAL,
            Table::AiDraft => DraftNames::LOGICAL,
            Table::BackgroundJob => JobNames::LOGICAL,
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
