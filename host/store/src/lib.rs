//! Storage adapters: the ports of `commerce_app::ports` for the embedded
//! SQLite database (the default) and PostgreSQL (production), and Redis
//! for carts when it is configured.
//!
//! What the two share is written once in `shared`, generic over a
//! `Backend`: row types, events and views, inventory, sagas, plugins,
//! carts, and the port impls themselves (`shared::ports`). Each backend
//! keeps its SQL text and what truly differs (PostgreSQL's group commit and
//! read coalescing, SQLite's reader and writer pools).
//! `tests/store_contract.rs` runs one suite against both. Nothing here
//! decides business rules: it stores, loads and reports conflicts.

mod migrations;
mod shared;

pub mod postgres;
pub mod redis;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use commerce_app::Store;
use commerce_app::ports::StoreError;
use commerce_domain::{Currency, OrderStatus, Sku};

/// Where the data lives: a PostgreSQL URL, or else the embedded SQLite
/// database in a data directory.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Postgres { url: String, max_connections: u32 },
    Sqlite { data_dir: std::path::PathBuf },
}

/// Connects to the configured backend and brings its schema up to date.
pub async fn open(config: &StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config {
        StoreConfig::Postgres {
            url,
            max_connections,
        } => Arc::new(
            postgres::PgStore::connect(url, *max_connections)
                .await
                .context("connecting to PostgreSQL")?,
        ),
        StoreConfig::Sqlite { data_dir } => {
            Arc::new(sqlite::SqliteStore::open(data_dir).await.with_context(|| {
                format!("opening the embedded database in {}", data_dir.display())
            })?)
        }
    })
}

/// The embedded database file inside a data directory.
pub fn sqlite_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("commerce.db")
}

/// Sorts a database error into what the application distinguishes.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.into()),
        e => StoreError::Unexpected(e.into()),
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// A stored value that does not parse back is corruption, not user error.
pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Unexpected(anyhow::anyhow!("stored {what} {value:?} does not parse"))
}

pub(crate) fn parse_status(s: &str) -> Result<OrderStatus, StoreError> {
    OrderStatus::parse(s).ok_or_else(|| corrupt("order status", s))
}

pub(crate) fn parse_currency(s: &str) -> Result<Currency, StoreError> {
    Currency::parse(s).map_err(|_| corrupt("currency", s))
}

pub(crate) fn parse_sku(s: &str) -> Result<Sku, StoreError> {
    Sku::parse(s).map_err(|_| corrupt("sku", s))
}
