//! Shutdown: one [`CancellationToken`] from `main` down to the engine's long loops,
//! and one time budget for what a stop still does.
//!
//! ```text
//!  SIGTERM / SIGINT ──▶ token.cancel() ─┬─▶ start-up, initial load: dropped at its next await,
//!  (cancel_on_signal)                   │     the copy at its next page, Engine::derive_all at
//!                                       │     its next batch (`backfill`, `rebuild` too);
//!                                       │     `replay` between its batches
//!                                       ├─▶ backoff sleeps, waits for a busy slot: end at once
//!                                       └─▶ streaming: commit what is staged, let the sink
//!                                             drain the outbox, confirm what is durable, close
//!                                             the stream; then the sink task stops
//!                      ◀──────────── all of it within SHUTDOWN_BUDGET of the signal ──────────▶
//! ```
//!
//! [`SHUTDOWN_BUDGET`] bounds everything the daemon does after the signal. It is
//! below the systemd unit's `TimeoutStopSec` and the pods'
//! `terminationGracePeriodSeconds` (`tests/deploy.rs` checks both), so a stop ends
//! on its own before a supervisor kills it. Running out of budget stops early and
//! confirms less, never more: the outbox is durable in RocksDB and resumes on the
//! next start, and the slot is only told what the sink committed.

use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
pub use tokio_util::sync::CancellationToken;

/// The longest a stop takes from the signal to the end of `pipeline::run`.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(40);

/// Kept for closing the replication stream (CopyDone and its answer) after the
/// drain and the final confirmation.
pub const CLOSE_RESERVE: Duration = Duration::from_secs(2);

/// How often a drain looks at the outbox.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Cancels `shutdown` on SIGTERM or SIGINT. Commands install it before their work
/// starts: a signal during start-up or a load stops it cleanly (at its next page or
/// batch) instead of killing the process.
pub fn cancel_on_signal(shutdown: &CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// The moment a stop must be done by: [`SHUTDOWN_BUDGET`] from now.
pub fn deadline() -> Instant {
    Instant::now() + SHUTDOWN_BUDGET
}

/// Sleeps `duration` unless `token` is cancelled first: `true` when the whole
/// duration passed, `false` (at once) when cancelled.
pub async fn sleep_unless_cancelled(token: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        biased;
        () = token.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}

/// Waits until `pending()` reports nothing pending or `deadline` passes, calling
/// `nudge()` before each look (it wakes whoever drains). `Ok(true)` when drained.
pub async fn drain_until<E>(
    mut pending: impl FnMut() -> Result<u64, E>,
    mut nudge: impl FnMut(),
    deadline: Instant,
) -> Result<bool, E> {
    loop {
        if pending()? == 0 {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        nudge();
        tokio::time::sleep_until(deadline.min(now + DRAIN_POLL)).await;
    }
}

/// Waits for `task` until `deadline`, then aborts it: `None` when it had not
/// ended by then. Aborting a sink write leaves its Postgres transaction
/// uncommitted, and the outbox keeps what it held.
pub async fn join_by<T>(
    task: &mut JoinHandle<T>,
    deadline: Instant,
) -> Option<Result<T, JoinError>> {
    match tokio::time::timeout_at(deadline, &mut *task).await {
        Ok(joined) => Some(joined),
        Err(_) => {
            task.abort();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_sleep_returns_at_once() {
        let token = CancellationToken::new();
        let started = Instant::now();
        let sleeping = tokio::spawn({
            let token = token.clone();
            async move { sleep_unless_cancelled(&token, Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        token.cancel();
        assert!(!sleeping.await.unwrap(), "the sleep was cancelled");
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        // Already cancelled: no sleep at all.
        assert!(!sleep_unless_cancelled(&token, Duration::from_secs(30)).await);
        assert_eq!(started.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_uncancelled_sleep_lasts_its_duration() {
        let started = Instant::now();
        assert!(sleep_unless_cancelled(&CancellationToken::new(), Duration::from_secs(3)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_that_never_empties_stops_at_the_budget() {
        let started = Instant::now();
        let nudges = Cell::new(0u32);
        let drained = drain_until(
            || Ok::<u64, ()>(7),
            || nudges.set(nudges.get() + 1),
            deadline(),
        )
        .await
        .unwrap();
        assert!(!drained);
        assert_eq!(started.elapsed(), SHUTDOWN_BUDGET);
        assert!(nudges.get() > 1, "the sink was woken while draining");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_as_soon_as_the_outbox_is_empty() {
        let started = Instant::now();
        let left = Cell::new(3u64);
        let drained = drain_until(
            || Ok::<u64, ()>(left.get()),
            || left.set(left.get().saturating_sub(1)),
            deadline(),
        )
        .await
        .unwrap();
        assert!(drained);
        assert_eq!(started.elapsed(), DRAIN_POLL * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_still_running_at_the_deadline_is_aborted_then() {
        let started = Instant::now();
        let mut forever = tokio::spawn(std::future::pending::<()>());
        assert!(join_by(&mut forever, deadline()).await.is_none());
        assert_eq!(started.elapsed(), SHUTDOWN_BUDGET);
        assert!(forever.await.unwrap_err().is_cancelled());
        let mut quick = tokio::spawn(async { 5 });
        assert_eq!(join_by(&mut quick, deadline()).await.unwrap().unwrap(), 5);
    }
}
