//! Round trip through a real Postgres: a generated history written with
//! `workload::sql`, read back with `load_tables`, must equal the same history
//! applied in memory — rows and the delay records of `schema/oracle_support.sql`'s
//! trigger alike. And `load_sink_rows` must read back what was written.
//!
//! Runs only when `REPLYTIME_TEST_DATABASE_URL` names a database it may create
//! schemas in (each run uses, then drops, a fresh schema).

use tokio_postgres::{Client, NoTls};

use crate::row::TimingRow;
use crate::workload::sql::transaction_to_sql;
use crate::workload::{HistoryConfig, history};

use super::pg::{load_sink_rows, load_tables};
use super::{SourceTables, derive};

const SOURCE_SQL: &str = include_str!("../../schema/source.sql");
const SINK_SQL: &str = include_str!("../../schema/sink.sql");
const ORACLE_SUPPORT_SQL: &str = include_str!("../../schema/oracle_support.sql");

/// A client whose search_path is a fresh schema with the three schema files.
async fn fresh_schema() -> Option<(Client, String)> {
    let url = std::env::var("REPLYTIME_TEST_DATABASE_URL").ok()?;
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("oracle_test_{nanos}");
    let setup = format!("CREATE SCHEMA {schema}; SET search_path TO {schema};");
    client.batch_execute(&setup).await.unwrap();
    for sql in [SOURCE_SQL, SINK_SQL, ORACLE_SUPPORT_SQL] {
        client.batch_execute(sql).await.unwrap();
    }
    Some((client, schema))
}

async fn drop_schema(client: &Client, schema: &str) {
    let sql = format!("DROP SCHEMA {schema} CASCADE");
    client.batch_execute(&sql).await.unwrap();
}

#[tokio::test]
async fn history_round_trips_through_postgres() {
    let Some((client, schema)) = fresh_schema().await else {
        eprintln!("REPLYTIME_TEST_DATABASE_URL unset: skipped");
        return;
    };
    let mut recorded_campaign_bounds = false;
    for seed in [1, 2, 3] {
        let config = HistoryConfig {
            transactions: 150,
            ..HistoryConfig::default()
        };
        let mut tables = SourceTables::default();
        let sql =
            "TRUNCATE \"Lead\", \"EmailCampaign\", \"Message\", \"AIDraft\", \"BackgroundJob\"";
        client.batch_execute(sql).await.unwrap();
        for (index, txn) in history(seed, &config).iter().enumerate() {
            let script = transaction_to_sql(txn);
            if let Err(e) = client.batch_execute(&script).await {
                panic!("seed {seed}, transaction {index}: {e}\n{script}");
            }
            txn.iter().for_each(|change| tables.apply(change));
            if index % 10 == 9 {
                let loaded = load_tables(&client).await.unwrap();
                assert_eq!(loaded, tables, "seed {seed}, transaction {index}");
                let bounds = loaded.job_delays.values();
                recorded_campaign_bounds |= bounds.into_iter().any(|&b| b != (180, 420));
            }
        }
    }
    assert!(
        recorded_campaign_bounds,
        "no job recorded a campaign's own bounds"
    );
    drop_schema(&client, &schema).await;
}

#[tokio::test]
async fn sink_rows_round_trip_through_postgres() {
    let Some((client, schema)) = fresh_schema().await else {
        eprintln!("REPLYTIME_TEST_DATABASE_URL unset: skipped");
        return;
    };
    let config = HistoryConfig {
        transactions: 1_500,
        ..HistoryConfig::realistic()
    };
    let mut tables = SourceTables::default();
    history(4, &config)
        .iter()
        .flatten()
        .for_each(|change| tables.apply(change));
    let rows = derive(&tables);
    assert!(rows.values().any(|r| r.ai_job_finished_at.is_some()));
    for row in rows.values() {
        insert_sink_row(&client, row).await;
    }
    assert_eq!(load_sink_rows(&client).await.unwrap(), rows);
    drop_schema(&client, &schema).await;
}

async fn insert_sink_row(client: &Client, r: &TimingRow) {
    let t = |t: Option<crate::change::Timestamp>| t.and_then(|t| t.to_chrono());
    let sql = r#"INSERT INTO "ResponseTimingEvent" (id, "clientId", "leadId", channel,
        "inboundMessageId", "inboundSentAt", "setterResponseMessageId", "setterResponseSentAt",
        "setterSentByUserId", "setterResponseMs", "aiDraftId", "aiResponseMessageId",
        "aiResponseSentAt", "aiResponseMs", "aiDelayMinSeconds", "aiDelayMaxSeconds",
        "aiChosenDelaySeconds", "aiActualDelaySeconds", "aiScheduledRunAt", "aiBackgroundJobId",
        "aiJobStartedAt", "aiJobFinishedAt") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
        $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"#;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 22] = [
        &r.id(),
        &r.client_id,
        &r.lead_id,
        &r.channel,
        &r.inbound_message_id,
        &r.inbound_sent_at.to_chrono(),
        &r.setter_response_message_id,
        &t(r.setter_response_sent_at),
        &r.setter_sent_by_user_id,
        &r.setter_response_ms,
        &r.ai_draft_id,
        &r.ai_response_message_id,
        &t(r.ai_response_sent_at),
        &r.ai_response_ms,
        &r.ai_delay_min_seconds,
        &r.ai_delay_max_seconds,
        &r.ai_chosen_delay_seconds,
        &r.ai_actual_delay_seconds,
        &t(r.ai_scheduled_run_at),
        &r.ai_background_job_id,
        &t(r.ai_job_started_at),
        &t(r.ai_job_finished_at),
    ];
    client.execute(sql, &params).await.unwrap();
}
