//! Anchors whose lead changed its `clientId`, and nothing else: their rows take the
//! lead's new `clientId` (or are held while it has none) without being derived
//! again.
//!
//! A lead's anchors grow with its history, so a lead moving to another client
//! marks more anchors the longer replytime runs. Deriving each of them again reads
//! its thread, drafts, AI sends and jobs (about a dozen reads, most of them of cold
//! data: the lead's old anchors); the derivation depends on the lead through its
//! `clientId` alone, and the recorded row of an anchor that nothing else marked is
//! the derivation of the current state, so one read of the record does.
//!
//! An anchor also marked dirty is derived in full (the dirty set is refreshed
//! first, and takes the anchor out of this set); so is one whose row is held (it
//! has no row to relabel), and every anchor of a repair (`replay`: a fixed
//! derivation must reach every anchor it touches). A spill keeps no reason: spilled
//! anchors are derived in full.

use super::anchor::{DerivedAnchor, HeldReason};
use super::{AnchorRecord, Engine, EngineError};
use crate::change::LeadRow;
use crate::lsn::Lsn;
use crate::row::{SinkOp, TimingRow};
use crate::store::{Cf, StoreTxn};

impl Engine {
    /// Relabels up to `limit` anchors of the set, adding their sink operations to
    /// `ops`.
    pub(super) fn relabel_batch(
        &mut self,
        tx: &StoreTxn<'_>,
        limit: usize,
        end_lsn: Lsn,
        ops: &mut Vec<SinkOp>,
    ) -> Result<(), EngineError> {
        for _ in 0..limit {
            let Some(id) = self.relabel.pop_first() else {
                break;
            };
            if let Some(op) = self.relabel(tx, &id, end_lsn)? {
                ops.push(op);
            }
        }
        Ok(())
    }

    fn relabel(
        &mut self,
        tx: &StoreTxn<'_>,
        inbound_id: &str,
        end_lsn: Lsn,
    ) -> Result<Option<SinkOp>, EngineError> {
        let recorded = tx.get_record::<AnchorRecord>(Cf::Anchors, inbound_id.as_bytes())?;
        let (lead_id, row) = match recorded {
            Some(AnchorRecord {
                lead_id,
                row: Some(row),
            }) if !self.options.force_upsert => (lead_id, row),
            _ => return self.refresh(tx, inbound_id, end_lsn),
        };
        self.stats.relabelled += 1;
        let derived = match tx.get_record::<LeadRow>(Cf::Leads, lead_id.as_bytes())? {
            Some(LeadRow {
                client_id: Some(client_id),
                ..
            }) => DerivedAnchor {
                lead_id,
                row: Some(TimingRow { client_id, ..row }),
                held: None,
            },
            lead => DerivedAnchor {
                lead_id,
                row: None,
                held: Some(match lead {
                    None => HeldReason::LeadMissing,
                    Some(_) => HeldReason::NoClient,
                }),
            },
        };
        self.settle(tx, inbound_id, Some(derived), end_lsn)
    }
}
