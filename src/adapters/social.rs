//! `social-webhook`: Meta's webhook shape (Facebook Messenger, Instagram
//! messaging, WhatsApp Cloud API) and a generic signed JSON format for other
//! networks.
//!
//! **Meta** (`format = "meta"`): the GET verification handshake is answered
//! by the HTTP layer with [`verify_handshake`]; POSTs carry
//! `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256 of the raw body with
//! the app secret). A POST is a batch: every customer message in every
//! entry becomes one event:
//!
//! | `object` | where messages are | event id | conversation | customer |
//! |---|---|---|---|---|
//! | `page` (Messenger) | `entry[].messaging[]` with `message` | `messenger:<mid>` | `messenger:<entry.id>:<sender.id>` | `messenger:<sender.id>` |
//! | `instagram` | same | `instagram:<mid>` | `instagram:<entry.id>:<sender.id>` | `instagram:<sender.id>` |
//! | `whatsapp_business_account` | `entry[].changes[].value.messages[]` | `whatsapp:<id>` | `whatsapp:<metadata.phone_number_id>:<from>` | `whatsapp:<from>` (name from `contacts[].profile.name`) |
//!
//! Not routed, counted as ignored: echoes of the page's own messages
//! (`is_echo`), delivery and read receipts, reactions, WhatsApp `statuses`,
//! and any other field. Text is `message.text` (`text.body` on WhatsApp);
//! other message types (images, audio, locations) open the contact with
//! `attributes.message_type` and no text, so an agent still answers.
//!
//! **Generic** (`format = "generic"`), signed like the chat webhook
//! (`X-Omniroute-Signature`): one object or an array of
//! `{"platform": "mastodon", "message_id": "…", "thread_id": "…" (optional,
//! defaults to the sender), "sender": {"id": "…", "name": "…"}, "text": "…",
//! "sent_at": "RFC 3339", "queue"/"skills"/"priority"/"attributes"}`;
//! event id `<platform>:<message_id>`, conversation
//! `<platform>:<thread_id>`, customer `<platform>:<sender.id>`.
//!
//! Invariants: never panics on any body; errors name fields, never content.

use super::fields::{self, opt_obj, opt_str, req_str, Obj};
use super::{AdapterError, Customer, Decoded, Defaults, Event, EventType};
use crate::domain::Channel;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Messages in one generic request (Meta batches are bounded by the body
/// size limit).
pub const MAX_BATCH: usize = 100;

/// The GET handshake: `hub.mode=subscribe` and the configured verify token
/// return the challenge to echo; anything else is refused.
pub fn verify_handshake<'a>(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
    expected: &str,
) -> Result<&'a str, AdapterError> {
    if mode != Some("subscribe") {
        return Err(AdapterError::bad("hub.mode must be subscribe"));
    }
    let given = token.unwrap_or_default();
    // Constant-time enough: compare digests, not the strings.
    use sha2::{Digest, Sha256};
    if expected.is_empty() || Sha256::digest(given.as_bytes()) != Sha256::digest(expected.as_bytes()) {
        return Err(AdapterError::Unauthorized("hub.verify_token does not match".into()));
    }
    challenge
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or_else(|| AdapterError::bad("missing hub.challenge"))
}

/// Decodes a verified Meta webhook POST.
pub fn decode_meta(
    body: &[u8],
    adapter: &str,
    defaults: &Defaults,
    now: DateTime<Utc>,
) -> Result<Decoded, AdapterError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| AdapterError::bad("body is not JSON"))?;
    let o = v
        .as_object()
        .ok_or_else(|| AdapterError::bad("body must be an object"))?;
    let platform = match req_str(o, "object")? {
        "page" => "messenger",
        "instagram" => "instagram",
        "whatsapp_business_account" => "whatsapp",
        _ => {
            return Err(AdapterError::bad(
                "field object must be page, instagram or whatsapp_business_account",
            ))
        }
    };
    let entries = o
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| AdapterError::bad("field entry must be an array"))?;
    let mut out = Decoded::default();
    for entry in entries {
        let entry = entry
            .as_object()
            .ok_or_else(|| AdapterError::bad("entry items must be objects"))?;
        let entry_id = id_str(entry.get("id")).unwrap_or_default();
        if platform == "whatsapp" {
            whatsapp(entry, adapter, now, &mut out)?;
        } else {
            for m in entry.get("messaging").and_then(Value::as_array).into_iter().flatten() {
                let Some(m) = m.as_object() else { continue };
                messenger(m, platform, &entry_id, adapter, now, &mut out)?;
            }
        }
    }
    out.events = out.events.into_iter().map(|e| defaults.apply(e)).collect();
    Ok(out)
}

