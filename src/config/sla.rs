//! `[sla]`: SLA policies (targets per clock and channel, warning
//! thresholds, business-hours calendar, pausing) and `[[sla.rules]]`, which
//! pick a contact's policy by queue, channel, customer tier and priority.
//!
//! Older files stay valid: a policy with only `first_response_secs`, and a
//! queue's or a routing rule's `sla_policy`, which applies when no
//! `[[sla.rules]]` entry matches.

use super::validate::{channel, names, Problems};
use crate::calendar::Calendar;
use crate::domain::{check_token, QueueName};
use crate::routing::spec::{SlaPolicy, SlaRule};
use crate::sla::ClockKind;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// `[sla]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SlaConfig {
    pub policies: BTreeMap<String, SlaPolicyConfig>,
    /// `[[sla.rules]]`, in order: the first whose every condition holds
    /// picks a new contact's policy.
    pub rules: Vec<SlaRuleConfig>,
    /// The policy of contacts no rule, queue or routing rule gives one, and
    /// of contacts whose policy was removed from the configuration.
    pub default_policy: Option<String>,
}

/// `[sla.policies.<name>]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SlaPolicyConfig {
    /// First-response target in seconds per channel: from the first
    /// customer message to the agent's first reply (`accept` on chat and
    /// voice).
    pub first_response_secs: BTreeMap<String, f64>,
    /// Next-response target per channel (e-mail and social): from each
    /// customer message that follows an agent reply to the next reply.
    pub next_response_secs: BTreeMap<String, f64>,
    /// Queue-wait target per channel: from the first message to an accept.
    pub queue_wait_secs: BTreeMap<String, f64>,
    /// Resolution target per channel: from the first message to `complete`.
    pub resolution_secs: BTreeMap<String, f64>,
    /// Shares of the target (0 < x < 1) at which a `warning` alert is raised.
    pub warning_thresholds: Vec<f64>,
    /// A `[calendars.<name>]`: the clocks count only its open hours.
    /// Absent: wall-clock time.
    pub calendar: Option<String>,
    /// Clocks pause while an agent has marked the contact as waiting on
    /// the customer (`await_customer`) until the customer's next message.
    pub pause_when_waiting_on_customer: bool,
}

/// `[[sla.rules]]`: conditions left out match everything.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SlaRuleConfig {
    pub policy: String,
    pub queues: Vec<String>,
    pub channels: Vec<String>,
    /// Customer tiers (`customer.tier` of the opening message).
    pub tiers: Vec<String>,
    /// The contact's priority is at least this (0–9).
    pub min_priority: Option<i64>,
}

