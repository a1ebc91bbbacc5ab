//! Matching: settling what an input changed, picking agents, offering,
//! re-queueing and releasing, and keeping the indexes in step with every
//! change to a contact or an agent.
//!
//! [`Engine::settle`] reproduces the greedy rule of the module docs from the
//! input's changes alone. Before the input nothing waiting fitted anyone
//! free, so the greedy pass can only offer (a) contacts that became waiting
//! in this input, or (b) contacts that fit an agent who gained a free slot
//! or a skill in it. Each round takes the first, in priority-then-age
//! order, of the best (a) that has a fitting free agent and the best (b)
//! per changed agent (the head of the wait index that agent can take), and
//! offers it to its best free agent. A contact of (a) with no fit, or an
//! agent of (b) with nothing it can take, is dropped from the round: offers
//! only use up capacity, so neither can match later in the same input.
//!
//! A contact that became waiting in the input (new, or back from an offer)
//! while someone free may take it waits in a short list (`Engine::unfiled`),
//! not in the wait index, until the input ends: an agent of (b) compares
//! its head with each of them as the index would have, and those not
//! offered by then are filed. Most are offered at once, and filing one only
//! to take it out again built and tore down its class and head entry.

use super::agents::{fits, nanos, tie, Entry, IdleKey, LoadKey, RrKey, Share, SkillIx, Step};
use super::model::secs_to_duration;
use super::queues::WaitKey;
use super::spec::Strategy;
use super::timers::Timer;
use super::Engine;
use crate::domain::{AgentId, Channel, Presence};
use chrono::{DateTime, Utc};

impl Engine {
    // ----- the matching loop -----

    pub(super) fn settle(&mut self, now: DateTime<Utc>) {
        loop {
            let mut choice: Option<(WaitKey, u32, usize)> = None;
            while let Some(k) = self.pending_contacts.first().copied() {
                if !self.is_filed(k) {
                    self.pending_contacts.pop_first();
                    continue;
                }
                match self.pick(k.ix) {
                    Some((ax, n)) => {
                        choice = Some((k, ax, n));
                        break;
                    }
                    None => {
                        self.pending_contacts.pop_first();
                    }
                }
            }
            let mut i = 0;
            while i < self.pending_agents.len() {
                let ax = self.pending_agents[i];
                let Some(free) = self.free_channels(ax) else {
                    self.pending_agents.swap_remove(i);
                    continue;
                };
                let skills = &self.agents[ax as usize].skills;
                let (first, walked) = self.waiting.first_for(free, skills, choice.map(|c| c.0));
                let first = self
                    .first_unfiled_for(ax, free, first.or(choice.map(|c| c.0)))
                    .or(first);
                self.work.examined += walked;
                // A contact kept for this agent (affinity) that comes first.
                if let Some(k) = self.reserved_head(ax, free, first.or(choice.map(|c| c.0))) {
                    choice = Some((k, ax, 1));
                    i += 1;
                    continue;
                }
                match first {
                    Some(k) => match self.pick(k.ix) {
                        Some((best, n)) => {
                            choice = Some((k, best, n));
                            i += 1;
                        }
                        // Cannot happen (the agent itself fits); never loop on it.
                        None => {
                            self.pending_agents.swap_remove(i);
                        }
                    },
                    None if choice.is_none() => {
                        self.pending_agents.swap_remove(i);
                    }
                    None => i += 1,
                }
            }
            let Some((k, ax, n)) = choice else { break };
            if !self.offer(k.ix, ax, n, now) {
                // Unreachable by construction (only filed contacts are
                // chosen); never spin on it.
                tracing::error!(
                    slot = k.ix,
                    "Routing chose a contact that cannot be offered; settling stopped."
                );
                break;
            }
        }
        self.pending_agents.clear();
        self.pending_contacts.clear();
        self.file_unfiled();
        self.flush_index();
        self.flush_ages();
    }

