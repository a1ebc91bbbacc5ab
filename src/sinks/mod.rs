//! Alert sinks: every SLA alert the router publishes on
//! `omni.alert.sla.<kind>` (the `nats` sink, always on) is also delivered
//! to each configured `[alerts.sinks.<name>]` whose filters match: a signed
//! webhook (`webhook.rs`, reqwest) or an email (`email.rs`, the only module
//! using lettre).
//!
//! Invariants:
//! - delivery never blocks routing: each sink reads the alert stream
//!   through its own durable JetStream consumer (`bus/alerts.rs`) on its own
//!   task; a slow or dead sink shows in
//!   `omniroute_alert_deliveries_total{sink,outcome}`, not in routing;
//! - an alert is acknowledged on a sink's consumer only once it was
//!   delivered, filtered out, delivered inside a digest, or dead-lettered
//!   on `omni.dlq.alerts`; a restart in between delivers it again (at least
//!   once; receivers dedupe on `alert_id`, which the webhook also sends as
//!   `X-Omniroute-Alert-Id`);
//! - retries (5xx, timeouts, network errors) back off exponentially with
//!   full jitter; a 4xx is not retried; a delivery that still fails after
//!   `max_attempts` goes to the dead-letter subject with its error;
//! - storms: alerts are sent one by one at most `max_per_minute` a minute,
//!   counted per window (`digest_window_secs`, 60 s: a window of 300 s
//!   sends up to five times `max_per_minute`, one of 10 s a sixth of it,
//!   never less than one); the rest are held (unacknowledged, at most
//!   [`MAX_HELD`]; the consumer stops delivering beyond) and sent as one
//!   digest when the window ends.
//!
//! This file is pure: the checked sink settings, filters, message
//! formatting and the retry schedule.

pub mod email;
pub mod run;
pub mod webhook;

use serde_json::Value;
use std::time::Duration;

/// Alerts held for one digest, at most (also the consumer's
/// max-ack-pending, so nothing beyond is delivered to the sink meanwhile).
pub const MAX_HELD: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The contract's alert JSON.
    Json,
    /// `{"text": "…"}` for Slack-compatible incoming webhooks.
    Slack,
}

#[derive(Clone)]
pub enum SinkKind {
    Webhook {
        url: String,
        secret: String,
        format: WebhookFormat,
    },
    Email(EmailSink),
}

#[derive(Clone)]
pub struct EmailSink {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub ca_file: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Tls,
    None,
}

/// Only alerts whose field is in each non-empty list pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub kinds: Vec<String>,
    pub clocks: Vec<String>,
    pub queues: Vec<String>,
    pub channels: Vec<String>,
    pub tiers: Vec<String>,
}

impl Filters {
    pub fn pass(&self, alert: &Value) -> bool {
        let ok = |list: &[String], v: Option<&str>| list.is_empty() || v.is_some_and(|v| list.iter().any(|l| l == v));
        ok(&self.kinds, alert["kind"].as_str())
            && ok(&self.clocks, alert["clock"].as_str())
            && ok(&self.queues, alert["queue"].as_str())
            && ok(&self.channels, alert["channel"].as_str())
            && (self.tiers.is_empty() || crate::domain::same_tier_in(&self.tiers, alert["customer"]["tier"].as_str()))
    }
}

/// One configured sink, checked. `Debug` hides secrets.
#[derive(Clone)]
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    pub filters: Filters,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_per_minute: u32,
    pub digest_window: Duration,
    /// `{contact_id}`, `{conversation_id}`, `{queue}` are replaced.
    pub link_template: Option<String>,
}

impl std::fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSpec")
            .field("name", &self.name)
            .field("type", &self.type_name())
            .field("filters", &self.filters)
            .finish_non_exhaustive()
    }
}

