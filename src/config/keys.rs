//! How a setting is declared: [`settings!`] turns one line per key into the
//! `Settings` struct, its defaults, the [`KEYS`](super::KEYS) table (the
//! environment variable, the command-line flag, whether the value is secret, the
//! help text), the parsing of a text value, and what `validate-config` prints.
//!
//! ```text
//!  settings! { key: Type = default, env "REPLYTIME_KEY", flag Some("key") | None,
//!              Plain | Secret, parse fn; … }
//!      ├─▶ struct Settings + Default        (TOML file: serde, same names)
//!      ├─▶ KEYS ─▶ env variables, *_FILE, flags (cli.rs), did-you-mean, README check
//!      ├─▶ Settings::set(key, text, origin) (environment, files, flags)
//!      └─▶ Settings::redacted()             (every key; secrets through redact_url)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

/// Whether a value may be printed as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Plain,
    /// Holds a password (a database URL): printed with it removed.
    Secret,
}

/// One setting as the file, the environment and the command line spell it.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// The TOML key and the field of `Settings`.
    pub name: &'static str,
    /// The environment variable; `{env}_FILE` names a file holding the value.
    pub env: &'static str,
    /// The long flag without its dashes, for the keys the command line sets.
    pub flag: Option<&'static str>,
    pub show: Show,
    /// What the key sets (the flag's help).
    pub help: &'static str,
}

impl Key {
    /// `key (REPLYTIME_KEY)`: errors found after the sources were merged name both.
    pub fn described(&self) -> String {
        format!("{} ({})", self.name, self.env)
    }
}

/// A value as `validate-config` prints it: TOML text, or nothing when unset.
pub trait Shown {
    fn shown(&self) -> Option<Value>;
}

/// A printed value: text is quoted, numbers are not.
pub enum Value {
    Text(String),
    Number(u64),
}

impl Value {
    pub fn toml(&self) -> String {
        match self {
            Value::Text(text) => toml::Value::String(text.clone()).to_string(),
            Value::Number(n) => n.to_string(),
        }
    }
}

impl Shown for String {
    fn shown(&self) -> Option<Value> {
        Some(Value::Text(self.clone()))
    }
}

impl Shown for PathBuf {
    fn shown(&self) -> Option<Value> {
        Some(Value::Text(self.display().to_string()))
    }
}

impl Shown for SocketAddr {
    fn shown(&self) -> Option<Value> {
        Some(Value::Text(self.to_string()))
    }
}

impl Shown for super::LogFormat {
    fn shown(&self) -> Option<Value> {
        Some(Value::Text(
            match self {
                super::LogFormat::Pretty => "pretty",
                super::LogFormat::Json => "json",
            }
            .into(),
        ))
    }
}

impl Shown for crate::shard::Shard {
    fn shown(&self) -> Option<Value> {
        Some(Value::Text(self.to_string()))
    }
}

impl Shown for u64 {
    fn shown(&self) -> Option<Value> {
        Some(Value::Number(*self))
    }
}

impl Shown for usize {
    fn shown(&self) -> Option<Value> {
        Some(Value::Number(*self as u64))
    }
}

impl<T: Shown> Shown for Option<T> {
    fn shown(&self) -> Option<Value> {
        self.as_ref().and_then(Shown::shown)
    }
}

// ---- parsers of a text value (environment, `*_FILE`, flags) ----

pub fn text(value: &str) -> Result<String, String> {
    Ok(value.to_string())
}

pub fn url(value: &str) -> Result<Option<String>, String> {
    Ok(Some(value.to_string()))
}

pub fn path(value: &str) -> Result<Option<PathBuf>, String> {
    if value.trim().is_empty() {
        return Err("empty: set the RocksDB state directory (a path)".into());
    }
    Ok(Some(PathBuf::from(value)))
}

pub fn address(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|e| format!("{value:?} is not an address like 127.0.0.1:9811: {e}"))
}

pub fn log_format(value: &str) -> Result<super::LogFormat, String> {
    match value {
        "pretty" => Ok(super::LogFormat::Pretty),
        "json" => Ok(super::LogFormat::Json),
        _ => Err(format!("{value:?} is not one of pretty, json")),
    }
}

pub fn u64(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|e| format!("{value:?} is not a non-negative integer: {e}"))
}

pub fn usize(value: &str) -> Result<usize, String> {
    u64(value).map(|n| n as usize)
}

pub fn shard(value: &str) -> Result<Option<crate::shard::Shard>, String> {
    value.parse().map(Some)
}

/// Declares every setting once; see the module doc.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty = $default:expr,
            env $env:literal, flag $flag:expr, $show:ident, parse $parse:path;
    )*) => {
        /// Everything `replytime` can be told. Each key is declared once, in
        /// `settings!` in `config.rs`; the README lists them.
        #[derive(Clone, Debug, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Settings {
            $( $(#[doc = $doc])* pub $name: $ty, )*
            /// The source tables' columns (the file's `[tables]`; no variable).
            pub tables: TableMapping,
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings {
                    $( $name: $default, )*
                    tables: TableMapping::default(),
                }
            }
        }

        /// Every key but `tables`, in the order `validate-config` prints them.
        pub const KEYS: &[keys::Key] = &[$(
            keys::Key {
                name: stringify!($name),
                env: $env,
                flag: $flag,
                show: keys::Show::$show,
                help: concat!($($doc),*),
            },
        )*];

        impl Settings {
            /// Sets `key` from text; errors name `origin` (the variable, file or flag).
            fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
                match key {
                    $( stringify!($name) => {
                        self.$name = $parse(value).map_err(|reason| ConfigError::new(origin, reason))?;
                    } )*
                    other => {
                        return Err(ConfigError::new(origin, format!("unknown setting {other:?}")));
                    }
                }
                Ok(())
            }

            /// The value of `key` as `validate-config` prints it (not yet redacted).
            fn shown(&self, key: &str) -> Option<keys::Value> {
                use keys::Shown as _;
                match key {
                    $( stringify!($name) => self.$name.shown(), )*
                    _ => None,
                }
            }
        }
    };
}

pub(super) use settings;
