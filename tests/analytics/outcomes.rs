//! The outcome rules of SPEC 7 and the per-lead pick, through the bucket
//! functions: each rule, bucket bounds, lead-level dedupe, first responder.

use chrono::Duration;

use crate::common::TestDb;
use crate::fixtures::{
    Anchor, Lead, MARCH, analytics_db, counts, expect, nonzero_buckets, outcome_rows, t,
};

/// One lead per rule, each with one anchor answered by a setter 2 minutes after
/// the inbound (bucket `< 5 min`), in March 2024 (UTC) unless said otherwise.
pub async fn outcome_fixture(db: &TestDb) {
    let leads = [
        // r = 03-05 10:02, booked 5 days later: booked.
        (
            "booked",
            Lead::new("booked").booked("2024-03-10 10:00"),
            "2024-03-05 10:00",
        ),
        // Booked exactly at r: excluded (booked <= r).
        (
            "prebooked",
            Lead::new("prebooked").booked("2024-03-05 10:02"),
            "2024-03-05 10:00",
        ),
        // r after to - 7 days (03-25 00:00): pending, though booked later.
        (
            "pending",
            Lead::new("pending").booked("2024-03-27 00:00"),
            "2024-03-26 10:00",
        ),
        // Pending, but booked before r: excluded wins.
        (
            "pending-pre",
            Lead::new("pending-pre").booked("2024-03-20 00:00"),
            "2024-03-26 10:00",
        ),
        // Pending, with a GHL id: pending wins over bookedNoTimestamp.
        (
            "pending-ghl",
            Lead::new("pending-ghl").ghl("ghl-1"),
            "2024-03-26 10:00",
        ),
        // r exactly at to - 7 days: mature; not booked.
        ("mature-edge", Lead::new("mature-edge"), "2024-03-24 23:58"),
        // Booked exactly r + 30 days: inside the window (upper-inclusive).
        (
            "window-in",
            Lead::new("window-in").booked("2024-03-31 10:00"),
            "2024-03-01 09:58",
        ),
        // One second after r + 30 days: outside, notBooked.
        (
            "window-out",
            Lead::new("window-out").booked("2024-03-31 10:00:01"),
            "2024-03-01 09:58",
        ),
        // Booked exactly at `to` (< r + 30 days): inside.
        (
            "at-to",
            Lead::new("at-to").booked("2024-04-01 00:00"),
            "2024-03-10 09:58",
        ),
        // Booked after `to`: notBooked.
        (
            "after-to",
            Lead::new("after-to").booked("2024-04-01 00:00:01"),
            "2024-03-10 09:58",
        ),
        // Booked in the window, then canceled: canceled and notBooked.
        (
            "canceled",
            Lead::new("canceled")
                .booked("2024-03-12 09:00")
                .canceled("2024-03-13 09:00"),
            "2024-03-05 10:00",
        ),
        // Canceled at the booking time: canceled (canceledAt >= bookedAt).
        (
            "canceled-same",
            Lead::new("canceled-same")
                .booked("2024-03-12 09:00")
                .canceled("2024-03-12 09:00"),
            "2024-03-05 10:00",
        ),
        // A cancellation older than the booking (rebooked): booked.
        (
            "rebooked",
            Lead::new("rebooked")
                .booked("2024-03-12 09:00")
                .canceled("2024-03-11 09:00"),
            "2024-03-05 10:00",
        ),
        // Canceled, but booked outside the window: only notBooked.
        (
            "canceled-late",
            Lead::new("canceled-late")
                .booked("2024-04-05 09:00")
                .canceled("2024-04-06 09:00"),
            "2024-03-05 10:00",
        ),
        // No booking time but a GHL / Calendly id: bookedNoTimestamp.
        ("ghl", Lead::new("ghl").ghl("ghl-2"), "2024-03-05 10:00"),
        (
            "calendly",
            Lead::new("calendly").event("https://calendly/e/1"),
            "2024-03-05 10:00",
        ),
        (
            "invitee",
            Lead::new("invitee").invitee("https://calendly/i/1"),
            "2024-03-05 10:00",
        ),
        // An empty id is no id.
        (
            "empty-id",
            Lead::new("empty-id").ghl(""),
            "2024-03-05 10:00",
        ),
        ("plain", Lead::new("plain"), "2024-03-05 10:00"),
        // Inbound exactly at `from`: counted.
        ("at-from", Lead::new("at-from"), "2024-03-01 00:00"),
        // Inbound before `from` (answered inside): not counted.
        (
            "before-from",
            Lead::new("before-from"),
            "2024-02-29 23:59:59",
        ),
        // Inbound exactly at `to`: not counted (to is exclusive).
        (
            "at-to-anchor",
            Lead::new("at-to-anchor"),
            "2024-04-01 00:00",
        ),
    ];
    for (id, lead, inbound) in leads {
        lead.insert(db).await;
        Anchor::new(&format!("in-{id}"), id, inbound)
            .setter_after(120_000)
            .insert(db)
            .await;
    }
}

