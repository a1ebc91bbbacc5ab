//! The running daemon: intake from the two durable consumers, the routing
//! core, timers, and the commit protocol.
//!
//! One task owns the [`Engine`]. It takes whatever deliveries are ready (up to
//! a batch), applies them in order, then commits the batch:
//!
//! 1. SLA alerts are published first, with their stable `alert_id` as
//!    `Nats-Msg-Id`, then recorded as fired in the contact's state: a crash in
//!    between re-sends an alert JetStream deduplicates, never loses one;
//! 2. state records are written to the key-value bucket;
//! 3. processed event ids are remembered (a redelivery after this point is
//!    recognised, so no input is applied twice);
//! 4. offers, desktop notices, lifecycle events and dead letters are
//!    published (an offer is therefore never visible before it is durable,
//!    and the restart path re-publishes outstanding offers under their id);
//! 5. only then are the input messages acked.
//!
//! A transient NATS failure retries the commit (nothing is acked meanwhile);
//! intake pauses until it succeeds.

use crate::bus::{self, Bus, BusError, Delivery, Publish, Source};
use crate::config::{Config, NatsConfig};
use crate::domain::wire::{self, check_size, decode_agent, decode_inbound, AgentEventBody, BadMessage, DeadLetterMsg};
use crate::health::Readiness;
use crate::routing::spec::RouterSpec;
use crate::routing::{Agent, Contact, Engine, OutSubject, Outbound, Outcome, AGENT_KEY, CONTACT_KEY};
use crate::telemetry as m;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("a stored {what} record {key} cannot be read: {message}")]
    CorruptState {
        what: &'static str,
        key: String,
        message: String,
    },
    #[error("{0} stopped unexpectedly")]
    TaskDied(String),
    #[error("shutdown grace period of {0:?} ran out with work in flight")]
    GraceExceeded(Duration),
}

/// The routing loop turns at least this often, so its heartbeat (which feeds
/// the systemd watchdog) shows it is alive even when idle.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A batch waiting for its commit.
#[derive(Default)]
struct Pending {
    deliveries: Vec<Delivery>,
    dedupe_keys: Vec<String>,
    dead_letters: Vec<Publish>,
}

pub struct Daemon {
    cfg: Arc<Config>,
    bus: Bus,
    engine: Engine,
    seen: HashMap<String, DateTime<Utc>>,
    last_prune: DateTime<Utc>,
    ready: Arc<Readiness>,
    /// Whether this router has state from an earlier run.
    ran_before: bool,
}

fn subject_of(prefix: &str, s: &OutSubject) -> String {
    match s {
        OutSubject::Desktop(a) => format!("{prefix}.offer.{a}"),
        OutSubject::ContactEvent(w) => format!("{prefix}.event.contact.{w}"),
        OutSubject::SlaAlert(k) => format!("{prefix}.alert.sla.{k}"),
    }
}

impl Daemon {
    /// Loads persisted state and remembered ids and builds the engine.
    pub async fn start(
        cfg: Arc<Config>,
        spec: Arc<RouterSpec>,
        bus: Bus,
        ready: Arc<Readiness>,
    ) -> Result<Daemon, DaemonError> {
        let queues: Vec<String> = spec.queue_order.iter().map(|q| q.to_string()).collect();
        m::register_series(&cfg.nats.subject_prefix, &queues);
        let t = Instant::now();
        let records = bus.load_state().await?;
        let mut contacts = Vec::new();
        let mut agents = Vec::new();
        for (key, value) in records {
            if key.starts_with(CONTACT_KEY) {
                let c: Contact = serde_json::from_slice(&value).map_err(|e| DaemonError::CorruptState {
                    what: "contact",
                    key: key.clone(),
                    message: e.to_string(),
                })?;
                contacts.push(c);
            } else if key.starts_with(AGENT_KEY) {
                let a: Agent = serde_json::from_slice(&value).map_err(|e| DaemonError::CorruptState {
                    what: "agent",
                    key: key.clone(),
                    message: e.to_string(),
                })?;
                agents.push(a);
            }
        }
        let now = Utc::now();
        let retention = chrono::Duration::milliseconds((cfg.routing.dedupe_retention_secs * 1000.0) as i64);
        let seen: HashMap<String, DateTime<Utc>> = bus
            .load_dedupe()
            .await?
            .into_iter()
            .map(|k| (k, now + retention))
            .collect();
        let (nc, na, ns) = (contacts.len(), agents.len(), seen.len());
        let ran_before = nc + na + ns > 0;
        let mut engine = Engine::restore(spec, contacts, agents, now);
        // Re-publish what was outstanding before routing anything new, so no
        // offer goes out twice in the first commit.
        engine.replay_offers();
        engine.route_waiting(now);
        // Every configured queue's gauge once (zero included); from here on
        // only queues whose count changes are updated.
        for (q, n) in engine.waiting_per_queue() {
            metrics::gauge!(m::CONTACTS_WAITING, "queue" => q.to_string()).set(n as f64);
        }
        tracing::info!(
            contacts = nc,
            agents = na,
            remembered_ids = ns,
            load_ms = t.elapsed().as_millis() as u64,
            "Routing state loaded."
        );
        Ok(Daemon {
            cfg,
            bus,
            engine,
            seen,
            last_prune: now,
            ready,
            ran_before,
        })
    }

