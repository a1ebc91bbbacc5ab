//! The daemon's wall clock.
//!
//! Production reads the system clock. A test may start the clock at a
//! chosen instant (the night of a daylight-saving change, say), from which
//! it runs at real speed, so a scenario at that instant runs end to end on
//! a real NATS server without waiting for the date. Everything the router
//! decides and records (contact times, timers, journal times, alert
//! lateness) reads this clock; only durations (timeouts, backoff) use the
//! monotonic one.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    /// Added to the system time.
    offset: Duration,
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
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
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
    }
}
