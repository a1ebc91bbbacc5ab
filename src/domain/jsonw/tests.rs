//! The hand-written encodings against serde_json's derived ones, byte for
//! byte, on random values: every field set or absent, strings with quotes,
//! backslashes, control characters and multi-byte characters, times outside
//! four-digit years, non-finite numbers.

use super::*;
use crate::domain::wire::{Customer, Served, Why};
use crate::domain::{AgentId, Channel, QueueName, SkillName};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Text mixing plain characters with every kind serde_json escapes.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        6 => proptest::char::range('a', 'z'),
        1 => Just('"'),
        1 => Just('\\'),
        1 => (0u8..0x20).prop_map(char::from),
        1 => Just('\u{7f}'),
        1 => any::<char>(),
    ];
    proptest::collection::vec(ch, 0..48).prop_map(String::from_iter)
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,16}"
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // Years -300 to 12 000, so chrono's own form is used now and then.
    (-72_000_000_000_000i64..316_000_000_000_000, 0u32..1_000_000_000).prop_map(|(ms, ns)| {
        DateTime::from_timestamp_millis(ms).expect("in range") + chrono::Duration::nanoseconds(ns.into())
    })
}

fn channel() -> impl Strategy<Value = Channel> {
    proptest::sample::select(Channel::ALL.to_vec())
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (0u64..10_000_000).prop_map(|ms| ms as f64 / 1000.0),
        1 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ]
}

fn customer() -> impl Strategy<Value = Customer> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(id, name, tier, language)| Customer {
            id,
            name,
            tier,
            language,
        })
}

fn served() -> impl Strategy<Value = Served> {
    (
        // The router's own ids (held as a number) and any other text.
        prop_oneof![text(), "[0-9a-f]{32}".prop_map(|h| format!("c-{h}"))],
        channel(),
        token(),
        proptest::option::of(token()),
        time(),
        text(),
    )
        .prop_map(|(contact_id, channel, queue, agent, at, outcome)| Served {
            contact_id: contact_id.as_str().into(),
            channel,
            queue: QueueName::try_from(queue).expect("token"),
            agent: agent.map(|a| AgentId::try_from(a).expect("token")),
            at,
            outcome: outcome.into(),
        })
}

fn same<T: serde::Serialize>(reference: &T, ours: &[u8]) -> Result<(), TestCaseError> {
    let want = serde_json::to_vec(reference).expect("serialises");
    prop_assert_eq!(String::from_utf8_lossy(ours), String::from_utf8_lossy(&want));
    prop_assert_eq!(ours, &want[..]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn offers_are_written_as_serde_json_writes_them(
        ids in (text(), text(), text(), token(), token()),
        channel in channel(),
        priority in any::<u8>(),
        times in (time(), time()),
        waited in float(),
        customer in customer(),
        subject in proptest::option::of(text()),
        body in proptest::option::of(text()),
        history in proptest::collection::vec(served(), 0..4),
        why in (any::<bool>(), any::<u8>(), proptest::collection::btree_map(token(), any::<u8>(), 0..4), any::<usize>()),
        load in (proptest::array::uniform4(proptest::option::of(any::<u32>())), float()),
    ) {
        let (offer_id, contact_id, conversation_id, agent, queue) = ids;
        let (agent, queue) = (AgentId::try_from(agent).expect("token"), QueueName::try_from(queue).expect("token"));
        let (returning_customer, step, required, candidates) = why;
        let required: BTreeMap<SkillName, u8> =
            required.into_iter().map(|(s, l)| (SkillName::try_from(s).expect("token"), l)).collect();
        let msg = OfferMsg {
            v: 1,
            kind: "offer",
            offer_id: &offer_id,
            contact_id: &contact_id,
            conversation_id: &conversation_id,
            agent_id: &agent,
            queue: &queue,
            channel,
            priority,
            offered_at: times.0,
            expires_at: times.1,
            waited_secs: waited,
            customer: &customer,
            subject: subject.as_deref(),
            text: body.as_deref(),
            history: &history,
            why: Why {
                strategy: "most_skilled",
                returning_customer,
                step,
                required: required.iter().map(|(s, l)| (s, *l)).collect(),
                agent_levels: required.iter().map(|(s, l)| (s, l / 2)).collect(),
                candidates,
                load: load.0,
                load_share: load.1,
            },
        };
        same(&msg, &msg.to_json())?;
        // A ring group's other members reuse the contact's part.
        prop_assert_eq!(msg.to_json_sharing(&msg.contact_json()), msg.to_json());
    }

    #[test]
    fn desktop_notices_are_written_as_serde_json_writes_them(
        ids in (text(), text(), token()),
        channel in channel(),
        optional in (proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text())),
        content in (proptest::option::of(text()), proptest::option::of(text())),
        at in time(),
    ) {
        let agent = AgentId::try_from(ids.2).expect("token");
        let msg = DesktopNotice {
            v: 1,
            kind: "withdrawn",
            contact_id: &ids.0,
            conversation_id: &ids.1,
            agent_id: &agent,
            channel,
            offer_id: optional.0.as_deref(),
            reason: optional.1.as_deref(),
            event_id: optional.2.as_deref(),
            subject: content.0.as_deref(),
            text: content.1.as_deref(),
            at,
        };
        same(&msg, &msg.to_json())?;
    }

    #[test]
    fn contact_events_are_written_as_serde_json_writes_them(
        event_id in text(),
        ids in (proptest::option::of(text()), proptest::option::of(text())),
        channel in proptest::option::of(channel()),
        names in (proptest::option::of(token()), proptest::option::of(token()), proptest::option::of(token()), proptest::option::of(token())),
        at in time(),
        waited in float(),
        optional in (proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text())),
        position in proptest::option::of(any::<usize>()),
        ewt in proptest::option::of(float()),
        required in proptest::option::of(proptest::collection::btree_map(token(), any::<u8>(), 0..4)),
    ) {
        let required: Option<BTreeMap<SkillName, u8>> = required.map(|r| {
            r.into_iter().map(|(s, l)| (SkillName::try_from(s).expect("token"), l)).collect()
        });
        let queue = names.0.map(|q| QueueName::try_from(q).expect("token"));
        let agent = names.1.map(|a| AgentId::try_from(a).expect("token"));
        let from = names.2.map(|q| QueueName::try_from(q).expect("token"));
        let to = names.3.map(|q| QueueName::try_from(q).expect("token"));
        let msg = ContactEventMsg {
            v: 1,
            event_id,
            contact_id: ids.0.as_deref(),
            conversation_id: ids.1.as_deref(),
            channel,
            queue: queue.as_ref(),
            agent_id: agent.as_ref(),
            at,
            waited_secs: waited,
            offer_id: optional.0.as_deref(),
            reason: optional.1.as_deref(),
            from_queue: from.as_ref(),
            to_queue: to.as_ref(),
            required: required.as_ref().map(|r| r.iter().map(|(s, l)| (s, *l)).collect()),
            error: optional.2.as_deref(),
            position,
            estimated_wait_secs: ewt,
        };
        same(&msg, &msg.to_json())?;
    }
}

