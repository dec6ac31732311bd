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

/// Bytes counted per cached point besides its key and value: the cache's slot
/// (two boxed slices and its bookkeeping) and the allocator's rounding.
const POINT_OVERHEAD: u64 = 112;
/// Bytes counted per cached range besides its bounds' copies, its packed entries
/// and its slots: the cache's slot, the `Range` itself and the allocator's
/// rounding.
const RANGE_OVERHEAD: u64 = 224;
/// Bytes of one entry's slot in a range, counted for every slot allocated.
const SLOT_BYTES: u64 = std::mem::size_of::<Slot>() as u64;

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

/// A cached point: its value, or `None` when the key is absent.
type Point = Option<Box<[u8]>>;

impl Weighter<Box<[u8]>, Point> for PointWeight {
    fn weight(&self, key: &Box<[u8]>, value: &Point) -> u64 {
        POINT_OVERHEAD + key.len() as u64 + value.as_ref().map_or(0, |v| v.len() as u64)
    }
}

/// Every committed key of a prefix in `[lo, hi)`, with its value.
///
/// The entries are packed: their key suffixes (the key after the prefix) and
/// values sit back to back in one buffer, and a sorted vector of 12-byte slots
/// points into it. Most windows hold a few short keys (a thread position, an id)
/// with an empty or one-byte value, where a pair of boxed slices per entry cost
/// 32 bytes of slot and two allocations (rounded up) besides the bytes
/// themselves: packed, the same memory holds about twice the entries. A range
/// does not keep its prefix (the cache's key): the methods that need it take it.
pub(super) struct Range {
    /// Inclusive lower bound, after the prefix: empty when the interval starts at
    /// the prefix's start.
    lo: Box<[u8]>,
    /// Exclusive upper bound, a whole key; `None` when the interval runs to the
    /// prefix's end.
    hi: Option<Box<[u8]>>,
    /// Each entry's suffix then its value, in the order they came; bytes of
    /// entries removed or replaced since stay until [`Range::compact`].
    data: Vec<u8>,
    /// One slot per entry, sorted by suffix: comparisons skip the part every key
    /// shares.
    slots: Vec<Slot>,
    /// Bytes of `data` that no slot points to.
    garbage: usize,
}

/// Where one entry of a range sits in its `data`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    start: u32,
    suffix_len: u32,
    value_len: u32,
}

impl Slot {
    fn len(self) -> usize {
        (self.suffix_len + self.value_len) as usize
    }
}

/// `a ++ b` compared with `key`, without joining them.
fn cmp_joined(a: &[u8], b: &[u8], key: &[u8]) -> std::cmp::Ordering {
    let shared = a.len().min(key.len());
    match a[..shared].cmp(&key[..shared]) {
        std::cmp::Ordering::Equal if key.len() < a.len() => std::cmp::Ordering::Greater,
        std::cmp::Ordering::Equal => b.cmp(&key[a.len()..]),
        unequal => unequal,
    }
}

impl Range {
    /// `lo` is the prefix itself or a key of it; every entry's key has the prefix.
    pub(super) fn new(lo: Vec<u8>, hi: Option<Vec<u8>>, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let prefix_len = range_prefix_len(&lo).unwrap_or(lo.len());
        let bytes = entries
            .iter()
            .map(|(k, v)| k.len() - prefix_len + v.len())
            .sum();
        let mut range = Range {
            lo: lo[prefix_len..].into(),
            hi: hi.map(Vec::into_boxed_slice),
            data: Vec::with_capacity(bytes),
            slots: Vec::with_capacity(entries.len()),
            garbage: 0,
        };
        // Reads hand their keys over in order; anything else is put in order.
        let sorted = entries.is_sorted_by(|a, b| a.0 < b.0);
        for (key, value) in &entries {
            debug_assert!(
                key.len() >= prefix_len && key[..prefix_len] == lo[..prefix_len],
                "a key of the range's prefix"
            );
            if sorted {
                let slot = range.push(&key[prefix_len..], value);
                range.slots.push(slot);
            } else {
                range.insert_suffix(&key[prefix_len..], value);
            }
        }
        range
    }

