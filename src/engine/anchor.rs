//! The anchor rules (SPEC 3), evaluated for one inbound message over the state's
//! ordered indexes. Every step is a point read or one iterator seek: O(log n) in
//! the thread length, independent of the number of threads.
//!
//! ```text
//!  thread (lead, channel) ordered by (sentAt, id)
//!   ... I1  I2  O  O  O  I3 ...          I2 is an anchor: its successor is outbound
//!           │  └─window─┘ │              window of I2: after I2, before the next inbound
//!           anchor        next inbound
//! ```

use super::apply::{INBOUND, thread_place};
use super::delay::{DEFAULT_DELAY_MAX_SECONDS, DEFAULT_DELAY_MIN_SECONDS, chosen_delay};
use super::keys;
use super::{EngineError, JobDelay};
use crate::change::{JobRow, LeadRow, MessageRow};
use crate::row::TimingRow;
use crate::store::{Cf, StoreTxn};

/// An anchor as derived now: its lead, and its row unless the row is held because
/// the lead (or its `clientId`) is unknown.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DerivedAnchor {
    pub lead_id: String,
    pub row: Option<TimingRow>,
    /// Why the row is held (`Some` exactly when `row` is `None`).
    pub held: Option<HeldReason>,
}

/// Why an anchor's row is held back from the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldReason {
    /// No `"Lead"` row (yet): rows arrive in any order, so a short hold is normal.
    LeadMissing,
    /// The lead exists with a NULL `clientId`.
    NoClient,
}

impl HeldReason {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            HeldReason::LeadMissing => 0,
            HeldReason::NoClient => 1,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<HeldReason> {
        match byte {
            0 => Some(HeldReason::LeadMissing),
            1 => Some(HeldReason::NoClient),
            _ => None,
        }
    }
}

/// Derives the anchor of `inbound_id`, or `None` when that message is not an anchor.
pub(super) fn derive(
    tx: &StoreTxn<'_>,
    inbound_id: &str,
) -> Result<Option<DerivedAnchor>, EngineError> {
    let Some(inbound) = tx.get_record::<MessageRow>(Cf::Messages, inbound_id.as_bytes())? else {
        return Ok(None);
    };
    let Some((lead, channel, sent_at)) = thread_place(&inbound) else {
        return Ok(None);
    };
    if inbound.direction.as_deref() != Some(INBOUND) {
        return Ok(None);
    }
    let prefix = keys::thread_prefix(lead, channel);
    let mut key = prefix.clone();
    keys::push_pos(&mut key, sent_at, inbound_id);
    if !successor_is_outbound(tx, &prefix, &key)? {
        return Ok(None);
    }
    let client_id = match tx.get_record::<LeadRow>(Cf::Leads, lead.as_bytes())? {
        None => Err(HeldReason::LeadMissing),
        Some(LeadRow {
            client_id: None, ..
        }) => Err(HeldReason::NoClient),
        Some(LeadRow {
            client_id: Some(client_id),
            ..
        }) => Ok(client_id),
    };
    let client_id = match client_id {
        Ok(client_id) => client_id,
        Err(reason) => {
            return Ok(Some(DerivedAnchor {
                lead_id: lead.to_string(),
                row: None,
                held: Some(reason),
            }));
        }
    };
    let mut row = TimingRow::unanswered(client_id, lead, channel, inbound_id, sent_at);
    setter_response(tx, &prefix, &key, &mut row)?;
    ai_response(tx, &mut row)?;
    Ok(Some(DerivedAnchor {
        lead_id: lead.to_string(),
        row: Some(row),
        held: None,
    }))
}

/// SPEC 3.2: an inbound is an anchor when its immediate successor is outbound.
fn successor_is_outbound(
    tx: &StoreTxn<'_>,
    prefix: &[u8],
    key: &[u8],
) -> Result<bool, EngineError> {
    let next = tx.next_entry(Cf::Thread, prefix, Some(key))?;
    Ok(next.is_some_and(|(_, direction)| direction == b"o"))
}

