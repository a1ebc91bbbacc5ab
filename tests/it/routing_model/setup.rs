//! The configuration as data (the model reads these tables, the engine
//! gets the TOML rendered from them) and the inputs both are fed.

use super::*;

// ---------------------------------------------------------------------------
// The configuration, as data: the model reads these tables, the engine gets
// the TOML rendered from them (plus the rules, written out next to the
// model's reading of them).
// ---------------------------------------------------------------------------

pub(super) const OFFER_TIMEOUT_MS: i64 = 10_000;
pub(super) const MAX_MISSED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    LongestIdle,
    LeastLoaded,
    RoundRobin,
    MostSkilled,
}

#[derive(Debug)]
pub(super) struct QueueDef {
    pub(super) name: &'static str,
    pub(super) channels: &'static [Channel],
    pub(super) skills: &'static [(&'static str, u8)],
    pub(super) priority: u8,
    pub(super) pick: Pick,
    pub(super) offer_timeout_ms: Option<i64>,
    pub(super) sla: bool,
    /// Ageing: (one priority step per ms, cap) and the starvation bound.
    pub(super) ageing: Option<(i64, u8)>,
    pub(super) max_wait_ms: Option<i64>,
    pub(super) relax: &'static [Relax],
}

/// A relaxation step: after `after_ms` waiting, route as `overflow`'s
/// contact (its skills plus those the contact asked for beyond its own
/// queue's), then set these levels (0 drops the skill).
#[derive(Debug)]
pub(super) struct Relax {
    pub(super) after_ms: i64,
    pub(super) skills: &'static [(&'static str, u8)],
    pub(super) overflow: Option<&'static str>,
}

impl QueueDef {
    pub(super) fn takes(&self, ch: Channel) -> bool {
        self.channels.contains(&ch)
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::milliseconds(self.offer_timeout_ms.unwrap_or(OFFER_TIMEOUT_MS))
    }
}

pub(super) const EVERY: &[Channel] = &Channel::ALL;

/// The first queue taking a channel is its fallback: `general` takes all.
pub(super) const QUEUES: &[QueueDef] = &[
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

pub(super) fn queue_def(name: &str) -> &'static QueueDef {
    QUEUES.iter().find(|q| q.name == name).expect("queue is in the table")
}

pub(super) const RULES_TOML: &str = r#"
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
pub(super) fn rules(m: &Msg) -> [(bool, &'static str, Option<u8>); 3] {
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

pub(super) struct AgentDef {
    pub(super) id: &'static str,
    pub(super) skills: &'static [(&'static str, u8)],
    /// email, chat, social, voice
    pub(super) capacity: [u32; 4],
    /// Weighted capacity budget; see [`UNIT_WEIGHTS`].
    pub(super) units: Option<u32>,
    pub(super) status: Presence,
}

/// `[routing.units]`: email, chat, social, voice; e-mail is interruptible.
pub(super) const UNIT_WEIGHTS: [u32; 4] = [20, 35, 35, 100];
pub(super) const INTERRUPTIBLE: [bool; 4] = [true, false, false, false];

pub(super) const ROSTER: &[AgentDef] = &[
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
pub(super) const AGENT_IDS: [&str; 8] = ["ana", "ben", "cai", "dee", "eve", "fay", "gus", "hal"];
pub(super) const SKILLS: [&str; 4] = ["s", "billing", "tech", "lang_es"];
pub(super) const TIERS: [Option<&str>; 3] = [None, Some("Gold"), Some("silver")];
pub(super) const TEXTS: [Option<&str>; 3] = [None, Some("hello"), Some("I want a REFUND please")];
/// Explicit `received_at` values (clamped to now by the engine): many
/// contacts share them, so equal wait keys are common.
pub(super) const RECEIVED_MS: [i64; 3] = [0, 1_500, 4_000];
pub(super) const WRAPS_MS: [Option<i64>; 5] = [None, Some(0), Some(2_500), Some(10_000), Some(40_000)];

pub(super) fn config_toml() -> String {
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

pub(super) fn router_spec() -> Arc<RouterSpec> {
    let cfg = Config::from_toml_with_env(&config_toml(), "routing_model", Vec::<(String, String)>::new())
        .expect("test config parses");
    Arc::new(cfg.validate().expect("test config is valid"))
}

pub(super) fn t(ms: i64) -> DateTime<Utc> {
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
pub(super) struct Msg {
    pub(super) id: String,
    pub(super) conv: String,
    pub(super) channel: Channel,
    pub(super) queue: Option<&'static str>,
    pub(super) priority: Option<u8>,
    pub(super) skills: Vec<&'static str>,
    pub(super) tier: Option<&'static str>,
    pub(super) text: Option<&'static str>,
    pub(super) received_at: Option<DateTime<Utc>>,
}

/// One concrete input. Contacts are named by conversation; each engine fed
/// the action looks up its own contact id.
#[derive(Debug, Clone)]
pub(super) enum Action {
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
    pub(super) fn conv(&self) -> Option<&str> {
        match self {
            Action::Accept { conv, .. } | Action::Decline { conv, .. } | Action::Complete { conv, .. } => Some(conv),
            _ => None,
        }
    }
}

/// The customer of a message: one per tier, so customers return often.
pub(super) fn customer_of(m: &Msg) -> String {
    format!("cust-{}", m.tier.unwrap_or("none").to_lowercase())
}

/// `[routing.affinity] lookback_secs`, in ms.
pub(super) const LOOKBACK_MS: i64 = 20_000;

pub(super) fn inbound_event(m: &Msg) -> InboundEvent {
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

pub(super) fn agent_event(agent: &str, ty: &str, mut body: Value) -> AgentEvent {
    body["v"] = json!(1);
    body["id"] = json!(format!("{agent}-{ty}"));
    body["type"] = json!(ty);
    body["agent_id"] = json!(agent);
    decode_agent(agent, ty, body.to_string().as_bytes()).expect("generated agent event is well-formed")
}

/// Feeds one action to an engine; `contact_id` is that engine's id for the
/// action's conversation. `Err` is the engine refusing the input.
pub(super) fn feed(e: &mut Engine, a: &Action, contact_id: &str, now: DateTime<Utc>) -> Result<(), String> {
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
pub(super) struct SeenOffer {
    pub(super) agent: String,
    pub(super) contact_id: String,
    pub(super) conv: String,
    pub(super) expires_at: DateTime<Utc>,
}

pub(super) fn seen_offers(out: &[Outbound]) -> Result<Vec<SeenOffer>, String> {
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
