//! Bad input on a real nats-server: every kind of bad message is acked,
//! dead-lettered with its one-line error and original subject and payload,
//! and the good messages around it are still routed.

use crate::support;

use serde_json::{json, Value};
use support::{Client, Daemon, NatsServer, WAIT};

const CFG: &str = r#"
[nats]
max_payload_bytes = 2048
[[queues]]
name = "q"
channels = ["email", "chat"]
[[agents]]
id = "ok-agent"
capacity = { email = 50, chat = 50 }
initial_status = "available"
"#;

#[tokio::test]
async fn bad_messages_are_dead_lettered_and_good_ones_still_routed() {
    let nats = NatsServer::start();
    let d = Daemon::start(support::config(&nats.url, CFG)).await;
    let mut c = Client::connect(&nats.url).await;
    let good = |conv: &str| json!({"v": 1, "id": format!("g-{conv}"), "type": "message", "channel": "email", "conversation_id": conv, "customer": {"id": "x"}});

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("omni.inbound.email", b"{not json".to_vec(), "payload is not valid JSON (line 1 column 2)"),
        ("omni.inbound.email", br#"{"v":1,"id":"b2","type":"message","channel":"email","customer":{"id":"x"}}"#.to_vec(), "missing field conversation_id"),
        ("omni.inbound.fax", br#"{"v":1,"id":"b3","type":"message","channel":"fax","conversation_id":"c","customer":{"id":"x"}}"#.to_vec(), r#"channel "fax" is not one of email, chat, social, voice"#),
        ("omni.inbound.chat", br#"{"v":1,"id":"b4","type":"message","channel":"email","conversation_id":"c","customer":{"id":"x"}}"#.to_vec(), r#"channel email does not match the subject's channel "chat""#),
        ("omni.inbound.email", format!(r#"{{"v":1,"id":"b5","pad":"{}"}}"#, "x".repeat(4096)).into_bytes(), "payload is 4 KiB, over the 2 KiB limit"),
        ("omni.inbound.email", vec![0xff, 0xfe, 0x00], "payload is not UTF-8"),
        ("omni.inbound.email", br#"{"v":1,"id":"b7","type":"message","channel":"email","conversation_id":"c","customer":{"id":"x"},"queue":"ghost"}"#.to_vec(), "queue ghost is not configured"),
        ("omni.agent.stranger.presence", br#"{"v":1,"id":"b8","type":"presence","agent_id":"stranger","status":"available"}"#.to_vec(), "agent stranger is not known (publish a profile first)"),
        ("omni.agent.ok-agent.presence", br#"{"v":1,"id":"b9","type":"presence","agent_id":"ok-agent","status":"busy"}"#.to_vec(), r#"status "busy" is not one of available, away, offline"#),
        ("omni.agent.ok-agent.accept", br#"{"v":1,"id":"b10","type":"accept","agent_id":"ok-agent"}"#.to_vec(), "missing field contact_id"),
    ];
    c.publish("omni.inbound.email", "g-before", &good("before")).await;
    for (i, (subject, payload, _)) in cases.iter().enumerate() {
        c.publish_raw(subject, payload.clone()).await;
        c.publish("omni.inbound.email", &format!("g-{i}"), &good(&format!("between-{i}")))
            .await;
    }
    for (subject, payload, error) in &cases {
        let dlq = if subject.starts_with("omni.inbound.") {
            "omni.dlq.inbound"
        } else {
            "omni.dlq.agent"
        };
        let (subj, err) = (subject.to_string(), error.to_string());
        let v: Value = c
            .expect(dlq, WAIT, move |v| {
                v["subject"] == subj.as_str() && v["error"] == err.as_str()
            })
            .await;
        match std::str::from_utf8(payload) {
            Ok(text) => assert_eq!(v["payload"], text),
            Err(_) => assert_eq!(v["payload_base64"], "//4A"),
        }
    }
    c.offer("ok-agent", "before").await;
    for i in 0..cases.len() {
        c.offer("ok-agent", &format!("between-{i}")).await;
    }
    // Counted, and never retried: the consumer has nothing pending.
    let (_, metrics) = support::http_get(d.http, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("omniroute_dead_letters_total{subject=\"omni.dlq.inbound\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("omniroute_dead_letters_total{subject=\"omni.dlq.agent\"} 3"),
        "{metrics}"
    );
    let mut consumer =
        c.js.get_stream("OMNI_INBOUND")
            .await
            .expect("stream")
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("omniroute")
            .await
            .expect("consumer");
    let info = consumer.info().await.expect("info");
    assert_eq!(info.num_ack_pending, 0, "everything acked");
    d.stop().await;
}

#[tokio::test]
async fn a_redelivered_or_republished_event_is_applied_once() {
    let nats = NatsServer::start();
    let d = Daemon::start(support::config(&nats.url, CFG)).await;
    let mut c = Client::connect(&nats.url).await;
    let ev = json!({"v": 1, "id": "same-id", "type": "message", "channel": "chat", "conversation_id": "dup", "customer": {"id": "x"}});
    c.publish("omni.inbound.chat", "same-id", &ev).await;
    // Published again without the header: JetStream cannot dedupe it; the router must.
    c.publish_raw("omni.inbound.chat", serde_json::to_vec(&ev).expect("json"))
        .await;
    c.offer("ok-agent", "dup").await;
    c.contact("chat", "after", json!({})).await;
    c.offer("ok-agent", "after").await;
    let rest = c.drain_received().await;
    // `offer` consumed the one offer; what is left for "dup" is its single
    // `queued` and `offered` events, nothing from the duplicate.
    let for_dup: Vec<&str> = rest
        .iter()
        .filter(|(_, v)| v["conversation_id"] == "dup")
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(
        for_dup,
        ["omni.event.contact.queued", "omni.event.contact.offered"],
        "{rest:?}"
    );
    let (_, metrics) = support::http_get(d.http, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("omniroute_inbound_events_total{channel=\"chat\",outcome=\"duplicate\"}"),
        "{metrics}"
    );
    d.stop().await;
}
