//! Postgres connections shared by the source's admin queries and the sink: URL
//! parsing, TLS per `sslmode` (rustls), the spawned connection task, and errors that
//! say which case happened without ever showing the password.
//!
//! ```text
//!  postgres://user:pw@host:5432/db?sslmode=verify-full&sslrootcert=/etc/ca.pem
//!     │ split_tls_params (tokio-postgres knows neither verify-*, allow nor ssl* files)
//!     ├──▶ tokio_postgres::Config ── per attempt: sslmode disable / prefer / require
//!     └──▶ TlsSettings ── tls::client_config ──▶ rustls config (see pgconn/tls.rs),
//!                         shared with the replication connection (source/stream.rs)
//!  connect ──▶ Client, its connection driven by a spawned task
//!          └─▶ PgConnError: Unreachable | AuthFailed | DatabaseMissing | Tls | …
//! ```
//!
//! As libpq, `prefer` makes a second attempt in clear text when the TLS handshake
//! fails or the server refuses the session over TLS, and `allow` a second attempt
//! with TLS when the server refuses it in clear text; when both fail, the TLS
//! attempt's error is the one reported.
//!
//! Defaults an operator expects from a daemon, applied when the URL does not set
//! them: a 10 s connect timeout (an unreachable host fails instead of hanging) and
//! TCP keepalives after 30 s idle (a cut network is noticed within about a minute).

mod facts;
mod tls;
mod url;
mod verify;

pub use facts::tls_facts;
pub(crate) use facts::{TlsFacts, replication_tls_facts};
pub(crate) use tls::{SYSTEM_ROOTS, client_config as tls_client_config};
pub(crate) use url::redact_url;

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// tokio-postgres' own default idle time: "not set by the URL".
const TOKIO_POSTGRES_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What tokio-postgres negotiates on the first attempt and, for libpq's
    /// fallbacks, on the second; certificate checks are the connector's job.
    fn attempts(self) -> (PgSslMode, Option<PgSslMode>) {
        match self {
            SslMode::Disable => (PgSslMode::Disable, None),
            SslMode::Allow => (PgSslMode::Disable, Some(PgSslMode::Require)),
            SslMode::Prefer => (PgSslMode::Prefer, Some(PgSslMode::Disable)),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                (PgSslMode::Require, None)
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// The TLS part of a connection URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted roots, or `system`.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: the client certificate (chain), PEM.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key, PEM.
    pub client_key: Option<PathBuf>,
}

/// A parsed connection URL: what tokio-postgres takes plus the TLS settings.
#[derive(Clone, Debug)]
pub struct ConnTarget {
    pub config: Config,
    pub tls: TlsSettings,
}

impl ConnTarget {
    /// `host:port` (comma-separated when the URL lists several hosts), for messages.
    pub fn endpoint(&self) -> String {
        let ports = self.config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port(i)),
                Host::Tcp(name) => format!("{name}:{}", port(i)),
                #[cfg(unix)]
                Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
            })
            .collect();
        if hosts.is_empty() {
            "(no host)".to_string()
        } else {
            hosts.join(",")
        }
    }

    /// The host names (or addresses) of the URL, comma-separated.
    pub(crate) fn host_names(&self) -> String {
        let names: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect();
        names.join(",")
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("(no user)")
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_else(|| self.user())
    }

    /// Fills in the module doc's defaults where the URL is silent.
    fn apply_defaults(&mut self, application_name: &str) {
        let config = &mut self.config;
        config.ssl_mode(self.tls.mode.attempts().0);
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_keepalives_idle() == TOKIO_POSTGRES_KEEPALIVES_IDLE {
            config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
    }
}

