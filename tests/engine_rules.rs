//! One test per rule of SPEC sections 3 and 4, each named after the rule it checks,
//! against the real engine over a real RocksDB.

#[path = "engine/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::*;
use replytime::change::{Change, LeadRow, MessageRow, Row, Table};
use replytime::engine::{EngineError, EngineOptions};

fn conversation(h: &mut Harness) {
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        setter("out1", "L", "u1", 90.5),
    ]);
}

#[test]
fn thread_orders_by_sent_at_then_id_bytes() {
    let mut h = Harness::new();
    // Same sentAt: "B" < "a" in C collation, so "a" (inbound) comes after "B".
    h.txn(vec![
        lead("L", "C"),
        outbound("B", "L", 5.0),
        inbound("a", "L", 5.0),
    ]);
    assert!(h.sink.is_empty(), "inbound a has no successor");
    h.txn(vec![outbound("b", "L", 5.0)]);
    assert_eq!(h.row("a").inbound_message_id, "a");
}

#[test]
fn null_sent_at_is_not_in_any_thread_until_it_gets_one() {
    let mut h = Harness::new();
    let mut pending = message("out1", "L", "outbound", 0.0);
    pending.sent_at = None;
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        Change::Insert(Row::Message(pending.clone())),
    ]);
    assert!(h.sink.is_empty());
    pending.sent_at = Some(t(30.0));
    h.txn(vec![update(Row::Message(pending))]);
    assert_eq!(h.row("in1").channel, "sms");
}

#[test]
fn unknown_direction_is_not_in_any_thread() {
    let mut h = Harness::new();
    h.txn(vec![lead("L", "C"), inbound("in1", "L", 0.0)]);
    h.txn(vec![Change::Insert(Row::Message(message(
        "sys", "L", "system", 1.0,
    )))]);
    assert!(h.sink.is_empty());
    assert_eq!(h.engine.take_stats().unknown_direction, 1);
    h.txn(vec![outbound("o", "L", 2.0)]);
    assert!(
        h.sink.contains_key("in1"),
        "the system message is as if absent"
    );
}

#[test]
fn inbound_streak_yields_one_anchor() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        inbound("in2", "L", 1.0),
        inbound("in3", "L", 2.0),
        outbound("o", "L", 3.0),
    ]);
    assert_eq!(h.sink.keys().collect::<Vec<_>>(), vec!["in3"]);
}

#[test]
fn anchor_requires_an_outbound_successor() {
    let mut h = Harness::new();
    h.txn(vec![lead("L", "C"), inbound("in1", "L", 0.0)]);
    assert!(h.sink.is_empty());
}

#[test]
fn response_window_ends_at_the_next_inbound() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        outbound("o1", "L", 1.0),
        inbound("in2", "L", 2.0),
        setter("s", "L", "u", 3.0),
    ]);
    assert_eq!(h.row("in1").setter_response_message_id, None);
    assert_eq!(
        h.row("in2").setter_response_message_id.as_deref(),
        Some("s")
    );
}

#[test]
fn setter_response_is_the_first_setter_with_a_user_in_the_window() {
    let mut h = Harness::new();
    let mut no_user = setter_msg("s0", "L", "u", 1.0);
    no_user.sent_by_user_id = None;
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        Change::Insert(Row::Message(no_user)),
        setter("s1", "L", "u1", 2.0),
        setter("s2", "L", "u2", 3.0),
    ]);
    let row = h.row("in1");
    assert_eq!(row.setter_response_message_id.as_deref(), Some("s1"));
    assert_eq!(row.setter_sent_by_user_id.as_deref(), Some("u1"));
    assert_eq!(row.setter_response_sent_at, Some(t(2.0)));
}

#[test]
fn setter_sending_an_ai_draft_is_a_setter_response() {
    let mut h = Harness::new();
    let mut m = setter_msg("s", "L", "u", 4.0);
    m.ai_draft_id = Some("d".into());
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        draft("d", "L", "in1"),
        Change::Insert(Row::Message(m)),
    ]);
    let row = h.row("in1");
    assert_eq!(row.setter_response_message_id.as_deref(), Some("s"));
    assert_eq!(row.ai_response_message_id, None);
    assert_eq!(row.ai_draft_id.as_deref(), Some("d"));
}

#[test]
fn setter_response_ms_is_floored() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        setter("s", "L", "u", 1.0019995),
    ]);
    assert_eq!(h.row("in1").setter_response_ms, Some(1001));
}

