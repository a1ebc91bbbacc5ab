//! The routing core: contacts, agents, queues and SLA clocks as plain data,
//! changed only by [`Engine`] methods of the shape `(state, input, now) ->
//! outputs`. No I/O, no clock reads, no spawning: the daemon feeds it decoded
//! events and timer ticks, then persists [`Engine::take_changes`] and
//! publishes [`Engine::take_outputs`].
//!
//! Files, each readable on its own:
//! - `model`: contacts and agents as persisted, and their bounds;
//! - `agents`: free agents indexed by channel, skill and level, in strategy order;
//! - `queues`: waiting contacts indexed by requirement class, priority then age;
//! - `timers`: offer expiries, wrap-up ends, SLA thresholds by deadline;
//! - `lookup`: open contacts by id and by conversation (tables of slots);
//! - `clocks`: SLA clocks (start, stop, pause, alerts, contacts at risk);
//! - `waiting`: how a waiting contact's place in line and requirement
//!   change with its wait (ageing, starvation bound, relaxation);
//! - `ageing`: applying that to waiting contacts (their timers, the
//!   relaxation cache);
//! - `inputs`: what each inbound event, agent event and tick does;
//! - `dispatch`: matching waiting contacts and free agents, offers and releases;
//! - `filing`: waiting contacts into and out of the wait index (and the
//!   list of those that started waiting in the current input);
//! - `explain`: why a contact waits (the operator API);
//! - `outputs`: the messages the engine publishes;
//! - `records`: what it persists (the changes of an input, snapshots);
//! - `customers`: customers recognised on return (affinity, history);
//! - `reserve`: a returning customer's contact kept for their last agent;
//! - `restore`: building the engine from records (and adding agents,
//!   contacts and queues to its slots);
//! - `spec`: the validated configuration.
//!
//! Decisions are those of the greedy rule "take waiting contacts in
//! effective-priority-then-age order; offer each to the best free agent
//! that fits its current (relaxed) requirement: the customer's last agent
//! (affinity) if they can take it, else the best under its routing queue's
//! strategy, preferring agents who have not declined it"; a ring group's
//! contact goes at once to that agent and the next `ring_size - 1` who fit
//! and have not declined it, in idle order. Ageing,
//! relaxation and business hours change what waits and how only at
//! deadlines: timers like any other, and for ageing one deadline per
//! requirement class in the wait index, not one per contact.
//! The engine reaches them without scanning: between inputs nothing waiting
//! fits anyone free (the state is *settled*), so an input can only create
//! matches involving what it changed, the contacts that became waiting and
//! the agents that gained a free slot, and only those are examined. The
//! differential tests (`tests/it/routing_model/`) check every decision
//! against a plain scanning model of the same rule.
//!
//! Invariants (checked by the property tests):
//! - an offer only goes to an `available` agent who has every required skill
//!   at or above its level (at the contact's relaxation step), a free slot
//!   on the contact's channel and, with a units budget, the units for it;
//! - a contact of a queue closed by its calendar is never offered;
//! - an agent never holds more offered + assigned + wrapping-up contacts on a
//!   channel than their capacity there (a capacity lowered at run time keeps
//!   what is already held, and offers nothing more);
//! - a contact is offered to at most `ring_size` distinct agents at once
//!   (one outside ring groups), each holding a slot for it, and assigned to
//!   exactly one: the first accept withdraws every other member's offer;
//! - only waiting contacts are offered, highest effective priority first,
//!   then oldest first; after every input no waiting contact (of an open
//!   queue) fits a free agent;
//! - work per input is bounded by what it changes (see `agents` and
//!   `queues` for the exact bounds), never by the roster or the backlog.
//!
//! Where an offer's time goes (profile of `benches/routing_scale/` at
//! 20 000 agents, default mix): an eighth building the offer and its
//! lifecycle events (JSON written by `domain::jsonw`, a quarter with serde's
//! derived encoding), an eighth updating the free-agent index, a ninth
//! filing the contact in the wait index and out again at the offer (no
//! longer, for a contact offered in the input that made it wait: it waits
//! in `Engine::unfiled` meanwhile), a twelfth placing it (queue, requirement, policy), the rest creating the
//! record, picking and settling. Ids come from a counter (`outputs::Ids`),
//! names are shared (`Arc<str>`), so neither reads a clock nor copies. The
//! binary uses mimalloc, whose cheaper small frees took a third off the
//! p99. An offer, an expiry and a relaxation step read ahead the strings
//! they will write (`Contact::warm`, `Engine::warm_offer`): each is an
//! allocation of its own, cold for a backlog contact, and read together
//! their cache misses overlap. A next step, if needed: render outputs
//! after the decision rather than inside it (they must then capture what
//! they describe, since later inputs of the batch change the contact).

