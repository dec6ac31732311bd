//! What the `state` family's bytes are made of: keys and bytes per logical family
//! (the first key byte is its [`Cf`] tag), and the family's files. Read-only, for
//! benches and diagnosis: a full scan reads the whole family, so nothing on the
//! daemon's path calls it.

use rocksdb::ReadOptions;

use super::{Cf, PHYSICAL, STATE, Store};

/// One logical family of the `state` column family.
#[derive(Clone, Copy, Debug)]
pub struct FamilySize {
    pub cf: Cf,
    pub keys: u64,
    /// Key bytes as stored, the tag byte included.
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// See [`Store::state_composition`].
#[derive(Clone, Debug)]
pub struct StateComposition {
    /// Logical families with at least one key, in tag order.
    pub families: Vec<FamilySize>,
    /// `rocksdb.total-sst-files-size` of the family.
    pub sst_bytes: u64,
    /// `rocksdb.size-all-mem-tables` of the family.
    pub memtable_bytes: u64,
    /// `rocksdb.num-files-at-level<N>`, L0 first, through the deepest level
    /// with files.
    pub files_at_level: Vec<u64>,
}

impl Store {
    /// A full scan of the `state` family (memtables included, around both
    /// caches, so it leaves them as they were), grouped by logical family, with
    /// the family's size on disk and its files per level.
    pub fn state_composition(&self) -> Result<StateComposition, super::StoreError> {
        let handle = self
            .db
            .cf_handle(PHYSICAL[STATE])
            .expect("column family exists");
        let mut options = ReadOptions::default();
        // The prefix extractor would otherwise bound the scan to one prefix.
        options.set_total_order_seek(true);
        options.fill_cache(false);
        let mut sizes: Vec<FamilySize> = Vec::new();
        let mut iter = self.db.raw_iterator_cf_opt(handle, options);
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let tag = key.first().copied().unwrap_or(u8::MAX);
            let Some(cf) = Cf::ALL.into_iter().find(|cf| *cf as u8 == tag) else {
                iter.next();
                continue;
            };
            if sizes.last().is_none_or(|last| last.cf != cf) {
                sizes.push(FamilySize {
                    cf,
                    keys: 0,
                    key_bytes: 0,
                    value_bytes: 0,
                });
            }
            let size = sizes.last_mut().expect("pushed above");
            size.keys += 1;
            size.key_bytes += key.len() as u64;
            size.value_bytes += value.len() as u64;
            iter.next();
        }
        iter.status().map_err(|e| self.err(e))?;
        let property = |name: &str| {
            self.db
                .property_int_value_cf(handle, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        let mut files_at_level: Vec<u64> = (0..7)
            .map(|level| property(&format!("rocksdb.num-files-at-level{level}")))
            .collect();
        while files_at_level.len() > 2 && files_at_level.last() == Some(&0) {
            files_at_level.pop();
        }
        Ok(StateComposition {
            families: sizes,
            sst_bytes: property("rocksdb.total-sst-files-size"),
            memtable_bytes: property("rocksdb.size-all-mem-tables"),
            files_at_level,
        })
    }
}
