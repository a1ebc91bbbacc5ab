//! Open contacts by id and by conversation id, for inputs that name them.
//!
//! The tables hold slots only: an entry's key is its contact's own field,
//! read from the slot to compare. No id is copied (a copy of both ids in
//! each of two maps was two allocations and about 140 B per open contact),
//! and a lookup compares against the slot the caller is about to use.
//!
//! Each entry keeps 32 bits of its key's hash beside the slot, so growing
//! a table rehashes without reading a single slot (reading each contact's
//! id made a doubling at 100 000 open contacts take tens of milliseconds
//! inside one input), and a probe skips other keys without reading their
//! slots either.
//!
//! Invariants:
//! - `by_id` holds the slot of every open contact, once; ids are unique
//!   among open contacts (`open` and `restore` refuse a second);
//! - `by_conversation` holds at most one slot per conversation id: the
//!   contact a message of that conversation joins (the last one put);
//! - every slot in either table is occupied: a contact leaves both
//!   ([`ContactLookup::remove`]) when its slot is taken.

use super::slab::Slab;
use super::ContactSlot;
use hashbrown::HashTable;
use std::hash::BuildHasher;

#[derive(Debug)]
pub(crate) struct ContactLookup {
    by_id: HashTable<Entry>,
    by_conversation: HashTable<Entry>,
    hasher: foldhash::fast::RandomState,
}

/// A contact's slot and the low 32 bits of its key's hash.
#[derive(Debug, Clone, Copy)]
struct Entry {
    cx: u32,
    h: u32,
}

/// The table's 64-bit hash of a kept 32-bit one: the multiplication by an
/// odd constant keeps the low bits (the bucket) as mixed as they were and
/// spreads every bit into the top seven (the tag a probe compares first).
fn spread(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn rehash(e: &Entry) -> u64 {
    spread(e.h)
}

fn id_of(slots: &Slab<ContactSlot>, cx: u32) -> Option<&str> {
    slots.get(cx).map(|s| s.c.id.as_str())
}

fn conversation_of(slots: &Slab<ContactSlot>, cx: u32) -> Option<&str> {
    slots.get(cx).map(|s| s.c.conversation_id.as_str())
}

impl ContactLookup {
    pub fn with_capacity(n: usize) -> ContactLookup {
        ContactLookup {
            by_id: HashTable::with_capacity(n),
            by_conversation: HashTable::with_capacity(n),
            hasher: Default::default(),
        }
    }

    /// The kept 32 bits of a key's hash (truncation intended).
    fn hash(&self, key: &str) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    /// The slot of the open contact with this id.
    pub fn by_id(&self, slots: &Slab<ContactSlot>, id: &str) -> Option<u32> {
        let h = self.hash(id);
        self.by_id
            .find(spread(h), |e| e.h == h && id_of(slots, e.cx) == Some(id))
            .map(|e| e.cx)
    }

    /// The slot of the open contact this conversation's messages join.
    pub fn by_conversation(&self, slots: &Slab<ContactSlot>, conversation_id: &str) -> Option<u32> {
        let h = self.hash(conversation_id);
        self.by_conversation
            .find(spread(h), |e| {
                e.h == h && conversation_of(slots, e.cx) == Some(conversation_id)
            })
            .map(|e| e.cx)
    }

    /// Files the contact in slot `cx` (just put) under its id and its
    /// conversation; it takes its conversation over from any other contact.
    /// The caller has checked that no open contact has its id.
    pub fn insert(&mut self, slots: &Slab<ContactSlot>, cx: u32) {
        let (Some(id), Some(conversation)) = (id_of(slots, cx), conversation_of(slots, cx)) else {
            return;
        };
        let h = self.hash(id);
        self.by_id.insert_unique(spread(h), Entry { cx, h }, rehash);
        let h = self.hash(conversation);
        match self.by_conversation.entry(
            spread(h),
            |e| e.h == h && conversation_of(slots, e.cx) == Some(conversation),
            rehash,
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().cx = cx,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(Entry { cx, h });
            }
        }
    }

    /// Takes the contact in slot `cx`, whose id and conversation these are,
    /// out of both tables (its slot may already be free); a conversation
    /// that maps to another contact keeps that mapping.
    pub fn remove(&mut self, cx: u32, id: &str, conversation_id: &str) {
        if let Ok(e) = self.by_id.find_entry(spread(self.hash(id)), |e| e.cx == cx) {
            e.remove();
        }
        if let Ok(e) = self
            .by_conversation
            .find_entry(spread(self.hash(conversation_id)), |e| e.cx == cx)
        {
            e.remove();
        }
    }

    /// Open contacts.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}
