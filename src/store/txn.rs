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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;

use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, WriteBatch, WriteOptions};
use serde::{Serialize, de::DeserializeOwned};

use super::{Cf, Db, PHYSICAL, Store, StoreError, decode, encode};

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

type RawIter<'a> = DBRawIteratorWithThreadMode<'a, Db>;

/// Pending writes by physical key: `Some` puts, `None` deletes.
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
type PendingWrite<'w> = (&'w Vec<u8>, &'w Option<Vec<u8>>);

/// Writes of a unit of work taken out of it ([`StoreTxn::into_pending`]) to be
/// continued later ([`Store::begin_with`]): several source transactions can share
/// one commit.
#[derive(Default)]
pub struct PendingWrites([Writes; PHYSICAL.len()]);

impl PendingWrites {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(BTreeMap::is_empty)
    }
}

/// A unit of work: reads (walks too) see its own writes, and everything commits at
/// once or not at all.
pub struct StoreTxn<'a> {
    store: &'a Store,
    writes: RefCell<[Writes; PHYSICAL.len()]>,
    iters: RefCell<[Option<RawIter<'a>>; PHYSICAL.len()]>,
}

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
        }
    }

    /// Ends the unit of work without committing, keeping its writes.
    pub fn into_pending(self) -> PendingWrites {
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
        for (index, writes) in self.writes.take().iter().enumerate() {
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
            .map_err(|e| store.err(e))
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = tagged(cf, key);
        if let Some(value) = self.writes.borrow()[cf.physical_index()].get(&key) {
            return Ok(value.clone());
        }
        self.store
            .db()
            .get_cf(self.handle(cf), &key)
            .map_err(|e| self.store.err(e))
    }

    pub fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool, StoreError> {
        let key = tagged(cf, key);
        if let Some(value) = self.writes.borrow()[cf.physical_index()].get(&key) {
            return Ok(value.is_some());
        }
        Ok(self
            .store
            .db()
            .get_pinned_cf(self.handle(cf), &key)
            .map_err(|e| self.store.err(e))?
            .is_some())
    }

    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes.borrow_mut()[cf.physical_index()].insert(tagged(cf, key), Some(value.to_vec()));
        Ok(())
    }

    pub fn delete(&self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        self.writes.borrow_mut()[cf.physical_index()].insert(tagged(cf, key), None);
        Ok(())
    }

    pub fn get_record<T: DeserializeOwned>(
        &self,
        cf: Cf,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.get(cf, key)? {
            Some(bytes) => decode(cf, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_record<T: Serialize>(
        &self,
        cf: Cf,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        self.put(cf, key, &encode(value))
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
        let mut iters = self.iters.borrow_mut();
        let it =
            iters[index].get_or_insert_with(|| self.store.db().raw_iterator_cf(self.handle(cf)));
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
    pub fn next_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.keys_with_prefix(cf, prefix, after, 1)?.pop())
    }

    /// The greatest key that starts with `prefix` and is strictly less than `before`
    /// (or the last key with the prefix when `before` is `None`).
    pub fn prev_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        before: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let tagged_prefix = tagged(cf, prefix);
        let end = prefix_successor(&tagged_prefix).expect("a tagged prefix has a successor");
        let bound = match before {
            Some(before) => tagged(cf, before).min(end),
            None => end,
        };
        let mut found = None;
        self.walk(cf, &bound, Direction::Backward, |key, _| {
            if key.starts_with(&tagged_prefix) {
                found = Some(key[1..].to_vec());
            }
            false
        })?;
        Ok(found)
    }

    /// Up to `limit` keys with `prefix`, in order, starting after `after`.
    pub fn keys_with_prefix(
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
    pub fn scan(&self, cf: Cf, from: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
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
}
