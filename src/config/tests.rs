//! The settings' loading, precedence, messages, redaction and declarations.

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
