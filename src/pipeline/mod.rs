//! The daemon: wires source → engine → store (state + outbox) → sink → confirmed LSN.
//! No derivation rules here; the one rule this module owns is which LSN may be
//! confirmed to the slot (`confirmable`).
//!
//! ```text
//!  replication stream ──▶ decoder ──▶ engine ──▶ RocksDB (state, outbox, applied LSN)
//!        ▲                                              │ sink task
//!        │ standby status: confirmable()                ▼
//!        └──────────── min(durable state, sink) ◀── Postgres sink (rows + progress row)
//! ```
//!
//! Confirmation rule: the slot is told an LSN only when every transaction up to it
//! is fsynced in RocksDB *and* committed to the sink: `applied` (after a WAL sync)
//! when the outbox is empty, else the end LSN of the last complete transaction the
//! sink committed. An idle keepalive's `wal_end` becomes `applied` only when no
//! transaction is open and the outbox is empty.

mod initial_load;
mod kept_delays;
pub(crate) mod ownership;
pub mod policy;
pub mod poller;
mod retention;
pub mod shutdown;
mod sink_batch;
mod sink_task;
pub(crate) mod strays;
mod streaming;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::change::Table;
use crate::config::Settings;
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::lsn::Lsn;
use crate::sink::{Sink, SinkError};
use crate::source::SourceError;
use crate::source::admin;
use crate::source::stream::{ConnParams, conn_params};
use crate::store::{Store, StoreError, StoreOptions, meta};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::METRICS;
use shutdown::CancellationToken;

pub use initial_load::load as load_tables;
pub(crate) use sink_task::{SinkShared, flush_batch};

/// Errors that stop the daemon, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("source connection: {0}")]
    Connect(#[from] crate::pgconn::PgConnError),
    #[error(
        "sink unreachable for {0:?} with rows pending: replication paused until it is back (the slot keeps the WAL)"
    )]
    SinkDown(Duration),
    #[error(transparent)]
    Ownership(Box<ownership::OwnershipError>),
    #[error("{0}")]
    Other(String),
}

impl PipelineError {
    /// Whether restarting the stream from the durable LSN may help
    /// ([`policy::classify`] decides).
    pub(crate) fn is_retryable(&self) -> bool {
        policy::classify(self) == policy::Next::Retry
    }
}

/// Everything the daemon's loops share.
pub struct Context {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub params: ConnParams,
    pub health: Arc<Health>,
    pub sink: Arc<SinkShared>,
    /// The daemon's shutdown (see `shutdown`): every loop and wait ends on it.
    pub shutdown: CancellationToken,
}

impl Context {
    /// The LSN that may be confirmed to the slot now (see the module doc).
    pub(crate) fn confirmable(&self) -> Result<Lsn, StoreError> {
        self.store.sync()?;
        let applied = self.store.applied_lsn()?;
        let lsn = if self.store.outbox_len()? == 0 {
            applied
        } else {
            self.sink.done_lsn().min(applied)
        };
        METRICS.set_lsn("durable", applied);
        Ok(lsn)
    }
}

pub(crate) fn open_store(settings: &Settings) -> Result<Arc<Store>, StoreError> {
    let options = StoreOptions::for_settings(settings);
    Ok(Arc::new(Store::open(settings.state_dir(), &options)?))
}

