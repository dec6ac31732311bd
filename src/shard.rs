//! Sharding by lead (SPEC 9): shard `k` of `N` owns the leads whose
//! `(hashtext("leadId") & 2147483647) % N = k`.
//!
//! ```text
//!  "Message", "AIDraft" ──────── row filter on "leadId" ──▶ shard k's publication
//!  "Lead", "EmailCampaign", "BackgroundJob" ── every shard ─▶ shard k's publication
//!  shard k's slot ─▶ shard k's daemon and RocksDB ─▶ the one "ResponseTimingEvent"
//! ```
//!
//! A thread is one (lead, channel), so it never spans shards. The predicate runs
//! inside the application's writes (publication row filters are evaluated by the
//! walsender, and the repair statements by replytime's own): it must never raise,
//! so it masks the sign bit instead of `abs(hashtext(x))`, which overflows for
//! `-2147483648`. A NULL `"leadId"` matches no shard (such rows are quarantined
//! anyway, SPEC 4).
//!
//! Rows move: a lead merge moves an inbound message with its drafts, AI sends and
//! jobs to a lead of another shard in one transaction. Shard a sees deletes (through
//! its row filter), shard b inserts, each in its own time, with the same commit
//! LSN. The streaming sink orders writes by that LSN (`crate::sink`), so either
//! order ends with shard b's row. Jobs go to every shard unfiltered, so shard b
//! already holds the job with the delay record of its original insert (SPEC 3.6)
//! when the merge moves it: the cost is every shard storing and decoding every
//! job. Repairs (`replay`, `rebuild`, `backfill`) touch only their shard's rows.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// SQL that is true when the lead id `column` (an SQL expression) is this
    /// shard's. Never raises.
    pub(crate) fn predicate(&self, column: &str) -> String {
        format!(
            "((hashtext({column}) & 2147483647) % {} = {})",
            self.count, self.index
        )
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a shard like 0/4 (index/count, index < count)");
        let (index, count) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count || count > 1024 {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_of_count() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        for bad in ["", "1", "4/4", "0/0", "-1/2", "a/b", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn predicate_masks_the_sign_bit() {
        let shard = Shard { index: 1, count: 2 };
        assert_eq!(
            shard.predicate("\"leadId\""),
            "((hashtext(\"leadId\") & 2147483647) % 2 = 1)"
        );
    }
}
