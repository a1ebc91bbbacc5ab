//! The commit protocol. A batch (the inputs taken in one turn, the timers
//! that fired, and everything they decided) becomes durable as one journal
//! entry, then visible, then acknowledged:
//!
//! 1. **Journal.** State records changed, outbound messages decided (the
//!    outbox: offers, follow-ups, notices, lifecycle events, alerts, dead
//!    letters), the digests of the input ids processed, how far earlier
//!    outbox messages are published, and the router's time (where a restart
//!    resumes, `recover::CLOCK_KEY`): one fenced append (several parts,
//!    applied only together, if it exceeds a NATS message). Nothing of the
//!    batch exists before this append succeeds; all of it exists after.
//! 2. **Publish** every outbox message not yet acknowledged, in order, each
//!    under its stable `Nats-Msg-Id`. A crash here re-publishes them from
//!    the journal at start-up; JetStream drops the copies.
//! 3. **Ack** the inputs. A crash before this redelivers them; their ids are
//!    in the journal, so they are recognised and acked without effect.
//!
//! Steps 2 and 3 run in the publisher task (`publisher`), in commit order,
//! while the routing loop decides and journals the next batches: the
//! journal append is the only wait a batch imposes on the next one, and
//! the batches waiting for the publisher are published together.
//!
//! A transient error retries its step (nothing is acked meanwhile). A
//! fenced append means another router is active: this one stops writing.
//! Permanent errors stop the router with the fix in the message.
//!
//! Snapshots: once enough journal has accumulated, the state is encoded
//! between two batches and written by a task while routing goes on; its
//! marker is then appended (fenced) and older entries purged.

use super::publisher::{Flight, Publisher};
use super::{subject_of, Daemon, DaemonError, Pending};
use crate::bus::{BusError, Publish};
use crate::health::Readiness;
use crate::routing::{OutSubject, Outbound};
use crate::store::{self, Batch, Marker};
use crate::telemetry as m;
use bytes::Bytes;
use chrono::Utc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Journal bytes after which a new snapshot is taken: start-up reads at
/// most about this much journal beyond the snapshot.
pub const SNAPSHOT_EVERY_BYTES: u64 = 64 << 20;

/// A snapshot being written by a task.
pub(super) struct SnapshotJob {
    covers: u64,
    chunks: u32,
    started: Instant,
    task: JoinHandle<Result<u64, BusError>>,
}

pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff(Duration::from_millis(50))
    }
}

/// Waits out a transient error (or returns the error to stop on); feeds
/// the watchdog meanwhile, since waiting for NATS is not being stuck.
pub(super) async fn retry_after(
    ready: &Readiness,
    e: BusError,
    step: &'static str,
    b: &mut Backoff,
    hard_stop: &CancellationToken,
) -> Result<(), BusError> {
    if !e.is_transient() {
        return Err(e);
    }
    metrics::counter!(m::COMMIT_RETRIES).increment(1);
    ready.beat();
    tracing::warn!(error = %e, step, retry_in_ms = b.0.as_millis() as u64, "Commit step failed; retrying (inputs stay un-acked).");
    tokio::select! {
        _ = tokio::time::sleep(b.0) => {}
        _ = hard_stop.cancelled() => return Err(e),
    }
    b.0 = (b.0 * 2).min(Duration::from_secs(2));
    Ok(())
}

impl Daemon {
    /// Appends (fenced) and counts the bytes; `plain` is their size before
    /// compression, which spaces the snapshots (a replay decodes that much).
    async fn append(
        &mut self,
        parts: &[Vec<u8>],
        plain: usize,
        hard_stop: &CancellationToken,
    ) -> Result<(), DaemonError> {
        let mut b = Backoff::new();
        loop {
            match self.journal.append(parts).await {
                Ok(_) => break,
                Err(e) => retry_after(&self.ready, e, "journal append", &mut b, hard_stop).await?,
            }
        }
        let bytes: usize = parts.iter().map(Vec::len).sum();
        metrics::counter!(m::JOURNAL_BYTES).increment(bytes as u64);
        self.since_snapshot += plain.max(bytes) as u64;
        Ok(())
    }

