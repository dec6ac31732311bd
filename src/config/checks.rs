//! Checks of setting values beyond their syntax: the log filter, unknown
//! `REPLYTIME_*` variables (with a did-you-mean) and the state directory.

use super::{CONFIG_ENV, ConfigError, KEYS, Settings};

/// Log levels, for `log_level` and its directives.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A `log_level` is a level (`info`) or comma-separated directives
/// (`replytime=debug,info`) whose levels are all known. A bare word that is not a
/// level would be read as a target name and silence every other log line.
pub(super) fn check_log_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err(format!("empty: give a level ({})", LOG_LEVELS.join(", ")));
    }
    for directive in filter.split(',').map(str::trim) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let hint = did_you_mean(level, LOG_LEVELS.iter().copied())
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            return Err(format!(
                "{directive:?} in {filter:?} is not a level ({}) nor target=level{hint}",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("{filter:?} is not a log filter: {e}"))
}

/// The closest of `known` to `word` when it is a likely typo (edit distance at
/// most 2, or a third of the word).
fn did_you_mean<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_uppercase();
    known
        .map(|k| (edit_distance(&word, &k.to_ascii_uppercase()), k))
        .filter(|(d, _)| *d <= 2.max(word.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Prefixes of `REPLYTIME_*` variables read by the test and benchmark tools, not
/// by the daemon.
const TOOL_PREFIXES: [&str; 4] = [
    "REPLYTIME_TEST_",
    "REPLYTIME_BENCH_",
    "REPLYTIME_PROPTEST_",
    "REPLYTIME_DRILL_",
];

/// `REPLYTIME_*` variables replytime does not read (a typo silently ignored would
/// leave a setting at its default), each with the likely intended name.
pub fn unknown_env_names(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut known: Vec<String> = vec![
        CONFIG_ENV.into(),
        "REPLYTIME_FAULT".into(),
        crate::fault::VERIFY_KNOWN_ABSENT_ENV.into(),
    ];
    for key in KEYS {
        known.push(key.env.to_string());
        known.push(format!("{}_FILE", key.env));
    }
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with("REPLYTIME_"))
        .filter(|n| !known.contains(n) && !TOOL_PREFIXES.iter().any(|p| n.starts_with(p)))
        .map(|n| {
            // Compared without the common prefix, which would make any two close.
            let suffixes = known.iter().map(|k| &k["REPLYTIME_".len()..]);
            match did_you_mean(&n["REPLYTIME_".len()..], suffixes) {
                Some(s) => format!("{n} (did you mean REPLYTIME_{s}?)"),
                None => n,
            }
        })
        .collect();
    unknown.sort();
    unknown
}

impl Settings {
    /// Checks against the file system what `validate-config` can check without a
    /// database: the state directory is a writable directory, or can be made.
    pub fn check_paths(&self) -> Result<(), ConfigError> {
        let Some(dir) = &self.state_dir else {
            return Ok(());
        };
        let key = super::with_env_var("state_dir");
        let mut existing = dir.as_path();
        while !existing.exists() {
            match existing.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
                _ => return Ok(()),
            }
        }
        if !existing.is_dir() {
            return Err(ConfigError::new(
                &key,
                format!("{} exists and is not a directory", existing.display()),
            ));
        }
        tempfile::tempfile_in(existing).map_err(|e| {
            ConfigError::new(
                &key,
                format!("{} is not writable for this user: {e}", existing.display()),
            )
        })?;
        Ok(())
    }
}
