//! Valid data never stops the stream (SPEC 8): timestamps over Postgres's whole
//! range, read as the real server prints them, and odd values through the daemon,
//! streamed and initially loaded alike.

mod common;
#[allow(dead_code)]
mod support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use replytime::change::{TimeError, Timestamp};
use replytime::row::TimingRow;
use support::*;
use tokio_postgres::types::{IsNull, ToSql, Type, accepts, to_sql_checked};

/// Microseconds since 2000-01-01 as Postgres stores a `timestamptz`, sent in binary
/// (`i64::MAX` / `i64::MIN` are `infinity` / `-infinity`).
#[derive(Clone, Copy, Debug)]
struct PgMicros(i64);

impl ToSql for PgMicros {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(&self.0.to_be_bytes());
        Ok(IsNull::No)
    }

    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

/// Postgres's first and last `timestamptz` (4714-11-24 BC, 294276-12-31 AD) in
/// microseconds since 2000.
const PG_FIRST: i64 = -211_813_488_000_000_000;
const PG_LAST: i64 = 9_223_371_331_199_999_999;

/// Zones whose offsets Postgres prints as `+HH`, `+HH:MM` and, for local mean time
/// before standard time, `+HH:MM:SS`.
const ZONES: [&str; 10] = [
    "UTC",
    "Asia/Kolkata",
    "America/St_Johns",
    "Europe/Amsterdam",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Los_Angeles",
    "Africa/Monrovia",
    "Etc/GMT-14",
    "Etc/GMT+12",
];

