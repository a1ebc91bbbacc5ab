//! JSON for the payloads the routing core emits on every event: offers,
//! desktop notices, lifecycle events.
//!
//! Why not serde_json's derived encoding: it escapes a string one byte at a
//! time through a table and writes every field name through that same loop,
//! which made these payloads two fifths of the instructions of a new contact.
//! Here a string is checked for characters to escape in one pass the
//! compiler vectorises and copied at once, and field names (constants) are
//! copied as they are.
//!
//! Invariant: the bytes written are exactly serde_json's for the same value
//! (same fields, order, omissions, escapes and number forms); the derived
//! `Serialize` impls stay as the reference, and a differential property test
//! compares the two on random values, including strings that need escaping.
//! That test names every field of each message, so a new field does not
//! compile there until it is written here too.

use super::outbound::{ContactEventMsg, DesktopNotice, OfferMsg};
use super::timefmt::{rfc3339, rfc3339_bytes};
use super::Channel;
use chrono::{DateTime, Utc};
use serde_json::ser::{CompactFormatter, Formatter};
use std::cell::Cell;

/// `,"name":`, as [`Json::key`] takes it: a member's separator, name and
/// colon, written with one copy.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// The most a notice or an event takes besides its strings: field names,
/// quotes, numbers and its time (checked with every field at its longest).
const FIXED: usize = 384;

/// An object being written: `first` says no member has been written at the
/// current nesting level yet (so no comma goes before the next).
struct Json {
    b: Vec<u8>,
    first: bool,
}

impl Json {
    /// A notice or an event, whose fields besides `strings` (every string
    /// it writes) take at most [`FIXED`] bytes: their names, quotes, numbers
    /// and time. Room for all of it, so one allocation and no regrowth,
    /// and a block the size of the payload rather than a kibibyte each
    /// (fewer cache lines for the allocator and the writer to touch per
    /// output). Only a string that needs escaping grows it.
    fn for_strings(strings: &[Option<&str>]) -> Self {
        Self::with_capacity(FIXED + strings.iter().flatten().map(|s| s.len()).sum::<usize>())
    }

    /// An object expected to take about `bytes`.
    fn with_capacity(bytes: usize) -> Self {
        let mut b = Vec::with_capacity(bytes);
        b.push(b'{');
        Json { b, first: true }
    }

    fn finish(mut self) -> Vec<u8> {
        self.b.push(b'}');
        self.b
    }

    /// `,"key":` from [`key!`]'s constant (no comma before a first member).
    #[inline(always)]
    fn key(&mut self, k: &'static str) {
        debug_assert!(k.starts_with(",\"") && k.ends_with("\":") && !needs_escape(&k.as_bytes()[2..k.len() - 2]));
        self.b.extend_from_slice(&k.as_bytes()[usize::from(self.first)..]);
        self.first = false;
    }

    #[inline(always)]
    fn str(&mut self, k: &'static str, v: &str) {
        self.key(k);
        escaped(&mut self.b, v);
    }

    /// A string that needs no escaping by its type: a name of the contract's
    /// token grammar (agent id, queue, skill: `A-Z a-z 0-9 _ -`, checked
    /// when they are made) or a constant of this program (kind, channel,
    /// strategy). Copied without the scan: these are most of a payload's
    /// strings.
    #[inline(always)]
    fn token(&mut self, k: &'static str, v: &str) {
        self.key(k);
        plain(&mut self.b, v);
    }

    /// [`Json::token`], `null` when absent.
    #[inline(always)]
    fn token_or_null(&mut self, k: &'static str, v: Option<&str>) {
        self.or_null(k, v, plain);
    }

