//! `chat-webhook`: a web chat widget's or chat platform's session events,
//! in the project's JSON format, signed with HMAC-SHA256 over the raw body
//! (`X-Omniroute-Signature: sha256=<hex>`, see [`super::sign`]).
//!
//! ```json
//! {"type": "message", "session_id": "s-81f2", "message_id": "m-3",
//!  "visitor": {"id": "v-42", "name": "Ana", "email": "ana@example.com",
//!              "language": "es", "tier": "vip"},
//!  "text": "Where is my order?", "sent_at": "2026-11-23T09:14:03Z",
//!  "queue": "support", "skills": ["orders"], "priority": 5,
//!  "attributes": {"page": "/checkout"}}
//! ```
//!
//! | `type` | event | id |
//! |---|---|---|
//! | `start` (the visitor opened the chat; `text` may carry a pre-chat question) | `message`, opens the contact | `chat:<session_id>:start` |
//! | `message` (`message_id` required) | `message` | `chat:<session_id>:m:<message_id>` |
//! | `end` (the visitor closed the chat or it timed out) | `end` | `chat:<session_id>:end` |
//!
//! The conversation is `chat:<session_id>`; the customer is `visitor.id`
//! (`visitor.email` becomes the reply address). A body may be one object
//! or an array of up to [`MAX_BATCH`] objects; one bad item refuses the
//! whole request (nothing is published), so a sender's retry is all or
//! nothing. `queue`, `skills` and `priority` are checked as the router
//! checks them; the adapter's configured defaults fill what is absent.

use super::fields::{self, opt_obj, opt_str, req_str};
use super::{AdapterError, Customer, Decoded, Defaults, Event, EventType};
use crate::domain::Channel;
use chrono::{DateTime, Utc};

/// Items in one request.
pub const MAX_BATCH: usize = 100;

/// Decodes a verified request body.
pub fn decode(body: &[u8], adapter: &str, defaults: &Defaults, now: DateTime<Utc>) -> Result<Decoded, AdapterError> {
    let mut out = Decoded::default();
    for (i, o) in fields::objects(body, MAX_BATCH)?.iter().enumerate() {
        let e = one(o, adapter, now).map_err(|e| match e {
            AdapterError::Bad(m) if i > 0 => AdapterError::Bad(format!("item {i}: {m}")),
            other => other,
        })?;
        out.events.push(defaults.apply(e));
    }
    Ok(out)
}

fn one(o: &fields::Obj, adapter: &str, now: DateTime<Utc>) -> Result<Event, AdapterError> {
    let session = req_str(o, "session_id")?;
    let (kind, suffix) = match req_str(o, "type")? {
        "start" => (EventType::Message, "start".to_string()),
        "message" => (EventType::Message, format!("m:{}", req_str(o, "message_id")?)),
        "end" => (EventType::End, "end".to_string()),
        _ => return Err(AdapterError::bad("field type must be start, message or end")),
    };
    let visitor = opt_obj(o, "visitor")?.ok_or_else(|| AdapterError::bad("missing field visitor"))?;
    let customer = Customer {
        id: req_str(visitor, "id")
            .map_err(|e| AdapterError::Bad(format!("visitor: {e}")))?
            .to_string(),
        name: opt_str(visitor, "name")?.map(str::to_string),
        address: opt_str(visitor, "email")?.map(str::to_string),
        tier: opt_str(visitor, "tier")?.map(str::to_string),
        language: opt_str(visitor, "language")?.map(str::to_string),
    };
    let received = fields::time_or(o, "sent_at", now)?;
    let mut e = Event::new(
        kind,
        Channel::Chat,
        &format!("chat:{session}:{suffix}"),
        &format!("chat:{session}"),
        customer,
        received,
        adapter,
    );
    if kind == EventType::Message {
        e = e.with_text(opt_str(o, "text")?);
    }
    e.source.insert("kind".into(), "chat-webhook".into());
    fields::routing(o, &mut e)?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::decode_inbound;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("time")
    }

    fn dec(body: &str) -> Result<Decoded, AdapterError> {
        decode(body.as_bytes(), "web", &Defaults::default(), now())
    }

    #[test]
    fn a_session_becomes_a_contact_its_messages_and_its_end() {
        let d = dec(r#"[
            {"type":"start","session_id":"s1","visitor":{"id":"v1","email":"a@example.com"},"text":"hi","queue":"support"},
            {"type":"message","session_id":"s1","message_id":"m2","visitor":{"id":"v1"},"text":"order 7"},
            {"type":"end","session_id":"s1","visitor":{"id":"v1"}}]"#)
        .expect("valid");
        let ids: Vec<&str> = d.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["chat:s1:start", "chat:s1:m:m2", "chat:s1:end"]);
        assert!(d.events.iter().all(|e| e.conversation_id == "chat:s1"));
        assert_eq!(d.events[2].kind, EventType::End);
        assert_eq!(d.events[0].queue.as_deref(), Some("support"));
        assert_eq!(d.events[0].customer.address.as_deref(), Some("a@example.com"));
        for e in &d.events {
            decode_inbound("chat", &e.to_json()).expect("the router accepts it");
        }
    }

    #[test]
    fn defaults_fill_only_what_the_sender_left_out() {
        let defaults = Defaults {
            queue: Some("general".into()),
            skills: vec!["chat".into()],
            priority: Some(3),
            ..Defaults::default()
        };
        let body = r#"{"type":"start","session_id":"s","visitor":{"id":"v"},"priority":8}"#;
        let e = &decode(body.as_bytes(), "web", &defaults, now()).expect("valid").events[0];
        assert_eq!((e.queue.as_deref(), e.priority), (Some("general"), Some(8)));
        assert_eq!(e.skills, ["chat"]);
    }

    #[test]
    fn bad_items_refuse_the_whole_request_naming_the_field() {
        for (body, want) in [
            ("{", "not JSON"),
            ("[]", "empty batch"),
            ("3", "object"),
            (
                r#"{"type":"message","session_id":"s","visitor":{"id":"v"}}"#,
                "message_id",
            ),
            (r#"{"type":"typing","session_id":"s","visitor":{"id":"v"}}"#, "type"),
            (r#"{"type":"start","session_id":"s"}"#, "visitor"),
            (
                r#"{"type":"start","session_id":"s","visitor":{"id":"v"},"priority":12}"#,
                "priority",
            ),
            (
                r#"{"type":"start","session_id":"s","visitor":{"id":"v"},"queue":"a b"}"#,
                "queue",
            ),
            (
                r#"{"type":"start","session_id":"s","visitor":{"id":"v"},"sent_at":"yesterday"}"#,
                "sent_at",
            ),
            (r#"[{"type":"end","session_id":"s","visitor":{"id":"v"}}, 4]"#, "item 1"),
        ] {
            match dec(body) {
                Err(AdapterError::Bad(m)) => assert!(m.contains(want), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic_and_events_pass_the_router(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(d) = decode(&body, "web", &Defaults::default(), now()) {
                for e in d.events {
                    prop_assert!(decode_inbound("chat", &e.to_json()).is_ok());
                }
            }
        }

        #[test]
        fn arbitrary_field_values_never_panic(session in ".{0,300}", msg in ".{0,200}", visitor in ".{0,300}", text in ".{0,100}") {
            let body = serde_json::json!({"type":"message","session_id":session,"message_id":msg,"visitor":{"id":visitor},"text":text});
            if let Ok(d) = decode(body.to_string().as_bytes(), "web", &Defaults::default(), now()) {
                for e in d.events {
                    prop_assert!(decode_inbound("chat", &e.to_json()).is_ok());
                }
            }
        }
    }
}
