//! `run` and `validate-config` on bad configuration (SPEC 6, 8): each case exits
//! 1 promptly — no endless retry on a fatal setting — with a message that names
//! the setting or the thing and the reason, and never a password.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::common;
use crate::support::{free_port, slot_for};

/// A fatal configuration error must end the process well within this.
const PROMPT_EXIT: Duration = Duration::from_secs(30);

async fn database() -> common::TestDb {
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    db
}

/// How a run of the binary ended.
struct Exit {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Exit {
    /// A clean failure: exit code 1 (not a panic, not a signal), within
    /// [`PROMPT_EXIT`], with every `needles` in the message.
    fn assert_fails_with(&self, needles: &[&str]) {
        assert_eq!(
            self.status.code(),
            Some(1),
            "want exit 1, got {}; stderr:\n{}",
            self.status,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}:\n{}",
                self.stderr
            );
        }
    }

    /// The line `main` prints for the error.
    fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|line| line.starts_with("replytime: error:"))
            .unwrap_or_else(|| panic!("no error line in:\n{}", self.stderr))
    }
}

/// Runs the binary with exactly `env` (plus PATH), killing it if it outlives
/// [`PROMPT_EXIT`].
async fn replytime(args: &[&str], env: &[(&str, &str)]) -> Exit {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replytime"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let child = cmd.spawn().expect("start replytime");
    let pid = child.id();
    let waited = tokio::time::timeout(
        PROMPT_EXIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let output = match waited {
        Ok(output) => output.unwrap().expect("wait for replytime"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("replytime {args:?} did not exit within {PROMPT_EXIT:?}");
        }
    };
    let exit = Exit {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!("replytime {args:?} → {}:\n{}", exit.status, exit.stderr);
    exit
}

/// `replytime run` against `url` with a fresh state directory and free metrics port.
async fn run_against(url: &str, state: &Path, extra: &[(&str, &str)]) -> Exit {
    let slot = slot_for(url);
    let metrics = format!("127.0.0.1:{}", free_port());
    let state = state.display().to_string();
    let mut env = vec![
        ("REPLYTIME_SOURCE_URL", url),
        ("REPLYTIME_STATE_DIR", state.as_str()),
        ("REPLYTIME_SLOT", slot.as_str()),
        ("REPLYTIME_METRICS_ADDR", metrics.as_str()),
    ];
    env.extend_from_slice(extra);
    replytime(&["run"], &env).await
}

async fn slot_exists(client: &tokio_postgres::Client, url: &str) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot_for(url)],
        )
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_without_a_source_url_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    let exit = replytime(&["run"], &[("REPLYTIME_STATE_DIR", &state)]).await;
    exit.assert_fails_with(&["REPLYTIME_SOURCE_URL", "missing"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_without_a_state_dir_names_the_setting() {
    let exit = replytime(
        &["run"],
        &[("REPLYTIME_SOURCE_URL", "postgres://replytime@127.0.0.1/app")],
    )
    .await;
    exit.assert_fails_with(&["REPLYTIME_STATE_DIR", "missing"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_against_a_closed_port_says_the_server_cannot_be_reached() {
    let port = free_port(); // nothing listens there any more
    let url = format!("postgres://replytime:hunter2-secret@127.0.0.1:{port}/app");
    let dir = tempfile::tempdir().unwrap();
    let exit = run_against(&url, &dir.path().join("state"), &[]).await;
    let endpoint = format!("cannot reach postgres at 127.0.0.1:{port}");
    exit.assert_fails_with(&[&endpoint, "user replytime", "refused"]);
    assert_eq!(
        exit.error_line().matches("cannot reach").count(),
        1,
        "the reason is said once"
    );
    assert!(!exit.stderr.contains("hunter2-secret"), "{}", exit.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_a_wrong_password_says_authentication_failed_without_the_password() {
    let db = database().await;
    let user = db.create_password_user("the-right-one").await;
    let url = db.url_as(&user, Some("wr0ng-pa55word"), "sslmode=disable");
    let dir = tempfile::tempdir().unwrap();
    let exit = run_against(&url, &dir.path().join("state"), &[]).await;
    let who = format!("authentication failed for user {user}");
    exit.assert_fails_with(&[&who, "password"]);
    assert!(!exit.stderr.contains("wr0ng-pa55word"), "{}", exit.stderr);
    assert!(!exit.stderr.contains("the-right-one"), "{}", exit.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_a_wrong_sink_password_says_it_is_the_sink() {
    let db = database().await;
    let user = db.create_password_user("sink-right").await;
    let sink = db.url_as(&user, Some("sink-wr0ng"), "sslmode=disable");
    let dir = tempfile::tempdir().unwrap();
    let extra = [("REPLYTIME_SINK_URL", sink.as_str())];
    let exit = run_against(&db.url, &dir.path().join("state"), &extra).await;
    let who = format!("sink connection: authentication failed for user {user}");
    exit.assert_fails_with(&[&who]);
    assert!(!exit.stderr.contains("sink-wr0ng"), "{}", exit.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_against_a_missing_database_names_it() {
    let url = common::cluster().url("no_such_database");
    let dir = tempfile::tempdir().unwrap();
    let exit = run_against(&url, &dir.path().join("state"), &[]).await;
    exit.assert_fails_with(&["database \"no_such_database\" does not exist"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_as_a_role_without_replication_names_the_privilege() {
    let db = database().await;
    // Role names are global to the cluster; the database's pid and counter are
    // unique (the test name is cut to fit 63 bytes).
    let role = format!("norepl_{}", &db.name[..db.name.len().min(40)]);
    db.client
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN NOREPLICATION; \
             GRANT ALL ON SCHEMA public TO \"{role}\"; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{role}\""
        ))
        .await
        .unwrap();
    let url = db.url_as(&role, None, "");
    let dir = tempfile::tempdir().unwrap();
    let exit = run_against(&url, &dir.path().join("state"), &[]).await;
    let what = format!("role \"{role}\" lacks the REPLICATION privilege");
    let fix = format!("ALTER ROLE \"{role}\" WITH REPLICATION");
    exit.assert_fails_with(&[&what, &fix]);
    assert!(!slot_exists(&db.client, &url).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_a_missing_source_table_names_the_table() {
    let db = database().await;
    db.client
        .batch_execute(r#"DROP TABLE "AIDraft""#)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exit = run_against(&db.url, &dir.path().join("state"), &[]).await;
    exit.assert_fails_with(&["source table public.AIDraft does not exist", "[tables]"]);
    assert!(!slot_exists(&db.client, &db.url).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_on_a_server_without_logical_wal_names_wal_level() {
    let cluster = tokio::task::spawn_blocking(|| {
        common::start_cluster_with("wal_level = replica\nmax_replication_slots = 0\n")
    })
    .await
    .unwrap();
    let url = cluster.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let exit = run_against(&url, &dir.path().join("state"), &[]).await;
    exit.assert_fails_with(&["wal_level is \"replica\"", "wal_level = logical"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_the_metrics_port_taken_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").display().to_string();
    let exit = replytime(
        &["run"],
        &[
            (
                "REPLYTIME_SOURCE_URL",
                "postgres://replytime@127.0.0.1:1/app",
            ),
            ("REPLYTIME_STATE_DIR", &state),
            ("REPLYTIME_METRICS_ADDR", &addr),
        ],
    )
    .await;
    let what = format!("cannot listen for metrics on {addr} (REPLYTIME_METRICS_ADDR)");
    exit.assert_fails_with(&[&what, "in use"]);
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_config_names_the_key_and_the_reason() {
    const URL: (&str, &str) = ("REPLYTIME_SOURCE_URL", "postgres://u:pa55@db/app");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let not_a_number = file("not_a_number.toml", "chunk_changes = \"many\"\n");
    let unknown_key = file("unknown_key.toml", "chunk_size = 5\n");
    // (environment, what the message must say)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![URL, ("REPLYTIME_SINK_BATCH_OPS", "lots")],
            vec![
                "REPLYTIME_SINK_BATCH_OPS",
                "\"lots\" is not a non-negative integer",
            ],
        ),
        (
            vec![URL, ("REPLYTIME_LOAD_BATCH_ROWS", "-5")],
            vec!["REPLYTIME_LOAD_BATCH_ROWS", "not a non-negative integer"],
        ),
        (
            vec![URL, ("REPLYTIME_CHUNK_CHANGES", "0")],
            vec!["REPLYTIME_CHUNK_CHANGES", "must be greater than 0"],
        ),
        (
            vec![URL, ("REPLYTIME_STATUS_INTERVAL_MS", "600000")],
            vec![
                "REPLYTIME_STATUS_INTERVAL_MS",
                "too large",
                "wal_sender_timeout",
            ],
        ),
        (
            vec![URL, ("REPLYTIME_LOG_FORMAT", "xml")],
            vec!["REPLYTIME_LOG_FORMAT", "\"xml\" is not one of pretty, json"],
        ),
        (
            vec![URL, ("REPLYTIME_METRICS_ADDR", "localhost")],
            vec!["REPLYTIME_METRICS_ADDR", "not an address"],
        ),
        (
            vec![URL, ("REPLYTIME_SLOT", "Replytime-Slot")],
            vec!["REPLYTIME_SLOT", "a-z, 0-9 and _"],
        ),
        (
            vec![("REPLYTIME_SOURCE_URL", "mysql://u:pa55@db/app")],
            vec!["REPLYTIME_SOURCE_URL", "postgres://"],
        ),
        (
            vec![URL, ("REPLYTIME_CONFIG", &not_a_number)],
            vec!["not_a_number.toml", "chunk_changes"],
        ),
        (
            vec![URL, ("REPLYTIME_CONFIG", &unknown_key)],
            vec!["unknown_key.toml", "chunk_size"],
        ),
        (
            vec![
                URL,
                ("REPLYTIME_SOURCE_URL_FILE", "/nonexistent/source-url"),
            ],
            vec![
                "REPLYTIME_SOURCE_URL_FILE",
                "cannot read /nonexistent/source-url",
            ],
        ),
    ];
    for (env, needles) in cases {
        let exit = replytime(&["validate-config"], &env).await;
        exit.assert_fails_with(&needles);
        assert!(
            exit.error_line()
                .starts_with("replytime: error: bad config: "),
            "{}",
            exit.stderr
        );
        assert!(!exit.stderr.contains("pa55"), "{}", exit.stderr);
    }
    let ok = replytime(&["validate-config"], &[URL]).await;
    assert!(ok.status.success(), "{}", ok.stderr);
    assert!(ok.stdout.contains("# config ok"), "{}", ok.stdout);
    assert!(!ok.stdout.contains("pa55"), "{}", ok.stdout);
}
