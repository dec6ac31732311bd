//! `backfill`: rebuild the state and the sink from the source tables, for when the
//! slot cannot be resumed (lost RocksDB, a slot that is lost or ahead, a failover).
//!
//! ```text
//!  drop the old slot ─▶ new slot + exported snapshot ─▶ keyset batches of the five
//!  tables at that snapshot (statement timeout per batch) ─▶ engine (fresh state)
//!  ─▶ outbox ─▶ sink, one transaction per batch ─▶ delete sink rows that are not
//!  anchors ─▶ `run` streams from the slot's consistent point
//! ```
//!
//! The tables are read at one snapshot (the slot's, so no change is lost or applied
//! twice between the copy and the stream); the sink is written in bounded
//! transactions. `--lookback-days N` derives every anchor into the state (later
//! changes to old threads still need it) but writes to the sink, and prunes from
//! it, only anchors whose inbound message is at most N days old; older sink rows are
//! left as they are. `--dry-run` copies into a throwaway RocksDB directory at a
//! plain repeatable-read snapshot, touches neither the slot, the state nor the sink,
//! and prints what it would write.
//!
//! Safe only while the daemon is stopped: the state directory's lock refuses a
//! second process, and an active slot is refused before it is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::change::Timestamp;
use crate::config::Settings;
use crate::engine::{AnchorRecord, EngineOptions};
use crate::pipeline::shutdown::CancellationToken;
use crate::pipeline::{
    Context, SinkShared, flush_batch, load_tables, open_store, prepare_sink_and_publication,
};
use crate::row::TimingRow;
use crate::sink::Sink;
use crate::source::admin;
use crate::source::stream::conn_params;
use crate::store::{Cf, Store, StoreOptions, meta};
use crate::telemetry::health::Health;
use crate::telemetry::progress::Progress;

/// What `backfill` was asked to do.
#[derive(Clone, Debug, Default)]
pub(crate) struct BackfillOptions {
    /// Only anchors whose inbound message is at most this many days old reach the sink.
    pub lookback_days: Option<u32>,
    /// Rows per source batch and operations per sink transaction.
    pub batch_size: Option<usize>,
    pub dry_run: bool,
    /// Drop an existing slot of the configured name that this state did not
    /// create (lost state, another tool's slot): explicit, never implied.
    pub recreate_slot: bool,
}

/// What a backfill wrote (or would write).
#[derive(Debug, Default)]
pub(crate) struct BackfillSummary {
    pub snapshot_lsn: crate::lsn::Lsn,
    /// Rows with a response per channel, in the lookback window.
    pub rows_by_channel: BTreeMap<String, u64>,
    pub rows: u64,
    /// Anchors derived but older than the lookback window.
    pub older_anchors: u64,
    /// Sink rows in the window that are not anchors (deleted, or to delete).
    pub stray_rows: u64,
    pub sample: Vec<TimingRow>,
}

impl BackfillSummary {
    pub(crate) fn print(&self, options: &BackfillOptions) {
        let verb = if options.dry_run {
            "would upsert"
        } else {
            "upserted"
        };
        let by_channel: Vec<String> = self
            .rows_by_channel
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        println!(
            "backfill at snapshot {}: {verb} {} rows ({})",
            self.snapshot_lsn,
            self.rows,
            by_channel.join(", ")
        );
        if let Some(days) = options.lookback_days {
            println!(
                "lookback {days} days: {} older anchors derived into the state, not written",
                self.older_anchors
            );
        }
        let verb = if options.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!("{verb} {} sink rows that are not anchors", self.stray_rows);
        if options.dry_run {
            for row in &self.sample {
                println!(
                    "  {}",
                    serde_json::to_string(row).unwrap_or_else(|e| e.to_string())
                );
            }
            println!("dry run: nothing was written; the slot and the state are untouched");
        } else {
            println!(
                "the slot resumes from {}: start `replytime run`",
                self.snapshot_lsn
            );
        }
    }
}

