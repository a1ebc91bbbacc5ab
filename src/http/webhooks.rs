//! The public webhook listener: one route per enabled webhook adapter
//! (`[adapters.<name>]`, at its `path`), each verifying the sender's
//! signature, decoding with the pure decoder of `adapters/`, publishing
//! through [`InboundPublisher`], and answering only then.
//!
//! Answers (every error a JSON body `{"error": "…"}`):
//! - 200 `{"published": n, "ignored": m}` once JetStream acknowledged all
//!   `n` events (Twilio gets the configured TwiML instead; Meta's
//!   handshake gets the challenge as text);
//! - 400 malformed, naming the field; 401 missing or wrong signature;
//!   413 body over `max_body_bytes`; 405 wrong method; 404 unknown path;
//! - 503 with `Retry-After` when NATS is unreachable or slow: the platform
//!   retries, and retries carry the same event ids.
//!
//! Nothing is published for a request answered 4xx. Logs name the adapter,
//! the outcome and counts, never content or addresses.

use crate::adapters::spec::{AdapterKind, AdapterSpec, SocialFormat};
use crate::adapters::{chat, email, ivr, sign, social, AdapterError, Decoded};
use crate::bus::publish::InboundPublisher;
use crate::telemetry;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Seconds a sender is asked to wait before retrying after a 503.
const RETRY_AFTER_SECS: u32 = 5;
/// What Twilio gets when no `reply` is configured: an empty TwiML document.
const DEFAULT_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

#[derive(Clone)]
struct Hook {
    spec: Arc<AdapterSpec>,
    publisher: InboundPublisher,
}

/// The router for `specs` (webhook adapters only).
pub fn router(specs: &[AdapterSpec], publisher: InboundPublisher) -> Router {
    let mut r = Router::new();
    for s in specs.iter().filter(|s| s.kind.is_webhook()) {
        let hook = Hook {
            spec: Arc::new(s.clone()),
            publisher: publisher.clone(),
        };
        let mut route = post(handle);
        if s.kind == AdapterKind::Social && s.format == SocialFormat::Meta {
            route = route.merge(get(handshake));
        }
        r = r.route(
            &s.path,
            route
                .with_state(hook)
                // The limit is applied while reading (see `handle`), so the
                // refusal is a JSON 413 rather than the framework's text.
                .layer(DefaultBodyLimit::disable()),
        );
    }
    r.fallback(not_found).method_not_allowed_fallback(|| async {
        error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed; webhooks take POST")
    })
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    specs: Vec<AdapterSpec>,
    publisher: InboundPublisher,
    stop: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        for s in &specs {
            tracing::info!(adapter = %s.name, kind = s.kind.as_str(), %addr, path = %s.path, "Webhook adapter listening.");
        }
    }
    axum::serve(listener, router(&specs, publisher))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no webhook at this path", "path": uri.path()})),
    )
        .into_response()
}

fn count(spec: &AdapterSpec, outcome: &'static str) {
    metrics::counter!(telemetry::ADAPTER_REQUESTS, "adapter" => spec.name.clone(), "kind" => spec.kind.as_str(), "outcome" => outcome)
        .increment(1);
}

