//! The routing core: contacts, agents, queues and SLA clocks as plain data,
//! changed only by [`Engine`] methods of the shape `(state, input, now) ->
//! outputs`. No I/O, no clock reads, no spawning: the daemon feeds it decoded
//! events and timer ticks, then persists [`Engine::take_changes`] and
//! publishes [`Engine::take_outputs`].
//!
//! Invariants (checked by the property tests):
//! - an offer only goes to an `available` agent who has every required skill
//!   at or above its level and a free slot on the contact's channel;
//! - an agent never holds more offered + assigned + wrapping-up contacts on a
//!   channel than their capacity there (a capacity lowered at run time keeps
//!   what is already held, and offers nothing more);
//! - waiting contacts are offered highest priority first, then oldest first.

pub mod spec;

use crate::domain::wire::{
    self, AgentEvent, AgentEventBody, AlertCustomer, BadMessage, ContactEventMsg, Customer, DesktopNotice,
    InboundEvent, InboundType, OfferMsg, SlaAlertMsg, Why,
};
use crate::domain::{AgentId, Channel, Presence, QueueName, SkillLevel, SkillName};
use crate::sla;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use spec::{RouterSpec, Strategy};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Where a contact stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ContactState {
    Waiting,
    Offered {
        agent: AgentId,
        offer_id: String,
        offered_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        candidates: usize,
    },
    Assigned {
        agent: AgentId,
        offer_id: String,
        accepted_at: DateTime<Utc>,
    },
}

/// An open contact. This is also its persisted form (JSON in the state
/// bucket under `contact.<id>`); the customer's address is deliberately not
/// part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    pub conversation_id: String,
    pub channel: Channel,
    pub queue: QueueName,
    pub priority: u8,
    pub customer: Customer,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub required: BTreeMap<SkillName, SkillLevel>,
    /// SLA clocks and queue age start here.
    pub received_at: DateTime<Utc>,
    pub state: ContactState,
    pub responded_at: Option<DateTime<Utc>>,
    pub customer_ended: bool,
    pub sla_policy: Option<String>,
    /// Thresholds already alerted, in permille (1000 = breach).
    pub sla_fired: Vec<u32>,
    /// Agents who declined or let an offer expire; others are preferred.
    pub declined_by: BTreeSet<AgentId>,
    pub messages: u32,
    /// Id of the inbound event that opened the contact: its redelivery is
    /// recognised even if the dedupe record was never written.
    #[serde(default)]
    pub opened_by: String,
    /// Follow-ups that arrived before an agent took the contact, handed to
    /// the agent on accept (the most recent [`MAX_PENDING_FOLLOW_UPS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<FollowUp>,
}

/// A customer message waiting for the contact's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub event_id: String,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub at: DateTime<Utc>,
}

pub const MAX_PENDING_FOLLOW_UPS: usize = 20;

/// Budget for a contact's persisted JSON: half the server's 1 MiB default
/// max payload, whatever JSON escaping (up to 6×) does to the content. The
/// first message alone (64 KiB clipped) stays within it.
pub const MAX_CONTACT_JSON_BYTES: usize = 512 * 1024;

/// A contact id derived from the event that opens it (FNV-1a, 128 bit): a
/// redelivery after a crash re-creates the *same* contact, so anything
/// already published about it (an SLA alert of a contact that was overdue
/// on arrival, say) keeps its id and is recognised as a duplicate.
fn contact_id_for(event_id: &str) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in event_id.as_bytes() {
        h ^= *b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013b);
    }
    format!("c-{h:032x}")
}

/// Message content kept with a contact and put into offers. Bounded so an
/// offer or a state record can never outgrow the server's max payload
/// (which would make every retry of the commit fail the same way); the
/// adapter's source system keeps the full message.
pub const MAX_SUBJECT_BYTES: usize = 1024;
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Cuts content to at most `max` bytes on a character boundary, marking the cut.
pub fn clip(s: &Option<String>, max: usize) -> Option<String> {
    s.as_ref().map(|s| {
        if s.len() <= max {
            return s.clone();
        }
        let mut end = max.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    })
}

impl Contact {
    pub fn agent(&self) -> Option<&AgentId> {
        match &self.state {
            ContactState::Waiting => None,
            ContactState::Offered { agent, .. } | ContactState::Assigned { agent, .. } => Some(agent),
        }
    }

    fn wait_key(&self) -> WaitKey {
        (Reverse(self.priority), self.received_at, self.id.clone())
    }

    fn sla_running(&self) -> bool {
        self.responded_at.is_none() && !self.customer_ended
    }
}

/// A slot held after `complete` for the agent's wrap-up work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrapUp {
    pub contact_id: String,
    pub channel: Channel,
    pub until: DateTime<Utc>,
}

/// An agent. Also the persisted form (`agent.<id>`); `load` is derived from
/// the contacts and wrap-ups at restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub skills: BTreeMap<SkillName, SkillLevel>,
    /// Per channel, indexed by `Channel::index`.
    pub capacity: [u32; 4],
    pub status: Presence,
    /// Last offer or return to `available`: the `longest_idle` key.
    pub idle_since: DateTime<Utc>,
    pub missed_offers: u32,
    pub wrap_ups: Vec<WrapUp>,
    /// Set once a `profile` event changed the agent; the TOML roster then no
    /// longer overrides it at start-up.
    pub profile_from_event: bool,
    #[serde(skip)]
    pub load: [u32; 4],
}

