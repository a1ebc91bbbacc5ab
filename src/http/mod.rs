//! The operator listener: `/live`, `/ready`, `/metrics`, the operator API
//! (`/api/...`, behind a bearer token; off without one), and (in
//! [`webhooks`]) the public listener of the webhook adapters. Every error is
//! a JSON body with a 4xx (or 503) status. The only module importing the
//! web framework.

pub mod webhooks;

use crate::config::Secret;
use crate::health::Readiness;
use crate::query::Explain;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The operator API: its token and the way to the routing loop.
pub type Api = (Secret, tokio::sync::mpsc::Sender<Explain>);

#[derive(Clone)]
struct AppState {
    ready: Arc<Readiness>,
    metrics: Option<PrometheusHandle>,
    api: Option<Api>,
}

pub fn router(ready: Arc<Readiness>, metrics: Option<PrometheusHandle>, api: Option<Api>) -> Router {
    Router::new()
        .route("/live", get(|| async { Json(json!({"status": "live"})) }))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .route("/api/contacts/{id}/explain", get(explain_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"error": "method not allowed; these endpoints take GET"})),
            )
        })
        .with_state(AppState { ready, metrics, api })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Equal in time whatever the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(serde::Deserialize)]
struct ExplainParams {
    agent: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/contacts/{id}/explain[?agent=ID][&limit=N]`: why an open
/// contact waits, and why agents can or cannot take it (bounded: at most
/// `limit` agents listed, default 50, at most 500).
async fn explain_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<ExplainParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Some((token, tx)) = &s.api else {
        return error(StatusCode::NOT_FOUND, "the operator API is off: set http.api_token");
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| same(g.as_bytes(), token.0.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "missing or wrong bearer token"})),
        )
            .into_response();
    }
    let Ok(Query(p)) = params else {
        return error(
            StatusCode::BAD_REQUEST,
            "query: agent=ID and limit=N (a number) are the parameters",
        );
    };
    if id.is_empty() || id.len() > 256 {
        return error(StatusCode::BAD_REQUEST, "contact id must be 1..256 bytes");
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let q = Explain {
        contact_id: id.clone(),
        agent: p.agent,
        limit: p.limit.unwrap_or(50),
        reply,
    };
    if tx.try_send(q).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many questions in flight; try again",
        );
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), answer).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no open contact with this id", "contact_id": id})),
        )
            .into_response(),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this instance is not routing (a standby, or starting): ask the active one",
        ),
    }
}

async fn ready_handler(State(s): State<AppState>) -> Response {
    match s.ready.check() {
        Ok(()) => Json(json!({"status": "ready", "role": s.ready.role()})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    match &s.metrics {
        Some(h) => {
            h.run_upkeep();
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                h.render(),
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "metrics recorder not installed"})),
        )
            .into_response(),
    }
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such endpoint", "path": uri.path(), "endpoints": ["/live", "/ready", "/metrics", "/api/contacts/{id}/explain"]})),
    )
        .into_response()
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<Readiness>,
    metrics: Option<PrometheusHandle>,
    api: Option<Api>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(ready, metrics, api))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
