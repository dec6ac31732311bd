//! Printing a finished report as aligned text tables (`text`), JSON, CSV or one
//! HTML page (`html`). Pure: the report in, a string out.
//!
//! JSON keeps the column order of the SQL functions (an object per row), puts the
//! parameters and warnings first, and adds beside each `…Ms` value the same in
//! seconds (`…Seconds`) and beside each `bookingRate` its 95% Wilson interval
//! (`bookingRateLow95`, `bookingRateHigh95`). CSV prints the SQL columns as they
//! are, one block per section, each with a header whose first column is
//! `section`, blocks separated by an empty line.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use super::sections::Table;
use super::units::{self, ColumnKind};
use super::{html, text};

/// The output formats of `replytime report --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// One self-contained page with charts (use with --output).
    Html,
}

/// What the report ran with and what it found.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Report {
    pub parameters: Vec<(String, Value)>,
    /// What the reader should know before trusting the numbers (an unknown
    /// client, an empty window).
    pub warnings: Vec<String>,
    pub tables: Vec<Table>,
}

impl Report {
    /// A parameter's value, if the report has it.
    pub(super) fn parameter(&self, key: &str) -> Option<&Value> {
        self.parameters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

pub(super) fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => text::render(report),
        Format::Html => html::render(report),
        Format::Json => {
            let mut out = serde_json::to_string_pretty(&JsonReport(report))
                .expect("a report serializes to JSON");
            out.push('\n');
            out
        }
        Format::Csv => csv(report),
    }
}

// ---- JSON ----

struct JsonReport<'a>(&'a Report);

impl Serialize for JsonReport<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2 + self.0.tables.len()))?;
        map.serialize_entry("parameters", &JsonPairs(&self.0.parameters))?;
        map.serialize_entry("warnings", &self.0.warnings)?;
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
        let mut map = serializer.serialize_map(None)?;
        for (column, value) in self.columns.iter().zip(self.values) {
            map.serialize_entry(column, value)?;
            if let Some(key) = units::seconds_key(column)
                && units::column_kind(column) == ColumnKind::Milliseconds
            {
                let seconds = value.as_f64().map(units::ms_to_seconds);
                map.serialize_entry(&key, &seconds)?;
            }
            if column == "bookingRate" {
                let interval = booking_interval(self.columns, self.values);
                map.serialize_entry("bookingRateLow95", &interval.map(|i| i.0))?;
                map.serialize_entry("bookingRateHigh95", &interval.map(|i| i.1))?;
            }
        }
        map.end()
    }
}

