//! Prometheus metrics, defined once. Names follow Prometheus conventions (`_total`
//! counters, base units: seconds and bytes).

use std::collections::HashMap;
use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Counters of one application, for metrics.
#[derive(Clone, Debug, Default)]
pub struct ApplyStats {
    /// Changes applied, by (table, operation) label.
    pub changes: HashMap<(&'static str, &'static str), u64>,
    pub unknown_direction: u64,
    pub upserts: u64,
    pub deletes: u64,
    /// Anchors derived in full from the state (their thread, draft, sends, job).
    pub derived: u64,
    /// Anchors that took their lead's new `clientId` without a derivation.
    pub relabelled: u64,
    pub delay_mismatch: u64,
    /// Rows upserted with a new setter or AI response time: (channel, is_ai, seconds).
    pub response_seconds: Vec<(String, bool, f64)>,
}

impl ApplyStats {
    pub fn merge(&mut self, other: ApplyStats) {
        for (k, v) in other.changes {
            *self.changes.entry(k).or_default() += v;
        }
        self.unknown_direction += other.unknown_direction;
        self.upserts += other.upserts;
        self.deletes += other.deletes;
        self.derived += other.derived;
        self.relabelled += other.relabelled;
        self.delay_mismatch += other.delay_mismatch;
        self.response_seconds.extend(other.response_seconds);
    }
}

/// The `reason` labels of `replytime_held_anchors`.
pub(crate) const HELD_REASONS: [&str; 2] = ["lead_missing", "no_client"];

pub struct Metrics {
    pub registry: Registry,
    pub lag_bytes: IntGauge,
    pub lag_seconds: Gauge,
    pub slot_retained_wal_bytes: IntGauge,
    pub slot_wal_status: IntGaugeVec,
    pub lsn: IntGaugeVec,
    pub changes: IntCounterVec,
    pub anchors_upserted: IntCounter,
    pub anchors_deleted: IntCounter,
    pub anchors_refreshed: IntCounterVec,
    pub sink_batch_seconds: Histogram,
    pub state_sync_seconds: Histogram,
    pub delivery_age_seconds: HistogramVec,
    pub sink_rows_written: IntCounterVec,
    pub sink_ops_coalesced: IntCounter,
    pub outbox_pending: IntGauge,
    pub errors: IntCounterVec,
    pub response_seconds: HistogramVec,
    pub held_anchors: IntGaugeVec,
    pub quarantined: IntCounter,
    pub unknown_direction: IntCounter,
    pub delay_mismatch: IntCounter,
    pub heartbeat_freshness_seconds: Histogram,
    pub last_progress_seconds: Gauge,
    pub initial_load_rows: IntCounter,
    pub ready: IntGauge,
    pub state_bytes: IntGauge,
    pub state_memory_bytes: IntGaugeVec,
    pub read_cache: IntCounterVec,
    pub rocksdb_reads: IntCounterVec,
    pub rocksdb_events: IntCounterVec,
    pub source_up: IntGauge,
    pub sink_up: IntGauge,
    pub build_info: IntGaugeVec,
    pub fatal_error: IntGaugeVec,
}

/// The `kind` label values of `replytime_errors_total`, all present from the start.
pub(crate) const ERROR_KINDS: &[&str] = &["source", "sink"];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

macro_rules! register {
    ($registry:expr, $metric:expr) => {{
        let m = $metric.expect("metric definitions are valid");
        $registry
            .register(Box::new(m.clone()))
            .expect("metric names are unique");
        m
    }};
}

const RESPONSE_BUCKETS: &[f64] = &[
    5.0, 30.0, 60.0, 180.0, 300.0, 420.0, 900.0, 3600.0, 14400.0, 86400.0,
];

/// Buckets of `replytime_delivery_age_seconds`: fine below a second, where live
/// traffic is, coarse beyond (a drained backlog).
const DELIVERY_AGE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 10.0,
    60.0, 600.0, 3600.0,
];

/// The `stage` labels of `replytime_delivery_age_seconds`, in delivery order.
pub const DELIVERY_STAGES: [&str; 5] = [
    "received",
    "applied",
    "batch_started",
    "state_synced",
    "sink_committed",
];

