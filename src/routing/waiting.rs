//! How a waiting contact's claim changes while it waits: its place in line
//! ([`Ageing`]: priority steps and the starvation bound) and who may take
//! it ([`RelaxStep`]: lower levels, dropped skills, overflow to another
//! queue's agents). Both are pure functions of the time waited since
//! `received_at`, so nothing about them is persisted: a restored engine, a
//! standby and the reference model derive the same state from the records,
//! and a re-queued contact keeps its age.
//!
//! The engine applies relaxation through one deadline per waiting contact
//! (its next step), fired before every input (`ageing::age_due`). Ageing
//! costs a filed contact nothing: the wait index files it under its base
//! priority and ages its requirement classes, one re-key per class when
//! its first contact changes step (`queues`). Contacts out of the index
//! (kept for their last agent, held by closed hours) and those of a queue
//! ordered by slack keep an ageing deadline of their own.

use super::spec::{QueueSpec, RouterSpec};
use crate::domain::{QueueName, SkillLevel, SkillName};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// The effective priority of a contact above every configured one (0–9):
/// what a contact waiting longer than its queue's `max_wait_secs` gets.
pub const STARVED: u8 = 10;

const NS_PER_MS: i64 = 1_000_000;

/// How a waiting contact's place in line changes with its wait (measured
/// from `received_at`, so a re-queued contact keeps its age): its priority
/// rises one step per `step_ms` up to `cap`, and past `max_wait_ms` it is
/// served ahead of every contact not yet past its own bound
/// ([`STARVED`]), oldest first. A pure function of the wait, so a restored
/// engine, a standby and the reference model agree on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ageing {
    pub step_ms: Option<i64>,
    pub cap: u8,
    pub max_wait_ms: Option<i64>,
}

impl Ageing {
    /// The effective priority of a contact of priority `base` received at
    /// `received`, at `now`; and when it next changes, if it will.
    pub fn at(&self, base: u8, received: DateTime<Utc>, now: DateTime<Utc>) -> (u8, Option<DateTime<Utc>>) {
        let waited = (now - received).num_milliseconds().max(0);
        // Never panics: a deadline beyond chrono's range is no deadline.
        self.steps(base, waited, |ms| {
            received.checked_add_signed(Duration::milliseconds(ms))
        })
    }

    /// [`Ageing::at`] on nanoseconds since the epoch, the wait index's
    /// clock: the same steps in integer arithmetic (the index works it out
    /// for every band of a class it re-keys). A deadline past that clock's
    /// range (the year 2262) is none.
    pub fn at_ns(&self, base: u8, received: i64, now: i64) -> (u8, Option<i64>) {
        let waited = (now.saturating_sub(received) / NS_PER_MS).max(0);
        self.steps(base, waited, |ms| {
            ms.checked_mul(NS_PER_MS).and_then(|d| received.checked_add(d))
        })
    }

    /// The effective priority after waiting `waited_ms`, and when it next
    /// changes (`after`: the instant a wait of so many ms ends, if any).
    fn steps<T: Ord + Copy>(&self, base: u8, waited_ms: i64, after: impl Fn(i64) -> Option<T>) -> (u8, Option<T>) {
        if self.max_wait_ms.is_some_and(|m| waited_ms >= m) {
            return (STARVED, None);
        }
        let mut next = self.max_wait_ms.and_then(&after);
        let mut eff = base;
        if let Some(step) = self.step_ms.filter(|s| *s > 0 && base < self.cap) {
            let steps = waited_ms / step;
            eff = (base as i64 + steps).min(self.cap as i64) as u8;
            if let Some(up) = after((steps + 1).saturating_mul(step)).filter(|_| eff < self.cap) {
                next = Some(next.map_or(up, |n| n.min(up)));
            }
        }
        (eff, next)
    }

    /// When the effective priority `eff` that [`Ageing::at`] gave a contact
    /// of priority `base` received at `received` next changes: the
    /// deadline `at` returned with it, worked out again from `eff` alone
    /// (so it need not be stored per contact).
    pub fn next_change(&self, base: u8, received: DateTime<Utc>, eff: u8) -> Option<DateTime<Utc>> {
        if eff >= STARVED {
            return None;
        }
        let after = |ms: i64| received.checked_add_signed(Duration::milliseconds(ms));
        let mut next = self.max_wait_ms.and_then(after);
        if let Some(step) = self.step_ms.filter(|s| *s > 0 && base < self.cap && eff < self.cap) {
            let steps = eff.saturating_sub(base) as i64;
            if let Some(up) = after((steps + 1).saturating_mul(step)) {
                next = Some(next.map_or(up, |n| n.min(up)));
            }
        }
        next
    }
}

/// One step of a queue's relaxation (bullseye), applied once a contact has
/// waited `after_ms`: first the `overflow`, if any (from then on the
/// contact is routed as that queue's: its required skills, strategy and
/// offer timeout, plus the skills the contact itself asked for), then the
/// `skills` (each sets that requirement's level; 0 drops it).
#[derive(Debug, Clone, PartialEq)]
pub struct RelaxStep {
    pub after_ms: i64,
    pub skills: BTreeMap<SkillName, SkillLevel>,
    pub overflow: Option<QueueName>,
}

/// Where a waiting contact stands after its wait: the relaxation step
/// reached (0: none), the requirement and the queue whose strategy and
/// timeout apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Relaxed<'a> {
    pub step: usize,
    pub required: BTreeMap<SkillName, SkillLevel>,
    pub route: &'a QueueName,
    /// Wait (ms since `received_at`) at which the next step applies.
    pub next_after_ms: Option<i64>,
}

