//! The channel adapters over real HTTP and a real nats-server: a contact
//! from each channel reaches an agent; signatures, the Meta handshake,
//! batches, oversized and malformed bodies; NATS down answers 503 and
//! nothing is lost or doubled once it is back.

use crate::support;

use omniroute::adapters::sign;
use serde_json::{json, Value};
use std::net::SocketAddr;
use support::{http_send, Client, Daemon, NatsServer, WAIT};

const CONFIG: &str = r#"
[http]
listen = "127.0.0.1:0"
[routing]
offer_timeout_secs = 60
[[queues]]
name = "support"
channels = ["email", "chat", "social", "voice"]
[[queues]]
name = "billing"
channels = ["voice"]
skills = { billing = 1 }
[[rules]]
name = "all"
queue = "support"
[[agents]]
id = "a-1"
skills = { billing = 5 }
capacity = { email = 50, chat = 50, social = 50, voice = 50 }
initial_status = "available"
[adapters.chat]
type = "chat-webhook"
secret = "chat-secret"
max_body_bytes = 4096
[adapters.meta]
type = "social-webhook"
secret = "app-secret"
verify_token = "verify-me"
[adapters.generic]
type = "social-webhook"
format = "generic"
secret = "generic-secret"
[adapters.phone]
type = "ivr-webhook"
secret = "twilio-token"
reply = "<Response><Say>Please hold.</Say></Response>"
[[adapters.phone.menu]]
digits = "1"
keywords = ["invoice"]
queue = "billing"
[adapters.mail]
type = "email-webhook"
secret = "mail-secret"
[adapters.bigchat]
type = "chat-webhook"
secret = "big-secret"
max_body_bytes = 4194304
"#;

async fn start() -> (NatsServer, Daemon, Client) {
    let nats = NatsServer::start();
    let d = Daemon::start(support::config(&nats.url, CONFIG)).await;
    let c = Client::connect(&nats.url).await;
    (nats, d, c)
}

/// POSTs `body` signed with `secret` under the project's header.
async fn post_signed(addr: SocketAddr, path: &str, secret: &str, body: &[u8]) -> (u16, String, Value) {
    let sig = sign::sha256_header(secret.as_bytes(), body);
    post(
        addr,
        path,
        &[(sign::SIGNATURE_HEADER, &sig), ("content-type", "application/json")],
        body,
    )
    .await
}

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Value) {
    let (status, head, body) = http_send(addr, "POST", path, headers, body).await.expect("http");
    (status, head, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

async fn inbound_count(c: &Client) -> u64 {
    let mut s = c.js.get_stream("OMNI_INBOUND").await.expect("stream");
    s.info().await.expect("info").state.messages
}

#[tokio::test]
async fn a_signed_chat_reaches_an_agent_and_bad_requests_publish_nothing() {
    let (_nats, d, mut c) = start().await;
    let start = json!({"type": "start", "session_id": "s-1", "visitor": {"id": "v-1", "name": "Ana"}, "text": "Where is my order?"});
    let body = start.to_string();
    let (status, _, v) = post_signed(d.webhooks, "/webhooks/chat", "chat-secret", body.as_bytes()).await;
    assert_eq!((status, &v), (200, &json!({"published": 1, "ignored": 0})));
    let offer = c.offer("a-1", "chat:s-1").await;
    assert_eq!(offer["channel"], "chat");
    let stored = inbound_count(&c).await;

    // The platform's retry of the same request is the same event: no second contact.
    let (status, _, _) = post_signed(d.webhooks, "/webhooks/chat", "chat-secret", body.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(
        inbound_count(&c).await,
        stored,
        "the stream's duplicate window dropped the retry"
    );

    let forged = sign::sha256_header(b"wrong", body.as_bytes());
    for (headers, want, what) in [
        (vec![(sign::SIGNATURE_HEADER, forged.as_str())], 401, "forged signature"),
        (vec![], 401, "no signature"),
    ] {
        let (status, _, v) = post(d.webhooks, "/webhooks/chat", &headers, body.as_bytes()).await;
        assert_eq!(status, want, "{what}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {v}");
    }
    let (status, _, v) = post_signed(d.webhooks, "/webhooks/chat", "chat-secret", b"{\"type\":\"start\"").await;
    assert_eq!(status, 400, "{v}");
    let (status, _, v) = post_signed(
        d.webhooks,
        "/webhooks/chat",
        "chat-secret",
        br#"{"type":"start","session_id":"s","visitor":{"id":"v"},"priority":42}"#,
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str().map(|e| e.contains("priority"))),
        (400, Some(true))
    );
    let big = vec![b' '; 10_000];
    let (status, _, v) = post_signed(d.webhooks, "/webhooks/chat", "chat-secret", &big).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].is_string());
    let (status, _, v) = post_signed(d.webhooks, "/webhooks/nowhere", "chat-secret", b"{}").await;
    assert_eq!((status, v["path"].as_str()), (404, Some("/webhooks/nowhere")));
    let (status, _, _) = http_send(d.webhooks, "GET", "/webhooks/chat", &[], b"")
        .await
        .expect("http");
    assert_eq!(status, 405);
    assert_eq!(inbound_count(&c).await, stored, "nothing refused was published");
    d.stop().await;
}

