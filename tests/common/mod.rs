//! The Postgres harness of the integration tests: one throwaway cluster per test
//! binary, one fresh database per test.
//!
//! ```text
//!  first use ─▶ copy of a cached initdb template into a tempdir (tmpfs) ─▶ TLS
//!               files (openssl) ─▶ pg_ctl start (loopback, free port) ─▶ watchdog:
//!               once this process is gone, pg_ctl stop -m immediate, rm -rf
//!  fresh_database() ─▶ CREATE DATABASE "t<pid>_<n>_<test>" ─▶ TestDb { url, name, client }
//! ```
//!
//! A static's `Drop` never runs at exit, so the cluster is stopped by a detached
//! watchdog shell that polls for this process. Postgres refuses to run as root: as
//! root, the tempdir is chown'd to `postgres` and the server tools run through
//! `runuser -u postgres --`.
//!
//! The cluster has `ssl = on` with a test CA (when `openssl` is installed; see
//! `TlsFiles`), and logins of members of `PASSWORD_GROUP` need a SCRAM password
//! (`TestDb::create_password_user`); everything else is `trust`.

#![allow(dead_code)]

pub mod tls_cluster;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Members of this role authenticate with scram-sha-256 (trust for everyone else).
pub const PASSWORD_GROUP: &str = "replytime_password_users";

const SOURCE_SQL: &str = include_str!("../../schema/source.sql");
const FALLBACK_BINDIR: &str = "/usr/lib/postgresql/15/bin";
const START_ATTEMPTS: usize = 5;

/// Certificates of the test cluster. The server certificate, signed by `ca_cert`,
/// names only `localhost` (not 127.0.0.1): verify-full to 127.0.0.1 must fail,
/// verify-ca must pass. `other_ca_cert` signed nothing the server has.
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub other_ca_cert: PathBuf,
}

/// The cluster of this test binary.
pub struct TestCluster {
    pub port: u16,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub bindir: PathBuf,
    pub tls: Option<TlsFiles>,
}

impl TestCluster {
    /// URL of database `dbname` as the superuser `postgres`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }
}

/// The cluster, started on first use.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_cluster_with(""))
}

/// One test's database.
pub struct TestDb {
    /// `postgres://postgres@127.0.0.1:PORT/name`
    pub url: String,
    pub name: String,
    pub client: tokio_postgres::Client,
}

impl TestDb {
    /// Creates the reference source tables (`schema/source.sql`).
    pub async fn apply_source_schema(&self) {
        self.client
            .batch_execute(SOURCE_SQL)
            .await
            .unwrap_or_else(|e| panic!("schema/source.sql in {}: {e:?}", self.name));
    }

    /// A new login role (unique name) that must give `password` (SCRAM); returns
    /// its name.
    pub async fn create_password_user(&self, password: &str) -> String {
        let user = format!("pw_{}", self.name);
        let sql = format!(
            "DO $$ BEGIN CREATE ROLE {PASSWORD_GROUP} NOLOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
             CREATE ROLE \"{user}\" LOGIN PASSWORD '{}' IN ROLE {PASSWORD_GROUP}; \
             GRANT ALL ON DATABASE \"{}\" TO \"{user}\"",
            password.replace('\'', "''"),
            self.name
        );
        self.client
            .batch_execute(&sql)
            .await
            .expect("create a password user");
        user
    }

    /// This database's URL for `user` (and `password`, percent-encoding left to the
    /// caller), plus `params` as the query string when not empty.
    pub fn url_as(&self, user: &str, password: Option<&str>, params: &str) -> String {
        let port = cluster().port;
        let auth = match password {
            Some(password) => format!("{user}:{password}"),
            None => user.to_string(),
        };
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{params}")
        };
        format!("postgres://{auth}@127.0.0.1:{port}/{}{query}", self.name)
    }
}

/// A new, empty database with a connected client.
pub async fn fresh_database() -> TestDb {
    let cluster = cluster();
    let name = unique_database_name();
    let admin = connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
    let url = cluster.url(&name);
    let client = connect(&url).await;
    TestDb { url, name, client }
}

