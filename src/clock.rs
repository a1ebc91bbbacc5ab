//! The daemon's wall clock.
//!
//! Production reads the system clock. A test may start the clock at a
//! chosen instant (the night of a daylight-saving change, say), from which
//! it runs at real speed, so a scenario at that instant runs end to end on
//! a real NATS server without waiting for the date; or hold it still
//! ([`Clock::manual`]) and move it itself, so days pass at once and a
//! timer fires exactly when the test says. Everything the router decides
//! and records (contact times, timers, journal times, alert lateness)
//! reads this clock; only durations (timeouts, backoff) use the monotonic
//! one.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Added to the system time.
    offset: Duration,
    /// Set: the clock reads this and moves only when told.
    manual: Option<Arc<Manual>>,
}

#[derive(Debug)]
struct Manual {
    now: Mutex<DateTime<Utc>>,
    /// Woken when the time is set, so a router waiting for its next
    /// deadline looks again at once.
    moved: Notify,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` now and runs at real speed from there.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock {
            offset: start - Utc::now(),
            manual: None,
        }
    }

    /// A clock that reads `start` until [`Clock::set`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock {
            offset: Duration::zero(),
            manual: Some(Arc::new(Manual {
                now: Mutex::new(start),
                moved: Notify::new(),
            })),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            // A poisoned lock still holds a time: read it.
            Some(m) => *m.now.lock().unwrap_or_else(|e| e.into_inner()),
            None => Utc::now() + self.offset,
        }
    }

    /// Moves a manual clock to `t` (never back) and wakes whoever waits in
    /// [`Clock::moved`]; a running clock ignores it.
    pub fn set(&self, t: DateTime<Utc>) {
        if let Some(m) = &self.manual {
            {
                let mut now = m.now.lock().unwrap_or_else(|e| e.into_inner());
                *now = (*now).max(t);
            }
            // One waiter (the router): a permit is kept if it is busy now.
            m.moved.notify_one();
        }
    }

    /// A system time (a stream's arrival stamp) on this clock: shifted by
    /// a started clock's offset; `None` on a manual clock, which has no
    /// relation to the system time.
    pub fn of_system(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.manual.is_none().then(|| t + self.offset)
    }

    /// Whether this clock moves only when told ([`Clock::manual`]).
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Resolves when a manual clock is moved; never for a running one.
    pub async fn moved(&self) {
        match &self.manual {
            Some(m) => m.moved.notified().await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_clock_reads_its_start_then_runs_on() {
        let start = DateTime::parse_from_rfc3339("2026-03-29T00:59:50Z")
            .expect("time")
            .with_timezone(&Utc);
        let c = Clock::starting_at(start);
        let d = c.now() - start;
        assert!(d >= Duration::zero() && d < Duration::seconds(60), "{d}");
        assert!((Clock::system().now() - Utc::now()).num_seconds().abs() < 60);
        let t = Utc::now();
        let shifted = c.of_system(t).expect("a running clock maps system time");
        assert!(((shifted - t) - (start - Utc::now())).num_seconds().abs() < 60);
        assert_eq!(Clock::system().of_system(t), Some(t));
        assert_eq!(
            Clock::manual(start).of_system(t),
            None,
            "a manual clock has no system time"
        );
    }

    #[tokio::test]
    async fn a_manual_clock_moves_only_forward_when_set_and_wakes_its_waiter() {
        let start = DateTime::parse_from_rfc3339("2026-10-23T14:59:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let c = Clock::manual(start);
        assert_eq!(c.now(), start);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.moved().await })
        };
        tokio::task::yield_now().await;
        let later = start + Duration::days(3);
        c.set(later);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(c.now(), later);
        c.set(start);
        assert_eq!(c.now(), later, "never back");
    }
}
