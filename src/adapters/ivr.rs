//! IVR (voice): call events into `voice` contacts, from Twilio-style voice
//! webhooks (form-encoded, `X-Twilio-Signature`, verified by the HTTP
//! layer) or from the project's JSON for Asterisk or FreeSWITCH dialplans
//! (signed like the chat webhook).
//!
//! Twilio posts `CallSid`, `From`, `To`, `CallStatus`, and after a
//! `<Gather>` `Digits` or `SpeechResult` (plus `CallerName` when looked up).
//! The JSON format, one object or an array of them:
//!
//! ```json
//! {"call_id": "1700000000.42", "status": "in-progress", "from": "+34600000000",
//!  "to": "+34910000000", "digits": "1", "speech": "billing please",
//!  "caller_name": "Ana Ruiz", "language": "es", "at": "2026-11-23T09:14:03Z"}
//! ```
//!
//! | status | event | id |
//! |---|---|---|
//! | `in-progress` with a menu choice (digits or speech) | `message`, the choice's queue, skills, language, priority | `voice:<call>:in-progress:choice` |
//! | `in-progress` without a choice, no menu configured | `message` with the adapter's defaults | `voice:<call>:in-progress` |
//! | `in-progress` without a choice while a menu is configured | nothing (`menu_pending`: the caller is still choosing) | — |
//! | `completed`, `busy`, `no-answer`, `canceled`, `failed` | `end` (a waiting call is abandoned) | `voice:<call>:<status>` |
//! | `queued`, `ringing` | nothing (`ringing`) | — |
//!
//! A menu choice matches `digits` exactly, or any of its `keywords` as a
//! whole word of the speech, case-insensitively; first match wins. A choice
//! that matches nothing still opens the contact, with the defaults and
//! `attributes.menu = "no_match"`. Conversation `voice:<call>`; customer the
//! caller's number (`unknown` on an end without one); `attributes` carry
//! `to`, `digits`, `speech` and `call_status`.
//!
//! Invariants: never panics; errors name fields, never numbers or speech.

use super::fields::{self, opt_str, req_str};
use super::{AdapterError, Customer, Decoded, Defaults, Event, EventType};
use crate::domain::Channel;
use chrono::{DateTime, Utc};

/// Calls in one JSON request.
pub const MAX_BATCH: usize = 100;

/// One menu choice: the caller pressed `digits` or said one of `keywords`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MenuChoice {
    pub digits: Option<String>,
    /// Matched case-insensitively as whole words inside the speech result.
    pub keywords: Vec<String>,
    pub queue: Option<String>,
    pub skills: Vec<String>,
    pub language: Option<String>,
    pub priority: Option<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct IvrSettings {
    pub adapter: String,
    pub menu: Vec<MenuChoice>,
    /// Applied after the menu choice (the choice wins).
    pub defaults: Defaults,
}

/// One call event, whatever the format.
struct Call<'a> {
    id: &'a str,
    status: &'a str,
    from: Option<&'a str>,
    to: Option<&'a str>,
    digits: Option<&'a str>,
    speech: Option<&'a str>,
    name: Option<&'a str>,
    language: Option<&'a str>,
    at: DateTime<Utc>,
}

/// Twilio's form parameters (signature already verified).
pub fn decode_twilio(
    params: &[(String, String)],
    s: &IvrSettings,
    now: DateTime<Utc>,
) -> Result<Decoded, AdapterError> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let call = Call {
        id: get("CallSid").ok_or_else(|| AdapterError::bad("missing CallSid"))?,
        status: get("CallStatus").ok_or_else(|| AdapterError::bad("missing CallStatus"))?,
        from: get("From"),
        to: get("To"),
        digits: get("Digits"),
        speech: get("SpeechResult"),
        name: get("CallerName"),
        language: None,
        at: now,
    };
    let mut out = Decoded::default();
    one(&call, s, "twilio", &mut out)?;
    Ok(out)
}

/// The project's JSON format (signature already verified).
pub fn decode_json(body: &[u8], s: &IvrSettings, now: DateTime<Utc>) -> Result<Decoded, AdapterError> {
    let mut out = Decoded::default();
    for (i, o) in fields::objects(body, MAX_BATCH)?.iter().enumerate() {
        let item = |e: AdapterError| match e {
            AdapterError::Bad(m) => AdapterError::Bad(format!("item {i}: {m}")),
            other => other,
        };
        let call = Call {
            id: req_str(o, "call_id").map_err(item)?,
            status: req_str(o, "status").map_err(item)?,
            from: opt_str(o, "from").map_err(item)?,
            to: opt_str(o, "to").map_err(item)?,
            digits: opt_str(o, "digits").map_err(item)?,
            speech: opt_str(o, "speech").map_err(item)?,
            name: opt_str(o, "caller_name").map_err(item)?,
            language: opt_str(o, "language").map_err(item)?,
            at: fields::time_or(o, "at", now).map_err(item)?,
        };
        one(&call, s, "json", &mut out).map_err(item)?;
    }
    Ok(out)
}

