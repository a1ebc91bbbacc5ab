//! The routing model's options end to end on a real nats-server, through
//! the daemon's configuration: round robin, least-loaded and most-skilled
//! strategies (each where longest idle would choose otherwise), longest
//! idle, auto-away after missed offers, accept timeouts and wrap-up per
//! channel (and the `wrap_up` event), weighted capacity, relaxation with
//! overflow, ageing and the starvation bound, admission control by
//! waiting count and by estimated wait, a returning customer, explain, a
//! ring group, and business hours across both daylight-saving changes,
//! with a closed queue's overflow. Timers run on the daemon's real clock
//! with short intervals, except in the tests on a clock the test holds
//! and moves (`Clock::manual`, through `on_held_clock`); every wait is
//! for an event, with a deadline.

use crate::support;

use serde_json::{json, Value};
use support::{Client, Daemon, NatsServer, WAIT};

fn agent(id: &str, skills: &str, capacity: &str, extra: &str) -> String {
    format!(
        "[[agents]]\nid = \"{id}\"\nskills = {{ {skills} }}\ncapacity = {{ {capacity} }}\ninitial_status = \"available\"\n{extra}\n"
    )
}

/// `agent` accepts `offer`; its contact id, once `accepted` is out.
async fn accept(c: &mut Client, agent: &str, offer: &Value) -> String {
    let cid = offer["contact_id"].as_str().expect("contact id").to_string();
    c.agent(agent, "accept", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid.as_str())
        .await;
    cid
}

/// `agent` completes contact `cid`, once `completed` is out.
async fn complete(c: &mut Client, agent: &str, cid: &str) {
    c.agent(agent, "complete", json!({"contact_id": cid})).await;
    c.expect("omni.event.contact.completed", WAIT, |v| v["contact_id"] == cid)
        .await;
}

/// `agent` accepts `offer` and completes it; its contact id.
async fn accept_and_complete(c: &mut Client, agent: &str, offer: &Value) -> String {
    let cid = accept(c, agent, offer).await;
    complete(c, agent, &cid).await;
    cid
}

/// A time in the tests' RFC 3339 notation.
fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&chrono::Utc)
}

/// A router on a clock the test holds at `start` and moves, and a client.
async fn on_held_clock(nats: &NatsServer, toml: &str, start: &str) -> (Daemon, omniroute::clock::Clock, Client) {
    let clock = omniroute::clock::Clock::manual(at(start));
    let d = Daemon::start_on(support::config(&nats.url, toml), clock.clone()).await;
    (d, clock, Client::connect(&nats.url).await)
}

/// Nothing was offered for conversation `conv` up to the router's present
/// time. Two contacts for the `probe` queue, which nobody can take, are the
/// barrier: the second one's `queued` comes after anything the first one's
/// batch published, the timers it fired included (they fire after its
/// inputs). Once per conversation: the probes' conversations are named
/// after it.
async fn not_offered_yet(c: &mut Client, conv: &str, why: &str) {
    for n in 1..=2 {
        let probe = format!("probe-{conv}-{n}");
        c.contact("chat", &probe, json!({"queue": "probe"})).await;
        c.expect("omni.event.contact.queued", WAIT, |v| {
            v["conversation_id"] == probe.as_str()
        })
        .await;
    }
    let seen = c.drain_received().await;
    assert!(
        !seen
            .iter()
            .any(|(s, v)| s.starts_with("omni.offer.") && v["conversation_id"] == conv),
        "{why}: {seen:?}"
    );
}

/// The next offer to any agent: (agent, offer).
async fn next_offer(c: &mut Client) -> (String, Value) {
    let o = c.expect("omni.offer.>", WAIT, |v| v["kind"] == "offer").await;
    (o["agent_id"].as_str().expect("agent").to_string(), o)
}

#[tokio::test]
async fn round_robin_rotates_and_most_skilled_ranks_by_level() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"rot\"\nchannels = [\"chat\"]\nskills = { s = 1 }\nstrategy = \"round_robin\"\n",
        "[[queues]]\nname = \"expert\"\nchannels = [\"email\"]\nskills = { s = 2 }\nstrategy = \"most_skilled\"\n",
        &agent("r1", "s = 3", "chat = 9, email = 1", ""),
        &agent("r2", "s = 9", "chat = 9, email = 1", ""),
        &agent("r3", "s = 5", "chat = 9, email = 1", ""),
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    let mut got = Vec::new();
    for n in 0..9 {
        c.contact("chat", &format!("rr-{n}"), json!({})).await;
        let (a, o) = next_offer(&mut c).await;
        assert_eq!(o["why"]["strategy"], "round_robin");
        got.push(a);
    }
    // Every agent once per round, in the same order each round.
    assert_eq!(got[0..3], got[3..6], "{got:?}");
    assert_eq!(got[3..6], got[6..9], "{got:?}");
    let mut first: Vec<_> = got[0..3].to_vec();
    first.sort();
    assert_eq!(first, ["r1", "r2", "r3"]);
    // most_skilled: the level 9, then the 5, then the 3.
    for (n, want) in ["r2", "r3", "r1"].iter().enumerate() {
        c.contact("email", &format!("ms-{n}"), json!({})).await;
        let (a, o) = next_offer(&mut c).await;
        assert_eq!((a.as_str(), &o["why"]["strategy"]), (*want, &json!("most_skilled")));
    }
    d.stop().await;
}

