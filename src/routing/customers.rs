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
//! lookback are not used. Work per contact: a few hash lookups (the
//! customer and its neighbours in the forgetting order), no search.

use super::FastMap;
pub use crate::domain::wire::Served;
use crate::domain::AgentId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// A customer's history and its neighbours in forgetting order. A link to
/// the entry's own key means none (a key never links to itself): two
/// 16-byte links, where `Option<u128>` would take 32 bytes each.
#[derive(Debug)]
struct Entry {
    h: History,
    older: u128,
    newer: u128,
}

/// The customers remembered, in a hash map threaded by a doubly linked list
/// in (last contact's close, key) order: the oldest is forgotten first.
/// Closes arrive in time order, so a remembered customer moves to the
/// newest end in a few steps (walking back only past entries a stepped-back
/// clock left newer), where an ordered set searched its levels twice per
/// contact, a cache miss each at 100 000 customers.
#[derive(Debug, Default)]
pub(crate) struct Customers {
    map: FastMap<u128, Entry>,
    oldest: Option<u128>,
    newest: Option<u128>,
    /// Restored entries were appended out of order; [`Customers::trim`]
    /// sorts them once.
    unsorted: bool,
    /// Customers changed (or forgotten) since the last
    /// [`Customers::take_dirty`], with repeats.
    dirty: Vec<u128>,
}

/// The most customers the map is sized for up front (the default
/// `max_customers`): a map that doubles rehashes every entry inside one
/// input (17 ms for one input in the routing-scale bench), and at this
/// size the table is about 10 MiB, what it takes anyway once full. Beyond
/// it the map grows as usual: sized up front for millions, it would take
/// their memory from the start (its slots are written at random, so nearly
/// every page of it). At the bound, each contact remembered forgets one;
/// the tombstones that leaves are cleared by an occasional rehash in place
/// (no growth).
pub const PRESIZED: usize = 100_000;

impl Customers {
    /// Room for `max` customers (at most [`PRESIZED`]), and the one over
    /// that [`Customers::remember`] holds for a moment before forgetting.
    pub fn with_capacity(max: usize) -> Customers {
        Customers {
            map: FastMap::with_capacity_and_hasher(max.min(PRESIZED) + 1, Default::default()),
            ..Default::default()
        }
    }

    /// Writes an empty map through once, to its room (no growth), and
    /// empties it again, so every page of its table is in memory before
    /// the first input: otherwise the input that first writes into a page
    /// takes its fault, and with huge pages that zeroes 2 MiB (freed slots
    /// of 16-37 ms in the routing-scale bench). A few milliseconds, once;
    /// a map that holds anything is left alone.
    pub fn prefault(&mut self) {
        if !self.map.is_empty() {
            return;
        }
        let room = self.map.capacity() as u128;
        self.map.extend((0..room).map(|k| {
            let e = Entry {
                h: History::default(),
                older: k,
                newer: k,
            };
            (k, e)
        }));
        self.map.clear();
    }

    pub fn get(&self, k: u128) -> Option<&History> {
        self.map.get(&k).map(|e| &e.h)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &History)> {
        self.map.iter().map(|(k, e)| (k, &e.h))
    }

    /// The customers changed or forgotten since the last call, each once,
    /// in key order (so the records written for one input are too).
    pub fn take_dirty(&mut self) -> Vec<u128> {
        let mut d = std::mem::take(&mut self.dirty);
        d.sort_unstable();
        d.dedup();
        d
    }

    /// Adds a closed contact to its customer's history, keeping `keep`
    /// entries, then forgets customers beyond `max`.
    pub fn remember(&mut self, k: u128, s: Served, keep: usize, max: usize) {
        let keep = keep.max(1);
        if self.map.contains_key(&k) {
            self.unlink(k);
        }
        let e = self.map.entry(k).or_insert_with(|| Entry {
            h: History::default(),
            older: k,
            newer: k,
        });
        let h = &mut e.h;
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
        self.link(k);
        self.dirty.push(k);
        self.trim(max);
    }

    /// A record read back at start-up (within the same bounds); the order
    /// is put right by the [`Customers::trim`] that follows the records.
    pub fn restore(&mut self, k: u128, mut h: History, keep: usize) {
        let extra = h.contacts.len().saturating_sub(keep.max(1));
        h.contacts.drain(..extra);
        h.contacts.iter_mut().for_each(Served::share_outcome);
        if h.contacts.is_empty() {
            return;
        }
        if self.map.contains_key(&k) {
            self.unlink(k);
        }
        self.map.insert(k, Entry { h, older: k, newer: k });
        self.append(k);
        self.unsorted = true;
    }

    /// Forgets the oldest customers beyond `max` (after a restore under a
    /// smaller limit).
    pub fn trim(&mut self, max: usize) {
        if std::mem::take(&mut self.unsorted) {
            self.sort();
        }
        while self.map.len() > max.max(1) {
            let Some(old) = self.oldest else { break };
            self.unlink(old);
            self.map.remove(&old);
            self.dirty.push(old);
        }
    }

    // ----- the forgetting order -----

    fn order_key(&self, k: u128) -> (Option<DateTime<Utc>>, u128) {
        (self.map.get(&k).and_then(|e| e.h.last_at()), k)
    }

    fn older(&self, k: u128) -> Option<u128> {
        self.map.get(&k).and_then(|e| (e.older != k).then_some(e.older))
    }

