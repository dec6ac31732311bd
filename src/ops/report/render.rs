//! Printing a finished report as aligned text tables, JSON or CSV. Pure: the
//! report in, a string out.
//!
//! JSON keeps the column order of the SQL functions (an object per row), and puts
//! the parameters first; CSV prints one block per section, each with a header
//! whose first column is `section`, blocks separated by an empty line.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use super::sections::Table;

/// The output formats of `replytime report --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// What the report ran with and what it found.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub parameters: Vec<(String, Value)>,
    pub tables: Vec<Table>,
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => text(report),
        Format::Json => {
            let mut out = serde_json::to_string_pretty(&JsonReport(report))
                .expect("a report serializes to JSON");
            out.push('\n');
            out
        }
        Format::Csv => csv(report),
    }
}

// ---- text ----

fn text(report: &Report) -> String {
    let mut out = String::from("replytime report\n");
    let width = report
        .parameters
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    for (key, value) in &report.parameters {
        out.push_str(&format!("  {key:<width$}  {}\n", cell(value)));
    }
    for table in &report.tables {
        out.push('\n');
        out.push_str(table.title);
        out.push('\n');
        out.push_str(&aligned(table));
    }
    out
}

/// The table with a header, a rule, and columns padded to their widest cell:
/// numbers to the right, everything else to the left.
fn aligned(table: &Table) -> String {
    let cells: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let widths: Vec<usize> = (0..table.columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([table.columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..table.columns.len())
        .map(|i| table.rows.iter().any(|r| r[i].is_number()))
        .collect();
    let line = |values: &[String]| {
        let padded: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| pad(v, widths[i], numeric[i]))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&table.columns);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    if cells.is_empty() {
        out.push_str("(no rows)\n");
    }
    for row in &cells {
        out.push_str(&line(row));
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

/// A value as text: `-` for NULL, at most three decimals for fractions.
fn cell(value: &Value) -> String {
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

// ---- JSON ----

struct JsonReport<'a>(&'a Report);

impl Serialize for JsonReport<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + self.0.tables.len()))?;
        map.serialize_entry("parameters", &JsonPairs(&self.0.parameters))?;
        for table in &self.0.tables {
            map.serialize_entry(table.key, &JsonRows(table))?;
        }
        map.end()
    }
}

struct JsonPairs<'a>(&'a [(String, Value)]);

impl Serialize for JsonPairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

struct JsonRows<'a>(&'a Table);

impl Serialize for JsonRows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.rows.len()))?;
        for row in &self.0.rows {
            seq.serialize_element(&JsonRow {
                columns: &self.0.columns,
                values: row,
            })?;
        }
        seq.end()
    }
}

struct JsonRow<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (column, value) in self.columns.iter().zip(self.values) {
            map.serialize_entry(column, value)?;
        }
        map.end()
    }
}

// ---- CSV ----

fn csv(report: &Report) -> String {
    let blocks: Vec<String> = report.tables.iter().map(csv_block).collect();
    blocks.join("\n")
}

fn csv_block(table: &Table) -> String {
    let mut out = String::new();
    let header: Vec<String> = std::iter::once("section")
        .chain(table.columns.iter().map(String::as_str))
        .map(csv_field)
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in &table.rows {
        let fields: Vec<String> = std::iter::once(csv_field(table.key))
            .chain(row.iter().map(|v| match v {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                other => csv_field(&other.to_string()),
            }))
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// RFC 4180: quoted when it holds a comma, quote, line break or edge spaces.
fn csv_field(value: &str) -> String {
    let needs_quotes =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Report {
        Report {
            parameters: vec![
                ("from".into(), json!("2024-03-01")),
                ("client".into(), Value::Null),
            ],
            tables: vec![Table {
                key: "setterResponseTime",
                title: "Setter",
                columns: vec!["bucket".into(), "booked".into(), "bookingRate".into()],
                rows: vec![
                    vec![json!("< 5 min"), json!(12), json!(0.28571428)],
                    vec![json!(">= 24 h"), json!(0), Value::Null],
                ],
            }],
        }
    }

    #[test]
    fn text_tables_align_numbers_right_and_text_left() {
        let out = render(&report(), Format::Table);
        let expected = "\
replytime report
  from    2024-03-01
  client  -

Setter
bucket   booked  bookingRate
-------  ------  -----------
< 5 min      12        0.286
>= 24 h       0            -
";
        assert_eq!(out, expected);
    }

    #[test]
    fn json_keeps_parameter_and_column_order() {
        let out = render(&report(), Format::Json);
        let compact: String = out.split_whitespace().collect();
        assert_eq!(
            compact,
            "{\"parameters\":{\"from\":\"2024-03-01\",\"client\":null},\
             \"setterResponseTime\":[{\"bucket\":\"<5min\",\"booked\":12,\"bookingRate\":0.28571428},\
             {\"bucket\":\">=24h\",\"booked\":0,\"bookingRate\":null}]}"
        );
    }

    #[test]
    fn csv_has_a_section_column_and_escapes() {
        let mut r = report();
        r.tables[0]
            .rows
            .push(vec![json!("a,\"b\""), json!(1), json!(0.5)]);
        let out = render(&r, Format::Csv);
        assert_eq!(
            out,
            "section,bucket,booked,bookingRate\n\
             setterResponseTime,< 5 min,12,0.28571428\n\
             setterResponseTime,>= 24 h,0,\n\
             setterResponseTime,\"a,\"\"b\"\"\",1,0.5\n"
        );
    }

    #[test]
    fn decimals_are_trimmed() {
        assert_eq!(decimals(0.5), "0.5");
        assert_eq!(decimals(150000.0), "150000");
        assert_eq!(decimals(1.0 / 3.0), "0.333");
        assert_eq!(decimals(-0.0001), "0");
    }
}
