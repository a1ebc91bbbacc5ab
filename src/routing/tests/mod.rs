//! Unit and property tests of the pure core, with explicit time: timers are
//! exercised by passing `now`, never by sleeping.

use super::*;
use crate::config::Config;
use crate::domain::wire::{self, decode_agent, decode_inbound, AgentEvent, InboundEvent};
use crate::domain::{Channel, Presence};
use model::secs_to_duration;
use serde_json::json;

mod affinity;
mod clocks;
mod explain;
mod held;
mod props;
mod relaxation;
mod reserve;
mod ring;
mod strategies;
mod why;

fn spec(toml: &str) -> Arc<RouterSpec> {
    let cfg = Config::from_toml_with_env(toml, "test", Vec::<(String, String)>::new()).expect("config parses");
    Arc::new(cfg.validate().expect("config valid"))
}

/// Every problem `validate` lists for a configuration, one per line.
fn problems(toml: &str) -> String {
    let cfg = Config::from_toml_with_env(toml, "test", Vec::<(String, String)>::new()).expect("config parses");
    let errs: Vec<String> = cfg
        .validate()
        .expect_err("invalid")
        .iter()
        .map(|p| p.to_string())
        .collect();
    errs.join("\n")
}

fn t(secs: f64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
        + secs_to_duration(secs)
}

fn inbound(id: &str, channel: &str, conv: &str, extra: serde_json::Value) -> InboundEvent {
    let mut v = json!({"v": 1, "id": id, "type": "message", "channel": channel, "conversation_id": conv, "customer": {"id": "c"}});
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    decode_inbound(channel, v.to_string().as_bytes()).expect("valid inbound")
}

fn agent_ev(agent: &str, ty: &str, extra: serde_json::Value) -> AgentEvent {
    let mut v = json!({"v": 1, "id": format!("{agent}-{ty}"), "type": ty, "agent_id": agent});
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    decode_agent(agent, ty, v.to_string().as_bytes()).expect("valid agent event")
}

fn events(out: &[Outbound], what: &str) -> Vec<serde_json::Value> {
    out.iter()
        .filter(|o| matches!(o.subject, OutSubject::ContactEvent(w) if w == what))
        .filter_map(|o| serde_json::from_slice(&o.payload).ok())
        .collect()
}

fn offers(out: &[Outbound]) -> Vec<(String, serde_json::Value)> {
    out.iter()
        .filter_map(|o| match &o.subject {
            OutSubject::Desktop(a) => {
                let v: serde_json::Value = serde_json::from_slice(&o.payload).ok()?;
                (v["kind"] == "offer").then(|| (a.to_string(), v))
            }
            _ => None,
        })
        .collect()
}

fn alerts(out: &[Outbound]) -> Vec<serde_json::Value> {
    out.iter()
        .filter(|o| matches!(o.subject, OutSubject::SlaAlert(_)))
        .filter_map(|o| serde_json::from_slice(&o.payload).ok())
        .collect()
}

const BASE: &str = r#"
[routing]
offer_timeout_secs = 10
max_missed_offers = 2
[sla.policies.p]
first_response_secs = { email = 100, chat = 10 }
warning_thresholds = [0.5, 0.9]
[[queues]]
name = "q"
channels = ["email", "chat", "social", "voice"]
skills = { s = 3 }
sla_policy = "p"
[[queues]]
name = "ll"
channels = ["chat"]
strategy = "least_loaded"
"#;

fn engine(agents: &str) -> Engine {
    Engine::new(spec(&format!("{BASE}{agents}")), t(0.0))
}

#[test]
fn sla_thresholds_fire_once_at_their_times_and_stop_on_response() {
    let mut e = engine("");
    e.on_inbound(&inbound("1", "email", "a", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    e.take_outputs();
    assert_eq!(e.next_deadline(), Some(t(50.0)));
    e.on_tick(t(49.9));
    assert!(alerts(&e.take_outputs()).is_empty());
    e.on_tick(t(50.0));
    let a = alerts(&e.take_outputs());
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0]["kind"].as_str(), a[0]["threshold"].as_f64()),
        (Some("warning"), Some(0.5))
    );
    e.on_tick(t(50.0));
    assert!(alerts(&e.take_outputs()).is_empty(), "no repeat");
    // A late tick fires both remaining thresholds, each once.
    e.on_tick(t(150.0));
    let a = alerts(&e.take_outputs());
    let kinds: Vec<_> = a
        .iter()
        .map(|v| (v["kind"].as_str().unwrap_or(""), v["threshold"].as_f64().unwrap_or(0.0)))
        .collect();
    assert_eq!(kinds, [("warning", 0.9), ("breach", 1.0)]);
    assert_eq!(e.next_deadline(), None);

    // A chat accepted in time: accept is the first response, no alert ever.
    let mut e =
        engine("[[agents]]\nid = \"x\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n");
    e.on_inbound(&inbound("2", "chat", "b", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    let cid = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("x", "accept", json!({"contact_id": cid})), t(1.0))
        .expect("ok");
    e.on_tick(t(1000.0));
    assert!(alerts(&e.take_outputs()).is_empty());
}

