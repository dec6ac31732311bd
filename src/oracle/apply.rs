//! Applying a `Change` to `SourceTables`, as Postgres would have applied the
//! statement that produced it, plus the job delay record of SPEC 3.6.
//!
//! `apply` is lenient (an insert of an existing id overwrites it, an update of a
//! missing row inserts it) so that the oracle never panics; `try_apply` first checks
//! that the change could have come from a real database with the reference schema,
//! which is how generated histories are validated.

use crate::change::{CampaignRow, Change, DraftRow, JobRow, LeadRow, MessageRow, Row, Table};

use super::SourceTables;

/// A change that a database with the reference schema could not have produced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    #[error("insert into {table} of id {id:?}, which already exists")]
    InsertExisting { table: Table, id: String },
    #[error("update of {table} row {id:?}, which does not exist")]
    UpdateMissing { table: Table, id: String },
    #[error("update of {table} renames {old_id:?} to {id:?}, which already exists")]
    RenameOntoExisting {
        table: Table,
        old_id: String,
        id: String,
    },
    #[error("delete of {table} row {id:?}, which does not exist")]
    DeleteMissing { table: Table, id: String },
    #[error("AIDraft rows {first:?} and {second:?} share triggerMessageId and channel")]
    DuplicateDraftTrigger { first: String, second: String },
}

