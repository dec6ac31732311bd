//! Applying changes: key handling, unchanged TOAST columns, and the job delay record.

use crate::change::{CampaignRow, Change, DraftRow, JobRow, LeadRow, MessageRow, Row, Table};

use super::{Inconsistency, SourceTables};

fn lead(id: &str, campaign: Option<&str>) -> Row {
    Row::Lead(LeadRow {
        id: id.to_string(),
        client_id: Some("C1".to_string()),
        email_campaign_id: campaign.map(str::to_string),
    })
}

fn campaign(id: &str, min: Option<i32>, max: Option<i32>) -> Row {
    Row::Campaign(CampaignRow {
        id: id.to_string(),
        delay_min_seconds: min,
        delay_max_seconds: max,
        response_mode: None,
    })
}

fn job_row(id: &str, lead_id: &str) -> JobRow {
    JobRow {
        id: id.to_string(),
        job_type: Some("AI_AUTO_SEND_DELAYED".to_string()),
        lead_id: Some(lead_id.to_string()),
        message_id: Some("i1".to_string()),
        draft_id: Some("d1".to_string()),
        run_at: None,
        started_at: None,
        finished_at: None,
        created_at: None,
    }
}

fn draft(id: &str, trigger: &str) -> Row {
    Row::Draft(DraftRow {
        id: id.to_string(),
        lead_id: None,
        trigger_message_id: Some(trigger.to_string()),
        channel: Some("sms".to_string()),
        response_disposition: None,
    })
}

fn insert(tables: &mut SourceTables, row: Row) {
    tables.try_apply(&Change::Insert(row)).unwrap();
}

fn with_campaign_lead() -> SourceTables {
    let mut t = SourceTables::default();
    insert(&mut t, campaign("c1", Some(60), Some(90)));
    insert(&mut t, lead("L1", Some("c1")));
    t
}

#[test]
fn job_insert_records_campaign_delay() {
    let mut t = with_campaign_lead();
    insert(&mut t, Row::Job(job_row("j1", "L1")));
    assert_eq!(t.job_delays["j1"], (60, 90));
}

#[test]
fn job_delay_defaults_when_lead_or_campaign_unknown() {
    let mut t = SourceTables::default();
    insert(&mut t, Row::Job(job_row("j1", "nobody")));
    insert(&mut t, lead("L2", Some("missing")));
    insert(&mut t, Row::Job(job_row("j2", "L2")));
    insert(&mut t, lead("L3", None));
    insert(&mut t, Row::Job(job_row("j3", "L3")));
    for id in ["j1", "j2", "j3"] {
        assert_eq!(t.job_delays[id], (180, 420), "{id}");
    }
}

#[test]
fn job_delay_null_bound_uses_default() {
    let mut t = SourceTables::default();
    insert(&mut t, campaign("c1", None, Some(90)));
    insert(&mut t, campaign("c2", Some(500), None));
    insert(&mut t, lead("L1", Some("c1")));
    insert(&mut t, lead("L2", Some("c2")));
    insert(&mut t, Row::Job(job_row("j1", "L1")));
    insert(&mut t, Row::Job(job_row("j2", "L2")));
    assert_eq!(t.job_delays["j1"], (180, 90));
    assert_eq!(t.job_delays["j2"], (500, 420));
}

#[test]
fn job_delay_survives_campaign_lead_and_job_updates() {
    let mut t = with_campaign_lead();
    insert(&mut t, Row::Job(job_row("j1", "L1")));
    t.try_apply(&Change::update(campaign("c1", Some(1), Some(2))))
        .unwrap();
    t.try_apply(&Change::update(lead("L1", None))).unwrap();
    let mut moved = job_row("j1", "L9");
    moved.run_at = moved.created_at;
    t.try_apply(&Change::update(Row::Job(moved))).unwrap();
    assert_eq!(t.job_delays["j1"], (60, 90));
}

#[test]
fn job_rename_records_anew() {
    let mut t = with_campaign_lead();
    insert(&mut t, Row::Job(job_row("j1", "L1")));
    t.try_apply(&Change::update(campaign("c1", Some(1), Some(2))))
        .unwrap();
    t.try_apply(&Change::Update {
        row: Row::Job(job_row("j2", "L1")),
        old_id: Some("j1".to_string()),
        unchanged: vec![],
    })
    .unwrap();
    assert!(!t.job_delays.contains_key("j1"));
    assert_eq!(t.job_delays["j2"], (1, 2));
    assert!(t.jobs.contains_key("j2") && !t.jobs.contains_key("j1"));
}