#[test]
fn alerts_survive_restore_without_repeating() {
    let mut e = engine("");
    e.on_inbound(&inbound("1", "email", "a", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    e.on_tick(t(60.0));
    assert_eq!(alerts(&e.take_outputs()).len(), 1);
    let (contacts, agents) = snapshot(&mut e);
    let mut e2 = Engine::restore(spec(BASE), contacts, agents, t(61.0));
    e2.on_tick(t(95.0));
    let a = alerts(&e2.take_outputs());
    assert_eq!(a.len(), 1, "only the 0.9 warning: {a:?}");
    assert_eq!(a[0]["threshold"], 0.9);
}

fn snapshot(e: &mut Engine) -> (Vec<Contact>, Vec<Agent>) {
    // Everything, not just the dirty records: what the bucket would hold.
    let contacts = e
        .contacts()
        .map(|c| serde_json::from_slice(&wire::to_json(c)).expect("roundtrip"))
        .collect();
    let agents = e
        .agents()
        .map(|a| serde_json::from_slice(&wire::to_json(a)).expect("roundtrip"))
        .collect();
    e.take_changes();
    (contacts, agents)
}

#[test]
fn expired_offers_re_route_and_repeated_misses_set_the_agent_away() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    e.on_inbound(&inbound("1", "email", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    assert_eq!(offers(&e.take_outputs()).len(), 1);
    e.on_tick(t(10.0));
    let out = e.take_outputs();
    assert!(out
        .iter()
        .any(|o| o.subject == OutSubject::ContactEvent("offer_expired")));
    // Only agent: it is offered again (the decliner is the only candidate).
    assert_eq!(offers(&out).len(), 1);
    e.on_tick(t(20.0));
    let out = e.take_outputs();
    assert_eq!(
        e.agent("a").map(|a| a.status),
        Some(Presence::Away),
        "two misses in a row"
    );
    assert!(offers(&out).is_empty());
    let told: Vec<serde_json::Value> = out
        .iter()
        .filter(|o| o.subject == OutSubject::Desktop(AgentId::try_from("a".to_string()).expect("id")))
        .filter_map(|o| serde_json::from_slice(&o.payload).ok())
        .filter(|v: &serde_json::Value| v["kind"] == "set_away")
        .collect();
    assert_eq!(told.len(), 1, "the desktop is told once: {told:?}");
    assert_eq!(told[0]["reason"], "2 offers expired in a row");
    let c = e.contact_for_conversation("c1").expect("still open");
    assert_eq!(c.state, ContactState::Waiting);
    assert_eq!(e.agent("a").map(|a| a.load), Some([0; 4]));
}

#[test]
fn wrap_up_holds_the_slot_until_it_ends() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    e.on_inbound(&inbound("1", "email", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    e.on_inbound(&inbound("2", "email", "c2", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    let cid = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": cid})), t(1.0))
        .expect("ok");
    e.on_agent(
        &agent_ev("a", "complete", json!({"contact_id": cid, "wrap_up_secs": 30})),
        t(2.0),
    )
    .expect("ok");
    assert!(offers(&e.take_outputs()).is_empty(), "slot held during wrap-up");
    e.on_tick(t(31.9));
    assert!(offers(&e.take_outputs()).is_empty());
    e.on_tick(t(32.0));
    let o = offers(&e.take_outputs());
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].1["conversation_id"], "c2");
}

#[test]
fn least_loaded_prefers_the_lower_share_and_longest_idle_the_oldest() {
    let agents = "[[agents]]\nid = \"busy\"\ncapacity = { chat = 2 }\ninitial_status = \"available\"\n[[agents]]\nid = \"free\"\ncapacity = { chat = 4 }\ninitial_status = \"offline\"\n";
    let mut e = engine(agents);
    e.on_agent(&agent_ev("free", "presence", json!({"status": "available"})), t(0.5))
        .expect("ok");
    // Both agents at 0 load: least_loaded ties break on idle time (busy
    // has been idle since 0, free since 0.5).
    e.on_inbound(&inbound("1", "chat", "c1", json!({"queue": "ll"})), t(1.0))
        .expect("ok");
    assert_eq!(offers(&e.take_outputs())[0].0, "busy");
    // busy is at 1/2, free at 0/4: free wins.
    e.on_inbound(&inbound("2", "chat", "c2", json!({"queue": "ll"})), t(2.0))
        .expect("ok");
    assert_eq!(offers(&e.take_outputs())[0].0, "free");
    // busy 1/2 = 0.5, free 1/4 = 0.25: free again.
    e.on_inbound(&inbound("3", "chat", "c3", json!({"queue": "ll"})), t(3.0))
        .expect("ok");
    assert_eq!(offers(&e.take_outputs())[0].0, "free");
}

#[test]
fn a_decliner_is_passed_over_while_someone_else_fits() {
    let agents = "[[agents]]\nid = \"a1\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"available\"\n[[agents]]\nid = \"a2\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"offline\"\n";
    let mut e = engine(agents);
    e.on_inbound(&inbound("1", "email", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    let cid = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("a1", "decline", json!({"contact_id": cid})), t(1.0))
        .expect("ok");
    // a1 is the only candidate: it gets the contact again.
    assert_eq!(offers(&e.take_outputs())[0].0, "a1");
    e.on_agent(&agent_ev("a1", "decline", json!({"contact_id": cid})), t(2.0))
        .expect("ok");
    e.take_outputs();
    e.on_agent(&agent_ev("a2", "presence", json!({"status": "available"})), t(3.0))
        .expect("ok");
    // a2 came in while it waited... it was re-offered to a1 at once, so a1 holds it.
    // Decline again: now a2 is free and preferred.
    e.on_agent(&agent_ev("a1", "decline", json!({"contact_id": cid})), t(4.0))
        .expect("ok");
    assert_eq!(offers(&e.take_outputs())[0].0, "a2");
}

#[test]
fn going_away_withdraws_pending_offers() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    e.on_inbound(&inbound("1", "email", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    e.take_outputs();
    e.on_agent(&agent_ev("a", "presence", json!({"status": "away"})), t(1.0))
        .expect("ok");
    let out = e.take_outputs();
    assert!(out
        .iter()
        .any(|o| o.subject == OutSubject::Desktop(AgentId::try_from("a").expect("id"))));
    assert_eq!(
        e.contact_for_conversation("c1").map(|c| c.state.clone()),
        Some(ContactState::Waiting)
    );
    assert_eq!(e.waiting_len(), 1);
}

#[test]
fn restore_rebuilds_loads_order_and_offer_timers() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    e.on_inbound(&inbound("1", "email", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    e.on_inbound(
        &inbound("2", "email", "c2", json!({"queue": "q", "priority": 9})),
        t(1.0),
    )
    .expect("ok");
    e.take_outputs();
    let (contacts, agents_v) = snapshot(&mut e);
    let mut r = Engine::restore(spec(&format!("{BASE}{agents}")), contacts, agents_v, t(2.0));
    assert!(
        offers(&r.take_outputs()).is_empty(),
        "restore does not offer what is already offered"
    );
    assert_eq!(r.agent("a").map(|a| a.load[Channel::Email.index()]), Some(1));
    r.replay_offers();
    let replay = offers(&r.take_outputs());
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].1["conversation_id"], "c1");
    // The offer's original expiry still stands; then the priority-9 contact goes first.
    r.on_tick(t(10.0));
    let o = offers(&r.take_outputs());
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].1["conversation_id"], "c2");
}

#[test]
fn follow_ups_before_accept_are_handed_to_the_agent_who_accepts() {
    let agents = "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"offline\"\n";
    let mut e = engine(agents);
    e.on_inbound(
        &inbound("1", "chat", "c1", json!({"queue": "q", "text": "first"})),
        t(0.0),
    )
    .expect("ok");
    e.on_inbound(&inbound("2", "chat", "c1", json!({"text": "second"})), t(1.0))
        .expect("ok");
    e.on_agent(&agent_ev("a", "presence", json!({"status": "available"})), t(2.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    assert_eq!(o[0].1["text"], "first");
    e.on_inbound(&inbound("3", "chat", "c1", json!({"text": "third"})), t(3.0))
        .expect("ok");
    let cid = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": cid})), t(4.0))
        .expect("ok");
    let texts: Vec<String> = e
        .take_outputs()
        .iter()
        .filter(|o| matches!(o.subject, OutSubject::Desktop(_)))
        .filter_map(|o| serde_json::from_slice::<serde_json::Value>(&o.payload).ok())
        .filter(|v| v["kind"] == "message")
        .map(|v| v["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts, ["second", "third"]);
    assert!(e.contact(&cid).is_some_and(|c| c.pending.is_empty()));
}

#[test]
fn content_is_clipped_on_a_character_boundary() {
    let long = Some("é".repeat(40_000));
    let c = clip(&long, MAX_TEXT_BYTES).expect("some");
    assert!(c.len() <= MAX_TEXT_BYTES);
    assert!(c.ends_with('…'));
    assert_eq!(clip(&Some("short".into()), 10).as_deref(), Some("short"));
    assert_eq!(clip(&None, 10), None);
}

#[test]
fn accept_on_chat_is_the_first_response_and_a_decline_ends_a_miss_streak() {
    let agents = "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 1, email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    e.on_inbound(&inbound("1", "chat", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    let cid = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": cid})), t(1.0))
        .expect("ok");
    let kinds: Vec<_> = e.take_outputs().into_iter().map(|o| o.subject).collect();
    assert!(kinds.contains(&OutSubject::ContactEvent("responded")), "{kinds:?}");

    // Email: expire once (miss 1), decline (streak over), expire again: still available.
    e.on_inbound(&inbound("2", "email", "c2", json!({"queue": "q"})), t(2.0))
        .expect("ok");
    e.take_outputs();
    e.on_tick(t(12.0));
    assert_eq!(e.agent("a").map(|a| a.missed_offers), Some(1));
    let o = offers(&e.take_outputs());
    let cid = o[0].1["contact_id"].as_str().expect("cid").to_string();
    let mut ev = agent_ev("a", "decline", json!({"contact_id": cid}));
    ev.id = "decline-2".into();
    e.on_agent(&ev, t(13.0)).expect("ok");
    assert_eq!(e.agent("a").map(|a| a.missed_offers), Some(0));
    e.take_outputs();
    e.on_tick(t(23.0));
    assert_eq!(
        e.agent("a").map(|a| a.status),
        Some(Presence::Available),
        "max_missed_offers is 2"
    );
}

#[test]
fn restart_replays_each_outstanding_offer_once_and_routes_the_rest() {
    let one = "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(one);
    e.on_inbound(&inbound("1", "email", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    e.on_inbound(&inbound("2", "email", "c2", json!({"queue": "q"})), t(1.0))
        .expect("ok");
    e.take_outputs();
    let (contacts, agents_v) = snapshot(&mut e);
    // A second agent joins the roster while the router is down.
    let two = format!("{one}[[agents]]\nid = \"b\"\nskills = {{ s = 5 }}\ncapacity = {{ email = 1 }}\ninitial_status = \"available\"\n");
    let mut r = Engine::restore(spec(&format!("{BASE}{two}")), contacts, agents_v, t(2.0));
    r.replay_offers();
    r.route_waiting(t(2.0));
    let o = offers(&r.take_outputs());
    let got: Vec<(String, String)> = o
        .iter()
        .map(|(a, v)| (a.clone(), v["conversation_id"].as_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(
        got,
        [("a".to_string(), "c1".to_string()), ("b".to_string(), "c2".to_string())]
    );
}

#[test]
fn a_redelivered_opening_message_is_not_its_own_follow_up() {
    let mut e = engine("");
    let ev = inbound("open-1", "email", "c1", json!({"queue": "q", "text": "hello"}));
    assert!(matches!(e.on_inbound(&ev, t(0.0)), Ok(Outcome::Opened { .. })));
    let id = e.contact_for_conversation("c1").map(|c| c.id.clone());
    assert_eq!(e.on_inbound(&ev, t(1.0)), Ok(Outcome::Ignored("already applied")));
    let c = e.contact_for_conversation("c1").expect("open");
    assert_eq!((c.messages, c.pending.len()), (1, 0));
    // The id is derived from the opening event: a replay after a crash,
    // in a fresh engine, re-creates the same contact id.
    let mut fresh = engine("");
    fresh.on_inbound(&ev, t(5.0)).expect("ok");
    assert_eq!(fresh.contact_for_conversation("c1").map(|c| c.id.clone()), id);
}

#[test]
fn buffered_follow_ups_stay_within_the_record_budget() {
    let mut e = engine("");
    e.on_inbound(&inbound("1", "chat", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    // Control characters escape to six bytes each in JSON.
    let nasty = "\u{1}".repeat(60_000);
    for i in 0..10 {
        e.on_inbound(&inbound(&format!("f{i}"), "chat", "c1", json!({"text": nasty})), t(1.0))
            .expect("ok");
    }
    let c = e.contact_for_conversation("c1").expect("open");
    assert!(
        wire::to_json(c).len() <= MAX_CONTACT_JSON_BYTES,
        "{}",
        wire::to_json(c).len()
    );
    assert!(!c.pending.is_empty(), "the newest follow-up is kept");
    assert_eq!(c.pending.last().map(|f| f.event_id.as_str()), Some("f9"));
}

#[test]
fn a_long_queue_nobody_free_fits_is_skipped_cheaply_and_correctly() {
    let agents =
        "[[agents]]\nid = \"x\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    for i in 0..200 {
        e.on_inbound(
            &inbound(
                &format!("r{i}"),
                "chat",
                &format!("rare{i}"),
                json!({"queue": "q", "skills": ["t"]}),
            ),
            t(0.0),
        )
        .expect("ok");
    }
    assert!(offers(&e.take_outputs()).is_empty());
    // A plain contact behind them still reaches the free agent.
    e.on_inbound(&inbound("p", "chat", "plain", json!({"queue": "q"})), t(1.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].1["conversation_id"], "plain");
}

#[test]
fn an_event_id_reused_by_another_conversation_opens_a_new_contact() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    // The same Message-ID, seen again after the dedupe window, for another thread.
    e.on_inbound(&inbound("X", "email", "conv-a", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    let first = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": first})), t(1.0))
        .expect("ok");
    e.take_outputs();
    let r = e
        .on_inbound(&inbound("X", "email", "conv-b", json!({"queue": "q"})), t(2.0))
        .expect("ok");
    let Outcome::Opened { contact_id: second, .. } = r else {
        panic!("expected a new contact, got {r:?}")
    };
    assert_ne!(first, second);
    assert_eq!(e.contacts_len(), 2);
    let a = e.contact(&first).expect("first still open");
    assert_eq!(
        (a.conversation_id.as_str(), a.agent().map(|x| x.as_str())),
        ("conv-a", Some("a"))
    );
    assert!(matches!(a.state, ContactState::Assigned { .. }));
    let b = e.contact(&second).expect("second open");
    assert_eq!(
        (b.conversation_id.as_str(), &b.state),
        ("conv-b", &ContactState::Waiting)
    );
    // The agent's one slot is taken by the first: nothing is offered.
    assert!(offers(&e.take_outputs()).is_empty());
    assert_eq!(e.agent("a").map(|a| a.load[Channel::Email.index()]), Some(1));
}

#[test]
fn a_conversation_shared_by_two_restored_contacts_stays_with_the_last_until_it_closes() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { email = 2 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    let mut ids = Vec::new();
    for (i, conv) in [(1, "k"), (2, "other")] {
        e.on_inbound(
            &inbound(&format!("m{i}"), "email", conv, json!({"queue": "q"})),
            t(i as f64),
        )
        .expect("ok");
        let o = offers(&e.take_outputs());
        let id = o[0].1["contact_id"].as_str().expect("cid").to_string();
        e.on_agent(&agent_ev("a", "accept", json!({"contact_id": id})), t(i as f64))
            .expect("ok");
        ids.push(id);
    }
    e.take_outputs();
    // Records as a store could hold them after a duplicate: both open
    // contacts name conversation `k`; the second was put last.
    let (mut contacts, agents_v) = snapshot(&mut e);
    for c in contacts.iter_mut() {
        c.conversation_id = "k".into();
    }
    let mut r = Engine::restore(spec(&format!("{BASE}{agents}")), contacts, agents_v, t(5.0));
    assert_eq!(
        r.contact_for_conversation("k").map(|c| c.id.clone()),
        Some(ids[1].clone())
    );
    // Closing the other one leaves the mapping to the second alone.
    r.on_agent(&agent_ev("a", "complete", json!({"contact_id": ids[0]})), t(6.0))
        .expect("ok");
    assert!(r.contact(&ids[0]).is_none());
    assert_eq!(
        r.contact_for_conversation("k").map(|c| c.id.clone()),
        Some(ids[1].clone())
    );
    let follow_up = r
        .on_inbound(&inbound("m3", "email", "k", json!({"queue": "q"})), t(7.0))
        .expect("ok");
    assert_eq!(follow_up, Outcome::Attached);
    assert_eq!(r.contacts_len(), 1);
    // Closing the second frees the conversation: its next message opens anew.
    r.on_agent(&agent_ev("a", "complete", json!({"contact_id": ids[1]})), t(8.0))
        .expect("ok");
    assert!(r.contact_for_conversation("k").is_none());
    let again = r
        .on_inbound(&inbound("m4", "email", "k", json!({"queue": "q"})), t(9.0))
        .expect("ok");
    assert!(matches!(again, Outcome::Opened { .. }), "{again:?}");
}

#[test]
fn a_restart_restores_100_000_contacts_and_their_order() {
    let agents = "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"offline\"\n";
    let spec = spec(&format!("{BASE}{agents}"));
    let mut e = Engine::new(Arc::clone(&spec), t(0.0));
    const N: usize = 100_000;
    for i in 0..N {
        let ev = inbound(
            &format!("e{i}"),
            "chat",
            &format!("conv{i}"),
            json!({"queue": "q", "priority": (i % 10) as u8, "text": "hello"}),
        );
        e.on_inbound(&ev, t(i as f64 / 1000.0)).expect("ok");
        if i % 4096 == 0 {
            e.take_outputs();
            e.take_changes();
        }
    }
    e.take_outputs();
    let (contacts, agents_v) = snapshot(&mut e);
    assert_eq!(contacts.len(), N);
    let mut r = Engine::restore(Arc::clone(&spec), contacts, agents_v, t(200.0));
    r.route_waiting(t(200.0));
    assert_eq!((r.contacts_len(), r.waiting_len()), (N, N));
    assert!(offers(&r.take_outputs()).is_empty(), "nobody is available");
    // SLA clocks came back as timers (chat: 10 s target, already breached):
    // one tick fires every due threshold, each once.
    r.on_tick(t(201.0));
    assert_eq!(r.last_work().timers_fired, N);
    assert_eq!(alerts(&r.take_outputs()).len(), 3 * N);
    assert_eq!(r.next_deadline(), None);
    // The agent comes in: the first priority-9 contact is the oldest one.
    r.on_agent(&agent_ev("a", "presence", json!({"status": "available"})), t(202.0))
        .expect("ok");
    let o = offers(&r.take_outputs());
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].1["conversation_id"], "conv9");
}

#[test]
fn a_skill_less_contact_restored_from_a_removed_queue_is_still_routed() {
    let agent = "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 2 }\ninitial_status = \"offline\"\n";
    let with_general = format!("{BASE}[[queues]]\nname = \"general\"\nchannels = [\"chat\"]\n{agent}");
    let mut e = Engine::new(spec(&with_general), t(0.0));
    e.on_inbound(&inbound("1", "chat", "c1", json!({"queue": "general"})), t(0.0))
        .expect("ok");
    e.on_inbound(&inbound("2", "chat", "c2", json!({"queue": "general"})), t(0.5))
        .expect("ok");
    let (contacts, agents_v) = snapshot(&mut e);
    assert!(contacts.iter().all(|c| c.required.is_empty()));
    // The new configuration has only queues that require skills (q needs s,
    // ll is dropped too), so the per-channel tier starts unkept.
    let only_skills = format!(
        "[sla.policies.p]\nfirst_response_secs = {{ chat = 10 }}\n[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\nskills = {{ s = 3 }}\nsla_policy = \"p\"\n{agent}"
    );
    let mut r = Engine::restore(spec(&only_skills), contacts, agents_v, t(1.0));
    r.route_waiting(t(1.0));
    assert!(offers(&r.take_outputs()).is_empty());
    // The agent logs in: both skill-less contacts reach it, oldest first.
    r.on_agent(&agent_ev("a", "presence", json!({"status": "available"})), t(2.0))
        .expect("ok");
    let o = offers(&r.take_outputs());
    let convs: Vec<_> = o.iter().map(|(_, v)| v["conversation_id"].clone()).collect();
    assert_eq!(convs, [json!("c1"), json!("c2")]);
    assert_eq!(o[0].1["why"]["candidates"], 1);
}

#[test]
fn offer_and_event_ids_keep_their_documented_form() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    e.on_inbound(&inbound("1", "chat", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    let out = e.take_outputs();
    let ulid = |s: &str, prefix: &str| {
        s.strip_prefix(prefix)
            .is_some_and(|u| u.len() == 26 && u.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()))
    };
    let o = offers(&out);
    assert!(ulid(o[0].1["offer_id"].as_str().unwrap_or(""), "off-"), "{}", o[0].1);
    for ev in out.iter().filter(|o| matches!(o.subject, OutSubject::ContactEvent(_))) {
        assert!(ulid(&ev.msg_id, "ev-"), "{}", ev.msg_id);
    }
}

#[test]
fn the_relaxation_step_alone_agrees_with_the_relaxed_requirement() {
    let spec = spec(
        "[[queues]]\nname = \"g\"\nchannels = [\"chat\"]\n[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\nskills = { s = 5 }\n\
         [[queues.relax]]\nafter_secs = 10\nskills = { s = 3 }\n[[queues.relax]]\nafter_secs = 30\noverflow = \"g\"\n",
    );
    let q = QueueName::try_from("q").expect("name");
    let required = BTreeMap::from([(SkillName::try_from("s").expect("skill"), 5)]);
    let after: Vec<i64> = spec.queues[&q].relax.iter().map(|r| r.after_ms).collect();
    for waited in [0, 9_999, 10_000, 29_999, 30_000, 1_000_000] {
        let r = spec.relaxed(&q, &required, waited);
        assert_eq!(
            waiting::step_at(&after, waited),
            (r.step, r.next_after_ms),
            "waited {waited} ms"
        );
    }
    assert_eq!(waiting::step_at(&[], 5), (0, None));
}

#[test]
fn offers_expiring_while_excused_do_not_set_the_agent_away() {
    let agent = "[[agents]]\nid = \"x\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n";
    // BASE: offers expire after 10 s, away after 2 missed in a row.
    let run = |excuse: bool| {
        let mut e = engine(agent);
        if excuse {
            e.excuse_missed_offers_until(t(25.0));
        }
        e.on_inbound(&inbound("1", "chat", "a", json!({"queue": "q"})), t(0.0))
            .expect("ok");
        e.on_tick(t(10.0));
        e.on_tick(t(20.0));
        e.agent("x").map(|a| (a.status, a.missed_offers))
    };
    assert_eq!(run(false), Some((Presence::Away, 2)), "the check is not vacuous");
    assert_eq!(run(true), Some((Presence::Available, 0)));
}

/// Skill names are kept for the life of the process (index entries), so
/// their number is bounded: an event that would pass it is refused (the
/// daemon dead-letters it) and changes nothing; known names still pass.
#[test]
fn skill_names_beyond_the_bound_are_refused() {
    let mut e = Engine::new(spec("[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\n"), t(0.0));
    let names: Vec<String> = (0..super::MAX_SKILL_NAMES).map(|i| format!("s{i}")).collect();
    e.on_inbound(&inbound("m1", "chat", "conv1", json!({"skills": names})), t(1.0))
        .expect("up to the bound");
    let err = e
        .on_inbound(
            &inbound("m2", "chat", "conv2", json!({"skills": ["s5", "one-more"]})),
            t(2.0),
        )
        .expect_err("beyond the bound");
    assert!(
        err.0.starts_with("skill one-more would make 10001 distinct skills"),
        "{}",
        err.0
    );
    assert!(e.contact_for_conversation("conv2").is_none(), "nothing opened");
    let err = e
        .on_agent(&agent_ev("new", "profile", json!({"skills": {"other": 3}})), t(3.0))
        .expect_err("a profile too");
    assert!(err.0.starts_with("skill other would make"), "{}", err.0);
    assert!(e.agents().all(|a| a.id.as_str() != "new"), "no agent created");
    e.on_inbound(&inbound("m3", "chat", "conv3", json!({"skills": ["s5"]})), t(4.0))
        .expect("a known skill");
}
