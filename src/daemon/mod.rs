//! The running daemon: intake from the two durable consumers, the routing
//! core, timers, and the commit protocol (`commit`), on state rebuilt from
//! the journal at start-up (`recover`).
//!
//! One task owns the [`Engine`]. It takes whatever deliveries are ready (up to
//! a batch), puts them in the order they arrived across the two streams
//! (`arrival`), applies each at its arrival time after the timers due
//! before it, fires the timers due by now, then commits the batch.
//!
//! Invariant: an input is never handled at a time before the previous
//! input's or tick's, even when the wall clock steps back: one read after
//! a later one is handled at that one's time, and the engine is told when
//! it was sent ([`Engine::next_input_sent_at`]), which decides whether an
//! answer to an offer was late. A tick may be earlier than the last input
//! while a lagging source holds the timers (`catchup`). The engine resumes
//! at its own time as of the last commit (`recover::CLOCK_KEY`, also in
//! snapshots), not at the wall clock, so a downtime's backlog comes after
//! it, also after a crash during the restart itself. Offers made while the
//! backlog is read still run their accept timeout from the wall clock
//! ([`Engine::offers_start_no_earlier_than`]).

mod arrival;
mod catchup;
mod commit;
mod publisher;
mod recover;

pub use recover::Warm;

use crate::bus::journal::Journal;
use crate::bus::{Bus, BusError, Delivery, Publish, Source};
use crate::config::{Config, NatsConfig};
use crate::domain::wire::{self, check_size, decode_agent, decode_inbound, AgentEventBody, BadMessage, DeadLetterMsg};
use crate::health::Readiness;
use crate::routing::spec::RouterSpec;
use crate::routing::{Engine, OutSubject, Outcome};
use crate::store::{IdSet, Outbox};
use crate::telemetry as m;
use chrono::{DateTime, Utc};
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

/// How often held-back timers are looked at while catching up.
const CATCH_UP_POLL: Duration = Duration::from_millis(250);
/// After NATS comes back, how long offer expiries are not counted as missed
/// offers (desktops' clients reconnect and resubscribe with back-off).
const OUTAGE_GRACE: Duration = Duration::from_secs(30);

/// A batch waiting for its commit.
#[derive(Default)]
struct Pending {
    deliveries: Vec<Delivery>,
    /// Digests of the ids of the inputs applied.
    ids: Vec<u64>,
    dead_letters: Vec<Publish>,
}

pub struct Daemon {
    cfg: Arc<Config>,
    bus: Bus,
    journal: Journal,
    engine: Engine,
    /// Processed input ids (digests), as of the journal's tip.
    ids: IdSet,
    /// Outbound messages durable in the journal, not yet acknowledged.
    outbox: Outbox,
    /// The `published_through` last written to the journal.
    journaled_published: u64,
    /// The outbox number through which messages went to the publisher.
    handed_through: u64,
    /// Largest journal entry or snapshot chunk (below the server's limit).
    part_limit: usize,
    /// Journal bytes appended since the last snapshot started.
    since_snapshot: u64,
    snapshot: Option<commit::SnapshotJob>,
    evicted_reported: u64,
    last_prune: DateTime<Utc>,
    /// The latest time the engine was given, by an input or a tick: the
    /// next input is handled no earlier (see [`Daemon::arrival`]).
    last_arrival: DateTime<Utc>,
    ready: Arc<Readiness>,
    /// Whether this router has state from an earlier run.
    ran_before: bool,
    /// Holds timers back while inputs from the downtime are read.
    catch_up: catchup::CatchUp,
    clock: crate::clock::Clock,
}

fn subject_of(prefix: &str, s: &OutSubject) -> String {
    match s {
        OutSubject::Desktop(a) => format!("{prefix}.offer.{a}"),
        OutSubject::ContactEvent(w) => format!("{prefix}.event.contact.{w}"),
        OutSubject::SlaAlert(k) => format!("{prefix}.alert.sla.{k}"),
    }
}