    /// The number of entries.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn suffix(&self, slot: Slot) -> &[u8] {
        let start = slot.start as usize;
        &self.data[start..start + slot.suffix_len as usize]
    }

    fn value(&self, slot: Slot) -> &[u8] {
        let start = (slot.start + slot.suffix_len) as usize;
        &self.data[start..start + slot.value_len as usize]
    }

    /// Appends an entry's bytes to `data` and returns its slot.
    fn push(&mut self, suffix: &[u8], value: &[u8]) -> Slot {
        let slot = Slot {
            start: u32::try_from(self.data.len()).expect("a range holds under 4 GiB"),
            suffix_len: u32::try_from(suffix.len()).expect("a key under 4 GiB"),
            value_len: u32::try_from(value.len()).expect("a value under 4 GiB"),
        };
        self.data.extend_from_slice(suffix);
        self.data.extend_from_slice(value);
        slot
    }

    /// Bytes the range holds besides its slot in the cache.
    fn heap_bytes(&self) -> u64 {
        (self.lo.len() + self.hi.as_ref().map_or(0, |hi| hi.len()) + self.data.capacity()) as u64
            + SLOT_BYTES * self.slots.capacity() as u64
    }

    /// Where `suffix` is, or would be inserted.
    fn position(&self, suffix: &[u8]) -> Result<usize, usize> {
        self.slots
            .binary_search_by(|slot| self.suffix(*slot).cmp(suffix))
    }

    /// Inserts or replaces the entry of `suffix`.
    fn insert_suffix(&mut self, suffix: &[u8], value: &[u8]) {
        let at = self.position(suffix);
        let slot = self.push(suffix, value);
        match at {
            Ok(at) => {
                self.garbage += self.slots[at].len();
                self.slots[at] = slot;
                self.compact();
            }
            Err(at) => self.slots.insert(at, slot),
        }
    }

    /// Removes the entry of `suffix`, if there is one.
    fn remove_suffix(&mut self, suffix: &[u8]) {
        if let Ok(at) = self.position(suffix) {
            self.garbage += self.slots.remove(at).len();
            self.compact();
        }
    }

    /// Repacks `data` once most of it is garbage (each byte is moved at most
    /// about once per byte written, so a write costs amortized O(its length)).
    fn compact(&mut self) {
        if self.garbage < 64 || self.garbage * 2 < self.data.len() {
            return;
        }
        let mut data = Vec::with_capacity(self.data.len() - self.garbage);
        for slot in &mut self.slots {
            let start = slot.start as usize;
            let new_start = u32::try_from(data.len()).expect("a range holds under 4 GiB");
            data.extend_from_slice(&self.data[start..start + slot.len()]);
            slot.start = new_start;
        }
        self.data = data;
        self.garbage = 0;
    }

    /// The entry `look` wants (the interval must cover it), with its whole key;
    /// `prefix` is the range's.
    pub(super) fn find(&self, prefix: &[u8], look: Look<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
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
                self.slots.get(first).copied()
            }
            Look::Before(before) => {
                let end = if !outside(before) {
                    at(&before[prefix.len()..]).unwrap_or_else(|i| i)
                } else if before < prefix {
                    return None;
                } else {
                    self.slots.len()
                };
                end.checked_sub(1).map(|last| self.slots[last])
            }
        };
        found.map(|slot| {
            (
                [prefix, self.suffix(slot)].concat(),
                self.value(slot).to_vec(),
            )
        })
    }

    /// Whether the interval starts at or before `key` (of any prefix).
    fn starts_at_or_before(&self, prefix: &[u8], key: &[u8]) -> bool {
        cmp_joined(prefix, &self.lo, key).is_le()
    }

    /// Whether the interval starts at the prefix's start.
    fn starts_at_prefix(&self) -> bool {
        self.lo.is_empty()
    }

    /// Whether the interval covers `key`, a key of the prefix `prefix_len` long.
    fn covers(&self, key: &[u8], prefix_len: usize) -> bool {
        *self.lo <= key[prefix_len..] && self.hi.as_ref().is_none_or(|hi| key < &hi[..])
    }

    /// Whether `other` (of the same prefix) overlaps or touches this interval
    /// (their union is one).
    fn touches(&self, prefix: &[u8], other: &Range) -> bool {
        let below = |hi: &Option<Box<[u8]>>, lo: &[u8]| {
            hi.as_ref()
                .is_some_and(|hi| cmp_joined(prefix, lo, hi).is_gt())
        };
        !below(&self.hi, &other.lo) && !below(&other.hi, &self.lo)
    }
}

#[derive(Clone)]
struct RangeWeight;

impl Weighter<Box<[u8]>, Range> for RangeWeight {
    fn weight(&self, prefix: &Box<[u8]>, range: &Range) -> u64 {
        RANGE_OVERHEAD + prefix.len() as u64 + range.heap_bytes()
    }
}

