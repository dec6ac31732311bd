//! What a reader must know before trusting a window report's numbers: a
//! `--client` that matches nothing (a typo gives an all-zero report otherwise)
//! and a window without anchors (with where the anchors are instead).

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::sections::WindowParams;

/// Warnings for the window and client of a report, in the order a reader
/// should fix them.
pub(super) async fn window_warnings(
    client: &Client,
    params: &WindowParams,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut warnings = Vec::new();
    if let Some(id) = &params.client
        && !client_known(client, id).await?
    {
        warnings.push(unknown_client(id, &similar_clients(client, id).await?));
        return Ok(warnings);
    }
    if anchors_in_window(client, params).await? == 0 {
        warnings.push(empty_window(params, anchor_span(client, params).await?));
    }
    Ok(warnings)
}

/// Whether any lead or anchor has this client id.
async fn client_known(client: &Client, id: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM replytime_source_leads() WHERE \"clientId\" = $1) \
                 OR EXISTS (SELECT 1 FROM \"ResponseTimingEvent\" WHERE \"clientId\" = $1)",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

/// Client ids equal to `id` but for case and surrounding spaces (at most 3).
async fn similar_clients(client: &Client, id: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT \"clientId\" FROM replytime_source_leads() \
             WHERE lower(btrim(\"clientId\")) = lower(btrim($1)) \
             ORDER BY 1 LIMIT 3",
            &[&id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The number of anchors inside the window.
async fn anchors_in_window(
    client: &Client,
    params: &WindowParams,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(*) FROM replytime_window_events($1, $2, $3)",
            &[&params.from, &params.to, &params.client],
        )
        .await?;
    Ok(row.get(0))
}

/// The first and last `inboundSentAt` of the client's (or everyone's) anchors;
/// each branch reads the end of an index.
async fn anchor_span(
    client: &Client,
    params: &WindowParams,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, tokio_postgres::Error> {
    let row = match &params.client {
        Some(id) => {
            client
                .query_one(
                    "SELECT min(\"inboundSentAt\"), max(\"inboundSentAt\") \
                     FROM \"ResponseTimingEvent\" WHERE \"clientId\" = $1",
                    &[id],
                )
                .await?
        }
        None => {
            client
                .query_one(
                    "SELECT min(\"inboundSentAt\"), max(\"inboundSentAt\") FROM \"ResponseTimingEvent\"",
                    &[],
                )
                .await?
        }
    };
    Ok(match (row.get(0), row.get(1)) {
        (Some(first), Some(last)) => Some((first, last)),
        _ => None,
    })
}

fn unknown_client(id: &str, similar: &[String]) -> String {
    let mut warning = format!(
        "client {id:?} has no leads and no anchors: every count below is zero. Check --client (ids are compared exactly)"
    );
    if !similar.is_empty() {
        let quoted: Vec<String> = similar.iter().map(|s| format!("{s:?}")).collect();
        warning.push_str(&format!("; did you mean {}?", quoted.join(" or ")));
    }
    warning
}

fn empty_window(params: &WindowParams, span: Option<(DateTime<Utc>, DateTime<Utc>)>) -> String {
    let whose = match &params.client {
        Some(id) => format!(" of client {id:?}"),
        None => String::new(),
    };
    let mut warning = format!(
        "no anchors{whose} in the window [{}, {}): every count below is zero",
        params.from.to_rfc3339(),
        params.to.to_rfc3339()
    );
    match span {
        Some((first, last)) => warning.push_str(&format!(
            "; the anchors{whose} run from {} to {}",
            first.format("%Y-%m-%d"),
            last.format("%Y-%m-%d")
        )),
        None => warning.push_str(&format!(
            "; there are no anchors{whose} at all (is the daemon running, or the sink another database?)"
        )),
    }
    warning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_clients_suggest_near_misses() {
        let w = unknown_client("acme ", &["Acme".into()]);
        assert!(
            w.starts_with("client \"acme \" has no leads and no anchors"),
            "{w}"
        );
        assert!(w.ends_with("did you mean \"Acme\"?"), "{w}");
        assert!(!unknown_client("x", &[]).contains("did you mean"));
    }
}
