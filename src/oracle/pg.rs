//! Reading what the oracle compares from a real Postgres with the reference schema:
//! the source tables (plus the job delay record written by the trigger of
//! `schema/oracle_support.sql`) and the sink's `"ResponseTimingEvent"` rows.
//!
//! Table and column names are the reference ones (SPEC sections 1 and 2): this is
//! test and verification tooling, not the configurable production path.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, Row as PgRow};

use crate::change::{CampaignRow, DraftRow, JobRow, LeadRow, MessageRow, Timestamp};
use crate::row::TimingRow;

use super::SourceTables;

/// The table the oracle support trigger keeps the per-job delay bounds in.
pub const JOB_DELAY_TABLE: &str = "replytime_oracle_job_delay";

/// The full contents of the five source tables and the job delay records.
pub async fn load_tables(client: &Client) -> Result<SourceTables, tokio_postgres::Error> {
    let mut tables = SourceTables::default();
    let sql = r#"SELECT id, "clientId", "emailCampaignId" FROM "Lead""#;
    for row in client.query(sql, &[]).await? {
        let lead = LeadRow {
            id: row.try_get(0)?,
            client_id: row.try_get(1)?,
            email_campaign_id: row.try_get(2)?,
        };
        tables.leads.insert(lead.id.clone(), lead);
    }
    let sql = r#"SELECT id, "aiAutoSendDelayMinSeconds", "aiAutoSendDelayMaxSeconds",
        "responseMode"::text FROM "EmailCampaign""#;
    for row in client.query(sql, &[]).await? {
        let campaign = CampaignRow {
            id: row.try_get(0)?,
            delay_min_seconds: row.try_get(1)?,
            delay_max_seconds: row.try_get(2)?,
            response_mode: row.try_get(3)?,
        };
        tables.campaigns.insert(campaign.id.clone(), campaign);
    }
    load_messages(client, &mut tables).await?;
    load_drafts(client, &mut tables).await?;
    load_jobs(client, &mut tables).await?;
    let sql = format!("SELECT job_id, min_seconds, max_seconds FROM {JOB_DELAY_TABLE}");
    for row in client.query(&sql, &[]).await? {
        let bounds = (row.try_get(1)?, row.try_get(2)?);
        tables.job_delays.insert(row.try_get(0)?, bounds);
    }
    Ok(tables)
}

async fn load_messages(
    client: &Client,
    tables: &mut SourceTables,
) -> Result<(), tokio_postgres::Error> {
    let sql = r#"SELECT id, "leadId", channel::text, direction::text, "sentBy"::text,
        "sentByUserId", "aiDraftId", "sentAt" FROM "Message""#;
    for row in client.query(sql, &[]).await? {
        let message = MessageRow {
            id: row.try_get(0)?,
            lead_id: row.try_get(1)?,
            channel: row.try_get(2)?,
            direction: row.try_get(3)?,
            sent_by: row.try_get(4)?,
            sent_by_user_id: row.try_get(5)?,
            ai_draft_id: row.try_get(6)?,
            sent_at: timestamp(&row, 7)?,
        };
        tables.messages.insert(message.id.clone(), message);
    }
    Ok(())
}

async fn load_drafts(
    client: &Client,
    tables: &mut SourceTables,
) -> Result<(), tokio_postgres::Error> {
    let sql = r#"SELECT id, "leadId", "triggerMessageId", channel::text,
        "responseDisposition"::text FROM "AIDraft""#;
    for row in client.query(sql, &[]).await? {
        let draft = DraftRow {
            id: row.try_get(0)?,
            lead_id: row.try_get(1)?,
            trigger_message_id: row.try_get(2)?,
            channel: row.try_get(3)?,
            response_disposition: row.try_get(4)?,
        };
        tables.drafts.insert(draft.id.clone(), draft);
    }
    Ok(())
}

async fn load_jobs(
    client: &Client,
    tables: &mut SourceTables,
) -> Result<(), tokio_postgres::Error> {
    let sql = r#"SELECT id, type::text, "leadId", "messageId", "draftId", "runAt",
        "startedAt", "finishedAt", "createdAt" FROM "BackgroundJob""#;
    for row in client.query(sql, &[]).await? {
        let job = JobRow {
            id: row.try_get(0)?,
            job_type: row.try_get(1)?,
            lead_id: row.try_get(2)?,
            message_id: row.try_get(3)?,
            draft_id: row.try_get(4)?,
            run_at: timestamp(&row, 5)?,
            started_at: timestamp(&row, 6)?,
            finished_at: timestamp(&row, 7)?,
            created_at: timestamp(&row, 8)?,
        };
        tables.jobs.insert(job.id.clone(), job);
    }
    Ok(())
}

/// The sink's rows, keyed by inbound message id (bookkeeping columns left out).
pub async fn load_sink_rows(
    client: &Client,
) -> Result<BTreeMap<String, TimingRow>, tokio_postgres::Error> {
    let sql = r#"SELECT "clientId", "leadId", channel::text, "inboundMessageId", "inboundSentAt",
        "setterResponseMessageId", "setterResponseSentAt", "setterSentByUserId",
        "setterResponseMs", "aiDraftId", "aiResponseMessageId", "aiResponseSentAt",
        "aiResponseMs", "aiDelayMinSeconds", "aiDelayMaxSeconds", "aiChosenDelaySeconds",
        "aiActualDelaySeconds", "aiScheduledRunAt", "aiBackgroundJobId", "aiJobStartedAt",
        "aiJobFinishedAt" FROM "ResponseTimingEvent""#;
    let mut rows = BTreeMap::new();
    for row in client.query(sql, &[]).await? {
        let timing = sink_row(&row)?;
        rows.insert(timing.inbound_message_id.clone(), timing);
    }
    Ok(rows)
}

fn sink_row(row: &PgRow) -> Result<TimingRow, tokio_postgres::Error> {
    let inbound_sent_at: DateTime<Utc> = row.try_get(4)?;
    Ok(TimingRow {
        client_id: row.try_get(0)?,
        lead_id: row.try_get(1)?,
        channel: row.try_get(2)?,
        inbound_message_id: row.try_get(3)?,
        inbound_sent_at: Timestamp::from_chrono(inbound_sent_at),
        setter_response_message_id: row.try_get(5)?,
        setter_response_sent_at: timestamp(row, 6)?,
        setter_sent_by_user_id: row.try_get(7)?,
        setter_response_ms: row.try_get(8)?,
        ai_draft_id: row.try_get(9)?,
        ai_response_message_id: row.try_get(10)?,
        ai_response_sent_at: timestamp(row, 11)?,
        ai_response_ms: row.try_get(12)?,
        ai_delay_min_seconds: row.try_get(13)?,
        ai_delay_max_seconds: row.try_get(14)?,
        ai_chosen_delay_seconds: row.try_get(15)?,
        ai_actual_delay_seconds: row.try_get(16)?,
        ai_scheduled_run_at: timestamp(row, 17)?,
        ai_background_job_id: row.try_get(18)?,
        ai_job_started_at: timestamp(row, 19)?,
        ai_job_finished_at: timestamp(row, 20)?,
    })
}

/// A nullable `timestamptz` column.
fn timestamp(row: &PgRow, column: usize) -> Result<Option<Timestamp>, tokio_postgres::Error> {
    let value: Option<DateTime<Utc>> = row.try_get(column)?;
    Ok(value.map(Timestamp::from_chrono))
}