impl Daemon {
    /// Rebuilds the state from the journal and builds the engine.
    /// `warm`: the state a standby kept up to date, if it did.
    pub async fn start(
        cfg: Arc<Config>,
        spec: Arc<RouterSpec>,
        bus: Bus,
        ready: Arc<Readiness>,
        clock: crate::clock::Clock,
        warm: Option<Warm>,
    ) -> Result<Daemon, DaemonError> {
        let queues: Vec<String> = spec.queue_order.iter().map(|q| q.to_string()).collect();
        m::register_series(&cfg.nats.subject_prefix, &queues);
        let t = Instant::now();
        let mut journal = bus.journal().await?;
        let retention_ms = (cfg.routing.dedupe_retention_secs * 1000.0) as i64;
        let r = recover::recover(&bus, &journal, retention_ms, cfg.routing.dedupe_max_ids, warm).await?;
        journal.set_tip(r.durable.tip);
        let now = clock.now();
        let (nc, na) = (r.contacts.len(), r.agents.len());
        let ran_before = r.durable.tip > 0 || r.imported > 0;
        let mut ids = r.durable.ids;
        ids.expire(now.timestamp_millis());
        let stopped = recover::stopped_at(r.clock, r.durable.last_batch_ms, r.durable.last_commit_ms)
            .unwrap_or(recover::Stopped { at: now, timers: now });
        // The engine resumes where it stopped, not at the wall clock: the
        // downtime's inputs are handled at their arrival times, after it,
        // and the engine's time never goes back (an agent offered at the
        // restart would otherwise look less idle than one offered by the
        // backlog). Its offers still get their whole timeout from now.
        let resumed = stopped.at.min(now);
        // Timers resume where they had run to, which after a crash during
        // a catch-up is behind the inputs read.
        let since = stopped.timers.min(resumed);
        let mut engine = Engine::restore_with_queues(spec, r.contacts, r.agents, r.queues, resumed);
        engine.prefault();
        engine.restore_customers(r.customers);
        engine.offers_start_no_earlier_than(now);
        // Offers outstanding before the restart are in the outbox if their
        // publish may not have happened; everything else is routed afresh.
        engine.route_waiting(resumed);
        for (q, n) in engine.waiting_per_queue() {
            metrics::gauge!(m::CONTACTS_WAITING, "queue" => q.to_string()).set(n as f64);
        }
        tracing::info!(
            contacts = nc,
            agents = na,
            remembered_ids = ids.len(),
            unpublished = r.durable.outbox.len(),
            snapshot = r.snapshot.map_or(0, |m| m.covers),
            replayed_entries = r.replayed,
            imported_records = r.imported,
            warm = r.warm,
            load_ms = t.elapsed().as_millis() as u64,
            "Routing state loaded."
        );
        let part_limit = bus.max_payload().saturating_sub(8 << 10).max(64 << 10);
        let mut backlog = [
            (Source::Inbound, catchup::Backlog::default()),
            (Source::Agent, catchup::Backlog::default()),
        ];
        for (source, b) in &mut backlog {
            if let Some((pending, unacked)) = bus.backlog(&cfg.nats, *source).await? {
                *b = catchup::Backlog { pending, unacked };
            }
        }
        let catch_up = catchup::CatchUp::new(
            backlog,
            since,
            Duration::from_secs_f64(cfg.nats.ack_wait_secs),
            Instant::now(),
        );
        if catch_up.active() {
            tracing::info!(stopped_at = %since, inbound = ?backlog[0].1, agent = ?backlog[1].1, "Input arrived while stopped: timers wait for it.");
        }
        let needs_snapshot = r.snapshot.is_none();
        let mut d = Daemon {
            cfg,
            bus,
            journal,
            engine,
            ids,
            journaled_published: r.durable.outbox.published_through(),
            handed_through: r.durable.outbox.published_through(),
            outbox: r.durable.outbox,
            part_limit,
            since_snapshot: 0,
            snapshot: None,
            evicted_reported: 0,
            last_prune: now,
            // Inputs redelivered after a restart happen no earlier than the
            // state they come after.
            last_arrival: resumed,
            ready,
            ran_before,
            catch_up,
            clock,
        };
        if needs_snapshot {
            // The id key (and any imported records) must be durable before
            // the first digest is journaled under it.
            d.snapshot_now(&CancellationToken::new()).await?;
        }
        Ok(d)
    }

