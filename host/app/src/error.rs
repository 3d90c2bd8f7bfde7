//! The one error type of the use cases. Each variant says how a caller
//! should handle it; `commerce_api::error` maps them to HTTP statuses.

use crate::ports::StoreError;
use commerce_domain::{MoneyError, OrderError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Missing, or not the caller's to see (the two are not told apart, so
    /// that a customer cannot probe for other customers' orders).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this operation needs the admin role")]
    Forbidden,
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("unknown SKUs: {}", .0.join(", "))]
    UnknownSkus(Vec<String>),
    #[error("SKU {sku} is sold in {product_currency}, not in {order_currency}")]
    CurrencyMismatch {
        sku: String,
        product_currency: String,
        order_currency: String,
    },
    /// Not enough free stock for every line: nothing was reserved.
    #[error("out of stock: {}", .0.iter().map(|s| format!("{} (requested {}, available {})", s.sku, s.requested, s.available)).collect::<Vec<_>>().join(", "))]
    OutOfStock(Vec<commerce_domain::Shortage>),
    /// The customer already holds as much unpaid as allowed.
    #[error(
        "you hold {held_orders} unpaid orders with {held_units} units; at most {max_orders} orders and {max_units} units may be held unpaid: pay or cancel one first"
    )]
    UnpaidLimit {
        held_orders: i64,
        held_units: i64,
        max_orders: i64,
        max_units: i64,
    },
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// `If-Match` names a version the order has moved past.
    #[error("the order is at version {current}, not {expected}")]
    PreconditionFailed { expected: u64, current: u64 },
    /// Concurrent writers kept winning; the caller may retry.
    #[error("{0}")]
    Conflict(String),
    /// Input that parsed but is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Input that could not be understood (bad cursor, bad header).
    #[error("{0}")]
    BadRequest(String),
    /// Validation plugins refused the order.
    #[error("the order was refused by validation: {}", .0.iter().map(|v| v.message.as_str()).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<crate::extensions::Violation>),
    /// A plugin failed and its extension point fails closed.
    #[error(transparent)]
    ExtensionFailed(#[from] crate::extensions::ExtensionFailed),
    /// An uploaded component is not acceptable.
    #[error("the plugin was refused: {0}")]
    PluginRejected(String),
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("unexpected error")]
    Unexpected(#[source] anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionConflict { .. } => {
                AppError::Conflict("the order was changed concurrently; retry".into())
            }
            StoreError::StockConflict { sku } => AppError::Conflict(format!(
                "the stock of {sku} is changing concurrently; retry"
            )),
            StoreError::SagaConflict { .. } => {
                AppError::Conflict("the order's saga was changed concurrently; retry".into())
            }
            StoreError::Unavailable(e) => AppError::Unavailable(e),
            e @ (StoreError::IdempotencyKeyTaken | StoreError::Unexpected(_)) => {
                AppError::Unexpected(e.into())
            }
        }
    }
}
