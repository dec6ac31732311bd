//! `replay` and `rebuild`: repair a damaged sink (or apply a fixed derivation)
//! without touching the slot. Both open the state directory, which RocksDB's lock
//! refuses while a daemon holds it, so they never race a live daemon.
//!
//! - `replay --from-lsn X | --from-time T` re-applies the event log from X (every
//!   change, none skipped as already applied) and re-emits every anchor it touches.
//! - `rebuild` re-derives every anchor from the state and re-emits all of them,
//!   then deletes sink rows that are not anchors in the state (rows written by
//!   hand, or left by a restore of an older backup).

use std::sync::Arc;

use crate::change::{Timestamp, TxnMeta};
use crate::config::Settings;
use crate::engine::{Engine, EngineOptions};
use crate::lsn::Lsn;
use crate::pipeline::shutdown::CancellationToken;
use crate::pipeline::strays::prune_strays;
use crate::pipeline::{flush_batch, open_store};
use crate::sink::Sink;
use crate::store::{Cf, Store};
use crate::telemetry::progress::Progress;

/// Where a replay starts.
#[derive(Clone, Debug)]
pub enum ReplayFrom {
    Lsn(Lsn),
    Time(Timestamp),
}

async fn open(settings: &Settings) -> anyhow::Result<(Arc<Store>, Sink)> {
    let store = open_store(settings).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(replay and rebuild need the daemon stopped: it holds the state directory)"
        )
    })?;
    let sink = Sink::for_settings(settings).await?.repairing();
    sink.migrate().await?;
    // Writing the sink makes this state its writer: refused when another writer's
    // claim overlaps.
    let state_id = crate::pipeline::ownership::state_id(&store)?;
    crate::pipeline::ownership::register_writer(settings, sink.client(), &state_id, false).await?;
    Ok((store, sink))
}

async fn drain(store: &Store, sink: &mut Sink, settings: &Settings) -> anyhow::Result<()> {
    while flush_batch(store, sink, &settings.slot, settings.sink_batch_ops)
        .await?
        .is_some()
    {}
    Ok(())
}

/// Re-applies the event log from `from`; returns transactions replayed. A
/// cancelled `shutdown` stops it between batches (everything before was delivered)
/// with the LSN to continue from.
pub async fn replay(
    settings: &Settings,
    from: ReplayFrom,
    shutdown: &CancellationToken,
) -> anyhow::Result<u64> {
    let (store, mut sink) = open(settings).await?;
    let start = match from {
        ReplayFrom::Lsn(lsn) => {
            // Below the log's first transaction the changes are gone (retention, or
            // before the initial load): replaying would skip them without a word.
            let oldest = store.logged_transactions(Lsn::ZERO, 1)?;
            if let Some(oldest) = oldest.first().map(|t| t.meta.commit_lsn)
                && lsn < oldest
            {
                anyhow::bail!(
                    "--from-lsn {lsn} is below the oldest transaction the event log holds \
                     ({oldest}): the changes in between are no longer in the log \
                     (event_log_retention_hours / event_log_max_bytes, or they predate \
                     the initial load). Replay with --from-lsn {oldest}, and run \
                     `replytime rebuild` for rows untouched since"
                );
            }
            lsn
        }
        ReplayFrom::Time(t) => match store.first_logged_at(t)? {
            Some(lsn) => lsn,
            None => anyhow::bail!("the event log holds no transaction committed at or after {t}"),
        },
    };
    // Applied as the daemon applies them: a large transaction in chunks.
    let mut engine = Engine::new(
        store.clone(),
        EngineOptions {
            log_events: false,
            force_upsert: true,
            chunk_changes: settings.chunk_changes,
            ..EngineOptions::default()
        },
    );
    drain(&store, &mut sink, settings).await?;
    let mut progress = Progress::new("replay", None);
    let mut next = start;
    let mut replayed = 0u64;
    loop {
        let txns = store.logged_transactions(next, 1_000)?;
        let Some(last) = txns.last().map(|t| t.meta.commit_lsn) else {
            break;
        };
        for txn in txns {
            let changes = txn.changes.len() as u64;
            engine.apply(txn.meta.commit_lsn, txn.changes)?;
            engine.commit(&txn.meta)?;
            progress.advance(changes);
            replayed += 1;
        }
        engine.flush()?;
        drain(&store, &mut sink, settings).await?;
        next = Lsn(last.0 + 1);
        if shutdown.is_cancelled() {
            anyhow::bail!(
                "stopped on request after {replayed} transactions, all delivered: continue with \
                 `replytime replay --from-lsn {next}`"
            );
        }
    }
    progress.finish();
    Ok(replayed)
}

/// Re-derives every anchor and upserts every row; returns rows written. A
/// cancelled `shutdown` stops the derivation at its next batch (run it again).
pub async fn rebuild(settings: &Settings, shutdown: &CancellationToken) -> anyhow::Result<usize> {
    let (store, mut sink) = open(settings).await?;
    drain(&store, &mut sink, settings).await?;
    let applied = store.applied_lsn()?;
    let meta = TxnMeta {
        commit_lsn: applied,
        end_lsn: applied,
        commit_time: Timestamp::from_chrono(chrono::Utc::now()),
    };
    let mut engine = Engine::new(
        store.clone(),
        EngineOptions {
            log_events: false,
            force_upsert: true,
            interrupt: shutdown.clone(),
            ..EngineOptions::default()
        },
    );
    let mut progress = Progress::new("rebuild", Some(count_messages(&store)?));
    let outcome = engine.derive_all(&meta, &mut |n| progress.advance(n))?;
    progress.finish();
    drain(&store, &mut sink, settings).await?;
    let pruned = prune_strays(&store, &sink, None, false).await?;
    if pruned > 0 {
        tracing::info!(rows = pruned, "deleted sink rows that are not anchors");
    }
    Ok(outcome.ops + pruned as usize)
}

/// Messages in the state (a key scan: cheap next to deriving each of them), for
/// the rebuild's ETA.
fn count_messages(store: &Store) -> anyhow::Result<u64> {
    let tx = store.begin();
    let mut after: Option<Vec<u8>> = None;
    let mut count = 0u64;
    loop {
        let keys = tx.keys_with_prefix(Cf::Messages, &[], after.as_deref(), 100_000)?;
        let Some(last) = keys.last().cloned() else {
            return Ok(count);
        };
        count += keys.len() as u64;
        after = Some(last);
    }
}