mod ageing;
mod agents;
mod clocks;
pub mod customers;
mod dispatch;
mod explain;
mod filing;
mod inputs;
mod lookup;
pub mod model;
mod orders;
mod outputs;
mod queues;
mod records;
mod reserve;
mod restore;
mod slab;
pub mod spec;
mod timers;
mod waiting;

pub use model::{
    clip, contact_id_for, Agent, Contact, ContactState, FollowUp, QueuePace, RingOffer, WrapUp, MAX_CONTACT_JSON_BYTES,
    MAX_DECLINED_BY, MAX_PENDING_FOLLOW_UPS, MAX_RING, MAX_SUBJECT_BYTES, MAX_TEXT_BYTES,
};

use crate::domain::{AgentId, Presence, QueueName, SkillLevel, SkillName};
use agents::{AgentIndex, Entry, SkillIx, Skills};
use chrono::{DateTime, Utc};
use model::tie_hash;
use queues::{ClassIx, WaitIndex, WaitKey};
use spec::{Ageing, RouterSpec, Strategy};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use timers::{Timer, Timers};

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
    /// Queue of the contact, for the metric labels of lifecycle events and
    /// SLA alerts; `None` on desktop messages (offers, notices), which no
    /// metric labels by queue: a shared name's count is an atomic write,
    /// two per output, on the hot path.
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

/// Work done by the last input, for the decision metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// Agents and queue heads looked at to make the input's decisions.
    pub examined: usize,
    /// Timers fired (ticks only).
    pub timers_fired: usize,
    /// Waiting contacts whose requirement a relaxation step changed at the
    /// start of the input (each re-filed in the wait index, or re-keyed
    /// where it is kept for its last agent: the work relaxation adds to
    /// whichever input comes first after its time).
    pub relaxed: usize,
}

/// A queue's gauges, as of the last input.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGauges {
    pub queue: QueueName,
    pub waiting: usize,
    /// Of the next contact, once the queue has a measured pace.
    pub estimated_wait_secs: Option<f64>,
    /// Open contacts with a warning raised and no breach yet.
    pub at_risk: usize,
}

pub const CONTACT_KEY: &str = "contact.";
pub const AGENT_KEY: &str = "agent.";
pub const QUEUE_KEY: &str = "queue.";

/// Hash maps of the core: keys include ids from outside (conversation ids),
/// so the hasher is seeded per process; it is several times faster than
/// SipHash on the short keys the core looks up on every event.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

fn map_with<K, V>(n: usize) -> FastMap<K, V> {
    FastMap::with_capacity_and_hasher(n, Default::default())
}

/// A queue as the core uses it on every event, by slot: the configured
/// queues in configuration order, then any queue only restored contacts
/// name (removed from the configuration; routed with the defaults).
#[derive(Debug)]
struct QueueSlot {
    name: QueueName,
    strategy: Strategy,
    /// Agents rung at once (`ring_group` only).
    ring_size: usize,
    /// The queue's own accept timeout, if it sets one.
    offer_timeout_secs: Option<f64>,
    ageing: Ageing,
    /// When its relaxation steps apply (ms waited, increasing; empty: none).
    relax_ms: Box<[i64]>,
    admission: spec::Admission,
    /// The queue's pace: a moving average of the time between offers made
    /// while contacts were left waiting (ms); the estimated wait of
    /// position `p` is `p` times it.
    pace_ms: Option<f64>,
    last_offer_at: Option<DateTime<Utc>>,
    /// Contacts were left waiting after the last offer.
    backlog: bool,
    /// Business hours; `None`: always open.
    hours: Option<Arc<crate::calendar::Calendar>>,
    /// Open now (always, without hours).
    open: bool,
    /// With hours: the queue's waiting contacts (filed while open, held
    /// while closed), so opening and closing touch only them.
    members: BTreeSet<u32>,
    closed_overflow: Option<QueueName>,
    /// Equal priorities by the nearest SLA breach, not age.
    order_by_slack: bool,
    relax_before_breach: bool,
    waiting: usize,
    /// Open contacts at risk of an SLA breach (see `clocks`).
    at_risk: usize,
    changed: bool,
}