fn meta_event(platform: &str, mid: &str, conv: &str, customer: Customer, at: DateTime<Utc>, adapter: &str) -> Event {
    let mut e = Event::new(
        EventType::Message,
        Channel::Social,
        &format!("{platform}:{mid}"),
        conv,
        customer,
        at,
        adapter,
    );
    e.source.insert("kind".into(), "social-webhook".into());
    e.source.insert("platform".into(), platform.into());
    e
}

fn messenger(
    m: &Obj,
    platform: &str,
    entry_id: &str,
    adapter: &str,
    now: DateTime<Utc>,
    out: &mut Decoded,
) -> Result<(), AdapterError> {
    let Some(msg) = opt_obj(m, "message")? else {
        out.ignored
            .push(if m.contains_key("read") || m.contains_key("delivery") {
                "receipt"
            } else {
                "other"
            });
        return Ok(());
    };
    if msg.get("is_echo").and_then(Value::as_bool) == Some(true) {
        out.ignored.push("echo");
        return Ok(());
    }
    let sender = opt_obj(m, "sender")?
        .and_then(|s| id_str(s.get("id")))
        .ok_or_else(|| AdapterError::bad("messaging item without sender.id"))?;
    let mid = req_str(msg, "mid")?;
    let at = millis(m.get("timestamp")).unwrap_or(now);
    let customer = Customer {
        id: format!("{platform}:{sender}"),
        address: Some(sender.clone()),
        ..Customer::default()
    };
    let mut e = meta_event(
        platform,
        mid,
        &format!("{platform}:{entry_id}:{sender}"),
        customer,
        at,
        adapter,
    )
    .with_text(opt_str(msg, "text")?);
    if e.text.is_none() {
        e.attributes.insert("message_type".into(), "attachment".into());
    }
    out.events.push(e);
    Ok(())
}

fn whatsapp(entry: &Obj, adapter: &str, now: DateTime<Utc>, out: &mut Decoded) -> Result<(), AdapterError> {
    for change in entry.get("changes").and_then(Value::as_array).into_iter().flatten() {
        let Some(value) = change.get("value").and_then(Value::as_object) else {
            out.ignored.push("other");
            continue;
        };
        if let Some(s) = value.get("statuses").and_then(Value::as_array) {
            out.ignored.extend(s.iter().map(|_| "receipt"));
        }
        let phone_id = value
            .get("metadata")
            .and_then(|m| id_str(m.get("phone_number_id")))
            .unwrap_or_default();
        let contacts = value.get("contacts").and_then(Value::as_array);
        for m in value.get("messages").and_then(Value::as_array).into_iter().flatten() {
            let m = m
                .as_object()
                .ok_or_else(|| AdapterError::bad("messages items must be objects"))?;
            let from = req_str(m, "from")?;
            let id = req_str(m, "id")?;
            let name = contacts.into_iter().flatten().find_map(|c| {
                (c.get("wa_id").and_then(Value::as_str) == Some(from))
                    .then(|| c.pointer("/profile/name").and_then(Value::as_str))
                    .flatten()
            });
            let at = opt_str(m, "timestamp")?
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .and_then(fields::on_wire)
                .unwrap_or(now);
            let customer = Customer {
                id: format!("whatsapp:{from}"),
                name: name.map(str::to_string),
                address: Some(from.to_string()),
                ..Customer::default()
            };
            let kind = opt_str(m, "type")?.unwrap_or("text");
            let text = m.get("text").and_then(|t| t.get("body")).and_then(Value::as_str);
            let mut e = meta_event(
                "whatsapp",
                id,
                &format!("whatsapp:{phone_id}:{from}"),
                customer,
                at,
                adapter,
            )
            .with_text(text);
            if kind != "text" {
                e.attributes
                    .insert("message_type".into(), fields::clip(kind, 32).into());
            }
            out.events.push(e);
        }
    }
    Ok(())
}