/// A plain (no TLS) client of `url`, its connection driven by a spawned task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e:?}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `t<pid>_<n>_<test name>`: unique, and says which test made it.
fn unique_database_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let thread = std::thread::current();
    let test: String = thread
        .name()
        .unwrap_or("test")
        .rsplit("::")
        .next()
        .unwrap_or("test")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("t{}_{n}_{test}", std::process::id());
    name.truncate(63);
    name
}

// ---- cluster start-up ----

/// A new cluster like [`cluster`]'s with `extra_conf` appended to its
/// `postgresql.conf` after the harness's settings (the last line of a setting wins:
/// `"wal_level = replica\n"` makes a cluster without logical decoding). The caller
/// owns it; it is stopped and removed like the shared one once this process is gone.
pub fn start_cluster_with(extra_conf: &str) -> TestCluster {
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let dir = tempfile::Builder::new()
        .prefix("replytime-pg-")
        .tempdir_in(cluster_base())
        .expect("create the cluster tempdir")
        .keep();
    let data_dir = dir.join("data");
    let bindir = pg_bindir();
    let tls = make_tls_files(&dir);
    if as_root {
        run(
            Command::new("chown").arg("-R").arg("postgres:").arg(&dir),
            "chown the cluster dir",
        );
    }
    let pg = |tool: &str| server_command(&bindir.join(tool), as_root);
    let template = initdb_template(&bindir, as_root, &pg);
    // cp -a keeps the owner (postgres) and the 0700 mode postgres insists on.
    run(
        Command::new("cp").arg("-a").arg(&template).arg(&data_dir),
        "copy the initdb template",
    );
    write_config(&dir, &data_dir, tls.is_some());
    if !extra_conf.is_empty() {
        append(
            &data_dir.join("postgresql.conf"),
            &format!("\n{extra_conf}\n"),
        );
    }
    let port = start_server(&dir, &data_dir, &pg);
    spawn_watchdog(&dir, &data_dir, &pg("pg_ctl"));
    TestCluster {
        port,
        dir,
        data_dir,
        bindir,
        tls,
    }
}

