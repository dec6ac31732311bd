//! The report as aligned text tables, for a person at a terminal. Pure.
//!
//! Durations read in human units (`4m 12s`, `13d 3h`; the header drops the `Ms` /
//! `Seconds` suffix), shares as percentages, a booking rate with its 95% Wilson
//! interval; internal columns (`bucketOrder`, `partial`) are not shown. Under
//! each booking section a line adds up its leads, so the bucket counts can be
//! checked against the leads that got a response, and says what `canceled` and
//! `excluded` mean. The business-hours lines of the header appear only when the
//! filter is on.

use serde_json::Value;

use super::render::{Report, booking_interval};
use super::sections::Table;
use super::units::{self, ColumnKind};

/// Columns for machines (JSON, CSV), not for readers.
pub(super) const HIDDEN_COLUMNS: [&str; 2] = ["bucketOrder", "partial"];
/// Shown only when `businessHours` is true.
const BUSINESS_PARAMETERS: [&str; 2] = ["businessDays", "businessTime"];
/// The outcome columns of a booking section, in the order they add up.
pub(super) const OUTCOME_COLUMNS: [&str; 5] = [
    "booked",
    "notBooked",
    "bookedNoTimestamp",
    "pending",
    "excluded",
];
/// What `canceled` and `excluded` mean, under each booking section.
pub(super) const OUTCOME_NOTE: &str = "canceled = booked within the attribution window, then canceled: a subset of notBooked. \
     excluded = booked at or before the response: in no other column. \
     eligible = booked + notBooked.";
/// Under a table with a partial week.
pub(super) const PARTIAL_NOTE: &str = "(partial) = the week starts before --from or ends after --to: only its days inside the window count.";

pub(super) fn render(report: &Report) -> String {
    let mut out = String::from("replytime report\n");
    let parameters = visible_parameters(report);
    let width = parameters.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &parameters {
        out.push_str(&format!(
            "  {key:<width$}  {}\n",
            parameter_text(key, value)
        ));
    }
    for warning in &report.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    for table in &report.tables {
        out.push('\n');
        out.push_str(table.title);
        out.push('\n');
        out.push_str(&aligned(table));
        if let Some(summary) = outcome_summary(table) {
            out.push_str(&summary);
            out.push('\n');
            out.push_str(OUTCOME_NOTE);
            out.push('\n');
        }
        if has_partial_week(table) {
            out.push_str(PARTIAL_NOTE);
            out.push('\n');
        }
    }
    out
}

/// The parameters a reader needs: business days and hours only when they apply.
pub(super) fn visible_parameters(report: &Report) -> Vec<(String, Value)> {
    let business_on = report.parameter("businessHours") != Some(&Value::Bool(false));
    report
        .parameters
        .iter()
        .filter(|(key, _)| business_on || !BUSINESS_PARAMETERS.contains(&key.as_str()))
        .cloned()
        .collect()
}

/// A header value: weekdays by name, everything else as a cell.
pub(super) fn parameter_text(key: &str, value: &Value) -> String {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    match (key, value) {
        ("businessDays", Value::Array(days)) => days
            .iter()
            .filter_map(|d| d.as_u64())
            .filter_map(|d| DAYS.get((d as usize).wrapping_sub(1)))
            .copied()
            .collect::<Vec<_>>()
            .join(","),
        (_, Value::Array(items)) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        _ => plain(value),
    }
}

/// Whether a table is a booking section (bucket or cell counts).
pub(super) fn is_booking_table(table: &Table) -> bool {
    ["booked", "eligible", "bookingRate"]
        .iter()
        .all(|c| table.columns.iter().any(|col| col == c))
}

pub(super) fn has_partial_week(table: &Table) -> bool {
    column_index(table, "partial")
        .is_some_and(|i| table.rows.iter().any(|row| row[i] == Value::Bool(true)))
}

pub(super) fn column_index(table: &Table, name: &str) -> Option<usize> {
    table.columns.iter().position(|c| c == name)
}

/// The sum of an integer column over the table's rows.
pub(super) fn column_sum(table: &Table, name: &str) -> Option<u64> {
    let i = column_index(table, name)?;
    Some(table.rows.iter().filter_map(|row| row[i].as_u64()).sum())
}

/// `leads with a response: 23 = booked 4 + notBooked 9 + … (canceled 2)`.
pub(super) fn outcome_summary(table: &Table) -> Option<String> {
    if !is_booking_table(table) {
        return None;
    }
    let parts: Vec<(&str, u64)> = OUTCOME_COLUMNS
        .iter()
        .filter_map(|c| column_sum(table, c).map(|n| (*c, n)))
        .collect();
    let total: u64 = parts.iter().map(|(_, n)| n).sum();
    let terms: Vec<String> = parts.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let canceled = column_sum(table, "canceled").unwrap_or(0);
    Some(format!(
        "leads counted: {total} = {} (canceled {canceled}, inside notBooked)",
        terms.join(" + ")
    ))
}

