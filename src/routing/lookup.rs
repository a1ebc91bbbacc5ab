//! Open contacts by id and by conversation id, for inputs that name them.
//!
//! The tables hold slots only: an entry's key is its contact's own field,
//! read from the slot to compare. No id is copied (a copy of both ids in
//! each of two maps was two allocations and about 140 B per open contact),
//! and a lookup compares against the slot the caller is about to use.
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
    by_id: HashTable<u32>,
    by_conversation: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
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

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of the open contact with this id.
    pub fn by_id(&self, slots: &Slab<ContactSlot>, id: &str) -> Option<u32> {
        self.by_id
            .find(self.hash(id), |&cx| id_of(slots, cx) == Some(id))
            .copied()
    }

    /// The slot of the open contact this conversation's messages join.
    pub fn by_conversation(&self, slots: &Slab<ContactSlot>, conversation_id: &str) -> Option<u32> {
        self.by_conversation
            .find(self.hash(conversation_id), |&cx| {
                conversation_of(slots, cx) == Some(conversation_id)
            })
            .copied()
    }

    /// Files the contact in slot `cx` (just put) under its id and its
    /// conversation; it takes its conversation over from any other contact.
    /// The caller has checked that no open contact has its id.
    pub fn insert(&mut self, slots: &Slab<ContactSlot>, cx: u32) {
        let (Some(id), Some(conversation)) = (id_of(slots, cx), conversation_of(slots, cx)) else {
            return;
        };
        let h = &self.hasher;
        let rehash_id = |&x: &u32| id_of(slots, x).map_or(0, |k| h.hash_one(k));
        self.by_id.insert_unique(h.hash_one(id), cx, rehash_id);
        let rehash_conversation = |&x: &u32| conversation_of(slots, x).map_or(0, |k| h.hash_one(k));
        match self.by_conversation.entry(
            h.hash_one(conversation),
            |&x| conversation_of(slots, x) == Some(conversation),
            rehash_conversation,
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = cx,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(cx);
            }
        }
    }

    /// Takes the contact in slot `cx`, whose id and conversation these are,
    /// out of both tables (its slot may already be free); a conversation
    /// that maps to another contact keeps that mapping.
    pub fn remove(&mut self, cx: u32, id: &str, conversation_id: &str) {
        if let Ok(e) = self.by_id.find_entry(self.hash(id), |&x| x == cx) {
            e.remove();
        }
        if let Ok(e) = self
            .by_conversation
            .find_entry(self.hash(conversation_id), |&x| x == cx)
        {
            e.remove();
        }
    }

    /// Open contacts.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}
