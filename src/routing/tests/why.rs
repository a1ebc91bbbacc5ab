//! What an offer's `why` says: the pool it was chosen from, the agent's
//! levels on the required skills, and its load when chosen.

use super::*;

#[test]
fn candidates_is_the_pool_of_free_agents_holding_the_rarest_skill_at_the_level() {
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5, t = 2 }\ncapacity = { chat = 2 }\ninitial_status = \"available\"\n\
[[agents]]\nid = \"b\"\nskills = { s = 9 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n\
[[agents]]\nid = \"c\"\nskills = { s = 2 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    // Queue q needs s >= 3: a and b qualify, c does not.
    e.on_inbound(&inbound("1", "chat", "c1", json!({"queue": "q"})), t(0.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    assert_eq!(o[0].1["why"]["candidates"], 2, "{}", o[0].1);
    // s >= 3 and t: only a fits; the pool (rarest skill t, held by a alone) says 1.
    e.on_inbound(
        &inbound("2", "chat", "c2", json!({"queue": "q", "skills": ["t"]})),
        t(1.0),
    )
    .expect("ok");
    let o = offers(&e.take_outputs());
    assert_eq!(o[0].0, "a");
    assert_eq!(o[0].1["why"]["candidates"], 1);
}

#[test]
fn why_gives_the_agents_level_on_each_required_skill_in_name_order() {
    // `u` is interned before `t` (agents are added in id order, and agent 0 holds it), so the order
    // of interned skills is not the order of their names.
    let agents = "[[agents]]\nid = \"0\"\nskills = { u = 1 }\ncapacity = { chat = 1 }\ninitial_status = \"offline\"\n\
[[agents]]\nid = \"a\"\nskills = { s = 5, t = 2, u = 4, v = 9 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    e.on_inbound(
        &inbound("1", "chat", "c1", json!({"queue": "q", "skills": ["u", "t"]})),
        t(0.0),
    )
    .expect("ok");
    let out = e.take_outputs();
    let offer = out
        .iter()
        .find(|o| matches!(&o.subject, OutSubject::Desktop(a) if a.as_str() == "a"))
        .expect("offered to a");
    let text = String::from_utf8_lossy(&offer.payload);
    assert!(
        text.contains(r#""required":{"s":3,"t":1,"u":1},"agent_levels":{"s":5,"t":2,"u":4}"#),
        "{text}"
    );
}

#[test]
fn why_gives_the_winners_load_before_the_offer_in_slots_or_units() {
    // Slots: capacity chat 2, email 1 (nothing on the other channels).
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 2, email = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    let why = |e: &mut Engine, n: u32, ch: &str, at: f64| {
        e.on_inbound(
            &inbound(&n.to_string(), ch, &format!("c{n}"), json!({"queue": "q"})),
            t(at),
        )
        .expect("ok");
        let o = offers(&e.take_outputs());
        assert_eq!(o.len(), 1, "offered");
        (o[0].1["why"]["load"].clone(), o[0].1["why"]["load_share"].clone())
    };
    assert_eq!(
        why(&mut e, 1, "chat", 0.0),
        (json!({"email": 0, "chat": 0}), json!(0.0))
    );
    // One chat held (offered, not yet accepted): 1 of 3 slots.
    assert_eq!(
        why(&mut e, 2, "email", 1.0),
        (json!({"email": 0, "chat": 1}), json!(0.333))
    );
    assert_eq!(
        why(&mut e, 3, "chat", 2.0),
        (json!({"email": 1, "chat": 1}), json!(0.667))
    );
    // Units: a budget of 100, e-mail 20 and chat 35.
    let toml = r#"
[routing.units]
email = 20
chat = 35
[[queues]]
name = "q"
channels = ["email", "chat"]
[[agents]]
id = "ann"
units = 100
capacity = { email = 3, chat = 2 }
initial_status = "available"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    assert_eq!(why(&mut e, 1, "email", 0.0).1, json!(0.0));
    assert_eq!(
        why(&mut e, 2, "chat", 1.0),
        (json!({"email": 1, "chat": 0}), json!(0.2))
    );
    assert_eq!(
        why(&mut e, 3, "email", 2.0),
        (json!({"email": 1, "chat": 1}), json!(0.55))
    );
}

/// A slot freed and filled again in one input goes to its agent without
/// the free index being updated in between (`Engine::pick`); the offer
/// still reports the pool a walk over the updated index would: under
/// `most_skilled` the free holders of the primary skill, that agent
/// counted; otherwise the rarest skill's, that agent alone.
#[test]
fn a_slot_freed_and_filled_in_one_input_reports_the_pool_a_walk_would() {
    let toml = r#"
[[queues]]
name = "tech"
channels = ["chat"]
skills = { fiber = 3, s = 1 }
strategy = "most_skilled"
[[queues]]
name = "plain"
channels = ["chat"]
skills = { fiber = 3, s = 1 }
[[agents]]
id = "a"
skills = { fiber = 8, s = 2 }
capacity = { chat = 1 }
initial_status = "available"
[[agents]]
id = "b"
skills = { fiber = 5 }
capacity = { chat = 1 }
initial_status = "available"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    let open = |e: &mut Engine, n: u32, queue: &str, at: f64| {
        e.on_inbound(
            &inbound(&format!("m{n}"), "chat", &format!("c{n}"), json!({"queue": queue})),
            t(at),
        )
        .expect("ok");
        offers(&e.take_outputs())
    };
    let o = open(&mut e, 1, "tech", 1.0);
    // b holds fiber but not s: in the pool, not chosen.
    assert_eq!((o[0].0.as_str(), &o[0].1["why"]["candidates"]), ("a", &json!(2)));
    let c1 = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": c1})), t(2.0))
        .expect("ok");
    assert!(open(&mut e, 2, "tech", 3.0).is_empty(), "a is busy, b lacks s");
    assert!(open(&mut e, 3, "plain", 4.0).is_empty());
    e.take_outputs();
    e.on_agent(&agent_ev("a", "complete", json!({"contact_id": c1})), t(5.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    assert_eq!((o[0].0.as_str(), &o[0].1["why"]["candidates"]), ("a", &json!(2)));
    let c2 = o[0].1["contact_id"].as_str().expect("cid").to_string();
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": c2})), t(6.0))
        .expect("ok");
    e.on_agent(&agent_ev("a", "complete", json!({"contact_id": c2})), t(7.0))
        .expect("ok");
    let o = offers(&e.take_outputs());
    assert_eq!((o[0].0.as_str(), &o[0].1["why"]["candidates"]), ("a", &json!(1)));
}
