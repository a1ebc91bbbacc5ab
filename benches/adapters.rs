//! `cargo bench --bench adapters [-- N]`: how fast each channel adapter
//! puts events into JetStream on a real nats-server, against raw JetStream
//! publishing measured in the same run with the same concurrency. Prints
//! one JSON object.
//!
//! - raw: N contact-sized events published with `Nats-Msg-Id`, each
//!   waiting for its ack, from C concurrent tasks (a webhook request waits
//!   for its ack the same way);
//! - one webhook adapter at a time, alone (`omniroute::run_adapter`, as
//!   `omniroute adapter NAME` runs it), N signed requests over C keep-alive
//!   HTTP/1.1 connections, each answered 200 only after its event is
//!   stored: chat (one session start each), Meta (one Messenger message
//!   each), Twilio (a form post with a menu choice each) and raw mail;
//! - IMAP: M messages appended to a real dovecot mailbox first, then the
//!   `email-imap` adapter started, until all M events are stored and marked
//!   seen.
//!
//! Without `--bench` (`cargo test --all-targets`) a small run checks that
//! the benchmark still works.

#[path = "../tests/support/mod.rs"]
mod support;

use async_nats::jetstream;
use omniroute::adapters::sign;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

const CONNECTIONS: usize = 32;

fn config(url: &str, imap_port: u16) -> omniroute::config::Config {
    support::config(
        url,
        &format!(
            r#"
[http]
listen = "127.0.0.1:0"
[[queues]]
name = "support"
channels = ["email", "chat", "social", "voice"]
[adapters.chat]
type = "chat-webhook"
secret = "s"
[adapters.meta]
type = "social-webhook"
secret = "s"
verify_token = "t"
[adapters.phone]
type = "ivr-webhook"
secret = "s"
[adapters.mail]
type = "email-webhook"
secret = "s"
[adapters.imap]
type = "email-imap"
host = "127.0.0.1"
port = {imap_port}
tls = "none"
username = "{user}"
password = "{pass}"
poll_secs = 1
"#,
            user = support::dovecot::USER,
            pass = support::dovecot::PASSWORD,
        ),
    )
}

/// A request: path, headers, body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

fn text(i: usize) -> String {
    format!("Hello, I was charged twice for invoice {i}; could you refund one of the two payments, please?")
}

fn requests(kind: &str, addr: SocketAddr, n: usize) -> Vec<Request> {
    (0..n)
        .map(|i| {
            let (path, mut headers, body): (&str, Vec<(String, String)>, Vec<u8>) = match kind {
                "chat" => {
                    let b = json!({"type": "start", "session_id": format!("s-{i}"), "visitor": {"id": format!("v-{i}")}, "text": text(i)});
                    ("/webhooks/chat", vec![], b.to_string().into_bytes())
                }
                "meta" => {
                    let b = json!({"object": "page", "entry": [{"id": "PAGE", "time": 1, "messaging": [
                        {"sender": {"id": format!("U{i}")}, "recipient": {"id": "PAGE"}, "timestamp": 1_790_000_000_000_i64, "message": {"mid": format!("m.{i}"), "text": text(i)}}]}]});
                    ("/webhooks/meta", vec![], b.to_string().into_bytes())
                }
                "mail" => {
                    let b = format!("From: Customer {i} <c{i}@example.com>\r\nTo: support@example.com\r\nSubject: Refund {i}\r\nMessage-ID: <bench-{i}@example.com>\r\n\r\n{}\r\n", text(i));
                    ("/webhooks/mail", vec![], b.into_bytes())
                }
                _ => {
                    let params: Vec<(String, String)> = [
                        ("CallSid", format!("CA{i}")),
                        ("From", format!("+3460000{i:04}")),
                        ("To", "+34910000000".into()),
                        ("CallStatus", "in-progress".into()),
                        ("Digits", "1".into()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    let url = format!("http://{addr}/webhooks/phone");
                    let sig = sign::twilio_signature(b"s", &url, &params);
                    let body = serde_urlencoded::to_string(&params).expect("form").into_bytes();
                    let h = vec![
                        ("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string()),
                        ("X-Twilio-Signature".to_string(), sig),
                    ];
                    return (String::from("/webhooks/phone"), h, body);
                }
            };
            let header = if kind == "meta" { "X-Hub-Signature-256" } else { "X-Omniroute-Signature" };
            headers.push((header.into(), sign::sha256_header(b"s", &body)));
            (path.to_string(), headers, body)
        })
        .collect()
}

/// Sends requests over one keep-alive connection; panics on any non-200.
async fn client(addr: SocketAddr, reqs: Vec<Request>) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    for (path, headers, body) in reqs {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes()).await.expect("write");
        w.write_all(&body).await.expect("write");
        let mut status = String::new();
        r.read_line(&mut status).await.expect("status");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
        }
        let mut buf = vec![0; len];
        r.read_exact(&mut buf).await.expect("body");
    }
}