    /// Runs until intake closes (after `intake` is cancelled and the
    /// consumers have stopped), then commits what is left.
    pub async fn run_loop(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        hard_stop: CancellationToken,
    ) -> Result<(), DaemonError> {
        // The restore itself may have produced work (replayed offers, roster
        // changes, contacts dispatched to agents now free).
        self.commit(Pending::default(), &hard_stop).await?;
        self.ready.set_state_loaded(true);
        let batch = self.cfg.nats.batch_size;
        let mut buf = Vec::with_capacity(batch);
        loop {
            let sleep_for = self
                .engine
                .next_deadline()
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(HEARTBEAT)
                .min(HEARTBEAT);
            self.ready.beat();
            tokio::select! {
                biased;
                n = rx.recv_many(&mut buf, batch) => {
                    if n == 0 {
                        break;
                    }
                    let now = Utc::now();
                    let mut pending = Pending::default();
                    for d in buf.drain(..) {
                        self.process(d, now, &mut pending);
                    }
                    // Inputs first, then due timers: an accept or respond that
                    // is already in hand wins over an expiry or alert due now.
                    self.tick(now);
                    self.commit(pending, &hard_stop).await?;
                }
                _ = tokio::time::sleep(sleep_for) => {
                    self.tick(Utc::now());
                    self.commit(Pending::default(), &hard_stop).await?;
                }
            }
        }
        self.tick(Utc::now());
        self.commit(Pending::default(), &hard_stop).await?;
        Ok(())
    }

    /// Fires due timers. The heartbeat calls it too: it costs the timers
    /// due, and the core offers nothing on it unless a timer changed something.
    fn tick(&mut self, now: DateTime<Utc>) {
        let t = Instant::now();
        self.engine.on_tick(now);
        let work = self.engine.last_work();
        if work.timers_fired > 0 {
            metrics::histogram!(m::ROUTING_TICK_SECONDS).record(t.elapsed().as_secs_f64());
            metrics::histogram!(m::ROUTING_CANDIDATES).record(work.examined as f64);
        }
    }

    fn record_decision(&self, started: Instant) {
        metrics::histogram!(m::ROUTING_DECISION_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::ROUTING_CANDIDATES).record(self.engine.last_work().examined as f64);
    }

    fn process(&mut self, d: Delivery, now: DateTime<Utc>, pending: &mut Pending) {
        let kind_label = match d.source {
            Source::Inbound => "inbound",
            Source::Agent => "agent",
        };
        let result = self.decide(&d, now);
        match result {
            Ok(Some((key, label_a, label_b))) => {
                match d.source {
                    Source::Inbound => {
                        metrics::counter!(m::INBOUND_EVENTS, "channel" => label_a, "outcome" => label_b).increment(1)
                    }
                    Source::Agent => {
                        metrics::counter!(m::AGENT_EVENTS, "type" => label_a, "outcome" => label_b).increment(1)
                    }
                }
                self.seen.insert(key.clone(), now + self.retention());
                pending.dedupe_keys.push(key);
            }
            Ok(None) => {}
            Err(BadMessage(error)) => {
                let dlq = format!("{}.dlq.{kind_label}", self.cfg.nats.subject_prefix);
                tracing::warn!(subject = %d.subject, seq = d.stream_seq, error = %error, "Bad {kind_label} message dead-lettered.");
                match d.source {
                    Source::Inbound => metrics::counter!(m::INBOUND_EVENTS, "channel" => channel_label(&d.subject), "outcome" => "dead_lettered").increment(1),
                    Source::Agent => metrics::counter!(m::AGENT_EVENTS, "type" => "unknown", "outcome" => "dead_lettered").increment(1),
                }
                metrics::counter!(m::DEAD_LETTERS, "subject" => dlq.clone()).increment(1);
                let msg = DeadLetterMsg::new(&d.subject, &d.payload, &error, now);
                pending.dead_letters.push(Publish {
                    subject: dlq,
                    msg_id: format!("dlq-{kind_label}-{}", d.stream_seq),
                    payload: wire::to_json(&msg).into(),
                });
            }
        }
        pending.deliveries.push(d);
    }

