//! Read cache of the committed `state` column family, in front of RocksDB.
//!
//! Each change costs the engine about eight point reads and five ordered seeks
//! (see `engine/anchor.rs`), and through RocksDB every one of them searches the
//! memtables, the L0 files and each level: about three quarters of the daemon's
//! time went there. Conversations have locality (a thread is written to, and its
//! anchors derived, many times within minutes), so two bounded caches answer most
//! of them from memory:
//!
//! - points: physical key → value, or "absent" (most reads of a new row's key are
//!   answered "absent" once and then follow its writes);
//! - ranges: for a navigation prefix (a thread, a draft's sends, a trigger's
//!   drafts, a job pair), every committed key of one contiguous interval
//!   `[lo, hi)` of it, with values. A short prefix is cached whole; a long one (a
//!   thread of 100,000 messages) as windows of a few dozen keys around where it is
//!   read (joined while they touch), so its cost stays that of the seeks it
//!   replaces, and a miss costs the same however long the prefix is.
//!
//! The cache holds committed state only; a unit of work merges its own writes over
//! it exactly as over RocksDB (`txn.rs`). It stays exact because every write to the
//! `state` family goes through [`super::StoreTxn::commit`], which passes the batch
//! through here after RocksDB took it (write-through: cached keys are updated, and
//! keys inside a cached interval are inserted or removed). A fill read from RocksDB
//! carries the generation it started at, and is dropped if a commit to the `state`
//! family came in between. Commits that leave the family alone (the sink task
//! trimming the outbox, many times a second while a backlog drains) do not count:
//! counting them dropped fills for nothing, so misses stayed misses. Both caches are bounded by weight (S3-FIFO eviction, `quick_cache`).

use std::ops::Bound;

use quick_cache::Weighter;
use quick_cache::unsync::Cache;

use super::Cf;

/// Bytes counted per entry of a range besides its key suffix and value (the
/// allocator's rounding of the two; their headers are in [`SLOT_BYTES`]).
const ENTRY_OVERHEAD: u64 = 16;
/// Bytes counted per cached point besides its key and value: the cache's slot
/// (two `Vec` headers and its bookkeeping) and the allocator's rounding.
const POINT_OVERHEAD: u64 = 128;
/// Bytes counted per cached range besides its keys' copies and its entries: the
/// cache's slot and the `Range` itself.
const RANGE_OVERHEAD: u64 = 320;
/// Bytes of one slot of a range's entries (a suffix and a value, boxed), counted
/// for every slot allocated. A sorted vector rather than a tree: windows are small
/// and many, and a tree's nodes (544 bytes for up to 11 entries, allocated whole
/// even for one) weighed more than the entries they held, so fewer ranges fit.
const SLOT_BYTES: u64 = std::mem::size_of::<Entry>() as u64;

/// A range's entry: its key after the prefix, and its value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// Keys a range read takes from RocksDB on a miss (a few in unit tests, so that
/// windows, joins and replacements all happen on small data). Small: a miss is
/// mostly a look for the entry next to a position, and each key read is copied
/// into the cache, so a long window costs every miss on a long prefix.
#[cfg(not(test))]
pub(super) const LOAD_KEYS: usize = 32;
#[cfg(test)]
pub(super) const LOAD_KEYS: usize = 3;
/// Keys a prefix's interval may hold; past it, a new read replaces the interval.
#[cfg(not(test))]
const RANGE_MAX_KEYS: usize = 1024;
#[cfg(test)]
const RANGE_MAX_KEYS: usize = 7;

/// Size of the cache during bulk work (see `Store::set_bulk_reads`).
pub(super) const BULK_BYTES: u64 = 1 << 20;

/// Families navigated by prefix, and how many length-prefixed strings (u32 BE
/// length, bytes: the engine's key layout, `engine/keys.rs`) their prefix is.
fn prefix_strings(cf: Cf) -> Option<usize> {
    match cf {
        Cf::Thread | Cf::Inbound | Cf::Setter | Cf::DraftTrigger | Cf::JobIndex => Some(2),
        Cf::AiSend => Some(1),
        _ => None,
    }
}

/// Length of the navigation prefix a physical (tagged) key starts with, for the
/// families whose walks are cached.
pub(super) fn range_prefix_len(key: &[u8]) -> Option<usize> {
    let cf = Cf::ALL.get(usize::from(*key.first()?))?;
    let mut end = 1;
    for _ in 0..prefix_strings(*cf)? {
        let len = u32::from_be_bytes(key.get(end..end + 4)?.try_into().ok()?) as usize;
        end += 4 + len;
        if end > key.len() {
            return None;
        }
    }
    Some(end)
}