#[tokio::test]
async fn weighted_units_hold_a_call_until_the_chats_end() {
    let nats = NatsServer::start();
    let toml = [
        "[routing.units]\nchat = 35\nvoice = 100\n",
        "[[queues]]\nname = \"q\"\nchannels = [\"chat\", \"voice\"]\n",
        &agent("u", "", "chat = 3, voice = 1", "units = 100"),
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("chat", "chat-1", json!({})).await;
    let chat = c.offer("u", "chat-1").await;
    c.contact("voice", "call-1", json!({})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "call-1")
        .await;
    // Barrier: a third contact that must also wait (35 + 35 fits, so a
    // second chat is offered; the call still is not).
    c.contact("chat", "chat-2", json!({})).await;
    let chat2 = c.offer("u", "chat-2").await;
    let seen = c.drain_received().await;
    assert!(
        !seen
            .iter()
            .any(|(s, v)| s.starts_with("omni.offer.") && v["conversation_id"] == "call-1"),
        "a call was offered on top of a chat: {seen:?}"
    );
    accept_and_complete(&mut c, "u", &chat).await;
    accept_and_complete(&mut c, "u", &chat2).await;
    let call = c.offer("u", "call-1").await;
    assert_eq!(call["channel"], "voice");
    d.stop().await;
}

#[tokio::test]
async fn a_waiting_contact_relaxes_then_overflows_on_the_daemons_clock() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"vip\"\nchannels = [\"chat\"]\nskills = { billing = 8 }\n",
        "[[queues.relax]]\nafter_secs = 1\nskills = { billing = 6 }\n",
        "[[queues.relax]]\nafter_secs = 2\noverflow = \"general\"\n",
        "[[queues]]\nname = \"general\"\nchannels = [\"chat\"]\nskills = { support = 1 }\n",
        &agent("senior", "billing = 6", "chat = 1", ""),
        &agent("helper", "support = 2", "chat = 1", ""),
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    // Nobody holds billing 8: it waits, and 1 s later billing 6 will do.
    c.contact("chat", "vip-1", json!({"queue": "vip"})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "vip-1")
        .await;
    let o = c.offer("senior", "vip-1").await;
    assert_eq!(
        (&o["why"]["step"], &o["why"]["required"]),
        (&json!(1), &json!({"billing": 6}))
    );
    assert!(o["waited_secs"].as_f64().is_some_and(|w| w >= 1.0), "{o}");
    // The step was announced: `overflowed` with the relaxed requirement and
    // no queues (the contact stayed with vip's agents).
    let step = c
        .expect("omni.event.contact.overflowed", WAIT, |v| {
            v["conversation_id"] == "vip-1"
        })
        .await;
    assert_eq!(step["required"], json!({"billing": 6}), "{step}");
    assert!(step.get("from_queue").is_none(), "{step}");
    // The senior is busy now: the next vip contact waits through step 1
    // and at 2 s overflows to general's agents.
    c.contact("chat", "vip-2", json!({"queue": "vip"})).await;
    let o = c.offer("helper", "vip-2").await;
    assert_eq!((&o["queue"], &o["why"]["step"]), (&json!("vip"), &json!(2)));
    assert_eq!(o["why"]["required"], json!({"support": 1}));
    assert!(o["waited_secs"].as_f64().is_some_and(|w| w >= 2.0), "{o}");
    // Both of its steps were announced, the second with the queues.
    let relaxed = c
        .expect("omni.event.contact.overflowed", WAIT, |v| {
            v["conversation_id"] == "vip-2" && v.get("from_queue").is_none()
        })
        .await;
    assert_eq!(relaxed["required"], json!({"billing": 6}), "{relaxed}");
    let moved = c
        .expect("omni.event.contact.overflowed", WAIT, |v| {
            v["conversation_id"] == "vip-2" && v["from_queue"] == "vip"
        })
        .await;
    assert_eq!(
        (&moved["to_queue"], &moved["required"]),
        (&json!("general"), &json!({"support": 1})),
        "{moved}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_returning_customer_reaches_their_last_agent_across_channels_and_a_restart() {
    let nats = NatsServer::start();
    let toml = [
        "[routing.affinity]\nlookback_secs = 3600\n",
        "[[queues]]\nname = \"q\"\nchannels = [\"email\", \"chat\"]\n",
        &agent("x", "", "email = 2, chat = 1", ""),
        &agent("y", "", "email = 2, chat = 1", ""),
    ]
    .concat();
    let ana = json!({"customer": {"id": "ana@example.com", "address": "ana@example.com"}});
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("email", "ana-mail", ana.clone()).await;
    let (served, o) = next_offer(&mut c).await;
    assert!(o.get("history").is_none(), "{o}");
    // Completing makes `served` idle since now: the other agent has been
    // idle longer and is the strategy's choice from here on.
    accept_and_complete(&mut c, &served, &o).await;
    d.stop().await;
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    c.contact("chat", "ana-chat", ana.clone()).await;
    let o = c.offer(&served, "ana-chat").await;
    assert_eq!(o["why"]["returning_customer"], true, "{o}");
    let h = &o["history"];
    assert_eq!(
        (&h[0]["agent"], &h[0]["channel"], &h[0]["outcome"]),
        (&json!(served), &json!("email"), &json!("completed"))
    );
    assert!(
        !h.to_string().contains("ana@"),
        "no customer address in the history: {h}"
    );
    // Another customer goes by the strategy, to the other agent.
    c.contact("chat", "bo-chat", json!({})).await;
    let (other, _) = next_offer(&mut c).await;
    assert_ne!(other, served);
    d.stop().await;
}

#[tokio::test]
async fn a_full_queue_overflows_then_refuses_and_the_queued_event_estimates_the_wait() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"small\"\nchannels = [\"chat\"]\nmax_waiting = 1\nadmission_overflow = \"spill\"\n",
        "[[queues]]\nname = \"spill\"\nchannels = [\"chat\"]\nmax_waiting = 1\n",
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("chat", "w-1", json!({"queue": "small"})).await;
    let q = c
        .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "w-1")
        .await;
    assert_eq!((&q["queue"], &q["position"]), (&json!("small"), &json!(1)));
    c.contact("chat", "w-2", json!({"queue": "small"})).await;
    let q = c
        .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "w-2")
        .await;
    assert_eq!((&q["queue"], &q["from_queue"]), (&json!("spill"), &json!("small")));
    c.contact("chat", "w-3", json!({"queue": "small"})).await;
    let r = c
        .expect("omni.event.contact.refused", WAIT, |v| v["conversation_id"] == "w-3")
        .await;
    assert_eq!(r["queue"], "small");
    assert!(r["reason"].as_str().is_some_and(|s| s.contains("full")), "{r}");
    d.stop().await;
}

