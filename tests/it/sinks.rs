//! Alert sinks with real receivers: a signed webhook received by a real
//! HTTP server that checks the signature, an email by a real SMTP server
//! (aiosmtpd, STARTTLS with a test CA); a flaky receiver (503, then 200)
//! gets one delivery; a dead one produces the dead letter, a 4xx at once;
//! a storm produces a digest.

use crate::support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::smtp::Smtp;
use support::{Client, Daemon, NatsServer};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "hook-secret";

/// One request the receiver saw: (signature valid, alert id header, body).
type Request = (bool, String, Value);

/// What the receiver saw, in order; a watch, so a test waits on each
/// request as it arrives.
type Seen = Arc<tokio::sync::watch::Sender<Vec<Request>>>;

/// A real HTTP receiver answering the scripted statuses in turn (the last
/// one from then on); it checks every request's signature.
async fn receiver(script: Vec<u16>) -> (String, Seen) {
    let seen: Seen = Arc::new(tokio::sync::watch::Sender::new(Vec::new()));
    let state = (Arc::clone(&seen), Arc::new(Mutex::new(script)));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State((seen, script)): State<(Seen, Arc<Mutex<Vec<u16>>>)>, h: HeaderMap, body: Bytes| async move {
                    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let ts = header("x-omniroute-timestamp");
                    let fresh = ts
                        .parse::<i64>()
                        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
                    let want = omniroute::sinks::webhook::signature(SECRET.as_bytes(), &ts, &body);
                    let valid = fresh && header("x-omniroute-signature") == want;
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.send_modify(|s| s.push((valid, header("x-omniroute-alert-id"), v)));
                    let mut s = script.lock().expect("lock");
                    let code = if s.len() > 1 { s.remove(0) } else { s[0] };
                    StatusCode::from_u16(code).expect("status")
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn seen(s: &Seen) -> Vec<Request> {
    s.borrow().clone()
}

/// Waits until what the receiver saw satisfies `done`, and returns it.
async fn seen_until(s: &Seen, what: &str, done: impl FnMut(&Vec<Request>) -> bool) -> Vec<Request> {
    let mut requests = s.subscribe();
    let got = match tokio::time::timeout(WAIT, requests.wait_for(done)).await {
        Ok(Ok(got)) => got.clone(),
        _ => panic!("not within {WAIT:?}: {what}; the receiver saw {:?}", seen(s)),
    };
    got
}

const ROUTING: &str = r#"
[http]
listen = "127.0.0.1:0"
[sla.policies.fast]
first_response_secs = { chat = 2.0 }
warning_thresholds = [0.5]
[[queues]]
name = "nobody"
channels = ["chat"]
skills = { rare = 10 }
sla_policy = "fast"
"#;

fn hook_sink(name: &str, url: &str, extra: &str) -> String {
    format!("[alerts.sinks.{name}]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n{extra}\n")
}

/// Waits until the sink's durable consumer exists (alerts before it are
/// not its to deliver): JetStream's advisory of its creation, heard from
/// before looking for it, so one made in between is not missed.
async fn sink_ready(c: &Client, name: &str) {
    use futures::StreamExt;
    let consumer = format!("omniroute_sink_{name}");
    let mut created =
        c.nc.subscribe(format!("$JS.EVENT.ADVISORY.CONSUMER.CREATED.OMNI_OUTBOUND.{consumer}"))
            .await
            .expect("subscribe to the advisory");
    c.nc.flush().await.expect("flush");
    let exists = match c.js.get_stream("OMNI_OUTBOUND").await {
        Ok(s) => s.consumer_info(&consumer).await.is_ok(),
        Err(_) => false,
    };
    if !exists {
        tokio::time::timeout(WAIT, created.next())
            .await
            .unwrap_or_else(|_| panic!("the sink's consumer {consumer} not within {WAIT:?}"))
            .expect("the advisory subscription");
    }
}

fn alert(n: usize, kind: &str) -> Value {
    json!({"v": 1, "alert_id": format!("sla-c-{n}-first_response-1"), "kind": kind, "contact_id": format!("c-{n}"),
           "conversation_id": format!("conv-{n}"), "queue": "nobody", "channel": "chat", "policy": "fast",
           "clock": "first_response", "threshold": 1.0, "target_secs": 2.0, "elapsed_secs": 2.1,
           "agent_id": null, "customer": {"id": "k"}, "at": "2026-11-23T10:00:00.000Z"})
}

async fn publish_alert(c: &Client, a: &Value) {
    let kind = a["kind"].as_str().expect("kind");
    c.publish(
        &format!("omni.alert.sla.{kind}"),
        a["alert_id"].as_str().expect("id"),
        a,
    )
    .await;
}

#[tokio::test]
async fn a_warning_and_a_breach_reach_a_signed_webhook_and_an_email_over_starttls() {
    let nats = NatsServer::start();
    let smtp = Smtp::start();
    let (url, hook) = receiver(vec![200]).await;
    let toml = format!(
        "{ROUTING}\n[alerts]\nlink_template = \"https://desk.example.com/c/{{contact_id}}\"\n{}\n[alerts.sinks.mail]\ntype = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = {:?}\nfrom = \"omniroute <alerts@example.com>\"\nto = [\"supervisors@example.com\"]\n",
        hook_sink("hook", &url, ""),
        smtp.port,
        smtp.ca_file.display().to_string()
    );
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    sink_ready(&c, "hook").await;
    sink_ready(&c, "mail").await;
    c.contact(
        "chat",
        "late",
        json!({"queue": "nobody", "customer": {"id": "k1", "tier": "vip"}}),
    )
    .await;
    let got = seen_until(&hook, "a warning and a breach at the webhook", |s| s.len() >= 2).await;
    let kinds: Vec<&str> = got.iter().filter_map(|(_, _, v)| v["kind"].as_str()).collect();
    assert_eq!(kinds, ["warning", "breach"]);
    assert!(
        got.iter().all(|(valid, id, v)| *valid && v["alert_id"] == id.as_str()),
        "signed, with the alert id"
    );
    assert_eq!(got[1].2["conversation_id"], "late", "the body is the contract's alert");
    let mails = support::eventually(WAIT, "two emails", || async {
        let m = smtp.received();
        (m.len() >= 2).then_some(m)
    })
    .await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: [omniroute] SLA breach - queue nobody")),
        "{mails:#?}"
    );
    assert!(mails.iter().any(|m| m.contains("SLA warning at 50%")), "{mails:#?}");
    assert!(
        mails.iter().all(|m| m.contains("https://desk.example.com/c/c-")),
        "{mails:#?}"
    );
    c.expect("omni.alert.sla.breach", WAIT, |v| v["conversation_id"] == "late")
        .await;
    d.stop().await;
}

#[tokio::test]
async fn a_flaky_receiver_gets_exactly_one_delivery() {
    let nats = NatsServer::start();
    let (url, hook) = receiver(vec![503, 200]).await;
    let d = Daemon::start(support::config(
        &nats.url,
        &format!("{ROUTING}\n{}", hook_sink("flaky", &url, "")),
    ))
    .await;
    let c = Client::connect(&nats.url).await;
    sink_ready(&c, "flaky").await;
    publish_alert(&c, &alert(1, "breach")).await;
    seen_until(&hook, "the retry", |s| s.len() >= 2).await;
    // Acked after the 200: nothing more arrives; the next alert is the next request.
    publish_alert(&c, &alert(2, "breach")).await;
    let s = seen_until(&hook, "the second alert", |s| s.len() >= 3).await;
    let ids: Vec<&str> = s.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "sla-c-1-first_response-1",
            "sla-c-1-first_response-1",
            "sla-c-2-first_response-1"
        ]
    );
    d.stop().await;
}

