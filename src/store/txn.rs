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
            .cf_handle(cf.name())
            .expect("every column family is created at open")
    }

    pub fn commit(self) -> Result<(), StoreError> {
        let store = self.store;
        self.txn.commit().map_err(|e| store.err(e))
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.txn
            .get_cf(self.cf(cf), key)
            .map_err(|e| self.store.err(e))
    }

    pub fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .txn
            .get_pinned_cf(self.cf(cf), key)
            .map_err(|e| self.store.err(e))?
            .is_some())
    }

    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.txn
            .put_cf(self.cf(cf), key, value)
            .map_err(|e| self.store.err(e))
    }

    pub fn delete(&self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        self.txn
            .delete_cf(self.cf(cf), key)
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

    /// The smallest key that starts with `prefix` and is strictly greater than `after`
    /// (or any key with the prefix when `after` is `None`).
    pub fn next_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut it = self.txn.raw_iterator_cf(self.cf(cf));
        match after {
            Some(after) => {
                let mut seek = Vec::with_capacity(after.len() + 1);
                seek.extend_from_slice(after);
                seek.push(0);
                it.seek(&seek);
            }
            None => it.seek(prefix),
        }
        self.key_with_prefix(&it, prefix)
    }

    /// The greatest key that starts with `prefix` and is strictly less than `before`
    /// (or the last key with the prefix when `before` is `None`).
    pub fn prev_key(
        &self,
        cf: Cf,
        prefix: &[u8],
        before: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut it = self.txn.raw_iterator_cf(self.cf(cf));
        match before {
            Some(before) => {
                it.seek_for_prev(before);
                if it.valid() && it.key() == Some(before) {
                    it.prev();
                }
            }
            None => match prefix_successor(prefix) {
                Some(end) => {
                    it.seek_for_prev(&end);
                    if it.valid() && it.key() == Some(end.as_slice()) {
                        it.prev();
                    }
                }
                None => it.seek_to_last(),
            },
        }
        self.key_with_prefix(&it, prefix)
    }

    fn key_with_prefix(
        &self,
        it: &rocksdb::DBRawIteratorWithThreadMode<'_, Transaction<'a, Db>>,
        prefix: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !it.valid() {
            it.status().map_err(|e| self.store.err(e))?;
            return Ok(None);
        }
        Ok(it
            .key()
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
        let mut it = self.txn.raw_iterator_cf(self.cf(cf));
        match after {
            Some(after) => {
                let mut seek = after.to_vec();
                seek.push(0);
                it.seek(&seek);
            }
            None => it.seek(prefix),
        }
        let mut keys = Vec::new();
        while keys.len() < limit && it.valid() {
            match it.key() {
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
        let mut it = self.txn.raw_iterator_cf(self.cf(cf));
        it.seek(from);
        let mut out = Vec::new();
        while out.len() < limit && it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                out.push((k.to_vec(), v.to_vec()));
            }
            it.next();
        }
        it.status().map_err(|e| self.store.err(e))?;
        Ok(out)
    }
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
