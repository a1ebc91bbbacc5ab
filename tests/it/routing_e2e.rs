//! End to end on a real nats-server: contacts on every channel reach the
//! agent whose skills and free capacity fit; priority and age order;
//! completion pulls the next contact; decline and expiry re-route;
//! follow-ups reach the holding agent; `end` abandons; a clean restart
//! publishes nothing a second time.

use crate::support;

use serde_json::{json, Value};
use support::{Client, Daemon, NatsServer, WAIT};

const BASE: &str = r#"
[http]
listen = "127.0.0.1:0"
[routing]
offer_timeout_secs = 30
[sla.policies.std]
first_response_secs = { email = 3600, chat = 600, social = 3600, voice = 600 }
warning_thresholds = [0.5]
[[queues]]
name = "billing"
channels = ["email", "chat", "social", "voice"]
skills = { billing = 5 }
sla_policy = "std"
[[queues]]
name = "tech"
channels = ["email", "chat", "social", "voice"]
skills = { tech = 3 }
"#;

fn cfg(url: &str, extra: &str) -> omniroute::config::Config {
    support::config(url, &format!("{BASE}\n{extra}"))
}

fn agent_toml(id: &str, skills: &str, capacity: &str, status: &str) -> String {
    format!("[[agents]]\nid = \"{id}\"\nskills = {{ {skills} }}\ncapacity = {{ {capacity} }}\ninitial_status = \"{status}\"\n")
}

#[tokio::test]
async fn contacts_on_every_channel_reach_the_one_agent_that_fits() {
    let nats = NatsServer::start();
    // Only a-fit has billing >= 5 *and* a slot on each channel.
    let agents = [
        agent_toml(
            "a-low",
            "billing = 4",
            "email = 5, chat = 5, social = 5, voice = 5",
            "available",
        ),
        agent_toml(
            "a-fit",
            "billing = 6",
            "email = 1, chat = 1, social = 1, voice = 1",
            "available",
        ),
        agent_toml(
            "a-away",
            "billing = 9",
            "email = 5, chat = 5, social = 5, voice = 5",
            "away",
        ),
        agent_toml("a-nocap", "billing = 9", "email = 0", "available"),
    ]
    .concat();
    let d = Daemon::start(cfg(&nats.url, &agents)).await;
    let mut c = Client::connect(&nats.url).await;
    for ch in ["email", "chat", "social", "voice"] {
        c.contact(ch, &format!("conv-{ch}"), json!({"queue": "billing"})).await;
        let offer = c.offer("a-fit", &format!("conv-{ch}")).await;
        assert_eq!(offer["channel"], ch);
        assert_eq!(offer["queue"], "billing");
        assert_eq!(offer["why"]["required"]["billing"], 5);
        assert_eq!(offer["why"]["agent_levels"]["billing"], 6);
        assert_eq!(offer["why"]["candidates"], 1);
        assert!(
            offer["customer"].get("address").is_none(),
            "offers do not carry the address: {offer}"
        );
    }
    // a-fit is now full on every channel: a fifth contact waits, nobody else gets it.
    c.contact("email", "conv-extra", json!({"queue": "billing"})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| {
        v["conversation_id"] == "conv-extra"
    })
    .await;
    // Barrier: a tech contact with no tech agent, then check what was offered.
    let received = c.drain_received().await;
    assert!(
        !received
            .iter()
            .any(|(s, v)| s.starts_with("omni.offer.") && v["conversation_id"] == "conv-extra"),
        "an over-capacity or unfit agent got an offer: {received:?}"
    );
    d.stop().await;
}