/// A requirement, interned and sorted by skill.
type Need = Arc<[(SkillIx, SkillLevel)]>;

/// Where a relaxation step takes the contacts of one queue placed with one
/// requirement: computed once per (queue, step, requirement as placed) and
/// shared, so a step falling due costs a lookup, not a rebuild.
///
/// Kept in one flat map by (queue slot, step, address of the requirement
/// as placed), the entry itself in the map's bucket: a step falling due
/// reads one cache line here, where a list per (queue, step) of shared
/// entries read three.
#[derive(Debug)]
struct Relaxation {
    /// The requirement as placed whose address is in the key: held, so
    /// that address names no other allocation while the entry lives.
    placed: Need,
    to: RelaxTo,
    /// Per channel, the wait-index class contacts taking this step were
    /// last filed under ([`queues::ClassHint`]).
    class: [Option<queues::ClassHint>; 4],
}

/// What a relaxation step makes of a contact: the step reached, its
/// requirement then, and the queue it is routed by.
#[derive(Debug, Clone)]
struct RelaxTo {
    step: u8,
    need: Need,
    route_q: u32,
}

/// The relaxation cache's key: (queue slot, step, address of the
/// requirement as placed).
type RelaxKey = (u32, u8, usize);

/// Distinct placed requirements remembered per (queue, step), on average
/// over the configured steps; beyond it a step is computed each time
/// (correct, only slower), so the cache is bounded by the configured
/// queues and steps whatever the inputs ask.
const RELAX_CACHE_WIDTH: usize = 16;

/// Ageing timers that wait in `Engine::ages_new` before `ages` takes them
/// all: cancelling one there is a scan of at most this many, and an input
/// schedules a few (a restore, thousands).
const AGES_NEW_MAX: usize = 64;

/// Contacts that became waiting in an input and wait in
/// `Engine::unfiled` until it ends, instead of in the wait index: most
/// are offered in the same input (a new contact with agents free, an
/// expired offer going on to the next agents), and filing a contact only
/// to take it out again cost a class and a head entry built and torn
/// down. Beyond this many an input files at once: settling compares each
/// changed agent with every one of them.
const UNFILED_MAX: usize = 8;

/// Outputs an input has room for before its list grows.
const OUT_ROOM: usize = 16;

/// Distinct skill names the router keeps (configuration and events
/// together): an event that would add more is dead-lettered, so index
/// memory stays bounded whatever names inputs carry.
pub const MAX_SKILL_NAMES: usize = 10_000;