/// Runs the daemon until `shutdown` is cancelled (then drains, flushes and sends a
/// final status update, all within [`shutdown::SHUTDOWN_BUDGET`]) or a fatal error.
pub async fn run(
    settings: Settings,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    // A stop before streaming begins (during the checks or the initial load) ends
    // the start-up at its next await (deriving every anchor, at its next batch):
    // nothing was confirmed yet, and a load that did not finish starts over on the
    // next start, as after a crash.
    let started = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        started = start(settings, &health, &shutdown) => match started {
            Err(PipelineError::Engine(EngineError::Interrupted)) => None,
            started => Some(started?),
        },
    };
    let Some(Started {
        ctx,
        admin,
        engine,
        mut sink_handle,
        stop_sink,
    }) = started
    else {
        tracing::info!(
            "stopped before streaming began; nothing was confirmed, and an unfinished initial load starts over on the next start"
        );
        return Ok(());
    };

    let stream = streaming::stream_forever(ctx.clone(), admin, engine);
    tokio::pin!(stream);
    let mut deadline = None;
    let result = loop {
        tokio::select! {
            r = &mut stream => break r,
            r = &mut sink_handle => break match r {
                Ok(Ok(())) => Err(PipelineError::Other("sink task ended".into())),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(PipelineError::Other(format!("sink task failed: {e}"))),
            },
            // The stream sees the token too and closes; this only starts the clock.
            () = shutdown.cancelled(), if deadline.is_none() => {
                deadline = Some(shutdown::deadline());
            }
        }
    };
    health.ready.store(false, Ordering::SeqCst);
    let stop_sink = stop_sink.disarm();
    stop_sink.cancel();
    if result.is_ok() {
        let deadline = deadline.unwrap_or_else(shutdown::deadline);
        match shutdown::join_by(&mut sink_handle, deadline).await {
            Some(Ok(Err(e))) => return Err(e.into()),
            None => tracing::warn!(
                "outbox not drained within the shutdown budget; it is durable and resumes on restart"
            ),
            _ => {}
        }
        tracing::info!(lsn = %ctx.confirmable()?, "stopped");
    }
    result
}

/// A daemon ready to stream: checked, its slot ready (loaded if new), its sink
/// task running.
struct Started {
    ctx: Arc<Context>,
    admin: tokio_postgres::Client,
    engine: Engine,
    sink_handle: tokio::task::JoinHandle<Result<(), crate::sink::SinkError>>,
    /// Stops the sink task (also when a start-up that spawned it is dropped).
    stop_sink: tokio_util::sync::DropGuard,
}

