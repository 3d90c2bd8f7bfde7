//! [`HttpPaymentGateway`]: the [`PaymentGateway`] port over HTTP, speaking
//! the API documented in `docs/payment-api.md` (the simulator's API).
//!
//! Two promises hold for every call:
//! - it is bounded in time: connecting, and the whole exchange, each time
//!   out after the configured timeout (2 s by default), and a timeout is
//!   [`PaymentError::Transient`], never a hung saga step;
//! - its failure says what to do next: a decline (402) is
//!   [`PaymentError::Declined`], other 4xx are [`PaymentError::Rejected`]
//!   (but 408 and 429, which ask to come back later, are transient), 5xx
//!   and transport errors are [`PaymentError::Transient`].
//!
//! It retries nothing itself: the saga owns retries, their backoff and
//! their deadline, and reuses the idempotency key. Failed calls are logged
//! at `warn` (a decline is an outcome, not a fault of the service); the
//! payment token is never logged.

use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use commerce_app::ports::{Authorization, AuthorizeRequest, PaymentError, PaymentGateway};

/// How long a payment call may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A payment gateway reached over HTTP. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct HttpPaymentGateway {
    client: reqwest::Client,
    /// `http(s)://host[:port][/prefix]`; routes are appended to it.
    base: Url,
}

impl HttpPaymentGateway {
    /// A client of the gateway at `base_url`, each call bounded by
    /// `timeout`. Fails only on a malformed URL, never because the gateway
    /// is down (nothing is contacted here).
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base = Url::parse(base_url)
            .with_context(|| format!("parsing the payment gateway URL {base_url:?}"))?;
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https") && base.host().is_some(),
            "the payment gateway URL must be http(s)://host[:port]: {base_url:?}"
        );
        let timeout = timeout.max(Duration::from_millis(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .context("building the payment HTTP client")?;
        Ok(HttpPaymentGateway { client, base })
    }

    /// `base` + `segments`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, PaymentError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| PaymentError::Rejected("the gateway URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// An operation on an authorization (`capture`, `void`, `refund`).
    async fn operate(
        &self,
        authorization_id: &str,
        operation: &str,
        body: Value,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError> {
        let segments = ["v1", "authorizations", authorization_id, operation];
        self.post(&segments, &body, idempotency_key).await
    }

    /// POSTs `body` with the idempotency key and classifies the answer.
    async fn post(
        &self,
        segments: &[&str],
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError> {
        let url = self.url(segments)?;
        let response = self
            .client
            .post(url.clone())
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .map_err(|e| transport(e, &url))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport(e, &url))?;
        if status.is_success() {
            // An answer we cannot read leaves us not knowing what happened:
            // transient, so that the saga retries with the same key and
            // gets the stored answer again.
            return serde_json::from_slice(&bytes).map_err(|e| {
                PaymentError::Transient(
                    anyhow::Error::new(e).context(format!("unreadable {status} answer from {url}")),
                )
            });
        }
        Err(classify(status, &bytes, &url))
    }
}

/// Timeouts, refused connections, resets: the gateway may come back.
fn transport(e: reqwest::Error, url: &Url) -> PaymentError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    PaymentError::Transient(anyhow::Error::new(e).context(format!("POST {url} {what}")))
}

/// An error answer, by status; the problem's `type` and `detail` (RFC 9457)
/// are kept for the logs.
fn classify(status: StatusCode, body: &[u8], url: &Url) -> PaymentError {
    let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |key: &str| problem.get(key).and_then(Value::as_str).map(str::to_owned);
    let summary = format!(
        "{status} from POST {url}: {} {}",
        text("type").unwrap_or_default(),
        text("detail").unwrap_or_default()
    );
    match status {
        StatusCode::PAYMENT_REQUIRED => PaymentError::Declined {
            reason: text("reason")
                .or_else(|| text("detail"))
                .unwrap_or_else(|| "declined".into()),
        },
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            PaymentError::Transient(anyhow!(summary))
        }
        s if s.is_client_error() => PaymentError::Rejected(summary),
        _ => PaymentError::Transient(anyhow!(summary)),
    }
}

#[async_trait]
impl PaymentGateway for HttpPaymentGateway {
    #[tracing::instrument(
        name = "commerce.payment.authorize",
        skip_all,
        fields(order_id = %request.order_id, amount = %request.amount),
        err(level = "warn")
    )]
    async fn authorize(
        &self,
        request: AuthorizeRequest,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError> {
        let body = serde_json::to_value(&request)
            .map_err(|e| PaymentError::Rejected(format!("unserializable request: {e}")))?;
        self.post(&["v1", "authorizations"], &body, idempotency_key)
            .await
    }

    #[tracing::instrument(
        name = "commerce.payment.capture",
        skip(self, idempotency_key),
        err(level = "warn")
    )]
    async fn capture(
        &self,
        authorization_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError> {
        self.operate(
            authorization_id,
            "capture",
            json!({ "amount": amount }),
            idempotency_key,
        )
        .await
    }

    #[tracing::instrument(
        name = "commerce.payment.void",
        skip(self, idempotency_key),
        err(level = "warn")
    )]
    async fn void(
        &self,
        authorization_id: &str,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError> {
        self.operate(authorization_id, "void", json!({}), idempotency_key)
            .await
    }

    #[tracing::instrument(
        name = "commerce.payment.refund",
        skip(self, idempotency_key),
        err(level = "warn")
    )]
    async fn refund(
        &self,
        authorization_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError> {
        self.operate(
            authorization_id,
            "refund",
            json!({ "amount": amount }),
            idempotency_key,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_for_the_saga() {
        let url = Url::parse("http://gateway/v1/authorizations").unwrap();
        let declined = br#"{"type":"/problems/declined","reason":"card_declined"}"#;
        assert!(matches!(
            classify(StatusCode::PAYMENT_REQUIRED, declined, &url),
            PaymentError::Declined { reason } if reason == "card_declined"
        ));
        for status in [400, 404, 409, 422] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(classify(status, b"", &url), PaymentError::Rejected(_)),
                "{status}"
            );
        }
        for status in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                classify(status, b"not json", &url).is_transient(),
                "{status}"
            );
        }
    }

    #[test]
    fn ids_are_encoded_into_the_path() {
        let gateway = HttpPaymentGateway::new("http://127.0.0.1:1/pay/", DEFAULT_TIMEOUT).unwrap();
        let url = gateway
            .url(&["v1", "authorizations", "a/b?c", "capture"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/pay/v1/authorizations/a%2Fb%3Fc/capture"
        );
        assert!(HttpPaymentGateway::new("not a url", DEFAULT_TIMEOUT).is_err());
        assert!(HttpPaymentGateway::new("ftp://host", DEFAULT_TIMEOUT).is_err());
    }
}
