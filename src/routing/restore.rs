//! Building the engine from persisted records: agents, contacts and queues
//! put into their slots, loads, indexes and timers derived from the
//! records (nothing of that is persisted), records from older releases
//! carried over.

use super::*;

impl Engine {
    /// Rebuilds the engine from persisted records. The roster fills in agents
    /// never seen and refreshes those no `profile` event has changed; loads,
    /// the indexes and every timer are derived from the records.
    /// Nothing is offered until [`Engine::route_waiting`].
    pub fn restore(spec: Arc<RouterSpec>, contacts: Vec<Contact>, agents: Vec<Agent>, now: DateTime<Utc>) -> Engine {
        Engine::restore_with_queues(spec, contacts, agents, Vec::new(), now)
    }

    /// [`Engine::restore`] with the queues' `queue.<name>` records, applied
    /// before any contact is filed (an early relaxation step at the restart
    /// is predicted from the pace). A record of a queue no longer configured
    /// is deleted; one that does not make sense (a negative or non-finite
    /// pace) is ignored, and the pace is measured again.
    pub fn restore_with_queues(
        spec: Arc<RouterSpec>,
        contacts: Vec<Contact>,
        agents: Vec<Agent>,
        queues: Vec<(String, QueuePace)>,
        now: DateTime<Utc>,
    ) -> Engine {
        let mut e = Engine {
            spec: Arc::clone(&spec),
            contacts: slab::Slab::default(),
            lookup: super::lookup::ContactLookup::with_capacity(contacts.len()),
            agents: Vec::new(),
            agent_ix: map_with(spec.agents.len()),
            skill_ix: map_with(0),
            skill_names: Vec::new(),
            free: AgentIndex::new(
                spec.queues.values().map(|q| q.strategy),
                spec.queues.values().any(|q| q.skills.is_empty()),
            ),
            waiting: WaitIndex::default(),
            timers: Timers::default(),
            ages: Timers::default(),
            relax_cache: map_with(0),
            relax_cache_cap: spec.queues.values().map(|q| q.relax.len()).sum::<usize>() * super::RELAX_CACHE_WIDTH,
            placed_needs: Default::default(),
            queues: Vec::with_capacity(spec.queue_order.len()),
            queue_ix: map_with(spec.queue_order.len()),
            changed_queues: Vec::new(),
            warned_policies: BTreeSet::new(),
            excused_until: None,
            offers_from: None,
            sent: None,
            by_status: [0; 3],
            pending_agents: Vec::new(),
            stale_agents: Vec::new(),
            ages_new: Vec::new(),
            unfiled: Vec::new(),
            pending_contacts: BTreeSet::new(),
            work: Work::default(),
            offer_seq: 0,
            dirty_contacts: Vec::new(),
            closed_contacts: Vec::new(),
            restoring: true,
            dirty_agents: Vec::new(),
            dirty_queues: Vec::new(),
            dropped_queues: Vec::new(),
            // Sized once, when used (the map grows as it fills otherwise).
            customers: match spec.affinity.lookback_ms {
                Some(_) => super::customers::Customers::with_capacity(spec.affinity.max_customers),
                None => Default::default(),
            },
            out: Vec::new(),
            ids: super::outputs::Ids::seeded(),
        };
        for q in &spec.queue_order {
            e.queue_slot(q);
        }
        for (name, p) in queues {
            let slot = QueueName::try_from(name.clone())
                .ok()
                .and_then(|n| e.queue_ix.get(&n).copied())
                .and_then(|q| e.queues.get_mut(q as usize));
            let Some(slot) = slot else {
                e.dropped_queues.push(name);
                continue;
            };
            if p.pace_ms.is_none_or(|ms| ms.is_finite() && ms >= 0.0) {
                slot.pace_ms = p.pace_ms;
            }
        }
        e.waiting.advance(now);
        for q in 0..e.queues.len() as u32 {
            e.keep_hours(q, now);
        }
        // Agents in id order, so slots (and nothing else) follow the records.
        let mut by_id: BTreeMap<AgentId, Agent> = agents.into_iter().map(|a| (a.id.clone(), a)).collect();
        // Agents whose records the configuration changed or added.
        let mut changed: BTreeSet<AgentId> = BTreeSet::new();
        for a in &spec.agents {
            match by_id.get_mut(&a.id) {
                Some(have) if have.profile_from_event => {}
                Some(have) => {
                    if have.name != a.name
                        || have.skills != a.skills
                        || have.capacity != a.capacity
                        || have.units != a.units
                    {
                        have.name = a.name.clone();
                        have.skills = a.skills.clone();
                        have.capacity = a.capacity;
                        have.units = a.units;
                        changed.insert(a.id.clone());
                    }
                }
                None => {
                    changed.insert(a.id.clone());
                    by_id.insert(
                        a.id.clone(),
                        Agent {
                            id: a.id.clone(),
                            name: a.name.clone(),
                            skills: a.skills.clone(),
                            capacity: a.capacity,
                            status: a.initial_status,
                            idle_since: now,
                            missed_offers: 0,
                            wrap_ups: Vec::new(),
                            profile_from_event: false,
                            last_offer: 0,
                            units: a.units,
                            weights: Default::default(),
                            load: [0; 4],
                        },
                    );
                }
            }
        }
        for (_, mut a) in by_id {
            a.load = [0; 4];
            for w in &a.wrap_ups {
                a.load[w.channel.index()] += 1;
            }
            let dirty = changed.contains(&a.id);
            let ax = e.push_agent(a);
            if dirty {
                e.dirty_agents.push(ax);
            }
            let wraps: BTreeSet<DateTime<Utc>> = e.agents[ax as usize].a.wrap_ups.iter().map(|w| w.until).collect();
            for until in wraps {
                e.timers.insert(until, Timer::WrapUpEnd(ax));
            }
        }
        let mut shared_policies: std::collections::HashSet<super::spec::PolicyName> = Default::default();
        for mut c in contacts {
            let mut repaired = false;
            // A contact held by an agent that no longer exists goes back to
            // the queue rather than being lost (a ring group's offer stays
            // with the members that still exist).
            if c.offers().iter().any(|(a, _)| !e.agent_ix.contains_key(a)) {
                let left: Vec<_> = c
                    .offers()
                    .into_iter()
                    .filter(|(a, _)| e.agent_ix.contains_key(a))
                    .collect();
                if let (
                    ContactState::Offered {
                        agent, offer_id, ring, ..
                    },
                    Some(first),
                ) = (&mut c.state, left.first())
                {
                    (*agent, *offer_id) = first.clone();
                    *ring = left[1..]
                        .iter()
                        .map(|(agent, offer_id)| model::RingOffer {
                            agent: agent.clone(),
                            offer_id: offer_id.clone(),
                        })
                        .collect();
                } else {
                    c.state = ContactState::Waiting;
                }
                repaired = true;
            }
            if c.agent().is_some_and(|a| !e.agent_ix.contains_key(a)) {
                c.state = ContactState::Waiting;
                repaired = true;
            }
            if !e.spec.queues.contains_key(&c.queue) {
                tracing::warn!(contact_id = %c.id, queue = %c.queue, "Contact's queue is no longer configured; it stays in it until routed.");
            }
            if e.contact_slot_of(&c.id).is_some() {
                tracing::warn!(contact_id = %c.id, "Duplicate contact record ignored.");
                continue;
            }
            // A record from before SLA clocks: its first-response clock ran
            // from `received_at` unless answered or ended; it keeps the
            // thresholds it fired.
            let legacy = std::mem::take(&mut c.sla_fired);
            if c.clocks.is_empty() && c.responded_at.is_none() && !c.customer_ended {
                let runs = e
                    .spec
                    .policy(c.sla_policy.as_deref())
                    .and_then(|(p, _)| p.target(crate::sla::ClockKind::FirstResponse, c.channel));
                if runs.is_some() {
                    let mut k = crate::sla::SlaClock::start(crate::sla::ClockKind::FirstResponse, 0, c.received_at);
                    k.fired = legacy;
                    c.clocks.push(k);
                }
            }
            // Restored contacts share one copy of each configured policy
            // name among themselves (a record read back has its own);
            // names no longer configured are kept as read, so the set is
            // bounded by the configuration.
            if let Some(name) = c.sla_policy.take() {
                c.sla_policy = Some(match shared_policies.get(&*name) {
                    Some(shared) => Arc::clone(shared),
                    None if e.spec.policies.contains_key(&*name) => {
                        shared_policies.insert(Arc::clone(&name));
                        name
                    }
                    None => name,
                });
            }
            let cx = e.push_contact(c);
            if repaired {
                e.dirty_contacts.push(cx);
            }
            e.restore_step(cx);
            let Some(slot) = e.contacts.get(cx) else {
                continue;
            };
            let channel = slot.c.channel;
            let holders: Vec<AgentId> = match &slot.c.state {
                ContactState::Waiting => Vec::new(),
                ContactState::Offered { expires_at, .. } => {
                    e.timers.insert(*expires_at, Timer::OfferExpiry(cx));
                    slot.c.offers().into_iter().map(|(a, _)| a).collect()
                }
                ContactState::Assigned { agent, .. } => vec![agent.clone()],
            };
            let holders: Vec<u32> = holders.iter().filter_map(|a| e.agent_ix.get(a).copied()).collect();
            if holders.is_empty() {
                e.enqueue(cx, now);
            }
            // Loads only: agents enter the free index once, below.
            for ax in holders {
                let a = &mut e.agents[ax as usize];
                a.holding.push(cx);
                a.a.load[channel.index()] += 1;
            }
            e.schedule_sla(cx);
        }
        e.restoring = false;
        // In slot order, not key order: the lists are sorted once at the end.
        e.free.begin_bulk();
        for ax in 0..e.agents.len() as u32 {
            e.reindex(ax);
            e.pending_agents.push(ax);
        }
        e.free.end_bulk();
        e
    }