/// An open contact and what the indexes need to find it again.
#[derive(Debug)]
struct ContactSlot {
    c: Contact,
    /// Slot of `c.queue`.
    q: u32,
    /// `c.required` (or its relaxation), interned and sorted.
    need: Need,
    /// `c.required` interned, shared by every open contact placed alike
    /// ([`Engine::placed_need`]): the relaxation cache's key (the same
    /// allocation as `need` until a step relaxes it).
    placed: Need,
    tie: u64,
    /// The requirement class it is filed under while waiting.
    class: Option<ClassIx>,
    /// Waiting, in `Engine::unfiled`: filed when the input ends unless it
    /// is offered first.
    unfiled: bool,
    /// When its SLA timer is scheduled, if it is.
    sla_at: Option<DateTime<Utc>>,
    /// Counted in its queue's `at_risk`.
    at_risk: bool,
    /// Effective priority while waiting: `c.priority` aged by the queue's
    /// [`Ageing`] as of its last ageing timer. Kept current only while it
    /// is not filed under its base priority (see `ages_in_index`).
    eff: u8,
    /// When its relaxation step next changes (or the SLA prediction that
    /// may apply one early is due).
    relax_at: Option<DateTime<Utc>>,
    /// When its timer in `ages` is scheduled, if it is: the earlier of
    /// `relax_at` and, unless the wait index ages it, the next change of
    /// `eff` ([`Ageing::next_change`]).
    age_at: Option<DateTime<Utc>>,
    /// `age_at`'s timer is in `ages_new`, not yet in `ages`.
    age_new: bool,
    /// Filed under its base priority in a class that ages it (its place is
    /// its arrival: the queue is not ordered by slack), so ageing costs it
    /// no timer while it is filed.
    ages_in_index: bool,
    /// The relaxation step `need` reflects (0: as placed).
    step: u8,
    /// Waiting but not filed: its queue is closed (business hours).
    held: bool,
    /// Waiting but not filed: kept for its customer's last agent (this
    /// agent slot) until the affinity window ends then.
    reserved: Option<(u32, DateTime<Utc>)>,
    /// Slot of the queue whose strategy and offer timeout apply: `q`, or
    /// the queue a relaxation step overflowed it to.
    route_q: u32,
    /// Its place among equal priorities: `received_at`, or under a queue
    /// ordered by slack its nearest SLA breach (set when it is filed, never
    /// while filed); nanoseconds since the epoch, as [`WaitKey`] has it.
    order_at: i64,
}

/// An interned requirement by name (`names`: the engine's skill names by
/// index), in name order, as explain and events write it.
fn by_name<'a>(need: &[(SkillIx, SkillLevel)], names: &'a [SkillName]) -> Vec<(&'a SkillName, SkillLevel)> {
    let mut r: Vec<_> = need
        .iter()
        .filter_map(|&(ix, l)| Some((names.get(ix as usize)?, l)))
        .collect();
    r.sort_unstable();
    r
}

impl ContactSlot {
    /// What an agent needs to take the contact now (`need`, its interned
    /// form), by name. Only the operator's explain asks, so the slot keeps
    /// no copy: a relaxation step then touches one shared allocation fewer.
    fn required<'a>(&self, names: &'a [SkillName]) -> Vec<(&'a SkillName, SkillLevel)> {
        by_name(&self.need, names)
    }

    /// Its place in line as of its last ageing timer: the key of an
    /// agent's reserved set.
    fn wait_key(&self, ix: u32) -> WaitKey {
        WaitKey {
            prio: Reverse(self.eff),
            since: self.order_at,
            tie: self.tie,
            ix,
        }
    }

    /// Whether the wait index ages it (filed, or to be filed when the
    /// input ends, under its base priority).
    fn aged_by_index(&self) -> bool {
        self.ages_in_index && (self.class.is_some() || self.unfiled)
    }

    /// The key it is filed under in the wait index (whose effective key
    /// ages it, when `ages_in_index`).
    fn stored_key(&self, ix: u32) -> WaitKey {
        let prio = if self.ages_in_index { self.c.priority } else { self.eff };
        WaitKey {
            prio: Reverse(prio),
            ..self.wait_key(ix)
        }
    }
}

#[derive(Debug)]
struct AgentSlot {
    a: Agent,
    /// `a.skills`, interned and sorted.
    skills: Skills,
    tie: u64,
    /// The agent's entry in the free-agent index, if it is in it.
    entry: Option<Entry>,
    /// Waiting contacts kept for this agent (affinity `wait_secs`), in
    /// wait order.
    reserved: BTreeSet<WaitKey>,
    /// Contacts offered to or assigned to the agent: inline up to six (an
    /// offer adds one and a release takes one from the slot it already
    /// reads, no second cache miss), on the heap beyond.
    holding: smallvec::SmallVec<[u32; 6]>,
}

