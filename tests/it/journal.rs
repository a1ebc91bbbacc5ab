//! The journal on a real nats-server: appends are fenced on the journal's
//! tip, a retried append is recognised as the same entry, and a snapshot
//! round-trips through the state stream.

use crate::support;

use bytes::Bytes;
use omniroute::bus::{Bus, BusError};
use omniroute::config::NatsConfig;
use omniroute::store::{self, Batch, Durable, IdSet};
use support::NatsServer;

async fn bus(server: &NatsServer) -> (Bus, async_nats::Client) {
    let client = async_nats::connect(&server.url).await.expect("connect");
    let cfg = NatsConfig {
        url: server.url.clone(),
        ..NatsConfig::default()
    };
    (Bus::setup(client.clone(), &cfg).await.expect("setup"), client)
}

#[tokio::test]
async fn a_writer_behind_the_tip_is_refused() {
    let server = NatsServer::start();
    let (bus, _c) = bus(&server).await;
    let mut a = bus.journal().await.expect("journal");
    let mut b = bus.journal().await.expect("journal");
    a.append(&[b"one".to_vec()]).await.expect("first writer appends");
    let e = b.append(&[b"two".to_vec()]).await.expect_err("second writer refused");
    assert!(matches!(e, BusError::Fenced(_)), "{e}");
    // The refused entry is not there; the first writer goes on.
    let tip = a.append(&[b"three".to_vec()]).await.expect("first writer goes on");
    let entries = a.stream().read_from(1).await.expect("read");
    let bodies: Vec<&[u8]> = entries.iter().map(|(_, b)| b.as_ref()).collect();
    assert_eq!(bodies, vec![b"one".as_ref(), b"three".as_ref()]);
    assert_eq!(entries.last().map(|e| e.0), Some(tip));
    // A writer that has read up to the tip may append.
    b.set_tip(tip);
    b.append(&[b"four".to_vec()]).await.expect("caught-up writer appends");
}

#[tokio::test]
async fn a_retried_append_is_the_same_entry_not_a_fence() {
    // The acknowledgement of an append can be lost after the server stored
    // it; the retry is refused (the tip moved). The writer must recognise
    // its own entry at the tip instead of taking it for another router's,
    // and must not store it twice.
    let server = NatsServer::start();
    let (bus, _c) = bus(&server).await;
    let mut a = bus.journal().await.expect("journal");
    let before = a.append(&[b"one".to_vec()]).await.expect("appends");
    let tip = a.append(&[b"two".to_vec()]).await.expect("appends");
    a.forget_last_ack(before);
    let again = a
        .append(&[b"two".to_vec()])
        .await
        .expect("the retry is taken as written");
    assert_eq!(again, tip);
    let entries = a.stream().read_from(1).await.expect("read");
    assert_eq!(entries.len(), 2, "stored once");
    // And another writer's entry at the tip is still a fence.
    let mut b = bus.journal().await.expect("journal");
    b.append(&[b"three".to_vec()]).await.expect("b is at the tip");
    let e = a.append(&[b"four".to_vec()]).await.expect_err("a is behind");
    assert!(matches!(e, BusError::Fenced(_)), "{e}");
}

#[tokio::test]
async fn a_snapshot_written_to_the_stream_reads_back() {
    let server = NatsServer::start();
    let (bus, _c) = bus(&server).await;
    let journal = bus.journal().await.expect("journal");
    let mut d = Durable::new(IdSet::new((5, 6), 60_000, 1000));
    let mut ob = store::Outbox::default();
    let batch = Batch {
        at_ms: 1_000,
        changes: (0..500)
            .map(|i| (format!("contact.c-{i}"), Some(Bytes::from(vec![b'7'; 300]))))
            .collect(),
        outbox: vec![ob.number("omni.offer.a".into(), "off-1".into(), Bytes::from_static(b"{}"))],
        published_through: 0,
        ids: vec![1, 2, 3],
    };
    for (i, p) in store::encode_batch(&batch, 10_000).iter().enumerate() {
        d.apply_entry(i as u64 + 1, p).expect("applies");
    }
    let records: Vec<(String, Vec<u8>)> = d.records.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect();
    let chunks = d.snapshot_chunks(records.into_iter(), 9, 20_000);
    let n = chunks.len() as u32;
    assert!(n > 5, "{n} chunks");
    let first = journal.stream().write_chunks(chunks).await.expect("written");
    let back = journal.stream().read_chunks(first, n).await.expect("read");
    let restored = store::from_snapshot(back, 9, n, 60_000, 1000).expect("decodes");
    assert_eq!(restored.records, d.records);
    assert_eq!(restored.outbox.len(), 1);
    assert_eq!(restored.ids.len(), 3);
    assert_eq!(restored.tip, 9);
}

/// A publish whose acknowledgement cannot come (here a subscriber takes
/// the request and never answers, as a restarted server forgets it) is
/// abandoned when the connection changes, not waited out to its timeout
/// (which would end in "timed out", not in this error).
#[tokio::test]
async fn a_request_under_way_is_abandoned_when_the_connection_changes() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let (bus, client) = bus(&server).await;
    let (connection, follows) = tokio::sync::watch::channel(true);
    let bus = bus.following(follows);
    let mut silent = client.subscribe("silent.ack").await.expect("subscribe");
    client.flush().await.expect("flush");
    let msgs = [omniroute::bus::Publish {
        subject: "silent.ack".into(),
        msg_id: "m-1".into(),
        payload: Bytes::from_static(b"{}"),
    }];
    let publish = bus.publish_all(&msgs);
    let drop_connection = async {
        // Once the request is under way: the silent subscriber has it.
        silent.next().await.expect("the request");
        connection.send_replace(false);
        std::future::pending::<()>().await
    };
    let r = tokio::select! {
        r = publish => r,
        () = drop_connection => unreachable!(),
    };
    match r {
        Err(e @ BusError::Transient { .. }) => assert!(e.to_string().contains("connection dropped"), "{e}"),
        other => panic!("abandoned as transient: {other:?}"),
    }
}