    /// Marks a contact just filed under `key` for settling, unless nobody
    /// filed free now could take it: one of its required skills is held at
    /// the level by no agent free on its channel (counts, no walk). Under a
    /// full backlog with every slot taken, a new or relaxed contact then
    /// costs no pick. Nothing is missed: an agent changed in this input so
    /// that it may take more (freed, available, new skills or capacity) is
    /// in `pending_agents` whatever its index entry says, and walks the
    /// waiting heads itself.
    pub(super) fn mark_pending(&mut self, key: WaitKey) {
        if self.anyone_free_for(key.ix) {
            self.pending_contacts.insert(key);
        }
    }

    pub(super) fn anyone_free_for(&self, cx: u32) -> bool {
        let Some(s) = self.slot(cx) else { return false };
        let ch = s.c.channel;
        s.need
            .iter()
            .all(|&(skill, l)| self.free.free_holders(ch, skill, l) > 0)
    }

    /// Whether `k` is a filed contact's effective key now (settle's marks
    /// go stale when the contact is offered in the same input).
    fn is_filed(&self, k: WaitKey) -> bool {
        self.slot(k.ix)
            .and_then(|s| match s.class {
                Some(class) => Some(self.waiting.effective(class, s.stored_key(k.ix))),
                None if s.unfiled => self.unfiled_key(k.ix),
                None => None,
            })
            .is_some_and(|e| e == k)
    }

    /// Channels the agent has a free slot on, if it belongs in the free
    /// index (whether or not its entry there is updated yet).
    fn free_channels(&self, ax: u32) -> Option<[bool; 4]> {
        self.desired_entry(ax).map(|e| e.free)
    }

    /// The agents changed in this input, not yet filed again, who belong
    /// in the tiers of the contact's channel: the index walk does not see
    /// them. `None` when one of them is still filed there under its old key
    /// (the walk would see that key): the index must be updated first.
    fn missing_on(&self, cx: u32) -> Option<Vec<u32>> {
        let ch = self.slot(cx)?.c.channel.index();
        let mut missing = Vec::new();
        for &ax in &self.stale_agents {
            if self.agents.get(ax as usize)?.entry.is_some_and(|e| e.free[ch]) {
                return None;
            }
            if self.desired_entry(ax).is_some_and(|e| e.free[ch]) {
                missing.push(ax);
            }
        }
        Some(missing)
    }

    /// The pool as a walk over the updated index sizes it, from the
    /// index's counts and the `missing` agents (free on the channel, not
    /// yet filed): `most_skilled` counts the holders of its primary skill,
    /// the other strategies those of the rarest required skill (with none
    /// required, every agent free on the channel).
    fn pool_with(&self, cx: u32, primary: Option<(SkillIx, u8)>, missing: &[u32]) -> usize {
        let Some(s) = self.slot(cx) else { return 0 };
        let ch = s.c.channel;
        let holding = |sk: SkillIx, l: u8| {
            self.free.free_holders(ch, sk, l)
                + missing
                    .iter()
                    .filter(|ax| fits(&self.agents[**ax as usize].skills, &[(sk, l)]))
                    .count()
        };
        match primary {
            Some((sk, l)) => holding(sk, l),
            None if s.need.is_empty() => self.free.free_on(ch) + missing.len(),
            None => s.need.iter().map(|&(sk, l)| holding(sk, l)).min().unwrap_or(0),
        }
    }