impl Agent {
    fn free(&self, c: Channel) -> bool {
        self.load[c.index()] < self.capacity[c.index()]
    }

    pub fn fits(&self, required: &BTreeMap<SkillName, SkillLevel>) -> bool {
        required
            .iter()
            .all(|(s, lvl)| self.skills.get(s).is_some_and(|have| have >= lvl))
    }

    fn can_take(&self, c: &Contact) -> bool {
        self.status == Presence::Available && self.free(c.channel) && self.fits(&c.required)
    }

    fn total_load(&self) -> u64 {
        self.load.iter().map(|n| *n as u64).sum()
    }

    fn total_capacity(&self) -> u64 {
        self.capacity.iter().map(|n| *n as u64).sum()
    }
}

type WaitKey = (Reverse<u8>, DateTime<Utc>, String);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    OfferExpiry { contact: String, offer: String },
    WrapUpEnd { agent: AgentId, contact: String },
    Sla { contact: String },
}

/// Where an outbound message goes. The daemon adds the subject prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum OutSubject {
    /// `offer.<agent_id>`
    Desktop(AgentId),
    /// `event.contact.<what>`
    ContactEvent(&'static str),
    /// `alert.sla.<kind>`
    SlaAlert(&'static str),
}

#[derive(Debug, Clone)]
pub struct Outbound {
    pub subject: OutSubject,
    /// Used as `Nats-Msg-Id`, so a republish after a crash is deduplicated.
    pub msg_id: String,
    pub payload: Vec<u8>,
    /// Queue of the contact, for metric labels.
    pub queue: Option<QueueName>,
}

/// A state record to write (`Some`) or delete (`None`) before acking.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// What an input did, for metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Opened {
        queue: QueueName,
        contact_id: String,
    },
    Attached,
    Ended,
    Applied,
    /// A well-formed event that did not apply (an accept for an offer that
    /// expired, say); published as `contact.rejected`.
    Rejected(String),
    Ignored(&'static str),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Opened { .. } => "opened",
            Outcome::Attached => "attached",
            Outcome::Ended => "ended",
            Outcome::Applied => "applied",
            Outcome::Rejected(_) => "rejected",
            Outcome::Ignored(_) => "ignored",
        }
    }
}

pub const CONTACT_KEY: &str = "contact.";
pub const AGENT_KEY: &str = "agent.";

pub struct Engine {
    spec: Arc<RouterSpec>,
    agents: BTreeMap<AgentId, Agent>,
    contacts: HashMap<String, Contact>,
    by_conversation: HashMap<String, String>,
    waiting: BTreeSet<WaitKey>,
    waiting_per_queue: BTreeMap<QueueName, usize>,
    timers: BTreeSet<(DateTime<Utc>, Timer)>,
    dirty_contacts: BTreeSet<String>,
    dirty_agents: BTreeSet<AgentId>,
    out: Vec<Outbound>,
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new())
}

fn secs_to_duration(s: f64) -> Duration {
    Duration::milliseconds((s * 1000.0).round() as i64)
}

impl Engine {
    /// A fresh engine with the configured roster.
    pub fn new(spec: Arc<RouterSpec>, now: DateTime<Utc>) -> Engine {
        Engine::restore(spec, Vec::new(), Vec::new(), now)
    }

