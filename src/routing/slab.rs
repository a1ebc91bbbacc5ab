//! Slots that keep their index for life, in fixed-size chunks: the open
//! contacts' table. A growing `Vec` doubles and copies everything when it
//! fills (at 500 000 contacts of some 700 bytes, a few hundred megabytes
//! copied inside one event, and the old buffer's pages kept by the
//! allocator); chunks are allocated once and never move, so growth costs
//! one chunk and memory follows the peak number of open contacts.
//!
//! Invariants: an index handed out by `put` stays valid until `take`;
//! freed indexes are reused before new ones.

/// Slots per chunk.
const CHUNK: usize = 4096;

#[derive(Debug)]
pub(crate) struct Slab<T> {
    chunks: Vec<Vec<Option<T>>>,
    /// Slots handed out so far (used or freed).
    len: usize,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    pub fn get(&self, ix: u32) -> Option<&T> {
        let ix = ix as usize;
        self.chunks.get(ix / CHUNK)?.get(ix % CHUNK)?.as_ref()
    }

    pub fn get_mut(&mut self, ix: u32) -> Option<&mut T> {
        let ix = ix as usize;
        self.chunks.get_mut(ix / CHUNK)?.get_mut(ix % CHUNK)?.as_mut()
    }

    /// Stores an item; its index.
    pub fn put(&mut self, item: T) -> u32 {
        if let Some(ix) = self.free.pop() {
            if let Some(slot) = self
                .chunks
                .get_mut(ix as usize / CHUNK)
                .and_then(|c| c.get_mut(ix as usize % CHUNK))
            {
                *slot = Some(item);
                return ix;
            }
        }
        let ix = self.len;
        if ix / CHUNK == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(Some(item));
        }
        self.len += 1;
        ix as u32
    }

    /// Removes an item; its index is reused later.
    pub fn take(&mut self, ix: u32) -> Option<T> {
        let i = ix as usize;
        let item = self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)?.take()?;
        self.free.push(ix);
        Some(item)
    }

    /// Indexes handed out so far: every item's index is below it.
    pub fn slots(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_stay_valid_across_chunks_and_are_reused() {
        let mut s = Slab::default();
        let ids: Vec<u32> = (0..(2 * CHUNK + 5)).map(|n| s.put(n)).collect();
        assert_eq!(ids[CHUNK + 1], (CHUNK + 1) as u32);
        assert_eq!(s.get(ids[CHUNK + 1]), Some(&(CHUNK + 1)));
        assert_eq!(s.take(7), Some(7));
        assert_eq!(s.take(7), None, "taken once");
        assert_eq!(s.get(7), None);
        assert_eq!(s.put(99), 7, "a freed index first");
        assert_eq!(s.slots(), 2 * CHUNK + 5);
        assert_eq!(s.iter().count(), 2 * CHUNK + 5);
        assert_eq!(s.get(u32::MAX), None);
        if let Some(v) = s.get_mut(3) {
            *v = 42;
        }
        assert_eq!(s.get(3), Some(&42));
    }
}
