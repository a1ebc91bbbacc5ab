//! SLA alerts on a real nats-server: a warning at each threshold and a
//! breach at the target, once each, on `omni.alert.sla.<kind>`; a responded
//! contact raises none.

mod support;

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
