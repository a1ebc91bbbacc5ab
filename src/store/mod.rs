//! The router's durable state as a journal: what each commit writes, and
//! how a snapshot plus the journal after it rebuild the state. Pure: the
//! NATS side (the fenced append, reading, purging) is in `bus::journal`.
//!
//! A commit is one [`Batch`]: the state records it changed (full values, so
//! applying a batch twice is harmless), the outbound messages it decided
//! (the outbox, numbered), how far earlier outbox messages are known to be
//! published, and the digests of the input ids it processed. A batch larger
//! than one NATS message is written as consecutive parts; a reader applies
//! a batch only when its last part is there, so a crash between parts
//! leaves nothing half-applied. Parts are LZ4-compressed (kind 4) when
//! that makes them smaller, and never exceed the limit: a batch is split
//! on four times the limit in plain size when every compressed part still
//! fits, else on the limit itself.
//!
//! A snapshot is a set of chunks holding the whole state as of journal
//! sequence `covers`, announced by a marker entry in the journal itself (so
//! only the router holding the journal's tip can announce one). State =
//! the latest announced snapshot, then every batch after `covers`.
//!
//! Invariants: applying the same entries in the same order gives the same
//! state on every instance; every operation is an assignment to one key
//! (record, outbox number, id digest), so replaying entries over a
//! snapshot taken at any point at or after `covers` converges to the same
//! state.

pub mod codec;
pub mod ids;
mod outbox;

pub use codec::DecodeError;
pub use ids::IdSet;
pub use outbox::{OutMsg, Outbox};

use bytes::Bytes;
use codec::{Reader, Writer};
use std::collections::HashMap;

const MAGIC: u8 = b'J';
const VERSION: u8 = 1;
const KIND_PART: u8 = 1;
const KIND_MARKER: u8 = 2;
const KIND_CHUNK: u8 = 3;
/// A part whose body (everything after the header) is LZ4-compressed,
/// preceded by its plain length. Written whenever compression makes the
/// part smaller, which for JSON records and payloads is always (a third to
/// a fifth of the size): the journal append is what a commit waits for, and
/// its time goes with its bytes. Plain parts (kind 1) are still read.
const KIND_PART_LZ4: u8 = 4;
/// The largest plain body a compressed part may claim: a corrupt or
/// foreign length is refused before anything is allocated for it.
const MAX_PART_BODY: usize = 256 << 20;

/// What one commit made durable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Commit time, ms since the epoch (dates the id digests).
    pub at_ms: i64,
    /// State records written (`Some`) or removed (`None`), in order.
    pub changes: Vec<(String, Option<Bytes>)>,
    /// Outbound messages decided by this batch, numbered in order.
    pub outbox: Vec<OutMsg>,
    /// Every outbox message numbered up to this one has been published.
    pub published_through: u64,
    /// Digests of the input event ids this batch processed.
    pub ids: Vec<u64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.outbox.is_empty() && self.ids.is_empty()
    }

    /// About how many bytes the batch takes uncompressed: what a replay
    /// decodes, so what spaces the snapshots.
    pub fn plain_len(&self) -> usize {
        let changes: usize = self.changes.iter().map(|(k, v)| change_len(k, v)).sum();
        let outbox: usize = self.outbox.iter().map(OutMsg::encoded_len).sum();
        changes + outbox + 8 * self.ids.len()
    }
}

/// A snapshot's announcement in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Journal sequence the snapshot reflects: entries after it are replayed.
    pub covers: u64,
    /// Stream sequence of the snapshot's first chunk.
    pub first_chunk: u64,
    pub chunks: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Part { part: u32, last: bool, batch: Batch },
    Marker(Marker),
}

fn header(w: &mut Writer, kind: u8) {
    w.u8(MAGIC);
    w.u8(VERSION);
    w.u8(kind);
}