#[tokio::test]
async fn priority_then_age_order_and_completion_pulls_the_next_contact() {
    let nats = NatsServer::start();
    let d = Daemon::start(cfg(
        &nats.url,
        &agent_toml("solo", "billing = 9", "chat = 1", "offline"),
    ))
    .await;
    let mut c = Client::connect(&nats.url).await;
    c.contact(
        "chat",
        "old-low",
        json!({"queue": "billing", "priority": 2, "received_at": "2026-01-01T10:00:00Z"}),
    )
    .await;
    c.contact(
        "chat",
        "high",
        json!({"queue": "billing", "priority": 7, "received_at": "2026-01-01T10:05:00Z"}),
    )
    .await;
    c.contact(
        "chat",
        "new-low",
        json!({"queue": "billing", "priority": 2, "received_at": "2026-01-01T10:01:00Z"}),
    )
    .await;
    for conv in ["old-low", "high", "new-low"] {
        c.expect("omni.event.contact.queued", WAIT, move |v| v["conversation_id"] == conv)
            .await;
    }
    c.agent("solo", "presence", json!({"status": "available"})).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let offer = c.any_offer("solo").await;
        let cid = offer["contact_id"].as_str().expect("contact id").to_string();
        order.push(offer["conversation_id"].as_str().expect("conv").to_string());
        c.agent("solo", "accept", json!({"contact_id": cid})).await;
        c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid.as_str())
            .await;
        c.agent("solo", "complete", json!({"contact_id": cid})).await;
        c.expect("omni.event.contact.completed", WAIT, |v| {
            v["contact_id"] == cid.as_str()
        })
        .await;
    }
    assert_eq!(order, ["high", "old-low", "new-low"]);
    d.stop().await;
}

