//! The index of waiting contacts, for the question an agent with a newly
//! free slot asks: which waiting contact that I can take comes first?
//!
//! Waiting contacts are filed by requirement class: (channel, the exact set
//! of required skills with levels). Every contact of a class needs the same
//! agents, so within a class the first in priority-then-age order is the
//! only one an agent needs to see. Each non-empty class puts its head into
//! one ordered head set, chosen by its filing skill: the required skill
//! fewest agents hold at the level (decided when the class is created), at
//! the required level; classes without skills file under the channel alone.
//!
//! An agent with a free slot on a channel looks at the head sets of its own
//! skills at levels up to its own (and the channel's skill-less set), in
//! order, and stops at the first head it fully fits or at the first head no
//! better than a choice already in hand. Work per free slot is therefore
//! bounded by the agent's skills × levels plus the heads it does not fit
//! (classes that need another skill it lacks), never by the backlog.
//!
//! Ageing without re-filing: a class may carry its queue's [`Ageing`]. Its
//! contacts are then filed under their *base* priority, one ordered set per
//! base priority, by (received_at, tie): contacts of one base priority age
//! by the same function of the same clock, so their order never changes
//! while they wait. The class's first contact at any instant is the best of
//! those sets' first contacts under their effective priority at that
//! instant (at most eleven to compare), and the class is re-keyed in its
//! head set only when one of them changes step (`due`, per class). A step
//! of ageing therefore costs one re-key per class, not one re-file per
//! contact. Classes without ageing (and contacts whose place is not their
//! arrival, under a queue ordered by slack) keep static keys, which the
//! engine re-files itself when they change.
//!
//! Invariants:
//! - between inputs, a contact is filed iff it is waiting (during one,
//!   a contact that became waiting in it may wait in the engine's
//!   `unfiled` list instead; settling reads both); its stored key is (priority
//!   descending, received_at or slack, a hash of its id, slot), so ties
//!   order the same way after a restart; its effective key (what the head
//!   sets and [`WaitIndex::first_for`] order by) is the stored key with the
//!   priority aged to the index's `now`;
//! - each non-empty class has exactly one entry in exactly one head set,
//!   keyed by its first contact's effective key as of `now`, and a `due`
//!   entry iff that can change; empty classes are dropped, and so are the
//!   head sets of a (channel, skill) once none is used, so both are bounded
//!   by the waiting contacts;
//! - `now` only moves forward ([`WaitIndex::advance`], before every input),
//!   and every class due by then is re-keyed before anything reads it.
//!
//! Relaxation re-files a contact under a new requirement class when its
//! step is due (the engine's per-contact timer); queue membership ("also
//! offer to agents of queue general") adds the queue to the class.

use super::agents::{fits, nanos, SkillIx, LEVELS};
use super::spec::Ageing;
use super::FastMap as HashMap;
use crate::domain::Channel;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::Arc;

pub(crate) type ClassIx = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WaitKey {
    pub prio: Reverse<u8>,
    /// Nanoseconds since the epoch (as the agent index keeps idle times):
    /// integer keys compare in one step, and a band's ageing is worked out
    /// without calendar arithmetic. Times outside 1677–2262 clamp to the
    /// ends of that range (such contacts then order among themselves by
    /// `tie`).
    pub since: i64,
    pub tie: u64,
    pub ix: u32,
}

type Need = Arc<[(SkillIx, u8)]>;
type Heads = BTreeSet<(WaitKey, ClassIx)>;

/// The head sets of one (channel, filing skill), one per required level,
/// with each set's first key kept beside them: an agent's walk compares a
/// level's first key with the choice in hand from these few cache lines
/// and descends into the set only when it could win (most do not, once a
/// choice is made), where reading each set's first key meant a walk down
/// its tree.
#[derive(Debug, Default)]
struct HeadSets {
    first: [Option<WaitKey>; LEVELS],
    sets: [Heads; LEVELS],
}