fn check_header(r: &mut Reader, what: &str) -> Result<u8, DecodeError> {
    let (m, v) = (r.u8(what)?, r.u8(what)?);
    if m != MAGIC {
        return Err(DecodeError(format!("{what}: not a journal record (magic {m:#04x})")));
    }
    if v != VERSION {
        return Err(DecodeError(format!(
            "{what}: version {v} is not supported (this build reads {VERSION})"
        )));
    }
    r.u8(what)
}

fn change_len(k: &str, v: &Option<Bytes>) -> usize {
    9 + k.len() + v.as_ref().map_or(0, |v| v.len())
}

fn write_change(w: &mut Writer, k: &str, v: &Option<Bytes>) {
    w.bytes(k.as_bytes());
    match v {
        Some(v) => {
            w.u8(1);
            w.bytes(v);
        }
        None => w.u8(0),
    }
}

fn read_change(r: &mut Reader) -> Result<(String, Option<Bytes>), DecodeError> {
    let k = r.str("record key")?.to_string();
    let v = match r.u8("record flag")? {
        0 => None,
        1 => Some(Bytes::copy_from_slice(r.bytes("record value")?)),
        f => return Err(DecodeError(format!("record flag {f} is not 0 or 1"))),
    };
    Ok((k, v))
}

/// Encodes a batch as one or more parts of at most about `limit` bytes each
/// (an item larger than `limit` travels alone in its part).
pub fn encode_batch(b: &Batch, limit: usize) -> Vec<Vec<u8>> {
    // Each part is a fenced append the commit waits for, and JSON
    // compresses four to seven times: split on four times the limit first,
    // and only when a compressed part would not fit, on the limit itself.
    let wide = encode_parts(b, limit.saturating_mul(4));
    if wide.iter().all(|p| p.len() <= limit) {
        return wide;
    }
    encode_parts(b, limit)
}

/// [`encode_batch`] with the split on the plain size.
fn encode_parts(b: &Batch, limit: usize) -> Vec<Vec<u8>> {
    enum Item<'a> {
        Change(&'a str, &'a Option<Bytes>),
        Out(&'a OutMsg),
        Id(u64),
    }
    let items = b
        .changes
        .iter()
        .map(|(k, v)| (Item::Change(k, v), change_len(k, v)))
        .chain(b.outbox.iter().map(|o| (Item::Out(o), o.encoded_len())))
        .chain(b.ids.iter().map(|d| (Item::Id(*d), 8)));
    // Group items into parts, keeping their order.
    let mut parts: Vec<Vec<Item>> = vec![Vec::new()];
    let mut size = 0;
    for (item, n) in items {
        if size + n > limit && parts.last().is_some_and(|p| !p.is_empty()) {
            parts.push(Vec::new());
            size = 0;
        }
        size += n;
        if let Some(p) = parts.last_mut() {
            p.push(item);
        }
    }
    let n_parts = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, items)| {
            let mut w = Writer::with_capacity(64 + items.len() * 32);
            header(&mut w, KIND_PART);
            w.u32(i as u32);
            w.u8(u8::from(i + 1 == n_parts));
            w.i64(b.at_ms);
            w.u64(b.published_through);
            let (mut nc, mut no, mut ni) = (Vec::new(), Vec::new(), Vec::new());
            for it in items {
                match it {
                    Item::Change(k, v) => nc.push((k, v)),
                    Item::Out(o) => no.push(o),
                    Item::Id(d) => ni.push(d),
                }
            }
            w.u32(nc.len() as u32);
            for (k, v) in nc {
                write_change(&mut w, k, v);
            }
            w.u32(no.len() as u32);
            for o in no {
                o.write(&mut w);
            }
            w.u32(ni.len() as u32);
            for d in ni {
                w.u64(d);
            }
            compressed(w.buf)
        })
        .collect()
}

