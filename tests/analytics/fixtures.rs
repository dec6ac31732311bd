//! Fixtures of the analytics tests: a database with the three schemas, rows of
//! `"Lead"`, `"ResponseTimingEvent"`, `"AIDraft"` and `"Message"` written
//! directly (no daemon), and readers of the functions' bucket rows.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use crate::common::{self, TestDb};

const SINK_SQL: &str = include_str!("../../schema/sink.sql");
/// The window of most tests: March 2024 in UTC.
pub const MARCH: &str = "timestamptz '2024-03-01 00:00+00', timestamptz '2024-04-01 00:00+00'";
const COUNT_COLUMNS: &str =
    "booked, \"notBooked\", \"bookedNoTimestamp\", pending, canceled, eligible, \"bookingRate\"";

/// A fresh database with the source tables, the sink table and the analytics
/// functions. analytics.sql goes through the library's applier (the one `report`
/// uses): its CREATE INDEX CONCURRENTLY statements cannot run in one batch.
pub async fn analytics_db() -> TestDb {
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    db.client
        .batch_execute(SINK_SQL)
        .await
        .expect("schema/sink.sql");
    replytime::commands::report::apply_analytics_schema(&db.client, &Default::default())
        .await
        .expect("schema/analytics.sql");
    db
}

/// `2024-03-05 10:00` or `2024-03-05 10:00:00.5`, in UTC.
pub fn t(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .and_utc()
}

pub struct Lead {
    pub id: String,
    pub client: String,
    pub booked: Option<DateTime<Utc>>,
    pub canceled: Option<DateTime<Utc>>,
    pub ghl: Option<String>,
    pub invitee: Option<String>,
    pub event: Option<String>,
}

impl Lead {
    pub fn new(id: &str) -> Lead {
        Lead {
            id: id.into(),
            client: "c1".into(),
            booked: None,
            canceled: None,
            ghl: None,
            invitee: None,
            event: None,
        }
    }
    pub fn client(mut self, client: &str) -> Lead {
        self.client = client.into();
        self
    }
    pub fn booked(mut self, at: &str) -> Lead {
        self.booked = Some(t(at));
        self
    }
    pub fn canceled(mut self, at: &str) -> Lead {
        self.canceled = Some(t(at));
        self
    }
    pub fn ghl(mut self, id: &str) -> Lead {
        self.ghl = Some(id.into());
        self
    }
    pub fn event(mut self, uri: &str) -> Lead {
        self.event = Some(uri.into());
        self
    }
    pub fn invitee(mut self, uri: &str) -> Lead {
        self.invitee = Some(uri.into());
        self
    }

    pub async fn insert(self, db: &TestDb) {
        db.client
            .execute(
                "INSERT INTO \"Lead\" (id, \"clientId\", \"appointmentBookedAt\", \
                 \"appointmentCanceledAt\", \"ghlAppointmentId\", \"calendlyInviteeUri\", \
                 \"calendlyScheduledEventUri\") VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &self.id,
                    &self.client,
                    &self.booked,
                    &self.canceled,
                    &self.ghl,
                    &self.invitee,
                    &self.event,
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("insert lead {}: {e:?}", self.id));
    }
}

/// One `"ResponseTimingEvent"` row; the `…Ms` columns are derived in SQL as the
/// daemon derives them (floor of whole milliseconds).
#[derive(Clone)]
pub struct Anchor {
    pub id: String,
    pub lead: String,
    pub client: String,
    pub channel: String,
    pub inbound: DateTime<Utc>,
    pub setter: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub ai: Option<DateTime<Utc>>,
    pub delay: Option<i32>,
    pub run_at: Option<DateTime<Utc>>,
}

impl Anchor {
    pub fn new(id: &str, lead: &str, inbound: &str) -> Anchor {
        Anchor {
            id: id.into(),
            lead: lead.into(),
            client: "c1".into(),
            channel: "sms".into(),
            inbound: t(inbound),
            setter: None,
            user: None,
            ai: None,
            delay: None,
            run_at: None,
        }
    }
    pub fn client(mut self, client: &str) -> Anchor {
        self.client = client.into();
        self
    }
    pub fn channel(mut self, channel: &str) -> Anchor {
        self.channel = channel.into();
        self
    }
    /// A setter response by `u1` at `at`.
    pub fn setter(mut self, at: &str) -> Anchor {
        self.setter = Some(t(at));
        self.user.get_or_insert_with(|| "u1".into());
        self
    }
    /// A setter response `ms` after the inbound.
    pub fn setter_after(mut self, ms: i64) -> Anchor {
        self.setter = Some(self.inbound + Duration::milliseconds(ms));
        self.user.get_or_insert_with(|| "u1".into());
        self
    }
    pub fn by(mut self, user: &str) -> Anchor {
        self.user = Some(user.into());
        self
    }
    pub fn ai(mut self, at: &str) -> Anchor {
        self.ai = Some(t(at));
        self
    }
    pub fn ai_after(mut self, ms: i64) -> Anchor {
        self.ai = Some(self.inbound + Duration::milliseconds(ms));
        self
    }
    pub fn delay(mut self, seconds: Option<i32>) -> Anchor {
        self.delay = seconds;
        self
    }
    pub fn run_at(mut self, at: DateTime<Utc>) -> Anchor {
        self.run_at = Some(at);
        self
    }

