//! What a history looks like: sizes, the mix of operations and the odds of each edge
//! case. Every knob is a plain public field so tests can dial one behaviour up.

/// Sizes and shape of a generated history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryConfig {
    /// Lead ids in play. Messages use them whether or not the `"Lead"` row exists
    /// yet, so leads arrive after their messages and come back after deletes.
    pub leads: usize,
    /// Campaign ids in play (leads may point to one that does not exist).
    pub campaigns: usize,
    pub clients: usize,
    /// Setter user ids.
    pub users: usize,
    pub channels: Vec<String>,
    /// Transactions produced by `workload::history`.
    pub transactions: usize,
    /// Each transaction holds 1..=this many changes.
    pub max_changes_per_txn: usize,
    /// Largest step of the clock between two operations, in microseconds.
    pub max_clock_step_micros: i64,
    /// How far back a back-dated (late) message can be stamped, in microseconds.
    pub max_backdate_micros: i64,
    pub mix: OperationMix,
    pub odds: Odds,
    /// How picks favour recent leads and rows; `None`: every lead is in play from
    /// the first change, and every row is as likely to be picked as any other.
    pub locality: Option<Locality>,
}

/// Leads arrive over the history and each is talked to for a while, as in a CRM
/// where new leads keep coming in and old conversations go quiet: the leads (and
/// rows) a change touches are mostly the recent ones, however long the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Locality {
    /// Leads in conversation at once: the newest this many of the leads that have
    /// arrived. The first this many have arrived before the first change.
    pub active_leads: usize,
    /// Row changes between one lead's arrival and the next.
    pub changes_per_lead: usize,
    /// The chance that a pick ignores recency (an old lead writes again, an old
    /// message is edited): uniform over every lead that has arrived, or every row.
    pub revival: f64,
}

/// Relative weights of the operations the generator picks from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationMix {
    /// 1–3 inbound messages on one thread.
    pub inbound_burst: u32,
    /// An outbound message, usually by a setter.
    pub setter_reply: u32,
    /// An AIDraft for an inbound message.
    pub ai_draft: u32,
    /// A delayed auto-send BackgroundJob for a draft.
    pub ai_job: u32,
    /// A job's runAt, startedAt or finishedAt moves on.
    pub job_progress: u32,
    /// The AI send of a draft.
    pub ai_send: u32,
    /// A draft and its job inserted before their inbound message (held back to a
    /// later transaction).
    pub ai_before_message: u32,
    /// An update of a message: sentAt set or back-dated, moved to another thread,
    /// direction flipped, sender or draft changed.
    pub message_edit: u32,
    pub message_delete: u32,
    /// A draft's disposition or trigger changes, or the draft is deleted.
    pub draft_edit: u32,
    /// A job's type or targets change, or the job is deleted.
    pub job_edit: u32,
    /// A campaign is created, changes its delay bounds or mode, or is deleted.
    pub campaign_change: u32,
    /// A lead is created, re-assigned to another campaign or client, or deleted.
    pub lead_change: u32,
    /// A message, draft or job changes its id.
    pub rename: u32,
}

/// Probabilities (0..=1) of the edge cases, each checked where it applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Odds {
    /// A new message stamped up to `max_backdate_micros` before the clock.
    pub backdated: f64,
    /// A new message with a NULL sentAt (a later edit usually sets it).
    pub null_sent_at: f64,
    /// A new message stamped at the same microsecond as its thread's last one.
    pub same_microsecond: f64,
    /// A direction other than inbound/outbound (`system`, `note`, `OUTBOUND`).
    pub unknown_direction: f64,
    /// A sentBy other than `setter`/`ai` (NULL, `system`, `Setter`).
    pub unknown_sent_by: f64,
    /// A setter message without sentByUserId.
    pub setter_without_user: f64,
    /// A setter reply that used the anchor's AI draft.
    pub setter_used_draft: f64,
    /// An AI send stamped before its trigger message.
    pub ai_send_before_trigger: f64,
    /// A draft on another channel than its trigger message's.
    pub draft_other_channel: f64,
    /// A job of another type than AI_AUTO_SEND_DELAYED.
    pub job_other_type: f64,
    pub null_created_at: f64,
    pub null_client_id: f64,
    /// A campaign delay bound left NULL.
    pub null_delay_bound: f64,
    /// A message with a NULL leadId, channel or direction (quarantined by the
    /// engine). Zero by default: only valid if the schema allows the NULLs.
    pub null_message_key: f64,
    /// An update that sends some untouched columns as unchanged TOAST values.
    pub unchanged_columns: f64,
    /// A transaction that starts with a TRUNCATE of some source tables.
    pub truncate: f64,
    /// Before the first messages of a thread whose lead does not exist yet, insert
    /// the lead (otherwise the lead arrives after its messages, if ever).
    pub lead_before_messages: f64,
    /// When a lead_change hits an existing lead, the chance it deletes it.
    pub lead_delete: f64,
    /// Follow the conversation (latest inbound, oldest draft awaiting a job, oldest
    /// job awaiting a send) rather than picking any row at random.
    pub follow_conversation: f64,
    /// At the start of a transaction, insert the messages held back by
    /// `ai_before_message`.
    pub release_held_messages: f64,
}