fn one(c: &Call<'_>, s: &IvrSettings, format: &str, out: &mut Decoded) -> Result<(), AdapterError> {
    let kind = match c.status {
        "in-progress" => EventType::Message,
        "completed" | "busy" | "no-answer" | "canceled" | "failed" => EventType::End,
        "queued" | "ringing" => {
            out.ignored.push("ringing");
            return Ok(());
        }
        _ => {
            return Err(AdapterError::bad(
                "status must be one of queued, ringing, in-progress, completed, busy, failed, no-answer, canceled",
            ))
        }
    };
    let chose = c.digits.is_some() || c.speech.is_some();
    if kind == EventType::Message && !chose && !s.menu.is_empty() {
        out.ignored.push("menu_pending");
        return Ok(());
    }
    let caller = match (kind, c.from) {
        (_, Some(f)) => f,
        (EventType::End, None) => "unknown",
        (EventType::Message, None) => return Err(AdapterError::bad("missing the caller's number (From / from)")),
    };
    let id = match (kind, chose) {
        (EventType::Message, true) => format!("voice:{}:in-progress:choice", c.id),
        (EventType::Message, false) => format!("voice:{}:in-progress", c.id),
        (EventType::End, _) => format!("voice:{}:{}", c.id, c.status),
    };
    let customer = Customer {
        id: caller.to_string(),
        name: c.name.map(str::to_string),
        address: c.from.map(str::to_string),
        language: c.language.map(str::to_string),
        ..Customer::default()
    };
    let mut e = Event::new(
        kind,
        Channel::Voice,
        &id,
        &format!("voice:{}", c.id),
        customer,
        c.at,
        &s.adapter,
    );
    e.source.insert("kind".into(), "ivr-webhook".into());
    e.source.insert("format".into(), format.into());
    e.attributes.insert("call_status".into(), c.status.into());
    for (k, v) in [("to", c.to), ("digits", c.digits), ("speech", c.speech)] {
        if let Some(v) = v {
            e.attributes.insert(k.into(), fields::clip(v, 256).into());
        }
    }
    if kind == EventType::Message && chose {
        match choose(&s.menu, c.digits, c.speech) {
            Some(m) => {
                e.queue.clone_from(&m.queue);
                e.skills.clone_from(&m.skills);
                e.priority = m.priority;
                if e.customer.language.is_none() {
                    e.customer.language.clone_from(&m.language);
                }
            }
            None if !s.menu.is_empty() => {
                e.attributes.insert("menu".into(), "no_match".into());
            }
            None => {}
        }
    }
    out.events.push(s.defaults.apply(e));
    Ok(())
}

