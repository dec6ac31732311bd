//! Fault drills (SPEC 5, 8): the real binary against the test cluster while things
//! break — kill -9 under load, crashes between the chunks of large transactions, a
//! Postgres restart, the sink away for a minute, the network to the source cut, the
//! state's disk full. Each ends with the sink equal to the batch oracle, or with a
//! clear error and no LSN confirmed past what replytime holds durably.
//!
//! Slow and disruptive (one restarts the shared cluster), so `#[ignore]`d by
//! `cargo test` and run one at a time after it, as the last step of `make test`:
//! `scripts/drills.sh` (`make drills`), i.e.
//! `cargo test --release --test drills -- --ignored --nocapture --test-threads=1`.
//! `REPLYTIME_DRILL_SINK_DOWN_SECONDS` (default 60) shortens the sink outage.
//!
//! ```text
//!  writer ──▶ Postgres ──slot──▶ [proxy] ──▶ replytime run ──▶ [proxy] ──▶ sink
//!                 ▲ pg_ctl restart            │ kill -9        (cut / down)
//!                 │                           └─ state on a tmpfs (remount smaller)
//!  checks: converge (sink == oracle), confirmed_flush_lsn vs pending work / durable state
//! ```

mod common;
#[allow(dead_code)]
mod support;

#[path = "drills/disk.rs"]
mod disk;
#[path = "drills/proxy.rs"]
mod proxy;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use replytime::lsn::Lsn;
use replytime::workload::{Generator, HistoryConfig};
use support::*;

const CONVERGE: Duration = Duration::from_secs(180);

/// What `replytime run` logs when a definite error stops its pipeline while the
/// process stays up (src/commands/run.rs).
const DEFINITE_ERROR: &str = "definite error: the pipeline stopped";

/// The drills share one cluster and one of them restarts it: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn database() -> common::TestDb {
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    db.client.batch_execute(ORACLE_SUPPORT_SQL).await.unwrap();
    db
}

fn transactions(generator: &mut Generator, n: usize) -> Vec<Vec<replytime::change::Change>> {
    (0..n).map(|_| generator.next_transaction()).collect()
}

/// A transaction that certainly makes an anchor (so it leaves work for the sink).
/// Writes a lead, an inbound message and its reply in one transaction, and
/// returns the WAL insert position after its rows and before its commit record.
/// A slot may be confirmed up to that point while the sink lacks the anchor: an
/// idle keepalive may carry a `wal_end` that the walwriter flushed in the middle
/// of the transaction, and Postgres re-sends every transaction whose commit lies
/// past the confirmed position.
async fn write_anchor(client: &tokio_postgres::Client, id: &str) -> Lsn {
    client
        .batch_execute(&format!(
            r#"BEGIN;
            INSERT INTO "Lead" (id, "clientId") VALUES ('{id}', 'drill');
            INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "sentAt") VALUES
                ('{id}', '{id}', 'sms', 'inbound', NULL, NULL, now()),
                ('{id}-reply', '{id}', 'sms', 'outbound', 'setter', 'u', now() + interval '1 s');"#
        ))
        .await
        .unwrap();
    let before_commit = current_lsn(client).await;
    client.batch_execute("COMMIT").await.unwrap();
    before_commit
}

async fn wait_confirmed(client: &tokio_postgres::Client, slot: &str, target: Lsn) {
    eventually(CONVERGE, "confirmation of the current LSN", || async {
        confirmed_lsn(client, slot)
            .await
            .is_some_and(|c| c >= target)
    })
    .await;
}

fn assert_running(daemon: &mut Daemon) {
    assert!(
        daemon.exited().is_none(),
        "the daemon exited:\n{}",
        daemon.log_text()
    );
}