    /// The best free agent for a waiting contact under its queue's strategy,
    /// and the size of the pool it was chosen from: the agents free on the
    /// channel who hold the contact's rarest required skill at the level
    /// (with one required skill, exactly those who could take it, including
    /// decliners; with several, an upper bound). Agents who declined the
    /// contact are chosen only when nobody else can.
    ///
    /// Agents changed earlier in the same input are filed again only when
    /// the choice needs it: if none of them can take the contact, or one
    /// can and the index holds nobody who can, the walk over the index as
    /// it stands makes the same choice (and the pool is counted with them).
    /// A slot freed and filled again in one input at saturation, where
    /// nobody else is free, then never touches the index.
    pub(super) fn pick(&mut self, cx: u32) -> Option<(u32, usize)> {
        if self.slot(cx)?.need.is_empty() && !self.free.keeps_any() {
            self.flush_index();
            let entries = self.agents.iter().filter_map(|a| a.entry);
            self.free.keep_any_from(entries);
        }
        let missing = match self.missing_on(cx) {
            Some(m) => m,
            None => {
                self.flush_index();
                Vec::new()
            }
        };
        let strategy = self.strategy_of(cx);
        let primary = self.primary_of(cx, strategy);
        let s = self.slot(cx)?;
        let declined: Vec<u32> =
            s.c.declined_by
                .iter()
                .filter_map(|a| self.agent_ix.get(a).copied())
                .collect();
        let (mut best, mut fallback) = (None, None);
        let (pool, walked) = self.free.walk(s.c.channel, &s.need, strategy, primary, |ax| {
            if !fits(&self.agents[ax as usize].skills, &s.need) {
                return Step::Next;
            }
            if declined.contains(&ax) {
                fallback = fallback.or(Some(ax));
                Step::Next
            } else {
                best = Some(ax);
                Step::Stop
            }
        });
        self.work.examined += walked;
        let mut pool = pool;
        if !missing.is_empty() {
            let s = self.slot(cx)?;
            let mut fitting = missing
                .iter()
                .copied()
                .filter(|ax| fits(&self.agents[*ax as usize].skills, &s.need));
            match (fitting.next(), fitting.next(), best.or(fallback)) {
                (None, _, _) => {}
                // The walk over the updated index would find it alone
                // (as the choice, or as the fallback: the same agent).
                (Some(ax), None, None) => {
                    (best, fallback) = (Some(ax), None);
                    self.work.examined += 1;
                }
                // Ranked against others: file everyone and walk again.
                _ => {
                    self.flush_index();
                    return self.pick(cx);
                }
            }
            pool = self.pool_with(cx, primary, &missing);
        }
        // A returning customer goes first to the agent who served them
        // last, when that agent can take it now and has not passed on it.
        let s = self.slot(cx)?;
        let preferred = s.c.preferred_agent.as_ref().and_then(|a| self.agent_ix.get(a).copied());
        if let Some(ax) = preferred.filter(|ax| !declined.contains(ax)) {
            let free = self.desired_entry(ax).is_some_and(|e| e.free[s.c.channel.index()]);
            if free && fits(&self.agents[ax as usize].skills, &s.need) {
                return Some((ax, pool.max(1)));
            }
        }
        best.or(fallback).map(|ax| (ax, pool))
    }

    /// The strategy of the queue a contact is routed by.
    fn strategy_of(&self, cx: u32) -> Strategy {
        self.slot(cx)
            .and_then(|s| self.queues.get(s.route_q as usize))
            .map_or(Strategy::LongestIdle, |q| q.strategy)
    }

    /// `most_skilled` ranks by the skill required at the highest level
    /// (alphabetical first on ties), read from the interned requirement and
    /// the shared names: the contact's own map is cold memory.
    fn primary_of(&self, cx: u32, strategy: Strategy) -> Option<(SkillIx, u8)> {
        if strategy != Strategy::MostSkilled {
            return None;
        }
        let name = |ix: SkillIx| self.skill_names.get(ix as usize);
        self.slot(cx)?
            .need
            .iter()
            .copied()
            .min_by(|(a, la), (b, lb)| lb.cmp(la).then_with(|| name(*a).cmp(&name(*b))))
    }

    // ----- contact transitions -----