/// RocksDB's prefix extractor for the `state` family: the navigation prefix.
pub(super) fn navigation_prefix(key: &[u8]) -> &[u8] {
    &key[..range_prefix_len(key).unwrap_or(key.len())]
}

pub(super) fn has_navigation_prefix(key: &[u8]) -> bool {
    range_prefix_len(key).is_some()
}

#[derive(Clone)]
struct PointWeight;

impl Weighter<Vec<u8>, Option<Vec<u8>>> for PointWeight {
    fn weight(&self, key: &Vec<u8>, value: &Option<Vec<u8>>) -> u64 {
        POINT_OVERHEAD + key.len() as u64 + value.as_ref().map_or(0, |v| v.len() as u64)
    }
}

/// Every committed key of a prefix in `[lo, hi)`, with its value.
pub(super) struct Range {
    /// Inclusive; the prefix itself when the interval starts at the prefix's start.
    lo: Vec<u8>,
    /// Exclusive; `None` when the interval runs to the prefix's end.
    hi: Option<Vec<u8>>,
    /// Length of the navigation prefix every key of the interval (and `lo`)
    /// starts with.
    prefix_len: usize,
    /// (key after the prefix, value), sorted by key: comparisons skip the part
    /// every key shares.
    entries: Vec<Entry>,
    bytes: u64,
}

impl Range {
    /// `lo` is the prefix itself or a key of it; every entry's key has the prefix.
    pub(super) fn new(lo: Vec<u8>, hi: Option<Vec<u8>>, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let prefix_len = range_prefix_len(&lo).unwrap_or(lo.len());
        let mut range = Range {
            lo,
            hi,
            prefix_len,
            entries: Vec::with_capacity(entries.len()),
            bytes: 0,
        };
        for (key, value) in entries {
            let suffix: Box<[u8]> = range.suffix(&key).into();
            range.bytes += Self::entry_bytes(&suffix, &value);
            range.entries.push((suffix, value.into_boxed_slice()));
        }
        // Reads hand their keys over in order; anything else is put in order.
        if !range.entries.is_sorted_by(|a, b| a.0 < b.0) {
            let mut entries = std::mem::take(&mut range.entries);
            range.bytes = 0;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (suffix, value) in entries {
                range.insert_suffix(suffix, value);
            }
        }
        range
    }

    fn prefix(&self) -> &[u8] {
        &self.lo[..self.prefix_len]
    }

    /// The part of `key` (which has the range's prefix) after the prefix.
    fn suffix<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        debug_assert!(
            key.starts_with(self.prefix()),
            "a key of the range's prefix"
        );
        &key[self.prefix_len..]
    }

    fn entry_bytes(key: &[u8], value: &[u8]) -> u64 {
        ENTRY_OVERHEAD + (key.len() + value.len()) as u64
    }

    /// Where `suffix` is, or would be inserted.
    fn position(&self, suffix: &[u8]) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(key, _)| (**key).cmp(suffix))
    }

    fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        let suffix = self.suffix(key).into();
        self.insert_suffix(suffix, value.into_boxed_slice());
    }

    fn insert_suffix(&mut self, suffix: Box<[u8]>, value: Box<[u8]>) {
        self.bytes += Self::entry_bytes(&suffix, &value);
        match self.position(&suffix) {
            Ok(at) => {
                let old = std::mem::replace(&mut self.entries[at].1, value);
                self.bytes -= Self::entry_bytes(&suffix, &old);
            }
            Err(at) => self.entries.insert(at, (suffix, value)),
        }
    }

    fn remove(&mut self, key: &[u8]) {
        let suffix = self.suffix(key);
        if let Ok(at) = self.position(suffix) {
            let (suffix, old) = self.entries.remove(at);
            self.bytes -= Self::entry_bytes(&suffix, &old);
        }
    }

    /// The entry `look` wants (the interval must cover it), with its whole key.
    pub(super) fn find(&self, look: Look<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
        let prefix = self.prefix();
        // A bound outside the prefix lies before all of its keys or past them.
        let outside = |bound: &[u8]| !bound.starts_with(prefix);
        // Index of the first entry at or after a suffix (`Ok`: equal to it).
        let at = |suffix: &[u8]| self.position(suffix);
        let found = match look {
            Look::From(start) => {
                let first = match start {
                    Bound::Included(from) | Bound::Excluded(from) if outside(from) => {
                        if from > prefix {
                            return None;
                        }
                        0
                    }
                    Bound::Included(from) => at(&from[prefix.len()..]).unwrap_or_else(|i| i),
                    Bound::Excluded(from) => match at(&from[prefix.len()..]) {
                        Ok(i) => i + 1,
                        Err(i) => i,
                    },
                    Bound::Unbounded => 0,
                };
                self.entries.get(first)
            }
            Look::Before(before) => {
                let end = if !outside(before) {
                    at(&before[prefix.len()..]).unwrap_or_else(|i| i)
                } else if before < prefix {
                    return None;
                } else {
                    self.entries.len()
                };
                end.checked_sub(1).map(|last| &self.entries[last])
            }
        };
        found.map(|(suffix, value)| ([prefix, suffix].concat(), value.to_vec()))
    }

    fn covers(&self, key: &[u8]) -> bool {
        self.lo.as_slice() <= key && self.hi.as_ref().is_none_or(|hi| key < hi.as_slice())
    }

    /// Whether `other` overlaps or touches this interval (their union is one).
    fn touches(&self, other: &Range) -> bool {
        let below = |hi: &Option<Vec<u8>>, lo: &Vec<u8>| hi.as_ref().is_some_and(|hi| hi < lo);
        !below(&self.hi, &other.lo) && !below(&other.hi, &self.lo)
    }
}

