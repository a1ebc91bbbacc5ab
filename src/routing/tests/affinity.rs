//! Customers recognised on return: a returning customer's last agent and
//! history, a reply in a known thread, and the bound on what is remembered.

use super::*;

#[test]
fn a_returning_customer_goes_to_the_agent_who_served_them_last_who_sees_the_history() {
    let toml = r#"
[routing.affinity]
lookback_secs = 3600
history = 2
[[queues]]
name = "q"
channels = ["email", "chat"]
[[agents]]
id = "x"
capacity = { email = 1, chat = 1 }
initial_status = "available"
[[agents]]
id = "y"
capacity = { email = 1, chat = 1 }
initial_status = "offline"
"#;
    let spec = spec(toml);
    let mut e = Engine::new(Arc::clone(&spec), t(0.0));
    let mut n = 0;
    let mut contact = |e: &mut Engine, customer: &str, ch: &str, at: f64| {
        n += 1;
        let ev = inbound(
            &format!("m{n}"),
            ch,
            &format!("c{n}"),
            json!({"customer": {"id": customer}}),
        );
        e.on_inbound(&ev, t(at)).expect("ok");
        offers(&e.take_outputs()).into_iter().next()
    };
    let finish = |e: &mut Engine, agent: &str, o: &serde_json::Value, at: f64| {
        let id = o["contact_id"].as_str().expect("id");
        e.on_agent(&agent_ev(agent, "accept", json!({"contact_id": id})), t(at))
            .expect("ok");
        e.on_agent(&agent_ev(agent, "complete", json!({"contact_id": id})), t(at))
            .expect("ok");
    };
    // Ana's first contact: x is the only one available.
    let (a, o) = contact(&mut e, "ana@example.com", "email", 1.0).expect("offered");
    assert_eq!(a, "x");
    assert!(o.get("history").is_none(), "nothing known yet: {o}");
    finish(&mut e, "x", &o, 2.0);
    e.on_agent(&agent_ev("y", "presence", json!({"status": "available"})), t(0.5))
        .expect("ok");
    // y has been idle longer than x, but Ana is back, on chat: x first.
    let (a, o) = contact(&mut e, "ana@example.com", "chat", 10.0).expect("offered");
    assert_eq!(a, "x");
    assert_eq!(o["why"]["returning_customer"], true);
    assert_eq!(o["history"][0]["agent"], "x");
    assert_eq!(o["history"][0]["channel"], "email");
    assert_eq!(o["history"][0]["outcome"], "completed");
    // Someone else goes by the strategy: y, idle longest.
    let (a, other) = contact(&mut e, "bo", "email", 11.0).expect("offered");
    assert_eq!(a, "y");
    assert!(other["why"].get("returning_customer").is_none());
    finish(&mut e, "y", &other, 12.0);
    finish(&mut e, "x", &o, 13.0);
    // After a restart from the records, Ana is still recognised.
    let records: Vec<(String, Vec<u8>)> = e.records().collect();
    let customers: Vec<_> = records
        .iter()
        .filter_map(|(k, v)| Some((customers::parse_record_key(k)?, serde_json::from_slice(v).ok()?)))
        .collect();
    // Two customers and the three threads (conversations) they closed.
    assert_eq!(customers.len(), 5);
    assert!(
        records.iter().all(|(k, _)| !k.contains("ana")),
        "keys hash the customer id"
    );
    let (contacts, agents) = snapshot(&mut e);
    let mut r = Engine::restore(Arc::clone(&spec), contacts, agents, t(20.0));
    r.restore_customers(customers);
    // Ana again, with y idle longer: x, and the history holds the last two.
    let (a, o) = contact(&mut r, "ana@example.com", "email", 30.0).expect("offered");
    assert_eq!(a, "x");
    assert_eq!(o["history"].as_array().map(Vec::len), Some(2));
    // x has no e-mail slot now: Ana's next e-mail does not wait for x.
    let (a, _) = contact(&mut r, "ana@example.com", "email", 31.0).expect("offered");
    assert_eq!(a, "y");
    // Past the lookback, Ana is a new customer again.
    finish(&mut r, "x", &o, 32.0);
    let (a, o) = contact(&mut r, "ana@example.com", "email", 32.0 + 3_601.0).expect("offered");
    assert_eq!((a.as_str(), &o["why"].get("returning_customer")), ("x", &None));
}

