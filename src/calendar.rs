//! Business-hours calendars: weekly opening hours in an IANA time zone,
//! minus holidays. Pure (no clock reads): callers pass the instant. One
//! module for everything that keeps hours (queues now; SLA clocks that
//! count business time can use the same [`Calendar`]).
//!
//! Local times are turned into instants by the time-zone database
//! (`chrono-tz`), so daylight-saving changes are exact: a day on which
//! clocks go forward is an hour shorter, and hours are never hand-written
//! offsets. A boundary that falls in a gap (02:30 on the night clocks
//! jump from 02:00 to 03:00) happens at the first instant after the gap; one
//! that falls in a repeated hour happens at its first occurrence.
//!
//! Invariants: `is_open` and `next_change` agree (the state flips exactly
//! at `next_change`); `next_change` looks at most [`HORIZON_DAYS`] ahead, so
//! a calendar that never changes (always closed, all holidays) costs a
//! bounded search and answers `None`.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// How far ahead `next_change` looks.
pub const HORIZON_DAYS: i64 = 400;

/// Opening hours: per weekday (Monday first), sorted, non-overlapping
/// `[from, to)` local times; `to` of `00:00` means midnight at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub tz: Tz,
    pub week: [Vec<(NaiveTime, Option<NaiveTime>)>; 7],
    pub holidays: BTreeSet<NaiveDate>,
}

/// A problem in a calendar's definition, for the configuration's list.
pub type Problem = (String, String, String);

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Calendar {
    /// Builds a calendar from its configuration, listing every problem as
    /// (key below `prefix`, value, message).
    pub fn parse(
        prefix: &str,
        timezone: &str,
        hours: &std::collections::BTreeMap<String, Vec<String>>,
        holidays: &[String],
    ) -> Result<Calendar, Vec<Problem>> {
        let mut problems = Vec::new();
        let tz = timezone.parse::<Tz>().unwrap_or_else(|_| {
            problems.push((
                format!("{prefix}.timezone"),
                timezone.to_string(),
                "not an IANA time zone (like Europe/Madrid)".to_string(),
            ));
            Tz::UTC
        });
        let mut week: [Vec<(NaiveTime, Option<NaiveTime>)>; 7] = Default::default();
        for (day, ranges) in hours {
            let Some(d) = DAYS.iter().position(|x| *x == day.as_str()) else {
                problems.push((
                    format!("{prefix}.hours.{day}"),
                    day.clone(),
                    "days are mon..sun".to_string(),
                ));
                continue;
            };
            for (i, r) in ranges.iter().enumerate() {
                let key = format!("{prefix}.hours.{day}[{i}]");
                let parsed = r.split_once('-').and_then(|(a, b)| {
                    let t = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").ok();
                    let from = t(a)?;
                    // 24:00 (or 00:00) as the end: midnight at the end of the day.
                    let to = match b.trim() {
                        "24:00" => None,
                        b => Some(t(b)?).filter(|to| *to != NaiveTime::MIN),
                    };
                    to.is_none_or(|to| to > from).then_some((from, to))
                });
                match parsed {
                    Some(p) => week[d].push(p),
                    None => problems.push((
                        key,
                        r.clone(),
                        "expected HH:MM-HH:MM ending after it starts (24:00 for midnight)".into(),
                    )),
                }
            }
            week[d].sort();
            let overlaps = week[d].windows(2).any(|w| w[0].1.is_none_or(|end| end > w[1].0));
            if overlaps {
                problems.push((
                    format!("{prefix}.hours.{day}"),
                    ranges.join(", "),
                    "ranges overlap".into(),
                ));
            }
        }
        let mut days = BTreeSet::new();
        for (i, h) in holidays.iter().enumerate() {
            match NaiveDate::parse_from_str(h, "%Y-%m-%d") {
                Ok(d) => {
                    days.insert(d);
                }
                Err(_) => problems.push((
                    format!("{prefix}.holidays[{i}]"),
                    h.clone(),
                    "expected YYYY-MM-DD".into(),
                )),
            }
        }
        if problems.is_empty() {
            Ok(Calendar {
                tz,
                week,
                holidays: days,
            })
        } else {
            Err(problems)
        }
    }

    /// The instant a local date and time happens (see the module doc for gaps
    /// and repeated hours).
    fn instant(&self, d: NaiveDate, t: NaiveTime) -> Option<DateTime<Utc>> {
        let mut local = NaiveDateTime::new(d, t);
        for _ in 0..240 {
            match self.tz.from_local_datetime(&local) {
                LocalResult::Single(x) => return Some(x.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, b) => return Some(a.min(b).with_timezone(&Utc)),
                // In a gap: the first minute after it.
                LocalResult::None => local += Duration::minutes(1),
            }
        }
        None
    }

    /// Opening intervals of a local date, as instants.
    fn intervals(&self, d: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.holidays.contains(&d) {
            return Vec::new();
        }
        let wd = d.weekday().num_days_from_monday() as usize;
        self.week[wd]
            .iter()
            .filter_map(|(from, to)| {
                let start = self.instant(d, *from)?;
                let end = match to {
                    Some(to) => self.instant(d, *to)?,
                    None => self.instant(d.succ_opt()?, NaiveTime::MIN)?,
                };
                (end > start).then_some((start, end))
            })
            .collect()
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        let d = self.local_date(t);
        // Yesterday's hours may run past midnight only up to 24:00, so
        // today's intervals (and yesterday's, for 24:00) decide.
        [d.pred_opt(), Some(d)]
            .into_iter()
            .flatten()
            .flat_map(|d| self.intervals(d))
            .any(|(a, b)| a <= t && t < b)
    }

    /// Whether `is_open` never changes: no hours at all, or every day open
    /// from 00:00 to 24:00 without holidays (a 24/7 queue). Such calendars
    /// answer `next_change` at once instead of searching the horizon.
    fn constant(&self) -> bool {
        let all_day = |d: &Vec<(NaiveTime, Option<NaiveTime>)>| d.as_slice() == [(NaiveTime::MIN, None)];
        self.week.iter().all(Vec::is_empty) || (self.holidays.is_empty() && self.week.iter().all(all_day))
    }

    /// The first instant after `t` at which `is_open` changes.
    pub fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.constant() {
            return None;
        }
        let open = self.is_open(t);
        let mut d = self.local_date(t).pred_opt()?;
        for _ in 0..HORIZON_DAYS {
            for (a, b) in self.intervals(d) {
                let edge = if open { b } else { a };
                // An interval ending exactly where the next starts is one
                // opening: skip the inner edge.
                if edge > t && self.is_open(edge) != open {
                    return Some(edge);
                }
            }
            d = d.succ_opt()?;
        }
        None
    }
}

