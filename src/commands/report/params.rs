//! The report's window and filters, checked before any query runs: dates, the
//! business-hours weekdays and time range. Pure parsing, no IO; the time zone is
//! checked against the server's zone list by the caller (Postgres is the zone
//! database here, so the SQL and the report cannot disagree about a zone).

use chrono::{NaiveDate, NaiveTime};

/// ISO weekdays (1 = Monday … 7 = Sunday) by their names.
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Business hours: ISO weekdays and local times [start, end), wrapping past
/// midnight when start > end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BusinessHours {
    pub enabled: bool,
    pub days: Vec<i32>,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// The checked `[from, to)` of whole local days.
pub(super) fn check_window(from: NaiveDate, to: NaiveDate) -> Result<(), String> {
    if from >= to {
        return Err(format!(
            "--from {from} must be before --to {to} (--to is exclusive: --from 2024-03-01 --to 2024-04-01 is March)"
        ));
    }
    Ok(())
}

/// Weekdays like `mon-fri`, `sat,sun`, `mon,wed-fri`, `fri-mon` (wraps) or ISO
/// numbers `1-5`; sorted, without duplicates.
pub(super) fn parse_days(spec: &str) -> Result<Vec<i32>, String> {
    let mut days = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_day(a)?, parse_day(b)?),
            None => (parse_day(item)?, parse_day(item)?),
        };
        let mut day = first;
        loop {
            days.push(day);
            if day == last {
                break;
            }
            day = day % 7 + 1;
        }
    }
    days.sort_unstable();
    days.dedup();
    Ok(days)
}

fn parse_day(token: &str) -> Result<i32, String> {
    let token = token.trim().to_ascii_lowercase();
    if let Ok(n) = token.parse::<i32>()
        && (1..=7).contains(&n)
    {
        return Ok(n);
    }
    // `mon`, `monday`, `tues`…: a prefix of the English name, at least 3 letters.
    WEEKDAYS
        .iter()
        .position(|name| token.len() >= 3 && name.starts_with(&token))
        .map(|i| i as i32 + 1)
        .ok_or_else(|| {
            format!("--business-days: {token:?} is not a weekday (mon … sun, or 1 = Monday … 7)")
        })
}

/// `09:00-17:00` (or with seconds); start > end wraps past midnight
/// (`22:00-06:00`), `18:00-00:00` runs to midnight.
pub(super) fn parse_time_range(spec: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let bad = || format!("--business-time: {spec:?} is not a range like 09:00-17:00");
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let parse = |t: &str| {
        let t = t.trim();
        NaiveTime::parse_from_str(t, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"))
            .map_err(|_| bad())
    };
    let (start, end) = (parse(start)?, parse(end)?);
    if start == end {
        return Err(format!(
            "--business-time: {spec:?} is empty (start equals end)"
        ));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn days_by_name_number_range_and_wrap() {
        assert_eq!(parse_days("mon-fri").unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(parse_days("1-5").unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(parse_days("Sat,SUN").unwrap(), vec![6, 7]);
        assert_eq!(parse_days("fri-mon").unwrap(), vec![1, 5, 6, 7]);
        assert_eq!(parse_days("mon,wed-fri,thu").unwrap(), vec![1, 3, 4, 5]);
        assert_eq!(parse_days("tuesday").unwrap(), vec![2]);
        assert_eq!(parse_days("tues").unwrap(), vec![2]);
    }

    #[test]
    fn bad_days_are_named() {
        for bad in ["", "mo", "8", "0", "funday", "mon-", "mondays"] {
            let err = parse_days(bad).unwrap_err();
            assert!(err.contains("--business-days"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn time_ranges() {
        assert_eq!(
            parse_time_range("09:00-17:00").unwrap(),
            (t(9, 0), t(17, 0))
        );
        assert_eq!(
            parse_time_range("22:00-06:30").unwrap(),
            (t(22, 0), t(6, 30))
        );
        assert_eq!(
            parse_time_range("08:15:00 - 12:00").unwrap(),
            (t(8, 15), t(12, 0))
        );
        for bad in ["9-5", "09:00", "09:00-09:00", "25:00-26:00", "nine-five"] {
            assert!(parse_time_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn window_must_be_forward() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert!(check_window(d("2024-03-01"), d("2024-04-01")).is_ok());
        assert!(check_window(d("2024-03-01"), d("2024-03-01")).is_err());
        assert!(check_window(d("2024-04-01"), d("2024-03-01")).is_err());
    }
}
