//! The index of agents who can take an offer now: `available`, with a free
//! slot on a channel, ordered by each strategy's key.
//!
//! Layout: for every channel, one tier holding every such agent, and for
//! every (channel, skill, level) one tier holding the agents with exactly
//! that level. A tier keeps one order per strategy in use (longest idle:
//! `idle_since`; least loaded: share of capacity in use, then `idle_since`;
//! round robin: the number of the agent's last offer); ties break on a hash
//! of the agent id, so the order is a function of the persisted records
//! alone. The idle and round-robin orders are linked lists (their keys only
//! grow: an agent moves to the tail, a few nodes touched); the least-loaded
//! order is a list per share bucket plus a small tree for the agents whose
//! idle time went back in that order (a slot freed with others still busy),
//! see `orders`.
//!
//! Invariants:
//! - an agent is in a channel's tiers iff it is `available` and
//!   [`Agent::free`](super::Agent::free) holds for that channel, under the key
//!   it has now, whenever the index is walked and between inputs (the
//!   engine marks an agent changed in its presence, load, skills, capacity
//!   or idle time, and files it again under its new key before the next
//!   walk, or once the input is settled: a slot freed and filled again in
//!   the same input, with nobody else free for the contact, never touches
//!   the index, see `Engine::pick`);
//! - the count kept beside each (channel, skill)'s tiers equals each tier's
//!   length, so a pick sizes pools and skips empty tiers from one cache
//!   line;
//! - a contact needing skills {(s, L), ...} is served by walking only the
//!   tiers (channel, s', L..=10) of its rarest skill s' (the fewest agents
//!   free in them), merged in strategy order; the other skills are checked
//!   per agent. Work per pick is the agents walked until the choice, which
//!   is bounded by the decliners skipped plus the agents of that skill who
//!   lack another required skill.
//!
//! Strategies over the same tiers:
//! - `longest_idle` and `least_loaded` walk their own sets, merged across
//!   the level tiers of the rarest skill;
//! - `round_robin` is one more ordered set per tier, keyed by the sequence
//!   number of the agent's last offer (kept only while a queue uses it);
//! - `most_skilled` walks the level tiers of the contact's primary skill
//!   from 10 down, each in idle order (no merge needed: the tiers *are* the
//!   order). Work per pick is then bounded by the primary skill's holders
//!   skipped for lacking another required skill, which the rarest-skill walk
//!   would not have visited: the price of ranking by that skill.
//!
//! How the rest of the routing model uses the index:
//! - weighted capacity units change only `Agent::free` (units left ≥ the
//!   channel's weight, interruptible work not counted against other
//!   channels); an agent's entry records `free` per channel, so the tiers
//!   follow it;
//! - relaxation re-files a waiting contact under its relaxed requirement
//!   (see `waiting` and the wait index); affinity checks the preferred
//!   agent's entry directly after the walk (one lookup);
//! - `ring_group` walks the idle order and takes the first N who fit (a
//!   second walk after the first pick, only for ring-group queues): work
//!   is N plus the agents skipped.

use super::orders::{Arena, List, LoadOrder, NIL};
use super::spec::Strategy;
use crate::domain::Channel;
use chrono::{DateTime, Utc};
use std::cmp::Ordering;

/// An interned skill name.
pub(crate) type SkillIx = u32;

/// Skill levels run 1..=10; level `l` is stored at `l - 1`.
pub(crate) const LEVELS: usize = 10;

/// Interned (skill, level) pairs, sorted by skill.
pub(crate) type Skills = Vec<(SkillIx, u8)>;

/// Does an agent with `have` meet every requirement in `need`? Both sorted.
pub(crate) fn fits(have: &[(SkillIx, u8)], need: &[(SkillIx, u8)]) -> bool {
    let mut it = have.iter();
    'need: for (s, l) in need {
        for (hs, hl) in it.by_ref() {
            match hs.cmp(s) {
                Ordering::Less => continue,
                Ordering::Equal if hl >= l => continue 'need,
                _ => return false,
            }
        }
        return false;
    }
    true
}

/// Share of capacity in use as a fixed-point number that orders exactly:
/// capacities are at most 4 000 per agent and unit budgets 1 000 000, so two
/// different shares differ by at least 1 / 10^12, more than the 2^-42 step,
/// and equal shares (1/2, 2/4) get the same value. One integer comparison,
/// where cross-multiplying cost two multiplications on every step of a
/// tree search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Share(u64);

