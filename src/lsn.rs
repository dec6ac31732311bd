//! `Lsn`: a WAL position. Never a bare `u64` in an API: the newtype prints and parses
//! as Postgres does (`16/B374D848`), and orders like the WAL. Serialized as the
//! Postgres text form in human-readable formats (JSON status output) and as a plain
//! `u64` in binary ones (the state store's records).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in the write-ahead log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            u64::deserialize(deserializer).map(Lsn)
        }
    }
}

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    /// Bytes from `other` up to `self`, zero when `other` is ahead.
    pub fn saturating_bytes_since(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }

    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The text of an LSN that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hex numbers separated by '/', like 16/B374D848")]
pub struct ParseLsnError(String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl From<pgwire_replication::Lsn> for Lsn {
    fn from(lsn: pgwire_replication::Lsn) -> Self {
        Lsn(lsn.as_u64())
    }
}

impl From<Lsn> for pgwire_replication::Lsn {
    fn from(lsn: Lsn) -> Self {
        pgwire_replication::Lsn::from_u64(lsn.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let lsn = Lsn(0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap(), lsn);
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in ["", "16", "x/1", "1/", "/1", "1/2/3", "100000000/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn serializes_as_text_for_humans_and_as_u64_for_the_store() {
        let lsn = Lsn(0x16_B374_D848);
        assert_eq!(serde_json::to_string(&lsn).unwrap(), "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<Lsn>("\"16/B374D848\"").unwrap(), lsn);
        let bytes = postcard::to_stdvec(&lsn).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&lsn.0).unwrap());
        assert_eq!(postcard::from_bytes::<Lsn>(&bytes).unwrap(), lsn);
    }
}
