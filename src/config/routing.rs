//! The routing model's configuration: `[routing]` (units, affinity,
//! per-channel settings), `[[queues]]` (with relaxation steps), `[[rules]]`,
//! `[[agents]]` and `[calendars.<name>]`. Data only; `validate` checks it.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `[routing]`: defaults that queues may override.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RoutingConfig {
    /// Seconds an agent has to accept an offer before it counts as declined.
    pub offer_timeout_secs: f64,
    /// Offers an agent may let expire in a row before being set `away`.
    pub max_missed_offers: u32,
    /// How long processed event ids are remembered for idempotency.
    pub dedupe_retention_secs: f64,
    /// At most this many ids are remembered (about 10 bytes each); past it
    /// the oldest are forgotten early and counted.
    pub dedupe_max_ids: usize,
    /// Strategy for queues that do not name one.
    pub default_strategy: String,
    /// `[routing.units]`: weights of weighted capacity, for agents with `units`.
    pub units: UnitsConfig,
    /// `[routing.affinity]`: customers recognised on return.
    pub affinity: AffinityConfig,
    /// `[routing.channels.<channel>]`: per-channel offer timeout and
    /// default wrap-up.
    pub channels: BTreeMap<String, ChannelConfig>,
}

/// `[routing.channels.<channel>]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ChannelConfig {
    /// Accept timeout of offers on this channel (a queue's own
    /// `offer_timeout_secs` wins; `routing.offer_timeout_secs` otherwise).
    pub offer_timeout_secs: Option<f64>,
    /// Wrap-up after `complete` when the event does not say (0: none).
    pub wrap_up_secs: Option<f64>,
}

/// `[routing.affinity]`: a returning customer's new contact (any channel)
/// is offered first to the agent who served them last, if that agent can
/// take it then, or, with `wait_secs`, as soon as they can within that
/// window; the offer shows the agent the customer's last contacts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AffinityConfig {
    /// How long after a contact closes its customer counts as returning;
    /// 0 turns affinity (and the history kept for it) off.
    pub lookback_secs: f64,
    /// Past contacts kept per customer and shown in offers (1–20).
    pub history: i64,
    /// Customers remembered at most; beyond it, those whose last contact
    /// is oldest are forgotten (about 150 bytes per past contact kept,
    /// so some 75 MB of memory and snapshot at the defaults).
    pub max_customers: i64,
    /// How long a returning customer's contact is kept for their last
    /// agent while that agent is `available` but busy (0: not at all;
    /// offered to anyone who fits at once).
    pub wait_secs: f64,
}

impl Default for AffinityConfig {
    fn default() -> Self {
        AffinityConfig {
            wait_secs: 0.0,
            lookback_secs: 0.0,
            history: 5,
            max_customers: 100_000,
        }
    }
}

/// `[routing.units]`: what one contact on each channel costs an agent who
/// has `units` (say 100): a call takes a whole agent, a chat about a third.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UnitsConfig {
    pub email: i64,
    pub chat: i64,
    pub social: i64,
    pub voice: i64,
    /// Channels whose work may be interrupted: units held on them do not
    /// count against an offer on another channel (a call offered to an
    /// agent busy only with e-mail).
    pub interruptible: Vec<String>,
}

impl Default for UnitsConfig {
    fn default() -> Self {
        UnitsConfig {
            email: 20,
            chat: 35,
            social: 35,
            voice: 100,
            interruptible: Vec::new(),
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            offer_timeout_secs: 30.0,
            max_missed_offers: 3,
            dedupe_retention_secs: 86_400.0,
            dedupe_max_ids: 5_000_000,
            default_strategy: "longest_idle".into(),
            units: UnitsConfig::default(),
            affinity: AffinityConfig::default(),
            channels: BTreeMap::new(),
        }
    }
}

