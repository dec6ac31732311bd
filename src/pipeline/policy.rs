//! The error policy: what happens after an error, decided here and nowhere else
//! (Materialize's transient / definite split). Every loop that retries asks
//! [`classify`]; it reads the typed errors of every layer below the pipeline.
//!
//! ```text
//!  error ──classify()──▶ Retry       transient: reconnect with backoff from the durable
//!                                    LSN, forever, with a counter and a log line
//!                       ▶ Stop        definite: the pipeline stops with the error, no LSN
//!                                    confirmed past what is durable
//!                       ▶ Quarantine  a value replytime cannot represent: keep the row
//!                                    aside with the reason, the stream goes on
//! ```
//!
//! Transient means a retry can succeed without anyone acting: the connection broke
//! (I/O, closed), the server is starting, stopping or out of resources, a
//! transaction lost a serialization or deadlock race, the slot is busy. Everything
//! else is definite: wrong settings, missing grants, a lost or dropped slot, a
//! schema that no longer fits, malformed or out-of-order pgoutput, a client-side
//! error that is not the network's, the local state store failing. Retrying those
//! forever would hide them; stopping makes them visible (`/readyz` with the reason).
//!
//! A retry waits a [`Backoff`] delay first: it doubles from a first delay up to a
//! cap, and a shutdown ends the wait at once.

use std::error::Error;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::PipelineError;
use super::shutdown::{CancellationToken, sleep_unless_cancelled};
use crate::change::TimeError;
use crate::pgconn::PgConnError;
use crate::sink::SinkError;
use crate::source::SourceError;

/// What happens after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Retry,
    Stop,
    Quarantine,
}

/// The one classification of every error replytime meets. Unknown error types
/// stop: only what is known to be transient is retried.
pub fn classify(err: &(dyn Error + 'static)) -> Next {
    if let Some(e) = err.downcast_ref::<PipelineError>() {
        return pipeline(e);
    }
    if let Some(e) = err.downcast_ref::<SinkError>() {
        return sink(e);
    }
    if let Some(e) = err.downcast_ref::<SourceError>() {
        return source(e);
    }
    if let Some(e) = err.downcast_ref::<PgConnError>() {
        return connect(e);
    }
    if let Some(e) = err.downcast_ref::<tokio_postgres::Error>() {
        return postgres(e);
    }
    if let Some(e) = err.downcast_ref::<pgwire_replication::PgWireError>() {
        return replication(e);
    }
    if let Some(e) = err.downcast_ref::<TimeError>() {
        return match e {
            TimeError::NotFinite => Next::Quarantine,
            TimeError::Malformed => Next::Stop,
        };
    }
    if err.is::<std::io::Error>() {
        return Next::Retry;
    }
    Next::Stop
}

fn pipeline(err: &PipelineError) -> Next {
    match err {
        PipelineError::Source(e) => source(e),
        PipelineError::Sink(e) => sink(e),
        PipelineError::Connect(e) => connect(e),
        // The sink is down with work pending: the stream pauses and resumes.
        PipelineError::SinkDown(_) => Next::Retry,
        // Another writer's slot or sink rows: never retried into.
        PipelineError::Ownership(_)
        | PipelineError::Store(_)
        | PipelineError::Engine(_)
        | PipelineError::Other(_) => Next::Stop,
    }
}

fn source(err: &SourceError) -> Next {
    match err {
        SourceError::Query { source, .. } => postgres(source),
        SourceError::Replication(e) => replication(e),
        // Everything else is definite: settings, grants, the slot's state, and
        // decoding (a value replytime cannot represent was quarantined by the
        // decoder and never became an error; what is left is malformed pgoutput,
        // a schema that no longer fits, or a protocol anomaly).
        _ => Next::Stop,
    }
}

fn sink(err: &SinkError) -> Next {
    match err {
        SinkError::Connect(e) => connect(e),
        SinkError::Postgres { cause, .. } => postgres(cause),
        SinkError::SchemaVersion { .. }
        | SinkError::Schema { .. }
        | SinkError::State(_)
        | SinkError::WriterConflict { .. } => Next::Stop,
    }
}

fn connect(err: &PgConnError) -> Next {
    match err {
        PgConnError::Unreachable { .. } => Next::Retry,
        PgConnError::Rejected { code, .. } => sqlstate(code),
        _ => Next::Stop,
    }
}

/// A statement or connection error of tokio-postgres: the server's SQLSTATE when
/// there is one; else only a closed connection or an I/O error is transient
/// (type conversions, bad parameters and the like are client bugs or data).
fn postgres(err: &tokio_postgres::Error) -> Next {
    if let Some(code) = err.code() {
        return sqlstate(code.code());
    }
    let io = err
        .source()
        .is_some_and(|source| source.is::<std::io::Error>());
    if err.is_closed() || io {
        Next::Retry
    } else {
        Next::Stop
    }
}

/// The replication connection (pgwire-replication): I/O and a worker that ended
/// with its connection are transient; a server error by its SQLSTATE (the
/// library puts it in the text); protocol, internal and size errors, auth and
/// TLS are definite.
fn replication(err: &pgwire_replication::PgWireError) -> Next {
    use pgwire_replication::PgWireError as E;
    match err {
        E::Io(_) | E::Task(_) => Next::Retry,
        E::Server(text) => match sqlstate_in(text) {
            Some(code) => sqlstate(code),
            None => Next::Stop,
        },
        _ => Next::Stop,
    }
}

/// The wait before each retry: `first`, then twice the previous one, never more
/// than `cap`; [`Backoff::reset`] starts over (a new incident).
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// The replication stream's reconnection: 250 ms, 500 ms, 1 s, … up to 30 s.
    pub const STREAM: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    /// The sink task's reconnection: 200 ms, 400 ms, … up to 10 s.
    pub const SINK: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            next: first,
        }
    }

    /// The delay the next [`Backoff::wait`] sleeps.
    pub fn next_delay(&self) -> Duration {
        self.next
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next delay and doubles it (up to the cap); `false`, at once, when
    /// `shutdown` is cancelled first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (delay * 2).min(self.cap);
        sleep_unless_cancelled(shutdown, delay).await
    }
}