/// What replytime must read from the server's text of `pg` microseconds.
fn expected(pg: i64) -> Result<Timestamp, TimeError> {
    if pg == i64::MAX || pg == i64::MIN {
        return Err(TimeError::NotFinite);
    }
    let unix = Timestamp::from_pg_micros(pg);
    match unix.to_chrono() {
        Some(_) if pg < i64::MAX - 946_684_800_000_000 => Ok(unix),
        _ => Err(TimeError::NotFinite),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_over_postgres_whole_range_read_back_as_the_server_prints_them() {
    let db = common::fresh_database().await;
    let client = &db.client;
    let handle = tokio::runtime::Handle::current();
    let micros = prop_oneof![
        20 => PG_FIRST..=PG_LAST,
        // BC dates and the first years after 9999 are rare in a uniform draw.
        4 => PG_FIRST..=-63_082_281_600_000_000i64,
        4 => 252_460_800_000_000_000i64..=300_000_000_000_000_000,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
    ];
    let strategy = (
        prop::collection::vec(micros, 200),
        prop::sample::select(ZONES.to_vec()),
    );
    let mut runner = TestRunner::new(Config::with_cases(40));
    let (checked, bc, past_9999) = (Cell::new(0usize), Cell::new(0usize), Cell::new(0usize));
    runner
        .run(&strategy, |(values, zone)| {
            let params: Vec<PgMicros> = values.iter().copied().map(PgMicros).collect();
            let printed: Vec<(String, String)> = tokio::task::block_in_place(|| {
                handle.block_on(async {
                    client
                        .batch_execute(&format!("SET TimeZone = '{zone}'; SET DateStyle = 'ISO'"))
                        .await
                        .unwrap();
                    client
                        .query(
                            "SELECT t::text, (t AT TIME ZONE 'UTC')::text \
                             FROM unnest($1::timestamptz[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
                            &[&params],
                        )
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect()
                })
            });
            for (&pg, (with_zone, without_zone)) in values.iter().zip(&printed) {
                let want = expected(pg);
                // `timestamptz` in the zone, and `timestamp` (read as UTC).
                prop_assert_eq!(
                    Timestamp::parse_pg(with_zone),
                    want,
                    "{} in {}",
                    with_zone,
                    zone
                );
                prop_assert_eq!(Timestamp::parse_pg(without_zone), want, "{}", without_zone);
                checked.set(checked.get() + 1);
                bc.set(bc.get() + usize::from(with_zone.ends_with(" BC")));
                let long_year = with_zone.split('-').next().is_some_and(|y| y.len() > 4);
                past_9999.set(past_9999.get() + usize::from(long_year));
            }
            Ok(())
        })
        .unwrap();
    let (checked, bc, past_9999) = (checked.get(), bc.get(), past_9999.get());
    assert!(
        checked >= 8_000 && bc > 100 && past_9999 > 1_000,
        "{checked} {bc} {past_9999}"
    );
}

// ── odd values through the daemon ────────────────────────────────────────────────

const CONVERGE: Duration = Duration::from_secs(60);

/// `sentAt` values of inbound messages, each on its own lead with a setter reply
/// 90.5 s later, and whether replytime derives them.
const ODD_TIMES: [(&str, bool); 8] = [
    ("10000-01-01 00:00:00", true),
    ("262142-06-30 12:00:00.25", true),
    ("0044-03-15 12:00:00 BC", true),
    ("4713-01-01 00:00:00 BC", true),
    ("1899-12-31 23:59:59.999999", true),
    ("infinity", false),
    ("-infinity", false),
    ("294276-01-01 00:00:00", false),
];

fn odd_rows_sql() -> String {
    let mut sql = String::from(
        r#"SET TimeZone = 'UTC';
           INSERT INTO "EmailCampaign" (id) VALUES ('camp');"#,
    );
    for (k, (time, _)) in ODD_TIMES.iter().enumerate() {
        sql.push_str(&format!(
            r#"INSERT INTO "Lead" (id, "clientId", "emailCampaignId") VALUES ('lead{k}', 'client', 'camp');
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt", body)
                   VALUES ('in{k}', 'lead{k}', 'sms', 'inbound', '{time}', 'hi');
               INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentByUserId", "sentAt", body)
                   VALUES ('out{k}', 'lead{k}', 'sms', 'outbound', 'setter', 'u', '{time}'::timestamp + interval '90.5 seconds', 'yes');"#
        ));
    }
    sql
}

/// After the odd rows: an ordinary conversation that must still be derived.
const LAST_ROWS_SQL: &str = r#"
    INSERT INTO "Lead" (id, "clientId") VALUES ('lead_last', 'client');
    INSERT INTO "Message" (id, "leadId", channel, direction, "sentAt")
        VALUES ('in_last', 'lead_last', 'sms', 'inbound', '2024-03-01 10:00:00');
    INSERT INTO "Message" (id, "leadId", channel, direction, "sentBy", "sentAt")
        VALUES ('out_last', 'lead_last', 'sms', 'outbound', 'setter', '2024-03-01 10:00:01');"#;

/// The sink rows and the quarantined rows (table, id, reason) of one daemon run.
type Outcome = (BTreeMap<String, TimingRow>, Vec<String>);

async fn run_daemon_until_derived(db: &common::TestDb, state: &Path, load_first: bool) -> Outcome {
    if load_first {
        db.client.batch_execute(&odd_rows_sql()).await.unwrap();
        db.client.batch_execute(LAST_ROWS_SQL).await.unwrap();
    }
    let mut daemon = Daemon::spawn(&db.url, state, &[]);
    wait_streaming(&db.client, &db.url).await;
    if !load_first {
        db.client.batch_execute(&odd_rows_sql()).await.unwrap();
        db.client.batch_execute(LAST_ROWS_SQL).await.unwrap();
    }
    eventually(CONVERGE, "the conversation after the odd rows", || async {
        sink_rows(&db.client).await.contains_key("in_last")
    })
    .await;
    assert!(daemon.stop().success(), "{}", daemon.log_text());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replytime"))
        .args(["quarantine"])
        .env("REPLYTIME_SOURCE_URL", &db.url)
        .env("REPLYTIME_STATE_DIR", state)
        .env("REPLYTIME_SLOT", slot_for(&db.url))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut quarantined: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split_once('\t').expect("lsn\trest").1.to_string())
        .collect();
    quarantined.sort();
    (sink_rows(&db.client).await, quarantined)
}

async fn odd_times_stream_on_and_load_alike(column_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for load_first in [false, true] {
        let db = common::fresh_database().await;
        db.apply_source_schema().await;
        db.client
            .batch_execute(&format!(
                r#"ALTER TABLE "Message" ALTER COLUMN "sentAt" TYPE {column_type}"#
            ))
            .await
            .unwrap();
        let state = dir.path().join(format!("state-{load_first}"));
        outcomes.push(run_daemon_until_derived(&db, &state, load_first).await);
    }
    let (streamed, loaded) = (&outcomes[0], &outcomes[1]);
    let (rows, quarantined) = streamed;
    for (k, (time, derived)) in ODD_TIMES.iter().enumerate() {
        let id = format!("in{k}");
        if *derived {
            let row = rows.get(&id).unwrap_or_else(|| panic!("{time}: no row"));
            let want = Timestamp::parse_pg(time).unwrap();
            assert_eq!(row.inbound_sent_at, want, "{time}");
            assert_eq!(row.setter_response_ms, Some(90_500), "{time}");
        } else {
            assert!(!rows.contains_key(&id), "{time}");
            for message in [id, format!("out{k}")] {
                let line = format!("Message\t{message}\tno finite time in sentAt");
                assert!(quarantined.contains(&line), "{time}: {quarantined:?}");
            }
        }
    }
    assert!(rows.contains_key("in_last"));
    assert_eq!(quarantined.len(), 6, "{quarantined:?}");
    assert_eq!(
        streamed, loaded,
        "the initial load must treat every row as the stream does"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_timestamptz_values_stream_on_and_load_alike() {
    odd_times_stream_on_and_load_alike("timestamptz").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_timestamp_without_time_zone_values_stream_on_and_load_alike() {
    odd_times_stream_on_and_load_alike("timestamp").await;
}
