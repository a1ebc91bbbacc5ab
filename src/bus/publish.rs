//! The adapters' way into NATS: publish inbound events to
//! `<prefix>.inbound.<channel>` with `Nats-Msg-Id` = the event id, and wait
//! for JetStream's acknowledgement of every one.
//!
//! Invariant: [`InboundPublisher::publish`] returns `Ok` only when JetStream
//! has stored every event of the call, so a webhook may answer 2xx (and an
//! IMAP session may mark a message seen) only then. On `Err` some events
//! may have been stored; the sender's retry publishes them again under the
//! same ids, which the stream's duplicate window (then the router's id
//! memory) drops. Nothing is lost and nothing is routed twice.

use super::{transient, BusError};
use crate::adapters::Event;
use async_nats::jetstream;
use std::time::Duration;

#[derive(Clone)]
pub struct InboundPublisher {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    timeout: Duration,
}

impl InboundPublisher {
    /// `timeout` bounds the wait for all acknowledgements of one call.
    pub fn new(client: async_nats::Client, prefix: &str, timeout: Duration) -> InboundPublisher {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        InboundPublisher {
            client,
            js,
            prefix: prefix.to_string(),
            timeout,
        }
    }

    /// Makes sure the inbound stream exists (an adapter may start before
    /// any router did), retrying with backoff until it does or `stop`.
    /// Until then publishes fail and webhooks answer 503.
    pub async fn ensure_inbound_stream(
        &self,
        cfg: &crate::config::NatsConfig,
        stop: &tokio_util::sync::CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(250);
        loop {
            if self.is_connected() {
                // OUTBOUND too: an adapter's dead letters go to `dlq.inbound`.
                match super::ensure_streams(&self.js, cfg, &["INBOUND", "OUTBOUND"]).await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(error = %e, "Inbound stream not ready for the adapters; retrying."),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Copies a message the adapter cannot turn into an event to
    /// `<prefix>.dlq.inbound` (the router's dead-letter format, with
    /// `subject` naming where it came from) under `id`, and waits for the
    /// stream's acknowledgement.
    pub async fn dead_letter(&self, id: &str, subject: &str, raw: &[u8], error: &str) -> Result<(), BusError> {
        if !self.is_connected() {
            return Err(BusError::Transient {
                what: "dead letter",
                message: "not connected to NATS".into(),
            });
        }
        let msg = crate::domain::wire::DeadLetterMsg::new(subject, raw, error, chrono::Utc::now());
        let payload = crate::domain::wire::to_json(&msg);
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(id);
        let send = async {
            self.js
                .send_publish(format!("{}.dlq.inbound", self.prefix), publish)
                .await
                .map_err(transient("dead letter"))?
                .await
                .map_err(transient("dead letter ack"))
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r.map(|_| {
                // The same label as the router's own dead letters.
                let subject = format!("{}.dlq.inbound", self.prefix);
                metrics::counter!(crate::telemetry::DEAD_LETTERS, "subject" => subject).increment(1);
            }),
            Err(_) => Err(BusError::Transient {
                what: "dead letter",
                message: format!("no acknowledgement within {:?}", self.timeout),
            }),
        }
    }

    /// The server's max payload, if `e` (with its headers) is over it: it
    /// can never be published. `None` while not connected (the limit is
    /// the server's, learnt on connecting).
    pub fn over_max_payload(&self, e: &Event) -> Option<usize> {
        let max = self.client.max_payload();
        (max > 0 && e.to_json().len() + e.id.len() + 64 > max).then_some(max)
    }

    /// Publishes `events` in order, pipelined, and waits for every ack.
    /// An event over the server's max payload fails the call before any
    /// is sent (a permanent error: retrying cannot help).
    pub async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
        if !self.is_connected() {
            // Do not queue into the client's buffer while the server is
            // away: the sender is told to retry instead.
            return Err(BusError::Transient {
                what: "publish",
                message: "not connected to NATS".into(),
            });
        }
        let max = self.client.max_payload();
        let payloads: Vec<Vec<u8>> = events.iter().map(Event::to_json).collect();
        // All or nothing: a batch is not half published when one is too big.
        if let Some((p, _)) = payloads
            .iter()
            .zip(events)
            .find(|(p, e)| p.len() + e.id.len() + 64 > max)
        {
            return Err(BusError::Permanent {
                what: "publish".into(),
                message: format!("an event of {} bytes is over the server's max payload", p.len()),
                fix: "lower the adapter's max_body_bytes or raise the server's max_payload".into(),
            });
        }
        let send = async {
            let mut acks = Vec::with_capacity(events.len());
            for (e, payload) in events.iter().zip(payloads) {
                let msg = jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(&e.id);
                let subject = format!("{}.inbound.{}", self.prefix, e.channel.as_str());
                let ack = self.js.send_publish(subject, msg).await.map_err(transient("publish"))?;
                acks.push(std::future::IntoFuture::into_future(ack));
            }
            futures::future::try_join_all(acks)
                .await
                .map_err(transient("publish ack"))?;
            Ok(())
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(BusError::Transient {
                what: "publish",
                message: format!("no acknowledgement within {:?}", self.timeout),
            }),
        }
    }
}
