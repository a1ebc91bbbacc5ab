//! The typed, validated routing configuration ([`RouterSpec`]) and the
//! queue-choice rules. Built only by `Config::validate`, so every name in it
//! refers to something that exists.

pub use super::waiting::{Ageing, RelaxStep, Relaxed, STARVED};
use crate::domain::wire::{BadMessage, InboundEvent};
use crate::domain::{same_tier_in, AgentId, Channel, Presence, QueueName, SkillLevel, SkillName};
use crate::sla::ClockKind;
use std::collections::BTreeMap;

/// An SLA policy's name as contacts, rules and queues hold it: shared, so
/// a new contact names its policy without an allocation of its own.
pub type PolicyName = std::sync::Arc<str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The agent whose last offer (or return to `available`) is oldest.
    LongestIdle,
    /// The agent with the lowest share of their total capacity in use; ties go
    /// to the longest idle.
    LeastLoaded,
    /// The agent whose last offer (from any queue) is the oldest; agents
    /// never offered anything first. A fair rotation: every offer sends its
    /// agent to the back, and an agent who joins or returns takes their old
    /// place (the position is the persisted sequence number of their last
    /// offer, not a cursor into a list that changes).
    RoundRobin,
    /// The agent with the highest level in the contact's *primary* skill
    /// (the one it requires at the highest level; alphabetical first on
    /// ties), then the longest idle. Without required skills, longest idle.
    MostSkilled,
    /// Offers the contact at once to up to the queue's `ring_size` fitting
    /// agents, longest idle first; the first to accept takes it and the
    /// others get `withdrawn` at once. One who declines drops out of the
    /// ring; when the last one declines, or the offer expires, the contact
    /// goes back to the queue with its age.
    RingGroup,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest_idle",
            Strategy::LeastLoaded => "least_loaded",
            Strategy::RoundRobin => "round_robin",
            Strategy::MostSkilled => "most_skilled",
            Strategy::RingGroup => "ring_group",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: QueueName,
    pub channels: [bool; 4],
    /// Shared: it is the requirement of every contact placed here that
    /// asks for no skill beyond it.
    pub skills: std::sync::Arc<BTreeMap<SkillName, SkillLevel>>,
    pub priority: u8,
    pub sla_policy: Option<PolicyName>,
    pub strategy: Strategy,
    /// How many agents a `ring_group` queue offers a contact to at once
    /// (1..=[`MAX_RING`](super::model::MAX_RING)).
    pub ring_size: usize,
    /// The queue's own accept timeout; else the channel's, else the default.
    pub offer_timeout_secs: Option<f64>,
    pub ageing: Ageing,
    /// Relaxation steps, in `after_ms` order.
    pub relax: Vec<RelaxStep>,
    pub admission: Admission,
    /// Business hours; `None`: always open.
    pub hours: Option<std::sync::Arc<crate::calendar::Calendar>>,
    /// Where new contacts go while the queue is closed.
    pub closed_overflow: Option<QueueName>,
    /// Order equal priorities by the nearest SLA breach instead of age.
    pub order_by_slack: bool,
    /// Relax early when the estimated wait would breach the SLA.
    pub relax_before_breach: bool,
}

/// When a queue takes no more contacts, and where they go then.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub max_waiting: Option<usize>,
    pub max_estimated_wait_secs: Option<f64>,
    pub overflow: Option<QueueName>,
}

impl QueueSpec {
    /// What a contact routed here requires: the queue's skills, plus those
    /// the event asked for (at level 1) that the queue does not set; the
    /// queue's own map, shared, when it asks for nothing more.
    pub fn requirement(&self, asked: &[SkillName]) -> std::sync::Arc<BTreeMap<SkillName, SkillLevel>> {
        if asked.iter().all(|s| self.skills.contains_key(s)) {
            return std::sync::Arc::clone(&self.skills);
        }
        let mut required = (*self.skills).clone();
        for s in asked {
            required.entry(s.clone()).or_insert(1);
        }
        std::sync::Arc::new(required)
    }

    pub fn takes(&self, c: Channel) -> bool {
        self.channels[c.index()]
    }
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub queue: QueueName,
    pub priority: Option<u8>,
    pub sla_policy: Option<PolicyName>,
    pub channels: Vec<Channel>,
    /// Matched in any case ([`crate::domain::same_tier`]).
    pub tiers: Vec<String>,
    /// Lower-cased.
    pub languages: Vec<String>,
    pub skills: Vec<SkillName>,
    pub attributes: BTreeMap<String, String>,
    /// Lower-cased.
    pub keyword: Option<String>,
    pub regex: Option<regex::Regex>,
}

