//! The ordered lists behind the free-agent index (`agents`): idle and
//! round-robin orders as doubly linked lists over an arena of nodes, and
//! the least-loaded order as share buckets. Keys come from `agents`; this
//! module only keeps them in order.
//!
//! Invariants:
//! - a list is in key order (after a bulk load, once [`List::sort`] ran);
//! - a node is linked in at most one list; its block (one per agent, see
//!   [`Arena`]) moves only while none of its nodes is linked;
//! - a bucket's list is in key order and its tree holds the keys that
//!   arrived behind the list's tail; the two never share a key.

use super::agents::{IdleKey, LoadKey, RrKey, Share};
use std::collections::BTreeMap;

/// No node: the end of a list.
pub(super) const NIL: u32 = u32::MAX;

/// One agent's place in one ordered list. Nodes live in an arena (one
/// block per agent, [`Arena`]); `key` is the agent's key, copied so that a
/// walk reads one node per step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node<K> {
    prev: u32,
    next: u32,
    key: K,
}

/// An ordered doubly linked list over arena nodes, for the keys that only
/// grow in normal operation: `idle_since` is set to the current time (an
/// offer, a presence change, the last slot freed) and the round-robin key
/// to the next offer number. Inserting walks back from the tail past the
/// entries with a larger key, which is none unless the clock stepped back
/// or several agents changed at the same instant (then the ones changed
/// together), so an insert or a removal touches a handful of nodes where a
/// tree would search through its levels.
#[derive(Debug)]
pub(super) struct List {
    head: u32,
    tail: u32,
    pub(super) len: usize,
}

impl Default for List {
    fn default() -> List {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    /// Links node `at` in key order (after the entries with an equal or
    /// smaller key), or at the tail when `sorted` is off (a bulk load,
    /// sorted by [`List::sort`] afterwards).
    pub(super) fn link<K: Ord + Copy>(&mut self, nodes: &mut [Node<K>], at: u32, key: K, sorted: bool) {
        let mut after = self.tail;
        while sorted && after != NIL && nodes[after as usize].key > key {
            after = nodes[after as usize].prev;
        }
        let next = match after {
            NIL => self.head,
            a => nodes[a as usize].next,
        };
        nodes[at as usize] = Node { prev: after, next, key };
        match after {
            NIL => self.head = at,
            a => nodes[a as usize].next = at,
        }
        match next {
            NIL => self.tail = at,
            n => nodes[n as usize].prev = at,
        }
        self.len += 1;
    }

    pub(super) fn unlink<K: Copy>(&mut self, nodes: &mut [Node<K>], at: u32) {
        let Node { prev, next, .. } = nodes[at as usize];
        match prev {
            NIL => self.head = next,
            p => nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => nodes[n as usize].prev = prev,
        }
        self.len -= 1;
    }

    /// Puts the list in key order again after a bulk load.
    pub(super) fn sort<K: Ord + Copy>(&mut self, nodes: &mut [Node<K>]) {
        let mut all: Vec<(K, u32)> = self.iter(nodes).collect();
        all.sort_unstable();
        *self = List::default();
        for (k, at) in all {
            self.link(nodes, at, k, false);
        }
    }

    pub(super) fn iter<'a, K: Copy>(&self, nodes: &'a [Node<K>]) -> ListIter<'a, K> {
        ListIter { nodes, at: self.head }
    }
}

pub(super) struct ListIter<'a, K> {
    nodes: &'a [Node<K>],
    at: u32,
}

impl<K: Copy> Iterator for ListIter<'_, K> {
    type Item = (K, u32);
    fn next(&mut self) -> Option<(K, u32)> {
        let n = self.nodes.get(self.at as usize)?;
        let at = self.at;
        self.at = n.next;
        Some((n.key, at))
    }
}

/// The nodes of every list, one block per agent: `4 * (1 + skills)` nodes,
/// node `ch` for the channel's tier of every free agent and `4 + 4 * i + ch`
/// for the tier of the agent's `i`-th skill. A block moves only while none
/// of its nodes is linked (the agent is out of the index).
#[derive(Debug, Default)]
pub(super) struct Arena {
    pub(super) idle: Vec<Node<IdleKey>>,
    /// Kept in step with `idle` when round robin is.
    pub(super) rr: Vec<Node<RrKey>>,
    /// Kept in step with `idle` when least loaded is: the list part of a
    /// share bucket ([`Bucket`]), keyed by `idle_since` and tie.
    pub(super) load: Vec<Node<IdleKey>>,
    /// Per agent slot: (first node, nodes).
    blocks: Vec<(u32, u32)>,
    /// Blocks given up by agents whose skills grew, by size / 4.
    spare: Vec<Vec<u32>>,
}

/// A node not in any list (its links are written when it is linked).
fn unlinked<K>(key: K) -> Node<K> {
    Node {
        prev: NIL,
        next: NIL,
        key,
    }
}