#[tokio::test]
async fn meta_handshake_and_a_signed_batch_become_one_contact_per_message() {
    let (_nats, d, mut c) = start().await;
    let ok = "/webhooks/meta?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444";
    let (status, _, body) = http_send(d.webhooks, "GET", ok, &[], b"").await.expect("http");
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    let bad = "/webhooks/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1";
    let (status, _, _) = http_send(d.webhooks, "GET", bad, &[], b"").await.expect("http");
    assert_eq!(status, 403);

    let batch = json!({"object": "page", "entry": [
        {"id": "PAGE", "time": 1, "messaging": [
            {"sender": {"id": "U1"}, "recipient": {"id": "PAGE"}, "timestamp": 1_790_000_000_000_i64, "message": {"mid": "m.1", "text": "hello"}},
            {"sender": {"id": "PAGE"}, "recipient": {"id": "U1"}, "timestamp": 1_790_000_000_001_i64, "message": {"mid": "m.2", "text": "echo", "is_echo": true}}]},
        {"id": "PAGE", "time": 1, "messaging": [
            {"sender": {"id": "U2"}, "recipient": {"id": "PAGE"}, "timestamp": 1_790_000_000_002_i64, "message": {"mid": "m.3", "text": "hi"}}]}]})
    .to_string();
    let sig = sign::sha256_header(b"app-secret", batch.as_bytes());
    let (status, _, v) = post(
        d.webhooks,
        "/webhooks/meta",
        &[(sign::META_SIGNATURE_HEADER, &sig)],
        batch.as_bytes(),
    )
    .await;
    assert_eq!((status, &v), (200, &json!({"published": 2, "ignored": 1})));
    c.offer("a-1", "messenger:PAGE:U1").await;
    c.offer("a-1", "messenger:PAGE:U2").await;
    let forged = sign::sha256_header(b"not-the-app-secret", batch.as_bytes());
    let (status, _, _) = post(
        d.webhooks,
        "/webhooks/meta",
        &[(sign::META_SIGNATURE_HEADER, &forged)],
        batch.as_bytes(),
    )
    .await;
    assert_eq!(status, 401);

    let generic =
        json!({"platform": "mastodon", "message_id": "109", "sender": {"id": "@ana@example.social"}, "text": "hi"})
            .to_string();
    let (status, _, _) = post_signed(d.webhooks, "/webhooks/generic", "generic-secret", generic.as_bytes()).await;
    assert_eq!(status, 200);
    c.offer("a-1", "mastodon:@ana@example.social").await;
    d.stop().await;
}

#[tokio::test]
async fn nats_down_answers_503_and_the_retry_lands_once() {
    let (mut nats, d, mut c) = start().await;
    drop(c);
    nats.kill();
    let body = json!({"type": "start", "session_id": "s-down", "visitor": {"id": "v"}}).to_string();
    let (status, head, v) = post_signed(d.webhooks, "/webhooks/chat", "chat-secret", body.as_bytes()).await;
    assert_eq!(status, 503, "{v}");
    assert!(head.contains("retry-after: 5"), "{head}");
    nats.restart();
    c = Client::connect(&nats.url).await;
    // The sender retries until accepted, as a platform does.
    support::eventually(WAIT, "webhook accepts again", || async {
        let (s, _, _) = post_signed(d.webhooks, "/webhooks/chat", "chat-secret", body.as_bytes()).await;
        (s == 200).then_some(())
    })
    .await;
    c.offer("a-1", "chat:s-down").await;
    let (status, _, _) = post_signed(d.webhooks, "/webhooks/chat", "chat-secret", body.as_bytes()).await;
    assert_eq!(status, 200);
    let mut s = c.js.get_stream("OMNI_INBOUND").await.expect("stream");
    let n = s.info().await.expect("info").state.messages;
    assert_eq!(n, 1, "one event stored for the three posts, so one contact");
    d.stop().await;
}

