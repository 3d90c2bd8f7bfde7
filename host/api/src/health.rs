//! Probes: `/healthz` (the process answers) and `/readyz` (it can serve:
//! the database answers, and it is not shutting down). Unauthenticated by
//! design: Kubernetes calls them.

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

/// Readiness: the process is not shutting down (from SIGTERM on it
/// answers 503 `shutting-down` while it still serves, so that load
/// balancers stop routing here before it stops accepting), and the
/// database answers. Redis, when carts live there, is
/// checked and reported too, but its absence only degrades the service
/// (cart routes answer 503, orders go on), so it does not fail the probe:
/// taking every replica out of the Service for it would stop orders too.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses((status = 200, description = "Ready (possibly degraded: see checks)"), (status = 503, description = "Shutting down, or the database is down")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "the process is shutting down; send requests to another replica",
        ));
    }
    let app = &state.app;
    let carts = app.carts.cart_backend();
    let separate_carts = carts != app.store.backend();
    let (database, cart_store) = tokio::join!(app.store.ping(), async {
        if separate_carts {
            Some(app.carts.ping_carts().await)
        } else {
            None
        }
    });
    let mut checks = serde_json::Map::new();
    checks.insert("database".into(), status_word(database.is_ok()).into());
    let mut degraded = false;
    if let Some(result) = cart_store {
        if let Err(e) = &result {
            tracing::warn!(error = ?e, dependency = carts, "readiness: cart storage unavailable");
            degraded = true;
        }
        checks.insert(carts.into(), status_word(result.is_ok()).into());
    }
    match database {
        Ok(()) => Ok(Json(json!({
            "status": if degraded { "degraded" } else { "ready" },
            "checks": checks,
            "backend": app.store.backend(),
        }))),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness check failed: database");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "the database does not answer",
            )
            .with("checks", Value::Object(checks)))
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
        crate::prometheus::handle().render(),
    )
}

fn status_word(ok: bool) -> &'static str {
    if ok { "ok" } else { "unavailable" }
}