/// The relaxation step reached after waiting `waited_ms`, given when each
/// step applies (increasing), and the wait at which the next one does.
pub(crate) fn step_at(after_ms: &[i64], waited_ms: i64) -> (usize, Option<i64>) {
    let step = after_ms.partition_point(|ms| *ms <= waited_ms);
    (step, after_ms.get(step).copied())
}

impl RouterSpec {
    /// The relaxation of a contact of `queue` with `required` (as placed)
    /// after waiting `waited_ms`. A queue no longer configured, or without
    /// steps, keeps the requirement as placed.
    pub fn relaxed<'a>(
        &'a self,
        queue: &'a QueueName,
        required: &BTreeMap<SkillName, SkillLevel>,
        waited_ms: i64,
    ) -> Relaxed<'a> {
        let mut r = Relaxed {
            step: 0,
            required: required.clone(),
            route: queue,
            next_after_ms: None,
        };
        let Some(q) = self.queues.get(queue) else { return r };
        for step in &q.relax {
            if step.after_ms > waited_ms {
                r.next_after_ms = Some(step.after_ms);
                break;
            }
            r.step += 1;
            if let Some(target) = step.overflow.as_ref().and_then(|t| self.queues.get_key_value(t)) {
                r.required = overflowed(q, target.1, required);
                r.route = target.0;
            }
            for (s, l) in &step.skills {
                if *l == 0 {
                    r.required.remove(s);
                } else {
                    r.required.insert(s.clone(), *l);
                }
            }
        }
        r
    }
}

/// The target queue's skills plus those the contact asked for beyond its
/// own queue's (a language, say), at their levels.
fn overflowed(
    from: &QueueSpec,
    to: &QueueSpec,
    required: &BTreeMap<SkillName, SkillLevel>,
) -> BTreeMap<SkillName, SkillLevel> {
    let mut out = (*to.skills).clone();
    for (s, l) in required.iter().filter(|(s, _)| !from.skills.contains_key(*s)) {
        out.entry(s.clone()).or_insert(*l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ageing configurations the tests run through: none, steps without a
    /// bound, a bound without steps, both, and a zero step.
    const CONFIGS: [Ageing; 5] = [
        Ageing {
            step_ms: None,
            cap: 0,
            max_wait_ms: None,
        },
        Ageing {
            step_ms: Some(7_000),
            cap: 6,
            max_wait_ms: None,
        },
        Ageing {
            step_ms: None,
            cap: 0,
            max_wait_ms: Some(30_000),
        },
        Ageing {
            step_ms: Some(10_000),
            cap: 9,
            max_wait_ms: Some(45_000),
        },
        Ageing {
            step_ms: Some(0),
            cap: 9,
            max_wait_ms: Some(5_000),
        },
    ];

    #[test]
    fn ageing_steps_up_to_the_cap_and_the_bound_tops_everything() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let at = |s: i64| t0 + Duration::seconds(s);
        let a = Ageing {
            step_ms: Some(10_000),
            cap: 5,
            max_wait_ms: Some(60_000),
        };
        assert_eq!(a.at(2, t0, at(0)), (2, Some(at(10))));
        assert_eq!(a.at(2, t0, at(25)), (4, Some(at(30))));
        // At the cap, the next change is the bound.
        assert_eq!(a.at(2, t0, at(31)), (5, Some(at(60))));
        assert_eq!(a.at(2, t0, at(60)), (STARVED, None));
        // A priority above the cap does not age, and a future receipt counts as no wait.
        assert_eq!(a.at(7, t0, at(45)), (7, Some(at(60))));
        assert_eq!(a.at(2, at(5), at(0)), (2, Some(at(15))));
        assert_eq!(Ageing::default().at(3, t0, at(1_000_000)), (3, None));
        // Deadlines beyond the calendar are none, never a panic.
        assert_eq!(a.at(2, DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MAX_UTC).1, None);
    }

    #[test]
    fn ageing_on_nanoseconds_agrees_with_ageing_on_datetimes() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000) + Duration::nanoseconds(123_456_789);
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().expect("in range");
        for a in CONFIGS {
            for base in 0..=9u8 {
                // Sub-millisecond offsets on both sides of each step.
                for us in (-3_000_000i64..120_000_000).step_by(999_983) {
                    let now = t0 + Duration::microseconds(us);
                    let (eff, next) = a.at(base, t0, now);
                    let want = (eff, next.map(ns));
                    assert_eq!(a.at_ns(base, ns(t0), ns(now)), want, "{a:?} base {base} at {us} µs");
                }
            }
        }
        // Past the nanosecond clock's range: no deadline, never a panic.
        let a = CONFIGS[3];
        assert_eq!(a.at_ns(2, i64::MAX, i64::MAX).1, None);
        assert_eq!(a.at_ns(2, i64::MIN, i64::MAX).0, STARVED);
    }

    #[test]
    fn the_next_change_is_the_deadline_at_gave_with_the_priority() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        for a in CONFIGS {
            for base in 0..=9u8 {
                for ms in (-3_000..120_000).step_by(1_250) {
                    let now = t0 + Duration::milliseconds(ms);
                    let (eff, next) = a.at(base, t0, now);
                    assert_eq!(a.next_change(base, t0, eff), next, "{a:?} base {base} at {ms} ms");
                }
            }
        }
    }
}
