//! `Config::validate`: every problem, with its key and offending value, in
//! one pass; on success the typed [`RouterSpec`] the core runs on.

use super::Config;
use crate::domain::{check_skill_level, check_token, AgentId, Channel, Presence, QueueName, SkillName};
use crate::routing::spec::{
    Admission, Ageing, AgentSpec, QueueSpec, RelaxStep, RouterSpec as Spec, RuleSpec, Strategy,
};
use crate::routing::MAX_RING;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use crate::routing::spec::RouterSpec;

/// One configuration problem: `key = value: what is wrong`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub value: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, value: impl fmt::Display, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            value: value.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.message)
    }
}

#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, value: impl fmt::Debug, message: impl Into<String>) {
        self.0.push(Problem::new(key, format!("{value:?}"), message));
    }
    /// Positive and at most `max` seconds: beyond sane ranges, date
    /// arithmetic would overflow.
    pub(super) fn seconds(&mut self, key: &str, v: f64, max: f64) {
        if !(v.is_finite() && v > 0.0 && v <= max) {
            self.add(key, v, format!("must be a number of seconds above 0 and at most {max}"));
        }
    }
}

fn token<T: TryFrom<String, Error = String>>(p: &mut Problems, key: String, s: &str) -> Option<T> {
    match T::try_from(s.to_string()) {
        Ok(t) => Some(t),
        Err(e) => {
            p.add(key, s, e);
            None
        }
    }
}

pub(super) fn channel(p: &mut Problems, key: String, s: &str) -> Option<Channel> {
    match s.parse::<Channel>() {
        Ok(c) => Some(c),
        Err(e) => {
            p.add(key, s, e);
            None
        }
    }
}

fn skills(p: &mut Problems, key: &str, m: &BTreeMap<String, i64>) -> BTreeMap<SkillName, u8> {
    let mut out = BTreeMap::new();
    for (name, level) in m {
        let k = format!("{key}.{name}");
        let n = token::<SkillName>(p, k.clone(), name);
        let l = match check_skill_level(*level) {
            Ok(l) => Some(l),
            Err(e) => {
                p.add(k, level, e);
                None
            }
        };
        if let (Some(n), Some(l)) = (n, l) {
            out.insert(n, l);
        }
    }
    out
}

/// Agents a `ring_group` queue rings at once unless it says otherwise.
const DEFAULT_RING: usize = 3;

fn strategy(p: &mut Problems, key: &str, s: &str) -> Strategy {
    match s {
        "longest_idle" => Strategy::LongestIdle,
        "least_loaded" => Strategy::LeastLoaded,
        "round_robin" => Strategy::RoundRobin,
        "most_skilled" => Strategy::MostSkilled,
        "ring_group" => Strategy::RingGroup,
        other => {
            p.add(
                key,
                other,
                "strategy must be one of longest_idle, least_loaded, round_robin, most_skilled, ring_group",
            );
            Strategy::LongestIdle
        }
    }
}

fn priority(p: &mut Problems, key: &str, v: i64) -> u8 {
    if (0..=9).contains(&v) {
        v as u8
    } else {
        p.add(key, v, "priority must be 0 (lowest) to 9 (highest)");
        0
    }
}

