//! Channel adapters: what each channel's platform sends (a chat widget's
//! JSON, Meta's webhook batches, Twilio's form posts, RFC 5322 mail) turned
//! into the contract's inbound events (`docs/contract.md`,
//! `omni.inbound.<channel>`).
//!
//! This module and its children are pure: bytes and headers in, [`Event`]s
//! out. The HTTP endpoints live in `http/webhooks.rs`, the JetStream publish
//! in `bus/publish.rs`, the IMAP session in `imap.rs`.
//!
//! Invariants every decoder keeps:
//! - an event's `id` derives from the platform's own id (Message-ID,
//!   platform message id, call id plus status), so a platform's retry is the
//!   same event and JetStream's duplicate window (then the router's id
//!   memory) drops it;
//! - every event passes the router's own decoder (`decode_inbound`): ids
//!   and conversation ids within their bounds (a longer platform id is
//!   replaced by a digest, see [`bounded_id`]), content clipped to
//!   [`MAX_TEXT_BYTES`];
//! - a decoder never panics on any input and never quotes message content
//!   or addresses in an error (errors reach logs and HTTP bodies).

pub mod chat;
pub mod email;
pub mod imap;
pub mod ivr;
pub mod sign;
pub mod social;
pub mod spec;

use crate::domain::Channel;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Text and subject beyond this many bytes are clipped (the router clips
/// again to its own, smaller, persisted bound).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Event ids are at most 128 characters in the contract.
pub const MAX_ID_CHARS: usize = 128;
/// Conversation and customer ids: at most 256 characters.
pub const MAX_CONVERSATION_CHARS: usize = 256;
/// Names, tiers, languages and other short fields.
pub const MAX_SHORT_CHARS: usize = 256;

/// `message` or `end`, as in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Message,
    End,
}

/// The customer as the platform identifies them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Customer {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// One inbound event of the contract, ready to publish on
/// `omni.inbound.<channel>` with `Nats-Msg-Id` = `id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub v: u8,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub channel: Channel,
    pub conversation_id: String,
    #[serde(serialize_with = "rfc3339")]
    pub received_at: DateTime<Utc>,
    pub customer: Customer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    pub source: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::domain::timefmt::rfc3339(*t))
}

impl Event {
    /// A `message` event with the fields every adapter sets; the rest start
    /// empty. `id` and `conversation_id` are bounded here.
    pub fn new(
        kind: EventType,
        channel: Channel,
        id: &str,
        conversation_id: &str,
        customer: Customer,
        received_at: DateTime<Utc>,
        adapter: &str,
    ) -> Event {
        let mut source = Map::new();
        source.insert("adapter".into(), Value::String(adapter.to_string()));
        Event {
            v: 1,
            id: bounded_id(id, MAX_ID_CHARS),
            kind,
            channel,
            conversation_id: bounded_id(conversation_id, MAX_CONVERSATION_CHARS),
            received_at,
            customer: Customer {
                id: bounded_id(&customer.id, MAX_CONVERSATION_CHARS),
                name: customer.name.map(|s| clip_chars(&s, MAX_SHORT_CHARS)),
                address: customer.address.map(|s| clip_chars(&s, MAX_SHORT_CHARS)),
                tier: customer.tier.map(|s| clip_chars(&s, MAX_SHORT_CHARS)),
                language: customer.language.map(|s| clip_chars(&s, MAX_SHORT_CHARS)),
            },
            subject: None,
            text: None,
            skills: Vec::new(),
            queue: None,
            priority: None,
            source,
            attributes: Map::new(),
        }
    }

    /// The contract's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        crate::domain::wire::to_json(self)
    }

    /// Sets text, clipped to [`MAX_TEXT_BYTES`]; empty text is left out.
    pub fn with_text(mut self, text: Option<&str>) -> Event {
        self.text = text
            .filter(|t| !t.trim().is_empty())
            .map(|t| clip_bytes(t, MAX_TEXT_BYTES));
        self
    }

    /// Sets the subject, clipped; empty is left out.
    pub fn with_subject(mut self, subject: Option<&str>) -> Event {
        self.subject = subject
            .filter(|t| !t.trim().is_empty())
            .map(|t| clip_bytes(t, MAX_SHORT_CHARS * 4));
        self
    }
}

