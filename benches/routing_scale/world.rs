//! The deterministic inputs: the roster, queues and specs of one size,
//! and the stream of new contacts.

use super::*;

// ----- deterministic input -----

/// splitmix64.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

pub(crate) struct World {
    pub(crate) spec: Arc<RouterSpec>,
    pub(crate) total_capacity: u64,
    /// Capacity of agents who fit at least one queue: what saturation can fill.
    pub(crate) reachable_capacity: u64,
}

pub(crate) fn build_world(p: &Params, rng: &mut Rng) -> World {
    let skills: Vec<SkillName> = (0..SKILLS)
        .map(|i| SkillName::try_from(format!("s{i:02}")).expect("skill name"))
        .collect();
    let mut channels = [false; 4];
    channels[Channel::Chat.index()] = true;
    channels[Channel::Email.index()] = true;
    let mut queues = BTreeMap::new();
    let mut queue_order = Vec::with_capacity(p.queues);
    let all_week: BTreeMap<String, Vec<String>> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| (d.to_string(), vec!["06:00-23:30".to_string()]))
        .collect();
    let hours = Arc::new(Calendar::parse("calendars.bench", "Europe/Madrid", &all_week, &[]).expect("calendar"));
    let mut min_level = [SkillLevel::MAX; SKILLS];
    for q in 0..p.queues {
        let name = QueueName::try_from(format!("q{q:04}")).expect("queue name");
        let skill = q % SKILLS;
        let level = rng.between(1, 5) as SkillLevel;
        min_level[skill] = min_level[skill].min(level);
        queues.insert(
            name.clone(),
            QueueSpec {
                name: name.clone(),
                channels,
                skills: Arc::new(BTreeMap::from([(skills[skill].clone(), level)])),
                priority: rng.between(0, 9) as u8,
                sla_policy: Some("std".into()),
                strategy: p.strategies[q % p.strategies.len()],
                ring_size: 3,
                offer_timeout_secs: Some(OFFER_TIMEOUT_SECS),
                ageing: if p.model {
                    model_ageing(p.ageing_ms)
                } else {
                    Default::default()
                },
                relax: if p.model {
                    vec![
                        RelaxStep {
                            after_ms: p.ageing_ms / 2,
                            skills: BTreeMap::from([(skills[skill].clone(), 1)]),
                            overflow: None,
                        },
                        RelaxStep {
                            after_ms: 3 * p.ageing_ms / 2,
                            skills: BTreeMap::new(),
                            overflow: Some(
                                QueueName::try_from(format!("q{:04}", (q + 1) % p.queues)).expect("queue name"),
                            ),
                        },
                    ]
                } else {
                    Vec::new()
                },
                admission: Default::default(),
                hours: p.model.then(|| Arc::clone(&hours)),
                closed_overflow: None,
                order_by_slack: false,
                relax_before_breach: false,
            },
        );
        queue_order.push(name);
    }
    let mut first_response_secs = [None; 4];
    first_response_secs[Channel::Chat.index()] = Some(3_600.0);
    first_response_secs[Channel::Email.index()] = Some(86_400.0);
    let mut policy = SlaPolicy::first_response("std", first_response_secs, vec![0.5, 0.75, 0.9]);
    if p.model {
        // Queue wait and resolution clocks too (none due within the run).
        policy.targets[ClockKind::QueueWait.index()] = first_response_secs;
        policy.targets[ClockKind::Resolution.index()] = first_response_secs.map(|t| t.map(|t| 2.0 * t));
    }
    let policies = BTreeMap::from([("std".to_string(), policy)]);
    let mut agents = Vec::with_capacity(p.agents);
    let (mut total_capacity, mut reachable_capacity) = (0u64, 0u64);
    for a in 0..p.agents {
        let n = rng.between(3, 4) as usize;
        let mut picked: BTreeMap<usize, SkillLevel> = BTreeMap::new();
        while picked.len() < n {
            let s = rng.below(SKILLS);
            let level = rng.between(1, 10) as SkillLevel;
            picked.entry(s).or_insert(level);
        }
        let mut capacity = [0u32; 4];
        capacity[Channel::Chat.index()] = rng.between(1, 3) as u32;
        capacity[Channel::Email.index()] = rng.between(1, 4) as u32;
        let cap: u64 = capacity.iter().map(|c| *c as u64).sum();
        total_capacity += cap;
        if picked.iter().any(|(s, l)| *l >= min_level[*s]) {
            reachable_capacity += cap;
        }
        let id = AgentId::try_from(format!("a{a:06}")).expect("agent id");
        agents.push(AgentSpec {
            name: format!("Agent {a}"),
            id,
            skills: picked.into_iter().map(|(s, l)| (skills[s].clone(), l)).collect(),
            capacity,
            units: p.units,
            initial_status: Presence::Available,
        });
    }
    let spec = RouterSpec {
        queues: queues.into_iter().collect(),
        queue_order,
        rules: Vec::new(),
        policies,
        agents,
        offer_timeout_secs: OFFER_TIMEOUT_SECS,
        channel_offer_timeout_secs: [None; 4],
        channel_wrap_up_secs: [None; 4],
        max_missed_offers: MAX_MISSED_OFFERS,
        units: Units {
            interruptible: [true, false, false, false],
            ..Units::default()
        },
        sla_rules: Vec::new(),
        default_sla_policy: None,
        affinity: if p.model {
            Affinity {
                lookback_ms: Some(3_600_000),
                wait_ms: Some(5_000),
                ..Affinity::default()
            }
        } else {
            Affinity::default()
        },
    };
    World {
        spec: Arc::new(spec),
        total_capacity,
        reachable_capacity,
    }
}

pub(crate) const TIERS: [&str; 3] = ["gold", "silver", "standard"];
pub(crate) const LANGUAGES: [&str; 4] = ["en", "de", "fr", "es-MX"];
pub(crate) const TEXTS: [&str; 4] = [
    "Hello, my parcel has not arrived yet; could you check it?",
    "I was charged twice for the same order, please refund one.",
    "How do I change the delivery address of my open order?",
    "The app logs me out every time I open the payment screen.",
];

/// Inbound `message` events for new conversations.
pub(crate) struct ContactSource {
    pub(crate) rng: Rng,
    pub(crate) queues: usize,
    /// Customers drawn from; few enough with `--model full` that they return.
    pub(crate) customers: usize,
    pub(crate) next: u64,
    /// Bytes of subject, text and customer strings put in so far.
    pub(crate) content_bytes: u64,
}

impl ContactSource {
    pub(crate) fn next_event(&mut self) -> InboundEvent {
        let i = self.next;
        self.next += 1;
        let queue = format!("q{:04}", self.rng.below(self.queues));
        let channel = if self.rng.next() & 1 == 0 { "chat" } else { "email" };
        let priority = self.rng.below(10);
        let subject = format!("Question about order {i:08}");
        let text = TEXTS[self.rng.below(TEXTS.len())];
        let customer = format!("cust-{:07}", self.rng.below(self.customers));
        let tier = TIERS[self.rng.below(TIERS.len())];
        let language = LANGUAGES[self.rng.below(LANGUAGES.len())];
        self.content_bytes += (subject.len() + text.len() + customer.len() + tier.len() + language.len()) as u64;
        let payload = json!({
            "v": 1, "id": format!("m-{i:09}"), "type": "message", "channel": channel,
            "conversation_id": format!("conv-{i:09}"), "queue": queue, "priority": priority,
            "customer": {"id": customer, "tier": tier, "language": language},
            "subject": subject, "text": text,
        });
        decode_inbound(channel, payload.to_string().as_bytes()).expect("generated inbound event decodes")
    }
}
