//! Whether a connection is encrypted, as the server sees it (`pg_stat_ssl`), and
//! what replytime checked of the server's certificate, as its settings say. Used by
//! `status` (and `check`) for the admin, sink and replication connections.

use serde::Serialize;
use tokio_postgres::Client;

use super::{ConnTarget, SslMode};

/// One connection's TLS, as `pg_stat_ssl` shows it plus the client's checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsFacts {
    /// The connection is encrypted.
    pub ssl: bool,
    /// The protocol, e.g. `TLSv1.3`.
    pub version: Option<String>,
    pub cipher: Option<String>,
    /// What replytime checked of the server's certificate: `none`, `chain`, or
    /// `chain and name <host>` (verify-full).
    pub server_check: String,
}

const OWN_ROW: &str = "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// The TLS of `client`'s own connection, made from `target`'s settings.
pub async fn tls_facts(client: &Client, target: &ConnTarget) -> Result<TlsFacts, String> {
    let row = client
        .query_one(OWN_ROW, &[])
        .await
        .map_err(|e| format!("reading pg_stat_ssl: {}", super::error_chain(&e)))?;
    Ok(facts(row.get(0), row.get(1), row.get(2), target))
}

/// The TLS of the walsender that holds `slot` (the replication connection), read
/// over `client`; `None` when no session holds the slot. The walsender runs as the
/// same role, so `pg_stat_ssl` shows its row.
pub(crate) async fn replication_tls_facts(
    client: &Client,
    slot: &str,
    target: &ConnTarget,
) -> Result<Option<TlsFacts>, String> {
    let row = client
        .query_opt(
            "SELECT s.ssl, s.version, s.cipher FROM pg_replication_slots r \
             JOIN pg_stat_ssl s ON s.pid = r.active_pid WHERE r.slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| format!("reading pg_stat_ssl: {}", super::error_chain(&e)))?;
    Ok(row.map(|row| facts(row.get(0), row.get(1), row.get(2), target)))
}

fn facts(
    ssl: Option<bool>,
    version: Option<String>,
    cipher: Option<String>,
    target: &ConnTarget,
) -> TlsFacts {
    let ssl = ssl.unwrap_or(false);
    TlsFacts {
        ssl,
        version,
        cipher,
        server_check: if ssl {
            server_check(target)
        } else {
            "none".to_string()
        },
    }
}

/// What the settings make replytime check of an encrypted connection's server.
pub(super) fn server_check(target: &ConnTarget) -> String {
    let root_file = target.tls.root_cert.as_ref().is_some_and(|p| p.exists())
        || std::env::var_os("HOME").is_some_and(|home| {
            std::path::Path::new(&home)
                .join(".postgresql/root.crt")
                .exists()
        });
    match target.tls.mode {
        SslMode::VerifyFull => format!("chain and name {}", target.host_names()),
        SslMode::VerifyCa => "chain".to_string(),
        SslMode::Disable => "none".to_string(),
        _ if root_file || target.tls.root_cert.as_deref() == Some(super::SYSTEM_ROOTS.as_ref()) => {
            "chain".to_string()
        }
        _ => "none".to_string(),
    }
}
