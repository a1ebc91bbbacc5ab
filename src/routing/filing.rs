//! Filing waiting contacts: into the wait index ([`super::queues`]) when
//! they start to wait, out of it when they are offered or closed, held out
//! of it while their queue is closed, and the short list of contacts that
//! became waiting in the current input (`Engine::unfiled`).
//!
//! Invariants: between inputs, a waiting contact is in exactly one of the
//! wait index (`class`), held by closed hours (`held`) or kept for its last
//! agent (`reserved`); during an input it may be in `unfiled` instead,
//! which settling reads as if filed and empties at its end. A queue's
//! `waiting` count moves with `enqueue` and `dequeue` only.

use super::agents::fits;
use super::queues::WaitKey;
use super::timers::Timer;
use super::Engine;
use chrono::{DateTime, Duration, Utc};

impl Engine {
    /// Files a waiting contact under its effective priority at `now` and
    /// marks it for this input's settle.
    pub(super) fn enqueue(&mut self, cx: u32, now: DateTime<Utc>) {
        if self.slot(cx).is_none_or(|s| s.class.is_some() || s.held || s.unfiled) {
            return;
        }
        let Some(q) = self.slot(cx).map(|s| s.q) else { return };
        if self.queues.get(q as usize).is_some_and(|q| q.order_by_slack) {
            // Least slack first: its place is its nearest breach; contacts
            // without a running clock come after every contact with one.
            let at = self.breach_at(cx);
            if let Some(s) = self.slot_mut(cx) {
                let unhurried = s.c.received_at.checked_add_signed(Duration::days(36_500));
                s.order_at = super::agents::nanos(at.or(unhurried).unwrap_or(s.c.received_at));
            }
        }
        // Scheduled once it is known where it waits (filed: relaxation only).
        self.age_fields(cx, now);
        self.count_waiting(q, true);
        let Some(slot) = self.queues.get_mut(q as usize) else {
            self.schedule_age(cx);
            return;
        };
        if slot.hours.is_some() {
            slot.members.insert(cx);
        }
        if !slot.open {
            // Held until the queue opens.
            if let Some(s) = self.slot_mut(cx) {
                s.held = true;
            }
            self.schedule_age(cx);
            return;
        }
        if self.reserve(cx, now) {
            self.schedule_age(cx);
            return;
        }
        // Not filed yet when someone free may take it at once and there is
        // room (see `UNFILED_MAX`). Filed at once otherwise: an agent freed
        // later in the input may still take it, but mostly nobody does
        // (an expired offer at saturation). A restore files at once, as no
        // input ends it.
        let free = self.anyone_free_for(cx);
        let key = if free && self.unfiled.len() < super::UNFILED_MAX && !self.restoring {
            self.defer_filing(cx)
        } else {
            self.file(cx)
        };
        // As `mark_pending` would.
        if let (Some(key), true) = (key, free) {
            self.pending_contacts.insert(key);
        }
    }

    /// Takes a contact out of `unfiled` (the caller clears its flag).
    fn drop_unfiled(&mut self, cx: u32) {
        if let Some(i) = self.unfiled.iter().position(|c| *c == cx) {
            self.unfiled.swap_remove(i);
        }
    }

    /// Puts a waiting contact in `unfiled`; returns its effective key now.
    fn defer_filing(&mut self, cx: u32) -> Option<WaitKey> {
        self.slot_mut(cx)?.unfiled = true;
        self.unfiled.push(cx);
        self.schedule_age(cx);
        self.unfiled_key(cx)
    }

    /// Opens or closes a queue with hours as its calendar says at `now`
    /// (closing holds its waiting contacts out of the wait index, opening
    /// files them and marks them for settling), and schedules the next
    /// change. Costs the queue's waiting contacts, at its boundaries only.
    pub(super) fn keep_hours(&mut self, q: u32, now: DateTime<Utc>) {
        let Some(slot) = self.queues.get_mut(q as usize) else {
            return;
        };
        let Some(cal) = slot.hours.clone() else { return };
        let open = cal.is_open(now);
        if let Some(next) = cal.next_change(now) {
            self.timers.insert(next, Timer::Hours(q));
        }
        let slot = &mut self.queues[q as usize];
        if open == slot.open {
            return;
        }
        slot.open = open;
        let members: Vec<u32> = slot.members.iter().copied().collect();
        tracing::info!(queue = %slot.name, open, waiting = members.len(), "Queue hours: {}.", if open { "opening" } else { "closing" });
        for cx in members {
            let Some(s) = self.slot_mut(cx) else { continue };
            if open && s.held {
                s.held = false;
                if self.reserve(cx, now) {
                    continue;
                }
                if let Some(key) = self.file(cx) {
                    self.mark_pending(key);
                }
            } else if !open {
                if let Some(class) = s.class.take() {
                    let key = s.stored_key(cx);
                    s.held = true;
                    self.waiting.remove(class, key);
                    // Out of the index, its place is its own again.
                    self.age(cx, now);
                } else if std::mem::take(&mut s.unfiled) {
                    s.held = true;
                    self.drop_unfiled(cx);
                    self.age(cx, now);
                } else if self.unreserve(cx) {
                    if let Some(s) = self.slot_mut(cx) {
                        s.held = true;
                    }
                }
            }
        }
    }

