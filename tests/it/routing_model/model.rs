//! The reference model: plain maps, linear scans, the routing rules
//! restated (see the parent module).

use super::*;

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Holding {
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
pub(super) struct MContact {
    /// The engine's id, learned when the contact opened.
    pub(super) id: String,
    pub(super) channel: Channel,
    pub(super) queue: &'static QueueDef,
    pub(super) priority: u8,
    pub(super) required: BTreeMap<String, u8>,
    pub(super) received_at: DateTime<Utc>,
    pub(super) state: Holding,
    pub(super) declined_by: BTreeSet<String>,
    pub(super) customer: String,
    /// The agent who completed this customer's last contact, if within the
    /// lookback when this one opened (affinity).
    pub(super) preferred: Option<String>,
}

impl MContact {
    /// Priority in the waiting order at `now`: past the queue's
    /// `max_wait`, above every configured priority (10); else the priority
    /// plus one per ageing step waited, up to the cap (never below the
    /// contact's own priority).
    pub(super) fn effective(&self, now: DateTime<Utc>) -> u8 {
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
    pub(super) fn relaxed(&self, now: DateTime<Utc>) -> (BTreeMap<String, u8>, &'static QueueDef) {
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
    pub(super) fn ahead_of(&self, other: &MContact, now: DateTime<Utc>) -> bool {
        (self.effective(now), other.received_at) > (other.effective(now), self.received_at)
    }
}

#[derive(Debug, Clone)]
pub(super) struct MAgent {
    pub(super) skills: BTreeMap<String, u8>,
    pub(super) capacity: [u32; 4],
    pub(super) status: Presence,
    pub(super) load: [u32; 4],
    pub(super) idle_since: DateTime<Utc>,
    pub(super) missed: u32,
    /// Number of the agent's last offer among all the model saw (0: none).
    pub(super) last_offer: u64,
    pub(super) units: Option<u32>,
    /// (serial, channel) of wrap-ups holding a slot.
    pub(super) wrap_ups: Vec<(u64, Channel)>,
}

impl MAgent {
    /// Units held on every channel, or (`for_offer_on`) on those counted
    /// against an offer there: interruptible work does not count against
    /// an offer on a channel that is not.
    pub(super) fn units_used(&self, for_offer_on: Option<Channel>) -> u128 {
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
    pub(super) fn can_take(&self, c: &MContact, now: DateTime<Utc>) -> bool {
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
    pub(super) fn total_load(&self) -> u128 {
        match self.units {
            Some(_) => self.units_used(None),
            None => self.load.iter().map(|n| *n as u128).sum(),
        }
    }

    pub(super) fn total_capacity(&self) -> u128 {
        match self.units {
            Some(u) => (u as u128).max(1),
            None => self.capacity.iter().map(|n| *n as u128).sum::<u128>().max(1),
        }
    }

    /// Strictly better than `b` for contact `c` under the strategy (no id
    /// tie-break).
    pub(super) fn beats(&self, b: &MAgent, pick: Pick, required: &BTreeMap<String, u8>) -> bool {
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
pub(super) enum MTimer {
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
pub(super) enum Expect {
    /// `Err(BadMessage)`.
    Refused,
    /// Accepted and opened a contact for this conversation.
    Opened(String),
    Done,
}

#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) agents: BTreeMap<String, MAgent>,
    /// Open contacts by conversation (one open contact per conversation).
    pub(super) contacts: BTreeMap<String, MContact>,
    /// Every conversation seen: its channel and latest contact id.
    pub(super) conversations: BTreeMap<String, (Channel, String)>,
    pub(super) timers: BTreeSet<(DateTime<Utc>, MTimer)>,
    pub(super) serial: u64,
    /// Offers made so far: the `round_robin` sequence.
    pub(super) offers: u64,
    /// Per customer: who completed their last contact, and when.
    pub(super) served: BTreeMap<String, (String, DateTime<Utc>)>,
    /// Per conversation (thread): the same.
    pub(super) served_threads: BTreeMap<String, (String, DateTime<Utc>)>,
}

impl Model {
    pub(super) fn new(now: DateTime<Utc>) -> Model {
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
            served_threads: BTreeMap::new(),
        }
    }

    pub(super) fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// The engine id of a conversation's latest contact (open or not).
    pub(super) fn last_id(&self, conv: &str) -> String {
        self.conversations
            .get(conv)
            .map_or_else(|| "no-such-contact".to_string(), |(_, id)| id.clone())
    }

    pub(super) fn place(m: &Msg) -> Option<(&'static QueueDef, u8, BTreeMap<String, u8>)> {
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
    pub(super) fn apply(&mut self, a: &Action, now: DateTime<Utc>) -> Expect {
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
                // A reply in a known thread goes to that thread's agent
                // first, else the customer's last agent.
                let recent = |m: &BTreeMap<String, (String, DateTime<Utc>)>, k: &str| {
                    m.get(k)
                        .filter(|(_, at)| *at >= now - Duration::milliseconds(LOOKBACK_MS))
                        .map(|(a, _)| a.clone())
                };
                let preferred = recent(&self.served_threads, &m.conv).or_else(|| recent(&self.served, &customer));
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
                    self.served_threads.insert(conv.clone(), (agent.clone(), now));
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

    pub(super) fn agent_mut(&mut self, agent: &str) -> &mut MAgent {
        self.agents.get_mut(agent).expect("known agent")
    }

    pub(super) fn offered_to(&self, conv: &str, agent: &str) -> bool {
        self.contacts
            .get(conv)
            .is_some_and(|c| matches!(&c.state, Holding::Offered { agent: x, .. } if x == agent))
    }

    pub(super) fn release(&mut self, agent: &str, ch: Channel, now: DateTime<Utc>) {
        let a = self.agent_mut(agent);
        a.load[ch.index()] = a.load[ch.index()].saturating_sub(1);
        if a.total_load() == 0 && a.status == Presence::Available {
            a.idle_since = a.idle_since.max(now);
        }
    }

    /// Back to waiting with its original age; the agent declined it.
    pub(super) fn requeue(&mut self, conv: &str, agent: &str, now: DateTime<Utc>) {
        let c = self.contacts.get_mut(conv).expect("requeued contact is open");
        c.state = Holding::Waiting;
        c.declined_by.insert(agent.to_string());
        let ch = c.channel;
        self.release(agent, ch, now);
    }

    pub(super) fn set_presence(&mut self, agent: &str, status: Presence, now: DateTime<Utc>) {
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

    pub(super) fn expire(&mut self, conv: &str, serial: u64, now: DateTime<Utc>) {
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
    pub(super) fn servable(&self, c: &MContact, now: DateTime<Utc>) -> bool {
        self.agents.values().any(|a| a.can_take(c, now))
    }

    /// Checks 1–4 for one offer, before it is applied.
    pub(super) fn check_offer(&self, o: &SeenOffer, now: DateTime<Utc>) -> Result<(), String> {
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

    pub(super) fn check_expiry(&self, o: &SeenOffer, c: &MContact, now: DateTime<Utc>) -> Result<(), String> {
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

    pub(super) fn offer(&mut self, conv: &str, agent: &str, now: DateTime<Utc>) {
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
    pub(super) fn check_work_conserving(&self, now: DateTime<Utc>) -> Result<(), String> {
        for (conv, c) in self.contacts.iter().filter(|(_, c)| c.state == Holding::Waiting) {
            if let Some((id, _)) = self.agents.iter().find(|(_, a)| a.can_take(c, now)) {
                return Err(format!("(5) {conv} waits although {id} could take it"));
            }
        }
        Ok(())
    }
}