impl SlaPolicyConfig {
    fn targets(&self) -> [(ClockKind, &'static str, &BTreeMap<String, f64>); 4] {
        [
            (
                ClockKind::FirstResponse,
                "first_response_secs",
                &self.first_response_secs,
            ),
            (ClockKind::NextResponse, "next_response_secs", &self.next_response_secs),
            (ClockKind::QueueWait, "queue_wait_secs", &self.queue_wait_secs),
            (ClockKind::Resolution, "resolution_secs", &self.resolution_secs),
        ]
    }
}

/// Validates the policies (the calendars they name already parsed).
pub(super) fn policies(
    p: &mut Problems,
    sla: &SlaConfig,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    calendar_names: &BTreeSet<&String>,
) -> BTreeMap<String, SlaPolicy> {
    let mut out = BTreeMap::new();
    for (name, pol) in &sla.policies {
        let key = format!("sla.policies.{name}");
        if let Err(e) = check_token(name) {
            p.add(key.clone(), name, format!("policy name {e}"));
        }
        let mut targets = [[None; 4]; 4];
        for (kind, field, per_channel) in pol.targets() {
            for (ch, secs) in per_channel {
                let k = format!("{key}.{field}.{ch}");
                if let Some(c) = channel(p, k.clone(), ch) {
                    p.seconds(&k, *secs, 365.0 * 86_400.0);
                    targets[kind.index()][c.index()] = Some(*secs);
                }
            }
        }
        if pol.targets().iter().all(|(_, _, t)| t.is_empty()) {
            p.add(
                format!("{key}.first_response_secs"),
                "{}",
                "a policy needs a target for at least one clock and channel",
            );
        }
        let calendar = pol.calendar.as_ref().and_then(|c| {
            let found = calendars.get(c).cloned();
            if found.is_none() && !calendar_names.contains(c) {
                p.add(
                    format!("{key}.calendar"),
                    c,
                    format!("no such calendar (defined: {})", names(calendar_names.iter().copied())),
                );
            }
            found
        });
        let warnings = thresholds(p, &key, &pol.warning_thresholds);
        out.insert(
            name.clone(),
            SlaPolicy {
                name: name.clone(),
                targets,
                warnings,
                calendar,
                pause_on_customer: pol.pause_when_waiting_on_customer,
            },
        );
    }
    if let Some(d) = &sla.default_policy {
        if !out.contains_key(d) {
            p.add(
                "sla.default_policy",
                d,
                format!("no such SLA policy (defined: {})", names(out.keys())),
            );
        }
    }
    out
}

fn thresholds(p: &mut Problems, key: &str, given: &[f64]) -> Vec<f64> {
    // Fired thresholds are recorded in permille: two that round to the same
    // permille, or one that rounds to the breach, would silently never fire.
    let mut permilles = BTreeSet::new();
    for (i, t) in given.iter().enumerate() {
        let pm = crate::sla::permille(*t);
        let share = t.is_finite() && *t > 0.0 && *t < 1.0;
        if share && (pm == 0 || pm >= 1000 || !permilles.insert(pm)) {
            p.add(
                format!("{key}.warning_thresholds[{i}]"),
                t,
                "thresholds must differ from each other and from 0 and 1 by at least 0.001",
            );
        }
        if !share {
            p.add(
                format!("{key}.warning_thresholds[{i}]"),
                t,
                "a warning threshold is a share of the target, above 0 and below 1",
            );
        }
    }
    let mut out = given.to_vec();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

/// Validates `[[sla.rules]]` against the policies and queues.
pub(super) fn rules(
    p: &mut Problems,
    sla: &SlaConfig,
    policies: &BTreeMap<String, SlaPolicy>,
    queues: &BTreeSet<QueueName>,
) -> Vec<SlaRule> {
    let mut out = Vec::new();
    for (i, r) in sla.rules.iter().enumerate() {
        let key = format!("sla.rules[{i}]");
        if !policies.contains_key(&r.policy) {
            p.add(
                format!("{key}.policy"),
                &r.policy,
                format!("no such SLA policy (defined: {})", names(policies.keys())),
            );
        }
        let mut rule = SlaRule {
            policy: r.policy.as_str().into(),
            queues: Vec::new(),
            channels: Vec::new(),
            tiers: r.tiers.clone(),
            min_priority: None,
        };
        for (j, q) in r.queues.iter().enumerate() {
            match QueueName::try_from(q.clone()).ok().filter(|q| queues.contains(q)) {
                Some(q) => rule.queues.push(q),
                None => p.add(
                    format!("{key}.queues[{j}]"),
                    q,
                    format!("no such queue (defined: {})", names(queues.iter())),
                ),
            }
        }
        for (j, c) in r.channels.iter().enumerate() {
            if let Some(c) = channel(p, format!("{key}.channels[{j}]"), c) {
                rule.channels.push(c);
            }
        }
        if let Some(m) = r.min_priority {
            match u8::try_from(m) {
                Ok(m @ 0..=9) => rule.min_priority = Some(m),
                _ => p.add(
                    format!("{key}.min_priority"),
                    m,
                    "priority must be 0 (lowest) to 9 (highest)",
                ),
            }
        }
        out.push(rule);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(toml: &str) -> Vec<String> {
        let cfg = Config::from_toml_with_env(toml, "test", Vec::<(String, String)>::new()).expect("parses");
        match cfg.validate() {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn every_sla_problem_is_listed_with_its_key_and_value() {
        let got = problems(
            r#"
[sla]
default_policy = "nope"
[sla.policies.p]
next_response_secs = { fax = 10, email = -1 }
calendar = "missing"
pause_when_waiting_on_customer = true
[sla.policies.empty]
[[sla.rules]]
policy = "ghost"
queues = ["q", "nowhere"]
channels = ["pigeon"]
min_priority = 12
[[queues]]
name = "q"
channels = ["email"]
"#,
        );
        for want in [
            "sla.default_policy = \"nope\": no such SLA policy",
            "sla.policies.p.next_response_secs.fax = \"fax\"",
            "sla.policies.p.next_response_secs.email = -1.0: must be a number of seconds",
            "sla.policies.p.calendar = \"missing\": no such calendar",
            "sla.policies.empty.first_response_secs = \"{}\": a policy needs a target",
            "sla.rules[0].policy = \"ghost\": no such SLA policy",
            "sla.rules[0].queues[1] = \"nowhere\": no such queue",
            "sla.rules[0].channels[0] = \"pigeon\"",
            "sla.rules[0].min_priority = 12: priority must be 0",
        ] {
            assert!(got.iter().any(|p| p.starts_with(want)), "missing {want:?} in {got:#?}");
        }
        assert_eq!(got.len(), 9, "{got:#?}");
    }

    #[test]
    fn a_file_with_first_response_policies_only_still_validates() {
        let got = problems(
            "[sla.policies.std]\nfirst_response_secs = { email = 3600 }\nwarning_thresholds = [0.5]\n[[queues]]\nname = \"q\"\nchannels = [\"email\"]\nsla_policy = \"std\"\n",
        );
        assert!(got.is_empty(), "{got:#?}");
    }
}