#[tokio::test]
async fn explain_says_why_a_contact_waits_behind_a_bearer_token() {
    let nats = NatsServer::start();
    let toml = [
        "[http]\nlisten = \"127.0.0.1:0\"\napi_token = \"s3cret-token\"\n",
        "[[queues]]\nname = \"vip\"\nchannels = [\"chat\"]\nskills = { billing = 7 }\n",
        &agent("low", "billing = 3", "chat = 1", ""),
        &agent("none", "tech = 9", "chat = 1", ""),
        "[[agents]]\nid = \"gone\"\nskills = { billing = 9 }\ncapacity = { chat = 1 }\ninitial_status = \"offline\"\n",
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("chat", "why-1", json!({"queue": "vip"})).await;
    let q = c
        .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "why-1")
        .await;
    let id = q["contact_id"].as_str().expect("contact id").to_string();
    let path = format!("/api/contacts/{id}/explain");
    let auth = [("Authorization", "Bearer s3cret-token")];
    let (status, _, body) = support::http_send(d.http, "GET", &path, &auth, b"")
        .await
        .expect("http");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (&v["queue"], &v["state"]["status"], &v["step"]),
        (&json!("vip"), &json!("waiting"), &json!(0))
    );
    assert_eq!(
        v["agents_by_reason"],
        json!({"level_too_low": 1, "missing_skill": 1, "not_available": 1})
    );
    let low = v["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agent_id"] == "low"))
        .cloned();
    assert_eq!(low.map(|l| l["detail"].clone()), Some(json!("billing 3 < 7")));
    // One agent only, and the errors: JSON bodies, 401 before anything else.
    let one = format!("{path}?agent=gone");
    let (_, _, body) = support::http_send(d.http, "GET", &one, &auth, b"").await.expect("http");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (&v["agents_total"], &v["agents"][0]["detail"]),
        (&json!(1), &json!("offline"))
    );
    for (p, h, want) in [
        (path.as_str(), &[][..], 401),
        (path.as_str(), &[("Authorization", "Bearer wrong")][..], 401),
        ("/api/contacts/c-nope/explain", &auth[..], 404),
        (&format!("{path}?limit=many")[..], &auth[..], 400),
    ] {
        let (status, _, body) = support::http_send(d.http, "GET", p, h, b"").await.expect("http");
        assert_eq!(status, want, "{p}: {body}");
        let v: Value = serde_json::from_str(&body).expect("a JSON error body");
        assert!(v["error"].is_string(), "{body}");
    }
    d.stop().await;
    // Without a token the API is off.
    let d = Daemon::start(support::config(
        &nats.url,
        &toml.replace("api_token = \"s3cret-token\"\n", ""),
    ))
    .await;
    let (status, _, body) = support::http_send(d.http, "GET", &path, &auth, b"")
        .await
        .expect("http");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("off"), "{body}");
    d.stop().await;
}