    /// [`Json::token`], left out when absent.
    #[inline(always)]
    fn token_if(&mut self, k: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.token(k, v);
        }
    }

    /// A field written as `null` when absent.
    #[inline(always)]
    fn str_or_null(&mut self, k: &'static str, v: Option<&str>) {
        self.or_null(k, v, escaped);
    }

    /// `v` written by `write` (escaping or not), `null` when absent.
    #[inline(always)]
    fn or_null(&mut self, k: &'static str, v: Option<&str>, write: impl Fn(&mut Vec<u8>, &str)) {
        self.key(k);
        match v {
            Some(v) => write(&mut self.b, v),
            None => self.b.extend_from_slice(b"null"),
        }
    }

    /// A field left out when absent.
    #[inline(always)]
    fn str_if(&mut self, k: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(k, v);
        }
    }

    #[inline(always)]
    fn uint(&mut self, k: &'static str, v: u64) {
        self.key(k);
        // Writing into a Vec cannot fail.
        let _ = CompactFormatter.write_u64(&mut self.b, v);
    }

    #[inline(always)]
    fn float(&mut self, k: &'static str, v: f64) {
        self.key(k);
        if v.is_finite() {
            float(&mut self.b, v);
        } else {
            // As serde_json writes a NaN or an infinity.
            self.b.extend_from_slice(b"null");
        }
    }

    #[inline(always)]
    fn time(&mut self, k: &'static str, t: DateTime<Utc>) {
        self.key(k);
        match rfc3339_bytes(t) {
            Some(text) => {
                self.b.push(b'"');
                self.b.extend_from_slice(&text);
                self.b.push(b'"');
            }
            None => escaped(&mut self.b, &rfc3339(t)),
        }
    }

    /// `"skill":level`, a member of the object being written (a skill name
    /// is a token: see [`Json::token`]).
    #[inline(always)]
    fn level(&mut self, skill: &str, level: u8) {
        self.count(skill, level.into());
    }

    /// `"name":n`, a member of the object being written (`name` a token).
    #[inline(always)]
    fn count(&mut self, name: &str, n: u64) {
        if !self.first {
            self.b.push(b',');
        }
        self.first = false;
        plain(&mut self.b, name);
        self.b.push(b':');
        let _ = CompactFormatter.write_u64(&mut self.b, n);
    }

    #[inline(always)]
    fn open(&mut self, k: &'static str, bracket: u8) {
        self.key(k);
        self.b.push(bracket);
        self.first = true;
    }

    /// The next object of an array.
    #[inline(always)]
    fn element(&mut self) {
        if !self.first {
            self.b.push(b',');
        }
        self.b.push(b'{');
        self.first = true;
    }

    fn close(&mut self, bracket: u8) {
        self.b.push(bracket);
        self.first = false;
    }
}

/// Whether serde_json would escape any byte of `s`: a control character, a
/// quote or a backslash. Eight bytes at a time, without branching per byte,
/// the tail included: most strings written (ids, names, queue names) are
/// short, and a byte-by-byte tail was most of this function's time. Which
/// byte of a word is which does not matter (the test is "any"), so words
/// are read in native order.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `x` is below `n` (n <= 0x80): exact for "any", as the
    // borrow only runs from a byte that is below `n` itself.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let any =
        |x: u64| below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1);
    let word = |c: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        u64::from_ne_bytes(a)
    };
    if s.len() < 8 {
        // Padded to a word with spaces, which are never escaped.
        let mut x = u64::from_ne_bytes([b' '; 8]);
        for (i, &c) in s.iter().enumerate() {
            x = (x & !(0xff << (8 * i))) | (u64::from(c) << (8 * i));
        }
        return any(x) != 0;
    }
    let mut chunks = s.chunks_exact(8);
    let mut hit = 0;
    for c in &mut chunks {
        hit |= any(word(c));
    }
    // The last eight bytes (overlapping the last whole word) cover the tail.
    if !chunks.remainder().is_empty() {
        hit |= any(word(&s[s.len() - 8..]));
    }
    hit != 0
}

/// The longest text [`LAST_FLOAT`] keeps: any finite `f64` in serde_json's
/// form (`-2.2250738585072014e-308` is 24 bytes).
const FLOAT_TEXT: usize = 32;

thread_local! {
    /// The last finite `f64` written, by its bits, and its text: the
    /// outputs of one input repeat the same few values (a contact's
    /// `waited_secs` is in each of its events and offers of that input).
    /// The initial bits are a NaN's, which never comes here.
    static LAST_FLOAT: Cell<(u64, u8, [u8; FLOAT_TEXT])> =
        const { Cell::new((0x7ff8_0000_0000_0001, 0, [0; FLOAT_TEXT])) };
}

/// A finite `v` as serde_json writes it.
fn float(b: &mut Vec<u8>, v: f64) {
    let bits = v.to_bits();
    let (last, len, text) = LAST_FLOAT.get();
    if last == bits {
        b.extend_from_slice(&text[..usize::from(len)]);
        return;
    }
    let start = b.len();
    // Writing into a Vec cannot fail.
    let _ = CompactFormatter.write_f64(b, v);
    let written = &b[start..];
    if let (Ok(len), true) = (u8::try_from(written.len()), written.len() <= FLOAT_TEXT) {
        let mut text = [0; FLOAT_TEXT];
        text[..written.len()].copy_from_slice(written);
        LAST_FLOAT.set((bits, len, text));
    }
}