    /// Runs until intake closes (after `intake` is cancelled and the
    /// consumers have stopped), then commits what is left.
    pub async fn run_loop(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        queries: crate::query::Queries,
        hard_stop: CancellationToken,
    ) -> Result<(), DaemonError> {
        // Held while this loop routes: the operator API's questions come
        // here. A previous session's loop being torn down may still hold it
        // for a moment; routing never waits on it for long.
        let mut queries = match tokio::time::timeout(Duration::from_secs(5), queries.lock_owned()).await {
            Ok(g) => Some(g),
            Err(_) => {
                tracing::warn!("The operator API stays unanswered in this session: its channel is still held.");
                None
            }
        };
        let mut publisher = publisher::Publisher::start(
            self.bus.clone(),
            Arc::clone(&self.ready),
            hard_stop.clone(),
            self.outbox.published_through(),
        );
        // The restore itself may have produced work (replayed offers, roster
        // changes, contacts dispatched to agents now free).
        self.commit(Pending::default(), &mut publisher, &hard_stop).await?;
        self.ready.set_state_loaded(true);
        let batch = self.cfg.nats.batch_size;
        let mut buf = Vec::with_capacity(batch);
        let mut connection = self.ready.nats_connection();
        let clock = self.clock.clone();
        loop {
            let sleep_for = if self.catch_up.active() {
                // Due timers are held back: look again soon, not at once.
                CATCH_UP_POLL
            } else {
                self.engine
                    .next_deadline()
                    .map(|t| (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                    // A held (test) clock does not reach a deadline by
                    // waiting: wait for it to move instead of spinning.
                    .map(|gap| {
                        if gap.is_zero() || !self.clock.is_manual() {
                            gap
                        } else {
                            HEARTBEAT
                        }
                    })
                    .unwrap_or(HEARTBEAT)
                    .min(HEARTBEAT)
            };
            self.ready.beat();
            tokio::select! {
                biased;
                n = rx.recv_many(&mut buf, batch) => {
                    if n == 0 {
                        break;
                    }
                    self.excuse_outage(&mut connection);
                    let now = self.clock.now();
                    let pending = self.apply_batch(&mut buf, now);
                    // Then the rest that fell due by now.
                    self.tick(now);
                    self.commit(pending, &mut publisher, &hard_stop).await?;
                }
                _ = tokio::time::sleep(sleep_for) => {
                    self.excuse_outage(&mut connection);
                    self.tick(self.clock.now());
                    self.commit(Pending::default(), &mut publisher, &hard_stop).await?;
                }
                // A test's manual clock moved: its timers are due now, not
                // after a real sleep (never with the system clock).
                _ = clock.moved() => {
                    self.tick(self.clock.now());
                    self.commit(Pending::default(), &mut publisher, &hard_stop).await?;
                }
                Some(q) = async {
                    match queries.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let answer = self.engine.explain(&q.contact_id, q.agent.as_deref(), q.limit, self.clock.now());
                    let _ = q.reply.send(answer); // the caller may have given up
                }
            }
        }
        self.tick(self.clock.now());
        self.commit(Pending::default(), &mut publisher, &hard_stop).await?;
        // Everything handed over is published and its inputs acked before
        // the process may stop.
        let through = publisher.drain().await?;
        self.outbox.mark_published(through);
        // Say so in the journal, or the next start publishes the tail
        // again: JetStream drops the copies, but core subscribers (the
        // desktops) would see them twice.
        self.journal_published(&hard_stop).await;
        Ok(())
    }

    /// NATS is back after a drop (looked at before every tick, so no timer
    /// fires first): answers sent meanwhile could not arrive, and the
    /// desktops' own clients may take a while to come back, so expiries in
    /// the next `OUTAGE_GRACE` are not the agents' doing.
    fn excuse_outage(&mut self, connection: &mut tokio::sync::watch::Receiver<bool>) {
        let back = connection.has_changed().unwrap_or(false) && *connection.borrow_and_update();
        if !back {
            return;
        }
        let until = self.clock.now() + chrono::Duration::from_std(OUTAGE_GRACE).unwrap_or_default();
        self.engine.excuse_missed_offers_until(until);
        tracing::info!(%until, "NATS is back: offers expiring until then do not count as missed.");
    }

    /// The router's clocks to journal with an entry written at `commit_ms`
    /// (see `recover::CLOCK_KEY`).
    fn clock_record(&self, commit_ms: i64) -> (String, Vec<u8>) {
        recover::RouterClock {
            at_ms: self.last_arrival.timestamp_millis(),
            timers_ms: self
                .catch_up
                .timers_ran()
                .map(|t| t.min(self.last_arrival).timestamp_millis()),
            commit_ms,
        }
        .record()
    }

    /// Applies a batch's deliveries in the order they arrived across the
    /// two streams (`arrival`), each at its arrival time after the timers
    /// due before it. An accept sent after its offer's deadline finds the
    /// offer expired, as the contract has it, however long it waited to be
    /// read; one sent before it wins, even read after it, if it is in this
    /// batch (or the expiry is held back): a batch's end fires the timers
    /// due by then.
    fn apply_batch(&mut self, batch: &mut Vec<Delivery>, now: DateTime<Utc>) -> Pending {
        let mut pending = Pending::default();
        arrival::by_arrival(batch, |d| (catchup::source_ix(d.source), d.published));
        // When each was sent, on the router's clock (`None` on a manual
        // clock, unrelated to stream time: now, where catch-up compares it
        // with the stop). Each source's next one in the batch bounds what
        // it can still deliver (`CatchUp::ahead`).
        let mut upcoming: [std::collections::VecDeque<Option<DateTime<Utc>>>; 2] = Default::default();
        for d in batch.iter() {
            upcoming[catchup::source_ix(d.source)].push_back(self.clock.of_system(d.published));
        }
        for d in batch.drain(..) {
            let sent = upcoming[catchup::source_ix(d.source)].pop_front().flatten();
            let at_hand = Instant::now();
            self.catch_up
                .saw(d.source, sent.unwrap_or(now), d.pending, d.redelivered, at_hand);
            for (source, next) in catchup::SOURCES.into_iter().zip(&upcoming) {
                if let Some(next) = next.front() {
                    self.catch_up.ahead(source, next.unwrap_or(now), at_hand);
                }
            }
            let at = self.arrival(sent, now);
            // Timers run up to the input's own arrival, not to the time it
            // is handled at (later, when it is read after a later input of
            // the other stream): an accept whose stream's backlog was the
            // last to be read after a downtime still comes before the
            // expiry that fell due after it was sent.
            self.tick(sent.map_or(at, |s| s.min(now)));
            self.engine.next_input_sent_at(sent);
            self.process(d, at, now, &mut pending);
        }
        pending
    }

    /// When an input is handled: its stream time (`sent`, when JetStream
    /// stored it) on the router's clock, never before the time the engine
    /// was last given (an input's or a tick's: the engine's time only
    /// moves forward), and not after `now` unless the wall clock stepped
    /// back. On a manual clock, which has no relation to stream times
    /// (`sent` is `None`), `now`.
    fn arrival(&mut self, sent: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
        let at = sent.map_or(now, |t| t.min(now)).max(self.last_arrival);
        self.last_arrival = at;
        at
    }

    /// Fires due timers. The heartbeat calls it too: it costs the timers
    /// due, and the core offers nothing on it unless a timer changed something.
    fn tick(&mut self, wall: DateTime<Utc>) {
        let now = self.catch_up.timer_clock(wall, Instant::now());
        // An input read after this tick is not handled before it.
        self.last_arrival = self.last_arrival.max(now);
        // Offers of this tick, and of the input after it, get their whole
        // timeout from the wall clock, even when their time is held back.
        self.engine.offers_start_no_earlier_than(self.clock.now());
        self.prune_ids(now);
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

    /// Applies one delivery at `now` (its arrival); `wall`, the clock as
    /// the batch began, dates what the router remembers of it (its id's
    /// retention runs from when it was handled).
    fn process(&mut self, d: Delivery, now: DateTime<Utc>, wall: DateTime<Utc>, pending: &mut Pending) {
        let kind_label = match d.source {
            Source::Inbound => "inbound",
            Source::Agent => "agent",
        };
        let result = self.decide(&d, now);
        match result {
            Ok(Some((digest, label_a, label_b))) => {
                match d.source {
                    Source::Inbound => {
                        metrics::counter!(m::INBOUND_EVENTS, "channel" => label_a, "outcome" => label_b).increment(1)
                    }
                    Source::Agent => {
                        metrics::counter!(m::AGENT_EVENTS, "type" => label_a, "outcome" => label_b).increment(1)
                    }
                }
                self.ids.insert(digest, wall.timestamp_millis());
                pending.ids.push(digest);
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

    /// Decodes and applies one delivery. `Ok(Some(id digest, labels))` when
    /// it was applied, `Ok(None)` for a duplicate, `Err` for a bad message.
    fn decide(
        &mut self,
        d: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<Option<(u64, &'static str, &'static str)>, BadMessage> {
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
                let key = self.ids.digest(b'i', &ev.id);
                if self.ids.contains(key) {
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
                let key = self.ids.digest(b'a', &ev.id);
                let ty = ev.body.type_name();
                if self.ids.contains(key) {
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

    /// Forgets ids past their retention, once a minute.
    fn prune_ids(&mut self, now: DateTime<Utc>) {
        if now - self.last_prune > chrono::Duration::seconds(60) {
            self.ids.expire(now.timestamp_millis());
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

/// A standby's reader: brings the durable state up to the journal's tip
/// every `every` until `stop`, and returns it then, so a takeover reads
/// only what was written since (none when the journal could not be read:
/// the takeover then reads afresh). A read under way when `stop` comes is
/// finished, not thrown away.
pub async fn keep_warm(bus: Bus, cfg: Arc<Config>, every: Duration, stop: CancellationToken) -> Option<Warm> {
    let journal = match bus.journal().await {
        Ok(j) => j,
        Err(e) => {
            tracing::debug!(error = %e, "Standing by without warm state: the journal cannot be opened.");
            return None;
        }
    };
    let retention_ms = (cfg.routing.dedupe_retention_secs * 1000.0) as i64;
    let mut warm = None;
    loop {
        if stop.is_cancelled() {
            return warm;
        }
        match recover::catch_up(&journal, retention_ms, cfg.routing.dedupe_max_ids, warm.take()).await {
            Ok((w, _)) => {
                metrics::gauge!(m::STANDBY_JOURNAL_SEQUENCE).set(w.durable.tip as f64);
                warm = Some(w);
            }
            Err(e) => {
                metrics::gauge!(m::STANDBY_JOURNAL_SEQUENCE).set(0.0);
                tracing::debug!(error = %e, "Standby could not read the journal; reading afresh next time.");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return warm,
        }
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
    ready: &Readiness,
) {
    for source in [Source::Inbound, Source::Agent] {
        let (bus, cfg, tx, token) = (bus.clone(), cfg.clone(), tx.clone(), intake.clone());
        let connection = ready.nats_connection();
        tasks.spawn(async move {
            let name = format!("{source:?} consumer");
            (
                name,
                bus.consume(&cfg, source, tx, token, resume_window, connection).await,
            )
        });
    }
}
