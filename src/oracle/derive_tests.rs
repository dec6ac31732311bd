//! One test per rule of SPEC section 3, named after the rule.

use crate::change::{
    CampaignRow, Change, DraftRow, JobRow, LeadRow, MessageRow, Row, Table, Timestamp,
};

use super::{SourceTables, chosen_delay, derive};

const BASE: i64 = 1_700_000_000_000_000;

fn at(micros: i64) -> Timestamp {
    Timestamp(BASE + micros)
}

fn secs(s: i64) -> Timestamp {
    at(s * 1_000_000)
}

fn message(id: &str, direction: &str, sent_at: Timestamp) -> MessageRow {
    MessageRow {
        id: id.to_string(),
        lead_id: Some("L1".to_string()),
        channel: Some("sms".to_string()),
        direction: Some(direction.to_string()),
        sent_by: None,
        sent_by_user_id: None,
        ai_draft_id: None,
        sent_at: Some(sent_at),
    }
}

fn inbound(id: &str, sent_at: Timestamp) -> MessageRow {
    message(id, "inbound", sent_at)
}

fn setter(id: &str, sent_at: Timestamp) -> MessageRow {
    MessageRow {
        sent_by: Some("setter".to_string()),
        sent_by_user_id: Some("user-1".to_string()),
        ..message(id, "outbound", sent_at)
    }
}

fn ai_send(id: &str, draft_id: &str, sent_at: Timestamp) -> MessageRow {
    MessageRow {
        sent_by: Some("ai".to_string()),
        ai_draft_id: Some(draft_id.to_string()),
        ..message(id, "outbound", sent_at)
    }
}

fn draft(id: &str, trigger: &str, channel: &str) -> DraftRow {
    DraftRow {
        id: id.to_string(),
        lead_id: Some("L1".to_string()),
        trigger_message_id: Some(trigger.to_string()),
        channel: Some(channel.to_string()),
        response_disposition: None,
    }
}

fn job(id: &str, message_id: &str, draft_id: &str, created_at: Option<Timestamp>) -> JobRow {
    JobRow {
        id: id.to_string(),
        job_type: Some("AI_AUTO_SEND_DELAYED".to_string()),
        lead_id: Some("L1".to_string()),
        message_id: Some(message_id.to_string()),
        draft_id: Some(draft_id.to_string()),
        run_at: Some(secs(300)),
        started_at: Some(secs(301)),
        finished_at: Some(secs(302)),
        created_at,
    }
}

fn lead(id: &str, client_id: Option<&str>) -> LeadRow {
    LeadRow {
        id: id.to_string(),
        client_id: client_id.map(str::to_string),
        email_campaign_id: None,
    }
}

/// Tables with lead L1 of client C1 and the given rows inserted in order.
fn tables(rows: Vec<Row>) -> SourceTables {
    let mut tables = SourceTables::default();
    tables.apply(&Change::Insert(Row::Lead(lead("L1", Some("C1")))));
    for row in rows {
        tables.try_apply(&Change::Insert(row)).unwrap();
    }
    tables
}

fn messages(rows: Vec<MessageRow>) -> SourceTables {
    tables(rows.into_iter().map(Row::Message).collect())
}

fn anchor_ids(tables: &SourceTables) -> Vec<String> {
    derive(tables).into_keys().collect()
}

#[test]
fn thread_orders_by_sent_at_then_id_bytes() {
    // Same microsecond: byte order puts "B" < "a" < "é", so "é" is last.
    let t = messages(vec![
        inbound("a", at(5)),
        message("é", "outbound", at(5)),
        inbound("B", at(5)),
    ]);
    assert_eq!(anchor_ids(&t), ["a"]);
}

#[test]
fn null_sent_at_is_in_no_thread() {
    let mut pending = setter("o1", secs(10));
    pending.sent_at = None;
    let t = messages(vec![inbound("i1", secs(0)), pending.clone()]);
    assert!(anchor_ids(&t).is_empty());
    let mut t = t;
    pending.sent_at = Some(secs(10));
    t.try_apply(&Change::update(Row::Message(pending))).unwrap();
    assert_eq!(anchor_ids(&t), ["i1"]);
}

#[test]
fn unknown_direction_is_in_no_thread() {
    let t = messages(vec![
        inbound("i1", secs(0)),
        message("sys", "system", secs(1)),
        setter("o1", secs(2)),
    ]);
    assert_eq!(anchor_ids(&t), ["i1"]);
    assert_eq!(
        derive(&t)["i1"].setter_response_message_id.as_deref(),
        Some("o1")
    );
}

