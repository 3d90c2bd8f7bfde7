//! The payment gateway adapter: [`client::HttpPaymentGateway`] implements
//! the [`PaymentGateway`](commerce_app::ports::PaymentGateway) port over HTTP,
//! the API documented in `docs/payment-api.md` (which `commerce-payment-sim`
//! simulates for development and tests).
//!
//! The application sees only the port; nothing here knows about orders or
//! sagas beyond the order id a payment carries.

pub mod client;

pub use client::{DEFAULT_TIMEOUT, HttpPaymentGateway};
