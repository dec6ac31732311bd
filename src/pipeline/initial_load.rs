//! The initial load (SPEC 5): create the slot with an exported snapshot, copy the
//! tables at that snapshot in bounded keyset batches, derive, then stream from the
//! slot's consistent point.
//!
//! ```text
//!  clear the state ─▶ slot + snapshot ─▶ copy ─▶ derive every anchor ──▶ done
//!                                              │  into the outbox      ▲
//!                        sink task (daemon): ──┴─ delivers meanwhile ──┘
//! ```
//!
//! The daemon's sink task delivers the outbox while the load derives, so writing the
//! sink overlaps deriving. The sink's progress row moves only with the load's last
//! outbox entry. An interrupted load starts over from an empty state at a new
//! snapshot; when the interrupted one had let the sink deliver (`LOAD_WROTE_SINK`),
//! the sink may hold rows that are no anchors at the new snapshot (their inbound
//! message was deleted meanwhile), so the new load delivers nothing until it has
//! derived, then deletes the sink rows that are not anchors.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Context, PipelineError};
use crate::change::{Timestamp, TxnMeta};
use crate::engine::{Engine, EngineOptions};
use crate::fault;
use crate::lsn::Lsn;
use crate::source::SourceError;
use crate::source::decode::{LoadShape, Quarantined};
use crate::source::load::{LOAD_ORDER, Page, null_ids_sql, page_sql, read_page};
use crate::source::stream::{StreamOptions, create_slot_with_snapshot};
use crate::store::{Cf, QuarantineRecord, meta};
use crate::telemetry::metrics::METRICS;
use crate::telemetry::progress::Progress;

pub(super) async fn run(ctx: &Arc<Context>, options: &EngineOptions) -> Result<(), PipelineError> {
    load(ctx, options, true).await.map(|_| ())
}

/// Empties the state, copies the tables at one snapshot and derives every anchor
/// into the outbox. With `create_slot`, the snapshot is the one a new slot exports
/// and the state resumes from the slot's consistent point; without (`backfill
/// --dry-run`), it is a plain repeatable-read snapshot and no slot is touched.
/// Returns the LSN the state reflects. The load's engine is `engine_options` in
/// bulk mode.
pub async fn load(
    ctx: &Arc<Context>,
    engine_options: &EngineOptions,
    create_slot: bool,
) -> Result<Lsn, PipelineError> {
    ctx.health.ready.store(false, Ordering::SeqCst);
    METRICS.ready.set(0);
    let derivation: Vec<Cf> = Cf::ALL
        .iter()
        .copied()
        .filter(|cf| *cf != Cf::Meta)
        .collect();
    let earlier_load_wrote_sink = ctx
        .store
        .get_meta::<bool>(meta::LOAD_WROTE_SINK)?
        .unwrap_or(false);
    ctx.store.clear(&derivation)?;
    ctx.store.put_meta(meta::APPLIED_LSN, &Lsn::ZERO)?;
    ctx.store.put_meta(meta::HELD_ANCHORS, &0u64)?;
    ctx.store.put_meta(meta::HELD_NO_CLIENT, &0u64)?;
    ctx.store.put_meta(meta::INITIAL_LOAD_DONE, &false)?;
    let options = StreamOptions {
        slot: ctx.settings.slot.clone(),
        publication: ctx.settings.publication.clone(),
        start_lsn: Lsn::ZERO,
        ack_lsn: Lsn::ZERO,
        status_interval: ctx.settings.status_interval(),
        application_name: format!("replytime-{}-load", ctx.settings.slot),
    };
    let client =
        Arc::new(crate::pgconn::connect(ctx.settings.source_url(), "replytime-load").await?);
    let (slot, at) = if create_slot {
        record_slot_intent(ctx)?;
        let slot = create_slot_with_snapshot(&ctx.params, &options).await?;
        tracing::info!(slot = %options.slot, consistent_point = %slot.consistent_point, "created slot; copying tables");
        let at = slot.consistent_point;
        (Some(slot), at)
    } else {
        (None, crate::source::admin::current_wal_lsn(&client).await?)
    };
    let loaded = copy_and_derive(
        ctx,
        engine_options,
        &client,
        slot,
        at,
        earlier_load_wrote_sink,
    )
    .await;
    if let Err(error) = &loaded
        && create_slot
    {
        // Nothing may be left pinning WAL: the slot this load created goes again
        // (the next start records a new intent and creates a new one).
        drop_failed_load_slot(ctx, error).await;
    }
    loaded.map(|()| at)
}

