//! Decoding and encoding of the contract's JSON payloads.
//!
//! Decoding is hand-written over `serde_json::Value` rather than derived so
//! that every rejection is one precise line (`missing field conversation_id`,
//! `priority 12 is not in 0..9`), which is what an adapter author reads in a
//! dead letter. Unknown fields are ignored, as the contract requires.

use super::{check_skill_level, AgentId, Channel, Presence, QueueName, SkillLevel, SkillName};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Why a message was refused. The text is safe to log: it never quotes
/// message content beyond a short, truncated offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadMessage(pub String);

fn bad(msg: impl Into<String>) -> BadMessage {
    BadMessage(msg.into())
}

type Obj = Map<String, Value>;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn present<'a>(o: &'a Obj, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}

fn req<'a>(o: &'a Obj, key: &str) -> Result<&'a Value, BadMessage> {
    present(o, key).ok_or_else(|| bad(format!("missing field {key}")))
}

fn as_str<'a>(v: &'a Value, key: &str) -> Result<&'a str, BadMessage> {
    v.as_str()
        .ok_or_else(|| bad(format!("field {key} must be a string, got {}", type_name(v))))
}

fn req_str<'a>(o: &'a Obj, key: &str, max_chars: usize) -> Result<&'a str, BadMessage> {
    let s = as_str(req(o, key)?, key)?;
    let n = s.chars().count();
    if n == 0 || n > max_chars {
        return Err(bad(format!("field {key} must be 1 to {max_chars} characters, got {n}")));
    }
    Ok(s)
}

fn opt_str(o: &Obj, key: &str) -> Result<Option<String>, BadMessage> {
    present(o, key).map(|v| as_str(v, key).map(str::to_string)).transpose()
}

/// Display fields are clipped, not refused: a long name must not cost the
/// customer their contact, nor bloat offers and state.
fn clip_opt(s: Option<String>) -> Option<String> {
    s.map(|s| {
        if s.chars().count() > 256 {
            super::truncate(&s, 255)
        } else {
            s
        }
    })
}

fn opt_time(o: &Obj, key: &str) -> Result<Option<DateTime<Utc>>, BadMessage> {
    present(o, key)
        .map(|v| {
            let s = as_str(v, key)?;
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad(format!("field {key} is not an RFC 3339 time")))
        })
        .transpose()
}

fn check_version(o: &Obj) -> Result<(), BadMessage> {
    match req(o, "v")?.as_i64() {
        Some(1) => Ok(()),
        Some(n) => Err(bad(format!(
            "contract version {n} is not supported (this router speaks v1)"
        ))),
        None => Err(bad("field v must be the number 1")),
    }
}

