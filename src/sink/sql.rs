//! The sink's SQL, generated once from the column list so the UNNEST arrays, the
//! insert list, the update list and the "did anything change" test cannot drift
//! apart.

/// The sink table.
pub(super) const TABLE: &str = "\"ResponseTimingEvent\"";

/// The derived columns of `"ResponseTimingEvent"` in `TimingRow` order, with their
/// Postgres types (as `format_type` prints them). Everything but `id` and the
/// bookkeeping columns: what "an upsert whose derived columns equal the stored
/// ones writes nothing" compares.
pub(super) const DERIVED_COLUMNS: [(&str, &str); 21] = [
    ("clientId", TEXT),
    ("leadId", TEXT),
    ("channel", TEXT),
    ("inboundMessageId", TEXT),
    ("inboundSentAt", TIMESTAMPTZ),
    ("setterResponseMessageId", TEXT),
    ("setterResponseSentAt", TIMESTAMPTZ),
    ("setterSentByUserId", TEXT),
    ("setterResponseMs", BIGINT),
    ("aiDraftId", TEXT),
    ("aiResponseMessageId", TEXT),
    ("aiResponseSentAt", TIMESTAMPTZ),
    ("aiResponseMs", BIGINT),
    ("aiDelayMinSeconds", INTEGER),
    ("aiDelayMaxSeconds", INTEGER),
    ("aiChosenDelaySeconds", INTEGER),
    ("aiActualDelaySeconds", BIGINT),
    ("aiScheduledRunAt", TIMESTAMPTZ),
    ("aiBackgroundJobId", TEXT),
    ("aiJobStartedAt", TIMESTAMPTZ),
    ("aiJobFinishedAt", TIMESTAMPTZ),
];

/// Every column the sink needs, derived and bookkeeping, with its type.
pub(super) fn all_columns() -> Vec<(&'static str, &'static str)> {
    let mut columns = vec![("id", "uuid")];
    columns.extend(DERIVED_COLUMNS);
    columns.extend([
        ("createdAt", TIMESTAMPTZ),
        ("updatedAt", TIMESTAMPTZ),
        ("sourceLsn", "pg_lsn"),
    ]);
    columns
}

const TEXT: &str = "text";
const TIMESTAMPTZ: &str = "timestamp with time zone";
const BIGINT: &str = "bigint";
const INTEGER: &str = "integer";

/// The conflict key: never in the SET list.
const KEY: &str = "inboundMessageId";

/// Upsert of N rows given as one array per column: `id`, the derived columns in
/// order, then `sourceLsn`. A conflicting row is updated only when a derived column
/// differs, so an equal upsert leaves `updatedAt` and `sourceLsn` alone and is not
/// counted in the command's row count.
/// `may_overwrite`: SQL over the stored row `t` and the incoming `EXCLUDED` that is
/// true when this write may replace the stored content ([`lsn_order`] or a
/// shard's ownership).
pub(super) fn upsert(may_overwrite: &str) -> String {
    let insert_columns: Vec<(&str, &str)> = std::iter::once(("id", "uuid"))
        .chain(DERIVED_COLUMNS)
        .chain(std::iter::once(("sourceLsn", "pg_lsn")))
        .collect();
    let names = join(insert_columns.iter().map(|(name, _)| quote(name)));
    let arrays = join(
        insert_columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{}[]", i + 1, array_element_type(ty))),
    );
    let updated = DERIVED_COLUMNS.iter().filter(|(name, _)| *name != KEY);
    let set = join(
        updated
            .clone()
            .map(|(name, _)| format!("{0} = EXCLUDED.{0}", quote(name))),
    );
    let stored = join(
        updated
            .clone()
            .map(|(name, _)| format!("t.{}", quote(name))),
    );
    let incoming = join(updated.map(|(name, _)| format!("EXCLUDED.{}", quote(name))));
    format!(
        "INSERT INTO {TABLE} AS t ({names}) SELECT * FROM UNNEST({arrays}) \
         ON CONFLICT (\"{KEY}\") DO UPDATE SET {set}, \
         \"updatedAt\" = now(), \"sourceLsn\" = EXCLUDED.\"sourceLsn\" \
         WHERE ({stored}) IS DISTINCT FROM ({incoming}) AND {may_overwrite}"
    )
}