#[tokio::test]
async fn outcome_rules_of_spec_7() {
    let db = analytics_db().await;
    outcome_fixture(&db).await;

    // booked: booked, window-in, at-to, rebooked. notBooked: mature-edge,
    // window-out, after-to, canceled, canceled-same, canceled-late, empty-id,
    // plain, at-from. bookedNoTimestamp: ghl, calendly, invitee. pending: pending,
    // pending-ghl. canceled: canceled, canceled-same. Excluded: prebooked,
    // pending-pre. Outside the window: before-from, at-to-anchor.
    let call = format!("replytime_setter_buckets({MARCH})");
    assert_eq!(
        nonzero_buckets(&db, &call).await,
        expect(&[("< 5 min", counts(4, 9, 3, 2, 2))])
    );

    // A 10-day attribution window and no maturity buffer: pending becomes booked
    // (r 03-26, booked 03-27), pending-ghl bookedNoTimestamp; window-in (30 days)
    // and at-to (22 days) become notBooked; canceled ones are still inside.
    let call =
        format!("replytime_setter_buckets({MARCH}, p_window => '10 days', p_maturity => '0 days')");
    assert_eq!(
        nonzero_buckets(&db, &call).await,
        expect(&[("< 5 min", counts(3, 11, 4, 0, 2))])
    );

    // One client only: another client's lead and anchor are left out.
    Lead::new("other").client("c2").insert(&db).await;
    Anchor::new("in-other", "other", "2024-03-05 10:00")
        .client("c2")
        .setter_after(1000)
        .insert(&db)
        .await;
    let call = format!("replytime_setter_buckets({MARCH}, p_client_id => 'c1')");
    assert_eq!(
        nonzero_buckets(&db, &call).await,
        expect(&[("< 5 min", counts(4, 9, 3, 2, 2))])
    );
    let call = format!("replytime_setter_buckets({MARCH}, p_client_id => 'c2')");
    assert_eq!(
        nonzero_buckets(&db, &call).await,
        expect(&[("< 5 min", counts(0, 1, 0, 0, 0))])
    );
}

// ---- buckets ----

#[tokio::test]
async fn buckets_are_lower_inclusive_upper_exclusive() {
    let db = analytics_db().await;
    let inbound = "2024-03-05 10:00";
    let setter_ms = [
        0, 299_999, 300_000, 899_999, 900_000, 3_599_999, 3_600_000, 14_399_999, 14_400_000,
        86_399_999, 86_400_000,
    ];
    for ms in setter_ms {
        let lead = format!("s{ms}");
        Lead::new(&lead).insert(&db).await;
        Anchor::new(&format!("in-{lead}"), &lead, inbound)
            .setter_after(ms)
            .insert(&db)
            .await;
    }
    let delays = [
        Some(179),
        Some(180),
        Some(239),
        Some(240),
        Some(299),
        Some(300),
        Some(359),
        Some(360),
        Some(420),
        Some(421),
        None,
    ];
    for (i, delay) in delays.into_iter().enumerate() {
        let lead = format!("d{i}");
        Lead::new(&lead).insert(&db).await;
        Anchor::new(&format!("in-{lead}"), &lead, inbound)
            .ai_after(300_000)
            .delay(delay)
            .insert(&db)
            .await;
    }
    // Drift = AI sent - runAt; runAt 200 s after the inbound.
    let drifts_ms = [
        -5_000, 29_999, 30_000, 59_999, 60_000, 119_999, 120_000, 299_999, 300_000, 899_999,
        900_000,
    ];
    for ms in drifts_ms {
        let lead = format!("r{ms}");
        let run_at = t(inbound) + Duration::seconds(200);
        Lead::new(&lead).insert(&db).await;
        Anchor::new(&format!("in-{lead}"), &lead, inbound)
            .run_at(run_at)
            .ai_after(200_000 + ms)
            .delay(Some(200))
            .insert(&db)
            .await;
    }

    let nb = |n| counts(0, n, 0, 0, 0);
    let setter = outcome_rows(&db, "bucket", &format!("replytime_setter_buckets({MARCH})")).await;
    assert_eq!(
        setter,
        expect(&[
            ("< 5 min", nb(2)),
            ("5-15 min", nb(2)),
            ("15-60 min", nb(2)),
            ("1-4 h", nb(2)),
            ("4-24 h", nb(2)),
            (">= 24 h", nb(1)),
        ])
    );
    // The drift leads all have delay 200: 11 more in 180-239.
    let delay = outcome_rows(
        &db,
        "bucket",
        &format!("replytime_ai_delay_buckets({MARCH})"),
    )
    .await;
    assert_eq!(
        delay,
        expect(&[
            ("180-239 s", nb(2 + 11)),
            ("240-299 s", nb(2)),
            ("300-359 s", nb(2)),
            ("360-420 s", nb(2)),
            ("outside", nb(2)),
            ("unknown", nb(1)),
        ])
    );
    // Anchors without a runAt (the delay leads) are not in the drift section.
    let drift = outcome_rows(
        &db,
        "bucket",
        &format!("replytime_ai_drift_buckets({MARCH})"),
    )
    .await;
    assert_eq!(
        drift,
        expect(&[
            ("< 30 s", nb(2)),
            ("30-60 s", nb(2)),
            ("1-2 min", nb(2)),
            ("2-5 min", nb(2)),
            ("5-15 min", nb(2)),
            (">= 15 min", nb(1)),
        ])
    );
}