#[derive(Clone)]
struct RangeWeight;

impl Weighter<Vec<u8>, Range> for RangeWeight {
    fn weight(&self, prefix: &Vec<u8>, range: &Range) -> u64 {
        let keys = prefix.len() + range.lo.len() + range.hi.as_ref().map_or(0, Vec::len);
        RANGE_OVERHEAD + keys as u64 + range.bytes + SLOT_BYTES * range.entries.capacity() as u64
    }
}

pub(super) struct StateCache {
    points: Cache<Vec<u8>, Option<Vec<u8>>, PointWeight>,
    ranges: Cache<Vec<u8>, Range, RangeWeight>,
    /// Commits to the `state` family applied so far: fills read before the last
    /// one are dropped.
    generation: u64,
    /// Whether point reads are kept (not during bulk work).
    fill_points: bool,
    /// Lookups answered and not, and fills dropped, since open.
    counts: ReadCacheCounts,
}

/// What the read cache holds of one logical family (`StateCache::holdings`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Holding {
    pub(crate) points: u64,
    pub(crate) point_bytes: u64,
    pub(crate) ranges: u64,
    pub(crate) empty_ranges: u64,
    pub(crate) range_entries: u64,
    pub(crate) range_bytes: u64,
}

/// What the read cache answered since the store opened (`replytime_read_cache_total`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReadCacheCounts {
    pub(crate) point_hits: u64,
    pub(crate) point_misses: u64,
    pub(crate) range_hits: u64,
    pub(crate) range_misses: u64,
    /// Fills read from RocksDB and dropped because a commit came in between.
    pub(crate) fills_dropped: u64,
    /// Point reads that reached RocksDB, by logical family (index in
    /// [`Cf::ALL`]): [found, absent].
    pub(crate) gets_by_family: [[u64; 2]; Cf::ALL.len()],
    /// Range misses read from RocksDB, by logical family: [with keys, empty].
    pub(crate) ranges_by_family: [[u64; 2]; Cf::ALL.len()],
}

/// Counts a read that reached RocksDB under its key's logical family (the tag
/// byte): slot 0 when it found something, 1 when it found nothing.
fn count_by_family(counts: &mut [[u64; 2]; Cf::ALL.len()], key: &[u8], empty: bool) {
    if let Some(family) = key
        .first()
        .and_then(|tag| counts.get_mut(usize::from(*tag)))
    {
        family[usize::from(empty)] += 1;
    }
}

/// Which committed entry of a prefix a navigation read wants.
#[derive(Clone, Copy, Debug)]
pub(super) enum Look<'k> {
    /// The first entry from a bound.
    From(Bound<&'k [u8]>),
    /// The last entry before a key (exclusive).
    Before(&'k [u8]),
}

impl Look<'_> {
    /// The same look continued past `key`, an entry it found.
    pub(super) fn past(self, key: &[u8]) -> Look<'_> {
        match self {
            Look::From(_) => Look::From(Bound::Excluded(key)),
            Look::Before(_) => Look::Before(key),
        }
    }

    /// Whether `a` comes before `b` in the look's order.
    pub(super) fn precedes(self, a: &[u8], b: &[u8]) -> bool {
        match self {
            Look::From(_) => a < b,
            Look::Before(_) => a > b,
        }
    }
}

