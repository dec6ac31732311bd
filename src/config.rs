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
    /// RocksDB block cache.
    block_cache_bytes: usize = 32 << 20,
        env "REPLYTIME_BLOCK_CACHE_BYTES", flag None, Plain, parse keys::usize;
    /// Read cache of the derivation state in front of RocksDB (hot threads,
    /// rows and anchors).
    read_cache_bytes: usize = 64 << 20,
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

    /// SPEC section 6: names tools and docs rely on, with their defaults.
    const SPEC_NAMES: &[(&str, Option<&str>)] = &[
        ("REPLYTIME_SOURCE_URL", None),
        ("REPLYTIME_SINK_URL", None),
        ("REPLYTIME_STATE_DIR", None),
        ("REPLYTIME_SLOT", Some("replytime")),
        ("REPLYTIME_PUBLICATION", Some("replytime")),
        ("REPLYTIME_METRICS_ADDR", Some("127.0.0.1:9811")),
    ];

    #[test]
    fn every_spec_name_is_declared_exactly_once_with_its_default() {
        let defaults = Settings::default();
        for (env, default) in SPEC_NAMES {
            let declared: Vec<_> = KEYS.iter().filter(|k| k.env == *env).collect();
            assert_eq!(declared.len(), 1, "{env} declared {} times", declared.len());
            let shown = defaults.shown(declared[0].name).map(|v| v.toml());
            assert_eq!(shown, default.map(|d| format!("{d:?}")), "{env}");
        }
        assert!(KEYS.iter().all(|k| k.env != CONFIG_ENV));
        assert_eq!(CONFIG_ENV, "REPLYTIME_CONFIG");
        // The sink defaults to the source.
        let s = load(MINIMAL, None, &[]).unwrap();
        assert_eq!(s.sink_url, s.source_url);
        // No two keys share a name, a variable or a flag; each variable is the
        // key's name, each flag its name with dashes (errors name `--flag`).
        for (i, key) in KEYS.iter().enumerate() {
            assert_eq!(key.env, format!("REPLYTIME_{}", key.name.to_uppercase()));
            if let Some(flag) = key.flag {
                assert_eq!(flag, key.name.replace('_', "-"));
            }
            for other in &KEYS[i + 1..] {
                assert_ne!(key.name, other.name);
                assert_ne!(key.env, other.env);
            }
            assert!(!key.help.trim().is_empty(), "{}: no help", key.name);
        }
    }

    #[test]
    fn every_key_is_read_from_its_variable_its_file_and_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        for key in KEYS {
            let value = match key.name {
                "source_url" | "sink_url" => "postgres://u:pw@other/app",
                "state_dir" => "/srv/state",
                "slot" | "publication" => "other_name",
                "metrics_addr" => "0.0.0.0:9999",
                "log_format" => "json",
                "log_level" => "debug",
                "shard" => "1/4",
                _ => "7",
            };
            let file = dir.path().join(key.name);
            std::fs::write(&file, format!("{value}\n")).unwrap();
            let file_var = format!("{}_FILE", key.env);
            let file = file.display().to_string();
            let env_cases: [Vec<(&str, &str)>; 2] = [
                vec![(key.env, value)],
                vec![(file_var.as_str(), file.as_str())],
            ];
            for extra in env_cases {
                let mut env = MINIMAL.to_vec();
                env.retain(|(var, _)| *var != key.env);
                env.extend(extra);
                let s = load(&env, None, &[]).unwrap();
                let shown = s.shown(key.name).unwrap().toml();
                assert!(shown.contains(value), "{}: {shown} from {env:?}", key.name);
            }
            if key.flag.is_some() {
                let s = load(MINIMAL, None, &[(key.name, value)]).unwrap();
                assert!(
                    s.shown(key.name).unwrap().toml().contains(value),
                    "--{}",
                    key.name
                );
            }
            // A bad value names where it came from, or the key and its variable.
            if let Err(e) = load(MINIMAL, None, &[(key.name, "")]).map_err(|e| e.to_string()) {
                let flag = format!("--{}", key.name.replace('_', "-"));
                assert!(
                    e.contains(&flag) || e.contains(&key.described()),
                    "{}: {e}",
                    key.name
                );
            }
        }
    }

    #[test]
    fn validate_config_prints_every_key_and_no_secret() {
        let mut env = MINIMAL.to_vec();
        env.extend([
            ("REPLYTIME_SINK_URL", "postgres://s:sinkpw@sink/db"),
            ("REPLYTIME_SHARD", "0/2"),
        ]);
        let printed = load(&env, None, &[]).unwrap().redacted();
        let names: Vec<&str> = printed
            .lines()
            .map(|line| line.split(" = ").next().unwrap())
            .collect();
        let keys: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(names, keys, "one line per key, in order:\n{printed}");
        let parsed: toml::Table = toml::from_str(&printed).expect("validate-config prints TOML");
        assert_eq!(parsed.len(), KEYS.len());
        for secret in ["secret", "sinkpw"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn redaction_covers_every_secret_bearing_key() {
        // A key that holds a URL (which may carry a password) is secret.
        for key in KEYS {
            let url = key.name.ends_with("_url");
            assert_eq!(key.show == keys::Show::Secret, url, "{}", key.name);
        }
        let mut env = MINIMAL.to_vec();
        let secrets: Vec<(String, String)> = KEYS
            .iter()
            .filter(|k| k.show == keys::Show::Secret)
            .map(|k| {
                (
                    k.env.to_string(),
                    format!("postgres://u:pw_{}@db/app", k.name),
                )
            })
            .collect();
        assert!(secrets.len() >= 2, "both database URLs are secret");
        env.retain(|(var, _)| !secrets.iter().any(|(v, _)| v == var));
        env.extend(secrets.iter().map(|(v, url)| (v.as_str(), url.as_str())));
        let printed = load(&env, None, &[]).unwrap().redacted();
        for key in KEYS.iter().filter(|k| k.show == keys::Show::Secret) {
            assert!(printed.contains(&format!("{} = ", key.name)), "{printed}");
            assert!(!printed.contains(&format!("pw_{}", key.name)), "{printed}");
        }
    }

    #[test]
    fn the_readme_lists_every_key_as_declared() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let rows: Vec<(String, String, String)> = readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                let name = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
                let env = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let flag = cells.get(2)?;
                env.starts_with("REPLYTIME_")
                    .then(|| (name.to_string(), env.to_string(), flag.to_string()))
            })
            .collect();
        let declared: Vec<(String, String, String)> = KEYS
            .iter()
            .map(|k| {
                let flag = k.flag.map_or("—".to_string(), |f| format!("`--{f}`"));
                (k.name.to_string(), k.env.to_string(), flag)
            })
            .collect();
        assert_eq!(rows, declared, "README settings table vs KEYS");
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
