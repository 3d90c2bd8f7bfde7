//! Ports: what the application needs from storage and from the payment
//! gateway, one file per family. Adapters in `commerce_store` implement
//! the storage ports for SQLite and PostgreSQL, and one contract test suite
//! (`tests/store_contract.rs`) holds both to the same behaviour;
//! `commerce_payment` implements [`PaymentGateway`] over HTTP.
//!
//! - [`events`] holds the event store, its inline projection, the feed and the
//!   outbox relay's cursor, the order read model;
//! - [`inventory`] holds products, stock, reservations, the stock cache;
//! - [`sagas`] holds saga instances, their leases and history;
//! - [`plugins`] holds the plugin registry;
//! - [`carts`] holds carts;
//! - [`payment`] holds the payment gateway.

pub mod carts;
pub mod events;
pub mod inventory;
pub mod payment;
pub mod plugins;
pub mod sagas;

use async_trait::async_trait;
use uuid::Uuid;

use commerce_domain::Sku;

pub use carts::*;
pub use events::*;
pub use inventory::*;
pub use payment::*;
pub use plugins::*;
pub use sagas::*;

/// Storage failures the application distinguishes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the aggregate first: the expected version
    /// is stale. Reload and retry, or report a conflict.
    #[error("version conflict on aggregate {aggregate_id}: expected version {expected}")]
    VersionConflict { aggregate_id: Uuid, expected: u64 },
    /// The idempotency key was already used by this customer; the append
    /// was not made.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    /// A stock claim did not apply: the product moved past the version it
    /// was planned on, or no longer has the units. Nothing was written;
    /// re-read the stock and plan again.
    #[error("stock of {sku} changed concurrently")]
    StockConflict { sku: Sku },
    /// The saga moved past the revision the writer read (another process
    /// took it over, or an operator or a cancel changed it), or the order
    /// already has a saga. Nothing was written; reload the saga.
    #[error("saga {saga_id} changed concurrently")]
    SagaConflict { saga_id: Uuid },
    /// The database cannot be reached or timed out.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("unexpected storage error")]
    Unexpected(#[source] anyhow::Error),
}

/// Everything a backend provides.
#[async_trait]
pub trait Store:
    EventStore
    + OrderViews
    + Catalog
    + Inventory
    + PluginRegistry
    + CartStore
    + SagaStore
    + OutboxRelayStore
{
    /// Which backend this is, for logs (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;
    /// Checks that the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}