/// A Twilio form post signed with `token` over the URL the adapter sees:
/// (status, response headers, body).
async fn post_twilio(addr: SocketAddr, token: &str, pairs: &[(&str, &str)]) -> (u16, String, Value) {
    let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let body = serde_urlencoded::to_string(&params).expect("form");
    let sig = sign::twilio_signature(token.as_bytes(), &format!("http://{addr}/webhooks/phone"), &params);
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        (sign::TWILIO_SIGNATURE_HEADER, sig.as_str()),
    ];
    post(addr, "/webhooks/phone", &headers, body.as_bytes()).await
}

#[tokio::test]
async fn a_twilio_call_with_a_menu_choice_reaches_the_queue_it_chose_and_its_hangup_ends_it() {
    let (_nats, d, mut c) = start().await;
    let call = [
        ("CallSid", "CA77"),
        ("From", "+34600000001"),
        ("To", "+34910000000"),
        ("CallStatus", "in-progress"),
    ];
    // The first request (no choice yet) publishes nothing: the caller is in the menu.
    let (status, head, reply) = post_twilio(d.webhooks, "twilio-token", &call).await;
    assert_eq!(
        (status, reply.as_str()),
        (200, Some("<Response><Say>Please hold.</Say></Response>"))
    );
    assert!(head.contains("content-type: text/xml"), "{head}");
    assert_eq!(inbound_count(&c).await, 0);

    let chose = [&call[..], &[("Digits", "1")]].concat();
    let (status, _, _) = post_twilio(d.webhooks, "not-the-token", &chose).await;
    assert_eq!(status, 401, "forged signature");
    let (status, _, _) = post_twilio(d.webhooks, "twilio-token", &chose).await;
    assert_eq!(status, 200);
    let offer = c.offer("a-1", "voice:CA77").await;
    assert_eq!(
        (offer["queue"].as_str(), offer["channel"].as_str()),
        (Some("billing"), Some("voice"))
    );

    let hangup = [
        ("CallSid", "CA77"),
        ("From", "+34600000001"),
        ("CallStatus", "completed"),
    ];
    let (status, _, _) = post_twilio(d.webhooks, "twilio-token", &hangup).await;
    assert_eq!(status, 200);
    assert_eq!(inbound_count(&c).await, 2, "the choice and the hang-up");

    // The JSON format from a dialplan, on the same URL.
    let json = json!({"call_id": "pbx-1", "status": "in-progress", "from": "+34600000002", "speech": "my invoice"})
        .to_string();
    let (status, _, v) = post_signed(d.webhooks, "/webhooks/phone", "twilio-token", json.as_bytes()).await;
    assert_eq!(status, 200, "{v}");
    let offer = c.offer("a-1", "voice:pbx-1").await;
    assert_eq!(offer["queue"], "billing");
    d.stop().await;
}

#[tokio::test]
async fn a_raw_mail_posted_to_the_email_webhook_reaches_an_agent_and_its_reply_threads() {
    let (_nats, d, mut c) = start().await;
    let first = b"From: Ana <ana@example.com>\r\nTo: support@example.com\r\nSubject: Refund\r\nMessage-ID: <w1@example.com>\r\n\r\nI was charged twice.\r\n";
    let (status, _, v) = post_signed(d.webhooks, "/webhooks/mail", "mail-secret", first).await;
    assert_eq!((status, &v), (200, &json!({"published": 1, "ignored": 0})));
    c.offer("a-1", "mail:w1@example.com").await;
    let reply = b"From: Ana <ana@example.com>\r\nSubject: Re: Refund\r\nMessage-ID: <w2@example.com>\r\nIn-Reply-To: <w1@example.com>\r\nReferences: <w1@example.com>\r\n\r\nAny news?\r\n";
    let (status, _, _) = post_signed(d.webhooks, "/webhooks/mail", "mail-secret", reply).await;
    assert_eq!(status, 200);
    let auto = b"From: ana@example.com\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <w3@example.com>\r\n\r\nOut of office\r\n";
    let (status, _, v) = post_signed(d.webhooks, "/webhooks/mail", "mail-secret", auto).await;
    assert_eq!((status, &v), (200, &json!({"published": 0, "ignored": 1})));
    let s = c.js.get_stream("OMNI_INBOUND").await.expect("stream");
    let second: Value = serde_json::from_slice(&s.get_raw_message(2).await.expect("msg").payload).expect("json");
    assert_eq!(second["conversation_id"], "mail:w1@example.com");
    assert_eq!(inbound_count(&c).await, 2);
    let (status, _, _) = post_signed(
        d.webhooks,
        "/webhooks/mail",
        "mail-secret",
        b"Subject: no sender\r\n\r\nx\r\n",
    )
    .await;
    assert_eq!(status, 400);
    d.stop().await;
}

