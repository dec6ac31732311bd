//! `validate-config` checks values, not only syntax (SPEC 6, 8): each bad value
//! below used to pass as "config ok" and fails now, naming the setting, the
//! reason and, where cheap, what was meant.

use std::process::{Command, Stdio};

/// `validate-config` with exactly `env` (plus PATH): (exit code, stdout, stderr).
fn validate(env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_replytime"))
        .arg("validate-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run replytime");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_config_refuses_each_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let under_file = file.join("state").display().to_string();
    const URL: (&str, &str) = ("REPLYTIME_SOURCE_URL", "postgres://u:pa55@db/app");
    // (environment, what the message must say)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![(
                "REPLYTIME_SOURCE_URL",
                "postgres://u:pa55@db/app?sslmode=verify_full",
            )],
            vec!["REPLYTIME_SOURCE_URL", "unknown sslmode \"verify_full\""],
        ),
        (
            vec![
                URL,
                (
                    "REPLYTIME_SINK_URL",
                    "postgres://u:pa55@db/app?sslmode=requre",
                ),
            ],
            vec!["REPLYTIME_SINK_URL", "sslmode"],
        ),
        (
            vec![(
                "REPLYTIME_SOURCE_URL",
                "postgres://u:pa55@db/app?connect_timeout=soon",
            )],
            vec!["REPLYTIME_SOURCE_URL", "connect_timeout"],
        ),
        (
            vec![URL, ("REPLYTIME_LOG_LEVEL", "verbose")],
            vec!["REPLYTIME_LOG_LEVEL", "\"verbose\"", "not a level"],
        ),
        (
            vec![URL, ("REPLYTIME_LOG_LEVEL", "replytime=inf")],
            vec!["REPLYTIME_LOG_LEVEL", "did you mean \"info\""],
        ),
        (
            vec![URL, ("REPLYTIME_STATE_DIR", "")],
            vec!["REPLYTIME_STATE_DIR", "empty"],
        ),
        (
            vec![URL, ("REPLYTIME_STATE_DIR", &under_file)],
            vec!["REPLYTIME_STATE_DIR", "not a directory"],
        ),
        (
            vec![URL, ("REPLYTIME_SLOTT", "replytime")],
            vec!["REPLYTIME_SLOTT", "did you mean REPLYTIME_SLOT?"],
        ),
        (
            vec![URL, ("REPLYTIME_STATEDIR", "/var/lib/replytime")],
            vec!["REPLYTIME_STATEDIR", "did you mean REPLYTIME_STATE_DIR?"],
        ),
    ];
    for (env, needles) in cases {
        let (code, stdout, stderr) = validate(&env);
        assert_eq!(code, Some(1), "{env:?}: want exit 1\n{stdout}{stderr}");
        assert!(!stdout.contains("config ok"), "{env:?}: {stdout}");
        assert!(
            stderr.starts_with("replytime: error: bad config: "),
            "{env:?}: {stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{env:?}: {needle:?} missing:\n{stderr}"
            );
        }
        assert!(!stderr.contains("pa55"), "{stderr}");
    }
    // Good values pass, a state directory that does not exist yet included.
    let state = dir.path().join("new/state").display().to_string();
    let (code, stdout, stderr) = validate(&[
        URL,
        ("REPLYTIME_STATE_DIR", &state),
        ("REPLYTIME_LOG_LEVEL", "replytime=debug,warn"),
        (
            "REPLYTIME_SINK_URL",
            "postgres://u:pa55@db/sink?sslmode=require",
        ),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("# config ok"), "{stdout}");
}
