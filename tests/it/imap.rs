//! The `email-imap` adapter against a real dovecot and a real nats-server:
//! mail appended to the mailbox arrives on NATS and reaches an agent;
//! replies thread onto the same conversation; a message is marked seen (or
//! moved) only after JetStream stored its event; NATS stopped mid-poll
//! loses nothing; a restart after a crash between publish and mark
//! publishes nothing twice.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use support::dovecot::{Dovecot, PASSWORD, USER};
use support::{Client, Daemon, NatsServer};

const WAIT: Duration = Duration::from_secs(30);

fn config(nats: &str, imap_port: u16, adapter: &str, extra: &str) -> omniroute::config::Config {
    support::config(
        nats,
        &format!(
            r#"
[http]
listen = "127.0.0.1:0"
[[queues]]
name = "support"
channels = ["email"]
[[rules]]
name = "all"
queue = "support"
[[agents]]
id = "a-1"
capacity = {{ email = 50 }}
initial_status = "available"
[adapters.{adapter}]
type = "email-imap"
host = "127.0.0.1"
port = {imap_port}
tls = "none"
username = "{USER}"
password = "{PASSWORD}"
poll_secs = 2
{extra}
"#
        ),
    )
}

fn mail(id: &str, in_reply_to: Option<&str>, text: &str) -> Vec<u8> {
    let thread = in_reply_to
        .map(|r| format!("In-Reply-To: <{r}>\r\nReferences: <{r}>\r\n"))
        .unwrap_or_default();
    format!(
        "From: Ana Ruiz <ana@example.com>\r\nTo: support@example.com\r\nSubject: Refund\r\nMessage-ID: <{id}>\r\n{thread}Date: Mon, 23 Nov 2026 09:14:03 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
    .into_bytes()
}

/// Every event in OMNI_INBOUND, in order.
async fn inbound(c: &Client) -> Vec<Value> {
    let s = c.js.get_stream("OMNI_INBOUND").await.expect("stream");
    let mut out = Vec::new();
    let mut seq = 1;
    while let Ok(m) = s.get_raw_message(seq).await {
        out.push(serde_json::from_slice(&m.payload).expect("json"));
        seq += 1;
    }
    out
}

async fn wait_inbound(c: &Client, n: usize) -> Vec<Value> {
    support::eventually(WAIT, &format!("{n} events in OMNI_INBOUND"), || async {
        let v = inbound(c).await;
        (v.len() >= n).then_some(v)
    })
    .await
}

async fn wait_search(d: &Dovecot, mailbox: &str, query: &str, want: usize) {
    support::eventually(WAIT, &format!("{want} {query} in {mailbox}"), || async {
        (d.search(mailbox, query).await.len() == want).then_some(())
    })
    .await
}

#[tokio::test]
async fn mail_reaches_an_agent_and_replies_thread_onto_its_conversation() {
    let nats = NatsServer::start();
    let imap = Dovecot::start();
    let d = Daemon::start(config(&nats.url, imap.port, "mail", "")).await;
    let mut c = Client::connect(&nats.url).await;
    imap.append("INBOX", &mail("first@example.com", None, "I was charged twice."))
        .await;
    let offer = c.offer("a-1", "mail:first@example.com").await;
    assert_eq!(offer["channel"], "email");
    imap.append(
        "INBOX",
        &mail("second@example.com", Some("first@example.com"), "Any news?"),
    )
    .await;
    let events = wait_inbound(&c, 2).await;
    assert_eq!(
        events[1]["conversation_id"], "mail:first@example.com",
        "the reply threads"
    );
    assert_eq!(events[1]["customer"]["id"], "ana@example.com");
    assert_eq!(events[1]["source"]["mailbox"], "INBOX");
    wait_search(&imap, "INBOX", "UNSEEN", 0).await;
    assert_eq!(imap.search("INBOX", "ALL").await.len(), 2, "marked seen, left in place");
    d.stop().await;
}

#[tokio::test]
async fn processed_mail_moves_to_the_processed_folder() {
    let nats = NatsServer::start();
    let imap = Dovecot::start();
    let d = Daemon::start(config(
        &nats.url,
        imap.port,
        "mail_moved",
        "processed_folder = \"Processed\"",
    ))
    .await;
    let c = Client::connect(&nats.url).await;
    imap.append("INBOX", &mail("moved@example.com", None, "hello")).await;
    wait_inbound(&c, 1).await;
    wait_search(&imap, "Processed", "ALL", 1).await;
    wait_search(&imap, "INBOX", "ALL", 0).await;
    d.stop().await;
}

async fn imap_errors(d: &Daemon, adapter: &str) -> u64 {
    let (_, body) = support::http_get(d.http, "/metrics").await.unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.starts_with("omniroute_adapter_imap_errors_total") && l.contains(&format!("adapter=\"{adapter}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn nats_down_mid_poll_loses_nothing_and_a_restart_publishes_nothing_twice() {
    let mut nats = NatsServer::start();
    let imap = Dovecot::start();
    let url = nats.url.clone();
    let cfg = || config(&url, imap.port, "mail_down", "");
    let d = Daemon::start(cfg()).await;
    nats.kill();
    imap.append("INBOX", &mail("during-outage@example.com", None, "Are you there?"))
        .await;
    // The adapter tried to publish it and failed ...
    support::eventually(WAIT, "an IMAP adapter publish error", || async {
        (imap_errors(&d, "mail_down").await > 0).then_some(())
    })
    .await;
    // ... so the message is still unseen: nothing was marked before its event was stored.
    assert_eq!(imap.search("INBOX", "UNSEEN").await.len(), 1);
    nats.restart();
    let c = Client::connect(&nats.url).await;
    let events = wait_inbound(&c, 1).await;
    assert_eq!(events[0]["id"], "mail:during-outage@example.com");
    wait_search(&imap, "INBOX", "UNSEEN", 0).await;

    // A crash between publishing and marking leaves the message unseen;
    // the restarted adapter publishes it again, and it is dropped as a
    // duplicate: still one event, one contact.
    d.stop().await;
    imap.mark_all_unseen("INBOX").await;
    let d = Daemon::start(cfg()).await;
    wait_search(&imap, "INBOX", "UNSEEN", 0).await;
    imap.append("INBOX", &mail("after-restart@example.com", None, "one more"))
        .await;
    let events = wait_inbound(&c, 2).await;
    let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["mail:during-outage@example.com", "mail:after-restart@example.com"]
    );
    d.stop().await;
    assert!(!imap.log().is_empty());
}

#[tokio::test]
async fn mail_is_read_over_imaps_and_over_starttls_with_the_configured_ca() {
    let nats = NatsServer::start();
    let imap = Dovecot::start_tls();
    let ca = imap.ca_file.as_ref().expect("ca").display().to_string();
    let c = Client::connect(&nats.url).await;
    for (n, (tls, port)) in [("tls", imap.tls_port.expect("imaps")), ("starttls", imap.port)]
        .into_iter()
        .enumerate()
    {
        let extra = format!("ca_file = {ca:?}\n");
        let mut cfg = config(&nats.url, port, &format!("mail_{tls}"), &extra);
        if let Some(a) = cfg.adapters.get_mut(&format!("mail_{tls}")) {
            a.tls = Some(tls.to_string());
        }
        let d = Daemon::start(cfg).await;
        imap.append("INBOX", &mail(&format!("{tls}@example.com"), None, "over TLS"))
            .await;
        let events = wait_inbound(&c, n + 1).await;
        assert_eq!(events[n]["id"], format!("mail:{tls}@example.com"));
        wait_search(&imap, "INBOX", "UNSEEN", 0).await;
        d.stop().await;
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let nats = NatsServer::start();
    let imap = Dovecot::start_tls();
    // No ca_file: the test CA is not among the system roots.
    let mut cfg = config(&nats.url, imap.tls_port.expect("imaps"), "mail_untrusted", "");
    if let Some(a) = cfg.adapters.get_mut("mail_untrusted") {
        a.tls = Some("tls".into());
    }
    let d = Daemon::start(cfg).await;
    support::eventually(WAIT, "a TLS error from the IMAP adapter", || async {
        (imap_errors(&d, "mail_untrusted").await > 0).then_some(())
    })
    .await;
    let (_, metrics) = support::http_get(d.http, "/metrics").await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("adapter=\"mail_untrusted\"") && l.contains("stage=\"tls\"")),
        "the error is at the TLS stage"
    );
    d.stop().await;
}

#[tokio::test]
async fn undecodable_mail_is_dead_lettered_with_its_error_and_marked() {
    let nats = NatsServer::start();
    let imap = Dovecot::start();
    let d = Daemon::start(config(&nats.url, imap.port, "mail_dlq", "")).await;
    let mut c = Client::connect(&nats.url).await;
    imap.append(
        "INBOX",
        b"Subject: no sender\r\nMessage-ID: <nofrom@example.com>\r\n\r\nwho am I\r\n",
    )
    .await;
    let dl = c
        .expect("omni.dlq.inbound", WAIT, |v| v["subject"] == "imap:mail_dlq/INBOX")
        .await;
    assert_eq!(dl["error"], "message has no From address");
    assert!(dl["payload"].as_str().is_some_and(|p| p.contains("Subject: no sender")));
    wait_search(&imap, "INBOX", "UNSEEN", 0).await;
    assert!(inbound(&c).await.is_empty(), "no event for it");
    d.stop().await;
}
