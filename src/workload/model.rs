//! The generator's own model of the current rows, so that updates and deletes target
//! rows that exist and the keys of the reference schema always hold.
//!
//! Random picks come from a `Vec` of ids in insertion/removal order, never from a
//! hash map's iteration order: that is what keeps a history a pure function of the
//! seed.

use std::collections::HashMap;

use crate::change::{CampaignRow, DraftRow, JobRow, LeadRow, MessageRow, Row, Table};

use super::rng::Rng;

/// The rows of one table, with O(1) insert, remove, lookup and uniform pick.
#[derive(Debug)]
pub(crate) struct Pool<R> {
    ids: Vec<String>,
    rows: HashMap<String, (usize, R)>,
}

impl<R> Default for Pool<R> {
    fn default() -> Self {
        Pool {
            ids: Vec::new(),
            rows: HashMap::new(),
        }
    }
}

impl<R> Pool<R> {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.rows.contains_key(id)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&R> {
        self.rows.get(id).map(|(_, row)| row)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut R> {
        self.rows.get_mut(id).map(|(_, row)| row)
    }

    /// Inserts or replaces the row of `id`.
    pub(crate) fn put(&mut self, id: String, row: R) {
        if let Some(slot) = self.rows.get_mut(&id) {
            slot.1 = row;
            return;
        }
        self.ids.push(id.clone());
        self.rows.insert(id, (self.ids.len() - 1, row));
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<R> {
        let (index, row) = self.rows.remove(id)?;
        self.ids.swap_remove(index);
        if let Some(moved) = self.ids.get(index) {
            self.rows.get_mut(moved).expect("ids and rows agree").0 = index;
        }
        Some(row)
    }

    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.rows.clear();
    }

    /// A row chosen uniformly among the newest that `recency` allows (a removal
    /// moves the newest row into the removed one's place).
    pub(super) fn pick(&self, rng: &mut Rng, recency: Recency) -> Option<&R> {
        let from = recency.first_pick(rng, self.ids.len());
        let id = rng.pick(&self.ids[from..])?;
        self.get(id)
    }
}

/// Which of a list in arrival order (oldest first) a pick chooses among: the newest
/// `share` of it, or, with the chance `revival`, all of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Recency {
    pub share: f64,
    pub revival: f64,
}

impl Recency {
    /// Every item alike (and no random draw spent on deciding so).
    pub(super) const UNIFORM: Recency = Recency {
        share: 1.0,
        revival: 0.0,
    };

    /// Index of the first item a pick from `len` items may choose.
    pub(super) fn first_pick(self, rng: &mut Rng, len: usize) -> usize {
        if self.share >= 1.0 || len == 0 || rng.chance(self.revival) {
            return 0;
        }
        let window = ((len as f64 * self.share).ceil() as usize).clamp(1, len);
        len - window
    }
}

/// The current rows of the five tables, and AIDraft's unique
/// (`triggerMessageId`, `channel`) index.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub leads: Pool<LeadRow>,
    pub campaigns: Pool<CampaignRow>,
    pub messages: Pool<MessageRow>,
    pub drafts: Pool<DraftRow>,
    pub jobs: Pool<JobRow>,
    draft_keys: HashMap<(String, String), String>,
}

fn draft_key(draft: &DraftRow) -> Option<(String, String)> {
    Some((draft.trigger_message_id.clone()?, draft.channel.clone()?))
}

impl Model {
    /// Whether a draft `draft_id` may have (`trigger`, `channel`) without breaking
    /// the unique index.
    pub(crate) fn draft_key_free(&self, trigger: &str, channel: &str, draft_id: &str) -> bool {
        self.draft_for(trigger, channel)
            .is_none_or(|owner| owner == draft_id)
    }

    /// The draft holding (`trigger`, `channel`) in the unique index, if any.
    pub(crate) fn draft_for(&self, trigger: &str, channel: &str) -> Option<&str> {
        self.draft_keys
            .get(&(trigger.to_string(), channel.to_string()))
            .map(String::as_str)
    }

    /// Writes the true new contents of a row, replacing the row `old_id` (or its own
    /// id) if present.
    pub(crate) fn write(&mut self, row: Row, old_id: Option<&str>) {
        let key = old_id.unwrap_or(row.id()).to_string();
        self.delete(row.table(), &key);
        match row {
            Row::Lead(r) => self.leads.put(r.id.clone(), r),
            Row::Campaign(r) => self.campaigns.put(r.id.clone(), r),
            Row::Message(r) => self.messages.put(r.id.clone(), r),
            Row::Draft(r) => {
                if let Some(k) = draft_key(&r) {
                    let previous = self.draft_keys.insert(k, r.id.clone());
                    debug_assert!(previous.is_none(), "unique (trigger, channel) broken");
                }
                self.drafts.put(r.id.clone(), r);
            }
            Row::Job(r) => self.jobs.put(r.id.clone(), r),
        }
    }

    pub(crate) fn delete(&mut self, table: Table, id: &str) {
        match table {
            Table::Lead => _ = self.leads.remove(id),
            Table::EmailCampaign => _ = self.campaigns.remove(id),
            Table::Message => _ = self.messages.remove(id),
            Table::AiDraft => {
                if let Some(k) = self.drafts.remove(id).as_ref().and_then(draft_key) {
                    self.draft_keys.remove(&k);
                }
            }
            Table::BackgroundJob => _ = self.jobs.remove(id),
        }
    }

    pub(crate) fn truncate(&mut self, table: Table) {
        match table {
            Table::Lead => self.leads.clear(),
            Table::EmailCampaign => self.campaigns.clear(),
            Table::Message => self.messages.clear(),
            Table::AiDraft => {
                self.drafts.clear();
                self.draft_keys.clear();
            }
            Table::BackgroundJob => self.jobs.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keeps_ids_and_rows_in_step() {
        let mut pool = Pool::default();
        for i in 0..5 {
            pool.put(format!("r{i}"), i);
        }
        assert_eq!(pool.remove("r1"), Some(1));
        assert_eq!(pool.remove("r1"), None);
        pool.put("r4".to_string(), 40);
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.remove("r4"), Some(40));
        assert_eq!(pool.get("r3"), Some(&3));
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            assert!([0, 2, 3].contains(pool.pick(&mut rng, Recency::UNIFORM).unwrap()));
        }
    }

    #[test]
    fn recency_picks_the_newest_share_unless_revived() {
        let mut pool = Pool::default();
        for i in 0..100 {
            pool.put(format!("r{i}"), i);
        }
        let mut rng = Rng::new(7);
        let recent = Recency {
            share: 0.1,
            revival: 0.0,
        };
        let picks: Vec<i32> = (0..1000)
            .map(|_| *pool.pick(&mut rng, recent).unwrap())
            .collect();
        assert!(picks.iter().all(|p| *p >= 90), "only the newest tenth");
        assert!(
            (90..100).all(|i| picks.contains(&i)),
            "all of the newest tenth"
        );
        let revived = Recency {
            share: 0.1,
            revival: 0.2,
        };
        let old = (0..10_000)
            .filter(|_| *pool.pick(&mut rng, revived).unwrap() < 90)
            .count();
        // 20 % revived, of which 90 % land outside the newest tenth: 1,800 expected.
        assert!((1_500..2_100).contains(&old), "{old} old picks");
        let mut one = Pool::default();
        one.put("only".to_string(), 1);
        assert_eq!(
            one.pick(&mut rng, recent),
            Some(&1),
            "a window holds one row at least"
        );
    }
}