    /// At a clean stop, once the publisher has drained: journals how far
    /// the outbox is published (a crash skips this, and the start after it
    /// publishes the tail again under the same ids) and the router's clocks
    /// as it stops, so the next start resumes there rather than at its
    /// last busy moment. A failure here loses nothing, so it is logged,
    /// not returned.
    pub(super) async fn journal_published(&mut self, hard_stop: &CancellationToken) {
        let through = self.outbox.published_through();
        let at_ms = self.clock.now().timestamp_millis();
        let (key, value) = self.clock_record(at_ms);
        let batch = Batch {
            at_ms,
            changes: vec![(key, Some(Bytes::from(value)))],
            outbox: Vec::new(),
            published_through: through,
            ids: Default::default(),
        };
        let parts = store::encode_batch(&batch, self.part_limit);
        if through > self.journaled_published {
            match self.append(&parts, batch.plain_len(), hard_stop).await {
                Ok(()) => self.journaled_published = through,
                Err(e) => {
                    tracing::warn!(error = %e, "Could not journal the published mark at stop; the next start publishes the tail again.")
                }
            }
            return;
        }
        // Only the time: one try, none while NATS is away, so that a stop
        // during an outage is not held up for it (the next start then
        // resumes at the last entry's time).
        if !self.ready.nats_connected() {
            return;
        }
        if let Err(e) = self.journal.append(&parts).await {
            tracing::info!(error = %e, "Could not journal the time of the stop; the next start resumes at the last entry's time.");
        }
    }

