//! `cargo bench --bench sla_lateness [-- N]`: how late SLA alerts arrive
//! with N open contacts (100 000 by default), through a real nats-server.
//!
//! The daemon runs in-process with one chat queue nobody can serve and an
//! SLA policy of T seconds first response with a warning at 50 % (its
//! queue-wait and resolution clocks run too, due long after the run); N contacts are published
//! at `--rate R` per second (5 000 by default; 0: as fast as JetStream
//! takes them), each with `received_at` = its publish time, so every clock
//! is running when the first alert falls due and alerts fall due at the
//! rate contacts arrived. A core-NATS subscriber records when each alert
//! arrives; lateness = arrival − due, due being the alert's `due_at`
//! (`received_at` plus share × target): end to end, the router's timer, the journal append, the
//! publish, the delivery. Also `at − due` (when the router raised it)
//! and the RSS growth per open contact (this process holds the daemon and
//! the load generator). Prints one JSON object.
//!
//! Without `--bench` a small run checks the benchmark still works.

#[path = "../tests/support/mod.rs"]
mod support;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use std::time::{Duration, Instant};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn config(target: f64) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
[sla.policies.p]
first_response_secs = {{ chat = {target} }}
queue_wait_secs = {{ chat = 86400 }}
resolution_secs = {{ chat = 172800 }}
warning_thresholds = [0.5]
[[queues]]
name = "nobody"
channels = ["chat"]
skills = {{ rare = 10 }}
sla_policy = "p"
"#
    )
}

fn main() {
    let (full, n, rt) = support::bench_start(100_000, 500);
    let args: Vec<String> = std::env::args().collect();
    let rate: f64 = args
        .iter()
        .position(|a| a == "--rate")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if full { 5_000.0 } else { 0.0 });
    // Long enough that all N contacts are in before the first warning.
    let intake = if rate > 0.0 {
        n as f64 / rate
    } else {
        n as f64 / 10_000.0
    };
    let target: f64 = if full { (intake * 2.0 + 20.0).max(60.0) } else { 6.0 };
    let out = rt.block_on(async {
        let nats = support::NatsServer::start();
        let d = support::Daemon::start(support::config(&nats.url, &config(target))).await;
        let nc = async_nats::ConnectOptions::new()
            .subscription_capacity(4 * n + 1024)
            .connect(&nats.url)
            .await
            .expect("connect");
        let mut alerts = nc.subscribe("omni.alert.sla.>").await.expect("sub");
        nc.flush().await.expect("flush");
        let js = jetstream::new(nc.clone());
        let rss_before = rss_bytes();
        let t = Instant::now();
        let mut acks = Vec::with_capacity(1024);
        let start = tokio::time::Instant::now();
        for i in 0..n {
            if rate > 0.0 && i % 100 == 0 {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            let id = format!("sla-bench-{i}");
            let payload = json!({"v": 1, "id": id, "type": "message", "channel": "chat",
                "conversation_id": format!("conv-{i}"), "received_at": omniroute::domain::timefmt::rfc3339(Utc::now()),
                "customer": {"id": format!("cust-{i}")}, "queue": "nobody", "text": "Hello, where is my order?"});
            let msg = jetstream::message::PublishMessage::build()
                .payload(payload.to_string().into())
                .message_id(id);
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
        let intake_secs = t.elapsed().as_secs_f64();
        let mut end_to_end = Histogram::<u64>::new(3).expect("histogram");
        let mut raised = Histogram::<u64>::new(3).expect("histogram");
        let mut early = 0u64;
        let mut rss_open = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(target * 2.0 + 120.0);
        for k in 0..2 * n {
            let m = tokio::time::timeout_at(deadline, alerts.next())
                .await
                .unwrap_or_else(|_| panic!("only {k} of {} alerts arrived", 2 * n))
                .expect("subscription");
            let now = Utc::now();
            if k == 0 {
                rss_open = rss_bytes();
            }
            let a: serde_json::Value = serde_json::from_slice(&m.payload).expect("alert json");
            let at = a["at"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).expect("at");
            // The alert says when it came due (received_at + share × target).
            let due = a["due_at"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .expect("due_at")
                .with_timezone(&Utc);
            let late = |t: DateTime<Utc>| (t - due).num_microseconds().unwrap_or(0);
            let e2e = late(now);
            if e2e < -1_000 {
                early += 1;
            }
            end_to_end.record(e2e.max(0) as u64).expect("record");
            raised.record(late(at.with_timezone(&Utc)).max(0) as u64).expect("record");
        }
        let ms = |h: &Histogram<u64>, q: f64| (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
        let result = json!({
            "bench": "sla_lateness",
            "open_contacts": n,
            "alerts": 2 * n,
            "target_secs": target,
            "arrival_rate_per_sec": rate,
            "intake_secs": (intake_secs * 100.0).round() / 100.0,
            "lateness_ms": {"p50": ms(&end_to_end, 0.5), "p99": ms(&end_to_end, 0.99), "p999": ms(&end_to_end, 0.999), "max": ms(&end_to_end, 1.0)},
            "raised_lateness_ms": {"p50": ms(&raised, 0.5), "p99": ms(&raised, 0.99), "max": ms(&raised, 1.0)},
            "arrived_early": early,
            "rss_growth_per_open_contact_bytes": (rss_open.saturating_sub(rss_before) / n as u64),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        });
        d.stop().await;
        result
    });
    println!("{out}");
}
