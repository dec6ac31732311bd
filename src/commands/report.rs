//! `replytime report`: response time vs booking outcomes for a window of local
//! days, printed from the SQL functions of `schema/analytics.sql` (SPEC 7), or one
//! lead's timeline.
//!
//! ```text
//!  flags ─▶ params (dates, weekdays, hours: checked before connecting)
//!        ─▶ sink connection ─▶ schema (analytics.sql rendered for [tables], applied)
//!        ─▶ SET TimeZone = --tz; --from/--to local midnights via SQL
//!        ─▶ sections (one function each) + warnings (unknown client, empty window)
//!        ─▶ render (table | json | csv | html) ─▶ stdout or --output FILE
//! ```
//!
//! The rules (which leads count, outcomes, buckets) live in SQL only, so the
//! dashboard and this command cannot disagree; this module binds parameters and
//! prints. Dates are turned into instants by Postgres too (`--tz` is a zone of
//! the server's time zone database), because the functions use the same one.

mod charts;
mod html;
mod params;
mod render;
mod schema;
mod sections;
mod source_sql;
mod text;
mod units;
mod warnings;

pub use render::Format;
pub use schema::apply_analytics_schema;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::config::Settings;
use params::BusinessHours;
use render::Report;
use sections::{SECTIONS, Table, WindowParams};

/// Flags of `replytime report`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// First day of the window (YYYY-MM-DD), from local midnight in --tz.
    #[arg(long, value_name = "YYYY-MM-DD", required_unless_present = "lead")]
    pub from: Option<NaiveDate>,
    /// Day after the last day of the window (YYYY-MM-DD): the window ends at its
    /// local midnight, exclusive.
    #[arg(long, value_name = "YYYY-MM-DD", required_unless_present = "lead")]
    pub to: Option<NaiveDate>,
    /// IANA time zone of days, weeks and business hours.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub tz: String,
    /// Only this client's anchors (default: every client).
    #[arg(long, value_name = "CLIENT_ID")]
    pub client: Option<String>,
    /// Attribution window: a booking counts within this many days of the response.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub window_days: u16,
    /// Maturity buffer: responses in the last DAYS of the window are `pending`.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub maturity_days: u16,
    /// Count setter times only when the inbound and the setter response are both
    /// inside business hours (in --tz).
    #[arg(long)]
    pub business_hours: bool,
    /// Business weekdays: mon-fri, sat,sun, 1-5 (1 = Monday).
    #[arg(long, value_name = "DAYS", default_value = "mon-fri")]
    pub business_days: String,
    /// Business hours as local START-END, end exclusive (22:00-06:00 wraps).
    #[arg(long, value_name = "START-END", default_value = "09:00-17:00")]
    pub business_time: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only these sections (repeatable; default: all).
    #[arg(long = "section", value_name = "SECTION", value_parser = clap::builder::PossibleValuesParser::new(sections::section_flags()))]
    pub sections: Vec<String>,
    /// Setters listed per client and week in the top-setters section.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: u16,
    /// Print this lead's timeline (its most recent anchors) instead.
    #[arg(long, value_name = "LEAD_ID")]
    pub lead: Option<String>,
    /// Anchors shown by --lead.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u16,
    /// Write the report to FILE instead of stdout (replaced whole, never half
    /// written); its path is printed on stderr.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs the report and prints it to stdout.