    /// Rebuilds the engine from persisted records. The roster fills in agents
    /// never seen and refreshes those no `profile` event has changed; loads,
    /// the waiting order and every timer are derived from the records.
    /// Nothing is offered until [`Engine::route_waiting`].
    pub fn restore(spec: Arc<RouterSpec>, contacts: Vec<Contact>, agents: Vec<Agent>, now: DateTime<Utc>) -> Engine {
        let mut e = Engine {
            agents: agents.into_iter().map(|a| (a.id.clone(), a)).collect(),
            spec,
            contacts: HashMap::new(),
            by_conversation: HashMap::new(),
            waiting: BTreeSet::new(),
            waiting_per_queue: BTreeMap::new(),
            timers: BTreeSet::new(),
            dirty_contacts: BTreeSet::new(),
            dirty_agents: BTreeSet::new(),
            out: Vec::new(),
        };
        for a in e.spec.agents.clone() {
            match e.agents.get_mut(&a.id) {
                Some(have) if have.profile_from_event => {}
                Some(have) => {
                    if have.name != a.name || have.skills != a.skills || have.capacity != a.capacity {
                        have.name = a.name;
                        have.skills = a.skills;
                        have.capacity = a.capacity;
                        e.dirty_agents.insert(a.id);
                    }
                }
                None => {
                    e.dirty_agents.insert(a.id.clone());
                    e.agents.insert(
                        a.id.clone(),
                        Agent {
                            id: a.id,
                            name: a.name,
                            skills: a.skills,
                            capacity: a.capacity,
                            status: a.initial_status,
                            idle_since: now,
                            missed_offers: 0,
                            wrap_ups: Vec::new(),
                            profile_from_event: false,
                            load: [0; 4],
                        },
                    );
                }
            }
        }
        for a in e.agents.values_mut() {
            a.load = [0; 4];
            for w in &a.wrap_ups {
                a.load[w.channel.index()] += 1;
            }
        }
        for a in e.agents.values() {
            for w in &a.wrap_ups {
                e.timers.insert((
                    w.until,
                    Timer::WrapUpEnd {
                        agent: a.id.clone(),
                        contact: w.contact_id.clone(),
                    },
                ));
            }
        }
        for mut c in contacts {
            // A contact held by an agent that no longer exists goes back to
            // the queue rather than being lost.
            if c.agent().is_some_and(|a| !e.agents.contains_key(a)) {
                c.state = ContactState::Waiting;
                e.dirty_contacts.insert(c.id.clone());
            }
            if !e.spec.queues.contains_key(&c.queue) {
                tracing::warn!(contact_id = %c.id, queue = %c.queue, "Contact's queue is no longer configured; it stays in it until routed.");
            }
            e.by_conversation.insert(c.conversation_id.clone(), c.id.clone());
            match &c.state {
                ContactState::Waiting => {
                    e.waiting.insert(c.wait_key());
                    *e.waiting_per_queue.entry(c.queue.clone()).or_default() += 1;
                }
                ContactState::Offered {
                    agent,
                    offer_id,
                    expires_at,
                    ..
                } => {
                    if let Some(a) = e.agents.get_mut(agent) {
                        a.load[c.channel.index()] += 1;
                    }
                    e.timers.insert((
                        *expires_at,
                        Timer::OfferExpiry {
                            contact: c.id.clone(),
                            offer: offer_id.clone(),
                        },
                    ));
                }
                ContactState::Assigned { agent, .. } => {
                    if let Some(a) = e.agents.get_mut(agent) {
                        a.load[c.channel.index()] += 1;
                    }
                }
            }
            e.schedule_sla(&c);
            e.contacts.insert(c.id.clone(), c);
        }
        e
    }

    /// Offers waiting contacts to whoever is free now. The daemon calls it
    /// once after [`Engine::restore`] and [`Engine::replay_offers`] (every
    /// other input dispatches by itself).
    pub fn route_waiting(&mut self, now: DateTime<Utc>) {
        self.dispatch(now);
    }