/// Moves a counter up to `total`, a count kept elsewhere since the process started.
pub fn set_counter(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            lag_bytes: register!(
                r,
                IntGauge::with_opts(opts(
                    "replytime_replication_lag_bytes",
                    "WAL bytes between the server's current position and the last applied transaction"
                ))
            ),
            lag_seconds: register!(
                r,
                Gauge::with_opts(opts(
                    "replytime_replication_lag_seconds",
                    "Seconds between now and the commit time of the oldest unapplied change (0 when caught up)"
                ))
            ),
            slot_retained_wal_bytes: register!(
                r,
                IntGauge::with_opts(opts(
                    "replytime_slot_retained_wal_bytes",
                    "WAL bytes the replication slot keeps on the server (current LSN - restart_lsn)"
                ))
            ),
            slot_wal_status: register!(
                r,
                IntGaugeVec::new(
                    opts(
                        "replytime_slot_wal_status",
                        "1 for the slot's current wal_status (reserved, extended, unreserved, lost)"
                    ),
                    &["status"]
                )
            ),
            lsn: register!(
                r,
                IntGaugeVec::new(
                    opts(
                        "replytime_lsn",
                        "WAL positions as numbers: received, applied, durable, confirmed, sink"
                    ),
                    &["kind"]
                )
            ),
            changes: register!(
                r,
                IntCounterVec::new(
                    opts(
                        "replytime_changes_total",
                        "Source row changes applied, by table and operation"
                    ),
                    &["table", "operation"]
                )
            ),
            anchors_upserted: register!(
                r,
                IntCounter::with_opts(opts(
                    "replytime_anchors_upserted_total",
                    "Anchor rows upserted (content changed)"
                ))
            ),
            anchors_deleted: register!(
                r,
                IntCounter::with_opts(opts(
                    "replytime_anchors_deleted_total",
                    "Anchor rows deleted (no longer anchors)"
                ))
            ),
            anchors_refreshed: register!(
                r,
                IntCounterVec::new(
                    opts(
                        "replytime_anchors_refreshed_total",
                        "Anchors brought up to date, by how: derived (from the state) or \
                         relabelled (their lead's new clientId only)"
                    ),
                    &["how"]
                )
            ),
            sink_batch_seconds: register!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "replytime_sink_batch_seconds",
                        "Duration of one sink transaction"
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
                    ])
                )
            ),
            state_sync_seconds: register!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "replytime_state_sync_seconds",
                        "Duration of the RocksDB WAL fsync that precedes each sink transaction"
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0
                    ])
                )
            ),
            delivery_age_seconds: register!(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "replytime_delivery_age_seconds",
                        "Seconds from a source transaction's commit (the source server's clock) \
                         to a stage of its delivery, on the daemon's clock: received (its commit \
                         message read from the stream), applied (its group committed to the state; \
                         the group's oldest transaction), and per sink batch, for the batch's \
                         oldest transaction: batch_started, state_synced, sink_committed"
                    )
                    .buckets(DELIVERY_AGE_BUCKETS.to_vec()),
                    &["stage"]
                )
            ),
            sink_rows_written: register!(
                r,
                IntCounterVec::new(
                    opts(
                        "replytime_sink_rows_total",
                        "Rows written to the sink, by result (upserted, deleted, unchanged)"
                    ),
                    &["result"]
                )
            ),
            sink_ops_coalesced: register!(
                r,
                IntCounter::with_opts(opts(
                    "replytime_sink_ops_coalesced_total",
                    "Outbox operations not sent to the sink because a later operation of the same anchor was in the same sink transaction"
                ))
            ),
            outbox_pending: register!(
                r,
                IntGauge::with_opts(opts(
                    "replytime_outbox_pending",
                    "Outbox entries durable in RocksDB but not yet committed to the sink"
                ))
            ),
            errors: register!(
                r,
                IntCounterVec::new(opts("replytime_errors_total", "Errors by kind"), &["kind"])
            ),
            response_seconds: register!(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "replytime_response_seconds",
                        "Response time of anchors as derived, by channel and responder (setter, ai)"
                    )
                    .buckets(RESPONSE_BUCKETS.to_vec()),
                    &["channel", "responder"]
                )
            ),
            held_anchors: register!(
                r,
                IntGaugeVec::new(
                    opts(
                        "replytime_held_anchors",
                        "Anchors whose rows are held back, by reason: lead_missing (no \"Lead\" row yet) or no_client (the lead's clientId is NULL)"
                    ),
                    &["reason"]
                )
            ),
            quarantined: register!(
                r,
                IntCounter::with_opts(opts(
                    "replytime_quarantined_rows_total",
                    "Row changes that could not be placed and were quarantined"
                ))
            ),
            unknown_direction: register!(
                r,
                IntCounter::with_opts(opts(
                    "replytime_unknown_direction_total",
                    "Messages written with a direction other than inbound/outbound"
                ))
            ),
            delay_mismatch: register!(
                r,
                IntCounter::with_opts(opts(
                    "replytime_delay_mismatch_total",
                    "Anchors whose job runAt differs from the chosen delay by more than 1 s"
                ))
            ),
            heartbeat_freshness_seconds: register!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "replytime_heartbeat_freshness_seconds",
                        "Heartbeat emit to receipt, end to end through the slot"
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                    ])
                )
            ),
            last_progress_seconds: register!(
                r,
                Gauge::with_opts(opts(
                    "replytime_last_progress_timestamp_seconds",
                    "Unix time of the last confirmed LSN advance"
                ))
            ),
            initial_load_rows: register!(
                r,
                IntCounter::with_opts(opts(
                    "replytime_initial_load_rows_total",
                    "Rows copied by the initial load or backfill"
                ))
            ),
            ready: register!(
                r,
                IntGauge::with_opts(opts(
                    "replytime_ready",
                    "1 when streaming with a reachable sink, 0 during the initial load or while the sink is unreachable"
                ))
            ),
            state_bytes: register!(
                r,
                IntGauge::with_opts(opts(
                    "replytime_state_bytes",
                    "Approximate size of the RocksDB state"
                ))
            ),
            state_memory_bytes: register!(
                r,
                IntGaugeVec::new(
                    opts(
                        "replytime_state_memory_bytes",
                        "Memory of the state, by kind: RocksDB's memtables, block_cache (data, index and filter blocks), block_cache_pinned and table_readers, and replytime's read_cache"
                    ),
                    &["kind"]
                )
            ),
            read_cache: register!(
                r,
                IntCounterVec::new(
                    opts(
                        "replytime_read_cache_total",
                        "Lookups of the state's read cache, by kind (point, range) and result (hit, miss); fills read from RocksDB and dropped because a commit came in between (any, fill_dropped)"
                    ),
                    &["kind", "result"]
                )
            ),
            rocksdb_reads: register!(
                r,
                IntCounterVec::new(
                    opts(
                        "replytime_rocksdb_reads_total",
                        "Reads of the derivation state that reached RocksDB, by kind: get, prefix_seek, seek (total order: a backward window from the end of a prefix cached in part), walk (not cached)"
                    ),
                    &["kind"]
                )
            ),
            rocksdb_events: register!(
                r,
                IntCounterVec::new(
                    opts(
                        "replytime_rocksdb_events_total",
                        "RocksDB statistics tickers: block cache hits and misses by block kind, bloom filter probes, point reads by where they were found, iterator seeks and steps, compaction bytes"
                    ),
                    &["event"]
                )
            ),
            source_up: register!(
                r,
                IntGauge::with_opts(opts(
                    "replytime_source_up",
                    "1 when the health poller's last query of the source succeeded"
                ))
            ),
            sink_up: register!(
                r,
                IntGauge::with_opts(opts(
                    "replytime_sink_up",
                    "1 when the health poller's last query of the sink succeeded"
                ))
            ),
            build_info: register!(
                r,
                IntGaugeVec::new(
                    opts("replytime_build_info", "Always 1: the running replytime's version"),
                    &["version"]
                )
            ),
            fatal_error: register!(
                r,
                IntGaugeVec::new(
                    opts(
                        "replytime_fatal_error",
                        "1 while the pipeline is stopped by a definite error of this kind (the process keeps serving until it is stopped)"
                    ),
                    &["kind"]
                )
            ),
            registry: r,
        }
        .with_every_label()
    }

    /// Registers the process collector (RSS, CPU, open fds) and creates every
    /// labelled child alerts read, at 0, so a series exists before its first event.
    fn with_every_label(self) -> Metrics {
        #[cfg(target_os = "linux")]
        self.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for kind in ERROR_KINDS {
            self.errors.with_label_values(&[kind]);
        }
        for reason in HELD_REASONS {
            self.held_anchors.with_label_values(&[reason]);
        }
        for stage in DELIVERY_STAGES {
            self.delivery_age_seconds.with_label_values(&[stage]);
        }
        for kind in super::health::FATAL_KINDS {
            self.fatal_error.with_label_values(&[kind]);
        }
        self.set_wal_status("");
        self
    }

    pub(crate) fn record_apply(&self, stats: &ApplyStats) {
        for ((table, op), n) in &stats.changes {
            self.changes.with_label_values(&[*table, *op]).inc_by(*n);
        }
        self.anchors_upserted.inc_by(stats.upserts);
        self.anchors_deleted.inc_by(stats.deletes);
        self.anchors_refreshed
            .with_label_values(&["derived"])
            .inc_by(stats.derived);
        self.anchors_refreshed
            .with_label_values(&["relabelled"])
            .inc_by(stats.relabelled);
        self.unknown_direction.inc_by(stats.unknown_direction);
        self.delay_mismatch.inc_by(stats.delay_mismatch);
        for (channel, is_ai, seconds) in &stats.response_seconds {
            let responder = if *is_ai { "ai" } else { "setter" };
            self.response_seconds
                .with_label_values(&[channel, responder])
                .observe(*seconds);
        }
    }

    /// Records that a transaction committed at `commit` (µs since the Unix epoch,
    /// the source server's clock) reached `stage` (one of [`DELIVERY_STAGES`]) now.
    pub(crate) fn observe_delivery_age(&self, stage: &str, commit: i64) {
        let now = chrono::Utc::now().timestamp_micros();
        self.delivery_age_seconds
            .with_label_values(&[stage])
            .observe((now - commit).max(0) as f64 / 1e6);
    }

    pub(crate) fn set_lsn(&self, kind: &str, lsn: crate::lsn::Lsn) {
        self.lsn.with_label_values(&[kind]).set(lsn.0 as i64);
    }

    pub fn set_wal_status(&self, status: &str) {
        for s in ["reserved", "extended", "unreserved", "lost"] {
            self.slot_wal_status
                .with_label_values(&[s])
                .set(i64::from(s == status));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("exposition is utf-8")
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
