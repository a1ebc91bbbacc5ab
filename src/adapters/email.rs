//! Email: one raw RFC 5322 message (from IMAP or the `email-webhook`) into
//! at most one `message` event on channel `email`. MIME is parsed by
//! mail-parser (the 0.11 line; 1.0 needs a newer toolchain).
//!
//! | event field | from |
//! |---|---|
//! | `id` | `mail:<Message-ID>`; without one, `mail:sha256:<hex of the raw bytes>` (stable across retries) |
//! | `conversation_id` | `mail:<thread root>`: the first `References` entry, else the first `In-Reply-To`, else the message's own id, so replies attach to the open contact |
//! | `customer.id` | the From address, lower-cased; `name` the display name; `address` the address |
//! | `subject`, `text` | Subject; the first plain-text body (derived from HTML when there is none), clipped |
//! | `attributes` | `attachments`: `[{name, size, content_type}]` (at most 50, never content; `attachments_truncated` beyond), `message_id`, `in_reply_to` |
//! | `source` | `adapter`, `kind` (`email-imap` / `email-webhook`), `mailbox` |
//!
//! Not routed (the result lists why in `ignored`):
//! - `auto_reply`: `Auto-Submitted` other than `no` (RFC 3834);
//!   `Precedence: bulk`, `junk` or `auto_reply`; `X-Autoreply`,
//!   `X-Autorespond` or `X-Autoresponse` present;
//!   `X-Auto-Response-Suppress: All` or `OOF` sent by an auto-responder
//!   is not enough on its own (clients set it on ordinary mail);
//! - `bounce`: a `multipart/report` with `report-type` `delivery-status`
//!   or `disposition-notification`, or mail from `MAILER-DAEMON`.
//!
//! Invariants: never panics on any bytes; errors are one line naming what
//! is missing, never quoting content or addresses.

use super::{AdapterError, Customer, Decoded, Defaults, Event, EventType};
use crate::domain::Channel;
use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Attachments listed per message.
pub const MAX_ATTACHMENTS: usize = 50;

/// What the configuration gives the decoder.
#[derive(Debug, Clone, Default)]
pub struct EmailSettings {
    /// Adapter instance name (`source.adapter`).
    pub adapter: String,
    /// `email-imap` or `email-webhook` (`source.kind`).
    pub kind: &'static str,
    /// The IMAP mailbox the message came from (`source.mailbox`).
    pub mailbox: Option<String>,
    /// Queue, skills, priority, tier, language for every event.
    pub defaults: Defaults,
}

/// Decodes one raw message.
pub fn decode(raw: &[u8], s: &EmailSettings, now: DateTime<Utc>) -> Result<Decoded, AdapterError> {
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| AdapterError::bad("not an RFC 5322 message"))?;
    if let Some(why) = not_routed(&msg) {
        return Ok(Decoded {
            events: Vec::new(),
            ignored: vec![why],
        });
    }
    let (name, address) = from(msg.from()).ok_or_else(|| AdapterError::bad("message has no From address"))?;
    let own = msg
        .message_id()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("sha256:{}", super::hex(&Sha256::digest(raw))));
    let root = first_id(msg.references())
        .or_else(|| first_id(msg.in_reply_to()))
        .unwrap_or_else(|| own.clone());
    let customer = Customer {
        id: address.to_ascii_lowercase(),
        name,
        address: Some(address),
        ..Customer::default()
    };
    let mut e = Event::new(
        EventType::Message,
        Channel::Email,
        &format!("mail:{own}"),
        &format!("mail:{root}"),
        customer,
        now,
        &s.adapter,
    )
    .with_subject(msg.subject())
    .with_text(msg.body_text(0).as_deref());
    e.source.insert("kind".into(), s.kind.into());
    if let Some(m) = &s.mailbox {
        e.source.insert("mailbox".into(), m.clone().into());
    }
    if let Some(id) = msg.message_id() {
        e.attributes
            .insert("message_id".into(), super::clip_chars(id, 256).into());
    }
    if let Some(r) = first_id(msg.in_reply_to()) {
        e.attributes
            .insert("in_reply_to".into(), super::clip_chars(&r, 256).into());
    }
    let attachments: Vec<Value> = msg
        .attachments()
        .take(MAX_ATTACHMENTS + 1)
        .map(|a| {
            let ct = a
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")))
                .unwrap_or_else(|| "application/octet-stream".into());
            json!({
                "name": super::clip_chars(a.attachment_name().unwrap_or("unnamed"), 256),
                "size": a.len(),
                "content_type": super::clip_chars(&ct, 128),
            })
        })
        .collect();
    if attachments.len() > MAX_ATTACHMENTS {
        e.attributes.insert("attachments_truncated".into(), true.into());
    }
    if !attachments.is_empty() {
        e.attributes.insert(
            "attachments".into(),
            Value::Array(attachments.into_iter().take(MAX_ATTACHMENTS).collect()),
        );
    }
    Ok(Decoded {
        events: vec![s.defaults.apply(e)],
        ignored: Vec::new(),
    })
}