fn refuse(spec: &AdapterSpec, e: AdapterError) -> Response {
    let (status, outcome) = match &e {
        AdapterError::Bad(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        AdapterError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
    };
    count(spec, outcome);
    tracing::info!(adapter = %spec.name, outcome, error = %e, "Webhook request refused.");
    error(status, e.to_string())
}

/// Meta's subscription handshake (`GET ?hub.mode=subscribe&…`).
async fn handshake(State(h): State<Hook>, Query(q): Query<HashMap<String, String>>) -> Response {
    let expected = h.spec.verify_token.as_deref().unwrap_or_default();
    match social::verify_handshake(
        q.get("hub.mode").map(String::as_str),
        q.get("hub.verify_token").map(String::as_str),
        q.get("hub.challenge").map(String::as_str),
        expected,
    ) {
        Ok(challenge) => {
            count(&h.spec, "handshake");
            ([(header::CONTENT_TYPE, "text/plain")], challenge.to_string()).into_response()
        }
        Err(AdapterError::Unauthorized(m)) => {
            count(&h.spec, "unauthorized");
            error(StatusCode::FORBIDDEN, m)
        }
        Err(e) => refuse(&h.spec, e),
    }
}

async fn handle(State(h): State<Hook>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let spec = &h.spec;
    let body = match axum::body::to_bytes(body, spec.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            count(spec, "too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over this webhook's limit of {} bytes", spec.max_body_bytes),
            );
        }
    };
    let now = chrono::Utc::now();
    let (decoded, twiml) = match decode(spec, &uri, &headers, &body, now) {
        Ok(d) => d,
        Err(e) => return refuse(spec, e),
    };
    for what in &decoded.ignored {
        metrics::counter!(telemetry::ADAPTER_IGNORED, "adapter" => spec.name.clone(), "what" => *what).increment(1);
    }
    if !decoded.ignored.is_empty() {
        tracing::info!(adapter = %spec.name, ignored = ?decoded.ignored, "Items not routed (echoes, receipts, auto-replies, bounces, calls still ringing or in the menu).");
    }
    if !decoded.events.is_empty() {
        let started = Instant::now();
        if let Err(e) = h.publisher.publish(&decoded.events).await {
            count(spec, "unavailable");
            tracing::warn!(adapter = %spec.name, error = %e, events = decoded.events.len(), "Could not publish to JetStream; answered 503 so the sender retries.");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "NATS JetStream is unavailable; retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return r;
        }
        metrics::histogram!(telemetry::ADAPTER_PUBLISH_SECONDS, "adapter" => spec.name.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(telemetry::ADAPTER_EVENTS, "adapter" => spec.name.clone(), "channel" => spec.kind.channel().as_str())
            .increment(decoded.events.len() as u64);
    }
    count(
        spec,
        if decoded.events.is_empty() {
            "ignored"
        } else {
            "published"
        },
    );
    tracing::debug!(adapter = %spec.name, published = decoded.events.len(), ignored = decoded.ignored.len(), "Webhook request handled.");
    if twiml {
        let reply = spec.reply.clone().unwrap_or_else(|| DEFAULT_TWIML.to_string());
        return ([(header::CONTENT_TYPE, "text/xml")], reply).into_response();
    }
    Json(json!({"published": decoded.events.len(), "ignored": decoded.ignored.len()})).into_response()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies and decodes; the flag says the answer is TwiML.
fn decode(
    spec: &AdapterSpec,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Decoded, bool), AdapterError> {
    let secret = spec.secret.as_bytes();
    let ours = || sign::verify_sha256(secret, body, header_str(headers, sign::SIGNATURE_HEADER));
    let name = spec.name.as_str();
    match spec.kind {
        AdapterKind::Chat => {
            ours()?;
            Ok((chat::decode(body, name, &spec.defaults, now)?, false))
        }
        AdapterKind::Social if spec.format == SocialFormat::Meta => {
            sign::verify_sha256(secret, body, header_str(headers, sign::META_SIGNATURE_HEADER))?;
            Ok((social::decode_meta(body, name, &spec.defaults, now)?, false))
        }
        AdapterKind::Social => {
            ours()?;
            Ok((social::decode_generic(body, name, &spec.defaults, now)?, false))
        }
        AdapterKind::Email => {
            ours()?;
            let settings = email::EmailSettings {
                adapter: spec.name.clone(),
                kind: "email-webhook",
                mailbox: None,
                defaults: spec.defaults.clone(),
            };
            Ok((email::decode(body, &settings, now)?, false))
        }
        AdapterKind::Ivr => {
            let settings = ivr::IvrSettings {
                adapter: spec.name.clone(),
                menu: spec.menu.clone(),
                defaults: spec.defaults.clone(),
            };
            let form =
                header_str(headers, "content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
            if !form {
                ours()?;
                return Ok((ivr::decode_json(body, &settings, now)?, false));
            }
            let params: Vec<(String, String)> =
                serde_urlencoded::from_bytes(body).map_err(|_| AdapterError::bad("body is not a valid form"))?;
            let url = twilio_url(spec, uri, headers);
            sign::verify_twilio(
                secret,
                &url,
                &params,
                header_str(headers, sign::TWILIO_SIGNATURE_HEADER),
            )?;
            Ok((ivr::decode_twilio(&params, &settings, now)?, true))
        }
        AdapterKind::Imap => Err(AdapterError::bad("email-imap is not a webhook")),
    }
}

/// The URL Twilio signed: `public_url` (plus the query) when configured,
/// else rebuilt from `Host` (and `X-Forwarded-Proto`).
fn twilio_url(spec: &AdapterSpec, uri: &Uri, headers: &HeaderMap) -> String {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Some(base) = &spec.public_url {
        return if base.contains('?') {
            base.clone()
        } else {
            format!("{base}{query}")
        };
    }
    let proto = header_str(headers, "x-forwarded-proto").unwrap_or("http");
    let host = header_str(headers, "host").unwrap_or("localhost");
    format!("{proto}://{host}{}{query}", uri.path())
}
