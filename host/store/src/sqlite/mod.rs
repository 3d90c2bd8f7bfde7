//! Embedded SQLite adapter, the default store: one file in the data
//! directory, WAL journal, `synchronous=FULL` (a committed order survives
//! a power cut). SQLite has one writer at a time, so writes go through a
//! pool of exactly one connection (no `SQLITE_BUSY` races between our own
//! writers) while reads use a separate pool and never wait for writes.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

use crate::shared::events::EventSql;
use crate::shared::ports::{SqlStore, append_one, sql_store_ports};
use crate::shared::rows::{ProductRow, SagaRow};
use crate::shared::{Arg, fetch_all, fetch_optional};
use commerce_app::ports::{Append, Product, StoreError};
use commerce_app::saga::SagaInstance;
use commerce_domain::Sku;

/// Connections that serve reads concurrently.
const READERS: u32 = 4;

#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and applies
    /// pending migrations.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let options = SqliteConnectOptions::new()
            .filename(super::sqlite_path(data_dir))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        crate::migrations::sqlite().run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }
}

impl EventSql for Sqlite {
    const INSERT_EVENT: &'static str = "INSERT INTO events (event_id, aggregate_id, aggregate_type, \
         event_type, schema_version, event_data, version, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    const UPSERT_VIEW: &'static str = "INSERT INTO order_views (order_id, customer_id, status, \
         currency, total_amount, items, status_reason, version, created_at, updated_at, \
         subtotal_amount, adjustments, refunded_amount) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, currency = excluded.currency, \
         total_amount = excluded.total_amount, items = excluded.items, \
         subtotal_amount = excluded.subtotal_amount, adjustments = excluded.adjustments, \
         status_reason = excluded.status_reason, version = excluded.version, \
         updated_at = excluded.updated_at, refunded_amount = excluded.refunded_amount";
    const LOAD_STREAM: &'static str =
        "SELECT * FROM events WHERE aggregate_id = ?1 ORDER BY version";
    const READ_AFTER: &'static str =
        "SELECT * FROM events WHERE position > ?1 ORDER BY position LIMIT ?2";
    // One writer, holding the lock until it commits: positions commit in
    // order, so whatever is visible now is final up to its last position.
    const READ_FEED: &'static str = "SELECT * FROM events WHERE (tx_id, position) > (?1, ?2) \
         ORDER BY tx_id, position LIMIT ?3";
    const VERSION_TAKEN: &'static str =
        "SELECT 1 FROM events WHERE aggregate_id = ?1 AND version = ?2";
    const FIND_IDEMPOTENCY: &'static str = "SELECT request_hash, order_id FROM idempotency_keys \
         WHERE customer_id = ?1 AND idem_key = ?2";
    const PURGE_KEYS: &'static str = "DELETE FROM idempotency_keys WHERE rowid IN \
         (SELECT rowid FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)";
    const UPSERT_PRODUCT: &'static str = "INSERT INTO products \
         (sku, name, unit_price, currency, on_hand, reserved, version, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, 1, ?6) \
         ON CONFLICT (sku) DO UPDATE SET name = excluded.name, unit_price = excluded.unit_price, \
         currency = excluded.currency, on_hand = excluded.on_hand, \
         version = products.version + 1, updated_at = excluded.updated_at \
         WHERE products.reserved <= excluded.on_hand \
         RETURNING *";
    const INSERT_KEY: &'static str = "INSERT INTO idempotency_keys \
         (customer_id, idem_key, request_hash, order_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
    const ALWAYS: &'static str = "1";

    fn param(n: usize) -> String {
        format!("?{n}")
    }
}

impl SqlStore for SqliteStore {
    type DB = Sqlite;
    const NAME: &'static str = "sqlite";

    fn reads(&self) -> &Pool<Sqlite> {
        &self.reader
    }

    fn writes(&self) -> &Pool<Sqlite> {
        &self.writer
    }

    async fn write_append(&self, append: Append) -> Result<(), StoreError> {
        append_one(&self.writer, &append).await
    }

    async fn products_by_sku(&self, skus: Vec<Sku>) -> Result<Vec<Product>, StoreError> {
        let mut q = QueryBuilder::new("SELECT * FROM products WHERE sku IN (");
        let mut list = q.separated(", ");
        for sku in skus {
            list.push_bind(sku.as_str().to_owned());
        }
        q.push(")");
        fetch_all::<Sqlite, ProductRow, _>(q.build(), &self.reader).await
    }

    async fn saga_by_id(&self, saga_id: Uuid) -> Result<Option<SagaInstance>, StoreError> {
        let statement = sqlx::query(saga::BY_ID).arg(saga_id);
        fetch_optional::<Sqlite, SagaRow, _>(statement, &self.reader).await
    }
}

sql_store_ports!(SqliteStore);

mod cart;
mod inventory;
mod outbox;
mod plugins;
mod saga;
