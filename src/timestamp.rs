//! `Timestamp`: a point in time as Postgres stores it (microseconds), and the one
//! reading of a `timestamptz` / `timestamp` value's text output (`DateStyle = ISO`),
//! shared by the stream and the initial load.
//!
//! Postgres holds 4713 BC to 294276 AD plus `±infinity`; replytime's arithmetic
//! (chrono) holds ±262,143 years. What both hold is derived exactly, BC dates and
//! years past 9999 included; `±infinity` and years past chrono's range are
//! [`TimeError::NotFinite`]: the row is quarantined ("no finite time"), the stream
//! goes on. Text that is not a timestamp as Postgres prints it is
//! [`TimeError::Malformed`]: a structural problem (another `DateStyle`, another type).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch: the exact resolution of `timestamptz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Why a timestamp's text is not a [`Timestamp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// `infinity`, `-infinity`, or a year beyond what replytime's arithmetic holds.
    #[error("{}", self.message())]
    NotFinite,
    #[error("{}", self.message())]
    Malformed,
}

impl TimeError {
    pub fn message(self) -> &'static str {
        match self {
            TimeError::NotFinite => "no finite time",
            TimeError::Malformed => "not a timestamp as Postgres prints it with DateStyle ISO",
        }
    }
}

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

impl Timestamp {
    pub fn from_pg_micros(micros: i64) -> Self {
        Timestamp(micros.saturating_add(PG_EPOCH_OFFSET_MICROS))
    }

    /// The same instant in chrono; `None` outside chrono's range (never for a
    /// timestamp read by [`Timestamp::parse_pg`]).
    pub fn to_chrono(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }

    pub fn from_chrono(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_micros())
    }

    /// A finite time's text (see [`Timestamp::parse_pg`]); `None` for anything else.
    pub fn parse_pg_text(text: &str) -> Option<Self> {
        Self::parse_pg(text).ok()
    }

    /// Reads the text output of a `timestamptz` (`2024-01-02 03:04:05.123456+05:30`,
    /// `0044-03-15 12:00:00+00 BC`, `10000-01-01 00:00:00+00`), or of a `timestamp`
    /// (no offset: read as UTC, Prisma's convention), as Postgres prints them with
    /// `DateStyle = ISO`.
    pub fn parse_pg(text: &str) -> Result<Self, TimeError> {
        if matches!(text, "infinity" | "-infinity") {
            return Err(TimeError::NotFinite);
        }
        let fields = Fields::parse(text).ok_or(TimeError::Malformed)?;
        fields.to_timestamp()
    }

    /// Whole milliseconds from `earlier` to `self`, rounded down (floor, also when
    /// negative). Exact over the whole range (the difference of two far-apart
    /// timestamps does not fit an `i64` of microseconds).
    pub(crate) fn floor_millis_since(self, earlier: Timestamp) -> i64 {
        Self::floor_since(self, earlier, 1_000)
    }

    /// Whole seconds from `earlier` to `self`, rounded down (floor, also when negative).
    pub(crate) fn floor_seconds_since(self, earlier: Timestamp) -> i64 {
        Self::floor_since(self, earlier, 1_000_000)
    }

    fn floor_since(self, earlier: Timestamp, unit: i128) -> i64 {
        let units = (i128::from(self.0) - i128::from(earlier.0)).div_euclid(unit);
        i64::try_from(units).unwrap_or(if units < 0 { i64::MIN } else { i64::MAX })
    }
}

/// The fields of `Y…Y-MM-DD HH:MM:SS[.f…][±HH[:MM[:SS]]][ BC]`.
struct Fields {
    /// As printed: BC years count down from 1.
    year: i64,
    bc: bool,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
    offset_seconds: i64,
}

impl Fields {
    fn parse(text: &str) -> Option<Fields> {
        let (text, bc) = match text.strip_suffix(" BC") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let (date, rest) = text.split_once(' ')?;
        let mut ymd = date.split('-');
        let year = ymd.next()?;
        let month = digits(ymd.next()?, 2..=2)?;
        let day = digits(ymd.next()?, 2..=2)?;
        if ymd.next().is_some() {
            return None;
        }
        let year = digits(year, 4..=9)?;
        // The time ends where the offset starts.
        let (time, offset) = match rest.find(['+', '-']) {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let (hms, fraction) = match time.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (time, None),
        };
        let mut hms = hms.split(':');
        let hour = digits(hms.next()?, 2..=2)?;
        let minute = digits(hms.next()?, 2..=2)?;
        let second = digits(hms.next()?, 2..=2)?;
        if hms.next().is_some() || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let micros = match fraction {
            None => 0,
            Some(f) => digits(f, 1..=6)? * 10u32.pow(6 - f.len() as u32),
        };
        let offset_seconds = match offset {
            None => 0,
            Some(offset) => {
                let sign = if offset.starts_with('-') { -1 } else { 1 };
                let mut parts = offset[1..].split(':');
                let mut seconds = i64::from(digits(parts.next()?, 2..=2)?) * 3600;
                for scale in [60, 1] {
                    if let Some(part) = parts.next() {
                        let value = digits(part, 2..=2)?;
                        if value > 59 {
                            return None;
                        }
                        seconds += i64::from(value) * scale;
                    }
                }
                if parts.next().is_some() {
                    return None;
                }
                sign * seconds
            }
        };
        Some(Fields {
            year: i64::from(year),
            bc,
            month,
            day,
            hour,
            minute,
            second,
            micros,
            offset_seconds,
        })
    }

    fn to_timestamp(&self) -> Result<Timestamp, TimeError> {
        if self.year == 0 {
            return Err(TimeError::Malformed); // Postgres prints 1 BC, never year 0
        }
        // Astronomical year: 1 BC is year 0, 2 BC is -1.
        let year = if self.bc { 1 - self.year } else { self.year };
        let in_range =
            (i64::from(NaiveDate::MIN.year())..=i64::from(NaiveDate::MAX.year())).contains(&year);
        if !in_range {
            return Err(TimeError::NotFinite);
        }
        let date = NaiveDate::from_ymd_opt(year as i32, self.month, self.day)
            .ok_or(TimeError::Malformed)?;
        let local = date
            .and_hms_micro_opt(self.hour, self.minute, self.second, self.micros)
            .ok_or(TimeError::Malformed)?;
        let micros = local.and_utc().timestamp_micros() - self.offset_seconds * 1_000_000;
        // At the very ends of chrono's range an offset can step outside it.
        match DateTime::from_timestamp_micros(micros) {
            Some(_) => Ok(Timestamp(micros)),
            None => Err(TimeError::NotFinite),
        }
    }
}

/// An unsigned decimal of `len` ASCII digits.
fn digits(text: &str, len: std::ops::RangeInclusive<usize>) -> Option<u32> {
    if !len.contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_chrono() {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            None => write!(f, "{} µs after 1970-01-01", self.0),
        }
    }
}

#[cfg(test)]
#[path = "timestamp_tests.rs"]
mod tests;
