//! Processed event ids, for duplicate detection beyond JetStream's window.
//!
//! Ids are kept as 64-bit SipHash-2-4 digests under a per-deployment random
//! key (stored with the state), grouped in time buckets so expiry drops a
//! whole bucket at once. Memory is about 10 bytes per id whatever the id's
//! length, and capped: past `max_ids` the oldest bucket is dropped early
//! (counted, so an operator sees the window shrink). A hostile id cannot be
//! made to collide with another without the key; by chance, two of a
//! million ids collide with probability about 3 × 10⁻⁸.
//!
//! Invariants: every id inserted at time `t` is found until at least
//! `t + retention` unless evicted by the cap; buckets never overlap.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The digests are uniformly random already: hash them as themselves.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type DigestSet = HashSet<u64, BuildHasherDefault<Identity>>;

/// How many buckets a retention period is cut into: an id is remembered for
/// between `retention` and `retention × 17/16`.
const BUCKETS: i64 = 16;

pub struct IdSet {
    key: (u64, u64),
    /// Bucket start (ms since the epoch) → digests inserted in it.
    buckets: BTreeMap<i64, DigestSet>,
    width_ms: i64,
    retention_ms: i64,
    max_ids: usize,
    len: usize,
    /// Ids dropped by the cap before their retention ran out.
    pub evicted: u64,
}

impl IdSet {
    pub fn new(key: (u64, u64), retention_ms: i64, max_ids: usize) -> IdSet {
        let retention_ms = retention_ms.max(1);
        IdSet {
            key,
            buckets: BTreeMap::new(),
            width_ms: (retention_ms / BUCKETS).max(1000),
            retention_ms,
            max_ids: max_ids.max(1),
            len: 0,
            evicted: 0,
        }
    }

    pub fn key(&self) -> (u64, u64) {
        self.key
    }

    /// The digest of an event id of a source (`b'i'` inbound, `b'a'` agent).
    #[allow(deprecated)] // SipHasher is SipHash-2-4: stable output, keyed; exactly what is needed.
    pub fn digest(&self, source: u8, id: &str) -> u64 {
        let mut h = std::hash::SipHasher::new_with_keys(self.key.0, self.key.1);
        h.write_u8(source);
        h.write(id.as_bytes());
        h.finish()
    }

    pub fn contains(&self, digest: u64) -> bool {
        self.buckets.values().any(|b| b.contains(&digest))
    }

    pub fn insert(&mut self, digest: u64, at_ms: i64) {
        if self.contains(digest) {
            return;
        }
        while self.len >= self.max_ids {
            let Some((_, b)) = self.buckets.pop_first() else { break };
            self.len -= b.len();
            self.evicted += b.len() as u64;
        }
        let start = at_ms.div_euclid(self.width_ms) * self.width_ms;
        self.buckets.entry(start).or_default().insert(digest);
        self.len += 1;
    }

    /// Drops buckets entirely older than the retention period.
    pub fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - self.retention_ms;
        while let Some((start, _)) = self.buckets.first_key_value() {
            if start + self.width_ms > horizon {
                break;
            }
            if let Some((_, b)) = self.buckets.pop_first() {
                self.len -= b.len();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Buckets as (start ms, digests), oldest first, for snapshots.
    pub fn buckets(&self) -> impl Iterator<Item = (i64, &DigestSet)> {
        self.buckets.iter().map(|(s, b)| (*s, b))
    }

    /// Restores a bucket from a snapshot (cap applies as for inserts).
    pub fn insert_at_bucket(&mut self, start_ms: i64, digests: impl IntoIterator<Item = u64>) {
        for d in digests {
            self.insert(d, start_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_found_for_its_retention_then_dropped() {
        let mut s = IdSet::new((1, 2), 16_000, 100);
        let d = s.digest(b'i', "ev-1");
        s.insert(d, 1_000_000);
        assert!(s.contains(d));
        s.expire(1_000_000 + 16_000);
        assert!(s.contains(d), "kept for the whole retention");
        s.expire(1_000_000 + 16_000 + 2_000);
        assert!(!s.contains(d), "gone one bucket later");
        assert!(s.is_empty());
    }

    #[test]
    fn the_cap_drops_the_oldest_bucket_first() {
        let mut s = IdSet::new((1, 2), 160_000, 3);
        let ids: Vec<u64> = (0..4).map(|i| s.digest(b'i', &format!("e{i}"))).collect();
        s.insert(ids[0], 0);
        s.insert(ids[1], 20_000);
        s.insert(ids[2], 20_000);
        s.insert(ids[3], 40_000);
        assert!(!s.contains(ids[0]));
        assert!(ids[1..].iter().all(|d| s.contains(*d)));
        assert_eq!((s.len(), s.evicted), (3, 1));
    }

    #[test]
    fn digests_depend_on_key_source_and_id() {
        let a = IdSet::new((1, 2), 1000, 10);
        let b = IdSet::new((3, 4), 1000, 10);
        assert_ne!(a.digest(b'i', "x"), b.digest(b'i', "x"));
        assert_ne!(a.digest(b'i', "x"), a.digest(b'a', "x"));
        assert_eq!(a.digest(b'i', "x"), a.digest(b'i', "x"));
    }
}
