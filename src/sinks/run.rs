//! One sink's delivery loop (its own task): read alerts from its durable
//! consumer, filter, send one by one within the per-window limit, hold
//! the rest for a digest, retry with backoff, dead-letter what still
//! fails, and acknowledge each alert only when that is done.

use super::email::EmailSender;
use super::webhook::WebhookSender;
use super::{backoff, jitter, DeliveryError, SinkKind, SinkSpec, MAX_HELD};
use crate::bus::alerts::{publish_dead_letter, AlertFeed, AlertMsg};
use crate::telemetry;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Held or retrying alerts are kept with the sink by a progress ack this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(20);

enum Sender {
    Webhook(WebhookSender),
    Email(EmailSender),
}

impl Sender {
    async fn one(&self, a: &Value, link: Option<&str>) -> Result<(), DeliveryError> {
        match self {
            Sender::Webhook(w) => w.send(a, link).await,
            Sender::Email(e) => {
                let (subject, body) = super::email_text(a, link);
                e.send(&subject, body).await
            }
        }
    }

    async fn digest(&self, alerts: &[Value], link: Option<&str>) -> Result<(), DeliveryError> {
        match self {
            Sender::Webhook(w) => w.send_digest(alerts, link).await,
            Sender::Email(e) => {
                let (subject, body) = super::digest_text(alerts, link);
                e.send(&subject, body).await
            }
        }
    }
}

fn count(sink: &str, outcome: &'static str, n: u64) {
    metrics::counter!(telemetry::ALERT_DELIVERIES, "sink" => sink.to_string(), "outcome" => outcome).increment(n);
}

struct Loop {
    spec: SinkSpec,
    sender: Sender,
    client: async_nats::Client,
    prefix: String,
    stop: CancellationToken,
}

/// Runs the sink until `stop`. Alerts not yet acknowledged at `stop` are
/// offered again by JetStream to the next run.
pub async fn run(spec: SinkSpec, client: async_nats::Client, prefix: String, stop: CancellationToken) {
    let sender = match &spec.kind {
        SinkKind::Webhook { url, secret, format } => {
            WebhookSender::new(url, secret, format.clone(), spec.timeout).map(Sender::Webhook)
        }
        SinkKind::Email(e) => EmailSender::new(e, spec.timeout).map(Sender::Email),
    };
    let sender = match sender {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(sink = %spec.name, error = %e, "Alert sink cannot start; its alerts wait in its consumer.");
            return;
        }
    };
    let l = Loop {
        spec,
        sender,
        client,
        prefix,
        stop,
    };
    let mut reopen = Duration::from_millis(250);
    while !l.stop.is_cancelled() {
        match AlertFeed::open(&l.client, &l.prefix, &l.spec.name, MAX_HELD + 10).await {
            Ok(feed) => {
                tracing::info!(sink = %l.spec.name, r#type = l.spec.type_name(), "Alert sink delivering.");
                reopen = Duration::from_millis(250);
                l.consume(feed).await;
            }
            Err(e) => tracing::debug!(sink = %l.spec.name, error = %e, "Alert sink consumer not ready; retrying."),
        }
        tokio::select! {
            _ = tokio::time::sleep(reopen) => {}
            _ = l.stop.cancelled() => {}
        }
        reopen = (reopen * 2).min(Duration::from_secs(5));
    }
}

impl Loop {
    fn link(&self) -> Option<&str> {
        self.spec.link_template.as_deref()
    }

