//! The outbox's publisher: a task that publishes the messages of committed
//! batches and then acks those batches' inputs, while the routing loop goes
//! on deciding and journaling the next batches.
//!
//! Invariants:
//! - a flight is handed over only after its batch's journal append
//!   succeeded: its messages are durable, and a crash at any point after
//!   re-publishes them from the journal under the same `Nats-Msg-Id`s
//!   (JetStream drops the copies);
//! - flights are published in commit order on one connection, so a desktop
//!   sees an offer before its withdrawal and a contact's events in order;
//! - an input is acked only after every message of its flight, and of
//!   every flight before it, was acknowledged by JetStream;
//! - the flights waiting when a round starts are published together (one
//!   wait for JetStream's acknowledgements per round, not per batch); at
//!   most [`DEPTH`] wait, then the routing loop waits (backpressure, so a
//!   slow or unreachable server bounds what is in flight);
//! - the outbox forgets a message only once [`Publisher::published_through`]
//!   passed its number.

use super::commit::{retry_after, Backoff};
use super::DaemonError;
use crate::bus::{Bus, BusError, Delivery, Publish};
use crate::health::Readiness;
use crate::telemetry as m;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// Committed batches that may wait for the publisher.
pub const DEPTH: usize = 8;

/// One committed batch's messages and inputs.
pub(super) struct Flight {
    pub msgs: Vec<Publish>,
    /// The outbox number of its last message (0: it has none).
    pub through: u64,
    pub deliveries: Vec<Delivery>,
}

pub(super) struct Publisher {
    tx: Option<mpsc::Sender<Flight>>,
    published: watch::Receiver<u64>,
    task: AbortOnDropHandle<Result<(), BusError>>,
}

impl Publisher {
    /// Starts the task; `published_through` is the outbox's.
    pub fn start(bus: Bus, ready: Arc<Readiness>, hard_stop: CancellationToken, published_through: u64) -> Publisher {
        let (tx, rx) = mpsc::channel(DEPTH);
        let (done, published) = watch::channel(published_through);
        let task = tokio::spawn(run(bus, rx, done, ready, hard_stop));
        Publisher {
            tx: Some(tx),
            published,
            task: AbortOnDropHandle::new(task),
        }
    }

    /// Hands a committed batch over; waits while [`DEPTH`] flights wait.
    pub async fn send(&mut self, f: Flight) -> Result<(), DaemonError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(f).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.stopped().await)
        }
    }

    /// The outbox number through which every message was acknowledged.
    pub fn published_through(&self) -> u64 {
        *self.published.borrow()
    }

    /// `Err` once the task stopped on an error it cannot retry.
    pub async fn check(&mut self) -> Result<(), DaemonError> {
        if self.task.is_finished() {
            return Err(self.stopped().await);
        }
        Ok(())
    }

    /// Waits until every flight handed over is published and acked.
    pub async fn drain(mut self) -> Result<u64, DaemonError> {
        self.tx = None;
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(*self.published.borrow()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(DaemonError::TaskDied(format!("outbox publisher: {e}"))),
        }
    }

    async fn stopped(&mut self) -> DaemonError {
        self.tx = None;
        match (&mut self.task).await {
            Ok(Err(e)) => e.into(),
            Ok(Ok(())) => DaemonError::TaskDied("outbox publisher".into()),
            Err(e) => DaemonError::TaskDied(format!("outbox publisher: {e}")),
        }
    }
}

async fn run(
    bus: Bus,
    mut rx: mpsc::Receiver<Flight>,
    done: watch::Sender<u64>,
    ready: Arc<Readiness>,
    hard_stop: CancellationToken,
) -> Result<(), BusError> {
    let mut flights = Vec::with_capacity(DEPTH);
    while rx.recv_many(&mut flights, DEPTH).await > 0 {
        let started = std::time::Instant::now();
        let through = flights.iter().map(|f| f.through).max().unwrap_or(0);
        let msgs: Vec<Publish> = flights.iter_mut().flat_map(|f| f.msgs.drain(..)).collect();
        if !msgs.is_empty() {
            let mut b = Backoff::new();
            while let Err(e) = bus.publish_all(&msgs).await {
                retry_after(&ready, e, "publish", &mut b, &hard_stop).await?;
            }
            crate::failpoint::hit("after_publish");
        }
        let mut b = Backoff::new();
        'ack: loop {
            for d in flights.iter().flat_map(|f| &f.deliveries) {
                if let Err(e) = d.ack().await {
                    retry_after(&ready, e, "ack", &mut b, &hard_stop).await?;
                    continue 'ack;
                }
            }
            break;
        }
        metrics::histogram!(m::OUTBOX_PUBLISH_SECONDS).record(started.elapsed().as_secs_f64());
        if through > 0 {
            done.send_if_modified(|p| {
                let newer = through > *p;
                *p = (*p).max(through);
                newer
            });
        }
        flights.clear();
    }
    Ok(())
}
