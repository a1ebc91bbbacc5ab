//! SLA clocks beyond first response: queue wait, next response (each run
//! its own alerts), resolution; business hours across a weekend and a
//! daylight-saving change; pause and resume; policy selection; a removed
//! policy; contacts at risk; one alert per threshold across a restart.
//! Time is explicit (`now` passed in), so every clock runs on a paused
//! clock.

use super::*;

const CLOCKS: &str = r#"
[sla.policies.full]
first_response_secs = { email = 100 }
next_response_secs = { email = 60 }
queue_wait_secs = { email = 50, chat = 50 }
resolution_secs = { email = 400 }
warning_thresholds = [0.5]
[sla.policies.paused]
resolution_secs = { email = 100 }
warning_thresholds = [0.5]
pause_when_waiting_on_customer = true
[[queues]]
name = "q"
channels = ["email", "chat"]
sla_policy = "full"
[[queues]]
name = "p"
channels = ["email"]
sla_policy = "paused"
"#;

const AGENT: &str = "[[agents]]\nid = \"a\"\ncapacity = { email = 1, chat = 1 }\ninitial_status = \"available\"\n";

/// (clock label from the alert id, kind, threshold).
fn fired(out: &[Outbound]) -> Vec<(String, String, f64)> {
    alerts(out)
        .iter()
        .map(|a| {
            let id = a["alert_id"].as_str().unwrap_or_default();
            let cid = a["contact_id"].as_str().unwrap_or_default();
            let rest = id
                .strip_prefix(&format!("sla-{cid}-"))
                .unwrap_or_default()
                .rsplit_once('-')
                .map_or(String::new(), |(label, _)| label.to_string());
            (
                rest,
                a["kind"].as_str().unwrap_or_default().to_string(),
                a["threshold"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

fn alert(label: &str, kind: &str, threshold: f64) -> (String, String, f64) {
    (label.to_string(), kind.to_string(), threshold)
}

fn open_and_take(e: &mut Engine, queue: &str, at: f64) -> String {
    e.on_inbound(&inbound("m1", "email", "conv", json!({"queue": queue})), t(at))
        .expect("inbound");
    let o = offers(&e.take_outputs());
    o.first()
        .map(|(_, o)| o["contact_id"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn ev(e: &mut Engine, ty: &str, cid: &str, at: f64) -> Outcome {
    e.on_agent(&agent_ev("a", ty, json!({"contact_id": cid})), t(at))
        .expect("agent event")
}

fn customer(e: &mut Engine, id: &str, at: f64) {
    e.on_inbound(&inbound(id, "email", "conv", json!({})), t(at))
        .expect("follow-up");
}

#[test]
fn every_clock_alerts_at_its_thresholds_and_stops_at_its_event() {
    let mut e = Engine::new(spec(&format!("{CLOCKS}{AGENT}")), t(0.0));
    let cid = open_and_take(&mut e, "q", 0.0);
    ev(&mut e, "accept", &cid, 10.0); // queue wait stops (5 s short of its warning at 25 s)
    e.on_tick(t(49.0));
    assert!(fired(&e.take_outputs()).is_empty());
    e.on_tick(t(50.0));
    assert_eq!(fired(&e.take_outputs()), [alert("first_response", "warning", 0.5)]);
    ev(&mut e, "respond", &cid, 60.0);
    // The customer writes back: next response, run 1, from 70 s.
    customer(&mut e, "m2", 70.0);
    customer(&mut e, "m3", 80.0); // joins the running run
    e.on_tick(t(100.0));
    let out = e.take_outputs();
    assert_eq!(fired(&out), [alert("next_response-1", "warning", 0.5)]);
    assert_eq!(alerts(&out)[0]["run"], 1);
    assert_eq!(alerts(&out)[0]["clock"], "next_response");
    assert_eq!(
        ev(&mut e, "respond", &cid, 110.0),
        Outcome::Applied,
        "answers the next response"
    );
    assert_eq!(
        ev(&mut e, "respond", &cid, 111.0),
        Outcome::Ignored("already responded")
    );
    customer(&mut e, "m4", 120.0);
    e.on_tick(t(200.0));
    let out = fired(&e.take_outputs());
    assert_eq!(
        out,
        [
            alert("next_response-2", "warning", 0.5),
            alert("next_response-2", "breach", 1.0),
            alert("resolution", "warning", 0.5)
        ]
    );
    ev(&mut e, "respond", &cid, 201.0);
    e.on_tick(t(400.0));
    assert_eq!(fired(&e.take_outputs()), [alert("resolution", "breach", 1.0)]);
    ev(&mut e, "complete", &cid, 401.0);
    assert_eq!(e.next_deadline(), None, "every clock stopped");
}

#[test]
fn the_queue_wait_clock_runs_until_an_accept() {
    let mut e = Engine::new(spec(CLOCKS), t(0.0));
    e.on_inbound(&inbound("c1", "chat", "chat-1", json!({"queue": "q"})), t(0.0))
        .expect("inbound");
    e.on_tick(t(50.0));
    let out = e.take_outputs();
    assert_eq!(
        fired(&out),
        [alert("queue_wait", "warning", 0.5), alert("queue_wait", "breach", 1.0)]
    );
    let a = &alerts(&out)[1];
    assert_eq!(a["due_at"], "2026-11-23T09:00:50.000Z");
    assert_eq!(a["elapsed_secs"], 50.0);
}

/// Weekdays 09:00-17:00 Madrid; first response within 2 office hours.
const OFFICE: &str = r#"
[calendars.office]
timezone = "Europe/Madrid"
hours = { mon = ["09:00-17:00"], tue = ["09:00-17:00"], wed = ["09:00-17:00"], thu = ["09:00-17:00"], fri = ["09:00-17:00"] }
[sla.policies.office]
first_response_secs = { email = 7200 }
warning_thresholds = [0.5]
calendar = "office"
[[queues]]
name = "q"
channels = ["email"]
sla_policy = "office"
"#;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

#[test]
fn a_business_hours_clock_skips_the_weekend_and_follows_the_dst_change() {
    // Friday 16:00 in winter (15:00Z): one office hour left on Friday.
    let mut e = Engine::new(spec(OFFICE), at("2026-11-27T15:00:00Z"));
    e.on_inbound(&inbound("m1", "email", "conv", json!({})), at("2026-11-27T15:00:00Z"))
        .expect("inbound");
    assert_eq!(
        e.next_deadline(),
        Some(at("2026-11-27T16:00:00Z")),
        "warning at Friday 17:00"
    );
    e.on_tick(at("2026-11-27T16:00:00Z"));
    assert_eq!(fired(&e.take_outputs()), [alert("first_response", "warning", 0.5)]);
    // Nothing over the weekend; the breach is Monday 10:00 local.
    assert_eq!(e.next_deadline(), Some(at("2026-11-30T09:00:00Z")));
    e.on_tick(at("2026-11-29T23:00:00Z"));
    assert!(fired(&e.take_outputs()).is_empty());
    e.on_tick(at("2026-11-30T09:00:00Z"));
    let out = e.take_outputs();
    assert_eq!(fired(&out), [alert("first_response", "breach", 1.0)]);
    assert_eq!(alerts(&out)[0]["elapsed_secs"], 7200.0, "office time, not wall time");

    // The weekend the clocks go forward: Monday 09:00 is 07:00Z, not 08:00Z.
    let mut e = Engine::new(spec(OFFICE), at("2026-03-27T15:00:00Z"));
    e.on_inbound(&inbound("m1", "email", "conv", json!({})), at("2026-03-27T15:00:00Z"))
        .expect("inbound");
    e.on_tick(at("2026-03-27T16:00:00Z"));
    e.take_outputs();
    assert_eq!(e.next_deadline(), Some(at("2026-03-30T08:00:00Z")));
}

#[test]
fn waiting_on_the_customer_pauses_the_clocks_until_they_write() {
    let mut e = Engine::new(spec(&format!("{CLOCKS}{AGENT}")), t(0.0));
    let cid = open_and_take(&mut e, "p", 0.0);
    ev(&mut e, "accept", &cid, 1.0);
    ev(&mut e, "respond", &cid, 2.0);
    assert_eq!(ev(&mut e, "await_customer", &cid, 10.0), Outcome::Applied);
    assert_eq!(e.next_deadline(), None, "nothing counts while paused");
    e.on_tick(t(1_000.0));
    assert!(fired(&e.take_outputs()).is_empty());
    // The customer answers at 300 s: 10 s counted, the warning (50 s) at 340 s.
    customer(&mut e, "m2", 300.0);
    assert_eq!(e.next_deadline(), Some(t(340.0)));
    e.on_tick(t(340.0));
    let out = e.take_outputs();
    assert_eq!(fired(&out), [alert("resolution", "warning", 0.5)]);
    assert_eq!(alerts(&out)[0]["elapsed_secs"], 50.0);

    // A policy without pausing ignores the event.
    let mut e = Engine::new(spec(&format!("{CLOCKS}{AGENT}")), t(0.0));
    let cid = open_and_take(&mut e, "q", 0.0);
    ev(&mut e, "accept", &cid, 1.0);
    assert!(matches!(ev(&mut e, "await_customer", &cid, 2.0), Outcome::Ignored(_)));
    assert_eq!(e.next_deadline(), Some(t(50.0)));
}

#[test]
fn sla_rules_pick_the_policy_by_tier_channel_and_priority() {
    let toml = r#"
[sla]
default_policy = "std"
[sla.policies.std]
first_response_secs = { email = 100, chat = 100 }
[sla.policies.gold]
first_response_secs = { email = 10 }
[sla.policies.urgent]
first_response_secs = { chat = 5 }
[[sla.rules]]
policy = "gold"
tiers = ["gold"]
[[sla.rules]]
policy = "urgent"
channels = ["chat"]
min_priority = 7
[[queues]]
name = "q"
channels = ["email", "chat"]
[[queues]]
name = "own"
channels = ["email"]
sla_policy = "urgent"
"#;
    let mut e = Engine::new(spec(toml), t(0.0));
    let open = |e: &mut Engine, id: &str, ch: &str, extra: serde_json::Value| {
        e.on_inbound(&inbound(id, ch, id, extra), t(0.0)).expect("inbound");
        e.contact_for_conversation(id).and_then(|c| c.sla_policy.clone())
    };
    let gold = json!({"queue": "q", "customer": {"id": "g", "tier": "gold"}});
    assert_eq!(open(&mut e, "1", "email", gold).as_deref(), Some("gold"));
    // Tiers match in any case, as routing rules match them.
    let gold = json!({"queue": "q", "customer": {"id": "g2", "tier": "Gold"}});
    assert_eq!(open(&mut e, "1b", "email", gold).as_deref(), Some("gold"));
    assert_eq!(
        open(&mut e, "2", "chat", json!({"queue": "q", "priority": 8})).as_deref(),
        Some("urgent")
    );
    assert_eq!(
        open(&mut e, "3", "chat", json!({"queue": "q", "priority": 6})).as_deref(),
        Some("std")
    );
    // No rule matches: the queue's own policy, as in older files.
    assert_eq!(
        open(&mut e, "4", "email", json!({"queue": "own"})).as_deref(),
        Some("urgent")
    );
}

#[test]
fn a_removed_policy_falls_back_to_the_default_and_one_alert_per_threshold_survives_a_restart() {
    let with_gone = format!("{CLOCKS}[sla.policies.gone]\nfirst_response_secs = {{ email = 20 }}\nwarning_thresholds = [0.5]\n[[queues]]\nname = \"g\"\nchannels = [\"email\"]\nsla_policy = \"gone\"\n");
    let mut e = Engine::new(spec(&with_gone), t(0.0));
    e.on_inbound(&inbound("m1", "email", "conv", json!({"queue": "g"})), t(0.0))
        .expect("inbound");
    e.on_tick(t(10.0));
    assert_eq!(fired(&e.take_outputs()), [alert("first_response", "warning", 0.5)]);
    // The policy is removed; `full` becomes the default (first response 100 s).
    let without = format!(
        "[sla]\ndefault_policy = \"full\"\n{}[[queues]]\nname = \"g\"\nchannels = [\"email\"]\n",
        CLOCKS
    );
    let (contacts, agents) = snapshot(&mut e);
    let mut r = Engine::restore(spec(&without), contacts, agents, t(11.0));
    r.on_tick(t(11.0));
    assert!(fired(&r.take_outputs()).is_empty(), "0.5 already fired: not again");
    r.on_tick(t(100.0));
    let out = r.take_outputs();
    assert_eq!(fired(&out), [alert("first_response", "breach", 1.0)]);
    assert_eq!(alerts(&out)[0]["policy"], "full");
}

#[test]
fn a_record_from_before_clocks_keeps_its_fired_thresholds() {
    let mut e = Engine::new(spec(CLOCKS), t(0.0));
    e.on_inbound(&inbound("m1", "email", "conv", json!({"queue": "q"})), t(0.0))
        .expect("inbound");
    let (mut contacts, agents) = snapshot(&mut e);
    // As the previous release wrote it: no clocks, the fired thresholds apart.
    let mut v: serde_json::Value = serde_json::to_value(&contacts[0]).expect("json");
    v.as_object_mut().map(|o| o.remove("clocks"));
    v["sla_fired"] = json!([500]);
    contacts[0] = serde_json::from_value(v).expect("old record");
    let mut r = Engine::restore(spec(CLOCKS), contacts, agents, t(60.0));
    r.on_tick(t(60.0));
    assert!(
        fired(&r.take_outputs()).is_empty(),
        "the warning fired before the upgrade"
    );
    r.on_tick(t(100.0));
    assert_eq!(fired(&r.take_outputs()), [alert("first_response", "breach", 1.0)]);
}

#[test]
fn contacts_at_risk_are_counted_per_queue_from_warning_to_breach_or_answer() {
    let mut e = Engine::new(spec(&format!("{CLOCKS}{AGENT}")), t(0.0));
    let cid = open_and_take(&mut e, "q", 0.0);
    ev(&mut e, "accept", &cid, 1.0);
    let risk = |e: &mut Engine| {
        e.take_waiting_changes()
            .into_iter()
            .find(|g| g.queue.as_str() == "q")
            .map(|g| g.at_risk)
    };
    risk(&mut e);
    e.on_tick(t(50.0)); // first response warned
    assert_eq!(risk(&mut e), Some(1));
    ev(&mut e, "respond", &cid, 51.0); // answered: the resolution clock has not warned
    assert_eq!(risk(&mut e), Some(0));
    e.on_tick(t(200.0)); // resolution warned
    assert_eq!(risk(&mut e), Some(1));
    e.on_tick(t(400.0)); // resolution breached: no longer "at risk"
    assert_eq!(risk(&mut e), Some(0));
}

const SLACK: &str = r#"
[sla.policies.slow]
first_response_secs = { chat = 1000 }
[sla.policies.fast]
first_response_secs = { chat = 50 }
[[sla.rules]]
policy = "fast"
tiers = ["gold"]
[[queues]]
name = "q"
channels = ["chat"]
sla_policy = "slow"
ORDER
[[agents]]
id = "a"
capacity = { chat = 1 }
"#;

/// Two waiting chats, the older with the laxer target; an agent arrives.
fn first_served(order: &str) -> String {
    let mut e = Engine::new(spec(&SLACK.replace("ORDER", order)), t(0.0));
    e.on_inbound(&inbound("1", "chat", "lax", json!({})), t(0.0))
        .expect("inbound");
    let gold = json!({"customer": {"id": "g", "tier": "gold"}});
    e.on_inbound(&inbound("2", "chat", "urgent", gold), t(10.0))
        .expect("inbound");
    e.on_agent(&agent_ev("a", "presence", json!({"status": "available"})), t(20.0))
        .expect("presence");
    let o = offers(&e.take_outputs());
    o[0].1["conversation_id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_queue_ordered_by_slack_serves_the_nearest_breach_first() {
    assert_eq!(first_served("order = \"slack\""), "urgent");
    assert_eq!(first_served(""), "lax", "by age, the older first");
}

const EARLY: &str = r#"
[sla.policies.wait]
queue_wait_secs = { chat = 100 }
[[queues]]
name = "q"
channels = ["chat"]
skills = { s = 5 }
sla_policy = "wait"
EARLY
[[queues.relax]]
after_secs = 600
skills = { s = 1 }
[[agents]]
id = "expert"
skills = { s = 5 }
capacity = { chat = 1 }
initial_status = "available"
[[agents]]
id = "junior"
skills = { s = 1 }
capacity = { chat = 1 }
initial_status = "available"
"#;

/// Three chats arrive at 0 s and the expert serves them 100 s apart: the
/// queue's pace is 100 s per contact; the expert is free again at 300 s.
fn pace_expert(e: &mut Engine) {
    for n in 1..=3 {
        e.on_inbound(&inbound(&format!("m{n}"), "chat", &format!("c{n}"), json!({})), t(0.0))
            .expect("inbound");
    }
    for at in [0.0, 100.0, 200.0] {
        let o = offers(&e.take_outputs());
        let cid = o[0].1["contact_id"].as_str().unwrap_or_default().to_string();
        e.on_agent(&agent_ev("expert", "accept", json!({"contact_id": cid})), t(at))
            .expect("accept");
        e.on_agent(
            &agent_ev("expert", "complete", json!({"contact_id": cid})),
            t(at + 100.0),
        )
        .expect("complete");
    }
}

/// The expert paces the queue (see `pace_expert`); a fourth chat arrives
/// at 301 s with a 100 s queue-wait target.
fn fourth_chat(early: &str) -> (Engine, Vec<Outbound>) {
    let mut e = Engine::new(spec(&EARLY.replace("EARLY", early)), t(0.0));
    pace_expert(&mut e);
    e.take_outputs();
    // Another chat takes one of the two agents (the expert, or the junior
    // when it too was relaxed early).
    e.on_inbound(&inbound("m9", "chat", "c9", json!({})), t(300.5))
        .expect("inbound");
    assert_eq!(offers(&e.take_outputs()).len(), 1);
    e.on_inbound(&inbound("m4", "chat", "c4", json!({})), t(301.0))
        .expect("inbound");
    let out = e.take_outputs();
    (e, out)
}

#[test]
fn a_contact_predicted_to_breach_relaxes_early_and_says_so() {
    let (_, out) = fourth_chat("relax_before_breach = true");
    let o = offers(&out);
    assert_eq!(o.len(), 1, "{out:?}");
    assert_eq!(
        (&o[0].1["conversation_id"], &o[0].1["why"]["step"]),
        (&json!("c4"), &json!(1))
    );
    let relaxed: Vec<serde_json::Value> = out
        .iter()
        .filter(|o| o.subject == OutSubject::ContactEvent("relaxed"))
        .filter_map(|o| serde_json::from_slice(&o.payload).ok())
        .collect();
    assert_eq!(relaxed.len(), 1);
    assert!(relaxed[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("applied early"));

    let (_, out) = fourth_chat("");
    assert!(offers(&out).is_empty(), "without the option it waits for the expert");
}

#[test]
fn a_contact_relaxes_when_the_prediction_crosses_its_breach_not_before() {
    let toml = EARLY
        .replace("EARLY", "relax_before_breach = true")
        .replace("queue_wait_secs = { chat = 100 }", "queue_wait_secs = { chat = 300 }");
    let mut e = Engine::new(spec(&toml), t(0.0));
    // The junior steps away; the expert serves three chats 100 s apart
    // (the queue's pace: 100 s per contact), then takes a fourth.
    e.on_agent(&agent_ev("junior", "presence", json!({"status": "away"})), t(0.0))
        .expect("away");
    pace_expert(&mut e);
    e.on_inbound(&inbound("m9", "chat", "c9", json!({})), t(300.5))
        .expect("inbound");
    let o = offers(&e.take_outputs());
    let c9 = o[0].1["contact_id"].as_str().unwrap_or_default().to_string();
    e.on_agent(&agent_ev("expert", "accept", json!({"contact_id": c9})), t(300.5))
        .expect("accept");
    e.on_agent(
        &agent_ev("junior", "presence", json!({"status": "available"})),
        t(300.6),
    )
    .expect("back");
    e.take_outputs();
    // Received at 301 s: breach at 601 s, a 100 s predicted wait crosses it
    // at 501 s. Not relaxed on arrival...
    e.on_inbound(&inbound("m4", "chat", "c4", json!({})), t(301.0))
        .expect("inbound");
    assert!(offers(&e.take_outputs()).is_empty(), "slack enough on arrival");
    e.on_tick(t(500.9));
    let early = offers(&e.take_outputs());
    assert!(early.is_empty(), "not before the crossing: {early:?}");
    // ...but at the crossing, 100 s before the 600 s step would apply.
    e.on_tick(t(501.0));
    let o = offers(&e.take_outputs());
    assert_eq!(o.len(), 1);
    assert_eq!((o[0].0.as_str(), &o[0].1["why"]["step"]), ("junior", &json!(1)));
}

/// A step applied early stays applied across a restart (the pace that
/// predicted the breach is not part of the records): it never goes back.
#[test]
fn an_early_step_survives_a_restart() {
    let (mut e, out) = fourth_chat("relax_before_breach = true");
    let o = offers(&out);
    assert_eq!(o[0].1["why"]["step"], json!(1));
    let (agent, cid) = (
        o[0].0.clone(),
        o[0].1["contact_id"].as_str().unwrap_or_default().to_string(),
    );
    let spec = Arc::clone(&e.spec);
    let (contacts, agents) = snapshot(&mut e);
    let mut r = Engine::restore(spec, contacts, agents, t(301.5));
    r.route_waiting(t(301.5));
    r.take_outputs();
    // The agent passes; the other is busy, so it comes back to them,
    // still at step 1 (not back at step 0, as placed).
    r.on_agent(&agent_ev(&agent, "decline", json!({"contact_id": cid})), t(302.0))
        .expect("decline");
    let o = offers(&r.take_outputs());
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!((&o[0].0, &o[0].1["why"]["step"]), (&agent, &json!(1)));
}

#[test]
fn contacts_share_their_policy_name_when_opened_and_when_restored() {
    let mut e = Engine::new(spec(CLOCKS), t(0.0));
    for (n, q) in [(1, "q"), (2, "q"), (3, "p")] {
        let ev = inbound(&format!("m{n}"), "email", &format!("c{n}"), json!({"queue": q}));
        e.on_inbound(&ev, t(n as f64)).expect("inbound");
    }
    let policy = |e: &Engine, conv: &str| {
        e.contact_for_conversation(conv)
            .and_then(|c| c.sla_policy.clone())
            .expect("a policy")
    };
    assert_eq!(&*policy(&e, "c1"), "full");
    assert!(Arc::ptr_eq(&policy(&e, "c1"), &policy(&e, "c2")), "opened: shared");
    assert_eq!(&*policy(&e, "c3"), "paused");
    // Records read back each have their own copy; the restore shares them,
    // and keeps a name no longer configured as it was.
    let mut records: Vec<Contact> = e
        .contacts()
        .map(|c| serde_json::from_value(serde_json::to_value(c).expect("record")).expect("reads back"))
        .collect();
    if let Some(c) = records.iter_mut().find(|c| c.conversation_id == "c3") {
        c.sla_policy = Some("gone".into());
    }
    let back = Engine::restore(Arc::clone(&e.spec), records, Vec::new(), t(4.0));
    assert!(
        Arc::ptr_eq(&policy(&back, "c1"), &policy(&back, "c2")),
        "restored: shared"
    );
    assert!(!Arc::ptr_eq(&policy(&back, "c1"), &policy(&e, "c1")));
    assert_eq!(&*policy(&back, "c3"), "gone");
}
