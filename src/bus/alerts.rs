//! The alert sinks' view of NATS: one durable pull consumer per sink on the
//! outbound stream, filtered to `<prefix>.alert.sla.>`, acknowledged by the
//! sink only once an alert is delivered, filtered out, digested or
//! dead-lettered (`sinks/run.rs`); and the dead-letter publish on
//! `<prefix>.dlq.alerts`.
//!
//! A consumer created for a new sink starts with the alerts raised from
//! then on (not the stream's history); an existing one resumes where the
//! sink stopped, so an alert accepted by a sink survives a restart.

use super::{stream_name, transient, BusError};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// How long an unacknowledged alert stays with a sink before JetStream
/// offers it again; sinks send progress acks while retrying or holding.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

pub struct AlertFeed {
    messages: pull::Stream,
}

/// One alert as a sink receives it.
pub struct AlertMsg {
    pub payload: Bytes,
    msg: jetstream::Message,
}

impl AlertMsg {
    /// Done with it: delivered, filtered, digested or dead-lettered.
    pub async fn ack(&self) -> Result<(), BusError> {
        self.msg.ack().await.map_err(transient("alert ack"))
    }

    /// Still working on it (retrying, or held for a digest).
    pub async fn progress(&self) -> Result<(), BusError> {
        self.msg
            .ack_with(AckKind::Progress)
            .await
            .map_err(transient("alert progress"))
    }
}

impl AlertFeed {
    /// The durable consumer `omniroute_sink_<sink>` (created when missing).
    pub async fn open(
        client: &async_nats::Client,
        prefix: &str,
        sink: &str,
        max_pending: usize,
    ) -> Result<AlertFeed, BusError> {
        let js = jetstream::new(client.clone());
        let stream = js
            .get_stream(stream_name(prefix, "OUTBOUND"))
            .await
            .map_err(transient("outbound stream"))?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &format!("omniroute_sink_{sink}"),
                pull::Config {
                    durable_name: Some(format!("omniroute_sink_{sink}")),
                    filter_subject: format!("{prefix}.alert.sla.>"),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: i64::try_from(max_pending).unwrap_or(i64::MAX),
                    deliver_policy: jetstream::consumer::DeliverPolicy::New,
                    ..Default::default()
                },
            )
            .await
            .map_err(transient("sink consumer"))?;
        let messages = consumer.messages().await.map_err(transient("sink consumer messages"))?;
        Ok(AlertFeed { messages })
    }

    /// The next alert; `None` when the consumer ended (reopen it).
    pub async fn next(&mut self) -> Option<Result<AlertMsg, BusError>> {
        let m = self.messages.next().await?;
        Some(
            m.map(|msg| AlertMsg {
                payload: msg.payload.clone(),
                msg,
            })
            .map_err(transient("sink consumer")),
        )
    }
}

/// Publishes a dead letter on `<prefix>.dlq.alerts` under `id` and waits
/// for the stream's acknowledgement.
pub async fn publish_dead_letter(
    client: &async_nats::Client,
    prefix: &str,
    id: &str,
    payload: Vec<u8>,
) -> Result<(), BusError> {
    let js = jetstream::new(client.clone());
    let msg = jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .message_id(id);
    js.send_publish(format!("{prefix}.dlq.alerts"), msg)
        .await
        .map_err(transient("dead letter"))?
        .await
        .map_err(transient("dead letter ack"))?;
    Ok(())
}
