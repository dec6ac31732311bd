//! Running the real `replytime` binary against a test database, and comparing the
//! sink with the batch oracle of the source tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use replytime::change::Change;
use replytime::lsn::Lsn;
use replytime::oracle;
use replytime::row::TimingRow;
use replytime::workload::sql::transaction_to_sql;

/// The binary under test, with the settings of SPEC section 6.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

/// Slots are global to a cluster: every test database gets its own slot name.
pub fn slot_for(url: &str) -> String {
    let db = url.rsplit('/').next().unwrap_or("db");
    let db: String = db
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let hash = url
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("rt_{}_{hash:08x}", &db[..db.len().min(40)])
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    pub fn spawn(url: &str, state_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let logs = std::env::temp_dir().join("replytime-test-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("daemon-{}.log", rand_suffix()));
        eprintln!("daemon log: {}", log.display());
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_replytime"));
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REPLYTIME_SOURCE_URL", url)
            .env("REPLYTIME_SLOT", slot_for(url))
            .env("REPLYTIME_STATE_DIR", state_dir)
            .env(
                "REPLYTIME_METRICS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("REPLYTIME_STATUS_INTERVAL_MS", "200")
            .env("REPLYTIME_HEARTBEAT_INTERVAL_MS", "1000")
            .env("RUST_LOG", "replytime=debug,info")
            // The safety net of the reads the engine skips as known absent.
            .env(replytime::fault::VERIFY_KNOWN_ABSENT_ENV, "1")
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        wait_exit(&mut self.child, Duration::from_secs(60))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exit status if it exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for Daemon {
    /// Also fails the test if the daemon skipped a read whose key was there.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log_text();
        if !std::thread::panicking() && log.contains(replytime::fault::KNOWN_ABSENT_FOUND) {
            panic!(
                "the daemon skipped a read as known absent whose key was in the state (log: {})",
                self.log.display()
            );
        }
    }
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rand_suffix() -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Applies transactions of changes to the source, one SQL transaction each.
pub async fn write_history(client: &tokio_postgres::Client, txns: &[Vec<Change>]) {
    for changes in txns {
        let sql = transaction_to_sql(changes);
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{sql}"));
    }
}

/// The oracle of the source tables (with the test trigger's delay records).
pub async fn oracle_rows(client: &tokio_postgres::Client) -> BTreeMap<String, TimingRow> {
    oracle::derive(&oracle::pg::load_tables(client).await.unwrap())
}

/// The sink table's rows (empty until the daemon created the table).
pub async fn sink_rows(client: &tokio_postgres::Client) -> BTreeMap<String, TimingRow> {
    match oracle::pg::load_sink_rows(client).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            BTreeMap::new()
        }
        Err(e) => panic!("reading the sink: {e}"),
    }
}

pub async fn current_lsn(client: &tokio_postgres::Client) -> Lsn {
    let text: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    text.parse().unwrap()
}

pub async fn confirmed_lsn(client: &tokio_postgres::Client, slot: &str) -> Option<Lsn> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()?;
    row.get::<_, Option<String>>(0).map(|t| t.parse().unwrap())
}

/// Waits until the sink equals the oracle (and the daemon confirmed the current
/// WAL position), or fails with the difference.
pub async fn converge(client: &tokio_postgres::Client, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let want = oracle_rows(client).await;
    loop {
        let got = sink_rows(client).await;
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !want.contains_key(*k))
                .take(5)
                .collect();
            let differ: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .take(3)
                .map(|(k, v)| format!("{k}:\n got  {:?}\n want {v:?}", got[k]))
                .collect();
            panic!(
                "sink != oracle after {timeout:?}: {} rows vs {}; missing {missing:?}; extra {extra:?}; differ {differ:#?}",
                got.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `f` until it returns true.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub const ORACLE_SUPPORT_SQL: &str = include_str!("../../schema/oracle_support.sql");

/// Waits until a daemon streams from the slot (initial load done, sink migrated).
pub async fn wait_streaming(client: &tokio_postgres::Client, url: &str) {
    let slot = slot_for(url);
    eventually(
        Duration::from_secs(60),
        "the daemon to stream from its slot",
        || async {
            client
                // The streaming session, not the initial load's (which holds the
                // slot while it copies, as `replytime-<slot>-load`).
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots s \
                     JOIN pg_stat_replication r ON r.pid = s.active_pid \
                     WHERE s.slot_name = $1 AND r.application_name = 'replytime-' || $1",
                    &[&slot],
                )
                .await
                .unwrap()
                .is_some()
        },
    )
    .await;
}

/// Rows that exist before a daemon first starts: `txns` transactions of realistic
/// generator traffic (seed `seed`) written to the source, with the oracle's delay
/// records as a load at this snapshot records them. The generator continues the
/// traffic.
pub async fn existing_history(
    client: &tokio_postgres::Client,
    seed: u64,
    txns: usize,
) -> replytime::workload::Generator {
    let mut generator =
        replytime::workload::Generator::new(seed, replytime::workload::HistoryConfig::realistic());
    let history: Vec<_> = (0..txns).map(|_| generator.next_transaction()).collect();
    write_history(client, &history).await;
    delay_records_as_of_now(client).await;
    generator
}

/// Rewrites the oracle's delay records to the bounds in force now: what a load from
/// a snapshot taken now records (SPEC 3.6), for tests that start on existing data.
pub async fn delay_records_as_of_now(client: &tokio_postgres::Client) {
    rewrite_delay_records(client, "").await;
}

/// Like [`delay_records_as_of_now`], but only for the jobs the sink does not hold:
/// a backfill keeps the bounds the sink recorded for the others (SPEC 5).
pub async fn delay_records_as_of_now_unless_in_sink(client: &tokio_postgres::Client) {
    rewrite_delay_records(
        client,
        r#"AND NOT EXISTS (SELECT 1 FROM "ResponseTimingEvent" r
                           WHERE r."aiBackgroundJobId" = j.id)"#,
    )
    .await;
}

/// Sets each recorded job's delay bounds to its lead's campaign's bounds now (or
/// the defaults), for the jobs that also pass `and_where`.
async fn rewrite_delay_records(client: &tokio_postgres::Client, and_where: &str) {
    client
        .batch_execute(&format!(
            r#"UPDATE replytime_oracle_job_delay d SET
                 min_seconds = coalesce(c."aiAutoSendDelayMinSeconds", 180),
                 max_seconds = coalesce(c."aiAutoSendDelayMaxSeconds", 420)
               FROM "BackgroundJob" j
               LEFT JOIN "Lead" l ON l.id = j."leadId"
               LEFT JOIN "EmailCampaign" c ON c.id = l."emailCampaignId"
               WHERE d.job_id = j.id {and_where}"#
        ))
        .await
        .unwrap();
}

/// From now on the generator changes no campaign and moves no lead, so delay bounds
/// recorded at a snapshot equal those recorded at each job's insert.
pub fn freeze_campaigns(generator: &mut replytime::workload::Generator) {
    let mix = &mut generator.config_mut().mix;
    mix.campaign_change = 0;
    mix.lead_change = 0;
}

/// A session holding `"ResponseTimingEvent"` in ACCESS EXCLUSIVE mode, so that no
/// sink write can commit until it runs `COMMIT`.
pub async fn lock_sink(url: &str) -> tokio_postgres::Client {
    let locker = crate::common::connect(url).await;
    locker
        .batch_execute(r#"BEGIN; LOCK TABLE "ResponseTimingEvent" IN ACCESS EXCLUSIVE MODE"#)
        .await
        .unwrap();
    locker
}

/// Commits one transaction with an inbound and an outbound message of lead `L`
/// (an anchor and its reply) and returns an LSN before its commit record.
pub async fn commit_reply_pair(client: &tokio_postgres::Client) -> Lsn {
    client
        .batch_execute(
            r#"BEGIN; INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt") VALUES
               ('i', 'L', 'sms', 'inbound', now()), ('o', 'L', 'sms', 'outbound', now() + interval '1 s')"#,
        )
        .await
        .unwrap();
    let inside = current_lsn(client).await;
    client.batch_execute("COMMIT").await.unwrap();
    inside
}
