//! `cargo bench --bench throughput [-- N]`: routing throughput through a real
//! nats-server, against the raw JetStream throughput measured in the same
//! run, and the routing decision latency of the core. Prints one JSON object.
//!
//! - raw: N contact-sized messages published to a stream (acks awaited in
//!   windows) and consumed with a durable pull consumer and explicit acks;
//! - pipe: the raw JetStream pipe the issue compares the router with: the
//!   same N messages pull-consumed from one stream, each answered by one
//!   message published to another, inputs acked after their answers'
//!   acknowledgements, in rounds of what is ready (as the router batches);
//! - router: N contacts published to `omni.inbound.chat` until the N-th
//!   `contact.offered` event is seen (each contact: consume, decide, one
//!   journal append per batch, publish offer and two events, ack);
//! - lifecycle: the same N contacts on a fresh server, each offered, then
//!   accepted and completed by simulated agent desktops (two agent events
//!   through JetStream), until the N-th `contact.completed` is seen: three
//!   inputs, one offer and four lifecycle events per contact;
//! - lifecycle pipe (`ceiling.rs`): the same messages per contact on raw
//!   JetStream with no router (no decision, state or journal), on a fresh
//!   server: what JetStream alone costs for the lifecycle on this server
//!   and these cores, and `lifecycle_vs_lifecycle_pipe`, how near the
//!   router comes to it;
//! - decision: the pure engine's `on_inbound` over N contacts and 500 agents,
//!   with a backlog of waiting contacts, timed per call;
//! - CPU: for the pipe and both lifecycles, the CPU time nats-server and this
//!   process (router, desktops, publishers; the lifecycle's includes the
//!   router's start) used per message or contact, and their ratio
//!   (`lifecycle_vs_pipe_cpu`): what the rate ratio would be if both
//!   phases were bound by the two cores alone. On a shared machine the
//!   rates swing with the neighbours' load; CPU per unit much less.

#[path = "throughput/ceiling.rs"]
mod ceiling;
#[path = "../tests/support/mod.rs"]
mod support;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use omniroute::domain::wire::decode_inbound;
use omniroute::routing::Engine;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The daemon's allocator (src/main.rs): the router runs in this process.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AGENTS: usize = 500;

fn contact(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "id": format!("bench-{i}"), "type": "message", "channel": "chat",
        "conversation_id": format!("conv-{i}"),
        "customer": {"id": format!("cust-{i}"), "name": "Bench Customer", "tier": "std", "language": "en"},
        "subject": "Where is my order?", "text": "Hello, I ordered something last week and it has not arrived yet.",
        "queue": "sales"
    }))
    .unwrap_or_default()
}

fn config_toml() -> String {
    let mut s = String::from(
        "[nats]\nbatch_size = 512\n[sla.policies.p]\nfirst_response_secs = { chat = 600 }\nwarning_thresholds = [0.5]\n\
         [[queues]]\nname = \"sales\"\nchannels = [\"chat\"]\nskills = { sales = 2 }\nsla_policy = \"p\"\n",
    );
    for a in 0..AGENTS {
        s.push_str(&format!(
            "[[agents]]\nid = \"agent-{a}\"\nskills = {{ sales = {} }}\ncapacity = {{ chat = 1000 }}\ninitial_status = \"available\"\n",
            2 + a % 8
        ));
    }
    s
}

async fn publish_all(js: &jetstream::Context, subject: &str, n: usize, with_id: bool) {
    let mut acks = Vec::with_capacity(1024);
    for i in 0..n {
        let mut msg = jetstream::message::PublishMessage::build().payload(contact(i).into());
        if with_id {
            msg = msg.message_id(format!("bench-{i}"));
        }
        acks.push(js.send_publish(subject.to_string(), msg).await.expect("publish"));
        if acks.len() == 1024 {
            for a in acks.drain(..) {
                a.await.expect("ack");
            }
        }
    }
    for a in acks {
        a.await.expect("ack");
    }
}

