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

/// A JSON object body; malformed JSON is a 400, a body of the wrong shape
/// (an array where an object is due, a missing field) 422, a missing
/// content type 415, an oversized body 413.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        object_body(&body)?;
        axum::Json::<T>::from_bytes(&body)
            .map(|axum::Json(value)| ApiJson(value))
            .map_err(json_rejection)
    }
}

fn bytes_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    let kind = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "payload-too-large"
    } else {
        "bad-request"
    };
    ApiError::new(rejection.status(), kind, rejection.body_text())
}

/// `application/json`, or a `+json` media type, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Serde would also read a struct from an array of its fields: the API
/// takes objects only.
fn object_body(body: &[u8]) -> Result<(), ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "the body must be a JSON object",
        )),
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

/// `If-Match: "<version>"`: the ETag of an order version, weak (`W/"3"`)
/// or not, or the bare version; at most 18 digits
/// ([`crate::openapi::constraints::IF_MATCH_PATTERN`]).
pub fn parse_if_match(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(if_match_version)
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match must be an order version, e.g. \"3\""))
}

fn if_match_version(value: &str) -> Option<u64> {
    let tag = value.strip_prefix("W/").unwrap_or(value);
    let digits = match tag.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => tag,
    };
    let ok = (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| digits.parse().ok()).flatten()
}

/// A JSON body that may be left out: an empty body, or `null`, is the
/// default request. Anything else must be JSON of the request's shape
/// (422 otherwise), whatever its content type.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !body.trim_ascii().eq(b"null") {
            object_body(&body)?;
        }
        serde_json::from_slice::<Option<T>>(&body)
            .map(|value| OptionalJson(value.unwrap_or_default()))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-body",
                    e.to_string(),
                )
            })
    }
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

/// A decimal amount as a string: digits with an optional fraction
/// (`"12.50"`), nothing else (no sign, exponent or separators).
pub mod decimal_str {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn parse(s: &str) -> Option<Decimal> {
        let (whole, fraction) = s.split_once('.').unwrap_or((s, "1"));
        let digits = |part: &str, most: usize| {
            (1..=most).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
        };
        if digits(whole, 13) && digits(fraction, 4) {
            s.parse().ok()
        } else {
            None
        }
    }

    /// `parse`, or the error serde reports.
    fn checked<E: Error>(s: &str) -> Result<Decimal, E> {
        parse(s)
            .ok_or_else(|| E::custom(format!("{s:?} is not a decimal amount such as \"12.50\"")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        checked(&String::deserialize(d)?)
    }

    /// The same, for a field that may be absent or null.
    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| checked(&s))
                .transpose()
        }
    }
}

/// The ETag of an order version.
pub fn etag(version: u64) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_an_etag_or_a_bare_version_and_nothing_else() {
        for (value, version) in [("\"3\"", 3), ("W/\"3\"", 3), ("42", 42)] {
            assert_eq!(if_match_version(value), Some(version), "{value}");
        }
        for value in [
            "",
            "\"\"",
            "W/W/\"3\"",
            "\"3",
            "3\"",
            "+3",
            "-3",
            "3 ",
            "1e3",
        ] {
            assert_eq!(if_match_version(value), None, "{value:?}");
        }
        assert_eq!(if_match_version(&"9".repeat(19)), None, "19 digits");
    }

    #[test]
    fn decimals_are_digits_with_an_optional_fraction() {
        use rust_decimal::Decimal;
        assert_eq!(decimal_str::parse("12.50"), Some(Decimal::new(1250, 2)));
        assert_eq!(decimal_str::parse("7"), Some(Decimal::from(7)));
        for value in [
            "",
            "+1",
            "-1",
            ".5",
            "5.",
            "1_000",
            "1e3",
            " 1",
            "1.23456",
            &"9".repeat(14),
        ] {
            assert_eq!(decimal_str::parse(value), None, "{value:?}");
        }
    }
}
