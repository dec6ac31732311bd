//! Draining one WAL twice: `pg_recvlogical` (pgoutput into /dev/null, the reference
//! ceiling) and the real `replytime run` (decode → RocksDB → sink → confirmation).
//!
//! ```text
//!  daemon: initial load of nothing, stop ─▶ second slot for pg_recvlogical
//!    ─▶ generator traffic (realistic, committed while nobody reads)
//!    ─▶ pg_recvlogical --endpos=<WAL end>          (timed)
//!    ─▶ replytime run until confirmed_flush_lsn ≥ WAL end (timed)
//! ```
//!
//! Both slots start at the same point, so both read the same WAL. While each runs,
//! the walsender's CPU time is sampled from /proc: it tells whether the walsender
//! (decoding) or the consumer bounds the rate. The daemon's sink session (its
//! Postgres backend, `application_name = replytime-sink`) is read the same way: the
//! Postgres cost of the sink's writes, apart from the walsender's decoding.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use replytime::lsn::Lsn;
use replytime::workload::Generator;
use replytime::workload::sql::transaction_to_sql;

use crate::common;
use crate::machine;
use crate::support::{Daemon, confirmed_lsn, current_lsn, slot_for, wait_streaming};
use crate::tenths::{Stretch, Tenths};

/// How often the drain reads the daemon's applied position for its tenths:
/// each read renders its `/metrics` page, which should not weigh on what is
/// measured.
const TENTHS_EVERY: Duration = Duration::from_millis(200);

/// Source transactions per `batch_execute` round trip (each its own transaction).
const TXNS_PER_ROUND_TRIP: usize = 100;

pub struct Figures {
    pub changes: u64,
    pub transactions: u64,
    pub wal_bytes: u64,
    pub write_seconds: f64,
    pub recv_seconds: f64,
    pub recv_walsender_cpu: f64,
    pub replytime_seconds: f64,
    pub replytime_walsender_cpu: f64,
    pub replytime_daemon_cpu: f64,
    /// Of it, RocksDB's background threads (flushes and compactions).
    pub replytime_rocksdb_background_cpu: f64,
    /// The same threads' CPU 5.5 s after the drain: flushes and compactions the
    /// drain left behind it, outside the figures above.
    pub rocksdb_background_cpu_after: f64,
    pub replytime_sink_session_cpu: f64,
    /// WAL written from the end of the backlog to the moment the drain ended: the
    /// sink's writes (when it is in this cluster), the heartbeats, autovacuum.
    pub drain_wal_bytes: u64,
    /// The daemon's counters at the end of the drain.
    pub counters: DaemonCounters,
    /// The daemon's CPU per change along the drain, by the share of the backlog's
    /// WAL it had applied (its `replytime_lsn{kind="applied"}`, read every
    /// [`TENTHS_EVERY`]). The first stretch includes the daemon's start-up, the
    /// last one the sink's writes after the last change was applied.
    pub tenths: Vec<Stretch>,
}