    pub async fn insert(self, db: &TestDb) {
        db.client
            .execute(
                "INSERT INTO \"ResponseTimingEvent\" (id, \"clientId\", \"leadId\", channel, \
                 \"inboundMessageId\", \"inboundSentAt\", \"setterResponseMessageId\", \
                 \"setterResponseSentAt\", \"setterSentByUserId\", \"setterResponseMs\", \
                 \"aiResponseMessageId\", \"aiResponseSentAt\", \"aiResponseMs\", \
                 \"aiChosenDelaySeconds\", \"aiScheduledRunAt\") \
                 VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, \
                 CASE WHEN $6::timestamptz IS NOT NULL THEN $4 || '/setter' END, $6, $7, \
                 floor(extract(epoch FROM $6 - $5) * 1000)::bigint, \
                 CASE WHEN $8::timestamptz IS NOT NULL THEN $4 || '/ai' END, $8, \
                 floor(extract(epoch FROM $8 - $5) * 1000)::bigint, $9, $10)",
                &[
                    &self.client,
                    &self.lead,
                    &self.channel,
                    &self.id,
                    &self.inbound,
                    &self.setter,
                    &self.user,
                    &self.ai,
                    &self.delay,
                    &self.run_at,
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("insert anchor {}: {e:?}", self.id));
    }
}

/// An `"AIDraft"` and its messages `(id, direction, sentBy, sentAt)`.
pub async fn draft(
    db: &TestDb,
    (id, lead, channel, disposition): (&str, &str, &str, &str),
    messages: &[(&str, &str, &str, &str)],
) {
    db.client
        .execute(
            "INSERT INTO \"AIDraft\" (id, \"leadId\", \"triggerMessageId\", channel, \
             \"responseDisposition\") VALUES ($1, $2, $1 || '/trigger', $3, $4)",
            &[&id, &lead, &channel, &disposition],
        )
        .await
        .unwrap();
    for (message, direction, sent_by, at) in messages {
        db.client
            .execute(
                "INSERT INTO \"Message\" (id, \"leadId\", channel, direction, \"sentBy\", \
                 \"aiDraftId\", \"sentAt\") VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[message, &lead, &channel, direction, sent_by, &id, &t(at)],
            )
            .await
            .unwrap();
    }
}

// ---- reading results ----

/// The outcome columns of one bucket row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub booked: i64,
    pub not_booked: i64,
    pub no_timestamp: i64,
    pub pending: i64,
    pub canceled: i64,
}

pub fn counts(
    booked: i64,
    not_booked: i64,
    no_timestamp: i64,
    pending: i64,
    canceled: i64,
) -> Counts {
    Counts {
        booked,
        not_booked,
        no_timestamp,
        pending,
        canceled,
    }
}

/// Rows of `SELECT <key>, <COUNT_COLUMNS> FROM …`, in the order returned; checks
/// eligible and bookingRate against the counts on the way.
pub async fn outcome_rows(db: &TestDb, key: &str, from: &str) -> Vec<(String, Counts)> {
    let sql = format!("SELECT {key}, {COUNT_COLUMNS} FROM {from}");
    let rows = db
        .client
        .query(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter()
        .map(|row| {
            let c = counts(row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
            let eligible: i64 = row.get(6);
            let rate: Option<f64> = row.get(7);
            assert_eq!(eligible, c.booked + c.not_booked, "{sql}");
            let expected_rate = (eligible > 0).then(|| c.booked as f64 / eligible as f64);
            assert_eq!(rate, expected_rate, "{sql}");
            (row.get::<_, String>(0), c)
        })
        .collect()
}

/// The rows of a bucket function that count anything.
pub async fn nonzero_buckets(db: &TestDb, call: &str) -> Vec<(String, Counts)> {
    outcome_rows(db, "bucket", call)
        .await
        .into_iter()
        .filter(|(_, c)| *c != Counts::default())
        .collect()
}

/// A percentile (`percentile_cont` interpolates in floating point).
pub fn close(actual: Option<f64>, expected: f64) {
    let actual = actual.unwrap_or_else(|| panic!("NULL, expected {expected}"));
    assert!((actual - expected).abs() < 1e-6, "{actual} != {expected}");
}

pub fn expect(rows: &[(&str, Counts)]) -> Vec<(String, Counts)> {
    rows.iter().map(|(b, c)| (b.to_string(), *c)).collect()
}
