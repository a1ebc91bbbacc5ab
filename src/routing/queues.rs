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
//! Invariants:
//! - a contact is filed iff it is waiting; its key is (priority descending,
//!   received_at, a hash of its id, slot), so ties order the same way after a
//!   restart;
//! - each non-empty class has exactly one entry in exactly one head set,
//!   keyed by its current first contact; empty classes are dropped, so the
//!   number of classes is bounded by the waiting contacts.
//!
//! How the next routing model plugs in: ageing and starvation bounds change
//! the key on a timer (re-file the contact); relaxation re-files a contact
//! under a new requirement class when its step is due; queue membership
//! ("also offer to agents of queue general") adds the queue to the class.

use super::agents::{fits, SkillIx, LEVELS};
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
    pub since: DateTime<Utc>,
    pub tie: u64,
    pub ix: u32,
}

type Need = Arc<[(SkillIx, u8)]>;
type Heads = BTreeSet<(WaitKey, ClassIx)>;

#[derive(Debug)]
struct Class {
    channel: Channel,
    need: Need,
    /// The head set this class files under: (skill, level) or none.
    filed: Option<(SkillIx, u8)>,
    waiting: BTreeSet<WaitKey>,
}

#[derive(Debug, Default)]
pub(crate) struct WaitIndex {
    classes: Vec<Option<Class>>,
    free: Vec<ClassIx>,
    by_need: [HashMap<Need, ClassIx>; 4],
    /// Per (channel, filing skill), one head set per required level.
    heads: HashMap<(Channel, Option<SkillIx>), Box<[Heads; LEVELS]>>,
    len: usize,
}

fn lvl(l: u8) -> usize {
    (l.clamp(1, LEVELS as u8) - 1) as usize
}

impl WaitIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Files a waiting contact; `rarest` picks the filing skill of a class
    /// seen for the first time. Returns the class to remove it from later.
    pub fn insert(
        &mut self,
        channel: Channel,
        need: &[(SkillIx, u8)],
        key: WaitKey,
        rarest: impl FnOnce(&[(SkillIx, u8)]) -> Option<(SkillIx, u8)>,
    ) -> ClassIx {
        let cix = match self.by_need[channel.index()].get(need) {
            Some(c) => *c,
            None => {
                let need: Need = Arc::from(need);
                let class = Class {
                    channel,
                    filed: rarest(&need),
                    need: Arc::clone(&need),
                    waiting: BTreeSet::new(),
                };
                let cix = super::put_in_slot(&mut self.classes, &mut self.free, class);
                self.by_need[channel.index()].insert(need, cix);
                cix
            }
        };
        self.update(cix, |w| {
            w.insert(key);
        });
        self.len += 1;
        cix
    }

    /// Unfiles a contact (it was offered, or closed).
    pub fn remove(&mut self, cix: ClassIx, key: WaitKey) {
        let mut removed = false;
        self.update(cix, |w| removed = w.remove(&key));
        if removed {
            self.len -= 1;
        }
        let empty = self.classes[cix as usize]
            .as_ref()
            .is_some_and(|c| c.waiting.is_empty());
        if empty {
            if let Some(c) = self.classes[cix as usize].take() {
                self.by_need[c.channel.index()].remove(&c.need);
                self.free.push(cix);
            }
        }
    }

    /// Applies a change to a class's waiting set and moves its head entry.
    fn update(&mut self, cix: ClassIx, f: impl FnOnce(&mut BTreeSet<WaitKey>)) {
        let Some(class) = self.classes.get_mut(cix as usize).and_then(Option::as_mut) else {
            return;
        };
        let before = class.waiting.first().copied();
        f(&mut class.waiting);
        let after = class.waiting.first().copied();
        if before == after {
            return;
        }
        let (skill, level) = class.filed.map_or((None, 1), |(s, l)| (Some(s), l));
        let heads = &mut self.heads.entry((class.channel, skill)).or_default()[lvl(level)];
        if let Some(k) = before {
            heads.remove(&(k, cix));
        }
        if let Some(k) = after {
            heads.insert((k, cix));
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
        let mut scan = |heads: &Heads, best: &mut Option<WaitKey>, found: &mut Option<WaitKey>| {
            for (k, cix) in heads {
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
            if let Some(levels) = self.heads.get(&(ch, None)) {
                scan(&levels[0], &mut best, &mut found);
            }
            for (s, l) in skills {
                if let Some(levels) = self.heads.get(&(ch, Some(*s))) {
                    for heads in &levels[..=lvl(*l)] {
                        scan(heads, &mut best, &mut found);
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
            since: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(secs),
            tie: 0,
            ix,
        }
    }

    fn first(w: &WaitIndex, free: [bool; 4], skills: &[(SkillIx, u8)]) -> Option<u32> {
        w.first_for(free, skills, None).0.map(|k| k.ix)
    }

    #[test]
    fn an_agent_sees_the_first_contact_it_can_take_and_nothing_else() {
        let mut w = WaitIndex::default();
        let chat = [false, true, false, false];
        let c_a = w.insert(Channel::Chat, &[(1, 5)], key(0, 0, 10), |n| n.first().copied());
        w.insert(Channel::Chat, &[(1, 5)], key(1, 0, 5), |_| unreachable!("class exists"));
        w.insert(Channel::Chat, &[(1, 2), (2, 1)], key(2, 3, 50), |_| Some((2, 1)));
        w.insert(Channel::Chat, &[], key(3, 0, 1), |_| None);
        w.insert(Channel::Email, &[], key(4, 9, 0), |_| None);
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
    }
}
