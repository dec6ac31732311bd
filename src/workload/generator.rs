//! The `Generator`: picks operations by weight, turns them into changes, and keeps
//! its model equal to what the changes leave in the tables. The operations
//! themselves live in `conversation` (appends) and `edits` (everything else).

use std::collections::VecDeque;

use crate::change::{Change, MessageRow, Row, Table, Timestamp};

use super::config::{HistoryConfig, Odds, OperationMix};
use super::model::{Model, Pool, Recency};
use super::rng::Rng;
use super::toast;

/// 2024-03-01T00:00:00Z, in microseconds since the Unix epoch.
const START_MICROS: i64 = 1_709_251_200_000_000;

/// Id prefixes mix case, non-ASCII letters and a quote, so that byte order differs
/// from any locale's and SQL quoting is exercised.
pub(super) const MESSAGE_PREFIXES: &[&str] = &["msg_", "Msg_", "MSG-", "mß_", "мсг_", "m'", "Ω_"];
pub(super) const DRAFT_PREFIXES: &[&str] = &["draft_", "Draft_", "dé_", "d'"];
pub(super) const JOB_PREFIXES: &[&str] = &["job_", "JOB-", "jöb_"];

/// Where one (leadId, channel) conversation is.
#[derive(Clone, Debug)]
pub(super) struct ThreadCursor {
    pub lead_id: String,
    pub channel: String,
    /// The latest inbound message generated on the thread (it may be gone since).
    pub last_inbound: Option<String>,
    pub last_sent_at: Option<Timestamp>,
}

/// A deterministic history generator: the same seed and config give the same
/// transactions.
#[derive(Debug)]
pub struct Generator {
    pub(super) config: HistoryConfig,
    pub(super) rng: Rng,
    pub(super) model: Model,
    /// Microseconds since the Unix epoch; moves forward between operations.
    pub(super) clock: i64,
    serial: u64,
    pub(super) lead_ids: Vec<String>,
    pub(super) campaign_ids: Vec<String>,
    pub(super) client_ids: Vec<String>,
    pub(super) user_ids: Vec<String>,
    pub(super) threads: Pool<ThreadCursor>,
    /// Drafts waiting for their job, oldest first (ids; may be gone since).
    pub(super) awaiting_job: VecDeque<String>,
    /// Jobs waiting for their AI send, oldest first (ids; may be gone since).
    pub(super) awaiting_send: VecDeque<String>,
    /// Inbound messages whose draft and job were inserted first.
    pub(super) held_messages: VecDeque<MessageRow>,
    /// Row changes produced so far (leads arrive with them, see `Locality`).
    changes: u64,
    /// Which leads and rows of the model's pools a pick chooses among (set per
    /// transaction: leads arrive only between transactions).
    pub(super) recency: Recency,
}

fn id_pool(prefixes: &[&str], count: usize) -> Vec<String> {
    (0..count.max(1))
        .map(|i| format!("{}{i}", prefixes[i % prefixes.len()]))
        .collect()
}

impl Generator {
    /// The rows the generator believes the tables hold, for the oracle's tests of
    /// the generator.
    #[cfg(test)]
    pub(crate) fn model(&self) -> &super::model::Model {
        &self.model
    }

    pub fn new(seed: u64, config: HistoryConfig) -> Self {
        let lead_ids = id_pool(&["lead-", "Lead_", "LEAD-", "lé-", "Лид-"], config.leads);
        Generator {
            campaign_ids: id_pool(&["camp-", "Camp_"], config.campaigns),
            client_ids: id_pool(&["client-", "Client_"], config.clients),
            user_ids: id_pool(&["user-", "User_"], config.users),
            lead_ids,
            config,
            rng: Rng::new(seed),
            model: Model::default(),
            clock: START_MICROS,
            serial: 0,
            threads: Pool::default(),
            awaiting_job: VecDeque::new(),
            awaiting_send: VecDeque::new(),
            held_messages: VecDeque::new(),
            changes: 0,
            recency: Recency::UNIFORM,
        }
    }

