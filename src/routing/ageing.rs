//! A waiting contact's claim as it waits, applied to the engine: its
//! effective priority, its relaxation steps (cached per queue, step and
//! requirement as placed) and the one timer per contact that carries them
//! (`ages`, fired before every input by [`Engine::age_due`]).
//!
//! Invariants: a waiting contact has at most one timer in `ages`, at the
//! earlier of its next relaxation step and, unless the wait index ages it
//! (filed, under a queue not ordered by slack), the next change of its
//! effective priority; `eff` is current for every contact the index does
//! not age. The pure rules (what the priority and step are after a wait)
//! are in `waiting`.

use super::model::secs_to_duration;
use super::timers::Timer;
use super::Engine;
use crate::domain::wire;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

impl Engine {
    /// A waiting contact's effective priority at `now` (the wait index ages
    /// the contacts filed in it; the others are kept current by their timer).
    pub(super) fn effective_priority(&self, cx: u32, now: DateTime<Utc>) -> u8 {
        let Some(s) = self.slot(cx) else { return 0 };
        match (s.aged_by_index(), self.queues.get(s.q as usize)) {
            (true, Some(q)) => q.ageing.at(s.c.priority, s.c.received_at, now).0,
            _ => s.eff,
        }
    }

    /// (Re)schedules a waiting contact's timer in `ages` for its next
    /// change: relaxation always, ageing unless the wait index ages it.
    pub(super) fn schedule_age(&mut self, cx: u32) {
        let Some(s) = self.slot(cx) else { return };
        let ageing = match self.queues.get(s.q as usize) {
            Some(q) if !s.aged_by_index() => q.ageing.next_change(s.c.priority, s.c.received_at, s.eff),
            _ => None,
        };
        let want = match (s.relax_at, ageing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if want == s.age_at {
            return;
        }
        self.cancel_age(cx);
        if let Some(at) = want {
            if self.ages_new.len() >= super::AGES_NEW_MAX {
                self.flush_ages();
            }
            self.ages_new.push((at, cx));
            if let Some(s) = self.slot_mut(cx) {
                (s.age_at, s.age_new) = (Some(at), true);
            }
        }
    }

    /// Puts the ageing timers scheduled in this input into `ages`.
    pub(super) fn flush_ages(&mut self) {
        for (at, cx) in std::mem::take(&mut self.ages_new) {
            self.ages.insert(at, Timer::Age(cx));
            if let Some(s) = self.slot_mut(cx) {
                s.age_new = false;
            }
        }
    }

    /// Sets a contact's effective priority and relaxation step for `now`
    /// and schedules its next change; `true` if its requirement changed.
    pub(super) fn age(&mut self, cx: u32, now: DateTime<Utc>) -> bool {
        let changed = self.age_fields(cx, now);
        self.schedule_age(cx);
        changed
    }

    /// [`Engine::age`] without scheduling the timer (the caller does, once
    /// it knows whether the contact is filed).
    pub(super) fn age_fields(&mut self, cx: u32, now: DateTime<Utc>) -> bool {
        let Some(s) = self.slot(cx) else { return false };
        let (ageing, relax_ms, early) = self
            .queues
            .get(s.q as usize)
            .map_or((Default::default(), &[][..], false), |q| {
                (q.ageing, &q.relax_ms[..], q.relax_before_breach)
            });
        let eff = ageing.at(s.c.priority, s.c.received_at, now).0;
        let mut next: Option<DateTime<Utc>> = None;
        let mut changed = false;
        if !relax_ms.is_empty() {
            let received = s.c.received_at;
            let mut waited = (now - received).num_milliseconds().max(0);
            // The step alone first (no allocation, no lookup by name): the
            // requirement is rebuilt only when the step changes. Steps
            // never go back (one may have been applied early).
            let (mut at_step, mut next_after_ms) = super::waiting::step_at(relax_ms, waited);
            if at_step < s.step as usize {
                at_step = s.step as usize;
                next_after_ms = relax_ms.get(at_step).copied();
            }
            let mut early_reason = None;
            if early && at_step < relax_ms.len() {
                match self.predicted_breach(cx, now) {
                    // The estimated wait would breach: the next step now.
                    Some((breach, crossing)) if crossing <= now => {
                        early_reason = Some(format!(
                            "step {} applied early: the estimated wait would pass the SLA breach at {}",
                            at_step + 1,
                            wire::rfc3339(breach)
                        ));
                        at_step += 1;
                        next_after_ms = relax_ms.get(at_step).copied();
                    }
                    // Look again when the prediction would cross it.
                    Some((_, crossing)) => next = Some(next.map_or(crossing, |n| n.min(crossing))),
                    None => {}
                }
            }
            if at_step > 0 {
                waited = waited.max(relax_ms[at_step - 1]);
            }
            let Some(s) = self.slot(cx) else { return false };
            let step_at = next_after_ms.and_then(|ms| received.checked_add_signed(Duration::milliseconds(ms)));
            next = match (next, step_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if at_step != s.step as usize {
                changed = true;
                // Its `overflowed` or `relaxed` event may follow.
                s.c.warm();
                let Some(r) = self.relaxation(cx, at_step, waited) else {
                    return false;
                };
                let (from_q, relaxes) = self
                    .slot(cx)
                    .map_or((r.route_q, false), |s| (s.route_q, s.need[..] != r.need[..]));
                if let Some(reason) = &early_reason {
                    self.event_with("relaxed", cx, now, |m, _| m.reason = Some(reason));
                }
                // The contract's `overflowed` for a step that moves the
                // contact to another queue's agents or relaxes what it
                // requires: the queues when it moves, the requirement now
                // in force either way.
                if from_q != r.route_q || relaxes {
                    let moved = (from_q != r.route_q).then(|| {
                        (
                            self.queues[from_q as usize].name.clone(),
                            self.queues[r.route_q as usize].name.clone(),
                        )
                    });
                    // By name from the engine's names, which the event's
                    // writer lends: no copy of each name (an atomic count
                    // up and down per skill) nor a list to hold them.
                    let need = &r.need;
                    self.event_with("overflowed", cx, now, |m, names| {
                        (m.from_queue, m.to_queue) = (moved.as_ref().map(|q| &q.0), moved.as_ref().map(|q| &q.1));
                        m.required = Some(super::by_name(need, names));
                        m.reason = early_reason.as_deref();
                    });
                }
                if let Some(s) = self.slot_mut(cx) {
                    (s.need, s.route_q) = (r.need, r.route_q);
                    s.step = r.step;
                    s.c.relax_step = r.step;
                    self.dirty_contacts.push(cx);
                }
            }
        }
        if let Some(s) = self.slot_mut(cx) {
            (s.eff, s.relax_at) = (eff, next);
        }
        changed
    }

    /// A restored contact takes the relaxation step its record says it
    /// reached, silently (its events went out then); steps due since are
    /// applied, and announced, when it is filed.
    pub(super) fn restore_step(&mut self, cx: u32) {
        let Some(s) = self.slot(cx) else { return };
        let relax_ms = self.queues.get(s.q as usize).map_or(&[][..], |q| &q.relax_ms[..]);
        // A queue configured with fewer steps now keeps what it has.
        let step = usize::from(s.c.relax_step).min(relax_ms.len());
        if step == 0 {
            return;
        }
        let waited = relax_ms[step - 1];
        let Some(r) = self.relaxation(cx, step, waited) else {
            return;
        };
        if let Some(s) = self.slot_mut(cx) {
            (s.need, s.route_q) = (r.need, r.route_q);
            s.step = r.step;
        }
    }

    /// The relaxation of a waiting contact at `at_step` (having waited
    /// `waited_ms`, at least that step's wait), from the cache when its
    /// queue and requirement as placed were seen at that step before.
    fn relaxation(&mut self, cx: u32, at_step: usize, waited_ms: i64) -> Option<super::RelaxTo> {
        let s = self.slot(cx)?;
        // By address: requirements as placed are shared (`placed_need`),
        // so this reads no contact's requirement. A miss only costs working
        // the step out again.
        let key = relax_key(s.q, u8::try_from(at_step).unwrap_or(u8::MAX), &s.placed);
        if let Some(hit) = self.relax_cache.get(&key) {
            debug_assert!(Arc::ptr_eq(&hit.placed, &s.placed));
            return Some(hit.to.clone());
        }
        let (queue, required, placed) = (s.c.queue.clone(), s.c.required.clone(), Arc::clone(&s.placed));
        let spec = Arc::clone(&self.spec);
        let r = spec.relaxed(&queue, &required, waited_ms);
        let need = super::Need::from(self.intern(&r.required));
        let route_q = self.queue_slot(r.route);
        let to = super::RelaxTo {
            step: u8::try_from(r.step).unwrap_or(u8::MAX),
            need,
            route_q,
        };
        if self.relax_cache.len() < self.relax_cache_cap {
            let kept = super::Relaxation {
                placed,
                to: to.clone(),
                class: [None; 4],
            };
            self.relax_cache.insert(key, kept);
        }
        Some(to)
    }

    /// Where a relaxed contact's step keeps its wait-index class hint (see
    /// [`super::queues::WaitIndex::insert`]): the cache key and the
    /// contact's channel, with the hint kept there now; `None` before any
    /// step.
    pub(super) fn class_hint(&self, cx: u32) -> Option<(super::RelaxKey, usize, Option<super::queues::ClassHint>)> {
        let s = self.slot(cx).filter(|s| s.step > 0)?;
        let (key, ch) = (relax_key(s.q, s.step, &s.placed), s.c.channel.index());
        Some((key, ch, self.relax_cache.get(&key).and_then(|r| r.class[ch])))
    }

    /// For a waiting contact with an SLA clock running: its nearest breach,
    /// and when the queue's estimated wait (of a contact at the back of
    /// its line) would reach past it.
    fn predicted_breach(&self, cx: u32, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let breach = self.breach_at(cx)?;
        let q = self.slot(cx)?.q;
        let ewt = self.estimated_wait(q, self.queues.get(q as usize)?.waiting.max(1))?;
        let crossing = breach.checked_sub_signed(secs_to_duration(ewt))?;
        Some((breach, crossing.max(now)))
    }

    pub(super) fn cancel_age(&mut self, cx: u32) {
        let Some(s) = self.slot_mut(cx) else { return };
        let (Some(at), new) = (s.age_at.take(), std::mem::take(&mut s.age_new)) else {
            return;
        };
        if !new {
            self.ages.cancel(at, Timer::Age(cx));
        } else if let Some(i) = self.ages_new.iter().position(|e| *e == (at, cx)) {
            self.ages_new.swap_remove(i);
        }
    }

    /// Re-files every waiting contact whose effective priority or
    /// relaxation step changed by `now`; costs the number of such contacts.
    /// Runs before every input, so decisions always see the order and
    /// requirements of their own time. A contact whose requirement was
    /// relaxed may now fit a free agent, so it is marked for settling; one
    /// that only moved up in line cannot (the state was settled).
    pub(super) fn age_due(&mut self, now: DateTime<Utc>) {
        self.waiting.advance(now);
        // Empty between inputs (settling files them); never left behind.
        self.file_unfiled();
        // Flushed each round: a timer scheduled here that is due already
        // fires in this pass, as it did when it went straight into `ages`.
        while let Some((at, timer)) = {
            self.flush_ages();
            self.ages.pop_due(now)
        } {
            let cx = match timer {
                Timer::Age(cx) => cx,
                Timer::Reserve(cx) => {
                    self.reservation_due(cx, at);
                    continue;
                }
                _ => continue,
            };
            let Some(s) = self.slot_mut(cx) else { continue };
            if s.age_at != Some(at) {
                continue;
            }
            s.age_at = None;
            let (old, stored, class) = (s.wait_key(cx), s.stored_key(cx), s.class);
            match class {
                // Aged by the index: only a new requirement moves it.
                Some(class) if s.ages_in_index => {
                    if self.age_fields(cx, now) {
                        self.work.relaxed += 1;
                        if let Some(s) = self.slot_mut(cx) {
                            s.class = None;
                        }
                        self.waiting.remove(class, stored);
                        if let Some(key) = self.file(cx) {
                            self.mark_pending(key);
                        }
                    } else {
                        self.schedule_age(cx);
                    }
                }
                Some(class) => {
                    s.class = None;
                    self.waiting.remove(class, stored);
                    let relaxed = self.age_fields(cx, now);
                    self.work.relaxed += usize::from(relaxed);
                    if let (Some(key), true) = (self.file(cx), relaxed) {
                        self.mark_pending(key);
                    }
                }
                // Held by closed hours or kept for its last agent: its place
                // and requirement move on all the same.
                None => {
                    self.work.relaxed += usize::from(self.age(cx, now));
                    self.rekey_reserved(cx, old);
                }
            }
        }
    }
}

fn relax_key(q: u32, step: u8, placed: &super::Need) -> super::RelaxKey {
    (q, step, Arc::as_ptr(placed).cast::<()>().addr())
}