/// Copies and derives until done or until `shutdown` is cancelled (at the next
/// page or derivation batch: the slot it created is dropped again, and a later
/// backfill starts over).
pub(crate) async fn backfill(
    settings: &Settings,
    options: &BackfillOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<BackfillSummary> {
    let mut settings = settings.clone();
    if let Some(n) = options.batch_size {
        anyhow::ensure!(n > 0, "--batch-size must be at least 1");
        settings.load_batch_rows = n;
        settings.sink_batch_ops = n;
    }
    let cutoff = options.lookback_days.map(|days| {
        Timestamp::from_chrono(chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
    });

    let admin = crate::pgconn::connect(settings.source_url(), "replytime-backfill").await?;
    let server = admin::server_info(&admin).await?;
    admin::check_tables(&admin, &settings.tables).await?;
    let sink = Sink::for_settings(&settings).await?.repairing();

    // The dry run works in a throwaway directory next to nothing of the daemon's.
    let scratch;
    let store = if options.dry_run {
        scratch = tempfile::tempdir()?;
        Arc::new(Store::open(
            scratch.path(),
            &StoreOptions::for_settings(&settings),
        )?)
    } else {
        admin::check_replication_privilege(&admin).await?;
        settings.require_state_dir()?;
        let store = open_store(&settings).map_err(|e| {
            anyhow::anyhow!(
                "{e}\n(backfill needs the daemon stopped: it holds the state directory)"
            )
        })?;
        prepare_sink_and_publication(&settings, &admin, &sink).await?;
        if let Some(state) = admin::slot_state(&admin, &settings.slot).await? {
            if let Some(pid) = state.active_pid {
                anyhow::bail!(
                    "replication slot {:?} is in use by process {pid}: stop the daemon before a backfill",
                    settings.slot
                );
            }
            let ours = crate::pipeline::ownership::is_ours(
                crate::pipeline::ownership::recorded(&store)?.as_ref(),
                &settings.slot,
                state.database.as_deref(),
                &server.system_identifier,
                &crate::pipeline::ownership::state_id(&store)?,
            );
            let described = format!(
                "replication slot {:?} (plugin {}, database {}, confirmed up to {})",
                settings.slot,
                state.plugin.as_deref().unwrap_or("none"),
                state.database.as_deref().unwrap_or("none"),
                state
                    .confirmed_flush_lsn
                    .map_or("nothing".to_string(), |l| l.to_string()),
            );
            if !ours && !options.recreate_slot {
                anyhow::bail!(
                    "{described} was not created by the state in {}: a backfill would drop it. If it is replytime's slot of a lost state (or a leftover you mean to replace), stop whatever uses it and run `replytime backfill --recreate-slot`, which drops it and creates a new one",
                    settings.state_dir().display()
                );
            }
            eprintln!("dropping {described}: the backfill creates a new slot");
            admin::drop_slot(&admin, &settings.slot).await?;
        }
        let state_id = crate::pipeline::ownership::state_id(&store)?;
        crate::pipeline::ownership::register_writer(
            &settings,
            sink.client(),
            &state_id,
            options.recreate_slot,
        )
        .await?;
        store.put_meta(meta::SYSTEM_ID, &server.system_identifier)?;
        store
    };

    let ctx = Arc::new(Context {
        params: conn_params(settings.source_url())?,
        settings: settings.clone(),
        store: store.clone(),
        health: Arc::new(Health::default()),
        sink: Arc::new(SinkShared::default()),
        shutdown: shutdown.clone(),
    });
    let engine_options = EngineOptions {
        emit_since: cutoff,
        interrupt: shutdown.clone(),
        ..EngineOptions::default()
    };
    let snapshot_lsn = load_tables(&ctx, &engine_options, !options.dry_run).await?;

    let mut summary = summarize(&store, cutoff, options.dry_run)?;
    summary.snapshot_lsn = snapshot_lsn;
    if !options.dry_run {
        let mut sink = sink;
        let mut progress = Progress::new("backfill sink", Some(summary.rows));
        let mut written = 0u64;
        while flush_batch(&store, &mut sink, &settings.slot, settings.sink_batch_ops)
            .await?
            .is_some()
        {
            let batch = (settings.sink_batch_ops as u64).min(summary.rows.saturating_sub(written));
            written += batch;
            progress.advance(batch);
        }
        progress.finish();
        summary.stray_rows =
            crate::pipeline::strays::prune_strays(&store, &sink, cutoff, false).await?;
        store.sync()?;
    } else {
        summary.stray_rows =
            crate::pipeline::strays::prune_strays(&store, &sink, cutoff, true).await?;
    }
    Ok(summary)
}

/// Counts the derived rows (and keeps a few for the dry run's sample).
fn summarize(
    store: &Store,
    cutoff: Option<Timestamp>,
    keep_sample: bool,
) -> anyhow::Result<BackfillSummary> {
    let mut summary = BackfillSummary::default();
    let mut from: Vec<u8> = Vec::new();
    loop {
        let page = store.begin().scan(Cf::Anchors, &from, 10_000)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        from = last.clone();
        from.push(0);
        for (_, value) in &page {
            let record: AnchorRecord = crate::store::decode(Cf::Anchors, value)?;
            let Some(row) = record.row else { continue };
            if cutoff.is_some_and(|c| row.inbound_sent_at < c) {
                summary.older_anchors += 1;
                continue;
            }
            summary.rows += 1;
            *summary
                .rows_by_channel
                .entry(row.channel.clone())
                .or_default() += 1;
            if keep_sample && summary.sample.len() < 5 {
                summary.sample.push(row);
            }
        }
    }
    Ok(summary)
}