#[test]
fn null_lead_channel_or_direction_is_in_no_thread() {
    let mut no_lead = setter("o1", secs(1));
    no_lead.lead_id = None;
    let mut no_channel = setter("o2", secs(2));
    no_channel.channel = None;
    let mut no_direction = setter("o3", secs(3));
    no_direction.direction = None;
    let t = messages(vec![
        inbound("i1", secs(0)),
        no_lead,
        no_channel,
        no_direction,
    ]);
    assert!(anchor_ids(&t).is_empty());
}

#[test]
fn threads_are_per_lead_and_channel() {
    let mut other_channel = setter("o1", secs(1));
    other_channel.channel = Some("email".to_string());
    let mut other_lead = setter("o2", secs(2));
    other_lead.lead_id = Some("L2".to_string());
    let t = messages(vec![inbound("i1", secs(0)), other_channel, other_lead]);
    assert!(anchor_ids(&t).is_empty());
}

#[test]
fn inbound_streak_yields_one_anchor() {
    let t = messages(vec![
        inbound("i1", secs(0)),
        inbound("i2", secs(1)),
        inbound("i3", secs(2)),
        setter("o1", secs(3)),
    ]);
    assert_eq!(anchor_ids(&t), ["i3"]);
}

#[test]
fn inbound_without_outbound_successor_is_no_anchor() {
    let t = messages(vec![setter("o0", secs(0)), inbound("i1", secs(1))]);
    assert!(anchor_ids(&t).is_empty());
}

#[test]
fn outbound_without_setter_still_makes_an_anchor() {
    let t = messages(vec![
        inbound("i1", secs(0)),
        message("o1", "outbound", secs(1)),
    ]);
    let row = &derive(&t)["i1"];
    assert_eq!(row.setter_response_message_id, None);
    assert_eq!(row.ai_draft_id, None);
}

#[test]
fn response_window_ends_at_next_inbound() {
    let mut unattributed = setter("o1", secs(1));
    unattributed.sent_by_user_id = None;
    let t = messages(vec![
        inbound("i1", secs(0)),
        unattributed,
        inbound("i2", secs(2)),
        setter("o2", secs(3)),
    ]);
    let rows = derive(&t);
    assert_eq!(rows["i1"].setter_response_message_id, None);
    assert_eq!(rows["i2"].setter_response_message_id.as_deref(), Some("o2"));
}

#[test]
fn setter_is_first_setter_outbound_in_window() {
    let t = messages(vec![
        inbound("i1", secs(0)),
        message("o0", "outbound", secs(1)),
        setter("o2", secs(3)),
        setter("o1", secs(2)),
    ]);
    let row = &derive(&t)["i1"];
    assert_eq!(row.setter_response_message_id.as_deref(), Some("o1"));
    assert_eq!(row.setter_response_sent_at, Some(secs(2)));
    assert_eq!(row.setter_sent_by_user_id.as_deref(), Some("user-1"));
    assert_eq!(row.setter_response_ms, Some(2_000));
}

#[test]
fn setter_requires_user_id() {
    let mut no_user = setter("o1", secs(1));
    no_user.sent_by_user_id = None;
    let t = messages(vec![inbound("i1", secs(0)), no_user]);
    assert_eq!(derive(&t)["i1"].setter_response_message_id, None);
}

#[test]
fn setter_requires_sent_by_setter() {
    let mut unknown = setter("o1", secs(1));
    unknown.sent_by = Some("Setter".to_string());
    let mut ai = setter("o2", secs(2));
    ai.sent_by = Some("ai".to_string());
    let t = messages(vec![inbound("i1", secs(0)), unknown, ai]);
    assert_eq!(derive(&t)["i1"].setter_response_message_id, None);
}

#[test]
fn setter_using_ai_draft_counts_as_setter() {
    let mut edited = setter("o1", secs(1));
    edited.ai_draft_id = Some("d1".to_string());
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(edited),
        Row::Draft(draft("d1", "i1", "sms")),
    ]);
    let row = &derive(&t)["i1"];
    assert_eq!(row.setter_response_message_id.as_deref(), Some("o1"));
    assert_eq!(row.ai_response_message_id, None);
}

#[test]
fn setter_response_ms_rounds_down() {
    let t = messages(vec![inbound("i1", at(999)), setter("o1", at(2_998))]);
    assert_eq!(derive(&t)["i1"].setter_response_ms, Some(1));
}