    /// Outbound messages produced since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Outbound> {
        std::mem::take(&mut self.out)
    }

    /// Records to persist since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let mut v = Vec::with_capacity(self.dirty_contacts.len() + self.dirty_agents.len());
        for id in std::mem::take(&mut self.dirty_contacts) {
            let value = self.contacts.get(&id).map(wire::to_json);
            v.push(Change {
                key: format!("{CONTACT_KEY}{id}"),
                value,
            });
        }
        for id in std::mem::take(&mut self.dirty_agents) {
            let value = self.agents.get(&id).map(wire::to_json);
            v.push(Change {
                key: format!("{AGENT_KEY}{id}"),
                value,
            });
        }
        v
    }

    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.timers.first().map(|(t, _)| *t)
    }

    pub fn contact(&self, id: &str) -> Option<&Contact> {
        self.contacts.get(id)
    }

    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.contacts.values()
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }

    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    pub fn contact_for_conversation(&self, conversation_id: &str) -> Option<&Contact> {
        self.by_conversation
            .get(conversation_id)
            .and_then(|id| self.contacts.get(id))
    }

    /// Waiting contacts per configured queue (zero included), for gauges.
    pub fn waiting_per_queue(&self) -> impl Iterator<Item = (&QueueName, usize)> {
        self.spec
            .queue_order
            .iter()
            .map(|q| (q, self.waiting_per_queue.get(q).copied().unwrap_or(0)))
    }

    pub fn contacts_len(&self) -> usize {
        self.contacts.len()
    }

    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Offers again every outstanding offer, with its original id: after a
    /// restart the original publish may not have happened.
    pub fn replay_offers(&mut self) {
        let ids: Vec<String> = self
            .contacts
            .values()
            .filter(|c| matches!(c.state, ContactState::Offered { .. }))
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            self.emit_offer(&id);
        }
    }

    // ----- inputs -----

    pub fn on_inbound(&mut self, ev: &InboundEvent, now: DateTime<Utc>) -> Result<Outcome, BadMessage> {
        let existing = self.by_conversation.get(&ev.conversation_id).cloned();
        let outcome = match (ev.kind, existing) {
            (InboundType::Message, Some(cid)) => {
                let Some(c) = self.contacts.get_mut(&cid) else {
                    return Ok(Outcome::Ignored("stale conversation"));
                };
                if c.opened_by == ev.id || c.pending.iter().any(|f| f.event_id == ev.id) {
                    return Ok(Outcome::Ignored("already applied"));
                }
                c.messages += 1;
                self.dirty_contacts.insert(cid.clone());
                let f = FollowUp {
                    event_id: ev.id.clone(),
                    subject: clip(&ev.subject, MAX_SUBJECT_BYTES),
                    text: clip(&ev.text, MAX_TEXT_BYTES),
                    at: now,
                };
                match c.state.clone() {
                    ContactState::Assigned { agent, .. } => self.forward(&cid, &agent, &f),
                    _ => {
                        if c.pending.len() >= MAX_PENDING_FOLLOW_UPS {
                            c.pending.remove(0);
                        }
                        c.pending.push(f);
                        // Oldest follow-ups go first when the record would
                        // outgrow its budget (escaping can multiply content).
                        while c.pending.len() > 1 && wire::to_json(&*c).len() > MAX_CONTACT_JSON_BYTES {
                            c.pending.remove(0);
                        }
                        // Alone and still too big: keep its start only.
                        if wire::to_json(&*c).len() > MAX_CONTACT_JSON_BYTES {
                            if let Some(last) = c.pending.last_mut() {
                                last.text = clip(&last.text, 4 * 1024);
                            }
                        }
                    }
                }
                Outcome::Attached
            }
            (InboundType::Message, None) => {
                let placement = self.spec.place(ev)?;
                let received_at = ev.received_at.map_or(now, |t| t.min(now));
                let c = Contact {
                    id: contact_id_for(&ev.id),
                    conversation_id: ev.conversation_id.clone(),
                    channel: ev.channel,
                    queue: placement.queue.clone(),
                    priority: placement.priority,
                    customer: ev.customer.clone(),
                    subject: clip(&ev.subject, MAX_SUBJECT_BYTES),
                    text: clip(&ev.text, MAX_TEXT_BYTES),
                    required: placement.required,
                    received_at,
                    state: ContactState::Waiting,
                    responded_at: None,
                    customer_ended: false,
                    sla_policy: placement.sla_policy,
                    sla_fired: Vec::new(),
                    declined_by: BTreeSet::new(),
                    messages: 1,
                    opened_by: ev.id.clone(),
                    pending: Vec::new(),
                };
                let id = c.id.clone();
                self.by_conversation.insert(c.conversation_id.clone(), id.clone());
                self.enqueue(&c);
                self.schedule_sla(&c);
                self.contacts.insert(id.clone(), c);
                self.dirty_contacts.insert(id.clone());
                self.event("queued", &id, now, None, None);
                // The SLA may already be overdue (an adapter that was down).
                self.fire_sla(&id, now);
                Outcome::Opened {
                    queue: placement.queue,
                    contact_id: id,
                }
            }
            (InboundType::End, None) => Outcome::Ignored("no open contact"),
            (InboundType::End, Some(cid)) => {
                let Some(c) = self.contacts.get(&cid) else {
                    return Ok(Outcome::Ignored("stale conversation"));
                };
                let channel = c.channel;
                match c.state.clone() {
                    ContactState::Waiting => {
                        self.event("abandoned", &cid, now, None, None);
                        self.close(&cid);
                    }
                    ContactState::Offered { agent, offer_id, .. } => {
                        self.notice(&cid, &agent, "withdrawn", Some(&offer_id), Some("customer left"), now);
                        self.release(&agent, channel, now);
                        self.event("abandoned", &cid, now, None, None);
                        self.close(&cid);
                    }
                    ContactState::Assigned { agent, .. } => {
                        if let Some(c) = self.contacts.get_mut(&cid) {
                            c.customer_ended = true;
                        }
                        self.dirty_contacts.insert(cid.clone());
                        self.notice(&cid, &agent, "ended", None, Some("customer left"), now);
                    }
                }
                Outcome::Ended
            }
        };
        self.dispatch(now);
        Ok(outcome)
    }

    pub fn on_agent(&mut self, ev: &AgentEvent, now: DateTime<Utc>) -> Result<Outcome, BadMessage> {
        let aid = &ev.agent_id;
        if !self.agents.contains_key(aid) {
            if let AgentEventBody::Profile { .. } = ev.body {
                self.agents.insert(
                    aid.clone(),
                    Agent {
                        id: aid.clone(),
                        name: aid.to_string(),
                        skills: BTreeMap::new(),
                        capacity: [0; 4],
                        status: Presence::Offline,
                        idle_since: now,
                        missed_offers: 0,
                        wrap_ups: Vec::new(),
                        profile_from_event: true,
                        load: [0; 4],
                    },
                );
            } else {
                return Err(BadMessage(format!(
                    "agent {aid} is not known (publish a profile first)"
                )));
            }
        }
        let outcome = match &ev.body {
            AgentEventBody::Profile { name, skills, capacity } => {
                if let Some(a) = self.agents.get_mut(aid) {
                    if let Some(n) = name {
                        a.name = n.clone();
                    }
                    if let Some(s) = skills {
                        a.skills = s.clone();
                    }
                    if let Some(cap) = capacity {
                        a.capacity = [0; 4];
                        for (ch, n) in cap {
                            a.capacity[ch.index()] = *n;
                        }
                    }
                    a.profile_from_event = true;
                }
                self.dirty_agents.insert(aid.clone());
                Outcome::Applied
            }
            AgentEventBody::Presence(status) => self.set_presence(aid, *status, now),
            AgentEventBody::Accept { contact_id } => match self.held(contact_id, aid) {
                Some(ContactState::Offered { offer_id, .. }) => {
                    let Some(c) = self.contacts.get_mut(contact_id) else {
                        return Ok(Outcome::Ignored("gone"));
                    };
                    c.state = ContactState::Assigned {
                        agent: aid.clone(),
                        offer_id,
                        accepted_at: now,
                    };
                    // On chat and voice the customer is live: taking the
                    // contact is the first response, and says so.
                    let responded = c.channel.accept_is_response() && c.responded_at.is_none();
                    if responded {
                        c.responded_at = Some(now);
                    }
                    self.dirty_contacts.insert(contact_id.clone());
                    if let Some(a) = self.agents.get_mut(aid) {
                        a.missed_offers = 0;
                        self.dirty_agents.insert(aid.clone());
                    }
                    self.event("accepted", contact_id, now, None, None);
                    if responded {
                        self.event("responded", contact_id, now, None, None);
                    }
                    let pending = self
                        .contacts
                        .get_mut(contact_id)
                        .map(|c| std::mem::take(&mut c.pending));
                    for f in pending.unwrap_or_default() {
                        self.forward(contact_id, aid, &f);
                    }
                    Outcome::Applied
                }
                Some(ContactState::Assigned { .. }) => Outcome::Ignored("already accepted"),
                _ => self.reject(
                    contact_id,
                    aid,
                    "contact is not offered to this agent (expired, withdrawn or closed)",
                    now,
                ),
            },
            AgentEventBody::Decline { contact_id, reason } => match self.held(contact_id, aid) {
                Some(ContactState::Offered { .. }) => {
                    self.event("declined", contact_id, now, reason.as_deref(), None);
                    // A decline is an answer: it ends a run of missed offers.
                    if let Some(a) = self.agents.get_mut(aid) {
                        a.missed_offers = 0;
                    }
                    self.requeue(contact_id, aid, now);
                    Outcome::Applied
                }
                _ => self.reject(contact_id, aid, "contact is not offered to this agent", now),
            },
            AgentEventBody::Respond { contact_id } => match self.held(contact_id, aid) {
                Some(ContactState::Assigned { .. }) => {
                    let Some(c) = self.contacts.get_mut(contact_id) else {
                        return Ok(Outcome::Ignored("gone"));
                    };
                    if c.responded_at.is_none() {
                        c.responded_at = Some(now);
                        self.dirty_contacts.insert(contact_id.clone());
                        self.event("responded", contact_id, now, None, None);
                        Outcome::Applied
                    } else {
                        Outcome::Ignored("already responded")
                    }
                }
                _ => self.reject(contact_id, aid, "contact is not assigned to this agent", now),
            },
            AgentEventBody::Complete {
                contact_id,
                wrap_up_secs,
            } => match self.held(contact_id, aid) {
                Some(ContactState::Assigned { .. }) => {
                    let channel = self.contacts.get(contact_id).map(|c| c.channel);
                    self.event("completed", contact_id, now, None, None);
                    self.close(contact_id);
                    if let Some(channel) = channel {
                        match wrap_up_secs.filter(|s| *s > 0.0) {
                            Some(s) => {
                                let until = now + secs_to_duration(s);
                                if let Some(a) = self.agents.get_mut(aid) {
                                    a.wrap_ups.push(WrapUp {
                                        contact_id: contact_id.clone(),
                                        channel,
                                        until,
                                    });
                                    self.dirty_agents.insert(aid.clone());
                                }
                                self.timers.insert((
                                    until,
                                    Timer::WrapUpEnd {
                                        agent: aid.clone(),
                                        contact: contact_id.clone(),
                                    },
                                ));
                            }
                            None => self.release(aid, channel, now),
                        }
                    }
                    Outcome::Applied
                }
                _ => self.reject(contact_id, aid, "contact is not assigned to this agent", now),
            },
        };
        self.dispatch(now);
        Ok(outcome)
    }

    /// Fires every timer due at `now`: offer expiries, wrap-up ends, SLA
    /// thresholds. Stale timers (the contact moved on) are dropped here
    /// rather than cancelled eagerly.
    pub fn on_tick(&mut self, now: DateTime<Utc>) {
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::OfferExpiry { contact, offer } => self.expire_offer(&contact, &offer, now),
                Timer::WrapUpEnd { agent, contact } => {
                    let Some(a) = self.agents.get_mut(&agent) else { continue };
                    if let Some(pos) = a.wrap_ups.iter().position(|w| w.contact_id == contact) {
                        let w = a.wrap_ups.remove(pos);
                        self.dirty_agents.insert(agent.clone());
                        self.release(&agent, w.channel, now);
                    }
                }
                Timer::Sla { contact } => self.fire_sla(&contact, now),
            }
        }
        self.dispatch(now);
    }

    // ----- transitions -----

    fn held(&self, contact_id: &str, agent: &AgentId) -> Option<ContactState> {
        let c = self.contacts.get(contact_id)?;
        (c.agent() == Some(agent)).then(|| c.state.clone())
    }

    fn reject(&mut self, contact_id: &str, agent: &AgentId, error: &str, now: DateTime<Utc>) -> Outcome {
        let c = self.contacts.get(contact_id);
        let msg = ContactEventMsg {
            v: 1,
            event_id: new_id("ev"),
            contact_id: Some(contact_id),
            conversation_id: c.map(|c| c.conversation_id.as_str()),
            channel: c.map(|c| c.channel),
            queue: c.map(|c| &c.queue),
            agent_id: Some(agent),
            at: now,
            waited_secs: c.map_or(0.0, |c| wire::secs(now - c.received_at)),
            offer_id: None,
            reason: None,
            from_queue: None,
            to_queue: None,
            error: Some(error),
        };
        let queue = c.map(|c| c.queue.clone());
        self.out.push(Outbound {
            subject: OutSubject::ContactEvent("rejected"),
            msg_id: msg.event_id.clone(),
            payload: wire::to_json(&msg),
            queue,
        });
        Outcome::Rejected(error.to_string())
    }

    fn set_presence(&mut self, aid: &AgentId, status: Presence, now: DateTime<Utc>) -> Outcome {
        let Some(a) = self.agents.get_mut(aid) else {
            return Outcome::Ignored("unknown agent");
        };
        if a.status == status {
            return Outcome::Ignored("unchanged");
        }
        a.status = status;
        if status == Presence::Available {
            a.idle_since = now;
            a.missed_offers = 0;
        }
        self.dirty_agents.insert(aid.clone());
        if status != Presence::Available {
            // Offers in flight to someone who left their desk would only
            // expire; route them on now.
            let offered: Vec<String> = self
                .contacts
                .values()
                .filter(|c| matches!(&c.state, ContactState::Offered { agent, .. } if agent == aid))
                .map(|c| c.id.clone())
                .collect();
            for cid in offered {
                if let Some(ContactState::Offered { offer_id, .. }) = self.contacts.get(&cid).map(|c| c.state.clone()) {
                    self.notice(
                        &cid,
                        aid,
                        "withdrawn",
                        Some(&offer_id),
                        Some("agent is no longer available"),
                        now,
                    );
                    self.event("declined", &cid, now, Some("agent is no longer available"), None);
                    self.requeue(&cid, aid, now);
                }
            }
        }
        Outcome::Applied
    }

    fn expire_offer(&mut self, contact_id: &str, offer: &str, now: DateTime<Utc>) {
        let Some(c) = self.contacts.get(contact_id) else { return };
        let ContactState::Offered { agent, offer_id, .. } = c.state.clone() else {
            return;
        };
        if offer_id != offer {
            return;
        }
        self.notice(
            contact_id,
            &agent,
            "withdrawn",
            Some(&offer_id),
            Some("offer expired"),
            now,
        );
        self.event("offer_expired", contact_id, now, None, None);
        self.requeue(contact_id, &agent, now);
        let max = self.spec.max_missed_offers;
        let missed_too_many = self.agents.get_mut(&agent).is_some_and(|a| {
            a.missed_offers += 1;
            a.missed_offers >= max && a.status == Presence::Available
        });
        self.dirty_agents.insert(agent.clone());
        if missed_too_many {
            tracing::info!(agent_id = %agent, missed = max, "Agent let offers expire in a row; setting away.");
            self.set_presence(&agent, Presence::Away, now);
        }
    }

    /// Puts an offered contact back in the queue with its original age.
    fn requeue(&mut self, contact_id: &str, agent: &AgentId, now: DateTime<Utc>) {
        let Some(c) = self.contacts.get_mut(contact_id) else {
            return;
        };
        let channel = c.channel;
        c.state = ContactState::Waiting;
        c.declined_by.insert(agent.clone());
        let c = c.clone();
        self.enqueue(&c);
        self.dirty_contacts.insert(c.id);
        self.release(agent, channel, now);
    }

    fn release(&mut self, agent: &AgentId, channel: Channel, now: DateTime<Utc>) {
        if let Some(a) = self.agents.get_mut(agent) {
            let l = &mut a.load[channel.index()];
            *l = l.saturating_sub(1);
            if a.total_load() == 0 && a.status == Presence::Available {
                a.idle_since = a.idle_since.max(now);
            }
            self.dirty_agents.insert(agent.clone());
        }
    }

    fn enqueue(&mut self, c: &Contact) {
        if self.waiting.insert(c.wait_key()) {
            *self.waiting_per_queue.entry(c.queue.clone()).or_default() += 1;
        }
    }

    fn dequeue(&mut self, c: &Contact) {
        if self.waiting.remove(&c.wait_key()) {
            if let Some(n) = self.waiting_per_queue.get_mut(&c.queue) {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn close(&mut self, contact_id: &str) {
        if let Some(c) = self.contacts.remove(contact_id) {
            self.dequeue(&c);
            if self
                .by_conversation
                .get(&c.conversation_id)
                .is_some_and(|id| id == contact_id)
            {
                self.by_conversation.remove(&c.conversation_id);
            }
            self.dirty_contacts.insert(c.id);
        }
    }

    fn schedule_sla(&mut self, c: &Contact) {
        if !c.sla_running() {
            return;
        }
        if let Some((p, target)) = self.spec.sla_target(c.sla_policy.as_deref(), c.channel) {
            if let Some(at) = sla::next(c.received_at, target, &p.warnings, &c.sla_fired) {
                self.timers.insert((at, Timer::Sla { contact: c.id.clone() }));
            }
        }
    }

    fn fire_sla(&mut self, contact_id: &str, now: DateTime<Utc>) {
        let spec = Arc::clone(&self.spec);
        let Some(c) = self.contacts.get_mut(contact_id) else {
            return;
        };
        if !c.sla_running() {
            return;
        }
        let Some((policy, target)) = spec.sla_target(c.sla_policy.as_deref(), c.channel) else {
            return;
        };
        let due = sla::due(c.received_at, target, &policy.warnings, &c.sla_fired, now);
        if due.is_empty() {
            return;
        }
        for share in &due {
            c.sla_fired.push(sla::permille(*share));
            let kind = sla::kind(*share);
            let msg = SlaAlertMsg {
                v: 1,
                alert_id: sla::alert_id(&c.id, "first_response", *share),
                kind,
                contact_id: &c.id,
                conversation_id: &c.conversation_id,
                queue: &c.queue,
                channel: c.channel,
                policy: &policy.name,
                clock: "first_response",
                threshold: *share,
                target_secs: target,
                elapsed_secs: wire::secs(now - c.received_at),
                agent_id: c.agent(),
                customer: AlertCustomer {
                    id: &c.customer.id,
                    tier: c.customer.tier.as_deref(),
                },
                at: now,
            };
            self.out.push(Outbound {
                subject: OutSubject::SlaAlert(kind),
                msg_id: msg.alert_id.clone(),
                payload: wire::to_json(&msg),
                queue: Some(c.queue.clone()),
            });
        }
        let c = c.clone();
        self.dirty_contacts.insert(c.id.clone());
        self.schedule_sla(&c);
    }

    /// Offers waiting contacts, best first, to the agents that fit them,
    /// while anyone has a free slot.
    fn dispatch(&mut self, now: DateTime<Utc>) {
        if self.waiting.is_empty() {
            return;
        }
        let mut free = [0usize; 4];
        for a in self.agents.values().filter(|a| a.status == Presence::Available) {
            for ch in Channel::ALL {
                if a.free(ch) {
                    free[ch.index()] += 1;
                }
            }
        }
        let mut cursor: Option<WaitKey> = None;
        // Requirements nobody free can meet in this pass. Offers only use up
        // capacity, so a miss stays a miss until the pass ends; this keeps a
        // long queue of contacts no free agent fits from costing W × A.
        let mut unfit: Vec<(Channel, BTreeMap<SkillName, SkillLevel>)> = Vec::new();
        while free.iter().any(|n| *n > 0) {
            let next = match &cursor {
                None => self.waiting.first().cloned(),
                Some(k) => self
                    .waiting
                    .range((std::ops::Bound::Excluded(k.clone()), std::ops::Bound::Unbounded))
                    .next()
                    .cloned(),
            };
            let Some(key) = next else { break };
            cursor = Some(key.clone());
            let Some(c) = self.contacts.get(&key.2) else { continue };
            if free[c.channel.index()] == 0 {
                continue;
            }
            if unfit.iter().any(|(ch, req)| *ch == c.channel && *req == c.required) {
                continue;
            }
            let strategy = self
                .spec
                .queues
                .get(&c.queue)
                .map_or(Strategy::LongestIdle, |q| q.strategy);
            let Some((agent, candidates)) = self.pick(c, strategy) else {
                unfit.push((c.channel, c.required.clone()));
                continue;
            };
            let channel = c.channel;
            self.offer(&key.2, &agent, candidates, now);
            if self.agents.get(&agent).is_some_and(|a| !a.free(channel)) {
                free[channel.index()] -= 1;
            }
        }
    }

    /// The best agent for a contact and how many could take it. Agents who
    /// already declined it are chosen only when nobody else can.
    fn pick(&self, c: &Contact, strategy: Strategy) -> Option<(AgentId, usize)> {
        let mut best: Option<&Agent> = None;
        let mut best_declined: Option<&Agent> = None;
        let mut n = 0;
        for a in self.agents.values().filter(|a| a.can_take(c)) {
            n += 1;
            let slot = if c.declined_by.contains(&a.id) {
                &mut best_declined
            } else {
                &mut best
            };
            if slot.is_none_or(|b| better(strategy, a, b)) {
                *slot = Some(a);
            }
        }
        best.or(best_declined).map(|a| (a.id.clone(), n))
    }

    fn offer(&mut self, contact_id: &str, agent: &AgentId, candidates: usize, now: DateTime<Utc>) {
        let Some(c) = self.contacts.get(contact_id).cloned() else {
            return;
        };
        let timeout = self
            .spec
            .queues
            .get(&c.queue)
            .map_or(self.spec.offer_timeout_secs, |q| q.offer_timeout_secs);
        let offer_id = new_id("off");
        let expires_at = now + secs_to_duration(timeout);
        self.dequeue(&c);
        if let Some(c) = self.contacts.get_mut(contact_id) {
            c.state = ContactState::Offered {
                agent: agent.clone(),
                offer_id: offer_id.clone(),
                offered_at: now,
                expires_at,
                candidates,
            };
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.load[c.channel.index()] += 1;
            a.idle_since = now;
        }
        self.dirty_agents.insert(agent.clone());
        self.dirty_contacts.insert(contact_id.to_string());
        self.timers.insert((
            expires_at,
            Timer::OfferExpiry {
                contact: contact_id.to_string(),
                offer: offer_id.clone(),
            },
        ));
        self.emit_offer(contact_id);
        self.event("offered", contact_id, now, None, Some(&offer_id));
    }

    fn emit_offer(&mut self, contact_id: &str) {
        let Some(c) = self.contacts.get(contact_id) else { return };
        let ContactState::Offered {
            agent,
            offer_id,
            offered_at,
            expires_at,
            candidates,
        } = &c.state
        else {
            return;
        };
        let Some(a) = self.agents.get(agent) else { return };
        let strategy = self
            .spec
            .queues
            .get(&c.queue)
            .map_or(Strategy::LongestIdle, |q| q.strategy);
        let msg = OfferMsg {
            v: 1,
            kind: "offer",
            offer_id,
            contact_id: &c.id,
            conversation_id: &c.conversation_id,
            agent_id: agent,
            queue: &c.queue,
            channel: c.channel,
            priority: c.priority,
            offered_at: *offered_at,
            expires_at: *expires_at,
            waited_secs: wire::secs(*offered_at - c.received_at),
            customer: &c.customer,
            subject: c.subject.as_deref(),
            text: c.text.as_deref(),
            why: Why {
                strategy: strategy.as_str(),
                required: c.required.clone(),
                agent_levels: c
                    .required
                    .keys()
                    .filter_map(|s| a.skills.get(s).map(|l| (s.clone(), *l)))
                    .collect(),
                candidates: *candidates,
            },
        };
        self.out.push(Outbound {
            subject: OutSubject::Desktop(agent.clone()),
            msg_id: offer_id.clone(),
            payload: wire::to_json(&msg),
            queue: Some(c.queue.clone()),
        });
    }

    /// A customer's follow-up message to the agent holding the contact.
    fn forward(&mut self, contact_id: &str, agent: &AgentId, f: &FollowUp) {
        let Some(c) = self.contacts.get(contact_id) else { return };
        let n = DesktopNotice {
            v: 1,
            kind: "message",
            contact_id: &c.id,
            conversation_id: &c.conversation_id,
            agent_id: agent,
            channel: c.channel,
            offer_id: None,
            reason: None,
            event_id: Some(&f.event_id),
            subject: f.subject.as_deref(),
            text: f.text.as_deref(),
            at: f.at,
        };
        self.out.push(Outbound {
            subject: OutSubject::Desktop(agent.clone()),
            msg_id: format!("msg-{}", f.event_id),
            payload: wire::to_json(&n),
            queue: Some(c.queue.clone()),
        });
    }

    fn notice(
        &mut self,
        contact_id: &str,
        agent: &AgentId,
        kind: &'static str,
        offer_id: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) {
        let Some(c) = self.contacts.get(contact_id) else { return };
        let n = DesktopNotice {
            v: 1,
            kind,
            contact_id: &c.id,
            conversation_id: &c.conversation_id,
            agent_id: agent,
            channel: c.channel,
            offer_id,
            reason,
            event_id: None,
            subject: None,
            text: None,
            at: now,
        };
        self.out.push(Outbound {
            subject: OutSubject::Desktop(agent.clone()),
            msg_id: new_id(kind),
            payload: wire::to_json(&n),
            queue: Some(c.queue.clone()),
        });
    }

    fn event(
        &mut self,
        what: &'static str,
        contact_id: &str,
        now: DateTime<Utc>,
        reason: Option<&str>,
        offer_id: Option<&str>,
    ) {
        let Some(c) = self.contacts.get(contact_id) else { return };
        let msg = ContactEventMsg {
            v: 1,
            event_id: new_id("ev"),
            contact_id: Some(&c.id),
            conversation_id: Some(&c.conversation_id),
            channel: Some(c.channel),
            queue: Some(&c.queue),
            agent_id: c.agent(),
            at: now,
            waited_secs: wire::secs(now - c.received_at),
            offer_id,
            reason,
            from_queue: None,
            to_queue: None,
            error: None,
        };
        self.out.push(Outbound {
            subject: OutSubject::ContactEvent(what),
            msg_id: msg.event_id.clone(),
            payload: wire::to_json(&msg),
            queue: Some(c.queue.clone()),
        });
    }
}

/// Is `a` a better pick than `b` under the strategy? Ties fall to the agent
/// id so decisions are deterministic (and replayable).
fn better(strategy: Strategy, a: &Agent, b: &Agent) -> bool {
    let idle = (a.idle_since, &a.id) < (b.idle_since, &b.id);
    match strategy {
        Strategy::LongestIdle => idle,
        Strategy::LeastLoaded => {
            // Compare load shares without division: la/ca < lb/cb.
            let lhs = a.total_load() as u128 * b.total_capacity().max(1) as u128;
            let rhs = b.total_load() as u128 * a.total_capacity().max(1) as u128;
            lhs < rhs || (lhs == rhs && idle)
        }
    }
}

#[cfg(test)]
mod tests;
