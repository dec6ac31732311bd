//! Windows of local midnights across a DST change, attribution windows counted
//! in local days, and the business-hours filter in different zones.

use chrono::{DateTime, Utc};

use crate::fixtures::{
    Anchor, Lead, MARCH, analytics_db, close, counts, expect, nonzero_buckets, t,
};

#[tokio::test]
async fn local_midnight_windows_across_a_dst_change() {
    let db = analytics_db().await;
    // America/New_York: EST (UTC-5) until 2024-03-10 02:00, then EDT (UTC-4).
    // [03-01, 03-15) local = [03-01 05:00Z, 03-15 04:00Z); to - 7 local days =
    // 03-08 00:00 EST = 03-08 05:00Z (168 hours before `to` would be 04:00Z).
    let anchors = [
        // 02-29 23:30 EST: outside in New York, inside in UTC; 10 min.
        Anchor::new("x1", "X1", "2024-03-01 04:30").setter_after(600_000),
        // 03-01 00:00 EST: inside both; 2 min.
        Anchor::new("x2", "X2", "2024-03-01 05:00").setter_after(120_000),
        // 03-14 23:30 EDT: inside New York only (r after the cutoff: pending); 20 min.
        Anchor::new("x3", "X3", "2024-03-15 03:30").setter_after(1_200_000),
        // 03-15 00:00 EDT: outside both.
        Anchor::new("x4", "X4", "2024-03-15 04:00").setter_after(120_000),
        // r 03-08 04:30Z, before the local cutoff: mature in New York (UTC:
        // pending, cutoff 03-08 00:00Z).
        Anchor::new("p1", "P1", "2024-03-08 04:28").setter_after(120_000),
        // r 03-08 05:01Z: pending in both.
        Anchor::new("p2", "P2", "2024-03-08 04:59").setter_after(120_000),
        // Unanswered anchors either side of the DST night, for the daily view:
        // 03-09 23:30 EST and 03-10 23:30 EDT.
        Anchor::new("d1", "D1", "2024-03-10 04:30"),
        Anchor::new("d2", "D2", "2024-03-11 03:30"),
    ];
    for anchor in anchors {
        Lead::new(&anchor.lead).insert(&db).await;
        anchor.insert(&db).await;
    }
    let ny = "replytime_local_midnight('2024-03-01', 'America/New_York'), \
              replytime_local_midnight('2024-03-15', 'America/New_York')";
    let bounds = db
        .client
        .query_one(&format!("SELECT {ny}"), &[])
        .await
        .unwrap();
    assert_eq!(bounds.get::<_, DateTime<Utc>>(0), t("2024-03-01 05:00"));
    assert_eq!(bounds.get::<_, DateTime<Utc>>(1), t("2024-03-15 04:00"));

    let call = format!("replytime_setter_buckets({ny}, p_tz => 'America/New_York')");
    assert_eq!(
        nonzero_buckets(&db, &call).await,
        expect(&[
            ("< 5 min", counts(0, 2, 0, 1, 0)),
            ("15-60 min", counts(0, 0, 0, 1, 0)),
        ])
    );
    let utc = "timestamptz '2024-03-01 00:00+00', timestamptz '2024-03-15 00:00+00'";
    assert_eq!(
        nonzero_buckets(&db, &format!("replytime_setter_buckets({utc})")).await,
        expect(&[
            ("< 5 min", counts(0, 1, 0, 2, 0)),
            ("5-15 min", counts(0, 1, 0, 0, 0)),
        ])
    );

    // Days in New York: 14 rows, zeros included.
    let days = db
        .client
        .query(
            &format!(
                "SELECT day::text, anchors, answered, \"answeredShare\" \
                 FROM replytime_daily({ny}, p_tz => 'America/New_York')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(days.len(), 14);
    let busy: Vec<(String, i64, i64)> = days
        .iter()
        .filter(|r| r.get::<_, i64>(1) > 0)
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        ("2024-03-01", 1, 1),
        ("2024-03-07", 2, 2),
        ("2024-03-09", 1, 0),
        ("2024-03-10", 1, 0),
        ("2024-03-14", 1, 1),
    ];
    let expected: Vec<(String, i64, i64)> = expected
        .iter()
        .map(|(d, a, n)| (d.to_string(), *a, *n))
        .collect();
    assert_eq!(busy, expected);
    assert_eq!(days[0].get::<_, String>(0), "2024-03-01");
    assert_eq!(days[8].get::<_, Option<f64>>(3), Some(0.0), "2024-03-09");
    assert_eq!(
        days[2].get::<_, Option<f64>>(3),
        None,
        "no anchors on 03-03"
    );
}

#[tokio::test]
async fn attribution_window_counts_local_days_across_dst() {
    let db = analytics_db().await;
    // r = 03-09 12:00 EST (17:00Z). Two local days later is 03-11 12:00 EDT =
    // 16:00Z (47 elapsed hours): a booking at 16:00Z is inside, one at 16:30Z
    // outside (though within 48 hours).
    Lead::new("w1").booked("2024-03-11 16:00").insert(&db).await;
    Lead::new("w2").booked("2024-03-11 16:30").insert(&db).await;
    for lead in ["w1", "w2"] {
        Anchor::new(&format!("in-{lead}"), lead, "2024-03-09 16:58")
            .setter("2024-03-09 17:00")
            .insert(&db)
            .await;
    }
    let call = format!(
        "replytime_setter_buckets({MARCH}, p_window => '2 days', \
         p_maturity => '0 days', p_tz => 'America/New_York')"
    );
    assert_eq!(
        nonzero_buckets(&db, &call).await,
        expect(&[("< 5 min", counts(1, 1, 0, 0, 0))])
    );
    // The same in UTC: 48 hours, both inside.
    let call =
        format!("replytime_setter_buckets({MARCH}, p_window => '2 days', p_maturity => '0 days')");
    assert_eq!(
        nonzero_buckets(&db, &call).await,
        expect(&[("< 5 min", counts(2, 0, 0, 0, 0))])
    );
}

#[tokio::test]
async fn business_hours_filter_in_the_given_time_zone() {
    let db = analytics_db().await;
    // Tuesday 2024-03-12 (EDT, UTC-4) and Saturday 2024-03-16; hours 09:00-17:00.
    let anchors = [
        // 16:30/16:32 New York (in); 20:30 UTC (out). 2 min.
        Anchor::new("b1", "B1", "2024-03-12 20:30").setter_after(120_000),
        // 06:00 New York (out); 10:00/10:20 UTC (in). 20 min.
        Anchor::new("b2", "B2", "2024-03-12 10:00").setter_after(1_200_000),
        // 12:59/13:01 New York (in); UTC response at 17:01 (out). 2 min.
        Anchor::new("b3", "B3", "2024-03-12 16:59").setter_after(120_000),
        // Saturday: out unless weekends are business days. 1 min.
        Anchor::new("b4", "B4", "2024-03-16 14:00").setter_after(60_000),
        // B5: a fast answer outside New York hours (in UTC hours), then a slower one
        // inside: the filter comes before the pick.
        Anchor::new("b5-1", "B5", "2024-03-12 10:00").setter_after(60_000),
        Anchor::new("b5-2", "B5", "2024-03-12 14:00")
            .channel("email")
            .setter_after(600_000),
    ];
    for anchor in anchors {
        if !anchor.id.ends_with("-2") {
            Lead::new(&anchor.lead).insert(&db).await;
        }
        anchor.insert(&db).await;
    }
    let nb = |n| counts(0, n, 0, 0, 0);
    let run = |args: &str| format!("replytime_setter_buckets({MARCH}{args})");

    assert_eq!(
        nonzero_buckets(&db, &run("")).await,
        expect(&[("< 5 min", nb(4)), ("15-60 min", nb(1))])
    );
    let ny = ", p_tz => 'America/New_York', p_business_hours => true";
    assert_eq!(
        nonzero_buckets(&db, &run(ny)).await,
        expect(&[("< 5 min", nb(2)), ("5-15 min", nb(1))])
    );
    assert_eq!(
        nonzero_buckets(&db, &run(", p_business_hours => true")).await,
        expect(&[("< 5 min", nb(1)), ("15-60 min", nb(1))])
    );
    let every_day = format!("{ny}, p_business_days => '{{1,2,3,4,5,6,7}}'");
    assert_eq!(
        nonzero_buckets(&db, &run(&every_day)).await,
        expect(&[("< 5 min", nb(3)), ("5-15 min", nb(1))])
    );

    // Daily setter counts and percentiles honour the filter. 03-12 in New York:
    // all setter times 60k, 120k, 120k, 600k, 1200k ms (p90 = 960k); inside
    // hours 120k, 120k, 600k (3 answers, p90 = 504k).
    let day = |args: &str| {
        format!(
            "SELECT \"setterAnswered\", \"setterP50Ms\", \"setterP90Ms\" FROM \
             replytime_daily({MARCH}{args}) WHERE day = '2024-03-12'"
        )
    };
    let all = db
        .client
        .query_one(&day(", p_tz => 'America/New_York'"), &[])
        .await
        .unwrap();
    assert_eq!(all.get::<_, i64>(0), 5);
    close(all.get(1), 120_000.0);
    close(all.get(2), 960_000.0);
    let filtered = db.client.query_one(&day(ny), &[]).await.unwrap();
    assert_eq!(filtered.get::<_, i64>(0), 3);
    close(filtered.get(2), 504_000.0);

    // Hours that wrap past midnight.
    let wraps = db
        .client
        .query_one(
            "SELECT replytime_in_business_hours('2024-03-12 03:00+00', 'UTC', '{2}', '22:00', '06:00'), \
                    replytime_in_business_hours('2024-03-12 23:00+00', 'UTC', '{2}', '22:00', '06:00'), \
                    replytime_in_business_hours('2024-03-12 12:00+00', 'UTC', '{2}', '22:00', '06:00')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (wraps.get(0), wraps.get(1), wraps.get(2)),
        (true, true, false)
    );
}