#[tokio::test]
async fn a_ring_group_rings_three_desktops_and_the_first_accept_wins() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"ring\"\nchannels = [\"voice\"]\nstrategy = \"ring_group\"\nring_size = 3\n",
        &agent("g1", "", "voice = 1", ""),
        &agent("g2", "", "voice = 1", ""),
        &agent("g3", "", "voice = 1", ""),
        &agent("g4", "", "voice = 1", ""),
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("voice", "call-1", json!({})).await;
    let mut rung = Vec::new();
    for _ in 0..3 {
        let (a, o) = next_offer(&mut c).await;
        assert_eq!(o["why"]["strategy"], "ring_group");
        rung.push((a, o["offer_id"].as_str().expect("offer id").to_string()));
    }
    // The second desktop to ring answers first.
    let (winner, _) = rung[1].clone();
    let contact_id = c
        .expect("omni.event.contact.offered", WAIT, |v| v["conversation_id"] == "call-1")
        .await["contact_id"]
        .as_str()
        .expect("contact id")
        .to_string();
    c.agent(&winner, "accept", json!({"contact_id": contact_id})).await;
    c.expect("omni.event.contact.accepted", WAIT, |v| {
        v["agent_id"] == winner.as_str()
    })
    .await;
    for (a, offer_id) in rung.iter().filter(|(a, _)| *a != winner) {
        let w = c
            .expect(&format!("omni.offer.{a}"), WAIT, |v| v["kind"] == "withdrawn")
            .await;
        assert_eq!(
            (&w["offer_id"], &w["reason"]),
            (&json!(offer_id), &json!("taken by another agent"))
        );
    }
    // A loser accepting late is refused; the call stays with the winner.
    let loser = rung.iter().find(|(a, _)| *a != winner).expect("loser").0.clone();
    c.agent(&loser, "accept", json!({"contact_id": contact_id})).await;
    c.expect("omni.event.contact.rejected", WAIT, |v| v["agent_id"] == loser.as_str())
        .await;
    // The freed desktops ring for the next call, with the one never rung.
    c.contact("voice", "call-2", json!({})).await;
    let mut next = Vec::new();
    for _ in 0..3 {
        next.push(next_offer(&mut c).await.0);
    }
    next.sort();
    let mut want: Vec<String> = ["g1", "g2", "g3", "g4"]
        .iter()
        .map(|s| s.to_string())
        .filter(|a| *a != winner)
        .collect();
    want.sort();
    assert_eq!(next, want);
    d.stop().await;
}

#[tokio::test]
async fn a_returning_customer_waits_for_their_busy_agent_within_the_window() {
    let nats = NatsServer::start();
    let toml = [
        "[routing.affinity]\nlookback_secs = 3600\nwait_secs = 600\n",
        "[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\n",
        &agent("x", "", "chat = 1", ""),
        &agent("y", "", "chat = 1", ""),
    ]
    .concat();
    let ana = json!({"customer": {"id": "ana"}});
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("chat", "ana-1", ana.clone()).await;
    let (served, o) = next_offer(&mut c).await;
    accept_and_complete(&mut c, &served, &o).await;
    let other = if served == "x" { "y" } else { "x" };
    // The agent who served ana is now busy with someone else (the other
    // agent steps away meanwhile, so bo's chat can only go to them).
    c.agent(other, "presence", json!({"status": "away"})).await;
    c.contact("chat", "bo-1", json!({"customer": {"id": "bo"}})).await;
    let bo = c.offer(&served, "bo-1").await;
    let bo_id = accept(&mut c, &served, &bo).await;
    c.agent(other, "presence", json!({"status": "available"})).await;
    // ana returns: kept for that agent although the other one is free.
    c.contact("chat", "ana-2", ana.clone()).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "ana-2")
        .await;
    // Barrier: a new customer's chat is offered to the free agent, so ana's
    // would have been offered by now if it were not kept.
    c.contact("chat", "cy-1", json!({"customer": {"id": "cy"}})).await;
    c.offer(other, "cy-1").await;
    let seen = c.drain_received().await;
    assert!(
        !seen
            .iter()
            .any(|(s, v)| s.starts_with("omni.offer.") && v["conversation_id"] == "ana-2"),
        "ana's return was offered to someone else: {seen:?}"
    );
    // The agent finishes bo's chat: ana's return is theirs at once.
    c.agent(&served, "complete", json!({"contact_id": bo_id})).await;
    let o = c.offer(&served, "ana-2").await;
    assert_eq!(o["why"]["returning_customer"], true);
    d.stop().await;
}