impl RuleSpec {
    pub fn matches(&self, ev: &InboundEvent) -> bool {
        if !self.channels.is_empty() && !self.channels.contains(&ev.channel) {
            return false;
        }
        if !self.tiers.is_empty() && !same_tier_in(&self.tiers, ev.customer.tier.as_deref()) {
            return false;
        }
        if !self.languages.is_empty() {
            let Some(lang) = ev.customer.language.as_deref().map(str::to_lowercase) else {
                return false;
            };
            // `es` matches `es` and `es-MX`: a BCP 47 prefix on a subtag boundary.
            let hit = self
                .languages
                .iter()
                .any(|want| lang == *want || (lang.starts_with(want.as_str()) && lang[want.len()..].starts_with('-')));
            if !hit {
                return false;
            }
        }
        if !self.skills.iter().all(|s| ev.skills.contains(s)) {
            return false;
        }
        for (k, want) in &self.attributes {
            let got = match ev.attributes.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => return false,
                Some(other) => other.to_string(),
            };
            if &got != want {
                return false;
            }
        }
        if self.keyword.is_some() || self.regex.is_some() {
            let fields = [ev.subject.as_deref(), ev.text.as_deref()];
            if let Some(k) = &self.keyword {
                if !fields.iter().flatten().any(|f| f.to_lowercase().contains(k.as_str())) {
                    return false;
                }
            }
            if let Some(re) = &self.regex {
                if !fields.iter().flatten().any(|f| re.is_match(f)) {
                    return false;
                }
            }
        }
        true
    }
}

#[derive(Debug, Clone)]
pub struct SlaPolicy {
    pub name: String,
    /// Targets in seconds, by clock (`ClockKind::index`) and channel
    /// (`Channel::index`); `None`: no such clock on that channel.
    pub targets: [[Option<f64>; 4]; 4],
    /// Sorted warning shares, each in (0, 1).
    pub warnings: Vec<f64>,
    /// Business hours the clocks count; `None`: wall-clock time.
    pub calendar: Option<std::sync::Arc<crate::calendar::Calendar>>,
    /// Clocks pause while the agent waits on the customer.
    pub pause_on_customer: bool,
}

impl SlaPolicy {
    pub fn target(&self, clock: ClockKind, channel: Channel) -> Option<f64> {
        self.targets[clock.index()][channel.index()]
    }

    /// A policy with first-response targets only (as older files had).
    pub fn first_response(name: &str, secs: [Option<f64>; 4], warnings: Vec<f64>) -> SlaPolicy {
        let mut targets = [[None; 4]; 4];
        targets[ClockKind::FirstResponse.index()] = secs;
        SlaPolicy {
            name: name.to_string(),
            targets,
            warnings,
            calendar: None,
            pause_on_customer: false,
        }
    }
}

/// `[[sla.rules]]`: empty lists match everything.
#[derive(Debug, Clone)]
pub struct SlaRule {
    pub policy: PolicyName,
    pub queues: Vec<QueueName>,
    pub channels: Vec<Channel>,
    pub tiers: Vec<String>,
    pub min_priority: Option<u8>,
}

impl SlaRule {
    fn matches(&self, queue: &QueueName, channel: Channel, tier: Option<&str>, priority: u8) -> bool {
        (self.queues.is_empty() || self.queues.contains(queue))
            && (self.channels.is_empty() || self.channels.contains(&channel))
            && (self.tiers.is_empty() || same_tier_in(&self.tiers, tier))
            && self.min_priority.is_none_or(|m| priority >= m)
    }
}

#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub id: AgentId,
    pub name: String,
    pub skills: BTreeMap<SkillName, SkillLevel>,
    pub capacity: [u32; 4],
    /// Weighted capacity budget (see [`Units`]); `None`: slots only.
    pub units: Option<u32>,
    pub initial_status: Presence,
}

/// Weighted capacity: what a contact on each channel costs an agent with a
/// budget of units, and which channels' work an offer on another channel
/// may interrupt (their units are not counted against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units {
    /// Indexed by `Channel::index`.
    pub weights: [u32; 4],
    pub interruptible: [bool; 4],
}