    /// Makes a waiting contact an offer to an agent, and in a ring group
    /// to up to `ring_size - 1` more (the next fitting agents in idle order
    /// who have not passed on it).
    pub(super) fn offer(&mut self, cx: u32, ax: u32, candidates: usize, now: DateTime<Utc>) -> bool {
        self.warm_offer(cx, ax);
        let Some(s) = self.slot(cx) else { return false };
        if !s.c.is_waiting() || ax as usize >= self.agents.len() {
            debug_assert!(false, "offer of a contact that is not waiting");
            return false;
        }
        let q = self.queues.get(s.route_q as usize);
        let timeout = q
            .and_then(|q| q.offer_timeout_secs)
            .or(self.spec.channel_offer_timeout_secs[s.c.channel.index()])
            .unwrap_or(self.spec.offer_timeout_secs);
        let ring_size = q
            .filter(|q| q.strategy == Strategy::RingGroup)
            .map_or(1, |q| q.ring_size);
        let q = s.q;
        let ring = if ring_size > 1 {
            self.ring(cx, ax, ring_size - 1)
        } else {
            Vec::new()
        };
        // The accept window starts at the input's time, or at the wall
        // clock when that is later (an input of a downtime's backlog).
        let expires_at = self.offers_from.map_or(now, |w| w.max(now)) + secs_to_duration(timeout);
        self.dequeue(cx);
        self.pace(q, now);
        let members: Vec<(u32, AgentId, String)> = std::iter::once(ax)
            .chain(ring)
            .map(|ax| (ax, self.agents[ax as usize].a.id.clone(), self.ids.next("off", now)))
            .collect();
        let ring = members[1..]
            .iter()
            .map(|(_, agent, offer_id)| super::RingOffer {
                agent: agent.clone(),
                offer_id: offer_id.clone(),
            })
            .collect();
        let (agent, offer_id) = (members[0].1.clone(), members[0].2.clone());
        let Some(s) = self.slot_mut(cx) else { return false };
        let channel = s.c.channel;
        s.c.state = super::ContactState::Offered {
            agent,
            offer_id,
            offered_at: now,
            expires_at,
            candidates,
            ring,
        };
        for (ax, _, _) in &members {
            // One index update for both changes: a slot taken, idle from now.
            self.agents[*ax as usize].holding.push(cx);
            self.offer_seq += 1;
            let seq = self.offer_seq;
            self.change_agent(*ax, |a| {
                a.load[channel.index()] += 1;
                a.idle_since = now;
                a.last_offer = seq;
            });
        }
        self.dirty_contacts.push(cx);
        self.timers.insert(expires_at, Timer::OfferExpiry(cx));
        self.emit_offers(cx, &members);
        for (_, agent, offer_id) in &members {
            self.event_with("offered", cx, now, |m, _| {
                (m.agent_id, m.offer_id) = (Some(agent), Some(offer_id.as_str()));
            });
        }
        true
    }

    /// Up to `n` more agents for a ring group's offer besides `first`: free
    /// on the channel, fitting the requirement, not having passed on it,
    /// longest idle first. Costs `n` plus the agents skipped.
    fn ring(&mut self, cx: u32, first: u32, n: usize) -> Vec<u32> {
        self.flush_index();
        let Some(s) = self.slot(cx) else { return Vec::new() };
        let declined: Vec<u32> =
            s.c.declined_by
                .iter()
                .filter_map(|a| self.agent_ix.get(a).copied())
                .collect();
        let mut more = Vec::with_capacity(n.min(super::MAX_RING));
        let (_, walked) = self.free.walk(s.c.channel, &s.need, Strategy::RingGroup, None, |ax| {
            if ax != first && !declined.contains(&ax) && fits(&self.agents[ax as usize].skills, &s.need) {
                more.push(ax);
            }
            if more.len() >= n {
                Step::Stop
            } else {
                Step::Next
            }
        });
        self.work.examined += walked;
        more
    }

    /// Takes the offer back from one agent (declined, expired, left their
    /// desk): they are remembered as having passed on it and their slot is
    /// freed. The contact stays offered to the rest of its ring group, or
    /// goes back to the queue with its original age when nobody is left.
    /// Returns whether it went back to the queue. With `expired`, the
    /// offer's expiry timer has fired (it is no longer in `timers`: no
    /// search for it).
    pub(super) fn withdraw_from(&mut self, cx: u32, agent: &AgentId, now: DateTime<Utc>, expired: bool) -> bool {
        let Some(s) = self.slot_mut(cx) else { return false };
        let channel = s.c.channel;
        let super::ContactState::Offered {
            agent: first,
            offer_id,
            ring,
            expires_at,
            ..
        } = &mut s.c.state
        else {
            return false;
        };
        let last = ring.is_empty();
        if first == agent {
            if !last {
                let next = ring.remove(0);
                (*first, *offer_id) = (next.agent, next.offer_id);
            }
        } else if let Some(i) = ring.iter().position(|r| &r.agent == agent) {
            ring.remove(i);
        } else {
            return false;
        }
        let expires_at = *expires_at;
        if last {
            s.c.state = super::ContactState::Waiting;
            if !expired {
                self.timers.cancel(expires_at, Timer::OfferExpiry(cx));
            }
        }
        let Some(s) = self.slot_mut(cx) else { return false };
        s.c.add_decliner(agent);
        self.dirty_contacts.push(cx);
        let ax = self.agent_ix.get(agent).copied();
        if let Some(ax) = ax {
            self.unhold_slot(cx, ax);
        }
        if last {
            self.enqueue(cx, now);
        }
        if let Some(ax) = ax {
            self.release_slot(ax, channel, now);
        }
        last
    }

