//! Why a contact waits: the answer of `GET /api/contacts/{id}/explain`.
//!
//! For one open contact: its queue, the queue routing it (after any
//! overflow), priority (own and effective), requirement step and
//! requirement, state, age, its position in its queue's line and the
//! queue's waiting count; and for the agents, why each is or is not
//! eligible now (missing skill, level too low, not available, no free
//! slot, declined it, kept for the customer's last agent, queue outside
//! its hours). Every agent is counted by reason and the position is
//! counted over the open contacts (two scans: an operator's query, not an
//! event; each costs about as much as a few hundred offers at 100 000
//! agents or contacts); at most `limit` agents are listed, eligible ones
//! first, so the output is bounded.

use super::agents::fits;
use super::queues::WaitKey;
use super::{ContactState, Engine};
use crate::domain::{Channel, Presence, SkillLevel, SkillName};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Agents listed at most, whatever the caller asks.
pub const MAX_EXPLAIN_AGENTS: usize = 500;

impl Engine {
    /// The explanation of an open contact, or `None` if it is not open.
    /// With `agent`, only that agent is listed.
    pub fn explain(&self, contact_id: &str, agent: Option<&str>, limit: usize, now: DateTime<Utc>) -> Option<Value> {
        let cx = self.contact_slot_of(contact_id)?;
        let s = self.slot(cx)?;
        let c = &s.c;
        let route = self.queues.get(s.route_q as usize);
        let state = match &c.state {
            ContactState::Waiting => json!({"status": "waiting"}),
            ContactState::Offered {
                agent,
                expires_at,
                ring,
                ..
            } => {
                let mut o = json!({"status": "offered", "agent_id": agent, "expires_at": crate::domain::wire::rfc3339(*expires_at)});
                if !ring.is_empty() {
                    o["ring"] = json!(ring.iter().map(|r| &r.agent).collect::<Vec<_>>());
                }
                o
            }
            ContactState::Assigned { agent, .. } => json!({"status": "assigned", "agent_id": agent}),
        };
        let limit = limit.clamp(1, MAX_EXPLAIN_AGENTS);
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let (mut eligible, mut others) = (Vec::new(), Vec::new());
        let required = s.required(&self.skill_names);
        for (ax, slot) in self.agents.iter().enumerate() {
            let a = &slot.a;
            if agent.is_some_and(|want| a.id.as_str() != want) {
                continue;
            }
            let why = self.why_not(ax as u32, cx, c.channel, now, &required);
            *counts.entry(why.0).or_default() += 1;
            let listed = if why.0 == "eligible" {
                &mut eligible
            } else {
                &mut others
            };
            if listed.len() < limit {
                let mut o = Map::new();
                o.insert("agent_id".into(), json!(a.id));
                o.insert("reason".into(), json!(why.0));
                if let Some(d) = why.1 {
                    o.insert("detail".into(), json!(d));
                }
                listed.push(Value::Object(o));
            }
        }
        let total: usize = counts.values().sum();
        let mut agents = eligible;
        agents.extend(others);
        agents.truncate(limit);
        Some(json!({
            "contact_id": c.id,
            "conversation_id": c.conversation_id,
            "channel": c.channel,
            "queue": c.queue,
            "routed_as": route.map(|q| q.name.as_str()),
            "strategy": route.map(|q| q.strategy.as_str()),
            "priority": c.priority,
            "effective_priority": self.effective_priority(cx, now),
            "step": s.step,
            "required": required.iter().copied().collect::<BTreeMap<_, _>>(),
            "state": state,
            "waited_secs": crate::domain::wire::secs(now - c.received_at),
            "position": self.position(cx, now),
            "waiting_in_queue": self.queues.get(s.q as usize).map_or(0, |q| q.waiting),
            "queue_open": self.queues.get(s.q as usize).is_none_or(|q| q.open),
            "preferred_agent": c.preferred_agent,
            "kept_for_preferred_agent_until": s.reserved.map(|(_, until)| crate::domain::wire::rfc3339(until)),
            "declined_by": c.declined_by,
            "agents_by_reason": counts,
            "agents": agents,
            "agents_listed": total.min(limit),
            "agents_total": total,
        }))
    }

    /// A waiting contact's place in its own queue's line now (1: first),
    /// in the order the router serves contacts: effective priority, then
    /// age (or slack), then the tie-break. Every waiting contact of the
    /// queue counts, also those only other agents can take.
    fn position(&self, cx: u32, now: DateTime<Utc>) -> Option<usize> {
        let now = super::agents::nanos(now);
        let (key, q) = (self.line_key(cx, now)?, self.slot(cx)?.q);
        let ahead = (0..u32::try_from(self.contacts.slots()).unwrap_or(u32::MAX))
            .filter(|&o| o != cx && self.slot(o).is_some_and(|s| s.q == q))
            .filter(|&o| self.line_key(o, now).is_some_and(|k| k < key))
            .count();
        Some(ahead + 1)
    }

    /// A waiting contact's effective key at `now` (nanoseconds): aged as
    /// the wait index ages it when filed (at the query's time, as
    /// `effective_priority` is), else as its own timer keeps it (held,
    /// kept for an agent).
    fn line_key(&self, cx: u32, now: i64) -> Option<WaitKey> {
        let s = self.slot(cx).filter(|s| s.c.is_waiting())?;
        Some(match s.class {
            Some(class) => self.waiting.effective_at(class, s.stored_key(cx), now),
            None => s.wait_key(cx),
        })
    }

    /// Why agent slot `ax` could not take contact slot `cx` now, with a
    /// detail where one helps; `required` is the contact's requirement now,
    /// in name order.
    fn why_not(
        &self,
        ax: u32,
        cx: u32,
        ch: Channel,
        now: DateTime<Utc>,
        required: &[(&SkillName, SkillLevel)],
    ) -> (&'static str, Option<String>) {
        let (Some(slot), Some(s)) = (self.agents.get(ax as usize), self.slot(cx)) else {
            return ("unknown", None);
        };
        let a = &slot.a;
        if let Some(&(name, need)) = required
            .iter()
            .find(|(n, l)| a.skills.get(*n).is_none_or(|have| have < l))
        {
            return match a.skills.get(name) {
                None => ("missing_skill", Some(name.to_string())),
                Some(have) => ("level_too_low", Some(format!("{name} {have} < {need}"))),
            };
        }
        if a.status != Presence::Available {
            return ("not_available", Some(a.status.as_str().to_string()));
        }
        if let Some(why) = a.not_free_because(ch) {
            return ("no_capacity", Some(why));
        }
        if s.c.declined_by.contains(&a.id) {
            return ("declined", None);
        }
        if let Some((kept_for, until)) = s.reserved.filter(|(k, _)| *k != ax) {
            let who = self.agents.get(kept_for as usize).map_or("", |k| k.a.id.as_str());
            let until = crate::domain::wire::rfc3339(until);
            return ("kept_for_last_agent", Some(format!("{who} until {until}")));
        }
        if s.held {
            let q = self.queues.get(s.q as usize);
            let name = q.map_or("", |q| q.name.as_str());
            let opens = q
                .and_then(|q| q.hours.as_ref()?.next_change(now))
                .map_or(String::new(), |t| format!(" until {}", crate::domain::wire::rfc3339(t)));
            return ("outside_hours", Some(format!("queue {name} is closed{opens}")));
        }
        debug_assert!(fits(&slot.skills, &s.need));
        ("eligible", None)
    }
}
