//! The state store: one RocksDB database holding everything replytime must not lose.
//!
//! ```text
//!  column family   key                                   value
//!  ─────────────   ───                                   ─────
//!  meta            name (utf-8)                          little records (applied LSN, counters, version)
//!  outbox          seq u64 BE                            OutboxEntry: sink ops not yet committed to the sink
//!  event_log       commit LSN u64 BE ++ seq u32 BE       decoded changes from seq on (u32::MAX: the TxnMeta)
//!  quarantine      commit LSN u64 BE ++ seq u32 BE       a row that could not be placed, with the reason
//!  the engine's    see `engine::keys`                    the derivation state (rows, threads, anchors)
//! ```
//!
//! Every unit of work is one [`StoreTxn`] committed as one RocksDB write batch: reads
//! see the unit's own writes (key walks included), and state, outbox entries and the
//! applied LSN commit atomically. Commits are not synced one by one; the pipeline
//! calls [`Store::sync`] once before it makes anything depend on durability (a sink
//! commit, a confirmation to the slot), which is where the fsync pays for a batch.
//!
//! One process owns a state directory: RocksDB's `LOCK` file refuses a second opener.

mod cache;
mod compaction_stats;
mod composition;
mod event_log;
mod outbox;
mod quarantine;
mod txn;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBWithThreadMode, Options, SingleThreaded,
};
use serde::{Serialize, de::DeserializeOwned};

pub use composition::{FamilySize, StateComposition};
pub use event_log::LoggedTxn;
pub use outbox::OutboxEntry;
pub use quarantine::QuarantineRecord;
pub(crate) use txn::PendingWrites;
pub use txn::StoreTxn;

use crate::lsn::Lsn;

/// Version of the key layout and record formats. A mismatch is refused at open.
pub(crate) const STATE_VERSION: u32 = 1;

pub(crate) type Db = DBWithThreadMode<SingleThreaded>;

/// Column families. The engine owns the layout of its own families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cf {
    Meta,
    Outbox,
    EventLog,
    Quarantine,
    Messages,
    Thread,
    Inbound,
    Setter,
    AiSend,
    Drafts,
    DraftTrigger,
    Jobs,
    JobIndex,
    JobDelay,
    Leads,
    Campaigns,
    Anchors,
    LeadAnchors,
    Dirty,
    /// Held anchors by inbound message id: why each is held (one byte, see
    /// `engine::anchor::HeldReason`).
    Held,
}

/// The RocksDB column families the logical families live in. Few physical families
/// keep memtable memory bounded and opening cheap; each logical family owns a
/// one-byte key prefix (its tag) inside its physical one.
pub(crate) const PHYSICAL: [&str; 4] = ["state", "outbox", "event_log", "meta"];

/// Index in [`PHYSICAL`] of the engine's family, the one the read cache serves.
pub(crate) const STATE: usize = 0;

impl Cf {
    /// (physical column family, tag byte prefixed to every key).
    pub(crate) fn physical(self) -> (&'static str, u8) {
        (PHYSICAL[self.physical_index()], self as u8)
    }

    /// Index of the physical column family in [`PHYSICAL`].
    pub(crate) fn physical_index(self) -> usize {
        match self {
            Cf::Outbox => 1,
            Cf::EventLog => 2,
            Cf::Meta | Cf::Quarantine => 3,
            _ => 0,
        }
    }

    pub const ALL: [Cf; 20] = [
        Cf::Meta,
        Cf::Outbox,
        Cf::EventLog,
        Cf::Quarantine,
        Cf::Messages,
        Cf::Thread,
        Cf::Inbound,
        Cf::Setter,
        Cf::AiSend,
        Cf::Drafts,
        Cf::DraftTrigger,
        Cf::Jobs,
        Cf::JobIndex,
        Cf::JobDelay,
        Cf::Leads,
        Cf::Campaigns,
        Cf::Anchors,
        Cf::LeadAnchors,
        Cf::Dirty,
        Cf::Held,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Outbox => "outbox",
            Cf::EventLog => "event_log",
            Cf::Quarantine => "quarantine",
            Cf::Messages => "messages",
            Cf::Thread => "thread",
            Cf::Inbound => "inbound",
            Cf::Setter => "setter",
            Cf::AiSend => "ai_send",
            Cf::Drafts => "drafts",
            Cf::DraftTrigger => "draft_trigger",
            Cf::Jobs => "jobs",
            Cf::JobIndex => "job_index",
            Cf::JobDelay => "job_delay",
            Cf::Leads => "leads",
            Cf::Campaigns => "campaigns",
            Cf::Anchors => "anchors",
            Cf::LeadAnchors => "lead_anchors",
            Cf::Dirty => "dirty",
            Cf::Held => "held",
        }
    }
}

