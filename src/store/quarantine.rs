//! Quarantined rows: changes that could not be placed (SPEC 4), kept with their LSN
//! and the reason so an operator can list and fix them; the stream goes on.

use serde::{Deserialize, Serialize};

use super::{Cf, Store, StoreError, StoreTxn, decode};
use crate::change::Table;
use crate::lsn::Lsn;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub commit_lsn: Lsn,
    pub table: Table,
    pub row_id: Option<String>,
    pub reason: String,
}

impl StoreTxn<'_> {
    pub(crate) fn put_quarantine(
        &self,
        seq: u32,
        record: &QuarantineRecord,
    ) -> Result<(), StoreError> {
        let mut key = record.commit_lsn.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        self.put_record(Cf::Quarantine, &key, record)
    }
}

impl Store {
    /// Up to `limit` quarantined rows, oldest first.
    pub fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.begin()
            .scan(Cf::Quarantine, &[], limit)?
            .iter()
            .map(|(_, v)| decode(Cf::Quarantine, v))
            .collect()
    }
}
