//! In the sink task's place: the outbox read in batches and removed after a
//! sync, as after a sink commit, and the event log's retention, beside the
//! applying thread as in the daemon. Nothing is written anywhere else.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use replytime::change::Timestamp;
use replytime::config::Settings;
use replytime::lsn::Lsn;
use replytime::store::Store;

use super::cpu;

/// How long the outbox consumer sleeps when there is less than a batch to read.
const CONSUMER_POLL: Duration = Duration::from_millis(5);

/// How often the daemon starts an event-log trim (its slot check).
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// What the outbox consumer did.
#[derive(Default)]
pub struct Consumed {
    /// CPU seconds of its thread.
    pub cpu: f64,
    /// Batches delivered (each after a `Store::sync`), outbox entries and
    /// operations in them.
    pub batches: u64,
    pub entries: u64,
    pub ops: u64,
    /// Event-log entries the retention trimmed.
    pub trimmed: u64,
}

/// The sink task's work on the store, without the sink: reads the outbox in
/// batches of `sink_batch_ops` operations (a batch waits to fill while the daemon
/// is behind, as during a drain), syncs the store and removes what it read, as
/// after a sink commit; and the streaming loop's event-log trim every
/// [`TRIM_EVERY`], on this thread as on the daemon's blocking pool.
pub struct Consumer {
    /// End LSN of the state's last commit (the retention keeps the WAL span behind it).
    pub applied: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Consumed>,
}

impl Consumer {
    pub fn spawn(store: &Arc<Store>, settings: &Settings) -> Consumer {
        let applied = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (store, batch_ops) = (store.clone(), settings.sink_batch_ops);
        let (max_wal_bytes, retention) = (
            settings.event_log_max_bytes,
            chrono::Duration::hours(settings.event_log_retention_hours as i64),
        );
        let (applied_lsn, finished) = (applied.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let started = cpu::thread();
            let mut consumed = Consumed::default();
            let (mut last_read, mut last_seq, mut pending_ops) = (None, None, 0usize);
            let mut trimmed_at = Instant::now();
            loop {
                // Read `done` first: once set, an empty read is the end.
                let finishing = finished.load(Ordering::SeqCst);
                let entries = store
                    .read_outbox_after(last_read, batch_ops - pending_ops)
                    .expect("read the outbox");
                let read_nothing = entries.is_empty();
                for (seq, entry) in entries {
                    pending_ops += entry.ops.len();
                    consumed.entries += 1;
                    (last_read, last_seq) = (Some(seq), Some(seq));
                }
                let full = pending_ops >= batch_ops;
                if full || (finishing && read_nothing) {
                    if let Some(seq) = last_seq.take() {
                        store.sync().expect("sync the state");
                        store.remove_outbox_through(seq).expect("trim the outbox");
                        consumed.batches += 1;
                        consumed.ops += pending_ops as u64;
                        pending_ops = 0;
                    } else if finishing {
                        break;
                    }
                }
                if trimmed_at.elapsed() >= TRIM_EVERY {
                    trimmed_at = Instant::now();
                    let cutoff = Timestamp::from_chrono(chrono::Utc::now() - retention);
                    let applied = Lsn(applied_lsn.load(Ordering::SeqCst));
                    consumed.trimmed += store
                        .trim_event_log(cutoff, applied, max_wal_bytes)
                        .expect("trim the event log");
                }
                if !full && read_nothing && !finishing {
                    std::thread::sleep(CONSUMER_POLL);
                }
            }
            consumed.cpu = cpu::thread() - started;
            consumed
        });
        Consumer {
            applied,
            done,
            thread,
        }
    }

    /// Delivers what is left in the outbox and stops.
    pub fn finish(self) -> Consumed {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().expect("the outbox consumer")
    }
}