impl Share {
    pub fn new(load: u64, cap: u64) -> Share {
        let q = ((load as u128) << 42) / cap.max(1) as u128;
        Share(u64::try_from(q).unwrap_or(u64::MAX))
    }
}

/// Keys are small on purpose (16 and 24 bytes): the trees they live in are
/// walked and updated on every offer, and at 100 000 agents a node that
/// fits in fewer cache lines is most of the cost.
///
/// `since` is `idle_since` in nanoseconds; `tie` is the high half of the
/// agent id's hash over the agent's slot, so ties order by the id hash and
/// the slot is recovered from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct IdleKey {
    pub since: i64,
    pub tie: u64,
}

/// `round_robin`: the sequence number of the agent's last offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RrKey {
    pub seq: u64,
    pub tie: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LoadKey {
    pub share: Share,
    pub since: i64,
    pub tie: u64,
}

/// The `tie` of an agent's keys.
pub(crate) fn tie(id_hash: u64, ix: u32) -> u64 {
    (id_hash & 0xffff_ffff_0000_0000) | ix as u64
}

/// An instant as a key: nanoseconds since 1970 (saturating beyond ±292 years).
pub(crate) fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt()
        .unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

trait Keyed: Ord + Copy {
    fn ix(&self) -> u32;
}
impl Keyed for IdleKey {
    fn ix(&self) -> u32 {
        self.tie as u32
    }
}
impl Keyed for LoadKey {
    fn ix(&self) -> u32 {
        self.tie as u32
    }
}
impl Keyed for RrKey {
    fn ix(&self) -> u32 {
        self.tie as u32
    }
}

/// What an agent's entry holds, kept by the engine so the same entries can
/// be removed later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    pub free: [bool; 4],
    pub idle: IdleKey,
    pub load: LoadKey,
    pub rr: RrKey,
}

/// The sets kept per tier, besides the idle order every tier has.
#[derive(Debug, Clone, Copy, Default)]
struct Keep {
    load: bool,
    rr: bool,
}

#[derive(Debug, Default)]
struct Tier {
    idle: List,
    load: LoadOrder,
    rr: List,
    /// Filled by a bulk load, not yet in order.
    unsorted: bool,
}

/// What a tier change needs besides the tier: the arena, the agent's node
/// in it, and how the index is being filled.
struct At<'a> {
    arena: &'a mut Arena,
    node: u32,
    keep: Keep,
    bulk: bool,
}

impl Tier {
    /// Every list and set of a tier holds the same agents; the idle order is
    /// always kept.
    fn len(&self) -> usize {
        self.idle.len
    }

    fn put(&mut self, e: &Entry, at: &mut At) {
        self.idle.link(&mut at.arena.idle, at.node, e.idle, !at.bulk);
        if at.keep.load {
            self.load.put(&mut at.arena.load, at.node, &e.load);
        }
        if at.keep.rr {
            self.rr.link(&mut at.arena.rr, at.node, e.rr, !at.bulk);
        }
        self.unsorted |= at.bulk;
    }

    fn take(&mut self, e: &Entry, at: &mut At) {
        self.idle.unlink(&mut at.arena.idle, at.node);
        if at.keep.load {
            self.load.take(&mut at.arena.load, at.node, &e.load);
        }
        if at.keep.rr {
            self.rr.unlink(&mut at.arena.rr, at.node);
        }
    }

    /// Moves an agent from its old keys to its new ones, touching only the
    /// orders whose key changed (a released slot changes the load key alone).
    fn shift(&mut self, old: &Entry, new: &Entry, at: &mut At) {
        if old.idle != new.idle {
            self.idle.unlink(&mut at.arena.idle, at.node);
            self.idle.link(&mut at.arena.idle, at.node, new.idle, !at.bulk);
        }
        if at.keep.load && old.load != new.load {
            self.load.take(&mut at.arena.load, at.node, &old.load);
            self.load.put(&mut at.arena.load, at.node, &new.load);
        }
        if at.keep.rr && old.rr != new.rr {
            self.rr.unlink(&mut at.arena.rr, at.node);
            self.rr.link(&mut at.arena.rr, at.node, new.rr, !at.bulk);
        }
        self.unsorted |= at.bulk;
    }

    /// An agent's entry changes from `old` to `new` (either absent) for
    /// this tier's channel.
    fn change(&mut self, old: Option<&Entry>, new: Option<&Entry>, at: &mut At) {
        match (old, new) {
            (Some(o), Some(n)) => self.shift(o, n, at),
            (Some(o), None) => self.take(o, at),
            (None, Some(n)) => self.put(n, at),
            (None, None) => {}
        }
    }
}

