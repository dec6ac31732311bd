//! Settings: a TOML file, overridden by `REPLYTIME_*` environment variables,
//! overridden by command-line flags. Secrets (the database URLs, which carry
//! passwords) may come from the environment or from a file (`*_FILE`), and are never
//! logged: [`Settings::redacted`] is what logs and `validate-config` print.
//!
//! Each key is declared once, in the `settings!` table below: its type, default,
//! environment variable, flag, parsing and whether it is secret (see `keys`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tables::TableMapping;

mod checks;
pub mod keys;
use checks::check_log_filter;
pub use checks::unknown_env_names;

/// A bad setting: names the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("bad config: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

keys::settings! {
    /// `postgres://` URL of the application database (required).
    source_url: Option<String> = None,
        env "REPLYTIME_SOURCE_URL", flag Some("source-url"), Secret, parse keys::url;
    /// Where `"ResponseTimingEvent"` lives; default: the source.
    sink_url: Option<String> = None,
        env "REPLYTIME_SINK_URL", flag Some("sink-url"), Secret, parse keys::url;
    /// RocksDB state directory.
    state_dir: Option<PathBuf> = None,
        env "REPLYTIME_STATE_DIR", flag Some("state-dir"), Plain, parse keys::path;
    /// Replication slot name.
    slot: String = "replytime".into(),
        env "REPLYTIME_SLOT", flag Some("slot"), Plain, parse keys::text;
    /// Publication name.
    publication: String = "replytime".into(),
        env "REPLYTIME_PUBLICATION", flag Some("publication"), Plain, parse keys::text;
    /// Listen address of /metrics, /healthz and /readyz.
    metrics_addr: SocketAddr = "127.0.0.1:9811".parse().expect("valid default"),
        env "REPLYTIME_METRICS_ADDR", flag Some("metrics-addr"), Plain, parse keys::address;
    /// Log format: pretty or json.
    log_format: LogFormat = LogFormat::Pretty,
        env "REPLYTIME_LOG_FORMAT", flag Some("log-format"), Plain, parse keys::log_format;
    /// A log level or `target=level` directives.
    log_level: String = "info".into(),
        env "REPLYTIME_LOG_LEVEL", flag None, Plain, parse keys::text;
    /// Source changes applied per RocksDB commit within one large transaction.
    chunk_changes: usize = 10_000,
        env "REPLYTIME_CHUNK_CHANGES", flag None, Plain, parse keys::usize;
    /// Sink operations per Postgres transaction.
    sink_batch_ops: usize = 5_000,
        env "REPLYTIME_SINK_BATCH_OPS", flag None, Plain, parse keys::usize;
    /// How often the confirmed LSN is sent to the server (well inside wal_sender_timeout).
    status_interval_ms: u64 = 1_000,
        env "REPLYTIME_STATUS_INTERVAL_MS", flag None, Plain, parse keys::u64;
    /// `pg_logical_emit_message` heartbeat period for end-to-end freshness; 0 = off.
    heartbeat_interval_ms: u64 = 10_000,
        env "REPLYTIME_HEARTBEAT_INTERVAL_MS", flag None, Plain, parse keys::u64;
    /// Event log retention by age.
    event_log_retention_hours: u64 = 168,
        env "REPLYTIME_EVENT_LOG_RETENTION_HOURS", flag None, Plain, parse keys::u64;
    /// Event log retention by size (a span of WAL behind the applied LSN).
    event_log_max_bytes: u64 = 1 << 30,
        env "REPLYTIME_EVENT_LOG_MAX_BYTES", flag None, Plain, parse keys::u64;
    /// Statement timeout of each initial-load / backfill batch.
    statement_timeout_ms: u64 = 60_000,
        env "REPLYTIME_STATEMENT_TIMEOUT_MS", flag None, Plain, parse keys::u64;
    /// Rows per initial-load / backfill batch.
    load_batch_rows: usize = 10_000,
        env "REPLYTIME_LOAD_BATCH_ROWS", flag None, Plain, parse keys::usize;
    /// RocksDB block cache (16 MiB: the same memory does more as read cache, see
    /// benches/README.md, "Where the reads go").
    block_cache_bytes: usize = 16 << 20,
        env "REPLYTIME_BLOCK_CACHE_BYTES", flag None, Plain, parse keys::usize;
    /// Read cache of the derivation state in front of RocksDB (hot threads,
    /// rows and anchors).
    read_cache_bytes: usize = 80 << 20,
        env "REPLYTIME_READ_CACHE_BYTES", flag None, Plain, parse keys::usize;
    /// This daemon's shard of the leads, `k/N`; none = all.
    shard: Option<crate::shard::Shard> = None,
        env "REPLYTIME_SHARD", flag None, Plain, parse keys::shard;
}

/// The variable that names the TOML file (`--config` on the command line).
pub const CONFIG_ENV: &str = "REPLYTIME_CONFIG";

/// Longest standby status period: half of Postgres' default `wal_sender_timeout`.
const MAX_STATUS_INTERVAL_MS: u64 = 30_000;

