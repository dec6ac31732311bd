//! The writers of a sink (SPEC 5, "Ownership"): every daemon and every repair
//! command that writes `"ResponseTimingEvent"` registers in `replytime_writers`
//! (slot, shard `k/N`, state id, host, last seen). Claims that overlap refuse.
//!
//! ```text
//!  register(me) ── advisory lock ──▶ other writers (state id ≠ mine) whose leads
//!                                    overlap mine? ── yes ──▶ refuse, naming them
//!                                                   └─ no ──▶ upsert my row
//! ```
//!
//! Leads overlap between two unsharded writers, an unsharded and a sharded one,
//! two writers of one shard, and shards of different N (their hash classes
//! intersect). The same state id is the same writer: a restart after kill -9 finds
//! its own row and goes on. A writer that is gone for good is removed explicitly
//! (`replytime release-writer`), never by a timeout: a stopped owner is still the
//! owner of its rows.

use tokio_postgres::Client;

use super::SinkError;
use crate::shard::Shard;

/// Schema of the registry (sink schema version 2).
pub(super) const REGISTRY_SQL: &str = "CREATE TABLE IF NOT EXISTS replytime_writers (
    state_id      text PRIMARY KEY,
    slot          text NOT NULL,
    shard_index   integer,
    shard_count   integer,
    host          text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now()
)";

/// Serializes registrations of concurrent writers ("rtwriter" in ASCII).
const REGISTRY_LOCK_KEY: i64 = 0x7274_7772_6974_6572;

/// One registered writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Writer {
    pub state_id: String,
    pub slot: String,
    pub shard: Option<Shard>,
    pub host: String,
    /// `last_seen` as text (UTC), for messages.
    pub last_seen: String,
}

impl Writer {
    pub(crate) fn describe(&self) -> String {
        format!(
            "writer of slot {:?} ({}), state id {}, host {:?}, last seen {}",
            self.slot,
            self.shard
                .map_or("unsharded".to_string(), |s| format!("shard {s}")),
            self.state_id,
            self.host,
            self.last_seen
        )
    }
}

/// Whether two writers' leads overlap.
pub(crate) fn claims_overlap(a: Option<Shard>, b: Option<Shard>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.count != b.count || a.index == b.index,
        _ => true,
    }
}

/// This machine's name, for the registry (best effort).
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Every registered writer.
pub(crate) async fn writers(client: &Client) -> Result<Vec<Writer>, SinkError> {
    let rows = client
        .query(
            "SELECT state_id, slot, shard_index, shard_count, host, \
                    to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' \
             FROM replytime_writers ORDER BY registered_at, state_id",
            &[],
        )
        .await
        .map_err(SinkError::postgres("read of replytime_writers"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (index, count): (Option<i32>, Option<i32>) = (r.get(2), r.get(3));
            Writer {
                state_id: r.get(0),
                slot: r.get(1),
                shard: index.zip(count).map(|(index, count)| Shard {
                    index: index as u32,
                    count: count as u32,
                }),
                host: r.get(4),
                last_seen: r.get(5),
            }
        })
        .collect())
}

/// The other writers whose claims overlap `me`'s.
pub(crate) fn conflicts<'a>(me: &Writer, all: &'a [Writer]) -> Vec<&'a Writer> {
    all.iter()
        .filter(|w| w.state_id != me.state_id && claims_overlap(w.shard, me.shard))
        .collect()
}

/// Registers `me` unless another writer's claim overlaps; `take_over_slot`
/// removes first the registrations of `me`'s own slot and shard (an explicit
/// `backfill --recreate-slot` replaces the writer whose state was lost).
pub(crate) async fn register(
    client: &Client,
    me: &Writer,
    take_over_slot: bool,
) -> Result<Vec<Writer>, SinkError> {
    super::migrate::in_transaction(
        client,
        "the writer registration",
        register_in_transaction(client, me, take_over_slot),
    )
    .await
}

async fn register_in_transaction(
    client: &Client,
    me: &Writer,
    take_over_slot: bool,
) -> Result<Vec<Writer>, SinkError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK_KEY])
        .await
        .map_err(SinkError::postgres("lock of replytime_writers"))?;
    let all = writers(client).await?;
    let mut replaced = Vec::new();
    let mut refused = Vec::new();
    for other in conflicts(me, &all) {
        if take_over_slot && other.slot == me.slot && other.shard == me.shard {
            replaced.push(other.clone());
        } else {
            refused.push(other.describe());
        }
    }
    if !refused.is_empty() {
        return Err(SinkError::WriterConflict {
            me: me.describe(),
            others: refused.join("; "),
        });
    }
    for old in &replaced {
        release(client, &old.state_id).await?;
    }
    let (index, count) = match me.shard {
        Some(s) => (Some(s.index as i32), Some(s.count as i32)),
        None => (None, None),
    };
    client
        .execute(
            "INSERT INTO replytime_writers (state_id, slot, shard_index, shard_count, host) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (state_id) DO UPDATE SET slot = EXCLUDED.slot, \
                shard_index = EXCLUDED.shard_index, shard_count = EXCLUDED.shard_count, \
                host = EXCLUDED.host, last_seen = now()",
            &[&me.state_id, &me.slot, &index, &count, &me.host],
        )
        .await
        .map_err(SinkError::postgres("registration in replytime_writers"))?;
    Ok(replaced)
}

/// Marks `state_id` as seen now.
pub(crate) async fn touch(client: &Client, state_id: &str) -> Result<(), SinkError> {
    client
        .execute(
            "UPDATE replytime_writers SET last_seen = now() WHERE state_id = $1",
            &[&state_id],
        )
        .await
        .map_err(SinkError::postgres("update of replytime_writers"))?;
    Ok(())
}

/// Removes a registration; returns whether there was one.
pub(crate) async fn release(client: &Client, state_id: &str) -> Result<bool, SinkError> {
    let n = client
        .execute(
            "DELETE FROM replytime_writers WHERE state_id = $1",
            &[&state_id],
        )
        .await
        .map_err(SinkError::postgres("delete from replytime_writers"))?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, count: u32) -> Option<Shard> {
        Some(Shard { index, count })
    }

    #[test]
    fn overlapping_claims() {
        assert!(claims_overlap(None, None));
        assert!(claims_overlap(None, shard(0, 2)));
        assert!(claims_overlap(shard(1, 2), None));
        assert!(claims_overlap(shard(1, 2), shard(1, 2)));
        assert!(claims_overlap(shard(0, 2), shard(0, 3)));
        assert!(!claims_overlap(shard(0, 2), shard(1, 2)));
    }
}