/// The number of agents in each level tier of one (channel, skill), on one
/// cache line: a walk sizes a requirement's pool and finds the non-empty
/// tiers from this line alone. Reading each tier's own length touched up to
/// ten lines of cold memory on every pick, and on every new contact into a
/// backlog (where every pool is empty).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Counts([u32; LEVELS]);

impl Counts {
    /// Agents in the tiers of `level` and above.
    fn at_least(&self, level: u8) -> usize {
        self.0[lvl(level)..].iter().map(|n| *n as usize).sum()
    }

    fn count(&mut self, level: u8, old: Option<&Entry>, new: Option<&Entry>) {
        let n = &mut self.0[lvl(level)];
        match (old, new) {
            (None, Some(_)) => *n += 1,
            (Some(_), None) => *n = n.saturating_sub(1),
            _ => {}
        }
    }
}

impl Tier {
    /// Puts the lists in key order after a bulk load.
    fn sort(&mut self, arena: &mut Arena, keep: Keep) {
        if std::mem::take(&mut self.unsorted) {
            self.idle.sort(&mut arena.idle);
            if keep.rr {
                self.rr.sort(&mut arena.rr);
            }
            if keep.load {
                self.load.sort(&mut arena.load);
            }
        }
    }
}

/// What a walk callback tells the walk.
pub(crate) enum Step {
    Next,
    Stop,
}

#[derive(Debug)]
pub(crate) struct AgentIndex {
    /// The least-loaded and round-robin sets are kept only when some queue
    /// uses them.
    keep: Keep,
    /// The per-channel tiers of every free agent are read only for contacts
    /// that need no skill. They are the largest trees, so they are kept only
    /// while such a contact can exist (a queue without skills), and built on
    /// the first one that appears otherwise (a contact restored from a queue
    /// since removed).
    keep_any: bool,
    any: [Tier; 4],
    /// Indexed by `skill * 4 + channel` (skills are interned densely), so
    /// the tiers of an agent are found without hashing on every offer.
    by_skill: Vec<Option<Box<[Tier; LEVELS]>>>,
    /// The lengths of `by_skill`'s tiers, by the same index.
    counts: Vec<Counts>,
    /// Agents (any presence) holding a skill, per exact level: how rare a
    /// requirement is, for choosing the wait index's filing skill.
    holders: Vec<[u32; LEVELS]>,
    /// The nodes of the idle, round-robin and least-loaded lists.
    arena: Arena,
    /// Inserts go to the tails, unsorted, until [`AgentIndex::end_bulk`].
    bulk: bool,
}

fn slot(ch: Channel, s: SkillIx) -> usize {
    s as usize * 4 + ch.index()
}

fn lvl(l: u8) -> usize {
    (l.clamp(1, LEVELS as u8) - 1) as usize
}

impl AgentIndex {
    /// An empty index for queues using `strategies`.
    pub fn new(strategies: impl Iterator<Item = Strategy>, keep_any: bool) -> AgentIndex {
        let mut keep = Keep::default();
        for s in strategies {
            keep.load |= s == Strategy::LeastLoaded;
            keep.rr |= s == Strategy::RoundRobin;
        }
        AgentIndex {
            keep,
            keep_any,
            any: Default::default(),
            by_skill: Vec::new(),
            counts: Vec::new(),
            holders: Vec::new(),
            arena: Arena::default(),
            bulk: false,
        }
    }

    #[cfg(test)]
    pub fn insert(&mut self, e: &Entry, skills: &[(SkillIx, u8)]) {
        self.update(None, Some(e), skills);
    }

    pub fn remove(&mut self, e: &Entry, skills: &[(SkillIx, u8)]) {
        self.update(Some(e), None, skills);
    }

