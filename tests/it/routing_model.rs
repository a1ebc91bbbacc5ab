//! Differential test of the routing engine against a reference model.
//!
//! The **model** below is a deliberately naive re-statement of what the
//! router decides: plain maps of agents and contacts, linear scans, no
//! indexes, no caches. It is fed the same inputs as the real
//! [`omniroute::routing::Engine`] (inbound messages and ends, agent events,
//! clock ticks, all with explicit `now`) and applies their semantics itself:
//!
//! - *accept*: the offered contact becomes assigned; the agent's run of missed
//!   offers ends;
//! - *decline*: the contact goes back to waiting with its original age, the
//!   agent joins its `declined_by`, the slot is released, the miss run ends;
//! - *offer expiry* (only on a tick at or after `expires_at`): as a decline,
//!   but it counts as a missed offer, and at `max_missed_offers` in a row the
//!   agent is set `away`;
//! - *presence*: leaving `available` withdraws every offer in flight to the
//!   agent (back to waiting, agent added to `declined_by`); returning to it
//!   resets `idle_since` to now and the miss run; an unchanged status is a
//!   no-op;
//! - *complete*: the contact closes; its slot stays held until
//!   `now + wrap_up_secs` when that is positive, else it is released;
//! - *end*: a waiting contact closes; an offered one closes and frees the
//!   slot; an assigned one stays with its agent;
//! - *profile*: skills and/or capacity are replaced (an unknown agent is
//!   created offline);
//! - *release*: whenever an agent's total load drops back to zero while they
//!   are available, `idle_since = max(idle_since, now)`;
//! - a follow-up message on an open conversation changes nothing routing-wise;
//!   on a closed one it opens a new contact.
//!
//! The model never reads the engine's state to decide anything. The only
//! thing taken from the engine is *which* offers it made (the `offer`
//! messages to agent desktops, in output order). Before each offer is applied
//! to the model, the model checks that it is a valid, optimal decision:
//!
//! 1. the contact is open and waiting;
//! 2. greedy order: no waiting contact that some available agent with a free
//!    slot could take has a strictly better key (higher priority, then older
//!    `received_at`; equal keys are equally good);
//! 3. the agent is available, has every required skill at or above its level
//!    and a free slot on the contact's channel;
//! 4. affinity: when the contact's customer had a contact completed within
//!    the lookback before this one opened, and that agent can take it and has
//!    not declined it, the offer goes to that agent; otherwise
//!    the agent is a best choice of the queue's strategy (`longest_idle`:
//!    smallest `idle_since`; `least_loaded`: lowest total load / total
//!    capacity, compared exactly, then smallest `idle_since`; `round_robin`:
//!    the oldest last offer, counting every offer of the run; `most_skilled`:
//!    highest level in the skill the contact requires at the highest level
//!    (alphabetical first on ties), then smallest `idle_since`) among the agents
//!    that could take it, agents in the contact's `declined_by` only when no
//!    other could; agents equal on the strategy's key are equally good (the
//!    engine's id tie-break is not required); the offer expires after the
//!    queue's timeout.
//!
//! The offer is then applied (load +1, `idle_since = now`, expiry timer).
//! After every input:
//!
//! 5. work conservation: no waiting contact could be taken by anyone;
//! 6. nothing lost or invented: the open contacts (by conversation), their
//!    ids, queue, channel, priority, required skills, age, `declined_by` and
//!    state (waiting / offered to X / assigned to X) agree with the engine's;
//! 7. every agent's status and per-channel load agree, and for available
//!    agents also `idle_since` and the missed-offer count (the strategy keys).
//!
//! Contact ids are learned from the engine (`contact_for_conversation` right
//! after a contact opens) and never constructed, and ties are never resolved
//! by id, so the test holds for any engine with the same routing semantics.
//! Nor does anything here depend on the id format, on `why.candidates`, on
//! offer or event ids, or on the order of `take_changes()` within one call.
//!
//! The tests:
//! - `engine_decisions_match_the_reference_model`: checks 1–7 on 3000 random
//!   runs of up to 80 inputs, then a long tick that lets everything expire;
//! - `long_runs_match_the_reference_model`: the same on runs of up to 400
//!   inputs, where dozens of contacts wait at once;
//! - `restart_preserves_every_contact`: after a random run, the records a
//!   key-value bucket would hold (replayed from `take_changes()`) equal the
//!   engine's live contacts and agents; `Engine::restore` from them (and
//!   `restore_customers` from the customers' histories) gives the
//!   same open contacts, states and agents; and the same further inputs to
//!   both engines give identical offers (agent per conversation);
//! - `event_id_reused_by_another_conversation_opens_a_new_contact`: contact
//!   identity is per conversation and event, not per event id;
//! - `the_model_refuses_wrong_decisions`: the checks are not vacuous.

use chrono::{DateTime, Duration, Utc};
use omniroute::config::Config;
use omniroute::domain::wire::{decode_agent, decode_inbound, AgentEvent, InboundEvent};
use omniroute::domain::{Channel, Presence};
use omniroute::routing::customers::{parse_record_key, History};
use omniroute::routing::spec::RouterSpec;
use omniroute::routing::{Agent, Contact, ContactState, Engine, OutSubject, Outbound};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// The configuration, as data: the model reads these tables, the engine gets
// the TOML rendered from them (plus the rules, written out next to the
// model's reading of them).
// ---------------------------------------------------------------------------

const OFFER_TIMEOUT_MS: i64 = 10_000;
const MAX_MISSED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    LongestIdle,
    LeastLoaded,
    RoundRobin,
    MostSkilled,
}

#[derive(Debug)]
struct QueueDef {
    name: &'static str,
    channels: &'static [Channel],
    skills: &'static [(&'static str, u8)],
    priority: u8,
    pick: Pick,
    offer_timeout_ms: Option<i64>,
    sla: bool,
    /// Ageing: (one priority step per ms, cap) and the starvation bound.
    ageing: Option<(i64, u8)>,
    max_wait_ms: Option<i64>,
    relax: &'static [Relax],
}

/// A relaxation step: after `after_ms` waiting, route as `overflow`'s
/// contact (its skills plus those the contact asked for beyond its own
/// queue's), then set these levels (0 drops the skill).
#[derive(Debug)]
struct Relax {
    after_ms: i64,
    skills: &'static [(&'static str, u8)],
    overflow: Option<&'static str>,
}

impl QueueDef {
    fn takes(&self, ch: Channel) -> bool {
        self.channels.contains(&ch)
    }

    fn timeout(&self) -> Duration {
        Duration::milliseconds(self.offer_timeout_ms.unwrap_or(OFFER_TIMEOUT_MS))
    }
}

const EVERY: &[Channel] = &Channel::ALL;

/// The first queue taking a channel is its fallback: `general` takes all.
const QUEUES: &[QueueDef] = &[
    QueueDef {
        name: "general",
        channels: EVERY,
        skills: &[("s", 2)],
        priority: 1,
        pick: Pick::LongestIdle,
        offer_timeout_ms: None,
        sla: true,
        ageing: Some((2_000, 6)),
        max_wait_ms: Some(20_000),
        relax: &[],
    },
    QueueDef {
        name: "billing",
        channels: &[Channel::Email, Channel::Chat],
        skills: &[("billing", 5)],
        priority: 3,
        pick: Pick::LeastLoaded,
        offer_timeout_ms: Some(6_000),
        sla: true,
        ageing: Some((3_000, 9)),
        max_wait_ms: None,
        // billing >= 5, then >= 2 (fay), then general's agents (s >= 2).
        relax: &[
            Relax {
                after_ms: 4_000,
                skills: &[("billing", 2)],
                overflow: None,
            },
            Relax {
                after_ms: 10_000,
                skills: &[],
                overflow: Some("general"),
            },
        ],
    },
    QueueDef {
        name: "tech",
        channels: &[Channel::Chat, Channel::Voice],
        skills: &[("tech", 3), ("s", 1)],
        priority: 0,
        pick: Pick::MostSkilled,
        offer_timeout_ms: Some(7_500),
        sla: false,
        ageing: None,
        max_wait_ms: None,
        // tech >= 3 and s >= 1, then s >= 1 alone.
        relax: &[Relax {
            after_ms: 6_000,
            skills: &[("tech", 0)],
            overflow: None,
        }],
    },
    QueueDef {
        name: "vip",
        channels: EVERY,
        skills: &[],
        priority: 7,
        pick: Pick::LeastLoaded,
        offer_timeout_ms: None,
        sla: false,
        ageing: None,
        max_wait_ms: None,
        relax: &[],
    },
    QueueDef {
        name: "social",
        channels: &[Channel::Social],
        skills: &[("s", 1)],
        priority: 2,
        pick: Pick::RoundRobin,
        offer_timeout_ms: Some(4_000),
        sla: true,
        ageing: None,
        max_wait_ms: Some(8_000),
        relax: &[],
    },
];

fn queue_def(name: &str) -> &'static QueueDef {
    QUEUES.iter().find(|q| q.name == name).expect("queue is in the table")
}