/// How many alerts a window of `window` sends one by one under a limit
/// of `max_per_minute` a minute: the limit over the window's length,
/// rounded up, at least one.
pub fn singles_per_window(max_per_minute: u32, window: Duration) -> u32 {
    let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let n = u64::from(max_per_minute).saturating_mul(ms).div_ceil(60_000);
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

impl SinkSpec {
    /// Alerts this sink sends one by one per digest window.
    pub fn singles_per_window(&self) -> u32 {
        singles_per_window(self.max_per_minute, self.digest_window)
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Email(_) => "email",
        }
    }
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// 5xx, timeout, connection refused: retry.
    #[error("{0}")]
    Retry(String),
    /// 4xx, a refused recipient, a bad address: dead-letter now.
    #[error("{0}")]
    Permanent(String),
}

/// The wait before attempt `attempt` (1 = the first retry): full jitter
/// over `min(cap, base * 2^(attempt-1))`, `r` in [0, 1).
pub fn backoff(attempt: u32, r: f64) -> Duration {
    let base = 0.5_f64;
    let cap = 30.0_f64;
    let ceiling = (base * 2f64.powi(attempt.saturating_sub(1).min(16) as i32)).min(cap);
    Duration::from_secs_f64(ceiling * r.clamp(0.0, 1.0))
}

/// A fresh jitter draw in [0, 1) (xorshift over the clock; jitter needs
/// spread, not secrecy).
pub fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("?")
}

/// One line: `SLA breach: queue billing, email contact c-1 (first_response 3600 s, 3612.4 s elapsed)`.
pub fn headline(a: &Value) -> String {
    let kind = match s(a, "kind") {
        "breach" => "SLA breach".to_string(),
        "warning" => format!(
            "SLA warning at {}%",
            (a["threshold"].as_f64().unwrap_or(0.0) * 100.0).round()
        ),
        other => format!("SLA {other}"),
    };
    format!(
        "{kind}: queue {}, {} contact {} ({} target {} s, {} s elapsed)",
        s(a, "queue"),
        s(a, "channel"),
        s(a, "contact_id"),
        s(a, "clock"),
        a["target_secs"].as_f64().unwrap_or(0.0),
        a["elapsed_secs"].as_f64().unwrap_or(0.0)
    )
}

/// The operator's link for an alert, when a template is configured.
pub fn link(template: Option<&str>, a: &Value) -> Option<String> {
    template.map(|t| {
        t.replace("{contact_id}", s(a, "contact_id"))
            .replace("{conversation_id}", s(a, "conversation_id"))
            .replace("{queue}", s(a, "queue"))
    })
}

/// An email: (subject, plain-text body).
pub fn email_text(a: &Value, link_template: Option<&str>) -> (String, String) {
    let subject = format!(
        "[omniroute] {} - queue {} - contact {}",
        if s(a, "kind") == "breach" {
            "SLA breach"
        } else {
            "SLA warning"
        },
        s(a, "queue"),
        s(a, "contact_id")
    );
    let mut body = format!("{}\n\n", headline(a));
    for (label, key) in [
        ("Contact", "contact_id"),
        ("Conversation", "conversation_id"),
        ("Queue", "queue"),
        ("Channel", "channel"),
        ("Policy", "policy"),
        ("Clock", "clock"),
        ("Raised at", "at"),
    ] {
        body.push_str(&format!("{label:<14}{}\n", s(a, key)));
    }
    body.push_str(&format!(
        "{:<14}{} s\n{:<14}{} s\n{:<14}{}\n{:<14}{}\n",
        "Target",
        a["target_secs"].as_f64().unwrap_or(0.0),
        "Elapsed",
        a["elapsed_secs"].as_f64().unwrap_or(0.0),
        "Agent",
        a["agent_id"].as_str().unwrap_or("nobody yet"),
        "Customer tier",
        a["customer"]["tier"].as_str().unwrap_or("-"),
    ));
    if let Some(l) = link(link_template, a) {
        body.push_str(&format!("\nOpen it: {l}\n"));
    }
    body.push_str(&format!("\nAlert id: {}\n", s(a, "alert_id")));
    (subject, body)
}

