//! [`StoreTxn`]: one atomic unit of work on the state, with ordered-key navigation.
//!
//! Written here rather than with RocksDB's transactions: replytime has one writer of
//! the state (the engine; the sink task only removes outbox entries it alone
//! removes), so the conflict checks of an optimistic transaction buy nothing and
//! cost a lookup per key at commit, and its read-your-writes iterators are rebuilt
//! on every seek. A [`StoreTxn`] keeps its writes in ordered maps (one per physical
//! column family), reads through them to the database, merges them into forward and
//! backward key walks, and commits them as one `WriteBatch`. The database iterators
//! it reads through are created once per transaction and re-seeked.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;

use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, ReadOptions, WriteBatch, WriteOptions};
use serde::{Serialize, de::DeserializeOwned};

use super::cache::{self, LOAD_KEYS, Look, Range};
use super::{Cf, Db, PHYSICAL, RocksDbRead, STATE, Store, StoreError, decode, encode};

/// A key and its value.
pub(super) type KeyValue = (Vec<u8>, Vec<u8>);

type RawIter<'a> = DBRawIteratorWithThreadMode<'a, Db>;

/// Pending writes by physical key: `Some` puts, `None` deletes.
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
type PendingWrite<'w> = (&'w Vec<u8>, &'w Option<Vec<u8>>);

/// Writes of a unit of work taken out of it ([`StoreTxn::into_pending`]) to be
/// continued later ([`Store::begin_with`]): several source transactions can share
/// one commit.
#[derive(Default)]
pub(crate) struct PendingWrites([Writes; PHYSICAL.len()]);

/// A unit of work: reads (walks too) see its own writes, and everything commits at
/// once or not at all.
pub struct StoreTxn<'a> {
    store: &'a Store,
    writes: RefCell<[Writes; PHYSICAL.len()]>,
    /// One per physical family (total order), then [`PREFIX_SEEK`].
    iters: RefCell<[Option<RawIter<'a>>; PHYSICAL.len() + 1]>,
    /// Read-cache generation when each `state` iterator ([`STATE`], [`PREFIX_SEEK`])
    /// was created: what it reads may be cached only while no commit came after.
    generations: [Cell<u64>; 2],
}

/// Index in [`StoreTxn::iters`] of the `state` iterator in prefix mode: its seeks
/// consult the prefix bloom filters, and it is only valid within one prefix.
const PREFIX_SEEK: usize = PHYSICAL.len();

/// Which way a walk goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

impl<'a> StoreTxn<'a> {
    pub(super) fn new(store: &'a Store, pending: PendingWrites) -> Self {
        StoreTxn {
            store,
            writes: RefCell::new(pending.0),
            iters: RefCell::default(),
            generations: Default::default(),
        }
    }

    /// Ends the unit of work without committing, keeping its writes.
    pub(crate) fn into_pending(self) -> PendingWrites {
        PendingWrites(self.writes.take())
    }