#[test]
fn ai_draft_id_filled_without_send() {
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
        Row::Draft(draft("d0", "i1", "email")),
    ]);
    let row = &derive(&t)["i1"];
    assert_eq!(row.ai_draft_id.as_deref(), Some("d1"));
    assert_eq!(row.ai_response_message_id, None);
    assert_eq!(row.ai_actual_delay_seconds, None);
}

#[test]
fn ai_draft_smallest_id_when_several() {
    let mut t = messages(vec![inbound("i1", secs(0)), setter("o1", secs(1))]);
    // Only possible without the unique index: the oracle still picks one.
    t.apply(&Change::Insert(Row::Draft(draft("d2", "i1", "sms"))));
    t.apply(&Change::Insert(Row::Draft(draft("d1", "i1", "sms"))));
    assert_eq!(derive(&t)["i1"].ai_draft_id.as_deref(), Some("d1"));
}

#[test]
fn ai_response_earliest_by_sent_at_then_id() {
    let mut elsewhere = ai_send("a0", "d1", secs(9));
    elsewhere.lead_id = Some("L9".to_string());
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
        Row::Message(ai_send("a2", "d1", secs(5))),
        Row::Message(ai_send("a1", "d1", secs(5))),
        Row::Message(elsewhere),
    ]);
    let row = &derive(&t)["i1"];
    assert_eq!(row.ai_response_message_id.as_deref(), Some("a1"));
    assert_eq!(row.ai_response_ms, Some(5_000));
    assert_eq!(row.ai_actual_delay_seconds, Some(5));
}

#[test]
fn ai_response_requires_ai_outbound_with_sent_at() {
    let mut inbound_ai = ai_send("a1", "d1", secs(2));
    inbound_ai.direction = Some("inbound".to_string());
    let mut unsent = ai_send("a2", "d1", secs(3));
    unsent.sent_at = None;
    let mut by_setter = ai_send("a3", "d1", secs(4));
    by_setter.sent_by = Some("setter".to_string());
    inbound_ai.lead_id = Some("L2".to_string());
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
        Row::Message(inbound_ai),
        Row::Message(unsent),
        Row::Message(by_setter),
    ]);
    assert_eq!(derive(&t)["i1"].ai_response_message_id, None);
}

#[test]
fn ai_response_in_another_thread_counts() {
    let mut elsewhere = ai_send("a1", "d1", secs(7));
    elsewhere.channel = Some("email".to_string());
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
        Row::Message(elsewhere),
    ]);
    assert_eq!(
        derive(&t)["i1"].ai_response_message_id.as_deref(),
        Some("a1")
    );
}

#[test]
fn ai_response_ms_can_be_negative() {
    // Stamped 1.5 ms before its trigger: floor gives -2 ms and -1 s, not -1 and 0.
    let t = tables(vec![
        Row::Message(ai_send("a1", "d1", at(8_500))),
        Row::Message(inbound("i1", at(10_000))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
    ]);
    let row = &derive(&t)["i1"];
    assert_eq!(row.ai_response_ms, Some(-2));
    assert_eq!(row.ai_actual_delay_seconds, Some(-1));
}

#[test]
fn actual_delay_without_job_leaves_other_delay_fields_null() {
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(ai_send("a1", "d1", at(250_999_999))),
        Row::Draft(draft("d1", "i1", "sms")),
    ]);
    let row = &derive(&t)["i1"];
    assert_eq!(row.ai_actual_delay_seconds, Some(250));
    assert_eq!(row.ai_response_ms, Some(250_999));
    assert_eq!(row.ai_delay_min_seconds, None);
    assert_eq!(row.ai_delay_max_seconds, None);
    assert_eq!(row.ai_chosen_delay_seconds, None);
    assert_eq!(row.ai_scheduled_run_at, None);
    assert_eq!(row.ai_background_job_id, None);
    assert_eq!(row.ai_job_started_at, None);
    assert_eq!(row.ai_job_finished_at, None);
}

