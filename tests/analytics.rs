//! The analytics SQL (`schema/analytics.sql`) and `replytime report` against a
//! real Postgres: small fixtures of `"Lead"` and `"ResponseTimingEvent"` rows
//! (written directly, no daemon) with hand-computed expected numbers for every
//! rule of SPEC 7, the report as a reader meets it (text, JSON, the HTML page in
//! headless Chromium), and a deployment with renamed tables.

mod common;
#[path = "analytics/fixtures.rs"]
mod fixtures;
#[path = "analytics/html_page.rs"]
mod html_page;
#[path = "analytics/mapping.rs"]
mod mapping;
#[path = "analytics/outcomes.rs"]
mod outcomes;
#[path = "analytics/readable.rs"]
mod readable;
#[path = "analytics/report.rs"]
mod report;
#[path = "analytics/time_zones.rs"]
mod time_zones;
#[path = "analytics/views.rs"]
mod views;
