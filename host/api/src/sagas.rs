//! `/v1/sagas`: the operator's view of fulfilment sagas (admin only):
//! list them by status, show one with its step history, retry one that
//! needs attention, or abort one.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, ApiPath, ApiQuery};
use commerce_app::AppError;
use commerce_app::saga::admin::{SagaCounts, SagaPage, SagaView};
use commerce_domain::order::MAX_REASON_LEN;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sagas", get(list_sagas))
        .route("/v1/sagas/counts", get(count_sagas))
        .route("/v1/sagas/{id}", get(get_saga))
        .route("/v1/sagas/{id}/retry", post(retry_saga))
        .route("/v1/sagas/{id}/abort", post(abort_saga))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SagaListParams {
    /// running, compensating, completed, compensated or needs_attention.
    pub status: Option<String>,
    /// Page size, 1 to 500 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AbortParams {
    /// Why the operator gives up (kept in the saga and the order).
    pub reason: Option<String>,
}

/// Sagas, oldest first (admin).
#[utoipa::path(get, path = "/v1/sagas", tag = "sagas",
    params(SagaListParams),
    responses((status = 200, body = SagaPage), (status = 400, description = "Unknown status")),
    security(("bearer" = [])))]
pub async fn list_sagas(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(params): ApiQuery<SagaListParams>,
) -> Result<axum::Json<SagaPage>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(|s| {
            commerce_app::saga::parse_status(s).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "unknown saga status {s:?}: use running, compensating, completed, compensated or needs_attention"
                ))
            })
        })
        .transpose()?;
    let page = state
        .app
        .sagas()
        .list_sagas(caller, status, params.cursor, params.limit)
        .await?;
    Ok(axum::Json(page))
}

/// How many sagas are in each status (admin): what the operations
/// console's overview shows beside the metrics.
#[utoipa::path(get, path = "/v1/sagas/counts", tag = "sagas",
    responses((status = 200, body = SagaCounts)),
    security(("bearer" = [])))]
pub async fn count_sagas(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> Result<axum::Json<SagaCounts>, ApiError> {
    Ok(axum::Json(state.app.sagas().count_sagas(caller).await?))
}

/// One saga with its step history (admin).
#[utoipa::path(get, path = "/v1/sagas/{id}", tag = "sagas",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SagaView), (status = 404, description = "No such saga")),
    security(("bearer" = [])))]
pub async fn get_saga(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<SagaView>, ApiError> {
    Ok(axum::Json(state.app.sagas().get_saga(caller, id).await?))
}

/// Retry a saga that needs attention, with fresh rounds (admin).
#[utoipa::path(post, path = "/v1/sagas/{id}/retry", tag = "sagas",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SagaView), (status = 404), (status = 409, description = "Does not need attention")),
    security(("bearer" = [])))]
pub async fn retry_saga(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<SagaView>, ApiError> {
    Ok(axum::Json(state.app.sagas().retry_saga(caller, id).await?))
}

/// Give up on an unfinished saga: it ends compensated, the order fails and
/// its stock is released if it still can (admin).
#[utoipa::path(post, path = "/v1/sagas/{id}/abort", tag = "sagas",
    params(("id" = Uuid, Path), AbortParams),
    responses((status = 200, body = SagaView), (status = 404), (status = 409, description = "Already finished")),
    security(("bearer" = [])))]
pub async fn abort_saga(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<AbortParams>,
) -> Result<axum::Json<SagaView>, ApiError> {
    if params
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_LEN)
    {
        return Err(AppError::Invalid(format!(
            "reason must be at most {MAX_REASON_LEN} characters"
        ))
        .into());
    }
    Ok(axum::Json(
        state
            .app
            .sagas()
            .abort_saga(caller, id, params.reason)
            .await?,
    ))
}
