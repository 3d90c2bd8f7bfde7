//! Bodies over the size limit answered 413, in a way the client receives.
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

/// The body limits of the routes: one for everything, a larger one for
/// plugin uploads (`PUT /v1/plugins/{name}`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub default: usize,
    pub upload: usize,
}

impl BodyLimits {
    fn of(&self, method: &Method, path: &str) -> usize {
        if method == Method::PUT && path.starts_with("/v1/plugins/") {
            self.upload
        } else {
            self.default
        }
    }
}

/// Middleware: refuses a request whose declared body is over its route's
/// limit with a 413 the client receives.
pub async fn refuse_oversized(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let limit = limits.of(request.method(), request.uri().path());
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