    /// Replaces an agent's entry (`None`: not in the index) under the same
    /// skills; equivalent to `remove(old)` then `insert(new)`, but a key
    /// that did not change is left in place.
    pub fn update(&mut self, old: Option<&Entry>, new: Option<&Entry>, skills: &[(SkillIx, u8)]) {
        let Some(ax) = old.or(new).map(|e| e.idle.ix()) else {
            return;
        };
        let base = if old.is_none() {
            self.arena.block(ax, skills.len(), self.keep.rr, self.keep.load)
        } else {
            self.arena.base(ax)
        };
        let mut at = At {
            arena: &mut self.arena,
            node: base,
            keep: self.keep,
            bulk: self.bulk,
        };
        for ch in Channel::ALL {
            let (o, n) = (old.filter(|e| e.free[ch.index()]), new.filter(|e| e.free[ch.index()]));
            if o.is_none() && n.is_none() {
                continue;
            }
            if self.keep_any {
                at.node = Arena::node(base, ch.index(), None);
                self.any[ch.index()].change(o, n, &mut at);
            }
            for (i, (s, l)) in skills.iter().enumerate() {
                let k = slot(ch, *s);
                if self.by_skill.len() <= k {
                    self.by_skill.resize_with(k + 1, || None);
                    self.counts.resize(k + 1, Counts::default());
                }
                at.node = Arena::node(base, ch.index(), Some(i));
                self.by_skill[k].get_or_insert_with(Default::default)[lvl(*l)].change(o, n, &mut at);
                self.counts[k].count(*l, o, n);
            }
        }
    }

    /// From now until [`AgentIndex::end_bulk`], inserts go to the lists'
    /// tails unsorted: a restore inserts every agent in slot order, which a
    /// sorted insert would pay for with a walk through each list.
    pub fn begin_bulk(&mut self) {
        self.bulk = true;
    }

    /// Sorts what was inserted since [`AgentIndex::begin_bulk`].
    pub fn end_bulk(&mut self) {
        self.bulk = false;
        let (arena, keep) = (&mut self.arena, self.keep);
        for t in self.any.iter_mut() {
            t.sort(arena, keep);
        }
        for levels in self.by_skill.iter_mut().flatten() {
            for t in levels.iter_mut() {
                t.sort(arena, keep);
            }
        }
    }

    pub fn keeps_any(&self) -> bool {
        self.keep_any
    }

    /// Starts keeping the per-channel tiers, filled from every entry now in
    /// the index (once; from then on they follow every change).
    pub fn keep_any_from(&mut self, entries: impl Iterator<Item = Entry>) {
        if self.keep_any {
            return;
        }
        self.keep_any = true;
        let mut at = At {
            arena: &mut self.arena,
            node: NIL,
            keep: self.keep,
            bulk: true,
        };
        for e in entries {
            let base = at.arena.base(e.idle.ix());
            for ch in Channel::ALL.into_iter().filter(|c| e.free[c.index()]) {
                at.node = Arena::node(base, ch.index(), None);
                self.any[ch.index()].put(&e, &mut at);
            }
        }
        for t in self.any.iter_mut() {
            t.sort(&mut self.arena, self.keep);
        }
    }

    pub fn add_holder(&mut self, skills: &[(SkillIx, u8)]) {
        for (s, l) in skills {
            let at = *s as usize;
            if self.holders.len() <= at {
                self.holders.resize(at + 1, [0; LEVELS]);
            }
            self.holders[at][lvl(*l)] += 1;
        }
    }

    pub fn remove_holder(&mut self, skills: &[(SkillIx, u8)]) {
        for (s, l) in skills {
            if let Some(h) = self.holders.get_mut(*s as usize) {
                h[lvl(*l)] = h[lvl(*l)].saturating_sub(1);
            }
        }
    }

    /// Agents (any presence) holding `skill` at `level` or above.
    pub fn holders_at_least(&self, skill: SkillIx, level: u8) -> u32 {
        self.holders
            .get(skill as usize)
            .map_or(0, |h| h[lvl(level)..].iter().sum())
    }

    /// Agents in the index free on `ch` (kept only with the per-channel
    /// tiers, see `keep_any`).
    pub fn free_on(&self, ch: Channel) -> usize {
        self.any[ch.index()].len()
    }

    /// Agents in the index free on `ch` holding `skill` at `level` or above.
    pub fn free_holders(&self, ch: Channel, skill: SkillIx, level: u8) -> usize {
        self.counts.get(slot(ch, skill)).map_or(0, |c| c.at_least(level))
    }