/// SQLSTATE classes after which the same work may well succeed: connection
/// exception, transaction rollback (serialization, deadlock), insufficient
/// resources, operator intervention (shutdown, restart, cancel).
const TRANSIENT_CLASSES: [&str; 4] = ["08", "40", "53", "57"];

/// Single SQLSTATEs that are transient too.
fn transient_codes() -> [SqlState; 3] {
    [
        SqlState::LOCK_NOT_AVAILABLE,
        // The slot is in use by another connection (a rolling update): wait for it.
        SqlState::OBJECT_IN_USE,
        // A failover left us on a standby; the name will point at the primary again.
        SqlState::READ_ONLY_SQL_TRANSACTION,
    ]
}

fn sqlstate(code: &str) -> Next {
    let transient = TRANSIENT_CLASSES
        .iter()
        .any(|class| code.starts_with(class))
        || transient_codes().iter().any(|c| c.code() == code);
    if transient { Next::Retry } else { Next::Stop }
}

/// `SQLSTATE 55000` in a server error's text.
fn sqlstate_in(text: &str) -> Option<&str> {
    let at = text.find("SQLSTATE ")? + "SQLSTATE ".len();
    let code = text.get(at..at + 5)?;
    code.bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retry_delays_double_up_to_the_cap_and_start_over_on_reset() {
        let token = CancellationToken::new();
        let mut backoff = Backoff::STREAM;
        let mut waited = Vec::new();
        for _ in 0..10 {
            let started = tokio::time::Instant::now();
            assert!(backoff.wait(&token).await);
            waited.push(started.elapsed().as_millis());
        }
        assert_eq!(
            waited,
            [
                250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000
            ]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(250));
        let mut sink = Backoff::SINK;
        let mut waited = Vec::new();
        for _ in 0..8 {
            let started = tokio::time::Instant::now();
            assert!(sink.wait(&token).await);
            waited.push(started.elapsed().as_millis());
        }
        assert_eq!(waited, [200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_during_a_retry_wait_ends_it_at_once() {
        let token = CancellationToken::new();
        let mut backoff = Backoff::STREAM;
        for _ in 0..8 {
            assert!(backoff.wait(&token).await);
        }
        assert_eq!(backoff.next_delay(), Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn({
            let token = token.clone();
            async move { backoff.wait(&token).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        token.cancel();
        assert!(!waiting.await.unwrap(), "the wait was cut short");
        assert_eq!(started.elapsed(), Duration::from_millis(5));
    }

    #[test]
    fn sqlstates_split_by_what_a_retry_can_fix() {
        for code in [
            "08006", "40001", "40P01", "53300", "57P01", "57P03", "55P03", "55006", "25006",
        ] {
            assert_eq!(sqlstate(code), Next::Retry, "{code}");
        }
        // Slot invalidated (55000), slot missing (42704), no privilege (42501),
        // undefined column (42703), invalid input (22007).
        for code in ["55000", "42704", "42501", "42703", "22007", "XX000"] {
            assert_eq!(sqlstate(code), Next::Stop, "{code}");
        }
    }

    #[test]
    fn replication_errors_by_kind_and_server_sqlstate() {
        use pgwire_replication::PgWireError as E;
        let io = E::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io), Next::Retry);
        let lost = E::Server(
            "ERROR: cannot read from logical replication slot \"s\" (SQLSTATE 55000)".into(),
        );
        assert_eq!(classify(&lost), Next::Stop);
        let shutdown = E::Server(
            "FATAL: terminating connection due to administrator command (SQLSTATE 57P01)".into(),
        );
        assert_eq!(classify(&shutdown), Next::Retry);
        for definite in [
            E::Protocol("unexpected message".into()),
            E::Internal("bug".into()),
            E::Auth("password".into()),
            E::Server("no code at all".into()),
        ] {
            assert_eq!(classify(&definite), Next::Stop, "{definite}");
        }
        let wrapped = PipelineError::Source(SourceError::Replication(lost));
        assert_eq!(classify(&wrapped), Next::Stop);
    }

    #[test]
    fn values_replytime_cannot_represent_are_quarantined() {
        assert_eq!(classify(&TimeError::NotFinite), Next::Quarantine);
        assert_eq!(classify(&TimeError::Malformed), Next::Stop);
    }

    #[test]
    fn unknown_errors_stop_and_io_errors_retry() {
        assert_eq!(classify(&std::fmt::Error), Next::Stop);
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(classify(&io), Next::Retry);
        let down = PipelineError::SinkDown(std::time::Duration::from_secs(5));
        assert_eq!(classify(&down), Next::Retry);
        let slot = PipelineError::Source(SourceError::SlotLost { slot: "s".into() });
        assert_eq!(classify(&slot), Next::Stop);
    }
}