/// `GET /metrics` of a daemon, as text.
async fn metrics(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text).await;
    text
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault drill: scripts/drills.sh"]
async fn drill_kill_9_loop_under_load() {
    let _serial = SERIAL.lock().await;
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut generator = Generator::new(61, HistoryConfig::realistic());
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    for round in 0..6u64 {
        let txns = transactions(&mut generator, 300);
        let writer = {
            let url = db.url.clone();
            tokio::spawn(async move {
                write_history(&common::connect(&url).await, &txns).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(100 + (round * 211) % 600)).await;
        daemon.kill9();
        writer.await.unwrap();
        daemon = Daemon::spawn(&db.url, &state, &[]);
    }
    converge(&db.client, CONVERGE).await;
    wait_confirmed(
        &db.client,
        &slot_for(&db.url),
        current_lsn(&db.client).await,
    )
    .await;
    assert_running(&mut daemon);
}

/// Crashes while the daemon applies large transactions chunk by chunk (chunks of
/// 50 changes): each round moves a third of the messages back in their threads or
/// deletes a share of the replies in one transaction, and the daemon aborts at the
/// round's chunk boundary (`REPLYTIME_FAULT=between_chunks:n`, n = 1 to 3), with
/// more traffic written before it restarts.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault drill: scripts/drills.sh"]
async fn drill_crash_between_chunks_of_large_transactions() {
    let _serial = SERIAL.lock().await;
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let chunks = ("REPLYTIME_CHUNK_CHANGES", "50".to_string());
    let mut generator = Generator::new(67, HistoryConfig::realistic());
    let mut daemon = Daemon::spawn(&db.url, &state, &[(chunks.0, chunks.1.as_str())]);
    wait_streaming(&db.client, &db.url).await;
    write_history(&db.client, &transactions(&mut generator, 3_000)).await;
    converge(&db.client, CONVERGE).await;
    for round in 0..8u64 {
        drop(daemon);
        let fault = format!("between_chunks:{}", 1 + round % 3);
        let mut faulty = Daemon::spawn(
            &db.url,
            &state,
            &[
                (chunks.0, chunks.1.as_str()),
                ("REPLYTIME_FAULT", fault.as_str()),
            ],
        );
        wait_streaming(&db.client, &db.url).await;
        let statement = if round % 2 == 0 {
            format!(
                r#"UPDATE "Message" SET "sentAt" = "sentAt" - interval '97 seconds'
                   WHERE (hashtext(id) & 2147483647) % 3 = {}"#,
                round % 3
            )
        } else {
            format!(
                r#"DELETE FROM "Message" WHERE direction = 'outbound'
                   AND (hashtext(id) & 2147483647) % 8 = {round}"#
            )
        };
        let changed = db.client.execute(&statement, &[]).await.unwrap();
        eprintln!("round {round}: {changed} rows in one transaction, abort at {fault}");
        let status = wait_exit(&mut faulty.child, Duration::from_secs(60));
        assert!(
            !status.success(),
            "round {round}: the fault point aborts the daemon"
        );
        write_history(&db.client, &transactions(&mut generator, 20)).await;
        daemon = Daemon::spawn(&db.url, &state, &[(chunks.0, chunks.1.as_str())]);
        converge(&db.client, CONVERGE).await;
    }
    assert_running(&mut daemon);
}

/// Runs `pg_ctl -D <data> <args>` on the test cluster (as `postgres` when root);
/// whether it succeeded.
fn pg_ctl(args: &[&str]) -> bool {
    let cluster = common::cluster();
    let pg_ctl = cluster.bindir.join("pg_ctl");
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut cmd = if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(pg_ctl);
        cmd
    } else {
        Command::new(pg_ctl)
    };
    cmd.arg("-D")
        .arg(&cluster.data_dir)
        .arg("-l")
        .arg(cluster.log_path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run pg_ctl")
        .success()
}

/// Restarts the test cluster: `mode` fast (a clean shutdown, which waits for every
/// walsender to see its client confirm the end of the WAL) or immediate (a crash;
/// recovery replays the WAL). A fast shutdown that does not finish within
/// `patience` is finished with an immediate one; returns whether that happened.
fn restart_postgres(mode: &str, patience: Duration) -> bool {
    let started = Instant::now();
    let timeout = patience.as_secs().to_string();
    let stopped = pg_ctl(&["-w", "-t", &timeout, "-m", mode, "stop"]);
    if !stopped {
        assert!(
            pg_ctl(&["-w", "-m", "immediate", "stop"]),
            "pg_ctl stop -m immediate"
        );
    }
    let port = format!("-p {}", common::cluster().port);
    assert!(
        pg_ctl(&["-w", "-t", "120", "-o", &port, "start"]),
        "pg_ctl start"
    );
    eprintln!(
        "postgres restarted ({mode}{}) in {:.1} s",
        if stopped { "" } else { ", then immediate" },
        started.elapsed().as_secs_f64()
    );
    !stopped
}

/// Respawns the daemon if it exited; returns a line for the findings if it had.
fn revive(
    daemon: &mut Daemon,
    url: &str,
    state: &std::path::Path,
    env: &[(&str, &str)],
    when: &str,
) -> Option<String> {
    let status = daemon.exited()?;
    let log = daemon.log_text();
    let last = log.lines().last().unwrap_or("").to_string();
    eprintln!("FINDING: the daemon exited ({status}) {when}: {last}");
    *daemon = Daemon::spawn(url, state, env);
    Some(format!("the daemon exited ({status}) {when}: {last}"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault drill: scripts/drills.sh"]
async fn drill_postgres_restart_mid_stream() {
    let _serial = SERIAL.lock().await;
    let db = database().await;
    let slot = slot_for(&db.url);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(62, HistoryConfig::realistic());
    let mut client = db.client;
    let mut findings = Vec::new();
    for (round, mode) in ["fast", "immediate"].into_iter().enumerate() {
        // A backlog the daemon is still streaming when the server goes away.
        write_history(&client, &transactions(&mut generator, 3_000)).await;
        // The harness commits asynchronously: flush the WAL, so a crash loses no
        // transaction the generator's model holds.
        client.batch_execute("CHECKPOINT").await.unwrap();
        let written = current_lsn(&client).await;
        let confirmed = confirmed_lsn(&client, &slot).await;
        eprintln!("round {round}: {mode} restart with WAL at {written}, confirmed {confirmed:?}");
        let forced =
            tokio::task::spawn_blocking(move || restart_postgres(mode, Duration::from_secs(20)))
                .await
                .unwrap();
        if forced {
            let finding = "a fast shutdown did not finish in 20 s while replytime streamed a \
                           backlog: the walsender waits for a confirmation of the WAL end, \
                           which replytime cannot give while its sink (the same server) \
                           refuses connections";
            eprintln!("FINDING: {finding}");
            findings.push(finding.to_string());
        }
        client = common::connect(&db.url).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        findings.extend(revive(
            &mut daemon,
            &db.url,
            &state,
            &[],
            &format!("during the {mode} restart"),
        ));
    }
    write_history(&client, &transactions(&mut generator, 200)).await;
    converge(&client, CONVERGE).await;
    wait_confirmed(&client, &slot, current_lsn(&client).await).await;
    findings.extend(revive(
        &mut daemon,
        &db.url,
        &state,
        &[],
        "after the restarts",
    ));
    assert!(findings.is_empty(), "converged, but: {findings:#?}");
    assert!(
        daemon.log_text().contains("reconnecting"),
        "the daemon reconnected:\n{}",
        daemon.log_text()
    );
}

fn sink_down_for() -> Duration {
    let seconds = std::env::var("REPLYTIME_DRILL_SINK_DOWN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

async fn sink_progress(client: &tokio_postgres::Client, slot: &str) -> Option<Lsn> {
    let row = client
        .query_opt(
            "SELECT lsn::text FROM replytime_progress WHERE slot = $1",
            &[&slot],
        )
        .await
        .ok()??;
    row.get::<_, String>(0).parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault drill: scripts/drills.sh"]
async fn drill_sink_unavailable() {
    let _serial = SERIAL.lock().await;
    let db = database().await;
    let slot = slot_for(&db.url);
    let port = common::cluster().port;
    let proxy = proxy::Proxy::start(port).await;
    let sink_url = proxy.url_for(&db.url, port);
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(
        &db.url,
        &dir.path().join("state"),
        &[("REPLYTIME_SINK_URL", &sink_url)],
    );
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(63, HistoryConfig::realistic());
    write_history(&db.client, &transactions(&mut generator, 100)).await;
    converge(&db.client, CONVERGE).await;

    let outage = sink_down_for();
    proxy.down();
    let before_anchor_commit = write_anchor(&db.client, "drill-sink-down").await;
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < outage {
        write_history(&db.client, &transactions(&mut generator, 20)).await;
        let confirmed = confirmed_lsn(&db.client, &slot).await.unwrap();
        let progress = sink_progress(&db.client, &slot).await;
        assert!(
            confirmed <= before_anchor_commit,
            "confirmed {confirmed} passed work committed after {before_anchor_commit} while the sink was down (sink progress {progress:?})"
        );
        assert!(progress.is_none_or(|p| p <= before_anchor_commit));
        checks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_running(&mut daemon);
    eprintln!(
        "sink down {:?}: {checks} checks, confirmed stayed ≤ {before_anchor_commit}",
        outage
    );
    proxy.up();
    let restored = Instant::now();
    converge(&db.client, CONVERGE).await;
    eprintln!(
        "converged {:.1} s after the sink came back",
        restored.elapsed().as_secs_f64()
    );
    wait_confirmed(&db.client, &slot, current_lsn(&db.client).await).await;
    assert_running(&mut daemon);
    assert!(daemon.log_text().contains("sink unavailable"));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault drill: scripts/drills.sh"]
async fn drill_network_cut_to_the_source() {
    let _serial = SERIAL.lock().await;
    let db = database().await;
    let port = common::cluster().port;
    let proxy = proxy::Proxy::start(port).await;
    let url = proxy.url_for(&db.url, port);
    let slot = slot_for(&url);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = [("REPLYTIME_METRICS_ADDR", metrics_addr.as_str())];
    let mut daemon = Daemon::spawn(&url, &state, &env);
    wait_streaming(&db.client, &url).await;
    let mut generator = Generator::new(64, HistoryConfig::realistic());
    let mut findings = Vec::new();
    for round in 0..4u64 {
        write_history(&db.client, &transactions(&mut generator, 1_500)).await;
        tokio::time::sleep(Duration::from_millis(100 + round * 150)).await;
        let confirmed = confirmed_lsn(&db.client, &slot).await;
        let live = proxy.live();
        if round == 3 {
            // The last cut lasts: new connections are refused for 5 s.
            proxy.down();
            tokio::time::sleep(Duration::from_secs(5)).await;
            proxy.up();
        } else {
            proxy.cut();
        }
        eprintln!("round {round}: cut {live} connections (confirmed {confirmed:?})");
        tokio::time::sleep(Duration::from_secs(2)).await;
        findings.extend(revive(
            &mut daemon,
            &url,
            &state,
            &env,
            &format!("after cut {round}"),
        ));
    }
    converge(&db.client, CONVERGE).await;
    wait_confirmed(&db.client, &slot, current_lsn(&db.client).await).await;
    findings.extend(revive(&mut daemon, &url, &state, &env, "after the cuts"));

    // Heartbeats (SPEC 5) and the slot checks run on the admin connection, which the
    // cut closed too: they must come back with the stream.
    let name = "replytime_heartbeat_freshness_seconds_count";
    let before = metric(&metrics(&metrics_addr).await, name).unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = metric(&metrics(&metrics_addr).await, name).unwrap_or(0.0);
    eprintln!(
        "heartbeats observed in 4 s after the cuts: {}",
        after - before
    );
    assert!(
        after > before,
        "no heartbeat after reconnecting: the admin connection (heartbeats, slot checks, \
         lag) is not re-opened after a cut"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "fault drill: scripts/drills.sh"]
async fn drill_disk_full_on_the_state_directory() {
    let _serial = SERIAL.lock().await;
    let Some(mount) = disk::Tmpfs::mount(64 << 20) else {
        eprintln!("SKIP drill_disk_full_on_the_state_directory: mount -t tmpfs not permitted here");
        return;
    };
    let db = database().await;
    let slot = slot_for(&db.url);
    let state = mount.path().join("state");
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    wait_streaming(&db.client, &db.url).await;
    let mut generator = Generator::new(65, HistoryConfig::realistic());
    write_history(&db.client, &transactions(&mut generator, 200)).await;
    converge(&db.client, CONVERGE).await;

    let used = mount.used_bytes();
    mount.resize(used + (512 << 10));
    eprintln!(
        "state tmpfs shrunk to {} KiB ({} KiB used)",
        (used + (512 << 10)) >> 10,
        used >> 10
    );
    // A full disk is a definite error (SPEC 5): the pipeline stops and the
    // process stays up, reporting it on /metrics and /readyz, until it is stopped.
    let started = Instant::now();
    loop {
        if let Some(status) = daemon.exited() {
            panic!(
                "the daemon exited ({status}) on a full disk instead of staying up to report it:\n{}",
                daemon.log_text()
            );
        }
        if daemon.log_text().contains(DEFINITE_ERROR) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the daemon kept streaming on a full disk for 5 min:\n{}",
            daemon.log_text()
        );
        write_history(&db.client, &transactions(&mut generator, 200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_running(&mut daemon);
    let status = daemon.stop();
    let log = daemon.log_text();
    let last_lines: Vec<&str> = log.lines().rev().take(3).collect();
    eprintln!(
        "pipeline stopped after {:.1} s, daemon stopped with {status}; last log lines: {last_lines:#?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        !status.success(),
        "a daemon stopped after a definite error exits non-zero"
    );

    // Room again: the durable state must cover what the slot confirmed.
    mount.resize(256 << 20);
    let confirmed = confirmed_lsn(&db.client, &slot).await.unwrap();
    let durable = durable_lsn(&db.url, &state);
    eprintln!("after the failure: slot confirmed {confirmed}, durable state {durable}");
    assert!(
        confirmed <= durable,
        "slot confirmed {confirmed} past the durable state {durable}"
    );
    let mut daemon = Daemon::spawn(&db.url, &state, &[]);
    write_history(&db.client, &transactions(&mut generator, 100)).await;
    converge(&db.client, CONVERGE).await;
    wait_confirmed(&db.client, &slot, current_lsn(&db.client).await).await;
    assert_running(&mut daemon);
    daemon.stop();
    // Checked last, so the recovery above is proven whatever this says.
    assert!(
        log.contains("No space left on device") && status.code().is_some(),
        "the daemon must stop with a clear error naming the full disk, not {status}:\n{}",
        last_lines.join("\n")
    );
}

/// The state's applied LSN, as `replytime status --json` reads it.
fn durable_lsn(url: &str, state: &std::path::Path) -> Lsn {
    let out = Command::new(env!("CARGO_BIN_EXE_replytime"))
        .args(["status", "--json"])
        .env("REPLYTIME_SOURCE_URL", url)
        .env("REPLYTIME_STATE_DIR", state)
        .env("REPLYTIME_SLOT", slot_for(url))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    status["durable_lsn"]
        .as_str()
        .unwrap_or_else(|| panic!("no durable_lsn in {status}"))
        .parse()
        .unwrap()
}
