//! The payment gateway: authorize, capture, void, refund.

use async_trait::async_trait;
use rust_decimal::Decimal;
use uuid::Uuid;

use commerce_domain::Currency;

/// A payment to authorize: hold `amount` on the card behind `token` for
/// `order_id`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizeRequest {
    pub order_id: Uuid,
    pub amount: Decimal,
    pub currency: Currency,
    /// The customer's payment token (from the payment form, never a card number).
    pub token: String,
}

/// Where an authorization stands at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationStatus {
    /// Money held, not taken yet: capture it or void it.
    Authorized,
    /// Money taken (once); it can only be refunded now.
    Captured,
    /// The hold was released; nothing was or will be taken.
    Voided,
    /// The captured money went back to the customer.
    Refunded,
    /// The issuer refused it (only in ledgers; `authorize` answers
    /// [`PaymentError::Declined`]).
    Declined,
}

/// An authorization as the gateway reports it after an operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Authorization {
    /// The gateway's id, to capture, void or refund with.
    pub id: String,
    pub order_id: Uuid,
    /// The amount authorized.
    pub amount: Decimal,
    pub currency: Currency,
    pub status: AuthorizationStatus,
    /// The amount taken, once captured.
    pub captured_amount: Option<Decimal>,
    /// The amount given back, once refunded.
    pub refunded_amount: Option<Decimal>,
}

/// Why a payment operation failed, shaped for the saga's one question:
/// retry, or compensate?
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The issuer said no (HTTP 402). Permanent: do not retry; compensate.
    #[error("payment declined: {reason}")]
    Declined { reason: String },
    /// The gateway did not answer in time, could not be reached or failed
    /// (5xx, 408, 429). Retry with backoff and the same idempotency key:
    /// the operation may or may not have happened, and only the key makes
    /// a retry safe.
    #[error("payment gateway unavailable")]
    Transient(#[source] anyhow::Error),
    /// The gateway refused the request as wrong (4xx other than a decline:
    /// unknown authorization, illegal transition such as capturing a
    /// voided authorization, amount above the authorization, a key reused
    /// for another request). Permanent: retrying cannot help; it is a bug
    /// or a state the saga must resolve.
    #[error("payment request rejected: {0}")]
    Rejected(String),
}

impl PaymentError {
    /// True if retrying (with the same idempotency key) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, PaymentError::Transient(_))
    }
}

/// The payment gateway: authorize a payment, then capture it or void it;
/// refund a capture. Every call carries an idempotency key: the same key
/// with the same request yields the first answer and never acts twice, so
/// a call that failed with [`PaymentError::Transient`] is retried with the
/// key it was first made with.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Holds the amount on the customer's payment method.
    async fn authorize(
        &self,
        request: AuthorizeRequest,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
    /// Takes `amount` (at most the authorized amount) of an authorization.
    async fn capture(
        &self,
        authorization_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
    /// Releases an authorization that was not captured.
    async fn void(
        &self,
        authorization_id: &str,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
    /// Gives back `amount` (at most the captured amount) of a capture.
    async fn refund(
        &self,
        authorization_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
}