const RULES_TOML: &str = r#"
[[rules]]
name = "gold"
queue = "vip"
tiers = ["gold"]
priority = 8
[[rules]]
name = "refunds"
queue = "billing"
keyword = "refund"
[[rules]]
name = "tech"
queue = "tech"
skills = ["tech"]
priority = 5
"#;

/// The model's reading of [`RULES_TOML`]: (matches, queue, priority).
fn rules(m: &Msg) -> [(bool, &'static str, Option<u8>); 3] {
    [
        (m.tier.is_some_and(|t| t.eq_ignore_ascii_case("gold")), "vip", Some(8)),
        (
            m.text.is_some_and(|t| t.to_lowercase().contains("refund")),
            "billing",
            None,
        ),
        (m.skills.contains(&"tech"), "tech", Some(5)),
    ]
}

struct AgentDef {
    id: &'static str,
    skills: &'static [(&'static str, u8)],
    /// email, chat, social, voice
    capacity: [u32; 4],
    /// Weighted capacity budget; see [`UNIT_WEIGHTS`].
    units: Option<u32>,
    status: Presence,
}

/// `[routing.units]`: email, chat, social, voice; e-mail is interruptible.
const UNIT_WEIGHTS: [u32; 4] = [20, 35, 35, 100];
const INTERRUPTIBLE: [bool; 4] = [true, false, false, false];

const ROSTER: &[AgentDef] = &[
    AgentDef {
        id: "ana",
        skills: &[("s", 3), ("billing", 6)],
        capacity: [2, 1, 0, 0],
        // Two e-mails (40), or a chat (35), but not a chat and an e-mail (55).
        units: Some(50),
        status: Presence::Available,
    },
    AgentDef {
        id: "ben",
        skills: &[("s", 2), ("tech", 4), ("lang_es", 2)],
        capacity: [0, 2, 0, 1],
        // A call or up to two chats, never both.
        units: Some(100),
        status: Presence::Available,
    },
    AgentDef {
        id: "cai",
        skills: &[("s", 5), ("billing", 5), ("tech", 3)],
        capacity: [1, 1, 1, 1],
        // A call interrupts e-mail work, not a chat.
        units: Some(100),
        status: Presence::Available,
    },
    AgentDef {
        id: "dee",
        skills: &[("s", 1)],
        capacity: [1, 0, 2, 0],
        units: None,
        status: Presence::Away,
    },
    AgentDef {
        id: "eve",
        skills: &[("s", 9), ("billing", 9), ("tech", 9), ("lang_es", 9)],
        capacity: [3, 3, 0, 0],
        units: None,
        status: Presence::Offline,
    },
    AgentDef {
        id: "fay",
        skills: &[("s", 2), ("billing", 2)],
        capacity: [1, 0, 1, 0],
        units: None,
        status: Presence::Available,
    },
    AgentDef {
        id: "gus",
        skills: &[],
        capacity: [0, 1, 0, 1],
        units: None,
        status: Presence::Available,
    },
];

/// Every agent id ops may name: the roster, and one agent that exists only
/// once a `profile` event creates it (events for it before that are refused).
const AGENT_IDS: [&str; 8] = ["ana", "ben", "cai", "dee", "eve", "fay", "gus", "hal"];
const SKILLS: [&str; 4] = ["s", "billing", "tech", "lang_es"];
const TIERS: [Option<&str>; 3] = [None, Some("Gold"), Some("silver")];
const TEXTS: [Option<&str>; 3] = [None, Some("hello"), Some("I want a REFUND please")];
/// Explicit `received_at` values (clamped to now by the engine): many
/// contacts share them, so equal wait keys are common.
const RECEIVED_MS: [i64; 3] = [0, 1_500, 4_000];
const WRAPS_MS: [Option<i64>; 5] = [None, Some(0), Some(2_500), Some(10_000), Some(40_000)];

fn config_toml() -> String {
    let table = |pairs: &mut dyn Iterator<Item = String>| pairs.collect::<Vec<_>>().join(", ");
    let mut s = String::new();
    let w = &mut s;
    writeln!(
        w,
        "[routing]\noffer_timeout_secs = {:.3}\nmax_missed_offers = {MAX_MISSED}\n\
         [sla.policies.std]\nfirst_response_secs = {{ email = 30, chat = 5, social = 20, voice = 3 }}\n\
         warning_thresholds = [0.5]\n\
         [routing.affinity]\nlookback_secs = {:.3}\n\
         [routing.units]\nemail = {}\nchat = {}\nsocial = {}\nvoice = {}\ninterruptible = [\"email\"]",
        OFFER_TIMEOUT_MS as f64 / 1000.0,
        LOOKBACK_MS as f64 / 1000.0,
        UNIT_WEIGHTS[0],
        UNIT_WEIGHTS[1],
        UNIT_WEIGHTS[2],
        UNIT_WEIGHTS[3],
    )
    .expect("write");
    for q in QUEUES {
        let channels = table(&mut q.channels.iter().map(|c| format!("\"{c}\"")));
        let skills = table(&mut q.skills.iter().map(|(k, l)| format!("{k} = {l}")));
        let strategy = match q.pick {
            Pick::LongestIdle => "longest_idle",
            Pick::LeastLoaded => "least_loaded",
            Pick::RoundRobin => "round_robin",
            Pick::MostSkilled => "most_skilled",
        };
        writeln!(
            w,
            "[[queues]]\nname = \"{}\"\nchannels = [{channels}]\nskills = {{ {skills} }}\npriority = {}\nstrategy = \"{strategy}\"",
            q.name, q.priority
        )
        .expect("write");
        if let Some(ms) = q.offer_timeout_ms {
            writeln!(w, "offer_timeout_secs = {:.3}", ms as f64 / 1000.0).expect("write");
        }
        if let Some((step, cap)) = q.ageing {
            writeln!(w, "ageing_secs = {:.3}\nageing_cap = {cap}", step as f64 / 1000.0).expect("write");
        }
        if let Some(ms) = q.max_wait_ms {
            writeln!(w, "max_wait_secs = {:.3}", ms as f64 / 1000.0).expect("write");
        }
        if q.sla {
            writeln!(w, "sla_policy = \"std\"").expect("write");
        }
        for r in q.relax {
            let skills = table(&mut r.skills.iter().map(|(k, l)| format!("{k} = {l}")));
            writeln!(
                w,
                "[[queues.relax]]\nafter_secs = {:.3}\nskills = {{ {skills} }}",
                r.after_ms as f64 / 1000.0
            )
            .expect("write");
            if let Some(o) = r.overflow {
                writeln!(w, "overflow = \"{o}\"").expect("write");
            }
        }
    }
    w.push_str(RULES_TOML);
    for a in ROSTER {
        let skills = table(&mut a.skills.iter().map(|(k, l)| format!("{k} = {l}")));
        let capacity = table(&mut Channel::ALL.iter().map(|c| format!("{c} = {}", a.capacity[c.index()])));
        writeln!(
            w,
            "[[agents]]\nid = \"{}\"\nskills = {{ {skills} }}\ncapacity = {{ {capacity} }}\ninitial_status = \"{}\"",
            a.id,
            a.status.as_str()
        )
        .expect("write");
        if let Some(u) = a.units {
            writeln!(w, "units = {u}").expect("write");
        }
    }
    s
}

fn router_spec() -> Arc<RouterSpec> {
    let cfg = Config::from_toml_with_env(&config_toml(), "routing_model", Vec::<(String, String)>::new())
        .expect("test config parses");
    Arc::new(cfg.validate().expect("test config is valid"))
}

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .expect("base time")
        .with_timezone(&Utc)
        + Duration::milliseconds(ms)
}

// ---------------------------------------------------------------------------
// Inputs: what both the engine and the model are fed.
// ---------------------------------------------------------------------------

/// An inbound `message` event.
#[derive(Debug, Clone)]
struct Msg {
    id: String,
    conv: String,
    channel: Channel,
    queue: Option<&'static str>,
    priority: Option<u8>,
    skills: Vec<&'static str>,
    tier: Option<&'static str>,
    text: Option<&'static str>,
    received_at: Option<DateTime<Utc>>,
}

/// One concrete input. Contacts are named by conversation; each engine fed
/// the action looks up its own contact id.
#[derive(Debug, Clone)]
enum Action {
    Message(Msg),
    End {
        id: String,
        conv: String,
        channel: Channel,
    },
    Presence {
        agent: String,
        status: Presence,
    },
    Accept {
        agent: String,
        conv: String,
    },
    Decline {
        agent: String,
        conv: String,
    },
    Complete {
        agent: String,
        conv: String,
        wrap_ms: Option<i64>,
    },
    Profile {
        agent: String,
        skills: Option<BTreeMap<&'static str, u8>>,
        capacity: Option<[u32; 4]>,
        /// 0 turns weighted capacity off.
        units: Option<u32>,
    },
    Tick,
}

impl Action {
    fn conv(&self) -> Option<&str> {
        match self {
            Action::Accept { conv, .. } | Action::Decline { conv, .. } | Action::Complete { conv, .. } => Some(conv),
            _ => None,
        }
    }
}