/// The state's durable record that it is about to create the slot (see
/// `ownership`): a crash before the slot exists leaves a state that recognizes it.
fn record_slot_intent(ctx: &Arc<Context>) -> Result<(), PipelineError> {
    let owner = super::ownership::SlotOwner {
        slot: ctx.settings.slot.clone(),
        plugin: "pgoutput".into(),
        database: ctx.params.dbname.clone(),
        system_id: ctx
            .store
            .get_meta::<String>(meta::SYSTEM_ID)?
            .unwrap_or_default(),
        state_id: super::ownership::state_id(&ctx.store)?,
    };
    super::ownership::record_intent(&ctx.store, &owner)?;
    Ok(())
}

/// Drops the slot a failed load created, once its replication connection is gone.
async fn drop_failed_load_slot(ctx: &Arc<Context>, error: &PipelineError) {
    let slot = &ctx.settings.slot;
    let dropped = async {
        let admin = crate::pgconn::connect(ctx.settings.source_url(), "replytime-cleanup").await?;
        crate::source::admin::drop_inactive_slot(&admin, slot, std::time::Duration::from_secs(10))
            .await?;
        Ok::<(), PipelineError>(())
    }
    .await;
    match dropped {
        Ok(()) => {
            tracing::warn!(slot, error = %error, "initial load failed: dropped the slot it created")
        }
        Err(e) => {
            tracing::error!(slot, error = %error, cleanup = %e, "initial load failed and its slot could not be dropped: run `replytime teardown --yes` or start again (the same state drops and recreates it)")
        }
    }
}

/// Copies the tables at the snapshot of `slot` (or a plain repeatable-read one)
/// and derives every anchor into the outbox.
async fn copy_and_derive(
    ctx: &Arc<Context>,
    options: &EngineOptions,
    client: &Arc<tokio_postgres::Client>,
    slot: Option<crate::source::stream::NewSlot>,
    at: Lsn,
    earlier_load_wrote_sink: bool,
) -> Result<(), PipelineError> {
    let import = match &slot {
        Some(slot) => format!(
            "SET TRANSACTION SNAPSHOT '{}';",
            slot.snapshot.replace('\'', "")
        ),
        None => String::new(),
    };
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {import} \
             SET LOCAL statement_timeout = {}; SET LOCAL TimeZone = 'UTC'; \
             SET LOCAL DateStyle = 'ISO'",
            ctx.settings.statement_timeout_ms
        ))
        .await
        .map_err(SourceError::query("importing the slot's snapshot"))?;
    let sink = crate::sink::Sink::for_settings(&ctx.settings).await?;
    let kept = super::kept_delays::seed(&ctx.store, &sink, at).await?;
    drop(sink);
    tracing::info!(
        jobs = kept,
        "kept the delay bounds the sink recorded for its jobs"
    );
    // Bulk mode for an empty state: rows are written without tracking the anchors
    // they affect, and not logged; `derive_all` derives every anchor afterwards.
    let mut engine = Engine::new(
        ctx.store.clone(),
        EngineOptions {
            log_events: false,
            bulk: true,
            fresh_inserts: false,
            ..options.clone()
        },
    );
    copy_tables(ctx, client, &mut engine, at).await?;
    super::kept_delays::drop_unused(&ctx.store, at)?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(SourceError::query("ending the snapshot transaction"))?;
    drop(slot);
    let meta = TxnMeta {
        commit_lsn: at,
        end_lsn: at,
        commit_time: Timestamp::from_chrono(chrono::Utc::now()),
    };
    // A sink task that waits for this load (the daemon's) delivers while it derives,
    // unless an earlier attempt's rows must be pruned first.
    let deliver_now = ctx.sink.is_paused() && !earlier_load_wrote_sink;
    if deliver_now {
        ctx.store.put_meta(meta::LOAD_WROTE_SINK, &true)?;
        ctx.store.sync()?;
        ctx.sink.resume();
    }
    let started = Instant::now();
    let mut progress = Progress::new("deriving anchors", None);
    let outcome = engine.derive_all(&meta, &mut |n| progress.advance(n))?;
    progress.finish();
    METRICS.record_apply(&engine.take_stats());
    tracing::info!(
        anchors = outcome.ops,
        seconds = started.elapsed().as_secs_f64(),
        "anchors derived"
    );
    fault::point(fault::BEFORE_LOAD_DONE);
    if earlier_load_wrote_sink {
        prune_earlier_load(ctx).await?;
    }
    ctx.store.put_meta(meta::INITIAL_LOAD_DONE, &true)?;
    ctx.store.put_meta(meta::LOAD_WROTE_SINK, &false)?;
    ctx.store.sync()?;
    tracing::info!(anchors = outcome.ops, lsn = %at, "tables loaded and derived");
    Ok(())
}