    /// Adds an agent record (not yet in the free index) and returns its slot.
    pub(super) fn push_agent(&mut self, mut a: Agent) -> u32 {
        self.offer_seq = self.offer_seq.max(a.last_offer);
        a.weights = self.spec.units;
        let skills = self.intern(&a.skills);
        self.free.add_holder(&skills);
        self.by_status[status_ix(a.status)] += 1;
        let ax = self.agents.len() as u32;
        self.agent_ix.insert(a.id.clone(), ax);
        self.agents.push(AgentSlot {
            tie: tie_hash(a.id.as_str()),
            a,
            skills,
            entry: None,
            reserved: BTreeSet::new(),
            holding: smallvec::SmallVec::new(),
        });
        ax
    }

    /// Adds an open contact (not yet filed or held) and returns its slot.
    pub(super) fn push_contact(&mut self, c: Contact) -> u32 {
        let q = self.queue_slot(&c.queue);
        self.push_contact_to(c, q)
    }

    /// [`Self::push_contact`] when the caller holds the slot of `c.queue`.
    pub(super) fn push_contact_to(&mut self, c: Contact, q: u32) -> u32 {
        debug_assert_eq!(self.queues.get(q as usize).map(|s| &s.name), Some(&c.queue));
        let mut c = c;
        let skills = self.intern(&c.required);
        let need = self.placed_need(skills, &mut c.required);
        let slot = ContactSlot {
            q,
            tie: tie_hash(&c.id),
            placed: Arc::clone(&need),
            need,
            class: None,
            unfiled: false,
            sla_at: None,
            at_risk: false,
            eff: 0,
            relax_at: None,
            age_at: None,
            age_new: false,
            ages_in_index: !self.queues.get(q as usize).is_some_and(|q| q.order_by_slack),
            step: 0,
            held: false,
            reserved: None,
            route_q: q,
            order_at: super::agents::nanos(c.received_at),
            c,
        };
        let cx = self.contacts.put(slot);
        self.lookup.insert(&self.contacts, cx);
        cx
    }