pub struct Engine {
    spec: Arc<RouterSpec>,
    contacts: slab::Slab<ContactSlot>,
    /// Open contacts by id and by conversation.
    lookup: lookup::ContactLookup,
    agents: Vec<AgentSlot>,
    agent_ix: FastMap<AgentId, u32>,
    skill_ix: FastMap<SkillName, SkillIx>,
    /// The names of `skill_ix`, by index.
    skill_names: Vec<SkillName>,
    free: AgentIndex,
    waiting: WaitIndex,
    timers: Timers,
    /// Ageing timers of waiting contacts, fired before every input.
    ages: Timers,
    /// Ageing timers scheduled in this input, put in `ages` when it ends
    /// (at most [`AGES_NEW_MAX`] wait here): a contact filed and offered in
    /// the same input (a new contact with agents free, an expired offer
    /// going to the next agents) then costs no insert and cancel in a set
    /// of one timer per waiting contact.
    ages_new: Vec<(DateTime<Utc>, u32)>,
    /// Contacts that became waiting in this input, not yet in `waiting`
    /// (at most [`UNFILED_MAX`]); settling sees them as if filed, and
    /// files those still waiting at its end. Empty between inputs.
    unfiled: Vec<u32>,
    /// Relaxation steps already worked out, by (queue slot, step,
    /// requirement as placed: the shared allocation of
    /// [`Engine::placed_need`], by address).
    relax_cache: FastMap<RelaxKey, Relaxation>,
    /// At most this many entries in `relax_cache`: [`RELAX_CACHE_WIDTH`]
    /// per configured step.
    relax_cache_cap: usize,
    /// Requirements as placed, one allocation per distinct requirement of
    /// the open contacts: contacts placed alike share it, so their slots
    /// point at one warm allocation rather than each at its own cold one,
    /// and the relaxation cache matches them by pointer. An entry leaves
    /// when the last contact placed with it closes, unless the relaxation
    /// cache still holds it (bounded by that cache), so its size is bounded
    /// by the open contacts ([`Engine::placed_need`]). Beside each, the
    /// requirement by name that contacts placed alike share as their
    /// `required` (one map per distinct requirement, where each contact's
    /// own was about 200 bytes and a cold free when it closed).
    placed_needs: FastMap<Need, Arc<BTreeMap<SkillName, SkillLevel>>>,
    queues: Vec<QueueSlot>,
    queue_ix: FastMap<QueueName, u32>,
    changed_queues: Vec<u32>,
    /// Missing SLA policies already warned about.
    warned_policies: BTreeSet<String>,
    /// Offer expiries up to this instant do not count as missed offers:
    /// the desktops could not answer (NATS was away; see
    /// [`Engine::excuse_missed_offers_until`]).
    excused_until: Option<DateTime<Utc>>,
    /// No offer's accept window starts before this (see
    /// [`Engine::offers_start_no_earlier_than`]).
    offers_from: Option<DateTime<Utc>>,
    /// When the input being handled was sent, if the router said so
    /// ([`Engine::next_input_sent_at`]); taken by that input.
    sent: Option<DateTime<Utc>>,
    by_status: [usize; 3],
    /// What the current input changed: agents that may have gained a free
    /// slot or a fit, and contacts that became waiting.
    pending_agents: Vec<u32>,
    /// Agents changed in this input whose free-index entry is not updated
    /// yet (see `dispatch`: a slot freed and filled again in one input
    /// leaves the index untouched); empty between inputs.
    stale_agents: Vec<u32>,
    pending_contacts: BTreeSet<WaitKey>,
    work: Work,
    /// Sequence number of the last offer made (the `round_robin` key), the
    /// highest `last_offer` of any agent at restore.
    offer_seq: u64,
    /// Records changed by the current input, with repeats: sorted and
    /// deduplicated when taken (a vector keeps its allocation between
    /// inputs, where a set would allocate a node for each). Open contacts
    /// by slot (marking one copies no id); closed ones by id, their slot
    /// being free (or another contact's) by the time changes are taken.
    dirty_contacts: Vec<u32>,
    closed_contacts: Vec<String>,
    /// Inside [`Engine::restore`]: decisions already taken are read from
    /// the records, not taken again.
    restoring: bool,
    /// Agents changed (slots, with repeats; a slot is never freed): by
    /// slot, not id, so a change costs no copy of the id.
    dirty_agents: Vec<u32>,
    /// Queues whose pace changed (slots, with repeats), and records of
    /// queues no longer configured, to delete.
    dirty_queues: Vec<u32>,
    dropped_queues: Vec<String>,
    customers: customers::Customers,
    out: Vec<Outbound>,
    ids: outputs::Ids,
}

