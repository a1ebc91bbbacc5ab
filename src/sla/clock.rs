//! One SLA clock of a contact, as persisted with it, and its arithmetic:
//! how much counted time it has run, when a share of its target comes due,
//! pausing and resuming. Pure functions of the record, the policy's
//! calendar and `now`.
//!
//! A clock counts either wall-clock time (no calendar) or the open time of
//! the policy's business-hours calendar, so an e-mail received on Friday
//! evening does not breach over a weekend. While paused (the agent is
//! waiting on the customer) it counts nothing: the time counted before the
//! pause is kept in `spent_ms` and counting restarts from the resumption.
//!
//! Invariants: `since` is `None` exactly while paused; `fired` holds each
//! threshold (permille) at most once, so an alert fires at most once per
//! clock run and threshold, across restarts (the record is the memory).

use super::{permille, thresholds};
use crate::calendar::Calendar;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    /// Received → the agent's first reply (`accept` on chat and voice).
    FirstResponse,
    /// A customer message after an agent reply → the agent's next reply
    /// (e-mail and social; one run per such message).
    NextResponse,
    /// Received → accepted by an agent.
    QueueWait,
    /// Received → completed.
    Resolution,
}

impl ClockKind {
    pub const ALL: [ClockKind; 4] = [
        ClockKind::FirstResponse,
        ClockKind::NextResponse,
        ClockKind::QueueWait,
        ClockKind::Resolution,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::FirstResponse => "first_response",
            ClockKind::NextResponse => "next_response",
            ClockKind::QueueWait => "queue_wait",
            ClockKind::Resolution => "resolution",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_ms(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaClock {
    pub clock: ClockKind,
    /// Which run of a clock that can run more than once (`next_response`:
    /// 1, 2, …); 0 for the others.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub run: u32,
    /// Time counted (ms) before `since`.
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub spent_ms: i64,
    /// Counting since then; `None` while paused.
    pub since: Option<DateTime<Utc>>,
    /// Thresholds already alerted, in permille (1000 = breach).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fired: Vec<u32>,
}

/// Counted time between two instants: wall time, or the calendar's open time.
pub fn counted_ms(cal: Option<&Calendar>, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    match cal {
        Some(c) => c.open_ms(from, to),
        None => (to - from).num_milliseconds().max(0),
    }
}

/// The instant `ms` of counted time after `from`.
pub fn after(cal: Option<&Calendar>, from: DateTime<Utc>, ms: i64) -> Option<DateTime<Utc>> {
    match cal {
        Some(c) => c.after_open(from, ms),
        None => from.checked_add_signed(Duration::milliseconds(ms.max(0))),
    }
}

impl SlaClock {
    pub fn start(clock: ClockKind, run: u32, at: DateTime<Utc>) -> SlaClock {
        SlaClock {
            clock,
            run,
            spent_ms: 0,
            since: Some(at),
            fired: Vec::new(),
        }
    }

    /// How the clock names itself in alerts and their ids:
    /// `next_response-2` for a clock's second run.
    pub fn label(&self) -> String {
        match self.run {
            0 => self.clock.as_str().to_string(),
            n => format!("{}-{n}", self.clock.as_str()),
        }
    }

    pub fn running(&self) -> bool {
        self.since.is_some()
    }

    pub fn elapsed_ms(&self, cal: Option<&Calendar>, now: DateTime<Utc>) -> i64 {
        self.spent_ms + self.since.map_or(0, |s| counted_ms(cal, s, now))
    }

    /// When `share` of `target_secs` has been counted; `None` while paused
    /// (or never, with a calendar that does not open).
    pub fn due_at(&self, cal: Option<&Calendar>, target_secs: f64, share: f64) -> Option<DateTime<Utc>> {
        let since = self.since?;
        let at_ms = (target_secs * share * 1000.0).round() as i64;
        after(cal, since, at_ms - self.spent_ms)
    }

    /// Thresholds due at `now` and not yet fired, in order.
    pub fn due(&self, cal: Option<&Calendar>, target_secs: f64, warnings: &[f64], now: DateTime<Utc>) -> Vec<f64> {
        thresholds(warnings)
            .filter(|t| !self.fired.contains(&permille(*t)))
            .filter(|t| self.due_at(cal, target_secs, *t).is_some_and(|at| at <= now))
            .collect()
    }

    /// When the next unfired threshold comes due, if any.
    pub fn next(&self, cal: Option<&Calendar>, target_secs: f64, warnings: &[f64]) -> Option<DateTime<Utc>> {
        // Thresholds are in increasing order, so the first unfired one is
        // the next (its deadline is the earliest of the rest).
        let t = thresholds(warnings).find(|t| !self.fired.contains(&permille(*t)))?;
        self.due_at(cal, target_secs, t)
    }

    pub fn pause(&mut self, cal: Option<&Calendar>, now: DateTime<Utc>) {
        if let Some(s) = self.since.take() {
            self.spent_ms += counted_ms(cal, s, now);
        }
    }

    pub fn resume(&mut self, now: DateTime<Utc>) {
        if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// A warning has fired and the breach has not: the contact is at risk.
    pub fn at_risk(&self) -> bool {
        self.running() && self.fired.iter().any(|p| *p < 1000) && !self.fired.contains(&1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    /// Weekdays 09:00-17:00 in Madrid.
    fn office() -> Calendar {
        let hours: BTreeMap<String, Vec<String>> = ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| (d.to_string(), vec!["09:00-17:00".to_string()]))
            .collect();
        Calendar::parse("c", "Europe/Madrid", &hours, &[]).expect("valid")
    }

    #[test]
    fn a_wall_clock_runs_pauses_and_resumes() {
        let t0 = utc("2026-11-23T09:00:00Z");
        let s = |n: i64| t0 + Duration::seconds(n);
        let mut c = SlaClock::start(ClockKind::Resolution, 0, t0);
        assert_eq!(c.due_at(None, 100.0, 0.5), Some(s(50)));
        assert_eq!(c.due(None, 100.0, &[0.5], s(60)), vec![0.5]);
        c.pause(None, s(30));
        assert_eq!(c.elapsed_ms(None, s(1_000)), 30_000, "nothing counted while paused");
        assert_eq!(c.next(None, 100.0, &[0.5]), None);
        assert!(c.due(None, 100.0, &[0.5], s(10_000)).is_empty());
        c.resume(s(200));
        // 20 s more to reach 50 s counted.
        assert_eq!(c.next(None, 100.0, &[0.5]), Some(s(220)));
        c.fired.push(500);
        assert_eq!(c.next(None, 100.0, &[0.5]), Some(s(270)), "the breach at 100 s counted");
        assert!(c.at_risk());
        c.fired.push(1000);
        assert!(!c.at_risk());
        assert_eq!(c.next(None, 100.0, &[0.5]), None);
    }

    #[test]
    fn a_business_hours_clock_does_not_count_the_weekend() {
        // Friday 2026-11-27 16:00 local (15:00Z): one office hour left.
        let fri = utc("2026-11-27T15:00:00Z");
        let c = SlaClock::start(ClockKind::FirstResponse, 0, fri);
        let cal = office();
        // A 4-hour target breaches Monday at 12:00 local (11:00Z), not Friday night.
        assert_eq!(
            c.due_at(Some(&cal), 4.0 * 3600.0, 1.0),
            Some(utc("2026-11-30T11:00:00Z"))
        );
        assert_eq!(c.elapsed_ms(Some(&cal), utc("2026-11-29T23:00:00Z")), 3_600_000);
        assert_eq!(c.label(), "first_response");
        assert_eq!(
            SlaClock::start(ClockKind::NextResponse, 2, fri).label(),
            "next_response-2"
        );
    }
}