/// A header as shown: `setterP50Ms` → `setterP50`, `bookingRate` gains its interval.
fn header(column: &str) -> String {
    match units::column_kind(column) {
        ColumnKind::Milliseconds => column.trim_end_matches("Ms").to_string(),
        ColumnKind::Seconds => column.trim_end_matches("Seconds").to_string(),
        _ => column.to_string(),
    }
}

/// One row's cells as shown, with the interval after `bookingRate`.
fn shown_row(table: &Table, row: &[Value]) -> Vec<(String, bool)> {
    let partial = column_index(table, "partial").is_some_and(|i| row[i] == Value::Bool(true));
    let mut cells = Vec::new();
    for (column, value) in table.columns.iter().zip(row) {
        if HIDDEN_COLUMNS.contains(&column.as_str()) {
            continue;
        }
        let mut shown = cell(column, value);
        if partial && column == "weekStart" {
            shown.push_str(" (partial)");
        }
        // Durations and shares stay right-aligned even when every cell is `-`.
        let right = value.is_number() || units::column_kind(column) != ColumnKind::Other;
        cells.push((shown, right));
        if column == "bookingRate" {
            let interval = booking_interval(&table.columns, row)
                .map(|(low, high)| format!("{}-{}", units::percent(low), units::percent(high)))
                .unwrap_or_else(|| "-".to_string());
            cells.push((interval, true));
        }
    }
    cells
}

fn shown_header(table: &Table) -> Vec<String> {
    let mut headers = Vec::new();
    for column in &table.columns {
        if HIDDEN_COLUMNS.contains(&column.as_str()) {
            continue;
        }
        headers.push(header(column));
        if column == "bookingRate" {
            headers.push("95% interval".to_string());
        }
    }
    headers
}

/// The table with a header, a rule, and columns padded to their widest cell:
/// numbers to the right, everything else to the left.
fn aligned(table: &Table) -> String {
    let headers = shown_header(table);
    let rows: Vec<Vec<(String, bool)>> = table.rows.iter().map(|r| shown_row(table, r)).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].0.chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| rows.iter().any(|r| r[i].1))
        .collect();
    let line = |values: &[String]| {
        let padded: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| pad(v, widths[i], numeric[i]))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    if rows.is_empty() {
        out.push_str("(no rows)\n");
    }
    for row in rows {
        let values: Vec<String> = row.into_iter().map(|(v, _)| v).collect();
        out.push_str(&line(&values));
    }
    out
}

fn pad(value: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(value.chars().count()));
    if right {
        format!("{fill}{value}")
    } else {
        format!("{value}{fill}")
    }
}

/// A value as a reader sees it, by its column: durations in human units, shares
/// in percent, `-` for NULL.
pub(super) fn cell(column: &str, value: &Value) -> String {
    let Some(x) = value.as_f64() else {
        return plain(value);
    };
    match units::column_kind(column) {
        ColumnKind::Milliseconds => units::human_duration_ms(x),
        ColumnKind::Seconds => units::human_duration_ms(x * 1000.0),
        ColumnKind::Share => units::percent(x),
        ColumnKind::Other => plain(value),
    }
}

/// A value as text: `-` for NULL, at most three decimals for fractions.
pub(super) fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => decimals(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

fn decimals(x: f64) -> String {
    let fixed = format!("{x:.3}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_are_trimmed() {
        assert_eq!(decimals(0.5), "0.5");
        assert_eq!(decimals(150000.0), "150000");
        assert_eq!(decimals(1.0 / 3.0), "0.333");
        assert_eq!(decimals(-0.0001), "0");
    }

    #[test]
    fn cells_follow_their_column() {
        assert_eq!(cell("setterP90Ms", &json!(1_150_134_255.8)), "13d 7h");
        assert_eq!(cell("aiChosenDelaySeconds", &json!(252)), "4m 12s");
        assert_eq!(cell("answeredShare", &json!(0.5)), "50%");
        assert_eq!(cell("anchors", &json!(7)), "7");
        assert_eq!(cell("setterP50Ms", &Value::Null), "-");
    }

    #[test]
    fn weekdays_print_by_name() {
        assert_eq!(
            parameter_text("businessDays", &json!([1, 2, 3, 4, 5])),
            "mon,tue,wed,thu,fri"
        );
    }
}