/// Decodes a verified generic-format body.
pub fn decode_generic(
    body: &[u8],
    adapter: &str,
    defaults: &Defaults,
    now: DateTime<Utc>,
) -> Result<Decoded, AdapterError> {
    let mut out = Decoded::default();
    for (i, o) in fields::objects(body, MAX_BATCH)?.iter().enumerate() {
        let e = generic(o, adapter, now).map_err(|e| match e {
            AdapterError::Bad(m) => AdapterError::Bad(format!("item {i}: {m}")),
            other => other,
        })?;
        out.events.push(defaults.apply(e));
    }
    Ok(out)
}

fn generic(o: &Obj, adapter: &str, now: DateTime<Utc>) -> Result<Event, AdapterError> {
    let platform = req_str(o, "platform")?;
    if platform.len() > 32
        || !platform
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(AdapterError::bad("field platform must be 1 to 32 of A-Z a-z 0-9 _ -"));
    }
    let mid = req_str(o, "message_id")?;
    let sender = opt_obj(o, "sender")?.ok_or_else(|| AdapterError::bad("missing field sender"))?;
    let sender_id = req_str(sender, "id").map_err(|e| AdapterError::Bad(format!("sender: {e}")))?;
    let thread = opt_str(o, "thread_id")?.unwrap_or(sender_id);
    let customer = Customer {
        id: format!("{platform}:{sender_id}"),
        name: opt_str(sender, "name")?.map(str::to_string),
        address: Some(sender_id.to_string()),
        ..Customer::default()
    };
    let at = fields::time_or(o, "sent_at", now)?;
    let mut e = meta_event(platform, mid, &format!("{platform}:{thread}"), customer, at, adapter)
        .with_text(opt_str(o, "text")?);
    fields::routing(o, &mut e)?;
    Ok(e)
}

