//! Hands the replication stream's events to the streaming loop in batches.
//!
//! pgwire-replication delivers one event per `recv()` from a bounded channel. When
//! the loop is the slower side (it applies every change to the state) that channel
//! stays full, and every `recv()` frees one slot and wakes the connection's reader
//! task: a cross-thread wake-up, a system call, and often a preemption of the
//! loop's own thread, once per event. That was a tenth of the loop's time under
//! load.
//!
//! The relay moves that cost off the loop's thread. A task on the runtime's workers
//! takes the events off the channel and queues them; the loop takes everything
//! queued at once, and wakes the relay only when it found the queue full: one
//! wake-up per [`RELAY_CAPACITY`] events. Written here because the handoff needs
//! exactly this hysteresis, which tokio's channels do not offer (they wake a
//! waiting sender for every freed slot).
//!
//! The relay forwards the loop's confirmations (`update_applied_lsn`) to the
//! connection and adds no state of its own: what is queued when a session ends is
//! dropped with it and read again from the durable position.

use std::sync::{Arc, Mutex};

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use super::SourceError;
use crate::lsn::Lsn;

/// Events queued before the relay waits for the loop.
pub(crate) const RELAY_CAPACITY: usize = 1024;

/// What one `recv()` of the connection returned: an event, the end of the stream
/// (`None`), or the error that ended it.
pub(crate) type Received = Result<Option<ReplicationEvent>, SourceError>;

struct Queue {
    items: Mutex<Vec<Received>>,
    /// Raised when an item is queued (the loop may be waiting for one).
    filled: Notify,
    /// Raised when the loop took a full queue (the relay waits for that).
    drained: Notify,
}

/// The loop's end of the relay.
pub(crate) struct Relay {
    queue: Arc<Queue>,
    applied: watch::Sender<Lsn>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ReplicationClient>>,
}

impl Relay {
    /// Starts relaying `client`'s events; `ack` is what the connection may report
    /// as applied until the loop confirms more.
    pub(crate) fn spawn(client: ReplicationClient, ack: Lsn) -> Relay {
        let queue = Arc::new(Queue {
            items: Mutex::new(Vec::with_capacity(RELAY_CAPACITY)),
            filled: Notify::new(),
            drained: Notify::new(),
        });
        let (applied, applied_rx) = watch::channel(ack);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(relay(client, queue.clone(), applied_rx, stop_rx));
        Relay {
            queue,
            applied,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Moves every queued event into `out` (which must be empty), waiting for one
    /// if none is queued. Cancel-safe: nothing is taken until it is returned.
    pub(crate) async fn next_batch(&self, out: &mut Vec<Received>) {
        debug_assert!(out.is_empty(), "the previous batch was not consumed");
        loop {
            {
                let mut items = self.queue.items.lock().expect("relay queue lock");
                if !items.is_empty() {
                    let was_full = items.len() >= RELAY_CAPACITY;
                    std::mem::swap(&mut *items, out);
                    drop(items);
                    if was_full {
                        self.queue.drained.notify_one();
                    }
                    return;
                }
            }
            // A permit stored by a push after the check above ends this at once.
            self.queue.filled.notified().await;
        }
    }

    /// Reports `lsn` as applied to the server (see
    /// `ReplicationClient::update_applied_lsn`).
    pub(crate) fn update_applied_lsn(&self, lsn: Lsn) {
        self.applied.send_if_modified(|current| {
            let raised = lsn > *current;
            if raised {
                *current = lsn;
            }
            raised
        });
    }

    /// Stops relaying and closes the stream cleanly (CopyDone); queued events are
    /// dropped.
    pub(crate) async fn shutdown(&mut self) -> Result<(), SourceError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(mut client) => Ok(client.shutdown().await?),
            Err(e) => Err(SourceError::Replication(
                pgwire_replication::PgWireError::Task(format!("replication relay: {e}")),
            )),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The task ends and drops the connection, which stops its worker.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The relay task: returns the connection when told to stop.
async fn relay(
    mut client: ReplicationClient,
    queue: Arc<Queue>,
    mut applied: watch::Receiver<Lsn>,
    mut stop: oneshot::Receiver<()>,
) -> ReplicationClient {
    loop {
        let received = tokio::select! {
            biased;
            _ = &mut stop => return client,
            Ok(()) = applied.changed() => {
                client.update_applied_lsn((*applied.borrow_and_update()).into());
                continue;
            }
            received = client.recv() => received.map_err(SourceError::from),
        };
        let ended = !matches!(received, Ok(Some(_)));
        let full = {
            let mut items = queue.items.lock().expect("relay queue lock");
            items.push(received);
            items.len() >= RELAY_CAPACITY
        };
        queue.filled.notify_one();
        if ended {
            // Nothing more comes from this connection; the loop ends the session.
            let _ = (&mut stop).await;
            return client;
        }
        if full {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stop => return client,
                    Ok(()) = applied.changed() => {
                        client.update_applied_lsn((*applied.borrow_and_update()).into());
                    }
                    () = queue.drained.notified() => break,
                }
            }
        }
    }
}