/// Meta keys.
pub(crate) mod meta {
    pub(crate) const VERSION: &[u8] = b"state_version";
    pub(crate) const APPLIED_LSN: &[u8] = b"applied_lsn";
    pub(crate) const HELD_ANCHORS: &[u8] = b"held_anchors";
    /// Of the held anchors, those whose lead exists with a NULL `clientId`.
    pub(crate) const HELD_NO_CLIENT: &[u8] = b"held_no_client";
    pub(crate) const SYSTEM_ID: &[u8] = b"system_id";
    pub(crate) const INITIAL_LOAD_DONE: &[u8] = b"initial_load_done";
    /// An initial load let the sink task deliver while it derived, and has not
    /// finished: the sink may hold rows of that load's snapshot.
    pub(crate) const LOAD_WROTE_SINK: &[u8] = b"load_wrote_sink";
    /// This state's random identity: the same id is the same writer (a restarted
    /// pod on the same volume), another id is another writer.
    pub(crate) const STATE_ID: &[u8] = b"state_id";
    /// The replication slot this state created (`pipeline::ownership::SlotOwner`),
    /// written and synced before the slot is created.
    pub(crate) const SLOT_OWNER: &[u8] = b"slot_owner";
    /// Commit LSN below which the event log was trimmed (`store::event_log`).
    pub(crate) const EVENT_LOG_FLOOR: &[u8] = b"event_log_floor";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb error in {path}: {source}")]
    RocksDb {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error(
        "state directory {path} is locked by another process (is another replytime running?): {source}"
    )]
    Locked {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error(
        "state directory {path} has state version {found}, this replytime needs {expected}: run `replytime rebuild` after `backfill`, or use the matching release"
    )]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "state directory {path} failed earlier ({first}); replytime stops without writing to it again. Is the disk full? Free space and restart: the state resumes from its last durable point, and nothing past it was confirmed"
    )]
    Failed { path: PathBuf, first: String },
    #[error("corrupt record in column family {cf}: {reason}")]
    Corrupt { cf: &'static str, reason: String },
}

/// Tuning that bounds memory: RocksDB's block cache and write buffers, and the
/// read cache in front of RocksDB (`cache.rs`).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
    pub read_cache_bytes: usize,
}

impl Default for StoreOptions {
    /// The cache sizes of the settings' defaults (`block_cache_bytes`,
    /// `read_cache_bytes`: declared once, in config.rs).
    fn default() -> Self {
        StoreOptions::for_settings(&crate::config::Settings::default())
    }
}

impl StoreOptions {
    /// The operator's cache sizes: every store a command opens (the daemon's, a
    /// dry run's scratch one) stays within the memory they set.
    pub fn for_settings(settings: &crate::config::Settings) -> Self {
        StoreOptions {
            block_cache_bytes: settings.block_cache_bytes,
            write_buffer_bytes: 48 << 20,
            read_cache_bytes: settings.read_cache_bytes,
        }
    }
}

pub struct Store {
    /// Closed on drop, unless RocksDB failed (see `Drop for Store`).
    db: std::mem::ManuallyDrop<Db>,
    path: PathBuf,
    next_outbox_seq: AtomicU64,
    /// First outbox sequence number that may still exist: reads seek here instead
    /// of stepping over the tombstones of removed entries.
    outbox_head: AtomicU64,
    /// Commit LSNs below this were trimmed from the event log: its entries there
    /// are gone or going, and every read of the log starts here. Persisted in
    /// [`meta::EVENT_LOG_FLOOR`].
    event_log_floor: AtomicU64,
    /// The first RocksDB error: after one, RocksDB is not asked to sync or commit
    /// again (a failed WAL write, e.g. on a full disk, leaves it in a state where
    /// a later `flush_wal` trips an assertion in some builds and aborts).
    failed: std::sync::OnceLock<String>,
    /// Commits and WAL syncs never overlap, so a sync never runs on a WAL writer
    /// whose last write failed before that failure was recorded in `failed`.
    write_gate: std::sync::Mutex<()>,
    /// Committed state of the `state` family, in front of RocksDB (`cache.rs`).
    cache: std::sync::Mutex<cache::StateCache>,
    read_cache_bytes: u64,
    /// Reads of the `state` family that reached RocksDB, by [`RocksDbRead`].
    rocksdb_reads: [AtomicU64; RocksDbRead::ALL.len()],
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.failed.get().is_none() {
            self.log_state_reads();
            self.log_read_cache_holdings();
            self.log_compaction_stats();
            // SAFETY: `db` is dropped exactly once, here, and never used after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.db) }
        }
        // After a failure, closing would flush the WAL writer that failed, which
        // aborts the process in builds with assertions (Debian's librocksdb). The
        // handle is leaked instead: the process is about to exit with the error,
        // and the WAL on disk holds every commit that succeeded.
    }
}

