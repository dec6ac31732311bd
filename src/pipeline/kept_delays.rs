//! What a load from a snapshot keeps of the sink's history (SPEC 3.6 and 5,
//! "Recovery keeps history"): the delay bounds a job's insert recorded cannot be
//! read back from a snapshot (the campaign may have changed since), but the sink
//! holds them for every attributed job. A load seeds the state's delay record of
//! each such job from its sink row before it copies the tables, so the copy keeps
//! it; only jobs new to the sink take the snapshot's values.
//!
//! ```text
//!  sink rows with a job ──▶ JobDelay{min, max, stamp (snapshot LSN, u32::MAX)}
//!  copy at the snapshot: the job's insert at (snapshot LSN, n) < the seed's stamp,
//!                        so the seed is kept (the engine records only when newer)
//!  after the copy: seeds of jobs the snapshot does not hold are removed
//! ```
//!
//! The stamp sits after every change of the copy and before every change the
//! stream applies later, so a later delete or re-insert of the job replaces the
//! seed as it replaces any record.

use crate::engine::JobDelay;
use crate::lsn::Lsn;
use crate::sink::Sink;
use crate::store::{Cf, Store};

use super::PipelineError;

/// Sink rows read per page.
const PAGE: i64 = 10_000;

/// Seeds the delay records of the jobs the sink holds; returns how many.
pub(super) async fn seed(store: &Store, sink: &Sink, at: Lsn) -> Result<u64, PipelineError> {
    let client = sink.client();
    let exists: bool = client
        .query_one(
            r#"SELECT to_regclass('"ResponseTimingEvent"') IS NOT NULL"#,
            &[],
        )
        .await
        .map_err(read_error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let owned = sink.owns(r#""leadId""#);
    // Pages over the unique index of the inbound message id (the job id has none).
    let page = client
        .prepare(&format!(
            r#"SELECT "inboundMessageId", "aiBackgroundJobId", "aiDelayMinSeconds", "aiDelayMaxSeconds"
               FROM "ResponseTimingEvent"
               WHERE "inboundMessageId" > $1 AND {owned}
               ORDER BY "inboundMessageId" LIMIT $2"#
        ))
        .await
        .map_err(read_error)?;
    let mut after = String::new();
    let mut seeded = 0u64;
    loop {
        let rows = client
            .query(&page, &[&after, &PAGE])
            .await
            .map_err(read_error)?;
        let Some(last) = rows.last().map(|r| r.get::<_, String>(0)) else {
            break;
        };
        let tx = store.begin();
        for row in &rows {
            let job: Option<String> = row.get(1);
            let (min, max): (Option<i32>, Option<i32>) = (row.get(2), row.get(3));
            if let (Some(job), Some(min), Some(max)) = (job, min, max) {
                let record = JobDelay {
                    min,
                    max,
                    stamp: (at, u32::MAX),
                };
                tx.put_record(Cf::JobDelay, job.as_bytes(), &record)?;
                seeded += 1;
            }
        }
        tx.commit()?;
        after = last;
    }
    Ok(seeded)
}

/// Removes the seeds of jobs the snapshot did not hold (deleted since the sink
/// row was written); returns how many.
pub(super) fn drop_unused(store: &Store, at: Lsn) -> Result<u64, PipelineError> {
    let mut from: Vec<u8> = Vec::new();
    let mut dropped = 0u64;
    loop {
        let tx = store.begin();
        let page = tx.scan(Cf::JobDelay, &from, 10_000)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        from = last.clone();
        from.push(0);
        for (job, value) in &page {
            let record: JobDelay = crate::store::decode(Cf::JobDelay, value)?;
            if record.stamp == (at, u32::MAX) && !tx.contains(Cf::Jobs, job)? {
                tx.delete(Cf::JobDelay, job)?;
                dropped += 1;
            }
        }
        tx.commit()?;
    }
    Ok(dropped)
}

fn read_error(e: tokio_postgres::Error) -> PipelineError {
    PipelineError::Other(format!(
        "reading the delay bounds the sink recorded (\"ResponseTimingEvent\"): {e}"
    ))
}