pub(super) struct StateCache {
    points: Cache<Box<[u8]>, Point, PointWeight>,
    ranges: Cache<Box<[u8]>, Range, RangeWeight>,
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

/// Share of the read cache's bytes for points, in percent. With ranges packed
/// (a thread's window of 23 positions weighs about 1.3 KB), point reads are the
/// larger part of the misses at 3M: 60 % of the bytes for points cut the gets
/// reaching RocksDB more than the seeks they add (benches/README.md, "Packed ranges").
const POINT_SHARE: u64 = 60;

/// Share of each cache's weight in S3-FIFO's main ("hot") queue; the rest is its
/// probationary queue, where a new entry waits for a second use before it is
/// kept. quick_cache's default gives probation 3 %: enough for a scan's one-off
/// reads, but the engine's new entries are mostly a new row's key (noted absent,
/// then written by the commit) and the empty navigation prefixes of a new inbound
/// message, used again when its conversation goes on. With 2,000 conversations
/// under way that is thousands of changes later, after 3 % of the cache has turned
/// over: at 3M changes, once the cache is full, most of them were gone by then
/// (point hits 83 %, gets per change 0.57 against 0.13 at 300k). A fifth of the
/// cache keeps them (point hits 96 %, gets 0.15; benches/README.md, "Probation").
const HOT_SHARE: f64 = 0.8;

/// A cache of `weight` for entries weighing about `typical` each.
fn bounded<V, W: Weighter<Box<[u8]>, V> + Clone>(
    weight: u64,
    typical: u64,
    weighter: W,
) -> Cache<Box<[u8]>, V, W> {
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity((weight / typical) as usize + 1)
        .weight_capacity(weight)
        .hot_allocation(HOT_SHARE)
        .build()
        .expect("constant cache options are valid");
    Cache::with_options(options, weighter, Default::default(), Default::default())
}

/// (points, ranges) bytes of a cache of `bytes`.
fn split(bytes: u64) -> (u64, u64) {
    let points = bytes / 100 * POINT_SHARE + bytes % 100 * POINT_SHARE / 100;
    (points.max(1), (bytes - points.min(bytes)).max(1))
}

impl StateCache {
    /// A cache of about `bytes`, [`POINT_SHARE`] of it for points, the rest for
    /// ranges.
    pub(super) fn new(bytes: u64) -> Self {
        let (points, ranges) = split(bytes);
        StateCache {
            points: bounded(points, 192, PointWeight),
            ranges: bounded(ranges, 512, RangeWeight),
            generation: 0,
            fill_points: true,
            counts: ReadCacheCounts::default(),
        }
    }

    /// A new size (split as in [`StateCache::new`]), and whether to keep point
    /// reads from now on.
    pub(super) fn resize(&mut self, bytes: u64, fill_points: bool) {
        let (points, ranges) = split(bytes);
        self.points.set_capacity(points);
        self.ranges.set_capacity(ranges);
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
            held.empty_ranges += u64::from(range.is_empty());
            held.range_entries += range.len() as u64;
            held.range_bytes += RangeWeight.weight(prefix, range);
        }
        by_family
    }

    pub(super) fn get(&mut self, key: &[u8]) -> Known<Option<Vec<u8>>> {
        let found = self
            .points
            .get(key)
            .map(|value| value.as_deref().map(<[u8]>::to_vec));
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
            self.points
                .insert(key.into_boxed_slice(), value.map(Vec::into_boxed_slice));
        } else {
            self.counts.fills_dropped += 1;
        }
    }

    /// Keeps the absence of `key` that the caller proved without a read (a new
    /// id: `StoreTxn::known_absent`). Not a read of RocksDB, so not counted as
    /// one; the commit that writes the key passes its value through.
    pub(super) fn note_absent(&mut self, key: Vec<u8>) {
        if self.fill_points {
            self.points.insert(key.into_boxed_slice(), None);
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
                (range.starts_at_or_before(prefix, from), range.hi.is_none())
            }
            Look::From(Bound::Unbounded) => (range.starts_at_prefix(), range.hi.is_none()),
            Look::Before(before) => (
                range.hi.as_ref().is_none_or(|hi| before <= &hi[..]),
                range.starts_at_prefix(),
            ),
        };
        if !covered {
            return None;
        }
        match range.find(prefix, look) {
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
    pub(super) fn fill_range(&mut self, generation: u64, prefix: Vec<u8>, mut new: Range) {
        count_by_family(&mut self.counts.ranges_by_family, &prefix, new.is_empty());
        if generation != self.generation {
            self.counts.fills_dropped += 1;
            return;
        }
        if let Some(mut old) = self.ranges.peek_mut(prefix.as_slice())
            && old.touches(&prefix, &new)
            && old.len() + new.len() <= RANGE_MAX_KEYS
        {
            if new.lo < old.lo {
                old.lo = std::mem::take(&mut new.lo);
            }
            old.hi = match (old.hi.take(), new.hi.take()) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            for slot in &new.slots {
                old.insert_suffix(new.suffix(*slot), new.value(*slot));
            }
            return;
        }
        self.ranges.insert(prefix.into_boxed_slice(), new);
    }

    /// Passes committed writes through: cached keys take their new value, and
    /// keys inside a cached interval are inserted or removed. A write counts as a
    /// use of a cached point (a row just written is read again as its
    /// conversation goes on, see [`HOT_SHARE`]); a range's does not (measured:
    /// no fewer seeks).
    pub(super) fn apply<'w>(
        &mut self,
        writes: impl IntoIterator<Item = (&'w Vec<u8>, &'w Option<Vec<u8>>)>,
    ) {
        self.generation += 1;
        for (key, value) in writes {
            if let Some(mut cached) = self.points.get_mut(key.as_slice()) {
                *cached = value.as_deref().map(Box::from);
            }
            let Some(len) = range_prefix_len(key) else {
                continue;
            };
            if let Some(mut range) = self.ranges.peek_mut(&key[..len])
                && range.covers(key, len)
            {
                match value {
                    Some(value) => range.insert_suffix(&key[len..], value),
                    None => range.remove_suffix(&key[len..]),
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