#[test]
fn ai_response_is_the_earliest_ai_send_of_the_anchor_draft() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        draft("d", "L", "in1"),
        ai_send("a2", "L", "d", 400.0),
        ai_send("a1", "L", "d", 300.25),
    ]);
    let row = h.row("in1");
    assert_eq!(row.ai_response_message_id.as_deref(), Some("a1"));
    assert_eq!(row.ai_response_ms, Some(300_250));
    assert_eq!(row.ai_actual_delay_seconds, Some(300));
    assert_eq!(row.ai_chosen_delay_seconds, None, "no job, no chosen delay");
}

#[test]
fn ai_draft_id_is_filled_without_a_send() {
    let mut h = Harness::new();
    conversation(&mut h);
    h.txn(vec![draft("d", "L", "in1")]);
    assert_eq!(h.row("in1").ai_draft_id.as_deref(), Some("d"));
    assert_eq!(h.row("in1").ai_response_message_id, None);
}

#[test]
fn ai_draft_must_match_the_anchor_channel() {
    let mut h = Harness::new();
    conversation(&mut h);
    let Change::Insert(Row::Draft(mut d)) = draft("d", "L", "in1") else {
        unreachable!()
    };
    d.channel = Some("email".into());
    h.txn(vec![Change::Insert(Row::Draft(d))]);
    assert_eq!(h.row("in1").ai_draft_id, None);
}

#[test]
fn ai_response_ms_can_be_negative_and_floors() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 10.0),
        outbound("o", "L", 11.0),
        draft("d", "L", "in1"),
        ai_send("a", "L", "d", 9.9995),
    ]);
    let row = h.row("in1");
    assert_eq!(row.ai_response_ms, Some(-1));
    assert_eq!(row.ai_actual_delay_seconds, Some(-1));
}

#[test]
fn delay_attribution_uses_the_latest_job_by_created_at_then_id() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        outbound("o", "L", 1.0),
        draft("d", "L", "in1"),
        job("j2", "L", "in1", "d", 5.0),
        job("j1", "L", "in1", "d", 5.0),
        job("j0", "L", "in1", "d", 4.0),
    ]);
    let row = h.row("in1");
    assert_eq!(row.ai_background_job_id.as_deref(), Some("j2"));
    assert_eq!(row.ai_scheduled_run_at, Some(t(305.0)));
    assert_eq!(row.ai_delay_min_seconds, Some(180));
    assert_eq!(row.ai_delay_max_seconds, Some(420));
    assert_eq!(
        row.ai_chosen_delay_seconds,
        Some(replytime::engine::delay::chosen_delay("in1", 180, 420))
    );
}

#[test]
fn delay_bounds_are_recorded_at_job_insert_and_never_change() {
    let mut h = Harness::new();
    h.txn(vec![
        Change::Insert(campaign("c1", 200, 300)),
        Change::Insert(lead_in("L", "C", "c1")),
        inbound("in1", "L", 0.0),
        outbound("o", "L", 1.0),
        draft("d", "L", "in1"),
        job("j", "L", "in1", "d", 2.0),
    ]);
    assert_eq!(h.row("in1").ai_delay_min_seconds, Some(200));
    h.txn(vec![update(campaign("c1", 10, 20))]);
    h.txn(vec![
        Change::Insert(campaign("c2", 30, 40)),
        update(lead_in("L", "C", "c2")),
    ]);
    let mut j = job_row("j", "L", "in1", "d", 2.0);
    j.started_at = Some(t(302.0));
    h.txn(vec![update(Row::Job(j))]);
    let row = h.row("in1");
    assert_eq!(
        (row.ai_delay_min_seconds, row.ai_delay_max_seconds),
        (Some(200), Some(300))
    );
    assert_eq!(row.ai_job_started_at, Some(t(302.0)));
}

#[test]
fn delay_bounds_default_when_lead_or_campaign_unknown() {
    let mut h = Harness::new();
    h.txn(vec![
        Change::Insert(lead_in("L", "C", "missing")),
        inbound("in1", "L", 0.0),
        outbound("o", "L", 1.0),
        draft("d", "L", "in1"),
        job("j", "L", "in1", "d", 2.0),
    ]);
    assert_eq!(h.row("in1").ai_delay_min_seconds, Some(180));
    assert_eq!(h.row("in1").ai_delay_max_seconds, Some(420));
}

