//! The service, assembled: its configuration (flags and environment), the
//! one wiring of store, plugin runtime, payments, Redis and HTTP that
//! `commerce serve` and the load generator share, and logging.
//!
//! # Layout
//!
//! - [`config`]: clap argument groups, each with its environment variable.
//! - [`startup`]: building the use cases over the configured adapters, and
//!   the HTTP [`startup::Application`] with its graceful shutdown.
//! - [`telemetry`]: the log subscriber (text on a terminal, JSON otherwise).

pub mod config;
pub mod startup;
pub mod telemetry;