/// Meta sends ids as strings, sometimes as numbers.
fn id_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn millis(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v?.as_i64()?).and_then(fields::on_wire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::decode_inbound;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("time")
    }

    fn meta(body: &str) -> Decoded {
        decode_meta(body.as_bytes(), "social", &Defaults::default(), now()).expect("valid")
    }

    #[test]
    fn the_handshake_echoes_the_challenge_only_for_the_right_token() {
        assert_eq!(
            verify_handshake(Some("subscribe"), Some("t"), Some("123"), "t"),
            Ok("123")
        );
        assert!(verify_handshake(Some("subscribe"), Some("x"), Some("123"), "t").is_err());
        assert!(verify_handshake(Some("unsubscribe"), Some("t"), Some("123"), "t").is_err());
        assert!(verify_handshake(Some("subscribe"), Some("t"), None, "t").is_err());
        assert!(verify_handshake(Some("subscribe"), Some(""), Some("1"), "").is_err());
    }

    #[test]
    fn every_messenger_message_of_a_batch_is_one_event_and_echoes_are_not() {
        let d = meta(
            r#"{"object":"page","entry":[
              {"id":"PAGE","time":1,"messaging":[
                {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE"},"timestamp":1790000000000,"message":{"mid":"m1","text":"hello"}},
                {"sender":{"id":"PAGE"},"recipient":{"id":"PSID1"},"timestamp":1,"message":{"mid":"m2","text":"hi","is_echo":true}},
                {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE"},"timestamp":2,"read":{"watermark":1}}]},
              {"id":"PAGE","time":1,"messaging":[
                {"sender":{"id":"PSID2"},"recipient":{"id":"PAGE"},"timestamp":3,"message":{"mid":"m3","attachments":[{"type":"image"}]}}]}]}"#,
        );
        let ids: Vec<&str> = d.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["messenger:m1", "messenger:m3"]);
        assert_eq!(d.events[0].conversation_id, "messenger:PAGE:PSID1");
        assert_eq!(d.events[0].customer.id, "messenger:PSID1");
        assert_eq!(d.events[0].text.as_deref(), Some("hello"));
        assert_eq!(
            d.events[1].attributes.get("message_type"),
            Some(&Value::from("attachment"))
        );
        assert_eq!(d.ignored, ["echo", "receipt"]);
        for e in &d.events {
            decode_inbound("social", &e.to_json()).expect("router accepts");
        }
    }

    #[test]
    fn whatsapp_messages_carry_the_profile_name_and_statuses_are_ignored() {
        let d = meta(
            r#"{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{
              "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"PN1"},
              "contacts":[{"profile":{"name":"Kerry"},"wa_id":"16315551234"}],
              "messages":[{"from":"16315551234","id":"wamid.A","timestamp":"1790000000","text":{"body":"Hello"},"type":"text"}],
              "statuses":[{"id":"wamid.B","status":"read"}]}}]}]}"#,
        );
        assert_eq!(d.events.len(), 1);
        let e = &d.events[0];
        assert_eq!(
            (e.id.as_str(), e.conversation_id.as_str(), e.customer.name.as_deref()),
            ("whatsapp:wamid.A", "whatsapp:PN1:16315551234", Some("Kerry"))
        );
        assert_eq!(d.ignored, ["receipt"]);
        decode_inbound("social", &e.to_json()).expect("router accepts");
    }

    #[test]
    fn the_generic_format_threads_by_thread_or_sender() {
        let d = decode_generic(
            br#"[{"platform":"mastodon","message_id":"1","sender":{"id":"@ana"},"text":"hi"},
                 {"platform":"mastodon","message_id":"2","thread_id":"t9","sender":{"id":"@ana"},"priority":4}]"#,
            "social",
            &Defaults::default(),
            now(),
        )
        .expect("valid");
        assert_eq!(d.events[0].conversation_id, "mastodon:@ana");
        assert_eq!(d.events[1].conversation_id, "mastodon:t9");
        assert_eq!(d.events[1].priority, Some(4));
        assert!(decode_generic(
            br#"{"platform":"a b","message_id":"1","sender":{"id":"x"}}"#,
            "s",
            &Defaults::default(),
            now()
        )
        .is_err());
    }

    #[test]
    fn malformed_meta_bodies_are_refused() {
        for body in [
            "",
            "[]",
            r#"{"object":"user","entry":[]}"#,
            r#"{"object":"page"}"#,
            r#"{"object":"page","entry":[1]}"#,
        ] {
            assert!(
                decode_meta(body.as_bytes(), "s", &Defaults::default(), now()).is_err(),
                "{body}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            for d in [decode_meta(&body, "s", &Defaults::default(), now()), decode_generic(&body, "s", &Defaults::default(), now())].into_iter().flatten() {
                for e in d.events {
                    prop_assert!(decode_inbound("social", &e.to_json()).is_ok());
                }
            }
        }

        #[test]
        fn arbitrary_meta_ids_never_panic(mid in ".{0,300}", sender in ".{0,300}", text in ".{0,64}",
            ts in prop_oneof![any::<i64>(), Just(253_402_300_800_000i64), Just(-62_167_219_200_001i64)]) {
            let body = serde_json::json!({"object":"page","entry":[{"id":"P","messaging":[
                {"sender":{"id":sender},"timestamp":ts,"message":{"mid":mid,"text":text}}]}]});
            if let Ok(d) = decode_meta(body.to_string().as_bytes(), "s", &Defaults::default(), now()) {
                for e in d.events {
                    prop_assert!(decode_inbound("social", &e.to_json()).is_ok());
                }
            }
        }
    }
}