    /// Puts a contact in the wait index under its stored key; returns its
    /// effective key now.
    pub(super) fn file(&mut self, cx: u32) -> Option<WaitKey> {
        let s = self.contacts.get(cx)?;
        let key = s.stored_key(cx);
        let ageing = self.filing_ageing(s);
        let kept = self.class_hint(cx);
        let free = &self.free;
        let hint = kept.and_then(|(_, _, h)| h);
        let (class, eff) = self.waiting.insert(s.c.channel, &s.need, ageing, key, hint, |need| {
            // File under the skill fewest agents hold at the level.
            need.iter().copied().min_by_key(|(s, l)| free.holders_at_least(*s, *l))
        });
        self.slot_mut(cx)?.class = Some(class);
        // The next contact taking the same step goes straight to this class.
        if let Some((k, ch, was)) = kept {
            let now = self.waiting.hint(class);
            if now != was {
                if let Some(r) = self.relax_cache.get_mut(&k) {
                    r.class[ch] = now;
                }
            }
        }
        // The index ages it from now on: its timer keeps the relaxation only.
        self.schedule_age(cx);
        Some(eff)
    }

    fn count_waiting(&mut self, q: u32, up: bool) {
        let Some(slot) = self.queues.get_mut(q as usize) else {
            return;
        };
        slot.waiting = if up {
            slot.waiting + 1
        } else {
            slot.waiting.saturating_sub(1)
        };
        self.mark_queue_changed(q);
    }

    /// Notes that a queue's gauges (waiting, at risk) moved.
    pub(super) fn mark_queue_changed(&mut self, q: u32) {
        if let Some(slot) = self.queues.get_mut(q as usize) {
            if !slot.changed {
                slot.changed = true;
                self.changed_queues.push(q);
            }
        }
    }

    pub(super) fn dequeue(&mut self, cx: u32) {
        self.cancel_age(cx);
        let Some(s) = self.slot_mut(cx) else { return };
        let held = std::mem::take(&mut s.held);
        let unfiled = std::mem::take(&mut s.unfiled);
        let class = s.class.take();
        let (key, q) = (s.stored_key(cx), s.q);
        let reserved = self.unreserve(cx);
        if unfiled {
            self.drop_unfiled(cx);
        }
        match class {
            Some(class) => self.waiting.remove(class, key),
            None if held || reserved || unfiled => {}
            None => return,
        }
        if let Some(slot) = self.queues.get_mut(q as usize) {
            slot.members.remove(&cx);
        }
        self.count_waiting(q, false);
    }

    /// The first contact of `unfiled` the agent can take on the channels
    /// marked free, if it comes before `bound`: what [`WaitIndex::first_for`]
    /// would have found among them had they been filed.
    ///
    /// [`WaitIndex::first_for`]: super::queues::WaitIndex::first_for
    pub(super) fn first_unfiled_for(&self, ax: u32, free: [bool; 4], bound: Option<WaitKey>) -> Option<WaitKey> {
        if self.unfiled.is_empty() {
            return None;
        }
        let skills = &self.agents.get(ax as usize)?.skills;
        let mut found = None;
        for &cx in &self.unfiled {
            let Some(s) = self.slot(cx).filter(|s| s.unfiled) else {
                continue;
            };
            if !free[s.c.channel.index()] || !fits(skills, &s.need) {
                continue;
            }
            let Some(k) = self.unfiled_key(cx) else { continue };
            if found.or(bound).is_none_or(|b| k < b) {
                found = Some(k);
            }
        }
        found
    }

    /// Files the contacts of `unfiled` still waiting (at the end of an
    /// input: nobody free fits them, or settling would have offered them).
    pub(super) fn file_unfiled(&mut self) {
        while let Some(cx) = self.unfiled.pop() {
            if let Some(s) = self.slot_mut(cx).filter(|s| s.unfiled) {
                s.unfiled = false;
                self.file(cx);
            }
        }
    }

    /// An unfiled contact's effective key now: the key the wait index
    /// would give it.
    pub(super) fn unfiled_key(&self, cx: u32) -> Option<WaitKey> {
        let s = self.slot(cx)?;
        Some(self.waiting.effective_with(self.filing_ageing(s), s.stored_key(cx)))
    }

    /// The ageing the wait index applies to a contact filed as it is now.
    fn filing_ageing(&self, s: &super::ContactSlot) -> Option<super::spec::Ageing> {
        s.ages_in_index
            .then(|| self.queues.get(s.q as usize).map(|q| q.ageing))
            .flatten()
    }
}