impl HeadSets {
    fn is_empty(&self) -> bool {
        self.first.iter().all(Option::is_none)
    }
}

/// A class as it was when a contact was filed in it: its slot and that
/// slot's generation, so a hint kept elsewhere (the relaxation cache)
/// never names a later class in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassHint {
    cix: ClassIx,
    gen: u64,
}

/// The classes of one requirement, by ageing.
type ClassesOf = Vec<(Option<Ageing>, ClassIx)>;

#[derive(Debug)]
struct Class {
    /// Which class this is among those that held its slot (see
    /// [`ClassHint`]).
    gen: u64,
    channel: Channel,
    need: Need,
    /// How its contacts' priority rises with their wait; `None`: their
    /// stored keys are their effective keys.
    ageing: Option<Ageing>,
    /// The head set this class files under: (skill, level) or none.
    filed: Option<(SkillIx, u8)>,
    /// Waiting contacts by stored priority (one band for all of them when
    /// the class does not age: static keys keep their order), each set in
    /// stored-key order; no empty band is kept.
    by_prio: Vec<Band>,
    /// Its entry in its head set (the first contact's effective key).
    head: Option<WaitKey>,
    /// When `head` must be worked out again (a first contact's step), in
    /// nanoseconds since the epoch.
    due: Option<i64>,
}

/// The contacts of one stored priority in a class, with the first one's
/// key kept beside the set: working out the class's head reads the bands'
/// first keys from one small vector, not from each tree.
#[derive(Debug)]
struct Band {
    prio: u8,
    first: WaitKey,
    set: BTreeSet<WaitKey>,
}

impl Class {
    /// The band a stored key belongs to.
    fn band_of(&self, k: WaitKey) -> u8 {
        if self.ageing.is_some() {
            k.prio.0
        } else {
            0
        }
    }

    fn effective(&self, k: WaitKey, now: i64) -> (WaitKey, Option<i64>) {
        aged(self.ageing, k, now)
    }

    /// The first contact's effective key at `now`, and when it can next
    /// change.
    fn head_at(&self, now: i64) -> (Option<WaitKey>, Option<i64>) {
        let (mut head, mut due) = (None::<WaitKey>, None::<i64>);
        for band in &self.by_prio {
            let (k, next) = self.effective(band.first, now);
            head = Some(head.map_or(k, |h| h.min(k)));
            if let Some(n) = next {
                due = Some(due.map_or(n, |d| d.min(n)));
            }
        }
        (head, due)
    }
}

#[derive(Debug, Default)]
pub(crate) struct WaitIndex {
    classes: Vec<Option<Class>>,
    free: Vec<ClassIx>,
    /// Per channel and requirement, its classes (one per distinct ageing).
    by_need: [HashMap<Need, ClassesOf>; 4],
    /// Per (channel, filing skill), one head set per required level.
    heads: HashMap<(Channel, Option<SkillIx>), Box<HeadSets>>,
    /// Classes whose first contact changes step, by when (nanoseconds).
    due: BTreeSet<(i64, ClassIx)>,
    /// Nanoseconds since the epoch.
    now: Option<i64>,
    len: usize,
    /// Classes created so far (the last one's generation).
    generations: u64,
}

/// A stored key's effective key at `now` under a class's ageing, and when
/// it next changes.
fn aged(ageing: Option<Ageing>, k: WaitKey, now: i64) -> (WaitKey, Option<i64>) {
    match ageing {
        Some(a) => {
            let (eff, next) = a.at_ns(k.prio.0, k.since, now);
            (
                WaitKey {
                    prio: Reverse(eff),
                    ..k
                },
                next,
            )
        }
        None => (k, None),
    }
}

/// A queue's ageing as a class keeps it: none when it never changes a
/// priority (the default), so such contacts share classes with those of
/// queues without ageing.
fn in_effect(ageing: Option<Ageing>) -> Option<Ageing> {
    ageing.filter(|a| *a != Ageing::default())
}