/// A queue open on Sundays from 03:00 Madrid time. On 2026-03-29 the
/// clocks jump from 02:00 to 03:00 at 01:00Z, so the queue opens at 01:00Z,
/// not at 02:00Z as a fixed winter offset would have it. The daemon's clock
/// is held by the test, just before.
#[tokio::test]
async fn a_queue_opens_on_its_local_hour_across_the_spring_daylight_saving_change() {
    let nats = NatsServer::start();
    let toml = [
        "[calendars.madrid]\ntimezone = \"Europe/Madrid\"\nhours = { sun = [\"03:00-24:00\"] }\n",
        "[[queues]]\nname = \"sunday\"\nchannels = [\"chat\"]\ncalendar = \"madrid\"\n",
        "[[queues]]\nname = \"probe\"\nchannels = [\"chat\"]\nskills = { nobody = 1 }\n",
        &agent("s", "", "chat = 1", ""),
    ]
    .concat();
    let (d, clock, mut c) = on_held_clock(&nats, &toml, "2026-03-29T00:59:52Z").await;
    c.contact("chat", "early", json!({"queue": "sunday"})).await;
    let q = c
        .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "early")
        .await;
    assert_eq!(q["at"], "2026-03-29T00:59:52.000Z");
    // 01:59:59 CET: still closed (the probe's batch fires what is due).
    clock.set(at("2026-03-29T00:59:59Z"));
    not_offered_yet(&mut c, "early", "offered before 03:00").await;
    // The clocks jump to 03:00 CEST = 01:00Z: open, offered at that instant.
    clock.set(at("2026-03-29T01:00:00Z"));
    let o = c.offer("s", "early").await;
    assert_eq!(o["offered_at"], "2026-03-29T01:00:00.000Z", "{o}");
    d.stop().await;
}

/// A weekday queue, 09:00–17:00 Madrid time, on a clock the test holds
/// still and moves. It closes on Friday 2026-10-23 at 17:00 CEST (15:00Z);
/// the clocks go back on Sunday the 25th, so it opens on Monday at 09:00
/// CET = 08:00Z, not at 07:00Z as the summer offset would have it.
#[tokio::test]
async fn a_queue_opens_on_its_local_hour_across_the_autumn_change_on_a_held_clock() {
    let nats = NatsServer::start();
    let toml = [
        "[calendars.madrid]\ntimezone = \"Europe/Madrid\"\n",
        "hours = { mon = [\"09:00-17:00\"], tue = [\"09:00-17:00\"], wed = [\"09:00-17:00\"], thu = [\"09:00-17:00\"], fri = [\"09:00-17:00\"] }\n",
        "[[queues]]\nname = \"weekday\"\nchannels = [\"chat\"]\ncalendar = \"madrid\"\n",
        "[[queues]]\nname = \"probe\"\nchannels = [\"chat\"]\nskills = { nobody = 1 }\n",
        &agent("w", "", "chat = 1", ""),
    ]
    .concat();
    let (d, clock, mut c) = on_held_clock(&nats, &toml, "2026-10-23T14:59:00Z").await;
    // Friday 16:59 CEST: open; w takes the first chat.
    c.contact("chat", "fri-1", json!({"queue": "weekday"})).await;
    let o = c.offer("w", "fri-1").await;
    let first = accept(&mut c, "w", &o).await;
    // 17:00 CEST passes: the second chat waits for Monday, even once w is free.
    clock.set(at("2026-10-23T15:00:01Z"));
    c.contact("chat", "fri-2", json!({"queue": "weekday"})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "fri-2")
        .await;
    complete(&mut c, "w", &first).await;
    // Monday 08:59:59 CET (07:59:59Z): still closed. A contact on an
    // always-open queue is the barrier: the batch that queues it also
    // fires whatever timers are due at that time.
    clock.set(at("2026-10-26T07:59:59Z"));
    not_offered_yet(&mut c, "fri-2", "offered before 09:00 CET").await;
    // 09:00 CET: it opens, and the waiting chat is offered at that instant.
    clock.set(at("2026-10-26T08:00:00Z"));
    let o = c.offer("w", "fri-2").await;
    assert_eq!(o["offered_at"], "2026-10-26T08:00:00.000Z", "{o}");
    d.stop().await;
}

#[tokio::test]
async fn least_loaded_and_round_robin_choose_where_longest_idle_would_not() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"ll\"\nchannels = [\"chat\"]\nskills = { l = 1 }\nstrategy = \"least_loaded\"\n",
        "[[queues]]\nname = \"rot\"\nchannels = [\"email\"]\nskills = { r = 1 }\nstrategy = \"round_robin\"\n",
        &agent("l1", "l = 1", "chat = 3", ""),
        "[[agents]]\nid = \"l2\"\nskills = { l = 1 }\ncapacity = { chat = 3 }\ninitial_status = \"offline\"\n",
        &agent("r1", "r = 1", "email = 9", ""),
        &agent("r2", "r = 1", "email = 9", ""),
        &agent("r3", "r = 1", "email = 9", ""),
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    // least_loaded: l1 takes two chats while l2 is away; l2 then comes in,
    // so l1 has been idle longer (its last offer is older than l2's
    // return) but carries more load: the third chat goes to l2.
    for conv in ["ll-1", "ll-2"] {
        c.contact("chat", conv, json!({})).await;
        let o = c.offer("l1", conv).await;
        accept(&mut c, "l1", &o).await;
    }
    c.agent("l2", "presence", json!({"status": "available"})).await;
    // Agent events and contacts come on separate streams: wait until l2's
    // return is applied (l1, l2 and the three r agents available).
    support::eventually(WAIT, "l2 available", || async {
        let (_, m) = support::http_get(d.http, "/metrics").await.ok()?;
        m.contains("omniroute_agents{status=\"available\"} 5").then_some(())
    })
    .await;
    c.contact("chat", "ll-3", json!({})).await;
    let (a, o) = next_offer(&mut c).await;
    assert_eq!(a, "l2", "{o}");
    assert_eq!(o["why"]["strategy"], "least_loaded");
    assert_eq!(
        (&o["why"]["load"], &o["why"]["load_share"]),
        (&json!({"chat": 0}), &json!(0.0))
    );
    // round_robin: three e-mails go to the three agents in turn; the first
    // one then completes, which makes it the most recently idle (longest
    // idle would now pick the second): round robin picks the first again.
    let mut order = Vec::new();
    for n in 0..3 {
        c.contact("email", &format!("rr-{n}"), json!({})).await;
        order.push(next_offer(&mut c).await);
    }
    let mut agents: Vec<_> = order.iter().map(|(a, _)| a.clone()).collect();
    let first = agents[0].clone();
    agents.sort();
    assert_eq!(agents, ["r1", "r2", "r3"]);
    accept_and_complete(&mut c, &first, &order[0].1).await;
    c.contact("email", "rr-3", json!({})).await;
    let (a, o) = next_offer(&mut c).await;
    assert_eq!((a, &o["why"]["strategy"]), (first, &json!("round_robin")));
    d.stop().await;
}