/// A digest of held alerts: (subject, text), listing at most 200 of them.
pub fn digest_text(alerts: &[Value], link_template: Option<&str>) -> (String, String) {
    let breaches = alerts.iter().filter(|a| a["kind"] == "breach").count();
    let subject = format!(
        "[omniroute] {} SLA alerts held back ({} breaches, {} warnings)",
        alerts.len(),
        breaches,
        alerts.len() - breaches
    );
    let mut body = format!("{subject}: more than this sink's limit per window, so they come together.\n\n");
    for a in alerts.iter().take(200) {
        body.push_str(&format!("- {}", headline(a)));
        if let Some(l) = link(link_template, a) {
            body.push_str(&format!(" {l}"));
        }
        body.push('\n');
    }
    if alerts.len() > 200 {
        body.push_str(&format!("... and {} more\n", alerts.len() - 200));
    }
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(kind: &str, queue: &str, tier: Option<&str>) -> Value {
        json!({"v": 1, "alert_id": "sla-c-1-first_response-1", "kind": kind, "contact_id": "c-1",
               "conversation_id": "chat-1", "queue": queue, "channel": "chat", "policy": "std",
               "clock": "first_response", "threshold": 0.75, "target_secs": 60.0, "elapsed_secs": 45.2,
               "agent_id": null, "customer": {"id": "x", "tier": tier}, "at": "2026-11-23T10:00:00.000Z"})
    }

    #[test]
    fn the_per_minute_limit_is_spread_over_the_digest_window() {
        let s = |per_minute, secs| singles_per_window(per_minute, Duration::from_secs(secs));
        assert_eq!(s(30, 60), 30);
        assert_eq!(s(30, 300), 150, "five minutes send five minutes' worth");
        assert_eq!(s(30, 10), 5, "ten seconds send a sixth");
        assert_eq!(s(1, 1), 1, "rounded up, never zero");
        assert_eq!(s(10_000, 3600), 600_000);
    }

    #[test]
    fn filters_pass_only_listed_values_and_empty_lists_pass_all() {
        let f = Filters {
            kinds: vec!["breach".into()],
            tiers: vec!["vip".into()],
            ..Filters::default()
        };
        assert!(f.pass(&alert("breach", "billing", Some("vip"))));
        assert!(
            f.pass(&alert("breach", "billing", Some("VIP"))),
            "tiers match in any case"
        );
        assert!(!f.pass(&alert("breach", "billing", Some("gold"))));
        assert!(!f.pass(&alert("warning", "billing", Some("vip"))));
        assert!(!f.pass(&alert("breach", "billing", None)));
        assert!(Filters::default().pass(&alert("warning", "x", None)));
    }

    #[test]
    fn backoff_grows_to_its_cap_and_jitter_stays_below_it() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(40, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(5, 0.0), Duration::ZERO);
        for _ in 0..1000 {
            let r = jitter();
            assert!((0.0..1.0).contains(&r));
        }
    }

    #[test]
    fn an_email_names_kind_queue_and_contact_and_carries_the_link() {
        let (subject, body) = email_text(
            &alert("warning", "billing", Some("vip")),
            Some("https://desk/c/{contact_id}"),
        );
        assert_eq!(subject, "[omniroute] SLA warning - queue billing - contact c-1");
        assert!(body.starts_with("SLA warning at 75%: queue billing"), "{body}");
        assert!(body.contains("Agent         nobody yet"), "{body}");
        assert!(body.contains("https://desk/c/c-1"), "{body}");
        let (subject, body) = digest_text(&vec![alert("breach", "q", None); 3], None);
        assert!(
            subject.contains("3 SLA alerts held back (3 breaches, 0 warnings)"),
            "{subject}"
        );
        assert_eq!(body.lines().filter(|l| l.starts_with("- SLA breach")).count(), 3);
    }
}