/// The customer of a message: one per tier, so customers return often.
fn customer_of(m: &Msg) -> String {
    format!("cust-{}", m.tier.unwrap_or("none").to_lowercase())
}

/// `[routing.affinity] lookback_secs`, in ms.
const LOOKBACK_MS: i64 = 20_000;

fn inbound_event(m: &Msg) -> InboundEvent {
    let mut v = json!({
        "v": 1, "id": m.id, "type": "message", "channel": m.channel.as_str(),
        "conversation_id": m.conv, "customer": {"id": customer_of(m), "tier": m.tier},
        "skills": m.skills, "queue": m.queue, "priority": m.priority, "text": m.text,
    });
    if let Some(at) = m.received_at {
        v["received_at"] = json!(at.to_rfc3339());
    }
    decode_inbound(m.channel.as_str(), v.to_string().as_bytes()).expect("generated message is well-formed")
}

fn agent_event(agent: &str, ty: &str, mut body: Value) -> AgentEvent {
    body["v"] = json!(1);
    body["id"] = json!(format!("{agent}-{ty}"));
    body["type"] = json!(ty);
    body["agent_id"] = json!(agent);
    decode_agent(agent, ty, body.to_string().as_bytes()).expect("generated agent event is well-formed")
}

/// Feeds one action to an engine; `contact_id` is that engine's id for the
/// action's conversation. `Err` is the engine refusing the input.
fn feed(e: &mut Engine, a: &Action, contact_id: &str, now: DateTime<Utc>) -> Result<(), String> {
    let r = match a {
        Action::Message(m) => e.on_inbound(&inbound_event(m), now).map(|_| ()),
        Action::End { id, conv, channel } => {
            let v = json!({"v": 1, "id": id, "type": "end", "channel": channel.as_str(),
                           "conversation_id": conv, "customer": {"id": "cust"}});
            let ev = decode_inbound(channel.as_str(), v.to_string().as_bytes()).expect("generated end is well-formed");
            e.on_inbound(&ev, now).map(|_| ())
        }
        Action::Presence { agent, status } => e
            .on_agent(&agent_event(agent, "presence", json!({"status": status.as_str()})), now)
            .map(|_| ()),
        Action::Accept { agent, .. } => e
            .on_agent(&agent_event(agent, "accept", json!({"contact_id": contact_id})), now)
            .map(|_| ()),
        Action::Decline { agent, .. } => e
            .on_agent(&agent_event(agent, "decline", json!({"contact_id": contact_id})), now)
            .map(|_| ()),
        Action::Complete { agent, wrap_ms, .. } => {
            let mut body = json!({"contact_id": contact_id});
            if let Some(ms) = wrap_ms {
                body["wrap_up_secs"] = json!(*ms as f64 / 1000.0);
            }
            e.on_agent(&agent_event(agent, "complete", body), now).map(|_| ())
        }
        Action::Profile {
            agent,
            skills,
            capacity,
            units,
        } => {
            let mut body = json!({});
            if let Some(u) = units {
                body["units"] = json!(u);
            }
            if let Some(s) = skills {
                body["skills"] = json!(s);
            }
            if let Some(c) = capacity {
                body["capacity"] = json!({"email": c[0], "chat": c[1], "social": c[2], "voice": c[3]});
            }
            e.on_agent(&agent_event(agent, "profile", body), now).map(|_| ())
        }
        Action::Tick => {
            e.on_tick(now);
            Ok(())
        }
    };
    r.map_err(|bad| bad.to_string())
}

/// An offer the engine published to an agent's desktop.
#[derive(Debug, Clone)]
struct SeenOffer {
    agent: String,
    contact_id: String,
    conv: String,
    expires_at: DateTime<Utc>,
}