#[tokio::test]
async fn an_agent_who_lets_offers_expire_is_set_away_and_told_why() {
    let nats = NatsServer::start();
    let toml = [
        "[routing]\nmax_missed_offers = 2\n",
        "[[queues]]\nname = \"q\"\nchannels = [\"chat\"]\noffer_timeout_secs = 1\n",
        &agent("mute", "", "chat = 1", ""),
    ]
    .concat();
    let d = Daemon::start(support::config(&nats.url, &toml)).await;
    let mut c = Client::connect(&nats.url).await;
    c.contact("chat", "aw-1", json!({})).await;
    // Nobody else fits, so the expired offer comes back to the same agent;
    // the second expiry in a row sets it away.
    c.offer("mute", "aw-1").await;
    c.expect("omni.event.contact.offer_expired", WAIT, |v| {
        v["conversation_id"] == "aw-1"
    })
    .await;
    c.offer("mute", "aw-1").await;
    let away = c.expect("omni.offer.mute", WAIT, |v| v["kind"] == "set_away").await;
    assert_eq!(away["reason"], "2 offers expired in a row", "{away}");
    assert_eq!(away["conversation_id"], "aw-1");
    // Away: the metrics count the agent so, and the contact waits.
    support::eventually(WAIT, "the agent counted away, the contact waiting", || async {
        let (_, m) = support::http_get(d.http, "/metrics").await.ok()?;
        let away = m.contains("omniroute_agents{status=\"away\"} 1");
        (away && m.contains("omniroute_contacts_waiting{queue=\"q\"} 1")).then_some(())
    })
    .await;
    d.stop().await;
}

/// An agent on the queue who starts offline (no `initial_status`).
fn offline_agent(id: &str) -> String {
    format!("[[agents]]\nid = \"{id}\"\ncapacity = {{ chat = 1 }}\n")
}

/// Ageing and the starvation bound on the daemon's clock, held by the test:
/// a priority-0 contact that waited 40 s (four 10 s steps, capped at 3)
/// goes ahead of a priority-2 one; one that waited past `max_wait_secs`
/// goes ahead of a new priority-9 one. Without ageing the first offer is
/// `mid`'s; without the bound the second is `hi`'s.
#[tokio::test]
async fn ageing_and_the_starvation_bound_order_the_line_on_the_daemons_clock() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"aged\"\nchannels = [\"chat\"]\nageing_secs = 10\nageing_cap = 3\nmax_wait_secs = 100\n",
        &offline_agent("g"),
    ]
    .concat();
    let (d, clock, mut c) = on_held_clock(&nats, &toml, "2026-11-23T09:00:00Z").await;
    let queued = |conv: &'static str| move |v: &Value| v["conversation_id"] == conv;
    c.contact("chat", "old-1", json!({"queue": "aged", "priority": 0}))
        .await;
    c.expect("omni.event.contact.queued", WAIT, queued("old-1")).await;
    clock.set(at("2026-11-23T09:00:01Z"));
    c.contact("chat", "old-2", json!({"queue": "aged", "priority": 0}))
        .await;
    c.expect("omni.event.contact.queued", WAIT, queued("old-2")).await;
    clock.set(at("2026-11-23T09:00:35Z"));
    c.contact("chat", "mid", json!({"queue": "aged", "priority": 2})).await;
    c.expect("omni.event.contact.queued", WAIT, queued("mid")).await;
    // 40 s after old-1: aged three steps (the cap), ahead of mid's 2.
    clock.set(at("2026-11-23T09:00:40Z"));
    c.agent("g", "presence", json!({"status": "available"})).await;
    let (agent, first) = next_offer(&mut c).await;
    assert_eq!(
        (agent.as_str(), &first["conversation_id"]),
        ("g", &json!("old-1")),
        "{first}"
    );
    accept(&mut c, "g", &first).await;
    // 110 s after old-2: past the bound, ahead of a new priority 9; mid
    // (76 s, aged to the cap of 3) after both.
    clock.set(at("2026-11-23T09:01:51Z"));
    c.contact("chat", "hi", json!({"queue": "aged", "priority": 9})).await;
    c.expect("omni.event.contact.queued", WAIT, queued("hi")).await;
    let mut order = Vec::new();
    let mut offer = first;
    for _ in 0..3 {
        let cid = offer["contact_id"].as_str().expect("contact id").to_string();
        if offer["conversation_id"] != "old-1" {
            c.agent("g", "accept", json!({"contact_id": cid})).await;
        }
        c.agent("g", "complete", json!({"contact_id": cid})).await;
        offer = next_offer(&mut c).await.1;
        order.push(offer["conversation_id"].as_str().unwrap_or("?").to_string());
    }
    assert_eq!(order, ["old-2", "hi", "mid"]);
    d.stop().await;
}