/// `raw` when it is non-empty, printable and at most `max` characters;
/// otherwise a stable digest of it (`sha256:<hex>`, 71 characters), so a
/// long or odd platform id still yields one fixed id.
pub fn bounded_id(raw: &str, max: usize) -> String {
    let ok = !raw.is_empty() && raw.chars().count() <= max && !raw.chars().any(char::is_control);
    if ok {
        return raw.to_string();
    }
    let digest = Sha256::digest(raw.as_bytes());
    format!("sha256:{}", hex(&digest))
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// At most `max` bytes, cut on a character boundary.
pub fn clip_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// At most `max` characters.
pub fn clip_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Why a request or message was not turned into events. The text never
/// quotes content or addresses: it is logged and returned to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// Malformed: the sender must fix it (HTTP 400; mail: counted, skipped).
    #[error("{0}")]
    Bad(String),
    /// Missing or wrong signature or token (HTTP 401/403).
    #[error("{0}")]
    Unauthorized(String),
}

impl AdapterError {
    pub fn bad(msg: impl Into<String>) -> AdapterError {
        AdapterError::Bad(msg.into())
    }
}

/// What a decoder made of one request or message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// Events to publish, in order.
    pub events: Vec<Event>,
    /// Items deliberately not routed (echoes, receipts, auto-replies,
    /// bounces), by kind, for metrics and a log line.
    pub ignored: Vec<&'static str>,
}

/// Routing hints an adapter's configuration adds to every event it makes
/// (an IVR menu choice or a mailbox's queue override these).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Defaults {
    pub queue: Option<String>,
    pub skills: Vec<String>,
    pub priority: Option<u8>,
    pub tier: Option<String>,
    pub language: Option<String>,
}

impl Defaults {
    /// Applies the defaults where the event has no value of its own.
    pub fn apply(&self, mut e: Event) -> Event {
        if e.queue.is_none() {
            e.queue.clone_from(&self.queue);
        }
        if e.priority.is_none() {
            e.priority = self.priority;
        }
        for s in &self.skills {
            if !e.skills.contains(s) {
                e.skills.push(s.clone());
            }
        }
        if e.customer.tier.is_none() {
            e.customer.tier.clone_from(&self.tier);
        }
        if e.customer.language.is_none() {
            e.customer.language.clone_from(&self.language);
        }
        e
    }
}

/// Reading the JSON formats the project defines (chat, generic social,
/// IVR): typed field access with one-line errors that name the field only.
pub(crate) mod fields {
    use super::AdapterError;
    use serde_json::{Map, Value};

    pub type Obj = Map<String, Value>;

    /// At most `max` characters.
    pub fn clip(s: &str, max: usize) -> String {
        s.chars().take(max).collect()
    }

