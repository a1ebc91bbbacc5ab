//! `ring_group`: one contact offered to several agents at once, the first
//! accept wins and the others are withdrawn; declines, expiry, the
//! customer leaving and a restart in the middle of a ring.

use super::*;

/// Four chat agents, `a0` idle longest; queue `ring` rings `size` of them.
fn ring_engine(size: usize) -> Engine {
    let mut toml = format!(
        "[routing]\noffer_timeout_secs = 20\nmax_missed_offers = 1\n[[queues]]\nname = \"ring\"\nchannels = [\"chat\"]\nstrategy = \"ring_group\"\nring_size = {size}\n"
    );
    for i in 0..4 {
        toml.push_str(&format!(
            "[[agents]]\nid = \"a{i}\"\nskills = {{ s = 5 }}\ncapacity = {{ chat = 1 }}\n"
        ));
    }
    let mut e = Engine::new(spec(&toml), t(0.0));
    for i in 0..4 {
        e.on_agent(
            &agent_ev(&format!("a{i}"), "presence", json!({"status": "available"})),
            t(i as f64),
        )
        .expect("presence");
    }
    e.take_outputs();
    e
}

/// Desktop notices of one kind: (agent, offer id, reason).
fn notices(out: &[Outbound], kind: &str) -> Vec<(String, String, String)> {
    out.iter()
        .filter_map(|o| {
            let OutSubject::Desktop(a) = &o.subject else {
                return None;
            };
            let v: serde_json::Value = serde_json::from_slice(&o.payload).ok()?;
            (v["kind"] == kind).then(|| {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (a.to_string(), s("offer_id"), s("reason"))
            })
        })
        .collect()
}

fn offered_to(out: &[Outbound]) -> Vec<String> {
    offers(out).into_iter().map(|(a, _)| a).collect()
}

fn open(e: &mut Engine, n: u32, at: f64) -> (String, Vec<(String, serde_json::Value)>) {
    e.on_inbound(
        &inbound(&format!("m{n}"), "chat", &format!("conv{n}"), json!({})),
        t(at),
    )
    .expect("inbound");
    let out = offers(&e.take_outputs());
    let id = out
        .first()
        .map(|(_, o)| o["contact_id"].as_str().unwrap_or_default().to_string());
    (id.unwrap_or_default(), out)
}