    pub fn store(&self) -> &'a Store {
        self.store
    }

    fn handle(&self, cf: Cf) -> &'a ColumnFamily {
        self.store
            .db()
            .cf_handle(PHYSICAL[cf.physical_index()])
            .expect("every column family is created at open")
    }

    /// Writes everything at once (not synced: see [`Store::sync`]).
    pub fn commit(self) -> Result<(), StoreError> {
        let store = self.store;
        let mut batch = WriteBatch::default();
        let all = self.writes.take();
        for (index, writes) in all.iter().enumerate() {
            if writes.is_empty() {
                continue;
            }
            let handle = store
                .db()
                .cf_handle(PHYSICAL[index])
                .expect("every column family is created at open");
            for (key, value) in writes {
                match value {
                    Some(value) => batch.put_cf(handle, key, value),
                    None => batch.delete_cf(handle, key),
                }
            }
        }
        drop(self.iters.take());
        if batch.is_empty() {
            return Ok(());
        }
        let _gate = store.gate();
        store.check_usable()?;
        store
            .db()
            .write_opt(batch, &WriteOptions::default())
            .map_err(|e| store.err(e))?;
        // A commit without state writes leaves every cached entry and every fill
        // in flight exact (see `cache.rs`).
        if !all[STATE].is_empty() {
            store.cache().apply(&all[STATE]);
        }
        Ok(())
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = tagged(cf, key);
        if let Some(value) = self.written(cf, &key) {
            return Ok(value);
        }
        if cf.physical_index() == STATE {
            return self.committed_get(self.handle(cf), &key);
        }
        self.store
            .db()
            .get_cf(self.handle(cf), &key)
            .map_err(|e| self.store.err(e))
    }

    /// What this unit's own writes say of `key`: `Some` when it wrote the key (its
    /// value, `None` for a delete), `None` when only the committed state knows.
    pub(crate) fn own_write(&self, cf: Cf, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.written(cf, &tagged(cf, key))
    }

    /// [`StoreTxn::own_write`] of a key already tagged with its family.
    fn written(&self, cf: Cf, tagged: &[u8]) -> Option<Option<Vec<u8>>> {
        self.writes.borrow()[cf.physical_index()]
            .get(tagged)
            .cloned()
    }

    /// A read of `key` whose committed value the caller has proven absent (see
    /// `engine::fresh`): this unit's own writes answer it, and without one it is
    /// `None`, with no read of the committed state (no read cache lookup, no
    /// RocksDB get through the filters of every file). With `verify`, the tests'
    /// safety net, [`StoreTxn::check_known_absent`] reads it anyway.
    pub(crate) fn get_known_absent(
        &self,
        cf: Cf,
        key: &[u8],
        verify: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.own_write(cf, key) {
            return Ok(value);
        }
        self.known_absent(cf, key, verify)?;
        Ok(None)
    }

    /// Takes `key` as absent from the committed state, as the caller has proven
    /// (see `engine::fresh`). The read cache keeps that absence as the skipped read
    /// would have left it, so the commit that writes the key passes its value
    /// through and the next read of the new row is a hit, not a RocksDB get. With
    /// `verify`, the tests' safety net, [`StoreTxn::check_known_absent`] reads the
    /// committed state anyway.
    pub(crate) fn known_absent(&self, cf: Cf, key: &[u8], verify: bool) -> Result<(), StoreError> {
        let key = tagged(cf, key);
        if verify {
            self.check_known_absent(cf, &key)?;
        }
        if cf.physical_index() == STATE {
            self.store.cache().note_absent(key);
        }
        Ok(())
    }

    /// The safety net of a read skipped as known absent: reads the committed state
    /// (RocksDB itself, past the read cache and its counters) and panics with
    /// [`crate::fault::KNOWN_ABSENT_FOUND`] if the key (`tagged` with its family's
    /// tag byte) is there: the proof was wrong.
    fn check_known_absent(&self, cf: Cf, tagged: &[u8]) -> Result<(), StoreError> {
        let found = self
            .store
            .db()
            .get_cf(self.handle(cf), tagged)
            .map_err(|e| self.store.err(e))?;
        assert!(
            found.is_none(),
            "{}: {cf:?} {:?} is in the committed state",
            crate::fault::KNOWN_ABSENT_FOUND,
            String::from_utf8_lossy(&tagged[1..])
        );
        Ok(())
    }

    /// This unit's pending writes to `cf` (logical keys; `None` deletes).
    #[cfg(test)]
    pub(crate) fn pending(&self, cf: Cf) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let tag = cf.physical().1;
        self.writes.borrow()[cf.physical_index()]
            .iter()
            .filter(|(key, _)| key.first() == Some(&tag))
            .map(|(key, value)| (key[1..].to_vec(), value.clone()))
            .collect()
    }

    pub fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(cf, key)?.is_some())
    }

    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes.borrow_mut()[cf.physical_index()].insert(tagged(cf, key), Some(value.to_vec()));
        Ok(())
    }

    pub fn delete(&self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        self.writes.borrow_mut()[cf.physical_index()].insert(tagged(cf, key), None);
        Ok(())
    }

    pub(crate) fn get_record<T: DeserializeOwned>(
        &self,
        cf: Cf,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.get(cf, key)? {
            Some(bytes) => decode(cf, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn put_record<T: Serialize>(
        &self,
        cf: Cf,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        self.put(cf, key, &encode(value))
    }

    /// The database iterator of physical family `index`, created on first use.
    /// Index [`PREFIX_SEEK`] is the `state` family's prefix-mode iterator.
    fn iterator<'i>(
        &self,
        iters: &'i mut [Option<RawIter<'a>>; PHYSICAL.len() + 1],
        index: usize,
    ) -> &'i mut RawIter<'a> {
        iters[index].get_or_insert_with(|| {
            match index {
                STATE => self.generations[0].set(self.store.cache().generation()),
                PREFIX_SEEK => self.generations[1].set(self.store.cache().generation()),
                _ => {}
            }
            let physical = if index == PREFIX_SEEK { STATE } else { index };
            let handle = self
                .store
                .db()
                .cf_handle(PHYSICAL[physical])
                .expect("every column family is created at open");
            let mut options = ReadOptions::default();
            options.set_total_order_seek(index != PREFIX_SEEK);
            self.store.db().raw_iterator_cf_opt(handle, options)
        })
    }

    /// Visits the live (key, value) pairs of `cf`'s physical family in key order
    /// from `start` (inclusive, forward; exclusive, backward), this transaction's
    /// writes merged over the database, until `visit` returns false. Keys are
    /// physical (tagged).
    fn walk(
        &self,
        cf: Cf,
        start: &[u8],
        direction: Direction,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let index = cf.physical_index();
        let writes = self.writes.borrow();
        let mut pending: Box<dyn Iterator<Item = PendingWrite<'_>>> = match direction {
            Direction::Forward => {
                Box::new(writes[index].range::<[u8], _>((Bound::Included(start), Bound::Unbounded)))
            }
            Direction::Backward => Box::new(
                writes[index]
                    .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
                    .rev(),
            ),
        };
        if index == STATE {
            self.store.count_read(RocksDbRead::Walk);
        }
        let mut iters = self.iters.borrow_mut();
        let it = self.iterator(&mut iters, index);
        match direction {
            Direction::Forward => it.seek(start),
            Direction::Backward => {
                it.seek_for_prev(start);
                if it.valid() && it.key() == Some(start) {
                    it.prev();
                }
            }
        }
        let step = |it: &mut RawIter<'a>| match direction {
            Direction::Forward => it.next(),
            Direction::Backward => it.prev(),
        };
        // "a comes before b" in the walk's order.
        let before = |a: &[u8], b: &[u8]| match direction {
            Direction::Forward => a < b,
            Direction::Backward => a > b,
        };
        let mut next_pending = pending.next();
        loop {
            let stored = if it.valid() { it.key() } else { None };
            match (stored, next_pending) {
                (None, None) => break,
                (Some(key), pending_entry) if pending_entry.is_none_or(|(p, _)| before(key, p)) => {
                    let value = it.value().unwrap_or_default();
                    if !visit(key, value) {
                        return Ok(());
                    }
                    step(it);
                }
                (stored, Some((key, value))) => {
                    if stored == Some(key.as_slice()) {
                        step(it);
                    }
                    if let Some(value) = value
                        && !visit(key, value)
                    {
                        return Ok(());
                    }
                    next_pending = pending.next();
                }
                (Some(_), None) => unreachable!("handled by the guard above"),
            }
        }
        it.status().map_err(|e| self.store.err(e))
    }

    /// The smallest key that starts with `prefix` and is strictly greater than `after`
    /// (or any key with the prefix when `after` is `None`).
    pub(crate) fn next_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.next_entry(cf, prefix, after)?.map(|(key, _)| key))
    }

    /// The greatest key that starts with `prefix` and is strictly less than `before`
    /// (or the last key with the prefix when `before` is `None`).
    pub(crate) fn prev_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        before: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.prev_entry(cf, prefix, before)?.map(|(key, _)| key))
    }

    /// [`StoreTxn::next_key`] with the key's value.
    pub(crate) fn next_entry(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> Result<Option<KeyValue>, StoreError> {
        let tagged_prefix = tagged(cf, prefix);
        let after = after.map(|after| tagged(cf, after));
        let start = match &after {
            Some(after) if *after >= tagged_prefix => Bound::Excluded(after.as_slice()),
            _ => Bound::Included(tagged_prefix.as_slice()),
        };
        self.entry(cf, &tagged_prefix, Look::From(start))
    }

    /// [`StoreTxn::prev_key`] with the key's value.
    pub(crate) fn prev_entry(
        &self,
        cf: Cf,
        prefix: &[u8],
        before: Option<&[u8]>,
    ) -> Result<Option<KeyValue>, StoreError> {
        let tagged_prefix = tagged(cf, prefix);
        let end = prefix_successor(&tagged_prefix).expect("a tagged prefix has a successor");
        let bound = match before {
            Some(before) => tagged(cf, before).min(end),
            None => end,
        };
        self.entry(cf, &tagged_prefix, Look::Before(&bound))
    }

    /// The live entry of `prefix` (physical) that `look` wants, with its logical
    /// key: through the read cache for the navigated families, else a walk.
    fn entry(&self, cf: Cf, prefix: &[u8], look: Look<'_>) -> Result<Option<KeyValue>, StoreError> {
        let found = if cached_prefix(cf, prefix) {
            let writes = self.writes.borrow();
            let writes = &writes[STATE];
            match look {
                Look::From(start) => {
                    let end = prefix_successor(prefix).expect("a tagged prefix has a successor");
                    let pending = writes.range::<[u8], _>((start, Bound::Excluded(end.as_slice())));
                    self.merged(prefix, look, pending)?
                }
                Look::Before(before) => {
                    let pending = writes
                        .range::<[u8], _>((Bound::Included(prefix), Bound::Excluded(before)))
                        .rev();
                    self.merged(prefix, look, pending)?
                }
            }
        } else {
            let (from, direction) = match look {
                Look::From(Bound::Excluded(after)) => ([after, &[0]].concat(), Direction::Forward),
                Look::From(Bound::Included(from)) => (from.to_vec(), Direction::Forward),
                Look::From(Bound::Unbounded) => (prefix.to_vec(), Direction::Forward),
                Look::Before(before) => (before.to_vec(), Direction::Backward),
            };
            let mut found = None;
            self.walk(cf, &from, direction, |key, value| {
                if key.starts_with(prefix) {
                    found = Some((key.to_vec(), value.to_vec()));
                }
                false
            })?;
            found
        };
        Ok(found.map(|(key, value)| (key[1..].to_vec(), value)))
    }

    /// The entry `look` wants: `pending` (this unit's writes in the look's order
    /// and range) merged over the committed state, which the read cache serves.
    fn merged<'w>(
        &self,
        prefix: &[u8],
        look: Look<'_>,
        mut pending: impl Iterator<Item = PendingWrite<'w>>,
    ) -> Result<Option<KeyValue>, StoreError> {
        let mut committed = self.committed(prefix, look)?;
        let mut next_pending = pending.next();
        loop {
            match (committed, next_pending) {
                (None, None) => return Ok(None),
                (Some(stored), None) => return Ok(Some(stored)),
                (Some(stored), Some((key, _))) if look.precedes(&stored.0, key) => {
                    return Ok(Some(stored));
                }
                (stored, Some((key, value))) => {
                    committed = match stored {
                        Some(stored) if stored.0 == *key => {
                            self.committed(prefix, look.past(&stored.0))?
                        }
                        other => other,
                    };
                    if let Some(value) = value {
                        return Ok(Some((key.clone(), value.clone())));
                    }
                    next_pending = pending.next();
                }
            }
        }
    }

    /// Up to `limit` keys with `prefix`, in order, starting after `after`.
    pub(crate) fn keys_with_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let tagged_prefix = tagged(cf, prefix);
        let start = match after {
            Some(after) => {
                let mut start = tagged(cf, after);
                start.push(0);
                start.max(tagged_prefix.clone())
            }
            None => tagged_prefix.clone(),
        };
        let mut keys = Vec::new();
        if limit == 0 {
            return Ok(keys);
        }
        self.walk(cf, &start, Direction::Forward, |key, _| {
            if !key.starts_with(&tagged_prefix) {
                return false;
            }
            keys.push(key[1..].to_vec());
            keys.len() < limit
        })?;
        Ok(keys)
    }

    /// Up to `limit` (key, value) pairs of a column family from `from` (inclusive).
    pub(crate) fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let tag = cf.physical().1;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.walk(cf, &tagged(cf, from), Direction::Forward, |key, value| {
            if key.first() != Some(&tag) {
                return false;
            }
            out.push((key[1..].to_vec(), value.to_vec()));
            out.len() < limit
        })?;
        Ok(out)
    }
}

