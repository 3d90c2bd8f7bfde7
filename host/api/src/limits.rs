//! The limits of a request, by route: its body's size and its deadline.
//! Plugin uploads (`PUT /v1/plugins/{name}`) get larger ones: a component
//! is megabytes, and compiling a large one (an 18 MB Python component on a
//! busy machine) takes longer than any other request may.
//!
//! Bodies over the size limit are answered 413, in a way the client
//! receives.
//!
//! The body-limit extractors stop reading at the limit; the server then
//! answers and closes the connection with the rest of the body unread, so
//! a client still writing (one that does not wait for `100 Continue`, as
//! most do not) sees its write fail with a broken pipe or a reset, never
//! the 413. A request that declares an oversized body (`Content-Length`)
//! is therefore refused here, before any handler: the body is read and
//! discarded, up to [`DRAIN_MAX`] bytes or twice the route's limit,
//! whichever is more, within [`DRAIN_TIME`], then the problem+json 413 is
//! sent. A body larger than that is not read (the
//! connection is closed after the 413: what it costs us stays bounded).
//! Bodies without a declared length (chunked) are cut by the extractors'
//! own limit.

use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Most bytes of an oversized body read (and thrown away) so that the
/// client gets its 413, for a route whose limit is under half of it.
pub const DRAIN_MAX: u64 = 8 * 1024 * 1024;
/// Longest time spent reading them.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The limits of the routes: one set for everything, another for plugin
/// uploads (`PUT /v1/plugins/{name}`).
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits {
    pub body: usize,
    pub upload_body: usize,
    pub timeout: Duration,
    pub upload_timeout: Duration,
}

impl RouteLimits {
    fn is_upload(method: &Method, path: &str) -> bool {
        method == Method::PUT && path.starts_with("/v1/plugins/")
    }

    fn body_of(&self, method: &Method, path: &str) -> usize {
        if Self::is_upload(method, path) {
            self.upload_body
        } else {
            self.body
        }
    }

    fn timeout_of(&self, method: &Method, path: &str) -> Duration {
        if Self::is_upload(method, path) {
            self.upload_timeout
        } else {
            self.timeout
        }
    }
}

/// Middleware: answers 408 when the request is not done within its
/// route's deadline (what was started on its behalf, such as a compile on
/// the blocking pool, finishes on its own; its result is dropped).
pub async fn deadline(State(limits): State<RouteLimits>, request: Request, next: Next) -> Response {
    let timeout = limits.timeout_of(request.method(), request.uri().path());
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request was not done within {} s",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Middleware: refuses a request whose declared body is over its route's
/// limit with a 413 the client receives.
pub async fn refuse_oversized(
    State(limits): State<RouteLimits>,
    request: Request,
    next: Next,
) -> Response {
    let limit = limits.body_of(request.method(), request.uri().path());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|n| *n > limit as u64) else {
        return next.run(request).await;
    };
    let drained = declared <= DRAIN_MAX.max(2 * limit as u64)
        && tokio::time::timeout(DRAIN_TIME, drain(request.into_body()))
            .await
            .is_ok_and(|read| read);
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("the body is {declared} bytes; this route takes at most {limit}"),
    )
    .into_response();
    if !drained {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end, keeping nothing; false if it failed.
async fn drain(mut body: Body) -> bool {
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return true,
            Some(Ok(_)) => {}
            Some(Err(_)) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::middleware::from_fn_with_state;
    use axum::routing::{post, put};
    use tower::ServiceExt;

    use super::*;

    /// Takes 200 ms, like a compile or a slow saga.
    async fn slow() -> StatusCode {
        tokio::time::sleep(Duration::from_millis(200)).await;
        StatusCode::CREATED
    }

    async fn status(limits: RouteLimits, method: &str, uri: &str) -> StatusCode {
        let app = Router::new()
            .route("/v1/orders", post(slow))
            .route("/v1/plugins/{name}", put(slow))
            .layer(from_fn_with_state(limits, deadline));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn an_upload_has_a_deadline_of_its_own() {
        let limits = RouteLimits {
            body: 10,
            upload_body: 100,
            timeout: Duration::from_millis(50),
            upload_timeout: Duration::from_secs(5),
        };
        assert_eq!(
            status(limits, "PUT", "/v1/plugins/p").await,
            StatusCode::CREATED
        );
        assert_eq!(
            status(limits, "POST", "/v1/orders").await,
            StatusCode::REQUEST_TIMEOUT
        );
    }
}
