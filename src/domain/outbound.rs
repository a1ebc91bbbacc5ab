//! Encoding of the router's outbound payloads: offers and desktop notices
//! (`omni.offer.<agent>`), lifecycle events, SLA alerts and dead letters.
//! Re-exported by `wire`, which callers use.
//!
//! Offers, desktop notices and lifecycle events, written several times per
//! routing event, are encoded by `to_json` methods in `jsonw` (same bytes,
//! a fraction of the instructions); the derived `Serialize` impls here are
//! the reference those are tested against, and encode everything else.

use super::wire::Customer;
use super::{AgentId, Channel, QueueName, SkillLevel, SkillName};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// RFC 3339 in UTC with milliseconds, as the router writes times.
use super::timefmt::rfc3339;

mod time_format {
    use chrono::{DateTime, Utc};
    use serde::Serializer;
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        match crate::domain::timefmt::rfc3339_bytes(*t)
            .as_ref()
            .map(|b| std::str::from_utf8(b))
        {
            Some(Ok(text)) => s.serialize_str(text),
            _ => s.serialize_str(&super::rfc3339(*t)),
        }
    }
}

mod levels {
    use super::{SkillLevel, SkillName};
    use serde::ser::{SerializeMap, Serializer};
    /// A JSON object, as the map it replaces: written without building one.
    pub fn serialize<S: Serializer>(v: &[(&SkillName, SkillLevel)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, l) in v {
            m.serialize_entry(k, l)?;
        }
        m.end()
    }

    /// [`serialize`] of a requirement an event may carry (skipped when
    /// `None`, so never called with it).
    pub fn serialize_some<S: Serializer>(v: &Option<Vec<(&SkillName, SkillLevel)>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => serialize(v, s),
            None => s.serialize_none(),
        }
    }
}

/// Contacts held per channel (`None`: no capacity there), as a JSON object
/// of the channels that have some, in [`Channel::ALL`] order.
mod channel_counts {
    use super::Channel;
    use serde::ser::{SerializeMap, Serializer};
    pub fn serialize<S: Serializer>(v: &[Option<u32>; 4], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.iter().flatten().count()))?;
        for c in Channel::ALL {
            if let Some(n) = v[c.index()] {
                m.serialize_entry(c.as_str(), &n)?;
            }
        }
        m.end()
    }
}

/// Seconds rounded to milliseconds, so payloads stay readable.
pub fn secs(d: chrono::Duration) -> f64 {
    (d.num_milliseconds().max(0) as f64) / 1000.0
}

/// Why this agent got the offer: enough for a supervisor to audit a decision.
#[derive(Debug, Clone, Serialize)]
pub struct Why<'a> {
    pub strategy: &'static str,
    /// The agent is the one who served this customer last (affinity).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub returning_customer: bool,
    /// The queue's relaxation step reached (0: the requirement as placed).
    pub step: u8,
    /// The requirement at that step, in name order (the router builds it
    /// from its interned form: the contact's own map is cold memory).
    #[serde(serialize_with = "levels::serialize")]
    pub required: Vec<(&'a SkillName, SkillLevel)>,
    /// The agent's level on each required skill, in `required`'s order.
    #[serde(serialize_with = "levels::serialize")]
    pub agent_levels: Vec<(&'a SkillName, SkillLevel)>,
    pub candidates: usize,
    /// The agent's contacts (offered or assigned) on each channel it has
    /// capacity on, when it was chosen: this offer not counted.
    #[serde(serialize_with = "channel_counts::serialize")]
    pub load: [Option<u32>; 4],
    /// The share of its capacity (or, with weighted units, of its unit
    /// budget) in use then, to three decimals: what `least_loaded` ranks by.
    pub load_share: f64,
}

/// One past contact of a customer, as offers show it (`history`) and the
/// router keeps it (`customer.<hash>` records).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Served {
    pub contact_id: PastId,
    pub channel: Channel,
    pub queue: QueueName,
    /// The agent who took it; absent when nobody did (abandoned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    /// When it closed.
    #[serde(serialize_with = "time_format::serialize")]
    pub at: DateTime<Utc>,
    /// `completed` or `abandoned`: the router's own constants, not an
    /// allocation per entry (an offer reads five entries, each a cold line
    /// more for an owned string).
    pub outcome: std::borrow::Cow<'static, str>,
}

/// A past contact's id in a history entry. The router's own ids
/// (`c-` and 32 lowercase hex digits, see `routing::model::contact_id_for`)
/// are held as their number, any other (a record from elsewhere) as text:
/// an offer reads five entries, and an owned string each was a cold line
/// more apiece. Written and read back as the same string either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PastId {
    Hashed(u128),
    Text(Box<str>),
}

impl PastId {
    const PREFIX: &'static str = "c-";

    /// The id as text, in `buf` when it is a hashed one.
    pub fn as_str<'a>(&'a self, buf: &'a mut [u8; 34]) -> &'a str {
        match self {
            PastId::Hashed(h) => {
                buf[..2].copy_from_slice(Self::PREFIX.as_bytes());
                buf[2..].copy_from_slice(&super::hex32(*h));
                // ASCII only, so this always succeeds.
                std::str::from_utf8(&buf[..]).unwrap_or_default()
            }
            PastId::Text(t) => t,
        }
    }
}

impl From<&str> for PastId {
    fn from(id: &str) -> PastId {
        let hex = id
            .strip_prefix(PastId::PREFIX)
            .filter(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        match hex.and_then(|h| u128::from_str_radix(h, 16).ok()) {
            Some(n) => PastId::Hashed(n),
            None => PastId::Text(id.into()),
        }
    }
}

impl Serialize for PastId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str(&mut [0; 34]))
    }
}

