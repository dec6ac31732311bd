//! Sink rows that are no anchor in the state ("strays": written by hand, or left
//! by a restore of an older backup) and their removal. The initial load, `rebuild`
//! and `backfill` all prune them.

use crate::change::Timestamp;
use crate::sink::Sink;
use crate::store::{Cf, Store};

/// Deletes the sink rows whose inbound message is not an anchor in the state (of
/// those sent at or after `since`), in keyset pages over the unique index; returns
/// how many (with `dry_run`, how many it would delete).
pub(crate) async fn prune_strays(
    store: &Store,
    sink: &Sink,
    since: Option<Timestamp>,
    dry_run: bool,
) -> anyhow::Result<u64> {
    const PAGE: i64 = 10_000;
    let client = sink.client();
    let since = since.and_then(Timestamp::to_chrono);
    // A sharded daemon only looks at (and deletes) rows of its own leads.
    let owned = sink.owns(r#""leadId""#);
    let page = client
        .prepare(&format!(
            r#"SELECT "inboundMessageId",
                      "inboundSentAt" >= coalesce($3::timestamptz, '-infinity') AND {owned}
               FROM "ResponseTimingEvent"
               WHERE "inboundMessageId" > $1 ORDER BY "inboundMessageId" LIMIT $2"#
        ))
        .await?;
    let delete = client
        .prepare(&format!(
            r#"DELETE FROM "ResponseTimingEvent" WHERE "inboundMessageId" = ANY($1) AND {owned}"#
        ))
        .await?;
    let mut after = String::new();
    let mut pruned = 0;
    loop {
        let rows = client.query(&page, &[&after, &PAGE, &since]).await?;
        let Some(last) = rows.last().map(|r| r.get::<_, String>(0)) else {
            break;
        };
        let tx = store.begin();
        let mut strays = Vec::new();
        for row in &rows {
            let (id, in_window): (String, bool) = (row.get(0), row.get(1));
            if in_window && tx.get(Cf::Anchors, id.as_bytes())?.is_none() {
                strays.push(id);
            }
        }
        if dry_run {
            pruned += strays.len() as u64;
        } else if !strays.is_empty() {
            pruned += client.execute(&delete, &[&strays]).await?;
        }
        after = last;
    }
    Ok(pruned)
}
