//! Customers recognised on return: for each customer, the last contacts
//! they had (channel, queue, agent, when, outcome; never message text or
//! addresses), so a new contact can be offered first to the agent who
//! served them last, and the offer can show the agent that history.
//!
//! Customers are known by a 128-bit FNV-1a hash of their id, never the id
//! itself: ids are often e-mail addresses or phone numbers, and nothing
//! here needs them back. Persisted as `customer.<hash>` records.
//!
//! Threads too: a closed contact is also remembered under its
//! conversation ([`thread_key`]), so a reply in a known thread (an e-mail
//! answered from another address, a social thread picked up again) goes
//! first to the agent who handled that thread, whoever writes. A thread's
//! record holds only its last contact someone took (one entry); threads
//! and customers share the map, its records and `max_customers`.
//!
//! Bounds (documented in the contract): at most `history` entries per
//! customer (newest kept), at most `max_customers` customers (the one whose
//! last contact is oldest is forgotten first), and entries older than the
//! lookback are not used. Work per contact: one hash lookup, and an
//! ordered-set update to keep the eviction order.

use super::FastMap;
pub use crate::domain::wire::Served;
use crate::domain::AgentId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const CUSTOMER_KEY: &str = "customer.";

/// A customer's record: past contacts, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub contacts: Vec<Served>,
}

impl History {
    fn last_at(&self) -> Option<DateTime<Utc>> {
        self.contacts.last().map(|s| s.at)
    }

    /// The agent of the most recent contact someone took, if it closed at
    /// or after `since`.
    pub fn last_agent(&self, since: DateTime<Utc>) -> Option<&AgentId> {
        self.contacts
            .iter()
            .rev()
            .take_while(|s| s.at >= since)
            .find_map(|s| s.agent.as_ref())
    }
}

/// The customer key of an id: FNV-1a, 128 bits.
pub fn customer_key(customer_id: &str) -> u128 {
    fnv1a(&[customer_id.as_bytes()])
}

/// The key a conversation is remembered under: the same hash over
/// `thread:` and the id, so a thread and a customer share a key only by a
/// 128-bit collision (or a customer id that is `thread:` and a
/// conversation id, which would only steer who is offered first).
pub fn thread_key(conversation_id: &str) -> u128 {
    fnv1a(&[b"thread:", conversation_id.as_bytes()])
}

fn fnv1a(parts: &[&[u8]]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= *b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013b);
    }
    h
}

pub fn record_key(k: u128) -> String {
    super::model::hex_id(CUSTOMER_KEY, k)
}

/// The key of a `customer.<hash>` record.
pub fn parse_record_key(key: &str) -> Option<u128> {
    u128::from_str_radix(key.strip_prefix(CUSTOMER_KEY)?, 16).ok()
}

#[derive(Debug, Default)]
pub(crate) struct Customers {
    map: FastMap<u128, History>,
    /// (last contact's close, customer): who is forgotten first.
    by_last: BTreeSet<(DateTime<Utc>, u128)>,
    /// Customers changed (or forgotten) since the last `take_changes`.
    pub dirty: BTreeSet<u128>,
}

impl Customers {
    pub fn get(&self, k: u128) -> Option<&History> {
        self.map.get(&k)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &History)> {
        self.map.iter()
    }

    /// Adds a closed contact to its customer's history, keeping `keep`
    /// entries, then forgets customers beyond `max`.
    pub fn remember(&mut self, k: u128, s: Served, keep: usize, max: usize) {
        let keep = keep.max(1);
        let h = self.map.entry(k).or_default();
        if let Some(at) = h.last_at() {
            self.by_last.remove(&(at, k));
        }
        // Room first, then the new entry: a history is allocated once, at
        // its full size (growing by doubling would allocate twice and keep
        // up to three spare entries per customer, and the allocations of a
        // growing customer table were a visible share of an agent event).
        let extra = (h.contacts.len() + 1).saturating_sub(keep);
        h.contacts.drain(..extra.min(h.contacts.len()));
        if h.contacts.capacity() == 0 {
            h.contacts.reserve_exact(keep);
        }
        h.contacts.push(s);
        if let Some(at) = h.last_at() {
            self.by_last.insert((at, k));
        }
        self.dirty.insert(k);
        while self.map.len() > max.max(1) {
            let Some((_, old)) = self.by_last.pop_first() else {
                break;
            };
            self.map.remove(&old);
            self.dirty.insert(old);
        }
    }