fn parse_object(payload: &[u8]) -> Result<Obj, BadMessage> {
    let text = std::str::from_utf8(payload).map_err(|_| bad("payload is not UTF-8"))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(other) => Err(bad(format!("payload must be a JSON object, got {}", type_name(&other)))),
        Err(e) => Err(bad(format!(
            "payload is not valid JSON (line {} column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// Refuses payloads over the limit before any parsing work is spent on them.
pub fn check_size(len: usize, max: usize) -> Result<(), BadMessage> {
    if len > max {
        Err(bad(format!(
            "payload is {}, over the {} limit",
            human_bytes(len),
            human_bytes(max)
        )))
    } else {
        Ok(())
    }
}

fn human_bytes(n: usize) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB {
        let v = f / (KIB * KIB);
        if (v - v.round()).abs() < 0.05 {
            format!("{} MiB", v.round())
        } else {
            format!("{v:.1} MiB")
        }
    } else if f >= KIB {
        let v = f / KIB;
        if (v - v.round()).abs() < 0.05 {
            format!("{} KiB", v.round())
        } else {
            format!("{v:.1} KiB")
        }
    } else {
        format!("{n} bytes")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundType {
    Message,
    End,
}

/// The customer as the adapter knows them. `address` is kept out of logs
/// and out of the router's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub language: Option<String>,
}

/// `omni.inbound.<channel>`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEvent {
    pub id: String,
    pub kind: InboundType,
    pub channel: Channel,
    pub conversation_id: String,
    pub received_at: Option<DateTime<Utc>>,
    pub customer: Customer,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub skills: Vec<SkillName>,
    pub queue: Option<QueueName>,
    pub priority: Option<u8>,
    pub attributes: Obj,
}

/// Decodes an inbound event; `subject_channel` is the subject's last token,
/// which must agree with the payload.
pub fn decode_inbound(subject_channel: &str, payload: &[u8]) -> Result<InboundEvent, BadMessage> {
    let o = parse_object(payload)?;
    check_version(&o)?;
    let id = req_str(&o, "id", 128)?.to_string();
    let kind = match as_str(req(&o, "type")?, "type")? {
        "message" => InboundType::Message,
        "end" => InboundType::End,
        other => {
            return Err(bad(format!(
                "type {:?} is not one of message, end",
                super::truncate(other, 32)
            )))
        }
    };
    let channel: Channel = as_str(req(&o, "channel")?, "channel")?.parse().map_err(BadMessage)?;
    if channel.as_str() != subject_channel {
        return Err(bad(format!(
            "channel {channel} does not match the subject's channel {:?}",
            super::truncate(subject_channel, 32)
        )));
    }
    let conversation_id = req_str(&o, "conversation_id", 256)?.to_string();
    let received_at = opt_time(&o, "received_at")?;
    let customer = match req(&o, "customer")? {
        Value::Object(c) => Customer {
            id: req_str(c, "id", 256)
                .map_err(|e| bad(format!("customer: {e}")))?
                .to_string(),
            name: clip_opt(opt_str(c, "name").map_err(|e| bad(format!("customer: {e}")))?),
            tier: clip_opt(opt_str(c, "tier").map_err(|e| bad(format!("customer: {e}")))?),
            language: clip_opt(opt_str(c, "language").map_err(|e| bad(format!("customer: {e}")))?),
        },
        other => {
            return Err(bad(format!(
                "field customer must be an object, got {}",
                type_name(other)
            )))
        }
    };
    let skills = match present(&o, "skills") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                let s = as_str(v, "skills[]")?;
                SkillName::try_from(s).map_err(BadMessage)
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad(format!("field skills must be an array, got {}", type_name(other)))),
    };
    let queue = present(&o, "queue")
        .map(|v| QueueName::try_from(as_str(v, "queue")?).map_err(BadMessage))
        .transpose()?;
    let priority = present(&o, "priority")
        .map(|v| match v.as_i64() {
            Some(p @ 0..=9) => Ok(p as u8),
            Some(p) => Err(bad(format!("priority {p} is not in 0..9"))),
            None => Err(bad(format!("field priority must be an integer, got {}", type_name(v)))),
        })
        .transpose()?;
    let attributes = match present(&o, "attributes") {
        None => Obj::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(other) => {
            return Err(bad(format!(
                "field attributes must be an object, got {}",
                type_name(other)
            )))
        }
    };
    Ok(InboundEvent {
        id,
        kind,
        channel,
        conversation_id,
        received_at,
        customer,
        subject: opt_str(&o, "subject")?,
        text: opt_str(&o, "text")?,
        skills,
        queue,
        priority,
        attributes,
    })
}

/// `omni.agent.<agent_id>.<type>`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEvent {
    pub id: String,
    pub agent_id: AgentId,
    pub at: Option<DateTime<Utc>>,
    pub body: AgentEventBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgentEventBody {
    Profile {
        name: Option<String>,
        skills: Option<BTreeMap<SkillName, SkillLevel>>,
        capacity: Option<BTreeMap<Channel, u32>>,
        /// Weighted capacity budget; `Some(0)` turns it off (slots only).
        units: Option<u32>,
    },
    Presence(Presence),
    Accept {
        contact_id: String,
    },
    Decline {
        contact_id: String,
        reason: Option<String>,
    },
    Respond {
        contact_id: String,
    },
    Complete {
        contact_id: String,
        wrap_up_secs: Option<f64>,
    },
    /// Sets the remaining wrap-up of a completed contact: `wrap_up_secs`
    /// from now (0 ends it at once), shorter or longer than it was.
    WrapUp {
        contact_id: String,
        wrap_up_secs: f64,
    },
    /// The agent is waiting on the customer (asked a question): the
    /// contact's SLA clocks pause, if its policy says so, until the
    /// customer's next message.
    AwaitCustomer {
        contact_id: String,
    },
}

impl AgentEventBody {
    pub fn type_name(&self) -> &'static str {
        match self {
            AgentEventBody::Profile { .. } => "profile",
            AgentEventBody::Presence(_) => "presence",
            AgentEventBody::Accept { .. } => "accept",
            AgentEventBody::Decline { .. } => "decline",
            AgentEventBody::Respond { .. } => "respond",
            AgentEventBody::Complete { .. } => "complete",
            AgentEventBody::WrapUp { .. } => "wrap_up",
            AgentEventBody::AwaitCustomer { .. } => "await_customer",
        }
    }
}

