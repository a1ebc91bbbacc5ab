//! On a JetStream cluster: three clustered nats-servers on loopback, the
//! router's streams and lease bucket at three replicas. The router is
//! started together with the cluster (before it has elected a metadata
//! leader), routes, and keeps routing while each node in turn is killed
//! and brought back (so the node the router is connected to, and every
//! stream leader, go away at some point under load). Checked from outside
//! on what JetStream holds: every contact is offered, exactly once.

use crate::support;

use async_nats::jetstream;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::cluster::Cluster;
use support::Daemon;

async fn client(urls: &[String]) -> jetstream::Context {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().expect("url")).collect();
    let nc = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .expect("connect");
    jetstream::new(nc)
}

async fn contact(js: &jetstream::Context, n: usize) {
    let id = format!("cl-{n}-{}", std::process::id());
    let v = json!({"v": 1, "id": id, "type": "message", "channel": "chat",
        "conversation_id": format!("conv-{n}"), "customer": {"id": format!("k{n}")}});
    let body = serde_json::to_vec(&v).expect("json");
    support::publish_until_stored(js, "omni.inbound.chat".into(), &id, body).await;
}

/// Offer ids per conversation in everything the router published so far.
async fn offers(js: &jetstream::Context) -> Option<BTreeMap<String, Vec<String>>> {
    let all = support::read_stream(js, "OMNI_OUTBOUND", Duration::from_secs(5)).await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (subject, v) in all {
        if subject.starts_with("omni.offer.") && v["kind"] == "offer" {
            let conv = v["conversation_id"].as_str().unwrap_or_default().to_string();
            let id = v["offer_id"].as_str().unwrap_or_default().to_string();
            let ids = out.entry(conv).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_on_a_three_node_cluster_starts_with_it_and_routes_through_node_losses() {
    let mut cluster = Cluster::start(3);
    let urls = cluster.urls();
    let toml = r#"
[nats]
stream_replicas = 3
[routing]
offer_timeout_secs = 600
[[queues]]
name = "q"
channels = ["chat"]
[[agents]]
id = "a"
capacity = { chat = 1000 }
initial_status = "available"
"#;
    // Started together with the cluster: set-up waits for it to settle,
    // which on a loaded 2-core machine can take longer than a router alone
    // is given to start (CI once failed here at 20 s, the streams' set-up
    // still answered "JetStream system temporarily unavailable").
    let d = Daemon::spawn(support::config(&urls.join(","), toml)).await;
    d.wait_ready_within(Duration::from_secs(90)).await;
    let js = client(&urls).await;
    let per_round = 25;
    let mut n = 0;
    for _ in 0..per_round {
        contact(&js, n).await;
        n += 1;
    }
    for i in 0..3 {
        cluster.kill(i);
        for _ in 0..per_round {
            contact(&js, n).await;
            n += 1;
        }
        cluster.spawn(i);
    }
    let info = js
        .get_stream("OMNI_INBOUND")
        .await
        .expect("stream")
        .cached_info()
        .config
        .num_replicas;
    assert_eq!(info, 3, "the router's streams are replicated");
    let got = support::eventually(Duration::from_secs(90), "every contact offered", || async {
        let o = offers(&js).await?;
        (o.len() >= n).then_some(o)
    })
    .await;
    let doubled: Vec<_> = got.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "offered more than once: {doubled:?}");
    assert_eq!(got.len(), n, "every contact offered");
    d.stop().await;
}