#[test]
fn truncate_of_jobs_nulls_the_delay_fields() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        draft("d", "L", "in1"),
        ai_send("a", "L", "d", 300.0),
        job("j", "L", "in1", "d", 2.0),
    ]);
    assert!(h.row("in1").ai_background_job_id.is_some());
    h.txn(vec![Change::Truncate(vec![Table::BackgroundJob])]);
    let row = h.row("in1");
    assert_eq!(row.ai_background_job_id, None);
    assert_eq!(row.ai_chosen_delay_seconds, None);
    assert_eq!(row.ai_delay_min_seconds, None);
    assert_eq!(
        row.ai_actual_delay_seconds,
        Some(300),
        "actual delay needs no job"
    );
}

#[test]
fn client_id_comes_from_the_lead_and_follows_it() {
    let mut h = Harness::new();
    conversation(&mut h);
    assert_eq!(h.row("in1").client_id, "C");
    h.txn(vec![update(Row::Lead(LeadRow {
        id: "L".into(),
        client_id: Some("C2".into()),
        email_campaign_id: None,
    }))]);
    assert_eq!(h.row("in1").client_id, "C2");
}

#[test]
fn a_lead_moving_client_relabels_its_anchors_without_deriving_them() {
    let mut h = Harness::new();
    conversation(&mut h);
    h.txn(vec![
        inbound("in2", "L", 100.0),
        setter("out2", "L", "u1", 130.0),
    ]);
    let before = h.engine.take_stats();
    assert!(before.derived >= 2, "new anchors are derived");
    h.txn(vec![update(Row::Lead(LeadRow {
        id: "L".into(),
        client_id: Some("C2".into()),
        email_campaign_id: None,
    }))]);
    let stats = h.engine.take_stats();
    assert_eq!((stats.derived, stats.relabelled), (0, 2));
    assert_eq!(h.row("in2").client_id, "C2");
}

#[test]
fn anchor_of_unknown_lead_is_held_until_the_lead_arrives() {
    let mut h = Harness::new();
    h.txn(vec![inbound("in1", "L", 0.0), outbound("o", "L", 1.0)]);
    assert!(h.sink.is_empty());
    assert_eq!(h.store.held_anchors().unwrap(), 1);
    h.txn(vec![lead("L", "C")]);
    assert_eq!(h.row("in1").client_id, "C");
    assert_eq!(h.store.held_anchors().unwrap(), 0);
    h.txn(vec![delete(Table::Lead, "L")]);
    assert!(h.sink.is_empty(), "a deleted lead holds its anchors again");
    assert_eq!(h.store.held_anchors().unwrap(), 1);
    assert_eq!(h.store.held_by_reason().unwrap(), (1, 0));
}

#[test]
fn held_anchors_are_counted_by_reason() {
    let mut h = Harness::new();
    let held = |h: &Harness| h.store.held_by_reason().unwrap();
    h.txn(vec![inbound("in1", "L", 0.0), outbound("o", "L", 1.0)]);
    assert_eq!(held(&h), (1, 0), "no lead row");
    let no_client = || {
        Change::Insert(Row::Lead(LeadRow {
            id: "L".into(),
            client_id: None,
            email_campaign_id: None,
        }))
    };
    h.txn(vec![no_client()]);
    assert!(h.sink.is_empty());
    assert_eq!(held(&h), (0, 1), "the lead arrived without a client");
    h.txn(vec![inbound("in2", "L", 2.0), outbound("o2", "L", 3.0)]);
    assert_eq!(held(&h), (0, 2));
    h.txn(vec![delete(Table::Lead, "L")]);
    assert_eq!(held(&h), (2, 0), "the lead went");
    h.txn(vec![no_client()]);
    h.txn(vec![delete(Table::Message, "o2")]);
    assert_eq!(held(&h), (0, 1), "in2 is no anchor any more");
    h.txn(vec![lead("L", "C")]);
    assert_eq!(held(&h), (0, 0));
    assert_eq!(h.store.held_anchors().unwrap(), 0);
    assert_eq!(h.row("in1").client_id, "C");
    // The lead loses its client (an update of "clientId" alone), then gets one.
    h.txn(vec![no_client()]);
    assert!(h.sink.is_empty());
    assert_eq!(held(&h), (0, 1));
    h.txn(vec![lead("L", "C2")]);
    assert_eq!(held(&h), (0, 0));
    assert_eq!(h.row("in1").client_id, "C2");
}

#[test]
fn rows_that_stop_being_anchors_are_deleted() {
    let mut h = Harness::new();
    conversation(&mut h);
    h.txn(vec![inbound("in0", "L", 50.0)]);
    assert!(
        !h.sink.contains_key("in1"),
        "in1's successor is now inbound"
    );
    assert_eq!(
        h.row("in0").setter_response_message_id.as_deref(),
        Some("out1")
    );
    h.txn(vec![delete(Table::Message, "out1")]);
    assert!(h.sink.is_empty());
}

