//! SLA alerts on a real nats-server: a warning at each threshold and a
//! breach at the target, once each, on `omni.alert.sla.<kind>`; a responded
//! contact raises none.

use crate::support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{Client, Daemon, NatsServer, WAIT};

const CFG: &str = r#"
[sla.policies.fast]
first_response_secs = { email = 2.0 }
warning_thresholds = [0.5]
[[queues]]
name = "support"
channels = ["email"]
skills = { support = 1 }
sla_policy = "fast"
[[queues]]
name = "nobody"
channels = ["email"]
skills = { rare = 10 }
sla_policy = "fast"
[[agents]]
id = "resp"
skills = { support = 5 }
capacity = { email = 5 }
initial_status = "available"
"#;

#[tokio::test]
async fn warning_then_breach_once_each_and_none_after_a_response() {
    let nats = NatsServer::start();
    let d = Daemon::start(support::config(&nats.url, CFG)).await;
    let mut c = Client::connect(&nats.url).await;
    let t0 = Instant::now();
    // Nobody can take this one: its clock runs to the breach.
    c.contact(
        "email",
        "late",
        json!({"queue": "nobody", "customer": {"id": "k1", "tier": "gold"}}),
    )
    .await;
    // This one is answered at once: its clock stops.
    c.contact("email", "answered", json!({"queue": "support"})).await;
    let o = c.offer("resp", "answered").await;
    let answered = o["contact_id"].as_str().expect("cid").to_string();
    c.agent("resp", "accept", json!({"contact_id": answered})).await;
    c.agent("resp", "respond", json!({"contact_id": answered})).await;
    c.expect("omni.event.contact.responded", WAIT, |v| {
        v["contact_id"] == answered.as_str()
    })
    .await;

    let w = c
        .expect("omni.alert.sla.warning", WAIT, |v| v["conversation_id"] == "late")
        .await;
    let warned_after = t0.elapsed();
    assert_eq!(w["kind"], "warning");
    assert_eq!(w["threshold"], 0.5);
    assert_eq!(w["target_secs"], 2.0);
    assert_eq!(w["clock"], "first_response");
    assert_eq!(w["policy"], "fast");
    assert_eq!(w["queue"], "nobody");
    assert_eq!(w["customer"], json!({"id": "k1", "tier": "gold"}));
    assert!(w["elapsed_secs"].as_f64().expect("elapsed") >= 1.0, "{w}");
    let cid = w["contact_id"].as_str().expect("cid").to_string();
    assert_eq!(w["alert_id"], format!("sla-{cid}-first_response-0.5"));

    let b = c
        .expect("omni.alert.sla.breach", WAIT, |v| v["conversation_id"] == "late")
        .await;
    assert!(b["elapsed_secs"].as_f64().expect("elapsed") >= 2.0, "{b}");
    assert_eq!(b["alert_id"], format!("sla-{cid}-first_response-1"));
    assert!(
        warned_after >= Duration::from_millis(900),
        "warning came too early: {warned_after:?}"
    );

    // Barrier: one more event through the router, then nothing else may
    // have been alerted (no repeat, nothing for the answered contact).
    c.contact("email", "barrier", json!({"queue": "support"})).await;
    c.offer("resp", "barrier").await;
    let rest = c.drain_received().await;
    let alerts: Vec<_> = rest.iter().filter(|(s, _)| s.starts_with("omni.alert.")).collect();
    assert!(alerts.is_empty(), "unexpected extra alerts: {alerts:?}");
    d.stop().await;
}

/// The e-mail conversation of an agent and a customer on the daemon's own
/// clock: next-response runs with their own alert ids, a pause while the
/// agent waits on the customer, and the contacts-at-risk gauge.
#[tokio::test]
async fn next_response_runs_pause_on_the_customer_and_count_contacts_at_risk() {
    let nats = NatsServer::start();
    let cfg = r#"
[sla.policies.thread]
next_response_secs = { email = 2.0 }
resolution_secs = { email = 3600 }
warning_thresholds = [0.25]
pause_when_waiting_on_customer = true
[[queues]]
name = "mail"
channels = ["email"]
sla_policy = "thread"
[[agents]]
id = "m"
capacity = { email = 5 }
initial_status = "available"
"#;
    let d = Daemon::start(support::config(&nats.url, cfg)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("email", "thread", json!({})).await;
    let o = c.offer("m", "thread").await;
    let cid = o["contact_id"].as_str().expect("cid").to_string();
    c.agent("m", "accept", json!({"contact_id": cid})).await;
    c.agent("m", "respond", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.responded", WAIT, |v| {
        v["contact_id"] == cid.as_str()
    })
    .await;
    // The customer writes back: run 1 warns (0.5 s) and breaches (2 s).
    c.contact("email", "thread", json!({})).await;
    let w = c
        .expect("omni.alert.sla.warning", WAIT, |v| v["clock"] == "next_response")
        .await;
    assert_eq!(w["alert_id"], format!("sla-{cid}-next_response-1-0.25"));
    assert_eq!(w["run"], 1);
    // While warned and not breached, the contact counts as at risk.
    support::eventually(WAIT, "the at-risk gauge", || async {
        let (_, m) = support::http_get(d.http, "/metrics").await.ok()?;
        m.contains("omniroute_contacts_at_risk{queue=\"mail\"} 1").then_some(())
    })
    .await;
    let b = c
        .expect("omni.alert.sla.breach", WAIT, |v| v["clock"] == "next_response")
        .await;
    assert_eq!(b["alert_id"], format!("sla-{cid}-next_response-1-1"));
    // The agent replies and asks the customer something: the clocks pause.
    c.agent("m", "respond", json!({"contact_id": cid})).await;
    c.agent("m", "await_customer", json!({"contact_id": cid})).await;
    // The customer answers: run 2 starts, and it warns on its own id.
    c.contact("email", "thread", json!({})).await;
    let w2 = c.expect("omni.alert.sla.warning", WAIT, |v| v["run"] == 2).await;
    assert_eq!(w2["alert_id"], format!("sla-{cid}-next_response-2-0.25"));
    c.agent("m", "respond", json!({"contact_id": cid})).await;
    c.agent("m", "complete", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.completed", WAIT, |v| {
        v["contact_id"] == cid.as_str()
    })
    .await;
    support::eventually(WAIT, "the at-risk gauge back to 0", || async {
        let (_, m) = support::http_get(d.http, "/metrics").await.ok()?;
        m.contains("omniroute_contacts_at_risk{queue=\"mail\"} 0").then_some(())
    })
    .await;
    d.stop().await;
}