    /// The slot of a queue, added (with the defaults) if it is not configured.
    pub(super) fn queue_slot(&mut self, name: &QueueName) -> u32 {
        if let Some(q) = self.queue_ix.get(name) {
            return *q;
        }
        let spec = self.spec.queues.get(name);
        self.queues.push(QueueSlot {
            name: name.clone(),
            strategy: spec.map_or(Strategy::LongestIdle, |q| q.strategy),
            ring_size: spec.map_or(1, |q| q.ring_size),
            offer_timeout_secs: spec.and_then(|q| q.offer_timeout_secs),
            ageing: spec.map_or_else(Ageing::default, |q| q.ageing),
            relax_ms: spec.map_or_else(Default::default, |q| q.relax.iter().map(|r| r.after_ms).collect()),
            admission: spec.map(|q| q.admission.clone()).unwrap_or_default(),
            pace_ms: None,
            last_offer_at: None,
            backlog: false,
            hours: spec.and_then(|q| q.hours.clone()),
            open: true,
            members: BTreeSet::new(),
            closed_overflow: spec.and_then(|q| q.closed_overflow.clone()),
            order_by_slack: spec.is_some_and(|q| q.order_by_slack),
            relax_before_breach: spec.is_some_and(|q| q.relax_before_breach),
            waiting: 0,
            at_risk: 0,
            changed: false,
        });
        let q = (self.queues.len() - 1) as u32;
        self.queue_ix.insert(name.clone(), q);
        q
    }

