//! Settings: a TOML file, overridden by `REPLYTIME_*` environment variables,
//! overridden by command-line flags. Secrets (the database URLs, which carry
//! passwords) may come from the environment or from a file (`*_FILE`), and are never
//! logged: [`Settings::redacted`] is what logs and `validate-config` print.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tables::TableMapping;

mod checks;
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

/// Everything `replytime` can be told. Defaults in [`Settings::default`] and the README.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `postgres://` URL of the application database (REPLYTIME_SOURCE_URL).
    pub source_url: Option<String>,
    /// Where `"ResponseTimingEvent"` lives (REPLYTIME_SINK_URL); default: the source.
    pub sink_url: Option<String>,
    /// RocksDB directory (REPLYTIME_STATE_DIR).
    pub state_dir: Option<PathBuf>,
    pub slot: String,
    pub publication: String,
    pub metrics_addr: SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Source changes applied per RocksDB commit within one large transaction.
    pub chunk_changes: usize,
    /// Sink operations per Postgres transaction.
    pub sink_batch_ops: usize,
    /// How often the confirmed LSN is sent to the server (well inside wal_sender_timeout).
    pub status_interval_ms: u64,
    /// `pg_logical_emit_message` heartbeat period for end-to-end freshness; 0 = off.
    pub heartbeat_interval_ms: u64,
    /// Event log retention: age and size, whichever is hit first.
    pub event_log_retention_hours: u64,
    pub event_log_max_bytes: u64,
    /// Statement timeout of each initial-load / backfill batch.
    pub statement_timeout_ms: u64,
    /// Rows per initial-load / backfill batch.
    pub load_batch_rows: usize,
    pub block_cache_bytes: usize,
    /// Read cache of the derivation state in front of RocksDB (hot threads,
    /// rows and anchors).
    pub read_cache_bytes: usize,
    /// This daemon's shard of the leads, `k/N` (REPLYTIME_SHARD); none = all.
    pub shard: Option<crate::shard::Shard>,
    pub tables: TableMapping,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            source_url: None,
            sink_url: None,
            state_dir: None,
            slot: "replytime".into(),
            publication: "replytime".into(),
            metrics_addr: "127.0.0.1:9811".parse().expect("valid default"),
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            chunk_changes: 10_000,
            sink_batch_ops: 5_000,
            status_interval_ms: 1_000,
            heartbeat_interval_ms: 10_000,
            event_log_retention_hours: 168,
            event_log_max_bytes: 1 << 30,
            statement_timeout_ms: 60_000,
            load_batch_rows: 10_000,
            block_cache_bytes: 32 << 20,
            read_cache_bytes: 64 << 20,
            shard: None,
            tables: TableMapping::default(),
        }
    }
}

/// Longest standby status period: half of Postgres' default `wal_sender_timeout`.
const MAX_STATUS_INTERVAL_MS: u64 = 30_000;

/// Environment variables read, with the key each sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("REPLYTIME_SOURCE_URL", "source_url"),
    ("REPLYTIME_SINK_URL", "sink_url"),
    ("REPLYTIME_STATE_DIR", "state_dir"),
    ("REPLYTIME_SLOT", "slot"),
    ("REPLYTIME_PUBLICATION", "publication"),
    ("REPLYTIME_METRICS_ADDR", "metrics_addr"),
    ("REPLYTIME_LOG_FORMAT", "log_format"),
    ("REPLYTIME_LOG_LEVEL", "log_level"),
    ("REPLYTIME_CHUNK_CHANGES", "chunk_changes"),
    ("REPLYTIME_SINK_BATCH_OPS", "sink_batch_ops"),
    ("REPLYTIME_STATUS_INTERVAL_MS", "status_interval_ms"),
    ("REPLYTIME_HEARTBEAT_INTERVAL_MS", "heartbeat_interval_ms"),
    (
        "REPLYTIME_EVENT_LOG_RETENTION_HOURS",
        "event_log_retention_hours",
    ),
    ("REPLYTIME_EVENT_LOG_MAX_BYTES", "event_log_max_bytes"),
    ("REPLYTIME_STATEMENT_TIMEOUT_MS", "statement_timeout_ms"),
    ("REPLYTIME_LOAD_BATCH_ROWS", "load_batch_rows"),
    ("REPLYTIME_BLOCK_CACHE_BYTES", "block_cache_bytes"),
    ("REPLYTIME_READ_CACHE_BYTES", "read_cache_bytes"),
    ("REPLYTIME_SHARD", "shard"),
];