/// Notices and events are allocated for their strings plus [`FIXED`]
/// bytes: with every field present, numbers and the time at their longest,
/// and strings that need no escaping, the payload fits.
#[test]
fn a_notice_or_an_event_fits_its_strings_and_the_fixed_room() {
    let (queue, agent) = (
        QueueName::try_from("q".to_string()).expect("token"),
        AgentId::try_from("a".to_string()).expect("token"),
    );
    let fits = |json: &[u8], strings: usize| {
        let text = String::from_utf8_lossy(json);
        assert!(json.len() <= FIXED + strings, "{} bytes: {text}", json.len());
    };
    let at = DateTime::<Utc>::MAX_UTC;
    let longest = -2.2250738585072014e-308;
    let skills = [
        SkillName::try_from("s").expect("token"),
        SkillName::try_from("t").expect("token"),
    ];
    let event = ContactEventMsg {
        v: u8::MAX,
        event_id: "e".into(),
        contact_id: Some("c"),
        conversation_id: Some("v"),
        channel: Some(Channel::Social),
        queue: Some(&queue),
        agent_id: Some(&agent),
        at,
        waited_secs: longest,
        offer_id: Some("o"),
        reason: Some("r"),
        from_queue: Some(&queue),
        to_queue: Some(&queue),
        required: Some(skills.iter().map(|s| (s, u8::MAX)).collect()),
        error: Some("x"),
        position: Some(usize::MAX),
        estimated_wait_secs: Some(longest),
    };
    // Its ten strings are a byte each, and its requirement has the room
    // `to_json` reserves for it.
    fits(&event.to_json(), 10 + 14 + 2 * (1 + 7));
    let notice = DesktopNotice {
        v: u8::MAX,
        kind: "w",
        contact_id: "c",
        conversation_id: "v",
        agent_id: &agent,
        channel: Channel::Social,
        offer_id: Some("o"),
        reason: Some("r"),
        event_id: Some("e"),
        subject: Some("s"),
        text: Some("t"),
        at,
    };
    fits(&notice.to_json(), 9);
}

#[test]
fn every_character_serde_json_escapes_is_escaped_the_same_way() {
    for c in (0u32..0x80).filter_map(char::from_u32).chain(['é', '€', '𝄞']) {
        let s = format!("a{c}b{c}");
        let mut ours = Vec::new();
        escaped(&mut ours, &s);
        assert_eq!(ours, serde_json::to_vec(&s).expect("serialises"), "{c:?}");
    }
}

/// The word-at-a-time scan against the byte rule, exhaustively: every
/// length up to three words (so every tail length, and the short strings
/// read as one padded word), every position, every byte value, in text that
/// needs no escape otherwise. Each (length, position) is also checked with
/// a second byte, so a hit in one word cannot hide a miss in another.
#[test]
fn the_escape_scan_finds_every_escaped_byte_at_every_position() {
    let rule = |s: &[u8]| s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    for len in 0..=24usize {
        let plain = vec![b'a'; len];
        assert!(!needs_escape(&plain), "plain text of {len} bytes");
        for at in 0..len {
            for c in 0..=255u8 {
                let mut s = plain.clone();
                s[at] = c;
                assert_eq!(needs_escape(&s), rule(&s), "byte {c:#04x} at {at} of {len}");
                s[len - 1 - at] = b'~';
                assert_eq!(
                    needs_escape(&s),
                    rule(&s),
                    "byte {c:#04x} at {at} of {len}, '~' mirrored"
                );
            }
        }
    }
}

#[test]
fn a_float_written_again_is_written_as_serde_json_writes_it() {
    // The second write of each comes from the one-value memo.
    let values = [
        0.0,
        -0.0,
        1.5,
        12.345,
        0.1 + 0.2,
        1e300,
        5e-324,
        -2.2250738585072014e-308,
        86_400.001,
    ];
    for v in values {
        let mut b = Vec::new();
        super::float(&mut b, v);
        super::float(&mut b, v);
        let one = serde_json::to_vec(&v).expect("finite");
        assert_eq!(b, [one.clone(), one].concat(), "{v}");
    }
}