/// Deletes the sink rows that are not anchors at this load's snapshot: what an
/// interrupted load delivered and the source deleted since.
async fn prune_earlier_load(ctx: &Arc<Context>) -> Result<(), PipelineError> {
    let sink = crate::sink::Sink::for_settings(&ctx.settings).await?;
    let pruned = super::strays::prune_strays(&ctx.store, &sink, None, false)
        .await
        .map_err(|e| {
            PipelineError::Other(format!(
                "deleting the sink rows an interrupted initial load left: {e:#}"
            ))
        })?;
    tracing::info!(
        rows = pruned,
        "deleted sink rows of an interrupted initial load that are no anchors now"
    );
    Ok(())
}

async fn copy_tables(
    ctx: &Arc<Context>,
    client: &Arc<tokio_postgres::Client>,
    engine: &mut Engine,
    consistent_point: Lsn,
) -> Result<(), PipelineError> {
    let estimate = crate::source::load::estimate_rows(client, &ctx.settings.tables).await;
    let mut progress = Progress::new("initial load", estimate);
    let mut seq: u32 = 0;
    let started = Instant::now();
    // Pages are read (Postgres's work and decoding the rows) by a task of their
    // own, a page or two ahead of applying them here.
    let (pages, mut received) = tokio::sync::mpsc::channel(PAGES_AHEAD);
    let reader = tokio::spawn(read_pages(ctx.clone(), client.clone(), pages));
    let mut quarantined: u32 = 0;
    while let Some(page) = received.recv().await {
        if ctx.shutdown.is_cancelled() {
            return Err(crate::engine::EngineError::Interrupted.into());
        }
        let Page {
            changes,
            quarantined: rows,
        } = page;
        if !rows.is_empty() {
            quarantine(ctx, consistent_point, &mut quarantined, rows)?;
        }
        let rows = changes.len();
        engine.apply(consistent_point, changes)?;
        seq += rows as u32;
        METRICS.initial_load_rows.inc_by(rows as u64);
        progress.advance(rows as u64);
        fault::point(fault::INSIDE_INITIAL_LOAD);
    }
    reader
        .await
        .map_err(|e| PipelineError::Other(format!("initial load reader: {e}")))??;
    progress.finish();
    tracing::info!(
        rows = seq,
        seconds = started.elapsed().as_secs_f64(),
        "tables copied"
    );
    Ok(())
}

/// Keeps the rows the load cannot place, as the stream does (SPEC 4 and 8).
fn quarantine(
    ctx: &Arc<Context>,
    at: Lsn,
    count: &mut u32,
    rows: Vec<Quarantined>,
) -> Result<(), PipelineError> {
    let tx = ctx.store.begin();
    for q in rows {
        METRICS.quarantined.inc();
        tracing::warn!(table = %q.table, row_id = ?q.row_id, reason = %q.reason, lsn = %at, "quarantined a row of the initial load");
        let record = QuarantineRecord {
            commit_lsn: at,
            table: q.table,
            row_id: q.row_id,
            reason: q.reason,
        };
        tx.put_quarantine(*count, &record)?;
        *count += 1;
    }
    tx.commit()?;
    Ok(())
}

/// Pages read ahead of the one being applied.
const PAGES_AHEAD: usize = 2;

/// Reads every table in load order, in keyset pages, into `pages`; stops early
/// when the receiver is gone (the load failed or was stopped).
async fn read_pages(
    ctx: Arc<Context>,
    client: Arc<tokio_postgres::Client>,
    pages: tokio::sync::mpsc::Sender<Page>,
) -> Result<(), SourceError> {
    let settings = &ctx.settings;
    for table in LOAD_ORDER {
        let shape = LoadShape::new(&settings.tables, table);
        let sql = page_sql(
            &settings.tables,
            table,
            settings.load_batch_rows,
            settings.shard,
        );
        let statement = client
            .prepare(&sql)
            .await
            .map_err(SourceError::query("preparing the initial load query"))?;
        let mut after: Option<String> = None;
        loop {
            let (page, last) = read_page(&client, &statement, &shape, after.as_deref()).await?;
            if last.is_none() {
                break;
            }
            if pages.send(page).await.is_err() {
                return Ok(());
            }
            after = last;
        }
        let null_ids: i64 = client
            .query_one(&null_ids_sql(&settings.tables, table, settings.shard), &[])
            .await
            .map_err(SourceError::query("counting source rows without an id"))?
            .get(0);
        let quarantined = (0..null_ids)
            .map(|_| Quarantined {
                table,
                reason: "null id".into(),
                row_id: None,
            })
            .collect();
        let page = Page {
            changes: Vec::new(),
            quarantined,
        };
        if null_ids > 0 && pages.send(page).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