fn lvl(l: u8) -> usize {
    (l.clamp(1, LEVELS as u8) - 1) as usize
}

impl WaitIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Moves the index's clock to `now` (never back) and re-keys every
    /// class whose first contact changed step by then; costs the classes
    /// due.
    pub fn advance(&mut self, now: DateTime<Utc>) {
        let now = nanos(now);
        if self.now.is_some_and(|n| n >= now) {
            return;
        }
        self.now = Some(now);
        while let Some((at, cix)) = self.due.first().copied() {
            if at > now {
                break;
            }
            self.due.pop_first();
            if let Some(c) = self.classes.get_mut(cix as usize).and_then(Option::as_mut) {
                c.due = None;
            }
            self.rehead(cix);
        }
    }

    /// The hint ([`WaitIndex::insert`]) that names class `cix` as it is now.
    pub fn hint(&self, cix: ClassIx) -> Option<ClassHint> {
        let c = self.classes.get(cix as usize)?.as_ref()?;
        Some(ClassHint { cix, gen: c.gen })
    }

    fn now(&self) -> i64 {
        self.now.unwrap_or(i64::MIN)
    }

    /// A filed contact's effective key now, from its stored key.
    pub fn effective(&self, cix: ClassIx, key: WaitKey) -> WaitKey {
        self.effective_at(cix, key, self.now())
    }

    /// The effective key now of a contact not filed yet, as
    /// [`WaitIndex::insert`] with `ageing` would file it.
    pub fn effective_with(&self, ageing: Option<Ageing>, key: WaitKey) -> WaitKey {
        aged(in_effect(ageing), key, self.now()).0
    }

    /// [`WaitIndex::effective`] at another instant (nanoseconds since the
    /// epoch): what an operator's query at its own time sees.
    pub fn effective_at(&self, cix: ClassIx, key: WaitKey, at: i64) -> WaitKey {
        match self.classes.get(cix as usize).and_then(Option::as_ref) {
            Some(c) => c.effective(key, at).0,
            None => key,
        }
    }

    /// Files a waiting contact under its stored `key`, in the class of its
    /// channel, requirement and `ageing`; `rarest` picks the filing skill
    /// of a class seen for the first time. `hint`, the class
    /// ([`WaitIndex::hint`]) this channel and requirement were filed under
    /// before, is used while that class lives (a class never changes its
    /// channel and requirement, and a reused slot is a new generation): a
    /// relaxation step files its contacts without the lookup by
    /// requirement, three cache misses of a step's dozen. Returns the
    /// class to remove it from later and its effective key now.
    pub fn insert(
        &mut self,
        channel: Channel,
        need: &[(SkillIx, u8)],
        ageing: Option<Ageing>,
        key: WaitKey,
        hint: Option<ClassHint>,
        rarest: impl FnOnce(&[(SkillIx, u8)]) -> Option<(SkillIx, u8)>,
    ) -> (ClassIx, WaitKey) {
        let ageing = in_effect(ageing);
        let hinted = hint.filter(|h| {
            self.classes
                .get(h.cix as usize)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.gen == h.gen && c.channel == channel && c.ageing == ageing)
        });
        debug_assert!(hinted.is_none_or(|h| self.classes[h.cix as usize]
            .as_ref()
            .is_some_and(|c| c.need[..] == *need)));
        let known = match hinted {
            Some(h) => Some(h.cix),
            None => self.by_need[channel.index()]
                .get(need)
                .and_then(|v| v.iter().find(|(a, _)| *a == ageing))
                .map(|(_, c)| *c),
        };
        let cix = match known {
            Some(c) => c,
            None => {
                let need: Need = Arc::from(need);
                self.generations += 1;
                let class = Class {
                    gen: self.generations,
                    channel,
                    filed: rarest(&need),
                    need: Arc::clone(&need),
                    ageing,
                    by_prio: Vec::new(),
                    head: None,
                    due: None,
                };
                let cix = super::put_in_slot(&mut self.classes, &mut self.free, class);
                self.by_need[channel.index()]
                    .entry(need)
                    .or_default()
                    .push((ageing, cix));
                cix
            }
        };
        let (mut eff, now) = (key, self.now());
        if let Some(c) = self.classes.get_mut(cix as usize).and_then(Option::as_mut) {
            let p = c.band_of(key);
            let first = match c.by_prio.binary_search_by_key(&p, |b| b.prio) {
                Ok(i) => {
                    let band = &mut c.by_prio[i];
                    let first = key < band.first;
                    if band.set.insert(key) {
                        self.len += 1;
                    }
                    if first {
                        band.first = key;
                    }
                    first
                }
                Err(i) => {
                    let band = Band {
                        prio: p,
                        first: key,
                        set: BTreeSet::from([key]),
                    };
                    c.by_prio.insert(i, band);
                    self.len += 1;
                    true
                }
            };
            eff = c.effective(key, now).0;
            if first {
                self.rehead(cix);
            }
        }
        (cix, eff)
    }

    /// Unfiles a contact (it was offered, or closed) by its stored key.
    pub fn remove(&mut self, cix: ClassIx, key: WaitKey) {
        let Some(c) = self.classes.get_mut(cix as usize).and_then(Option::as_mut) else {
            return;
        };
        let Ok(i) = c.by_prio.binary_search_by_key(&c.band_of(key), |b| b.prio) else {
            return;
        };
        let band = &mut c.by_prio[i];
        let was_first = band.first == key;
        // The usual case (an offer takes a class's head; contacts relax in
        // arrival order): down the left edge, comparing no keys, where a
        // search scans each node it passes through.
        let removed = if was_first {
            band.set.pop_first().is_some()
        } else {
            band.set.remove(&key)
        };
        if !removed {
            return;
        }
        self.len -= 1;
        match band.set.first() {
            None => {
                c.by_prio.remove(i);
            }
            Some(k) if was_first => band.first = *k,
            Some(_) => {}
        }
        if was_first {
            self.rehead(cix);
        }
        let empty = self.classes[cix as usize]
            .as_ref()
            .is_some_and(|c| c.by_prio.is_empty());
        if empty {
            if let Some(c) = self.classes[cix as usize].take() {
                let by_need = &mut self.by_need[c.channel.index()];
                if let Some(v) = by_need.get_mut(&c.need) {
                    v.retain(|(_, x)| *x != cix);
                    if v.is_empty() {
                        by_need.remove(&c.need);
                    }
                }
                self.free.push(cix);
            }
        }
    }

    /// Works out a class's first contact at `now` again and moves its head
    /// entry and its due time to match.
    fn rehead(&mut self, cix: ClassIx) {
        let now = self.now();
        let Some(class) = self.classes.get_mut(cix as usize).and_then(Option::as_mut) else {
            return;
        };
        let (head, due) = class.head_at(now);
        if due != class.due {
            if let Some(d) = class.due {
                self.due.remove(&(d, cix));
            }
            if let Some(d) = due {
                self.due.insert((d, cix));
            }
            class.due = due;
        }
        if head == class.head {
            return;
        }
        let before = std::mem::replace(&mut class.head, head);
        let (skill, level) = class.filed.map_or((None, 1), |(s, l)| (Some(s), l));
        let at = (class.channel, skill);
        let hs = self.heads.entry(at).or_default();
        let (set, first) = (&mut hs.sets[lvl(level)], &mut hs.first[lvl(level)]);
        if let Some(k) = before {
            set.remove(&(k, cix));
            if *first == Some(k) {
                *first = set.first().map(|(k, _)| *k);
            }
        }
        if let Some(k) = head {
            set.insert((k, cix));
            if first.is_none_or(|f| k < f) {
                *first = Some(k);
            }
        } else if hs.is_empty() {
            // No class files here any more: the entry goes, so the head
            // sets are bounded by the waiting contacts, not by every
            // skill ever asked for.
            self.heads.remove(&at);
        }
    }

    /// The first waiting contact an agent with `skills` can take on the
    /// channels marked free, if it comes before `bound`. Returns it (or
    /// none) and the number of heads looked at.
    pub fn first_for(
        &self,
        free: [bool; 4],
        skills: &[(SkillIx, u8)],
        bound: Option<WaitKey>,
    ) -> (Option<WaitKey>, usize) {
        let mut best = bound;
        let mut found = None;
        let mut walked = 0;
        let mut scan = |hs: &HeadSets, l: usize, best: &mut Option<WaitKey>, found: &mut Option<WaitKey>| {
            // Nothing there, or nothing better than the choice in hand:
            // the set is not read.
            match hs.first[l] {
                None => return,
                Some(f) if best.is_some_and(|b| f >= b) => return,
                Some(_) => {}
            }
            for (k, cix) in &hs.sets[l] {
                if best.is_some_and(|b| *k >= b) {
                    return;
                }
                walked += 1;
                let fit = self.classes[*cix as usize]
                    .as_ref()
                    .is_some_and(|c| fits(skills, &c.need));
                if fit {
                    *best = Some(*k);
                    *found = Some(*k);
                    return;
                }
            }
        };
        for ch in Channel::ALL.into_iter().filter(|c| free[c.index()]) {
            if let Some(hs) = self.heads.get(&(ch, None)) {
                scan(hs, 0, &mut best, &mut found);
            }
            for (s, l) in skills {
                if let Some(hs) = self.heads.get(&(ch, Some(*s))) {
                    for level in 0..=lvl(*l) {
                        scan(hs, level, &mut best, &mut found);
                    }
                }
            }
        }
        (found, walked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ix: u32, prio: u8, secs: i64) -> WaitKey {
        WaitKey {
            prio: Reverse(prio),
            since: secs * 1_000_000_000,
            tie: 0,
            ix,
        }
    }

    fn first(w: &WaitIndex, free: [bool; 4], skills: &[(SkillIx, u8)]) -> Option<u32> {
        w.first_for(free, skills, None).0.map(|k| k.ix)
    }

    #[test]
    fn a_class_hint_files_into_its_class_while_it_lives_and_never_into_a_later_class_in_its_slot() {
        let mut w = WaitIndex::default();
        let chat = [false, true, false, false];
        let (a, _) = w.insert(Channel::Chat, &[(1, 5)], None, key(0, 0, 10), None, |n| {
            n.first().copied()
        });
        let hint = w.hint(a);
        // While the class lives the hint names it; no lookup by requirement
        // (a new class would ask for its filing skill).
        let (again, _) = w.insert(Channel::Chat, &[(1, 5)], None, key(1, 0, 11), hint, |_| {
            unreachable!("the hinted class is used")
        });
        assert_eq!(again, a);
        // A hint for another ageing or channel is not that class.
        let (email, _) = w.insert(Channel::Email, &[(1, 5)], None, key(2, 0, 12), hint, |n| {
            n.first().copied()
        });
        assert_ne!(email, a);
        w.remove(a, key(0, 0, 10));
        w.remove(a, key(1, 0, 11));
        // The class emptied and left; its slot goes to the next new class.
        let (b, _) = w.insert(Channel::Chat, &[(2, 1)], None, key(3, 0, 13), None, |n| {
            n.first().copied()
        });
        assert_eq!(b, a, "the slot is reused");
        let (c, _) = w.insert(Channel::Chat, &[(1, 5)], None, key(4, 0, 14), hint, |n| {
            n.first().copied()
        });
        assert_ne!(c, b, "a stale hint is not followed into the slot's new class");
        // Each contact is where its requirement says: skill 2 alone sees
        // only contact 3, skill 1 at level 5 only contact 4.
        assert_eq!(first(&w, chat, &[(2, 1)]), Some(3));
        assert_eq!(first(&w, chat, &[(1, 5)]), Some(4));
    }

    #[test]
    fn an_agent_sees_the_first_contact_it_can_take_and_nothing_else() {
        let mut w = WaitIndex::default();
        let chat = [false, true, false, false];
        let c_a = w
            .insert(Channel::Chat, &[(1, 5)], None, key(0, 0, 10), None, |n| {
                n.first().copied()
            })
            .0;
        w.insert(Channel::Chat, &[(1, 5)], None, key(1, 0, 5), None, |_| {
            unreachable!("class exists")
        });
        w.insert(Channel::Chat, &[(1, 2), (2, 1)], None, key(2, 3, 50), None, |_| {
            Some((2, 1))
        });
        w.insert(Channel::Chat, &[], None, key(3, 0, 1), None, |_| None);
        w.insert(Channel::Email, &[], None, key(4, 9, 0), None, |_| None);
        assert_eq!(w.len(), 5);
        // Level 4 on skill 1 only: the skill-less contact.
        assert_eq!(first(&w, chat, &[(1, 4)]), Some(3));
        // Level 5: the older of the two skill-1 contacts? No: the skill-less
        // one is older still.
        assert_eq!(first(&w, chat, &[(1, 5)]), Some(3));
        // Skills 1 and 2: the priority-3 contact beats everything on chat.
        assert_eq!(first(&w, chat, &[(1, 9), (2, 1)]), Some(2));
        // Email free too: the priority-9 email contact.
        assert_eq!(first(&w, [true, true, false, false], &[(1, 9), (2, 1)]), Some(4));
        // A bound stops the search at anything not better.
        assert_eq!(w.first_for(chat, &[(1, 5)], Some(key(9, 0, 0))).0, None);
        w.remove(c_a, key(1, 0, 5));
        w.remove(c_a, key(0, 0, 10));
        assert_eq!(w.len(), 3);
        assert!(!w.by_need[Channel::Chat.index()].contains_key(&[(1 as SkillIx, 5u8)][..]));
        w.remove(c_a, key(0, 0, 10));
        assert_eq!(w.len(), 3, "removing twice changes nothing");
        // The skill-1 head sets went with their last class.
        assert!(!w.heads.contains_key(&(Channel::Chat, Some(1))));
        assert!(w.heads.contains_key(&(Channel::Chat, Some(2))));
    }

    #[test]
    fn ageing_reorders_a_class_at_each_step_without_refiling_its_contacts() {
        // Priority +1 per 10 s up to 5; past 60 s ahead of everything.
        let ageing = Ageing {
            step_ms: Some(10_000),
            cap: 5,
            max_wait_ms: Some(60_000),
        };
        let at = |secs: i64| DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(secs);
        let chat = [false, true, false, false];
        let mut w = WaitIndex::default();
        w.advance(at(0));
        // Old and low (priority 1 at 0 s) against new and high (3 at 15 s).
        let (c, _) = w.insert(Channel::Chat, &[(1, 1)], Some(ageing), key(0, 1, 0), None, |n| {
            n.first().copied()
        });
        w.insert(Channel::Chat, &[(1, 1)], Some(ageing), key(1, 3, 15), None, |_| {
            unreachable!("class exists")
        });
        // Another class, no ageing, priority 4.
        w.insert(Channel::Chat, &[(2, 1)], None, key(2, 4, 1), None, |n| {
            n.first().copied()
        });
        w.advance(at(15));
        // At 15 s: 1+1 = 2 against 3: the new one first.
        assert_eq!(first(&w, chat, &[(1, 1)]), Some(1));
        assert_eq!(w.effective(c, key(0, 1, 0)).prio, Reverse(2));
        // At 20 s: 1+2 = 3 against 3: the older one, without being re-filed.
        w.advance(at(20));
        assert_eq!(first(&w, chat, &[(1, 1)]), Some(0));
        // At 30 s: 4 against the other class's 4: the older (1 s) first...
        w.advance(at(30));
        assert_eq!(first(&w, chat, &[(1, 1), (2, 1)]), Some(0));
        // ...and capped at 5 from 40 s on; the bound at 60 s tops all.
        w.advance(at(59));
        assert_eq!(w.effective(c, key(0, 1, 0)).prio, Reverse(5));
        assert_eq!(w.effective(c, key(1, 3, 15)).prio, Reverse(5));
        w.advance(at(60));
        assert_eq!(
            w.effective(c, key(0, 1, 0)).prio,
            Reverse(super::super::waiting::STARVED)
        );
        // One re-key per step of a class's first contacts, none per contact.
        assert!(w.due.len() <= 1);
        w.remove(c, key(0, 1, 0));
        assert_eq!(first(&w, chat, &[(1, 1)]), Some(1));
        // The clock never goes back.
        w.advance(at(10));
        assert_eq!(w.effective(c, key(1, 3, 15)).prio, Reverse(5));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Differential: whatever was filed and removed, an agent's first is
        /// the first filed contact (under any bound) whose requirement it
        /// meets on a free channel, as a scan of every contact finds it; and
        /// every level's first key kept beside its head set is that set's.
        #[test]
        fn an_agents_first_is_what_a_scan_of_every_waiting_contact_finds(
            ops in proptest::collection::vec((0usize..2, 0usize..5, 1u8..=10, 0u8..4, 0i64..40, 0usize..64), 1..80),
            agent in proptest::collection::btree_map(1u32..4, 1u8..=10, 0..4),
            free in proptest::array::uniform2(proptest::bool::ANY),
            bound in proptest::option::of((0u8..4, 0i64..40)),
        ) {
            let needs = |n: usize, l: u8| -> Vec<(SkillIx, u8)> {
                match n {
                    0 => vec![],
                    1 => vec![(1, l)],
                    2 => vec![(1, l), (2, 1)],
                    3 => vec![(2, l), (3, 11 - l)],
                    _ => vec![(3, l)],
                }
            };
            let channels = [Channel::Chat, Channel::Email];
            let mut w = WaitIndex::default();
            type Filed = (Channel, Vec<(SkillIx, u8)>, ClassIx, WaitKey);
            let mut filed: Vec<Filed> = Vec::new();
            for (i, (ch, n, l, prio, secs, pick)) in ops.into_iter().enumerate() {
                if pick % 4 == 0 && !filed.is_empty() {
                    let (_, _, cix, k) = filed.remove(pick % filed.len());
                    w.remove(cix, k);
                } else {
                    let need = needs(n, l);
                    let k = key(i as u32, prio, secs);
                    // Filed under its last skill, as "rarest" might say.
                    let (cix, _) = w.insert(channels[ch], &need, None, k, None, |n| n.last().copied());
                    filed.push((channels[ch], need, cix, k));
                }
                for hs in w.heads.values() {
                    for l in 0..LEVELS {
                        proptest::prop_assert_eq!(hs.first[l], hs.sets[l].first().map(|(k, _)| *k));
                    }
                }
            }
            let skills: Vec<(SkillIx, u8)> = agent.into_iter().collect();
            let mut free4 = [false; 4];
            for (ch, f) in channels.iter().zip(free) {
                free4[ch.index()] = f;
            }
            let bound = bound.map(|(p, secs)| key(u32::MAX, p, secs));
            let want = filed
                .iter()
                .filter(|(ch, need, _, k)| free4[ch.index()] && fits(&skills, need) && bound.is_none_or(|b| *k < b))
                .map(|(_, _, _, k)| *k)
                .min();
            proptest::prop_assert_eq!(w.first_for(free4, &skills, bound).0, want);
        }
    }
}