    /// Where a re-created consumer should resume: the dedupe window, once
    /// the router has processed anything; the whole stream on a first start.
    pub fn resume_window(&self) -> Option<Duration> {
        self.ran_before
            .then(|| Duration::from_secs_f64(self.cfg.routing.dedupe_retention_secs))
    }

    fn retention(&self) -> chrono::Duration {
        chrono::Duration::milliseconds((self.cfg.routing.dedupe_retention_secs * 1000.0) as i64)
    }

    /// Decodes and applies one delivery. `Ok(Some(dedupe key, labels))` when
    /// it was applied, `Ok(None)` for a duplicate, `Err` for a bad message.
    fn decide(
        &mut self,
        d: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, &'static str, &'static str)>, BadMessage> {
        let cfg = &self.cfg.nats;
        check_size(d.payload.len(), cfg.max_payload_bytes)?;
        let rest = d
            .subject
            .strip_prefix(cfg.subject_prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| {
                BadMessage(format!(
                    "subject {} is outside prefix {}",
                    d.subject, cfg.subject_prefix
                ))
            })?;
        match d.source {
            Source::Inbound => {
                let channel = rest
                    .strip_prefix("inbound.")
                    .filter(|c| !c.contains('.'))
                    .ok_or_else(|| {
                        BadMessage(format!(
                            "subject {} is not {}.inbound.<channel>",
                            d.subject, cfg.subject_prefix
                        ))
                    })?;
                let ev = decode_inbound(channel, &d.payload)?;
                let key = bus::dedupe_key(Source::Inbound, &ev.id);
                if self.seen.contains_key(&key) {
                    metrics::counter!(m::INBOUND_EVENTS, "channel" => ev.channel.as_str(), "outcome" => "duplicate")
                        .increment(1);
                    return Ok(None);
                }
                let t = Instant::now();
                let outcome = self.engine.on_inbound(&ev, now);
                self.record_decision(t);
                let outcome = outcome?;
                if let Outcome::Opened { queue, contact_id } = &outcome {
                    tracing::debug!(contact_id = %contact_id, queue = %queue, channel = %ev.channel, "Contact opened.");
                }
                Ok(Some((key, ev.channel.as_str(), outcome.label())))
            }
            Source::Agent => {
                let mut parts = rest.strip_prefix("agent.").map(|r| r.split('.')).into_iter().flatten();
                let (Some(agent), Some(ty), None) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(BadMessage(format!(
                        "subject {} is not {}.agent.<agent_id>.<type>",
                        d.subject, cfg.subject_prefix
                    )));
                };
                let ev = decode_agent(agent, ty, &d.payload)?;
                let key = bus::dedupe_key(Source::Agent, &ev.id);
                let ty = ev.body.type_name();
                if self.seen.contains_key(&key) {
                    metrics::counter!(m::AGENT_EVENTS, "type" => ty, "outcome" => "duplicate").increment(1);
                    return Ok(None);
                }
                let t = Instant::now();
                let outcome = self.engine.on_agent(&ev, now);
                self.record_decision(t);
                let outcome = outcome?;
                if let (AgentEventBody::Presence(p), Outcome::Applied) = (&ev.body, &outcome) {
                    tracing::info!(agent_id = %ev.agent_id, status = p.as_str(), "Agent presence changed.");
                }
                if let Outcome::Rejected(why) = &outcome {
                    tracing::info!(agent_id = %ev.agent_id, r#type = ty, reason = %why, "Agent event did not apply.");
                }
                Ok(Some((key, ty, outcome.label())))
            }
        }
    }

