//! The generator's contract: deterministic per seed, every history applicable to a
//! real database (checked by the oracle's `try_apply`), every edge case present, and
//! the oracle total on what it produces (a proptest with a replayable seed).

use std::collections::BTreeSet;

use proptest::prelude::any;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use super::{SourceTables, derive};

use super::workload_features::{Feature, observe};
use crate::workload::{Generator, HistoryConfig, PROPTEST_SEED_ENV, history, seed_from_env};

#[test]
fn same_seed_same_history() {
    let config = HistoryConfig {
        transactions: 300,
        ..HistoryConfig::default()
    };
    assert_eq!(history(42, &config), history(42, &config));
    assert_ne!(history(42, &config), history(43, &config));
    let realistic = HistoryConfig {
        transactions: 300,
        ..HistoryConfig::realistic()
    };
    assert_eq!(history(7, &realistic), history(7, &realistic));
}

#[test]
fn transactions_respect_max_changes() {
    let config = HistoryConfig {
        max_changes_per_txn: 3,
        transactions: 500,
        ..HistoryConfig::default()
    };
    for txn in history(5, &config) {
        assert!((1..=3).contains(&txn.len()), "{} changes", txn.len());
    }
}

/// Applies the whole history with `try_apply` and checks the generator's model
/// ends equal to the tables.
fn assert_valid(seed: u64, config: HistoryConfig) -> SourceTables {
    let mut generator = Generator::new(seed, config.clone());
    let mut tables = SourceTables::default();
    for index in 0..config.transactions {
        for change in generator.next_transaction() {
            if let Err(e) = tables.try_apply(&change) {
                panic!("seed {seed}, transaction {index}: {e}\n{change:?}");
            }
        }
    }
    let model = generator.model();
    assert_eq!(tables.leads.len(), model.leads.len());
    assert_eq!(tables.campaigns.len(), model.campaigns.len());
    assert_eq!(tables.messages.len(), model.messages.len());
    assert_eq!(tables.drafts.len(), model.drafts.len());
    assert_eq!(tables.jobs.len(), model.jobs.len());
    assert!(
        tables
            .leads
            .values()
            .all(|r| model.leads.get(&r.id) == Some(r))
    );
    assert!(
        tables
            .messages
            .values()
            .all(|r| model.messages.get(&r.id) == Some(r))
    );
    assert!(
        tables
            .drafts
            .values()
            .all(|r| model.drafts.get(&r.id) == Some(r))
    );
    assert!(
        tables
            .jobs
            .values()
            .all(|r| model.jobs.get(&r.id) == Some(r))
    );
    assert!(
        tables
            .campaigns
            .values()
            .all(|r| model.campaigns.get(&r.id) == Some(r))
    );
    tables
}

#[test]
fn generated_histories_are_valid() {
    for seed in 0..8 {
        assert_valid(seed, HistoryConfig::default());
    }
    let realistic = HistoryConfig {
        transactions: 3_000,
        ..HistoryConfig::realistic()
    };
    assert_valid(1, realistic);
}

#[test]
fn histories_with_null_message_keys_are_valid() {
    let mut config = HistoryConfig::default();
    config.odds.null_message_key = 0.2;
    assert_valid(3, config);
}

#[test]
fn default_history_has_every_edge_case() {
    let config = HistoryConfig {
        transactions: 3_000,
        ..HistoryConfig::default()
    };
    let mut tables = SourceTables::default();
    let mut seen = BTreeSet::new();
    for change in history(11, &config).iter().flatten() {
        observe(&tables, change, &mut seen);
        tables.apply(change);
    }
    let missing: Vec<_> = Feature::ALL.iter().filter(|f| !seen.contains(f)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}

#[test]
fn realistic_history_yields_full_rows() {
    let config = HistoryConfig {
        transactions: 4_000,
        ..HistoryConfig::realistic()
    };
    let rows = derive(&assert_valid(2, config));
    let count = |f: &dyn Fn(&crate::row::TimingRow) -> bool| rows.values().filter(|r| f(r)).count();
    assert!(rows.len() > 300, "{} rows", rows.len());
    assert!(count(&|r| r.setter_response_ms.is_some()) > 100);
    assert!(count(&|r| r.ai_response_ms.is_some()) > 50);
    assert!(count(&|r| r.ai_chosen_delay_seconds.is_some()) > 50);
    assert!(count(&|r| r.ai_job_finished_at.is_some()) > 20);
}

/// Replays `history(seed)`, deriving as it goes; panics (with the seed) if the
/// oracle or a row invariant fails.
fn check_history(seed: u64) {
    let config = HistoryConfig {
        transactions: 120,
        ..HistoryConfig::default()
    };
    let mut tables = SourceTables::default();
    for (index, txn) in history(seed, &config).into_iter().enumerate() {
        for change in &txn {
            tables.apply(change);
        }
        for (id, row) in derive(&tables) {
            let inbound = &tables.messages[&id];
            let context = format!("seed {seed}, transaction {index}, anchor {id:?}");
            assert_eq!(inbound.direction.as_deref(), Some("inbound"), "{context}");
            assert_eq!(inbound.sent_at, Some(row.inbound_sent_at), "{context}");
            assert_eq!(
                inbound.lead_id.as_deref(),
                Some(row.lead_id.as_str()),
                "{context}"
            );
            let setter_ok = row.setter_response_ms.is_none_or(|ms| ms >= 0);
            assert!(setter_ok, "{context}: setter before its anchor");
            let delay_fields = row.ai_delay_min_seconds.is_some();
            assert_eq!(
                delay_fields,
                row.ai_background_job_id.is_some(),
                "{context}"
            );
        }
    }
}

#[test]
fn oracle_never_panics_on_random_histories() {
    if let Some(seed) = seed_from_env() {
        eprintln!("replaying {PROPTEST_SEED_ENV}={seed}");
        return check_history(seed);
    }
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let result = TestRunner::new(config).run(&any::<u64>(), |seed| {
        check_history(seed);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}; replay one seed with {PROPTEST_SEED_ENV}=<seed>");
    }
}