/// Whether walks in `prefix` (physical) go through the read cache: prefixes of the
/// navigated families at the granularity the cache keeps.
fn cached_prefix(cf: Cf, prefix: &[u8]) -> bool {
    cf.physical_index() == STATE && cache::range_prefix_len(prefix) == Some(prefix.len())
}

/// Reads of the committed `state` family through the read cache (`cache.rs`).
/// Misses read the unit's own database iterator: its view is the committed state
/// as of its creation, and what it reads is kept only if nothing committed since.
impl<'a> StoreTxn<'a> {
    fn committed_get(
        &self,
        handle: &ColumnFamily,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let store = self.store;
        let generation = {
            let mut cache = store.cache();
            if let Some(value) = cache.get(key) {
                return Ok(value);
            }
            cache.generation()
        };
        store.count_read(RocksDbRead::Get);
        let value = store.db().get_cf(handle, key).map_err(|e| store.err(e))?;
        store
            .cache()
            .fill_point(generation, key.to_vec(), value.clone());
        Ok(value)
    }

    /// The committed entry of `prefix` that `look` wants.
    ///
    /// A miss reads at most [`LOAD_KEYS`] keys, around where `look` points: what a
    /// miss costs stays the same however long the prefix grows (a thread of a
    /// year's messages costs what a new one does). A look from a position inside
    /// the prefix (or from its start), and a backward look from a key of it, seek
    /// in prefix mode, so the bloom filters skip every file without the prefix
    /// (most prefixes the cache does not know do not exist yet, and a known one
    /// lives in a few files). Only a backward look from the prefix's end, whose
    /// target lies outside the prefix, seeks in total order.
    fn committed(&self, prefix: &[u8], look: Look<'_>) -> Result<Option<KeyValue>, StoreError> {
        let unknown = {
            let mut cache = self.store.cache();
            if let Some(found) = cache.find(prefix, look) {
                return Ok(found);
            }
            !cache.has_range(prefix)
        };
        let mut iters = self.iters.borrow_mut();
        let (in_prefix, whole) = match look {
            // A window from the start is the whole prefix when it is short.
            Look::From(start) if starts_within(start, prefix) => (true, None),
            Look::From(_) => (false, self.read_whole(&mut iters, prefix, unknown)?),
            Look::Before(before) => (
                before.starts_with(prefix),
                self.read_whole(&mut iters, prefix, unknown)?,
            ),
        };
        let (range, generation) = match whole {
            Some(whole) => whole,
            None => {
                let (read, index, generation) = if in_prefix {
                    (RocksDbRead::PrefixSeek, PREFIX_SEEK, 1)
                } else {
                    (RocksDbRead::Seek, STATE, 0)
                };
                self.store.count_read(read);
                let it = self.iterator(&mut iters, index);
                let range = read_window(it, prefix, look);
                it.status().map_err(|e| self.store.err(e))?;
                (range, self.generations[generation].get())
            }
        };
        let found = range.find(prefix, look);
        self.store
            .cache()
            .fill_range(generation, prefix.to_vec(), range);
        Ok(found)
    }

