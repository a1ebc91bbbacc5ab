//! The routing model as persisted: contacts and agents exactly as they are
//! stored in the state bucket (`contact.<id>`, `agent.<id>`) and restored.
//!
//! Nothing here is an index: the engine derives its indexes (free agents by
//! channel and skill, waiting contacts by requirement, timers) from these
//! records at restore and keeps them in step on every change.
//!
//! Bounds on what reaches persisted state: subject 1 KiB, text 64 KiB, at
//! most [`MAX_PENDING_FOLLOW_UPS`] buffered follow-ups, a contact record at
//! most [`MAX_CONTACT_JSON_BYTES`], and at most [`MAX_DECLINED_BY`] agents
//! remembered as having declined a contact.

use super::spec::Units;
use crate::domain::wire::Customer;
use crate::domain::{AgentId, Channel, Presence, QueueName, SkillLevel, SkillName};
use crate::sla::SlaClock;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
        /// The other agents a ring group offers the contact to at the same
        /// time (each with an offer of their own; one expiry for all). The
        /// first to accept takes it; the rest get `withdrawn`. At most
        /// [`MAX_RING`] agents in all.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ring: Vec<RingOffer>,
    },
    Assigned {
        agent: AgentId,
        offer_id: String,
        accepted_at: DateTime<Utc>,
    },
}

/// One more agent a ring group's offer went to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingOffer {
    pub agent: AgentId,
    pub offer_id: String,
}

/// The most agents a ring group offers one contact to at once.
pub const MAX_RING: usize = 20;

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
    /// Shared by the open contacts placed alike (see `Engine::placed_needs`).
    pub required: std::sync::Arc<BTreeMap<SkillName, SkillLevel>>,
    /// SLA clocks and queue age start here.
    pub received_at: DateTime<Utc>,
    pub state: ContactState,
    pub responded_at: Option<DateTime<Utc>>,
    pub customer_ended: bool,
    pub sla_policy: Option<super::spec::PolicyName>,
    /// Records written before SLA clocks: first-response thresholds already
    /// alerted (permille). Read once at restore into `clocks`, never written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sla_fired: Vec<u32>,
    /// The SLA clocks running or paused (at most one per kind); a clock
    /// leaves when it stops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clocks: Vec<SlaClock>,
    /// Next-response clocks started so far (the run number of the last).
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub next_response_runs: u32,
    /// Agents who declined or let an offer expire; others are preferred.
    /// At most [`MAX_DECLINED_BY`] are kept.
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
    /// The agent who served this customer last, within the affinity
    /// lookback when the contact opened: offered first when they can take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_agent: Option<AgentId>,
    /// The relaxation step it reached while waiting (0: as placed): what a
    /// restart applies again without announcing it (its `relaxed` or
    /// `overflowed` event went out then), and a floor, since a step may
    /// have been applied early.
    #[serde(default, skip_serializing_if = "is_zero8")]
    pub relax_step: u8,
    /// Kept for `preferred_agent` (affinity's `wait_secs`) when last
    /// recorded: a restart keeps it for them only then, as the router
    /// decided it once, when it queued the contact, from the agent's
    /// presence at that moment (not at the restart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
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

/// Agents remembered per contact as having declined it (or let it expire).
/// Beyond this the oldest entry is forgotten; with more decliners than this
/// every agent has passed on the contact and preference no longer matters.
pub const MAX_DECLINED_BY: usize = 32;

/// Budget for a contact's persisted JSON: half the server's 1 MiB default
/// max payload, whatever JSON escaping (up to 6×) does to the content. The
/// first message alone (64 KiB clipped) stays within it.
pub const MAX_CONTACT_JSON_BYTES: usize = 512 * 1024;

