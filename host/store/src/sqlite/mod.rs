//! Embedded SQLite adapter, the default store: one file in the data
//! directory, WAL journal, `synchronous=FULL` (a committed order survives
//! a power cut). SQLite has one writer at a time, so writes go through a
//! pool of exactly one connection (no `SQLITE_BUSY` races between our own
//! writers) while reads use a separate pool and never wait for writes.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

use super::classify;
use crate::shared::events::{self, EventSql};
use crate::shared::rows::ProductRow;
use crate::shared::{fetch_all, fetch_optional};
use commerce_app::Store;
use commerce_app::ports::{
    Append, Catalog, EventStore, FeedCursor, FeedEvent, IdempotencyRecord, OrderViews, Product,
    ProductUpsert, StoreError, StoredEvent, UnpaidHolds,
};
use commerce_app::views::{OrderQuery, OrderView};
use commerce_domain::Sku;

/// Migrations for SQLite, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

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
        MIGRATOR.run(&writer).await?;
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
    const FIND_IDEMPOTENCY: &'static str = "SELECT request_hash, order_id FROM idempotency_keys \
         WHERE customer_id = ?1 AND idem_key = ?2";
    const UPSERT_PRODUCT: &'static str = "INSERT INTO products \
         (sku, name, unit_price, currency, on_hand, reserved, version, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, 1, ?6) \
         ON CONFLICT (sku) DO UPDATE SET name = excluded.name, unit_price = excluded.unit_price, \
         currency = excluded.currency, on_hand = excluded.on_hand, \
         version = products.version + 1, updated_at = excluded.updated_at \
         WHERE products.reserved <= excluded.on_hand \
         RETURNING *";
    const ALWAYS: &'static str = "1";

    fn param(n: usize) -> String {
        format!("?{n}")
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, append: Append) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        for key in &append.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (customer_id, idem_key, request_hash, order_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )
            .bind(key.customer_id)
            .bind(&key.key)
            .bind(&key.request_hash)
            .bind(key.order_id)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::IdempotencyKeyTaken);
            }
        }
        events::insert_events::<Sqlite>(&mut tx, &append).await?;
        events::upsert_view::<Sqlite>(&mut tx, &append.view).await?;
        if let Some(saga) = &append.saga {
            crate::shared::saga::apply::<Sqlite>(&mut tx, saga).await?;
        }
        // Stock last: a hot product's row is then locked for the shortest time.
        if let Some(change) = &append.inventory {
            inventory::apply(&mut tx, change, append.view.updated_at).await?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn load_stream(&self, aggregate_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        events::load_stream(&self.reader, aggregate_id).await
    }

    async fn read_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        events::read_after(&self.reader, after, limit).await
    }

    async fn read_feed(&self, after: FeedCursor, limit: u32) -> Result<Vec<FeedEvent>, StoreError> {
        events::read_feed(&self.reader, after, limit).await
    }

    async fn find_idempotency(
        &self,
        customer_id: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        events::find_idempotency(&self.reader, customer_id, key).await
    }
}

#[async_trait]
impl OrderViews for SqliteStore {
    async fn get_view(&self, order_id: Uuid) -> Result<Option<OrderView>, StoreError> {
        events::get_view(&self.reader, order_id).await
    }

    async fn list_views(&self, query: &OrderQuery) -> Result<Vec<OrderView>, StoreError> {
        events::list_views(&self.reader, query).await
    }

    async fn unpaid_holds(&self, customer_id: Uuid) -> Result<UnpaidHolds, StoreError> {
        events::unpaid_holds(&self.reader, customer_id).await
    }

    async fn replace_views(&self, views: Vec<OrderView>) -> Result<(), StoreError> {
        events::replace_views(&self.writer, views).await
    }
}

#[async_trait]
impl Catalog for SqliteStore {
    async fn upsert_product(&self, p: ProductUpsert) -> Result<Option<Product>, StoreError> {
        events::upsert_product(&self.writer, p).await
    }

    async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError> {
        let statement = sqlx::query("SELECT * FROM products WHERE sku = ?1").bind(sku.as_str());
        fetch_optional::<Sqlite, ProductRow, _>(statement, &self.reader).await
    }

    async fn get_products(&self, skus: &[Sku]) -> Result<Vec<Product>, StoreError> {
        if skus.is_empty() {
            return Ok(vec![]);
        }
        let mut q = QueryBuilder::new("SELECT * FROM products WHERE sku IN (");
        let mut list = q.separated(", ");
        for sku in skus {
            list.push_bind(sku.as_str().to_owned());
        }
        q.push(")");
        fetch_all::<Sqlite, ProductRow, _>(q.build(), &self.reader).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

mod cart;
mod inventory;
mod outbox;
mod plugins;
mod saga;