impl SourceTables {
    /// Applies one change (lenient: never fails, see the module doc).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Insert(row) => self.insert(row),
            Change::Update {
                row,
                old_id,
                unchanged,
            } => self.update(row, old_id.as_deref(), unchanged),
            Change::Delete { table, id } => self.delete(*table, id),
            Change::Truncate(tables) => tables.iter().for_each(|&t| self.truncate(t)),
        }
    }

    /// Applies one change after checking that it is consistent with the current
    /// contents (keys exist or not as the operation needs; AIDraft's unique
    /// (`triggerMessageId`, `channel`) holds afterwards). On error nothing changed.
    pub fn try_apply(&mut self, change: &Change) -> Result<(), Inconsistency> {
        self.check_keys(change)?;
        if let Change::Insert(Row::Draft(draft))
        | Change::Update {
            row: Row::Draft(draft),
            ..
        } = change
        {
            let replaced = match change {
                Change::Update { old_id, .. } => old_id.as_deref().unwrap_or(&draft.id),
                _ => &draft.id,
            };
            self.check_draft_unique(draft, replaced, change)?;
        }
        self.apply(change);
        Ok(())
    }

    /// Whether `table` holds a row with `id`.
    pub fn contains(&self, table: Table, id: &str) -> bool {
        match table {
            Table::Lead => self.leads.contains_key(id),
            Table::EmailCampaign => self.campaigns.contains_key(id),
            Table::Message => self.messages.contains_key(id),
            Table::AiDraft => self.drafts.contains_key(id),
            Table::BackgroundJob => self.jobs.contains_key(id),
        }
    }

    fn check_keys(&self, change: &Change) -> Result<(), Inconsistency> {
        match change {
            Change::Insert(row) if self.contains(row.table(), row.id()) => {
                Err(Inconsistency::InsertExisting {
                    table: row.table(),
                    id: row.id().to_string(),
                })
            }
            Change::Update { row, old_id, .. } => {
                let table = row.table();
                let key = old_id.as_deref().unwrap_or(row.id());
                if !self.contains(table, key) {
                    return Err(Inconsistency::UpdateMissing {
                        table,
                        id: key.to_string(),
                    });
                }
                if key != row.id() && self.contains(table, row.id()) {
                    return Err(Inconsistency::RenameOntoExisting {
                        table,
                        old_id: key.to_string(),
                        id: row.id().to_string(),
                    });
                }
                Ok(())
            }
            Change::Delete { table, id } if !self.contains(*table, id) => {
                Err(Inconsistency::DeleteMissing {
                    table: *table,
                    id: id.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks the unique (`triggerMessageId`, `channel`) of the draft after a change
    /// that writes `draft` in place of the row `replaced` (if any). The unique
    /// index, like Postgres', ignores rows with a NULL in either column.
    fn check_draft_unique(
        &self,
        draft: &DraftRow,
        replaced: &str,
        change: &Change,
    ) -> Result<(), Inconsistency> {
        let merged = match change {
            Change::Update { unchanged, .. } => {
                merge_draft(draft, self.drafts.get(replaced), unchanged)
            }
            _ => draft.clone(),
        };
        let (Some(trigger), Some(channel)) = (&merged.trigger_message_id, &merged.channel) else {
            return Ok(());
        };
        let clash = self.drafts.values().find(|other| {
            other.id != replaced
                && other.trigger_message_id.as_ref() == Some(trigger)
                && other.channel.as_ref() == Some(channel)
        });
        match clash {
            Some(other) => Err(Inconsistency::DuplicateDraftTrigger {
                first: other.id.clone(),
                second: merged.id.clone(),
            }),
            None => Ok(()),
        }
    }

    fn insert(&mut self, row: &Row) {
        match row.clone() {
            Row::Lead(r) => _ = self.leads.insert(r.id.clone(), r),
            Row::Campaign(r) => _ = self.campaigns.insert(r.id.clone(), r),
            Row::Message(r) => _ = self.messages.insert(r.id.clone(), r),
            Row::Draft(r) => _ = self.drafts.insert(r.id.clone(), r),
            Row::Job(r) => self.insert_job(r),
        }
    }

    /// Inserts a job and records its delay bounds, as the trigger on insert does.
    fn insert_job(&mut self, job: JobRow) {
        let bounds = self.current_delay_bounds(job.lead_id.as_deref());
        self.job_delays.insert(job.id.clone(), bounds);
        self.jobs.insert(job.id.clone(), job);
    }

    fn update(&mut self, row: &Row, old_id: Option<&str>, unchanged: &[String]) {
        let key = old_id.unwrap_or(row.id());
        match row {
            Row::Lead(new) => {
                let merged = merge_lead(new, self.leads.remove(key).as_ref(), unchanged);
                self.leads.insert(merged.id.clone(), merged);
            }
            Row::Campaign(new) => {
                let old = self.campaigns.remove(key);
                let merged = merge_campaign(new, old.as_ref(), unchanged);
                self.campaigns.insert(merged.id.clone(), merged);
            }
            Row::Message(new) => {
                let old = self.messages.remove(key);
                let merged = merge_message(new, old.as_ref(), unchanged);
                self.messages.insert(merged.id.clone(), merged);
            }
            Row::Draft(new) => {
                let merged = merge_draft(new, self.drafts.remove(key).as_ref(), unchanged);
                self.drafts.insert(merged.id.clone(), merged);
            }
            Row::Job(new) => {
                let merged = merge_job(new, self.jobs.remove(key).as_ref(), unchanged);
                if key != merged.id {
                    // A new key is a new job for the delay record: delete + insert.
                    self.job_delays.remove(key);
                    self.insert_job(merged);
                } else {
                    self.jobs.insert(merged.id.clone(), merged);
                }
            }
        }
    }

    fn delete(&mut self, table: Table, id: &str) {
        match table {
            Table::Lead => _ = self.leads.remove(id),
            Table::EmailCampaign => _ = self.campaigns.remove(id),
            Table::Message => _ = self.messages.remove(id),
            Table::AiDraft => _ = self.drafts.remove(id),
            Table::BackgroundJob => {
                self.jobs.remove(id);
                self.job_delays.remove(id);
            }
        }
    }

    fn truncate(&mut self, table: Table) {
        match table {
            Table::Lead => self.leads.clear(),
            Table::EmailCampaign => self.campaigns.clear(),
            Table::Message => self.messages.clear(),
            Table::AiDraft => self.drafts.clear(),
            Table::BackgroundJob => {
                self.jobs.clear();
                self.job_delays.clear();
            }
        }
    }
}

/// Copies `old.$field` into `row.$field` for each (logical column name, field) pair
/// listed as an unchanged TOAST value.
macro_rules! keep_unchanged {
    ($row:ident, $old:ident, $unchanged:ident, $($column:literal => $field:ident),+ $(,)?) => {
        if let Some(old) = $old {
            $(
                if $unchanged.iter().any(|c| c == $column) {
                    $row.$field = old.$field.clone();
                }
            )+
        }
    };
}

fn merge_lead(new: &LeadRow, old: Option<&LeadRow>, unchanged: &[String]) -> LeadRow {
    let mut row = new.clone();
    keep_unchanged!(row, old, unchanged,
        "clientId" => client_id, "emailCampaignId" => email_campaign_id);
    row
}

fn merge_campaign(
    new: &CampaignRow,
    old: Option<&CampaignRow>,
    unchanged: &[String],
) -> CampaignRow {
    let mut row = new.clone();
    keep_unchanged!(row, old, unchanged,
        "aiAutoSendDelayMinSeconds" => delay_min_seconds,
        "aiAutoSendDelayMaxSeconds" => delay_max_seconds,
        "responseMode" => response_mode);
    row
}

fn merge_message(new: &MessageRow, old: Option<&MessageRow>, unchanged: &[String]) -> MessageRow {
    let mut row = new.clone();
    keep_unchanged!(row, old, unchanged,
        "leadId" => lead_id, "channel" => channel, "direction" => direction,
        "sentBy" => sent_by, "sentByUserId" => sent_by_user_id,
        "aiDraftId" => ai_draft_id, "sentAt" => sent_at);
    row
}

fn merge_draft(new: &DraftRow, old: Option<&DraftRow>, unchanged: &[String]) -> DraftRow {
    let mut row = new.clone();
    keep_unchanged!(row, old, unchanged,
        "leadId" => lead_id, "triggerMessageId" => trigger_message_id,
        "channel" => channel, "responseDisposition" => response_disposition);
    row
}

fn merge_job(new: &JobRow, old: Option<&JobRow>, unchanged: &[String]) -> JobRow {
    let mut row = new.clone();
    keep_unchanged!(row, old, unchanged,
        "type" => job_type, "leadId" => lead_id, "messageId" => message_id,
        "draftId" => draft_id, "runAt" => run_at, "startedAt" => started_at,
        "finishedAt" => finished_at, "createdAt" => created_at);
    row
}