/// Counters read from the daemon's `/metrics` when the drain ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonCounters {
    /// Anchors derived in full, and relabelled (their lead's new clientId only).
    pub derived: f64,
    pub relabelled: f64,
    /// Sink rows by result.
    pub upserted: f64,
    pub deleted: f64,
    pub unchanged: f64,
    /// Sink transactions (batches) committed, and the outbox operations they
    /// left out because a later one of the same anchor was in the same batch.
    pub batches: f64,
    pub coalesced: f64,
    /// Reads of the state: (label, count), from the read cache's lookups to
    /// RocksDB's block cache (`READS`).
    pub reads: [(&'static str, f64); READS.len()],
}

/// Read counters printed per change: (label, series in `/metrics`).
pub const READS: [(&str, &str); 23] = [
    (
        "read cache point hits",
        "replytime_read_cache_total{kind=\"point\",result=\"hit\"}",
    ),
    (
        "read cache point misses",
        "replytime_read_cache_total{kind=\"point\",result=\"miss\"}",
    ),
    (
        "read cache range hits",
        "replytime_read_cache_total{kind=\"range\",result=\"hit\"}",
    ),
    (
        "read cache range misses",
        "replytime_read_cache_total{kind=\"range\",result=\"miss\"}",
    ),
    (
        "read cache fills dropped",
        "replytime_read_cache_total{kind=\"any\",result=\"fill_dropped\"}",
    ),
    (
        "RocksDB gets (state)",
        "replytime_rocksdb_reads_total{kind=\"get\"}",
    ),
    (
        "RocksDB prefix seeks (state)",
        "replytime_rocksdb_reads_total{kind=\"prefix_seek\"}",
    ),
    (
        "RocksDB total-order seeks (state)",
        "replytime_rocksdb_reads_total{kind=\"seek\"}",
    ),
    (
        "RocksDB walks (state)",
        "replytime_rocksdb_reads_total{kind=\"walk\"}",
    ),
    (
        "RocksDB iterator seeks (all)",
        "replytime_rocksdb_events_total{event=\"iterator_seek\"}",
    ),
    (
        "block cache data hits",
        "replytime_rocksdb_events_total{event=\"block_cache_data_hit\"}",
    ),
    (
        "block cache data misses",
        "replytime_rocksdb_events_total{event=\"block_cache_data_miss\"}",
    ),
    (
        "block cache index hits",
        "replytime_rocksdb_events_total{event=\"block_cache_index_hit\"}",
    ),
    (
        "block cache index misses",
        "replytime_rocksdb_events_total{event=\"block_cache_index_miss\"}",
    ),
    (
        "block cache filter hits",
        "replytime_rocksdb_events_total{event=\"block_cache_filter_hit\"}",
    ),
    (
        "block cache filter misses",
        "replytime_rocksdb_events_total{event=\"block_cache_filter_miss\"}",
    ),
    (
        "gets found in a memtable",
        "replytime_rocksdb_events_total{event=\"get_memtable_hit\"}",
    ),
    (
        "gets found in L0",
        "replytime_rocksdb_events_total{event=\"get_l0_hit\"}",
    ),
    (
        "gets found in L1",
        "replytime_rocksdb_events_total{event=\"get_l1_hit\"}",
    ),
    (
        "gets found in L2 and up",
        "replytime_rocksdb_events_total{event=\"get_l2_and_up_hit\"}",
    ),
    (
        "prefix bloom checks",
        "replytime_rocksdb_events_total{event=\"bloom_prefix_checked\"}",
    ),
    (
        "compaction bytes read",
        "replytime_rocksdb_events_total{event=\"compaction_read_bytes\"}",
    ),
    (
        "compaction bytes written",
        "replytime_rocksdb_events_total{event=\"compaction_write_bytes\"}",
    ),
];

impl DaemonCounters {
    /// Scrapes `http://addr/metrics`; zeros when the daemon does not answer.
    pub fn scrape(addr: &str) -> DaemonCounters {
        let text = metrics_text(addr);
        let value = |series: &str| series_value(&text, series).unwrap_or(0.0);
        DaemonCounters {
            derived: value("replytime_anchors_refreshed_total{how=\"derived\"}"),
            relabelled: value("replytime_anchors_refreshed_total{how=\"relabelled\"}"),
            upserted: value("replytime_sink_rows_total{result=\"upserted\"}"),
            deleted: value("replytime_sink_rows_total{result=\"deleted\"}"),
            unchanged: value("replytime_sink_rows_total{result=\"unchanged\"}"),
            batches: value("replytime_sink_batch_seconds_count"),
            coalesced: value("replytime_sink_ops_coalesced_total"),
            reads: READS.map(|(label, series)| (label, value(series))),
        }
    }
}

/// The daemon's `/metrics` page; empty when it does not answer.
pub fn metrics_text(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut text = String::new();
    if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let _ = stream.read_to_string(&mut text);
    }
    text
}

