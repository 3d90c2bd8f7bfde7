//! The payment gateway adapter: [`client::HttpPaymentGateway`] implements
//! the [`PaymentGateway`](crate::app::ports::PaymentGateway) port over HTTP,
//! and [`simulator`] is a gateway speaking the same API (the documented one,
//! `docs/payment-api.md`), shipped for development and tests.
//!
//! The application sees only the port; nothing here knows about orders or
//! sagas beyond the order id a payment carries.

pub mod client;
pub mod simulator;

pub use client::{DEFAULT_TIMEOUT, HttpPaymentGateway};
