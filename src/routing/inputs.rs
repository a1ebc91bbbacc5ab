//! What each input does: inbound customer events, agent events and timer
//! ticks. Every entry point applies its change, then settles (offers what
//! the change made possible), and records the work it did.

use super::model::{clip, contact_id_for, secs_to_duration};
use super::timers::Timer;
use super::{
    Agent, Contact, ContactState, Engine, FollowUp, Outcome, Work, WrapUp, MAX_CONTACT_JSON_BYTES,
    MAX_PENDING_FOLLOW_UPS, MAX_SUBJECT_BYTES, MAX_TEXT_BYTES,
};
use crate::domain::wire::{self, AgentEvent, AgentEventBody, BadMessage, InboundEvent, InboundType};
use crate::domain::{AgentId, Presence};
use crate::sla::ClockKind;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

impl Engine {
    // Never inlined into a caller (whole-program LTO would): profiles and
    // scripts/bench-instructions.sh find the engine's entry points by name.
    #[inline(never)]
    pub fn on_inbound(&mut self, ev: &InboundEvent, now: DateTime<Utc>) -> Result<Outcome, BadMessage> {
        self.work = Work::default();
        let sent = self.sent.take();
        self.age_due(now);
        let existing = self.lookup.by_conversation(&self.contacts, &ev.conversation_id);
        let outcome = match (ev.kind, existing) {
            (InboundType::Message, Some(cx)) => Ok(self.follow_up(cx, ev, now)),
            (InboundType::Message, None) => self.open(ev, sent, now),
            (InboundType::End, None) => Ok(Outcome::Ignored("no open contact")),
            (InboundType::End, Some(cx)) => Ok(self.end(cx, now)),
        };
        // Even for a refused input: ageing may have relaxed a contact.
        self.settle(now);
        outcome
    }