/// A cached answer: `None` when the cache does not know.
pub(super) type Known<T> = Option<T>;

impl StateCache {
    /// A cache of about `bytes`, half for points and half for ranges.
    pub(super) fn new(bytes: u64) -> Self {
        let half = (bytes / 2).max(1);
        StateCache {
            points: Cache::with_weighter((half / 256) as usize + 1, half, PointWeight),
            ranges: Cache::with_weighter((half / 4096) as usize + 1, half, RangeWeight),
            generation: 0,
            fill_points: true,
            counts: ReadCacheCounts::default(),
        }
    }

    /// A new size (half for points, half for ranges), and whether to keep point
    /// reads from now on.
    pub(super) fn resize(&mut self, bytes: u64, fill_points: bool) {
        let half = (bytes / 2).max(1);
        self.points.set_capacity(half);
        self.ranges.set_capacity(half);
        self.fill_points = fill_points;
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes held (as weighed).
    pub(super) fn bytes(&self) -> u64 {
        self.points.weight() + self.ranges.weight()
    }

    pub(super) fn counts(&self) -> ReadCacheCounts {
        self.counts
    }

    /// What the cache holds now, by logical family (index in [`Cf::ALL`]):
    /// points and their weight, ranges, their entries and their weight, and of
    /// the ranges those without entries.
    pub(super) fn holdings(&self) -> Vec<Holding> {
        let mut by_family = vec![Holding::default(); Cf::ALL.len()];
        let family = |key: &[u8]| {
            key.first()
                .map_or(0, |tag| usize::from(*tag))
                .min(Cf::ALL.len() - 1)
        };
        for (key, value) in self.points.iter() {
            let held = &mut by_family[family(key)];
            held.points += 1;
            held.point_bytes += PointWeight.weight(key, value);
        }
        for (prefix, range) in self.ranges.iter() {
            let held = &mut by_family[family(prefix)];
            held.ranges += 1;
            held.empty_ranges += u64::from(range.entries.is_empty());
            held.range_entries += range.entries.len() as u64;
            held.range_bytes += RangeWeight.weight(prefix, range);
        }
        by_family
    }

    pub(super) fn get(&mut self, key: &[u8]) -> Known<Option<Vec<u8>>> {
        let found = self.points.get(key).cloned();
        match found {
            Some(_) => self.counts.point_hits += 1,
            None => self.counts.point_misses += 1,
        }
        found
    }

    /// Keeps a value read from RocksDB at `generation`.
    pub(super) fn fill_point(&mut self, generation: u64, key: Vec<u8>, value: Option<Vec<u8>>) {
        count_by_family(&mut self.counts.gets_by_family, &key, value.is_none());
        if !self.fill_points {
            return;
        }
        if generation == self.generation {
            self.points.insert(key, value);
        } else {
            self.counts.fills_dropped += 1;
        }
    }

    /// Keeps the absence of `key` that the caller proved without a read (a new
    /// id: `StoreTxn::known_absent`). Not a read of RocksDB, so not counted as
    /// one; the commit that writes the key passes its value through.
    pub(super) fn note_absent(&mut self, key: Vec<u8>) {
        if self.fill_points {
            self.points.insert(key, None);
        }
    }

    /// The committed entry of `prefix` that `look` wants (a `Before` bound is at
    /// most the prefix's end).
    pub(super) fn find(
        &mut self,
        prefix: &[u8],
        look: Look<'_>,
    ) -> Known<Option<(Vec<u8>, Vec<u8>)>> {
        let found = self.find_cached(prefix, look);
        match found {
            Some(_) => self.counts.range_hits += 1,
            None => self.counts.range_misses += 1,
        }
        found
    }

    fn find_cached(&self, prefix: &[u8], look: Look<'_>) -> Known<Option<(Vec<u8>, Vec<u8>)>> {
        let range = self.ranges.get(prefix)?;
        // Whether the interval holds every key between the bound and the answer,
        // and whether "nothing found" means the prefix has nothing there.
        let (covered, to_the_edge) = match look {
            Look::From(Bound::Included(from) | Bound::Excluded(from)) => {
                (range.lo.as_slice() <= from, range.hi.is_none())
            }
            Look::From(Bound::Unbounded) => (range.lo.as_slice() == prefix, range.hi.is_none()),
            Look::Before(before) => (
                range.hi.as_ref().is_none_or(|hi| before <= hi.as_slice()),
                range.lo.as_slice() == prefix,
            ),
        };
        if !covered {
            return None;
        }
        match range.find(look) {
            Some(found) => Some(Some(found)),
            None if to_the_edge => Some(None),
            None => None,
        }
    }

    /// Whether anything of `prefix` is cached (a miss then reads around the point
    /// asked for instead of trying the whole prefix first).
    pub(super) fn has_range(&self, prefix: &[u8]) -> bool {
        self.ranges.peek(prefix).is_some()
    }

    /// Keeps an interval read from RocksDB at `generation`: joined to the cached
    /// one when they touch and stay small, else in its place.
    pub(super) fn fill_range(&mut self, generation: u64, prefix: Vec<u8>, new: Range) {
        count_by_family(
            &mut self.counts.ranges_by_family,
            &prefix,
            new.entries.is_empty(),
        );
        if generation != self.generation {
            self.counts.fills_dropped += 1;
            return;
        }
        if let Some(mut old) = self.ranges.peek_mut(&prefix)
            && old.touches(&new)
            && old.entries.len() + new.entries.len() <= RANGE_MAX_KEYS
        {
            if new.lo < old.lo {
                old.lo = new.lo;
            }
            old.hi = match (old.hi.take(), new.hi) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            for (suffix, value) in new.entries {
                old.insert_suffix(suffix, value);
            }
            return;
        }
        self.ranges.insert(prefix, new);
    }

    /// Passes committed writes through: cached keys take their new value, and
    /// keys inside a cached interval are inserted or removed.
    pub(super) fn apply<'w>(
        &mut self,
        writes: impl IntoIterator<Item = (&'w Vec<u8>, &'w Option<Vec<u8>>)>,
    ) {
        self.generation += 1;
        for (key, value) in writes {
            if let Some(mut cached) = self.points.peek_mut(key.as_slice()) {
                *cached = value.clone();
            }
            let Some(len) = range_prefix_len(key) else {
                continue;
            };
            if let Some(mut range) = self.ranges.peek_mut(&key[..len])
                && range.covers(key)
            {
                match value {
                    Some(value) => range.insert(key, value.clone()),
                    None => range.remove(key),
                }
            }
        }
    }
}