/// Message content kept with a contact and put into offers. Bounded so an
/// offer or a state record can never outgrow the server's max payload
/// (which would make every retry of the commit fail the same way); the
/// adapter's source system keeps the full message.
pub const MAX_SUBJECT_BYTES: usize = 1024;
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The id of the contact a conversation's opening event opens: a 128-bit
/// FNV-1a hash of the conversation id and the event id (length-prefixed, so
/// no two pairs share an encoding).
///
/// Derived, not random, so a redelivery after a crash re-creates the *same*
/// contact and anything already published about it (an SLA alert of a
/// contact overdue on arrival, say) keeps its id. Both parts are needed: an
/// event id reused by another conversation (e-mail Message-IDs are reused
/// across systems, and the dedupe window is finite) opens a new contact
/// instead of overwriting the open one.
pub fn contact_id_for(conversation_id: &str, event_id: &str) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    let len = (conversation_id.len() as u64).to_le_bytes();
    for b in len.iter().chain(conversation_id.as_bytes()).chain(event_id.as_bytes()) {
        h ^= *b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013b);
    }
    hex_id("c-", h)
}

/// `prefix` and `h` as 32 lowercase hex digits (`format!("{prefix}{h:032x}")`)
/// without the formatting machinery: one per new contact.
pub fn hex_id(prefix: &str, h: u128) -> String {
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    // Hex digits are ASCII, so this always succeeds.
    s.push_str(std::str::from_utf8(&crate::domain::hex32(h)).unwrap_or_default());
    s
}

/// A stable 64-bit hash (FNV-1a) used to break ties between equal keys in
/// the indexes: deterministic from the records alone, so a restored engine
/// decides exactly as the one that wrote them.
pub(crate) fn tie_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

fn is_zero8(n: &u8) -> bool {
    *n == 0
}

pub(crate) fn secs_to_duration(s: f64) -> Duration {
    Duration::milliseconds((s * 1000.0).round() as i64)
}

/// A string's first byte: what [`Contact::warm`] and the engine's read-ahead
/// load to bring a cold allocation into the cache.
pub(crate) fn first_byte(s: &str) -> Option<u8> {
    s.as_bytes().first().copied()
}

impl Contact {
    /// Reads the first byte of each string the contact's outputs write,
    /// the offered agents' ids and offer ids included, and its SLA clocks,
    /// before they are needed.
    /// Each is an allocation of its own, cold in memory when a contact is
    /// offered or its offer expires; read here together, their cache misses
    /// overlap, where the JSON writers reach them one by one, hundreds of
    /// instructions apart, and wait for each in turn.
    pub fn warm(&self) {
        let first = first_byte;
        let opt = |s: &Option<String>| s.as_deref().and_then(first);
        let (agent, offer, ring) = match &self.state {
            ContactState::Offered {
                agent, offer_id, ring, ..
            } => (
                first(agent.as_str()),
                first(offer_id),
                ring.first().map(|r| first(&r.offer_id)),
            ),
            ContactState::Assigned { agent, offer_id, .. } => (first(agent.as_str()), first(offer_id), None),
            ContactState::Waiting => (None, None, None),
        };
        // The SLA clocks too: filing by slack and the SLA timers read them.
        std::hint::black_box(self.clocks.first().map(|c| c.spent_ms));
        std::hint::black_box([
            first(&self.id),
            first(&self.conversation_id),
            first(&self.customer.id),
            opt(&self.customer.name),
            opt(&self.customer.tier),
            opt(&self.customer.language),
            opt(&self.subject),
            opt(&self.text),
            agent,
            offer,
            ring.flatten(),
        ]);
    }

    pub fn agent(&self) -> Option<&AgentId> {
        match &self.state {
            ContactState::Waiting => None,
            ContactState::Offered { agent, .. } | ContactState::Assigned { agent, .. } => Some(agent),
        }
    }