/// `[[queues]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct QueueConfig {
    pub name: String,
    /// Channels this queue takes contacts from.
    pub channels: Vec<String>,
    /// Skills every agent must hold, with the minimum level (1..10).
    pub skills: BTreeMap<String, i64>,
    /// Default contact priority, 0 (lowest) to 9 (highest).
    pub priority: i64,
    /// Name of an `[sla.policies.*]` entry; no SLA clock when absent.
    pub sla_policy: Option<String>,
    /// `longest_idle`, `least_loaded`, `round_robin`, `most_skilled` or
    /// `ring_group`; `routing.default_strategy` when absent.
    pub strategy: Option<String>,
    /// `ring_group` only: how many agents are offered a contact at once
    /// (1–20, default 3).
    pub ring_size: Option<i64>,
    /// Overrides `routing.offer_timeout_secs` for this queue.
    pub offer_timeout_secs: Option<f64>,
    /// Ageing: a waiting contact's priority rises one step per this many
    /// seconds of waiting, up to `ageing_cap`. Absent: no ageing.
    pub ageing_secs: Option<f64>,
    /// Highest priority ageing reaches (0–9, default 9).
    pub ageing_cap: Option<i64>,
    /// Starvation bound: a contact waiting this long is served ahead of
    /// every contact that has not waited as long past its own bound,
    /// whatever their priorities. Absent: no bound.
    pub max_wait_secs: Option<f64>,
    /// `[[queues.relax]]`: what a contact's requirement becomes as it waits.
    pub relax: Vec<RelaxConfig>,
    /// Admission control: at most this many contacts wait in the queue; a
    /// new one beyond it goes to `admission_overflow`, or is refused.
    pub max_waiting: Option<i64>,
    /// Admission control: a new contact whose estimated wait would exceed
    /// this goes to `admission_overflow`, or is refused.
    pub max_estimated_wait_secs: Option<f64>,
    /// Where contacts go when the queue is full (a queue taking all of
    /// this one's channels); refused with `contact.refused` when absent or
    /// full itself.
    pub admission_overflow: Option<String>,
    /// Business hours (a `[calendars.<name>]`): outside them the queue
    /// offers nothing; its contacts wait for the opening.
    pub calendar: Option<String>,
    /// Outside hours, new contacts go to this queue instead (one taking all
    /// of this one's channels).
    pub closed_overflow: Option<String>,
    /// `age` (default): waiting contacts of equal priority go oldest first;
    /// `slack`: the one closest to an SLA breach goes first.
    pub order: Option<String>,
    /// Apply the next `[[queues.relax]]` step early when the queue's
    /// estimated wait would take a contact past its SLA breach.
    pub relax_before_breach: bool,
}

/// `[[queues.relax]]`: after `after_secs` waiting, route to `overflow`'s
/// agents (if set), then set the levels in `skills` (0 drops a skill).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RelaxConfig {
    pub after_secs: f64,
    pub skills: BTreeMap<String, i64>,
    pub overflow: Option<String>,
}

/// `[[rules]]`: evaluated in order for contacts without an upstream `queue`;
/// the first rule whose every condition holds picks the queue.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RuleConfig {
    pub name: Option<String>,
    pub queue: String,
    /// Priority for matched contacts (else the queue's).
    pub priority: Option<i64>,
    /// SLA policy for matched contacts (else the queue's).
    pub sla_policy: Option<String>,
    /// Channels to match (any of).
    pub channels: Vec<String>,
    /// Customer tiers to match (any of, case-insensitive).
    pub tiers: Vec<String>,
    /// Language tags to match (any of; `es` also matches `es-MX`).
    pub languages: Vec<String>,
    /// Skills the contact must request (all of).
    pub skills: Vec<String>,
    /// Attributes that must equal these values (all of; compared as text).
    pub attributes: BTreeMap<String, String>,
    /// Case-insensitive substring to find in subject or text.
    pub keyword: Option<String>,
    /// Regular expression to find in subject or text (case-insensitive).
    pub regex: Option<String>,
}

/// `[[agents]]`: the initial roster. `profile` events update it at run time.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AgentConfig {
    pub id: String,
    pub name: String,
    pub skills: BTreeMap<String, i64>,
    /// Concurrent contacts per channel; a channel not listed is 0.
    pub capacity: BTreeMap<String, i64>,
    /// Weighted capacity: the agent's budget of units, each contact costing
    /// its channel's `[routing.units]` weight, on top of the per-channel
    /// limits. Absent: per-channel limits only.
    pub units: Option<i64>,
    /// Presence before the agent's desktop reports one: `offline` in
    /// production; `available` is handy for demos.
    pub initial_status: Option<String>,
}

/// `[calendars.<name>]`: weekly hours in an IANA time zone, minus holidays.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct CalendarConfig {
    /// IANA name, e.g. `Europe/Madrid` (daylight saving follows it).
    pub timezone: String,
    /// `mon`..`sun` → `["09:00-13:00", "14:00-18:00"]` (local; `24:00` for
    /// midnight); a day not listed is closed.
    pub hours: BTreeMap<String, Vec<String>>,
    /// Closed dates, `YYYY-MM-DD` (local).
    pub holidays: Vec<String>,
}
