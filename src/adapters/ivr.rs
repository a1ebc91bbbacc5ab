//! IVR (voice): call events into `voice` contacts, from Twilio-style voice
//! webhooks (form-encoded, `X-Twilio-Signature`, verified by the HTTP
//! layer) or from the project's JSON for Asterisk or FreeSWITCH dialplans
//! (signed like the chat webhook, also verified by the HTTP layer).
//!
//! Twilio posts `CallSid`, `From`, `To`, `CallStatus`, and after a
//! `<Gather>` `Digits` or `SpeechResult` (plus `CallerName` when looked up):
//!
//! ```text
//! CallSid=CA42&From=%2B34600000000&To=%2B34910000000&CallStatus=in-progress&Digits=1
//! ```
//!
//! The JSON format, one object or an array of them (a batch, at most
//! [`MAX_BATCH`]); `at` is optional (RFC 3339, four-digit year), the
//! receipt time otherwise:
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
//! | anything else, or missing | refused (`Bad`) | — |
//!
//! Menu rule: a choice matches when `digits` equals its digits, or when any
//! of its `keywords` occurs as whole words of the speech, case-insensitively;
//! the first match in menu order wins and sets queue, skills, language and
//! priority; the adapter's defaults then fill what the choice left empty.
//! Digits or speech that match nothing still open the contact, with the
//! defaults only and `attributes.menu = "no_match"`. Blank digits or speech
//! count as no choice.
//!
//! Conversation `voice:<call>`; customer id and address the caller's number
//! (required on `in-progress`; `unknown` on an end without one), name the
//! caller name; `attributes` carry `to`, `digits`, `speech` (routing data)
//! and `call_status`; `source` carries `adapter` and `format` (`twilio` or
//! `json`).
//!
//! Invariants: never panics on any input; every event passes the router's
//! `decode_inbound`; errors name fields, never numbers, digits or speech.

use super::fields::{self, opt_str, req_str};
use super::{AdapterError, Customer, Decoded, Defaults, Event, EventType};
use crate::domain::Channel;
use chrono::{DateTime, Utc};

/// Calls in one JSON request.
pub const MAX_BATCH: usize = 100;
/// `to`, `digits` and `speech` attributes are clipped to this many characters.
const MAX_ATTR_CHARS: usize = 1024;

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

/// Each format's field names: call id, status, caller, dialled number,
/// digits, speech, caller name, language, time ("" = not in this format).
#[rustfmt::skip]
const TWILIO: [&str; 9] = ["CallSid", "CallStatus", "From", "To", "Digits", "SpeechResult", "CallerName", "", ""];
#[rustfmt::skip]
const JSON: [&str; 9] = ["call_id", "status", "from", "to", "digits", "speech", "caller_name", "language", "at"];

/// Twilio-style voice webhook: form parameters already parsed (and the
/// signature already verified) by the caller. The first of a repeated
/// parameter counts; empty values count as absent.
pub fn decode_twilio(
    params: &[(String, String)],
    s: &IvrSettings,
    now: DateTime<Utc>,
) -> Result<Decoded, AdapterError> {
    let mut o = fields::Obj::new();
    for (k, v) in params {
        if !k.is_empty() && TWILIO.contains(&k.as_str()) && !o.contains_key(k) {
            o.insert(k.clone(), v.as_str().into());
        }
    }
    let mut out = Decoded::default();
    one(&o, &TWILIO, "twilio", s, now, &mut out)?;
    Ok(out)
}

/// The project's JSON format (see the module doc): one object or a batch.
/// A bad item refuses the whole request, its error prefixed `item <i>: `.
pub fn decode_json(body: &[u8], s: &IvrSettings, now: DateTime<Utc>) -> Result<Decoded, AdapterError> {
    let mut out = Decoded::default();
    for (i, o) in fields::objects(body, MAX_BATCH)?.iter().enumerate() {
        one(o, &JSON, "json", s, now, &mut out).map_err(|e| match e {
            AdapterError::Bad(m) => AdapterError::Bad(format!("item {i}: {m}")),
            other => other,
        })?;
    }
    Ok(out)
}