    /// A record read back at start-up (within the same bounds).
    pub fn restore(&mut self, k: u128, mut h: History, keep: usize) {
        let extra = h.contacts.len().saturating_sub(keep.max(1));
        h.contacts.drain(..extra);
        h.contacts.iter_mut().for_each(Served::share_outcome);
        if let Some(at) = h.last_at() {
            self.by_last.insert((at, k));
            self.map.insert(k, h);
        }
    }

    /// Forgets the oldest customers beyond `max` (after a restore under a
    /// smaller limit).
    pub fn trim(&mut self, max: usize) {
        while self.map.len() > max.max(1) {
            let Some((_, old)) = self.by_last.pop_first() else {
                break;
            };
            self.map.remove(&old);
            self.dirty.insert(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, QueueName};

    fn served(n: i64, agent: Option<&str>) -> Served {
        Served {
            contact_id: format!("c{n}").as_str().into(),
            channel: Channel::Chat,
            queue: QueueName::try_from("q".to_string()).expect("queue"),
            agent: agent.map(|a| AgentId::try_from(a.to_string()).expect("agent")),
            at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(n),
            outcome: "completed".into(),
        }
    }

    #[test]
    fn a_restored_outcome_shares_the_constant_and_an_unknown_one_is_kept() {
        let mut c = Customers::default();
        let mut odd = served(2, None);
        odd.outcome = "transferred".to_string().into();
        let mut known = served(1, Some("a1"));
        known.outcome = "completed".to_string().into();
        let h = History {
            contacts: vec![known, odd],
        };
        c.restore(customer_key("ana"), h, 5);
        let got = &c.get(customer_key("ana")).expect("restored").contacts;
        assert!(matches!(got[0].outcome, std::borrow::Cow::Borrowed("completed")));
        assert!(matches!(&got[1].outcome, std::borrow::Cow::Owned(o) if o == "transferred"));
    }

    #[test]
    fn a_past_contact_id_reads_back_exactly_as_written() {
        let ours = "c-0123456789abcdef0123456789abcdef";
        for id in [
            ours,
            "c-0123456789ABCDEF0123456789abcdef",
            "c-0123456789abcdef0123456789abcde",
            "c-0123456789abcdef0123456789abcdef0",
            "c-+123456789abcdef0123456789abcdef",
            "imported-7",
            "",
        ] {
            let mut e = served(1, None);
            e.contact_id = id.into();
            assert_eq!(
                matches!(e.contact_id, crate::domain::wire::PastId::Hashed(_)),
                id == ours,
                "{id}"
            );
            assert_eq!(e.contact_id.as_str(&mut [0; 34]), id);
            let json = serde_json::to_value(&e).expect("json");
            assert_eq!(json["contact_id"], id);
            let back: Served = serde_json::from_value(json).expect("reads back");
            assert_eq!(back, e);
        }
    }

    #[test]
    fn histories_and_customers_stay_within_their_bounds() {
        let mut c = Customers::default();
        for n in 0..5 {
            c.remember(customer_key("ana@example.com"), served(n, Some("a1")), 3, 2);
        }
        let h = c.get(customer_key("ana@example.com")).expect("kept");
        assert_eq!(
            h.contacts
                .iter()
                .map(|s| s.contact_id.as_str(&mut [0; 34]).to_string())
                .collect::<Vec<_>>(),
            ["c2", "c3", "c4"]
        );
        assert_eq!(h.contacts.capacity(), 3, "a history is allocated once, at its size");
        c.remember(customer_key("bo"), served(10, None), 3, 2);
        c.remember(customer_key("cy"), served(11, Some("a2")), 3, 2);
        // Ana's last contact is the oldest: she is forgotten first.
        assert!(c.get(customer_key("ana@example.com")).is_none());
        assert_eq!(c.len(), 2);
        assert!(c.dirty.contains(&customer_key("ana@example.com")));
    }

    #[test]
    fn the_last_agent_is_the_latest_who_took_a_contact_within_the_lookback() {
        let h = History {
            contacts: vec![served(1, Some("a1")), served(5, Some("a2")), served(9, None)],
        };
        let t = |s| DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(s);
        assert_eq!(h.last_agent(t(0)).map(|a| a.as_str()), Some("a2"));
        assert_eq!(h.last_agent(t(6)), None, "a2's contact is older than the lookback");
        assert_eq!(
            parse_record_key(&record_key(customer_key("x"))),
            Some(customer_key("x"))
        );
    }
}
