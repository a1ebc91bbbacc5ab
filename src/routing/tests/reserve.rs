//! Affinity's waiting window (`[routing.affinity] wait_secs`): a returning
//! customer's contact is kept for their last agent while that agent is
//! available but busy, then goes to anyone who fits.

use super::*;

/// Agents `a` (idle longest) and `b`, one chat each. The customer's first
/// contact goes to `a`, who completes it at 10 s with `wrap` s of wrap-up;
/// the customer returns at 12 s. Returns the engine and the offers made
/// for the return.
fn returning(wait_secs: f64, wrap: f64) -> (Engine, Vec<(String, serde_json::Value)>) {
    let toml = format!(
        "[routing.affinity]\nlookback_secs = 3600\nwait_secs = {wait_secs}\n[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\n\
         [[agents]]\nid = \"a\"\ncapacity = {{ chat = 1 }}\n[[agents]]\nid = \"b\"\ncapacity = {{ chat = 1 }}\n"
    );
    let mut e = served_by_a(&toml, wrap);
    e.on_inbound(&inbound("m2", "chat", "conv2", json!({})), t(12.0))
        .expect("return");
    let out = offers(&e.take_outputs());
    (e, out)
}

/// Agents `a` and `b` of `toml` come available at 0 s and 1 s; the
/// customer's first chat (5 s) goes to `a`, who accepts it and completes
/// it at 10 s with `wrap` s of wrap-up. Outputs taken.
fn served_by_a(toml: &str, wrap: f64) -> Engine {
    let mut e = Engine::new(spec(toml), t(0.0));
    for (i, a) in ["a", "b"].iter().enumerate() {
        e.on_agent(&agent_ev(a, "presence", json!({"status": "available"})), t(i as f64))
            .expect("presence");
    }
    e.on_inbound(&inbound("m1", "chat", "conv1", json!({})), t(5.0))
        .expect("first");
    let first = offers(&e.take_outputs());
    assert_eq!(first[0].0, "a");
    let id = first[0].1["contact_id"].as_str().expect("id").to_string();
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": id})), t(6.0))
        .expect("accept");
    e.on_agent(
        &agent_ev("a", "complete", json!({"contact_id": id, "wrap_up_secs": wrap})),
        t(10.0),
    )
    .expect("complete");
    e.take_outputs();
    e
}

fn returned_id(e: &Engine) -> String {
    e.contact_for_conversation("conv2").map(|c| c.id.clone()).expect("open")
}

#[test]
fn a_returning_customer_waits_for_their_busy_last_agent_within_the_window() {
    let (mut e, out) = returning(30.0, 15.0);
    assert!(out.is_empty(), "kept for a although b is free: {out:?}");
    let id = returned_id(&e);
    let x = e.explain(&id, Some("b"), 10, t(13.0)).expect("explain");
    assert_eq!(x["agents"][0]["reason"], "kept_for_last_agent", "{x}");
    assert!(x["kept_for_preferred_agent_until"].is_string(), "{x}");
    // a's wrap-up ends at 25 s, inside the window: a gets it.
    e.on_tick(t(25.0));
    let out = offers(&e.take_outputs());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, "a");
    assert_eq!(out[0].1["why"]["returning_customer"], true);
}