/// `key (REPLYTIME_KEY)`: a key as the file and the environment spell it, for
/// errors found after the sources were merged.
fn with_env_var(key: &str) -> String {
    match ENV_KEYS.iter().find(|(_, k)| *k == key) {
        Some((var, _)) => format!("{key} ({var})"),
        None => key.to_string(),
    }
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
            .or_else(|| env("REPLYTIME_CONFIG").map(PathBuf::from));
        let mut settings = match path {
            Some(path) => Self::from_file(&path)?,
            None => Settings::default(),
        };
        for (var, key) in ENV_KEYS {
            if let Some(value) = env(var) {
                settings.set(key, &value, var)?;
            }
            let file_var = format!("{var}_FILE");
            if let Some(file) = env(&file_var) {
                let value = std::fs::read_to_string(&file)
                    .map_err(|e| ConfigError::new(&file_var, format!("cannot read {file}: {e}")))?;
                settings.set(key, value.trim(), &file_var)?;
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
            ConfigError::new(
                "REPLYTIME_CONFIG",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        toml::from_str(&text).map_err(|e| {
            ConfigError::new(
                format!("{}", path.display()),
                e.to_string().trim().to_string(),
            )
        })
    }

    fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::new(origin, reason);
        let int = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| bad(format!("{v:?} is not a non-negative integer: {e}")))
        };
        match key {
            "source_url" => self.source_url = Some(value.to_string()),
            "sink_url" => self.sink_url = Some(value.to_string()),
            "state_dir" if value.trim().is_empty() => {
                return Err(bad(
                    "empty: set the RocksDB state directory (a path)".to_string()
                ));
            }
            "state_dir" => self.state_dir = Some(PathBuf::from(value)),
            "slot" => self.slot = value.to_string(),
            "publication" => self.publication = value.to_string(),
            "metrics_addr" => {
                self.metrics_addr = value.parse().map_err(|e| {
                    bad(format!(
                        "{value:?} is not an address like 127.0.0.1:9811: {e}"
                    ))
                })?
            }
            "log_format" => {
                self.log_format = match value {
                    "pretty" => LogFormat::Pretty,
                    "json" => LogFormat::Json,
                    _ => return Err(bad(format!("{value:?} is not one of pretty, json"))),
                }
            }
            "log_level" => self.log_level = value.to_string(),
            "chunk_changes" => self.chunk_changes = int(value)? as usize,
            "sink_batch_ops" => self.sink_batch_ops = int(value)? as usize,
            "status_interval_ms" => self.status_interval_ms = int(value)?,
            "heartbeat_interval_ms" => self.heartbeat_interval_ms = int(value)?,
            "event_log_retention_hours" => self.event_log_retention_hours = int(value)?,
            "event_log_max_bytes" => self.event_log_max_bytes = int(value)?,
            "statement_timeout_ms" => self.statement_timeout_ms = int(value)?,
            "load_batch_rows" => self.load_batch_rows = int(value)? as usize,
            "block_cache_bytes" => self.block_cache_bytes = int(value)? as usize,
            "read_cache_bytes" => self.read_cache_bytes = int(value)? as usize,
            "shard" => self.shard = Some(value.parse().map_err(bad)?),
            other => return Err(bad(format!("unknown setting {other:?}"))),
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            ("source_url (REPLYTIME_SOURCE_URL)", &self.source_url),
            ("sink_url (REPLYTIME_SINK_URL)", &self.sink_url),
        ] {
            match url {
                None => return Err(ConfigError::new(key, "missing: set a postgres:// URL")),
                Some(url)
                    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
                {
                    return Err(ConfigError::new(
                        key,
                        "must be a postgres:// or postgresql:// URL",
                    ));
                }
                Some(url) => {
                    crate::pgconn::check_url(url).map_err(|reason| ConfigError::new(key, reason))?
                }
            }
        }
        if self
            .state_dir
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::new(
                "state_dir (REPLYTIME_STATE_DIR)",
                "empty: set the RocksDB state directory (a path)",
            ));
        }
        check_log_filter(&self.log_level)
            .map_err(|reason| ConfigError::new(with_env_var("log_level"), reason))?;
        for (key, name) in [
            ("slot (REPLYTIME_SLOT)", &self.slot),
            ("publication (REPLYTIME_PUBLICATION)", &self.publication),
        ] {
            let ok = !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(ConfigError::new(
                    key,
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
                "state_dir (REPLYTIME_STATE_DIR)",
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

    /// The settings with passwords removed, for logs and `validate-config`.
    pub fn redacted(&self) -> String {
        let url = |u: &Option<String>| {
            u.as_deref()
                .map(crate::pgconn::redact_url)
                .unwrap_or_default()
        };
        format!(
            "source_url = {:?}\nsink_url = {:?}\nstate_dir = {:?}\nslot = {:?}\npublication = {:?}\nmetrics_addr = \"{}\"\nlog_format = {:?}\nchunk_changes = {}\nsink_batch_ops = {}\nstatus_interval_ms = {}\nheartbeat_interval_ms = {}\nevent_log_retention_hours = {}\nevent_log_max_bytes = {}\nstatement_timeout_ms = {}\nload_batch_rows = {}\n{}",
            url(&self.source_url),
            url(&self.sink_url),
            self.state_dir.as_deref().unwrap_or(Path::new("")),
            self.slot,
            self.publication,
            self.metrics_addr,
            self.log_format,
            self.chunk_changes,
            self.sink_batch_ops,
            self.status_interval_ms,
            self.heartbeat_interval_ms,
            self.event_log_retention_hours,
            self.event_log_max_bytes,
            self.statement_timeout_ms,
            self.load_batch_rows,
            self.shard
                .map(|s| format!("shard = \"{s}\"\n"))
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(
        env: &[(&str, &str)],
        file: Option<&str>,
        flags: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let p = dir.path().join("replytime.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        let overrides = Overrides {
            pairs: flags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        Settings::load(path.as_deref(), &|k| env.get(k).cloned(), &overrides)
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("REPLYTIME_SOURCE_URL", "postgres://u:secret@db/app"),
        ("REPLYTIME_STATE_DIR", "/var/lib/replytime"),
    ];

    #[test]
    fn two_variables_are_enough_and_defaults_apply() {
        let s = load(MINIMAL, None, &[]).unwrap();
        assert_eq!(s.sink_url(), "postgres://u:secret@db/app");
        assert_eq!(s.slot, "replytime");
        assert_eq!(s.publication, "replytime");
        assert_eq!(s.metrics_addr.to_string(), "127.0.0.1:9811");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let file = "slot = \"from_file\"\npublication = \"pub_file\"\nsink_batch_ops = 7\n";
        let mut env = MINIMAL.to_vec();
        env.push(("REPLYTIME_SLOT", "from_env"));
        let s = load(&env, Some(file), &[("sink_batch_ops", "9")]).unwrap();
        assert_eq!(s.slot, "from_env");
        assert_eq!(s.publication, "pub_file");
        assert_eq!(s.sink_batch_ops, 9);
    }

    #[test]
    fn missing_source_url_names_the_key() {
        let err = load(&[("REPLYTIME_STATE_DIR", "/x")], None, &[]).unwrap_err();
        assert!(err.to_string().contains("REPLYTIME_SOURCE_URL"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_reason() {
        let mut env = MINIMAL.to_vec();
        env.push(("REPLYTIME_METRICS_ADDR", "nowhere"));
        let err = load(&env, None, &[]).unwrap_err();
        assert!(err.to_string().contains("REPLYTIME_METRICS_ADDR"), "{err}");
        let err = load(MINIMAL, Some("slot = 3\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("slot"), "{err}");
        let err = load(MINIMAL, Some("bogus = 1\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = load(MINIMAL, None, &[("slot", "Bad-Name")]).unwrap_err();
        assert!(err.to_string().contains("slot"), "{err}");
    }

    #[test]
    fn values_checked_after_merging_name_the_variable_too() {
        let mut env = MINIMAL.to_vec();
        env.push(("REPLYTIME_SINK_BATCH_OPS", "0"));
        let err = load(&env, None, &[]).unwrap_err().to_string();
        assert!(err.contains("REPLYTIME_SINK_BATCH_OPS"), "{err}");
        let err = load(MINIMAL, Some("status_interval_ms = 120000\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("at most 30000"), "{err}");
        let err = load(MINIMAL, None, &[("statement_timeout_ms", "3000000000")]).unwrap_err();
        assert!(err.to_string().contains("statement_timeout_ms"), "{err}");
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("url");
        std::fs::write(&secret, "postgres://u:pw@db/app\n").unwrap();
        let s = load(
            &[
                ("REPLYTIME_SOURCE_URL_FILE", secret.to_str().unwrap()),
                ("REPLYTIME_STATE_DIR", "/x"),
            ],
            None,
            &[],
        )
        .unwrap();
        assert_eq!(s.source_url(), "postgres://u:pw@db/app");
        assert!(!s.redacted().contains("pw@"), "{}", s.redacted());
    }

    #[test]
    fn values_are_validated_not_only_their_syntax() {
        let mut env = MINIMAL.to_vec();
        env.push(("REPLYTIME_LOG_LEVEL", "verbose"));
        let err = load(&env, None, &[]).unwrap_err().to_string();
        assert!(
            err.contains("REPLYTIME_LOG_LEVEL") && err.contains("not a level"),
            "{err}"
        );
        let mut env = MINIMAL.to_vec();
        env.push(("REPLYTIME_LOG_LEVEL", "replytime=debg,info"));
        let err = load(&env, None, &[]).unwrap_err().to_string();
        assert!(err.contains("did you mean \"debug\""), "{err}");
        let mut env = MINIMAL.to_vec();
        env.push(("REPLYTIME_LOG_LEVEL", "replytime=debug,warn"));
        load(&env, None, &[]).unwrap();

        let env = [
            (
                "REPLYTIME_SOURCE_URL",
                "postgres://u:pw@db/app?sslmode=verify_full",
            ),
            ("REPLYTIME_STATE_DIR", "/x"),
        ];
        let err = load(&env, None, &[]).unwrap_err().to_string();
        assert!(
            err.contains("REPLYTIME_SOURCE_URL") && err.contains("sslmode"),
            "{err}"
        );
        assert!(!err.contains("pw@"), "{err}");
        let env = [
            (
                "REPLYTIME_SOURCE_URL",
                "postgres://u@db/app?connect_timeout=abc",
            ),
            ("REPLYTIME_STATE_DIR", "/x"),
        ];
        let err = load(&env, None, &[]).unwrap_err().to_string();
        assert!(err.contains("REPLYTIME_SOURCE_URL"), "{err}");

        let mut env = MINIMAL.to_vec();
        env[1] = ("REPLYTIME_STATE_DIR", "");
        let err = load(&env, None, &[]).unwrap_err().to_string();
        assert!(
            err.contains("REPLYTIME_STATE_DIR") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn unknown_environment_names_are_found_with_a_suggestion() {
        let names = [
            "REPLYTIME_SOURCE_URL",
            "REPLYTIME_SLOTT",
            "REPLYTIME_SINK_URL_FILE",
            "REPLYTIME_TEST_PG_DIR",
            "REPLYTIME_WHATEVER",
            "PATH",
        ]
        .map(String::from);
        assert_eq!(
            unknown_env_names(names),
            vec![
                "REPLYTIME_SLOTT (did you mean REPLYTIME_SLOT?)".to_string(),
                "REPLYTIME_WHATEVER".to_string(),
            ]
        );
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let mut env = MINIMAL.to_vec();
        let path = file.join("state").display().to_string();
        env[1] = ("REPLYTIME_STATE_DIR", &path);
        let err = load(&env, None, &[]).unwrap().check_paths().unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let path = dir.path().join("new/state").display().to_string();
        env[1] = ("REPLYTIME_STATE_DIR", &path);
        load(&env, None, &[]).unwrap().check_paths().unwrap();
    }
}