/// Opens the state, checks the source and the sink, starts the sink task and
/// prepares the slot (the initial load when it is new).
async fn start(
    settings: Settings,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<Started, PipelineError> {
    let store = open_store(&settings)?;
    let params = conn_params(settings.source_url())?;
    let admin = crate::pgconn::connect(settings.source_url(), "replytime-admin").await?;
    let server = admin::server_info(&admin).await?;
    admin::check_replication_privilege(&admin).await?;
    admin::check_tables(&admin, &settings.tables).await?;
    admin::check_select_privileges(&admin, &settings.tables).await?;
    // Inserts of unique ids name rows the state does not hold (engine `fresh.rs`).
    let inserted_tables = [Table::Message, Table::AiDraft, Table::BackgroundJob];
    let unique_ids = admin::ids_are_unique(&admin, &settings.tables, &inserted_tables).await?;
    check_system(&store, &server.system_identifier)?;

    let sink = Sink::for_settings(&settings).await?;
    prepare_sink_and_publication(&settings, &admin, &sink).await?;
    let registry = crate::pgconn::connect(settings.sink_url(), "replytime-registry").await?;

    let ctx = Arc::new(Context {
        settings,
        store: store.clone(),
        params,
        health: health.clone(),
        // The sink task runs from here on, paused until the slot is ready: an
        // initial load lets it deliver while the load derives (see `initial_load`).
        sink: Arc::new(SinkShared::paused()),
        shutdown: shutdown.clone(),
    });
    let stop_sink = CancellationToken::new();
    let sink_task = sink_task::SinkTask {
        ctx: ctx.clone(),
        stop: stop_sink.clone(),
    };
    let sink_handle = tokio::spawn(sink_task.run(Some(sink)));
    let stop_sink = stop_sink.drop_guard();
    let options = EngineOptions {
        chunk_changes: ctx.settings.chunk_changes,
        interrupt: shutdown.clone(),
        fresh_inserts: unique_ids,
        verify_known_absent: crate::fault::verify_known_absent(),
        ..EngineOptions::default()
    };
    let state_id = prepare_slot(&ctx, &admin, &registry, &options).await?;
    let engine = Engine::new(store.clone(), options);
    tokio::spawn(ownership::keep_registration_fresh(
        registry,
        state_id,
        shutdown.clone(),
    ));
    ctx.sink.resume();
    Ok(Started {
        ctx,
        admin,
        engine,
        sink_handle,
        stop_sink,
    })
}

/// Brings the sink schema up to date and makes sure the publication covers the
/// source tables (row-filtered to the shard's leads when sharded).
pub(crate) async fn prepare_sink_and_publication(
    settings: &Settings,
    admin: &tokio_postgres::Client,
    sink: &Sink,
) -> Result<(), PipelineError> {
    sink.migrate().await?;
    admin::ensure_publication(
        admin,
        &settings.publication,
        &settings.tables,
        settings.shard,
    )
    .await?;
    Ok(())
}

/// The state belongs to one Postgres cluster: a different system identifier means a
/// failover or a wrong URL, and the slot's positions mean nothing here.
fn check_system(store: &Store, system_id: &str) -> Result<(), PipelineError> {
    match store.get_meta::<String>(meta::SYSTEM_ID)? {
        Some(expected) if expected != system_id => Err(SourceError::SystemChanged {
            expected,
            found: system_id.to_string(),
        }
        .into()),
        Some(_) => Ok(()),
        None => Ok(store.put_meta(meta::SYSTEM_ID, &system_id.to_string())?),
    }
}

/// Makes sure the slot exists and may be resumed: creates it with an initial load on
/// a fresh start, refuses a slot that is lost or ahead of the durable state, and
/// never touches a slot this state did not create (see `ownership`).
///
/// Before it creates, resumes or waits for a slot, the daemon registers as the
/// sink's writer (`sink::registry`); returns this state's id.
async fn prepare_slot(
    ctx: &Arc<Context>,
    admin: &tokio_postgres::Client,
    registry: &tokio_postgres::Client,
    options: &EngineOptions,
) -> Result<String, PipelineError> {
    let slot = &ctx.settings.slot;
    let loaded = ctx
        .store
        .get_meta::<bool>(meta::INITIAL_LOAD_DONE)?
        .unwrap_or(false);
    let state_id = ownership::state_id(&ctx.store)?;
    let mut registered = false;
    loop {
        let state = admin::slot_state(admin, slot).await?;
        let Some(state) = state else {
            if loaded {
                return Err(SourceError::SlotMissing {
                    slot: slot.clone(),
                    state_dir: ctx.settings.state_dir().display().to_string(),
                    durable: ctx.store.applied_lsn()?,
                }
                .into());
            }
            ownership::register_writer(&ctx.settings, registry, &state_id, false).await?;
            initial_load::run(ctx, options).await?;
            return Ok(state_id);
        };
        let own_db = &ctx.params.dbname;
        if let Some(other) = state.database.as_ref().filter(|d| *d != own_db) {
            return Err(SourceError::SlotOtherDatabase {
                slot: slot.clone(),
                database: other.clone(),
            }
            .into());
        }
        ownership::check_found(
            &ctx.store,
            slot,
            own_db,
            ctx.settings.state_dir(),
            loaded,
            &state,
        )?;
        if !registered {
            ownership::register_writer(&ctx.settings, registry, &state_id, false).await?;
            registered = true;
        }
        if let Some(pid) = state.active_pid {
            // One writer per slot: the same state elsewhere (a restarted pod on the
            // same volume, a rolling update) waits.
            tracing::warn!(slot, pid, "slot is in use by another connection; waiting");
            if !shutdown::sleep_unless_cancelled(&ctx.shutdown, Duration::from_secs(5)).await {
                return Err(EngineError::Interrupted.into());
            }
            continue;
        }
        if !loaded {
            // This state's own slot, left by an interrupted initial load (or a
            // crash between recording the intent and creating it): start over.
            tracing::warn!(
                slot,
                "this state's slot exists but its initial load did not finish: starting it over"
            );
            admin::drop_slot(admin, slot).await?;
            continue;
        }
        if let Some(plugin) = state.plugin.filter(|p| p != "pgoutput") {
            return Err(SourceError::SlotPlugin {
                slot: slot.clone(),
                plugin,
            }
            .into());
        }
        if state.wal_status.as_deref() == Some("lost") {
            return Err(SourceError::SlotLost { slot: slot.clone() }.into());
        }
        let durable = ctx.store.applied_lsn()?;
        if let Some(confirmed) = state.confirmed_flush_lsn.filter(|c| *c > durable) {
            return Err(SourceError::SlotAhead {
                slot: slot.clone(),
                slot_lsn: confirmed,
                durable,
            }
            .into());
        }
        return Ok(state_id);
    }
}
