//! The batch oracle: every `"ResponseTimingEvent"` row computed from scratch from the
//! full contents of the source tables, written straight from SPEC section 3.
//!
//! It owns the *reference answer* the tests compare the streaming engine and the sink
//! with, so it deliberately shares no derivation code with `engine/` (not even
//! `chosen_delay`): a bug copied into both would be invisible. It is simple rather
//! than fast — O(rows log rows) per derivation — and only built for tests and benches:
//! it sits behind the `oracle` feature, which the package's dev-dependency on itself
//! turns on, so the product never compiles it.
//!
//! ```text
//!  Change stream ──apply──▶ SourceTables ──derive──▶ BTreeMap<inbound id, TimingRow>
//!  Postgres ──pg::load_tables──▶ SourceTables        pg::load_sink_rows ◀── sink table
//! ```
//!
//! `SourceTables::job_delays` stands for the one piece of history a snapshot of the
//! tables cannot give: the campaign delay bounds in force when each job was inserted
//! (SPEC 3.6). Applying changes records it like the trigger of
//! `schema/oracle_support.sql` does in a real database.

mod apply;
mod delay;
mod derive;
pub mod pg;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod derive_tests;
#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod workload_features;
#[cfg(test)]
mod workload_tests;

use std::collections::BTreeMap;

use crate::change::{CampaignRow, DraftRow, JobRow, LeadRow, MessageRow};

pub use apply::Inconsistency;
pub use delay::{DEFAULT_DELAY_MAX_SECONDS, DEFAULT_DELAY_MIN_SECONDS, chosen_delay};
pub use derive::derive;

/// The current contents of the five source tables (keyed by id), plus the delay
/// record written when each job was inserted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceTables {
    pub leads: BTreeMap<String, LeadRow>,
    pub campaigns: BTreeMap<String, CampaignRow>,
    pub messages: BTreeMap<String, MessageRow>,
    pub drafts: BTreeMap<String, DraftRow>,
    pub jobs: BTreeMap<String, JobRow>,
    /// Job id → (min, max) delay seconds of the job's lead's campaign at the time of
    /// the job's insert (SPEC 3.6).
    pub job_delays: BTreeMap<String, (i32, i32)>,
}

impl SourceTables {
    /// The (min, max) delay bounds a job of `lead_id` inserted now would record: the
    /// values of the lead's current campaign, 180/420 when the lead, its campaign or
    /// a value is unknown.
    pub fn current_delay_bounds(&self, lead_id: Option<&str>) -> (i32, i32) {
        let campaign = lead_id
            .and_then(|id| self.leads.get(id))
            .and_then(|lead| lead.email_campaign_id.as_deref())
            .and_then(|id| self.campaigns.get(id));
        (
            campaign
                .and_then(|c| c.delay_min_seconds)
                .unwrap_or(DEFAULT_DELAY_MIN_SECONDS),
            campaign
                .and_then(|c| c.delay_max_seconds)
                .unwrap_or(DEFAULT_DELAY_MAX_SECONDS),
        )
    }
}