/// `s`, which needs no escaping ([`Json::token`]), as a JSON string.
fn plain(b: &mut Vec<u8>, s: &str) {
    debug_assert!(!needs_escape(s.as_bytes()), "{s:?} needs escaping");
    b.reserve(s.len() + 2);
    b.push(b'"');
    b.extend_from_slice(s.as_bytes());
    b.push(b'"');
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it.
fn escaped(b: &mut Vec<u8>, s: &str) {
    b.push(b'"');
    if !needs_escape(s.as_bytes()) {
        b.extend_from_slice(s.as_bytes());
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut run = 0;
        for (i, &c) in s.as_bytes().iter().enumerate() {
            let short = match c {
                b'"' => b'"',
                b'\\' => b'\\',
                0x08 => b'b',
                0x0c => b'f',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0..=0x1f => b'u',
                _ => continue,
            };
            b.extend_from_slice(&s.as_bytes()[run..i]);
            run = i + 1;
            if short == b'u' {
                b.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 0xf) as usize]]);
            } else {
                b.extend_from_slice(&[b'\\', short]);
            }
        }
        b.extend_from_slice(&s.as_bytes()[run..]);
    }
    b.push(b'"');
}

/// Room for an offer's fields besides the contact's part (ids, agent,
/// `why` with a few skills), and for one history entry at most.
const OFFER_HEAD_AND_WHY: usize = 640;
const HISTORY_ENTRY: usize = 224;

impl OfferMsg<'_> {
    /// This offer as serde_json would write it, faster.
    pub fn to_json(&self) -> Vec<u8> {
        let mut j = Json::with_capacity(OFFER_HEAD_AND_WHY + self.contact_part_estimate());
        self.head(&mut j);
        self.contact_part(&mut j);
        self.why(&mut j);
        j.finish()
    }

    /// The fields between the agent and `why` (queue, channel, priority,
    /// times, customer, subject, text, history): the same in every offer
    /// of one contact at one instant, so a ring group's members share them
    /// ([`OfferMsg::to_json_sharing`]) instead of escaping the text and
    /// history once per member.
    pub fn contact_json(&self) -> Vec<u8> {
        let mut j = Json {
            b: Vec::with_capacity(self.contact_part_estimate()),
            first: false,
        };
        self.contact_part(&mut j);
        j.b
    }

    /// About the bytes of [`OfferMsg::contact_part`], generously: an offer
    /// with a returning customer's history passed 1 KiB, and growing the
    /// buffer then copied all of it into a fresh allocation.
    fn contact_part_estimate(&self) -> usize {
        let text = self.subject.map_or(0, str::len) + self.text.map_or(0, str::len);
        256 + text + HISTORY_ENTRY * self.history.len()
    }

    /// [`OfferMsg::to_json`] with the contact's part given as written by
    /// [`OfferMsg::contact_json`] for an offer of the same contact at the
    /// same instant (the caller's promise; the bytes are the same then).
    pub fn to_json_sharing(&self, contact: &[u8]) -> Vec<u8> {
        let mut j = Json::with_capacity(OFFER_HEAD_AND_WHY + contact.len());
        self.head(&mut j);
        j.b.extend_from_slice(contact);
        self.why(&mut j);
        j.finish()
    }

    fn head(&self, j: &mut Json) {
        j.uint(key!("v"), self.v.into());
        j.token(key!("kind"), self.kind);
        j.str(key!("offer_id"), self.offer_id);
        j.str(key!("contact_id"), self.contact_id);
        j.str(key!("conversation_id"), self.conversation_id);
        j.token(key!("agent_id"), self.agent_id.as_str());
    }

    fn contact_part(&self, j: &mut Json) {
        j.token(key!("queue"), self.queue.as_str());
        j.token(key!("channel"), self.channel.as_str());
        j.uint(key!("priority"), self.priority.into());
        j.time(key!("offered_at"), self.offered_at);
        j.time(key!("expires_at"), self.expires_at);
        j.float(key!("waited_secs"), self.waited_secs);
        let c = self.customer;
        j.open(key!("customer"), b'{');
        j.str(key!("id"), &c.id);
        j.str_if(key!("name"), c.name.as_deref());
        j.str_if(key!("tier"), c.tier.as_deref());
        j.str_if(key!("language"), c.language.as_deref());
        j.close(b'}');
        j.str_if(key!("subject"), self.subject);
        j.str_if(key!("text"), self.text);
        if !self.history.is_empty() {
            j.open(key!("history"), b'[');
            for h in self.history {
                j.element();
                j.str(key!("contact_id"), h.contact_id.as_str(&mut [0; 34]));
                j.token(key!("channel"), h.channel.as_str());
                j.token(key!("queue"), h.queue.as_str());
                j.token_if(key!("agent"), h.agent.as_ref().map(|a| a.as_str()));
                j.time(key!("at"), h.at);
                j.str(key!("outcome"), &h.outcome);
                j.close(b'}');
            }
            j.close(b']');
        }
    }

    fn why(&self, j: &mut Json) {
        let w = &self.why;
        j.open(key!("why"), b'{');
        j.token(key!("strategy"), w.strategy);
        if w.returning_customer {
            j.key(key!("returning_customer"));
            j.b.extend_from_slice(b"true");
        }
        j.uint(key!("step"), w.step.into());
        j.open(key!("required"), b'{');
        for (skill, level) in &w.required {
            j.level(skill.as_str(), *level);
        }
        j.close(b'}');
        j.open(key!("agent_levels"), b'{');
        for (skill, level) in &w.agent_levels {
            j.level(skill.as_str(), *level);
        }
        j.close(b'}');
        j.uint(key!("candidates"), w.candidates as u64);
        j.open(key!("load"), b'{');
        for c in Channel::ALL {
            if let Some(n) = w.load[c.index()] {
                j.count(c.as_str(), n.into());
            }
        }
        j.close(b'}');
        j.float(key!("load_share"), w.load_share);
        j.close(b'}');
    }
}