impl Default for HistoryConfig {
    /// Adversarial: small id pools so threads, drafts and jobs collide, and every
    /// edge case at a visible rate.
    fn default() -> Self {
        HistoryConfig {
            leads: 8,
            campaigns: 3,
            clients: 3,
            users: 3,
            channels: default_channels(),
            transactions: 200,
            max_changes_per_txn: 6,
            max_clock_step_micros: 90_000_000,
            max_backdate_micros: 3_600_000_000,
            mix: OperationMix {
                inbound_burst: 12,
                setter_reply: 8,
                ai_draft: 12,
                ai_job: 10,
                job_progress: 6,
                ai_send: 10,
                ai_before_message: 3,
                message_edit: 10,
                message_delete: 3,
                draft_edit: 3,
                job_edit: 3,
                campaign_change: 4,
                lead_change: 5,
                rename: 2,
            },
            odds: Odds {
                backdated: 0.15,
                null_sent_at: 0.1,
                same_microsecond: 0.1,
                unknown_direction: 0.05,
                unknown_sent_by: 0.1,
                setter_without_user: 0.1,
                setter_used_draft: 0.2,
                ai_send_before_trigger: 0.1,
                draft_other_channel: 0.1,
                job_other_type: 0.1,
                null_created_at: 0.1,
                null_client_id: 0.1,
                null_delay_bound: 0.1,
                null_message_key: 0.0,
                unchanged_columns: 0.2,
                truncate: 0.005,
                lead_before_messages: 0.3,
                lead_delete: 0.25,
                follow_conversation: 0.75,
                release_held_messages: 0.5,
            },
            locality: None,
        }
    }
}

impl HistoryConfig {
    /// Production-like: many leads, mostly appends in time order (inbound bursts,
    /// setter and AI replies, drafts then delayed jobs then AI sends), rare edits,
    /// no truncates.
    pub fn realistic() -> Self {
        HistoryConfig {
            leads: 2_000,
            campaigns: 20,
            clients: 10,
            users: 25,
            transactions: 10_000,
            max_changes_per_txn: 4,
            max_clock_step_micros: 20_000_000,
            max_backdate_micros: 600_000_000,
            mix: OperationMix {
                inbound_burst: 30,
                setter_reply: 20,
                ai_draft: 12,
                ai_job: 11,
                job_progress: 14,
                ai_send: 10,
                ai_before_message: 0,
                message_edit: 2,
                message_delete: 1,
                draft_edit: 1,
                job_edit: 1,
                campaign_change: 1,
                lead_change: 6,
                rename: 0,
            },
            odds: Odds {
                backdated: 0.01,
                null_sent_at: 0.02,
                same_microsecond: 0.005,
                unknown_direction: 0.005,
                unknown_sent_by: 0.01,
                setter_without_user: 0.01,
                setter_used_draft: 0.1,
                ai_send_before_trigger: 0.002,
                draft_other_channel: 0.01,
                job_other_type: 0.02,
                null_created_at: 0.0,
                null_client_id: 0.01,
                null_delay_bound: 0.02,
                null_message_key: 0.0,
                unchanged_columns: 0.05,
                truncate: 0.0,
                lead_before_messages: 0.98,
                lead_delete: 0.02,
                follow_conversation: 0.95,
                release_held_messages: 0.9,
            },
            ..HistoryConfig::default()
        }
    }
}

/// `sms`, `email`, `linkedin`.
pub(super) fn default_channels() -> Vec<String> {
    ["sms", "email", "linkedin"].map(String::from).to_vec()
}
