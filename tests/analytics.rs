//! The analytics SQL (`schema/analytics.sql`) and `replytime report` against a
//! real Postgres: small fixtures of `"Lead"` and `"ResponseTimingEvent"` rows
//! (written directly, no daemon) with hand-computed expected numbers for every
//! rule of SPEC 7.

mod common;
#[path = "analytics/fixtures.rs"]
mod fixtures;
#[path = "analytics/outcomes.rs"]
mod outcomes;
#[path = "analytics/report.rs"]
mod report;
#[path = "analytics/time_zones.rs"]
mod time_zones;
#[path = "analytics/views.rs"]
mod views;
