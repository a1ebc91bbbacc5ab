//! Relaxation over a contact's wait (bullseye): levels lowered step by
//! step, overflow to another queue keeping age and SLA clocks, steps
//! worked out per requirement as placed, configuration problems, and a
//! restart after a step.

use super::*;

#[test]
fn relaxation_lowers_levels_then_overflows_keeping_age_and_why_says_the_step() {
    let toml = r#"
[[queues]]
name = "billing"
channels = ["chat"]
skills = { billing = 7 }
offer_timeout_secs = 20
[[queues.relax]]
after_secs = 30
skills = { billing = 4 }
[[queues.relax]]
after_secs = 90
overflow = "general"
[[queues]]
name = "general"
channels = ["chat", "email"]
skills = { support = 1 }
offer_timeout_secs = 45
strategy = "least_loaded"
[[agents]]
id = "mid"
skills = { billing = 4 }
capacity = { chat = 1 }
initial_status = "available"
[[agents]]
id = "generalist"
skills = { support = 3 }
capacity = { chat = 1 }
initial_status = "available"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    let ev = |n: u32| {
        inbound(
            &format!("m{n}"),
            "chat",
            &format!("c{n}"),
            json!({"queue": "billing", "skills": ["es"]}),
        )
    };
    e.on_inbound(&ev(1), t(0.0)).expect("ok");
    let first = e.take_outputs();
    assert!(offers(&first).is_empty(), "nobody has billing 7");
    let id = events(&first, "queued")[0]["contact_id"]
        .as_str()
        .expect("id")
        .to_string();
    // The operator's explain names the requirement of the step reached and
    // each agent's shortfall against it, by name.
    let explained = |e: &Engine, at: f64| {
        let x = e.explain(&id, Some("mid"), 10, t(at)).expect("open");
        (
            x["step"].clone(),
            x["required"].clone(),
            x["agents"][0]["detail"].clone(),
        )
    };
    assert_eq!(
        explained(&e, 1.0),
        (json!(0), json!({"billing": 7, "es": 1}), json!("billing 4 < 7"))
    );
    // Nothing happens before the step is due; the tick at its deadline
    // offers it to the level-4 agent... who lacks `es`, so still nobody.
    assert_eq!(e.next_deadline(), Some(t(30.0)));
    e.on_tick(t(30.0));
    let at_30 = e.take_outputs();
    assert!(offers(&at_30).is_empty(), "es is still required");
    // The step is announced as the contract's `overflowed` with the
    // relaxed requirement, and no queues (it stays with billing's agents).
    let relaxed = events(&at_30, "overflowed");
    assert_eq!(relaxed.len(), 1, "{at_30:?}");
    assert_eq!(relaxed[0]["required"], json!({"billing": 4, "es": 1}));
    assert_eq!(relaxed[0]["waited_secs"], json!(30.0));
    assert!(relaxed[0].get("from_queue").is_none() && relaxed[0].get("to_queue").is_none());
    assert_eq!(
        explained(&e, 31.0),
        (json!(1), json!({"billing": 4, "es": 1}), json!("es"))
    );
    // At 90 s it overflows to general's agents (support >= 1, and the es
    // it asked for): a profile giving the generalist es is enough.
    e.on_agent(
        &agent_ev("generalist", "profile", json!({"skills": {"support": 3, "es": 2}})),
        t(60.0),
    )
    .expect("ok");
    assert!(offers(&e.take_outputs()).is_empty(), "not overflowed yet");
    assert_eq!(e.next_deadline(), Some(t(90.0)));
    e.on_tick(t(90.0));
    let all = e.take_outputs();
    let moved = events(&all, "overflowed");
    assert_eq!(
        (&moved[0]["from_queue"], &moved[0]["to_queue"]),
        (&json!("billing"), &json!("general"))
    );
    assert_eq!(
        moved[0]["required"],
        json!({"es": 1, "support": 1}),
        "general's, with es"
    );
    let out = offers(&all);
    assert_eq!(out.len(), 1, "{out:?}");
    let (agent, o) = &out[0];
    assert_eq!(agent, "generalist");
    assert_eq!(o["queue"], "billing", "the contact stays billing's for reporting");
    assert_eq!(o["waited_secs"], json!(90.0), "with its original age");
    assert_eq!(o["why"]["step"], 2);
    assert_eq!(o["why"]["strategy"], "least_loaded", "general's strategy");
    assert_eq!(o["why"]["required"], json!({"es": 1, "support": 1}));
    assert_eq!(
        o["expires_at"],
        json!("2026-11-23T09:02:15.000Z"),
        "general's 45 s timeout"
    );
}

