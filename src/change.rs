//! Typed row changes of the five source tables, independent of how they were decoded
//! (pgoutput, the initial copy, a test generator or the event log).
//!
//! Only the columns replytime reads exist here: everything else (message bodies) is
//! dropped at decode and never stored or logged. A change carries the values of a
//! row after the change; deletes carry only the key, because with
//! `REPLICA IDENTITY DEFAULT` Postgres sends nothing else.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

/// Microseconds since the Unix epoch: the exact resolution of `timestamptz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

impl Timestamp {
    pub fn from_pg_micros(micros: i64) -> Self {
        Timestamp(micros + PG_EPOCH_OFFSET_MICROS)
    }

    pub fn to_chrono(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub fn from_chrono(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_micros())
    }

    /// Parses the text output of a `timestamptz` (`2024-01-02 03:04:05.123456+00`,
    /// any offset, optional fraction) as Postgres prints it with `DateStyle=ISO`.
    pub fn parse_pg_text(text: &str) -> Option<Self> {
        match text {
            "infinity" => return Some(Timestamp(i64::MAX)),
            "-infinity" => return Some(Timestamp(i64::MIN)),
            _ => {}
        }
        // Offsets come as +HH, +HH:MM or +HH:MM:SS; chrono wants +HH:MM.
        let split = text.rfind(['+', '-']).filter(|&i| i > 10)?;
        let (local, offset) = text.split_at(split);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let mut parts = offset[1..].split(':').map(|p| p.parse::<i64>().ok());
        let hours = parts.next()??;
        let minutes = parts.next().unwrap_or(Some(0))?;
        let seconds = parts.next().unwrap_or(Some(0))?;
        let offset_secs = sign * (hours * 3600 + minutes * 60 + seconds);
        let naive = match parse_iso_local(local) {
            Some(naive) => naive,
            None => NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f").ok()?,
        };
        let utc = Utc.from_utc_datetime(&naive).timestamp_micros() - offset_secs * 1_000_000;
        Some(Timestamp(utc))
    }

    /// Whole milliseconds from `earlier` to `self`, rounded down (floor, also when
    /// negative).
    pub fn floor_millis_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0).div_euclid(1_000)
    }

    /// Whole seconds from `earlier` to `self`, rounded down (floor, also when negative).
    pub fn floor_seconds_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0).div_euclid(1_000_000)
    }
}

/// `YYYY-MM-DD HH:MM:SS[.f…]`, the layout Postgres prints (four-digit years): the
/// same result as chrono's `%Y-%m-%d %H:%M:%S%.f` without interpreting a format
/// string on every value (it is in every row change). `None` for anything else
/// (the caller then asks chrono).
fn parse_iso_local(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if second > 59 {
        return None;
    }
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let value = num(20..b.len())?;
            value * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_chrono().format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

/// The source tables replytime reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Lead,
    EmailCampaign,
    Message,
    AiDraft,
    BackgroundJob,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Lead,
        Table::EmailCampaign,
        Table::Message,
        Table::AiDraft,
        Table::BackgroundJob,
    ];

    /// The table's default (reference schema) name.
    pub fn default_name(self) -> &'static str {
        match self {
            Table::Lead => "Lead",
            Table::EmailCampaign => "EmailCampaign",
            Table::Message => "Message",
            Table::AiDraft => "AIDraft",
            Table::BackgroundJob => "BackgroundJob",
        }
    }

    /// Lowercase label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Table::Lead => "lead",
            Table::EmailCampaign => "email_campaign",
            Table::Message => "message",
            Table::AiDraft => "ai_draft",
            Table::BackgroundJob => "background_job",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadRow {
    pub id: String,
    pub client_id: Option<String>,
    pub email_campaign_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRow {
    pub id: String,
    pub delay_min_seconds: Option<i32>,
    pub delay_max_seconds: Option<i32>,
    pub response_mode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub lead_id: Option<String>,
    pub channel: Option<String>,
    pub direction: Option<String>,
    pub sent_by: Option<String>,
    pub sent_by_user_id: Option<String>,
    pub ai_draft_id: Option<String>,
    pub sent_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftRow {
    pub id: String,
    pub lead_id: Option<String>,
    pub trigger_message_id: Option<String>,
    pub channel: Option<String>,
    pub response_disposition: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: String,
    pub job_type: Option<String>,
    pub lead_id: Option<String>,
    pub message_id: Option<String>,
    pub draft_id: Option<String>,
    pub run_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
}

/// The job type whose delay replytime attributes.
pub const AI_AUTO_SEND_DELAYED: &str = "AI_AUTO_SEND_DELAYED";

/// One row of one source table, with the columns replytime reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Row {
    Lead(LeadRow),
    Campaign(CampaignRow),
    Message(MessageRow),
    Draft(DraftRow),
    Job(JobRow),
}

impl Row {
    pub fn table(&self) -> Table {
        match self {
            Row::Lead(_) => Table::Lead,
            Row::Campaign(_) => Table::EmailCampaign,
            Row::Message(_) => Table::Message,
            Row::Draft(_) => Table::AiDraft,
            Row::Job(_) => Table::BackgroundJob,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Row::Lead(r) => &r.id,
            Row::Campaign(r) => &r.id,
            Row::Message(r) => &r.id,
            Row::Draft(r) => &r.id,
            Row::Job(r) => &r.id,
        }
    }
}

/// The kind of a change, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    pub fn label(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Truncate => "truncate",
        }
    }
}

