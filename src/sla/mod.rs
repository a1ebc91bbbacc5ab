//! First-response SLA clocks, as pure functions of (start, target,
//! thresholds, already fired, now). The routing engine stores the fired
//! thresholds on the contact, so "at most once per contact and threshold"
//! survives a restart with the contact itself.
//!
//! Thresholds are shares of the target; the breach is the share 1.0. They are
//! stored in permille so a float never has to be compared for equality.

use chrono::{DateTime, Duration, Utc};

mod clock;
pub use clock::{after, counted_ms, ClockKind, SlaClock};

/// The breach, as a threshold share.
pub const BREACH: f64 = 1.0;

pub fn permille(share: f64) -> u32 {
    (share * 1000.0).round() as u32
}

/// The alert kind for a threshold.
pub fn kind(share: f64) -> &'static str {
    if share >= BREACH {
        "breach"
    } else {
        "warning"
    }
}

/// The moment a share of the target elapses.
pub fn deadline(start: DateTime<Utc>, target_secs: f64, share: f64) -> DateTime<Utc> {
    let ms = (target_secs * share * 1000.0).round() as i64;
    start + Duration::milliseconds(ms)
}

/// Every threshold of the policy (warnings, then the breach) in order.
pub fn thresholds(warnings: &[f64]) -> impl Iterator<Item = f64> + '_ {
    warnings.iter().copied().chain(std::iter::once(BREACH))
}

/// Thresholds that are due at `now` and not yet fired, in order.
pub fn due(start: DateTime<Utc>, target_secs: f64, warnings: &[f64], fired: &[u32], now: DateTime<Utc>) -> Vec<f64> {
    thresholds(warnings)
        .filter(|t| !fired.contains(&permille(*t)) && deadline(start, target_secs, *t) <= now)
        .collect()
}

/// When the next unfired threshold comes due, if any is left.
pub fn next(start: DateTime<Utc>, target_secs: f64, warnings: &[f64], fired: &[u32]) -> Option<DateTime<Utc>> {
    thresholds(warnings)
        .filter(|t| !fired.contains(&permille(*t)))
        .map(|t| deadline(start, target_secs, t))
        .min()
}

/// The id of an alert: stable, so a republish after a crash is recognised as
/// a duplicate by JetStream and by consumers.
pub fn alert_id(contact_id: &str, clock: &str, share: f64) -> String {
    format!("sla-{contact_id}-{clock}-{share}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .expect("test value")
            .with_timezone(&Utc)
    }

    #[test]
    fn thresholds_come_due_in_order_and_once() {
        let w = [0.5, 0.75];
        let mut fired = Vec::new();
        assert!(due(t0(), 100.0, &w, &fired, t0() + Duration::seconds(49)).is_empty());
        assert_eq!(next(t0(), 100.0, &w, &fired), Some(t0() + Duration::seconds(50)));
        let d = due(t0(), 100.0, &w, &fired, t0() + Duration::seconds(80));
        assert_eq!(d, vec![0.5, 0.75]);
        fired.extend(d.iter().map(|t| permille(*t)));
        assert!(due(t0(), 100.0, &w, &fired, t0() + Duration::seconds(80)).is_empty());
        assert_eq!(next(t0(), 100.0, &w, &fired), Some(t0() + Duration::seconds(100)));
        let d = due(t0(), 100.0, &w, &fired, t0() + Duration::seconds(100));
        assert_eq!(d, vec![1.0]);
        assert_eq!(kind(d[0]), "breach");
        fired.push(permille(1.0));
        assert_eq!(next(t0(), 100.0, &w, &fired), None);
    }

    #[test]
    fn alert_ids_match_the_contract_example() {
        assert_eq!(alert_id("c-1", "first_response", 0.75), "sla-c-1-first_response-0.75");
        assert_eq!(alert_id("c-1", "first_response", 1.0), "sla-c-1-first_response-1");
    }
}
