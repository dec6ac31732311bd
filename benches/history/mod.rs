//! The generator backlog the throughput benches drain: the same seed, lead pool
//! and settings in `cargo bench --bench e2e` (written into Postgres, drained by
//! the daemon) and `cargo bench --bench backlog` (applied to the engine alone),
//! so their figures describe the same history.

use replytime::workload::{Generator, HistoryConfig, Locality};

/// Seed of every backlog: each size (and each repeat of it) is the same history
/// cut at its own length.
pub const SEED: u64 = 2024;

/// The generator's leads (`REPLYTIME_BENCH_LEADS`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LeadPool {
    Arriving,
    Scaled,
    Fixed,
}

impl LeadPool {
    /// The pool named by `REPLYTIME_BENCH_LEADS`'s value.
    pub fn parse(name: &str) -> LeadPool {
        match name {
            "arriving" => LeadPool::Arriving,
            "scaled" => LeadPool::Scaled,
            "fixed" => LeadPool::Fixed,
            other => panic!("REPLYTIME_BENCH_LEADS={other:?}: arriving, scaled or fixed"),
        }
    }

    /// The pool as the benches' reports name it, with the share of revivals of
    /// arriving leads.
    pub fn describe(self) -> String {
        match self {
            LeadPool::Arriving => format!("arriving lead pool, revivals {} %", revival() * 100.0),
            other => format!("{} lead pool", other.name()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LeadPool::Arriving => "arriving",
            LeadPool::Scaled => "scaled",
            LeadPool::Fixed => "fixed",
        }
    }
}

/// Leads in conversation at once with arriving leads: the realistic generator's
/// pool.
pub const ACTIVE_LEADS: usize = 2_000;
/// Of the picks with arriving leads, those that revive an earlier lead or row
/// (`REPLYTIME_BENCH_REVIVAL` overrides it: 0 keeps every change within the
/// leads in conversation, so the state a change touches is the same at every
/// backlog size).
pub const REVIVAL: f64 = 0.05;

/// The share of revivals: `REPLYTIME_BENCH_REVIVAL`, else [`REVIVAL`].
pub fn revival() -> f64 {
    match std::env::var("REPLYTIME_BENCH_REVIVAL") {
        Err(_) => REVIVAL,
        Ok(value) => value
            .parse()
            .ok()
            .filter(|share: &f64| (0.0..=1.0).contains(share))
            .unwrap_or_else(|| {
                panic!("REPLYTIME_BENCH_REVIVAL={value:?}: a share from 0 to 1, e.g. 0.05")
            }),
    }
}

/// Changes of backlog per lead: per arrival with arriving leads; per lead of the
/// pool when it is scaled (the realistic generator's 2,000 leads over a
/// 300,000-change backlog, so that backlog is the same WAL as with a fixed pool).
pub const CHANGES_PER_LEAD: u64 = 150;

/// The generator's settings for a backlog of `changes` row changes.
pub fn history_config(changes: u64, leads: LeadPool) -> HistoryConfig {
    let mut config = HistoryConfig::realistic();
    let arrivals = usize::try_from(changes / CHANGES_PER_LEAD).unwrap_or(usize::MAX);
    match leads {
        LeadPool::Arriving => {
            // Room for the freshness stage's traffic to bring new leads too.
            config.leads = ACTIVE_LEADS + arrivals + 1_000;
            config.locality = Some(Locality {
                active_leads: ACTIVE_LEADS,
                changes_per_lead: CHANGES_PER_LEAD as usize,
                revival: revival(),
            });
        }
        LeadPool::Scaled => config.leads = config.leads.max(arrivals),
        LeadPool::Fixed => {}
    }
    config
}

/// The generator of a backlog of `changes` row changes: its transactions, taken
/// until they hold at least `changes` changes, are the backlog.
pub fn generator(changes: u64, leads: LeadPool) -> Generator {
    Generator::new(SEED, history_config(changes, leads))
}
