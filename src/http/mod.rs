//! The operator listener: `/live`, `/ready`, `/metrics`, and (in
//! [`webhooks`]) the public listener of the webhook adapters. Every error is
//! a JSON body with a 4xx status. The only module importing the web
//! framework.

pub mod webhooks;

use crate::health::Readiness;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct AppState {
    ready: Arc<Readiness>,
    metrics: Option<PrometheusHandle>,
}

pub fn router(ready: Arc<Readiness>, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/live", get(|| async { Json(json!({"status": "live"})) }))
        .route("/ready", get(ready_handler))
        .route("/metrics", get(metrics_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"error": "method not allowed; these endpoints take GET"})),
            )
        })
        .with_state(AppState { ready, metrics })
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
        Json(json!({"error": "no such endpoint", "path": uri.path(), "endpoints": ["/live", "/ready", "/metrics"]})),
    )
        .into_response()
}

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<Readiness>,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(ready, metrics))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