/// Why a connection could not be made. Messages name the endpoint and the user,
/// never the password.
#[derive(Debug, thiserror::Error)]
pub enum PgConnError {
    #[error("invalid postgres URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach postgres at {endpoint} (user {user}): {reason}")]
    Unreachable {
        endpoint: String,
        user: String,
        reason: String,
    },
    #[error(
        "authentication failed for user {user} at {endpoint}: {reason}; \
         check the password and the server's pg_hba.conf"
    )]
    AuthFailed {
        endpoint: String,
        user: String,
        reason: String,
    },
    #[error("database {database:?} does not exist at {endpoint} (user {user})")]
    DatabaseMissing {
        endpoint: String,
        user: String,
        database: String,
    },
    #[error("TLS failure with postgres at {endpoint} (user {user}, sslmode={mode}): {reason}")]
    Tls {
        endpoint: String,
        user: String,
        mode: SslMode,
        reason: String,
    },
    #[error("TLS setup for postgres at {endpoint} (sslmode={mode}) failed: {reason}")]
    TlsSetup {
        endpoint: String,
        mode: SslMode,
        reason: String,
    },
    #[error("postgres at {endpoint} refused user {user}: {reason}")]
    Rejected {
        endpoint: String,
        user: String,
        code: String,
        reason: String,
    },
}

/// Connects to `url`, spawning the task that drives the connection.
pub async fn connect(url: &str, application_name: &str) -> Result<Client, PgConnError> {
    let mut target = parse_url(url)?;
    target.apply_defaults(application_name);
    let connector = tls::connector(&target.tls).map_err(|reason| PgConnError::TlsSetup {
        endpoint: target.endpoint(),
        mode: target.tls.mode,
        reason,
    })?;
    let (first, second) = target.tls.mode.attempts();
    let first_result = target.config.connect(connector.clone()).await;
    let (client, connection) = match (first_result, second) {
        (Ok(connected), _) => connected,
        (Err(err), Some(retry)) if is_refusal(&err, first) => {
            if first == PgSslMode::Prefer {
                // Clear text after a failed TLS attempt: worth an operator's eye.
                tracing::warn!(endpoint = %target.endpoint(), error = %error_chain(&err), "the TLS attempt failed; trying without TLS as sslmode=prefer does (sslmode=require or stricter forbids clear text)");
            } else {
                tracing::debug!(endpoint = %target.endpoint(), error = %error_chain(&err), "refused in clear text; trying with TLS as sslmode=allow does");
            }
            target.config.ssl_mode(retry);
            match target.config.connect(connector).await {
                Ok(connected) => connected,
                // The TLS attempt's error says more than "no encryption".
                Err(second_err) => {
                    let tls_attempt = if first == PgSslMode::Disable {
                        &second_err
                    } else {
                        &err
                    };
                    return Err(classify(tls_attempt, &target));
                }
            }
        }
        (Err(err), _) => return Err(classify(&err, &target)),
    };
    let endpoint = target.endpoint();
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(endpoint = %endpoint, error = %error_chain(&err), "postgres connection ended with an error");
        }
    });
    Ok(client)
}

/// Checks `url` without connecting: it parses, and its TLS settings make a
/// configuration (the files it names exist and hold what they should). The error
/// names the parameter and the file, never the password.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let target = parse_url(url).map_err(|e| e.to_string())?;
    tls::client_config(&target.tls).map(|_| ())
}

/// Whether libpq would make its second attempt after `err`: the server refused the
/// session (an error response during start-up), or, for an attempt that tried TLS,
/// the handshake failed.
fn is_refusal(err: &tokio_postgres::Error, attempt: PgSslMode) -> bool {
    err.as_db_error().is_some()
        || (attempt != PgSslMode::Disable
            && error_chain(err).starts_with("error performing TLS handshake"))
}

