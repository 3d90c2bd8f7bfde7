//! The commerce service: event-sourced orders, carts, inventory and
//! order-fulfilment sagas, extended by WebAssembly plugins.
//!
//! # Layout
//!
//! Dependency arrows point inwards: `api` -> `app` -> `domain`.
//!
//! - [`domain`]: pure types and rules (money, SKUs, the `Order` aggregate);
//!   no I/O, no async.
//! - [`app`]: use cases (place, read, list, change, cancel orders; the
//!   product catalog; read-model replay) and the ports (traits) that storage
//!   adapters implement.
//! - [`store`]: adapters for the ports: embedded SQLite and PostgreSQL.
//! - [`api`]: the HTTP interface (axum): routes, auth, problem+json errors,
//!   OpenAPI document.
//! - [`payment`]: the payment gateway adapter (HTTP client) and the
//!   payment simulator (`commerce payment-sim`, or embedded).
//! - [`auth`]: JWT claims, minting and verification, shared by `api` and
//!   the `commerce token` command.
//! - [`config`], [`startup`], [`telemetry`], [`cli`]: process wiring.
//! - [`bench`]: the load generator and consistency check (`commerce
//!   bench`), a client of the HTTP API.

pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod domain;
pub mod payment;
pub mod plugins;
pub mod startup;
pub mod store;
pub mod telemetry;