#[test]
fn fields_that_stop_holding_are_set_back_to_null() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        outbound("o", "L", 0.5),
        setter("s", "L", "u", 1.0),
        draft("d", "L", "in1"),
        ai_send("a", "L", "d", 2.0),
    ]);
    h.txn(vec![
        delete(Table::Message, "s"),
        delete(Table::Message, "a"),
    ]);
    let row = h.row("in1");
    assert_eq!(row.setter_response_message_id, None);
    assert_eq!(row.setter_response_ms, None);
    assert_eq!(row.ai_response_message_id, None);
    assert_eq!(row.ai_actual_delay_seconds, None);
    assert_eq!(row.ai_draft_id.as_deref(), Some("d"));
}

#[test]
fn back_dated_inbound_splits_a_window() {
    let mut h = Harness::new();
    h.txn(vec![
        lead("L", "C"),
        inbound("in1", "L", 0.0),
        outbound("o", "L", 1.0),
        setter("s", "L", "u", 10.0),
    ]);
    assert_eq!(
        h.row("in1").setter_response_message_id.as_deref(),
        Some("s")
    );
    h.txn(vec![inbound("late", "L", 5.0)]);
    assert_eq!(h.row("in1").setter_response_message_id, None);
    assert_eq!(
        h.row("late").setter_response_message_id.as_deref(),
        Some("s")
    );
}

#[test]
fn update_moves_a_message_between_threads_and_flips_direction() {
    let mut h = Harness::new();
    conversation(&mut h);
    let mut moved = setter_msg("out1", "L", "u1", 90.5);
    moved.channel = Some("email".into());
    h.txn(vec![update(Row::Message(moved))]);
    assert!(h.sink.is_empty());
    let mut flipped = message("in1", "L", "outbound", 0.0);
    flipped.channel = Some("email".into());
    let mut back = setter_msg("out1", "L", "u1", 90.5);
    back.direction = Some("inbound".into());
    back.channel = Some("email".into());
    h.txn(vec![update(Row::Message(back)), inbound("x", "L", 100.0)]);
    assert!(h.sink.is_empty());
    h.txn(vec![outbound("y", "L", 101.0)]);
    assert!(h.sink.contains_key("x"));
}

#[test]
fn unchanged_toast_columns_keep_the_stored_value() {
    let mut h = Harness::new();
    conversation(&mut h);
    let mut m = MessageRow {
        sent_at: None,
        ..setter_msg("out1", "L", "u1", 0.0)
    };
    m.sent_by_user_id = Some("u9".into());
    h.txn(vec![Change::Update {
        row: Row::Message(m),
        old_id: None,
        unchanged: vec!["sentAt".into()],
    }]);
    let row = h.row("in1");
    assert_eq!(row.setter_response_sent_at, Some(t(90.5)));
    assert_eq!(row.setter_sent_by_user_id.as_deref(), Some("u9"));
}

#[test]
fn drafts_and_jobs_may_arrive_before_their_messages() {
    let mut h = Harness::new();
    h.txn(vec![
        draft("d", "L", "in1"),
        job("j", "L", "in1", "d", 2.0),
        ai_send("a", "L", "d", 200.0),
    ]);
    h.txn(vec![lead("L", "C"), inbound("in1", "L", 0.0)]);
    let row = h.row("in1");
    assert_eq!(row.ai_response_message_id.as_deref(), Some("a"));
    assert_eq!(row.ai_background_job_id.as_deref(), Some("j"));
}

#[test]
fn reapplying_a_suffix_changes_nothing() {
    let mut h = Harness::new();
    let txns = [
        vec![
            Change::Insert(campaign("c", 200, 260)),
            Change::Insert(lead_in("L", "C", "c")),
        ],
        vec![
            inbound("in1", "L", 0.0),
            draft("d", "L", "in1"),
            job("j", "L", "in1", "d", 1.0),
        ],
        vec![ai_send("a", "L", "d", 250.0), update(campaign("c", 1, 2))],
        vec![delete(Table::BackgroundJob, "j")],
        vec![job("j", "L", "in1", "d", 3.0)],
    ];
    let metas: Vec<_> = txns.iter().map(|c| h.txn(c.clone())).collect();
    let before = h.sink.clone();
    assert_eq!(
        before["in1"].ai_delay_min_seconds,
        Some(1),
        "re-inserted job sees the new campaign"
    );
    for start in 0..txns.len() {
        for (meta, changes) in metas[start..].iter().zip(&txns[start..]) {
            h.apply_whole(meta, changes).unwrap();
        }
        h.drain_outbox();
        assert_eq!(h.sink, before, "suffix from {start}");
    }
}

