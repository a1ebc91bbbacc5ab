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

/// Timers in deadline order, each packed into one `u128` that orders as
/// `(at, timer)` does: the deadline's seconds (offset to be non-negative,
/// 44 bits cover chrono's whole range) and nanoseconds (31 bits, leap
/// seconds included), then the kind (3 bits, in declaration order) and the
/// slot (32 bits). Half the bytes of the tuple and one comparison per key,
/// where the tuple compared date, time and fraction: a close or an offer
/// cancels a timer in a set of one per open contact, and its search is
/// mostly those comparisons and the cache lines of the keys it passes.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<u128>,
}

const SECS_OFFSET: i64 = 1 << 43;

fn pack(at: DateTime<Utc>, t: Timer) -> u128 {
    // chrono's range is within ±2^43 seconds, so the sum is in 0..2^44.
    let secs = at.timestamp().saturating_add(SECS_OFFSET).clamp(0, (1 << 44) - 1) as u128;
    let nanos = u128::from(at.timestamp_subsec_nanos() & 0x7fff_ffff);
    let (kind, slot) = match t {
        Timer::OfferExpiry(x) => (0u128, x),
        Timer::WrapUpEnd(x) => (1, x),
        Timer::Sla(x) => (2, x),
        Timer::Age(x) => (3, x),
        Timer::Hours(x) => (4, x),
        Timer::Reserve(x) => (5, x),
    };
    (secs << 66) | (nanos << 35) | (kind << 32) | u128::from(slot)
}

fn unpack(k: u128) -> Option<(DateTime<Utc>, Timer)> {
    let secs = i64::try_from(k >> 66).ok()? - SECS_OFFSET;
    let nanos = u32::try_from((k >> 35) & 0x7fff_ffff).ok()?;
    let t = timer_of(((k >> 32) & 0x7) as u8, (k & 0xffff_ffff) as u32);
    Some((DateTime::from_timestamp(secs, nanos)?, t))
}

/// The timer of a packed kind (declaration order; 5 and up: the last).
fn timer_of(kind: u8, slot: u32) -> Timer {
    match kind {
        0 => Timer::OfferExpiry(slot),
        1 => Timer::WrapUpEnd(slot),
        2 => Timer::Sla(slot),
        3 => Timer::Age(slot),
        4 => Timer::Hours(slot),
        _ => Timer::Reserve(slot),
    }
}

impl Timers {
    pub fn insert(&mut self, at: DateTime<Utc>, t: Timer) {
        self.set.insert(pack(at, t));
    }

    /// Removes a timer; `false` if it was not scheduled.
    pub fn cancel(&mut self, at: DateTime<Utc>, t: Timer) -> bool {
        self.set.remove(&pack(at, t))
    }

    /// The earliest timer due at `now`, removed.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Timer)> {
        let first = *self.set.first()?;
        // Packing keeps order, so "due" is one comparison with `now` packed
        // as the first key of its instant.
        if first >= pack(now, Timer::OfferExpiry(0)).saturating_add(1 << 35) {
            return None;
        }
        self.set.pop_first();
        unpack(first)
    }

    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.set.first().and_then(|k| unpack(*k)).map(|(at, _)| at)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn timer(kind: u8, slot: u32) -> Timer {
        timer_of(kind % 6, slot)
    }

    fn instant(secs: i64, nanos: u32) -> DateTime<Utc> {
        let lo = DateTime::<Utc>::MIN_UTC.timestamp();
        let hi = DateTime::<Utc>::MAX_UTC.timestamp() - 1;
        let secs = secs.clamp(lo, hi);
        // A leap second's nanoseconds (1e9 and up) are valid at :59 only.
        DateTime::from_timestamp(secs, nanos % 2_000_000_000)
            .or_else(|| DateTime::from_timestamp(secs, nanos % 1_000_000_000))
            .expect("in range")
    }

    proptest::proptest! {
        /// The packed key orders as `(at, timer)` and unpacks to it, over
        /// chrono's whole range, leap seconds and every kind and slot.
        #[test]
        fn packed_timers_order_and_unpack_as_the_pairs_they_pack(
            a in (proptest::prelude::any::<i64>(), 0u32..2_000_000_000, 0u8..6, proptest::prelude::any::<u32>()),
            b in (-1i64..2, 0u32..3, 0u8..6, 0u32..3),
            near in proptest::prelude::any::<bool>(),
        ) {
            let x = (instant(a.0, a.1), timer(a.2, a.3));
            // Half the cases put the second pair right beside the first
            // (within a second, a nanosecond and a slot: equal instants
            // then order by kind and slot).
            let y = if near {
                let nanos = (a.1 + b.1).saturating_sub(1);
                (instant(a.0.saturating_add(b.0), nanos), timer(b.2, a.3.wrapping_add(b.3)))
            } else {
                (instant(b.0, b.1), timer(b.2, b.3))
            };
            proptest::prop_assert_eq!(unpack(pack(x.0, x.1)), Some(x));
            proptest::prop_assert_eq!(pack(x.0, x.1).cmp(&pack(y.0, y.1)), x.cmp(&y));
        }
    }

    #[test]
    fn a_timer_is_due_at_its_instant_and_not_a_nanosecond_before() {
        let at = DateTime::<Utc>::UNIX_EPOCH + Duration::nanoseconds(1_500);
        let mut t = Timers::default();
        t.insert(at, Timer::Reserve(u32::MAX));
        assert_eq!(t.pop_due(at - Duration::nanoseconds(1)), None);
        assert_eq!(t.pop_due(at), Some((at, Timer::Reserve(u32::MAX))));
        let before_epoch = DateTime::<Utc>::UNIX_EPOCH - Duration::milliseconds(1);
        t.insert(before_epoch, Timer::OfferExpiry(0));
        assert_eq!(t.next(), Some(before_epoch));
        assert_eq!(
            t.pop_due(DateTime::<Utc>::UNIX_EPOCH),
            Some((before_epoch, Timer::OfferExpiry(0)))
        );
    }

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