#[cfg(test)]
mod memory {
    //! The weight covers what the cache allocates: bytes asked of the allocator
    //! (before its rounding), counted per thread, for many small windows (the
    //! common case: most navigation prefixes hold a few keys or none yet), longer
    //! ones, and points.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::*;

    struct Counting;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
    }

    fn count(delta: i64) {
        let _ = LIVE.try_with(|live| live.set(live.get() + delta));
    }

    // SAFETY: every call is passed to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size() as i64);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-(layout.size() as i64));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size as i64 - layout.size() as i64);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    fn live() -> i64 {
        LIVE.with(Cell::get)
    }

    /// A thread prefix shaped like the engine's (two length-prefixed strings).
    fn prefix(i: u32) -> Vec<u8> {
        let tag = Cf::ALL.iter().position(|cf| *cf == Cf::Thread).unwrap() as u8;
        let mut key = vec![tag];
        for part in [format!("lead-{i:012}"), format!("thread-{i:010}")] {
            key.extend_from_slice(&(part.len() as u32).to_be_bytes());
            key.extend_from_slice(part.as_bytes());
        }
        key
    }

    #[test]
    fn weight_covers_the_allocations() {
        const PREFIXES: u32 = 5_000;
        for keys in [0usize, 1, 2, 4, 8, 11, 12, 32, 200] {
            let mut cache = StateCache::new(512 << 20);
            let before = live();
            for i in 0..PREFIXES {
                let prefix = prefix(i);
                let entries = (0..keys as u64)
                    .map(|j| {
                        let key = [prefix.as_slice(), &j.to_be_bytes(), b"message-0123"].concat();
                        (key, vec![7; 40])
                    })
                    .collect();
                cache.fill_range(0, prefix.clone(), Range::new(prefix, None, entries));
            }
            let allocated = (live() - before) as f64;
            let weighed = cache.bytes() as f64;
            assert!(
                allocated <= weighed && weighed <= 1.5 * allocated,
                "windows of {keys} keys: allocated {allocated}, weighed {weighed}"
            );
        }
        let mut cache = StateCache::new(512 << 20);
        let before = live();
        for i in 0..PREFIXES {
            cache.fill_point(0, prefix(i), (i % 2 == 1).then(|| vec![1; 60]));
        }
        let allocated = (live() - before) as f64;
        let weighed = cache.bytes() as f64;
        assert!(
            allocated <= weighed && weighed <= 1.5 * allocated,
            "points: allocated {allocated}, weighed {weighed}"
        );
    }
}