/// The declaration of `name` (a key of [`KEYS`]).
pub fn key(name: &str) -> Option<&'static keys::Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// `key (REPLYTIME_KEY)`: a key as the file and the environment spell it, for
/// errors found after the sources were merged.
fn with_env_var(name: &str) -> String {
    key(name).map_or_else(|| name.to_string(), keys::Key::described)
}

/// Overrides given on the command line (highest precedence).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub pairs: Vec<(String, String)>,
}

impl Settings {
    /// Loads the file named by `config_path` (or `REPLYTIME_CONFIG`), then the
    /// environment, then `overrides`; validates the result.
    pub fn load(
        config_path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let path = config_path
            .map(Path::to_path_buf)
            .or_else(|| env(CONFIG_ENV).map(PathBuf::from));
        let mut settings = match path {
            Some(path) => Self::from_file(&path)?,
            None => Settings::default(),
        };
        for key in KEYS {
            if let Some(value) = env(key.env) {
                settings.set(key.name, &value, key.env)?;
            }
            let file_var = format!("{}_FILE", key.env);
            if let Some(file) = env(&file_var) {
                let value = std::fs::read_to_string(&file)
                    .map_err(|e| ConfigError::new(&file_var, format!("cannot read {file}: {e}")))?;
                settings.set(key.name, value.trim(), &file_var)?;
            }
        }
        for (key, value) in &overrides.pairs {
            settings.set(key, value, &format!("--{}", key.replace('_', "-")))?;
        }
        if settings.sink_url.is_none() {
            settings.sink_url = settings.source_url.clone();
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process environment.
    pub fn from_env(
        config_path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        Self::load(config_path, &|k| std::env::var(k).ok(), overrides)
    }

    fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(CONFIG_ENV, format!("cannot read {}: {e}", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            ConfigError::new(
                format!("{}", path.display()),
                e.to_string().trim().to_string(),
            )
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            (with_env_var("source_url"), &self.source_url),
            (with_env_var("sink_url"), &self.sink_url),
        ] {
            match url {
                None => return Err(ConfigError::new(&key, "missing: set a postgres:// URL")),
                Some(url)
                    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
                {
                    return Err(ConfigError::new(
                        &key,
                        "must be a postgres:// or postgresql:// URL",
                    ));
                }
                Some(url) => crate::pgconn::check_url(url)
                    .map_err(|reason| ConfigError::new(&key, reason))?,
            }
        }
        if self
            .state_dir
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::new(
                with_env_var("state_dir"),
                "empty: set the RocksDB state directory (a path)",
            ));
        }
        check_log_filter(&self.log_level)
            .map_err(|reason| ConfigError::new(with_env_var("log_level"), reason))?;
        for (key, name) in [("slot", &self.slot), ("publication", &self.publication)] {
            let ok = !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(ConfigError::new(
                    with_env_var(key),
                    format!("{name:?} must be 1-63 characters of a-z, 0-9 and _"),
                ));
            }
        }
        let positive = [
            ("chunk_changes", self.chunk_changes as u64),
            ("sink_batch_ops", self.sink_batch_ops as u64),
            ("status_interval_ms", self.status_interval_ms),
            ("load_batch_rows", self.load_batch_rows as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(
                    with_env_var(key),
                    "must be greater than 0",
                ));
            }
        }
        let at_most = [
            (
                "status_interval_ms",
                self.status_interval_ms,
                MAX_STATUS_INTERVAL_MS,
                "standby status must reach the server well inside its wal_sender_timeout (60 s by default)",
            ),
            (
                "statement_timeout_ms",
                self.statement_timeout_ms,
                i32::MAX as u64,
                "the largest statement_timeout Postgres accepts",
            ),
        ];
        for (key, value, max, why) in at_most {
            if value > max {
                return Err(ConfigError::new(
                    with_env_var(key),
                    format!("{value} is too large: at most {max} ({why})"),
                ));
            }
        }
        Ok(())
    }

    pub fn source_url(&self) -> &str {
        self.source_url.as_deref().expect("validated")
    }

    pub fn sink_url(&self) -> &str {
        self.sink_url.as_deref().expect("validated")
    }

    /// The state directory; commands that need it call this first.
    pub fn require_state_dir(&self) -> Result<&Path, ConfigError> {
        self.state_dir.as_deref().ok_or_else(|| {
            ConfigError::new(
                with_env_var("state_dir"),
                "missing: set the RocksDB state directory",
            )
        })
    }

    /// The state directory of a command that checked [`Settings::require_state_dir`].
    pub fn state_dir(&self) -> &Path {
        self.state_dir.as_deref().unwrap_or(Path::new(""))
    }

    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms)
    }

    /// Every key that has a value, one `key = value` line each (TOML), with
    /// passwords removed: what logs and `validate-config` print.
    pub fn redacted(&self) -> String {
        let mut out = String::new();
        for key in KEYS {
            let Some(value) = self.shown(key.name) else {
                continue;
            };
            let value = match (key.show, value) {
                (keys::Show::Secret, keys::Value::Text(url)) => {
                    keys::Value::Text(crate::pgconn::redact_url(&url))
                }
                (_, value) => value,
            };
            out.push_str(&format!("{} = {}\n", key.name, value.toml()));
        }
        out
    }
}

#[cfg(test)]
mod tests;