/// Where clusters live: `REPLYTIME_TEST_PG_DIR`, else tmpfs (`/dev/shm`, where
/// creating Postgres' many small files is ~10x faster than on this disk) when it
/// has room, else the system temp dir.
fn cluster_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("REPLYTIME_TEST_PG_DIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if free_kib(shm).is_some_and(|kib| kib >= 4 * 1024 * 1024) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Free space of the filesystem of `dir`, from `df -Pk`.
fn free_kib(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// A pristine `initdb` data directory, made once and reused by every test binary
/// (initdb alone takes 1–2 s here). It lives in cargo's target tmp dir, keyed by
/// the server binary and the initdb arguments; it is published by an atomic
/// rename, so a template that exists is complete.
fn initdb_template(bindir: &Path, as_root: bool, pg: &dyn Fn(&str) -> Command) -> PathBuf {
    const INITDB_ARGS: [&str; 9] = [
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ];
    let key = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let server =
            std::fs::metadata(bindir.join("postgres")).expect("the postgres server binary");
        (bindir, server.len(), server.mtime(), INITDB_ARGS, as_root).hash(&mut hasher);
        hasher.finish()
    };
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let template = cache.join(format!("pg-template-{key:016x}"));
    let data = template.join("data");
    if data.join("PG_VERSION").exists() {
        return data;
    }
    let building = cache.join(format!("pg-template-{key:016x}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).expect("create the template dir");
    if as_root {
        run(
            Command::new("chown").arg("postgres:").arg(&building),
            "chown the template dir",
        );
    }
    run(
        pg("initdb")
            .arg("-D")
            .arg(building.join("data"))
            .args(INITDB_ARGS),
        "initdb",
    );
    // Another test binary may have won the race: then use its template.
    if std::fs::rename(&building, &template).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    data
}

/// `pg_config --bindir` when it has the server, else Debian's PostgreSQL 15.
fn pg_bindir() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    from_pg_config
        .filter(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
        .unwrap_or_else(|| PathBuf::from(FALLBACK_BINDIR))
}

/// `tool`, run as `postgres` when this process is root.
fn server_command(tool: &Path, as_root: bool) -> Command {
    if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(tool);
        cmd
    } else {
        Command::new(tool)
    }
}

fn write_config(dir: &Path, data_dir: &Path, ssl: bool) {
    let mut conf = format!(
        "\n# replytime test harness\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         wal_level = logical\n\
         max_replication_slots = 64\n\
         max_wal_senders = 64\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         wal_sender_timeout = 60s\n\
         max_connections = 300\n",
        dir.display()
    );
    if ssl {
        conf.push_str(&format!(
            "ssl = on\nssl_cert_file = '{0}/tls/server.crt'\nssl_key_file = '{0}/tls/server.key'\n",
            dir.display()
        ));
    }
    append(&data_dir.join("postgresql.conf"), &conf);
    // First match wins: members of PASSWORD_GROUP need a password, others are trusted.
    let hba_path = data_dir.join("pg_hba.conf");
    let hba = std::fs::read_to_string(&hba_path).expect("read pg_hba.conf");
    let rule = format!("host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256\n");
    std::fs::write(&hba_path, format!("{rule}{hba}")).expect("write pg_hba.conf");
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .expect("append to postgresql.conf");
}

/// Starts the server on a free loopback port (retrying when another process took
/// the port between the probe and the bind).
fn start_server(dir: &Path, data_dir: &Path, pg: &dyn Fn(&str) -> Command) -> u16 {
    let log = dir.join("postgres.log");
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let started = pg("pg_ctl")
            .arg("-D")
            .arg(data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "-o"])
            .arg(format!("-p {port}"))
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        if started.success() {
            return port;
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    panic!("postgres did not start after {START_ATTEMPTS} attempts; log:\n{log_text}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("probe a free port")
}

/// A detached shell that outlives this process by at most a second: it stops the
/// server (immediate mode: nothing to keep) and removes the tempdir.
fn spawn_watchdog(dir: &Path, data_dir: &Path, pg_ctl: &Command) {
    let mut stop: Vec<String> = vec![pg_ctl.get_program().to_string_lossy().into_owned()];
    stop.extend(pg_ctl.get_args().map(|a| a.to_string_lossy().into_owned()));
    let script = format!(
        "while [ -d /proc/$1 ]; do sleep 1; done; {} -D \"$2\" stop -m immediate; rm -rf \"$3\"",
        stop.join(" ")
    );
    // --fork: setsid's own process exits at once (no zombie), the shell lives on.
    let spawned = Command::new("setsid")
        .args(["--fork", "sh", "-c", &script, "replytime-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(data_dir)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn the cluster watchdog");
    assert!(spawned.success(), "setsid failed: {spawned}");
}

/// A test CA, a server certificate for `localhost` signed by it, and an unrelated
/// CA; `None` (and `ssl = off`) when openssl is missing or fails.
fn make_tls_files(dir: &Path) -> Option<TlsFiles> {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).ok()?;
    let ext = tls.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    let steps: [Vec<&str>; 4] = [
        [
            &[
                "req",
                "-x509",
                "-days",
                "3650",
                "-subj",
                "/CN=replytime test CA",
            ][..],
            &key,
            &ca,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
        [
            &["req", "-x509", "-days", "3650", "-subj", "/CN=other CA"][..],
            &key,
            &ca,
            &["-keyout", "other.key", "-out", "other.crt"],
        ]
        .concat(),
        [
            &["req", "-subj", "/CN=localhost"][..],
            &key,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    ];
    for args in steps {
        let ok = Command::new("openssl")
            .args(&args)
            .current_dir(&tls)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "test harness: openssl {} failed; the cluster runs without TLS",
                args.join(" ")
            );
            return None;
        }
    }
    Some(TlsFiles {
        ca_cert: tls.join("ca.crt"),
        other_ca_cert: tls.join("other.crt"),
    })
}

/// Runs `cmd` to completion (stdin closed) and returns its output; panics naming
/// `what`, with its stdout and stderr, unless it succeeded.
pub fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
