//! `replytime status`: the slot as the server sees it and the state as RocksDB holds
//! it, with a verdict. Exits non-zero when unhealthy, so it works as a probe.

use std::process::ExitCode;

use serde::Serialize;

use crate::config::Settings;
use crate::lsn::Lsn;
use crate::pgconn::TlsFacts;
use crate::store::StateSummary;

#[derive(Debug, Default, Serialize)]
pub(crate) struct Status {
    pub slot: String,
    /// `None` when the source could not be asked (see `problems`).
    pub slot_exists: Option<bool>,
    pub wal_status: Option<String>,
    pub active: bool,
    pub confirmed_lsn: Option<Lsn>,
    pub received_lsn: Option<Lsn>,
    pub current_lsn: Option<Lsn>,
    pub durable_lsn: Option<Lsn>,
    pub sink_lsn: Option<Lsn>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub retained_wal_bytes: Option<i64>,
    pub state: Option<StateSummary>,
    /// The event log's retention (replay reaches back this far at most).
    pub event_log_retention_hours: u64,
    pub event_log_max_bytes: u64,
    /// Whether each connection (admin, sink, replication) is encrypted, as
    /// `pg_stat_ssl` shows it; the replication connection's only while a session
    /// holds the slot.
    pub connections: Vec<ConnectionTls>,
    pub problems: Vec<String>,
}

/// One connection's TLS facts.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectionTls {
    pub connection: &'static str,
    #[serde(flatten)]
    pub tls: TlsFacts,
}

pub(crate) async fn collect(settings: &Settings) -> Status {
    let mut status = Status {
        slot: settings.slot.clone(),
        event_log_retention_hours: settings.event_log_retention_hours,
        event_log_max_bytes: settings.event_log_max_bytes,
        ..Status::default()
    };
    match StateSummary::read(settings.state_dir()) {
        Ok(state) => {
            status.durable_lsn = Some(state.applied_lsn);
            status.state = Some(state);
        }
        Err(e) => status.problems.push(format!("state: {e}")),
    }
    match crate::pgconn::connect(settings.source_url(), "replytime-status").await {
        Ok(client) => {
            source_status(&client, settings, &mut status).await;
            source_tls(&client, settings, &mut status).await;
        }
        Err(e) => status.problems.push(format!("source: {e}")),
    }
    let sink = crate::sink::Sink::connect(settings.sink_url())
        .await
        .inspect_err(|e| status.problems.push(format!("sink: {e}")));
    if let Ok(sink) = sink {
        status.sink_lsn = sink.progress(&settings.slot).await.ok().flatten();
        if let Ok(target) = crate::pgconn::parse_url(settings.sink_url()) {
            match sink.tls_facts(&target).await {
                Ok(tls) => status.connections.push(ConnectionTls {
                    connection: "sink",
                    tls,
                }),
                Err(e) => status.problems.push(format!("sink: {e}")),
            }
        }
    }
    if status.received_lsn.is_none() && status.active {
        // `pg_stat_replication` hides what a walsender sent from roles without
        // pg_read_all_stats (grants.sql's role has none): ask the daemon instead.
        status.received_lsn = daemon_received_lsn(settings.metrics_addr).await;
    }
    judge(&mut status);
    status
}

/// `replytime_lsn{kind="received"}` from the running daemon's `/metrics`, if it
/// answers within a second. A plain HTTP/1.0 GET: the endpoint is replytime's own.
async fn daemon_received_lsn(addr: std::net::SocketAddr) -> Option<Lsn> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: replytime\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        body.lines().find_map(|line| {
            let value = line.strip_prefix("replytime_lsn{kind=\"received\"} ")?;
            let value: f64 = value.trim().parse().ok()?;
            (value > 0.0).then_some(Lsn(value as u64))
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), fetch)
        .await
        .ok()
        .flatten()
}

async fn source_status(client: &tokio_postgres::Client, settings: &Settings, status: &mut Status) {
    let row = client
        .query_opt(
            "SELECT s.wal_status, s.active, s.confirmed_flush_lsn::text, r.sent_lsn::text, \
                    pg_current_wal_insert_lsn()::text, \
                    coalesce(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn), 0)::int8, \
                    extract(epoch from r.replay_lag)::float8 \
             FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_name = $1",
            &[&settings.slot],
        )
        .await;
    let parse = |t: Option<String>| t.and_then(|t| t.parse::<Lsn>().ok());
    match row {
        Ok(Some(r)) => {
            status.slot_exists = Some(true);
            status.wal_status = r.get(0);
            status.active = r.get::<_, Option<bool>>(1).unwrap_or(false);
            status.confirmed_lsn = parse(r.get(2));
            status.received_lsn = parse(r.get(3));
            status.current_lsn = parse(r.get(4));
            status.retained_wal_bytes = r.get(5);
            status.lag_seconds = r.get::<_, Option<f64>>(6).or(Some(0.0));
            if let (Some(cur), Some(conf)) = (status.current_lsn, status.confirmed_lsn) {
                status.lag_bytes = Some(cur.saturating_bytes_since(conf));
            }
        }
        Ok(None) => status.slot_exists = Some(false),
        Err(e) => status.problems.push(format!("source: {e}")),
    }
}