#[test]
fn overflow_keeps_the_contacts_sla_policy_and_clock() {
    let toml = r#"
[sla.policies.p]
first_response_secs = { chat = 120 }
warning_thresholds = [0.5]
[sla.policies.g]
first_response_secs = { chat = 1000 }
warning_thresholds = [0.5]
[[queues]]
name = "billing"
channels = ["chat"]
sla_policy = "p"
[[queues.relax]]
after_secs = 30
overflow = "general"
[[queues]]
name = "general"
channels = ["chat"]
sla_policy = "g"
[[agents]]
id = "a"
capacity = { chat = 1 }
initial_status = "offline"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    e.on_inbound(&inbound("m1", "chat", "c1", json!({"queue": "billing"})), t(0.0))
        .expect("ok");
    e.take_outputs();
    e.on_tick(t(30.0));
    let out = e.take_outputs();
    assert_eq!(events(&out, "overflowed").len(), 1);
    // Billing's policy, counted from the contact's arrival: the warning at
    // 60 s and the breach at 120 s (general's would warn at 500 s).
    assert_eq!(e.next_deadline(), Some(t(60.0)));
    e.on_tick(t(59.9));
    assert!(alerts(&e.take_outputs()).is_empty());
    e.on_tick(t(60.0));
    let warned = alerts(&e.take_outputs());
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(
        (&warned[0]["policy"], &warned[0]["threshold"]),
        (&json!("p"), &json!(0.5))
    );
    assert_eq!(warned[0]["queue"], "billing");
    e.on_tick(t(120.0));
    let breached = alerts(&e.take_outputs());
    assert_eq!(breached.len(), 1, "{breached:?}");
    assert_eq!(
        (&breached[0]["kind"], &breached[0]["policy"]),
        (&json!("breach"), &json!("p"))
    );
}

/// A billing queue whose contacts need level 7, relaxed to 4 after 30 s.
const BILLING_RELAXING: &str = r#"
[[queues]]
name = "billing"
channels = ["chat"]
skills = { billing = 7 }
[[queues.relax]]
after_secs = 30
skills = { billing = 4 }
"#;

/// Contacts placed with the same requirement share one allocation of it
/// (what the relaxation cache matches by pointer); it is let go with the
/// last of them, unless a relaxation cached for it still holds it, and a
/// contact placed alike later gets that same allocation back.
#[test]
fn contacts_placed_alike_share_their_requirement_until_the_last_closes() {
    let mut e = Engine::new(spec(BILLING_RELAXING), t(0.0));
    let open = |e: &mut Engine, conv: &str, extra: serde_json::Value, at: f64| {
        let mut fields = extra;
        fields["queue"] = json!("billing");
        e.on_inbound(&inbound(&format!("m-{conv}"), "chat", conv, fields), t(at))
            .expect("opens");
    };
    let end = |e: &mut Engine, conv: &str, at: f64| {
        let ev = json!({"v": 1, "id": format!("end-{conv}"), "type": "end", "channel": "chat", "conversation_id": conv, "customer": {"id": "c"}});
        let ev = decode_inbound("chat", ev.to_string().as_bytes()).expect("end");
        e.on_inbound(&ev, t(at)).expect("ends");
    };
    let placed = |e: &Engine, conv: &str| {
        e.contacts
            .iter()
            .find(|s| s.c.conversation_id == conv)
            .map(|s| Arc::clone(&s.placed))
            .expect("open")
    };
    open(&mut e, "a", json!({}), 1.0);
    open(&mut e, "b", json!({}), 2.0);
    open(&mut e, "es", json!({"skills": ["es"]}), 3.0);
    assert_eq!(e.placed_needs.len(), 2, "two distinct requirements");
    assert!(Arc::ptr_eq(&placed(&e, "a"), &placed(&e, "b")), "placed alike, shared");
    assert!(!Arc::ptr_eq(&placed(&e, "a"), &placed(&e, "es")));
    // So is the requirement by name, each contact's `required`.
    let required = |e: &Engine, conv: &str| Arc::clone(&e.contact_for_conversation(conv).expect("open").required);
    assert!(Arc::ptr_eq(&required(&e, "a"), &required(&e, "b")));
    assert!(!Arc::ptr_eq(&required(&e, "a"), &required(&e, "es")));
    assert_eq!(required(&e, "es").get("es"), Some(&1));
    // A restore from the records (each contact's own map) shares them the
    // same way.
    let records = e.contacts().map(|c| {
        let json = serde_json::to_value(c).expect("record");
        serde_json::from_value::<crate::routing::Contact>(json).expect("reads back")
    });
    let back = Engine::restore(Arc::clone(&e.spec), records.collect(), Vec::new(), t(3.5));
    assert!(Arc::ptr_eq(&required(&back, "a"), &required(&back, "b")));
    assert!(!Arc::ptr_eq(&required(&back, "a"), &required(&e, "a")), "its own maps");
    end(&mut e, "a", 4.0);
    end(&mut e, "es", 5.0);
    assert_eq!(e.placed_needs.len(), 1, "b still holds the plain requirement");
    end(&mut e, "b", 6.0);
    assert!(e.placed_needs.is_empty(), "nothing open: nothing kept");

    // A relaxation worked out for a requirement keeps it past its contacts.
    open(&mut e, "c", json!({}), 10.0);
    e.on_tick(t(41.0));
    let cached = placed(&e, "c");
    end(&mut e, "c", 42.0);
    assert_eq!(e.placed_needs.len(), 1, "held by the relaxation cache");
    open(&mut e, "d", json!({}), 43.0);
    assert!(Arc::ptr_eq(&placed(&e, "d"), &cached), "the cached allocation again");
}