impl Default for Units {
    fn default() -> Self {
        Units {
            weights: [20, 35, 35, 100],
            interruptible: [false; 4],
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouterSpec {
    /// By name, hashed: a new contact looks its queue up here (thousands of
    /// queues; a B-tree of names cost a dozen string comparisons).
    pub queues: super::FastMap<QueueName, QueueSpec>,
    /// Configuration order: the fallback is the first queue taking the channel.
    pub queue_order: Vec<QueueName>,
    pub rules: Vec<RuleSpec>,
    pub policies: BTreeMap<String, SlaPolicy>,
    /// `[[sla.rules]]`, first match wins.
    pub sla_rules: Vec<SlaRule>,
    pub default_sla_policy: Option<PolicyName>,
    pub agents: Vec<AgentSpec>,
    pub offer_timeout_secs: f64,
    /// Per channel (`Channel::index`): accept timeout and default wrap-up.
    pub channel_offer_timeout_secs: [Option<f64>; 4],
    pub channel_wrap_up_secs: [Option<f64>; 4],
    pub max_missed_offers: u32,
    pub units: Units,
    pub affinity: Affinity,
}

/// Customers recognised on return (see `customers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affinity {
    /// `None`: off.
    pub lookback_ms: Option<i64>,
    pub history: usize,
    pub max_customers: usize,
    /// How long a returning customer's contact waits for their last agent
    /// (`available`, busy); `None`: not at all.
    pub wait_ms: Option<i64>,
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            lookback_ms: None,
            history: 5,
            max_customers: 100_000,
            wait_ms: None,
        }
    }
}

/// Where a new contact goes and on what terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub queue: QueueName,
    pub priority: u8,
    pub sla_policy: Option<PolicyName>,
    pub required: std::sync::Arc<BTreeMap<SkillName, SkillLevel>>,
}

impl RouterSpec {
    /// Picks the queue for a new contact: the adapter's `queue`, else the
    /// first matching rule, else the first queue taking the channel.
    pub fn place(&self, ev: &InboundEvent) -> Result<Placement, BadMessage> {
        let (queue, rule) = if let Some(q) = &ev.queue {
            let spec = self
                .queues
                .get(q)
                .ok_or_else(|| BadMessage(format!("queue {q} is not configured")))?;
            if !spec.takes(ev.channel) {
                return Err(BadMessage(format!("queue {q} does not take {} contacts", ev.channel)));
            }
            (spec, None)
        } else if let Some((spec, rule)) = self.rules.iter().filter(|r| r.matches(ev)).find_map(|r| {
            self.queues
                .get(&r.queue)
                .filter(|q| q.takes(ev.channel))
                .map(|q| (q, r))
        }) {
            (spec, Some(rule))
        } else {
            let spec = self
                .queue_order
                .iter()
                .filter_map(|q| self.queues.get(q))
                .find(|q| q.takes(ev.channel))
                .ok_or_else(|| BadMessage(format!("no queue takes {} contacts", ev.channel)))?;
            (spec, None)
        };
        let required = queue.requirement(&ev.skills);
        Ok(Placement {
            queue: queue.name.clone(),
            priority: ev.priority.or(rule.and_then(|r| r.priority)).unwrap_or(queue.priority),
            sla_policy: rule
                .and_then(|r| r.sla_policy.clone())
                .or_else(|| queue.sla_policy.clone()),
            required,
        })
    }

    /// The SLA target for a policy and channel, if the policy sets one.
    /// The policy of a new contact: the first `[[sla.rules]]` entry that
    /// matches, else the one placement gave it (its routing rule's or its
    /// queue's), else the default.
    pub fn select_policy(
        &self,
        queue: &QueueName,
        channel: Channel,
        tier: Option<&str>,
        priority: u8,
        placed: Option<&PolicyName>,
    ) -> Option<PolicyName> {
        self.sla_rules
            .iter()
            .find(|r| r.matches(queue, channel, tier, priority))
            .map(|r| PolicyName::clone(&r.policy))
            .or_else(|| placed.cloned())
            .or_else(|| self.default_sla_policy.clone())
    }

    /// The policy a contact's clocks run under: the one it names, or the
    /// default when that one is no longer configured (`true` then).
    pub fn policy(&self, name: Option<&str>) -> Option<(&SlaPolicy, bool)> {
        let name = name?;
        match self.policies.get(name) {
            Some(p) => Some((p, false)),
            None => self
                .default_sla_policy
                .as_ref()
                .and_then(|d| self.policies.get(&**d))
                .map(|p| (p, true)),
        }
    }
}