/// Parses a `postgres://` URL (or a libpq key=value string), taking the TLS
/// parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) out before
/// tokio-postgres sees them. As libpq (16 and later), `sslrootcert=system` makes
/// verify-full the default and refuses any weaker `sslmode`.
pub fn parse_url(url: &str) -> Result<ConnTarget, PgConnError> {
    let invalid = |reason: String| PgConnError::InvalidUrl {
        url: redact_url(url),
        reason,
    };
    let (rest, params) = url::split_tls_params(url);
    let mut tls = TlsSettings {
        mode: SslMode::Prefer,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let mut mode_given = None;
    for (key, value) in params {
        match key.as_str() {
            "sslmode" => {
                tls.mode = SslMode::parse(&value).ok_or_else(|| {
                    invalid(format!(
                        "unknown sslmode {value:?} (expected disable, allow, prefer, require, verify-ca or verify-full)"
                    ))
                })?;
                mode_given = Some(tls.mode);
            }
            "sslcert" => tls.client_cert = Some(PathBuf::from(value)),
            "sslkey" => tls.client_key = Some(PathBuf::from(value)),
            _ => tls.root_cert = Some(PathBuf::from(value)),
        }
    }
    if tls.root_cert.as_deref() == Some(std::path::Path::new(SYSTEM_ROOTS)) {
        match mode_given {
            None => tls.mode = SslMode::VerifyFull,
            Some(SslMode::VerifyFull) => {}
            Some(weak) => {
                return Err(invalid(format!(
                    "weak sslmode \"{weak}\" may not be used with sslrootcert=system (use \"verify-full\")"
                )));
            }
        }
    }
    let config: Config = rest.parse().map_err(|err| invalid(error_chain(&err)))?;
    Ok(ConnTarget { config, tls })
}

/// Sorts a failed connection attempt into the cases of `PgConnError`.
fn classify(err: &tokio_postgres::Error, target: &ConnTarget) -> PgConnError {
    let endpoint = target.endpoint();
    let user = target.user().to_string();
    if let Some(db) = err.as_db_error() {
        let reason = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            PgConnError::AuthFailed {
                endpoint,
                user,
                reason,
            }
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            let database = target.database().to_string();
            PgConnError::DatabaseMissing {
                endpoint,
                user,
                database,
            }
        } else {
            let code = code.code().to_string();
            PgConnError::Rejected {
                endpoint,
                user,
                code,
                reason,
            }
        };
    }
    // tokio-postgres does not expose its error kinds; their texts are stable.
    let reason = error_chain(err);
    if reason.starts_with("error performing TLS handshake") {
        let mode = target.tls.mode;
        PgConnError::Tls {
            endpoint,
            user,
            mode,
            reason,
        }
    } else if reason.starts_with("authentication error") || reason.contains("password missing") {
        PgConnError::AuthFailed {
            endpoint,
            user,
            reason,
        }
    } else if reason.starts_with("invalid configuration") {
        PgConnError::InvalidUrl {
            url: format!("for {endpoint}"),
            reason,
        }
    } else {
        PgConnError::Unreachable {
            endpoint,
            user,
            reason,
        }
    }
}

/// An error and its causes on one line: "outer: cause: root cause".
pub fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_reads_modes_and_rejects_unknown_ones() {
        let target =
            parse_url("postgres://u@h:6000/db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(target.tls.mode, SslMode::VerifyFull);
        assert_eq!(target.tls.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(target.endpoint(), "h:6000");
        assert_eq!(target.user(), "u");
        assert_eq!(target.database(), "db");
        assert_eq!(
            parse_url("postgres://u@h/db").unwrap().tls.mode,
            SslMode::Prefer
        );

        let err = parse_url("postgres://u:secret@h/db?sslmode=bogus").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown sslmode \"bogus\""), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn client_certificates_allow_and_system_roots_parse_as_in_libpq() {
        let target =
            parse_url("postgres://u@h/db?sslmode=allow&sslcert=/c.crt&sslkey=/c.key").unwrap();
        assert_eq!(target.tls.mode, SslMode::Allow);
        assert_eq!(target.tls.client_cert, Some(PathBuf::from("/c.crt")));
        assert_eq!(target.tls.client_key, Some(PathBuf::from("/c.key")));
        assert_eq!(
            target.tls.mode.attempts(),
            (PgSslMode::Disable, Some(PgSslMode::Require))
        );
        assert_eq!(
            SslMode::Prefer.attempts(),
            (PgSslMode::Prefer, Some(PgSslMode::Disable))
        );
        assert_eq!(SslMode::VerifyCa.attempts(), (PgSslMode::Require, None));

        // sslrootcert=system: verify-full by default, nothing weaker (libpq 16+).
        let system = parse_url("host=h user=u sslrootcert=system").unwrap();
        assert_eq!(system.tls.mode, SslMode::VerifyFull);
        for weak in ["disable", "allow", "prefer", "require", "verify-ca"] {
            let err = parse_url(&format!(
                "postgres://u@h/db?sslrootcert=system&sslmode={weak}"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("weak sslmode \"{weak}\"")), "{err}");
        }
    }

    #[test]
    fn endpoints_of_several_hosts_and_ipv6() {
        let target = parse_url("host=a,::1 port=1,2 user=u").unwrap();
        assert_eq!(target.endpoint(), "a:1,[::1]:2");
    }
}
