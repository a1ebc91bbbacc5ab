//! `cargo bench --bench restart [-- N]`: how long a router takes to be
//! routing again with N open contacts (default 100 000), through a real
//! nats-server. Prints one JSON object.
//!
//! A router is filled with N waiting contacts (no agent is available, so
//! every contact stays open and its record is in the journal and the
//! snapshots), stopped, and started again; the figure is the time from
//! `omniroute::run` to `/ready` answering 200 as the active router with
//! its state loaded. The state stream's size is reported alongside.
//!
//! Then a second router joins as a standby; once it has read the state
//! (`omniroute_standby_journal_sequence` above 0), the active one stops,
//! releasing the lease, and the figure is the time until the standby
//! answers as the active router: its next look at the lease (a sixth of
//! `runtime.lease_ttl_secs`, 1 s by default) plus bringing its warm state
//! up to date and building the engine.

#[path = "../tests/support/mod.rs"]
mod support;

use async_nats::jetstream;
use serde_json::json;
use std::time::{Duration, Instant};

fn contact(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "id": format!("restart-{i}"), "type": "message", "channel": "chat",
        "conversation_id": format!("conv-{i}"),
        "customer": {"id": format!("cust-{i}"), "name": "Bench Customer", "tier": "std", "language": "en"},
        "subject": "Where is my order?", "text": "Hello, I ordered something last week and it has not arrived yet.",
        "queue": "sales"
    }))
    .unwrap_or_default()
}

const CONFIG: &str = "[nats]\nbatch_size = 512\n[sla.policies.p]\nfirst_response_secs = { chat = 86400 }\n\
    [[queues]]\nname = \"sales\"\nchannels = [\"chat\"]\nsla_policy = \"p\"\n\
    [[agents]]\nid = \"away-1\"\ncapacity = { chat = 5 }\ninitial_status = \"offline\"\n";

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn active(d: &support::Daemon) -> bool {
    matches!(support::http_get(d.http, "/ready").await, Ok((200, body)) if body.contains("\"active\""))
}

fn main() {
    let (_, n, rt) = support::bench_start(100_000, 2_000);
    let out = rt.block_on(async {
        let nats = support::NatsServer::start();
        let cfg = || support::config(&nats.url, CONFIG);
        let d = support::Daemon::start(cfg()).await;
        let js = jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
        let t = Instant::now();
        let mut acks = Vec::with_capacity(1024);
        for i in 0..n {
            let msg = jetstream::message::PublishMessage::build()
                .payload(contact(i).into())
                .message_id(format!("restart-{i}"));
            acks.push(js.send_publish("omni.inbound.chat", msg).await.expect("publish"));
            if acks.len() == 1024 {
                for a in acks.drain(..) {
                    a.await.expect("ack");
                }
            }
        }
        for a in acks {
            a.await.expect("ack");
        }
        support::eventually(Duration::from_secs(600), "every contact open", || async {
            let (_, m) = support::http_get(d.http, "/metrics").await.ok()?;
            (metric(&m, "omniroute_contacts_open") as usize >= n).then_some(())
        })
        .await;
        let fill = t.elapsed();
        d.stop().await;

        let mut state = js.get_stream("OMNI_STATE").await.expect("state stream");
        let info = state.info().await.expect("info");
        let t = Instant::now();
        let d = support::Daemon::spawn(cfg()).await;
        support::eventually(Duration::from_secs(120), "routing again", || async {
            active(&d).await.then_some(())
        })
        .await;
        let restart = t.elapsed();
        let (_, m) = support::http_get(d.http, "/metrics").await.expect("metrics");
        let restored = metric(&m, "omniroute_contacts_open") as usize;
        assert_eq!(restored, n, "every open contact restored");

        // Takeover: a standby beside the active router keeps the state read;
        // the active one stops (releasing the lease) and the standby routes
        // after its next look at the lease, reading only what is new.
        let s = support::Daemon::spawn(cfg()).await;
        support::eventually(Duration::from_secs(120), "the standby's state read", || async {
            let (_, m) = support::http_get(s.http, "/metrics").await.ok()?;
            (metric(&m, "omniroute_standby_journal_sequence") > 0.0).then_some(())
        })
        .await;
        d.stop().await;
        let t = Instant::now();
        support::eventually(Duration::from_secs(120), "the standby routing", || async {
            active(&s).await.then_some(())
        })
        .await;
        let takeover = t.elapsed();
        let (_, m) = support::http_get(s.http, "/metrics").await.expect("metrics");
        let taken_over = metric(&m, "omniroute_contacts_open") as usize;
        s.stop().await;
        assert_eq!(taken_over, n, "every open contact taken over");
        json!({
            "bench": "restart",
            "open_contacts": n,
            "fill_secs": (fill.as_secs_f64() * 100.0).round() / 100.0,
            "restart_to_ready_ms": restart.as_millis() as u64,
            "restored_open_contacts": restored,
            "takeover_after_release_ms": takeover.as_millis() as u64,
            "takeover_lease_poll_ms": 1000,
            "state_stream_bytes": info.state.bytes,
            "state_stream_messages": info.state.messages,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        })
    });
    println!("{out}");
}
