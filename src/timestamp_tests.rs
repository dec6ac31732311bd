use chrono::{Datelike, NaiveDateTime, Timelike};
use proptest::prelude::*;

use super::*;

/// Microseconds since 1970 of Postgres's first `timestamptz` (4714-11-24 00:00:00
/// BC UTC). Its last (294276 AD) is past `i64::MAX` microseconds since 1970, and
/// past chrono's range anyway.
const PG_MIN: i64 = -210_866_803_200_000_000;
const PG_MAX: i64 = i64::MAX;

/// What Postgres prints for `micros` in a zone `offset` seconds east of UTC
/// (`EncodeDateTime` with `DateStyle = ISO`): a zero-padded year of at least four
/// digits, the fraction without trailing zeros, `+HH[:MM[:SS]]`, ` BC`. `None`
/// beyond chrono's range (the test then expects `NotFinite`).
fn format_pg(micros: i64, offset: i32, with_zone: bool) -> Option<String> {
    let local = DateTime::from_timestamp_micros(micros)?
        .naive_utc()
        .checked_add_signed(chrono::Duration::seconds(i64::from(offset)))?;
    Some(print_local(&local, with_zone.then_some(offset)))
}

fn print_local(local: &NaiveDateTime, offset: Option<i32>) -> String {
    let year = local.year();
    let (shown, bc) = if year > 0 {
        (year, false)
    } else {
        (1 - year, true)
    };
    let mut text = format!(
        "{shown:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    );
    let micros = local.nanosecond() / 1_000;
    if micros > 0 {
        let fraction = format!("{micros:06}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    if let Some(offset) = offset {
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.abs();
        text.push_str(&format!("{sign}{:02}", abs / 3600));
        if abs % 3600 != 0 {
            text.push_str(&format!(":{:02}", abs % 3600 / 60));
            if abs % 60 != 0 {
                text.push_str(&format!(":{:02}", abs % 60));
            }
        }
    }
    if bc {
        text.push_str(" BC");
    }
    text
}

#[test]
fn reads_what_postgres_prints() {
    let cases = [
        (
            "2024-01-02 03:04:05.123456+00",
            "2024-01-02T03:04:05.123456Z",
        ),
        ("2024-01-02 03:04:05+05:30", "2024-01-01T21:34:05.000000Z"),
        ("1999-12-31 23:59:59.5-08", "2000-01-01T07:59:59.500000Z"),
        (
            "1900-01-01 00:00:00+00:19:32",
            "1899-12-31T23:40:28.000000Z",
        ),
        ("10000-01-01 00:00:00+00", "+10000-01-01T00:00:00.000000Z"),
        (
            "262142-12-31 23:59:59.999999+00",
            "+262142-12-31T23:59:59.999999Z",
        ),
        ("0001-01-01 00:00:00+00 BC", "0000-01-01T00:00:00.000000Z"),
        ("0044-03-15 12:00:00+00 BC", "-0043-03-15T12:00:00.000000Z"),
        ("4714-11-24 00:00:00+00 BC", "-4713-11-24T00:00:00.000000Z"),
        // `timestamp` without time zone: read as UTC.
        ("2024-03-01 10:00:00.5", "2024-03-01T10:00:00.500000Z"),
        ("0044-03-15 12:00:00 BC", "-0043-03-15T12:00:00.000000Z"),
    ];
    for (text, expected) in cases {
        let t = Timestamp::parse_pg(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(t.to_string(), expected, "{text}");
    }
}

#[test]
fn infinities_and_years_beyond_chrono_are_no_finite_time() {
    for text in [
        "infinity",
        "-infinity",
        "262144-01-01 00:00:00+00",
        "294276-12-31 23:59:59.999999+00",
        "262143-12-31 23:59:59+00",
    ] {
        assert_eq!(
            Timestamp::parse_pg(text),
            Err(TimeError::NotFinite),
            "{text}"
        );
    }
}

#[test]
fn anything_else_is_malformed() {
    for text in [
        "yesterday",
        "2024-01-02T03:04:05+00",
        "24-01-02 03:04:05+00",
        "2024-1-02 03:04:05+00",
        "2024-02-30 00:00:00+00",
        "2024-13-01 00:00:00+00",
        "2024-01-02 24:00:00+00",
        "2024-01-02 03:04:60+00",
        "2024-01-02 03:04:05.+00",
        "2024-01-02 03:04:05.1234567+00",
        "2024-01-02 03:04:05+123",
        "2024-01-02 03:04:05+00:99",
        "2024-01-02 03:04:05+99999999999999999",
        "0000-01-01 00:00:00+00",
        "2024-01-02 03:04:05+00 AD",
        "",
    ] {
        assert_eq!(
            Timestamp::parse_pg(text),
            Err(TimeError::Malformed),
            "{text:?}"
        );
    }
}

#[test]
fn floor_rounds_toward_negative_infinity_over_the_whole_range() {
    let a = Timestamp(1_000_000);
    assert_eq!(Timestamp(1_001_999).floor_millis_since(a), 1);
    assert_eq!(Timestamp(999_999).floor_millis_since(a), -1);
    assert_eq!(Timestamp(999_999).floor_seconds_since(a), -1);
    assert_eq!(Timestamp(2_999_999).floor_seconds_since(a), 1);
    // chrono's extremes are 524,285 years apart: more microseconds than an i64 holds.
    let bc = Timestamp::from_chrono(DateTime::<Utc>::MIN_UTC);
    let far = Timestamp::from_chrono(DateTime::<Utc>::MAX_UTC);
    let micros = i128::from(far.0) - i128::from(bc.0);
    assert!(
        micros > i128::from(i64::MAX),
        "the difference overflows i64 µs"
    );
    assert_eq!(i128::from(far.floor_millis_since(bc)), micros / 1_000);
    assert_eq!(
        i128::from(bc.floor_seconds_since(far)),
        (-micros).div_euclid(1_000_000)
    );
}

#[test]
fn to_chrono_is_none_outside_chronos_range() {
    assert!(Timestamp(i64::MAX).to_chrono().is_none());
    assert!(Timestamp(i64::MIN).to_chrono().is_none());
    assert!(Timestamp(0).to_chrono().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    /// Over Postgres's whole range and any zone offset Postgres prints (up to
    /// ±15:59:59): what chrono holds reads back exactly, the rest is no finite time.
    #[test]
    fn every_time_postgres_prints_reads_back(
        micros in PG_MIN..=PG_MAX,
        offset in -57_599i32..=57_599,
        with_zone in any::<bool>(),
    ) {
        let offset = if with_zone { offset } else { 0 };
        match format_pg(micros, offset, with_zone) {
            Some(text) => prop_assert_eq!(Timestamp::parse_pg(&text), Ok(Timestamp(micros)), "{}", text),
            // Past chrono's last year (262,143): `infinities_and_years_beyond_chrono_…`.
            None => prop_assert!(micros > 8_200_000_000_000_000_000),
        }
    }
}