pub async fn run(settings: &Settings, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let business = business_hours(&args)?;
    if let (Some(from), Some(to)) = (args.from, args.to) {
        params::check_window(from, to).map_err(anyhow::Error::msg)?;
    }
    let client = crate::pgconn::connect(settings.sink_url(), "replytime-report").await?;
    apply_analytics_schema(&client, &settings.tables).await?;
    set_time_zone(&client, &args.tz).await?;
    let report = match &args.lead {
        Some(lead) => lead_report(&client, &args, lead).await?,
        None => window_report(&client, &args, business).await?,
    };
    if args.format != Format::Table || args.output.is_some() {
        for warning in &report.warnings {
            eprintln!("replytime report: warning: {warning}");
        }
    }
    let rendered = render::render(&report, args.format);
    match &args.output {
        Some(path) => {
            write_whole(path, &rendered)?;
            eprintln!("replytime report: wrote {}", path.display());
        }
        None => print!("{rendered}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `contents` to a temporary file beside `path`, then renames it over
/// `path`, so a reader never sees half a report.
fn write_whole(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!(
            "--output {}: cannot create a file in {}",
            path.display(),
            dir.display()
        )
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("--output {}: write", path.display()))?;
    file.persist(path)
        .with_context(|| format!("--output {}: rename into place", path.display()))?;
    Ok(())
}

fn business_hours(args: &ReportArgs) -> anyhow::Result<BusinessHours> {
    let days = params::parse_days(&args.business_days).map_err(anyhow::Error::msg)?;
    let (start, end) = params::parse_time_range(&args.business_time).map_err(anyhow::Error::msg)?;
    Ok(BusinessHours {
        enabled: args.business_hours,
        days,
        start,
        end,
    })
}

/// Checks `tz` against the server's zone names, then makes it the session's zone
/// (so timestamps print in local time).
async fn set_time_zone(client: &Client, tz: &str) -> anyhow::Result<()> {
    let known: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
            &[&tz],
        )
        .await?
        .get(0);
    if !known {
        anyhow::bail!(
            "--tz {tz:?} is not a time zone the database knows (an IANA name such as America/New_York, or UTC)"
        );
    }
    client
        .execute("SELECT set_config('TimeZone', $1, false)", &[&tz])
        .await
        .with_context(|| format!("set the session time zone to {tz:?}"))?;
    Ok(())
}

/// The instants of local midnight of `day` in `tz`.
async fn local_midnight(
    client: &Client,
    day: NaiveDate,
    tz: &str,
) -> anyhow::Result<DateTime<Utc>> {
    let row = client
        .query_one("SELECT replytime_local_midnight($1, $2)", &[&day, &tz])
        .await
        .with_context(|| format!("local midnight of {day} in {tz}"))?;
    Ok(row.get(0))
}

async fn window_report(
    client: &Client,
    args: &ReportArgs,
    business: BusinessHours,
) -> anyhow::Result<Report> {
    let (from_day, to_day) = (
        args.from.context("--from is required")?,
        args.to.context("--to is required")?,
    );
    let params = WindowParams {
        from: local_midnight(client, from_day, &args.tz).await?,
        to: local_midnight(client, to_day, &args.tz).await?,
        client: args.client.clone(),
        window_days: i32::from(args.window_days),
        maturity_days: i32::from(args.maturity_days),
        tz: args.tz.clone(),
        business,
        top: i32::from(args.top),
    };
    let mut tables = Vec::new();
    for section in SECTIONS.iter().filter(|s| selected(args, s.flag)) {
        let mut table = section
            .fetch(client, &params)
            .await
            .with_context(|| format!("section {} ({})", section.flag, section.key))?;
        sections::mark_partial_weeks(&mut table, from_day, to_day);
        tables.push(table);
    }
    let warnings = warnings::window_warnings(client, &params)
        .await
        .context("checking the client and the window")?;
    Ok(Report {
        parameters: window_parameters(args, &params),
        warnings,
        tables,
    })
}

fn selected(args: &ReportArgs, flag: &str) -> bool {
    args.sections.is_empty() || args.sections.iter().any(|s| s == flag)
}

/// The header of a window report (and the `parameters` object of its JSON).
fn window_parameters(args: &ReportArgs, p: &WindowParams) -> Vec<(String, Value)> {
    let business = &p.business;
    vec![
        ("fromDate".into(), json!(args.from.map(|d| d.to_string()))),
        ("toDate".into(), json!(args.to.map(|d| d.to_string()))),
        ("timeZone".into(), json!(p.tz)),
        ("from".into(), json!(p.from.to_rfc3339())),
        ("to".into(), json!(p.to.to_rfc3339())),
        ("clientId".into(), json!(p.client)),
        ("attributionWindowDays".into(), json!(p.window_days)),
        ("maturityDays".into(), json!(p.maturity_days)),
        ("businessHours".into(), json!(business.enabled)),
        ("businessDays".into(), json!(business.days)),
        (
            "businessTime".into(),
            json!(format!(
                "{}-{}",
                sections::hhmm(business.start),
                sections::hhmm(business.end)
            )),
        ),
    ]
}

async fn lead_report(client: &Client, args: &ReportArgs, lead: &str) -> anyhow::Result<Report> {
    let from = match args.from {
        Some(day) => Some(local_midnight(client, day, &args.tz).await?),
        None => None,
    };
    let to = match args.to {
        Some(day) => Some(local_midnight(client, day, &args.tz).await?),
        None => None,
    };
    let lead_row: Table = sections::fetch_lead(client, lead).await?;
    if lead_row.rows.is_empty() {
        anyhow::bail!("lead {lead:?} is not in the lead table (see [tables.lead] in the config)");
    }
    let anchors =
        sections::fetch_lead_anchors(client, lead, (from, to), i32::from(args.limit)).await?;
    let parameters = vec![
        ("leadId".into(), json!(lead)),
        ("timeZone".into(), json!(args.tz)),
        ("from".into(), json!(from.map(|t| t.to_rfc3339()))),
        ("to".into(), json!(to.map(|t| t.to_rfc3339()))),
        ("limit".into(), json!(args.limit)),
    ];
    Ok(Report {
        parameters,
        warnings: Vec::new(),
        tables: vec![lead_row, anchors],
    })
}