#[tokio::test]
async fn a_dead_receiver_dead_letters_after_its_attempts_and_a_4xx_at_once() {
    let nats = NatsServer::start();
    let (dead, dead_seen) = receiver(vec![500]).await;
    let (refusing, refusing_seen) = receiver(vec![400]).await;
    let toml = format!(
        "{ROUTING}\n{}\n{}",
        hook_sink("dead", &dead, "max_attempts = 3"),
        hook_sink("refusing", &refusing, "max_attempts = 3")
    );
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    sink_ready(&c, "dead").await;
    sink_ready(&c, "refusing").await;
    publish_alert(&c, &alert(7, "breach")).await;
    let dl = c.expect("omni.dlq.alerts", WAIT, |v| v["sink"] == "dead").await;
    assert_eq!(
        (dl["attempts"].as_u64(), dl["error"].as_str()),
        (Some(3), Some("the receiver answered 500 Internal Server Error"))
    );
    assert_eq!(dl["alert"]["alert_id"], "sla-c-7-first_response-1");
    assert_eq!(seen(&dead_seen).len(), 3);
    let dl = c.expect("omni.dlq.alerts", WAIT, |v| v["sink"] == "refusing").await;
    assert_eq!(dl["attempts"].as_u64(), Some(1), "a 4xx is not retried");
    assert_eq!(seen(&refusing_seen).len(), 1);
    // What is not an alert is dead-lettered too (by every sink), not sent.
    c.publish_raw("omni.alert.sla.breach", b"{not json".to_vec()).await;
    let dl = c
        .expect("omni.dlq.alerts", WAIT, |v| {
            v["sink"] == "refusing" && v["attempts"] == 0
        })
        .await;
    assert!(
        dl["error"].as_str().is_some_and(|e| e.starts_with("not an alert: ")),
        "{dl}"
    );
    assert_eq!(dl["alert"], "{not json");
    assert_eq!(seen(&refusing_seen).len(), 1, "nothing was sent");
    d.stop().await;
}

#[tokio::test]
async fn a_storm_is_sent_as_a_few_alerts_and_one_digest() {
    let nats = NatsServer::start();
    let (url, hook) = receiver(vec![200]).await;
    let sink = hook_sink(
        "storm",
        &url,
        "max_per_minute = 60\ndigest_window_secs = 2\nkinds = [\"breach\"]", // two singles per window
    );
    let d = Daemon::start(support::config(&nats.url, &format!("{ROUTING}\n{sink}"))).await;
    let c = Client::connect(&nats.url).await;
    sink_ready(&c, "storm").await;
    publish_alert(&c, &alert(100, "warning")).await; // filtered out
    for n in 0..12 {
        publish_alert(&c, &alert(n, "breach")).await;
    }
    let s = seen_until(&hook, "every breach, alone or in a digest", |s| {
        let covered: usize = s
            .iter()
            .map(|(_, _, v)| {
                if v["kind"] == "digest" {
                    v["count"].as_u64().unwrap_or(0) as usize
                } else {
                    1
                }
            })
            .sum();
        covered >= 12
    })
    .await;
    let singles = s.iter().filter(|(_, _, v)| v["kind"] == "breach").count();
    let digests = s.iter().filter(|(_, _, v)| v["kind"] == "digest").count();
    assert!(singles <= 4 && digests >= 1, "{singles} singles, {digests} digests");
    assert!(s.len() < 12, "fewer requests than alerts: {}", s.len());
    assert!(s.iter().all(|(valid, _, v)| *valid && v["kind"] != "warning"));
    d.stop().await;
}