    fn newer(&self, k: u128) -> Option<u128> {
        self.map.get(&k).and_then(|e| (e.newer != k).then_some(e.newer))
    }

    fn set_links(&mut self, k: u128, older: Option<Option<u128>>, newer: Option<Option<u128>>) {
        if let Some(e) = self.map.get_mut(&k) {
            if let Some(o) = older {
                e.older = o.unwrap_or(k);
            }
            if let Some(n) = newer {
                e.newer = n.unwrap_or(k);
            }
        }
    }

    fn unlink(&mut self, k: u128) {
        let (older, newer) = (self.older(k), self.newer(k));
        match older {
            Some(o) => self.set_links(o, None, Some(newer)),
            None => self.oldest = newer,
        }
        match newer {
            Some(n) => self.set_links(n, Some(older), None),
            None => self.newest = older,
        }
        self.set_links(k, Some(None), Some(None));
    }

    /// Links an unlinked entry in order, walking back from the newest end.
    fn link(&mut self, k: u128) {
        let key = self.order_key(k);
        let mut after = self.newest;
        while let Some(a) = after {
            if self.order_key(a) <= key {
                break;
            }
            after = self.older(a);
        }
        self.link_after(k, after);
    }

    /// Links an unlinked entry at the newest end.
    fn append(&mut self, k: u128) {
        self.link_after(k, self.newest);
    }

    fn link_after(&mut self, k: u128, after: Option<u128>) {
        let before = match after {
            Some(a) => self.newer(a),
            None => self.oldest,
        };
        self.set_links(k, Some(after), Some(before));
        match after {
            Some(a) => self.set_links(a, None, Some(Some(k))),
            None => self.oldest = Some(k),
        }
        match before {
            Some(b) => self.set_links(b, Some(Some(k)), None),
            None => self.newest = Some(k),
        }
    }

    /// Puts the whole list in order (after a restore).
    fn sort(&mut self) {
        let mut all: Vec<(Option<DateTime<Utc>>, u128)> = self.map.keys().map(|k| self.order_key(*k)).collect();
        all.sort_unstable();
        (self.oldest, self.newest) = (None, None);
        for (_, k) in all {
            self.set_links(k, Some(None), Some(None));
            self.append(k);
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
    fn a_map_sized_for_its_bound_never_grows_inside_an_input() {
        let max = 5_000;
        let mut c = Customers::with_capacity(max);
        let room = c.map.capacity();
        assert!(room > max, "room for the bound and the one over it: {room}");
        for n in 0..3 * max as i64 {
            c.remember(customer_key(&format!("k{n}")), served(n, Some("a1")), 2, max);
            // Removals leave tombstones, which lower the capacity until an
            // in-place rehash; a growth would double it.
            assert!(c.map.capacity() <= room, "grew at {n}: {} > {room}", c.map.capacity());
        }
        assert_eq!(c.len(), max);
        let mut touched = Customers::with_capacity(max);
        touched.prefault();
        assert_eq!(
            (touched.len(), touched.map.capacity()),
            (0, room),
            "written through, emptied, not grown"
        );
        let big = Customers::with_capacity(10_000_000);
        assert!(big.map.capacity() < 2 * PRESIZED, "sized up front only up to PRESIZED");
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
        assert!(c.take_dirty().contains(&customer_key("ana@example.com")));
    }

    /// Keys of the customers kept, oldest first, by forgetting them one by one.
    fn forgetting_order(mut c: Customers) -> Vec<u128> {
        let mut out = Vec::new();
        while c.len() > 0 {
            let before: Vec<u128> = c.iter().map(|(k, _)| *k).collect();
            c.trim(c.len() - 1);
            if c.len() == before.len() {
                // `trim` keeps at least one: the newest.
                out.extend(before);
                break;
            }
            out.extend(before.into_iter().filter(|k| c.get(*k).is_none()));
        }
        out
    }

    #[test]
    fn the_customer_whose_last_contact_closed_first_is_forgotten_first_even_after_a_clock_step_back_or_a_restore() {
        let k = |n: u32| u128::from(n) << 100 | 7;
        let mut c = Customers::default();
        // Closes at 10, 30, 20 (the clock stepped back), then 5 again for
        // the customer at 10 (which moves it, but only to its own time).
        c.remember(k(1), served(10, Some("a1")), 3, 10);
        c.remember(k(2), served(30, Some("a1")), 3, 10);
        c.remember(k(3), served(20, Some("a1")), 3, 10);
        c.remember(k(4), served(30, Some("a1")), 3, 10);
        c.remember(k(1), served(25, Some("a1")), 3, 10);
        // By last close: 3 (20), 1 (25), 2 (30), 4 (30; the key breaks the tie).
        assert_eq!(forgetting_order(c), [k(3), k(1), k(2), k(4)]);

        let mut r = Customers::default();
        for (n, at) in [(1, 40), (2, 10), (3, 30), (4, 20)] {
            r.restore(
                k(n),
                History {
                    contacts: vec![served(at, None)],
                },
                3,
            );
        }
        r.trim(3);
        assert!(r.get(k(2)).is_none(), "the oldest restored record is the one forgotten");
        assert_eq!(r.take_dirty(), [k(2)]);
        assert_eq!(forgetting_order(r), [k(4), k(3), k(1)]);
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
