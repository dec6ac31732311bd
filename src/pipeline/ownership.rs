//! Slot ownership (SPEC 5, "Ownership"): replytime never drops, recreates or
//! advances a replication slot that its state did not create.
//!
//! ```text
//!  state id (random, meta) ──▶ intent: SlotOwner{slot, plugin, database, system id,
//!                               state id} written and synced ──▶ create the slot
//!  start: slot exists ─┬─ recorded by this state ──▶ resume (or, load unfinished:
//!                      │                              drop and recreate it)
//!                      └─ anything else ──────────▶ refuse at once, naming
//!                                                    `backfill --recreate-slot`
//! ```
//!
//! The intent is written before the slot exists, so a crash between the two leaves
//! a state that recognizes the slot as its own and may drop and recreate it while
//! it is inactive. A state directory that is empty, new or another's finds no
//! record of the slot and never touches it.

use serde::{Deserialize, Serialize};

use crate::sink::{SinkError, registry};
use crate::store::{Store, StoreError, meta};

/// The slot a state created, as recorded before it was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotOwner {
    pub slot: String,
    pub plugin: String,
    pub database: String,
    pub system_id: String,
    pub state_id: String,
}

/// A slot this state may not touch.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error(
        "replication slot {slot:?} exists (plugin {plugin}, database {database}{active}) but the state in {state_dir} (state id {state_id}) did not create it: replytime never drops, recreates or advances a slot it did not create, and left it untouched. If this instance is meant to replace the slot's owner (its state was lost), stop the owner and run `replytime backfill --recreate-slot`: it drops slot {slot:?} and rebuilds this state and the sink rows from the tables, keeping the delay bounds the sink recorded. Otherwise give this instance a slot of its own (REPLYTIME_SLOT)"
    )]
    NotOurs {
        slot: String,
        plugin: String,
        database: String,
        active: String,
        state_dir: String,
        state_id: String,
    },
}

/// This state's id, made (random, synced) on first use.
pub(crate) fn state_id(store: &Store) -> Result<String, StoreError> {
    if let Some(id) = store.get_meta::<String>(meta::STATE_ID)? {
        return Ok(id);
    }
    let id = random_id();
    store.put_meta(meta::STATE_ID, &id)?;
    store.sync()?;
    Ok(id)
}

/// 128 random bits as hex, from the kernel (no extra dependency for one id).
fn random_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Not cryptographic, only unique: time and process id.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The slot this state recorded as its own, if any.
pub(crate) fn recorded(store: &Store) -> Result<Option<SlotOwner>, StoreError> {
    store.get_meta::<SlotOwner>(meta::SLOT_OWNER)
}

/// Records, durably, that this state is about to create `slot`.
pub(crate) fn record_intent(store: &Store, owner: &SlotOwner) -> Result<(), StoreError> {
    store.put_meta(meta::SLOT_OWNER, owner)?;
    store.sync()
}

/// Whether `owner` (this state's record) names the slot found on the server.
pub(crate) fn is_ours(
    owner: Option<&SlotOwner>,
    slot: &str,
    database: Option<&str>,
    system_id: &str,
    state_id: &str,
) -> bool {
    owner.is_some_and(|o| {
        o.slot == slot
            && database.is_none_or(|d| d == o.database)
            && o.system_id == system_id
            && o.state_id == state_id
    })
}