/// SPEC 3.3–3.4: the first setter message with a user in the response window.
fn setter_response(
    tx: &StoreTxn<'_>,
    prefix: &[u8],
    key: &[u8],
    row: &mut TimingRow,
) -> Result<(), EngineError> {
    let window_end = tx.next_key(Cf::Inbound, prefix, Some(key))?;
    let Some(setter_key) = tx.next_key(Cf::Setter, prefix, Some(key))? else {
        return Ok(());
    };
    if window_end.is_some_and(|end| setter_key > end) {
        return Ok(());
    }
    let id = keys::id_after_pos(&setter_key, prefix.len());
    let Some(setter) = tx.get_record::<MessageRow>(Cf::Messages, id.as_bytes())? else {
        return Err(EngineError::Inconsistent(format!(
            "setter index names missing message {id}"
        )));
    };
    let sent_at = setter.sent_at.expect("indexed setter messages have sentAt");
    row.setter_response_ms = Some(sent_at.floor_millis_since(row.inbound_sent_at));
    row.setter_response_sent_at = Some(sent_at);
    row.setter_sent_by_user_id = setter.sent_by_user_id;
    row.setter_response_message_id = Some(id);
    Ok(())
}

/// SPEC 3.5–3.6: the draft triggered by the anchor, its first AI send, and the
/// delayed auto-send job with the delay recorded at the job's insert.
fn ai_response(tx: &StoreTxn<'_>, row: &mut TimingRow) -> Result<(), EngineError> {
    let draft_prefix = keys::draft_trigger_prefix(&row.inbound_message_id, &row.channel);
    let Some(draft_key) = tx.next_key(Cf::DraftTrigger, &draft_prefix, None)? else {
        return Ok(());
    };
    let draft_id = String::from_utf8_lossy(&draft_key[draft_prefix.len()..]).into_owned();

    let send_prefix = keys::ai_send_prefix(&draft_id);
    if let Some(send_key) = tx.next_key(Cf::AiSend, &send_prefix, None)? {
        let id = keys::id_after_pos(&send_key, send_prefix.len());
        let send = tx
            .get_record::<MessageRow>(Cf::Messages, id.as_bytes())?
            .ok_or_else(|| {
                EngineError::Inconsistent(format!("ai send index names missing message {id}"))
            })?;
        let sent_at = send.sent_at.expect("indexed AI sends have sentAt");
        row.ai_response_ms = Some(sent_at.floor_millis_since(row.inbound_sent_at));
        row.ai_actual_delay_seconds = Some(sent_at.floor_seconds_since(row.inbound_sent_at));
        row.ai_response_sent_at = Some(sent_at);
        row.ai_response_message_id = Some(id);
    }

    let job_prefix = keys::job_index_prefix(&row.inbound_message_id, &draft_id);
    row.ai_draft_id = Some(draft_id);
    let Some(job_key) = tx.prev_key(Cf::JobIndex, &job_prefix, None)? else {
        return Ok(());
    };
    let job_id = keys::job_id_of_index_key(&job_key, job_prefix.len());
    let job = tx
        .get_record::<JobRow>(Cf::Jobs, job_id.as_bytes())?
        .ok_or_else(|| {
            EngineError::Inconsistent(format!("job index names missing job {job_id}"))
        })?;
    let delay = tx.get_record::<JobDelay>(Cf::JobDelay, job_id.as_bytes())?;
    let (min, max) = delay.map_or(
        (DEFAULT_DELAY_MIN_SECONDS, DEFAULT_DELAY_MAX_SECONDS),
        |d| (d.min, d.max),
    );
    row.ai_delay_min_seconds = Some(min);
    row.ai_delay_max_seconds = Some(max);
    row.ai_chosen_delay_seconds = Some(chosen_delay(&row.inbound_message_id, min, max));
    row.ai_scheduled_run_at = job.run_at;
    row.ai_job_started_at = job.started_at;
    row.ai_job_finished_at = job.finished_at;
    row.ai_background_job_id = Some(job_id);
    Ok(())
}

/// Whether the job's `runAt` strays more than a second from the chosen delay.
pub(super) fn delay_mismatch(row: &TimingRow) -> bool {
    match (row.ai_scheduled_run_at, row.ai_chosen_delay_seconds) {
        (Some(run_at), Some(chosen)) => {
            let actual = run_at.0 - row.inbound_sent_at.0;
            (actual - i64::from(chosen) * 1_000_000).abs() > 1_000_000
        }
        _ => false,
    }
}