    /// Frees one of the agent's slots on a channel.
    pub(super) fn release(&mut self, agent: &AgentId, channel: Channel, now: DateTime<Utc>) {
        if let Some(ax) = self.agent_ix.get(agent).copied() {
            self.release_slot(ax, channel, now);
        }
    }

    /// [`Engine::release`] of the agent in slot `ax`.
    pub(super) fn release_slot(&mut self, ax: u32, channel: Channel, now: DateTime<Utc>) {
        self.change_agent(ax, |a| {
            let l = &mut a.load[channel.index()];
            *l = l.saturating_sub(1);
            if a.total_load() == 0 && a.status == Presence::Available {
                a.idle_since = a.idle_since.max(now);
            }
        });
    }

    /// Closes a contact: it leaves every index, its timers are cancelled and
    /// its record is deleted. The agent's slot is the caller's business
    /// (released at once, or held for wrap-up).
    pub(super) fn close(&mut self, cx: u32) {
        self.dequeue(cx);
        self.cancel_sla(cx);
        self.set_at_risk(cx, false);
        let Some(s) = self.contacts.get(cx) else { return };
        // The holders' slots, read in place: cloning the state cost two
        // strings allocated and freed per close.
        let ax = |a: &AgentId| self.agent_ix.get(a).copied();
        let (expiry, holder, ring) = match &s.c.state {
            super::ContactState::Offered {
                expires_at,
                agent,
                ring,
                ..
            } => (
                Some(*expires_at),
                ax(agent),
                ring.iter().filter_map(|r| ax(&r.agent)).collect(),
            ),
            super::ContactState::Assigned { agent, .. } => (None, ax(agent), Vec::new()),
            super::ContactState::Waiting => (None, None, Vec::new()),
        };
        if let Some(at) = expiry {
            self.timers.cancel(at, Timer::OfferExpiry(cx));
        }
        for ax in holder.into_iter().chain(ring) {
            self.unhold_slot(cx, ax);
        }
        let Some(s) = self.contacts.take(cx) else {
            return;
        };
        // A conversation mapped to another contact (reopened after a
        // restore's duplicate) keeps that mapping.
        self.lookup.remove(cx, &s.c.id, &s.c.conversation_id);
        self.closed_contacts.push(s.c.id);
        // `need` first: until a step relaxes it, it is `placed` itself.
        drop(s.need);
        self.release_placed_need(s.placed);
    }

    /// Measures the queue's pace at an offer: the time since its previous
    /// offer counts when contacts were left waiting then (otherwise it is
    /// the arrival rate, not the service rate).
    fn pace(&mut self, q: u32, now: DateTime<Utc>) {
        let Some(slot) = self.queues.get_mut(q as usize) else {
            return;
        };
        if let (true, Some(last)) = (slot.backlog, slot.last_offer_at) {
            let dt = (now - last).num_milliseconds().max(0) as f64;
            slot.pace_ms = Some(slot.pace_ms.map_or(dt, |p| 0.8 * p + 0.2 * dt));
            self.dirty_queues.push(q);
        }
        slot.last_offer_at = Some(now);
        slot.backlog = slot.waiting > 0;
    }

    pub(super) fn contacts_id(&self, cx: u32) -> &str {
        self.slot(cx).map_or("", |s| &s.c.id)
    }

    // ----- agents -----

    /// Forgets that the agent holds a contact; the slot stays taken.
    pub(super) fn unhold(&mut self, cx: u32, agent: &AgentId) {
        if let Some(ax) = self.agent_ix.get(agent).copied() {
            self.unhold_slot(cx, ax);
        }
    }