/// Admission by estimated wait: the queue's pace is measured between two
/// offers made while contacts were left waiting (10 s on the held clock);
/// `queued` then says `position × pace`, and a contact whose estimated
/// wait would pass `max_estimated_wait_secs` is refused, not queued.
#[tokio::test]
async fn the_queued_event_estimates_the_wait_and_a_queue_refuses_past_its_estimated_wait() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"paced\"\nchannels = [\"chat\"]\nmax_estimated_wait_secs = 25\n",
        &offline_agent("p"),
    ]
    .concat();
    let (d, clock, mut c) = on_held_clock(&nats, &toml, "2026-11-23T09:00:00Z").await;
    // No pace yet: no estimate, and nothing refused by it.
    for (conv, at_) in [("e-1", "09:00:00"), ("e-2", "09:00:01"), ("e-3", "09:00:02")] {
        clock.set(at(&format!("2026-11-23T{at_}Z")));
        c.contact("chat", conv, json!({"queue": "paced"})).await;
        let q = c
            .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == conv)
            .await;
        assert!(q.get("estimated_wait_secs").is_none(), "{q}");
    }
    clock.set(at("2026-11-23T09:00:03Z"));
    c.agent("p", "presence", json!({"status": "available"})).await;
    let first = c.offer("p", "e-1").await;
    let cid = accept(&mut c, "p", &first).await;
    clock.set(at("2026-11-23T09:00:13Z"));
    c.agent("p", "complete", json!({"contact_id": cid})).await;
    c.offer("p", "e-2").await;
    // e-3 waits; the next is second in line: 2 × 10 s.
    c.contact("chat", "e-4", json!({"queue": "paced"})).await;
    let q = c
        .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "e-4")
        .await;
    assert_eq!(
        (&q["position"], &q["estimated_wait_secs"]),
        (&json!(2), &json!(20.0)),
        "{q}"
    );
    // Third in line would wait 30 s, over the 25 s limit.
    c.contact("chat", "e-5", json!({"queue": "paced"})).await;
    let r = c
        .expect("omni.event.contact.refused", WAIT, |v| v["conversation_id"] == "e-5")
        .await;
    assert_eq!(r["queue"], "paced");
    assert_eq!(r["reason"], "queue paced's estimated wait of 30 s is over 25 s", "{r}");
    d.stop().await;
}

/// longest_idle on a held clock: y is offered first, z a second later; z
/// finishes first and y after, so z has been idle longest. The next chat
/// goes to z, where round robin (y's last offer is older) and the roster's
/// order would pick y.
#[tokio::test]
async fn longest_idle_offers_to_the_agent_idle_longest() {
    let nats = NatsServer::start();
    let toml = [
        "[[queues]]\nname = \"idle\"\nchannels = [\"chat\"]\nstrategy = \"longest_idle\"\n",
        &offline_agent("y"),
        &offline_agent("z"),
    ]
    .concat();
    let (d, clock, mut c) = on_held_clock(&nats, &toml, "2026-11-23T09:00:00Z").await;
    let mut held = Vec::new();
    for (agent, conv, when) in [("y", "li-1", "09:00:00"), ("z", "li-2", "09:00:01")] {
        clock.set(at(&format!("2026-11-23T{when}Z")));
        c.agent(agent, "presence", json!({"status": "available"})).await;
        c.contact("chat", conv, json!({"queue": "idle"})).await;
        let o = c.offer(agent, conv).await;
        held.push((agent, accept(&mut c, agent, &o).await));
    }
    for ((agent, cid), when) in held.iter().rev().zip(["09:00:02", "09:00:03"]) {
        clock.set(at(&format!("2026-11-23T{when}Z")));
        complete(&mut c, agent, cid).await;
    }
    clock.set(at("2026-11-23T09:00:04Z"));
    c.contact("chat", "li-3", json!({"queue": "idle"})).await;
    let (agent, o) = next_offer(&mut c).await;
    assert_eq!(
        (agent.as_str(), &o["why"]["strategy"]),
        ("z", &json!("longest_idle")),
        "{o}"
    );
    d.stop().await;
}

