//! `sslrootcert=system`: the operating system's store as OpenSSL finds it
//! (`SSL_CERT_FILE` honoured), never compiled-in roots; verify-full by default and
//! weaker modes refused, as libpq 16 and later have it. psql 15 does not know
//! `system`, so the reference is the libpq inside psycopg's binary wheel
//! (`scripts/install-deps.sh` installs it).
//!
//! `SSL_CERT_FILE` is read by the process, so replytime's side runs in a child
//! process: this test binary again, running only `system_roots_child` with the
//! variable set (no `set_var` in a process whose other tests run on threads).

use std::process::Command;

use crate::common::tls_cluster::{Hba, TlsClusterSpec, start_tls_cluster};
use crate::matrix::{Outcome, admin_outcome, replication_outcome, url};

const URLS_VAR: &str = "REPLYTIME_TEST_SYSTEM_ROOT_URLS";

/// libpq 16+ (psycopg's) with `SSL_CERT_FILE` = `ca`, one outcome per URL.
fn libpq_outcomes(urls: &[String], ca: &std::path::Path) -> Vec<Outcome> {
    const SCRIPT: &str = r#"
import sys, psycopg
for url in sys.argv[1:]:
    try:
        with psycopg.connect(url) as conn:
            ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
            print("encrypted" if ssl else "clear")
    except Exception as e:
        print("refused " + " ".join(str(e).split()))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .args(urls)
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "psycopg (the libpq 16+ reference) is missing: run scripts/install-deps.sh \
         (pip install 'psycopg[binary]'):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("libpq (psycopg {}):\n{text}", libpq_version());
    text.lines().map(parse_outcome).collect()
}

fn libpq_version() -> String {
    let out = Command::new("python3")
        .args(["-c", "import psycopg; print(psycopg.pq.version())"])
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn parse_outcome(line: &str) -> Outcome {
    match line.split_whitespace().next() {
        Some("encrypted") => Outcome::Encrypted,
        Some("clear") => Outcome::Clear,
        Some("refused") => Outcome::Refused,
        other => panic!("unexpected outcome line {other:?}"),
    }
}

/// replytime's admin and replication outcomes for `urls`, from a child process
/// that has `SSL_CERT_FILE` = `ca`.
fn replytime_outcomes(urls: &[String], ca: &std::path::Path) -> Vec<(Outcome, Outcome)> {
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "system_roots::system_roots_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(URLS_VAR, urls.join("\n"))
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .expect("run the child test");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("replytime:\n{text}");
    text.lines()
        .filter_map(|line| line.split_once("@outcome ").map(|(_, rest)| rest))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let admin = parse_outcome(words.next().unwrap_or(""));
            let replication = parse_outcome(words.next().unwrap_or(""));
            (admin, replication)
        })
        .collect()
}

#[test]
fn sslrootcert_system_is_the_os_store_as_libpq_16_has_it() {
    let server = start_tls_cluster(&TlsClusterSpec {
        ssl: true,
        hba: Hba::HostsslOnly,
        server_names: "DNS:localhost",
    });
    let mut urls = Vec::new();
    let mut names = Vec::new();
    for mode in [
        None,
        Some("disable"),
        Some("allow"),
        Some("prefer"),
        Some("require"),
        Some("verify-ca"),
        Some("verify-full"),
    ] {
        urls.push(url(&server, "localhost", mode, Some("system"), false));
        names.push(format!("localhost sslmode={}", mode.unwrap_or("(none)")));
    }
    urls.push(url(&server, "127.0.0.1", None, Some("system"), false));
    names.push("127.0.0.1 (not in the certificate)".to_string());

    for (store, ca) in [
        ("the server's CA", &server.ca),
        ("another CA", &server.other_ca),
    ] {
        let libpq = libpq_outcomes(&urls, ca);
        let ours = replytime_outcomes(&urls, ca);
        assert_eq!(libpq.len(), urls.len(), "one libpq outcome per URL");
        assert_eq!(ours.len(), urls.len(), "one replytime outcome per URL");
        for ((name, libpq), (admin, replication)) in names.iter().zip(&libpq).zip(&ours) {
            assert_eq!(
                (admin, replication),
                (libpq, libpq),
                "SSL_CERT_FILE = {store}, {name}: replytime (admin, replication) vs libpq"
            );
        }
        let expected_default = if store == "the server's CA" {
            Outcome::Encrypted
        } else {
            Outcome::Refused
        };
        assert_eq!(libpq[0], expected_default, "libpq, {store}, no sslmode");
        assert_eq!(
            libpq[4],
            Outcome::Refused,
            "libpq refuses require with system"
        );
    }
}

/// The child side of the test above; does nothing when run on its own.
#[tokio::test]
async fn system_roots_child() {
    let Ok(urls) = std::env::var(URLS_VAR) else {
        return;
    };
    for url in urls.lines() {
        let (admin, admin_note) = admin_outcome(url).await;
        let (replication, replication_note) = replication_outcome(url).await;
        println!("@outcome {admin} {replication}");
        println!("  admin: {admin_note}");
        println!("  replication: {replication_note}");
    }
}