    /// The shared allocation of a requirement as placed (see
    /// `Engine::placed_needs`), made on first use; `required` (the same
    /// requirement by name) is replaced by the shared map when there is one.
    pub(super) fn placed_need(&mut self, skills: Skills, required: &mut Arc<BTreeMap<SkillName, SkillLevel>>) -> Need {
        if let Some((need, shared)) = self.placed_needs.get_key_value(&skills[..]) {
            *required = Arc::clone(shared);
            return Arc::clone(need);
        }
        let need = Need::from(skills);
        self.placed_needs.insert(Arc::clone(&need), Arc::clone(required));
        need
    }

    /// Lets a closed contact's requirement as placed go: dropped from
    /// `placed_needs` when nothing but that set holds it any more (no other
    /// open contact, no relaxation cached for it).
    pub(super) fn release_placed_need(&mut self, placed: Need) {
        // Two holders: `placed` itself and the set.
        if Arc::strong_count(&placed) == 2 {
            self.placed_needs.remove(&placed[..]);
        }
    }

    /// Refuses an input that would make the router know more than
    /// [`super::MAX_SKILL_NAMES`] distinct skills (each costs index entries
    /// kept for the life of the process); costs the names given.
    pub(super) fn admit_skills<'a>(
        &self,
        names: impl Iterator<Item = &'a SkillName>,
    ) -> Result<(), crate::domain::wire::BadMessage> {
        let mut new = names.filter(|n| !self.skill_ix.contains_key(*n)).peekable();
        let Some(first) = new.peek().copied() else {
            return Ok(());
        };
        let n = self.skill_names.len() + new.count();
        if n > super::MAX_SKILL_NAMES {
            return Err(crate::domain::wire::BadMessage(format!(
                "skill {first} would make {n} distinct skills; the router keeps at most {} (those of the configuration and of every event so far)",
                super::MAX_SKILL_NAMES
            )));
        }
        Ok(())
    }

    pub(super) fn intern(&mut self, skills: &BTreeMap<SkillName, SkillLevel>) -> Skills {
        let mut v: Skills = skills
            .iter()
            .map(|(name, l)| {
                let ix = match self.skill_ix.get(name) {
                    Some(ix) => *ix,
                    None => {
                        let ix = self.skill_names.len() as SkillIx;
                        self.skill_ix.insert(name.clone(), ix);
                        self.skill_names.push(name.clone());
                        ix
                    }
                };
                (ix, *l)
            })
            .collect();
        v.sort_unstable();
        v
    }
}