    async fn consume(&self, mut feed: AlertFeed) {
        let mut window_end = Instant::now() + self.spec.digest_window;
        let singles = self.spec.singles_per_window();
        let mut sent = 0u32;
        let mut held: Vec<(AlertMsg, Value)> = Vec::new();
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                m = feed.next() => {
                    let msg = match m {
                        Some(Ok(msg)) => msg,
                        Some(Err(e)) => {
                            tracing::warn!(sink = %self.spec.name, error = %e, "Alert sink consumer failed; reopening.");
                            return;
                        }
                        None => return,
                    };
                    let alert = match serde_json::from_slice::<Value>(&msg.payload) {
                        Ok(a) if a.is_object() => a,
                        // Not an alert this sink can read: kept on the
                        // dead-letter stream (a copy, bounded) with why.
                        other => {
                            let why = other.err().map_or("not a JSON object".to_string(), |e| e.to_string());
                            let copy = &msg.payload[..msg.payload.len().min(crate::domain::outbound::DEAD_LETTER_MAX_COPY)];
                            let copy = Value::String(String::from_utf8_lossy(copy).into_owned());
                            let e = DeliveryError::Permanent(format!("not an alert: {why}"));
                            self.dead_letter(&msg, &copy, &e, 0).await;
                            continue;
                        }
                    };
                    if !self.spec.filters.pass(&alert) {
                        count(&self.spec.name, "filtered", 1);
                        let _ = msg.ack().await;
                        continue;
                    }
                    if Instant::now() >= window_end {
                        self.flush(&mut held).await;
                        window_end = Instant::now() + self.spec.digest_window;
                        sent = 0;
                    }
                    if sent < singles {
                        sent += 1;
                        self.deliver(&msg, &alert).await;
                    } else {
                        held.push((msg, alert));
                        metrics::gauge!(telemetry::ALERT_SINK_HELD, "sink" => self.spec.name.clone()).set(held.len() as f64);
                        if held.len() >= MAX_HELD {
                            self.flush(&mut held).await;
                        }
                    }
                }
                _ = tokio::time::sleep_until(window_end) => {
                    self.flush(&mut held).await;
                    window_end = Instant::now() + self.spec.digest_window;
                    sent = 0;
                }
                _ = progress.tick() => {
                    for (m, _) in &held {
                        let _ = m.progress().await;
                    }
                }
                _ = self.stop.cancelled() => return,
            }
        }
    }

    /// Sends with retries; `Err` is the last error when it still failed.
    async fn attempt<F, Fut>(&self, what: &[&AlertMsg], mut send: F) -> Result<(), (DeliveryError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), DeliveryError>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            match send().await {
                Ok(()) => return Ok(()),
                Err(e @ DeliveryError::Permanent(_)) => return Err((e, n)),
                Err(e) if n >= self.spec.max_attempts => return Err((e, n)),
                Err(e) => {
                    count(&self.spec.name, "retried", 1);
                    tracing::info!(sink = %self.spec.name, attempt = n, error = %e, "Alert delivery failed; retrying.");
                    let until = Instant::now() + backoff(n, jitter());
                    while Instant::now() < until {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until.min(Instant::now() + PROGRESS_EVERY)) => {}
                            _ = self.stop.cancelled() => return Err((DeliveryError::Retry("stopping".into()), n)),
                        }
                        for m in what {
                            let _ = m.progress().await;
                        }
                    }
                }
            }
        }
    }

    async fn deliver(&self, msg: &AlertMsg, alert: &Value) {
        match self.attempt(&[msg], || self.sender.one(alert, self.link())).await {
            Ok(()) => {
                count(&self.spec.name, "delivered", 1);
                let _ = msg.ack().await;
            }
            Err(_) if self.stop.is_cancelled() => {}
            Err((e, n)) => self.dead_letter(msg, alert, &e, n).await,
        }
    }

    async fn flush(&self, held: &mut Vec<(AlertMsg, Value)>) {
        if held.is_empty() {
            return;
        }
        let alerts: Vec<Value> = held.iter().map(|(_, a)| a.clone()).collect();
        let msgs: Vec<&AlertMsg> = held.iter().map(|(m, _)| m).collect();
        let r = self.attempt(&msgs, || self.sender.digest(&alerts, self.link())).await;
        match r {
            Ok(()) => {
                tracing::info!(sink = %self.spec.name, alerts = held.len(), "Alert digest delivered.");
                count(&self.spec.name, "digested", held.len() as u64);
                for (m, _) in held.iter() {
                    let _ = m.ack().await;
                }
            }
            Err(_) if self.stop.is_cancelled() => {}
            Err((e, n)) => {
                for (m, a) in held.iter() {
                    self.dead_letter(m, a, &e, n).await;
                }
            }
        }
        held.clear();
        metrics::gauge!(telemetry::ALERT_SINK_HELD, "sink" => self.spec.name.clone()).set(0.0);
    }

    async fn dead_letter(&self, msg: &AlertMsg, alert: &Value, e: &DeliveryError, attempts: u32) {
        // Keyed by the alert's id, or by the bytes of what was not one: a
        // redelivery is the same dead letter.
        let key = match alert["alert_id"].as_str() {
            Some(id) => id.to_string(),
            None => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(crate::domain::wire::to_json(alert));
                format!("unreadable-{}", crate::adapters::hex(&digest[..16]))
            }
        };
        let id = format!("dlq-{}-{key}", self.spec.name);
        let payload = crate::domain::wire::to_json(&json!({
            "v": 1, "sink": self.spec.name, "type": self.spec.type_name(), "error": e.to_string(),
            "attempts": attempts, "alert": alert, "at": crate::domain::timefmt::rfc3339(chrono::Utc::now()),
        }));
        tracing::warn!(sink = %self.spec.name, attempts, error = %e, alert_id = %alert["alert_id"].as_str().unwrap_or_default(), "Alert not delivered; dead-lettered on dlq.alerts.");
        let mut wait = Duration::from_millis(250);
        loop {
            match publish_dead_letter(&self.client, &self.prefix, &id, payload.clone()).await {
                Ok(()) => break,
                // Not acked: the alert comes back to this sink later.
                Err(_) if self.stop.is_cancelled() => return,
                Err(err) => {
                    tracing::warn!(sink = %self.spec.name, error = %err, "Cannot publish the alert dead letter; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.cancelled() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        count(&self.spec.name, "dead_lettered", 1);
        metrics::counter!(telemetry::DEAD_LETTERS, "subject" => format!("{}.dlq.alerts", self.prefix)).increment(1);
        let _ = msg.ack().await;
    }
}
