//! Affinity's waiting window: a returning customer's contact kept for the
//! agent who served them last while that agent is `available` but busy
//! (and could take it: the skills at the levels, the channel in their
//! capacity), for at most `[routing.affinity] wait_secs` after it was
//! received.
//!
//! A kept contact is waiting (it counts in its queue and keeps its age and
//! SLA clocks) but is not in the wait index: it sits in its agent's own
//! ordered set instead, so no other agent sees it and the agent, whenever
//! they gain a free slot, compares the head of that set with the head of
//! the wait index they can take. The window ends, and the contact is filed
//! for everyone, at its deadline (a timer in `ages`, fired before every
//! input), when the agent leaves `available`, when the agent passes on it,
//! or when its queue closes (business hours hold it then).
//!
//! Invariants: a contact is in at most one of the wait index, an agent's
//! reserved set, or held by closed hours; work is bounded by the contact
//! or by the agent's own reserved contacts, never by the backlog. The
//! record says whether a contact is kept (`kept`, with `preferred_agent`
//! and `received_at`), so a restart keeps exactly those still in their
//! window whose agent is still `available`.

use super::agents::fits;
use super::queues::WaitKey;
use super::timers::Timer;
use super::Engine;
use crate::domain::Presence;
use chrono::{DateTime, Duration, Utc};

impl Engine {
    /// Keeps a waiting contact for its customer's last agent if the window
    /// is on and still open, the agent is `available` and has not passed on
    /// it; the agent is marked for settling (they may be free right now).
    pub(super) fn reserve(&mut self, cx: u32, now: DateTime<Utc>) -> bool {
        let Some(wait) = self.spec.affinity.wait_ms else {
            return false;
        };
        let Some(s) = self.slot(cx) else { return false };
        let Some(pref) = s.c.preferred_agent.as_ref() else {
            return false;
        };
        // Restoring: kept only if it was (the decision is not made again
        // from the agent's presence now).
        if self.restoring && !s.c.kept {
            return false;
        }
        let Some(ax) = self.agent_ix.get(pref).copied() else {
            return false;
        };
        let agent = &self.agents[ax as usize];
        // Kept only for an agent who can take it once a slot frees: one
        // lacking the skills or the channel would hold it for nothing.
        if s.c.declined_by.contains(pref)
            || agent.a.status != Presence::Available
            || !agent.a.serves(s.c.channel)
            || !fits(&agent.skills, &s.need)
        {
            return false;
        }
        let Some(until) = s.c.received_at.checked_add_signed(Duration::milliseconds(wait)) else {
            return false;
        };
        if until <= now {
            return false;
        }
        let key = s.wait_key(cx);
        self.agents[ax as usize].reserved.insert(key);
        if let Some(s) = self.slot_mut(cx) {
            s.reserved = Some((ax, until));
            if !s.c.kept {
                s.c.kept = true;
                self.dirty_contacts.push(cx);
            }
        }
        self.ages.insert(until, Timer::Reserve(cx));
        if !self.pending_agents.contains(&ax) {
            self.pending_agents.push(ax);
        }
        true
    }

    /// Ends a contact's reservation, if it has one (the caller files it or
    /// offers it).
    pub(super) fn unreserve(&mut self, cx: u32) -> bool {
        let Some(s) = self.slot_mut(cx) else { return false };
        let Some((ax, until)) = s.reserved.take() else {
            return false;
        };
        s.c.kept = false;
        let key = s.wait_key(cx);
        self.dirty_contacts.push(cx);
        if let Some(a) = self.agents.get_mut(ax as usize) {
            a.reserved.remove(&key);
        }
        self.ages.cancel(until, Timer::Reserve(cx));
        true
    }

    /// Files a contact whose reservation ended for everyone who fits, and
    /// marks it for settling.
    fn release_reservation(&mut self, cx: u32) {
        if self.unreserve(cx) {
            if let Some(key) = self.file(cx) {
                self.mark_pending(key);
            }
        }
    }

    /// The window of a kept contact ended at `at`.
    pub(super) fn reservation_due(&mut self, cx: u32, at: DateTime<Utc>) {
        if self
            .slot(cx)
            .and_then(|s| s.reserved)
            .is_some_and(|(_, until)| until == at)
        {
            self.release_reservation(cx);
        }
    }

    /// The agent left `available`: what was kept for them goes to everyone.
    /// Costs the agent's kept contacts.
    pub(super) fn release_reservations_of(&mut self, ax: u32) {
        let Some(a) = self.agents.get(ax as usize) else { return };
        let kept: Vec<u32> = a.reserved.iter().map(|k| k.ix).collect();
        for cx in kept {
            self.release_reservation(cx);
        }
    }

    /// The first contact kept for the agent that they can take now on one
    /// of their `free` channels and that comes before `bound`; costs the
    /// kept contacts walked.
    pub(super) fn reserved_head(&mut self, ax: u32, free: [bool; 4], bound: Option<WaitKey>) -> Option<WaitKey> {
        let slot = self.agents.get(ax as usize)?;
        let mut walked = 0;
        let mut found = None;
        for k in &slot.reserved {
            if bound.is_some_and(|b| *k >= b) {
                break;
            }
            walked += 1;
            let Some(s) = self.slot(k.ix) else { continue };
            if free[s.c.channel.index()] && fits(&slot.skills, &s.need) {
                found = Some(*k);
                break;
            }
        }
        self.work.examined += walked;
        found
    }

    /// Re-keys a kept contact around a change of its effective priority.
    pub(super) fn rekey_reserved(&mut self, cx: u32, old: WaitKey) {
        let Some(s) = self.slot(cx) else { return };
        let (Some((ax, _)), new) = (s.reserved, s.wait_key(cx)) else {
            return;
        };
        if let Some(a) = self.agents.get_mut(ax as usize) {
            a.reserved.remove(&old);
            a.reserved.insert(new);
        }
    }
}