/// Refuses a slot found on the server that this state did not create. A state of
/// an earlier release that finished its load from a pgoutput slot (before slots
/// were recorded) adopts it once.
pub(crate) fn check_found(
    store: &Store,
    slot: &str,
    database: &str,
    state_dir: &std::path::Path,
    loaded: bool,
    found: &crate::source::admin::SlotState,
) -> Result<(), super::PipelineError> {
    let state_id = state_id(store)?;
    let system_id = store
        .get_meta::<String>(meta::SYSTEM_ID)?
        .unwrap_or_default();
    let mut owner = recorded(store)?;
    if owner.is_none() && loaded && found.plugin.as_deref() == Some("pgoutput") {
        let adopted = SlotOwner {
            slot: slot.to_string(),
            plugin: "pgoutput".into(),
            database: database.to_string(),
            system_id: system_id.clone(),
            state_id: state_id.clone(),
        };
        record_intent(store, &adopted)?;
        tracing::info!(slot, "recorded the slot this state streams from as its own");
        owner = Some(adopted);
    }
    let database = found.database.as_deref();
    if is_ours(owner.as_ref(), slot, database, &system_id, &state_id) {
        return Ok(());
    }
    Err(super::PipelineError::Ownership(Box::new(
        OwnershipError::NotOurs {
            slot: slot.to_string(),
            plugin: found.plugin.clone().unwrap_or_else(|| "none".into()),
            database: database.unwrap_or("none").to_string(),
            active: found
                .active_pid
                .map(|pid| format!(", in use by process {pid}"))
                .unwrap_or_default(),
            state_dir: state_dir.display().to_string(),
            state_id,
        },
    )))
}

/// This instance as a writer of the sink.
pub(crate) fn writer(settings: &crate::config::Settings, state_id: &str) -> registry::Writer {
    registry::Writer {
        state_id: state_id.to_string(),
        slot: settings.slot.clone(),
        shard: settings.shard,
        host: registry::host_name(),
        last_seen: "now".into(),
    }
}

/// Registers this instance as a writer of the sink (refused when another writer's
/// claim overlaps); with `take_over_slot`, replaces the registration of the same
/// slot and shard. Returns the registrations it replaced.
pub(crate) async fn register_writer(
    settings: &crate::config::Settings,
    sink: &tokio_postgres::Client,
    state_id: &str,
    take_over_slot: bool,
) -> Result<Vec<registry::Writer>, SinkError> {
    let me = writer(settings, state_id);
    let replaced = registry::register(sink, &me, take_over_slot).await?;
    for old in &replaced {
        tracing::warn!(replaced = %old.describe(), "took over the sink registration of this slot");
    }
    Ok(replaced)
}

/// How often a running writer refreshes its `last_seen`.
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Refreshes this writer's `last_seen` until the connection fails (a failure only
/// ages the timestamp: the registration itself stays) or the daemon stops.
pub(crate) async fn keep_registration_fresh(
    sink: tokio_postgres::Client,
    state_id: String,
    shutdown: super::shutdown::CancellationToken,
) {
    loop {
        if !super::shutdown::sleep_unless_cancelled(&shutdown, TOUCH_EVERY).await {
            return;
        }
        if let Err(e) = registry::touch(&sink, &state_id).await {
            tracing::debug!(error = %e, "could not refresh the sink registration's last_seen");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> SlotOwner {
        SlotOwner {
            slot: "replytime".into(),
            plugin: "pgoutput".into(),
            database: "crm".into(),
            system_id: "7".into(),
            state_id: "abc".into(),
        }
    }

    #[test]
    fn only_the_recorded_slot_of_this_state_and_cluster_is_ours() {
        let o = owner();
        assert!(is_ours(Some(&o), "replytime", Some("crm"), "7", "abc"));
        assert!(!is_ours(None, "replytime", Some("crm"), "7", "abc"));
        assert!(!is_ours(Some(&o), "other", Some("crm"), "7", "abc"));
        assert!(!is_ours(Some(&o), "replytime", Some("app"), "7", "abc"));
        assert!(!is_ours(Some(&o), "replytime", Some("crm"), "8", "abc"));
        assert!(!is_ours(Some(&o), "replytime", Some("crm"), "7", "xyz"));
    }

    #[test]
    fn state_ids_are_random_and_kept() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let open = |p: &std::path::Path| Store::open(p, &Default::default()).unwrap();
        let (sa, sb) = (open(a.path()), open(b.path()));
        let id = state_id(&sa).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(state_id(&sa).unwrap(), id);
        assert_ne!(state_id(&sb).unwrap(), id);
    }
}