#[tokio::test]
async fn decline_and_expiry_re_route_keeping_the_contact() {
    let nats = NatsServer::start();
    let agents = [
        agent_toml("first", "billing = 9", "email = 1", "available"),
        agent_toml("second", "billing = 9", "email = 1", "available"),
    ]
    .concat();
    let extra = format!("{agents}\n");
    let mut config = cfg(&nats.url, &extra);
    config.routing.offer_timeout_secs = 1.0;
    let d = Daemon::start(config).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("email", "conv-d", json!({"queue": "billing"})).await;
    // Both idle since start; the tie goes to the lower id: "first".
    let o1 = c.offer("first", "conv-d").await;
    let cid = o1["contact_id"].as_str().expect("cid").to_string();
    c.agent("first", "decline", json!({"contact_id": cid, "reason": "busy"}))
        .await;
    c.expect("omni.event.contact.declined", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    let o2 = c.offer("second", "conv-d").await;
    assert_eq!(o2["contact_id"], cid.as_str(), "same contact re-routed");
    assert_eq!(o2["priority"], o1["priority"]);
    // "second" stays silent: the 1 s offer expires and is withdrawn.
    c.expect("omni.event.contact.offer_expired", WAIT, |v| {
        v["contact_id"] == cid.as_str()
    })
    .await;
    let w = c.expect("omni.offer.second", WAIT, |v| v["kind"] == "withdrawn").await;
    assert_eq!(w["offer_id"], o2["offer_id"]);
    // Both have now passed on it; it goes round again rather than waiting forever.
    let o3 = c
        .expect("omni.offer.first", WAIT, |v| {
            v["kind"] == "offer" && v["conversation_id"] == "conv-d"
        })
        .await;
    assert_eq!(o3["contact_id"], cid.as_str());
    assert_ne!(o3["offer_id"], o1["offer_id"]);
    // An accept for the stale offer by "second" is rejected, not applied.
    c.agent("second", "accept", json!({"contact_id": cid})).await;
    let r = c
        .expect("omni.event.contact.rejected", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    assert!(r["error"].as_str().is_some_and(|e| e.contains("not offered")), "{r}");
    d.stop().await;
}

#[tokio::test]
async fn follow_ups_reach_the_holding_agent_and_end_abandons_a_waiting_contact() {
    let nats = NatsServer::start();
    let d = Daemon::start(cfg(
        &nats.url,
        &agent_toml("holder", "billing = 9", "social = 1", "available"),
    ))
    .await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("social", "thread-1", json!({"queue": "billing"})).await;
    let o = c.offer("holder", "thread-1").await;
    let cid = o["contact_id"].as_str().expect("cid").to_string();
    c.agent("holder", "accept", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    c.contact("social", "thread-1", json!({"text": "any news?"})).await;
    let m = c.expect("omni.offer.holder", WAIT, |v| v["kind"] == "message").await;
    assert_eq!(m["contact_id"], cid.as_str());
    assert_eq!(m["text"], "any news?");

    // The agent is full on social: a second thread waits, then the customer leaves.
    c.contact("social", "thread-2", json!({"queue": "billing"})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| {
        v["conversation_id"] == "thread-2"
    })
    .await;
    c.end("social", "thread-2").await;
    let a = c
        .expect("omni.event.contact.abandoned", WAIT, |v| {
            v["conversation_id"] == "thread-2"
        })
        .await;
    assert!(a["agent_id"].is_null());
    // The held contact's customer leaves: the agent is told.
    c.end("social", "thread-1").await;
    c.expect("omni.offer.holder", WAIT, |v| v["kind"] == "ended").await;
    // Completing frees the slot; the abandoned contact is not offered.
    c.agent("holder", "complete", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.completed", WAIT, |v| {
        v["contact_id"] == cid.as_str()
    })
    .await;
    let rest = c.drain_received().await;
    assert!(
        !rest
            .iter()
            .any(|(s, v)| s == "omni.offer.holder" && v["conversation_id"] == "thread-2"),
        "{rest:?}"
    );
    d.stop().await;
}

#[tokio::test]
async fn rules_choose_the_queue_and_skills_route_to_the_expert() {
    let nats = NatsServer::start();
    let extra = [
        "[[rules]]\nqueue = \"tech\"\nregex = \"\\\\b(crash|error)\\\\b\"\n".to_string(),
        "[[rules]]\nqueue = \"billing\"\ntiers = [\"vip\"]\npriority = 9\n".to_string(),
        agent_toml("biller", "billing = 9", "email = 5", "available"),
        agent_toml("techie", "tech = 5", "email = 5", "available"),
    ]
    .concat();
    let d = Daemon::start(cfg(&nats.url, &extra)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("email", "crashy", json!({"subject": "App CRASH on start"}))
        .await;
    let o = c.offer("techie", "crashy").await;
    assert_eq!(o["queue"], "tech");
    c.contact("email", "vip", json!({"customer": {"id": "v1", "tier": "VIP"}}))
        .await;
    let o = c.offer("biller", "vip").await;
    assert_eq!(o["queue"], "billing");
    assert_eq!(o["priority"], 9);
    // A skill the contact requires on top of its queue's.
    c.contact("email", "both", json!({"queue": "tech", "skills": ["billing"]}))
        .await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "both")
        .await;
    c.agent("techie", "profile", json!({"skills": {"tech": 5, "billing": 1}}))
        .await;
    let o = c.offer("techie", "both").await;
    assert_eq!(o["why"]["required"], json!({"billing": 1, "tech": 3}));
    d.stop().await;
}

#[tokio::test]
async fn operator_endpoints_report_health_and_metrics() {
    let nats = NatsServer::start();
    let d = Daemon::start(cfg(
        &nats.url,
        &agent_toml("m1", "billing = 9", "chat = 1", "available"),
    ))
    .await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("chat", "m-conv", json!({"queue": "billing"})).await;
    c.offer("m1", "m-conv").await;
    let (status, body) = support::http_get(d.http, "/ready").await.expect("ready");
    assert_eq!((status, body.contains("ready")), (200, true));
    let (status, _) = support::http_get(d.http, "/live").await.expect("live");
    assert_eq!(status, 200);
    let (status, body) = support::http_get(d.http, "/nope").await.expect("404");
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(v["error"], "no such endpoint");
    let (status, metrics) = support::http_get(d.http, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    for name in [
        "omniroute_inbound_events_total{channel=\"chat\",outcome=\"opened\"}",
        "omniroute_contacts_waiting{queue=\"billing\"}",
        "omniroute_offers_total{queue=\"billing\",outcome=\"offered\"}",
        "omniroute_routing_decision_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert!(!metrics.contains("m1"), "agent ids must not be metric labels");
    let (status, body) = support::http_request(d.http, "POST", "/metrics").await.expect("405");
    assert_eq!(status, 405);
    assert!(
        serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string()),
        "{body}"
    );
    d.stop().await;
}

#[tokio::test]
async fn metrics_show_the_cores_work_its_ticks_and_each_queues_estimated_wait() {
    let nats = NatsServer::start();
    let quick = "[[queues]]\nname = \"quick\"\nchannels = [\"chat\"]\noffer_timeout_secs = 1\n";
    let d = Daemon::start(cfg(
        &nats.url,
        &format!("{quick}{}", agent_toml("m1", "billing = 9", "chat = 1", "offline")),
    ))
    .await;
    let mut c = Client::connect(&nats.url).await;
    for conv in ["w1", "w2", "w3"] {
        c.contact("chat", conv, json!({"queue": "quick"})).await;
        c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == conv)
            .await;
    }
    // m1 comes in with two contacts left waiting, lets the offer expire (a
    // timer firing in a tick) and is offered the same contact again: the
    // queue's pace between two offers made while contacts waited.
    c.agent("m1", "presence", json!({"status": "available"})).await;
    let first = c.offer("m1", "w1").await;
    let first_id = first["offer_id"].clone();
    c.expect("omni.event.contact.offer_expired", WAIT, |v| {
        v["conversation_id"] == "w1"
    })
    .await;
    c.expect("omni.offer.m1", WAIT, |v| {
        v["kind"] == "offer" && v["conversation_id"] == "w1" && v["offer_id"] != first_id
    })
    .await;
    let wanted = [
        // The decision histogram's buckets reach seconds.
        "omniroute_routing_decision_duration_seconds_bucket{le=\"5\"}",
        "omniroute_routing_tick_duration_seconds_bucket{le=\"0.000001\"}",
        "omniroute_routing_candidates_examined_bucket{le=\"1\"}",
        "omniroute_queue_estimated_wait_seconds{queue=\"quick\"}",
    ];
    let metrics = support::eventually(WAIT, "every routing metric", || async {
        let (_, m) = support::http_get(d.http, "/metrics").await.ok()?;
        wanted.iter().all(|w| m.contains(w)).then_some(m)
    })
    .await;
    let ticks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("omniroute_routing_tick_duration_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(ticks.is_some_and(|n| n >= 1), "a tick that fired a timer: {metrics}");
    d.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_nats_connection_and_shutdown_still_completes() {
    let mut nats = NatsServer::start();
    let d = Daemon::start(cfg(&nats.url, "")).await;
    nats.kill();
    let (status, reason) = d.wait_unready(WAIT).await;
    assert_eq!(status, 503);
    // The cause of the last failed reconnect may follow ("... : IO error").
    assert!(reason.starts_with("not connected to NATS"), "{reason}");
    let (_, body) = support::http_get(d.http, "/ready").await.expect("ready endpoint");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["status"], "not_ready", "{body}");
    assert_eq!(support::http_get(d.http, "/live").await.expect("live").0, 200);
    d.stop().await;
}

#[tokio::test]
async fn a_lost_consumer_is_re_created_from_the_dedupe_window_not_the_stream_start() {
    let nats = NatsServer::start();
    let agents = agent_toml("r1", "billing = 9", "email = 5", "available");
    let d = Daemon::start(cfg(&nats.url, &agents)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("email", "before", json!({"queue": "billing"})).await;
    c.offer("r1", "before").await;
    d.stop().await;

    let inbound = c.js.get_stream("OMNI_INBOUND").await.expect("stream");
    inbound.delete_consumer("omniroute").await.expect("delete consumer");
    c.contact("email", "after", json!({"queue": "billing"})).await;

    let d = Daemon::start(cfg(&nats.url, &agents)).await;
    c.offer("r1", "after").await;
    let mut consumer = inbound
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("omniroute")
        .await
        .expect("re-created");
    let info = consumer.info().await.expect("info");
    assert!(
        matches!(
            info.config.deliver_policy,
            async_nats::jetstream::consumer::DeliverPolicy::ByStartTime { .. }
        ),
        "{:?}",
        info.config.deliver_policy
    );
    d.stop().await;
}

#[tokio::test]
async fn a_clean_restart_publishes_nothing_a_second_time() {
    let nats = NatsServer::start();
    let solo = agent_toml("solo", "billing = 9", "chat = 2", "available");
    let d = Daemon::start(cfg(&nats.url, &solo)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("chat", "before", json!({"queue": "billing"})).await;
    c.offer("solo", "before").await;
    c.expect("omni.event.contact.offered", WAIT, |v| v["conversation_id"] == "before")
        .await;
    // Stopped at once, before any heartbeat could journal how far the
    // outbox is published: the stop itself must say so.
    d.stop().await;
    c.drain_received().await;
    let d = Daemon::start(cfg(&nats.url, &solo)).await;
    c.contact("chat", "after", json!({"queue": "billing"})).await;
    c.offer("solo", "after").await;
    // A re-publication at start-up would have come first, on the same
    // connection as the offer just seen.
    let again: Vec<(String, Value)> = c
        .drain_received()
        .await
        .into_iter()
        .filter(|(_, v)| v["conversation_id"] == "before")
        .collect();
    assert!(again.is_empty(), "published again after a clean restart: {again:?}");
    d.stop().await;
}