/// One call event, its fields named by `n` (see [`JSON`]).
fn one(
    o: &fields::Obj,
    n: &[&str; 9],
    format: &str,
    s: &IvrSettings,
    now: DateTime<Utc>,
    out: &mut Decoded,
) -> Result<(), AdapterError> {
    let (call, status) = (req_str(o, n[0])?, req_str(o, n[1])?);
    let kind = match status {
        "in-progress" => EventType::Message,
        "completed" | "busy" | "no-answer" | "canceled" | "failed" => EventType::End,
        "queued" | "ringing" => {
            out.ignored.push("ringing");
            return Ok(());
        }
        _ => {
            return Err(AdapterError::bad(format!(
                "field {} must be one of queued, ringing, in-progress, completed, busy, failed, no-answer, canceled",
                n[1]
            )))
        }
    };
    let from = opt_str(o, n[2])?;
    let caller = match (kind, from) {
        (_, Some(f)) => f,
        (EventType::End, None) => "unknown",
        (EventType::Message, None) => return Err(AdapterError::bad(format!("missing field {}", n[2]))),
    };
    let (to, name, language) = (opt_str(o, n[3])?, opt_str(o, n[6])?, opt_str(o, n[7])?);
    // Whitespace-only digits or speech is no choice.
    let digits = opt_str(o, n[4])?.map(str::trim).filter(|d| !d.is_empty());
    let speech = opt_str(o, n[5])?.filter(|t| !t.trim().is_empty());
    let at = fields::time_or(o, n[8], now)?;
    let chose = digits.is_some() || speech.is_some();
    if kind == EventType::Message && !chose && !s.menu.is_empty() {
        out.ignored.push("menu_pending");
        return Ok(());
    }
    let id = match (kind, chose) {
        (EventType::Message, true) => format!("voice:{call}:in-progress:choice"),
        (EventType::Message, false) => format!("voice:{call}:in-progress"),
        (EventType::End, _) => format!("voice:{call}:{status}"),
    };
    let customer = Customer {
        id: caller.to_string(),
        name: name.map(str::to_string),
        address: from.map(str::to_string),
        language: language.map(str::to_string),
        ..Customer::default()
    };
    let conversation = format!("voice:{call}");
    let mut e = Event::new(kind, Channel::Voice, &id, &conversation, customer, at, &s.adapter);
    e.source.insert("format".into(), format.into());
    e.attributes.insert("call_status".into(), status.into());
    for (k, v) in [("to", to), ("digits", digits), ("speech", speech)] {
        if let Some(v) = v {
            e.attributes.insert(k.into(), fields::clip(v, MAX_ATTR_CHARS).into());
        }
    }
    if kind == EventType::Message && chose {
        match choose(&s.menu, digits, speech) {
            Some(m) => {
                e.queue.clone_from(&m.queue);
                e.skills.clone_from(&m.skills);
                e.priority = m.priority;
                if m.language.is_some() {
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

/// Lower-case words: runs of letters and digits.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The first choice whose digits equal `digits`, or one of whose keywords
/// occurs as consecutive whole words of `speech` (case-insensitive).
fn choose<'a>(menu: &'a [MenuChoice], digits: Option<&str>, speech: Option<&str>) -> Option<&'a MenuChoice> {
    let said = speech.map(words).unwrap_or_default();
    menu.iter().find(|m| {
        (digits.is_some() && m.digits.as_deref().map(str::trim) == digits)
            || m.keywords.iter().any(|k| {
                let kw = words(k);
                !kw.is_empty() && said.windows(kw.len()).any(|w| w == kw.as_slice())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::wire::decode_inbound;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("time")
    }

    fn choice(digits: &str, keywords: &[&str], queue: &str, skill: Option<&str>, lang: Option<&str>) -> MenuChoice {
        let mut m = MenuChoice::default();
        (m.digits, m.queue, m.language) = (Some(digits.into()), Some(queue.into()), lang.map(Into::into));
        (m.keywords, m.skills) = (
            keywords.iter().map(|k| k.to_string()).collect(),
            skill.into_iter().map(Into::into).collect(),
        );
        m
    }

    fn menu() -> IvrSettings {
        let mut billing = choice("1", &["billing", "credit card"], "billing", None, None);
        billing.priority = Some(6);
        let tech = choice("2", &["internet"], "tech", Some("fiber"), Some("es"));
        let mut s = IvrSettings {
            adapter: "phone".into(),
            menu: vec![billing, tech],
            ..IvrSettings::default()
        };
        (s.defaults.queue, s.defaults.skills) = (Some("general".into()), vec!["voice".into()]);
        s
    }

    const CALL: [(&str, &str); 5] = [
        ("CallSid", "CA1"),
        ("From", "+34600000000"),
        ("To", "+34910000000"),
        ("CallStatus", "in-progress"),
        ("CallerName", "Ana"),
    ];

    fn twilio(pairs: &[(&str, &str)], s: &IvrSettings) -> Result<Decoded, AdapterError> {
        let p: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        decode_twilio(&p, s, now())
    }

    /// The call answered, plus one parameter; the one event, checked by the router's decoder.
    fn answered(extra: (&str, &str), s: &IvrSettings) -> Event {
        let mut p = CALL.to_vec();
        p.push(extra);
        let d = twilio(&p, s).expect("valid");
        assert_eq!(d.events.len(), 1, "{d:?}");
        decode_inbound("voice", &d.events[0].to_json()).expect("the router accepts it");
        d.events[0].clone()
    }

    fn wire(e: &Event) -> Value {
        serde_json::from_slice(&e.to_json()).expect("JSON")
    }

    /// id, queue, skills, language, priority, menu attribute, as compact JSON.
    fn routing(e: &Event) -> String {
        let w = wire(e);
        let ptrs = "/id /queue /skills /customer/language /priority /attributes/menu".split(' ');
        Value::Array(ptrs.map(|p| w.pointer(p).cloned().unwrap_or(Value::Null)).collect()).to_string()
    }

    #[test]
    fn without_a_menu_an_answered_call_opens_a_contact() {
        let e = answered(("x", ""), &IvrSettings { menu: vec![], ..menu() });
        let want = json!({"v": 1, "id": "voice:CA1:in-progress", "type": "message", "channel": "voice",
            "conversation_id": "voice:CA1", "received_at": "2026-09-21T14:13:20.000Z",
            "customer": {"id": "+34600000000", "name": "Ana", "address": "+34600000000"},
            "skills": ["voice"], "queue": "general", "source": {"adapter": "phone", "format": "twilio"},
            "attributes": {"to": "+34910000000", "call_status": "in-progress"}});
        assert_eq!(wire(&e), want);
    }

    #[test]
    fn with_a_menu_the_call_waits_for_the_choice_by_digits() {
        for blank in [("x", ""), ("Digits", " "), ("SpeechResult", "")] {
            let mut p = CALL.to_vec();
            p.push(blank);
            let d = twilio(&p, &menu()).expect("valid");
            assert_eq!((d.events.len(), d.ignored.as_slice()), (0, ["menu_pending"].as_slice()));
        }
        let e = answered(("Digits", "2"), &menu());
        let want = r#"["voice:CA1:in-progress:choice","tech",["fiber","voice"],"es",null,null]"#;
        assert_eq!((routing(&e).as_str(), &e.attributes["digits"]), (want, &json!("2")));
    }

    #[test]
    fn speech_matches_keywords_as_whole_words_ignoring_case() {
        let e = answered(("SpeechResult", "My CREDIT card was charged twice"), &menu());
        let want = r#"["voice:CA1:in-progress:choice","billing",["voice"],null,6,null]"#;
        assert_eq!(
            (routing(&e).as_str(), &e.attributes["speech"]),
            (want, &json!("My CREDIT card was charged twice"))
        );
        let e = answered(("SpeechResult", "Internet, please!"), &menu());
        assert!(routing(&e).contains(r#","tech","#));
        let e = answered(("SpeechResult", "rebilling my internets"), &menu());
        assert!(routing(&e).ends_with(r#""no_match"]"#), "parts of words do not match");
    }

    #[test]
    fn no_match_opens_the_contact_with_the_defaults_only() {
        let e = answered(("Digits", "9"), &menu());
        let want = r#"["voice:CA1:in-progress:choice","general",["voice"],null,null,"no_match"]"#;
        assert_eq!(routing(&e), want);
    }

    #[test]
    fn terminal_statuses_end_the_call_and_ringing_is_ignored() {
        for st in ["completed", "busy", "no-answer", "canceled", "failed"] {
            for (from, id) in [("", "unknown"), ("+1555", "+1555")] {
                let d = twilio(&[("CallSid", "CA9"), ("CallStatus", st), ("From", from)], &menu()).expect("valid");
                let e = &d.events[0];
                decode_inbound("voice", &e.to_json()).expect("the router accepts it");
                let got = (e.kind, e.id.as_str(), e.customer.id.as_str());
                assert_eq!(got, (EventType::End, format!("voice:CA9:{st}").as_str(), id));
            }
        }
        for st in ["queued", "ringing"] {
            let d = twilio(&[("CallSid", "CA9"), ("CallStatus", st)], &menu()).expect("valid");
            assert_eq!((d.events.len(), d.ignored.as_slice()), (0, ["ringing"].as_slice()));
        }
    }

    #[test]
    fn missing_call_id_or_bad_status_is_refused_without_caller_data() {
        let f = ("From", "+34600000000");
        for pairs in [
            vec![("CallStatus", "in-progress"), f],
            vec![("CallSid", ""), ("CallStatus", "in-progress"), f],
            vec![("CallSid", "CA1"), f],
            vec![("CallSid", "CA1"), ("CallStatus", "+34600000000"), f],
            vec![("CallSid", "CA1"), ("CallStatus", "in-progress"), ("Digits", "1")],
        ] {
            match twilio(&pairs, &menu()) {
                Err(AdapterError::Bad(m)) => assert!(!m.contains("+34") && !m.contains("CA1"), "{m}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
        for body in [
            json!({"status": "completed"}),
            json!({"call_id": "A", "status": "hung up"}),
            json!({"call_id": "A", "status": "in-progress", "from": "+1", "at": "yesterday"}),
            json!({"call_id": "A", "status": "in-progress", "from": "+1", "at": "9999-12-31T23:59:59-23:59"}),
        ] {
            let r = decode_json(body.to_string().as_bytes(), &menu(), now());
            assert!(matches!(r, Err(AdapterError::Bad(_))), "{body}: {r:?}");
        }
    }

    #[test]
    fn the_json_format_takes_one_call_or_a_batch() {
        let one = json!({"call_id": "1700.42", "status": "in-progress", "from": "+1555", "digits": "1",
            "caller_name": "Bo", "language": "en", "at": "2026-11-23T09:14:03+01:00"});
        let d = decode_json(one.to_string().as_bytes(), &menu(), now()).expect("valid");
        let w = wire(&d.events[0]);
        let got = json!([w["queue"], w["customer"], w["received_at"], w["source"]["format"]]);
        let customer = json!({"id": "+1555", "address": "+1555", "name": "Bo", "language": "en"});
        assert_eq!(got, json!(["billing", customer, "2026-11-23T08:14:03.000Z", "json"]));
        let batch = json!([{"call_id": "A", "status": "ringing"},
            {"call_id": "A", "status": "in-progress", "from": "+1", "speech": "internet down"},
            {"call_id": "A", "status": "completed", "from": "+1"}]);
        let d = decode_json(batch.to_string().as_bytes(), &menu(), now()).expect("valid");
        for e in &d.events {
            decode_inbound("voice", &e.to_json()).expect("the router accepts it");
        }
        let got: Vec<_> = d
            .events
            .iter()
            .map(|e| (e.id.as_str(), e.customer.language.as_deref()))
            .collect();
        let want = [("voice:A:in-progress:choice", Some("es")), ("voice:A:completed", None)];
        assert_eq!(got, want, "the choice's language wins over the caller's");
        assert_eq!(d.ignored, ["ringing"]);
        let second_bad = br#"[{"call_id":"A","status":"completed"},{"status":"completed"}]"#;
        match decode_json(second_bad, &menu(), now()) {
            Err(AdapterError::Bad(m)) => assert!(m.starts_with("item 1"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    fn accepted(d: Result<Decoded, AdapterError>) -> Result<(), TestCaseError> {
        for e in d.map(|d| d.events).unwrap_or_default() {
            prop_assert!(decode_inbound("voice", &e.to_json()).is_ok(), "{:?}", e);
        }
        Ok(())
    }

    const NAMES: &str = "CallSid CallStatus From To Digits SpeechResult CallerName x";
    const STATUSES: [&str; 5] = ["in-progress", "completed", "ringing", "no-answer", "x"];

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_events_pass_the_router(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            params in proptest::collection::vec((prop::sample::select(NAMES.split(' ').collect::<Vec<_>>()), ".{0,300}"), 0..10),
            status in prop::sample::select(STATUSES.to_vec()),
            f in proptest::collection::vec(".{0,200}", 7),
            at in prop::option::of(-70_000_000_000i64..260_000_000_000),
            off in -1439i32..1440,
        ) {
            for s in [menu(), IvrSettings::default()] {
                accepted(decode_json(&body, &s, now()))?;
                let mut p: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                accepted(decode_twilio(&p, &s, now()))?;
                p.insert(0, ("CallStatus".into(), status.into()));
                accepted(decode_twilio(&p, &s, now()))?;
                let at = at.and_then(|t| DateTime::from_timestamp(t, 0)).zip(chrono::FixedOffset::east_opt(off * 60))
                    .map(|(t, o)| t.with_timezone(&o).to_rfc3339());
                let o = json!({"call_id": f[0], "status": status, "from": f[1], "to": f[2],
                    "digits": f[3], "speech": f[4], "caller_name": f[5], "language": f[6], "at": at});
                accepted(decode_json(o.to_string().as_bytes(), &s, now()))?;
            }
        }
    }
}