#[test]
fn a_ring_offers_the_longest_idle_at_once_and_the_first_accept_withdraws_the_rest() {
    let mut e = ring_engine(3);
    let (id, out) = open(&mut e, 1, 10.0);
    let agents: Vec<&str> = out.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(agents, ["a0", "a1", "a2"], "the three longest idle, in that order");
    let ids: BTreeSet<&str> = out
        .iter()
        .map(|(_, o)| o["offer_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 3, "an offer id per agent");
    assert!(out.iter().all(|(_, o)| o["why"]["strategy"] == "ring_group"));
    for a in ["a0", "a1", "a2"] {
        assert_eq!(
            e.agent(a).map(|a| a.load[Channel::Chat.index()]),
            Some(1),
            "{a} holds a slot while ringing"
        );
    }

    e.on_agent(&agent_ev("a1", "accept", json!({"contact_id": id})), t(12.0))
        .expect("accept");
    let out = e.take_outputs();
    let mut withdrawn: Vec<(String, String)> = notices(&out, "withdrawn")
        .into_iter()
        .map(|(a, _, reason)| (a, reason))
        .collect();
    withdrawn.sort();
    let taken = "taken by another agent".to_string();
    assert_eq!(
        withdrawn,
        [("a0".to_string(), taken.clone()), ("a2".to_string(), taken)]
    );
    let c = e.contact(&id).expect("open");
    assert!(matches!(&c.state, ContactState::Assigned { agent, .. } if agent.as_str() == "a1"));
    for (a, load) in [("a0", 0), ("a1", 1), ("a2", 0)] {
        assert_eq!(e.agent(a).map(|a| a.load[Channel::Chat.index()]), Some(load), "{a}");
    }
    // Too late: the contact is someone else's.
    let r = e.on_agent(&agent_ev("a0", "accept", json!({"contact_id": id})), t(13.0));
    assert!(matches!(r, Ok(Outcome::Rejected(_))), "{r:?}");
    // The freed members ring again for the next contact.
    e.take_outputs();
    let (_, out) = open(&mut e, 2, 14.0);
    let mut agents: Vec<String> = out.into_iter().map(|(a, _)| a).collect();
    agents.sort();
    assert_eq!(agents, ["a0", "a2", "a3"]);
}

#[test]
fn each_withdrawn_notice_names_that_agents_own_offer() {
    let mut e = ring_engine(3);
    let (id, out) = open(&mut e, 1, 10.0);
    let mine: BTreeMap<String, String> = out
        .iter()
        .map(|(a, o)| (a.clone(), o["offer_id"].as_str().unwrap_or_default().to_string()))
        .collect();
    e.on_agent(&agent_ev("a2", "accept", json!({"contact_id": id})), t(11.0))
        .expect("accept");
    for (agent, offer_id, _) in notices(&e.take_outputs(), "withdrawn") {
        assert_eq!(Some(&offer_id), mine.get(&agent), "{agent}");
    }
}

#[test]
fn a_member_who_declines_drops_out_and_the_last_decline_requeues() {
    let mut e = ring_engine(2);
    let (id, out) = open(&mut e, 1, 10.0);
    let agents: Vec<&str> = out.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(agents, ["a0", "a1"]);
    e.on_agent(&agent_ev("a0", "decline", json!({"contact_id": id})), t(11.0))
        .expect("decline");
    let out = e.take_outputs();
    assert!(offers(&out).is_empty(), "still ringing at a1: nothing new offered");
    assert!(
        notices(&out, "withdrawn").is_empty(),
        "a decliner gets no withdrawn notice"
    );
    let c = e.contact(&id).expect("open");
    assert_eq!(c.offers().len(), 1);
    assert!(c.held_by(&AgentId::try_from("a1").expect("id")));
    assert_eq!(e.agent("a0").map(|a| a.load[Channel::Chat.index()]), Some(0));

    e.on_agent(&agent_ev("a1", "decline", json!({"contact_id": id})), t(12.0))
        .expect("decline");
    // Back in the queue with its age, and rung at once at those who have
    // not passed on it.
    let out = offers(&e.take_outputs());
    let agents: Vec<&str> = out.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(agents, ["a2", "a3"]);
    assert_eq!(out[0].1["waited_secs"], 2.0, "original age kept");
}

#[test]
fn an_unanswered_ring_expires_for_every_member() {
    let mut e = ring_engine(2);
    let (id, _) = open(&mut e, 1, 10.0);
    e.on_tick(t(30.0));
    let out = e.take_outputs();
    let mut expired: Vec<(String, String)> = notices(&out, "withdrawn").into_iter().map(|(a, _, r)| (a, r)).collect();
    expired.sort();
    assert_eq!(
        expired,
        [
            ("a0".to_string(), "offer expired".to_string()),
            ("a1".to_string(), "offer expired".to_string())
        ]
    );
    // max_missed_offers = 1: both were set away, and told why.
    assert_eq!(notices(&out, "set_away").len(), 2);
    for a in ["a0", "a1"] {
        assert_eq!(e.agent(a).map(|a| a.status), Some(Presence::Away), "{a}");
    }
    assert_eq!(offered_to(&out), ["a2", "a3"], "re-rung at once at the others");
    let c = e.contact(&id).expect("open");
    assert_eq!(c.declined_by.len(), 2);
}

#[test]
fn the_customer_leaving_withdraws_every_members_offer() {
    let mut e = ring_engine(3);
    let (_, _) = open(&mut e, 1, 10.0);
    let ev = decode_inbound(
        "chat",
        json!({"v":1,"id":"bye","type":"end","channel":"chat","conversation_id":"conv1","customer":{"id":"c"}})
            .to_string()
            .as_bytes(),
    )
    .expect("end");
    e.on_inbound(&ev, t(11.0)).expect("end");
    let w = notices(&e.take_outputs(), "withdrawn");
    assert_eq!(w.len(), 3);
    assert!(w.iter().all(|(_, _, r)| r == "customer left"));
    for i in 0..4 {
        assert_eq!(e.agent(&format!("a{i}")).map(|a| a.load), Some([0; 4]));
    }
}

#[test]
fn a_restart_in_the_middle_of_a_ring_keeps_every_offer() {
    let mut e = ring_engine(3);
    let (id, out) = open(&mut e, 1, 10.0);
    let before: BTreeSet<String> = out
        .iter()
        .map(|(_, o)| o["offer_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let spec = Arc::clone(&e.spec);
    let (contacts, agents) = snapshot(&mut e);
    let mut r = Engine::restore(spec, contacts, agents, t(11.0));
    r.replay_offers();
    let again: BTreeSet<String> = offers(&r.take_outputs())
        .iter()
        .map(|(_, o)| o["offer_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(again, before, "the same three offers, same ids");
    for a in ["a0", "a1", "a2"] {
        assert_eq!(r.agent(a).map(|a| a.load[Channel::Chat.index()]), Some(1), "{a}");
    }
    r.on_agent(&agent_ev("a2", "accept", json!({"contact_id": id})), t(12.0))
        .expect("accept");
    assert_eq!(notices(&r.take_outputs(), "withdrawn").len(), 2);
    assert_eq!(r.agent("a0").map(|a| a.load[Channel::Chat.index()]), Some(0));
}

#[test]
fn ring_size_is_validated() {
    let bad = "[[queues]]\nname = \"a\"\nchannels = [\"chat\"]\nstrategy = \"ring_group\"\nring_size = 0\n[[queues]]\nname = \"b\"\nchannels = [\"chat\"]\nring_size = 2\n";
    let errs = problems(bad);
    assert!(errs.contains("queues[0].ring_size = 0"), "{errs}");
    assert!(
        errs.contains("queues[1].ring_size = 2: applies to strategy ring_group only"),
        "{errs}"
    );
}