/// The streaming rule (SPEC 9): an upsert replaces a stored row whose `sourceLsn`
/// is not after its own. Commit LSNs are one order across shards, so when a lead
/// merge moves an anchor to another shard, the new shard's upsert and the old
/// shard's delete (same commit LSN) settle the same way in either order.
pub(super) const UPSERT_IN_LSN_ORDER: &str =
    "coalesce(t.\"sourceLsn\", '0/0'::pg_lsn) <= EXCLUDED.\"sourceLsn\"";

/// The streaming delete: `$1` inbound message ids, `$2` the end LSN of the source
/// transaction of each delete; a row goes only if it was last written before.
pub(super) fn delete_in_lsn_order() -> String {
    format!(
        "DELETE FROM {TABLE} AS t USING unnest($1::text[], $2::pg_lsn[]) AS d(id, lsn) \
         WHERE t.\"{KEY}\" = d.id AND coalesce(t.\"sourceLsn\", '0/0'::pg_lsn) < d.lsn"
    )
}

/// The repair delete (`replay`, `rebuild`, `backfill`): the rows of an array of
/// inbound message ids, whatever their LSN, of those `owned` (SQL over
/// `"leadId"`: a shard repairs only its own leads' rows).
pub(super) fn delete(owned: &str) -> String {
    format!("DELETE FROM {TABLE} WHERE \"{KEY}\" = ANY($1::text[]) AND {owned}")
}

/// The progress row of a slot; it never moves backwards.
pub(super) const SAVE_PROGRESS: &str = "INSERT INTO replytime_progress (slot, lsn) \
     VALUES ($1, $2::pg_lsn) \
     ON CONFLICT (slot) DO UPDATE \
     SET lsn = GREATEST(replytime_progress.lsn, EXCLUDED.lsn), updated_at = now()";

pub(super) const READ_PROGRESS: &str = "SELECT lsn FROM replytime_progress WHERE slot = $1";

fn array_element_type(format_type: &str) -> &str {
    match format_type {
        TIMESTAMPTZ => "timestamptz",
        other => other,
    }
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_has_one_array_per_inserted_column_and_skips_the_key_in_set() {
        let sql = upsert("true");
        assert!(sql.contains("$1::uuid[]"));
        assert!(sql.contains("$6::timestamptz[]"));
        assert!(sql.contains("$23::pg_lsn[]"));
        assert!(!sql.contains("$24"));
        assert!(!sql.contains("\"inboundMessageId\" = EXCLUDED"));
        assert!(sql.contains("\"clientId\" = EXCLUDED.\"clientId\""));
        assert!(sql.contains("IS DISTINCT FROM (EXCLUDED.\"clientId\""));
    }

    #[test]
    fn the_streaming_rule_orders_writes_by_lsn() {
        let sql = upsert(UPSERT_IN_LSN_ORDER);
        assert!(
            sql.ends_with("AND coalesce(t.\"sourceLsn\", '0/0'::pg_lsn) <= EXCLUDED.\"sourceLsn\"")
        );
        let sql = delete_in_lsn_order();
        assert!(sql.contains("unnest($1::text[], $2::pg_lsn[])"));
        assert!(sql.ends_with("< d.lsn"));
    }

    #[test]
    fn a_sharded_sink_touches_only_its_own_leads_rows() {
        let shard = crate::shard::Shard { index: 1, count: 4 };
        let sql = upsert(&shard.predicate("t.\"leadId\""));
        assert!(sql.ends_with("AND ((hashtext(t.\"leadId\") & 2147483647) % 4 = 1)"));
        let sql = delete(&shard.predicate("\"leadId\""));
        assert!(sql.ends_with("AND ((hashtext(\"leadId\") & 2147483647) % 4 = 1)"));
    }
}