    /// Every agent the contact is offered to, with their offer id: one,
    /// or a ring group's members (the first is `agent`).
    pub fn offers(&self) -> Vec<(AgentId, String)> {
        match &self.state {
            ContactState::Offered {
                agent, offer_id, ring, ..
            } => std::iter::once((agent.clone(), offer_id.clone()))
                .chain(ring.iter().map(|r| (r.agent.clone(), r.offer_id.clone())))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the agent holds the contact: assigned to them, or offered to
    /// them (alone or in a ring group).
    pub fn held_by(&self, a: &AgentId) -> bool {
        match &self.state {
            ContactState::Waiting => false,
            ContactState::Assigned { agent, .. } => agent == a,
            ContactState::Offered { agent, ring, .. } => agent == a || ring.iter().any(|r| &r.agent == a),
        }
    }

    /// The id of the offer made to this agent, if the contact is offered to them.
    pub fn offer_to(&self, a: &AgentId) -> Option<&str> {
        match &self.state {
            ContactState::Offered {
                agent, offer_id, ring, ..
            } => {
                if agent == a {
                    return Some(offer_id);
                }
                ring.iter().find(|r| &r.agent == a).map(|r| r.offer_id.as_str())
            }
            _ => None,
        }
    }

    pub fn is_waiting(&self) -> bool {
        self.state == ContactState::Waiting
    }

    /// Remembers a decliner within [`MAX_DECLINED_BY`]: when full, the entry
    /// with the smallest id makes room (the set keeps no time order; the
    /// bound is what matters).
    pub(crate) fn add_decliner(&mut self, agent: &AgentId) {
        if self.declined_by.len() >= MAX_DECLINED_BY && !self.declined_by.contains(agent) {
            self.declined_by.pop_first();
        }
        self.declined_by.insert(agent.clone());
    }
}

/// A queue's pace (`queue.<name>`): what its estimated wait is worked out
/// from, persisted so a restart keeps estimating waits, refusing by
/// estimated wait and applying relaxation steps early where the queue does,
/// rather than waiting for two offers to measure it again. Only the
/// average: the time of the last offer is not kept, so the outage itself
/// never counts as time between offers (the first offer after a restart
/// starts a new interval). Bounded: one record per configured queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QueuePace {
    /// Moving average of the time between offers made while contacts were
    /// left waiting, in ms.
    #[serde(default)]
    pub pace_ms: Option<f64>,
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
    /// Sequence number of the agent's last offer (0: never offered): the
    /// `round_robin` key, persisted so the rotation survives a restart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_offer: u64,
    /// Weighted capacity budget (`None`: per-channel slots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u32>,
    /// The configured weights, set by the engine (configuration, not state).
    #[serde(skip)]
    pub weights: Units,
    #[serde(skip)]
    pub load: [u32; 4],
}

impl Agent {
    /// Whether the agent can take one more contact on the channel: a free
    /// slot there and, with a budget of units, the channel's weight still
    /// within it (units held on interruptible channels do not count against
    /// an offer on another channel). The one place that says what "free"
    /// means; the indexes follow it.
    pub fn free(&self, c: Channel) -> bool {
        if self.load[c.index()] >= self.capacity[c.index()] {
            return false;
        }
        let Some(budget) = self.units else { return true };
        let w = &self.weights;
        let used = self.units_used(|o| !w.interruptible[o.index()] || w.interruptible[c.index()]);
        used + w.weights[c.index()] as u64 <= budget as u64
    }

    /// What keeps the agent from another contact on the channel, when
    /// [`Agent::free`] says no: its slots there, or its budget of units.
    pub fn not_free_because(&self, c: Channel) -> Option<String> {
        let (load, cap) = (self.load[c.index()], self.capacity[c.index()]);
        if load >= cap {
            return Some(format!("{load} of {cap} on {c}"));
        }
        let budget = self.units?;
        let w = &self.weights;
        let used = self.units_used(|o| !w.interruptible[o.index()] || w.interruptible[c.index()]);
        let need = w.weights[c.index()] as u64;
        (used + need > budget as u64).then(|| format!("{used} of {budget} units held, {c} needs {need}"))
    }

