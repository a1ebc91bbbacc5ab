//! Random ops, resolved against the model into concrete actions, and the
//! run that feeds them to the engine and the model in step.

use super::*;

// ---------------------------------------------------------------------------
// Random ops, resolved against the model into concrete actions.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) struct Fields {
    pub(super) channel: usize,
    pub(super) queue: Option<usize>,
    pub(super) priority: Option<u8>,
    /// Bit i: request `SKILLS[i]`.
    pub(super) skills: u8,
    pub(super) tier: usize,
    pub(super) text: usize,
    pub(super) received: Option<usize>,
}

#[derive(Debug, Clone)]
pub(super) enum Op {
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
pub(super) struct Step {
    pub(super) gap_ms: i64,
    pub(super) op: Op,
}

pub(super) fn fields() -> impl Strategy<Value = Fields> {
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

pub(super) fn op() -> impl Strategy<Value = Op> {
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

pub(super) fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            prop_oneof![2 => Just(0i64), 3 => Just(500i64), 1 => Just(1_000i64)],
            op(),
        )
            .prop_map(|(gap_ms, op)| Step { gap_ms, op }),
        1..max,
    )
}

pub(super) fn nth<T: Clone>(items: impl Iterator<Item = T>, n: usize) -> Option<T> {
    let v: Vec<T> = items.collect();
    (!v.is_empty()).then(|| v[n % v.len()].clone())
}

/// An engine, the model tracking it, the clock and a replica of the
/// key-value bucket built from `take_changes()`.
pub(super) struct Run {
    pub(super) spec: Arc<RouterSpec>,
    pub(super) engine: Engine,
    pub(super) model: Model,
    pub(super) now_ms: i64,
    /// Makes conversation and event ids unique across phases of a test.
    pub(super) prefix: &'static str,
    pub(super) next_id: u64,
    pub(super) bucket: BTreeMap<String, Vec<u8>>,
}

impl Run {
    pub(super) fn new() -> Run {
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

    pub(super) fn now(&self) -> DateTime<Utc> {
        t(self.now_ms)
    }

    pub(super) fn fresh_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}{kind}{}", self.prefix, self.next_id)
    }

    pub(super) fn message(&mut self, f: &Fields, existing: Option<(String, Channel)>) -> Msg {
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

    pub(super) fn seen(&self, n: usize) -> Option<(String, Channel)> {
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
    pub(super) fn resolve(&mut self, s: &Step) -> Option<Action> {
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
    pub(super) fn execute(&mut self, a: &Action) -> Result<(bool, Vec<(String, String)>), TestCaseError> {
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

    pub(super) fn run(&mut self, steps: &[Step]) -> Result<(), TestCaseError> {
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
    pub(super) fn snapshot(&self) -> Result<(Vec<Contact>, Vec<Agent>, Vec<(u128, History)>), String> {
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