    /// Changes the shape of what comes next (ids and the model carry on).
    pub fn config_mut(&mut self) -> &mut HistoryConfig {
        &mut self.config
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// The changes of the next transaction: between 1 and `max_changes_per_txn`.
    pub fn next_transaction(&mut self) -> Vec<Change> {
        let target = 1 + self.rng.below(self.config.max_changes_per_txn.max(1));
        self.recency = self.recency_now();
        let mut out = Vec::new();
        if self.chance(|o| o.truncate) {
            self.truncate_some(&mut out);
        }
        if !self.held_messages.is_empty() && self.chance(|o| o.release_held_messages) {
            self.release_held_messages(&mut out, target);
        }
        let weights = mix_weights(&self.config.mix);
        for _ in 0..8 * target {
            if out.len() >= target {
                break;
            }
            self.clock += self
                .rng
                .between(0, self.config.max_clock_step_micros.max(0));
            let Some(op) = self.rng.weighted(&weights) else {
                break;
            };
            let budget = target - out.len();
            self.run(op, &mut out, budget);
        }
        if out.is_empty() {
            self.inbound_burst(&mut out, 1);
        }
        self.changes += out.len() as u64;
        out
    }

    /// Leads that have arrived by now: all of them without locality.
    fn arrived_leads(&self) -> usize {
        let all = self.lead_ids.len();
        match &self.config.locality {
            None => all,
            Some(l) => {
                let since = usize::try_from(self.changes / l.changes_per_lead.max(1) as u64)
                    .unwrap_or(usize::MAX);
                l.active_leads.saturating_add(since).clamp(1, all)
            }
        }
    }

    /// Recency of picks: of the arrived leads, the active (newest) ones; of rows,
    /// the newest in the same proportion (rows are written at a steady pace, so
    /// that share of them is about the active leads' era).
    fn recency_now(&self) -> Recency {
        match &self.config.locality {
            None => Recency::UNIFORM,
            Some(l) => Recency {
                share: l.active_leads as f64 / self.arrived_leads() as f64,
                revival: l.revival,
            },
        }
    }

    fn run(&mut self, op: usize, out: &mut Vec<Change>, budget: usize) {
        match op {
            0 => self.inbound_burst(out, budget),
            1 => self.setter_reply(out),
            2 => self.ai_draft(out),
            3 => self.ai_job(out),
            4 => self.job_progress(out),
            5 => self.ai_send(out),
            6 => self.ai_before_message(out, budget),
            7 => self.message_edit(out),
            8 => self.message_delete(out),
            9 => self.draft_edit(out),
            10 => self.job_edit(out),
            11 => self.campaign_change(out),
            12 => self.lead_change(out),
            _ => self.rename(out),
        }
    }

    pub(super) fn chance(&mut self, odds: impl Fn(&Odds) -> f64) -> bool {
        let p = odds(&self.config.odds);
        self.rng.chance(p)
    }

    /// A fresh id, unique for the whole history (a serial number, in hex of random
    /// case, after a random prefix).
    pub(super) fn new_id(&mut self, prefixes: &[&str]) -> String {
        self.serial += 1;
        let prefix = self.rng.pick(prefixes).expect("prefix lists are not empty");
        if self.rng.chance(0.5) {
            format!("{prefix}{:x}", self.serial)
        } else {
            format!("{prefix}{:X}", self.serial)
        }
    }

    /// An arrived lead: one of the active (newest) ones, unless revived.
    pub(super) fn pick_lead(&mut self) -> String {
        let arrived = self.arrived_leads();
        let from = self.recency.first_pick(&mut self.rng, arrived);
        pick_cloned(&mut self.rng, &self.lead_ids[from..arrived])
    }

    pub(super) fn pick_channel(&mut self) -> String {
        pick_cloned(&mut self.rng, &self.config.channels)
    }

    pub(super) fn pick_user(&mut self) -> String {
        pick_cloned(&mut self.rng, &self.user_ids)
    }

    pub(super) fn pick_campaign(&mut self) -> String {
        pick_cloned(&mut self.rng, &self.campaign_ids)
    }

    pub(super) fn pick_client(&mut self) -> String {
        pick_cloned(&mut self.rng, &self.client_ids)
    }

    pub(super) fn emit_insert(&mut self, out: &mut Vec<Change>, row: Row) {
        self.model.write(row.clone(), None);
        out.push(Change::Insert(row));
    }

    /// An update from `old` to `new` (a rename when the ids differ); sometimes sends
    /// untouched columns as unchanged TOAST values.
    pub(super) fn emit_update(&mut self, out: &mut Vec<Change>, new: Row, old: &Row) {
        let old_id = (old.id() != new.id()).then(|| old.id().to_string());
        self.model.write(new.clone(), old_id.as_deref());
        let (row, unchanged) = if self.chance(|o| o.unchanged_columns) {
            toast::blank_unchanged(new, old, &mut self.rng)
        } else {
            (new, Vec::new())
        };
        out.push(Change::Update {
            row,
            old_id,
            unchanged,
        });
    }

    pub(super) fn emit_delete(&mut self, out: &mut Vec<Change>, table: Table, id: String) {
        self.model.delete(table, &id);
        out.push(Change::Delete { table, id });
    }

    fn truncate_some(&mut self, out: &mut Vec<Change>) {
        let mut tables: Vec<Table> = Table::ALL
            .into_iter()
            .filter(|_| self.rng.chance(0.4))
            .collect();
        if tables.is_empty() {
            tables.push(Table::ALL[self.rng.below(Table::ALL.len())]);
        }
        for &table in &tables {
            self.model.truncate(table);
        }
        out.push(Change::Truncate(tables));
    }
}

/// One of `items`, cloned; `sms` if there are none (an empty channel list).
fn pick_cloned(rng: &mut Rng, items: &[String]) -> String {
    rng.pick(items)
        .cloned()
        .unwrap_or_else(|| "sms".to_string())
}

fn mix_weights(mix: &OperationMix) -> [u32; 14] {
    [
        mix.inbound_burst,
        mix.setter_reply,
        mix.ai_draft,
        mix.ai_job,
        mix.job_progress,
        mix.ai_send,
        mix.ai_before_message,
        mix.message_edit,
        mix.message_delete,
        mix.draft_edit,
        mix.job_edit,
        mix.campaign_change,
        mix.lead_change,
        mix.rename,
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::workload::config::Locality;

    fn lead_number(id: &str) -> usize {
        let digits = id.trim_start_matches(|c: char| !c.is_ascii_digit());
        digits.parse().expect("lead ids end in their index")
    }

    /// The leads the messages of `transactions` transactions name, by index.
    fn leads_of(generator: &mut Generator, transactions: usize) -> BTreeSet<usize> {
        let mut leads = BTreeSet::new();
        for _ in 0..transactions {
            for change in generator.next_transaction() {
                if let Change::Insert(Row::Message(m)) = change
                    && let Some(lead) = &m.lead_id
                {
                    leads.insert(lead_number(lead));
                }
            }
        }
        leads
    }

    #[test]
    fn leads_arrive_and_go_quiet_with_locality() {
        let mut config = HistoryConfig::realistic();
        config.leads = 1_000;
        config.locality = Some(Locality {
            active_leads: 50,
            changes_per_lead: 20,
            revival: 0.0,
        });
        let mut generator = Generator::new(11, config);
        let early = leads_of(&mut generator, 200);
        assert!(
            early.iter().all(|l| *l < 100),
            "only early arrivals: {early:?}"
        );
        // Skip ahead: thousands of changes later the active window has moved on.
        leads_of(&mut generator, 4_000);
        let arrived = generator.arrived_leads();
        assert!(arrived > 400, "{arrived} leads arrived");
        let late = leads_of(&mut generator, 200);
        // The active leads, and the AI's follow-ups of drafts queued a little
        // earlier (the queues hold one entry per active lead at most).
        let recent = arrived - 3 * 50;
        let quiet: Vec<_> = late.iter().filter(|l| **l < recent).collect();
        assert!(quiet.is_empty(), "quiet leads written to: {quiet:?}");
        assert!(late.len() >= 40, "{} leads written to", late.len());
    }

    #[test]
    fn without_locality_every_lead_is_in_play_from_the_start() {
        let mut config = HistoryConfig::realistic();
        config.leads = 100;
        let mut generator = Generator::new(11, config);
        let leads = leads_of(&mut generator, 400);
        assert!(
            leads.iter().any(|l| *l >= 90),
            "late leads write early: {leads:?}"
        );
    }
}
