//! The transaction framing of a pgoutput stream: every row change sits between a
//! Begin and the Commit of the same transaction, and transactions never nest.
//! Anything else is a protocol anomaly, a definite error: skipping it would let a
//! later keepalive move the applied LSN past changes that were never applied.
//!
//! ```text
//!  idle ──Begin(final_lsn)──▶ open ──change…──▶ open ──Commit(lsn = final_lsn)──▶ idle
//!   │ change / Commit              │ Begin
//!   ▼                              ▼
//!  ChangeOutsideTransaction,      NestedBegin
//!  CommitWithoutBegin
//! ```
//!
//! Pure (no IO): the streaming loop feeds it every event.

use crate::lsn::Lsn;

/// A pgoutput stream that breaks the transaction framing. Each names the LSNs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error(
        "pgoutput protocol anomaly: a Begin (commit at {new}) arrived while the transaction committing at {open} was still open; nothing past the last durable transaction is confirmed"
    )]
    NestedBegin { open: Lsn, new: Lsn },
    #[error(
        "pgoutput protocol anomaly: a row change (WAL {at}) arrived outside any transaction; nothing past the last durable transaction is confirmed"
    )]
    ChangeOutsideTransaction { at: Lsn },
    #[error(
        "pgoutput protocol anomaly: a Commit (end {end_lsn}) arrived without a Begin; nothing past the last durable transaction is confirmed"
    )]
    CommitWithoutBegin { end_lsn: Lsn },
    #[error(
        "pgoutput protocol anomaly: the Commit at {commit_lsn} ends the transaction that Begin announced for {announced}"
    )]
    CommitMismatch { announced: Lsn, commit_lsn: Lsn },
}

/// Where the stream is: between transactions, or inside the one whose Begin
/// announced its commit LSN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Framing {
    open: Option<Lsn>,
}

impl Framing {
    /// A Begin announcing the commit LSN `final_lsn`.
    pub(crate) fn begin(&mut self, final_lsn: Lsn) -> Result<(), ProtocolError> {
        if let Some(open) = self.open {
            return Err(ProtocolError::NestedBegin {
                open,
                new: final_lsn,
            });
        }
        self.open = Some(final_lsn);
        Ok(())
    }

    /// A row change (insert, update, delete, truncate, quarantined row) at `at`:
    /// the commit LSN of its transaction.
    pub(crate) fn change(&self, at: Lsn) -> Result<Lsn, ProtocolError> {
        self.open
            .ok_or(ProtocolError::ChangeOutsideTransaction { at })
    }

    /// A Commit: ends the open transaction, which must be the one it commits.
    pub(crate) fn commit(&mut self, commit_lsn: Lsn, end_lsn: Lsn) -> Result<Lsn, ProtocolError> {
        let announced = self
            .open
            .take()
            .ok_or(ProtocolError::CommitWithoutBegin { end_lsn })?;
        if announced != commit_lsn {
            return Err(ProtocolError::CommitMismatch {
                announced,
                commit_lsn,
            });
        }
        Ok(announced)
    }

    /// Whether a transaction is open.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_framed_stream_passes() {
        let mut framing = Framing::default();
        for commit in [Lsn(100), Lsn(200)] {
            framing.begin(commit).unwrap();
            assert_eq!(framing.change(Lsn(commit.0 - 10)), Ok(commit));
            assert_eq!(framing.commit(commit, Lsn(commit.0 + 8)), Ok(commit));
            assert!(!framing.is_open());
        }
    }

    #[test]
    fn a_change_outside_a_transaction_is_an_anomaly() {
        let framing = Framing::default();
        let e = framing.change(Lsn(0x16_0000_0040)).unwrap_err();
        assert_eq!(
            e,
            ProtocolError::ChangeOutsideTransaction {
                at: Lsn(0x16_0000_0040)
            }
        );
        assert!(e.to_string().contains("16/40"), "{e}");
    }

    #[test]
    fn a_nested_begin_is_an_anomaly() {
        let mut framing = Framing::default();
        framing.begin(Lsn(100)).unwrap();
        assert_eq!(
            framing.begin(Lsn(200)),
            Err(ProtocolError::NestedBegin {
                open: Lsn(100),
                new: Lsn(200)
            })
        );
    }

    #[test]
    fn a_commit_without_begin_or_of_another_transaction_is_an_anomaly() {
        let mut framing = Framing::default();
        assert_eq!(
            framing.commit(Lsn(100), Lsn(108)),
            Err(ProtocolError::CommitWithoutBegin { end_lsn: Lsn(108) })
        );
        framing.begin(Lsn(100)).unwrap();
        assert_eq!(
            framing.commit(Lsn(150), Lsn(158)),
            Err(ProtocolError::CommitMismatch {
                announced: Lsn(100),
                commit_lsn: Lsn(150)
            })
        );
    }
}
