//! `Engine::explain`: each agent's reason, the bounded list, and a waiting
//! contact's place in its queue's line.

use super::*;

fn queued_id(e: &mut Engine, n: u32, extra: serde_json::Value, at: f64) -> String {
    queued_on(e, "chat", n, extra, at)
}

fn queued_on(e: &mut Engine, channel: &str, n: u32, extra: serde_json::Value, at: f64) -> String {
    e.on_inbound(&inbound(&format!("m{n}"), channel, &format!("c{n}"), extra), t(at))
        .expect("ok");
    let out = e.take_outputs();
    let q = events(&out, "queued");
    q[0]["contact_id"].as_str().expect("id").to_string()
}

#[test]
fn explain_gives_each_agents_reason_and_cuts_the_list_at_the_limit() {
    // Queue q needs s >= 3.
    let agents =
        "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n\
[[agents]]\nid = \"b\"\nskills = { s = 5 }\ncapacity = { chat = 2 }\ninitial_status = \"offline\"\n\
[[agents]]\nid = \"c\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"offline\"\n\
[[agents]]\nid = \"d\"\nskills = { t = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n\
[[agents]]\nid = \"e\"\nskills = { s = 2 }\ncapacity = { chat = 1 }\ninitial_status = \"available\"\n";
    let mut e = engine(agents);
    // a takes the first contact and is full.
    let first = queued_id(&mut e, 0, json!({"queue": "q"}), 0.0);
    e.on_agent(&agent_ev("a", "accept", json!({"contact_id": first})), t(1.0))
        .expect("ok");
    // b comes in, is offered the second one and declines it: nobody else
    // fits, so it goes back to b, who has a second slot.
    e.on_agent(&agent_ev("b", "presence", json!({"status": "available"})), t(2.0))
        .expect("ok");
    let id = queued_id(&mut e, 1, json!({"queue": "q"}), 3.0);
    e.on_agent(&agent_ev("b", "decline", json!({"contact_id": id})), t(4.0))
        .expect("ok");
    let x = e.explain(&id, None, 10, t(5.0)).expect("open");
    let reasons: BTreeMap<String, (String, Option<String>)> = x["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| {
            let detail = a["detail"].as_str().map(str::to_string);
            (
                a["agent_id"].as_str().expect("id").into(),
                (a["reason"].as_str().expect("reason").into(), detail),
            )
        })
        .collect();
    let want = |r: &str, d: Option<&str>| (r.to_string(), d.map(str::to_string));
    assert_eq!(reasons["a"], want("no_capacity", Some("1 of 1 on chat")), "{x}");
    assert_eq!(reasons["b"], want("declined", None), "{x}");
    assert_eq!(reasons["c"], want("not_available", Some("offline")), "{x}");
    assert_eq!(reasons["d"], want("missing_skill", Some("s")), "{x}");
    assert_eq!(reasons["e"], want("level_too_low", Some("s 2 < 3")), "{x}");
    assert_eq!(x["state"]["status"], "offered");
    assert_eq!(x["position"], json!(null), "only a waiting contact has a place in line");
    // A limit lists that many and still counts everyone by reason.
    let x = e.explain(&id, None, 2, t(5.0)).expect("open");
    assert_eq!(x["agents"].as_array().map(Vec::len), Some(2), "{x}");
    assert_eq!(
        (x["agents_listed"].clone(), x["agents_total"].clone()),
        (json!(2), json!(5))
    );
    let counted: usize = x["agents_by_reason"]
        .as_object()
        .expect("counts")
        .values()
        .filter_map(|n| n.as_u64())
        .sum::<u64>() as usize;
    assert_eq!(counted, 5, "{x}");
}

#[test]
fn explain_gives_a_waiting_contacts_place_in_its_queues_line() {
    let agents = "[[agents]]\nid = \"a\"\nskills = { s = 5 }\ncapacity = { chat = 1 }\ninitial_status = \"offline\"\n";
    let mut e = engine(agents);
    let older = queued_id(&mut e, 1, json!({"queue": "q", "priority": 3}), 1.0);
    let newer = queued_id(&mut e, 2, json!({"queue": "q", "priority": 3}), 2.0);
    let urgent = queued_id(&mut e, 3, json!({"queue": "q", "priority": 7}), 3.0);
    let elsewhere = queued_id(&mut e, 4, json!({"queue": "ll", "priority": 9}), 4.0);
    let place = |e: &Engine, id: &str| {
        let x = e.explain(id, None, 1, t(5.0)).expect("open");
        (x["position"].clone(), x["waiting_in_queue"].clone())
    };
    // Priority first, then age; a contact of another queue does not count.
    assert_eq!(place(&e, &urgent), (json!(1), json!(3)));
    assert_eq!(place(&e, &older), (json!(2), json!(3)));
    assert_eq!(place(&e, &newer), (json!(3), json!(3)));
    assert_eq!(place(&e, &elsewhere), (json!(1), json!(1)));
}

#[test]
fn explain_ranks_by_priority_aged_to_the_querys_own_time() {
    let toml = "[[queues]]\nname = \"aged\"\nchannels = [\"chat\"]\nageing_secs = 10\n\
[[agents]]\nid = \"a\"\ncapacity = { chat = 1 }\ninitial_status = \"offline\"\n";
    let mut e = Engine::new(spec(toml), t(0.0));
    let older = queued_id(&mut e, 1, json!({"queue": "aged", "priority": 4}), 0.0);
    let newer = queued_id(&mut e, 2, json!({"queue": "aged", "priority": 5}), 9.0);
    let place = |e: &Engine, id: &str, at: f64| {
        let x = e.explain(id, None, 1, t(at)).expect("open");
        (x["position"].clone(), x["effective_priority"].clone())
    };
    // At 9.5 s the newer one's 5 beats the older one's 4...
    assert_eq!(place(&e, &newer, 9.5), (json!(1), json!(5)));
    // ...at 10 s, with no input since, the older one has aged to 5 and,
    // older, comes first: position and priority agree at the query's time.
    assert_eq!(place(&e, &older, 10.0), (json!(1), json!(5)));
    assert_eq!(place(&e, &newer, 10.0), (json!(2), json!(5)));
}

#[test]
fn explain_names_the_unit_budget_when_it_is_what_keeps_an_agent_busy() {
    let toml = r#"
[routing.units]
chat = 35
voice = 100
[[queues]]
name = "all"
channels = ["chat", "voice"]
[[agents]]
id = "ann"
units = 100
capacity = { chat = 3, voice = 1 }
initial_status = "available"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    e.on_inbound(&inbound("m1", "chat", "c1", json!({})), t(1.0))
        .expect("ok");
    assert_eq!(offers(&e.take_outputs()).len(), 1, "the chat is offered");
    // A call needs 100 units; ann holds 35 of them, with her voice slot free.
    let call = queued_on(&mut e, "voice", 2, json!({}), 2.0);
    let x = e.explain(&call, Some("ann"), 10, t(3.0)).expect("open");
    assert_eq!(x["agents"][0]["reason"], "no_capacity", "{x}");
    assert_eq!(x["agents"][0]["detail"], "35 of 100 units held, voice needs 100", "{x}");
}
