//! The messages the engine publishes: offers and desktop notices, contact
//! lifecycle events, SLA alerts. Each is built from the contact's record as
//! it is at that moment and queued in order; the daemon publishes them after
//! the state they describe is durable.

use super::spec::Strategy;
use super::{Engine, FollowUp, OutSubject, Outbound, Outcome};
use crate::domain::wire::InboundEvent;
use crate::domain::wire::{self, ContactEventMsg, DesktopNotice, OfferMsg, Why};
use crate::domain::{AgentId, QueueName, SkillName};
use chrono::{DateTime, Utc};

/// Ids of offers, events and notices: `<prefix>-<ULID>`, the ULID's time
/// part the input's time and its 80 other bits a random 16-bit tag and
/// splitmix64 over a counter from a random start. Within an engine no two
/// are equal (the mixing is a bijection of the counter, which does not wrap
/// in practice); engines start at random, 80 bits apart. This replaces a
/// clock read and a cryptographic generator per id (a tenth of an agent
/// event's time). Not secrets: an offer is checked against its agent.
#[derive(Debug)]
pub(super) struct Ids {
    counter: u64,
    tag: u16,
}

impl Ids {
    pub(super) fn seeded() -> Ids {
        let r = ulid::Ulid::new().random();
        Ids {
            counter: r as u64,
            tag: (r >> 64) as u16,
        }
    }

    pub(super) fn next(&mut self, prefix: &str, now: DateTime<Utc>) -> String {
        self.counter = self.counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.counter;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let ulid = ulid::Ulid::from_parts(ms, (u128::from(self.tag) << 64) | u128::from(z));
        let mut buf = [0u8; ulid::ULID_LEN];
        let text = ulid.array_to_str(&mut buf);
        let mut id = String::with_capacity(prefix.len() + 1 + text.len());
        id.push_str(prefix);
        id.push('-');
        id.push_str(text);
        id
    }
}

impl Engine {
    /// Reads ahead what the offer of a contact to an agent will write and
    /// is cold in memory (see [`super::Contact::warm`]): the contact's
    /// strings, the agent's id, and the customer's history with its
    /// agents' ids. Their cache misses then overlap with each other and
    /// with the decision's work, instead of stalling the writer in turn.
    pub(super) fn warm_offer(&self, cx: u32, ax: u32) {
        let Some(s) = self.slot(cx) else { return };
        s.c.warm();
        let first = super::model::first_byte;
        std::hint::black_box(self.agents.get(ax as usize).and_then(|a| first(a.a.id.as_str())));
        if self.spec.affinity.lookback_ms.is_none() {
            return;
        }
        let key = super::customers::customer_key(&s.c.customer.id);
        if let Some(h) = self.customers.get(key) {
            for e in &h.contacts {
                std::hint::black_box(e.agent.as_ref().and_then(|a| first(a.as_str())));
            }
        }
    }

    /// The offer of an offered contact to each agent it went to (again,
    /// after a restart: same ids).
    pub(super) fn emit_offer(&mut self, cx: u32) {
        let Some(s) = self.slot(cx) else { return };
        let members: Vec<(u32, AgentId, String)> =
            s.c.offers()
                .into_iter()
                .filter_map(|(agent, offer_id)| Some((self.agent_ix.get(&agent).copied()?, agent, offer_id)))
                .collect();
        self.emit_offers(cx, &members);
    }

    /// The offer to each agent of `members` (slot, id, offer id): one, or a
    /// ring group's. The members' offers differ only in the agent, the
    /// offer id and `why`; the contact's part is written once.
    pub(super) fn emit_offers(&mut self, cx: u32, members: &[(u32, AgentId, String)]) {
        // Taken for the loop, which reads the engine: no second queue.
        let mut out = std::mem::take(&mut self.out);
        self.write_offers(cx, members, &mut out);
        self.out = out;
    }