    /// `sent`: when the event was sent, if the router said so: without
    /// `received_at`, the contact's clocks and age start then, not at the
    /// later time an input may be handled at (read after a later one).
    fn open(
        &mut self,
        ev: &InboundEvent,
        sent: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, BadMessage> {
        self.admit_skills(ev.skills.iter())?;
        let mut placement = self.spec.place(ev)?;
        // Admission control: a full queue sends the contact on to its
        // overflow queue (keeping priority and SLA policy), or refuses it.
        let mut from_queue = None;
        let mut q = self.queue_slot(&placement.queue);
        // A closed queue with a closed_overflow sends new contacts there.
        let slot = &self.queues[q as usize];
        if let Some(target) = slot.closed_overflow.as_ref().filter(|_| !slot.open).cloned() {
            if let Some(t) = self.spec.queues.get(&target) {
                placement.required = t.requirement(&ev.skills);
                from_queue = Some(std::mem::replace(&mut placement.queue, t.name.clone()));
                q = self.queue_slot(&placement.queue);
            }
        }
        if let Some(why) = self.full(q) {
            let over = self.queues[q as usize].admission.overflow.clone();
            let over = over.filter(|o| {
                let oq = self.queue_slot(o);
                self.full(oq).is_none()
            });
            let Some(target) = over.and_then(|o| self.spec.queues.get(&o)) else {
                tracing::info!(queue = %placement.queue, reason = %why, "Contact refused by admission control.");
                self.refused(ev, &placement.queue, &why, now);
                return Ok(Outcome::Ignored("queue full"));
            };
            placement.required = target.requirement(&ev.skills);
            let from = std::mem::replace(&mut placement.queue, target.name.clone());
            from_queue = from_queue.or(Some(from));
            q = self.queue_slot(&placement.queue);
        }
        let id = contact_id_for(&ev.conversation_id, &ev.id);
        if self.contact_slot_of(&id).is_some() {
            // Unreachable unless two open contacts share a conversation (a
            // duplicate record at restore): never overwrite an open contact.
            return Ok(Outcome::Ignored("contact already open"));
        }
        let received_at = ev.received_at.or(sent).map_or(now, |t| t.min(now));
        let c = Contact {
            id: id.clone(),
            conversation_id: ev.conversation_id.clone(),
            channel: ev.channel,
            queue: placement.queue.clone(),
            priority: placement.priority,
            customer: ev.customer.clone(),
            subject: clip(&ev.subject, MAX_SUBJECT_BYTES),
            text: clip(&ev.text, MAX_TEXT_BYTES),
            required: placement.required,
            received_at,
            state: ContactState::Waiting,
            responded_at: None,
            customer_ended: false,
            sla_policy: self.spec.select_policy(
                &placement.queue,
                ev.channel,
                ev.customer.tier.as_deref(),
                placement.priority,
                placement.sla_policy.as_ref(),
            ),
            sla_fired: Vec::new(),
            clocks: Vec::new(),
            next_response_runs: 0,
            declined_by: BTreeSet::new(),
            messages: 1,
            opened_by: ev.id.clone(),
            pending: Vec::new(),
            preferred_agent: self.returning_to(&ev.customer.id, &ev.conversation_id, now),
            relax_step: 0,
            kept: false,
        };
        let cx = self.push_contact_to(c, q);
        // Clocks first: a queue ordered by slack files it by its breach.
        self.start_clocks(cx);
        self.enqueue(cx, now);
        self.dirty_contacts.push(cx);
        self.queued_event(cx, now, from_queue.as_ref());
        // The SLA may already be overdue (an adapter that was down).
        if self.slot(cx).and_then(|s| s.sla_at).is_some_and(|at| at <= now) {
            self.cancel_sla(cx);
            self.fire_sla(cx, now);
        }
        Ok(Outcome::Opened {
            queue: placement.queue,
            contact_id: id,
        })
    }

    fn follow_up(&mut self, cx: u32, ev: &InboundEvent, now: DateTime<Utc>) -> Outcome {
        let Some(s) = self.slot_mut(cx) else {
            return Outcome::Ignored("stale conversation");
        };
        let c = &mut s.c;
        if c.opened_by == ev.id || c.pending.iter().any(|f| f.event_id == ev.id) {
            return Outcome::Ignored("already applied");
        }
        c.messages += 1;
        let f = FollowUp {
            event_id: ev.id.clone(),
            subject: clip(&ev.subject, MAX_SUBJECT_BYTES),
            text: clip(&ev.text, MAX_TEXT_BYTES),
            at: now,
        };
        match c.state.clone() {
            ContactState::Assigned { agent, .. } => self.forward(cx, &agent, &f),
            _ => {
                if c.pending.len() >= MAX_PENDING_FOLLOW_UPS {
                    c.pending.remove(0);
                }
                c.pending.push(f);
                // Oldest follow-ups go first when the record would outgrow
                // its budget (escaping can multiply content).
                while c.pending.len() > 1 && wire::to_json(&*c).len() > MAX_CONTACT_JSON_BYTES {
                    c.pending.remove(0);
                }
                // Alone and still too big: keep its start only.
                if wire::to_json(&*c).len() > MAX_CONTACT_JSON_BYTES {
                    if let Some(last) = c.pending.last_mut() {
                        last.text = clip(&last.text, 4 * 1024);
                    }
                }
            }
        }
        self.dirty_contacts.push(cx);
        self.customer_wrote(cx, now);
        Outcome::Attached
    }

    fn end(&mut self, cx: u32, now: DateTime<Utc>) -> Outcome {
        let Some(s) = self.slot(cx) else {
            return Outcome::Ignored("stale conversation");
        };
        let channel = s.c.channel;
        match s.c.state.clone() {
            ContactState::Waiting => {
                self.event("abandoned", cx, now, None, None);
                self.remember(cx, None, "abandoned", now);
                self.close(cx);
            }
            ContactState::Offered { .. } => {
                let offers = s.c.offers();
                for (agent, offer_id) in &offers {
                    self.notice(cx, agent, "withdrawn", Some(offer_id), Some("customer left"), now);
                }
                self.event("abandoned", cx, now, None, None);
                self.remember(cx, None, "abandoned", now);
                self.close(cx);
                for (agent, _) in &offers {
                    self.release(agent, channel, now);
                }
            }
            ContactState::Assigned { agent, .. } => {
                if let Some(s) = self.slot_mut(cx) {
                    s.c.customer_ended = true;
                }
                // Nothing is owed to a customer who left; the agent still
                // has to resolve the contact.
                self.stop_clocks(cx, &[ClockKind::FirstResponse, ClockKind::NextResponse]);
                self.dirty_contacts.push(cx);
                self.notice(cx, &agent, "ended", None, Some("customer left"), now);
            }
        }
        Outcome::Ended
    }

    // Never inlined into a caller (whole-program LTO would): profiles and
    // scripts/bench-instructions.sh find the engine's entry points by name.
    #[inline(never)]
    pub fn on_agent(&mut self, ev: &AgentEvent, now: DateTime<Utc>) -> Result<Outcome, BadMessage> {
        self.work = Work::default();
        self.age_due(now);
        let outcome = self.agent_event(ev, now);
        self.sent = None;
        // Even for a refused input: ageing may have relaxed a contact.
        self.settle(now);
        outcome
    }

    fn agent_event(&mut self, ev: &AgentEvent, now: DateTime<Utc>) -> Result<Outcome, BadMessage> {
        let aid = &ev.agent_id;
        if let AgentEventBody::Profile {
            skills: Some(skills), ..
        } = &ev.body
        {
            self.admit_skills(skills.keys())?;
        }
        let ax = match self.agent_ix.get(aid) {
            Some(ax) => *ax,
            None if matches!(ev.body, AgentEventBody::Profile { .. }) => {
                let ax = self.push_agent(Agent {
                    id: aid.clone(),
                    name: aid.to_string(),
                    skills: BTreeMap::new(),
                    capacity: [0; 4],
                    status: Presence::Offline,
                    idle_since: now,
                    missed_offers: 0,
                    wrap_ups: Vec::new(),
                    profile_from_event: true,
                    last_offer: 0,
                    units: None,
                    weights: Default::default(),
                    load: [0; 4],
                });
                self.dirty_agents.push(ax);
                ax
            }
            None => {
                return Err(BadMessage(format!(
                    "agent {aid} is not known (publish a profile first)"
                )))
            }
        };
        let outcome = match &ev.body {
            AgentEventBody::Profile {
                name,
                skills,
                capacity,
                units,
            } => {
                self.change_agent_with(ax, skills.is_some(), |a| {
                    if let Some(n) = name {
                        a.name = n.clone();
                    }
                    if let Some(s) = skills {
                        a.skills = s.clone();
                    }
                    if let Some(cap) = capacity {
                        a.capacity = [0; 4];
                        for (ch, n) in cap {
                            a.capacity[ch.index()] = *n;
                        }
                    }
                    if let Some(u) = units {
                        a.units = (*u > 0).then_some(*u);
                    }
                    a.profile_from_event = true;
                });
                Outcome::Applied
            }
            AgentEventBody::Presence(status) => self.set_presence(ax, *status, now),
            AgentEventBody::Accept { contact_id } => self.accept(ax, contact_id, now),
            AgentEventBody::Decline { contact_id, reason } => match self.held(contact_id, aid) {
                Some((_, Held::Offered { expires_at })) if self.sent_after(expires_at, now) => {
                    self.reject(contact_id, aid, "the offer expired before the decline was sent", now)
                }
                Some((cx, Held::Offered { .. })) => {
                    self.event_by("declined", cx, aid, now, reason.as_deref());
                    // A decline is an answer: it ends a run of missed offers.
                    self.change_agent(ax, |a| a.missed_offers = 0);
                    self.withdraw_from(cx, aid, now, false);
                    Outcome::Applied
                }
                _ => self.reject(contact_id, aid, "contact is not offered to this agent", now),
            },
            AgentEventBody::Respond { contact_id } => match self.held(contact_id, aid) {
                Some((cx, Held::Assigned)) => {
                    let Some(s) = self.slot_mut(cx) else {
                        return Ok(Outcome::Ignored("gone"));
                    };
                    let first = s.c.responded_at.is_none();
                    if first {
                        s.c.responded_at = Some(now);
                        self.dirty_contacts.push(cx);
                        self.event("responded", cx, now, None, None);
                    }
                    let answered = self.stop_clocks(cx, &[ClockKind::FirstResponse, ClockKind::NextResponse]);
                    if first || answered {
                        Outcome::Applied
                    } else {
                        Outcome::Ignored("already responded")
                    }
                }
                _ => self.reject(contact_id, aid, "contact is not assigned to this agent", now),
            },
            AgentEventBody::Complete {
                contact_id,
                wrap_up_secs,
            } => match self.held(contact_id, aid) {
                Some((cx, Held::Assigned)) => {
                    self.complete(ax, cx, *wrap_up_secs, now);
                    Outcome::Applied
                }
                _ => self.reject(contact_id, aid, "contact is not assigned to this agent", now),
            },
            AgentEventBody::WrapUp {
                contact_id,
                wrap_up_secs,
            } => self.set_wrap_up(ax, contact_id, *wrap_up_secs, now),
            AgentEventBody::AwaitCustomer { contact_id } => match self.held(contact_id, aid) {
                Some((cx, Held::Assigned)) => {
                    if self.pause_clocks(cx, now) {
                        Outcome::Applied
                    } else {
                        Outcome::Ignored("no clock to pause (the policy does not pause, or none runs)")
                    }
                }
                _ => self.reject(contact_id, aid, "contact is not assigned to this agent", now),
            },
        };
        Ok(outcome)
    }

    /// Moves the end of the agent's wrap-up of a contact to `secs` from now
    /// (0: ends it now). Its timer moves with it; one shared with another
    /// wrap-up ending at the same instant stays.
    fn set_wrap_up(&mut self, ax: u32, contact_id: &str, secs: f64, now: DateTime<Utc>) -> Outcome {
        let aid = self.agents[ax as usize].a.id.clone();
        let wraps = &self.agents[ax as usize].a.wrap_ups;
        let Some(i) = wraps.iter().position(|w| w.contact_id == contact_id) else {
            return self.reject(contact_id, &aid, "no wrap-up of this contact for this agent", now);
        };
        let (old, channel) = (wraps[i].until, wraps[i].channel);
        if !wraps.iter().enumerate().any(|(j, w)| j != i && w.until == old) {
            self.timers.cancel(old, Timer::WrapUpEnd(ax));
        }
        if secs <= 0.0 {
            self.change_agent(ax, |a| {
                a.wrap_ups.remove(i);
            });
            self.release_slot(ax, channel, now);
            return Outcome::Applied;
        }
        let until = now + secs_to_duration(secs);
        self.change_agent(ax, |a| a.wrap_ups[i].until = until);
        self.timers.insert(until, Timer::WrapUpEnd(ax));
        Outcome::Applied
    }

    fn accept(&mut self, ax: u32, contact_id: &str, now: DateTime<Utc>) -> Outcome {
        let aid = self.agents[ax as usize].a.id.clone();
        match self.held(contact_id, &aid) {
            // Sent late, read before the expiry fired (held back while the
            // inputs of a downtime are read): the contract's expired offer.
            Some((_, Held::Offered { expires_at })) if self.sent_after(expires_at, now) => self.reject(
                contact_id,
                &aid,
                "contact is not offered to this agent (expired, withdrawn or closed)",
                now,
            ),
            Some((cx, Held::Offered { expires_at })) => {
                self.timers.cancel(expires_at, Timer::OfferExpiry(cx));
                let Some(s) = self.slot_mut(cx) else {
                    return Outcome::Ignored("gone");
                };
                // A ring group: the first to accept takes it, the others
                // are told at once and their slots freed.
                let offers = s.c.offers();
                let Some(offer_id) = s.c.offer_to(&aid).map(str::to_string) else {
                    return Outcome::Ignored("gone");
                };
                let (channel, others) = (s.c.channel, offers.iter().filter(|(a, _)| *a != aid));
                for (agent, offer_id) in others.clone() {
                    self.notice(
                        cx,
                        agent,
                        "withdrawn",
                        Some(offer_id),
                        Some("taken by another agent"),
                        now,
                    );
                    self.unhold(cx, agent);
                }
                for (agent, _) in others {
                    self.release(agent, channel, now);
                }
                let Some(s) = self.slot_mut(cx) else {
                    return Outcome::Ignored("gone");
                };
                s.c.state = ContactState::Assigned {
                    agent: aid.clone(),
                    offer_id,
                    accepted_at: now,
                };
                // On chat and voice the customer is live: taking the contact
                // is the first response, and says so.
                let responded = s.c.channel.accept_is_response() && s.c.responded_at.is_none();
                if responded {
                    s.c.responded_at = Some(now);
                }
                let pending = std::mem::take(&mut s.c.pending);
                let stopped: &[ClockKind] = if responded {
                    &[ClockKind::QueueWait, ClockKind::FirstResponse]
                } else {
                    &[ClockKind::QueueWait]
                };
                self.stop_clocks(cx, stopped);
                self.dirty_contacts.push(cx);
                self.change_agent(ax, |a| a.missed_offers = 0);
                self.event("accepted", cx, now, None, None);
                if responded {
                    self.event("responded", cx, now, None, None);
                }
                for f in pending {
                    self.forward(cx, &aid, &f);
                }
                Outcome::Applied
            }
            Some((_, Held::Assigned)) => Outcome::Ignored("already accepted"),
            _ => self.reject(
                contact_id,
                &aid,
                "contact is not offered to this agent (expired, withdrawn or closed)",
                now,
            ),
        }
    }

    fn complete(&mut self, ax: u32, cx: u32, wrap_up_secs: Option<f64>, now: DateTime<Utc>) {
        let Some(s) = self.slot(cx) else { return };
        let (channel, contact_id) = (s.c.channel, s.c.id.clone());
        let aid = self.agents[ax as usize].a.id.clone();
        self.event("completed", cx, now, None, None);
        self.remember(cx, Some(&aid), "completed", now);
        self.close(cx);
        // The event's wrap-up wins (shorter or longer), else the channel's.
        let wrap_up_secs = wrap_up_secs.or(self.spec.channel_wrap_up_secs[channel.index()]);
        match wrap_up_secs.filter(|s| *s > 0.0) {
            Some(secs) => {
                let until = now + secs_to_duration(secs);
                self.change_agent(ax, |a| {
                    a.wrap_ups.push(WrapUp {
                        contact_id,
                        channel,
                        until,
                    })
                });
                self.timers.insert(until, Timer::WrapUpEnd(ax));
            }
            None => self.release_slot(ax, channel, now),
        }
    }

    /// Fires every timer due at `now`: offer expiries, wrap-up ends, SLA
    /// thresholds. Costs the number of timers due.
    // Never inlined into a caller (whole-program LTO would): profiles and
    // scripts/bench-instructions.sh find the engine's entry points by name.
    #[inline(never)]
    pub fn on_tick(&mut self, now: DateTime<Utc>) {
        self.work = Work::default();
        self.age_due(now);
        while let Some((at, timer)) = self.timers.pop_due(now) {
            self.work.timers_fired += 1;
            match timer {
                Timer::OfferExpiry(cx) => self.expire_offer(cx, at, now),
                Timer::WrapUpEnd(ax) => self.end_wrap_ups(ax, at, now),
                Timer::Age(_) | Timer::Reserve(_) => {} // in `ages`, never here
                Timer::Hours(q) => self.keep_hours(q, now),
                Timer::Sla(cx) => {
                    let due = self.slot_mut(cx).is_some_and(|s| {
                        let mine = s.sla_at == Some(at);
                        if mine {
                            s.sla_at = None;
                        }
                        mine
                    });
                    if due {
                        self.fire_sla(cx, now);
                    }
                }
            }
        }
        self.settle(now);
    }

    fn end_wrap_ups(&mut self, ax: u32, at: DateTime<Utc>, now: DateTime<Utc>) {
        let Some(slot) = self.agents.get(ax as usize) else {
            return;
        };
        let due: Vec<_> = slot
            .a
            .wrap_ups
            .iter()
            .filter(|w| w.until <= at)
            .map(|w| w.channel)
            .collect();
        if due.is_empty() {
            return;
        }
        self.change_agent(ax, |a| a.wrap_ups.retain(|w| w.until > at));
        for channel in due {
            self.release_slot(ax, channel, now);
        }
    }

    // ----- customers recognised on return -----

    /// The agent who handled this thread last or, if nobody did, who
    /// served this customer last, if affinity is on and that contact closed
    /// within the lookback. The thread first: a reply in it may come from
    /// another address, and its agent has the thread's context.
    fn returning_to(&self, customer_id: &str, conversation_id: &str, now: DateTime<Utc>) -> Option<AgentId> {
        let lookback = self.spec.affinity.lookback_ms?;
        let since = now.checked_sub_signed(chrono::Duration::milliseconds(lookback))?;
        let last = |k| self.customers.get(k).and_then(|h| h.last_agent(since)).cloned();
        last(super::customers::thread_key(conversation_id))
            .or_else(|| last(super::customers::customer_key(customer_id)))
    }

    /// Adds a closing contact to its customer's history (affinity on).
    fn remember(&mut self, cx: u32, agent: Option<&AgentId>, outcome: &'static str, now: DateTime<Utc>) {
        let a = self.spec.affinity;
        if a.lookback_ms.is_none() {
            return;
        }
        let Some(s) = self.slot(cx) else { return };
        let k = super::customers::customer_key(&s.c.customer.id);
        let thread = super::customers::thread_key(&s.c.conversation_id);
        let served = super::customers::Served {
            contact_id: s.c.id.as_str().into(),
            channel: s.c.channel,
            queue: s.c.queue.clone(),
            agent: agent.cloned(),
            at: now,
            outcome: outcome.into(),
        };
        // A thread keeps only who last took it: its last agent is all the
        // affinity needs, and most threads close once (one entry, not room
        // for a customer's whole history per conversation). The customer
        // first: at the bound, the thread's insertion then evicts the
        // oldest record, never this customer's (moved to now already).
        let thread_served = agent.is_some().then(|| served.clone());
        self.customers.remember(k, served, a.history, a.max_customers);
        if let Some(served) = thread_served {
            self.customers.remember(thread, served, 1, a.max_customers);
        }
    }

    // ----- transitions -----

    /// The contact's slot and how the agent holds it, if they do.
    fn held(&self, contact_id: &str, agent: &AgentId) -> Option<(u32, Held)> {
        let cx = self.contact_slot_of(contact_id)?;
        let c = &self.slot(cx)?.c;
        let held = match &c.state {
            ContactState::Offered { expires_at, .. } => Held::Offered {
                expires_at: *expires_at,
            },
            ContactState::Assigned { .. } => Held::Assigned,
            ContactState::Waiting => return None,
        };
        c.held_by(agent).then_some((cx, held))
    }

    fn set_presence(&mut self, ax: u32, status: Presence, now: DateTime<Utc>) -> Outcome {
        if self.agents[ax as usize].a.status == status {
            return Outcome::Ignored("unchanged");
        }
        self.change_agent(ax, |a| {
            a.status = status;
            if status == Presence::Available {
                a.idle_since = now;
                a.missed_offers = 0;
            }
        });
        if status != Presence::Available {
            self.release_reservations_of(ax);
            // Offers in flight to someone who left their desk would only
            // expire; route them on now.
            let aid = self.agents[ax as usize].a.id.clone();
            for cx in self.held_by(ax, true) {
                let Some(offer_id) = self.slot(cx).and_then(|s| s.c.offer_to(&aid)).map(str::to_string) else {
                    continue;
                };
                let reason = Some("agent is no longer available");
                self.notice(cx, &aid, "withdrawn", Some(&offer_id), reason, now);
                self.event_by("declined", cx, &aid, now, reason);
                self.withdraw_from(cx, &aid, now, false);
            }
        }
        Outcome::Applied
    }

    /// An offer nobody answered in time: every agent it went to is told
    /// and counts a missed offer (set away after
    /// `routing.max_missed_offers` in a row); the contact goes back to the
    /// queue with its age.
    fn expire_offer(&mut self, cx: u32, at: DateTime<Utc>, now: DateTime<Utc>) {
        let Some(s) = self.slot(cx) else { return };
        let ContactState::Offered { expires_at, .. } = s.c.state else {
            return;
        };
        if expires_at != at {
            return;
        }
        s.c.warm();
        let offers = s.c.offers();
        for (agent, offer_id) in &offers {
            self.notice(cx, agent, "withdrawn", Some(offer_id), Some("offer expired"), now);
            self.event_with("offer_expired", cx, now, |m, _| m.agent_id = Some(agent));
        }
        for (agent, _) in &offers {
            self.withdraw_from(cx, agent, now, true);
        }
        if self.excused_until.is_some_and(|u| at <= u) {
            tracing::debug!(contact = %self.contacts_id(cx), "Offer expired while the desktops could not answer; not counted as missed.");
            return;
        }
        let max = self.spec.max_missed_offers;
        for (agent, _) in &offers {
            let Some(ax) = self.agent_ix.get(agent).copied() else {
                continue;
            };
            self.change_agent(ax, |a| a.missed_offers += 1);
            let a = &self.agents[ax as usize].a;
            if a.missed_offers >= max && a.status == Presence::Available {
                tracing::info!(agent_id = %agent, missed = max, "Agent let offers expire in a row; setting away.");
                // The desktop is told why, before the withdrawals that follow.
                let reason = format!("{max} offers expired in a row");
                self.notice(cx, agent, "set_away", None, Some(&reason), now);
                self.set_presence(ax, Presence::Away, now);
            }
        }
    }
}

/// How an agent holds a contact: what its agent events branch on (without
/// copying the contact's state).
enum Held {
    Offered { expires_at: DateTime<Utc> },
    Assigned,
}
