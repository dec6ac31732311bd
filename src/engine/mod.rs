//! The engine: applies source transactions to the derivation state and emits the
//! exact sink operations that keep `"ResponseTimingEvent"` equal to the rules of
//! SPEC section 3. Pure code over the state store: no async, no IO besides RocksDB.
//!
//! ```text
//!   Change ──▶ apply (rows + ordered indexes, marks dirty anchors)
//!                 │  at the end of the transaction
//!                 ▼
//!            refresh each dirty anchor: derive (anchor.rs) ─▶ compare with what the
//!            sink holds (anchors cf) ─▶ Upsert / Delete ─▶ outbox, applied LSN
//! ```
//!
//! The public API (everything else is private to the engine):
//! - [`Engine::new`]: an engine over a store; its modes (bulk load, event log,
//!   forced upserts, `emit_since`, interruption, chunk size) are [`EngineOptions`],
//!   fixed for its life.
//! - [`Engine::apply`]: changes of the open transaction; the one way a transaction
//!   reaches the engine, which applies a large one in chunks itself.
//! - [`Engine::commit`]: ends the transaction: a large one is finished at once, a
//!   small one staged for group commit.
//! - [`Engine::flush`]: commits the staged group (the durable boundary).
//! - [`Engine::discard`]: forgets what is staged or open (the stream restarts).
//! - [`Engine::derive_all`]: every anchor at once (after a bulk load; `rebuild`).
//! - [`Engine::take_stats`]: counters for the metrics.
//! - [`delay::chosen_delay`]: the delay the CRM chooses for a message (SPEC 3.6).
//!
//! Calls out of order (a commit of another transaction than the open one, deriving
//! everything with a transaction open) return [`EngineError::OutOfOrder`].
//!
//! Where each part lives: `txn.rs` the transaction path (chunks of a large
//! transaction, group commit of small ones), `refresh.rs` dirty anchors to sink
//! operations, `derive_all.rs` every anchor at once, `anchor.rs` the anchor rule,
//! `apply.rs` one change to rows and indexes, `fresh.rs` the reads of a new id
//! it skips, `relabel.rs` a lead's new client,
//! `toast.rs` unchanged TOAST values, `keys.rs` the state's key layout.
//!
//! Anchors are re-derived once per transaction, after all its changes, so the sink
//! never sees an intermediate state of a transaction. A large transaction is applied
//! in chunks (each its own RocksDB commit, together with the anchors it leaves to
//! refresh; the dirty set also spills to RocksDB past a bound) and its anchors are
//! refreshed in bounded batches: memory stays bounded, and a crash in between
//! loses no refresh.
//!
//! Decisions where the spec leaves room (also in the README):
//! - A job's `createdAt` NULL orders before every value ("latest" is the greatest
//!   (`createdAt`, `id`)); several drafts for one (trigger, channel) — impossible
//!   under the unique constraint — resolve to the smallest draft id.
//! - A campaign whose min or max is NULL contributes the default (180 / 420) for it.
//! - A lead whose `clientId` is NULL holds its anchors like an unknown lead.
//! - The delay record of a job carries the stream position (commit LSN, change
//!   number) of the insert that wrote it. Re-applying an insert or delete at or
//!   before that position leaves it alone: re-applied suffixes and replays never
//!   change a record.

mod anchor;
mod apply;
pub mod delay;
mod derive_all;
mod fresh;
mod keys;
mod refresh;
mod relabel;
mod toast;
mod txn;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::change::{Timestamp, TxnMeta};
use crate::lsn::Lsn;
use crate::row::TimingRow;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::ApplyStats;
use txn::{Group, OpenTxn};

pub(crate) use anchor::{DerivedAnchor, HeldReason};

/// Position of a change in the stream: (commit LSN of its transaction, its number).
pub(crate) type Stamp = (Lsn, u32);

/// The delay bounds recorded when a job's insert was applied (SPEC 3.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobDelay {
    pub min: i32,
    pub max: i32,
    pub stamp: Stamp,
}

/// What the engine knows of an anchor: its lead and the row the sink holds for it
/// (`None` while held for an unknown lead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AnchorRecord {
    pub lead_id: String,
    pub row: Option<TimingRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state is inconsistent: {0}; run `replytime rebuild`")]
    Inconsistent(String),
    #[error("stopped on request before the work was done")]
    Interrupted,
    /// A call out of order (a bug in the caller): nothing was applied.
    #[error("engine called out of order: {0}")]
    OutOfOrder(String),
}

