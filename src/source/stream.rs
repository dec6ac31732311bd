//! The replication connection: pgwire-replication carries the bytes (transport
//! only); decoding is ours (`decode.rs`).

use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig, TlsConfig};

use super::SourceError;
use crate::lsn::Lsn;

/// Parts of a `postgres://` URL the replication connection needs.
#[derive(Clone, Debug)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    pub sslmode: String,
    pub sslrootcert: Option<String>,
}

/// Parses a libpq-style URL. `sslmode` and `sslrootcert` are read here because
/// tokio-postgres does not know the `verify-*` modes.
pub fn conn_params(url: &str) -> Result<ConnParams, SourceError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut sslmode = "prefer".to_string();
    let mut sslrootcert = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = v.to_string(),
            Some(("sslrootcert", v)) => sslrootcert = Some(v.to_string()),
            _ => rest.push(pair),
        }
    }
    let cleaned = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let config: tokio_postgres::Config = cleaned
        .parse()
        .map_err(|e| SourceError::Url(format!("{}: {e}", crate::pgconn::redact_url(url))))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let user = config
        .get_user()
        .ok_or_else(|| SourceError::Url("the source URL names no user".into()))?
        .to_string();
    Ok(ConnParams {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        password: config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
        dbname: config.get_dbname().unwrap_or(&user).to_string(),
        user,
        sslmode,
        sslrootcert,
    })
}

fn tls_config(params: &ConnParams) -> Result<TlsConfig, SourceError> {
    let ca = params.sslrootcert.as_ref().map(std::path::PathBuf::from);
    Ok(match params.sslmode.as_str() {
        "disable" | "allow" | "prefer" => TlsConfig::disabled(),
        "require" => TlsConfig::require(),
        "verify-ca" => TlsConfig::verify_ca(ca),
        "verify-full" => TlsConfig::verify_full(ca),
        other => return Err(SourceError::Url(format!("unknown sslmode {other:?}"))),
    })
}

/// Settings of one streaming session.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    pub slot: String,
    pub publication: String,
    /// Where to start reading (the server starts at its confirmed position if later).
    pub start_lsn: Lsn,
    /// What may be reported as flushed before the first confirmation.
    pub ack_lsn: Lsn,
    pub status_interval: Duration,
    pub application_name: String,
}

pub fn replication_config(
    params: &ConnParams,
    options: &StreamOptions,
) -> Result<ReplicationConfig, SourceError> {
    Ok(ReplicationConfig::new(
        params.host.clone(),
        params.user.clone(),
        params.password.clone(),
        params.dbname.clone(),
        options.slot.clone(),
        options.publication.clone(),
    )
    .with_port(params.port)
    .with_tls(tls_config(params)?)
    .with_start_lsn(options.start_lsn.into())
    .with_ack_lsn(options.ack_lsn.into())
    .with_status_interval(options.status_interval)
    .with_wakeup_interval(options.status_interval)
    .with_buffer_size(8192)
    .with_options("-c datestyle=ISO -c timezone=UTC -c intervalstyle=postgres")
    .with_application_name(options.application_name.clone()))
}

/// Opens a streaming session and waits until the server accepted it (the slot is
/// held by this session from then on).
pub async fn start_stream(
    params: &ConnParams,
    options: &StreamOptions,
) -> Result<ReplicationClient, SourceError> {
    let cfg = replication_config(params, options)?;
    let mut client = ReplicationClient::connect(cfg).await?;
    client.wait_started().await?;
    Ok(client)
}

/// A slot created with an exported snapshot: copy the tables at `snapshot` while
/// `session` stays open, then drop the session and stream from `consistent_point`.
pub struct NewSlot {
    pub session: ReplicationClient,
    pub consistent_point: Lsn,
    pub snapshot: String,
}

pub async fn create_slot_with_snapshot(
    params: &ConnParams,
    options: &StreamOptions,
) -> Result<NewSlot, SourceError> {
    let cfg = replication_config(params, options)?;
    let mut session = ReplicationClient::connect_gated(cfg).await?;
    let sql = format!(
        "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
        super::admin::quote_ident(&options.slot)
    );
    let rows = session.simple_query(&sql).await?;
    let row = rows
        .first()
        .ok_or_else(|| SourceError::Url("CREATE_REPLICATION_SLOT returned no row".into()))?;
    let text = |i: usize| {
        row.get(i)
            .and_then(|v| v.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let consistent_point = text(1)
        .parse()
        .map_err(|e| SourceError::Url(format!("CREATE_REPLICATION_SLOT consistent point: {e}")))?;
    Ok(NewSlot {
        session,
        consistent_point,
        snapshot: text(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_verify_modes() {
        let p = conn_params(
            "postgres://rep:s3cret@db.example:6543/app?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.user.as_str()),
            ("db.example", 6543, "rep")
        );
        assert_eq!((p.password.as_str(), p.dbname.as_str()), ("s3cret", "app"));
        assert_eq!(p.sslmode, "verify-full");
        assert_eq!(p.sslrootcert.as_deref(), Some("/ca.pem"));
        assert!(conn_params("postgres://db/app").is_err(), "no user");
    }
}