async fn stored(js: &jetstream::Context) -> u64 {
    match js.get_stream("OMNI_INBOUND").await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

async fn raw(js: &jetstream::Context, n: usize) -> f64 {
    let js = Arc::new(js.clone());
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let js = Arc::clone(&js);
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(CONNECTIONS) {
                let payload = json!({"v": 1, "id": format!("raw-{i}"), "type": "message", "channel": "chat",
                    "conversation_id": format!("raw-{i}"), "customer": {"id": "c"}, "text": text(i)});
                let msg = jetstream::message::PublishMessage::build()
                    .payload(payload.to_string().into())
                    .message_id(format!("raw-{i}"));
                js.send_publish("bench.raw.chat", msg)
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// One adapter alone; returns requests per second.
async fn webhook(cfg: &omniroute::config::Config, js: &jetstream::Context, kind: &str, n: usize) -> f64 {
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (ops_addr, addr) = (ops.local_addr().expect("addr"), hooks.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let (cfg, name, token) = (cfg.clone(), kind.to_string(), stop.clone());
    let (ready, mut serving) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let listeners = omniroute::Listeners {
            ops,
            webhooks: Some(hooks),
            ready: Some(ready),
        };
        omniroute::run_adapter(cfg, &name, listeners, token).await
    });
    tokio::time::timeout(Duration::from_secs(20), serving.wait_for(|s| *s))
        .await
        .expect("adapter ready within 20 s")
        .expect("adapter running");
    let (status, _) = support::http_get(ops_addr, "/ready").await.expect("/ready");
    assert_eq!(status, 200, "/ready once the adapter said so");
    support::eventually(Duration::from_secs(20), "inbound stream", || async {
        js.get_stream("OMNI_INBOUND").await.ok().map(|_| ())
    })
    .await;
    let reqs = requests(kind, addr, n);
    let before = stored(js).await;
    let mut per: Vec<Vec<Request>> = (0..CONNECTIONS).map(|_| Vec::new()).collect();
    for (i, r) in reqs.into_iter().enumerate() {
        per[i % CONNECTIONS].push(r);
    }
    let t = Instant::now();
    let tasks: Vec<_> = per.into_iter().map(|r| tokio::spawn(client(addr, r))).collect();
    for t in tasks {
        t.await.expect("client");
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(
        stored(js).await - before,
        n as u64,
        "{kind}: every request stored one event"
    );
    stop.cancel();
    task.await.expect("adapter task").expect("adapter exits cleanly");
    rate
}

/// M messages appended first, then the IMAP adapter started; messages per second.
async fn imap(cfg: &omniroute::config::Config, js: &jetstream::Context, m: usize) -> f64 {
    let dovecot = support::dovecot::Dovecot::start();
    let mut cfg = cfg.clone();
    if let Some(a) = cfg.adapters.get_mut("imap") {
        a.port = Some(dovecot.port);
    }
    let raws: Vec<Vec<u8>> = (0..m)
        .map(|i| format!("From: Customer {i} <c{i}@example.com>\r\nSubject: Refund {i}\r\nMessage-ID: <imap-{i}@example.com>\r\n\r\n{}\r\n", text(i)).into_bytes())
        .collect();
    dovecot.append_all("INBOX", &raws).await;
    let before = stored(js).await;
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stop = CancellationToken::new();
    let t = Instant::now();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        omniroute::run_adapter(
            cfg,
            "imap",
            omniroute::Listeners {
                ops,
                webhooks: None,
                ready: None,
            },
            token,
        )
        .await
    });
    support::eventually(Duration::from_secs(600), "every mail stored", || async {
        (stored(js).await - before >= m as u64).then_some(())
    })
    .await;
    let rate = m as f64 / t.elapsed().as_secs_f64();
    stop.cancel();
    task.await.expect("adapter task").expect("adapter exits cleanly");
    rate
}

fn main() {
    let (full, n, rt) = support::bench_start(20_000, 200);
    let m = if full { n / 10 } else { 40 };
    let out = rt.block_on(async {
        let nats = support::NatsServer::start();
        let nc = async_nats::connect(&nats.url).await.expect("connect");
        let js = jetstream::new(nc);
        js.create_stream(jetstream::stream::Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.raw.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
        let cfg = config(&nats.url, 0);
        let raw_rate = raw(&js, n).await;
        let mut o = json!({
            "bench": "adapters",
            "requests": n,
            "connections": CONNECTIONS,
            "raw_jetstream_publish_msgs_per_sec": raw_rate.round(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        });
        for kind in ["chat", "meta", "phone", "mail"] {
            let rate = webhook(&cfg, &js, kind, n).await;
            o[format!("{kind}_requests_per_sec")] = json!(rate.round());
            o[format!("{kind}_vs_raw")] = json!((rate / raw_rate * 1000.0).round() / 1000.0);
        }
        let rate = imap(&cfg, &js, m).await;
        o["imap_messages"] = json!(m);
        o["imap_messages_per_sec"] = json!(rate.round());
        o
    });
    println!("{out}");
}