    fn write_offers(&self, cx: u32, members: &[(u32, AgentId, String)], out: &mut Vec<Outbound>) {
        let Some(s) = self.slot(cx) else { return };
        let c = &s.c;
        let super::ContactState::Offered {
            offered_at,
            expires_at,
            candidates,
            ..
        } = &c.state
        else {
            return;
        };
        // From the interned forms (the requirement as filed, the agent's
        // sorted levels) and the shared skill names, not from the contact's
        // own map: its node and name allocations are cold memory, and were
        // a third of an offer's encoding.
        let names = &self.skill_names;
        let mut by_name: Vec<_> = s
            .need
            .iter()
            .filter_map(|&(ix, l)| Some((names.get(ix as usize)?, l, ix)))
            .collect();
        by_name.sort_unstable_by(|x, y| x.0.cmp(y.0));
        let strategy = self
            .queues
            .get(s.route_q as usize)
            .map_or(Strategy::LongestIdle, |q| q.strategy);
        let history = self
            .customers
            .get(super::customers::customer_key(&c.customer.id))
            .filter(|_| self.spec.affinity.lookback_ms.is_some())
            .map_or(&[][..], |h| h.contacts.as_slice());
        let mut shared: Option<Vec<u8>> = None;
        for (ax, agent, offer_id) in members {
            let Some((have, (load, load_share))) = self
                .agents
                .get(*ax as usize)
                .map(|slot| (&slot.skills, slot.a.load_before(c.channel)))
            else {
                continue;
            };
            let agent_levels: Vec<_> = by_name
                .iter()
                .filter_map(|&(name, _, ix)| {
                    let at = have.binary_search_by_key(&ix, |(i, _)| *i).ok()?;
                    Some((name, have[at].1))
                })
                .collect();
            let msg = OfferMsg {
                v: 1,
                kind: "offer",
                offer_id,
                contact_id: &c.id,
                conversation_id: &c.conversation_id,
                agent_id: agent,
                queue: &c.queue,
                channel: c.channel,
                priority: c.priority,
                offered_at: *offered_at,
                expires_at: *expires_at,
                waited_secs: wire::secs(*offered_at - c.received_at),
                customer: &c.customer,
                subject: c.subject.as_deref(),
                text: c.text.as_deref(),
                history,
                why: Why {
                    strategy: strategy.as_str(),
                    returning_customer: c.preferred_agent.as_ref() == Some(agent),
                    step: s.step,
                    required: by_name.iter().map(|&(name, l, _)| (name, l)).collect(),
                    agent_levels,
                    candidates: *candidates,
                    load,
                    load_share,
                },
            };
            let payload = match (&shared, members.len()) {
                (_, 1) => msg.to_json(),
                (Some(part), _) => msg.to_json_sharing(part),
                (None, _) => msg.to_json_sharing(shared.insert(msg.contact_json())),
            };
            out.push(Outbound {
                subject: OutSubject::Desktop(agent.clone()),
                msg_id: offer_id.clone(),
                payload,
                queue: None,
            });
        }
    }

    /// A customer's follow-up message to the agent holding the contact.
    pub(super) fn forward(&mut self, cx: u32, agent: &AgentId, f: &FollowUp) {
        let Some(s) = self.slot(cx) else { return };
        let c = &s.c;
        let n = DesktopNotice {
            v: 1,
            kind: "message",
            contact_id: &c.id,
            conversation_id: &c.conversation_id,
            agent_id: agent,
            channel: c.channel,
            offer_id: None,
            reason: None,
            event_id: Some(&f.event_id),
            subject: f.subject.as_deref(),
            text: f.text.as_deref(),
            at: f.at,
        };
        let out = Outbound {
            subject: OutSubject::Desktop(agent.clone()),
            msg_id: format!("msg-{}", f.event_id),
            payload: n.to_json(),
            queue: None,
        };
        self.out.push(out);
    }

    pub(super) fn notice(
        &mut self,
        cx: u32,
        agent: &AgentId,
        kind: &'static str,
        offer_id: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) {
        let msg_id = self.ids.next(kind, now);
        let Some(s) = self.slot(cx) else { return };
        let c = &s.c;
        let n = DesktopNotice {
            v: 1,
            kind,
            contact_id: &c.id,
            conversation_id: &c.conversation_id,
            agent_id: agent,
            channel: c.channel,
            offer_id,
            reason,
            event_id: None,
            subject: None,
            text: None,
            at: now,
        };
        let out = Outbound {
            subject: OutSubject::Desktop(agent.clone()),
            msg_id,
            payload: n.to_json(),
            queue: None,
        };
        self.out.push(out);
    }

    pub(super) fn event(
        &mut self,
        what: &'static str,
        cx: u32,
        now: DateTime<Utc>,
        reason: Option<&str>,
        offer_id: Option<&str>,
    ) {
        self.event_with(what, cx, now, |m, _| (m.reason, m.offer_id) = (reason, offer_id));
    }

    /// `queued`, with the contact's position and estimated wait, and the
    /// queue it was turned away from, if admission control moved it.
    pub(super) fn queued_event(&mut self, cx: u32, now: DateTime<Utc>, from: Option<&QueueName>) {
        let Some(q) = self.slot(cx).map(|s| s.q) else { return };
        let position = self.queues.get(q as usize).map_or(0, |q| q.waiting);
        let ewt = self.estimated_wait(q, position);
        self.event_with("queued", cx, now, |m, _| {
            (m.position, m.estimated_wait_secs, m.from_queue) = (Some(position), ewt, from);
        });
    }