/// The first choice whose digits equal `digits`, or one of whose keywords
/// is a whole word of `speech` (case-insensitive).
fn choose<'a>(menu: &'a [MenuChoice], digits: Option<&str>, speech: Option<&str>) -> Option<&'a MenuChoice> {
    let words: Vec<String> = speech
        .map(|s| {
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default();
    menu.iter().find(|m| {
        (digits.is_some() && m.digits.as_deref() == digits)
            || m.keywords.iter().any(|k| {
                let k = k.to_lowercase();
                let kw: Vec<&str> = k
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .collect();
                !kw.is_empty() && words.windows(kw.len()).any(|w| w.iter().zip(&kw).all(|(a, b)| a == b))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::decode_inbound;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("time")
    }

    fn menu() -> IvrSettings {
        IvrSettings {
            adapter: "phone".into(),
            menu: vec![
                MenuChoice {
                    digits: Some("1".into()),
                    keywords: vec!["billing".into(), "credit card".into()],
                    queue: Some("billing".into()),
                    priority: Some(6),
                    ..MenuChoice::default()
                },
                MenuChoice {
                    digits: Some("2".into()),
                    keywords: vec!["internet".into()],
                    queue: Some("tech".into()),
                    skills: vec!["fiber".into()],
                    language: Some("es".into()),
                    ..MenuChoice::default()
                },
            ],
            defaults: Defaults {
                queue: Some("general".into()),
                ..Defaults::default()
            },
        }
    }

    fn twilio(pairs: &[(&str, &str)], s: &IvrSettings) -> Result<Decoded, AdapterError> {
        let p: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        decode_twilio(&p, s, now())
    }

    fn valid(d: &Decoded) {
        for e in &d.events {
            decode_inbound("voice", &e.to_json()).expect("the router accepts it");
        }
    }

    const CALL: [(&str, &str); 4] = [
        ("CallSid", "CA1"),
        ("From", "+34600000000"),
        ("To", "+34910000000"),
        ("CallStatus", "in-progress"),
    ];

    #[test]
    fn without_a_menu_an_answered_call_opens_a_contact() {
        let d = twilio(&CALL, &IvrSettings::default()).expect("valid");
        valid(&d);
        let e = &d.events[0];
        assert_eq!(
            (e.id.as_str(), e.conversation_id.as_str(), e.kind),
            ("voice:CA1:in-progress", "voice:CA1", EventType::Message)
        );
        assert_eq!(e.customer.id, "+34600000000");
        assert_eq!(e.attributes["to"], "+34910000000");
    }

    #[test]
    fn with_a_menu_the_call_waits_for_the_choice_by_digits() {
        let s = menu();
        let d = twilio(&CALL, &s).expect("valid");
        assert_eq!((d.events.len(), d.ignored.as_slice()), (0, ["menu_pending"].as_slice()));
        let mut chose = CALL.to_vec();
        chose.push(("Digits", "2"));
        let d = twilio(&chose, &s).expect("valid");
        valid(&d);
        let e = &d.events[0];
        assert_eq!(e.id, "voice:CA1:in-progress:choice");
        assert_eq!(
            (e.queue.as_deref(), e.skills.as_slice(), e.customer.language.as_deref()),
            (Some("tech"), ["fiber".to_string()].as_slice(), Some("es"))
        );
    }

    #[test]
    fn speech_matches_keywords_as_whole_words_ignoring_case() {
        let s = menu();
        let mut said = CALL.to_vec();
        said.push(("SpeechResult", "My CREDIT card was charged twice"));
        let e = &twilio(&said, &s).expect("valid").events[0];
        assert_eq!((e.queue.as_deref(), e.priority), (Some("billing"), Some(6)));
        let mut partial = CALL.to_vec();
        partial.push(("SpeechResult", "rebilling"));
        let e = &twilio(&partial, &s).expect("valid").events[0];
        assert_eq!(e.attributes.get("menu"), Some(&serde_json::Value::from("no_match")));
        assert_eq!(e.queue.as_deref(), Some("general"), "defaults when nothing matches");
    }

    #[test]
    fn terminal_statuses_end_the_call_and_ringing_is_ignored() {
        for st in ["completed", "busy", "no-answer", "canceled", "failed"] {
            let d = twilio(&[("CallSid", "CA9"), ("CallStatus", st)], &menu()).expect("valid");
            valid(&d);
            let e = &d.events[0];
            assert_eq!(
                (e.kind, e.id.clone(), e.customer.id.as_str()),
                (EventType::End, format!("voice:CA9:{st}"), "unknown")
            );
        }
        for st in ["queued", "ringing"] {
            let d = twilio(&[("CallSid", "CA9"), ("CallStatus", st)], &menu()).expect("valid");
            assert_eq!((d.events.len(), d.ignored.as_slice()), (0, ["ringing"].as_slice()));
        }
    }

    #[test]
    fn missing_or_unknown_fields_are_refused_without_caller_data() {
        for pairs in [
            vec![("CallStatus", "in-progress")],
            vec![("CallSid", "CA1")],
            vec![("CallSid", "CA1"), ("CallStatus", "dancing")],
        ] {
            assert!(
                matches!(twilio(&pairs, &menu()), Err(AdapterError::Bad(_))),
                "{pairs:?}"
            );
        }
        match twilio(
            &[("CallSid", "CA1"), ("CallStatus", "in-progress"), ("Digits", "1")],
            &menu(),
        ) {
            Err(AdapterError::Bad(m)) => assert!(m.contains("From"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_json_format_takes_one_call_or_a_batch() {
        let one =
            br#"{"call_id":"1700.42","status":"in-progress","from":"+1555","digits":"1","at":"2026-11-23T09:14:03Z"}"#;
        let d = decode_json(one, &menu(), now()).expect("valid");
        valid(&d);
        assert_eq!(d.events[0].queue.as_deref(), Some("billing"));
        assert_eq!(d.events[0].source["format"], "json");
        let batch = br#"[{"call_id":"A","status":"in-progress","from":"+1","speech":"internet down"},{"call_id":"A","status":"completed"}]"#;
        let d = decode_json(batch, &menu(), now()).expect("valid");
        assert_eq!(
            d.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventType::Message, EventType::End]
        );
        match decode_json(
            br#"[{"call_id":"A","status":"completed"},{"status":"completed"}]"#,
            &menu(),
            now(),
        ) {
            Err(AdapterError::Bad(m)) => assert!(m.starts_with("item 1"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(d) = decode_json(&body, &menu(), now()) {
                for e in d.events {
                    prop_assert!(decode_inbound("voice", &e.to_json()).is_ok());
                }
            }
        }

        #[test]
        fn arbitrary_params_never_panic(params in proptest::collection::vec((".{0,12}", ".{0,300}"), 0..8), sid in ".{0,200}", status in prop::sample::select(vec!["in-progress", "completed", "ringing", "x"])) {
            let mut p: Vec<(String, String)> = params;
            p.push(("CallSid".into(), sid));
            p.push(("CallStatus".into(), status.into()));
            for s in [menu(), IvrSettings::default()] {
                if let Ok(d) = decode_twilio(&p, &s, now()) {
                    for e in d.events {
                        prop_assert!(decode_inbound("voice", &e.to_json()).is_ok());
                    }
                }
            }
        }
    }
}