/// How an engine works, fixed for its life.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Keep decoded changes in the event log (off while replaying the log itself).
    pub log_events: bool,
    /// Dirty anchors kept in memory before spilling to RocksDB.
    pub dirty_spill: usize,
    /// Anchors refreshed per RocksDB commit (and per outbox entry).
    pub refresh_batch: usize,
    /// Changes of one transaction buffered before they are applied as a chunk of
    /// their own (its own RocksDB commit); also the staged changes that make
    /// [`Engine::commit`] commit the group.
    pub chunk_changes: usize,
    /// Bulk load into an empty state: changes are applied without looking up the
    /// anchors they affect, every [`Engine::apply`] is a chunk of its own, and
    /// [`Engine::derive_all`] derives every anchor afterwards, in thread order.
    pub bulk: bool,
    /// Emit upserts of unchanged rows too (replay into or rebuild of a damaged sink).
    pub force_upsert: bool,
    /// The changes come from the live stream, past the state's applied LSN, over a
    /// source whose ids are unique: an insert names an id the state does not hold,
    /// so its lookups of the old row and of the anchor record are skipped where
    /// `fresh.rs` proves them absent. Only the daemon's stream sets it (never
    /// `replay`, `rebuild`, `backfill` or a load); ignored with `bulk` or
    /// `force_upsert`.
    pub fresh_inserts: bool,
    /// Safety net of [`EngineOptions::fresh_inserts`] (tests): every skipped read
    /// is made anyway and panics if it finds its key.
    pub verify_known_absent: bool,
    /// Anchors whose inbound message was sent before this are derived and recorded
    /// but not upserted into the sink (`backfill --lookback-days`); later changes
    /// emit them in full.
    pub emit_since: Option<Timestamp>,
    /// Once cancelled (the daemon's shutdown), [`Engine::derive_all`] returns
    /// [`EngineError::Interrupted`] at its next batch (what it committed stays
    /// committed).
    pub interrupt: CancellationToken,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            log_events: true,
            dirty_spill: 50_000,
            refresh_batch: 10_000,
            chunk_changes: 10_000,
            bulk: false,
            force_upsert: false,
            fresh_inserts: false,
            verify_known_absent: false,
            emit_since: None,
            interrupt: CancellationToken::new(),
        }
    }
}

/// Response times an engine keeps before it hands its counters to the metrics
/// itself: one long operation (an initial load, a rebuild) would otherwise hold one
/// per anchor until [`Engine::take_stats`] (450 MiB at 4 million anchors).
const STATS_BOUND: usize = 1 << 16;

/// Result of a finished transaction.
#[derive(Clone, Debug, Default)]
pub struct TxnOutcome {
    /// Outbox sequence numbers written, in order.
    pub outbox: Vec<u64>,
    pub ops: usize,
}

/// What a commit made durable: everything through `last` (the state's applied
/// LSN is now `last.end_lsn`), with the outbox entries written.
pub(crate) type Committed = Option<(TxnMeta, TxnOutcome)>;

/// The engine over a store (see the module doc for its API).
pub struct Engine {
    store: Arc<Store>,
    group: Group,
    open: Option<OpenTxn>,
    options: EngineOptions,
    dirty: BTreeSet<String>,
    /// Anchors to relabel with their lead's new `clientId` (`relabel.rs`);
    /// refreshed after `dirty`, which wins when an anchor is in both.
    relabel: BTreeSet<String>,
    spilled: bool,
    /// Whether the transactions staged from now on may skip the reads `fresh.rs`
    /// proves absent: not for the first transaction after the engine starts or
    /// the stream restarts (it may be a chunked one that a crash cut, applied
    /// again from its start).
    fresh_ready: bool,
    /// The state's applied LSN as the engine last committed it (`None` if it could
    /// not be read): a transaction committed before it is applied again, over its
    /// own effects, and skips nothing.
    applied: Option<Lsn>,
    stats: ApplyStats,
}

impl Engine {
    /// An engine over `store`, working as `options` say for its whole life.
    pub fn new(store: Arc<Store>, options: EngineOptions) -> Self {
        if options.bulk {
            store.set_bulk_reads(true);
        }
        Engine {
            store: store.clone(),
            group: Group::default(),
            open: None,
            options,
            dirty: BTreeSet::new(),
            relabel: BTreeSet::new(),
            // Anchors a crashed run left to refresh are refreshed with the first
            // transaction (the one it was applying, streamed again).
            spilled: true,
            fresh_ready: false,
            applied: store.applied_lsn().ok(),
            stats: ApplyStats::default(),
        }
    }

    /// Counters since the last call (less what a long operation already recorded
    /// into the metrics, see [`STATS_BOUND`]).
    pub fn take_stats(&mut self) -> ApplyStats {
        std::mem::take(&mut self.stats)
    }
}

impl Drop for Engine {
    /// A bulk engine sized the store's read cache down for itself.
    fn drop(&mut self) {
        if self.options.bulk {
            self.store.set_bulk_reads(false);
        }
    }
}