/// Stores an item in a freed slot if there is one, else in a new one, and
/// returns the slot. Slots are `u32` so index keys stay small.
pub(crate) fn put_in_slot<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(i) => {
            slots[i as usize] = Some(item);
            i
        }
        None => {
            slots.push(Some(item));
            (slots.len() - 1) as u32
        }
    }
}

fn status_ix(p: Presence) -> usize {
    match p {
        Presence::Available => 0,
        Presence::Away => 1,
        Presence::Offline => 2,
    }
}

impl Engine {
    /// A fresh engine with the configured roster.
    pub fn new(spec: Arc<RouterSpec>, now: DateTime<Utc>) -> Engine {
        Engine::restore(spec, Vec::new(), Vec::new(), now)
    }

    fn slot(&self, cx: u32) -> Option<&ContactSlot> {
        self.contacts.get(cx)
    }

    fn slot_mut(&mut self, cx: u32) -> Option<&mut ContactSlot> {
        self.contacts.get_mut(cx)
    }

    fn contact_slot_of(&self, id: &str) -> Option<u32> {
        self.lookup.by_id(&self.contacts, id)
    }

    /// Offers waiting contacts to whoever is free now. The daemon calls it
    /// once after [`Engine::restore`] and [`Engine::replay_offers`] (every
    /// other input dispatches by itself).
    pub fn route_waiting(&mut self, now: DateTime<Utc>) {
        self.settle(now);
    }