#[test]
fn contacts_of_one_queue_asking_for_different_skills_relax_each_to_their_own_requirement() {
    // Relaxations are worked out once per queue, step and requirement as
    // placed; a contact that asked for `es` must not share the relaxation
    // of one that did not, whichever reaches the step first.
    let toml = format!(
        "{BILLING_RELAXING}[[agents]]\nid = \"mid\"\nskills = {{ billing = 4 }}\ncapacity = {{ chat = 2 }}\ninitial_status = \"available\"\n"
    );
    for es_first in [true, false] {
        let mut e = Engine::new(spec(&toml), t(0.0));
        let with_es = inbound("m1", "chat", "c-es", json!({"queue": "billing", "skills": ["es"]}));
        let plain = inbound("m2", "chat", "c-plain", json!({"queue": "billing"}));
        let (a, b) = if es_first {
            (&with_es, &plain)
        } else {
            (&plain, &with_es)
        };
        e.on_inbound(a, t(0.0)).expect("ok");
        e.on_inbound(b, t(1.0)).expect("ok");
        e.take_outputs();
        // Each relaxes at its own 30 s.
        e.on_tick(t(30.0));
        e.on_tick(t(31.0));
        let out = offers(&e.take_outputs());
        let conversations: Vec<&str> = out.iter().filter_map(|(_, o)| o["conversation_id"].as_str()).collect();
        assert_eq!(conversations, ["c-plain"], "es first: {es_first}; {out:?}");
    }
}

#[test]
fn relaxation_steps_are_checked_with_every_problem_listed() {
    let toml = r#"
[[queues]]
name = "a"
channels = ["chat", "voice"]
[[queues.relax]]
after_secs = 60
skills = { x = 11 }
overflow = "nowhere"
[[queues.relax]]
after_secs = 30
overflow = "a"
[[queues.relax]]
after_secs = 90
overflow = "b"
[[queues]]
name = "b"
channels = ["chat"]
"#;
    let cfg = Config::from_toml_with_env(toml, "t", Vec::new()).expect("parses");
    let Err(problems) = cfg.validate() else {
        panic!("expected problems");
    };
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    for want in [
        "queues[0].relax[0].skills.x = 11",
        "queues[0].relax[0].overflow = \"nowhere\": no such queue",
        "queues[0].relax[1].after_secs = 30",
        "queues[0].relax[1].overflow = \"a\": a queue cannot overflow to itself",
        "queues[0].relax[2].overflow = \"b\": the overflow queue must take every channel",
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(want)),
            "missing {want:?} in:\n{}",
            text.join("\n")
        );
    }
}

/// A restart after a contact overflowed (or was relaxed) decides as before
/// and says nothing again: the events were published when the steps
/// fell due.
#[test]
fn a_restart_after_an_overflow_publishes_no_event_again() {
    let toml = r#"
[[queues]]
name = "billing"
channels = ["chat"]
skills = { billing = 7 }
[[queues.relax]]
after_secs = 30
overflow = "general"
[[queues]]
name = "general"
channels = ["chat"]
skills = { support = 1 }
"#;
    let spec = spec(toml);
    let mut e = Engine::new(Arc::clone(&spec), t(0.0));
    e.on_inbound(&inbound("m1", "chat", "c1", json!({"queue": "billing"})), t(0.0))
        .expect("ok");
    e.on_tick(t(30.0));
    assert_eq!(events(&e.take_outputs(), "overflowed").len(), 1);
    let (contacts, agents) = snapshot(&mut e);
    let mut r = Engine::restore(spec, contacts, agents, t(40.0));
    r.route_waiting(t(40.0));
    r.on_tick(t(41.0));
    let out = r.take_outputs();
    assert!(
        events(&out, "overflowed").is_empty(),
        "{:?}",
        out.iter().map(|o| &o.subject).collect::<Vec<_>>()
    );
    assert!(events(&out, "relaxed").is_empty());
}
