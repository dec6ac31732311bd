//! The report as one self-contained HTML page: charts over tables, for people who
//! would rather look at booking rate against response time than read it. Pure.
//!
//! ```text
//!  header (window, filters, warnings)
//!  per booking section: bars of booking rate per bucket (95% Wilson interval,
//!                       eligible count) ─ what the counts mean ─ the table
//!  daily:  anchors per day (answered part darker) ─ median setter / AI time ─ table
//!  weekly: anchors per week, all clients (answered part darker) ─ table
//!  others: the table
//! ```
//!
//! Nothing is fetched: the style is inline, the charts are inline SVG
//! (`charts`), fonts are the reader's system fonts, there is no script. It fits a
//! 390 px phone (charts scale with the page; wide tables scroll inside their own
//! box, never the page) and prints (no backgrounds needed, sections kept whole).
//! Every table cell carries its raw value (`data-col`, `data-value`: the JSON
//! report's number), so the page can be checked against `--format json`.

use std::fmt::Write as _;

use serde_json::Value;

use super::charts::{self, BookingBar, Series, escape};
use super::render::{Report, booking_interval};
use super::sections::Table;
use super::text::{self, HIDDEN_COLUMNS};
use super::units;

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#1d2430;background:#fff}\
main{max-width:980px;margin:0 auto;padding:12px}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.6em 0 .4em;overflow-wrap:anywhere}\
dl.params{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:.5em 0;font-size:.9em}\
dl.params dt{color:#5b6573}dl.params dd{margin:0;overflow-wrap:anywhere}\
.warning{border-left:4px solid #c2410c;background:#fff4ec;padding:6px 10px;margin:8px 0}\
figure{margin:.4em 0;max-width:480px}\
svg.chart{display:block;width:100%;height:auto;font-size:11px;font-family:inherit}\
svg .lbl{font-size:12px;fill:#1d2430}svg .val{fill:#1d2430}svg .axis{fill:#5b6573;font-size:10px}\
svg .track{fill:#eef1f5}svg .bar{fill:#3b6fb6}svg .ci{stroke:#111827;stroke-width:1.5;fill:none}\
svg .grid{stroke:#e3e7ed;stroke-width:1}svg .base{stroke:#9aa3ae;stroke-width:1}\
svg .col-all{fill:#c9d6ea}svg .col-part{fill:#3b6fb6}\
svg .line{fill:none;stroke-width:2}svg path.s1{stroke:#c2410c}svg path.s2{stroke:#3b6fb6}\
svg circle.s1{fill:#c2410c}svg circle.s2{fill:#3b6fb6}\
.legend{font-size:.85em;color:#5b6573;margin:.2em 0}\
.key{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 .8em;vertical-align:-.05em}\
.key.all{background:#c9d6ea}.key.part,.key.s2{background:#3b6fb6}.key.s1{background:#c2410c}\
.note{font-size:.85em;color:#5b6573;margin:.3em 0}.nw{white-space:nowrap}\
.scroll{overflow-x:auto;max-width:100%}\
table{border-collapse:collapse;font-size:.85em;font-variant-numeric:tabular-nums}\
th,td{padding:3px 8px;border-bottom:1px solid #e3e7ed;text-align:left;vertical-align:top}\
th{font-weight:600;color:#38414d}td.n{text-align:right;white-space:nowrap}\
@media (max-width:480px){main{padding:8px}body{font-size:14px}th,td{padding:3px 5px}}\
@media print{main{max-width:none;padding:0}.scroll{overflow:visible}\
table{font-size:8pt}section{break-inside:avoid-page}figure{max-width:16cm}\
.warning{border:1px solid #c2410c}}";

pub(super) fn render(report: &Report) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    );
    let _ = writeln!(page, "<title>{}</title>", escape(&page_title(report)));
    let _ = writeln!(page, "<style>{STYLE}</style>\n</head>\n<body>\n<main>");
    let _ = writeln!(page, "<h1>{}</h1>", heading(report));
    page.push_str(&parameters(report));
    for warning in &report.warnings {
        let _ = writeln!(
            page,
            "<p class=\"warning\" role=\"alert\">Warning: {}</p>",
            escape(warning)
        );
    }
    for table in &report.tables {
        page.push_str(&section(report, table));
    }
    let _ = writeln!(
        page,
        "<p class=\"note\">replytime {}: response times from \"ResponseTimingEvent\", \
         outcomes from the leads' booking columns (README, Analytics).</p>",
        env!("CARGO_PKG_VERSION")
    );
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

fn page_title(report: &Report) -> String {
    let text = |key: &str| report.parameter(key).and_then(Value::as_str);
    match (text("fromDate"), text("toDate"), text("leadId")) {
        (Some(from), Some(to), _) => {
            format!("Response time vs booking, {from} to {to} (exclusive)")
        }
        (_, _, Some(lead)) => format!("Lead {lead}: anchors"),
        _ => "replytime report".to_string(),
    }
}

/// The title as a heading, dates kept whole on narrow screens.
fn heading(report: &Report) -> String {
    let text = |key: &str| report.parameter(key).and_then(Value::as_str);
    match (text("fromDate"), text("toDate")) {
        (Some(from), Some(to)) => format!(
            "Response time vs booking, <span class=\"nw\">{}</span> to \
             <span class=\"nw\">{}</span> (exclusive)",
            escape(from),
            escape(to)
        ),
        _ => escape(&page_title(report)),
    }
}

fn parameters(report: &Report) -> String {
    let mut out = String::from("<dl class=\"params\">");
    for (key, value) in text::visible_parameters(report) {
        let _ = write!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            escape(&key),
            escape(&text::parameter_text(&key, &value))
        );
    }
    out.push_str("</dl>\n");
    out
}

fn section(report: &Report, table: &Table) -> String {
    let mut out = format!(
        "<section id=\"{}\">\n<h2>{}</h2>\n",
        escape(table.key),
        escape(table.title)
    );
    if text::is_booking_table(table) {
        out.push_str(&booking_chart(table));
        if let Some(summary) = text::outcome_summary(table) {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(&summary));
        }
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(text::OUTCOME_NOTE));
    } else if table.key == "daily" {
        out.push_str(&daily_charts(table));
    } else if table.key == "weekly" {
        out.push_str(&weekly_chart(report, table));
    }
    if text::has_partial_week(table) {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(text::PARTIAL_NOTE));
    }
    out.push_str(&html_table(table));
    out.push_str("</section>\n");
    out
}

fn column_u64(table: &Table, row: &[Value], name: &str) -> u64 {
    text::column_index(table, name)
        .and_then(|i| row[i].as_u64())
        .unwrap_or(0)
}

fn column_f64(table: &Table, row: &[Value], name: &str) -> Option<f64> {
    text::column_index(table, name).and_then(|i| row[i].as_f64())
}

/// A row's label: its bucket, or its channel and disposition (drafts).
fn bucket_label(table: &Table, row: &[Value]) -> String {
    let labels: Vec<String> = ["bucket", "channel", "responseDisposition"]
        .iter()
        .filter_map(|c| text::column_index(table, c))
        .map(|i| text::plain(&row[i]))
        .collect();
    labels.join(" · ")
}

fn booking_chart(table: &Table) -> String {
    let bars: Vec<BookingBar> = table
        .rows
        .iter()
        .map(|row| BookingBar {
            label: bucket_label(table, row),
            booked: column_u64(table, row, "booked"),
            eligible: column_u64(table, row, "eligible"),
        })
        .collect();
    let title = format!("Booking rate per bucket: {}", table.title);
    format!(
        "<figure>{}</figure>\n<p class=\"legend\">Bar: booking rate (booked / eligible); \
         whisker: its 95% Wilson interval; n: eligible leads.</p>\n",
        charts::booking_bars(&title, &bars)
    )
}

/// `2024-03-05` → `03-05`.
fn short_date(value: &Value) -> String {
    let date = text::plain(value);
    date.get(5..).map(str::to_string).unwrap_or(date)
}

fn daily_charts(table: &Table) -> String {
    let Some(day) = text::column_index(table, "day") else {
        return String::new();
    };
    let labels: Vec<String> = table.rows.iter().map(|r| short_date(&r[day])).collect();
    let total: Vec<u64> = table
        .rows
        .iter()
        .map(|r| column_u64(table, r, "anchors"))
        .collect();
    let answered: Vec<u64> = table
        .rows
        .iter()
        .map(|r| column_u64(table, r, "answered"))
        .collect();
    let series = |name: &str, column: &str, class: &'static str| Series {
        name: name.to_string(),
        class,
        points: table
            .rows
            .iter()
            .map(|r| column_f64(table, r, column))
            .collect(),
    };
    let lines = [
        series("setter", "setterP50Ms", "s1"),
        series("AI", "aiP50Ms", "s2"),
    ];
    let mut out = format!(
        "<figure>{}</figure>\n<p class=\"legend\"><span class=\"key all\"></span>anchors\
         <span class=\"key part\"></span>answered (setter or AI)</p>\n",
        charts::stacked_columns("Anchors per day", &labels, &total, &answered)
    );
    let _ = write!(
        out,
        "<figure>{}</figure>\n<p class=\"legend\">Median response time per day:",
        charts::duration_lines("Median response time per day", &labels, &lines)
    );
    for line in &lines {
        let _ = write!(
            out,
            "<span class=\"key {}\"></span>{}",
            line.class,
            escape(&line.name)
        );
    }
    out.push_str("</p>\n");
    out
}

/// Anchors per week over every client of the table (it has a row per client).
fn weekly_chart(report: &Report, table: &Table) -> String {
    let Some(week) = text::column_index(table, "weekStart") else {
        return String::new();
    };
    let partial = text::column_index(table, "partial");
    let mut weeks: Vec<(String, bool, u64, u64)> = Vec::new();
    for row in &table.rows {
        let start = text::plain(&row[week]);
        let is_partial = partial.is_some_and(|i| row[i] == Value::Bool(true));
        let (anchors, answered) = (
            column_u64(table, row, "anchors"),
            column_u64(table, row, "answered"),
        );
        match weeks.last_mut() {
            Some(last) if last.0 == start => {
                last.2 += anchors;
                last.3 += answered;
            }
            _ => weeks.push((start, is_partial, anchors, answered)),
        }
    }
    let labels: Vec<String> = weeks
        .iter()
        .map(|(start, partial, ..)| {
            let short = short_date(&Value::String(start.clone()));
            if *partial { format!("{short}*") } else { short }
        })
        .collect();
    let total: Vec<u64> = weeks.iter().map(|w| w.2).collect();
    let answered: Vec<u64> = weeks.iter().map(|w| w.3).collect();
    let scope = match report.parameter("clientId").and_then(Value::as_str) {
        Some(client) => format!("client {client}"),
        None => "all clients".to_string(),
    };
    format!(
        "<figure>{}</figure>\n<p class=\"legend\">Anchors per week ({}; * = partial week):\
         <span class=\"key all\"></span>anchors<span class=\"key part\"></span>answered</p>\n",
        charts::stacked_columns("Anchors per week", &labels, &total, &answered),
        escape(&scope)
    )
}

/// `setterP50Ms` → `setter p50`, `bookedNoTimestamp` → `booked no timestamp`.
fn header_words(column: &str) -> String {
    let base = match units::column_kind(column) {
        units::ColumnKind::Milliseconds => column.trim_end_matches("Ms"),
        units::ColumnKind::Seconds => column.trim_end_matches("Seconds"),
        _ => column,
    };
    let mut words = String::new();
    for c in base.chars() {
        if c.is_ascii_uppercase() {
            words.push(' ');
            words.push(c.to_ascii_lowercase());
        } else {
            words.push(c);
        }
    }
    words
}

fn html_table(table: &Table) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table data-section=\"{}\">\n<thead><tr>",
        escape(table.key)
    );
    for column in table
        .columns
        .iter()
        .filter(|c| !HIDDEN_COLUMNS.contains(&c.as_str()))
    {
        let _ = write!(
            out,
            "<th scope=\"col\">{}</th>",
            escape(&header_words(column))
        );
        if column == "bookingRate" {
            out.push_str("<th scope=\"col\">95% interval</th>");
        }
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    if table.rows.is_empty() {
        out.push_str("<tr><td>(no rows)</td></tr>\n");
    }
    for (i, row) in table.rows.iter().enumerate() {
        let _ = write!(out, "<tr data-row=\"{i}\">");
        row_cells(&mut out, table, row);
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

fn row_cells(out: &mut String, table: &Table, row: &[Value]) {
    let partial = text::column_index(table, "partial").is_some_and(|i| row[i] == Value::Bool(true));
    for (column, value) in table.columns.iter().zip(row) {
        if HIDDEN_COLUMNS.contains(&column.as_str()) {
            continue;
        }
        let mut shown = text::cell(column, value);
        if partial && column == "weekStart" {
            shown.push_str(" (partial)");
        }
        let class = if value.is_number() {
            " class=\"n\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<td{class} data-col=\"{}\" data-value=\"{}\">{}</td>",
            escape(column),
            escape(&value.to_string()),
            escape(&shown)
        );
        if column == "bookingRate" {
            match booking_interval(&table.columns, row) {
                Some((low, high)) => {
                    let _ = write!(
                        out,
                        "<td class=\"n\" data-col=\"bookingRate95\" data-low=\"{low}\" data-high=\"{high}\">{}–{}</td>",
                        units::percent(low),
                        units::percent(high)
                    );
                }
                None => out.push_str("<td class=\"n\" data-col=\"bookingRate95\">-</td>"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Report {
        let bucket = Table {
            key: "setterResponseTime",
            title: "Setter <response> time",
            columns: ["bucket", "bucketOrder", "booked", "eligible", "bookingRate"]
                .iter()
                .map(|c| c.to_string())
                .collect(),
            rows: vec![vec![
                json!("< 5 min"),
                json!(1),
                json!(4),
                json!(13),
                json!(4.0 / 13.0),
            ]],
        };
        let daily = Table {
            key: "daily",
            title: "Daily",
            columns: ["day", "anchors", "answered", "setterP50Ms", "aiP50Ms"]
                .iter()
                .map(|c| c.to_string())
                .collect(),
            rows: vec![
                vec![
                    json!("2024-03-01"),
                    json!(3),
                    json!(2),
                    json!(252_000),
                    Value::Null,
                ],
                vec![
                    json!("2024-03-02"),
                    json!(0),
                    json!(0),
                    Value::Null,
                    Value::Null,
                ],
            ],
        };
        Report {
            parameters: vec![
                ("fromDate".into(), json!("2024-03-01")),
                ("toDate".into(), json!("2024-03-03")),
                ("businessHours".into(), json!(false)),
                ("businessDays".into(), json!([1, 2])),
            ],
            warnings: vec!["no anchors <here>".into()],
            tables: vec![bucket, daily],
        }
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = render(&report());
        assert!(page.starts_with("<!DOCTYPE html>"));
        for external in [
            "<script", "<link", "@import", "url(", "src=", "http://", "https://",
        ] {
            let found = page
                .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
                .contains(external);
            assert!(!found, "{external} in the page");
        }
        assert!(page.contains("name=\"viewport\""));
    }

    #[test]
    fn sections_have_charts_notes_and_tables_with_raw_values() {
        let page = render(&report());
        assert!(page.contains("<h2>Setter &lt;response&gt; time</h2>"));
        assert!(page.contains("Warning: no anchors &lt;here&gt;"));
        assert!(!page.contains("businessDays"), "business hours are off");
        assert_eq!(page.matches("<svg").count(), 3, "bars, columns, lines");
        assert!(page.contains("<td class=\"n\" data-col=\"booked\" data-value=\"4\">4</td>"));
        assert!(!page.contains("data-col=\"bucketOrder\""));
        assert!(page.contains("data-col=\"bookingRate95\" data-low=\"0.12"));
        assert!(page.contains("data-value=\"252000\">4m 12s</td>"));
        assert!(page.contains("<th scope=\"col\">setter p50</th>"));
        assert!(page.contains("canceled = booked within the attribution window"));
    }

    #[test]
    fn header_words_split_camel_case() {
        assert_eq!(header_words("bookedNoTimestamp"), "booked no timestamp");
        assert_eq!(header_words("aiChosenDelaySeconds"), "ai chosen delay");
    }
}