/// The part compressed (kind 4), or as it is when that is not smaller.
fn compressed(part: Vec<u8>) -> Vec<u8> {
    let body = &part[3..];
    let packed = lz4_flex::block::compress(body);
    if packed.len() + 4 >= body.len() {
        return part;
    }
    let mut w = Writer::with_capacity(packed.len() + 8);
    header(&mut w, KIND_PART_LZ4);
    w.u32(body.len() as u32);
    w.buf.extend_from_slice(&packed);
    w.buf
}

pub fn encode_marker(m: &Marker) -> Vec<u8> {
    let mut w = Writer::with_capacity(32);
    header(&mut w, KIND_MARKER);
    w.u64(m.covers);
    w.u64(m.first_chunk);
    w.u32(m.chunks);
    w.buf
}

/// The marker in a journal entry, if it is one (other entries are not
/// decoded: start-up looks for the latest marker first).
pub fn marker_of(b: &[u8]) -> Option<Marker> {
    match b.get(2) {
        Some(&KIND_MARKER) => match decode_entry(b) {
            Ok(Entry::Marker(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

pub fn decode_entry(b: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader::new(b);
    let entry = match check_header(&mut r, "journal entry")? {
        KIND_PART => decode_part(&mut r)?,
        KIND_PART_LZ4 => {
            let plain = r.u32("plain length")? as usize;
            let packed = r.rest();
            // LZ4 inflates at most about 255 times.
            if plain > MAX_PART_BODY || plain > packed.len().saturating_mul(255) + 16 {
                return Err(DecodeError(format!(
                    "compressed journal part of {} bytes cannot hold the {plain} it claims",
                    packed.len()
                )));
            }
            let body = lz4_flex::block::decompress(packed, plain)
                .map_err(|e| DecodeError(format!("compressed journal part: {e}")))?;
            if body.len() != plain {
                return Err(DecodeError("compressed journal part has the wrong length".into()));
            }
            let mut inner = Reader::new(&body);
            let entry = decode_part(&mut inner)?;
            if !inner.is_empty() {
                return Err(DecodeError("journal entry has trailing bytes".into()));
            }
            entry
        }
        KIND_MARKER => Entry::Marker(Marker {
            covers: r.u64("covers")?,
            first_chunk: r.u64("first chunk")?,
            chunks: r.u32("chunks")?,
        }),
        k => return Err(DecodeError(format!("journal entry kind {k} is unknown"))),
    };
    if !r.is_empty() {
        return Err(DecodeError("journal entry has trailing bytes".into()));
    }
    Ok(entry)
}

/// A part's body, after its header.
fn decode_part(r: &mut Reader) -> Result<Entry, DecodeError> {
    let part = r.u32("part")?;
    let last = r.u8("last")? != 0;
    let at_ms = r.i64("time")?;
    let published_through = r.u64("published")?;
    let mut batch = Batch {
        at_ms,
        published_through,
        ..Batch::default()
    };
    for _ in 0..r.count("changes", 5)? {
        batch.changes.push(read_change(r)?);
    }
    for _ in 0..r.count("outbox", 20)? {
        batch.outbox.push(OutMsg::read(r)?);
    }
    for _ in 0..r.count("ids", 8)? {
        batch.ids.push(r.u64("id")?);
    }
    Ok(Entry::Part { part, last, batch })
}

/// The state a journal rebuilds: on a standby, kept warm entry by entry; at
/// start-up, built from the snapshot and the tail.
pub struct Durable {
    /// State records by key (contacts and agents, as the engine wrote them).
    pub records: HashMap<String, Bytes>,
    pub outbox: Outbox,
    pub ids: IdSet,
    /// Journal sequence of the last entry applied.
    pub tip: u64,
    /// Commit time of the last batch applied (ms since the epoch, 0 if none):
    /// about when the router that wrote it stopped.
    pub last_commit_ms: i64,
    /// Commit time of the last batch applied (not the latest: a wall clock
    /// may step back), `None` before any: the batch a record written with
    /// each batch must come from to be current.
    pub last_batch_ms: Option<i64>,
    /// Parts of a batch whose last part has not been read yet.
    open: Vec<Batch>,
}

impl Durable {
    pub fn new(ids: IdSet) -> Durable {
        Durable {
            records: HashMap::new(),
            outbox: Outbox::default(),
            ids,
            tip: 0,
            last_commit_ms: 0,
            last_batch_ms: None,
            open: Vec::new(),
        }
    }

    fn apply_batch(&mut self, b: Batch) {
        self.last_commit_ms = self.last_commit_ms.max(b.at_ms);
        self.last_batch_ms = Some(b.at_ms);
        for (k, v) in b.changes {
            match v {
                Some(v) => {
                    self.records.insert(k, v);
                }
                None => {
                    self.records.remove(&k);
                }
            }
        }
        for o in b.outbox {
            self.outbox.restore(o);
        }
        self.outbox.mark_published(b.published_through);
        for d in b.ids {
            self.ids.insert(d, b.at_ms);
        }
    }

    /// Applies one journal entry read at stream sequence `seq`. A batch is
    /// applied when its last part arrives; a group left incomplete (its
    /// writer died between parts) is dropped when the next group starts.
    /// Returns the marker when the entry is one.
    pub fn apply_entry(&mut self, seq: u64, bytes: &[u8]) -> Result<Option<Marker>, DecodeError> {
        let entry = decode_entry(bytes)?;
        self.tip = seq;
        match entry {
            Entry::Marker(m) => Ok(Some(m)),
            Entry::Part { part, last, batch } => {
                if part == 0 {
                    self.open.clear();
                } else if self.open.len() != part as usize {
                    // A continuation without its start: the rest of a group
                    // whose first parts were before the snapshot, or garbage.
                    self.open.clear();
                    return Ok(None);
                }
                self.open.push(batch);
                if last {
                    for b in std::mem::take(&mut self.open) {
                        self.apply_batch(b);
                    }
                }
                Ok(None)
            }
        }
    }

    /// The snapshot of this state as chunks of about `limit` bytes, as of
    /// journal sequence `covers`.
    pub fn snapshot_chunks<'a>(
        &self,
        records: impl Iterator<Item = (String, Vec<u8>)> + 'a,
        covers: u64,
        limit: usize,
    ) -> Vec<Vec<u8>> {
        snapshot_chunks(records, &self.outbox, &self.ids, covers, limit)
    }
}

/// Snapshot chunks: every record, the unpublished outbox, the id digests.
/// Each chunk carries the id key and the outbox counters; records, outbox
/// messages and ids are spread over chunks in that order.
pub fn snapshot_chunks(
    records: impl Iterator<Item = (String, Vec<u8>)>,
    outbox: &Outbox,
    ids: &IdSet,
    covers: u64,
    limit: usize,
) -> Vec<Vec<u8>> {
    /// One chunk's three sections as they fill.
    #[derive(Default)]
    struct Sections {
        w: [Writer; 3],
        n: [u32; 3],
    }
    impl Sections {
        fn len(&self) -> usize {
            self.w.iter().map(Writer::len).sum()
        }
    }
    let mut done: Vec<Sections> = Vec::new();
    let mut cur = Sections::default();
    let mut room = |cur: &mut Sections, n: usize| {
        if cur.len() + n > limit && cur.n.iter().any(|c| *c > 0) {
            done.push(std::mem::take(cur));
        }
    };
    for (k, v) in records {
        room(&mut cur, 9 + k.len() + v.len());
        write_change(&mut cur.w[0], &k, &Some(Bytes::from(v)));
        cur.n[0] += 1;
    }
    for o in outbox.pending() {
        room(&mut cur, o.encoded_len());
        o.write(&mut cur.w[1]);
        cur.n[1] += 1;
    }
    for (bucket, digests) in ids.buckets() {
        for d in digests {
            room(&mut cur, 16);
            cur.w[2].i64(bucket);
            cur.w[2].u64(*d);
            cur.n[2] += 1;
        }
    }
    done.push(cur);
    let total = done.len();
    done.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut w = Writer::with_capacity(64 + s.len() + 12);
            header(&mut w, KIND_CHUNK);
            w.u64(covers);
            w.u32(i as u32);
            w.u8(u8::from(i + 1 == total));
            w.u64(ids.key().0);
            w.u64(ids.key().1);
            w.u64(outbox.next_seq());
            w.u64(outbox.published_through());
            for (sec, n) in s.w.iter().zip(s.n) {
                w.u32(n);
                w.buf.extend_from_slice(&sec.buf);
            }
            w.buf
        })
        .collect()
}

/// One decoded snapshot chunk.
pub struct Chunk {
    pub covers: u64,
    pub part: u32,
    pub last: bool,
    pub key: (u64, u64),
    pub next_out_seq: u64,
    pub published_through: u64,
    pub records: Vec<(String, Bytes)>,
    pub outbox: Vec<OutMsg>,
    pub ids: Vec<(i64, u64)>,
}

pub fn decode_chunk(b: &[u8]) -> Result<Chunk, DecodeError> {
    let mut r = Reader::new(b);
    let kind = check_header(&mut r, "snapshot chunk")?;
    if kind != KIND_CHUNK {
        return Err(DecodeError(format!("snapshot chunk has kind {kind}")));
    }
    let mut c = Chunk {
        covers: r.u64("covers")?,
        part: r.u32("part")?,
        last: r.u8("last")? != 0,
        key: (r.u64("key")?, r.u64("key")?),
        next_out_seq: r.u64("outbox sequence")?,
        published_through: r.u64("published")?,
        records: Vec::new(),
        outbox: Vec::new(),
        ids: Vec::new(),
    };
    for _ in 0..r.count("records", 5)? {
        let (k, v) = read_change(&mut r)?;
        let v = v.ok_or_else(|| DecodeError(format!("snapshot record {k} has no value")))?;
        c.records.push((k, v));
    }
    for _ in 0..r.count("outbox", 20)? {
        c.outbox.push(OutMsg::read(&mut r)?);
    }
    for _ in 0..r.count("ids", 16)? {
        c.ids.push((r.i64("bucket")?, r.u64("id")?));
    }
    if !r.is_empty() {
        return Err(DecodeError("snapshot chunk has trailing bytes".into()));
    }
    Ok(c)
}

/// Builds the state from a snapshot's chunks, in order. `ids` is an empty
/// set carrying the configured retention and cap; its key is replaced by
/// the snapshot's.
pub fn from_snapshot(
    chunks: impl IntoIterator<Item = Bytes>,
    expect_covers: u64,
    expect_chunks: u32,
    retention_ms: i64,
    max_ids: usize,
) -> Result<Durable, DecodeError> {
    let mut d: Option<Durable> = None;
    let mut seen = 0u32;
    for b in chunks {
        let c = decode_chunk(&b)?;
        if c.covers != expect_covers || c.part != seen {
            return Err(DecodeError(format!(
                "snapshot chunk {} of snapshot {} found where chunk {seen} of snapshot {expect_covers} was expected",
                c.part, c.covers
            )));
        }
        let st = d.get_or_insert_with(|| {
            let mut st = Durable::new(IdSet::new(c.key, retention_ms, max_ids));
            st.outbox = Outbox::starting_at(c.next_out_seq, c.published_through);
            st
        });
        st.records.extend(c.records);
        for o in c.outbox {
            st.outbox.restore(o);
        }
        for (bucket, digest) in c.ids {
            st.ids.insert(digest, bucket);
        }
        seen += 1;
        if c.last {
            break;
        }
    }
    match d {
        Some(mut d) if seen == expect_chunks => {
            d.tip = expect_covers;
            Ok(d)
        }
        _ => Err(DecodeError(format!(
            "snapshot {expect_covers} has {seen} readable chunks of {expect_chunks}"
        ))),
    }
}

#[cfg(test)]
mod tests;