impl DesktopNotice<'_> {
    /// This notice as serde_json would write it, faster.
    pub fn to_json(&self) -> Vec<u8> {
        let mut j = Json::for_strings(&[
            Some(self.kind),
            Some(self.contact_id),
            Some(self.conversation_id),
            Some(self.agent_id.as_str()),
            self.offer_id,
            self.reason,
            self.event_id,
            self.subject,
            self.text,
        ]);
        j.uint(key!("v"), self.v.into());
        j.token(key!("kind"), self.kind);
        j.str(key!("contact_id"), self.contact_id);
        j.str(key!("conversation_id"), self.conversation_id);
        j.token(key!("agent_id"), self.agent_id.as_str());
        j.token(key!("channel"), self.channel.as_str());
        j.str_if(key!("offer_id"), self.offer_id);
        j.str_if(key!("reason"), self.reason);
        j.str_if(key!("event_id"), self.event_id);
        j.str_if(key!("subject"), self.subject);
        j.str_if(key!("text"), self.text);
        j.time(key!("at"), self.at);
        j.finish()
    }
}

impl ContactEventMsg<'_> {
    /// This event as serde_json would write it, faster.
    pub fn to_json(&self) -> Vec<u8> {
        let mut j = Json::for_strings(&[
            Some(&self.event_id),
            self.contact_id,
            self.conversation_id,
            self.queue.map(|q| q.as_str()),
            self.agent_id.map(|a| a.as_str()),
            self.offer_id,
            self.reason,
            self.from_queue.map(|q| q.as_str()),
            self.to_queue.map(|q| q.as_str()),
            self.error,
        ]);
        // A requirement beyond the fixed room: `,"required":{}`, and each
        // skill's name with at most `"":255,` around it.
        if let Some(required) = &self.required {
            j.b.reserve(
                14 + required
                    .iter()
                    .map(|(skill, _)| skill.as_str().len() + 7)
                    .sum::<usize>(),
            );
        }
        j.uint(key!("v"), self.v.into());
        j.str(key!("event_id"), &self.event_id);
        j.str_or_null(key!("contact_id"), self.contact_id);
        j.str_or_null(key!("conversation_id"), self.conversation_id);
        j.token_or_null(key!("channel"), self.channel.map(|c| c.as_str()));
        j.token_or_null(key!("queue"), self.queue.map(|q| q.as_str()));
        j.token_or_null(key!("agent_id"), self.agent_id.map(|a| a.as_str()));
        j.time(key!("at"), self.at);
        j.float(key!("waited_secs"), self.waited_secs);
        j.str_if(key!("offer_id"), self.offer_id);
        j.str_if(key!("reason"), self.reason);
        j.token_if(key!("from_queue"), self.from_queue.map(|q| q.as_str()));
        j.token_if(key!("to_queue"), self.to_queue.map(|q| q.as_str()));
        if let Some(required) = &self.required {
            j.open(key!("required"), b'{');
            for (skill, level) in required {
                j.level(skill.as_str(), *level);
            }
            j.close(b'}');
        }
        j.str_if(key!("error"), self.error);
        if let Some(p) = self.position {
            j.uint(key!("position"), p as u64);
        }
        if let Some(s) = self.estimated_wait_secs {
            j.float(key!("estimated_wait_secs"), s);
        }
        j.finish()
    }
}

#[cfg(test)]
mod tests;
