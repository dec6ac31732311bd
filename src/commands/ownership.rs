//! Operator commands around ownership: what `teardown` dropped and kept, and
//! `release-writer`, which removes a stale sink registration explicitly.

use crate::config::Settings;
use crate::sink::{Sink, registry};
use crate::source::admin::Teardown;

/// Prints what `teardown` did.
pub(crate) fn print_teardown(settings: &Settings, done: &Teardown) {
    if done.slot_dropped {
        println!("dropped slot {:?}", settings.slot);
    } else if let Some(kept) = &done.slot_kept {
        println!(
            "kept slot {:?} ({kept}): it is not replytime's; its owner drops it",
            settings.slot
        );
    } else {
        println!("slot {:?} did not exist", settings.slot);
    }
    if done.publication_dropped {
        println!("dropped publication {:?}", settings.publication);
    } else if done.publication_kept {
        println!(
            "kept publication {:?}: replytime did not create it (an admin did, e.g. with deploy/postgres/grants.sql); `replytime backfill` and `run` use it again",
            settings.publication
        );
    } else {
        println!("publication {:?} did not exist", settings.publication);
    }
}

/// Removes the sink registration of `state_id`; returns the writer removed.
pub(crate) async fn release_writer(settings: &Settings, state_id: &str) -> anyhow::Result<String> {
    let sink = Sink::for_settings(settings).await?;
    sink.migrate().await?;
    let all = registry::writers(sink.client()).await?;
    let Some(writer) = all.iter().find(|w| w.state_id == state_id) else {
        let known: Vec<String> = all.iter().map(registry::Writer::describe).collect();
        anyhow::bail!(
            "no writer with state id {state_id:?} is registered in the sink; registered: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join("; ")
            }
        );
    };
    registry::release(sink.client(), state_id).await?;
    Ok(writer.describe())
}

/// `teardown`: drops the slot and the publication (if replytime created it), only
/// with `--yes`.
pub(crate) async fn teardown(
    settings: &Settings,
    yes: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if !yes {
        anyhow::bail!(
            "teardown drops slot {:?} and publication {:?} (if replytime created it): pass --yes",
            settings.slot,
            settings.publication
        );
    }
    let client = crate::pgconn::connect(settings.source_url(), "replytime-teardown").await?;
    let done =
        crate::source::admin::teardown(&client, &settings.slot, &settings.publication).await?;
    print_teardown(settings, &done);
    Ok(std::process::ExitCode::SUCCESS)
}
