//! The `webhook` sink: POSTs the contract's alert JSON (or, with
//! `format = "slack"`, `{"text": "…"}`) with reqwest over rustls.
//!
//! Every request is signed so a receiver can check origin and reject
//! replays:
//! - `X-Omniroute-Timestamp`: Unix seconds when it was sent;
//! - `X-Omniroute-Signature`: `sha256=<hex>` of HMAC-SHA256 under the
//!   sink's secret over `<timestamp>.<body>`;
//! - `X-Omniroute-Alert-Id`: the alert id (`digest-<first alert id>` for a
//!   digest), to deduplicate the at-least-once deliveries.
//!
//! 2xx is delivered; 4xx is permanent (no retry); 5xx, timeouts and
//! connection errors are retried by the caller.

use super::{DeliveryError, WebhookFormat};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

pub struct WebhookSender {
    client: reqwest::Client,
    url: String,
    secret: String,
    format: WebhookFormat,
}

/// `sha256=<hex>` over `<timestamp>.<body>`: what a receiver recomputes.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", crate::adapters::hex(&mac.finalize().into_bytes()))
}

impl WebhookSender {
    pub fn new(url: &str, secret: &str, format: WebhookFormat, timeout: Duration) -> Result<WebhookSender, String> {
        // reqwest is built without a TLS provider of its own: the process's
        // (ring, installed by main) is used; tests install it here too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("omniroute/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookSender {
            client,
            url: url.to_string(),
            secret: secret.to_string(),
            format,
        })
    }

    /// One alert.
    pub async fn send(&self, alert: &Value, link_template: Option<&str>) -> Result<(), DeliveryError> {
        let id = alert["alert_id"].as_str().unwrap_or_default().to_string();
        let body = match self.format {
            WebhookFormat::Json => crate::domain::wire::to_json(alert),
            WebhookFormat::Slack => {
                let mut text = super::headline(alert);
                if let Some(l) = super::link(link_template, alert) {
                    text.push_str(&format!(" <{l}|open>"));
                }
                crate::domain::wire::to_json(&json!({ "text": text }))
            }
        };
        self.post(&id, body).await
    }

    /// Held alerts in one request.
    pub async fn send_digest(&self, alerts: &[Value], link_template: Option<&str>) -> Result<(), DeliveryError> {
        let (subject, text) = super::digest_text(alerts, link_template);
        let ids: Vec<&str> = alerts.iter().filter_map(|a| a["alert_id"].as_str()).collect();
        let id = format!("digest-{}", ids.first().copied().unwrap_or_default());
        let body = match self.format {
            WebhookFormat::Json => crate::domain::wire::to_json(&json!({
                "v": 1, "kind": "digest", "count": alerts.len(), "summary": subject, "alerts": alerts,
            })),
            WebhookFormat::Slack => crate::domain::wire::to_json(&json!({ "text": text })),
        };
        self.post(&id, body).await
    }

    async fn post(&self, id: &str, body: Vec<u8>) -> Result<(), DeliveryError> {
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = signature(self.secret.as_bytes(), &ts, &body);
        let r = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-omniroute-timestamp", &ts)
            .header("x-omniroute-signature", sig)
            .header("x-omniroute-alert-id", id)
            .body(body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => Ok(()),
            // "Too many requests" (a chat service's rate limit) and "request
            // timeout" are the receiver asking for later, not refusing.
            Ok(resp) if matches!(resp.status().as_u16(), 408 | 429) => {
                Err(DeliveryError::Retry(format!("the receiver answered {}", resp.status())))
            }
            Ok(resp) if resp.status().is_client_error() => Err(DeliveryError::Permanent(format!(
                "the receiver answered {}",
                resp.status()
            ))),
            Ok(resp) => Err(DeliveryError::Retry(format!("the receiver answered {}", resp.status()))),
            Err(e) if e.is_timeout() => Err(DeliveryError::Retry("timed out".into())),
            // Without the URL: it is often the credential itself (a chat
            // service's incoming-webhook URL), and these texts reach the
            // logs and the dead-letter stream.
            Err(e) if e.is_builder() => Err(DeliveryError::Permanent(format!("bad request: {}", e.without_url()))),
            Err(e) => Err(DeliveryError::Retry(e.without_url().to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn sender(url: &str) -> WebhookSender {
        WebhookSender::new(url, "k", WebhookFormat::Json, Duration::from_secs(5)).expect("client")
    }

    fn alert() -> Value {
        serde_json::json!({"alert_id": "a-1", "kind": "warning"})
    }

    #[tokio::test]
    async fn a_delivery_error_never_carries_the_url() {
        // A port nothing listens on: the connection is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/secret-token-xyz");
        match sender(&url).send(&alert(), None).await {
            Err(DeliveryError::Retry(m)) => {
                assert!(!m.contains("secret-token-xyz") && !m.contains("/services/"), "{m}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    /// A receiver answering every request with `status`.
    async fn answering(status: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", l.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let r = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = s.write_all(r.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn rate_limits_are_retried_and_other_client_errors_are_not() {
        for (status, retried) in [
            ("429 Too Many Requests", true),
            ("408 Request Timeout", true),
            ("404 Not Found", false),
        ] {
            let r = sender(&answering(status).await).send(&alert(), None).await;
            match r {
                Err(DeliveryError::Retry(_)) if retried => {}
                Err(DeliveryError::Permanent(_)) if !retried => {}
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature(b"k", "1790000000", b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 71);
        assert_ne!(a, signature(b"k", "1790000001", b"{}"));
        assert_ne!(a, signature(b"k", "1790000000", b"{ }"));
        assert_ne!(a, signature(b"j", "1790000000", b"{}"));
        assert_eq!(a, crate::adapters::sign::sha256_header(b"k", b"1790000000.{}"));
    }
}
