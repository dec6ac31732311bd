//! The replication connection: pgwire-replication carries the bytes (transport
//! only); decoding is ours (`decode.rs`).

use std::time::Duration;

use pgwire_replication::{
    ReplicationClient, ReplicationConfig, SslMode as TransportMode, TlsConfig,
};

use super::SourceError;
use crate::lsn::Lsn;
use crate::pgconn::{SslMode, TlsSettings};

/// Parts of a `postgres://` URL the replication connection needs.
#[derive(Clone, Debug)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    /// The same TLS settings, with the same meaning, as the admin and sink
    /// connections (`pgconn`).
    pub tls: TlsSettings,
}

/// Parses a libpq-style URL (or key=value string) the way `pgconn` does, so the
/// replication connection reads `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
/// exactly as the other connections do.
pub fn conn_params(url: &str) -> Result<ConnParams, SourceError> {
    let target = crate::pgconn::parse_url(url).map_err(|e| SourceError::Url(e.to_string()))?;
    let config = &target.config;
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
        tls: target.tls,
    })
}

/// The transport's TLS settings: its mode drives the attempts (in clear, with TLS,
/// libpq's second attempt), and the rustls configuration is `pgconn`'s, so the
/// certificate checks are those of the other connections.
fn tls_config(params: &ConnParams) -> Result<TlsConfig, SourceError> {
    let mode = match params.tls.mode {
        SslMode::Disable => return Ok(TlsConfig::disabled()),
        SslMode::Allow => TransportMode::Allow,
        SslMode::Prefer => TransportMode::Prefer,
        SslMode::Require => TransportMode::Require,
        SslMode::VerifyCa => TransportMode::VerifyCa,
        SslMode::VerifyFull => TransportMode::VerifyFull,
    };
    let rustls = crate::pgconn::tls_client_config(&params.tls).map_err(|reason| {
        SourceError::TlsSetup(format!(
            "{}:{} (sslmode={}): {reason}",
            params.host, params.port, params.tls.mode
        ))
    })?;
    let mut config = TlsConfig::disabled().with_rustls_client_config(rustls);
    config.mode = mode;
    Ok(config)
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
pub(crate) struct NewSlot {
    /// Never read: held open, since the snapshot lives as long as the session.
    #[allow(dead_code)]
    pub session: ReplicationClient,
    pub consistent_point: Lsn,
    pub snapshot: String,
}

pub(crate) async fn create_slot_with_snapshot(
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
        assert_eq!(p.tls.mode, SslMode::VerifyFull);
        assert_eq!(p.tls.root_cert, Some("/ca.pem".into()));
        assert!(conn_params("postgres://db/app").is_err(), "no user");
    }
}