#[test]
fn when_the_window_ends_anyone_who_fits_gets_it() {
    let (mut e, out) = returning(30.0, 60.0);
    assert!(out.is_empty());
    e.on_tick(t(41.9));
    assert!(offers(&e.take_outputs()).is_empty(), "still inside the window");
    e.on_tick(t(42.0));
    let out = offers(&e.take_outputs());
    assert_eq!(out.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(out[0].1["waited_secs"], 30.0, "its age is kept");
}

#[test]
fn the_last_agent_leaving_ends_the_window_at_once() {
    let (mut e, _) = returning(30.0, 60.0);
    e.on_agent(&agent_ev("a", "presence", json!({"status": "away"})), t(14.0))
        .expect("away");
    let out = offers(&e.take_outputs());
    assert_eq!(out.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["b"]);
}

/// The customer returns on a channel their last agent does not take, or
/// needing a skill that agent lacks: nobody waits for them.
#[test]
fn a_contact_the_last_agent_could_never_take_is_not_kept_for_them() {
    let toml = "[routing.affinity]\nlookback_secs = 3600\nwait_secs = 600\n\
                [[queues]]\nname = \"q\"\nchannels = [\"chat\", \"voice\"]\n\
                [[agents]]\nid = \"a\"\ncapacity = { chat = 1 }\n\
                [[agents]]\nid = \"b\"\nskills = { billing = 3 }\ncapacity = { chat = 2, voice = 1 }\n";
    let mut e = served_by_a(toml, 60.0);
    // By voice (a has no voice slot), then by chat needing billing (a has
    // none): each goes to b at once.
    e.on_inbound(&inbound("m2", "voice", "conv2", json!({})), t(12.0))
        .expect("voice");
    let out = offers(&e.take_outputs());
    assert_eq!(out.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["b"], "voice");
    e.on_inbound(&inbound("m3", "chat", "conv3", json!({"skills": ["billing"]})), t(13.0))
        .expect("chat");
    let out = offers(&e.take_outputs());
    assert_eq!(
        out.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["b"],
        "billing"
    );
}

#[test]
fn without_a_window_the_contact_goes_to_whoever_is_free() {
    let (_, out) = returning(0.0, 60.0);
    assert_eq!(out.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["b"]);
}

#[test]
fn a_restart_inside_the_window_keeps_the_contact_for_its_agent() {
    let (mut e, _) = returning(30.0, 15.0);
    let spec = Arc::clone(&e.spec);
    let (contacts, agents) = snapshot(&mut e);
    let mut r = Engine::restore(spec, contacts, agents, t(13.0));
    r.route_waiting(t(13.0));
    assert!(offers(&r.take_outputs()).is_empty(), "still kept for a");
    r.on_tick(t(25.0));
    let out = offers(&r.take_outputs());
    assert_eq!(out.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["a"]);
}

#[test]
fn a_kept_contact_that_ages_keeps_its_place_for_its_agent() {
    // Two returns of the same customer while a is busy; the older goes first.
    let (mut e, _) = returning(30.0, 15.0);
    e.on_inbound(&inbound("m3", "chat", "conv3", json!({"priority": 0})), t(13.0))
        .expect("second return");
    assert!(offers(&e.take_outputs()).is_empty());
    e.on_tick(t(25.0));
    let out = offers(&e.take_outputs());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1["conversation_id"], "conv2", "older first");
    // The second stays kept until its own window ends, then b takes it.
    e.on_tick(t(43.0));
    let out = offers(&e.take_outputs());
    assert_eq!(out.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["b"]);
}

#[test]
fn wait_secs_needs_affinity_and_a_bound() {
    let bad = "[routing.affinity]\nwait_secs = 7200\n";
    let errs = problems(bad);
    assert!(
        errs.contains("routing.affinity.wait_secs = 7200.0: must be a number of seconds"),
        "{errs}"
    );
    assert!(errs.contains("needs routing.affinity.lookback_secs"), "{errs}");
}

/// Whether a contact is kept is decided once, when it queues; a restart
/// reads that decision from the record instead of taking it again from
/// the agent's presence then.
#[test]
fn a_restart_keeps_only_what_was_kept() {
    let toml =
        "[routing.affinity]\nlookback_secs = 3600\nwait_secs = 600\n[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\n\
                [[agents]]\nid = \"a\"\ncapacity = { chat = 1 }\n[[agents]]\nid = \"b\"\ncapacity = { chat = 1 }\n";
    // a served the customer and is in a long wrap-up; another customer's
    // contact goes to b.
    let mut e = served_by_a(toml, 300.0);
    let other = json!({"customer": {"id": "someone-else"}});
    e.on_inbound(&inbound("m2", "chat", "conv2", other), t(10.5))
        .expect("other");
    let o = offers(&e.take_outputs());
    assert_eq!(o[0].0, "b");
    let id2 = o[0].1["contact_id"].as_str().expect("id").to_string();
    e.on_agent(&agent_ev("b", "accept", json!({"contact_id": id2})), t(10.6))
        .expect("accept");
    // a is away when the customer returns: not kept, open to everyone
    // (nobody is free). a comes back, still in wrap-up.
    e.on_agent(&agent_ev("a", "presence", json!({"status": "away"})), t(11.0))
        .expect("away");
    e.on_inbound(&inbound("m3", "chat", "conv3", json!({})), t(12.0))
        .expect("return");
    e.on_agent(&agent_ev("a", "presence", json!({"status": "available"})), t(13.0))
        .expect("back");
    e.take_outputs();
    let spec = Arc::clone(&e.spec);
    let (contacts, agents) = snapshot(&mut e);
    let mut r = Engine::restore(spec, contacts, agents, t(14.0));
    r.route_waiting(t(14.0));
    r.take_outputs();
    // b frees a slot: the returning customer's contact is b's, as it would
    // have been without the restart.
    r.on_agent(&agent_ev("b", "complete", json!({"contact_id": id2})), t(15.0))
        .expect("complete");
    let o = offers(&r.take_outputs());
    assert_eq!(
        o.iter()
            .map(|(a, o)| (a.as_str(), o["conversation_id"].as_str()))
            .collect::<Vec<_>>(),
        [("b", Some("conv3"))]
    );
}