#[test]
fn job_fills_delay_attribution() {
    let t = tables(vec![
        Row::Message(inbound("msg_1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "msg_1", "sms")),
        Row::Job(job("j1", "msg_1", "d1", Some(secs(0)))),
    ]);
    let row = &derive(&t)["msg_1"];
    assert_eq!(row.ai_delay_min_seconds, Some(180));
    assert_eq!(row.ai_delay_max_seconds, Some(420));
    assert_eq!(row.ai_chosen_delay_seconds, Some(314));
    assert_eq!(row.ai_scheduled_run_at, Some(secs(300)));
    assert_eq!(row.ai_background_job_id.as_deref(), Some("j1"));
    assert_eq!(row.ai_job_started_at, Some(secs(301)));
    assert_eq!(row.ai_job_finished_at, Some(secs(302)));
    assert_eq!(row.ai_actual_delay_seconds, None);
}

#[test]
fn job_latest_by_created_at_then_id() {
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
        Row::Job(job("j9", "i1", "d1", Some(secs(1)))),
        Row::Job(job("j1", "i1", "d1", Some(secs(2)))),
        Row::Job(job("j2", "i1", "d1", Some(secs(2)))),
        Row::Job(job("j0", "i1", "d1", None)),
    ]);
    assert_eq!(derive(&t)["i1"].ai_background_job_id.as_deref(), Some("j2"));
}

#[test]
fn job_null_created_at_orders_before_any_value() {
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
        Row::Job(job("j1", "i1", "d1", Some(Timestamp(i64::MIN + 1)))),
        Row::Job(job("j2", "i1", "d1", None)),
    ]);
    assert_eq!(derive(&t)["i1"].ai_background_job_id.as_deref(), Some("j1"));
}

#[test]
fn job_requires_type_message_and_draft() {
    let mut other_type = job("j1", "i1", "d1", Some(secs(1)));
    other_type.job_type = Some("AI_AUTO_SEND".to_string());
    let t = tables(vec![
        Row::Message(inbound("i1", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "i1", "sms")),
        Row::Job(other_type),
        Row::Job(job("j2", "i1", "d2", Some(secs(1)))),
        Row::Job(job("j3", "i2", "d1", Some(secs(1)))),
    ]);
    assert_eq!(derive(&t)["i1"].ai_background_job_id, None);
}

#[test]
fn chosen_delay_uses_recorded_bounds_of_the_anchor() {
    let mut t = tables(vec![
        Row::Campaign(CampaignRow {
            id: "c1".to_string(),
            delay_min_seconds: Some(180),
            delay_max_seconds: Some(480),
            response_mode: None,
        }),
        Row::Message(inbound("msg_a6e9", secs(0))),
        Row::Message(setter("o1", secs(1))),
        Row::Draft(draft("d1", "msg_a6e9", "sms")),
    ]);
    let mut l1 = lead("L1", Some("C1"));
    l1.email_campaign_id = Some("c1".to_string());
    t.try_apply(&Change::update(Row::Lead(l1))).unwrap();
    t.try_apply(&Change::Insert(Row::Job(job("j1", "msg_a6e9", "d1", None))))
        .unwrap();
    let row = &derive(&t)["msg_a6e9"];
    assert_eq!(
        (row.ai_delay_min_seconds, row.ai_delay_max_seconds),
        (Some(180), Some(480))
    );
    assert_eq!(
        row.ai_chosen_delay_seconds,
        Some(chosen_delay("msg_a6e9", 180, 480))
    );
    assert_eq!(row.ai_chosen_delay_seconds, Some(303));
}

#[test]
fn unknown_lead_yields_no_row() {
    let mut t = messages(vec![inbound("i1", secs(0)), setter("o1", secs(1))]);
    t.try_apply(&Change::Delete {
        table: Table::Lead,
        id: "L1".to_string(),
    })
    .unwrap();
    assert!(derive(&t).is_empty());
}

#[test]
fn null_client_id_yields_no_row() {
    let mut t = messages(vec![inbound("i1", secs(0)), setter("o1", secs(1))]);
    t.try_apply(&Change::update(Row::Lead(lead("L1", None))))
        .unwrap();
    assert!(derive(&t).is_empty());
}

#[test]
fn client_id_is_the_anchor_leads() {
    let t = messages(vec![inbound("i1", secs(0)), setter("o1", secs(1))]);
    let row = &derive(&t)["i1"];
    assert_eq!(
        (
            row.client_id.as_str(),
            row.lead_id.as_str(),
            row.channel.as_str()
        ),
        ("C1", "L1", "sms")
    );
    assert_eq!(row.inbound_sent_at, secs(0));
}

#[test]
fn anchor_stops_when_thread_changes() {
    let mut t = messages(vec![inbound("i1", secs(0)), setter("o1", secs(1))]);
    let mut moved = setter("o1", secs(1));
    moved.channel = Some("email".to_string());
    t.try_apply(&Change::update(Row::Message(moved))).unwrap();
    assert!(derive(&t).is_empty());
}