impl<'de> serde::Deserialize<'de> for PastId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PastId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(PastId::from(&*text))
    }
}

/// The outcomes a history entry may have.
pub const OUTCOMES: [&str; 2] = ["completed", "abandoned"];

impl Served {
    /// An outcome read back from a record shares the constant when it is
    /// one (as every record the router writes has).
    pub fn share_outcome(&mut self) {
        if let Some(k) = OUTCOMES.iter().find(|k| **k == self.outcome) {
            self.outcome = std::borrow::Cow::Borrowed(k);
        }
    }
}

/// `omni.offer.<agent_id>` with `kind` = `offer`.
#[derive(Debug, Clone, Serialize)]
pub struct OfferMsg<'a> {
    pub v: u8,
    pub kind: &'static str,
    pub offer_id: &'a str,
    pub contact_id: &'a str,
    pub conversation_id: &'a str,
    pub agent_id: &'a AgentId,
    pub queue: &'a QueueName,
    pub channel: Channel,
    pub priority: u8,
    #[serde(with = "time_format")]
    pub offered_at: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub expires_at: DateTime<Utc>,
    pub waited_secs: f64,
    pub customer: &'a Customer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    /// The customer's last contacts, oldest first (affinity on); absent
    /// when none are known.
    #[serde(skip_serializing_if = "<[Served]>::is_empty")]
    pub history: &'a [Served],
    pub why: Why<'a>,
}

/// `omni.offer.<agent_id>` with `kind` = `message`, `withdrawn`, `ended`
/// or `set_away`.
#[derive(Debug, Clone, Serialize)]
pub struct DesktopNotice<'a> {
    pub v: u8,
    pub kind: &'static str,
    pub contact_id: &'a str,
    pub conversation_id: &'a str,
    pub agent_id: &'a AgentId,
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
}

/// `omni.event.contact.<what>`.
#[derive(Debug, Clone, Serialize)]
pub struct ContactEventMsg<'a> {
    pub v: u8,
    pub event_id: String,
    pub contact_id: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub channel: Option<Channel>,
    pub queue: Option<&'a QueueName>,
    pub agent_id: Option<&'a AgentId>,
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
    pub waited_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_queue: Option<&'a QueueName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_queue: Option<&'a QueueName>,
    /// `overflowed`: the requirement a relaxation step put in force (skill
    /// → level, in name order; `{}` when the step requires no skill), which
    /// the contract's "or the relaxed requirement" asks for.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "levels::serialize_some")]
    pub required: Option<Vec<(&'a SkillName, SkillLevel)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// `queued`: contacts waiting in the queue, this one included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// `queued`: the queue's estimated wait for that position, once the
    /// queue has a measured pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_wait_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertCustomer<'a> {
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<&'a str>,
}

/// `omni.alert.sla.<kind>`.
#[derive(Debug, Clone, Serialize)]
pub struct SlaAlertMsg<'a> {
    pub v: u8,
    pub alert_id: String,
    pub kind: &'static str,
    pub contact_id: &'a str,
    pub conversation_id: &'a str,
    pub queue: &'a QueueName,
    pub channel: Channel,
    pub policy: &'a str,
    pub clock: &'static str,
    /// Which run of a clock that runs more than once (`next_response`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<u32>,
    pub threshold: f64,
    pub target_secs: f64,
    /// Counted time: wall-clock, or the policy calendar's open time, less
    /// any pause.
    pub elapsed_secs: f64,
    pub agent_id: Option<&'a AgentId>,
    pub customer: AlertCustomer<'a>,
    /// When the threshold came due (`at` is when it was raised).
    #[serde(with = "time_format")]
    pub due_at: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
}

/// How much of a refused payload a dead letter copies. The copy must stay
/// well under the server's max payload, or publishing the dead letter itself
/// would fail and the router would retry it forever.
pub const DEAD_LETTER_MAX_COPY: usize = 64 * 1024;

/// `omni.dlq.inbound` / `omni.dlq.agent`.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterMsg<'a> {
    pub v: u8,
    pub subject: &'a str,
    pub error: &'a str,
    /// The original payload as text when it is UTF-8, else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a str>,
    /// The original payload in base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// Size of the original payload.
    pub payload_bytes: usize,
    /// Set when only the first [`DEAD_LETTER_MAX_COPY`] bytes are copied.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub payload_truncated: bool,
    #[serde(with = "time_format")]
    pub at: DateTime<Utc>,
}

impl<'a> DeadLetterMsg<'a> {
    pub fn new(subject: &'a str, payload: &'a [u8], error: &'a str, at: DateTime<Utc>) -> Self {
        use base64::Engine as _;
        let truncated = payload.len() > DEAD_LETTER_MAX_COPY;
        let copy = &payload[..payload.len().min(DEAD_LETTER_MAX_COPY)];
        let (text, b64) = match std::str::from_utf8(copy) {
            Ok(t) => (Some(t), None),
            // A cut through a multi-byte character is still text.
            Err(e) if truncated && e.error_len().is_none() => {
                (std::str::from_utf8(&copy[..e.valid_up_to()]).ok(), None)
            }
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(copy))),
        };
        DeadLetterMsg {
            v: 1,
            subject,
            error,
            payload: text,
            payload_base64: b64,
            payload_bytes: payload.len(),
            payload_truncated: truncated,
            at,
        }
    }
}

/// Serialises an outbound payload. The types above only hold strings,
/// numbers and string-keyed maps, which JSON always represents; an error here
/// would be a programming mistake, reported rather than panicking.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Most payloads fit: one allocation instead of a series of regrowths.
    let mut buf = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut buf, v) {
        Ok(()) => buf,
        Err(e) => {
            tracing::error!(error = %e, "Could not serialise an outbound payload.");
            b"{}".to_vec()
        }
    }
}