#[test]
fn a_reply_in_a_known_thread_goes_first_to_the_agent_who_handled_the_thread() {
    let toml = r#"
[routing.affinity]
lookback_secs = 3600
[[queues]]
name = "q"
channels = ["email"]
[[agents]]
id = "x"
capacity = { email = 2 }
initial_status = "available"
[[agents]]
id = "y"
capacity = { email = 2 }
initial_status = "offline"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    let mut n = 0;
    let mut contact = |e: &mut Engine, customer: &str, thread: &str, at: f64| {
        n += 1;
        let ev = inbound(&format!("m{n}"), "email", thread, json!({"customer": {"id": customer}}));
        e.on_inbound(&ev, t(at)).expect("ok");
        offers(&e.take_outputs()).into_iter().next().expect("offered")
    };
    // y comes in after x (so x, idle since the start, takes the first
    // contact); x's completion then makes y the longer idle.
    e.on_agent(&agent_ev("y", "presence", json!({"status": "available"})), t(0.5))
        .expect("ok");
    // Ana writes in thread T; x handles it.
    let (a, o) = contact(&mut e, "ana@example.com", "mail:<T@example.com>", 1.0);
    assert_eq!(a, "x");
    let id = o["contact_id"].as_str().expect("id").to_string();
    e.on_agent(&agent_ev("x", "accept", json!({"contact_id": id})), t(2.0))
        .expect("ok");
    e.on_agent(&agent_ev("x", "complete", json!({"contact_id": id})), t(3.0))
        .expect("ok");
    // Her colleague answers in the same thread from another address: y has
    // been idle longer, but the thread's agent x gets it.
    let (a, o) = contact(&mut e, "bo@example.com", "mail:<T@example.com>", 10.0);
    assert_eq!(a, "x", "{o}");
    assert_eq!(o["why"]["returning_customer"], true);
    // Bo in a new thread is nobody's: the strategy's choice, y.
    let (a, o) = contact(&mut e, "bo@example.com", "mail:<U@example.com>", 11.0);
    assert_eq!(a, "y", "{o}");
}

#[test]
fn at_the_bound_a_closing_contacts_thread_never_pushes_out_its_own_customer() {
    let toml = r#"
[routing.affinity]
lookback_secs = 3600
history = 5
max_customers = 2
[[queues]]
name = "q"
channels = ["chat"]
[[agents]]
id = "x"
capacity = { chat = 1 }
initial_status = "available"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    let serve = |e: &mut Engine, n: u32, at: f64| {
        let ev = inbound(
            &format!("m{n}"),
            "chat",
            &format!("conv-{n}"),
            json!({"customer": {"id": "bo"}}),
        );
        e.on_inbound(&ev, t(at)).expect("ok");
        let o = offers(&e.take_outputs()).into_iter().next().expect("offered").1;
        let id = o["contact_id"].as_str().expect("id").to_string();
        e.on_agent(&agent_ev("x", "accept", json!({"contact_id": id})), t(at))
            .expect("ok");
        e.on_agent(&agent_ev("x", "complete", json!({"contact_id": id})), t(at + 1.0))
            .expect("ok");
        o
    };
    // Each close remembers Bo and the thread; at two records, the older
    // thread goes, never Bo, whose history keeps growing. (Records of one
    // time are evicted in key order, and Bo's key is below these threads':
    // remembering the thread first would evict Bo.)
    for n in 1..=4 {
        let o = serve(&mut e, n, 10.0 * n as f64);
        let seen = o["history"].as_array().map_or(0, Vec::len);
        assert_eq!(seen, n as usize - 1, "{o}");
        assert!(e.customers_len() <= 2);
    }
}
