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
//!   retries, and retries carry the same event ids; also when the request
//!   bodies being read at once would pass [`BODY_BUDGET`] bytes (each
//!   counts for its `Content-Length`, or its adapter's `max_body_bytes`
//!   without one), so many large or slow requests cannot exhaust memory;
//! - 408 when a body takes longer than [`BODY_READ_TIMEOUT`] to arrive;
//! - 413 also when an event of the request is over the NATS server's max
//!   payload (nothing of it is published).
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
/// Request bodies held at once, over every webhook route (bytes): beyond
/// it a request is answered 503 at once rather than read.
pub const BODY_BUDGET: usize = 256 << 20;
/// How long a request's body may take to arrive.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The unit of [`BODY_BUDGET`]'s semaphore.
const BUDGET_UNIT: usize = 1024;
/// What Twilio gets when no `reply` is configured: an empty TwiML document.
const DEFAULT_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

#[derive(Clone)]
struct Hook {
    spec: Arc<AdapterSpec>,
    publisher: InboundPublisher,
    /// [`BODY_BUDGET`], shared by every route, in [`BUDGET_UNIT`]s.
    budget: Arc<tokio::sync::Semaphore>,
}

/// The router for `specs` (webhook adapters only).
pub fn router(specs: &[AdapterSpec], publisher: InboundPublisher) -> Router {
    let mut r = Router::new();
    let budget = Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET / BUDGET_UNIT));
    for s in specs.iter().filter(|s| s.kind.is_webhook()) {
        let hook = Hook {
            spec: Arc::new(s.clone()),
            publisher: publisher.clone(),
            budget: Arc::clone(&budget),
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

/// 503 with `Retry-After`: the sender is asked to come back.
fn retry_later(msg: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    r
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
    // What this request may hold (its declared length, checked again while
    // reading), taken from the shared budget until it is answered.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(spec.max_body_bytes)
        .min(spec.max_body_bytes);
    let units = u32::try_from(declared.div_ceil(BUDGET_UNIT).max(1)).unwrap_or(u32::MAX);
    let Ok(_held) = h.budget.try_acquire_many(units) else {
        count(spec, "busy");
        return retry_later("too many request bodies in flight; retry later");
    };
    let limit = if headers.contains_key(header::CONTENT_LENGTH) {
        declared
    } else {
        spec.max_body_bytes
    };
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await;
    let body = match read {
        Ok(Ok(b)) => b,
        Err(_) => {
            count(spec, "timed_out");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
            );
        }
        Ok(Err(_)) => {
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
        let published = h.publisher.publish(&decoded.events).await;
        if let Err(e @ crate::bus::BusError::Permanent { .. }) = &published {
            // Nothing of the request was published; retrying cannot help.
            count(spec, "too_large");
            tracing::warn!(adapter = %spec.name, error = %e, events = decoded.events.len(), "An event is over the NATS server's max payload; answered 413.");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "an event of this request is over the NATS server's max payload; nothing was published",
            );
        }
        if let Err(e) = published {
            count(spec, "unavailable");
            tracing::warn!(adapter = %spec.name, error = %e, events = decoded.events.len(), "Could not publish to JetStream; answered 503 so the sender retries.");
            return retry_later("NATS JetStream is unavailable; retry later");
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

#[cfg(test)]
mod tests {
    use axum::routing::post;

    /// Every path the configuration accepts is one the HTTP router takes
    /// (a refused route panics at start-up, after validation said yes).
    #[test]
    fn paths_the_configuration_accepts_make_routes() {
        let paths = [
            "/webhooks/chat",
            "/hooks/meta/v2",
            "/a.b-c_d~e!$&'()+,;=@",
            "/webhooks/%3Ameta",
            "/a//b",
            "/webhooks/chat/",
            "/",
        ];
        for p in paths {
            let toml = format!("[adapters.x]\ntype = \"chat-webhook\"\nsecret = \"s\"\npath = {p:?}\n");
            let cfg = crate::config::Config::from_toml_with_env(&toml, "t", Vec::new()).expect("well-typed");
            assert!(cfg.adapter_specs_with(&|_| None).is_ok(), "{p} is accepted");
            let _ = axum::Router::<()>::new().route(p, post(|| async {}));
        }
        for p in ["/webhooks/:meta", "/webhooks/*all", "/webhooks/{id}"] {
            let toml = format!("[adapters.x]\ntype = \"chat-webhook\"\nsecret = \"s\"\npath = {p:?}\n");
            let cfg = crate::config::Config::from_toml_with_env(&toml, "t", Vec::new()).expect("well-typed");
            assert!(cfg.adapter_specs_with(&|_| None).is_err(), "{p} is refused");
        }
    }
}
