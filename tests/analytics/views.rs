//! The drafts view, the daily / weekly aggregates, top setters and a lead's
//! timeline.

use crate::fixtures::{
    Anchor, Counts, Lead, MARCH, analytics_db, close, counts, draft, outcome_rows, t,
};

// ---- drafts ----

#[tokio::test]
async fn ai_drafts_by_channel_and_disposition() {
    let db = analytics_db().await;
    Lead::new("K1").booked("2024-03-05 12:00").insert(&db).await;
    for lead in ["K2", "K3", "K4"] {
        Lead::new(lead).insert(&db).await;
    }
    Lead::new("K5").client("c2").insert(&db).await;
    let out = |id: &'static str, by: &'static str, at: &'static str| (id, "outbound", by, at);
    // K1, sms/AUTO_SENT: two drafts; the earliest send (03-05 10:00) is r, so the
    // booking at 12:00 counts (the later draft alone would be excluded).
    draft(
        &db,
        ("d1", "K1", "sms", "AUTO_SENT"),
        &[out("m1", "ai", "2024-03-05 10:00")],
    )
    .await;
    draft(
        &db,
        ("d2", "K1", "sms", "AUTO_SENT"),
        &[out("m2", "ai", "2024-03-06 10:00")],
    )
    .await;
    // K1, sms/APPROVED after the booking: excluded, the cell shows zeros.
    draft(
        &db,
        ("d7", "K1", "sms", "APPROVED"),
        &[out("m7", "setter", "2024-03-07 10:00")],
    )
    .await;
    // First send before the window: not counted, though sent again inside.
    draft(
        &db,
        ("d3", "K2", "email", "EDITED"),
        &[
            out("m3a", "ai", "2024-02-28 10:00"),
            out("m3b", "ai", "2024-03-02 10:00"),
        ],
    )
    .await;
    // Sent by a human from an approved draft: counted.
    draft(
        &db,
        ("d4", "K3", "email", "APPROVED"),
        &[out("m4", "setter", "2024-03-10 10:00")],
    )
    .await;
    // Another disposition: not counted.
    draft(
        &db,
        ("d5", "K4", "sms", "REJECTED"),
        &[out("m5", "ai", "2024-03-10 10:00")],
    )
    .await;
    // Another client.
    draft(
        &db,
        ("d6", "K5", "sms", "AUTO_SENT"),
        &[out("m6", "ai", "2024-03-10 10:00")],
    )
    .await;
    // Only an inbound message carries the draft id: no send.
    draft(
        &db,
        ("d8", "K2", "sms", "EDITED"),
        &[("m8", "inbound", "", "2024-03-10 10:00")],
    )
    .await;
    // Sent in the last 7 days: pending.
    draft(
        &db,
        ("d9", "K2", "linkedin", "AUTO_SENT"),
        &[out("m9", "ai", "2024-03-29 10:00")],
    )
    .await;
    // Sent exactly at `to`: outside.
    draft(
        &db,
        ("d10", "K4", "email", "EDITED"),
        &[out("m10", "ai", "2024-04-01 00:00")],
    )
    .await;

    // Every channel × disposition cell, zeros included, like the bucket sections:
    // email, linkedin and sms always, by AUTO_SENT, APPROVED, EDITED.
    let key = "channel || '/' || \"responseDisposition\"";
    let grid = |cells: &[(&str, Counts)]| -> Vec<(String, Counts)> {
        let mut all = Vec::new();
        for channel in ["email", "linkedin", "sms"] {
            for disposition in ["AUTO_SENT", "APPROVED", "EDITED"] {
                let name = format!("{channel}/{disposition}");
                let counts = cells
                    .iter()
                    .find(|(cell, _)| *cell == name)
                    .map_or(Counts::default(), |(_, c)| *c);
                all.push((name, counts));
            }
        }
        all
    };
    assert_eq!(
        outcome_rows(&db, key, &format!("replytime_ai_drafts({MARCH})")).await,
        grid(&[
            ("email/APPROVED", counts(0, 1, 0, 0, 0)),
            ("linkedin/AUTO_SENT", counts(0, 0, 0, 1, 0)),
            ("sms/AUTO_SENT", counts(1, 1, 0, 0, 0)),
        ])
    );
    assert_eq!(
        outcome_rows(
            &db,
            key,
            &format!("replytime_ai_drafts({MARCH}, p_client_id => 'c1')")
        )
        .await,
        grid(&[
            ("email/APPROVED", counts(0, 1, 0, 0, 0)),
            ("linkedin/AUTO_SENT", counts(0, 0, 0, 1, 0)),
            ("sms/AUTO_SENT", counts(1, 0, 0, 0, 0)),
        ])
    );
    // K1's APPROVED draft was sent after its booking: excluded, and counted so.
    let excluded = db
        .client
        .query(
            &format!(
                "SELECT channel, \"responseDisposition\", excluded FROM replytime_ai_drafts({MARCH}) \
                 WHERE excluded > 0"
            ),
            &[],
        )
        .await
        .unwrap();
    let excluded: Vec<(String, String, i64)> = excluded
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(excluded, vec![("sms".into(), "APPROVED".into(), 1)]);
    // A channel beyond the three gets its row too.
    Lead::new("K6").insert(&db).await;
    draft(
        &db,
        ("d11", "K6", "whatsapp", "EDITED"),
        &[out("m11", "ai", "2024-03-10 10:00")],
    )
    .await;
    let rows = outcome_rows(&db, key, &format!("replytime_ai_drafts({MARCH})")).await;
    assert_eq!(rows.len(), 12);
    assert_eq!(
        rows[11],
        ("whatsapp/EDITED".to_string(), counts(0, 1, 0, 0, 0))
    );
}

