//! One batch of upserts as one array per column (the parameters of the UNNEST
//! upsert in `sql.rs`), and the binary encoding of `Timestamp` as `timestamptz`.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, PgLsn, ToSql, Type, accepts, to_sql_checked};
use uuid::Uuid;

use crate::change::Timestamp;
use crate::lsn::Lsn;
use crate::row::TimingRow;

/// A `Timestamp` sent as `timestamptz` in binary: microseconds since 2000-01-01,
/// exact, with Postgres' ±infinity kept.
#[derive(Clone, Copy, Debug)]
pub(super) struct PgTimestamp(Timestamp);

impl ToSql for PgTimestamp {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // `from_pg_micros(0)` is the Postgres epoch in Unix microseconds.
        let pg_epoch = Timestamp::from_pg_micros(0).0;
        let micros = match self.0.0 {
            infinity @ (i64::MAX | i64::MIN) => infinity,
            unix => unix
                .checked_sub(pg_epoch)
                .ok_or_else(|| format!("timestamp {} is out of range", self.0))?,
        };
        out.put_i64(micros);
        Ok(IsNull::No)
    }

    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

fn ts(t: Timestamp) -> PgTimestamp {
    PgTimestamp(t)
}

fn opt_ts(t: Option<Timestamp>) -> Option<PgTimestamp> {
    t.map(PgTimestamp)
}

/// The arrays of one upsert statement, borrowing the rows' strings.
#[derive(Default)]
pub(super) struct UpsertColumns<'a> {
    id: Vec<Uuid>,
    client_id: Vec<&'a str>,
    lead_id: Vec<&'a str>,
    channel: Vec<&'a str>,
    inbound_message_id: Vec<&'a str>,
    inbound_sent_at: Vec<PgTimestamp>,
    setter_response_message_id: Vec<Option<&'a str>>,
    setter_response_sent_at: Vec<Option<PgTimestamp>>,
    setter_sent_by_user_id: Vec<Option<&'a str>>,
    setter_response_ms: Vec<Option<i64>>,
    ai_draft_id: Vec<Option<&'a str>>,
    ai_response_message_id: Vec<Option<&'a str>>,
    ai_response_sent_at: Vec<Option<PgTimestamp>>,
    ai_response_ms: Vec<Option<i64>>,
    ai_delay_min_seconds: Vec<Option<i32>>,
    ai_delay_max_seconds: Vec<Option<i32>>,
    ai_chosen_delay_seconds: Vec<Option<i32>>,
    ai_actual_delay_seconds: Vec<Option<i64>>,
    ai_scheduled_run_at: Vec<Option<PgTimestamp>>,
    ai_background_job_id: Vec<Option<&'a str>>,
    ai_job_started_at: Vec<Option<PgTimestamp>>,
    ai_job_finished_at: Vec<Option<PgTimestamp>>,
    source_lsn: Vec<PgLsn>,
}

impl<'a> UpsertColumns<'a> {
    pub(super) fn new(rows: &[(&'a TimingRow, Lsn)]) -> Self {
        let mut columns = UpsertColumns::default();
        for (row, lsn) in rows {
            columns.push(row, *lsn);
        }
        columns
    }

    fn push(&mut self, row: &'a TimingRow, source_lsn: Lsn) {
        self.id.push(row.id());
        self.client_id.push(&row.client_id);
        self.lead_id.push(&row.lead_id);
        self.channel.push(&row.channel);
        self.inbound_message_id.push(&row.inbound_message_id);
        self.inbound_sent_at.push(ts(row.inbound_sent_at));
        self.setter_response_message_id
            .push(row.setter_response_message_id.as_deref());
        self.setter_response_sent_at
            .push(opt_ts(row.setter_response_sent_at));
        self.setter_sent_by_user_id
            .push(row.setter_sent_by_user_id.as_deref());
        self.setter_response_ms.push(row.setter_response_ms);
        self.ai_draft_id.push(row.ai_draft_id.as_deref());
        self.ai_response_message_id
            .push(row.ai_response_message_id.as_deref());
        self.ai_response_sent_at
            .push(opt_ts(row.ai_response_sent_at));
        self.ai_response_ms.push(row.ai_response_ms);
        self.ai_delay_min_seconds.push(row.ai_delay_min_seconds);
        self.ai_delay_max_seconds.push(row.ai_delay_max_seconds);
        self.ai_chosen_delay_seconds
            .push(row.ai_chosen_delay_seconds);
        self.ai_actual_delay_seconds
            .push(row.ai_actual_delay_seconds);
        self.ai_scheduled_run_at
            .push(opt_ts(row.ai_scheduled_run_at));
        self.ai_background_job_id
            .push(row.ai_background_job_id.as_deref());
        self.ai_job_started_at.push(opt_ts(row.ai_job_started_at));
        self.ai_job_finished_at.push(opt_ts(row.ai_job_finished_at));
        self.source_lsn.push(PgLsn::from(source_lsn.0));
    }

    /// The statement parameters, in the order of `sql::upsert`.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 23] {
        [
            &self.id,
            &self.client_id,
            &self.lead_id,
            &self.channel,
            &self.inbound_message_id,
            &self.inbound_sent_at,
            &self.setter_response_message_id,
            &self.setter_response_sent_at,
            &self.setter_sent_by_user_id,
            &self.setter_response_ms,
            &self.ai_draft_id,
            &self.ai_response_message_id,
            &self.ai_response_sent_at,
            &self.ai_response_ms,
            &self.ai_delay_min_seconds,
            &self.ai_delay_max_seconds,
            &self.ai_chosen_delay_seconds,
            &self.ai_actual_delay_seconds,
            &self.ai_scheduled_run_at,
            &self.ai_background_job_id,
            &self.ai_job_started_at,
            &self.ai_job_finished_at,
            &self.source_lsn,
        ]
    }
}
