//! What the report shows: one section per analytics function, each a call with
//! named arguments bound from the report's parameters, fetched as a [`Table`].
//!
//! Rows come back as `row_to_json`, so every SQL type (timestamps in the session's
//! time zone, doubles, NULLs) arrives as the JSON value the `--format json` output
//! prints, and the column order comes from the statement's description.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde_json::Value;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::params::BusinessHours;

/// One result set: a section of the report.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Table {
    /// JSON key and CSV `section` value.
    pub key: &'static str,
    pub title: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Everything the window sections are called with.
#[derive(Clone, Debug)]
pub(super) struct WindowParams {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub client: Option<String>,
    pub window_days: i32,
    pub maturity_days: i32,
    pub tz: String,
    pub business: BusinessHours,
    pub top: i32,
}

/// A named argument of the analytics functions.
#[derive(Clone, Copy, Debug)]
enum Arg {
    From,
    To,
    Client,
    Window,
    Maturity,
    Tz,
    BusinessHours,
    BusinessDays,
    BusinessStart,
    BusinessEnd,
    Top,
}

impl Arg {
    /// `p_name => $n`, with the conversion the parameter needs.
    fn sql(self, n: usize) -> String {
        match self {
            Arg::From => format!("p_from => ${n}"),
            Arg::To => format!("p_to => ${n}"),
            Arg::Client => format!("p_client_id => ${n}"),
            Arg::Window => format!("p_window => make_interval(days => ${n})"),
            Arg::Maturity => format!("p_maturity => make_interval(days => ${n})"),
            Arg::Tz => format!("p_tz => ${n}"),
            Arg::BusinessHours => format!("p_business_hours => ${n}"),
            Arg::BusinessDays => format!("p_business_days => ${n}"),
            Arg::BusinessStart => format!("p_business_start => ${n}"),
            Arg::BusinessEnd => format!("p_business_end => ${n}"),
            Arg::Top => format!("p_top => ${n}"),
        }
    }

    fn value(self, p: &WindowParams) -> &(dyn ToSql + Sync) {
        match self {
            Arg::From => &p.from,
            Arg::To => &p.to,
            Arg::Client => &p.client,
            Arg::Window => &p.window_days,
            Arg::Maturity => &p.maturity_days,
            Arg::Tz => &p.tz,
            Arg::BusinessHours => &p.business.enabled,
            Arg::BusinessDays => &p.business.days,
            Arg::BusinessStart => &p.business.start,
            Arg::BusinessEnd => &p.business.end,
            Arg::Top => &p.top,
        }
    }
}

/// A section of the window report: an analytics function and the arguments it takes.
#[derive(Debug)]
pub(super) struct Section {
    /// The `--section` value.
    pub flag: &'static str,
    /// JSON key and CSV `section` value.
    pub key: &'static str,
    pub title: &'static str,
    function: &'static str,
    args: &'static [Arg],
}

const OUTCOME_ARGS: &[Arg] = &[
    Arg::From,
    Arg::To,
    Arg::Client,
    Arg::Window,
    Arg::Maturity,
    Arg::Tz,
];
const SETTER_ARGS: &[Arg] = &[
    Arg::From,
    Arg::To,
    Arg::Client,
    Arg::Window,
    Arg::Maturity,
    Arg::Tz,
    Arg::BusinessHours,
    Arg::BusinessDays,
    Arg::BusinessStart,
    Arg::BusinessEnd,
];
const PERIOD_ARGS: &[Arg] = &[
    Arg::From,
    Arg::To,
    Arg::Client,
    Arg::Tz,
    Arg::BusinessHours,
    Arg::BusinessDays,
    Arg::BusinessStart,
    Arg::BusinessEnd,
];
const TOP_SETTER_ARGS: &[Arg] = &[
    Arg::From,
    Arg::To,
    Arg::Client,
    Arg::Tz,
    Arg::BusinessHours,
    Arg::BusinessDays,
    Arg::BusinessStart,
    Arg::BusinessEnd,
    Arg::Top,
];

/// The window report's sections, in print order.
pub(super) const SECTIONS: [Section; 8] = [
    Section {
        flag: "setter",
        key: "setterResponseTime",
        title: "Setter response time vs booking (each lead at its earliest setter response)",
        function: "replytime_setter_buckets",
        args: SETTER_ARGS,
    },
    Section {
        flag: "ai-delay",
        key: "aiChosenDelay",
        title: "AI chosen delay vs booking (each lead at its earliest AI response)",
        function: "replytime_ai_delay_buckets",
        args: OUTCOME_ARGS,
    },
    Section {
        flag: "ai-drift",
        key: "aiDrift",
        title: "AI drift (sent - scheduled runAt) vs booking (each lead at its earliest AI response with a runAt)",
        function: "replytime_ai_drift_buckets",
        args: OUTCOME_ARGS,
    },
    Section {
        flag: "first-responder",
        key: "firstResponder",
        title: "Setter vs AI, by first responder (each lead at its earliest response; a tie goes to the setter)",
        function: "replytime_first_responder",
        args: OUTCOME_ARGS,
    },
    Section {
        flag: "ai-drafts",
        key: "aiDrafts",
        title: "AI drafts by channel and disposition vs booking (each lead once per cell, at its earliest first send)",
        function: "replytime_ai_drafts",
        args: OUTCOME_ARGS,
    },
    Section {
        flag: "daily",
        key: "daily",
        title: "Daily (local days)",
        function: "replytime_daily",
        args: PERIOD_ARGS,
    },
    Section {
        flag: "weekly",
        key: "weekly",
        title: "Weekly per client (ISO weeks, local time)",
        function: "replytime_weekly_summary",
        args: PERIOD_ARGS,
    },
    Section {
        flag: "top-setters",
        key: "topSetters",
        title: "Top setters per client and week (by answered anchors, then median time)",
        function: "replytime_weekly_top_setters",
        args: TOP_SETTER_ARGS,
    },
];

