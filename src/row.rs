//! The derived row, `"ResponseTimingEvent"`, and the operations that keep the sink
//! equal to the derivation: upsert a full row, or delete one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::change::Timestamp;
use crate::lsn::Lsn;

/// Namespace of the row ids (the URL namespace of RFC 4122).
const ROW_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6ba7b811_9dad_11d1_80b4_00c04fd430c8);

/// The deterministic id of the row of the anchor `inbound_message_id`:
/// UUIDv5 of `"replytime:" + inbound_message_id`.
pub fn row_id(inbound_message_id: &str) -> Uuid {
    let name = format!("replytime:{inbound_message_id}");
    Uuid::new_v5(&ROW_ID_NAMESPACE, name.as_bytes())
}

/// One `"ResponseTimingEvent"` row: the derived columns of one anchor.
///
/// `id`, `createdAt` and `updatedAt` are not here: the id follows from
/// `inbound_message_id` and the sink keeps the timestamps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimingRow {
    pub client_id: String,
    pub lead_id: String,
    pub channel: String,
    pub inbound_message_id: String,
    pub inbound_sent_at: Timestamp,

    pub setter_response_message_id: Option<String>,
    pub setter_response_sent_at: Option<Timestamp>,
    pub setter_sent_by_user_id: Option<String>,
    pub setter_response_ms: Option<i64>,

    pub ai_draft_id: Option<String>,
    pub ai_response_message_id: Option<String>,
    pub ai_response_sent_at: Option<Timestamp>,
    pub ai_response_ms: Option<i64>,

    pub ai_delay_min_seconds: Option<i32>,
    pub ai_delay_max_seconds: Option<i32>,
    pub ai_chosen_delay_seconds: Option<i32>,
    pub ai_actual_delay_seconds: Option<i64>,
    pub ai_scheduled_run_at: Option<Timestamp>,
    pub ai_background_job_id: Option<String>,
    pub ai_job_started_at: Option<Timestamp>,
    pub ai_job_finished_at: Option<Timestamp>,
}

impl TimingRow {
    /// The row of an inbound message before any response is found: every
    /// response and AI column NULL.
    pub fn unanswered(
        client_id: String,
        lead_id: &str,
        channel: &str,
        inbound_message_id: &str,
        inbound_sent_at: Timestamp,
    ) -> TimingRow {
        TimingRow {
            client_id,
            lead_id: lead_id.to_string(),
            channel: channel.to_string(),
            inbound_message_id: inbound_message_id.to_string(),
            inbound_sent_at,
            setter_response_message_id: None,
            setter_response_sent_at: None,
            setter_sent_by_user_id: None,
            setter_response_ms: None,
            ai_draft_id: None,
            ai_response_message_id: None,
            ai_response_sent_at: None,
            ai_response_ms: None,
            ai_delay_min_seconds: None,
            ai_delay_max_seconds: None,
            ai_chosen_delay_seconds: None,
            ai_actual_delay_seconds: None,
            ai_scheduled_run_at: None,
            ai_background_job_id: None,
            ai_job_started_at: None,
            ai_job_finished_at: None,
        }
    }

    pub fn id(&self) -> Uuid {
        row_id(&self.inbound_message_id)
    }
}

/// One operation on the sink table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // ops are built once and moved, never copied in bulk
pub enum SinkOp {
    /// Make the row of `row.inbound_message_id` equal to `row`; `source_lsn` is the
    /// end LSN of the transaction that produced this content.
    Upsert { row: TimingRow, source_lsn: Lsn },
    /// The anchor is gone: delete its row if present.
    Delete { inbound_message_id: String },
}

impl SinkOp {
    pub fn inbound_message_id(&self) -> &str {
        match self {
            SinkOp::Upsert { row, .. } => &row.inbound_message_id,
            SinkOp::Delete { inbound_message_id } => inbound_message_id,
        }
    }
}

/// The sink table as a map by inbound message id, with operations applied in order:
/// what tests and `--dry-run` use in place of Postgres.
pub fn apply_ops(
    table: &mut std::collections::BTreeMap<String, TimingRow>,
    ops: impl IntoIterator<Item = SinkOp>,
) {
    for op in ops {
        match op {
            SinkOp::Upsert { row, .. } => {
                table.insert(row.inbound_message_id.clone(), row);
            }
            SinkOp::Delete { inbound_message_id } => {
                table.remove(&inbound_message_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_match_the_spec_vectors() {
        assert_eq!(
            row_id("msg_1").to_string(),
            "41066e41-d0e1-565e-86b8-25ef476785cd"
        );
        assert_eq!(
            row_id("hello").to_string(),
            "f0b99a6b-55a9-54c5-8b08-72219ed4d917"
        );
    }
}
