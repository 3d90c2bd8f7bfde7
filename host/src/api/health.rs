//! Probes: `/healthz` (the process answers) and `/readyz` (it can serve:
//! the database answers). Unauthenticated by design: Kubernetes calls them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "probes", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses((status = 200, description = "Ready"), (status = 503, description = "A dependency is down")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.app.store.ping().await {
        Ok(()) => Ok(Json(json!({
            "status": "ready",
            "checks": { "database": "ok" },
            "backend": state.app.store.backend(),
        }))),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness check failed: database");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "the database does not answer",
            )
            .with("checks", json!({ "database": "unavailable" })))
        }
    }
}

/// Prometheus metrics, in the text exposition format. Unauthenticated
/// like the probes: the scraper runs inside the cluster, and nothing here
/// names a customer.
pub async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics().render(),
    )
}