    /// Makes the batch durable, visible, then acked (see the module doc).
    pub(super) async fn commit(
        &mut self,
        pending: Pending,
        publisher: &mut Publisher,
        hard_stop: &CancellationToken,
    ) -> Result<(), DaemonError> {
        let started = Instant::now();
        let mut outputs = self.engine.take_outputs();
        let changes = self.engine.take_changes();
        let prefix = self.cfg.nats.subject_prefix.clone();
        let mut batch = Batch {
            at_ms: self.clock.now().timestamp_millis(),
            changes: changes.into_iter().map(|c| (c.key, c.value.map(Bytes::from))).collect(),
            outbox: Vec::with_capacity(outputs.len() + pending.dead_letters.len()),
            published_through: self.outbox.published_through(),
            ids: pending.ids,
        };
        for o in &mut outputs {
            let payload = Bytes::from(std::mem::take(&mut o.payload));
            let msg = self
                .outbox
                .number(subject_of(&prefix, &o.subject), o.msg_id.clone(), payload);
            batch.outbox.push(msg);
        }
        for d in pending.dead_letters {
            batch.outbox.push(self.outbox.number(d.subject, d.msg_id, d.payload));
        }
        if !batch.is_empty() || batch.published_through > self.journaled_published {
            // The router's clocks as of this entry, where a restart resumes
            // (see `recover::CLOCK_KEY`): in every entry, so that the last
            // one's tells a later start the record is current.
            let (key, value) = self.clock_record(batch.at_ms);
            batch.changes.push((key, Some(Bytes::from(value))));
            let parts = store::encode_batch(&batch, self.part_limit);
            self.append(&parts, batch.plain_len(), hard_stop).await?;
            if !batch.outbox.is_empty() {
                crate::failpoint::hit("after_journal");
            }
            self.journaled_published = batch.published_through;
            for o in batch.outbox {
                self.outbox.restore(o);
            }
        }
        // Hand what is durable and not yet handed over to the publisher,
        // which publishes it and then acks the inputs while the next batch
        // is decided (see `publisher`).
        let msgs: Vec<Publish> = self
            .outbox
            .pending_after(self.handed_through)
            .map(|o| Publish {
                subject: o.subject.clone(),
                msg_id: o.msg_id.clone(),
                payload: o.payload.clone(),
            })
            .collect();
        let through = self
            .outbox
            .pending_after(self.handed_through)
            .next_back()
            .map_or(0, |o| o.seq);
        let decided = !pending.deliveries.is_empty() || !outputs.is_empty();
        if !msgs.is_empty() || !pending.deliveries.is_empty() {
            self.handed_through = self.handed_through.max(through);
            let flight = Flight {
                msgs,
                through,
                deliveries: pending.deliveries,
            };
            // Never stuck here: the publisher gives up on `hard_stop` too.
            publisher.send(flight).await?;
        }
        publisher.check().await?;
        self.outbox.mark_published(publisher.published_through());
        if decided {
            metrics::histogram!(m::BATCH_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        }
        self.record_outputs(&outputs);
        self.update_gauges();
        self.snapshot_step(hard_stop).await
    }

    /// Starts a snapshot when due; announces and purges one that finished.
    async fn snapshot_step(&mut self, hard_stop: &CancellationToken) -> Result<(), DaemonError> {
        if let Some(job) = self.snapshot.take_if(|j| j.task.is_finished()) {
            let written = job.task.await;
            self.finish_snapshot(job.covers, job.chunks, job.started, written, hard_stop)
                .await?;
        }
        if self.snapshot.is_none() && self.since_snapshot >= SNAPSHOT_EVERY_BYTES {
            self.start_snapshot();
        }
        Ok(())
    }

    /// Announces a written snapshot in the journal (fenced) and purges what
    /// it supersedes.
    async fn finish_snapshot(
        &mut self,
        covers: u64,
        chunks: u32,
        started: Instant,
        written: Result<Result<u64, BusError>, tokio::task::JoinError>,
        hard_stop: &CancellationToken,
    ) -> Result<(), DaemonError> {
        match written {
            Ok(Ok(first_chunk)) => {
                let marker = Marker {
                    covers,
                    first_chunk,
                    chunks,
                };
                self.append(&[store::encode_marker(&marker)], 0, hard_stop).await?;
                metrics::counter!(m::SNAPSHOTS, "outcome" => "written").increment(1);
                metrics::histogram!(m::SNAPSHOT_SECONDS).record(started.elapsed().as_secs_f64());
                tracing::info!(
                    covers,
                    chunks,
                    ms = started.elapsed().as_millis() as u64,
                    "State snapshot written."
                );
                let s = self.journal.stream().clone();
                tokio::spawn(async move {
                    if let Err(e) = s.purge(marker.covers, marker.first_chunk).await {
                        tracing::warn!(error = %e, "Could not purge journal entries older than the snapshot; the next snapshot retries.");
                    }
                });
                Ok(())
            }
            Ok(Err(e)) => {
                metrics::counter!(m::SNAPSHOTS, "outcome" => "failed").increment(1);
                tracing::warn!(error = %e, "Writing a state snapshot failed; the next one retries.");
                self.since_snapshot = SNAPSHOT_EVERY_BYTES / 2;
                Ok(())
            }
            Err(e) => Err(DaemonError::TaskDied(format!("snapshot writer: {e}"))),
        }
    }

    /// Encodes the state as of the journal's tip and hands the chunks to a
    /// writer task. Called only between batches, when the engine, outbox
    /// and ids are exactly what the journal up to its tip says.
    pub(super) fn start_snapshot(&mut self) {
        let started = Instant::now();
        let covers = self.journal.tip();
        let records = self.engine.records().chain(std::iter::once(self.clock_record(0)));
        let chunks = store::snapshot_chunks(records, &self.outbox, &self.ids, covers, self.part_limit);
        let n = chunks.len() as u32;
        tracing::debug!(
            covers,
            chunks = n,
            encode_ms = started.elapsed().as_millis() as u64,
            "Writing a state snapshot."
        );
        let s = self.journal.stream().clone();
        self.since_snapshot = 0;
        self.snapshot = Some(SnapshotJob {
            covers,
            chunks: n,
            started,
            task: tokio::spawn(async move { s.write_chunks(chunks).await }),
        });
    }

    /// Writes a snapshot and its marker before routing starts (a first start
    /// or an import), so the id key and imported records are durable.
    pub(super) async fn snapshot_now(&mut self, hard_stop: &CancellationToken) -> Result<(), DaemonError> {
        self.start_snapshot();
        let Some(job) = self.snapshot.take() else { return Ok(()) };
        let written = tokio::select! {
            w = job.task => w,
            _ = hard_stop.cancelled() => return Ok(()),
        };
        self.finish_snapshot(job.covers, job.chunks, job.started, written, hard_stop)
            .await
    }

    fn record_outputs(&self, outputs: &[Outbound]) {
        for o in outputs {
            match o.subject {
                OutSubject::SlaAlert(kind) => {
                    let queue = o.queue.as_ref().map(|q| q.to_string()).unwrap_or_default();
                    tracing::info!(kind, queue = %queue, alert_id = %o.msg_id, "SLA alert raised.");
                    record_alert(kind, queue, &o.payload, self.clock.now());
                }
                OutSubject::ContactEvent(what) => {
                    metrics::counter!(m::CONTACT_EVENTS, "kind" => what).increment(1);
                    let outcome = match what {
                        "offered" => "offered",
                        "accepted" => "accepted",
                        "declined" => "declined",
                        "offer_expired" => "expired",
                        _ => continue,
                    };
                    let queue = o.queue.as_ref().map(|q| q.to_string()).unwrap_or_default();
                    metrics::counter!(m::OFFERS, "queue" => queue, "outcome" => outcome).increment(1);
                }
                OutSubject::Desktop(_) => {}
            }
        }
    }

    /// Gauges of what changed: queues whose waiting count moved, and the
    /// counts the engine keeps as it goes (no scan of agents or queues).
    fn update_gauges(&mut self) {
        for g in self.engine.take_waiting_changes() {
            let q = g.queue.to_string();
            metrics::gauge!(m::CONTACTS_WAITING, "queue" => q.clone()).set(g.waiting as f64);
            metrics::gauge!(m::CONTACTS_AT_RISK, "queue" => q.clone()).set(g.at_risk as f64);
            if let Some(w) = g.estimated_wait_secs {
                metrics::gauge!(m::QUEUE_ESTIMATED_WAIT, "queue" => q).set(w);
            }
        }
        metrics::gauge!(m::CONTACTS_OPEN).set(self.engine.contacts_len() as f64);
        metrics::gauge!(m::TIMERS_SCHEDULED).set(self.engine.timers_len() as f64);
        for (s, n) in self.engine.agents_by_status() {
            metrics::gauge!(m::AGENTS, "status" => s.as_str()).set(n as f64);
        }
        metrics::gauge!(m::OUTBOX_PENDING).set(self.outbox.len() as f64);
        metrics::gauge!(m::DEDUPE_IDS).set(self.ids.len() as f64);
        let evicted = self.ids.evicted;
        if evicted > self.evicted_reported {
            metrics::counter!(m::DEDUPE_EVICTED).increment(evicted - self.evicted_reported);
            self.evicted_reported = evicted;
        }
    }
}

/// The SLA metrics of one raised alert: by kind, clock and queue; breaches
/// by queue and channel; and its lateness, now (the outputs are committed)
/// minus when it fell due (`at` − `elapsed_secs` + `threshold` ×
/// `target_secs`, read back from the alert as published).
fn record_alert(kind: &'static str, queue: String, payload: &[u8], now: chrono::DateTime<Utc>) {
    let a: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let clock = match a["clock"].as_str() {
        Some("first_response") => "first_response",
        Some("next_response") => "next_response",
        Some("queue_wait") => "queue_wait",
        Some("resolution") => "resolution",
        _ => "other",
    };
    if kind == "breach" {
        let channel = a["channel"].as_str().unwrap_or("").to_string();
        metrics::counter!(m::SLA_BREACHES, "queue" => queue.clone(), "channel" => channel).increment(1);
    }
    metrics::counter!(m::SLA_ALERTS, "queue" => queue, "kind" => kind, "clock" => clock).increment(1);
    let Some(due) = a["due_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return;
    };
    let late = (now - due.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
    metrics::histogram!(m::SLA_LATENESS).record(late.max(0.0));
}