#[tokio::test]
async fn each_lead_counts_once_at_its_earliest_qualifying_response() {
    let db = analytics_db().await;
    // D: three anchors; the earliest *response* (email, 10:31, 1 min) wins over
    // the earliest anchor (sms 10:00, answered 12:00).
    Lead::new("D").insert(&db).await;
    Anchor::new("d-1", "D", "2024-03-05 10:00")
        .setter("2024-03-05 12:00")
        .insert(&db)
        .await;
    Anchor::new("d-2", "D", "2024-03-05 10:30")
        .channel("email")
        .setter("2024-03-05 10:31")
        .insert(&db)
        .await;
    Anchor::new("d-3", "D", "2024-03-06 09:00")
        .setter("2024-03-06 09:01")
        .insert(&db)
        .await;
    // E: two responses at the same instant; the anchor id decides, compared as
    // bytes ('E-2' < 'e-1' in C order, the reverse in a linguistic collation).
    Lead::new("E").insert(&db).await;
    Anchor::new("e-1", "E", "2024-03-07 10:00")
        .setter("2024-03-07 10:04")
        .insert(&db)
        .await;
    Anchor::new("E-2", "E", "2024-03-07 09:55")
        .channel("email")
        .setter("2024-03-07 10:04")
        .insert(&db)
        .await;
    // F: booked between its first response (r) and a later one: booked at r.
    Lead::new("F").booked("2024-03-08 11:00").insert(&db).await;
    Anchor::new("f-1", "F", "2024-03-08 10:00")
        .setter("2024-03-08 10:04")
        .insert(&db)
        .await;
    Anchor::new("f-2", "F", "2024-03-08 11:30")
        .setter("2024-03-08 12:00")
        .insert(&db)
        .await;
    // G: AI responses; the earliest (03-06, delay 400) wins over the earlier
    // anchor answered later (03-07, delay 200).
    Lead::new("G").insert(&db).await;
    Anchor::new("g-1", "G", "2024-03-05 09:00")
        .ai("2024-03-07 09:00")
        .delay(Some(200))
        .insert(&db)
        .await;
    Anchor::new("g-2", "G", "2024-03-06 09:00")
        .channel("email")
        .ai("2024-03-06 09:07")
        .delay(Some(400))
        .insert(&db)
        .await;

    assert_eq!(
        nonzero_buckets(&db, &format!("replytime_setter_buckets({MARCH})")).await,
        expect(&[
            ("< 5 min", counts(1, 1, 0, 0, 0)),
            ("5-15 min", counts(0, 1, 0, 0, 0)),
        ])
    );
    assert_eq!(
        nonzero_buckets(&db, &format!("replytime_ai_delay_buckets({MARCH})")).await,
        expect(&[("360-420 s", counts(0, 1, 0, 0, 0))])
    );
}

#[tokio::test]
async fn setter_vs_ai_goes_to_the_first_responder() {
    let db = analytics_db().await;
    let lead = |id: &str| Lead::new(id);
    lead("S").booked("2024-03-06 00:00").insert(&db).await;
    Anchor::new("s", "S", "2024-03-05 10:00")
        .setter("2024-03-05 10:02")
        .ai("2024-03-05 10:05")
        .insert(&db)
        .await;
    lead("A").insert(&db).await;
    Anchor::new("a", "A", "2024-03-05 10:00")
        .setter("2024-03-05 10:10")
        .ai("2024-03-05 10:04")
        .insert(&db)
        .await;
    // A tie goes to the setter.
    lead("T").insert(&db).await;
    Anchor::new("t", "T", "2024-03-05 10:00")
        .setter("2024-03-05 10:04")
        .ai("2024-03-05 10:04")
        .insert(&db)
        .await;
    lead("O").insert(&db).await;
    Anchor::new("o", "O", "2024-03-05 10:00")
        .ai("2024-03-05 10:04")
        .insert(&db)
        .await;
    // M: a setter-only anchor answered at 11:00 and an AI-only one at 10:30:
    // the lead's earliest response is the AI's.
    lead("M").insert(&db).await;
    Anchor::new("m-1", "M", "2024-03-05 09:00")
        .setter("2024-03-05 11:00")
        .insert(&db)
        .await;
    Anchor::new("m-2", "M", "2024-03-05 10:25")
        .channel("email")
        .ai("2024-03-05 10:30")
        .insert(&db)
        .await;
    // Unanswered: in no bucket.
    lead("U").insert(&db).await;
    Anchor::new("u", "U", "2024-03-05 10:00").insert(&db).await;

    let rows = outcome_rows(
        &db,
        "bucket",
        &format!("replytime_first_responder({MARCH})"),
    )
    .await;
    assert_eq!(
        rows,
        expect(&[
            ("setter", counts(1, 1, 0, 0, 0)),
            ("ai", counts(0, 3, 0, 0, 0)),
        ])
    );
}
