//! The lifecycle's messages on raw JetStream, with no router: the ceiling
//! the router's lifecycle rate is held against.
//!
//! Per contact, as the router's lifecycle: the inbound message is
//! pull-consumed and answered by a `queued` event, an offer and an
//! `offered` event; the simulated desktop publishes `accept` and
//! `complete` to an agent stream; each is pull-consumed and answered by an
//! `accepted` or `completed` event. Every output goes to a stream under a
//! `Nats-Msg-Id`, and inputs are acked once their outputs are acknowledged,
//! in rounds of what is ready (at most 512), as the router does. Nothing
//! else: no decision, no state, no journal, so what it costs is what
//! JetStream costs for the contract's eight stored messages per contact.

use async_nats::jetstream::{self, consumer::pull, stream, Context};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use std::future::IntoFuture;
use std::time::Instant;

/// Outputs (subject, payload) for one input (subject, payload).
pub type Answer = fn(&str, &Bytes) -> Vec<(String, Bytes)>;

fn event(ty: &str, contact_id: &str, agent_id: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "type": format!("contact.{ty}"), "contact_id": contact_id, "agent_id": agent_id,
        "conversation_id": contact_id, "queue": "sales", "channel": "chat",
        "customer_id": "cust", "at": "2026-12-03T04:00:00.000Z",
    }))
    .unwrap_or_default()
}

/// An inbound contact: queued, offered to one of `agents` (by its number),
/// offered event.
fn on_inbound(subject: &str, payload: &Bytes) -> Vec<(String, Bytes)> {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let id = v["id"].as_str().unwrap_or_default();
    let n: usize = id.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let agent = format!("agent-{}", n % super::AGENTS);
    let offer = json!({
        "v": 1, "kind": "offer", "agent_id": agent, "contact_id": id, "offer_id": format!("{id}-o"),
        "channel": subject.rsplit('.').next(), "queue": "sales", "contact": v,
    });
    vec![
        ("lp.event.queued".into(), event("queued", id, None).into()),
        (
            format!("lp.offer.{agent}"),
            serde_json::to_vec(&offer).unwrap_or_default().into(),
        ),
        ("lp.event.offered".into(), event("offered", id, Some(&agent)).into()),
    ]
}

/// An agent's accept or complete: one lifecycle event.
fn on_agent(subject: &str, payload: &Bytes) -> Vec<(String, Bytes)> {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let (cid, agent) = (v["contact_id"].as_str().unwrap_or_default(), v["agent_id"].as_str());
    let ty = if subject.ends_with(".accept") {
        "accepted"
    } else {
        "completed"
    };
    vec![(format!("lp.event.{ty}"), event(ty, cid, agent).into())]
}

pub async fn consumer(js: &Context, stream_name: &str, durable: &str) -> pull::Stream {
    js.get_stream(stream_name)
        .await
        .expect("stream")
        .create_consumer(pull::Config {
            durable_name: Some(durable.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer")
        .stream()
        .max_messages_per_batch(512)
        .messages()
        .await
        .expect("messages")
}

/// Consumes `n` inputs in rounds of what is ready, publishing each one's
/// answer and acking the round once every answer is acknowledged (the
/// pipe's loop too).
pub async fn worker(js: Context, msgs: pull::Stream, n: usize, answer: Answer) {
    let mut rounds = msgs.ready_chunks(512);
    let (mut got, mut k) = (0, 0usize);
    while got < n {
        let round = rounds.next().await.expect("open");
        let mut acks = Vec::with_capacity(round.len() * 3);
        let mut inputs = Vec::with_capacity(round.len());
        for m in round {
            let m = m.expect("message");
            for (subject, payload) in answer(&m.subject, &m.payload) {
                k += 1;
                let out = jetstream::message::PublishMessage::build()
                    .payload(payload)
                    .message_id(format!("{subject}-{k}"));
                acks.push(js.send_publish(subject, out).await.expect("publish").into_future());
            }
            inputs.push(m);
        }
        futures::future::try_join_all(acks).await.expect("acks");
        for m in &inputs {
            m.ack().await.expect("ack");
        }
        got += inputs.len();
    }
}

/// Contacts per second through the lifecycle's messages with no router,
/// from the first inbound publish to the `n`-th `completed` event.
pub async fn lifecycle_pipe(url: &str, n: usize) -> f64 {
    let nc = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(nc.clone());
    for (name, subjects) in [
        ("LP_IN", vec!["lp.inbound.>"]),
        ("LP_AGENT", vec!["lp.agent.>"]),
        ("LP_OUT", vec!["lp.offer.>", "lp.event.>"]),
    ] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: subjects.into_iter().map(String::from).collect(),
            ..Default::default()
        })
        .await
        .expect("stream");
    }
    let offers = nc.subscribe("lp.offer.>").await.expect("sub");
    let completed = nc.subscribe("lp.event.completed").await.expect("sub");
    nc.flush().await.expect("flush");
    let inbound = consumer(&js, "LP_IN", "in").await;
    let agent = consumer(&js, "LP_AGENT", "agent").await;
    let t = Instant::now();
    let workers = [
        tokio::spawn(worker(js.clone(), inbound, n, on_inbound)),
        tokio::spawn(worker(js.clone(), agent, 2 * n, on_agent)),
    ];
    let desks = super::Desks::start(js.clone(), offers, "lp.agent");
    let counter = super::count(completed, n);
    super::publish_all(&js, "lp.inbound.chat", n, true).await;
    counter.await.expect("counter");
    let rate = n as f64 / t.elapsed().as_secs_f64();
    for w in workers {
        w.await.expect("worker");
    }
    desks.stop();
    rate
}