/// The value of one series (name and labels, as printed) of a `/metrics` page.
fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// The WAL position the daemon has applied to its state (`replytime_lsn{kind="applied"}`).
fn applied_lsn(metrics_addr: &str) -> Option<Lsn> {
    let lsn = series_value(
        &metrics_text(metrics_addr),
        "replytime_lsn{kind=\"applied\"}",
    )?;
    Some(Lsn(lsn as u64))
}

/// What the sink table saw, from `pg_stat_user_tables` (flushed by the server at
/// most once a second).
#[derive(Clone, Copy, Default)]
pub struct SinkTableStats {
    pub inserted: i64,
    pub updated: i64,
    pub hot_updated: i64,
    pub deleted: i64,
}

impl SinkTableStats {
    pub async fn read(sink: &tokio_postgres::Client) -> SinkTableStats {
        let row = sink
            .query_one(
                "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables \
                 WHERE relname = 'ResponseTimingEvent'",
                &[],
            )
            .await
            .expect("sink table statistics");
        SinkTableStats {
            inserted: row.get(0),
            updated: row.get(1),
            hot_updated: row.get(2),
            deleted: row.get(3),
        }
    }
}

/// Runs the stage; returns the figures and the daemon, still streaming, caught up.
pub async fn run(
    db: &common::TestDb,
    sink: &tokio_postgres::Client,
    state: &std::path::Path,
    generator: &mut Generator,
    target_changes: u64,
    daemon_env: &[(&str, &str)],
    metrics_addr: &str,
) -> (Figures, Daemon) {
    let slot = slot_for(&db.url);
    let mut daemon = Daemon::spawn(&db.url, state, daemon_env);
    wait_streaming(&db.client, &db.url).await;
    assert!(daemon.stop().success(), "{}", daemon.log_text());

    let recv_slot = format!("{slot}_recv");
    db.client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&recv_slot],
        )
        .await
        .expect("create the pg_recvlogical slot");

    let start = current_lsn(&db.client).await;
    let written = Instant::now();
    let (changes, transactions) = write_changes(&db.client, generator, target_changes).await;
    let write_seconds = written.elapsed().as_secs_f64();
    let end = current_lsn(&db.client).await;
    eprintln!(
        "throughput: wrote {changes} row changes in {transactions} transactions ({write_seconds:.1} s), WAL {start}..{end}"
    );

    let (recv_seconds, recv_walsender_cpu) = drain_with_pg_recvlogical(db, &recv_slot, end).await;
    db.client
        .execute("SELECT pg_drop_replication_slot($1)", &[&recv_slot])
        .await
        .expect("drop the pg_recvlogical slot");
    eprintln!("throughput: pg_recvlogical drained it in {recv_seconds:.2} s");

    let started = Instant::now();
    let daemon = Daemon::spawn(&db.url, state, daemon_env);
    let mut tenths = Tenths::new(end.saturating_bytes_since(start), changes, 0.0);
    let mut sampled = Instant::now();
    let mut walsender_cpu = 0.0;
    loop {
        if let Some(cpu) = walsender_cpu_of(&db.client, &slot).await {
            walsender_cpu = cpu;
        }
        if sampled.elapsed() >= TENTHS_EVERY {
            sampled = Instant::now();
            if let Some(applied) = applied_lsn(metrics_addr) {
                tenths.reached(applied.saturating_bytes_since(start), || {
                    machine::cpu_seconds(daemon.child.id())
                });
            }
        }
        if confirmed_lsn(&db.client, &slot)
            .await
            .is_some_and(|c| c >= end)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "replytime did not drain the WAL within 30 min:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replytime_seconds = started.elapsed().as_secs_f64();
    let drained_at = current_lsn(&db.client).await;
    let replytime_daemon_cpu = machine::cpu_seconds(daemon.child.id()).unwrap_or(f64::NAN);
    let replytime_rocksdb_background_cpu =
        machine::threads_cpu_seconds(daemon.child.id(), "rocksdb:").unwrap_or(f64::NAN);
    // The state's read counters reach /metrics every 5 s: wait for the next
    // update (the daemon is idle meanwhile, but for heartbeats and compactions).
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let counters = DaemonCounters::scrape(metrics_addr);
    let rocksdb_background_cpu_after =
        machine::threads_cpu_seconds(daemon.child.id(), "rocksdb:").unwrap_or(f64::NAN);
    if let Some(cpu) = walsender_cpu_of(&db.client, &slot).await {
        walsender_cpu = cpu;
    }
    // The sink session lives as long as the daemon: read once, at the end.
    let sink_session_cpu = sink_session_cpu_of(sink).await.unwrap_or(f64::NAN);
    eprintln!("throughput: replytime drained it in {replytime_seconds:.2} s");
    let figures = Figures {
        changes,
        transactions,
        wal_bytes: end.saturating_bytes_since(start),
        write_seconds,
        recv_seconds,
        recv_walsender_cpu,
        replytime_seconds,
        replytime_walsender_cpu: walsender_cpu,
        replytime_daemon_cpu,
        replytime_rocksdb_background_cpu,
        rocksdb_background_cpu_after,
        replytime_sink_session_cpu: sink_session_cpu,
        drain_wal_bytes: drained_at.saturating_bytes_since(end),
        counters,
        tenths: tenths.finish(replytime_daemon_cpu),
    };
    (figures, daemon)
}

