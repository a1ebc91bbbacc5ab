//! Deadline-ordered timers: offer expiries, wrap-up ends and SLA thresholds.
//!
//! Invariants:
//! - every entry is live: whoever makes a timer obsolete (an accept cancels
//!   the offer's expiry, a response or a close cancels the SLA clock) removes
//!   it, so a tick costs the number of timers due, never the number of open
//!   contacts, and nothing fires as a no-op;
//! - entries name contacts and agents by their slot in the engine; a slot is
//!   reused only after every timer naming it is cancelled (the engine cancels
//!   a contact's timers when it closes it);
//! - ties at the same instant fire in a fixed order (offer expiries, then
//!   wrap-up ends, then SLA thresholds, each by slot), so replays agree.
//!
//! The SLA clocks of the next issue (next response, resolution, business
//! calendars) add kinds here; their deadline arithmetic stays in `sla`.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// The offer of the contact in this slot expires.
    OfferExpiry(u32),
    /// Wrap-ups of the agent in this slot that are due end.
    WrapUpEnd(u32),
    /// The next SLA threshold of the contact in this slot is due.
    Sla(u32),
    /// The waiting contact in this slot moves up in line (ageing, the
    /// starvation bound); kept in a set of its own, fired before every input.
    Age(u32),
    /// The queue in this slot opens or closes (business hours).
    Hours(u32),
    /// The window in which the contact in this slot is kept for its
    /// customer's last agent ends; in `ages` with the ageing timers.
    Reserve(u32),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(DateTime<Utc>, Timer)>,
}

impl Timers {
    pub fn insert(&mut self, at: DateTime<Utc>, t: Timer) {
        self.set.insert((at, t));
    }

    /// Removes a timer; `false` if it was not scheduled.
    pub fn cancel(&mut self, at: DateTime<Utc>, t: Timer) -> bool {
        self.set.remove(&(at, t))
    }

    /// The earliest timer due at `now`, removed.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Timer)> {
        match self.set.first() {
            Some((at, _)) if *at <= now => self.set.pop_first(),
            _ => None,
        }
    }

    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.set.first().map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn due_timers_pop_in_deadline_order_and_cancelled_ones_never_fire() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let mut t = Timers::default();
        t.insert(t0 + Duration::seconds(3), Timer::Sla(1));
        t.insert(t0 + Duration::seconds(1), Timer::OfferExpiry(2));
        t.insert(t0 + Duration::seconds(2), Timer::WrapUpEnd(0));
        assert!(t.cancel(t0 + Duration::seconds(2), Timer::WrapUpEnd(0)));
        assert!(!t.cancel(t0 + Duration::seconds(2), Timer::WrapUpEnd(0)));
        assert_eq!(t.next(), Some(t0 + Duration::seconds(1)));
        assert_eq!(t.pop_due(t0), None);
        let due: Vec<_> = std::iter::from_fn(|| t.pop_due(t0 + Duration::seconds(5))).collect();
        assert_eq!(
            due,
            [
                (t0 + Duration::seconds(1), Timer::OfferExpiry(2)),
                (t0 + Duration::seconds(3), Timer::Sla(1))
            ]
        );
        assert_eq!(t.len(), 0);
    }
}