async fn raw(url: &str, n: usize) -> f64 {
    let nc = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(nc);
    let s = js
        .create_stream(stream::Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.raw.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let consumer = s
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let t = Instant::now();
    let reader = tokio::spawn(async move {
        let mut msgs = consumer
            .stream()
            .max_messages_per_batch(512)
            .messages()
            .await
            .expect("messages");
        let mut got = 0;
        while got < n {
            let m = msgs.next().await.expect("open").expect("message");
            m.ack().await.expect("ack");
            got += 1;
        }
    });
    publish_all(&js, "bench.raw.chat", n, true).await;
    reader.await.expect("reader");
    n as f64 / t.elapsed().as_secs_f64()
}

/// The raw JetStream pipe the router is held against (the issue's
/// definition): N contact-sized messages pull-consumed from one stream,
/// each answered by one message published to another stream, the inputs
/// acked once their answers are acknowledged, in rounds of whatever is
/// ready (at most 512), as the router commits a batch. Timed from the
/// first publish to the last input acked.
async fn pipe(url: &str, n: usize) -> f64 {
    let nc = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(nc);
    for (name, subject) in [
        ("BENCH_PIPE_IN", "bench.pipe.in.>"),
        ("BENCH_PIPE_OUT", "bench.pipe.out.>"),
    ] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    }
    let msgs = ceiling::consumer(&js, "BENCH_PIPE_IN", "pipe").await;
    let t = Instant::now();
    let echo: ceiling::Answer = |_, payload| vec![("bench.pipe.out.chat".into(), payload.clone())];
    let worker = tokio::spawn(ceiling::worker(js.clone(), msgs, n, echo));
    publish_all(&js, "bench.pipe.in.chat", n, true).await;
    worker.await.expect("pipe");
    n as f64 / t.elapsed().as_secs_f64()
}

async fn router(url: &str, n: usize) -> (f64, String) {
    let cfg = support::config(url, &config_toml());
    let d = support::Daemon::start(cfg).await;
    let nc = async_nats::connect(url).await.expect("connect");
    let offered = nc.subscribe("omni.event.contact.offered").await.expect("sub");
    nc.flush().await.expect("flush");
    let js = jetstream::new(nc.clone());
    let t = Instant::now();
    let counter = count(offered, n);
    publish_all(&js, "omni.inbound.chat", n, true).await;
    counter.await.expect("counter");
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let (_, metrics) = support::http_get(d.http, "/metrics").await.expect("metrics");
    d.stop().await;
    (rate, metrics)
}

/// Contacts per second through the whole lifecycle: inbound → offer →
/// accept → complete, the desktops answering every offer at once.
async fn lifecycle(url: &str, n: usize) -> (f64, serde_json::Value) {
    let d = support::Daemon::start(support::config(url, &config_toml())).await;
    let nc = async_nats::connect(url).await.expect("connect");
    let offers = nc.subscribe("omni.offer.>").await.expect("sub");
    let completed = nc.subscribe("omni.event.contact.completed").await.expect("sub");
    nc.flush().await.expect("flush");
    let js = jetstream::new(nc.clone());
    let t = Instant::now();
    let desks = Desks::start(js.clone(), offers, "omni.agent");
    let counter = count(completed, n);
    publish_all(&js, "omni.inbound.chat", n, true).await;
    counter.await.expect("counter");
    let wall = t.elapsed().as_secs_f64();
    let rate = n as f64 / wall;
    desks.stop();
    let (_, metrics) = support::http_get(d.http, "/metrics").await.expect("metrics");
    d.stop().await;
    (rate, where_time_goes(&metrics, wall, n))
}

/// Waits for `n` messages on `sub`, each within 60 s of the last.
fn count(mut sub: async_nats::Subscriber, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(60), sub.next())
                .await
                .expect("messages keep coming")
                .expect("open");
        }
    })
}

