//! Extractors whose rejections are problem+json: JSON bodies, paths,
//! queries, bearer tokens and the `If-Match` / `Idempotency-Key` headers.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use commerce_app::Caller;

/// A JSON body; malformed JSON is a 400, a body of the wrong shape 422,
/// a missing content type 415, an oversized body 413.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let kind = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid-body",
        JsonRejection::JsonSyntaxError(_) => "malformed-json",
        JsonRejection::MissingJsonContentType(_) => "unsupported-media-type",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        _ => "bad-request",
    };
    ApiError::new(status, kind, rejection.body_text())
}

/// Path parameters; a malformed one (e.g. not a UUID) is a 400.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r: PathRejection| ApiError::bad_request(r.body_text()))
    }
}

/// Query parameters; a malformed one is a 400.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| ApiError::bad_request(r.body_text()))
    }
}

/// The authenticated caller, from `Authorization: Bearer <jwt>`. Missing,
/// malformed, forged or expired tokens are a 401.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        state
            .keys
            .verify(token)
            .map(Auth)
            .map_err(|e| ApiError::unauthorized(e.to_string()))
    }
}

/// An authenticated caller with the admin role; other callers get 403.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Auth(caller) = Auth::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(Admin(caller))
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this operation needs the admin role",
            ))
        }
    }
}

/// `If-Match: "<version>"` (quotes and a weak `W/` prefix tolerated).
pub fn parse_if_match(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match must be an order version, e.g. \"3\""))
}

/// The `Idempotency-Key` header, if any.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))
        })
        .transpose()
}

/// The ETag of an order version.
pub fn etag(version: u64) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}