    /// The whole of `prefix` when `try_it` and it has at most [`LOAD_KEYS`] keys,
    /// read by a prefix seek, with the generation to cache it at.
    fn read_whole(
        &self,
        iters: &mut [Option<RawIter<'a>>; PHYSICAL.len() + 1],
        prefix: &[u8],
        try_it: bool,
    ) -> Result<Option<(Range, u64)>, StoreError> {
        if !try_it {
            return Ok(None);
        }
        self.store.count_read(RocksDbRead::PrefixSeek);
        let it = self.iterator(iters, PREFIX_SEEK);
        it.seek(prefix);
        let (entries, exhausted) = read_keys(it, prefix, Direction::Forward);
        it.status().map_err(|e| self.store.err(e))?;
        Ok(exhausted.then(|| {
            let range = Range::new(prefix.to_vec(), None, entries);
            (range, self.generations[1].get())
        }))
    }
}

/// Whether a forward look's start lies inside `prefix` (a prefix-mode seek is only
/// valid there).
fn starts_within(start: Bound<&[u8]>, prefix: &[u8]) -> bool {
    match start {
        Bound::Included(from) | Bound::Excluded(from) => from.starts_with(prefix),
        Bound::Unbounded => true,
    }
}

/// Up to [`LOAD_KEYS`] committed entries of `prefix` around where `look` points,
/// as the interval they cover.
fn read_window(it: &mut RawIter<'_>, prefix: &[u8], look: Look<'_>) -> Range {
    match look {
        Look::From(start) => {
            let from = match start {
                Bound::Included(key) | Bound::Excluded(key) => key,
                Bound::Unbounded => prefix,
            };
            it.seek(from);
            let (entries, exhausted) = read_keys(it, prefix, Direction::Forward);
            let hi = match (exhausted, entries.last()) {
                (false, Some((last, _))) => Some([last.as_slice(), &[0]].concat()),
                _ => None,
            };
            Range::new(from.to_vec(), hi, entries)
        }
        Look::Before(before) => {
            it.seek_for_prev(before);
            if it.valid() && it.key() == Some(before) {
                it.prev();
            }
            let (mut entries, exhausted) = read_keys(it, prefix, Direction::Backward);
            entries.reverse();
            let lo = match (exhausted, entries.first()) {
                (false, Some((first, _))) => first.clone(),
                _ => prefix.to_vec(),
            };
            let end = prefix_successor(prefix).expect("a tagged prefix has a successor");
            let hi = (before < end.as_slice()).then(|| before.to_vec());
            Range::new(lo, hi, entries)
        }
    }
}

/// Up to [`LOAD_KEYS`] entries of `prefix` from where `it` stands, and whether the
/// prefix ended before the limit.
fn read_keys(it: &mut RawIter<'_>, prefix: &[u8], direction: Direction) -> (Vec<KeyValue>, bool) {
    let mut entries = Vec::new();
    while entries.len() < LOAD_KEYS {
        match (it.key(), it.value()) {
            (Some(key), Some(value)) if key.starts_with(prefix) => {
                entries.push((key.to_vec(), value.to_vec()));
            }
            _ => return (entries, true),
        }
        match direction {
            Direction::Forward => it.next(),
            Direction::Backward => it.prev(),
        }
    }
    let more = it.key().is_some_and(|key| key.starts_with(prefix));
    (entries, !more)
}

/// The physical key of a logical family's key: its tag byte, then the key.
fn tagged(cf: Cf, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(cf.physical().1);
    out.extend_from_slice(key);
    out
}

/// The smallest byte string greater than every string with this prefix.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! The merged walks against a model: a `BTreeMap` holding the committed state
    //! with the transaction's writes applied on top.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::store::StoreOptions;