/// One row change, as applied to the state in stream order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Insert(Row),
    /// The row's new values. `old_id` is set when the update changed the key.
    /// `unchanged` lists columns sent as unchanged TOAST values: their stored value
    /// is kept, whatever `row` says.
    Update {
        row: Row,
        old_id: Option<String>,
        unchanged: Vec<String>,
    },
    Delete {
        table: Table,
        id: String,
    },
    /// Every row of the tables is gone.
    Truncate(Vec<Table>),
}

impl Change {
    pub fn operation(&self) -> Operation {
        match self {
            Change::Insert(_) => Operation::Insert,
            Change::Update { .. } => Operation::Update,
            Change::Delete { .. } => Operation::Delete,
            Change::Truncate(_) => Operation::Truncate,
        }
    }

    pub fn update(row: Row) -> Self {
        Change::Update {
            row,
            old_id: None,
            unchanged: Vec::new(),
        }
    }
}

/// What identifies a source transaction in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// LSN of the commit record (pgoutput Begin's `final_lsn`): orders transactions.
    pub commit_lsn: Lsn,
    /// End LSN of the commit: what the slot is confirmed to once the effects are durable.
    pub end_lsn: Lsn,
    pub commit_time: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_timestamptz_text() {
        let t = Timestamp::parse_pg_text("2024-01-02 03:04:05.123456+00").unwrap();
        assert_eq!(t.to_string(), "2024-01-02T03:04:05.123456Z");
        let t = Timestamp::parse_pg_text("2024-01-02 03:04:05+05:30").unwrap();
        assert_eq!(t.to_string(), "2024-01-01T21:34:05.000000Z");
        let t = Timestamp::parse_pg_text("1999-12-31 23:59:59.5-08").unwrap();
        assert_eq!(t.to_string(), "2000-01-01T07:59:59.500000Z");
        assert!(Timestamp::parse_pg_text("yesterday").is_none());
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        let chrono_parse =
            |local: &str| NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f").ok();
        let cases = [
            "2024-01-02 03:04:05",
            "2024-01-02 03:04:05.1",
            "2024-01-02 03:04:05.123456",
            "2024-01-02 03:04:05.123456789",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
            "2024-02-29 12:00:00",
            "2023-02-29 12:00:00",
            "2024-13-01 00:00:00",
            "2024-01-02 24:00:00",
            "2024-01-02 03:04:60",
            "2024-01-02 03:04:05.",
            "2024-01-02 03:04:05.1234567890",
            "2024-01-02T03:04:05",
            "2024-1-02 03:04:05",
            "12024-01-02 03:04:05",
            "2024-01-02 03:04:05 BC",
        ];
        for case in cases {
            if let Some(fast) = parse_iso_local(case) {
                assert_eq!(Some(fast), chrono_parse(case), "{case}");
            }
        }
        let mut seed = 7u64;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let micros = (seed >> 8) as i64 % 400_000_000_000_000;
            let t = chrono::DateTime::from_timestamp_micros(micros)
                .unwrap()
                .naive_utc();
            let text = t.format("%Y-%m-%d %H:%M:%S%.f").to_string();
            assert_eq!(parse_iso_local(&text), Some(t), "{text}");
        }
    }

    #[test]
    fn floor_rounds_toward_negative_infinity() {
        let a = Timestamp(1_000_000);
        assert_eq!(Timestamp(1_001_999).floor_millis_since(a), 1);
        assert_eq!(Timestamp(999_999).floor_millis_since(a), -1);
        assert_eq!(Timestamp(999_999).floor_seconds_since(a), -1);
        assert_eq!(Timestamp(2_999_999).floor_seconds_since(a), 1);
    }
}