#[tokio::test]
async fn the_adapter_subcommand_runs_one_adapter_alone_before_any_router() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let hooks: SocketAddr = format!("127.0.0.1:{}", support::binary::free_port())
        .parse()
        .expect("addr");
    let toml = format!(
        "[webhooks]\nlisten = \"{hooks}\"\n[adapters.chat]\ntype = \"chat-webhook\"\nsecret = \"chat-secret\"\n"
    );
    let mut p = support::binary::ready(support::binary::start(
        &["adapter", "chat"],
        dir.path(),
        &toml,
        &nats.url,
        "adapter",
        &[],
    ))
    .await;
    let body = json!({"type": "start", "session_id": "alone", "visitor": {"id": "v"}}).to_string();
    // No router ever ran: the adapter creates OMNI_INBOUND itself (503 until it has).
    support::eventually(WAIT, "the standalone adapter accepts a chat", || async {
        let (s, _, _) = post_signed(hooks, "/webhooks/chat", "chat-secret", body.as_bytes()).await;
        (s == 200).then_some(())
    })
    .await;
    let c = Client::connect(&nats.url).await;
    assert_eq!(inbound_count(&c).await, 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let status = support::binary::wait_exit(&mut p.child, std::time::Duration::from_secs(20));
    assert!(status.success(), "{status}");
}

/// Request bodies held at once are bounded over every route: with ten
/// 25 MiB bodies being read (ten declared, none sent), an eleventh is
/// answered 503 at once instead of read, and the budget comes back when
/// those connections go.
#[tokio::test]
async fn bodies_in_flight_are_bounded_and_the_rest_is_asked_to_retry() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_nats, d, _c) = start().await;
    let per = 26_214_400usize;
    assert_eq!(omniroute::http::webhooks::BODY_BUDGET / per, 10);
    let open = || async {
        let mut s = tokio::net::TcpStream::connect(d.webhooks).await.expect("connect");
        let head = format!("POST /webhooks/mail HTTP/1.1\r\nHost: x\r\nContent-Length: {per}\r\n\r\n");
        s.write_all(head.as_bytes()).await.expect("write");
        s
    };
    let mut held = Vec::new();
    for _ in 0..11 {
        held.push(open().await);
    }
    // Exactly one of the eleven is refused (whichever came last to the
    // budget), at once; the others wait for their bodies.
    let reads = held.iter_mut().map(|s| {
        Box::pin(async move {
            let mut buf = vec![0u8; 512];
            let n = s.read(&mut buf).await.unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).to_string()
        })
    });
    let (refused, _, waiting) = tokio::time::timeout(WAIT, futures::future::select_all(reads))
        .await
        .expect("a refusal");
    drop(waiting);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 5"), "{refused}");
    drop(held);
    // The budget is back: a normal request goes through.
    let mail = b"From: Ana <ana@example.com>\r\nTo: support@example.com\r\nSubject: Hi\r\nMessage-ID: <m-budget@example.com>\r\n\r\nHello\r\n";
    support::eventually(WAIT, "the budget back", || async {
        let (s, _, _) = post_signed(d.webhooks, "/webhooks/mail", "mail-secret", mail).await;
        (s == 200).then_some(())
    })
    .await;
    d.stop().await;
}

/// A body within the adapter's limit whose event is over the NATS
/// server's max payload (1 MiB here) can never be stored: 413 at once,
/// not 503 forever, and nothing of the request is published.
#[tokio::test]
async fn an_event_over_the_servers_max_payload_is_refused_and_nothing_is_published() {
    let (_nats, d, c) = start().await;
    let before = inbound_count(&c).await;
    let blob = "x".repeat(1_500_000);
    let batch = json!([
        {"type": "start", "session_id": "s-small", "visitor": {"id": "v"}},
        {"type": "start", "session_id": "s-big", "visitor": {"id": "w"}, "attributes": {"blob": blob}},
    ]);
    let body = batch.to_string();
    let (status, head, v) = post_signed(d.webhooks, "/webhooks/bigchat", "big-secret", body.as_bytes()).await;
    assert_eq!(status, 413, "{v}");
    assert!(!head.contains("retry-after"), "{head}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("max payload")), "{v}");
    assert_eq!(inbound_count(&c).await, before, "not even the small one of the batch");
    d.stop().await;
}