    /// [`Engine::unhold`] for the agent in slot `ax`.
    fn unhold_slot(&mut self, cx: u32, ax: u32) {
        if let Some(slot) = self.agents.get_mut(ax as usize) {
            slot.holding.retain(|c| *c != cx);
        }
    }

    /// Changes an agent's presence, load, capacity or idle time, keeping the
    /// free index, the status counts and the pending set in step; the
    /// agent's record is marked for persisting.
    pub(super) fn change_agent(&mut self, ax: u32, f: impl FnOnce(&mut super::Agent)) {
        self.change_agent_with(ax, false, f);
    }

    /// As [`Engine::change_agent`]; with `skills_changed` the change may also
    /// replace the agent's skills (re-interned here).
    pub(super) fn change_agent_with(&mut self, ax: u32, skills_changed: bool, f: impl FnOnce(&mut super::Agent)) {
        let Some(slot) = self.agents.get_mut(ax as usize) else {
            return;
        };
        let (status0, cap0, load0, units0) = (slot.a.status, slot.a.capacity, slot.a.load, slot.a.units);
        f(&mut slot.a);
        let status = slot.a.status;
        if status != status0 {
            self.by_status[super::status_ix(status0)] -= 1;
            self.by_status[super::status_ix(status)] += 1;
        }
        // Anything that can free a slot or widen a fit may create a match.
        let gained = status == Presence::Available
            && (status0 != Presence::Available
                || skills_changed
                || slot.a.units.unwrap_or(u32::MAX) > units0.unwrap_or(u32::MAX)
                || Channel::ALL.iter().any(|c| {
                    let i = c.index();
                    slot.a.load[i] < load0[i] || slot.a.capacity[i] > cap0[i]
                }));
        if skills_changed {
            // Entries were inserted under the old skills: remove them first.
            if let Some(e) = slot.entry.take() {
                self.free.remove(&e, &slot.skills);
            }
            self.free.remove_holder(&slot.skills);
            let skills = slot.a.skills.clone();
            let interned = self.intern(&skills);
            self.free.add_holder(&interned);
            self.agents[ax as usize].skills = interned;
        }
        if !self.stale_agents.contains(&ax) {
            self.stale_agents.push(ax);
        }
        if gained && !self.pending_agents.contains(&ax) {
            self.pending_agents.push(ax);
        }
        self.dirty_agents.push(ax);
    }

    /// Updates the free index for every agent changed since the last call.
    pub(super) fn flush_index(&mut self) {
        while let Some(ax) = self.stale_agents.pop() {
            self.reindex(ax);
        }
    }

    /// Puts the agent in the free index under its current key, if it is
    /// available with a free slot somewhere; touches the index only when the
    /// key differs from the one it is filed under.
    pub(super) fn reindex(&mut self, ax: u32) {
        let entry = self.desired_entry(ax);
        let Some(slot) = self.agents.get_mut(ax as usize) else {
            return;
        };
        if entry == slot.entry {
            return;
        }
        self.free.update(slot.entry.as_ref(), entry.as_ref(), &slot.skills);
        slot.entry = entry;
    }

    /// The entry the agent belongs under in the free index now.
    pub(super) fn desired_entry(&self, ax: u32) -> Option<Entry> {
        let slot = self.agents.get(ax as usize)?;
        let a = &slot.a;
        let free = Channel::ALL.map(|c| a.free(c));
        let (since, tie) = (nanos(a.idle_since), tie(slot.tie, ax));
        (a.status == Presence::Available && free.iter().any(|f| *f)).then(|| Entry {
            free,
            idle: IdleKey { since, tie },
            load: LoadKey {
                share: {
                    let (load, cap) = a.share();
                    Share::new(load, cap)
                },
                since,
                tie,
            },
            rr: RrKey { seq: a.last_offer, tie },
        })
    }

    /// Contacts offered to (`offered`) or assigned to the agent.
    pub(super) fn held_by(&self, ax: u32, offered: bool) -> Vec<u32> {
        self.agents[ax as usize]
            .holding
            .iter()
            .copied()
            .filter(|cx| {
                self.slot(*cx)
                    .is_some_and(|s| matches!(s.c.state, super::ContactState::Offered { .. }) == offered)
            })
            .collect()
    }
}