    /// Two-letter keys over a small alphabet, so writes and reads collide often.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 0..3)
    }

    fn writes() -> impl Strategy<Value = Vec<(Vec<u8>, Option<u8>)>> {
        proptest::collection::vec((key(), proptest::option::of(any::<u8>())), 0..12)
    }

    /// A key proven absent (a new id) is not read, yet the read cache keeps its
    /// absence as the read would have: the commit that writes the key passes the
    /// new row through, and reading the row back is a hit, not a RocksDB get.
    #[test]
    fn a_key_known_absent_is_cached_without_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let tx = store.begin();
        let skipped = tx.get_known_absent(Cf::Messages, b"new", true).unwrap();
        assert_eq!(skipped, None);
        tx.put(Cf::Messages, b"new", b"row").unwrap();
        tx.commit().unwrap();
        let tx = store.begin();
        assert_eq!(tx.get(Cf::Messages, b"new").unwrap(), Some(b"row".to_vec()));
        let counts = store.cache().counts();
        let gets: u64 = counts.gets_by_family.iter().flatten().sum();
        assert_eq!(
            gets, 0,
            "neither the skipped read nor the read back reached RocksDB"
        );
        assert_eq!((counts.point_hits, counts.point_misses), (1, 0));
    }

    fn apply(
        tx: &StoreTxn<'_>,
        model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
        cf: Cf,
        w: &[(Vec<u8>, Option<u8>)],
    ) {
        for (k, v) in w {
            match v {
                Some(v) => {
                    tx.put(cf, k, &[*v]).unwrap();
                    model.insert(k.clone(), vec![*v]);
                }
                None => {
                    tx.delete(cf, k).unwrap();
                    model.remove(k);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn walks_see_committed_state_and_own_writes(
            committed in writes(),
            own in writes(),
            neighbour in writes(),
            prefix in key(),
            bound in proptest::option::of(key()),
            limit in 0usize..5,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            // Thread and Inbound share a physical family: keys of the neighbour
            // family must never show through.
            let mut model = BTreeMap::new();
            let mut other = BTreeMap::new();
            let tx = store.begin();
            apply(&tx, &mut model, Cf::Thread, &committed);
            apply(&tx, &mut other, Cf::Inbound, &neighbour);
            tx.commit().unwrap();
            let tx = store.begin();
            apply(&tx, &mut model, Cf::Thread, &own);

            let with_prefix: Vec<&Vec<u8>> = model.keys().filter(|k| k.starts_with(&prefix)).collect();
            let after: Vec<Vec<u8>> = with_prefix
                .iter()
                .filter(|k| bound.as_ref().is_none_or(|b| k.as_slice() > b.as_slice()))
                .take(limit)
                .map(|k| k.to_vec())
                .collect();
            prop_assert_eq!(tx.keys_with_prefix(Cf::Thread, &prefix, bound.as_deref(), limit).unwrap(), after);
            let next = with_prefix
                .iter()
                .find(|k| bound.as_ref().is_none_or(|b| k.as_slice() > b.as_slice()))
                .map(|k| k.to_vec());
            prop_assert_eq!(tx.next_key(Cf::Thread, &prefix, bound.as_deref()).unwrap(), next);
            let prev = with_prefix
                .iter()
                .rev()
                .find(|k| bound.as_ref().is_none_or(|b| k.as_slice() < b.as_slice()))
                .map(|k| k.to_vec());
            prop_assert_eq!(tx.prev_key(Cf::Thread, &prefix, bound.as_deref()).unwrap(), prev);
            let from = bound.clone().unwrap_or_default();
            let scanned: Vec<KeyValue> = model
                .range(from.clone()..)
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(tx.scan(Cf::Thread, &from, limit).unwrap(), scanned);
            for k in model.keys().chain(other.keys()) {
                prop_assert_eq!(tx.get(Cf::Thread, k).unwrap(), model.get(k).cloned());
                prop_assert_eq!(tx.contains(Cf::Thread, k).unwrap(), model.contains_key(k));
            }
            // What commits is what was read.
            tx.commit().unwrap();
            let tx = store.begin();
            prop_assert_eq!(tx.scan(Cf::Thread, &[], usize::MAX).unwrap(), model.into_iter().collect::<Vec<_>>());
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, u8, u8),
        Delete(u8, u8),
        /// next and previous entries around a bound (None: the whole prefix).
        Read(u8, Option<u8>),
        Commit,
        /// The unit of work is dropped: its writes never happened.
        Discard,
        /// The writes move into a new unit of work (group commit).
        Stage,
        /// The committed state moves from the memtable into an L0 file: reads
        /// that miss the cache then merge files through prefix bloom filters.
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        let lead = 0u8..3;
        let pos = 0u8..12;
        prop_oneof![
            4 => (lead.clone(), pos.clone(), any::<u8>()).prop_map(|(l, p, v)| Op::Put(l, p, v)),
            2 => (lead.clone(), pos.clone()).prop_map(|(l, p)| Op::Delete(l, p)),
            4 => (lead, proptest::option::of(pos)).prop_map(|(l, p)| Op::Read(l, p)),
            1 => Just(Op::Commit),
            1 => Just(Op::Discard),
            1 => Just(Op::Stage),
            1 => Just(Op::Flush),
        ]
    }

    /// A navigation prefix as the engine builds it: two length-prefixed strings.
    fn nav_prefix(lead: u8) -> Vec<u8> {
        let mut key = Vec::new();
        for part in [[b'a' + lead], [b'x']] {
            key.extend_from_slice(&1u32.to_be_bytes());
            key.extend_from_slice(&part);
        }
        key
    }

    fn nav_key(lead: u8, pos: u8) -> Vec<u8> {
        [nav_prefix(lead), vec![pos]].concat()
    }

    proptest! {
        /// Navigation and point reads through the read cache, across commits,
        /// discarded units and staged ones, against a model; with a cache large
        /// enough to keep everything and one so small it keeps almost nothing.
        #[test]
        fn cached_reads_follow_commits(
            ops in proptest::collection::vec(op(), 1..80),
            tiny_cache in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let options = StoreOptions {
                read_cache_bytes: if tiny_cache { 600 } else { 1 << 20 },
                ..StoreOptions::default()
            };
            let store = Store::open(dir.path(), &options).unwrap();
            let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut visible = committed.clone();
            let mut tx = store.begin();
            for op in ops {
                match op {
                    Op::Put(lead, pos, value) => {
                        tx.put(Cf::Thread, &nav_key(lead, pos), &[value]).unwrap();
                        visible.insert(nav_key(lead, pos), vec![value]);
                    }
                    Op::Delete(lead, pos) => {
                        tx.delete(Cf::Thread, &nav_key(lead, pos)).unwrap();
                        visible.remove(&nav_key(lead, pos));
                    }
                    Op::Read(lead, bound) => {
                        let prefix = nav_prefix(lead);
                        let bound = bound.map(|pos| nav_key(lead, pos));
                        let of_prefix = || visible.iter().filter(|(k, _)| k.starts_with(&prefix));
                        let next = of_prefix()
                            .find(|(k, _)| bound.as_ref().is_none_or(|b| *k > b))
                            .map(|(k, v)| (k.clone(), v.clone()));
                        let prev = of_prefix()
                            .rev()
                            .find(|(k, _)| bound.as_ref().is_none_or(|b| *k < b))
                            .map(|(k, v)| (k.clone(), v.clone()));
                        prop_assert_eq!(tx.next_entry(Cf::Thread, &prefix, bound.as_deref()).unwrap(), next);
                        prop_assert_eq!(tx.prev_entry(Cf::Thread, &prefix, bound.as_deref()).unwrap(), prev);
                        if let Some(bound) = &bound {
                            prop_assert_eq!(tx.get(Cf::Thread, bound).unwrap(), visible.get(bound).cloned());
                        }
                    }
                    Op::Commit => {
                        tx.commit().unwrap();
                        committed = visible.clone();
                        tx = store.begin();
                    }
                    Op::Discard => {
                        drop(tx);
                        visible = committed.clone();
                        tx = store.begin();
                    }
                    Op::Stage => tx = store.begin_with(tx.into_pending()),
                    Op::Flush => {
                        let state = store.db().cf_handle(PHYSICAL[STATE]).unwrap();
                        store.db().flush_cf(state).unwrap();
                    }
                }
            }
            drop(tx);
            let all = store.begin().scan(Cf::Thread, &[], usize::MAX).unwrap();
            prop_assert_eq!(all, committed.into_iter().collect::<Vec<_>>());
        }
    }
}