impl Arena {
    /// The first node of an agent's block, sized for `skills` skills.
    /// `rr` and `load`: whether those orders are kept (their nodes too).
    pub(super) fn block(&mut self, ax: u32, skills: usize, rr: bool, load: bool) -> u32 {
        let want = 4 * (1 + skills as u32);
        let ax = ax as usize;
        if self.blocks.len() <= ax {
            self.blocks.resize(ax + 1, (NIL, 0));
        }
        let (base, size) = self.blocks[ax];
        if base != NIL && size >= want {
            return base;
        }
        if base != NIL {
            let class = (size / 4) as usize;
            if self.spare.len() <= class {
                self.spare.resize_with(class + 1, Vec::new);
            }
            self.spare[class].push(base);
        }
        let class = (want / 4) as usize;
        let base = match self.spare.get_mut(class).and_then(Vec::pop) {
            Some(b) => b,
            None => {
                let b = self.idle.len() as u32;
                self.idle
                    .resize(self.idle.len() + want as usize, unlinked(IdleKey { since: 0, tie: 0 }));
                if rr {
                    self.rr.resize(self.idle.len(), unlinked(RrKey { seq: 0, tie: 0 }));
                }
                if load {
                    self.load
                        .resize(self.idle.len(), unlinked(IdleKey { since: 0, tie: 0 }));
                }
                b
            }
        };
        self.blocks[ax] = (base, want);
        base
    }

    /// An agent's node for one tier: its channel's tier of every free agent
    /// (`skill` none) or the tier of its `skill`-th skill on that channel.
    pub(super) fn node(base: u32, channel: usize, skill: Option<usize>) -> u32 {
        base + channel as u32 + skill.map_or(0, |i| 4 + 4 * i as u32)
    }

    pub(super) fn base(&self, ax: u32) -> u32 {
        self.blocks.get(ax as usize).map_or(NIL, |b| b.0)
    }
}

/// The agents of a tier at one share of capacity in use, in `idle_since`
/// order: a list for the keys that arrive in order (an offer: idle from now;
/// the last slot freed: idle from now), and a small tree beside it for the
/// ones that do not (a slot freed with others still busy keeps the idle
/// time of the last offer). A walk merges the two. An offer moves an agent
/// to the tail of the next share's list; only a partial release pays for a
/// tree insert, and the tree holds only such agents.
#[derive(Debug, Default)]
struct Bucket {
    list: List,
    /// Key to the agent's node, so [`Bucket::sort`] can link it.
    side: BTreeMap<IdleKey, u32>,
}

impl Bucket {
    fn put(&mut self, nodes: &mut [Node<IdleKey>], at: u32, k: IdleKey) {
        let in_order = match self.list.tail {
            NIL => true,
            t => nodes[t as usize].key <= k,
        };
        if in_order {
            self.list.link(nodes, at, k, false);
        } else {
            self.side.insert(k, at);
        }
    }

    fn take(&mut self, nodes: &mut [Node<IdleKey>], at: u32, k: IdleKey) {
        if self.side.remove(&k).is_none() {
            self.list.unlink(nodes, at);
        }
    }

    fn is_empty(&self) -> bool {
        self.list.len == 0 && self.side.is_empty()
    }

    /// Moves the tree's agents into the list, after a bulk load (which
    /// arrives in slot order, so about half went to the tree).
    fn sort(&mut self, nodes: &mut [Node<IdleKey>]) {
        if self.side.is_empty() {
            return;
        }
        let mut all: Vec<(IdleKey, u32)> = self.list.iter(nodes).collect();
        all.extend(std::mem::take(&mut self.side));
        all.sort_unstable();
        self.list = List::default();
        for (k, at) in all {
            self.list.link(nodes, at, k, false);
        }
    }
}

/// A bucket's agents in key order.
struct BucketIter<'a> {
    share: Share,
    list: std::iter::Peekable<ListIter<'a, IdleKey>>,
    side: std::iter::Peekable<std::collections::btree_map::Keys<'a, IdleKey, u32>>,
}

impl Iterator for BucketIter<'_> {
    type Item = LoadKey;
    fn next(&mut self) -> Option<LoadKey> {
        let k = match (self.list.peek(), self.side.peek()) {
            (Some((l, _)), Some(s)) if *s < l => self.side.next().copied(),
            (Some(_), _) => self.list.next().map(|(k, _)| k),
            (None, _) => self.side.next().copied(),
        }?;
        Some(LoadKey {
            share: self.share,
            since: k.since,
            tie: k.tie,
        })
    }
}

/// The least-loaded order of a tier: share buckets, lowest first.
#[derive(Debug, Default)]
pub(super) struct LoadOrder {
    buckets: BTreeMap<Share, Bucket>,
}

impl LoadOrder {
    pub(super) fn put(&mut self, nodes: &mut [Node<IdleKey>], at: u32, k: &LoadKey) {
        let idle = IdleKey {
            since: k.since,
            tie: k.tie,
        };
        self.buckets.entry(k.share).or_default().put(nodes, at, idle);
    }

    pub(super) fn take(&mut self, nodes: &mut [Node<IdleKey>], at: u32, k: &LoadKey) {
        let idle = IdleKey {
            since: k.since,
            tie: k.tie,
        };
        if let Some(b) = self.buckets.get_mut(&k.share) {
            b.take(nodes, at, idle);
            if b.is_empty() {
                self.buckets.remove(&k.share);
            }
        }
    }

    pub(super) fn sort(&mut self, nodes: &mut [Node<IdleKey>]) {
        for b in self.buckets.values_mut() {
            b.sort(nodes);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.values().map(|b| b.list.len + b.side.len()).sum()
    }

    pub(super) fn iter<'a>(&'a self, nodes: &'a [Node<IdleKey>]) -> impl Iterator<Item = LoadKey> + 'a {
        self.buckets.iter().flat_map(move |(share, b)| BucketIter {
            share: *share,
            list: b.list.iter(nodes).peekable(),
            side: b.side.keys().peekable(),
        })
    }
}