/// The 95% Wilson interval of a row's booking rate (booked of eligible).
pub(super) fn booking_interval(columns: &[String], values: &[Value]) -> Option<(f64, f64)> {
    let count = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| values[i].as_u64())
    };
    units::wilson_95(count("booked")?, count("eligible")?)
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

    fn bucket_table() -> Table {
        let columns = [
            "bucket",
            "bucketOrder",
            "booked",
            "notBooked",
            "bookedNoTimestamp",
            "pending",
            "canceled",
            "eligible",
            "bookingRate",
            "excluded",
        ];
        Table {
            key: "setterResponseTime",
            title: "Setter",
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: vec![
                vec![
                    json!("< 5 min"),
                    json!(1),
                    json!(4),
                    json!(9),
                    json!(3),
                    json!(2),
                    json!(2),
                    json!(13),
                    json!(4.0 / 13.0),
                    json!(5),
                ],
                vec![
                    json!(">= 24 h"),
                    json!(6),
                    json!(0),
                    json!(0),
                    json!(0),
                    json!(0),
                    json!(0),
                    json!(0),
                    Value::Null,
                    json!(1),
                ],
            ],
        }
    }

    fn weekly_table() -> Table {
        let columns = ["weekStart", "clientId", "anchors", "setterP90Ms", "partial"];
        Table {
            key: "weekly",
            title: "Weekly",
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: vec![
                vec![
                    json!("2024-02-26"),
                    json!("c1"),
                    json!(3),
                    json!(1_150_134_255.8),
                    json!(true),
                ],
                vec![
                    json!("2024-03-04"),
                    json!("c1"),
                    json!(2),
                    json!(252_000),
                    json!(false),
                ],
            ],
        }
    }

    fn report(business_hours: bool) -> Report {
        Report {
            parameters: vec![
                ("from".into(), json!("2024-03-01")),
                ("clientId".into(), Value::Null),
                ("businessHours".into(), json!(business_hours)),
                ("businessDays".into(), json!([1, 2, 3, 4, 5])),
                ("businessTime".into(), json!("09:00-17:00")),
            ],
            warnings: vec!["client \"c9\" has no leads".into()],
            tables: vec![bucket_table(), weekly_table()],
        }
    }

    #[test]
    fn text_reads_in_human_units_without_internal_columns() {
        let out = render(&report(false), Format::Table);
        let expected = "\
replytime report
  from           2024-03-01
  clientId       -
  businessHours  false
warning: client \"c9\" has no leads

Setter
bucket   booked  notBooked  bookedNoTimestamp  pending  canceled  eligible  bookingRate  95% interval  excluded
-------  ------  ---------  -----------------  -------  --------  --------  -----------  ------------  --------
< 5 min       4          9                  3        2         2        13        30.8%   12.7%-57.6%         5
>= 24 h       0          0                  0        0         0         0            -             -         1
leads counted: 24 = booked 4 + notBooked 9 + bookedNoTimestamp 3 + pending 2 + excluded 6 (canceled 2, inside notBooked)
canceled = booked within the attribution window, then canceled: a subset of notBooked. excluded = booked at or before the response: in no other column. eligible = booked + notBooked.

Weekly
weekStart             clientId  anchors  setterP90
--------------------  --------  -------  ---------
2024-02-26 (partial)  c1              3     13d 7h
2024-03-04            c1              2     4m 12s
(partial) = the week starts before --from or ends after --to: only its days inside the window count.
";
        assert_eq!(out, expected);
    }

    #[test]
    fn text_header_shows_business_hours_only_when_on() {
        let on = render(&report(true), Format::Table);
        assert!(
            on.contains("  businessDays   mon,tue,wed,thu,fri\n"),
            "{on}"
        );
        assert!(on.contains("  businessTime   09:00-17:00\n"), "{on}");
        let off = render(&report(false), Format::Table);
        assert!(!off.contains("businessDays") && !off.contains("businessTime"));
    }

    #[test]
    fn json_keeps_keys_and_adds_seconds_intervals_and_warnings() {
        let out = render(&report(false), Format::Json);
        let json: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["warnings"], json!(["client \"c9\" has no leads"]));
        assert_eq!(json["parameters"]["businessDays"], json!([1, 2, 3, 4, 5]));
        let first = &json["setterResponseTime"][0];
        assert_eq!(first["bucketOrder"], 1);
        assert_eq!(first["excluded"], 5);
        assert!((first["bookingRateLow95"].as_f64().unwrap() - 0.1268).abs() < 1e-3);
        assert!((first["bookingRateHigh95"].as_f64().unwrap() - 0.5763).abs() < 1e-3);
        assert_eq!(
            json["setterResponseTime"][1]["bookingRateLow95"],
            Value::Null
        );
        let week = &json["weekly"][0];
        assert_eq!(week["setterP90Ms"], 1_150_134_255.8);
        assert_eq!(week["setterP90Seconds"], 1_150_134.256);
        assert_eq!(week["partial"], true);
        assert_eq!(json["weekly"][1]["setterP90Seconds"], 252.0);
        // Keys keep the SQL order, each `…Seconds` right after its `…Ms`.
        let keys: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.contains("\"weekly\""))
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .take(7)
            .collect();
        assert_eq!(
            keys,
            [
                "weekly",
                "weekStart",
                "clientId",
                "anchors",
                "setterP90Ms",
                "setterP90Seconds",
                "partial"
            ]
        );
    }

    #[test]
    fn csv_has_a_section_column_and_escapes() {
        let mut r = report(false);
        r.tables.truncate(1);
        r.tables[0].columns.truncate(3);
        for row in &mut r.tables[0].rows {
            row.truncate(3);
        }
        r.tables[0]
            .rows
            .push(vec![json!("a,\"b\""), json!(1), json!(0.5)]);
        let out = render(&r, Format::Csv);
        assert_eq!(
            out,
            "section,bucket,bucketOrder,booked\n\
             setterResponseTime,< 5 min,1,4\n\
             setterResponseTime,>= 24 h,6,0\n\
             setterResponseTime,\"a,\"\"b\"\"\",1,0.5\n"
        );
    }
}
