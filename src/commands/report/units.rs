//! How the report's numbers read: durations in human units (`4m 12s`, `13d 3h`),
//! shares as percentages, and the 95% Wilson interval of a booking rate. Pure.
//!
//! Which columns are durations comes from their names, the convention of the
//! analytics SQL: `…Ms` holds milliseconds, `…Seconds` seconds.

/// z of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// What a column holds, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ColumnKind {
    Milliseconds,
    Seconds,
    /// A fraction in [0, 1] (`bookingRate`, `answeredShare`).
    Share,
    Other,
}

pub(super) fn column_kind(column: &str) -> ColumnKind {
    if column.ends_with("Ms") {
        ColumnKind::Milliseconds
    } else if column.ends_with("Seconds") {
        ColumnKind::Seconds
    } else if column == "bookingRate" || column == "answeredShare" {
        ColumnKind::Share
    } else {
        ColumnKind::Other
    }
}

/// `setterP50Ms` → `setterP50Seconds`: the JSON key added beside a `…Ms` one.
pub(super) fn seconds_key(ms_column: &str) -> Option<String> {
    ms_column
        .strip_suffix("Ms")
        .map(|base| format!("{base}Seconds"))
}

/// Milliseconds as seconds, rounded to the millisecond (percentiles interpolate).
pub(super) fn ms_to_seconds(ms: f64) -> f64 {
    ms.round() / 1000.0
}

/// A duration in the two largest units that matter: `850ms`, `4.2s`, `42s`,
/// `4m 12s`, `3h 5m`, `13d 3h`; rounded at the smallest unit shown.
pub(super) fn human_duration_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".to_string();
    }
    if ms.abs() < 0.5 {
        return "0s".to_string();
    }
    if ms < 0.0 {
        return format!("-{}", human_duration_ms(-ms));
    }
    if ms < 1000.0 && ms.round() < 1000.0 {
        return format!("{}ms", ms.round() as u64);
    }
    let seconds = ms / 1000.0;
    if seconds < 9.95 {
        return format!("{}s", trim_decimals(format!("{seconds:.1}")));
    }
    let whole_seconds = seconds.round() as u64;
    if whole_seconds < 60 {
        return format!("{whole_seconds}s");
    }
    if whole_seconds < 3600 {
        return pair(whole_seconds / 60, "m", whole_seconds % 60, "s");
    }
    let minutes = (seconds / 60.0).round() as u64;
    if minutes < 24 * 60 {
        return pair(minutes / 60, "h", minutes % 60, "m");
    }
    let hours = (seconds / 3600.0).round() as u64;
    pair(hours / 24, "d", hours % 24, "h")
}

/// `4m 12s`, or `4m` when the second unit is zero.
fn pair(major: u64, major_unit: &str, minor: u64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit} {minor}{minor_unit}")
    }
}

fn trim_decimals(fixed: String) -> String {
    if fixed.contains('.') {
        fixed
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        fixed
    }
}

/// A share as a percentage with one decimal: `30.8%`.
pub(super) fn percent(share: f64) -> String {
    format!("{}%", trim_decimals(format!("{:.1}", share * 100.0)))
}

/// The 95% Wilson score interval of `successes` out of `trials`; `None` for
/// no trials. Unlike the normal approximation it stays inside [0, 1] and is
/// honest for small counts (a bucket of 3 leads, 3 booked: 44%–100%).
pub(super) fn wilson_95(successes: u64, trials: u64) -> Option<(f64, f64)> {
    if trials == 0 {
        return None;
    }
    let (k, n) = (successes.min(trials) as f64, trials as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_two_units() {
        let cases = [
            (0.0, "0s"),
            (850.0, "850ms"),
            (999.6, "1s"),
            (4_200.0, "4.2s"),
            (5_000.0, "5s"),
            (42_400.0, "42s"),
            (59_600.0, "1m"),
            (252_000.0, "4m 12s"),
            (300_000.0, "5m"),
            (3_599_600.0, "1h"),
            (11_100_000.0, "3h 5m"),
            (86_400_000.0, "1d"),
            // The example: setterP90Ms 1150134255.8, about 13 days.
            (1_150_134_255.8, "13d 7h"),
            (-40_000.0, "-40s"),
            (-0.2, "0s"),
        ];
        for (ms, expected) in cases {
            assert_eq!(human_duration_ms(ms), expected, "{ms}");
        }
    }

    #[test]
    fn kinds_and_seconds_keys_follow_column_names() {
        assert_eq!(column_kind("setterP90Ms"), ColumnKind::Milliseconds);
        assert_eq!(column_kind("aiChosenDelaySeconds"), ColumnKind::Seconds);
        assert_eq!(column_kind("bookingRate"), ColumnKind::Share);
        assert_eq!(column_kind("booked"), ColumnKind::Other);
        assert_eq!(seconds_key("medianMs").as_deref(), Some("medianSeconds"));
        assert_eq!(seconds_key("booked"), None);
        assert_eq!(ms_to_seconds(1_150_134_255.8), 1_150_134.256);
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(4.0 / 13.0), "30.8%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(1.0), "100%");
    }

    #[test]
    fn wilson_intervals_match_published_values() {
        // 4 of 13: 12.7% – 57.6% (Wilson, z = 1.96).
        let (low, high) = wilson_95(4, 13).unwrap();
        assert!(
            (low - 0.1268).abs() < 1e-3 && (high - 0.5757).abs() < 1e-3,
            "{low} {high}"
        );
        let (low, high) = wilson_95(3, 3).unwrap();
        assert!(
            (low - 0.4385).abs() < 1e-3 && (high - 1.0).abs() < 1e-12,
            "{low} {high}"
        );
        let (low, _) = wilson_95(0, 10).unwrap();
        assert_eq!(low, 0.0);
        assert_eq!(wilson_95(0, 0), None);
    }
}
