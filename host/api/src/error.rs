//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every 4xx and 5xx the service sends has this shape: handlers return
//! [`ApiError`], extractor rejections are converted into it, and
//! [`problem_for_bare_errors`] rewrites the few error responses produced
//! outside our code (unmatched methods, layers). Internal errors are logged
//! with their cause chain and answered with an opaque 500/503: their text
//! never reaches a client.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use commerce_app::AppError;
use commerce_domain::OrderError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem to report to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Short, stable slug naming the kind of problem (`unknown-sku`); the
    /// `type` member is `/problems/<slug>`.
    pub kind: &'static str,
    pub detail: String,
    /// Extension members, e.g. `skus` or `current_version`.
    pub extensions: Map<String, Value>,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            detail: detail.into(),
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        e.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"commerce\""),
        ));
        e
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
}

/// The body of a problem for `status`.
pub fn problem_body(
    status: StatusCode,
    kind: &str,
    detail: &str,
    extensions: Map<String, Value>,
) -> Value {
    let mut body = json!({
        "type": format!("/problems/{kind}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Value::Object(obj) = &mut body {
        obj.extend(extensions);
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = problem_body(self.status, self.kind, &self.detail, self.extensions);
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        use StatusCode as S;
        match e {
            AppError::NotFound(_) => ApiError::new(S::NOT_FOUND, "not-found", e.to_string()),
            AppError::Forbidden => ApiError::new(S::FORBIDDEN, "forbidden", e.to_string()),
            AppError::Order(ref order) => order_problem(order, e.to_string()),
            AppError::Money(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid-amount", e.to_string())
            }
            AppError::UnknownSkus(ref skus) => {
                let skus = skus.clone();
                ApiError::new(S::UNPROCESSABLE_ENTITY, "unknown-sku", e.to_string())
                    .with("skus", skus)
            }
            AppError::CurrencyMismatch { .. } => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "currency-mismatch", e.to_string())
            }
            AppError::UnpaidLimit {
                max_orders,
                max_units,
                ..
            } => ApiError::new(S::CONFLICT, "unpaid-limit", e.to_string())
                .with("max_unpaid_orders", max_orders)
                .with("max_unpaid_units", max_units),
            AppError::IdempotencyKeyReused => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                e.to_string(),
            ),
            AppError::PreconditionFailed { current, .. } => {
                ApiError::new(S::PRECONDITION_FAILED, "stale-version", e.to_string())
                    .with("current_version", current)
            }
            AppError::OutOfStock(ref short) => {
                let short = serde_json::to_value(short).unwrap_or(Value::Null);
                ApiError::new(S::CONFLICT, "out-of-stock", e.to_string()).with("short", short)
            }
            AppError::Conflict(_) => ApiError::new(S::CONFLICT, "conflict", e.to_string()),
            AppError::Invalid(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid-request", e.to_string())
            }
            AppError::BadRequest(_) => ApiError::bad_request(e.to_string()),
            AppError::Rejected(ref violations) => {
                let violations = serde_json::to_value(violations).unwrap_or(Value::Null);
                ApiError::new(S::UNPROCESSABLE_ENTITY, "order-rejected", e.to_string())
                    .with("violations", violations)
            }
            AppError::ExtensionFailed(ref failed) => plugin_failed(failed),
            AppError::PluginRejected(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "plugin-rejected", e.to_string())
            }
            AppError::Unavailable(ref source) => {
                tracing::error!(error = ?source, "dependency unavailable");
                ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service cannot reach a dependency; retry later",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            AppError::Unexpected(ref source) => {
                tracing::error!(error = ?source, "unexpected error");
                ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an unexpected error occurred",
                )
            }
        }
    }
}

/// The problem for an order the domain refused: not found (not placed),
/// a conflict (an illegal transition names the status and the action), or
/// an invalid order.
fn order_problem(order: &OrderError, message: String) -> ApiError {
    use StatusCode as S;
    match order {
        OrderError::NotPlaced => ApiError::new(S::NOT_FOUND, "not-found", "order not found"),
        OrderError::AlreadyPlaced => ApiError::new(S::CONFLICT, "conflict", message),
        OrderError::RefundInProgress | OrderError::PaymentStarted => {
            ApiError::new(S::CONFLICT, "conflict", message)
        }
        OrderError::RefundTooLarge { refundable } => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "refund-too-large", message)
                .with("refundable", refundable.to_string())
        }
        OrderError::IllegalTransition { action, from } => {
            ApiError::new(S::CONFLICT, "illegal-transition", message)
                .with("order_status", from.as_str())
                .with(
                    "action",
                    serde_json::to_value(action).unwrap_or(Value::Null),
                )
        }
        _ => ApiError::new(S::UNPROCESSABLE_ENTITY, "invalid-order", message),
    }
}

/// A plugin failed and its failure policy refuses the request: a 503 that
/// names the plugin (its reason is logged, not shown).
fn plugin_failed(failed: &commerce_app::extensions::ExtensionFailed) -> ApiError {
    if let Some(too_large) = failed.too_large {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin-input-too-large",
            format!(
                "the order is too large for the {} plugin {}: {} bytes of input, it accepts {}; nothing was carried out",
                failed.kind, failed.plugin, too_large.size, too_large.limit
            ),
        )
        .with("plugin", failed.plugin.clone())
        .with("size", too_large.size)
        .with("limit", too_large.limit);
    }
    tracing::error!(plugin = %failed.plugin, kind = %failed.kind, reason = %failed.reason, "refusing a request: a plugin failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "plugin-failed",
        format!(
            "the {} plugin {} failed; the request was not carried out",
            failed.kind, failed.plugin
        ),
    )
    .with("plugin", failed.plugin.clone())
}

impl ApiError {
    fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Middleware: gives a problem+json body to error responses that were
/// produced without one (405 from the router, 408 from the timeout layer,
/// 413 from the body limit).
pub async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|s| !s.trim().is_empty() && status.is_client_error())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::NOT_FOUND => "not-found",
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    };
    let body = problem_body(status, kind, &text, Map::new());
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}