/// Writes generator transactions until `target` row changes; returns (changes,
/// transactions).
pub async fn write_changes(
    client: &tokio_postgres::Client,
    generator: &mut Generator,
    target: u64,
) -> (u64, u64) {
    let (mut changes, mut transactions) = (0u64, 0u64);
    while changes < target {
        let mut script = String::new();
        for _ in 0..TXNS_PER_ROUND_TRIP {
            let txn = generator.next_transaction();
            changes += txn.len() as u64;
            transactions += 1;
            script.push_str(&transaction_to_sql(&txn));
            if changes >= target {
                break;
            }
        }
        client
            .batch_execute(&script)
            .await
            .unwrap_or_else(|e| panic!("writing generated traffic: {e:?}"));
    }
    (changes, transactions)
}

/// CPU seconds of the walsender serving `slot`, while one does.
async fn walsender_cpu_of(client: &tokio_postgres::Client, slot: &str) -> Option<f64> {
    let row = client
        .query_opt(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()??;
    let pid: Option<i32> = row.get(0);
    machine::cpu_seconds(u32::try_from(pid?).ok()?)
}

/// CPU seconds of the daemon's sink session (its Postgres backend) in this
/// database, while it has one.
async fn sink_session_cpu_of(client: &tokio_postgres::Client) -> Option<f64> {
    let row = client
        .query_opt(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = 'replytime-sink' AND datname = current_database() \
             ORDER BY backend_start DESC LIMIT 1",
            &[],
        )
        .await
        .ok()??;
    let pid: Option<i32> = row.get(0);
    machine::cpu_seconds(u32::try_from(pid?).ok()?)
}

/// Runs pg_recvlogical from the slot up to `end`; returns (seconds, walsender CPU).
async fn drain_with_pg_recvlogical(db: &common::TestDb, slot: &str, end: Lsn) -> (f64, f64) {
    let cluster = common::cluster();
    let started = Instant::now();
    let mut child = Command::new(cluster.bindir.join("pg_recvlogical"))
        .args(["-h", "127.0.0.1", "-U", "postgres", "--no-loop", "--start"])
        .args(["-p", &cluster.port.to_string(), "-d", &db.name, "-S", slot])
        .args(["-o", "proto_version=1", "-o", "publication_names=replytime"])
        .args(["-E", &end.to_string(), "-f", "/dev/null"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start pg_recvlogical");
    let mut walsender_cpu = 0.0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pg_recvlogical") {
            break status;
        }
        if let Some(cpu) = walsender_cpu_of(&db.client, slot).await {
            walsender_cpu = cpu;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "pg_recvlogical failed: {status}");
    (seconds, walsender_cpu)
}
