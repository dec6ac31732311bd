//! Key layout of the engine's column families.
//!
//! Strings are length-prefixed (u32 BE) so that a prefix never matches a longer
//! string. A thread position is `sentAt` (i64 with the sign bit flipped, BE, so that
//! bytes order like numbers) followed by the raw id bytes: byte order of the key is
//! the thread order (`sentAt`, `id` in C collation).
//!
//! ```text
//!  messages       id                                           MessageRow
//!  thread         str(lead) str(channel) pos                   direction byte: every threaded message
//!  inbound        str(lead) str(channel) pos                   (): inbound messages of a thread
//!  setter         str(lead) str(channel) pos                   (): outbound setter messages with a user
//!  ai_send        str(draft) pos                               (): qualifying AI sends of a draft
//!  drafts         id                                           DraftRow
//!  draft_trigger  str(trigger) str(channel) id                 (): drafts by (triggerMessageId, channel)
//!  jobs           id                                           JobRow
//!  job_index      str(message) str(draft) createdAt? id        (): AI_AUTO_SEND_DELAYED jobs
//!  job_delay      id                                           JobDelay recorded at the job's insert
//!  leads          id                                           LeadRow
//!  campaigns      id                                           CampaignRow
//!  anchors        inbound id                                   AnchorRecord: what the sink holds
//!  lead_anchors   str(lead) inbound id                         (): anchors by lead (clientId changes)
//!  dirty          inbound id                                   (): anchors to re-derive (spilled)
//! ```

use crate::change::Timestamp;

pub(super) fn push_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_be_bytes());
    key.extend_from_slice(s.as_bytes());
}

pub(super) fn push_time(key: &mut Vec<u8>, t: Timestamp) {
    key.extend_from_slice(&((t.0 as u64) ^ (1 << 63)).to_be_bytes());
}

/// Prefix of a thread's keys in `thread`, `inbound` and `setter`.
pub(super) fn thread_prefix(lead: &str, channel: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + lead.len() + channel.len() + 32);
    push_str(&mut key, lead);
    push_str(&mut key, channel);
    key
}

/// Appends a thread position (`sentAt`, `id`).
pub(super) fn push_pos(key: &mut Vec<u8>, sent_at: Timestamp, id: &str) {
    push_time(key, sent_at);
    key.extend_from_slice(id.as_bytes());
}

/// Length of the thread prefix (`str(lead) str(channel)`) a thread key starts with.
pub(super) fn thread_prefix_len(key: &[u8]) -> Option<usize> {
    let str_end = |at: usize| -> Option<usize> {
        let len = u32::from_be_bytes(key.get(at..at + 4)?.try_into().ok()?) as usize;
        Some(at + 4 + len).filter(|end| *end <= key.len())
    };
    str_end(0).and_then(str_end)
}

/// The message id at the end of a key that ends with a position after `prefix_len`.
pub(super) fn id_after_pos(key: &[u8], prefix_len: usize) -> String {
    String::from_utf8_lossy(&key[prefix_len + 8..]).into_owned()
}

pub(super) fn ai_send_prefix(draft: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + draft.len() + 32);
    push_str(&mut key, draft);
    key
}

pub(super) fn draft_trigger_prefix(trigger: &str, channel: &str) -> Vec<u8> {
    thread_prefix(trigger, channel)
}

pub(super) fn job_index_prefix(message: &str, draft: &str) -> Vec<u8> {
    thread_prefix(message, draft)
}

/// Appends `createdAt` so that NULL orders before every value, then the id.
pub(super) fn push_created_id(key: &mut Vec<u8>, created_at: Option<Timestamp>, id: &str) {
    match created_at {
        None => key.push(0),
        Some(t) => {
            key.push(1);
            push_time(key, t);
        }
    }
    key.extend_from_slice(id.as_bytes());
}

/// The job id at the end of a `job_index` key.
pub(super) fn job_id_of_index_key(key: &[u8], prefix_len: usize) -> String {
    let rest = &key[prefix_len..];
    let id = if rest.first() == Some(&0) {
        &rest[1..]
    } else {
        &rest[9..]
    };
    String::from_utf8_lossy(id).into_owned()
}

pub(super) fn lead_anchor_prefix(lead: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + lead.len() + 32);
    push_str(&mut key, lead);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_like_sent_at_then_id_bytes() {
        let key = |t: i64, id: &str| {
            let mut k = thread_prefix("l", "sms");
            push_pos(&mut k, Timestamp(t), id);
            k
        };
        assert!(key(-5, "z") < key(3, "a"));
        assert!(key(3, "B") < key(3, "a"), "C collation: uppercase first");
        assert!(key(3, "a") < key(3, "ab"));
        assert!(key(i64::MIN, "") < key(i64::MAX, ""));
        let k = key(7, "msg-Ω");
        assert_eq!(id_after_pos(&k, thread_prefix("l", "sms").len()), "msg-Ω");
        assert_eq!(thread_prefix_len(&k), Some(thread_prefix("l", "sms").len()));
        assert_eq!(thread_prefix_len(&k[..6]), None, "cut inside the channel");
        assert_eq!(thread_prefix_len(&[0, 0]), None);
    }

    #[test]
    fn null_created_at_orders_first() {
        let key = |t: Option<i64>, id: &str| {
            let mut k = job_index_prefix("m", "d");
            push_created_id(&mut k, t.map(Timestamp), id);
            k
        };
        assert!(key(None, "z") < key(Some(i64::MIN), "a"));
        assert!(key(Some(1), "b") < key(Some(2), "a"));
        let p = job_index_prefix("m", "d").len();
        assert_eq!(job_id_of_index_key(&key(None, "j1"), p), "j1");
        assert_eq!(job_id_of_index_key(&key(Some(9), "j2"), p), "j2");
    }
}