fn seen_offers(out: &[Outbound]) -> Result<Vec<SeenOffer>, String> {
    let mut v = Vec::new();
    for o in out {
        let OutSubject::Desktop(agent) = &o.subject else {
            continue;
        };
        let p: Value = serde_json::from_slice(&o.payload).map_err(|e| format!("desktop message is not JSON: {e}"))?;
        if p["kind"] != "offer" {
            continue;
        }
        let field = |k: &str| {
            p[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("offer without {k}: {p}"))
        };
        if field("agent_id")? != agent.as_str() {
            return Err(format!("offer on {agent}'s desktop names another agent: {p}"));
        }
        let expires_at = DateTime::parse_from_rfc3339(&field("expires_at")?)
            .map_err(|e| format!("offer expires_at: {e}"))?
            .with_timezone(&Utc);
        v.push(SeenOffer {
            agent: agent.as_str().to_string(),
            contact_id: field("contact_id")?,
            conv: field("conversation_id")?,
            expires_at,
        });
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Holding {
    Waiting,
    Offered {
        agent: String,
        serial: u64,
        expires: DateTime<Utc>,
    },
    Assigned {
        agent: String,
    },
}

#[derive(Debug, Clone)]
struct MContact {
    /// The engine's id, learned when the contact opened.
    id: String,
    channel: Channel,
    queue: &'static QueueDef,
    priority: u8,
    required: BTreeMap<String, u8>,
    received_at: DateTime<Utc>,
    state: Holding,
    declined_by: BTreeSet<String>,
    customer: String,
    /// The agent who completed this customer's last contact, if within the
    /// lookback when this one opened (affinity).
    preferred: Option<String>,
}

impl MContact {
    /// Priority in the waiting order at `now`: past the queue's
    /// `max_wait`, above every configured priority (10); else the priority
    /// plus one per ageing step waited, up to the cap (never below the
    /// contact's own priority).
    fn effective(&self, now: DateTime<Utc>) -> u8 {
        let waited = (now - self.received_at).num_milliseconds().max(0);
        if self.queue.max_wait_ms.is_some_and(|m| waited >= m) {
            return 10;
        }
        match self.queue.ageing {
            Some((step, cap)) if self.priority < cap => (self.priority as i64 + waited / step).min(cap as i64) as u8,
            _ => self.priority,
        }
    }

    /// The requirement and the queue routing it (strategy, timeout) after
    /// the relaxation steps due by `now`.
    fn relaxed(&self, now: DateTime<Utc>) -> (BTreeMap<String, u8>, &'static QueueDef) {
        let waited = (now - self.received_at).num_milliseconds().max(0);
        let (mut required, mut route) = (self.required.clone(), self.queue);
        for r in self.queue.relax.iter().take_while(|r| r.after_ms <= waited) {
            if let Some(o) = r.overflow {
                route = queue_def(o);
                let own: BTreeSet<&str> = self.queue.skills.iter().map(|(s, _)| *s).collect();
                let mut next: BTreeMap<String, u8> = route.skills.iter().map(|(s, l)| (s.to_string(), *l)).collect();
                for (s, l) in self.required.iter().filter(|(s, _)| !own.contains(s.as_str())) {
                    next.entry(s.clone()).or_insert(*l);
                }
                required = next;
            }
            for (s, l) in r.skills {
                match l {
                    0 => required.remove(*s),
                    l => required.insert(s.to_string(), *l),
                };
            }
        }
        (required, route)
    }

    /// Strictly ahead in the waiting order at `now`: higher effective
    /// priority, then older.
    fn ahead_of(&self, other: &MContact, now: DateTime<Utc>) -> bool {
        (self.effective(now), other.received_at) > (other.effective(now), self.received_at)
    }
}

#[derive(Debug, Clone)]
struct MAgent {
    skills: BTreeMap<String, u8>,
    capacity: [u32; 4],
    status: Presence,
    load: [u32; 4],
    idle_since: DateTime<Utc>,
    missed: u32,
    /// Number of the agent's last offer among all the model saw (0: none).
    last_offer: u64,
    units: Option<u32>,
    /// (serial, channel) of wrap-ups holding a slot.
    wrap_ups: Vec<(u64, Channel)>,
}

impl MAgent {
    /// Units held on every channel, or (`for_offer_on`) on those counted
    /// against an offer there: interruptible work does not count against
    /// an offer on a channel that is not.
    fn units_used(&self, for_offer_on: Option<Channel>) -> u128 {
        Channel::ALL
            .iter()
            .filter(|o| match for_offer_on {
                Some(c) => !INTERRUPTIBLE[o.index()] || INTERRUPTIBLE[c.index()],
                None => true,
            })
            .map(|o| self.load[o.index()] as u128 * UNIT_WEIGHTS[o.index()] as u128)
            .sum()
    }

    /// Could take `c` at `now` (under its relaxed requirement)?
    fn can_take(&self, c: &MContact, now: DateTime<Utc>) -> bool {
        let ch = c.channel.index();
        self.status == Presence::Available
            && self.load[ch] < self.capacity[ch]
            && self
                .units
                .is_none_or(|u| self.units_used(Some(c.channel)) + UNIT_WEIGHTS[ch] as u128 <= u as u128)
            && c.relaxed(now)
                .0
                .iter()
                .all(|(s, lvl)| self.skills.get(s).is_some_and(|have| have >= lvl))
    }

    /// Units held of the budget, else contacts held of the slots.
    fn total_load(&self) -> u128 {
        match self.units {
            Some(_) => self.units_used(None),
            None => self.load.iter().map(|n| *n as u128).sum(),
        }
    }

    fn total_capacity(&self) -> u128 {
        match self.units {
            Some(u) => (u as u128).max(1),
            None => self.capacity.iter().map(|n| *n as u128).sum::<u128>().max(1),
        }
    }

    /// Strictly better than `b` for contact `c` under the strategy (no id
    /// tie-break).
    fn beats(&self, b: &MAgent, pick: Pick, required: &BTreeMap<String, u8>) -> bool {
        match pick {
            Pick::LongestIdle => self.idle_since < b.idle_since,
            Pick::RoundRobin => self.last_offer < b.last_offer,
            Pick::MostSkilled => {
                // The primary skill: required at the highest level, the
                // alphabetically first on ties.
                let Some(top) = required.values().max() else {
                    return self.idle_since < b.idle_since;
                };
                let primary = required.iter().find(|(_, l)| *l == top).map(|(s, _)| s);
                let level = |a: &MAgent| primary.and_then(|p| a.skills.get(p)).copied().unwrap_or(0);
                (level(self), b.idle_since) > (level(b), self.idle_since)
            }
            Pick::LeastLoaded => {
                let lhs = self.total_load() * b.total_capacity();
                let rhs = b.total_load() * self.total_capacity();
                lhs < rhs || (lhs == rhs && self.idle_since < b.idle_since)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum MTimer {
    /// Offer expiries fire before wrap-up ends due at the same time.
    Expiry {
        conv: String,
        serial: u64,
    },
    WrapEnd {
        agent: String,
        serial: u64,
    },
}

/// What the model expects the engine to say about an input.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// `Err(BadMessage)`.
    Refused,
    /// Accepted and opened a contact for this conversation.
    Opened(String),
    Done,
}

#[derive(Debug, Clone)]
struct Model {
    agents: BTreeMap<String, MAgent>,
    /// Open contacts by conversation (one open contact per conversation).
    contacts: BTreeMap<String, MContact>,
    /// Every conversation seen: its channel and latest contact id.
    conversations: BTreeMap<String, (Channel, String)>,
    timers: BTreeSet<(DateTime<Utc>, MTimer)>,
    serial: u64,
    /// Offers made so far: the `round_robin` sequence.
    offers: u64,
    /// Per customer: who completed their last contact, and when.
    served: BTreeMap<String, (String, DateTime<Utc>)>,
}

impl Model {
    fn new(now: DateTime<Utc>) -> Model {
        let agents = ROSTER
            .iter()
            .map(|a| {
                let agent = MAgent {
                    skills: a.skills.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
                    capacity: a.capacity,
                    status: a.status,
                    load: [0; 4],
                    idle_since: now,
                    missed: 0,
                    last_offer: 0,
                    units: a.units,
                    wrap_ups: Vec::new(),
                };
                (a.id.to_string(), agent)
            })
            .collect();
        Model {
            agents,
            contacts: BTreeMap::new(),
            conversations: BTreeMap::new(),
            timers: BTreeSet::new(),
            serial: 0,
            offers: 0,
            served: BTreeMap::new(),
        }
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// The engine id of a conversation's latest contact (open or not).
    fn last_id(&self, conv: &str) -> String {
        self.conversations
            .get(conv)
            .map_or_else(|| "no-such-contact".to_string(), |(_, id)| id.clone())
    }

    fn place(m: &Msg) -> Option<(&'static QueueDef, u8, BTreeMap<String, u8>)> {
        let (q, rule_priority) = if let Some(name) = m.queue {
            let q = queue_def(name);
            if !q.takes(m.channel) {
                return None;
            }
            (q, None)
        } else if let Some((q, p)) = rules(m).into_iter().find_map(|(hit, name, p)| {
            let q = queue_def(name);
            (hit && q.takes(m.channel)).then_some((q, p))
        }) {
            (q, p)
        } else {
            (QUEUES.iter().find(|q| q.takes(m.channel))?, None)
        };
        let mut required: BTreeMap<String, u8> = q.skills.iter().map(|(s, l)| (s.to_string(), *l)).collect();
        for s in &m.skills {
            required.entry(s.to_string()).or_insert(1);
        }
        Some((q, m.priority.or(rule_priority).unwrap_or(q.priority), required))
    }

    /// Applies an input's own semantics (everything but the routing the
    /// engine does at its end, which arrives as offers).
    fn apply(&mut self, a: &Action, now: DateTime<Utc>) -> Expect {
        let known = |m: &Model, agent: &str| m.agents.contains_key(agent);
        match a {
            Action::Message(m) => {
                if self.contacts.contains_key(&m.conv) {
                    return Expect::Done; // a follow-up
                }
                let Some((queue, priority, required)) = Model::place(m) else {
                    return Expect::Refused;
                };
                let customer = customer_of(m);
                let preferred = self
                    .served
                    .get(&customer)
                    .filter(|(_, at)| *at >= now - Duration::milliseconds(LOOKBACK_MS))
                    .map(|(a, _)| a.clone());
                let c = MContact {
                    id: String::new(),
                    channel: m.channel,
                    queue,
                    priority,
                    required,
                    received_at: m.received_at.map_or(now, |at| at.min(now)),
                    state: Holding::Waiting,
                    declined_by: BTreeSet::new(),
                    customer,
                    preferred,
                };
                self.contacts.insert(m.conv.clone(), c);
                self.conversations.insert(m.conv.clone(), (m.channel, String::new()));
                Expect::Opened(m.conv.clone())
            }
            Action::End { conv, .. } => {
                match self.contacts.get(conv).map(|c| (c.state.clone(), c.channel)) {
                    None | Some((Holding::Assigned { .. }, _)) => {}
                    Some((Holding::Waiting, _)) => {
                        self.contacts.remove(conv);
                    }
                    Some((Holding::Offered { agent, .. }, ch)) => {
                        self.release(&agent, ch, now);
                        self.contacts.remove(conv);
                    }
                }
                Expect::Done
            }
            Action::Presence { agent, status } => {
                if !known(self, agent) {
                    return Expect::Refused;
                }
                self.set_presence(agent, *status, now);
                Expect::Done
            }
            Action::Accept { agent, conv } => {
                if !known(self, agent) {
                    return Expect::Refused;
                }
                if self.offered_to(conv, agent) {
                    if let Some(c) = self.contacts.get_mut(conv) {
                        c.state = Holding::Assigned { agent: agent.clone() };
                    }
                    self.agent_mut(agent).missed = 0;
                }
                Expect::Done
            }
            Action::Decline { agent, conv } => {
                if !known(self, agent) {
                    return Expect::Refused;
                }
                if self.offered_to(conv, agent) {
                    self.agent_mut(agent).missed = 0;
                    self.requeue(conv, agent, now);
                }
                Expect::Done
            }
            Action::Complete { agent, conv, wrap_ms } => {
                if !known(self, agent) {
                    return Expect::Refused;
                }
                let assigned = self
                    .contacts
                    .get(conv)
                    .is_some_and(|c| c.state == Holding::Assigned { agent: agent.clone() });
                if assigned {
                    let c = self.contacts.remove(conv).expect("assigned contact is open");
                    self.served.insert(c.customer, (agent.clone(), now));
                    let ch = c.channel;
                    match wrap_ms.filter(|ms| *ms > 0) {
                        Some(ms) => {
                            let serial = self.next_serial();
                            self.agent_mut(agent).wrap_ups.push((serial, ch));
                            let timer = MTimer::WrapEnd {
                                agent: agent.clone(),
                                serial,
                            };
                            self.timers.insert((now + Duration::milliseconds(ms), timer));
                        }
                        None => self.release(agent, ch, now),
                    }
                }
                Expect::Done
            }
            Action::Profile {
                agent,
                skills,
                capacity,
                units,
            } => {
                let a = self.agents.entry(agent.clone()).or_insert_with(|| MAgent {
                    skills: BTreeMap::new(),
                    capacity: [0; 4],
                    status: Presence::Offline,
                    load: [0; 4],
                    idle_since: now,
                    missed: 0,
                    last_offer: 0,
                    units: None,
                    wrap_ups: Vec::new(),
                });
                if let Some(s) = skills {
                    a.skills = s.iter().map(|(k, l)| (k.to_string(), *l)).collect();
                }
                if let Some(c) = capacity {
                    a.capacity = *c;
                }
                if let Some(u) = units {
                    a.units = (*u > 0).then_some(*u);
                }
                Expect::Done
            }
            Action::Tick => {
                while let Some((at, _)) = self.timers.first() {
                    if *at > now {
                        break;
                    }
                    let (_, timer) = self.timers.pop_first().expect("a timer is due");
                    match timer {
                        MTimer::Expiry { conv, serial } => self.expire(&conv, serial, now),
                        MTimer::WrapEnd { agent, serial } => {
                            let a = self.agent_mut(&agent);
                            let pos = a.wrap_ups.iter().position(|(s, _)| *s == serial);
                            let (_, ch) = a.wrap_ups.remove(pos.expect("wrap-up is held until its end"));
                            self.release(&agent, ch, now);
                        }
                    }
                }
                Expect::Done
            }
        }
    }

    fn agent_mut(&mut self, agent: &str) -> &mut MAgent {
        self.agents.get_mut(agent).expect("known agent")
    }

    fn offered_to(&self, conv: &str, agent: &str) -> bool {
        self.contacts
            .get(conv)
            .is_some_and(|c| matches!(&c.state, Holding::Offered { agent: x, .. } if x == agent))
    }

    fn release(&mut self, agent: &str, ch: Channel, now: DateTime<Utc>) {
        let a = self.agent_mut(agent);
        a.load[ch.index()] = a.load[ch.index()].saturating_sub(1);
        if a.total_load() == 0 && a.status == Presence::Available {
            a.idle_since = a.idle_since.max(now);
        }
    }

    /// Back to waiting with its original age; the agent declined it.
    fn requeue(&mut self, conv: &str, agent: &str, now: DateTime<Utc>) {
        let c = self.contacts.get_mut(conv).expect("requeued contact is open");
        c.state = Holding::Waiting;
        c.declined_by.insert(agent.to_string());
        let ch = c.channel;
        self.release(agent, ch, now);
    }

    fn set_presence(&mut self, agent: &str, status: Presence, now: DateTime<Utc>) {
        let a = self.agent_mut(agent);
        if a.status == status {
            return;
        }
        a.status = status;
        if status == Presence::Available {
            a.idle_since = now;
            a.missed = 0;
            return;
        }
        let offered: Vec<String> = self
            .contacts
            .iter()
            .filter(|(_, c)| matches!(&c.state, Holding::Offered { agent: x, .. } if x == agent))
            .map(|(conv, _)| conv.clone())
            .collect();
        for conv in offered {
            self.requeue(&conv, agent, now);
        }
    }

    fn expire(&mut self, conv: &str, serial: u64, now: DateTime<Utc>) {
        let agent = match self.contacts.get(conv).map(|c| &c.state) {
            Some(Holding::Offered { agent, serial: s, .. }) if *s == serial => agent.clone(),
            _ => return, // answered, withdrawn or closed since
        };
        self.requeue(conv, &agent, now);
        let a = self.agent_mut(&agent);
        a.missed += 1;
        if a.missed >= MAX_MISSED && a.status == Presence::Available {
            self.set_presence(&agent, Presence::Away, now);
        }
    }

    /// Could anyone take this contact now?
    fn servable(&self, c: &MContact, now: DateTime<Utc>) -> bool {
        self.agents.values().any(|a| a.can_take(c, now))
    }

    /// Checks 1–4 for one offer, before it is applied.
    fn check_offer(&self, o: &SeenOffer, now: DateTime<Utc>) -> Result<(), String> {
        let c = self.contacts.get(&o.conv).ok_or_else(|| {
            format!(
                "(1) offered {} of conversation {}, which is not open",
                o.contact_id, o.conv
            )
        })?;
        if c.id != o.contact_id {
            return Err(format!(
                "(6) offer names contact {} for conversation {}, whose open contact is {}",
                o.contact_id, o.conv, c.id
            ));
        }
        if c.state != Holding::Waiting {
            return Err(format!(
                "(1) offered {} to {} while it is {:?}",
                o.conv, o.agent, c.state
            ));
        }
        if let Some((conv, w)) = self
            .contacts
            .iter()
            .find(|(_, w)| w.state == Holding::Waiting && w.ahead_of(c, now) && self.servable(w, now))
        {
            return Err(format!(
                "(2) offered {} (priority {} now {}, received {}) while {conv} (priority {} now {}, received {}) waits and could be taken",
                o.conv, c.priority, c.effective(now), c.received_at, w.priority, w.effective(now), w.received_at
            ));
        }
        let a = self
            .agents
            .get(&o.agent)
            .ok_or_else(|| format!("(3) offer to unknown agent {}", o.agent))?;
        if !a.can_take(c, now) {
            return Err(format!(
                "(3) {} cannot take {}: agent {a:?}, contact requires {:?} on {}",
                o.agent, o.conv, c.required, c.channel
            ));
        }
        let fitting: Vec<(&String, &MAgent)> = self.agents.iter().filter(|(_, a)| a.can_take(c, now)).collect();
        let fresh: Vec<(&String, &MAgent)> = fitting
            .iter()
            .copied()
            .filter(|(id, _)| !c.declined_by.contains(*id))
            .collect();
        if !fresh.is_empty() && c.declined_by.contains(&o.agent) {
            let names: Vec<&String> = fresh.iter().map(|(id, _)| *id).collect();
            return Err(format!(
                "(4) offered {} to {}, who declined it, while {names:?} could take it",
                o.conv, o.agent
            ));
        }
        // Affinity: the customer's last agent first, when they can take it
        // and have not passed on it.
        if let Some(p) = c.preferred.as_ref().filter(|p| !c.declined_by.contains(*p)) {
            if fitting.iter().any(|(id, _)| *id == p) {
                if o.agent != *p {
                    return Err(format!(
                        "(4) offered {} to {}, but its customer's last agent {p} can take it",
                        o.conv, o.agent
                    ));
                }
                return self.check_expiry(o, c, now);
            }
        }
        let pool = if fresh.is_empty() { fitting } else { fresh };
        let (required, route) = c.relaxed(now);
        if let Some((id, b)) = pool.iter().find(|(_, b)| b.beats(a, route.pick, &required)) {
            return Err(format!(
                "(4) {:?} queue {} offered {} to {} (load {:?} of {:?}, idle since {}) but {id} is better (load {:?} of {:?}, idle since {})",
                route.pick, route.name, o.conv, o.agent, a.load, a.capacity, a.idle_since, b.load, b.capacity, b.idle_since
            ));
        }
        self.check_expiry(o, c, now)
    }

    fn check_expiry(&self, o: &SeenOffer, c: &MContact, now: DateTime<Utc>) -> Result<(), String> {
        let route = c.relaxed(now).1;
        if o.expires_at != now + route.timeout() {
            return Err(format!(
                "(4) offer of {} expires at {}, expected {} (queue {} timeout)",
                o.conv,
                o.expires_at,
                now + route.timeout(),
                route.name
            ));
        }
        Ok(())
    }

    fn offer(&mut self, conv: &str, agent: &str, now: DateTime<Utc>) {
        let serial = self.next_serial();
        let c = self.contacts.get_mut(conv).expect("offered contact is open");
        let expires = now + c.relaxed(now).1.timeout();
        c.state = Holding::Offered {
            agent: agent.to_string(),
            serial,
            expires,
        };
        let ch = c.channel;
        self.offers += 1;
        let seq = self.offers;
        let a = self.agent_mut(agent);
        a.load[ch.index()] += 1;
        a.idle_since = now;
        a.last_offer = seq;
        let timer = MTimer::Expiry {
            conv: conv.to_string(),
            serial,
        };
        self.timers.insert((expires, timer));
    }

    /// Check 5.
    fn check_work_conserving(&self, now: DateTime<Utc>) -> Result<(), String> {
        for (conv, c) in self.contacts.iter().filter(|(_, c)| c.state == Holding::Waiting) {
            if let Some((id, _)) = self.agents.iter().find(|(_, a)| a.can_take(c, now)) {
                return Err(format!("(5) {conv} waits although {id} could take it"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Comparing the engine with the model (checks 6 and 7), and two engines.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum StateView {
    Waiting,
    Offered(String),
    Assigned(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ContactView {
    id: String,
    channel: Channel,
    queue: String,
    priority: u8,
    required: BTreeMap<String, u8>,
    received_at: DateTime<Utc>,
    state: StateView,
    declined_by: BTreeSet<String>,
}

fn contact_view(c: &Contact) -> ContactView {
    ContactView {
        id: c.id.clone(),
        channel: c.channel,
        queue: c.queue.as_str().to_string(),
        priority: c.priority,
        required: c.required.iter().map(|(s, l)| (s.as_str().to_string(), *l)).collect(),
        received_at: c.received_at,
        state: match &c.state {
            ContactState::Waiting => StateView::Waiting,
            ContactState::Offered { agent, .. } => StateView::Offered(agent.as_str().to_string()),
            ContactState::Assigned { agent, .. } => StateView::Assigned(agent.as_str().to_string()),
        },
        declined_by: c.declined_by.iter().map(|a| a.as_str().to_string()).collect(),
    }
}

/// The engine's open contacts by conversation.
fn engine_contacts(e: &Engine) -> Result<BTreeMap<String, ContactView>, String> {
    let mut m = BTreeMap::new();
    for c in e.contacts() {
        if let Some(other) = m.insert(c.conversation_id.clone(), contact_view(c)) {
            return Err(format!(
                "(6) two open contacts for conversation {}: {} and {}",
                c.conversation_id, other.id, c.id
            ));
        }
    }
    Ok(m)
}

fn model_contacts(m: &Model) -> BTreeMap<String, ContactView> {
    m.contacts
        .iter()
        .map(|(conv, c)| {
            let view = ContactView {
                id: c.id.clone(),
                channel: c.channel,
                queue: c.queue.name.to_string(),
                priority: c.priority,
                required: c.required.clone(),
                received_at: c.received_at,
                state: match &c.state {
                    Holding::Waiting => StateView::Waiting,
                    Holding::Offered { agent, .. } => StateView::Offered(agent.clone()),
                    Holding::Assigned { agent } => StateView::Assigned(agent.clone()),
                },
                declined_by: c.declined_by.clone(),
            };
            (conv.clone(), view)
        })
        .collect()
}

/// An agent as check 7 sees it: the strategy keys only while available
/// (returning to available resets them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AgentView {
    status: Presence,
    load: [u32; 4],
    keys: Option<(DateTime<Utc>, u32)>,
    last_offer: u64,
    units: Option<u32>,
}

fn engine_agents(e: &Engine) -> BTreeMap<String, AgentView> {
    e.agents()
        .map(|a| {
            let view = AgentView {
                status: a.status,
                load: a.load,
                keys: (a.status == Presence::Available).then_some((a.idle_since, a.missed_offers)),
                last_offer: a.last_offer,
                units: a.units,
            };
            (a.id.as_str().to_string(), view)
        })
        .collect()
}

fn model_agents(m: &Model) -> BTreeMap<String, AgentView> {
    m.agents
        .iter()
        .map(|(id, a)| {
            let view = AgentView {
                status: a.status,
                load: a.load,
                keys: (a.status == Presence::Available).then_some((a.idle_since, a.missed)),
                last_offer: a.last_offer,
                units: a.units,
            };
            (id.clone(), view)
        })
        .collect()
}

/// Lists every key missing, extra or different between two maps.
fn diff<V: PartialEq + std::fmt::Debug>(
    what: &str,
    want: &BTreeMap<String, V>,
    got: &BTreeMap<String, V>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => problems.push(format!("{k} missing (expected {w:?})")),
            Some(g) if g != w => problems.push(format!("{k}: expected {w:?}, got {g:?}")),
            Some(_) => {}
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            problems.push(format!("{k} unexpected: {g:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}:\n  {}", problems.join("\n  ")))
    }
}

/// Checks 6 and 7.
fn check_engine_matches_model(e: &Engine, m: &Model) -> Result<(), String> {
    diff(
        "(6) open contacts by conversation",
        &model_contacts(m),
        &engine_contacts(e)?,
    )?;
    for (conv, c) in &m.contacts {
        if e.contact(&c.id).map(|x| x.conversation_id.as_str()) != Some(conv.as_str()) {
            return Err(format!("(6) contact({}) does not find the contact of {conv}", c.id));
        }
        if e.contact_for_conversation(conv).map(|x| x.id.as_str()) != Some(c.id.as_str()) {
            return Err(format!("(6) contact_for_conversation({conv}) is not {}", c.id));
        }
    }
    let waiting = m.contacts.values().filter(|c| c.state == Holding::Waiting).count();
    if e.waiting_len() != waiting {
        return Err(format!("(6) waiting_len() is {}, model has {waiting}", e.waiting_len()));
    }
    diff("(7) agents", &model_agents(m), &engine_agents(e))
}

/// Everything of an agent that routing depends on, for engine-vs-engine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FullAgent {
    status: Presence,
    load: [u32; 4],
    idle_since: DateTime<Utc>,
    missed: u32,
    skills: BTreeMap<String, u8>,
    capacity: [u32; 4],
    wrap_ups: Vec<(Channel, DateTime<Utc>)>,
}

fn full_agents(e: &Engine) -> BTreeMap<String, FullAgent> {
    e.agents()
        .map(|a: &Agent| {
            let mut wrap_ups: Vec<_> = a.wrap_ups.iter().map(|w| (w.channel, w.until)).collect();
            wrap_ups.sort();
            let view = FullAgent {
                status: a.status,
                load: a.load,
                idle_since: a.idle_since,
                missed: a.missed_offers,
                skills: a.skills.iter().map(|(s, l)| (s.as_str().to_string(), *l)).collect(),
                capacity: a.capacity,
                wrap_ups,
            };
            (a.id.as_str().to_string(), view)
        })
        .collect()
}

/// Same open contacts, states and agents. Ids are compared only when asked
/// (right after a restore): contacts opened later are named by each engine.
fn check_same_engines(want: &Engine, got: &Engine, with_ids: bool) -> Result<(), String> {
    let strip = |mut m: BTreeMap<String, ContactView>| {
        if !with_ids {
            m.values_mut().for_each(|c| c.id.clear());
        }
        m
    };
    diff(
        "contacts (original vs restored)",
        &strip(engine_contacts(want)?),
        &strip(engine_contacts(got)?),
    )?;
    diff("agents (original vs restored)", &full_agents(want), &full_agents(got))
}

// ---------------------------------------------------------------------------
// Random ops, resolved against the model into concrete actions.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Fields {
    channel: usize,
    queue: Option<usize>,
    priority: Option<u8>,
    /// Bit i: request `SKILLS[i]`.
    skills: u8,
    tier: usize,
    text: usize,
    received: Option<usize>,
}

#[derive(Debug, Clone)]
enum Op {
    Open(Fields),
    /// Another message on a conversation seen before (open or closed).
    FollowUp {
        nth: usize,
        fields: Fields,
    },
    Presence {
        agent: usize,
        status: Presence,
    },
    /// The holder accepts the nth offered contact.
    Accept {
        nth: usize,
    },
    /// The holder declines the nth offered contact.
    Decline {
        nth: usize,
    },
    /// The holder completes the nth assigned contact.
    Complete {
        nth: usize,
        wrap: usize,
    },
    /// An agent accepts (0), declines (1) or completes (2) the contact of
    /// any conversation seen, whoever holds it: mostly refused.
    Stray {
        agent: usize,
        kind: usize,
        nth: usize,
    },
    Profile {
        agent: usize,
        skills: Option<Vec<(usize, u8)>>,
        capacity: Option<[u32; 4]>,
        units: Option<u32>,
    },
    End {
        nth: usize,
    },
    Tick {
        ms: i64,
    },
}

/// An op after a pause of `gap_ms` (0 makes equal timestamps).
#[derive(Debug, Clone)]
struct Step {
    gap_ms: i64,
    op: Op,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        0..4usize,
        proptest::option::weighted(0.35, 0..QUEUES.len()),
        proptest::option::weighted(0.5, 0..10u8),
        prop_oneof![3 => Just(0u8), 2 => 0..16u8],
        0..TIERS.len(),
        0..TEXTS.len(),
        proptest::option::weighted(0.45, 0..RECEIVED_MS.len()),
    )
        .prop_map(|(channel, queue, priority, skills, tier, text, received)| Fields {
            channel,
            queue,
            priority,
            skills,
            tier,
            text,
            received,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        3 => Just(Presence::Available),
        1 => Just(Presence::Away),
        1 => Just(Presence::Offline),
    ];
    let tick = prop_oneof![
        3 => (0..7i64).prop_map(|n| n * 500),
        3 => (8..25i64).prop_map(|n| n * 500),
        1 => (40..121i64).prop_map(|n| n * 500),
    ];
    let profile = (
        0..AGENT_IDS.len(),
        proptest::option::of(proptest::collection::vec((0..SKILLS.len(), 1..=10u8), 0..4)),
        proptest::option::of(proptest::array::uniform4(0..4u32)),
        proptest::option::of(prop_oneof![Just(0u32), Just(40), Just(70), Just(100), Just(150)]),
    );
    prop_oneof![
        6 => fields().prop_map(Op::Open),
        1 => (0..64usize, fields()).prop_map(|(nth, fields)| Op::FollowUp { nth, fields }),
        2 => (0..AGENT_IDS.len(), status).prop_map(|(agent, status)| Op::Presence { agent, status }),
        3 => (0..16usize).prop_map(|nth| Op::Accept { nth }),
        1 => (0..16usize).prop_map(|nth| Op::Decline { nth }),
        3 => (0..16usize, 0..WRAPS_MS.len()).prop_map(|(nth, wrap)| Op::Complete { nth, wrap }),
        1 => (0..AGENT_IDS.len(), 0..3usize, 0..64usize).prop_map(|(agent, kind, nth)| Op::Stray { agent, kind, nth }),
        1 => profile.prop_map(|(agent, skills, capacity, units)| Op::Profile { agent, skills, capacity, units }),
        1 => (0..64usize).prop_map(|nth| Op::End { nth }),
        3 => tick.prop_map(|ms| Op::Tick { ms }),
    ]
}

fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            prop_oneof![2 => Just(0i64), 3 => Just(500i64), 1 => Just(1_000i64)],
            op(),
        )
            .prop_map(|(gap_ms, op)| Step { gap_ms, op }),
        1..max,
    )
}

fn nth<T: Clone>(items: impl Iterator<Item = T>, n: usize) -> Option<T> {
    let v: Vec<T> = items.collect();
    (!v.is_empty()).then(|| v[n % v.len()].clone())
}

/// An engine, the model tracking it, the clock and a replica of the
/// key-value bucket built from `take_changes()`.
struct Run {
    spec: Arc<RouterSpec>,
    engine: Engine,
    model: Model,
    now_ms: i64,
    /// Makes conversation and event ids unique across phases of a test.
    prefix: &'static str,
    next_id: u64,
    bucket: BTreeMap<String, Vec<u8>>,
}

impl Run {
    fn new() -> Run {
        let spec = router_spec();
        let mut engine = Engine::new(Arc::clone(&spec), t(0));
        let mut bucket = BTreeMap::new();
        for c in engine.take_changes() {
            if let Some(v) = c.value {
                bucket.insert(c.key, v);
            }
        }
        Run {
            spec,
            engine,
            model: Model::new(t(0)),
            now_ms: 0,
            prefix: "",
            next_id: 0,
            bucket,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        t(self.now_ms)
    }

    fn fresh_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}{kind}{}", self.prefix, self.next_id)
    }

    fn message(&mut self, f: &Fields, existing: Option<(String, Channel)>) -> Msg {
        let id = self.fresh_id("m");
        let (conv, channel) = existing.unwrap_or_else(|| (format!("{id}-conv"), Channel::ALL[f.channel]));
        Msg {
            id,
            conv,
            channel,
            queue: f.queue.map(|q| QUEUES[q].name),
            priority: f.priority,
            skills: (0..SKILLS.len())
                .filter(|i| f.skills & (1 << i) != 0)
                .map(|i| SKILLS[i])
                .collect(),
            tier: TIERS[f.tier],
            text: TEXTS[f.text],
            received_at: f.received.map(|i| t(RECEIVED_MS[i])),
        }
    }

    fn seen(&self, n: usize) -> Option<(String, Channel)> {
        nth(
            self.model
                .conversations
                .iter()
                .map(|(conv, (ch, _))| (conv.clone(), *ch)),
            n,
        )
    }

    /// Advances the clock and turns an op into an action, picking contacts
    /// from the model's view. `None`: nothing to do (no such contact).
    fn resolve(&mut self, s: &Step) -> Option<Action> {
        self.now_ms += s.gap_ms;
        let holders = |m: &Model, offered: bool| {
            m.contacts
                .iter()
                .filter_map(|(conv, c)| match &c.state {
                    Holding::Offered { agent, .. } if offered => Some((conv.clone(), agent.clone())),
                    Holding::Assigned { agent } if !offered => Some((conv.clone(), agent.clone())),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        Some(match &s.op {
            Op::Open(f) => Action::Message(self.message(f, None)),
            Op::FollowUp { nth, fields } => {
                let existing = self.seen(*nth);
                Action::Message(self.message(fields, existing))
            }
            Op::Presence { agent, status } => Action::Presence {
                agent: AGENT_IDS[*agent].to_string(),
                status: *status,
            },
            Op::Accept { nth: n } => {
                let (conv, agent) = nth(holders(&self.model, true).into_iter(), *n)?;
                Action::Accept { agent, conv }
            }
            Op::Decline { nth: n } => {
                let (conv, agent) = nth(holders(&self.model, true).into_iter(), *n)?;
                Action::Decline { agent, conv }
            }
            Op::Complete { nth: n, wrap } => {
                let (conv, agent) = nth(holders(&self.model, false).into_iter(), *n)?;
                Action::Complete {
                    agent,
                    conv,
                    wrap_ms: WRAPS_MS[*wrap],
                }
            }
            Op::Stray { agent, kind, nth } => {
                let (conv, _) = self.seen(*nth)?;
                let agent = AGENT_IDS[*agent].to_string();
                match kind {
                    0 => Action::Accept { agent, conv },
                    1 => Action::Decline { agent, conv },
                    _ => Action::Complete {
                        agent,
                        conv,
                        wrap_ms: None,
                    },
                }
            }
            Op::Profile {
                agent,
                skills,
                capacity,
                units,
            } => Action::Profile {
                units: *units,
                agent: AGENT_IDS[*agent].to_string(),
                skills: skills
                    .as_ref()
                    .map(|v| v.iter().map(|(s, l)| (SKILLS[*s], *l)).collect()),
                capacity: *capacity,
            },
            Op::End { nth } => {
                let (conv, channel) = self.seen(*nth)?;
                Action::End {
                    id: self.fresh_id("x"),
                    conv,
                    channel,
                }
            }
            Op::Tick { ms } => {
                self.now_ms += ms;
                Action::Tick
            }
        })
    }

    /// Feeds the engine and the model, checks every offer and the states
    /// after. Returns whether the engine accepted the input and its
    /// decisions, (conversation, agent) sorted.
    fn execute(&mut self, a: &Action) -> Result<(bool, Vec<(String, String)>), TestCaseError> {
        let now = self.now();
        let at = self.now_ms;
        let ctx = |msg: String| TestCaseError::fail(format!("at t+{at}ms after {a:?}:\n{msg}"));
        let target = a.conv().map(|conv| self.model.last_id(conv)).unwrap_or_default();
        let got = feed(&mut self.engine, a, &target, now);
        let expect = self.model.apply(a, now);
        if got.is_err() != (expect == Expect::Refused) {
            return Err(ctx(format!("engine said {got:?}, model expected {expect:?}")));
        }
        if let Expect::Opened(conv) = &expect {
            let id = self
                .engine
                .contact_for_conversation(conv)
                .map(|c| c.id.clone())
                .ok_or_else(|| ctx(format!("(6) the message opened no contact for {conv}")))?;
            self.model.contacts.get_mut(conv).expect("opened").id = id.clone();
            self.model.conversations.get_mut(conv).expect("seen").1 = id;
        }
        let out = self.engine.take_outputs();
        let offers = seen_offers(&out).map_err(ctx)?;
        let mut decisions = Vec::new();
        for o in &offers {
            self.model.check_offer(o, now).map_err(ctx)?;
            self.model.offer(&o.conv, &o.agent, now);
            decisions.push((o.conv.clone(), o.agent.clone()));
        }
        self.model.check_work_conserving(now).map_err(ctx)?;
        check_engine_matches_model(&self.engine, &self.model).map_err(ctx)?;
        for c in self.engine.take_changes() {
            match c.value {
                Some(v) => self.bucket.insert(c.key, v),
                None => self.bucket.remove(&c.key),
            };
        }
        decisions.sort();
        Ok((got.is_ok(), decisions))
    }

    fn run(&mut self, steps: &[Step]) -> Result<(), TestCaseError> {
        for s in steps {
            if let Some(a) = self.resolve(s) {
                self.execute(&a)?;
            }
        }
        Ok(())
    }

    /// The records the bucket replica holds, checked against the engine's
    /// live contacts and agents (a state change not persisted would be
    /// lost on restart), deserialised as the daemon does at start-up.
    /// Contacts, agents and customers' histories, as a restart reads them.
    #[allow(clippy::type_complexity)]
    fn snapshot(&self) -> Result<(Vec<Contact>, Vec<Agent>, Vec<(u128, History)>), String> {
        // Records by id, told apart by what they deserialise as (keys, and
        // any other kind of record, are the engine's business).
        let mut stored_contacts = BTreeMap::new();
        let mut stored_agents = BTreeMap::new();
        let mut customers = Vec::new();
        for (key, bytes) in &self.bucket {
            let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("record {key} is not JSON: {e}"))?;
            if let Some(k) = parse_record_key(key) {
                customers.push((
                    k,
                    serde_json::from_value(v).map_err(|e| format!("customer record: {e}"))?,
                ));
                continue;
            }
            if let Ok(c) = serde_json::from_value::<Contact>(v.clone()) {
                stored_contacts.insert(c.id, v);
            } else if let Ok(a) = serde_json::from_value::<Agent>(v.clone()) {
                stored_agents.insert(a.id.as_str().to_string(), v);
            }
        }
        let json = |v: serde_json::Result<Value>| v.expect("state serialises");
        let live_contacts: BTreeMap<String, Value> = self
            .engine
            .contacts()
            .map(|c| (c.id.clone(), json(serde_json::to_value(c))))
            .collect();
        let live_agents: BTreeMap<String, Value> = self
            .engine
            .agents()
            .map(|a| (a.id.as_str().to_string(), json(serde_json::to_value(a))))
            .collect();
        diff("persisted contacts (live vs bucket)", &live_contacts, &stored_contacts)?;
        diff("persisted agents (live vs bucket)", &live_agents, &stored_agents)?;
        let contacts = stored_contacts
            .into_values()
            .map(|v| serde_json::from_value::<Contact>(v).map_err(|e| format!("contact record: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let agents = stored_agents
            .into_values()
            .map(|v| serde_json::from_value::<Agent>(v).map_err(|e| format!("agent record: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((contacts, agents, customers))
    }
}

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Every decision the engine makes is one the model allows, and the two
    /// agree on every contact and agent after every input.
    #[test]
    fn engine_decisions_match_the_reference_model(ops in steps(80)) {
        let mut run = Run::new();
        run.run(&ops)?;
        // Let every offer and wrap-up in flight run out.
        run.now_ms += 120_000;
        run.execute(&Action::Tick)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// The same, over long runs where queues build up (dozens of contacts
    /// waiting, many timers in flight).
    #[test]
    fn long_runs_match_the_reference_model(ops in steps(400)) {
        let mut run = Run::new();
        run.run(&ops)?;
        run.now_ms += 120_000;
        run.execute(&Action::Tick)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// A restart from the persisted records loses nothing, and the restored
    /// engine then decides exactly as the one that never stopped.
    #[test]
    fn restart_preserves_every_contact(before in steps(60), after in steps(40)) {
        let mut run = Run::new();
        run.run(&before)?;
        let (contacts, agents, customers) = run.snapshot().map_err(TestCaseError::fail)?;
        let mut restored = Engine::restore(Arc::clone(&run.spec), contacts, agents, run.now());
        restored.restore_customers(customers);
        check_same_engines(&run.engine, &restored, true).map_err(TestCaseError::fail)?;
        run.prefix = "after-";
        for s in &after {
            let Some(a) = run.resolve(s) else { continue };
            let (accepted, decisions) = run.execute(&a)?;
            let target = a
                .conv()
                .and_then(|conv| restored.contact_for_conversation(conv))
                .map_or_else(|| "no-such-contact".to_string(), |c| c.id.clone());
            let got = feed(&mut restored, &a, &target, run.now());
            prop_assert_eq!(got.is_ok(), accepted, "restored engine on {:?}: {:?}", a, got);
            let mut theirs: Vec<(String, String)> = seen_offers(&restored.take_outputs())
                .map_err(TestCaseError::fail)?
                .into_iter()
                .map(|o| (o.conv, o.agent))
                .collect();
            theirs.sort();
            prop_assert_eq!(&decisions, &theirs, "offers after {:?}: original vs restored", a);
            restored.take_changes();
            check_same_engines(&run.engine, &restored, false)
                .map_err(|e| TestCaseError::fail(format!("after {a:?}: {e}")))?;
        }
    }
}

/// The contact-id bug the new engine fixes: the id derived from the event id
/// alone, so a reused event id in another conversation replaced the open
/// contact. (The daemon's dedupe window is long over by then; the engine
/// itself does not dedupe by event id.)
#[test]
fn event_id_reused_by_another_conversation_opens_a_new_contact() {
    let mut run = Run::new();
    let msg = |id: &str, conv: &str| Msg {
        id: id.into(),
        conv: conv.into(),
        channel: Channel::Email,
        queue: Some("general"),
        priority: None,
        skills: Vec::new(),
        tier: None,
        text: Some("hello"),
        received_at: None,
    };
    let e = &mut run.engine;
    e.on_inbound(&inbound_event(&msg("X", "conv-a")), t(0))
        .expect("opens A");
    let offer = seen_offers(&e.take_outputs())
        .expect("offers")
        .pop()
        .expect("A is offered");
    e.on_agent(
        &agent_event(&offer.agent, "accept", json!({"contact_id": offer.contact_id})),
        t(1_000),
    )
    .expect("accept");
    let a = e.contact_for_conversation("conv-a").expect("A is open").clone();
    assert!(matches!(&a.state, ContactState::Assigned { agent, .. } if agent.as_str() == offer.agent));

    e.on_inbound(&inbound_event(&msg("X", "conv-b")), t(90_000_000))
        .expect("opens B");
    let b = e.contact_for_conversation("conv-b").expect("B is open").clone();
    assert_ne!(b.id, a.id, "B is a new contact");
    let a_now = e.contact_for_conversation("conv-a").expect("A is still open");
    assert_eq!(a_now.conversation_id, "conv-a");
    assert_eq!((&a_now.id, &a_now.state), (&a.id, &a.state), "A untouched");
    assert_eq!(e.contact(&a.id).map(|c| c.conversation_id.as_str()), Some("conv-a"));
    assert_eq!(e.contact(&b.id).map(|c| c.conversation_id.as_str()), Some("conv-b"));
    assert_eq!(e.contacts().count(), 2, "both open");
    let held = e
        .contacts()
        .filter(|c| match contact_view(c).state {
            StateView::Offered(x) | StateView::Assigned(x) => x == offer.agent,
            StateView::Waiting => false,
        })
        .count() as u32;
    let load = e.agent(&offer.agent).expect("agent").load[Channel::Email.index()];
    assert_eq!(load, held, "{}'s load counts what they hold", offer.agent);
}

/// The checker is not vacuous: wrong decisions are refused.
#[test]
fn the_model_refuses_wrong_decisions() {
    let now = t(0);
    let mut m = Model::new(now);
    let open_on = |m: &mut Model, conv: &str, queue: &'static str, channel: Channel, priority: u8| {
        let f = Msg {
            id: conv.into(),
            conv: conv.into(),
            channel,
            queue: Some(queue),
            priority: Some(priority),
            skills: Vec::new(),
            tier: None,
            text: None,
            received_at: None,
        };
        assert_eq!(m.apply(&Action::Message(f), now), Expect::Opened(conv.into()));
        m.contacts.get_mut(conv).expect("open").id = format!("id-{conv}");
    };
    let open = |m: &mut Model, conv: &str, queue: &'static str, priority: u8| {
        open_on(m, conv, queue, Channel::Email, priority);
    };
    let offer = |conv: &str, agent: &str, at: DateTime<Utc>, timeout_ms: i64| SeenOffer {
        agent: agent.into(),
        contact_id: format!("id-{conv}"),
        conv: conv.into(),
        expires_at: at + Duration::milliseconds(timeout_ms),
    };
    // general (s >= 2, email): ana (s3), cai (s5), fay (s2) are available with
    // an email slot; dee is away.
    open(&mut m, "low", "general", 1);
    open(&mut m, "high", "general", 5);
    assert!(m.check_offer(&offer("high", "ana", now, 10_000), now).is_ok());
    assert!(
        m.check_offer(&offer("high", "fay", now, 10_000), now).is_ok(),
        "idle tie"
    );
    let err = |r: Result<(), String>| r.expect_err("a wrong decision");
    assert!(err(m.check_offer(&offer("low", "ana", now, 10_000), now)).starts_with("(2)"));
    assert!(err(m.check_offer(&offer("high", "dee", now, 10_000), now)).starts_with("(3)"));
    assert!(err(m.check_offer(&offer("high", "ben", now, 10_000), now)).starts_with("(3)"));
    assert!(err(m.check_offer(&offer("high", "ana", now, 9_000), now)).starts_with("(4)"));
    m.offer("high", "ana", t(500));
    let later = t(1_000);
    assert!(err(m.check_offer(&offer("high", "cai", later, 10_000), later)).starts_with("(1)"));
    // ana was offered last: cai and fay have been idle longer.
    assert!(err(m.check_offer(&offer("low", "ana", later, 10_000), later)).starts_with("(4)"));
    // A decliner only when nobody else fits.
    m.contacts
        .get_mut("low")
        .expect("open")
        .declined_by
        .insert("cai".into());
    assert!(err(m.check_offer(&offer("low", "cai", later, 10_000), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("low", "fay", later, 10_000), later).is_ok());
    // least_loaded on billing (billing >= 5, email): ana (6) at 1 of 3, cai (5) at 0 of 4.
    open(&mut m, "bill", "billing", 9);
    assert!(err(m.check_offer(&offer("bill", "ana", later, 6_000), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("bill", "cai", later, 6_000), later).is_ok());
    assert!(err(m.check_work_conserving(later)).starts_with("(5)"));
    // most_skilled on tech (tech >= 3, s >= 1, chat): ben (tech 4) beats cai
    // (tech 3), whatever their idle times.
    m.agent_mut("cai").idle_since = t(-5_000);
    open_on(&mut m, "fiber", "tech", Channel::Chat, 9);
    assert!(err(m.check_offer(&offer("fiber", "cai", later, 7_500), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("fiber", "ben", later, 7_500), later).is_ok());
    // round_robin on social (s >= 1): cai and fay were never offered anything;
    // once cai is, fay is next.
    open_on(&mut m, "dm1", "social", Channel::Social, 9);
    open_on(&mut m, "dm2", "social", Channel::Social, 9);
    assert!(m.check_offer(&offer("dm1", "cai", later, 4_000), later).is_ok());
    m.offer("dm1", "cai", later);
    assert!(err(m.check_offer(&offer("dm2", "cai", later, 4_000), later)).starts_with("(3)"));
    m.agent_mut("cai").capacity[Channel::Social.index()] = 2;
    assert!(err(m.check_offer(&offer("dm2", "cai", later, 4_000), later)).starts_with("(4)"));
    assert!(m.check_offer(&offer("dm2", "fay", later, 4_000), later).is_ok());
}