/// Simulated agent desktops: every offer seen on `offers` is accepted and
/// completed at once, two agent events published to
/// `<prefix>.<agent>.accept|complete`; their acknowledgements are awaited
/// by a task of its own, so the desks keep publishing while JetStream
/// confirms.
struct Desks {
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Desks {
    fn start(js: jetstream::Context, mut offers: async_nats::Subscriber, prefix: &'static str) -> Desks {
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<jetstream::context::PublishAckFuture>(4096);
        let acker = tokio::spawn(async move {
            while let Some(a) = ack_rx.recv().await {
                a.await.expect("ack");
            }
        });
        let desks = tokio::spawn(async move {
            let mut k = 0usize;
            while let Some(m) = offers.next().await {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                let (Some(agent), Some(cid)) = (v["agent_id"].as_str(), v["contact_id"].as_str()) else {
                    continue;
                };
                if v["kind"] != "offer" {
                    continue;
                }
                for ty in ["accept", "complete"] {
                    k += 1;
                    let body =
                        json!({"v": 1, "id": format!("desk-{k}"), "type": ty, "agent_id": agent, "contact_id": cid});
                    let msg = jetstream::message::PublishMessage::build()
                        .payload(serde_json::to_vec(&body).unwrap_or_default().into())
                        .message_id(format!("desk-{k}"));
                    let ack = js
                        .send_publish(format!("{prefix}.{agent}.{ty}"), msg)
                        .await
                        .expect("publish");
                    if ack_tx.send(ack).await.is_err() {
                        return;
                    }
                }
            }
        });
        Desks { tasks: [desks, acker] }
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// A figure of the router's own metrics (the sum of every series of it).
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// Where the router's time went in the lifecycle run, from its metrics:
/// deciding (inputs and timers, on the routing task), journal appends
/// (the routing task waits for each), publisher rounds (publish, wait for
/// JetStream, ack the inputs: a task of its own, overlapping the next
/// batches, so the sums may exceed the wall time).
fn where_time_goes(metrics: &str, wall: f64, n: usize) -> serde_json::Value {
    let m = |name: &str| metric(metrics, name);
    let decide =
        m("omniroute_routing_decision_duration_seconds_sum") + m("omniroute_routing_tick_duration_seconds_sum");
    json!({
        "wall_secs": (wall * 1000.0).round() / 1000.0,
        "deciding_secs": (decide * 1000.0).round() / 1000.0,
        "journal_append_secs": (m("omniroute_batch_commit_duration_seconds_sum") * 1000.0).round() / 1000.0,
        "journal_appends": m("omniroute_batch_commit_duration_seconds_count"),
        "publisher_round_secs": (m("omniroute_outbox_publish_duration_seconds_sum") * 1000.0).round() / 1000.0,
        "publisher_rounds": m("omniroute_outbox_publish_duration_seconds_count"),
        "journal_bytes_per_contact": (m("omniroute_journal_bytes_total") / n.max(1) as f64).round(),
    })
}

fn decision(n: usize) -> serde_json::Value {
    let toml = config_toml();
    let cfg =
        omniroute::config::Config::from_toml_with_env(&toml, "bench", Vec::<(String, String)>::new()).expect("config");
    let spec = Arc::new(cfg.validate().expect("valid"));
    let t0 = chrono::Utc::now();
    let mut e = Engine::new(spec, t0);
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    // First half: agents have room, every contact is offered. Second half:
    // the engine runs with a growing backlog (agents' capacity set to zero by
    // going away), the worst case for queue bookkeeping.
    for i in 0..n {
        if i == n / 2 {
            for a in 0..AGENTS {
                let ev = omniroute::domain::wire::decode_agent(
                    &format!("agent-{a}"),
                    "presence",
                    json!({"v":1,"id":format!("p{a}"),"type":"presence","agent_id":format!("agent-{a}"),"status":"away"}).to_string().as_bytes(),
                )
                .expect("presence");
                e.on_agent(&ev, t0).expect("applies");
            }
        }
        let ev = decode_inbound("chat", &contact(i)).expect("valid");
        let now = t0 + chrono::Duration::milliseconds(i as i64);
        let t = Instant::now();
        e.on_inbound(&ev, now).expect("routes");
        h.record(t.elapsed().as_nanos() as u64).expect("record");
        e.take_outputs();
        e.take_changes();
    }
    json!({
        "decision_samples": h.len(),
        "decision_p50_us": h.value_at_quantile(0.50) as f64 / 1000.0,
        "decision_p99_us": h.value_at_quantile(0.99) as f64 / 1000.0,
        "decision_p999_us": h.value_at_quantile(0.999) as f64 / 1000.0,
        "decision_max_us": h.max() as f64 / 1000.0,
        "decision_agents": AGENTS,
        "decision_backlog_at_end": e.waiting_len(),
    })
}

/// CPU time used from `start` on by nats-server and by this process.
struct Cpu {
    server: String,
    at: (f64, f64),
}

impl Cpu {
    fn start(nats: &support::NatsServer) -> Cpu {
        let server = nats.pid().to_string();
        let at = (support::cpu_secs(&server), support::cpu_secs("self"));
        Cpu { server, at }
    }

    /// (server, client) CPU seconds per unit over `n` units since `start`.
    fn per(&self, n: usize) -> (f64, f64) {
        let n = n.max(1) as f64;
        (
            (support::cpu_secs(&self.server) - self.at.0) / n,
            (support::cpu_secs("self") - self.at.1) / n,
        )
    }
}

fn main() {
    let (_, n, rt) = support::bench_start(20_000, 500);
    let (raw_rate, (pipe_rate, pipe_cpu), router_rate, metrics, (ceiling_rate, ceiling_cpu), lifecycle) =
        rt.block_on(async {
            let nats = support::NatsServer::start();
            let raw_rate = raw(&nats.url, n).await;
            let cpu = Cpu::start(&nats);
            let pipe_rate = pipe(&nats.url, n).await;
            let pipe_cpu = cpu.per(n);
            let (router_rate, metrics) = router(&nats.url, n).await;
            drop(nats);
            // The lifecycles on fresh servers, so neither pays for the
            // streams the others left behind.
            let fresh = support::NatsServer::start();
            let cpu = Cpu::start(&fresh);
            let ceiling_rate = ceiling::lifecycle_pipe(&fresh.url, n).await;
            let ceiling_cpu = cpu.per(n);
            drop(fresh);
            let fresh = support::NatsServer::start();
            let cpu = Cpu::start(&fresh);
            let (lifecycle_rate, lifecycle_time) = lifecycle(&fresh.url, n).await;
            let lifecycle_cpu = cpu.per(n);
            (
                raw_rate,
                (pipe_rate, pipe_cpu),
                router_rate,
                metrics,
                (ceiling_rate, ceiling_cpu),
                (lifecycle_rate, lifecycle_cpu, lifecycle_time),
            )
        });
    let (lifecycle_rate, lifecycle_cpu, lifecycle_time) = lifecycle;
    let us = |x: f64| (x * 1e7).round() / 10.0;
    let ratio = |a: f64, b: f64| (a / b.max(1e-9) * 1000.0).round() / 1000.0;
    let cpu = |c: (f64, f64)| json!({"server": us(c.0), "client": us(c.1), "total": us(c.0 + c.1)});
    let commit_count = metric(&metrics, "omniroute_batch_commit_duration_seconds_count");
    let mut out = json!({
        "bench": "throughput",
        "messages": n,
        "raw_jetstream_msgs_per_sec": raw_rate.round(),
        "pipe_jetstream_msgs_per_sec": pipe_rate.round(),
        "router_contacts_per_sec": router_rate.round(),
        "router_vs_raw": ratio(router_rate, raw_rate),
        "router_batches": commit_count,
        "lifecycle_pipe_contacts_per_sec": ceiling_rate.round(),
        "lifecycle_pipe_vs_pipe": ratio(ceiling_rate, pipe_rate),
        "lifecycle_contacts_per_sec": lifecycle_rate.round(),
        "lifecycle_vs_raw": ratio(lifecycle_rate, raw_rate),
        "router_vs_pipe": ratio(router_rate, pipe_rate),
        "lifecycle_vs_pipe": ratio(lifecycle_rate, pipe_rate),
        "lifecycle_vs_lifecycle_pipe": ratio(lifecycle_rate, ceiling_rate),
        "lifecycle_time": lifecycle_time,
        "pipe_cpu_us_per_msg": cpu(pipe_cpu),
        "lifecycle_pipe_cpu_us_per_contact": cpu(ceiling_cpu),
        "lifecycle_cpu_us_per_contact": cpu(lifecycle_cpu),
        "lifecycle_vs_pipe_cpu": ratio(pipe_cpu.0 + pipe_cpu.1, lifecycle_cpu.0 + lifecycle_cpu.1),
        "lifecycle_pipe_vs_pipe_cpu": ratio(pipe_cpu.0 + pipe_cpu.1, ceiling_cpu.0 + ceiling_cpu.1),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    if let (Some(o), serde_json::Value::Object(d)) = (out.as_object_mut(), decision(n)) {
        o.extend(d);
    }
    println!("{out}");
}
