//! [`StoreTxn`]: one atomic unit of work on the state, with ordered-key navigation.

use rocksdb::{ColumnFamily, OptimisticTransactionOptions, Transaction, WriteOptions};
use serde::{Serialize, de::DeserializeOwned};

use super::{Cf, Db, Store, StoreError, decode, encode};

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A RocksDB optimistic transaction: reads (iterators too) see its own writes, and
/// everything commits at once or not at all.
pub struct StoreTxn<'a> {
    store: &'a Store,
    txn: Transaction<'a, Db>,
}

impl<'a> StoreTxn<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        let write = WriteOptions::default();
        let txn = store
            .db()
            .transaction_opt(&write, &OptimisticTransactionOptions::default());
        StoreTxn { store, txn }
    }

    pub fn store(&self) -> &'a Store {
        self.store
    }

    fn cf(&self, cf: Cf) -> &'a ColumnFamily {
        self.store
            .db()
            .cf_handle(cf.physical().0)
            .expect("every column family is created at open")
    }

    pub fn commit(self) -> Result<(), StoreError> {
        let store = self.store;
        let _gate = store.gate();
        store.check_usable()?;
        self.txn.commit().map_err(|e| store.err(e))
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.txn
            .get_cf(self.cf(cf), tagged(cf, key))
            .map_err(|e| self.store.err(e))
    }

    pub fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .txn
            .get_pinned_cf(self.cf(cf), tagged(cf, key))
            .map_err(|e| self.store.err(e))?
            .is_some())
    }

    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.txn
            .put_cf(self.cf(cf), tagged(cf, key), value)
            .map_err(|e| self.store.err(e))
    }

    pub fn delete(&self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        self.txn
            .delete_cf(self.cf(cf), tagged(cf, key))
            .map_err(|e| self.store.err(e))
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

    fn iter(&self, cf: Cf) -> RawIter<'_, 'a> {
        self.txn.raw_iterator_cf(self.cf(cf))
    }

    /// Positions `it` on the first key strictly after `after`, or on `prefix`.
    fn seek_after(it: &mut RawIter<'_, 'a>, cf: Cf, prefix: &[u8], after: Option<&[u8]>) {
        match after {
            Some(after) => {
                let mut seek = tagged(cf, after);
                seek.push(0);
                it.seek(&seek);
            }
            None => it.seek(tagged(cf, prefix)),
        }
    }

    /// The smallest key that starts with `prefix` and is strictly greater than `after`
    /// (or any key with the prefix when `after` is `None`).
    pub fn next_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut it = self.iter(cf);
        Self::seek_after(&mut it, cf, prefix, after);
        self.key_with_prefix(&it, cf, prefix)
    }

    /// The greatest key that starts with `prefix` and is strictly less than `before`
    /// (or the last key with the prefix when `before` is `None`).
    pub fn prev_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        before: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut it = self.iter(cf);
        let bound = match before {
            Some(before) => tagged(cf, before),
            None => prefix_successor(&tagged(cf, prefix)).expect("a tagged prefix has a successor"),
        };
        it.seek_for_prev(&bound);
        if it.valid() && it.key() == Some(bound.as_slice()) {
            it.prev();
        }
        self.key_with_prefix(&it, cf, prefix)
    }

    fn key_with_prefix(
        &self,
        it: &RawIter<'_, 'a>,
        cf: Cf,
        prefix: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !it.valid() {
            it.status().map_err(|e| self.store.err(e))?;
            return Ok(None);
        }
        Ok(it
            .key()
            .and_then(|k| untagged(cf, k))
            .filter(|k| k.starts_with(prefix))
            .map(<[u8]>::to_vec))
    }

    /// Up to `limit` keys with `prefix`, in order, starting after `after`.
    pub fn keys_with_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut it = self.iter(cf);
        Self::seek_after(&mut it, cf, prefix, after);
        let mut keys = Vec::new();
        while keys.len() < limit && it.valid() {
            match it.key().and_then(|k| untagged(cf, k)) {
                Some(k) if k.starts_with(prefix) => keys.push(k.to_vec()),
                _ => break,
            }
            it.next();
        }
        it.status().map_err(|e| self.store.err(e))?;
        Ok(keys)
    }

    /// Up to `limit` (key, value) pairs of a column family from `from` (inclusive).
    pub fn scan(&self, cf: Cf, from: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        let mut it = self.iter(cf);
        it.seek(tagged(cf, from));
        let mut out = Vec::new();
        while out.len() < limit && it.valid() {
            match (it.key().and_then(|k| untagged(cf, k)), it.value()) {
                (Some(k), Some(v)) => out.push((k.to_vec(), v.to_vec())),
                _ => break,
            }
            it.next();
        }
        it.status().map_err(|e| self.store.err(e))?;
        Ok(out)
    }
}

type RawIter<'t, 'a> = rocksdb::DBRawIteratorWithThreadMode<'t, Transaction<'a, Db>>;

/// The physical key of a logical family's key: its tag byte, then the key.
fn tagged(cf: Cf, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(cf.physical().1);
    out.extend_from_slice(key);
    out
}

/// The logical key of a physical key, if it belongs to `cf`.
fn untagged(cf: Cf, key: &[u8]) -> Option<&[u8]> {
    key.split_first()
        .filter(|(tag, _)| **tag == cf.physical().1)
        .map(|(_, rest)| rest)
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