    /// Units held on the channels `count` selects.
    fn units_used(&self, count: impl Fn(Channel) -> bool) -> u64 {
        Channel::ALL
            .into_iter()
            .filter(|c| count(*c))
            .map(|c| self.load[c.index()] as u64 * self.weights.weights[c.index()] as u64)
            .sum()
    }

    /// Whether the agent could ever hold a contact on the channel, however
    /// idle: a slot there and, with a budget of units, the channel's weight
    /// within it.
    pub fn serves(&self, c: Channel) -> bool {
        self.capacity[c.index()] > 0
            && self
                .units
                .is_none_or(|budget| self.weights.weights[c.index()] <= budget)
    }

    pub fn fits(&self, required: &BTreeMap<SkillName, SkillLevel>) -> bool {
        required
            .iter()
            .all(|(s, lvl)| self.skills.get(s).is_some_and(|have| have >= lvl))
    }

    pub fn can_take(&self, c: &Contact) -> bool {
        self.status == Presence::Available && self.free(c.channel) && self.fits(&c.required)
    }

    /// What `least_loaded` compares: units held of the budget, or
    /// contacts held of the slots.
    pub(crate) fn share(&self) -> (u64, u64) {
        match self.units {
            Some(budget) => (self.units_used(|_| true), budget as u64),
            None => (self.total_load(), self.capacity.iter().map(|n| *n as u64).sum()),
        }
    }

    /// What an offer's `why` says of the agent's load when it was chosen:
    /// contacts per channel it has capacity on, and the share of capacity
    /// (or units) in use, both less one contact on `offered` (the offer,
    /// already counted when it is written).
    pub(crate) fn load_before(&self, offered: Channel) -> ([Option<u32>; 4], f64) {
        let mut load = self.load;
        let i = offered.index();
        load[i] = load[i].saturating_sub(1);
        let counts =
            Channel::ALL.map(|c| (self.capacity[c.index()] > 0 || load[c.index()] > 0).then_some(load[c.index()]));
        let (used, cap) = self.share();
        let less = match self.units {
            Some(_) if self.load[i] > 0 => u64::from(self.weights.weights[i]),
            None if self.load[i] > 0 => 1,
            _ => 0,
        };
        let share = used.saturating_sub(less) as f64 / cap.max(1) as f64;
        (counts, (share * 1000.0).round() / 1000.0)
    }

    pub(crate) fn total_load(&self) -> u64 {
        self.load.iter().map(|n| *n as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_what_format_writes() {
        let mut h: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        for _ in 0..1_000 {
            assert_eq!(hex_id("c-", h), format!("c-{h:032x}"));
            assert_eq!(hex_id("", h >> 77), format!("{:032x}", h >> 77));
            h = h.wrapping_mul(0x0000000001000000000000000000013b) ^ (h >> 61);
        }
        assert_eq!(hex_id("x", 0), format!("x{:032x}", 0));
        assert_eq!(hex_id("x", u128::MAX), format!("x{:032x}", u128::MAX));
    }

    #[test]
    fn contact_ids_depend_on_conversation_and_event() {
        let a = contact_id_for("conv-a", "X");
        assert_eq!(a, contact_id_for("conv-a", "X"), "deterministic");
        assert_ne!(a, contact_id_for("conv-b", "X"), "reused event id, other conversation");
        assert_ne!(a, contact_id_for("conv-a", "Y"));
        // Length-prefixed: moving the boundary changes the id.
        assert_ne!(contact_id_for("ab", "c"), contact_id_for("a", "bc"));
        assert_eq!(a.len(), 34);
        // The worked example in docs/contract.md.
        assert_eq!(
            contact_id_for("mail:<CAF1234@mail.example.com>", "ex-0001"),
            "c-6ba259ea7108357d9e007bd4c6de4494"
        );
    }
}