#[test]
fn large_transactions_apply_in_chunks_with_bounded_memory() {
    let small = EngineOptions {
        log_events: true,
        dirty_spill: 3,
        refresh_batch: 2,
        chunk_changes: 7,
        ..EngineOptions::default()
    };
    let mut chunked = Harness::with_options(small);
    let mut whole = Harness::new();
    let mut changes = vec![lead("L", "C")];
    for i in 0..20 {
        changes.push(inbound(&format!("in{i:02}"), "L", f64::from(i) * 10.0));
        changes.push(outbound(
            &format!("o{i:02}"),
            "L",
            f64::from(i) * 10.0 + 1.0,
        ));
    }
    whole.txn(changes.clone());
    let meta = chunked.next_meta();
    let outcome = chunked.apply_whole(&meta, &changes).unwrap();
    assert!(outcome.outbox.len() > 5, "refreshed in bounded batches");
    chunked.drain_outbox();
    assert_eq!(chunked.sink.len(), 20);
    assert_eq!(chunked.sink, whole.sink);
}

#[test]
fn deriving_every_anchor_stops_between_batches_when_interrupted() {
    let stop = replytime::pipeline::shutdown::CancellationToken::new();
    let mut h = Harness::with_options(EngineOptions {
        refresh_batch: 2,
        bulk: true,
        interrupt: stop.clone(),
        ..EngineOptions::default()
    });
    let mut changes = vec![lead("L", "C")];
    for i in 0..6 {
        let at = f64::from(i) * 100.0;
        changes.push(inbound(&format!("in{i}"), "L", at));
        changes.push(setter(&format!("out{i}"), "L", "u1", at + 10.0));
    }
    h.txn(changes);
    assert!(
        h.sink.is_empty(),
        "a bulk load derives nothing until derive_all"
    );

    let meta = h.next_meta();
    let mut batches = 0;
    let stopped = h.engine.derive_all(&meta, &mut |_| {
        batches += 1;
        stop.cancel();
    });
    assert!(
        matches!(stopped, Err(EngineError::Interrupted)),
        "{stopped:?}"
    );
    assert_eq!(batches, 1, "it stops at the batch after the flag went up");

    // The next start: a new engine over the same state, with a new token.
    h.engine = replytime::engine::Engine::new(
        h.store.clone(),
        EngineOptions {
            refresh_batch: 2,
            bulk: true,
            ..EngineOptions::default()
        },
    );
    h.engine.derive_all(&meta, &mut |_| {}).unwrap();
    h.drain_outbox();
    assert_eq!(
        h.sink.len(),
        6,
        "a derivation started over covers every anchor"
    );
}

/// SPEC 4 and 5: a large transaction is applied in chunks, each its own RocksDB
/// commit. After a crash between two chunks the transaction is streamed again and
/// applied over its own first chunks: a delete finds nothing to delete and a move
/// finds the row already moved, so neither can tell again which anchors it
/// changed. Those anchors must be refreshed all the same.
#[test]
fn a_crash_between_chunks_of_a_large_transaction_loses_no_anchor_refresh() {
    let mut h = Harness::new();
    conversation(&mut h);
    let mut moved = setter_msg("out2", "M", "u1", 10.0);
    h.txn(vec![
        lead("M", "C"),
        inbound("in2", "M", 0.0),
        Change::Insert(Row::Message(moved.clone())),
    ]);
    assert_eq!(h.sink.len(), 2);

    // The reply of in1 is deleted, the reply of in2 moved before it.
    moved.sent_at = Some(t(-5.0));
    let first_chunk = vec![delete(Table::Message, "out1"), update(Row::Message(moved))];
    let last_chunk = vec![inbound("in3", "N", 20.0)];
    // Chunks of two changes: the first chunk is committed before the last change.
    let chunks_of_two = EngineOptions {
        chunk_changes: 2,
        ..EngineOptions::default()
    };
    h.restart(chunks_of_two.clone());
    let meta = h.next_meta();
    h.engine
        .apply(meta.commit_lsn, first_chunk.clone())
        .unwrap();
    // Crash: the engine and what it held in memory are gone.
    h.restart(chunks_of_two);

    h.engine.apply(meta.commit_lsn, first_chunk).unwrap();
    h.engine.apply(meta.commit_lsn, last_chunk).unwrap();
    h.engine.commit(&meta).unwrap();
    h.drain_outbox();
    assert!(h.sink.is_empty(), "stale rows: {:?}", h.sink.keys());
}