/// Per-channel accept timeouts and wrap-up on a held clock: a chat offer
/// expires after chat's 5 s while the e-mail offered with it still has
/// its 60 s; a completed chat holds its slot for chat's 30 s of wrap-up;
/// a `wrap_up` event ends the next one at once.
#[tokio::test]
async fn each_channel_has_its_own_accept_timeout_and_wrap_up() {
    let nats = NatsServer::start();
    let toml = [
        "[routing.channels.chat]\noffer_timeout_secs = 5\nwrap_up_secs = 30\n",
        "[routing.channels.email]\noffer_timeout_secs = 60\n",
        "[[queues]]\nname = \"desk\"\nchannels = [\"chat\", \"email\"]\n",
        "[[queues]]\nname = \"probe\"\nchannels = [\"chat\"]\nskills = { nobody = 1 }\n",
        &agent("w", "", "chat = 1, email = 1", ""),
    ]
    .concat();
    let (d, clock, mut c) = on_held_clock(&nats, &toml, "2026-11-23T10:00:00Z").await;
    let t = |secs: u32| at(&format!("2026-11-23T10:00:{secs:02}Z"));
    c.contact("chat", "pc-chat", json!({"queue": "desk"})).await;
    let chat = c.offer("w", "pc-chat").await;
    assert_eq!(chat["expires_at"], "2026-11-23T10:00:05.000Z", "{chat}");
    c.contact("email", "pc-mail", json!({"queue": "desk"})).await;
    let mail = c.offer("w", "pc-mail").await;
    assert_eq!(mail["expires_at"], "2026-11-23T10:01:00.000Z", "{mail}");
    // 6 s on: the chat's offer expired (and comes back to w, nobody else
    // fits); the e-mail's is still open and its accept is taken.
    clock.set(t(6));
    c.expect("omni.event.contact.offer_expired", WAIT, |v| {
        v["conversation_id"] == "pc-chat"
    })
    .await;
    accept(&mut c, "w", &mail).await;
    let chat = c.offer("w", "pc-chat").await;
    let chat_id = accept(&mut c, "w", &chat).await;
    // Completed at 7 s: the chat slot is held until 37 s.
    clock.set(t(7));
    complete(&mut c, "w", &chat_id).await;
    clock.set(t(36));
    c.contact("chat", "pc-next", json!({"queue": "desk"})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "pc-next")
        .await;
    not_offered_yet(&mut c, "pc-next", "offered during the wrap-up").await;
    clock.set(t(37));
    let next = c.offer("w", "pc-next").await;
    assert_eq!(next["offered_at"], "2026-11-23T10:00:37.000Z", "{next}");
    // The next chat's wrap-up ended at once by a `wrap_up` event.
    let next_id = accept_and_complete(&mut c, "w", &next).await;
    clock.set(t(40));
    c.contact("chat", "pc-last", json!({"queue": "desk"})).await;
    c.expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "pc-last")
        .await;
    c.agent("w", "wrap_up", json!({"contact_id": next_id, "wrap_up_secs": 0}))
        .await;
    let last = c.offer("w", "pc-last").await;
    assert_eq!(last["offered_at"], "2026-11-23T10:00:40.000Z", "{last}");
    d.stop().await;
}

/// `closed_overflow` on a held clock: open (11:00 in Madrid), a contact
/// for the late queue waits there; closed (21:00), the next one goes to
/// the day queue, which says where it came from, and is offered there.
#[tokio::test]
async fn a_closed_queue_sends_new_contacts_to_its_closed_overflow() {
    let nats = NatsServer::start();
    let toml = [
        "[calendars.office]\ntimezone = \"Europe/Madrid\"\nhours = { mon = [\"09:00-17:00\"] }\n",
        "[[queues]]\nname = \"late\"\nchannels = [\"chat\"]\ncalendar = \"office\"\nclosed_overflow = \"day\"\n",
        "[[queues]]\nname = \"day\"\nchannels = [\"chat\"]\n",
        &offline_agent("n"),
    ]
    .concat();
    let (d, clock, mut c) = on_held_clock(&nats, &toml, "2026-11-23T10:00:00Z").await;
    c.contact("chat", "co-open", json!({"queue": "late"})).await;
    let q = c
        .expect("omni.event.contact.queued", WAIT, |v| v["conversation_id"] == "co-open")
        .await;
    assert_eq!((&q["queue"], q.get("from_queue")), (&json!("late"), None), "{q}");
    clock.set(at("2026-11-23T20:00:00Z"));
    c.contact("chat", "co-closed", json!({"queue": "late"})).await;
    let q = c
        .expect("omni.event.contact.queued", WAIT, |v| {
            v["conversation_id"] == "co-closed"
        })
        .await;
    assert_eq!((&q["queue"], &q["from_queue"]), (&json!("day"), &json!("late")), "{q}");
    // The late queue is closed, so only the contact sent on is offered.
    c.agent("n", "presence", json!({"status": "available"})).await;
    let o = c.offer("n", "co-closed").await;
    assert_eq!(o["queue"], "day", "{o}");
    d.stop().await;
}