pub const AGENT_EVENT_TYPES: [&str; 8] = [
    "profile",
    "presence",
    "accept",
    "decline",
    "respond",
    "complete",
    "wrap_up",
    "await_customer",
];

/// Decodes an agent event; the subject's agent id and type tokens must agree
/// with the payload.
pub fn decode_agent(subject_agent: &str, subject_type: &str, payload: &[u8]) -> Result<AgentEvent, BadMessage> {
    let o = parse_object(payload)?;
    check_version(&o)?;
    let id = req_str(&o, "id", 128)?.to_string();
    let ty = as_str(req(&o, "type")?, "type")?;
    if !AGENT_EVENT_TYPES.contains(&ty) {
        return Err(bad(format!(
            "type {:?} is not one of {}",
            super::truncate(ty, 32),
            AGENT_EVENT_TYPES.join(", ")
        )));
    }
    if ty != subject_type {
        return Err(bad(format!(
            "type {ty} does not match the subject's type {:?}",
            super::truncate(subject_type, 32)
        )));
    }
    let agent_id = AgentId::try_from(as_str(req(&o, "agent_id")?, "agent_id")?).map_err(BadMessage)?;
    if agent_id.as_str() != subject_agent {
        return Err(bad(format!(
            "agent_id {agent_id} does not match the subject's agent {:?}",
            super::truncate(subject_agent, 64)
        )));
    }
    let at = opt_time(&o, "at")?;
    let contact_id = || req_str(&o, "contact_id", 256).map(str::to_string);
    let body = match ty {
        "profile" => {
            let skills = present(&o, "skills")
                .map(|v| match v {
                    Value::Object(m) => m
                        .iter()
                        .map(|(k, lv)| {
                            let name = SkillName::try_from(k.as_str()).map_err(BadMessage)?;
                            let level = lv
                                .as_i64()
                                .ok_or_else(|| bad(format!("skill {name} level must be an integer")))
                                .and_then(|l| check_skill_level(l).map_err(BadMessage))?;
                            Ok((name, level))
                        })
                        .collect::<Result<BTreeMap<_, _>, BadMessage>>(),
                    other => Err(bad(format!("field skills must be an object, got {}", type_name(other)))),
                })
                .transpose()?;
            let capacity = present(&o, "capacity")
                .map(|v| match v {
                    Value::Object(m) => m
                        .iter()
                        .map(|(k, n)| {
                            let ch: Channel = k.parse().map_err(BadMessage)?;
                            let n = n
                                .as_u64()
                                .filter(|n| *n <= 1000)
                                .ok_or_else(|| bad(format!("capacity.{ch} must be an integer 0..1000")))?;
                            Ok((ch, n as u32))
                        })
                        .collect::<Result<BTreeMap<_, _>, BadMessage>>(),
                    other => Err(bad(format!(
                        "field capacity must be an object, got {}",
                        type_name(other)
                    ))),
                })
                .transpose()?;
            let units = present(&o, "units")
                .map(|v| match v.as_u64() {
                    Some(n) if n <= 1_000_000 => Ok(n as u32),
                    _ => Err(bad(
                        "field units must be an integer 0..1000000 (0: no weighted capacity)",
                    )),
                })
                .transpose()?;
            AgentEventBody::Profile {
                name: opt_str(&o, "name")?,
                skills,
                capacity,
                units,
            }
        }
        "presence" => AgentEventBody::Presence(as_str(req(&o, "status")?, "status")?.parse().map_err(BadMessage)?),
        "accept" => AgentEventBody::Accept {
            contact_id: contact_id()?,
        },
        "decline" => AgentEventBody::Decline {
            contact_id: contact_id()?,
            reason: opt_str(&o, "reason")?,
        },
        "respond" => AgentEventBody::Respond {
            contact_id: contact_id()?,
        },
        "await_customer" => AgentEventBody::AwaitCustomer {
            contact_id: contact_id()?,
        },
        ty => {
            let contact_id = contact_id()?;
            let wrap_up_secs = present(&o, "wrap_up_secs")
                .map(|v| match v.as_f64() {
                    Some(s) if (0.0..=86_400.0).contains(&s) => Ok(s),
                    _ => Err(bad("field wrap_up_secs must be a number of seconds 0..86400")),
                })
                .transpose()?;
            match (ty, wrap_up_secs) {
                ("wrap_up", Some(wrap_up_secs)) => AgentEventBody::WrapUp {
                    contact_id,
                    wrap_up_secs,
                },
                ("wrap_up", None) => return Err(bad("missing field wrap_up_secs")),
                _ => AgentEventBody::Complete {
                    contact_id,
                    wrap_up_secs,
                },
            }
        }
    };
    Ok(AgentEvent { id, agent_id, at, body })
}