    /// Makes the batch durable and visible, then acks it; retries transient
    /// failures until they pass or `hard_stop` fires.
    async fn commit(&mut self, pending: Pending, hard_stop: &CancellationToken) -> Result<(), DaemonError> {
        let started = Instant::now();
        let outputs = self.engine.take_outputs();
        let changes = self.engine.take_changes();
        if outputs.is_empty() && changes.is_empty() && pending.deliveries.is_empty() {
            return Ok(());
        }
        let prefix = self.cfg.nats.subject_prefix.clone();
        let (alerts, others): (Vec<Outbound>, Vec<Outbound>) = outputs
            .into_iter()
            .partition(|o| matches!(o.subject, OutSubject::SlaAlert(_)));
        let to_publish = |v: &[Outbound]| -> Vec<Publish> {
            v.iter()
                .map(|o| Publish {
                    subject: subject_of(&prefix, &o.subject),
                    msg_id: o.msg_id.clone(),
                    payload: o.payload.clone().into(),
                })
                .collect()
        };
        let alert_msgs = to_publish(&alerts);
        let mut other_msgs = to_publish(&others);
        other_msgs.extend(pending.dead_letters);
        let mut stage = 0;
        let mut backoff = Duration::from_millis(50);
        loop {
            let r = async {
                if stage == 0 {
                    self.bus.publish_all(&alert_msgs).await?;
                    stage = 1;
                }
                if stage == 1 {
                    self.bus.persist(&changes).await?;
                    stage = 2;
                }
                // Remembered right after the state: a crash later in the
                // commit must not let a redelivery apply the input twice.
                if stage == 2 {
                    self.bus.remember(&pending.dedupe_keys).await?;
                    stage = 3;
                }
                if stage == 3 {
                    self.bus.publish_all(&other_msgs).await?;
                    stage = 4;
                }
                if stage == 4 {
                    for d in &pending.deliveries {
                        d.ack().await?;
                    }
                    stage = 5;
                }
                Ok::<(), BusError>(())
            }
            .await;
            match r {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    metrics::counter!(m::COMMIT_RETRIES).increment(1);
                    self.ready.beat();
                    tracing::warn!(error = %e, stage, retry_in_ms = backoff.as_millis() as u64, "Commit failed; retrying (inputs stay un-acked).");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = hard_stop.cancelled() => return Err(e.into()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        metrics::histogram!(m::BATCH_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        self.record_outputs(&alerts, &others);
        self.update_gauges();
        self.prune_seen();
        Ok(())
    }

    fn record_outputs(&self, alerts: &[Outbound], others: &[Outbound]) {
        for a in alerts {
            if let OutSubject::SlaAlert(kind) = a.subject {
                let queue = a.queue.as_ref().map(|q| q.to_string()).unwrap_or_default();
                tracing::info!(kind, queue = %queue, alert_id = %a.msg_id, "SLA alert raised.");
                metrics::counter!(m::SLA_ALERTS, "queue" => queue, "kind" => kind).increment(1);
            }
        }
        for o in others {
            if let OutSubject::ContactEvent(what) = o.subject {
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
        }
    }

    /// Gauges of what changed: queues whose waiting count moved, and the
    /// counts the engine keeps as it goes (no scan of agents or queues).
    fn update_gauges(&mut self) {
        for (q, n) in self.engine.take_waiting_changes() {
            metrics::gauge!(m::CONTACTS_WAITING, "queue" => q.to_string()).set(n as f64);
        }
        metrics::gauge!(m::CONTACTS_OPEN).set(self.engine.contacts_len() as f64);
        metrics::gauge!(m::TIMERS_SCHEDULED).set(self.engine.timers_len() as f64);
        for (s, n) in self.engine.agents_by_status() {
            metrics::gauge!(m::AGENTS, "status" => s.as_str()).set(n as f64);
        }
    }

    fn prune_seen(&mut self) {
        let now = Utc::now();
        if now - self.last_prune > chrono::Duration::seconds(60) {
            self.seen.retain(|_, exp| *exp > now);
            self.last_prune = now;
        }
    }
}

fn channel_label(subject: &str) -> &'static str {
    match subject.rsplit('.').next() {
        Some("email") => "email",
        Some("chat") => "chat",
        Some("social") => "social",
        Some("voice") => "voice",
        _ => "unknown",
    }
}

/// Starts the consumers as tracked tasks feeding `tx`.
pub fn spawn_consumers(
    tasks: &mut JoinSet<(String, Result<(), BusError>)>,
    bus: &Bus,
    cfg: &NatsConfig,
    tx: mpsc::Sender<Delivery>,
    intake: &CancellationToken,
    resume_window: Option<Duration>,
) {
    for source in [Source::Inbound, Source::Agent] {
        let (bus, cfg, tx, token) = (bus.clone(), cfg.clone(), tx.clone(), intake.clone());
        tasks.spawn(async move {
            let name = format!("{source:?} consumer");
            (name, bus.consume(&cfg, source, tx, token, resume_window).await)
        });
    }
}