    /// Outbound messages produced since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Outbound> {
        // Room for a typical input's outputs (an expiry with a ring group
        // makes a dozen): one allocation, where growing from empty took
        // three and copied the outputs twice.
        if self.out.is_empty() {
            return Vec::new(); // and the room stays
        }
        std::mem::replace(&mut self.out, Vec::with_capacity(OUT_ROOM))
    }

    /// Reads back the `customer.<hash>` records after [`Engine::restore`]
    /// (within the configured bounds: customers beyond `max_customers` are
    /// forgotten, oldest first, and the deletions come out of
    /// [`Engine::take_changes`]).
    pub fn restore_customers(&mut self, records: impl IntoIterator<Item = (u128, customers::History)>) {
        let a = self.spec.affinity;
        for (k, h) in records {
            self.customers.restore(k, h, a.history);
        }
        self.customers.trim(a.max_customers);
    }

    /// Brings the tables sized up front (the customer map) into memory
    /// before the first input, so no input takes their first page faults;
    /// the daemon calls it once at start-up, before the customers are
    /// restored (it leaves a map that holds anything alone).
    pub fn prefault(&mut self) {
        self.customers.prefault();
    }

    /// Customers remembered for affinity.
    pub fn customers_len(&self) -> usize {
        self.customers.len()
    }

    /// The work the last input or tick did.
    pub fn last_work(&self) -> Work {
        self.work
    }

    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let new = self.ages_new.iter().map(|(at, _)| *at).min();
        [self.timers.next(), self.ages.next(), new].into_iter().flatten().min()
    }

    pub fn timers_len(&self) -> usize {
        self.timers.len() + self.ages.len() + self.ages_new.len()
    }

    pub fn contact(&self, id: &str) -> Option<&Contact> {
        self.contact_slot_of(id).and_then(|cx| self.slot(cx)).map(|s| &s.c)
    }

    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.contacts.iter().map(|s| &s.c)
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agent_ix.get(id).map(|ax| &self.agents[*ax as usize].a)
    }

    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.iter().map(|s| &s.a)
    }

    /// Agents per presence status (available, away, offline), kept as they change.
    pub fn agents_by_status(&self) -> [(Presence, usize); 3] {
        [
            (Presence::Available, self.by_status[0]),
            (Presence::Away, self.by_status[1]),
            (Presence::Offline, self.by_status[2]),
        ]
    }

    pub fn contact_for_conversation(&self, conversation_id: &str) -> Option<&Contact> {
        self.lookup
            .by_conversation(&self.contacts, conversation_id)
            .and_then(|cx| self.slot(cx))
            .map(|s| &s.c)
    }

    /// Waiting contacts per configured queue (zero included), for gauges.
    pub fn waiting_per_queue(&self) -> impl Iterator<Item = (&QueueName, usize)> {
        self.queues
            .iter()
            .take(self.spec.queue_order.len())
            .map(|q| (&q.name, q.waiting))
    }

    /// Queues whose gauges changed since the last call.
    pub fn take_waiting_changes(&mut self) -> Vec<QueueGauges> {
        let mut v = Vec::with_capacity(self.changed_queues.len());
        for q in std::mem::take(&mut self.changed_queues) {
            let ewt = self.estimated_wait(q, self.queues[q as usize].waiting + 1);
            let slot = &mut self.queues[q as usize];
            slot.changed = false;
            v.push(QueueGauges {
                queue: slot.name.clone(),
                waiting: slot.waiting,
                estimated_wait_secs: ewt,
                at_risk: slot.at_risk,
            });
        }
        v
    }

    /// The estimated wait (seconds) of position `position` in queue slot `q`.
    pub(super) fn estimated_wait(&self, q: u32, position: usize) -> Option<f64> {
        let pace = self.queues.get(q as usize)?.pace_ms?;
        Some((position as f64 * pace / 1000.0 * 10.0).round() / 10.0)
    }

    /// Why queue slot `q` takes no new contact now, if it does not.
    fn full(&self, q: u32) -> Option<String> {
        let slot = self.queues.get(q as usize)?;
        let a = &slot.admission;
        if a.max_waiting.is_some_and(|m| slot.waiting >= m) {
            return Some(format!("queue {} is full ({} waiting)", slot.name, slot.waiting));
        }
        let (max, ewt) = (a.max_estimated_wait_secs?, self.estimated_wait(q, slot.waiting + 1)?);
        (ewt > max).then(|| format!("queue {}'s estimated wait of {ewt} s is over {max} s", slot.name))
    }

    /// Offers that expire up to `until` are withdrawn and routed on as
    /// usual but do not count towards `routing.max_missed_offers`: after a
    /// NATS outage the desktops' answers could not reach the router, and
    /// their own clients may take a while to come back. Only moves later.
    pub fn excuse_missed_offers_until(&mut self, until: DateTime<Utc>) {
        self.excused_until = Some(self.excused_until.map_or(until, |u| u.max(until)));
    }

    /// The wall clock of a router handling inputs at their arrival time,
    /// which can be well in the past (the backlog of a downtime): an offer
    /// made then still gives the agent its whole accept timeout from now,
    /// not from the input's time, or it would be dead on arrival. Only
    /// moves later.
    pub fn offers_start_no_earlier_than(&mut self, wall: DateTime<Utc>) {
        self.offers_from = Some(self.offers_from.map_or(wall, |u| u.max(wall)));
    }

    /// When the next input was sent (its stream time), where the router
    /// handles it later than that: its time never goes back, so an input
    /// read after a later one from the other source is handled at that
    /// one's time. An `accept` or `decline` sent at or after its offer's
    /// `expires_at` is then refused as late even while the expiry itself
    /// is held back (after a downtime); a contact the input opens without
    /// `received_at` is received when it was sent. Applies to the next
    /// input only.
    pub fn next_input_sent_at(&mut self, sent: Option<DateTime<Utc>>) {
        self.sent = sent;
    }

    /// Whether the input being handled at `now` was sent at or after
    /// `deadline`, as the router said (never later than `now`: stream and
    /// router clocks differ). Without its word, an input is on time until
    /// the deadline's timer fires, as the engine's own ticks decide.
    fn sent_after(&self, deadline: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.sent.is_some_and(|s| s.min(now) >= deadline)
    }

    pub fn contacts_len(&self) -> usize {
        self.lookup.len()
    }

    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Offers again every outstanding offer, with its original id: after a
    /// restart the original publish may not have happened.
    pub fn replay_offers(&mut self) {
        let offered: Vec<u32> = (0..self.contacts.slots() as u32)
            .filter(|cx| {
                self.slot(*cx)
                    .is_some_and(|s| matches!(s.c.state, ContactState::Offered { .. }))
            })
            .collect();
        for cx in offered {
            self.emit_offer(cx);
        }
    }
}

#[cfg(test)]
mod tests;