#[test]
fn job_delete_and_truncate_remove_record() {
    let mut t = with_campaign_lead();
    insert(&mut t, Row::Job(job_row("j1", "L1")));
    insert(&mut t, Row::Job(job_row("j2", "L1")));
    t.try_apply(&Change::Delete {
        table: Table::BackgroundJob,
        id: "j1".to_string(),
    })
    .unwrap();
    assert_eq!(t.job_delays.keys().collect::<Vec<_>>(), ["j2"]);
    t.try_apply(&Change::Truncate(vec![
        Table::EmailCampaign,
        Table::BackgroundJob,
    ]))
    .unwrap();
    assert!(t.job_delays.is_empty() && t.jobs.is_empty() && t.campaigns.is_empty());
    assert_eq!(t.leads.len(), 1);
}

#[test]
fn update_keeps_unchanged_columns() {
    let mut t = SourceTables::default();
    let original = MessageRow {
        id: "m1".to_string(),
        lead_id: Some("L1".to_string()),
        channel: Some("sms".to_string()),
        direction: Some("inbound".to_string()),
        sent_by: Some("setter".to_string()),
        sent_by_user_id: Some("u1".to_string()),
        ai_draft_id: Some("d1".to_string()),
        sent_at: None,
    };
    insert(&mut t, Row::Message(original.clone()));
    let blank = MessageRow {
        channel: Some("email".to_string()),
        sent_by: None,
        sent_by_user_id: None,
        ai_draft_id: None,
        ..original.clone()
    };
    t.try_apply(&Change::Update {
        row: Row::Message(blank),
        old_id: None,
        unchanged: vec!["sentBy".to_string(), "aiDraftId".to_string()],
    })
    .unwrap();
    let stored = &t.messages["m1"];
    assert_eq!(stored.channel.as_deref(), Some("email"));
    assert_eq!(stored.sent_by.as_deref(), Some("setter"));
    assert_eq!(stored.sent_by_user_id, None);
    assert_eq!(stored.ai_draft_id.as_deref(), Some("d1"));
}

#[test]
fn update_with_old_id_renames_row() {
    let mut t = SourceTables::default();
    insert(&mut t, lead("L1", None));
    t.try_apply(&Change::Update {
        row: lead("L2", Some("c1")),
        old_id: Some("L1".to_string()),
        unchanged: vec!["emailCampaignId".to_string()],
    })
    .unwrap();
    assert_eq!(t.leads.keys().collect::<Vec<_>>(), ["L2"]);
    assert_eq!(t.leads["L2"].email_campaign_id, None);
}

#[test]
fn try_apply_rejects_impossible_changes() {
    let mut t = with_campaign_lead();
    let before = t.clone();
    let err = t.try_apply(&Change::Insert(lead("L1", None))).unwrap_err();
    assert!(matches!(err, Inconsistency::InsertExisting { .. }));
    let err = t.try_apply(&Change::update(lead("L9", None))).unwrap_err();
    assert!(matches!(err, Inconsistency::UpdateMissing { .. }));
    let rename = Change::Update {
        row: campaign("c1", None, None),
        old_id: Some("c0".to_string()),
        unchanged: vec![],
    };
    assert!(matches!(
        t.try_apply(&rename),
        Err(Inconsistency::UpdateMissing { .. })
    ));
    insert(&mut t, lead("L2", None));
    let onto = Change::Update {
        row: lead("L2", None),
        old_id: Some("L1".to_string()),
        unchanged: vec![],
    };
    assert!(matches!(
        t.try_apply(&onto),
        Err(Inconsistency::RenameOntoExisting { .. })
    ));
    let delete = Change::Delete {
        table: Table::Message,
        id: "m1".to_string(),
    };
    assert!(matches!(
        t.try_apply(&delete),
        Err(Inconsistency::DeleteMissing { .. })
    ));
    t.apply(&Change::Delete {
        table: Table::Lead,
        id: "L2".to_string(),
    });
    assert_eq!(t, before);
}

#[test]
fn try_apply_enforces_unique_draft_trigger_and_channel() {
    let mut t = SourceTables::default();
    insert(&mut t, draft("d1", "i1"));
    insert(&mut t, draft("d2", "i2"));
    let dup = t.try_apply(&Change::Insert(draft("d3", "i1")));
    assert!(matches!(
        dup,
        Err(Inconsistency::DuplicateDraftTrigger { .. })
    ));
    let dup = t.try_apply(&Change::update(draft("d2", "i1")));
    assert!(matches!(
        dup,
        Err(Inconsistency::DuplicateDraftTrigger { .. })
    ));
    // Updating a draft in place, or renaming it, does not clash with itself.
    t.try_apply(&Change::update(draft("d1", "i1"))).unwrap();
    t.try_apply(&Change::Update {
        row: draft("d0", "i1"),
        old_id: Some("d1".to_string()),
        unchanged: vec![],
    })
    .unwrap();
    // An unchanged trigger column keeps the stored value for the check too.
    let toast = Change::Update {
        row: draft("d2", "zzz"),
        old_id: None,
        unchanged: vec!["triggerMessageId".to_string()],
    };
    t.try_apply(&toast).unwrap();
    assert_eq!(t.drafts["d2"].trigger_message_id.as_deref(), Some("i2"));
}