impl Store {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| StoreError::Corrupt {
            cf: "directory",
            reason: format!("cannot create {}: {e}", path.display()),
        })?;
        let cache = Cache::new_lru_cache(options.block_cache_bytes).map_err(|source| {
            StoreError::RocksDb {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks live in the block cache, so memory stays within
        // the cache as the state grows (outside it they grow with the data: about
        // 1.5 bytes per key). Partitioned into small blocks, only the hot
        // partitions compete with data blocks for the cache; the top-level index
        // of each file stays pinned.
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_format_version(5);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        // The WAL holds every family's writes; when it passes this size, the
        // families behind its oldest file flush. Above what the state's write
        // buffer fills with meanwhile, so the state flushes when its buffer is
        // full, not earlier (the outbox and meta flush here).
        db_opts.set_max_total_wal_size(128 << 20);
        // RocksDB's own info LOG lives in the state directory. On a full disk its
        // writer fails first, and the error handler's next log line then trips an
        // assertion (abort) in builds with assertions on; replytime reports its
        // errors itself, so RocksDB only logs what is fatal, in a bounded file.
        db_opts.set_log_level(rocksdb::LogLevel::Fatal);
        db_opts.set_keep_log_file_num(2);
        db_opts.set_max_log_file_size(1 << 20);
        // A cap on all memtables together: the state's buffer and two others'
        // (the outbox and meta stay small between the WAL's forced flushes).
        db_opts.set_db_write_buffer_size(memtable_budget(options));
        // Tickers (block cache hits and misses, filter probes, compaction bytes) for
        // `replytime_rocksdb_events_total`: a few atomic adds per read.
        db_opts.enable_statistics();
        let cfs = PHYSICAL.iter().enumerate().map(|(index, name)| {
            ColumnFamilyDescriptor::new(*name, family_options(index, &table, options))
        });
        let db = Db::open_cf_descriptors(&db_opts, path, cfs).map_err(|source| {
            if source.to_string().contains("lock") {
                StoreError::Locked {
                    path: path.to_path_buf(),
                    source,
                }
            } else {
                StoreError::RocksDb {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let store = Store {
            db: std::mem::ManuallyDrop::new(db),
            path: path.to_path_buf(),
            next_outbox_seq: AtomicU64::new(0),
            outbox_head: AtomicU64::new(0),
            event_log_floor: AtomicU64::new(0),
            failed: std::sync::OnceLock::new(),
            write_gate: std::sync::Mutex::new(()),
            cache: std::sync::Mutex::new(cache::StateCache::new(options.read_cache_bytes as u64)),
            read_cache_bytes: options.read_cache_bytes as u64,
            rocksdb_reads: Default::default(),
        };
        store.check_version()?;
        let floor = store
            .get_meta::<Lsn>(meta::EVENT_LOG_FLOOR)?
            .unwrap_or(Lsn::ZERO);
        store.event_log_floor.store(floor.0, Ordering::SeqCst);
        let next = store.last_outbox_seq()?.map_or(0, |s| s + 1);
        store.next_outbox_seq.store(next, Ordering::SeqCst);
        let head = store.first_outbox_seq()?.unwrap_or(next);
        store.outbox_head.store(head, Ordering::SeqCst);
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_version(&self) -> Result<(), StoreError> {
        let tx = self.begin();
        match tx.get_record::<u32>(Cf::Meta, meta::VERSION)? {
            Some(found) if found != STATE_VERSION => Err(StoreError::Version {
                path: self.path.clone(),
                found,
                expected: STATE_VERSION,
            }),
            Some(_) => Ok(()),
            None => {
                tx.put_record(Cf::Meta, meta::VERSION, &STATE_VERSION)?;
                tx.commit()
            }
        }
    }

    pub(crate) fn begin(&self) -> StoreTxn<'_> {
        StoreTxn::new(self, PendingWrites::default())
    }

    /// Continues a unit of work whose writes were kept by [`StoreTxn::into_pending`].
    pub(crate) fn begin_with(&self, pending: PendingWrites) -> StoreTxn<'_> {
        StoreTxn::new(self, pending)
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn err(&self, source: rocksdb::Error) -> StoreError {
        use rocksdb::ErrorKind::{Busy, TimedOut, TryAgain};
        if !matches!(source.kind(), Busy | TimedOut | TryAgain) {
            let _ = self.failed.set(source.to_string());
        }
        StoreError::RocksDb {
            path: self.path.clone(),
            source,
        }
    }

    /// Refuses to write once RocksDB has failed (see `failed`).
    pub(crate) fn check_usable(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            Some(first) => Err(StoreError::Failed {
                path: self.path.clone(),
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Makes every committed transaction durable (fsync of RocksDB's WAL).
    pub fn sync(&self) -> Result<(), StoreError> {
        let _gate = self.gate();
        self.check_usable()?;
        self.db.flush_wal(true).map_err(|e| self.err(e))
    }

    pub(crate) fn gate(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bulk work (an initial load, deriving every anchor) reads each row about
    /// once: meanwhile the read cache keeps no rows and only a few threads, so
    /// it neither costs inserts nor holds memory for nothing.
    pub(crate) fn set_bulk_reads(&self, on: bool) {
        let bytes = if on {
            cache::BULK_BYTES.min(self.read_cache_bytes)
        } else {
            self.read_cache_bytes
        };
        self.cache().resize(bytes, !on);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, cache::StateCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The end LSN of the last transaction whose effects are in the state (and its
    /// sink operations in the outbox or the sink). Durable after [`Store::sync`].
    pub fn applied_lsn(&self) -> Result<Lsn, StoreError> {
        Ok(self
            .begin()
            .get_record::<Lsn>(Cf::Meta, meta::APPLIED_LSN)?
            .unwrap_or(Lsn::ZERO))
    }

    /// Anchors derived but held because their lead is unknown or has no client.
    pub fn held_anchors(&self) -> Result<u64, StoreError> {
        Ok(self
            .begin()
            .get_record::<u64>(Cf::Meta, meta::HELD_ANCHORS)?
            .unwrap_or(0))
    }

    /// Held anchors by reason: (the lead row is missing, the lead has a NULL
    /// `clientId`).
    pub fn held_by_reason(&self) -> Result<(u64, u64), StoreError> {
        let tx = self.begin();
        let held = tx
            .get_record::<u64>(Cf::Meta, meta::HELD_ANCHORS)?
            .unwrap_or(0);
        let no_client = tx
            .get_record::<u64>(Cf::Meta, meta::HELD_NO_CLIENT)?
            .unwrap_or(0);
        Ok((held.saturating_sub(no_client), no_client))
    }

    pub(crate) fn get_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.begin().get_record(Cf::Meta, key)
    }

    pub(crate) fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        let tx = self.begin();
        tx.put_record(Cf::Meta, key, value)?;
        tx.commit()
    }

    /// Memory RocksDB and the read cache account for, by kind (see `replytime_state_memory_bytes`).
    pub fn memory_usage(&self) -> [(&'static str, u64); 5] {
        let sum = |property: &str| -> u64 {
            PHYSICAL
                .iter()
                .filter_map(|name| self.db.cf_handle(name))
                .filter_map(|handle| {
                    self.db
                        .property_int_value_cf(handle, property)
                        .ok()
                        .flatten()
                })
                .sum()
        };
        // The block cache is shared by replytime's families (not by the default
        // family, which replytime does not use): any one of them reports all of it.
        let cache = |property: &str| {
            self.db
                .cf_handle(PHYSICAL[0])
                .and_then(|handle| self.db.property_int_value_cf(handle, property).ok())
                .flatten()
                .unwrap_or(0)
        };
        [
            ("memtables", sum("rocksdb.cur-size-all-mem-tables")),
            ("block_cache", cache("rocksdb.block-cache-usage")),
            (
                "block_cache_pinned",
                cache("rocksdb.block-cache-pinned-usage"),
            ),
            ("table_readers", sum("rocksdb.estimate-table-readers-mem")),
            ("read_cache", self.cache().bytes()),
        ]
    }

    pub(crate) fn count_read(&self, read: RocksDbRead) {
        self.rocksdb_reads[read as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// What the reads of the state cost since open: the read cache's answers, the
    /// reads that reached RocksDB, and RocksDB's own tickers.
    pub fn read_counts(&self) -> ReadCounts {
        let cache = self.cache().counts();
        let rocksdb = RocksDbRead::ALL.map(|read| {
            (
                read.name(),
                self.rocksdb_reads[read as usize].load(Ordering::Relaxed),
            )
        });
        let statistics = self
            .db
            .property_value("rocksdb.options-statistics")
            .ok()
            .flatten()
            .unwrap_or_default();
        let tickers =
            ROCKSDB_TICKERS.map(|(ticker, name)| (name, ticker_count(&statistics, ticker)));
        ReadCounts {
            read_cache: [
                ("point", "hit", cache.point_hits),
                ("point", "miss", cache.point_misses),
                ("range", "hit", cache.range_hits),
                ("range", "miss", cache.range_misses),
                ("any", "fill_dropped", cache.fills_dropped),
            ],
            rocksdb,
            tickers,
        }
    }

    /// Approximate bytes on disk of all column families.
    pub(crate) fn approximate_size(&self) -> u64 {
        PHYSICAL
            .iter()
            .filter_map(|name| {
                let handle = self.db.cf_handle(name)?;
                self.db
                    .property_int_value_cf(handle, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
                    .map(|sst| {
                        sst + self
                            .db
                            .property_int_value_cf(handle, "rocksdb.size-all-mem-tables")
                            .ok()
                            .flatten()
                            .unwrap_or(0)
                    })
            })
            .sum()
    }
}

/// Write buffer of each family but the state's. Smaller ones flush the event log
/// more often, and its L0 files then reach L1 more often: once retention trims its
/// oldest entries, their tombstones make each such file overlap all of L1, which
/// is then rewritten (4 MiB measured 0.3 GB of event-log compaction in a 3M drain
/// that 16 MiB did not have).
const OTHER_WRITE_BUFFER: usize = 16 << 20;

/// Compression of the state family's levels, L0 first (see `family_options`).
const STATE_COMPRESSION: [rocksdb::DBCompressionType; 7] = {
    use rocksdb::DBCompressionType::{Lz4, None};
    [None, None, Lz4, Lz4, Lz4, Lz4, Lz4]
};

/// L0 files of the state family that start an L0 -> L1 compaction (RocksDB's
/// default is 4; see `family_options`).
const STATE_L0_COMPACTION_TRIGGER: i32 = 8;

/// Target size of the state family's L1 (RocksDB's default is 256 MiB).
const STATE_L1_BYTES: u64 = 512 << 20;

/// RocksDB's cap on all memtables together (`db_write_buffer_size`).
fn memtable_budget(options: &StoreOptions) -> usize {
    options.write_buffer_bytes + 2 * OTHER_WRITE_BUFFER
}

/// Options of the physical family at `index` in [`PHYSICAL`].
fn family_options(index: usize, table: &BlockBasedOptions, options: &StoreOptions) -> Options {
    let mut opts = Options::default();
    opts.set_block_based_table_factory(table);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Most point reads of the engine look for keys that are not there (is this
    // row known yet?): a bloom filter over the memtable answers those without
    // searching its skip list.
    opts.set_memtable_prefix_bloom_ratio(0.1);
    opts.set_memtable_whole_key_filtering(true);
    if index != STATE {
        opts.set_write_buffer_size(OTHER_WRITE_BUFFER);
        return opts;
    }
    // The state's keys (ids, leads) spread over the whole key space, so every L0
    // file overlaps all of L1 and each L0 compaction rewrites all of L1: the
    // larger the flushes, the fewer of those rewrites per change.
    opts.set_write_buffer_size(options.write_buffer_bytes);
    // L0 and L1 uncompressed: they are rewritten again and again (each rewrite
    // compressed and decompressed all of L1), and the engine's point reads miss
    // the block cache there, each miss an LZ4 decompression on the engine's
    // thread. Deeper levels, written rarely and holding the bulk of a large
    // state, stay compressed. Compression is per block in RocksDB: files written
    // with LZ4 before stay readable, and are rewritten uncompressed by compaction.
    opts.set_compression_per_level(&STATE_COMPRESSION);
    // Fewer, larger L0 -> L1 compactions: each one rewrites all of L1, so
    // merging eight flushes at a time instead of four halves those rewrites
    // (slowdown and stop stay at RocksDB's 20 and 36 files). The cost is up to
    // eight L0 files a read checks; their filters and indexes stay pinned. L1
    // holds up to 512 MiB before it spills into L2, so a state of a few hundred
    // MB stays two levels deep (a read checks one filter fewer) and its L1 is
    // not cut into an L2 that each later L1 compaction then also rewrites.
    opts.set_level_zero_file_num_compaction_trigger(STATE_L0_COMPACTION_TRIGGER);
    opts.set_max_bytes_for_level_base(STATE_L1_BYTES);
    // Navigation prefixes (a thread, a draft's sends, ...) go into the bloom
    // filters too: the read cache's misses are mostly prefixes that do not exist
    // yet (a new thread, an inbound without drafts), and a prefix seek then skips
    // every file without them.
    opts.set_prefix_extractor(rocksdb::SliceTransform::create(
        "replytime.navigation_prefix",
        cache::navigation_prefix,
        Some(cache::has_navigation_prefix),
    ));
    opts
}

/// A read of the `state` family that the read cache did not answer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RocksDbRead {
    /// A point get.
    Get,
    /// A seek in prefix mode (bloom filters on the navigation prefix).
    PrefixSeek,
    /// A total-order seek: a backward window from the end of a prefix the cache
    /// knows in part (its target lies outside the prefix, where a prefix-mode
    /// seek is undefined).
    Seek,
    /// A key walk that does not go through the read cache.
    Walk,
}

impl RocksDbRead {
    const ALL: [RocksDbRead; 4] = [
        RocksDbRead::Get,
        RocksDbRead::PrefixSeek,
        RocksDbRead::Seek,
        RocksDbRead::Walk,
    ];

    fn name(self) -> &'static str {
        match self {
            RocksDbRead::Get => "get",
            RocksDbRead::PrefixSeek => "prefix_seek",
            RocksDbRead::Seek => "seek",
            RocksDbRead::Walk => "walk",
        }
    }
}

/// RocksDB tickers exported, and their label in `replytime_rocksdb_events_total`.
const ROCKSDB_TICKERS: [(&str, &str); 17] = [
    ("rocksdb.block.cache.data.hit", "block_cache_data_hit"),
    ("rocksdb.block.cache.data.miss", "block_cache_data_miss"),
    ("rocksdb.block.cache.index.hit", "block_cache_index_hit"),
    ("rocksdb.block.cache.index.miss", "block_cache_index_miss"),
    ("rocksdb.block.cache.filter.hit", "block_cache_filter_hit"),
    ("rocksdb.block.cache.filter.miss", "block_cache_filter_miss"),
    ("rocksdb.bloom.filter.useful", "bloom_filter_useful"),
    (
        "rocksdb.bloom.filter.prefix.checked",
        "bloom_prefix_checked",
    ),
    ("rocksdb.bloom.filter.prefix.useful", "bloom_prefix_useful"),
    ("rocksdb.memtable.hit", "get_memtable_hit"),
    ("rocksdb.l0.hit", "get_l0_hit"),
    ("rocksdb.l1.hit", "get_l1_hit"),
    ("rocksdb.l2andup.hit", "get_l2_and_up_hit"),
    ("rocksdb.number.db.seek", "iterator_seek"),
    ("rocksdb.number.db.next", "iterator_next"),
    ("rocksdb.compact.read.bytes", "compaction_read_bytes"),
    ("rocksdb.compact.write.bytes", "compaction_write_bytes"),
];

/// A ticker's count in RocksDB's statistics dump (`name COUNT : n` lines).
fn ticker_count(statistics: &str, ticker: &str) -> u64 {
    statistics
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(ticker)?.strip_prefix(" COUNT : ")?;
            rest.trim().parse().ok()
        })
        .unwrap_or(0)
}

/// See [`Store::read_counts`].
#[derive(Clone, Debug)]
pub struct ReadCounts {
    /// (kind, result, count).
    pub read_cache: [(&'static str, &'static str, u64); 5],
    /// (kind of read, count).
    pub rocksdb: [(&'static str, u64); 4],
    /// (ticker label, count).
    pub tickers: [(&'static str, u64); 17],
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard serializes every state record")
}

pub(crate) fn decode<T: DeserializeOwned>(cf: Cf, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        cf: cf.name(),
        reason: e.to_string(),
    })
}

impl Store {
    /// Deletes every key of the given column families (start of an initial load).
    pub fn clear(&self, cfs: &[Cf]) -> Result<(), StoreError> {
        for cf in cfs {
            let mut deleted = 0usize;
            loop {
                let tx = self.begin();
                let keys = tx.keys_with_prefix(*cf, &[], None, 10_000)?;
                if keys.is_empty() {
                    break;
                }
                for key in &keys {
                    tx.delete(*cf, key)?;
                }
                deleted += keys.len();
                tx.commit()?;
            }
            // Many tombstones would slow every later seek until compaction drops them.
            if deleted >= 10_000 {
                let (physical, tag) = cf.physical();
                let handle = self.db.cf_handle(physical).expect("column family exists");
                self.db
                    .compact_range_cf(handle, Some([tag]), Some([tag + 1]));
            }
            if *cf == Cf::Outbox {
                let next = self.next_outbox_seq.load(Ordering::SeqCst);
                self.outbox_head.store(next, Ordering::SeqCst);
            }
            if *cf == Cf::EventLog {
                // Every entry is gone, those below the floor too: a log started
                // over (another source's LSNs may be lower) is read from its start.
                self.put_meta(meta::EVENT_LOG_FLOOR, &Lsn::ZERO)?;
                self.event_log_floor.store(0, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

/// What `status` reads from a state directory, also while the daemon holds it
/// (a read-only open takes no lock).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct StateSummary {
    pub applied_lsn: Lsn,
    pub outbox_entries: u64,
    pub held_anchors: u64,
    /// Of `held_anchors`, those whose lead has a NULL `clientId` (the rest wait
    /// for their lead row).
    pub held_no_client: u64,
    pub quarantined: u64,
    pub oldest_event_lsn: Option<Lsn>,
    pub size_bytes: u64,
}

impl StateSummary {
    pub(crate) fn read(path: &Path) -> Result<StateSummary, StoreError> {
        let db = rocksdb::DB::open_cf_for_read_only(&Options::default(), path, PHYSICAL, false)
            .map_err(|source| StoreError::RocksDb {
                path: path.to_path_buf(),
                source,
            })?;
        let cf = |c: Cf| db.cf_handle(c.physical().0).expect("column family exists");
        let tagged = |c: Cf, key: &[u8]| [&[c.physical().1], key].concat();
        let get = |key: &[u8]| -> Option<Vec<u8>> {
            db.get_cf(cf(Cf::Meta), tagged(Cf::Meta, key))
                .ok()
                .flatten()
        };
        // Keys of one logical family: iterate from its tag while the tag matches.
        let keys = |c: Cf| {
            let tag = c.physical().1;
            db.iterator_cf(
                cf(c),
                rocksdb::IteratorMode::From(&[tag], rocksdb::Direction::Forward),
            )
            .filter_map(Result::ok)
            .take_while(move |(k, _)| k.first() == Some(&tag))
            .map(|(k, _)| k[1..].to_vec())
        };
        let count = |c: Cf| keys(c).count() as u64;
        // The log's entries start at its floor (those below are trimmed).
        let floor: Lsn = get(meta::EVENT_LOG_FLOOR)
            .and_then(|b| postcard::from_bytes(&b).ok())
            .unwrap_or(Lsn::ZERO);
        let event_tag = Cf::EventLog.physical().1;
        let from = [&[event_tag][..], &floor.to_be_bytes()].concat();
        let oldest_event = db
            .iterator_cf(
                cf(Cf::EventLog),
                rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
            )
            .filter_map(Result::ok)
            .next()
            .filter(|(k, _)| k.first() == Some(&event_tag) && k.len() >= 9)
            .map(|(k, _)| event_log::lsn_of(&k[1..]));
        let size = dir_size(path);
        Ok(StateSummary {
            applied_lsn: get(meta::APPLIED_LSN)
                .and_then(|b| postcard::from_bytes(&b).ok())
                .unwrap_or(Lsn::ZERO),
            outbox_entries: count(Cf::Outbox),
            held_anchors: get(meta::HELD_ANCHORS)
                .and_then(|b| postcard::from_bytes(&b).ok())
                .unwrap_or(0),
            held_no_client: get(meta::HELD_NO_CLIENT)
                .and_then(|b| postcard::from_bytes(&b).ok())
                .unwrap_or(0),
            quarantined: count(Cf::Quarantine),
            oldest_event_lsn: oldest_event,
            size_bytes: size,
        })
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{Cf, PHYSICAL, STATE, Store, StoreOptions};
    use crate::config::Settings;

    /// A state written before the state family's top levels went uncompressed
    /// (LZ4 on every level) opens and reads with today's options, before and
    /// after compaction rewrites its files.
    #[test]
    fn a_state_written_with_lz4_everywhere_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (tag, key) = (Cf::Thread.physical().1, b"lead-1 thread-1 message-1");
        let tagged = [&[tag][..], key].concat();
        {
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            let db = rocksdb::DB::open_cf(&opts, dir.path(), PHYSICAL).unwrap();
            let state = db.cf_handle(PHYSICAL[STATE]).unwrap();
            db.put_cf(state, &tagged, vec![7u8; 4000]).unwrap();
            db.flush_cf(state).unwrap();
        }
        reads_the_same_across_a_compaction(dir.path(), |store| {
            let read = store.begin().get(Cf::Thread, key).unwrap();
            assert_eq!(read, Some(vec![7u8; 4000]));
        });
    }

    /// Opens the state at `dir` with today's options and runs `check` on it, then
    /// again after a full compaction of the state family has rewritten its files
    /// and the store has been reopened.
    fn reads_the_same_across_a_compaction(dir: &std::path::Path, check: impl Fn(&Store)) {
        let store = Store::open(dir, &StoreOptions::default()).unwrap();
        check(&store);
        let state = store.db().cf_handle(PHYSICAL[STATE]).unwrap();
        store
            .db()
            .compact_range_cf(state, None::<&[u8]>, None::<&[u8]>);
        drop(store);
        let store = Store::open(dir, &StoreOptions::default()).unwrap();
        check(&store);
    }

    /// A state written with the earlier level options of the `state` family
    /// (RocksDB's: L0 compacted at four files into an L1 of 256 MiB) opens with
    /// today's and reads the same, its files in L0 and L1 found by gets and prefix
    /// walks, before and after a compaction rewrites them.
    #[test]
    fn a_state_written_with_the_earlier_level_options_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let thread = |lead: u32| {
            let lead = format!("lead-{lead}");
            [
                (lead.len() as u32).to_be_bytes().as_slice(),
                lead.as_bytes(),
                &3u32.to_be_bytes(),
                b"sms",
            ]
            .concat()
        };
        let message = |lead: u32, n: u32| [thread(lead), format!("m{n:04}").into_bytes()].concat();
        {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_partition_filters(true);
            table.set_metadata_block_size(4096);
            table.set_cache_index_and_filter_blocks(true);
            table.set_format_version(5);
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            opts.set_block_based_table_factory(&table);
            opts.set_level_zero_file_num_compaction_trigger(4);
            opts.set_max_bytes_for_level_base(256 << 20);
            opts.set_prefix_extractor(rocksdb::SliceTransform::create(
                "replytime.navigation_prefix",
                super::cache::navigation_prefix,
                Some(super::cache::has_navigation_prefix),
            ));
            let db = rocksdb::DB::open_cf(&opts, dir.path(), PHYSICAL).unwrap();
            let state = db.cf_handle(PHYSICAL[STATE]).unwrap();
            for file in 0..3u32 {
                for lead in (file..40).step_by(3) {
                    for n in 0..50 {
                        let key = [&[Cf::Thread.physical().1][..], &message(lead, n)].concat();
                        db.put_cf(state, key, b"o").unwrap();
                    }
                }
                db.flush_cf(state).unwrap();
                if file == 1 {
                    db.compact_range_cf(state, None::<&[u8]>, None::<&[u8]>);
                }
            }
        }
        let check = |store: &Store| {
            let tx = store.begin();
            for lead in [0, 1, 2, 38, 39] {
                assert_eq!(
                    tx.get(Cf::Thread, &message(lead, 7)).unwrap(),
                    Some(b"o".to_vec())
                );
                let keys = tx
                    .keys_with_prefix(Cf::Thread, &thread(lead), None, 100)
                    .unwrap();
                assert_eq!(keys.len(), 50, "lead {lead}");
            }
            assert_eq!(tx.get(Cf::Thread, &message(7, 50)).unwrap(), None);
            assert_eq!(tx.next_key(Cf::Thread, &thread(40), None).unwrap(), None);
        };
        reads_the_same_across_a_compaction(dir.path(), check);
    }

    /// The state family merges its L0 files into L1 eight at a time: five flushes
    /// stay five L0 files, with no compaction pending or running (at RocksDB's
    /// default of four, the fourth flush starts one).
    #[test]
    fn state_flushes_wait_for_eight_l0_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let state = store.db().cf_handle(PHYSICAL[STATE]).unwrap();
        for flush in 0..5u32 {
            let tx = store.begin();
            for n in 0..100u32 {
                tx.put(
                    Cf::Messages,
                    format!("m{n:03}").as_bytes(),
                    &flush.to_be_bytes(),
                )
                .unwrap();
            }
            tx.commit().unwrap();
            store.db().flush_cf(state).unwrap();
        }
        let property = |name: &str| store.db().property_int_value_cf(state, name).unwrap();
        assert_eq!(property("rocksdb.num-files-at-level0"), Some(5));
        assert_eq!(property("rocksdb.compaction-pending"), Some(0));
        assert_eq!(property("rocksdb.num-running-compactions"), Some(0));
    }

    /// The reads that reach RocksDB are counted by family, found or absent (the
    /// store logs them when it closes); what the read cache answers is not.
    #[test]
    fn reads_reaching_rocksdb_are_counted_by_family() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let tx = store.begin();
        tx.put(Cf::Messages, b"known", b"row").unwrap();
        tx.commit().unwrap();
        let tx = store.begin();
        assert_eq!(tx.get(Cf::Messages, b"new").unwrap(), None);
        assert_eq!(tx.get(Cf::Messages, b"new").unwrap(), None);
        assert_eq!(
            tx.get(Cf::Messages, b"known").unwrap(),
            Some(b"row".to_vec())
        );
        let thread = [
            1u32.to_be_bytes().as_slice(),
            b"l",
            &1u32.to_be_bytes(),
            b"t",
        ]
        .concat();
        assert_eq!(tx.next_key(Cf::Thread, &thread, None).unwrap(), None);
        let counts = store.cache().counts();
        let family = |cf: Cf| Cf::ALL.iter().position(|c| *c == cf).unwrap();
        assert_eq!(counts.gets_by_family[family(Cf::Messages)], [1, 1]);
        assert_eq!(counts.ranges_by_family[family(Cf::Thread)], [0, 1]);
        let others: u64 = counts.gets_by_family.iter().flatten().sum();
        assert_eq!(others, 2, "only the two reads that missed the cache");
    }

    /// A dry run's scratch store and the daemon's store both take the operator's
    /// cache sizes, not the defaults.
    #[test]
    fn options_take_the_operators_cache_sizes() {
        let settings = Settings {
            block_cache_bytes: 3 << 20,
            read_cache_bytes: 5 << 20,
            ..Settings::default()
        };
        let options = StoreOptions::for_settings(&settings);
        assert_eq!(options.block_cache_bytes, 3 << 20);
        assert_eq!(options.read_cache_bytes, 5 << 20);
    }
}