    /// Walks the agents free on `ch` who hold the rarest skill of `need` at
    /// its level (the pool), in `strategy` order, until `f` says stop;
    /// `most_skilled` walks the holders of `primary` (one of `need`) instead,
    /// highest level first. Returns the pool's size and how many entries
    /// were walked. The callback checks the other requirements.
    pub fn walk(
        &self,
        ch: Channel,
        need: &[(SkillIx, u8)],
        strategy: Strategy,
        primary: Option<(SkillIx, u8)>,
        f: impl FnMut(u32) -> Step,
    ) -> (usize, usize) {
        // A set not kept (a queue restored under a strategy since removed
        // from every queue) falls back to the idle order.
        let strategy = match strategy {
            Strategy::LeastLoaded if !self.keep.load => Strategy::LongestIdle,
            Strategy::RoundRobin if !self.keep.rr => Strategy::LongestIdle,
            s => s,
        };
        // The (skill, level) whose tiers hold the fewest free agents, sized
        // from the counts alone; only the chosen tiers that hold anyone are
        // read.
        let mut drive: Option<(usize, usize, u8)> = None;
        let mut ranked: Option<(usize, usize, u8)> = None;
        for (s, l) in need {
            let k = slot(ch, *s);
            let n = self.counts.get(k).map_or(0, |c| c.at_least(*l));
            if n == 0 {
                return (0, 0); // nobody free on the channel holds it at the level
            }
            if drive.is_none_or(|(m, _, _)| n < m) {
                drive = Some((n, k, *l));
            }
            if primary == Some((*s, *l)) {
                ranked = Some((n, k, *l));
            }
        }
        // A (channel, skill)'s tiers from `l` up, with their counts.
        let tiers_of = |k: usize, l: u8| match (self.by_skill.get(k).and_then(Option::as_ref), self.counts.get(k)) {
            (Some(t), Some(c)) => (&t[lvl(l)..], &c.0[lvl(l)..]),
            _ => (&[][..], &[][..]),
        };
        let (idle, rr, load) = (&self.arena.idle, &self.arena.rr, &self.arena.load);
        let (pool, (tiers, counts)) = match (strategy, ranked, drive) {
            (Strategy::MostSkilled, Some((n, k, l)), _) => {
                let (tiers, counts) = tiers_of(k, l);
                let held = tiers.iter().zip(counts).rev().filter(|(_, n)| **n > 0);
                let walked = walk_each(held.flat_map(|(t, _)| t.idle.iter(idle).map(|(k, _)| k)), f);
                return (n, walked);
            }
            (_, _, Some((n, k, l))) => (n, tiers_of(k, l)),
            (_, _, None) => {
                let any = &self.any[ch.index()];
                (any.len(), (std::slice::from_ref(any), &[1][..]))
            }
        };
        // Only the tiers that hold anyone are read.
        let tiers = tiers.iter().zip(counts).filter(|(_, n)| **n > 0).map(|(t, _)| t);
        let walked = match strategy {
            Strategy::LongestIdle | Strategy::MostSkilled | Strategy::RingGroup => {
                merge(tiers.map(|t| t.idle.iter(idle).map(|(k, _)| k)), f)
            }
            Strategy::LeastLoaded => merge(tiers.map(|t| t.load.iter(load)), f),
            Strategy::RoundRobin => merge(tiers.map(|t| t.rr.iter(rr).map(|(k, _)| k)), f),
        };
        (pool, walked)
    }
}

/// Visits keys in the order given.
fn walk_each<K: Keyed>(keys: impl Iterator<Item = K>, mut f: impl FnMut(u32) -> Step) -> usize {
    let mut walked = 0;
    for k in keys {
        walked += 1;
        if let Step::Stop = f(k.ix()) {
            break;
        }
    }
    walked
}

/// Visits the union of ordered sequences in key order (a k-way merge over
/// at most [`LEVELS`] of them).
fn merge<K: Keyed, I: Iterator<Item = K>>(seqs: impl Iterator<Item = I>, mut f: impl FnMut(u32) -> Step) -> usize {
    // On the stack: this runs for every pick.
    let mut iters: [Option<I>; LEVELS] = Default::default();
    let mut heads: [Option<K>; LEVELS] = [None; LEVELS];
    let mut n = 0;
    for mut it in seqs {
        if let Some(h) = it.next() {
            if n == LEVELS {
                break;
            }
            heads[n] = Some(h);
            iters[n] = Some(it);
            n += 1;
        }
    }
    let mut walked = 0;
    loop {
        let mut best: Option<(usize, K)> = None;
        for (i, h) in heads[..n].iter().enumerate() {
            if let Some(k) = h {
                if best.is_none_or(|(_, b)| *k < b) {
                    best = Some((i, *k));
                }
            }
        }
        let Some((i, k)) = best else { return walked };
        heads[i] = iters[i].as_mut().and_then(Iterator::next);
        walked += 1;
        if let Step::Stop = f(k.ix()) {
            return walked;
        }
    }
}

#[cfg(test)]
mod tests;