    /// A lifecycle event about what one agent did (or was done to them):
    /// `agent_id` is that agent, also for a ring group's other members.
    pub(super) fn event_by(
        &mut self,
        what: &'static str,
        cx: u32,
        agent: &AgentId,
        now: DateTime<Utc>,
        reason: Option<&str>,
    ) {
        self.event_with(what, cx, now, |m, _| (m.agent_id, m.reason) = (Some(agent), reason));
    }

    pub(super) fn event_with<'a>(
        &'a mut self,
        what: &'static str,
        cx: u32,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut ContactEventMsg<'a>, &'a [SkillName]),
    ) {
        let Some(s) = self.contacts.get(cx) else {
            return;
        };
        let c = &s.c;
        let mut msg = ContactEventMsg {
            v: 1,
            event_id: self.ids.next("ev", now),
            contact_id: Some(&c.id),
            conversation_id: Some(&c.conversation_id),
            channel: Some(c.channel),
            queue: Some(&c.queue),
            agent_id: c.agent(),
            at: now,
            waited_secs: wire::secs(now - c.received_at),
            offer_id: None,
            reason: None,
            from_queue: None,
            to_queue: None,
            required: None,
            error: None,
            position: None,
            estimated_wait_secs: None,
        };
        // The skill names too, for a requirement by name (`overflowed`),
        // without copying them out of the engine first.
        f(&mut msg, &self.skill_names);
        // The id moves into the output once the payload is written: no copy.
        let payload = msg.to_json();
        let out = Outbound {
            subject: OutSubject::ContactEvent(what),
            msg_id: msg.event_id,
            payload,
            queue: Some(c.queue.clone()),
        };
        self.out.push(out);
    }

    /// `contact.refused`: a new contact admission control turned away
    /// (nothing was opened; the adapter may tell the customer).
    pub(super) fn refused(&mut self, ev: &InboundEvent, queue: &QueueName, reason: &str, now: DateTime<Utc>) {
        let msg = ContactEventMsg {
            v: 1,
            event_id: self.ids.next("ev", now),
            contact_id: None,
            conversation_id: Some(&ev.conversation_id),
            channel: Some(ev.channel),
            queue: Some(queue),
            agent_id: None,
            at: now,
            waited_secs: 0.0,
            offer_id: None,
            reason: Some(reason),
            from_queue: None,
            to_queue: None,
            required: None,
            error: None,
            position: None,
            estimated_wait_secs: None,
        };
        let out = Outbound {
            subject: OutSubject::ContactEvent("refused"),
            msg_id: format!("refused-{}", ev.id),
            payload: msg.to_json(),
            queue: Some(queue.clone()),
        };
        self.out.push(out);
    }

    /// A well-formed agent event that does not apply: `contact.rejected`.
    pub(super) fn reject(&mut self, contact_id: &str, agent: &AgentId, error: &str, now: DateTime<Utc>) -> Outcome {
        let event_id = self.ids.next("ev", now);
        let c = self.contact(contact_id);
        let msg = ContactEventMsg {
            v: 1,
            event_id,
            contact_id: Some(contact_id),
            conversation_id: c.map(|c| c.conversation_id.as_str()),
            channel: c.map(|c| c.channel),
            queue: c.map(|c| &c.queue),
            agent_id: Some(agent),
            at: now,
            waited_secs: c.map_or(0.0, |c| wire::secs(now - c.received_at)),
            offer_id: None,
            reason: None,
            from_queue: None,
            to_queue: None,
            required: None,
            error: Some(error),
            position: None,
            estimated_wait_secs: None,
        };
        let payload = msg.to_json();
        let out = Outbound {
            subject: OutSubject::ContactEvent("rejected"),
            msg_id: msg.event_id,
            payload,
            queue: c.map(|c| c.queue.clone()),
        };
        self.out.push(out);
        Outcome::Rejected(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Ids;
    use chrono::{TimeZone, Utc};
    use std::collections::HashSet;

    #[test]
    fn ids_are_ulids_of_the_input_time_and_never_repeat() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 9, 30, 0).single().expect("time");
        let (mut a, mut b) = (Ids::seeded(), Ids::seeded());
        let mut seen = HashSet::new();
        for i in 0..100_000 {
            // Many ids in one millisecond, as one input's outputs are.
            let at = now + chrono::Duration::milliseconds(i / 1_000);
            for id in [a.next("ev", at), b.next("ev", at)] {
                let ulid = id.strip_prefix("ev-").and_then(|u| ulid::Ulid::from_string(u).ok());
                let ulid = ulid.unwrap_or_else(|| panic!("not ev-<ULID>: {id}"));
                assert_eq!(ulid.timestamp_ms() as i64, at.timestamp_millis(), "{id}");
                assert!(seen.insert(id), "an id repeated");
            }
        }
    }
}