// ---- aggregates and timelines ----

#[tokio::test]
async fn weekly_summary_percentiles_and_top_setters() {
    let db = analytics_db().await;
    let at = "2024-03-05 10:00";
    let anchors = [
        Anchor::new("s1", "L1", at).setter_after(60_000).by("u1"),
        Anchor::new("s2", "L2", at).setter_after(120_000).by("u1"),
        Anchor::new("s3", "L3", at).setter_after(180_000).by("u2"),
        Anchor::new("s4", "L4", at).setter_after(600_000).by("u2"),
        Anchor::new("s5", "L5", at).setter_after(30_000).by("u3"),
        Anchor::new("a1", "L6", at).ai_after(300_000),
        Anchor::new("n1", "L7", at),
        // The next ISO week, unanswered.
        Anchor::new("n2", "L8", "2024-03-12 10:00"),
        // Another client, same week.
        Anchor::new("c4", "L9", at).client("c4").setter_after(1000),
    ];
    for anchor in anchors {
        Lead::new(&anchor.lead)
            .client(&anchor.client.clone())
            .insert(&db)
            .await;
        anchor.insert(&db).await;
    }
    let rows = db
        .client
        .query(
            &format!(
                "SELECT \"weekStart\"::text, \"clientId\", anchors, answered, \"answeredShare\", \
                 \"setterAnswered\", \"aiAnswered\", \"setterP50Ms\", \"setterP90Ms\", \
                 \"aiP50Ms\", \"aiP90Ms\" FROM replytime_weekly_summary({MARCH})"
            ),
            &[],
        )
        .await
        .unwrap();
    let summary: Vec<(String, String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("2024-03-04".into(), "c1".into(), 7, 6),
            ("2024-03-04".into(), "c4".into(), 1, 1),
            ("2024-03-11".into(), "c1".into(), 1, 0),
        ]
    );
    let first = &rows[0];
    assert_eq!(first.get::<_, Option<f64>>(4), Some(6.0 / 7.0));
    assert_eq!((first.get::<_, i64>(5), first.get::<_, i64>(6)), (5, 1));
    // Setter times 30k, 60k, 120k, 180k, 600k: p50 120k, p90 = 180k + 0.6 * 420k.
    close(first.get(7), 120_000.0);
    close(first.get(8), 432_000.0);
    close(first.get(9), 300_000.0);
    close(first.get(10), 300_000.0);
    assert_eq!(rows[2].get::<_, Option<f64>>(4), Some(0.0));
    assert_eq!(rows[2].get::<_, Option<f64>>(7), None);

    // u1 and u2 answered 2 each (u1 faster: median 90k vs 390k), u3 once.
    let top = |n: i32| {
        format!(
            "SELECT rank, \"setterUserId\", answered, \"medianMs\" FROM \
             replytime_weekly_top_setters({MARCH}, p_client_id => 'c1', p_top => {n})"
        )
    };
    let rows = db.client.query(&top(5), &[]).await.unwrap();
    let ranked: Vec<(i64, String, i64, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        ranked,
        vec![
            (1, "u1".into(), 2, 90_000.0),
            (2, "u2".into(), 2, 390_000.0),
            (3, "u3".into(), 1, 30_000.0),
        ]
    );
    assert_eq!(db.client.query(&top(2), &[]).await.unwrap().len(), 2);
}

#[tokio::test]
async fn lead_timeline_newest_first_with_drift_and_responder() {
    let db = analytics_db().await;
    Lead::new("T").insert(&db).await;
    // AI first (10:04 < setter 10:05); runAt 10:03:20, so the drift is 40 s.
    Anchor::new("t1", "T", "2024-03-05 10:00")
        .setter("2024-03-05 10:05")
        .ai("2024-03-05 10:04")
        .delay(Some(200))
        .run_at(t("2024-03-05 10:03:20"))
        .insert(&db)
        .await;
    Anchor::new("t2", "T", "2024-03-06 10:00")
        .channel("email")
        .insert(&db)
        .await;
    Anchor::new("t3", "T", "2024-03-07 10:00")
        .setter("2024-03-07 10:01")
        .by("u7")
        .insert(&db)
        .await;
    let timeline = |args: &str| {
        format!(
            "SELECT \"inboundMessageId\", \"firstResponder\", \"setterResponseMs\", \
             \"setterSentByUserId\", \"aiResponseMs\", \"aiChosenDelaySeconds\", \"aiDriftMs\" \
             FROM replytime_lead_anchors('T'{args})"
        )
    };
    type Line = (
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<i32>,
        Option<i64>,
    );
    let lines = |rows: Vec<tokio_postgres::Row>| -> Vec<Line> {
        rows.iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect()
    };
    let all = lines(db.client.query(&timeline(""), &[]).await.unwrap());
    assert_eq!(
        all,
        vec![
            (
                "t3".into(),
                Some("setter".into()),
                Some(60_000),
                Some("u7".into()),
                None,
                None,
                None
            ),
            ("t2".into(), None, None, None, None, None, None),
            (
                "t1".into(),
                Some("ai".into()),
                Some(300_000),
                Some("u1".into()),
                Some(240_000),
                Some(200),
                Some(40_000)
            ),
        ]
    );
    let limited = lines(
        db.client
            .query(&timeline(", p_limit => 2"), &[])
            .await
            .unwrap(),
    );
    assert_eq!(limited.len(), 2);
    let windowed = timeline(", '2024-03-06 00:00+00', '2024-03-07 10:00+00'");
    let windowed = lines(db.client.query(&windowed, &[]).await.unwrap());
    assert_eq!(windowed.len(), 1);
    assert_eq!(windowed[0].0, "t2");
}