/// The `--section` values, in print order.
pub(super) fn section_flags() -> Vec<&'static str> {
    SECTIONS.iter().map(|s| s.flag).collect()
}

impl Section {
    /// `SELECT * FROM function(p_from => $1, …)`.
    fn select(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .enumerate()
            .map(|(i, arg)| arg.sql(i + 1))
            .collect();
        format!("SELECT * FROM {}({})", self.function, args.join(", "))
    }

    pub(super) async fn fetch(
        &self,
        client: &Client,
        params: &WindowParams,
    ) -> anyhow::Result<Table> {
        let values: Vec<&(dyn ToSql + Sync)> =
            self.args.iter().map(|arg| arg.value(params)).collect();
        fetch(client, self.key, self.title, &self.select(), &values).await
    }
}

/// One lead's booking columns (through the mapped lead table).
pub(super) async fn fetch_lead(client: &Client, lead_id: &str) -> anyhow::Result<Table> {
    let select = "SELECT * FROM replytime_source_leads() WHERE id = $1";
    fetch(client, "lead", "Lead", select, &[&lead_id]).await
}

/// One lead's anchors, oldest first: the most recent `limit` inside the optional window.
pub(super) async fn fetch_lead_anchors(
    client: &Client,
    lead_id: &str,
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    limit: i32,
) -> anyhow::Result<Table> {
    let select = "SELECT * FROM replytime_lead_anchors(p_lead_id => $1, p_from => $2, \
                  p_to => $3, p_limit => $4) ORDER BY \"inboundSentAt\", \
                  \"inboundMessageId\" COLLATE \"C\"";
    let title = "Anchors (oldest first; times in ms, drift = AI sent - scheduled runAt)";
    fetch(
        client,
        "anchors",
        title,
        select,
        &[&lead_id, &window.0, &window.1, &limit],
    )
    .await
}

/// Runs `select`: column names from its description, rows as JSON values.
async fn fetch(
    client: &Client,
    key: &'static str,
    title: &'static str,
    select: &str,
    values: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<Table> {
    let described = client.prepare(select).await?;
    let columns: Vec<String> = described
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let as_json = format!("SELECT row_to_json(t)::text FROM ({select}) AS t");
    let rows = client
        .query(&as_json, values)
        .await?
        .iter()
        .map(|row| json_row(&columns, row.get(0)))
        .collect::<Result<_, _>>()?;
    Ok(Table {
        key,
        title,
        columns,
        rows,
    })
}

/// The values of one `row_to_json` object, in `columns` order.
fn json_row(columns: &[String], text: &str) -> anyhow::Result<Vec<Value>> {
    let mut object: serde_json::Map<String, Value> = serde_json::from_str(text)?;
    Ok(columns
        .iter()
        .map(|c| object.remove(c).unwrap_or(Value::Null))
        .collect())
}

/// Adds a `partial` column to a table with a `weekStart` column: true for a week
/// that starts before `from` or ends after `to` (exclusive), whose counts hold
/// only its days inside the window.
pub(super) fn mark_partial_weeks(table: &mut Table, from: NaiveDate, to: NaiveDate) {
    let Some(week) = table.columns.iter().position(|c| c == "weekStart") else {
        return;
    };
    table.columns.push("partial".to_string());
    for row in &mut table.rows {
        let start = row[week].as_str().and_then(|s| s.parse::<NaiveDate>().ok());
        let partial = start.map(|start| start < from || start + Days::new(7) > to);
        row.push(partial.map_or(Value::Null, Value::Bool));
    }
}

/// `HH:MM` of a business-hours bound, for the report header.
pub(super) fn hhmm(t: NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_use_named_arguments_in_order() {
        assert_eq!(
            SECTIONS[1].select(),
            "SELECT * FROM replytime_ai_delay_buckets(p_from => $1, p_to => $2, \
             p_client_id => $3, p_window => make_interval(days => $4), \
             p_maturity => make_interval(days => $5), p_tz => $6)"
        );
        assert!(SECTIONS[7].select().ends_with("p_top => $9)"));
    }

    #[test]
    fn section_flags_and_keys_are_unique() {
        let mut flags = section_flags();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), SECTIONS.len());
        let mut keys: Vec<_> = SECTIONS.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SECTIONS.len());
    }

    #[test]
    fn weeks_cut_by_the_window_are_partial() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let partial = |from: &str, to: &str| {
            let mut table = Table {
                key: "weekly",
                title: "Weekly",
                columns: vec!["weekStart".into(), "anchors".into()],
                rows: ["2024-02-26", "2024-03-04", "2024-03-25"]
                    .iter()
                    .map(|w| vec![Value::from(*w), Value::from(1)])
                    .collect(),
            };
            mark_partial_weeks(&mut table, d(from), d(to));
            assert_eq!(table.columns, ["weekStart", "anchors", "partial"]);
            table
                .rows
                .iter()
                .map(|r| r[2].as_bool().unwrap())
                .collect::<Vec<_>>()
        };
        // March 2024 starts on a Friday and ends (exclusive) on a Monday.
        assert_eq!(partial("2024-03-01", "2024-04-01"), [true, false, false]);
        assert_eq!(partial("2024-02-26", "2024-03-31"), [false, false, true]);
    }

    #[test]
    fn json_rows_follow_the_column_order() {
        let columns = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        let row = json_row(&columns, r#"{"a": 1, "b": "x", "c": null}"#).unwrap();
        assert_eq!(row, vec![Value::from("x"), Value::from(1), Value::Null]);
    }
}