/// Most opening edges walked to add or count open time: two a day over
/// the horizon, several ranges a day.
const MAX_EDGES: usize = 8 * HORIZON_DAYS as usize;

impl Calendar {
    /// Open time in `[from, to)`, in milliseconds (0 when `to <= from`).
    /// Costs the openings and closings in between.
    pub fn open_ms(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let (mut t, mut total, mut open) = (from, 0i64, self.is_open(from));
        for _ in 0..MAX_EDGES {
            if t >= to {
                break;
            }
            let next = self.next_change(t).map_or(to, |n| n.min(to));
            if open {
                total += (next - t).num_milliseconds();
            }
            (t, open) = (next, !open);
        }
        total
    }

    /// The instant at which `ms` of open time has passed since `from`;
    /// `None` if the calendar does not open that long within its horizon.
    pub fn after_open(&self, from: DateTime<Utc>, ms: i64) -> Option<DateTime<Utc>> {
        if ms <= 0 {
            return Some(from);
        }
        let (mut t, mut left, mut open) = (from, ms, self.is_open(from));
        for _ in 0..MAX_EDGES {
            let next = self.next_change(t);
            if open {
                let room = next.map(|n| (n - t).num_milliseconds());
                if room.is_none_or(|r| r >= left) {
                    return t.checked_add_signed(Duration::milliseconds(left));
                }
                left -= room.unwrap_or(0);
            }
            (t, open) = (next?, !open);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn madrid() -> Calendar {
        let hours = BTreeMap::from([
            (
                "mon".to_string(),
                vec!["09:00-14:00".to_string(), "15:00-18:00".to_string()],
            ),
            ("sat".to_string(), vec!["02:30-04:00".to_string()]),
            ("sun".to_string(), vec!["20:00-24:00".to_string()]),
        ]);
        Calendar::parse("calendars.es", "Europe/Madrid", &hours, &["2026-12-28".to_string()]).expect("valid")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn open_time_is_counted_and_added_across_closures_and_the_dst_change() {
        let c = madrid();
        // From Friday 2026-03-27 17:00Z (closed): Saturday 02:30-04:00
        // local is 01:30Z-03:00Z (winter, 1.5 h); Sunday 20:00-24:00 local,
        // the day the clocks go forward, is 18:00Z-22:00Z (4 h); Monday
        // 09:00 local is 07:00Z (summer).
        let fri = utc("2026-03-27T17:00:00Z");
        let h = 3_600_000;
        assert_eq!(c.open_ms(fri, utc("2026-03-27T18:00:00Z")), 0);
        assert_eq!(c.open_ms(fri, utc("2026-03-29T19:00:00Z")), h * 3 / 2 + h);
        assert_eq!(c.after_open(fri, h), Some(utc("2026-03-28T02:30:00Z")));
        assert_eq!(c.after_open(fri, 5 * h / 2), Some(utc("2026-03-29T19:00:00Z")));
        assert_eq!(c.after_open(fri, 6 * h), Some(utc("2026-03-30T07:30:00Z")));
        assert_eq!(c.after_open(fri, 0), Some(fri));
        assert_eq!(c.open_ms(fri, fri), 0);
        let never = Calendar::parse("c", "UTC", &BTreeMap::new(), &[]).expect("valid");
        assert_eq!(never.after_open(fri, 1), None);
        assert_eq!(never.open_ms(fri, utc("2027-01-01T00:00:00Z")), 0);
    }

    #[test]
    fn calendars_that_never_change_answer_at_once() {
        let all: BTreeMap<String, Vec<String>> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| (d.to_string(), vec!["00:00-24:00".to_string()]))
            .collect();
        let always = Calendar::parse("c", "Europe/Madrid", &all, &[]).expect("valid");
        let t = utc("2026-03-29T00:30:00Z");
        assert!(always.is_open(t));
        assert_eq!(always.next_change(t), None);
        let never = Calendar::parse("c", "Europe/Madrid", &BTreeMap::new(), &[]).expect("valid");
        assert!(!never.is_open(t));
        assert_eq!(never.next_change(t), None);
        // With a holiday it does change: closed for that local day.
        let h = Calendar::parse("c", "Europe/Madrid", &all, &["2026-04-01".to_string()]).expect("valid");
        assert_eq!(h.next_change(t), Some(utc("2026-03-31T22:00:00Z")));
    }

    #[test]
    fn hours_follow_the_zone_across_daylight_saving_changes() {
        let c = madrid();
        // Monday 2026-03-23, winter (UTC+1): 09:00 local is 08:00Z.
        assert!(!c.is_open(utc("2026-03-23T07:59:00Z")));
        assert_eq!(
            c.next_change(utc("2026-03-23T07:59:00Z")),
            Some(utc("2026-03-23T08:00:00Z"))
        );
        assert_eq!(
            c.next_change(utc("2026-03-23T08:00:00Z")),
            Some(utc("2026-03-23T13:00:00Z"))
        );
        // Monday 2026-03-30, summer (UTC+2): 09:00 local is 07:00Z.
        assert!(c.is_open(utc("2026-03-30T07:00:00Z")));
        assert!(!c.is_open(utc("2026-03-30T06:59:59Z")));
        // Saturday 2026-03-28 is winter; Sunday 29 the clocks jump 02:00 -> 03:00.
        assert!(c.is_open(utc("2026-03-28T01:30:00Z")), "02:30 local, UTC+1");
        // Sunday 20:00-24:00 on the day of the change: 18:00Z to 22:00Z.
        assert_eq!(
            c.next_change(utc("2026-03-29T12:00:00Z")),
            Some(utc("2026-03-29T18:00:00Z"))
        );
        assert_eq!(
            c.next_change(utc("2026-03-29T18:00:00Z")),
            Some(utc("2026-03-29T22:00:00Z"))
        );
        // Autumn: Sunday 2026-10-25 back to UTC+1: 20:00 local is 19:00Z.
        assert!(c.is_open(utc("2026-10-25T19:00:00Z")));
        assert!(!c.is_open(utc("2026-10-25T18:59:00Z")));
    }

    #[test]
    fn a_boundary_in_the_spring_gap_opens_right_after_it() {
        let hours = BTreeMap::from([("sun".to_string(), vec!["02:30-05:00".to_string()])]);
        let c = Calendar::parse("c", "Europe/Madrid", &hours, &[]).expect("valid");
        // 2026-03-29: 02:30 local does not exist; 03:00 local (01:00Z) opens.
        assert_eq!(
            c.next_change(utc("2026-03-29T00:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            c.next_change(utc("2026-03-29T01:00:00Z")),
            Some(utc("2026-03-29T03:00:00Z"))
        );
    }

    #[test]
    fn holidays_close_the_day_and_closed_calendars_have_no_change() {
        let c = madrid();
        // Monday 2026-12-28 is a holiday: closed all day; next opening is
        // Saturday 02:30 local (winter, UTC+1).
        assert!(!c.is_open(utc("2026-12-28T10:00:00Z")));
        assert_eq!(
            c.next_change(utc("2026-12-28T10:00:00Z")),
            Some(utc("2027-01-02T01:30:00Z"))
        );
        let never = Calendar::parse("c", "UTC", &BTreeMap::new(), &[]).expect("valid");
        assert_eq!(never.next_change(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn every_problem_is_listed() {
        let hours = BTreeMap::from([
            ("moon".to_string(), vec![]),
            ("mon".to_string(), vec!["18:00-09:00".to_string(), "9-5".to_string()]),
            (
                "tue".to_string(),
                vec!["09:00-13:00".to_string(), "12:00-14:00".to_string()],
            ),
        ]);
        let e = Calendar::parse("calendars.x", "Mars/Olympus", &hours, &["2026-02-30".to_string()]).unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "calendars.x.timezone",
                "calendars.x.hours.mon[0]",
                "calendars.x.hours.mon[1]",
                "calendars.x.hours.moon",
                "calendars.x.hours.tue",
                "calendars.x.holidays[0]"
            ]
        );
    }
}