/// Why a message is not a customer writing, if it is not.
fn not_routed(msg: &mail_parser::Message<'_>) -> Option<&'static str> {
    let raw = |h: &str| msg.header_raw(h).map(|v| v.trim().to_ascii_lowercase());
    if let Some(ct) = msg.content_type() {
        let report = ct.ctype().eq_ignore_ascii_case("multipart")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"));
        let kind = ct.attribute("report-type").map(str::to_ascii_lowercase);
        if report && matches!(kind.as_deref(), Some("delivery-status" | "disposition-notification")) {
            return Some("bounce");
        }
    }
    if from(msg.from()).is_some_and(|(_, a)| a.to_ascii_lowercase().starts_with("mailer-daemon@")) {
        return Some("bounce");
    }
    if raw("auto-submitted").is_some_and(|v| !v.starts_with("no")) {
        return Some("auto_reply");
    }
    if raw("precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "auto_reply")) {
        return Some("auto_reply");
    }
    if ["x-autoreply", "x-autorespond", "x-autoresponse"]
        .iter()
        .any(|h| msg.header_raw(*h).is_some())
    {
        return Some("auto_reply");
    }
    None
}

/// The first address of From: (display name, address).
fn from(a: Option<&Address<'_>>) -> Option<(Option<String>, String)> {
    let first = a?.first()?;
    let address = first.address()?.trim();
    if address.is_empty() {
        return None;
    }
    let name = first
        .name()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Some((name, address.to_string()))
}

/// The first message id of a References / In-Reply-To header.
fn first_id(v: &HeaderValue<'_>) -> Option<String> {
    v.as_text_list()?
        .iter()
        .map(|s| s.trim())
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::decode_inbound;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("time")
    }

    fn settings() -> EmailSettings {
        EmailSettings {
            adapter: "mail".into(),
            kind: "email-imap",
            mailbox: Some("INBOX".into()),
            defaults: Defaults::default(),
        }
    }

    fn one(raw: &str) -> Event {
        let d = decode(raw.as_bytes(), &settings(), now()).expect("decodes");
        assert!(d.ignored.is_empty(), "{:?}", d.ignored);
        let e = d.events.into_iter().next().expect("one event");
        decode_inbound("email", &e.to_json()).expect("the router accepts it");
        e
    }

    const PLAIN: &str = "From: Ana Ruiz <Ana@Example.com>\r\nTo: support@example.com\r\nSubject: Refund\r\nMessage-ID: <a1@example.com>\r\n\r\nI was charged twice.\r\n";

    #[test]
    fn a_plain_message_maps_sender_subject_text_and_ids() {
        let e = one(PLAIN);
        assert_eq!(e.id, "mail:a1@example.com");
        assert_eq!(e.conversation_id, "mail:a1@example.com");
        assert_eq!(e.customer.id, "ana@example.com");
        assert_eq!(e.customer.name.as_deref(), Some("Ana Ruiz"));
        assert_eq!(e.customer.address.as_deref(), Some("Ana@Example.com"));
        assert_eq!(e.subject.as_deref(), Some("Refund"));
        assert_eq!(e.text.as_deref().map(str::trim), Some("I was charged twice."));
        assert_eq!(e.source.get("mailbox"), Some(&Value::from("INBOX")));
    }

    #[test]
    fn an_html_only_message_gets_text_derived_from_it() {
        let e = one(
            "From: a@example.com\r\nMessage-ID: <h@x>\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>there</b></p>\r\n",
        );
        assert!(
            e.text
                .as_deref()
                .is_some_and(|t| t.contains("Hello") && !t.contains("<b>")),
            "{:?}",
            e.text
        );
    }

    #[test]
    fn replies_thread_onto_the_root_of_their_conversation() {
        let reply = "From: a@example.com\r\nMessage-ID: <r2@x>\r\nIn-Reply-To: <r1@x>\r\nReferences: <root@x> <r1@x>\r\n\r\nmore\r\n";
        assert_eq!(one(reply).conversation_id, "mail:root@x");
        let only_irt = "From: a@example.com\r\nMessage-ID: <r3@x>\r\nIn-Reply-To: <r1@x>\r\n\r\nmore\r\n";
        let e = one(only_irt);
        assert_eq!((e.conversation_id.as_str(), e.id.as_str()), ("mail:r1@x", "mail:r3@x"));
    }

    #[test]
    fn a_message_without_message_id_gets_a_stable_id() {
        let raw = "From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n";
        let (a, b) = (one(raw), one(raw));
        assert!(a.id.starts_with("mail:sha256:"));
        assert_eq!(
            (a.id.as_str(), a.conversation_id.as_str()),
            (b.id.as_str(), b.conversation_id.as_str())
        );
        assert_ne!(a.id, one("From: a@example.com\r\nSubject: y\r\n\r\nbody\r\n").id);
    }

    #[test]
    fn attachments_are_listed_by_name_and_size_without_content() {
        let raw = "From: a@example.com\r\nMessage-ID: <att@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29ybGQ=\r\n--b--\r\n";
        let e = one(raw);
        let att = &e.attributes["attachments"][0];
        assert_eq!(att["name"], "invoice.pdf");
        assert_eq!(att["size"], 11);
        assert_eq!(att["content_type"], "application/pdf");
        assert!(
            !e.to_json().windows(8).any(|w| w == b"SGVsbG8g"),
            "no attachment content"
        );
    }

    #[test]
    fn auto_replies_and_bounces_are_not_routed() {
        for (headers, want) in [
            ("Auto-Submitted: auto-replied\r\n", "auto_reply"),
            ("Precedence: bulk\r\n", "auto_reply"),
            ("Precedence: junk\r\n", "auto_reply"),
            ("X-Autoreply: yes\r\n", "auto_reply"),
            ("X-Autorespond: yes\r\n", "auto_reply"),
            (
                "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n",
                "bounce",
            ),
        ] {
            let raw = format!("From: a@example.com\r\nMessage-ID: <x@y>\r\n{headers}\r\nbody\r\n--b--\r\n");
            let d = decode(raw.as_bytes(), &settings(), now()).expect("decodes");
            assert!(d.events.is_empty(), "{headers}");
            assert_eq!(d.ignored, [want], "{headers}");
        }
        let daemon = decode(
            b"From: MAILER-DAEMON@mx.example.com\r\n\r\nfailed\r\n",
            &settings(),
            now(),
        )
        .expect("ok");
        assert_eq!(daemon.ignored, ["bounce"]);
        // Auto-Submitted: no is a person writing.
        one("From: a@example.com\r\nAuto-Submitted: no\r\nMessage-ID: <p@x>\r\n\r\nhi\r\n");
    }

    #[test]
    fn a_message_without_from_is_refused_without_quoting_it() {
        match decode(b"Subject: secret stuff\r\n\r\nbody\r\n", &settings(), now()) {
            Err(AdapterError::Bad(m)) => assert!(!m.contains("secret"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(d) = decode(&raw, &settings(), now()) {
                for e in d.events {
                    prop_assert!(decode_inbound("email", &e.to_json()).is_ok());
                }
            }
        }

        #[test]
        fn mutated_messages_never_panic(at in 0usize..200, bytes in proptest::collection::vec(any::<u8>(), 1..40)) {
            let mut raw = PLAIN.as_bytes().to_vec();
            let at = at.min(raw.len());
            raw.splice(at..at, bytes);
            if let Ok(d) = decode(&raw, &settings(), now()) {
                for e in d.events {
                    prop_assert!(decode_inbound("email", &e.to_json()).is_ok());
                }
            }
        }
    }
}