impl Config {
    /// Checks everything and builds the routing spec, or lists every problem.
    pub fn validate(&self) -> Result<RouterSpec, Vec<Problem>> {
        let mut p = Problems::default();
        self.check_runtime(&mut p);

        // Calendars, then SLA policies: policies name calendars, queues and
        // rules name policies.
        let mut calendars = BTreeMap::new();
        for (name, c) in &self.calendars {
            match crate::calendar::Calendar::parse(&format!("calendars.{name}"), &c.timezone, &c.hours, &c.holidays) {
                Ok(cal) => {
                    calendars.insert(name.clone(), std::sync::Arc::new(cal));
                }
                Err(problems) => {
                    for (k, v, m) in problems {
                        p.add(k, v, m);
                    }
                }
            }
        }
        let calendar_names: BTreeSet<&String> = self.calendars.keys().collect();
        let policies = super::sla::policies(&mut p, &self.sla, &calendars, &calendar_names);
        let check_policy = |p: &mut Problems, key: String, name: &Option<String>| {
            if let Some(n) = name {
                if !policies.contains_key(n) {
                    p.add(
                        key,
                        n,
                        format!("no such SLA policy (defined: {})", names(policies.keys())),
                    );
                }
            }
        };

        let default_strategy = strategy(&mut p, "routing.default_strategy", &self.routing.default_strategy);
        let mut queues = BTreeMap::new();
        let mut queue_order = Vec::new();
        if self.queues.is_empty() {
            p.add("queues", "[]", "at least one [[queues]] entry is needed");
        }
        for (i, q) in self.queues.iter().enumerate() {
            let key = format!("queues[{i}]");
            let name = token::<QueueName>(&mut p, format!("{key}.name"), &q.name);
            let mut channels = [false; 4];
            for (j, ch) in q.channels.iter().enumerate() {
                if let Some(c) = channel(&mut p, format!("{key}.channels[{j}]"), ch) {
                    channels[c.index()] = true;
                }
            }
            if q.channels.is_empty() {
                p.add(format!("{key}.channels"), "[]", "a queue needs at least one channel");
            }
            let required = skills(&mut p, &format!("{key}.skills"), &q.skills);
            let prio = priority(&mut p, &format!("{key}.priority"), q.priority);
            check_policy(&mut p, format!("{key}.sla_policy"), &q.sla_policy);
            let strat = q
                .strategy
                .as_deref()
                .map(|s| strategy(&mut p, &format!("{key}.strategy"), s))
                .unwrap_or(default_strategy);
            let ring_size = match (q.ring_size, strat) {
                (None, _) => DEFAULT_RING,
                (Some(n), Strategy::RingGroup) => match usize::try_from(n) {
                    Ok(n @ 1..=MAX_RING) => n,
                    _ => {
                        p.add(format!("{key}.ring_size"), n, format!("must be 1..{MAX_RING} agents"));
                        DEFAULT_RING
                    }
                },
                (Some(n), s) => {
                    p.add(
                        format!("{key}.ring_size"),
                        n,
                        format!("applies to strategy ring_group only (this queue's is {})", s.as_str()),
                    );
                    DEFAULT_RING
                }
            };
            let order_by_slack = match q.order.as_deref() {
                None | Some("age") => false,
                Some("slack") => true,
                Some(other) => {
                    p.add(format!("{key}.order"), other, "order must be age or slack");
                    false
                }
            };
            if q.relax_before_breach && q.relax.is_empty() {
                p.add(
                    format!("{key}.relax_before_breach"),
                    true,
                    "needs [[queues.relax]] steps to apply early",
                );
            }
            let offer_timeout_secs = q.offer_timeout_secs;
            if let Some(t) = q.offer_timeout_secs {
                p.seconds(&format!("{key}.offer_timeout_secs"), t, 86_400.0);
            }
            let mut ms = |what: &str, v: Option<f64>| {
                let v = v?;
                p.seconds(&format!("{key}.{what}"), v, 30.0 * 86_400.0);
                (v.is_finite() && v > 0.0).then(|| (v * 1000.0).round().max(1.0) as i64)
            };
            let (step_ms, max_wait_ms) = (ms("ageing_secs", q.ageing_secs), ms("max_wait_secs", q.max_wait_secs));
            let cap = q
                .ageing_cap
                .map_or(9, |c| priority(&mut p, &format!("{key}.ageing_cap"), c));
            let ageing = Ageing {
                step_ms,
                cap,
                max_wait_ms,
            };
            let mut admission = Admission::default();
            if let Some(n) = q.max_waiting {
                match usize::try_from(n) {
                    Ok(n @ 1..=1_000_000) => admission.max_waiting = Some(n),
                    _ => p.add(format!("{key}.max_waiting"), n, "must be 1..1000000 contacts"),
                }
            }
            if let Some(w) = q.max_estimated_wait_secs {
                p.seconds(&format!("{key}.max_estimated_wait_secs"), w, 30.0 * 86_400.0);
                admission.max_estimated_wait_secs = Some(w);
            }
            if let Some(name) = name {
                if queues.contains_key(&name) {
                    p.add(format!("{key}.name"), &q.name, "duplicate queue name");
                    continue;
                }
                queue_order.push(name.clone());
                queues.insert(
                    name.clone(),
                    QueueSpec {
                        name,
                        channels,
                        skills: std::sync::Arc::new(required),
                        priority: prio,
                        sla_policy: q.sla_policy.as_deref().map(Into::into),
                        strategy: strat,
                        ring_size,
                        offer_timeout_secs,
                        ageing,
                        relax: Vec::new(),
                        admission,
                        hours: None,
                        closed_overflow: None,
                        order_by_slack,
                        relax_before_breach: q.relax_before_breach,
                    },
                );
            }
        }

        self.queue_links(&mut p, &mut queues, &calendars);
        let queue_names: BTreeSet<QueueName> = queues.keys().cloned().collect();
        let sla_rules = super::sla::rules(&mut p, &self.sla, &policies, &queue_names);

        let mut rules = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let key = format!("rules[{i}]");
            let queue = token::<QueueName>(&mut p, format!("{key}.queue"), &r.queue);
            if let Some(q) = &queue {
                if !queues.contains_key(q) {
                    p.add(
                        format!("{key}.queue"),
                        &r.queue,
                        format!("no such queue (defined: {})", names(queues.keys())),
                    );
                }
            }
            let prio = r.priority.map(|v| priority(&mut p, &format!("{key}.priority"), v));
            check_policy(&mut p, format!("{key}.sla_policy"), &r.sla_policy);
            let channels: Vec<Channel> = r
                .channels
                .iter()
                .enumerate()
                .filter_map(|(j, c)| channel(&mut p, format!("{key}.channels[{j}]"), c))
                .collect();
            if let (Some(q), false) = (queue.as_ref().and_then(|q| queues.get(q)), channels.is_empty()) {
                for c in &channels {
                    if !q.channels[c.index()] {
                        p.add(
                            format!("{key}.channels"),
                            c.as_str(),
                            format!("queue {} does not take {c} contacts", q.name),
                        );
                    }
                }
            }
            let rule_skills: Vec<SkillName> = r
                .skills
                .iter()
                .enumerate()
                .filter_map(|(j, s)| token::<SkillName>(&mut p, format!("{key}.skills[{j}]"), s))
                .collect();
            let regex = r.regex.as_ref().and_then(|re| {
                match regex::RegexBuilder::new(re)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let first = e.to_string().lines().last().unwrap_or_default().trim().to_string();
                        p.add(
                            format!("{key}.regex"),
                            re,
                            format!("not a valid regular expression: {first}"),
                        );
                        None
                    }
                }
            });
            if let Some(k) = &r.keyword {
                if k.trim().is_empty() {
                    p.add(format!("{key}.keyword"), k, "keyword must not be empty");
                }
            }
            if let Some(queue) = queue {
                rules.push(RuleSpec {
                    name: r.name.clone().unwrap_or_else(|| format!("rules[{i}]")),
                    queue,
                    priority: prio,
                    sla_policy: r.sla_policy.as_deref().map(Into::into),
                    channels,
                    tiers: r.tiers.clone(),
                    languages: r.languages.iter().map(|t| t.to_lowercase()).collect(),
                    skills: rule_skills,
                    attributes: r.attributes.clone(),
                    keyword: r.keyword.as_ref().map(|k| k.to_lowercase()),
                    regex,
                });
            }
        }

        let u = &self.routing.units;
        let mut units = crate::routing::spec::Units::default();
        for (c, w) in [
            (Channel::Email, u.email),
            (Channel::Chat, u.chat),
            (Channel::Social, u.social),
            (Channel::Voice, u.voice),
        ] {
            match u32::try_from(w) {
                Ok(w @ 1..=100_000) => units.weights[c.index()] = w,
                _ => p.add(format!("routing.units.{c}"), w, "must be 1..100000 units"),
            }
        }
        for (j, ch) in u.interruptible.iter().enumerate() {
            if let Some(c) = channel(&mut p, format!("routing.units.interruptible[{j}]"), ch) {
                units.interruptible[c.index()] = true;
            }
        }
        let (mut channel_offer_timeout_secs, mut channel_wrap_up_secs) = ([None; 4], [None; 4]);
        for (name, c) in &self.routing.channels {
            let key = format!("routing.channels.{name}");
            let Some(ch) = channel(&mut p, key.clone(), name) else {
                continue;
            };
            if let Some(t) = c.offer_timeout_secs {
                p.seconds(&format!("{key}.offer_timeout_secs"), t, 86_400.0);
                channel_offer_timeout_secs[ch.index()] = Some(t);
            }
            if let Some(w) = c.wrap_up_secs {
                if !(w.is_finite() && (0.0..=86_400.0).contains(&w)) {
                    p.add(format!("{key}.wrap_up_secs"), w, "must be 0..86400 seconds");
                }
                channel_wrap_up_secs[ch.index()] = Some(w);
            }
        }
        let af = &self.routing.affinity;
        let mut affinity = crate::routing::spec::Affinity::default();
        if af.lookback_secs != 0.0 {
            p.seconds("routing.affinity.lookback_secs", af.lookback_secs, 366.0 * 86_400.0);
            affinity.lookback_ms = Some((af.lookback_secs * 1000.0).round() as i64);
        }
        if af.wait_secs != 0.0 {
            p.seconds("routing.affinity.wait_secs", af.wait_secs, 3_600.0);
            if af.lookback_secs == 0.0 {
                p.add(
                    "routing.affinity.wait_secs",
                    af.wait_secs,
                    "needs routing.affinity.lookback_secs (affinity is off)",
                );
            }
            affinity.wait_ms = Some((af.wait_secs.clamp(0.0, 3_600.0) * 1000.0).round() as i64).filter(|ms| *ms > 0);
        }
        match usize::try_from(af.history) {
            Ok(n @ 1..=20) => affinity.history = n,
            _ => p.add("routing.affinity.history", af.history, "must be 1..20 past contacts"),
        }
        match usize::try_from(af.max_customers) {
            Ok(n @ 1..=10_000_000) => affinity.max_customers = n,
            _ => p.add(
                "routing.affinity.max_customers",
                af.max_customers,
                "must be 1..10000000",
            ),
        }
        let mut agents = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let key = format!("agents[{i}]");
            let id = token::<AgentId>(&mut p, format!("{key}.id"), &a.id);
            let sk = skills(&mut p, &format!("{key}.skills"), &a.skills);
            let mut capacity = [0u32; 4];
            for (ch, n) in &a.capacity {
                let k = format!("{key}.capacity.{ch}");
                if let Some(c) = channel(&mut p, k.clone(), ch) {
                    if (0..=1000).contains(n) {
                        capacity[c.index()] = *n as u32;
                    } else {
                        p.add(k, n, "capacity must be 0..1000 concurrent contacts");
                    }
                }
            }
            let agent_units = a.units.and_then(|n| match u32::try_from(n) {
                Ok(n @ 1..=1_000_000) => Some(n),
                _ => {
                    p.add(format!("{key}.units"), n, "must be 1..1000000 units");
                    None
                }
            });
            let status = match a.initial_status.as_deref().map(str::parse::<Presence>) {
                None => Presence::Offline,
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    p.add(
                        format!("{key}.initial_status"),
                        a.initial_status.as_deref().unwrap_or_default(),
                        e,
                    );
                    Presence::Offline
                }
            };
            if let Some(id) = id {
                if !seen.insert(id.clone()) {
                    p.add(format!("{key}.id"), &a.id, "duplicate agent id");
                    continue;
                }
                let name = if a.name.is_empty() {
                    id.to_string()
                } else {
                    a.name.clone()
                };
                agents.push(AgentSpec {
                    id,
                    name,
                    skills: sk,
                    capacity,
                    units: agent_units,
                    initial_status: status,
                });
            }
        }

        // Adapters are checked here too, so `validate` lists everything;
        // `adapter_specs` builds them where they run.
        if let Err(more) = self.adapter_specs() {
            p.0.extend(more);
        }
        if let Err(more) = self.sink_specs() {
            p.0.extend(more);
        }

        if p.0.is_empty() {
            Ok(Spec {
                queues: queues.into_iter().collect(),
                queue_order,
                rules,
                policies,
                sla_rules,
                default_sla_policy: self.sla.default_policy.as_deref().map(Into::into),
                agents,
                offer_timeout_secs: self.routing.offer_timeout_secs,
                channel_offer_timeout_secs,
                channel_wrap_up_secs,
                max_missed_offers: self.routing.max_missed_offers,
                units,
                affinity,
            })
        } else {
            Err(p.0)
        }
    }

    /// What refers to other queues or calendars: each queue's `[[queues.relax]]`
    /// steps, overflow queues and calendar, checked against every queue
    /// (an overflow must name another queue taking all of this one's
    /// channels; a step may only change skills the contact can require by
    /// then, or add ones; times must increase).
    fn queue_links(
        &self,
        p: &mut Problems,
        queues: &mut BTreeMap<QueueName, QueueSpec>,
        calendars: &BTreeMap<String, std::sync::Arc<crate::calendar::Calendar>>,
    ) {
        for (i, q) in self.queues.iter().enumerate() {
            let Some(name) = QueueName::try_from(q.name.clone()).ok() else {
                continue;
            };
            let mut steps = Vec::new();
            let mut last = 0.0;
            for (j, r) in q.relax.iter().enumerate() {
                let key = format!("queues[{i}].relax[{j}]");
                p.seconds(&format!("{key}.after_secs"), r.after_secs, 30.0 * 86_400.0);
                if r.after_secs <= last && r.after_secs > 0.0 {
                    p.add(
                        format!("{key}.after_secs"),
                        r.after_secs,
                        "steps must come in increasing after_secs order",
                    );
                }
                last = r.after_secs.max(last);
                let mut skills_out = BTreeMap::new();
                for (s, l) in &r.skills {
                    let k = format!("{key}.skills.{s}");
                    let sk = token::<SkillName>(p, k.clone(), s);
                    match (sk, u8::try_from(*l)) {
                        (Some(sk), Ok(l @ 0..=10)) => {
                            skills_out.insert(sk, l);
                        }
                        (_, _) if !(0..=10).contains(l) => {
                            p.add(k, l, "level must be 1..10, or 0 to drop the requirement")
                        }
                        _ => {}
                    }
                }
                let overflow = r.overflow.as_ref().and_then(|o| {
                    let k = format!("{key}.overflow");
                    let Some(target) = QueueName::try_from(o.clone()).ok().and_then(|t| queues.get(&t)) else {
                        p.add(k, o, "no such queue");
                        return None;
                    };
                    if target.name == name {
                        p.add(k, o, "a queue cannot overflow to itself");
                        return None;
                    }
                    let own = queues.get(&name).map_or([false; 4], |q| q.channels);
                    if Channel::ALL.iter().any(|c| own[c.index()] && !target.takes(*c)) {
                        p.add(k, o, "the overflow queue must take every channel of this queue");
                        return None;
                    }
                    Some(target.name.clone())
                });
                if r.skills.is_empty() && r.overflow.is_none() {
                    p.add(key, "{}", "a step needs skills or overflow (or both)");
                }
                steps.push(RelaxStep {
                    after_ms: (r.after_secs * 1000.0).round() as i64,
                    skills: skills_out,
                    overflow,
                });
            }
            let other = |p: &mut Problems, what: &str, o: &Option<String>| {
                other_queue(p, &format!("queues[{i}].{what}"), o.as_deref()?, &name, queues)
            };
            let admission_overflow = other(p, "admission_overflow", &q.admission_overflow);
            let closed_overflow = other(p, "closed_overflow", &q.closed_overflow);
            let hours = q.calendar.as_ref().and_then(|c| {
                let found = calendars.get(c).cloned();
                if found.is_none() && !self.calendars.contains_key(c) {
                    p.add(
                        format!("queues[{i}].calendar"),
                        c,
                        format!("no such calendar (defined: {})", names(self.calendars.keys())),
                    );
                }
                found
            });
            if q.closed_overflow.is_some() && q.calendar.is_none() {
                p.add(
                    format!("queues[{i}].closed_overflow"),
                    q.closed_overflow.as_deref().unwrap_or(""),
                    "needs a calendar",
                );
            }
            if let Some(q) = queues.get_mut(&name) {
                q.relax = steps;
                q.admission.overflow = admission_overflow;
                q.hours = hours;
                q.closed_overflow = closed_overflow;
            }
        }
    }

    /// What `omniroute adapter NAME` needs checked: the NATS, HTTP and
    /// runtime sections and the adapters; the routing model (queues,
    /// agents, SLA) belongs to the router and may be absent.
    pub fn validate_adapters(&self) -> Result<Vec<crate::adapters::spec::AdapterSpec>, Vec<Problem>> {
        let mut p = Problems::default();
        self.check_runtime(&mut p);
        match self.adapter_specs() {
            Ok(specs) if p.0.is_empty() => Ok(specs),
            Ok(_) => Err(p.0),
            Err(more) => {
                p.0.extend(more);
                Err(p.0)
            }
        }
    }

    fn check_runtime(&self, p: &mut Problems) {
        let n = &self.nats;
        if n.url.trim().is_empty() {
            p.add("nats.url", &n.url, "a NATS server URL is needed");
        }
        for u in n.url.split(',') {
            let u = u.trim();
            let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|s| u.starts_with(s))
                || !u.contains("://");
            if !u.is_empty() && !scheme_ok {
                p.add("nats.url", u, "scheme must be nats://, tls://, ws:// or wss://");
            }
        }
        if n.subject_prefix.split('.').any(|t| check_token(t).is_err()) {
            p.add(
                "nats.subject_prefix",
                &n.subject_prefix,
                "must be dot-separated tokens of A-Z a-z 0-9 _ -",
            );
        }
        for (key, v) in [
            ("nats.state_bucket", &n.state_bucket),
            ("nats.dedupe_bucket", &n.dedupe_bucket),
            ("nats.lease_bucket", &n.lease_bucket),
            ("nats.consumer_name", &n.consumer_name),
        ] {
            if let Err(e) = check_token(v) {
                p.add(key, v, e);
            }
        }
        let auth_methods = [n.credentials_file.is_some(), n.user.is_some(), n.token.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if auth_methods > 1 {
            p.add(
                "nats",
                "credentials_file/user/token",
                "set at most one of credentials_file, user + password, token",
            );
        }
        if n.password.is_some() && n.user.is_none() {
            p.add("nats.password", "***", "a password needs nats.user");
        }
        if n.user.is_some() && n.password.is_none() {
            p.add(
                "nats.user",
                n.user.as_deref().unwrap_or_default(),
                "a user needs nats.password",
            );
        }
        for (key, path) in [
            ("nats.credentials_file", &n.credentials_file),
            ("nats.tls.ca_file", &n.tls.ca_file),
            ("nats.tls.cert_file", &n.tls.cert_file),
            ("nats.tls.key_file", &n.tls.key_file),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    p.add(key, path.display(), "file does not exist or is not readable");
                }
            }
        }
        if n.tls.cert_file.is_some() != n.tls.key_file.is_some() {
            p.add(
                "nats.tls",
                "cert_file/key_file",
                "a client certificate needs both cert_file and key_file",
            );
        }
        if !(1..=5).contains(&n.stream_replicas) {
            p.add("nats.stream_replicas", n.stream_replicas, "replicas must be 1 to 5");
        }
        if !(1024..=64 << 20).contains(&n.max_payload_bytes) {
            p.add("nats.max_payload_bytes", n.max_payload_bytes, "must be 1 KiB to 64 MiB");
        }
        if !(1..=4096).contains(&n.batch_size) {
            p.add("nats.batch_size", n.batch_size, "must be 1 to 4096");
        }
        p.seconds("nats.ack_wait_secs", n.ack_wait_secs, 86_400.0);
        p.seconds("nats.duplicate_window_secs", n.duplicate_window_secs, 86_400.0);
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            p.add(
                "http.listen",
                &self.http.listen,
                "must be an address such as 127.0.0.1:9464 or [::]:9464",
            );
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            p.add("log.format", &self.log.format, "must be text or json");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            p.add("log.level", &self.log.level, format!("not a log filter: {e}"));
        }
        p.seconds("runtime.shutdown_grace_secs", self.runtime.shutdown_grace_secs, 3_600.0);
        p.seconds("runtime.lease_ttl_secs", self.runtime.lease_ttl_secs, 300.0);
        if self.runtime.lease_ttl_secs > 0.0 && self.runtime.lease_ttl_secs < 1.0 {
            p.add(
                "runtime.lease_ttl_secs",
                self.runtime.lease_ttl_secs,
                "must be at least 1 second",
            );
        }
        p.seconds("routing.offer_timeout_secs", self.routing.offer_timeout_secs, 86_400.0);
        p.seconds(
            "routing.dedupe_retention_secs",
            self.routing.dedupe_retention_secs,
            30.0 * 86_400.0,
        );
        if self.routing.max_missed_offers == 0 {
            p.add("routing.max_missed_offers", 0, "must be at least 1");
        }
        if !(1_000..=500_000_000).contains(&self.routing.dedupe_max_ids) {
            p.add(
                "routing.dedupe_max_ids",
                self.routing.dedupe_max_ids,
                "must be between 1000 and 500000000",
            );
        }
    }
}

/// Another queue, named at `key`, that takes every channel of queue `own`.
fn other_queue(
    p: &mut Problems,
    key: &str,
    o: &str,
    own: &QueueName,
    queues: &BTreeMap<QueueName, QueueSpec>,
) -> Option<QueueName> {
    let Some(target) = QueueName::try_from(o.to_string()).ok().and_then(|t| queues.get(&t)) else {
        p.add(key, o, "no such queue");
        return None;
    };
    let channels = queues.get(own).map_or([false; 4], |q| q.channels);
    if target.name == *own || Channel::ALL.iter().any(|c| channels[c.index()] && !target.takes(*c)) {
        p.add(key, o, "must be another queue taking every channel of this one");
        return None;
    }
    Some(target.name.clone())
}

pub(super) fn names<'a, T: fmt::Display + 'a>(it: impl Iterator<Item = &'a T>) -> String {
    let v: Vec<String> = it.map(|t| t.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