/// RFC 3339 in UTC with milliseconds, as the router writes times.
pub use super::timefmt::rfc3339;

/// The router's outbound payloads (offers, notices, lifecycle events,
/// alerts, dead letters), in their own file.
pub use super::outbound::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(json: &str) -> Result<InboundEvent, BadMessage> {
        decode_inbound("email", json.as_bytes())
    }

    const GOOD: &str = r#"{"v":1,"id":"e1","type":"message","channel":"email","conversation_id":"c1",
        "received_at":"2026-11-23T09:14:03+01:00","customer":{"id":"cust","tier":"vip"},
        "skills":["billing"],"priority":7,"extra":{"ignored":true}}"#;

    /// Every input the contract shows in full is accepted on the subject
    /// the page gives it: a JSON block with a `type`, on the last
    /// `omni.inbound.<channel>` or `omni.agent.<id>.<type>` subject named
    /// in the prose since the previous code block (else its channel's
    /// inbound subject), and the payload of each `nats pub` of the worked
    /// example, on that command's subject. The page is what an adapter or
    /// a desktop is written from.
    #[test]
    fn the_contracts_example_inputs_decode() {
        let page = include_str!("../../docs/contract.md");
        let subject = regex::Regex::new(r"omni\.(?:inbound\.[a-z]+|agent\.[A-Za-z0-9_-]+\.[a-z_]+)").expect("regex");
        let block = regex::Regex::new(r"(?s)```json\n(.*?)```").expect("regex");
        let publish = regex::Regex::new(r"nats pub (\S+) [^\n]*\\\n\s*'(\{[^\n]*\})'").expect("regex");
        let mut examples: Vec<(String, &str)> = Vec::new();
        for m in block.captures_iter(page) {
            let (whole, text) = (m.get(0).expect("match"), m.get(1).expect("group").as_str());
            let v: Value = serde_json::from_str(text).expect("a JSON block of the contract parses");
            let Some(ty) = v.get("type").and_then(Value::as_str) else {
                continue;
            };
            let prose = &page[page[..whole.start()].rfind("```").map_or(0, |k| k + 3)..whole.start()];
            let named = subject.find_iter(prose).last().map(|s| s.as_str().to_string());
            let on = named
                .or_else(|| {
                    v.get("channel")
                        .and_then(Value::as_str)
                        .map(|c| format!("omni.inbound.{c}"))
                })
                .unwrap_or_else(|| panic!("a {ty} example without its subject: {text}"));
            examples.push((on, text));
        }
        for m in publish.captures_iter(page) {
            let on = m.get(1).expect("subject").as_str().to_string();
            examples.push((on, m.get(2).expect("payload").as_str()));
        }
        let mut checked = Vec::new();
        for (on, text) in &examples {
            let decoded = match on.split('.').collect::<Vec<_>>()[..] {
                ["omni", "inbound", channel] => decode_inbound(channel, text.as_bytes()).map(drop),
                ["omni", "agent", agent, ty] => decode_agent(agent, ty, text.as_bytes()).map(drop),
                _ => panic!("an example on {on}, not an input subject: {text}"),
            };
            assert!(decoded.is_ok(), "the example on {on} is refused: {decoded:?}\n{text}");
            checked.push(on.rsplit('.').next().unwrap_or("").to_string());
        }
        for ty in ["email", "profile", "wrap_up", "accept", "respond", "complete"] {
            assert!(
                checked.iter().any(|t| t == ty),
                "no example on a {ty} subject in {checked:?}"
            );
        }
    }

    #[test]
    fn decodes_a_full_inbound_event_and_ignores_unknown_fields() {
        let e = inbound(GOOD).expect("test value");
        assert_eq!(e.channel, Channel::Email);
        assert_eq!(e.priority, Some(7));
        assert_eq!(e.customer.tier.as_deref(), Some("vip"));
        assert_eq!(rfc3339(e.received_at.expect("test value")), "2026-11-23T08:14:03.000Z");
    }

    #[test]
    fn inbound_errors_are_one_precise_line() {
        let cases = [
            (r#"{"v":1}"#, "missing field id"),
            ("not json", "payload is not valid JSON (line 1 column 2)"),
            ("[1]", "payload must be a JSON object, got an array"),
            (
                r#"{"v":1,"id":"e","type":"message","channel":"fax","conversation_id":"c","customer":{"id":"x"}}"#,
                r#"channel "fax" is not one of email, chat, social, voice"#,
            ),
            (
                r#"{"v":1,"id":"e","type":"message","channel":"chat","conversation_id":"c","customer":{"id":"x"}}"#,
                r#"channel chat does not match the subject's channel "email""#,
            ),
            (
                r#"{"v":1,"id":"e","type":"message","channel":"email","customer":{"id":"x"}}"#,
                "missing field conversation_id",
            ),
            (
                r#"{"v":1,"id":"e","type":"message","channel":"email","conversation_id":"c","customer":{"id":"x"},"priority":12}"#,
                "priority 12 is not in 0..9",
            ),
            (
                r#"{"v":2,"id":"e"}"#,
                "contract version 2 is not supported (this router speaks v1)",
            ),
            (
                r#"{"v":1,"id":"e","type":"call","channel":"email"}"#,
                r#"type "call" is not one of message, end"#,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(inbound(json).unwrap_err().0, want, "for {json}");
        }
    }

    #[test]
    fn size_limit_message_matches_the_contract_example() {
        let e = check_size(2_202_010, 1 << 20).unwrap_err();
        assert_eq!(e.0, "payload is 2.1 MiB, over the 1 MiB limit");
        assert!(check_size(10, 10).is_ok());
    }

    #[test]
    fn decodes_agent_events_and_checks_the_subject() {
        let p = br#"{"v":1,"id":"x","type":"profile","agent_id":"a1","skills":{"billing":7},"capacity":{"chat":2},"units":100}"#;
        let e = decode_agent("a1", "profile", p).expect("test value");
        match e.body {
            AgentEventBody::Profile {
                skills,
                capacity,
                units,
                ..
            } => {
                assert_eq!(skills.expect("test value").values().next(), Some(&7));
                assert_eq!(capacity.expect("test value").get(&Channel::Chat), Some(&2));
                assert_eq!(units, Some(100));
            }
            other => panic!("unexpected {other:?}"),
        }
        let bad_units = br#"{"v":1,"id":"x","type":"profile","agent_id":"a1","units":-5}"#;
        assert!(decode_agent("a1", "profile", bad_units)
            .unwrap_err()
            .0
            .contains("units"));
        let err = decode_agent("a2", "profile", p).unwrap_err();
        assert_eq!(err.0, r#"agent_id a1 does not match the subject's agent "a2""#);
        let err = decode_agent("a1", "presence", p).unwrap_err();
        assert_eq!(err.0, r#"type profile does not match the subject's type "presence""#);
        let p = br#"{"v":1,"id":"x","type":"presence","agent_id":"a1","status":"busy"}"#;
        assert_eq!(
            decode_agent("a1", "presence", p).unwrap_err().0,
            r#"status "busy" is not one of available, away, offline"#
        );
    }

    #[test]
    fn dead_letters_carry_binary_payloads_as_base64() {
        let at = Utc::now();
        let d = DeadLetterMsg::new("omni.inbound.email", &[0xff, 0x00], "payload is not UTF-8", at);
        assert_eq!(d.payload, None);
        assert_eq!(d.payload_base64.as_deref(), Some("/wA="));
        assert_eq!(d.payload_bytes, 2);
        assert!(!d.payload_truncated);
    }

    #[test]
    fn dead_letters_of_huge_payloads_copy_a_bounded_prefix() {
        let big = "é".repeat(DEAD_LETTER_MAX_COPY);
        let d = DeadLetterMsg::new("s", big.as_bytes(), "too big", Utc::now());
        assert!(d.payload_truncated);
        assert_eq!(d.payload_bytes, big.len());
        let copied = d.payload.expect("still text after a cut inside a character");
        assert!(copied.len() <= DEAD_LETTER_MAX_COPY && copied.len() > DEAD_LETTER_MAX_COPY - 2);
        assert!(to_json(&d).len() < 4 * DEAD_LETTER_MAX_COPY);
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Decoders return an error, never panic, whatever the bytes.
        #[test]
        fn decoders_never_panic_on_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), tok in "[a-z.]{0,12}") {
            let _ = decode_inbound(&tok, &bytes);
            let _ = decode_agent(&tok, &tok, &bytes);
        }

        /// Nor on well-formed JSON with any field replaced by any JSON value.
        #[test]
        fn decoders_never_panic_on_mutated_json(field in "(v|id|type|channel|conversation_id|received_at|customer|skills|queue|priority|attributes|agent_id|status|contact_id|skills|capacity|wrap_up_secs|at)", value in proptest::prop_oneof![
            proptest::strategy::Just(serde_json::Value::Null),
            proptest::num::i64::ANY.prop_map(serde_json::Value::from),
            proptest::num::f64::ANY.prop_map(serde_json::Value::from),
            ".{0,300}".prop_map(serde_json::Value::from),
            proptest::collection::vec(".{0,8}", 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,5}", proptest::num::i64::ANY, 0..4).prop_map(|m| serde_json::to_value(m).unwrap_or_default()),
        ]) {
            let _ = &value;
            for (sub, base) in [
                ("email", GOOD.to_string()),
                ("profile", r#"{"v":1,"id":"x","type":"profile","agent_id":"a1","skills":{"b":7},"capacity":{"chat":2}}"#.to_string()),
                ("complete", r#"{"v":1,"id":"x","type":"complete","agent_id":"a1","contact_id":"c","wrap_up_secs":5}"#.to_string()),
            ] {
                let mut v: serde_json::Value = serde_json::from_str(&base).expect("base parses");
                v[&field] = value.clone();
                let bytes = v.to_string().into_bytes();
                if sub == "email" {
                    let _ = decode_inbound(sub, &bytes);
                } else {
                    let _ = decode_agent("a1", sub, &bytes);
                }
            }
        }
    }
}
