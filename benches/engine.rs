//! Cost per applied change of the engine over a real RocksDB (SPEC 3–4: O(log n) in
//! the thread length, independent of the number of threads).
//!
//! Each iteration applies two one-change transactions to a prepared store: a
//! back-dated outbound message inserted in the middle of a thread, then its delete,
//! so the state is the same before every iteration. Printed at the end: time per
//! change and the ratio to the smallest case, measured in the same run.
//!
//! `cargo bench --bench engine` (set `REPLYTIME_BENCH_BIG_THREADS=100000` to shorten
//! the 1,000,000-thread setup on a slow machine).

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group};
use replytime::change::{Change, LeadRow, MessageRow, Row, Table, Timestamp, TxnMeta};
use replytime::engine::{Engine, EngineOptions};
use replytime::lsn::Lsn;
use replytime::store::{Store, StoreOptions};

struct Prepared {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    engine: Engine,
    lsn: u64,
    probe_lead: String,
    probe_at: i64,
}

fn message(id: String, lead: &str, inbound: bool, at: i64) -> Change {
    Change::Insert(Row::Message(MessageRow {
        id,
        lead_id: Some(lead.to_string()),
        channel: Some("sms".into()),
        direction: Some(if inbound { "inbound" } else { "outbound" }.into()),
        sent_by: Some("setter".into()),
        sent_by_user_id: Some("u".into()),
        ai_draft_id: None,
        sent_at: Some(Timestamp(at)),
    }))
}

impl Prepared {
    /// `threads` threads of `length` alternating inbound/outbound messages.
    fn new(threads: usize, length: usize) -> Prepared {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreOptions::default()).unwrap());
        let mut engine = Engine::new(
            store.clone(),
            EngineOptions {
                log_events: false,
                ..EngineOptions::default()
            },
        );
        let mut lsn = 0x100u64;
        let mut batch = Vec::new();
        for t in 0..threads {
            let lead = format!("lead{t:07}");
            batch.push(Change::Insert(Row::Lead(LeadRow {
                id: lead.clone(),
                client_id: Some("c".into()),
                email_campaign_id: None,
            })));
            for i in 0..length {
                batch.push(message(
                    format!("m{t:07}-{i:06}"),
                    &lead,
                    i % 2 == 0,
                    (i as i64) * 1_000_000,
                ));
            }
            if batch.len() >= 20_000 || t + 1 == threads {
                lsn += 0x100;
                let meta = TxnMeta {
                    commit_lsn: Lsn(lsn),
                    end_lsn: Lsn(lsn + 1),
                    commit_time: Timestamp(0),
                };
                engine.apply(meta.commit_lsn, batch.drain(..)).unwrap();
                engine.commit(&meta).unwrap();
                engine.flush().unwrap();
                drain(&store);
            }
        }
        Prepared {
            _dir: dir,
            engine,
            store,
            lsn,
            probe_lead: format!("lead{:07}", threads / 2),
            probe_at: (length as i64 / 2) * 1_000_000 + 500_000,
        }
    }

    fn apply(&mut self, change: Change) {
        self.lsn += 0x100;
        let meta = TxnMeta {
            commit_lsn: Lsn(self.lsn),
            end_lsn: Lsn(self.lsn + 1),
            commit_time: Timestamp(0),
        };
        self.engine.apply(meta.commit_lsn, [change]).unwrap();
        self.engine.commit(&meta).unwrap();
        self.engine.flush().unwrap();
    }

    /// One insert in the middle of the probe thread and its delete: two changes.
    fn round_trip(&mut self) {
        let lead = self.probe_lead.clone();
        self.apply(message("probe".into(), &lead, false, self.probe_at));
        self.apply(Change::Delete {
            table: Table::Message,
            id: "probe".into(),
        });
        drain(&self.store);
    }
}

fn drain(store: &Store) {
    let entries = store.read_outbox(usize::MAX).unwrap();
    if let Some((last, _)) = entries.last() {
        store.remove_outbox_through(*last).unwrap();
    }
}

fn big_threads() -> usize {
    std::env::var("REPLYTIME_BENCH_BIG_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn thread_length(c: &mut Criterion) {
    let mut group = c.benchmark_group("thread_length");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    for length in [10usize, 1_000, 100_000] {
        let mut prepared = Prepared::new(1, length);
        group.bench_with_input(BenchmarkId::from_parameter(length), &length, |b, _| {
            b.iter(|| prepared.round_trip())
        });
    }
    group.finish();
}

fn thread_count(c: &mut Criterion) {
    let mut group = c.benchmark_group("thread_count");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    for threads in [10usize, big_threads()] {
        let mut prepared = Prepared::new(threads, 2);
        group.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, _| {
            b.iter(|| prepared.round_trip())
        });
    }
    group.finish();
}

/// Reads criterion's point estimate (ns per iteration) of one benchmark.
fn estimate_ns(group: &str, id: &str) -> Option<f64> {
    let path = format!("target/criterion/{group}/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn print_ratios() {
    println!("\ncost per applied change (median; each iteration = 2 changes)");
    let rows: Vec<(&str, Vec<String>)> = vec![
        (
            "thread_length",
            vec!["10".into(), "1000".into(), "100000".into()],
        ),
        ("thread_count", vec!["10".into(), big_threads().to_string()]),
    ];
    for (group, ids) in rows {
        let base = estimate_ns(group, &ids[0]);
        for id in &ids {
            if let (Some(ns), Some(base)) = (estimate_ns(group, id), base) {
                println!(
                    "  {group:<14} {id:>8}: {:>8.1} µs/change   ratio {:.2}",
                    ns / 2_000.0,
                    ns / base
                );
            }
        }
    }
}

criterion_group!(benches, thread_length, thread_count);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
}