/// The admin connection's TLS and the replication connection's (the walsender
/// holding the slot).
async fn source_tls(client: &tokio_postgres::Client, settings: &Settings, status: &mut Status) {
    let Ok(target) = crate::pgconn::parse_url(settings.source_url()) else {
        return;
    };
    match crate::pgconn::tls_facts(client, &target).await {
        Ok(tls) => status.connections.push(ConnectionTls {
            connection: "admin",
            tls,
        }),
        Err(e) => status.problems.push(format!("source: {e}")),
    }
    match crate::pgconn::replication_tls_facts(client, &settings.slot, &target).await {
        Ok(Some(tls)) => status.connections.push(ConnectionTls {
            connection: "replication",
            tls,
        }),
        Ok(None) => {}
        Err(e) => status.problems.push(format!("source: {e}")),
    }
}

fn judge(status: &mut Status) {
    // Unknown (the source could not be asked) is not "missing": the connection
    // problem is listed already.
    if status.slot_exists == Some(false) {
        status
            .problems
            .push(format!("slot {:?} does not exist", status.slot));
    }
    if status.wal_status.as_deref() == Some("lost") {
        status.problems.push("slot is invalidated (wal_status = lost): run `replytime backfill` (the daemon stopped)".into());
    }
    if let (Some(confirmed), Some(durable)) = (status.confirmed_lsn, status.durable_lsn)
        && confirmed > durable
    {
        status.problems.push(format!(
            "slot confirmed {confirmed} is ahead of the durable state {durable}"
        ));
    }
    if status.slot_exists == Some(true) && !status.active {
        status
            .problems
            .push("no replytime is streaming from the slot".into());
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into())
}

pub(crate) async fn print(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let status = collect(settings).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("slot                 {}", status.slot);
        println!("wal_status           {}", opt(&status.wal_status));
        println!("active               {}", status.active);
        println!("confirmed_lsn        {}", opt(&status.confirmed_lsn));
        println!("durable_lsn          {}", opt(&status.durable_lsn));
        println!("received_lsn         {}", opt(&status.received_lsn));
        println!("sink_lsn             {}", opt(&status.sink_lsn));
        println!("current_wal_lsn      {}", opt(&status.current_lsn));
        println!("lag_bytes            {}", opt(&status.lag_bytes));
        println!("lag_seconds          {}", opt(&status.lag_seconds));
        println!("retained_wal_bytes   {}", opt(&status.retained_wal_bytes));
        if let Some(state) = &status.state {
            println!("outbox_entries       {}", state.outbox_entries);
            println!(
                "held_anchors         {} (lead row missing {}, lead without clientId {})",
                state.held_anchors,
                state.held_anchors.saturating_sub(state.held_no_client),
                state.held_no_client
            );
            println!("quarantined_rows     {}", state.quarantined);
            println!("state_bytes          {}", state.size_bytes);
            println!("event_log_oldest_lsn {}", opt(&state.oldest_event_lsn));
        }
        println!(
            "event_log_retention  {} h, {} bytes",
            status.event_log_retention_hours, status.event_log_max_bytes
        );
        for c in &status.connections {
            let tls = &c.tls;
            let shown = if tls.ssl {
                format!(
                    "encrypted {} {}, server checked: {}",
                    opt(&tls.version),
                    opt(&tls.cipher),
                    tls.server_check
                )
            } else {
                "not encrypted".to_string()
            };
            println!("{:<21}{shown}", format!("tls_{}", c.connection));
        }
        for p in &status.problems {
            println!("problem              {p}");
        }
    }
    Ok(if status.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `quarantine`: lists the rows kept aside, newest first, at most `limit`.
pub(crate) fn print_quarantine(settings: &Settings, limit: usize) -> anyhow::Result<ExitCode> {
    let store = crate::pipeline::open_store(settings)?;
    for record in store.quarantined(limit)? {
        println!(
            "{}\t{}\t{}\t{}",
            record.commit_lsn,
            record.table,
            record.row_id.as_deref().unwrap_or("-"),
            record.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}
