//! A crash at a chosen step of the commit protocol, not only at random
//! moments (`chaos`): the router aborts where `OMNIROUTE_FAILPOINT` says
//! (`src/failpoint.rs`), as `kill -9` would stop it, and a second one
//! restarts from what is on JetStream.

use crate::support;

use async_nats::jetstream;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::os::unix::process::ExitStatusExt;
use support::binary::wait_exit;
use support::{Client, NatsServer, WAIT};

const CFG: &str = r#"
[[queues]]
name = "q"
channels = ["email"]
[[agents]]
id = "alpha"
capacity = { email = 1 }
initial_status = "available"
[[agents]]
id = "beta"
capacity = { email = 1 }
initial_status = "available"
"#;

/// Everything in `OMNI_OUTBOUND`, as (subject, message).
async fn outbound(js: &jetstream::Context) -> Vec<(String, Value)> {
    support::read_stream(js, "OMNI_OUTBOUND", WAIT)
        .await
        .unwrap_or_default()
}

/// How many stored messages on `subject` are about conversation `conv`.
fn count(msgs: &[(String, Value)], subject: &str, conv: &str) -> usize {
    msgs.iter()
        .filter(|(s, v)| s == subject && v["conversation_id"] == conv)
        .count()
}

/// The router aborts right after the batch holding an offer is journaled
/// (nothing of it published, its input not acked), and in a second run
/// right after that batch's messages are published (its input not acked).
/// Restarted, it publishes what the journal holds (again, in the second
/// case, where JetStream drops the copies by `Nats-Msg-Id`), and the input,
/// delivered again, is recognised and changes nothing: the stream holds one
/// offer, one `queued` and one `offered` event, the offer goes to one agent
/// only, and it can be accepted.
#[tokio::test]
async fn a_crash_right_after_the_journal_or_the_publish_loses_and_doubles_nothing() {
    for point in ["after_journal", "after_publish"] {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = Client::connect(&nats.url).await;
        // The lease lapses soon after the abort, and the unacked input comes
        // back soon after the ack wait.
        let base = [
            ("OMNIROUTE_RUNTIME__LEASE_TTL_SECS", "1".to_string()),
            ("OMNIROUTE_NATS__ACK_WAIT_SECS", "2".to_string()),
        ];
        let mut env = base.to_vec();
        env.push(("OMNIROUTE_FAILPOINT", point.to_string()));
        let mut p = support::binary::spawn(dir.path(), CFG, &nats.url, "1", &env).await;
        c.contact("email", "one", json!({})).await;
        let status = wait_exit(&mut p.child, WAIT);
        assert_eq!(status.signal(), Some(Signal::SIGABRT as i32), "{point}: {status:?}");
        let before = outbound(&c.js).await;
        let published = usize::from(point == "after_publish");
        assert_eq!(
            count(&before, "omni.event.contact.offered", "one"),
            published,
            "{point}: {before:?}"
        );

        let p2 = support::binary::spawn(dir.path(), CFG, &nats.url, "2", &base).await;
        // The input comes back (it was never acked) and is recognised.
        support::eventually(WAIT * 2, "the redelivered input seen as a duplicate", || async {
            let (_, m) = support::http_get(p2.http, "/metrics").await.ok()?;
            let dup = "omniroute_inbound_events_total{channel=\"email\",outcome=\"duplicate\"} ";
            let n: u64 = m.lines().find_map(|l| l.strip_prefix(dup))?.trim().parse().ok()?;
            (n >= 1).then_some(())
        })
        .await;
        // The journaled messages are published by a task of their own: wait
        // until they are stored, then count.
        let after = support::eventually(WAIT, "the offer's messages stored", || async {
            let after = outbound(&c.js).await;
            (count(&after, "omni.event.contact.offered", "one") >= 1).then_some(after)
        })
        .await;
        let offers: Vec<&(String, Value)> = after
            .iter()
            .filter(|(s, v)| s.starts_with("omni.offer.") && v["kind"] == "offer")
            .collect();
        assert_eq!(offers.len(), 1, "{point}: one offer in all: {offers:?}");
        for what in ["queued", "offered"] {
            let subject = format!("omni.event.contact.{what}");
            assert_eq!(count(&after, &subject, "one"), 1, "{point}: {what}: {after:?}");
        }
        let (subject, offer) = offers[0];
        let agent = &subject["omni.offer.".len()..];
        let cid = offer["contact_id"].as_str().expect("contact id").to_string();
        c.agent(agent, "accept", json!({"contact_id": cid})).await;
        c.expect("omni.event.contact.accepted", WAIT, |v| v["contact_id"] == cid.as_str())
            .await;
        let mut p2 = p2;
        p2.terminate();
    }
}