    /// The body as one object or an array of objects (a batch), at most
    /// `max` items.
    pub fn objects(body: &[u8], max: usize) -> Result<Vec<Obj>, AdapterError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| AdapterError::bad(format!("body is not JSON (line {}, column {})", e.line(), e.column())))?;
        let items = match v {
            Value::Object(o) => vec![o],
            Value::Array(a) => {
                if a.len() > max {
                    return Err(AdapterError::bad(format!(
                        "a batch holds at most {max} items, got {}",
                        a.len()
                    )));
                }
                a.into_iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Object(o) => Ok(o),
                        _ => Err(AdapterError::bad(format!("batch item {i} is not an object"))),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(AdapterError::bad("body must be a JSON object or an array of objects")),
        };
        if items.is_empty() {
            return Err(AdapterError::bad("empty batch"));
        }
        Ok(items)
    }

    /// An optional string; present but not a string (or empty) is an error.
    pub fn opt_str<'a>(o: &'a Obj, key: &str) -> Result<Option<&'a str>, AdapterError> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AdapterError::bad(format!("field {key} must be a string"))),
        }
    }

    pub fn req_str<'a>(o: &'a Obj, key: &str) -> Result<&'a str, AdapterError> {
        opt_str(o, key)?.ok_or_else(|| AdapterError::bad(format!("missing field {key}")))
    }

    pub fn opt_obj<'a>(o: &'a Obj, key: &str) -> Result<Option<&'a Obj>, AdapterError> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(AdapterError::bad(format!("field {key} must be an object"))),
        }
    }

    /// `t` when the contract can carry it: RFC 3339 with a four-digit year
    /// (the router refuses other years, so nothing it would refuse is
    /// published).
    pub fn on_wire(t: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::Datelike;
        (0..=9999).contains(&t.year()).then_some(t)
    }

    /// An RFC 3339 time with a four-digit year (see [`on_wire`]), or `now`
    /// when absent.
    pub fn time_or(
        o: &Obj,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>, AdapterError> {
        match opt_str(o, key)? {
            None => Ok(now),
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|t| on_wire(t.with_timezone(&chrono::Utc)))
                .ok_or_else(|| {
                    AdapterError::bad(format!("field {key} is not an RFC 3339 time with a four-digit year"))
                }),
        }
    }

    /// Routing fields a sender may set: `queue`, `skills`, `priority`
    /// (checked as the router checks them, so nothing it would refuse is
    /// published), and free-form `attributes`.
    pub fn routing(o: &Obj, e: &mut super::Event) -> Result<(), AdapterError> {
        use crate::domain::{QueueName, SkillName};
        if let Some(q) = opt_str(o, "queue")? {
            QueueName::try_from(q).map_err(|_| AdapterError::bad("field queue is not a valid queue name"))?;
            e.queue = Some(q.to_string());
        }
        match o.get("skills") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.len() <= 32 => {
                for s in a {
                    let s = s
                        .as_str()
                        .ok_or_else(|| AdapterError::bad("field skills must hold strings"))?;
                    SkillName::try_from(s)
                        .map_err(|_| AdapterError::bad("field skills holds an invalid skill name"))?;
                    e.skills.push(s.to_string());
                }
            }
            Some(_) => return Err(AdapterError::bad("field skills must be an array of at most 32 names")),
        }
        match o.get("priority") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(p @ 0..=9) => e.priority = Some(p as u8),
                _ => return Err(AdapterError::bad("field priority must be an integer 0..9")),
            },
        }
        if let Some(a) = opt_obj(o, "attributes")? {
            e.attributes.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::decode_inbound;

    #[test]
    fn long_or_odd_ids_become_a_stable_digest() {
        assert_eq!(bounded_id("abc", 128), "abc");
        let long = "x".repeat(300);
        let a = bounded_id(&long, 128);
        assert!(a.starts_with("sha256:") && a.len() == 71);
        assert_eq!(a, bounded_id(&long, 128));
        assert_ne!(bounded_id("a\nb", 128), "a\nb");
        assert!(bounded_id("", 128).starts_with("sha256:"));
    }

    #[test]
    fn an_event_passes_the_routers_decoder() {
        let t = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let cust = Customer {
            id: "c".repeat(400),
            name: Some("Ana".into()),
            address: Some("ana@example.com".into()),
            ..Customer::default()
        };
        let e = Event::new(
            EventType::Message,
            Channel::Chat,
            &"i".repeat(200),
            "conv",
            cust,
            t,
            "chat",
        )
        .with_text(Some(&"é".repeat(MAX_TEXT_BYTES)));
        let back = decode_inbound("chat", &e.to_json()).expect("valid");
        assert_eq!(back.id, e.id);
        assert!(e.text.as_deref().map(str::len).unwrap_or(0) <= MAX_TEXT_BYTES);
    }
}
