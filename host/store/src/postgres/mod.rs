//! PostgreSQL adapter. Writes that must be atomic run in one transaction;
//! the optimistic lock is the `events_aggregate_version` unique constraint.

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use super::classify;
use crate::shared::events::{self, EventSql};
use crate::shared::fetch_all;
use crate::shared::rows::ProductRow;
use coalesce::Coalescer;
use commerce_app::Store;
use commerce_app::ports::{
    Append, Catalog, EventStore, FeedCursor, FeedEvent, IdempotencyRecord, OrderViews, Product,
    ProductUpsert, StoreError, StoredEvent, UnpaidHolds,
};
use commerce_app::saga::SagaInstance;
use commerce_app::views::{OrderQuery, OrderView};
use commerce_domain::Sku;

/// Migrations for PostgreSQL, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Appends go through the group-commit writer.
    batcher: batch::Batcher,
    /// Products by SKU and sagas by id, read for many callers at once.
    products: Coalescer<Sku, Product>,
    sagas: Coalescer<Uuid, SagaInstance>,
}

impl PgStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let batcher = batch::Batcher::start(pool.clone());
        let products = {
            let pool = pool.clone();
            Coalescer::start(
                move |skus| fetch_products(pool.clone(), skus),
                |p: &Product| p.sku.clone(),
            )
        };
        let sagas = {
            let pool = pool.clone();
            Coalescer::start(
                move |ids| saga::fetch_sagas(pool.clone(), ids),
                |s: &SagaInstance| s.saga_id,
            )
        };
        Ok(PgStore {
            pool,
            batcher,
            products,
            sagas,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn fetch_products(pool: PgPool, skus: Vec<Sku>) -> Result<Vec<Product>, StoreError> {
    let skus: Vec<&str> = skus.iter().map(Sku::as_str).collect();
    let statement = sqlx::query("SELECT * FROM products WHERE sku = ANY($1)").bind(&skus);
    fetch_all::<Postgres, ProductRow, _>(statement, &pool).await
}

impl EventSql for Postgres {
    const INSERT_EVENT: &'static str = "INSERT INTO events (event_id, aggregate_id, aggregate_type, \
         event_type, schema_version, event_data, version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    const UPSERT_VIEW: &'static str = "INSERT INTO order_views (order_id, customer_id, status, \
         currency, total_amount, items, status_reason, version, created_at, updated_at, \
         subtotal_amount, adjustments, refunded_amount) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, currency = EXCLUDED.currency, \
         total_amount = EXCLUDED.total_amount, items = EXCLUDED.items, \
         subtotal_amount = EXCLUDED.subtotal_amount, adjustments = EXCLUDED.adjustments, \
         status_reason = EXCLUDED.status_reason, version = EXCLUDED.version, \
         updated_at = EXCLUDED.updated_at, refunded_amount = EXCLUDED.refunded_amount";
    const LOAD_STREAM: &'static str =
        "SELECT * FROM events WHERE aggregate_id = $1 ORDER BY version";
    const READ_AFTER: &'static str =
        "SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2";
    // Only events of transactions below the snapshot's xmin: all of those
    // have ended and no new transaction can get an id below it, so no
    // event can ever appear before the last one returned (see
    // migrations/postgres/0006_outbox.sql). A long write transaction holds
    // the feed back until it ends; it never makes it skip.
    const READ_FEED: &'static str = "SELECT * FROM events \
         WHERE (tx_id, position) > ($1, $2) \
         AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         ORDER BY tx_id, position LIMIT $3";
    const FIND_IDEMPOTENCY: &'static str = "SELECT request_hash, order_id FROM idempotency_keys \
         WHERE customer_id = $1 AND idem_key = $2";
    const UPSERT_PRODUCT: &'static str = "INSERT INTO products \
         (sku, name, unit_price, currency, on_hand, reserved, version, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 1, $6) \
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price, \
         currency = EXCLUDED.currency, on_hand = EXCLUDED.on_hand, \
         version = products.version + 1, updated_at = EXCLUDED.updated_at \
         WHERE products.reserved <= EXCLUDED.on_hand \
         RETURNING *";
    const ALWAYS: &'static str = "true";

    fn param(n: usize) -> String {
        format!("${n}")
    }
}

/// One append in its own transaction (see `batch` for many at once).
async fn append_one(pool: &PgPool, append: &Append) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(classify)?;
    for key in &append.idempotency {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (customer_id, idem_key, request_hash, order_id, created_at) \
             VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING",
        )
        .bind(key.customer_id)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(key.order_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::IdempotencyKeyTaken);
        }
    }
    events::insert_events::<Postgres>(&mut tx, append).await?;
    events::upsert_view::<Postgres>(&mut tx, &append.view).await?;
    if let Some(saga) = &append.saga {
        crate::shared::saga::apply::<Postgres>(&mut tx, saga).await?;
    }
    // Stock last: a hot product's row is then locked for the shortest time.
    if let Some(change) = &append.inventory {
        inventory::apply(&mut tx, change, append.view.updated_at).await?;
    }
    tx.commit().await.map_err(classify)
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(&self, append: Append) -> Result<(), StoreError> {
        self.batcher.append(append).await
    }

    async fn load_stream(&self, aggregate_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        events::load_stream(&self.pool, aggregate_id).await
    }

    async fn read_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        events::read_after(&self.pool, after, limit).await
    }

    async fn read_feed(&self, after: FeedCursor, limit: u32) -> Result<Vec<FeedEvent>, StoreError> {
        events::read_feed(&self.pool, after, limit).await
    }

    async fn find_idempotency(
        &self,
        customer_id: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        events::find_idempotency(&self.pool, customer_id, key).await
    }
}

#[async_trait]
impl OrderViews for PgStore {
    async fn get_view(&self, order_id: Uuid) -> Result<Option<OrderView>, StoreError> {
        events::get_view(&self.pool, order_id).await
    }

    async fn list_views(&self, query: &OrderQuery) -> Result<Vec<OrderView>, StoreError> {
        events::list_views(&self.pool, query).await
    }

    async fn unpaid_holds(&self, customer_id: Uuid) -> Result<UnpaidHolds, StoreError> {
        events::unpaid_holds(&self.pool, customer_id).await
    }

    async fn replace_views(&self, views: Vec<OrderView>) -> Result<(), StoreError> {
        events::replace_views(&self.pool, views).await
    }
}

#[async_trait]
impl Catalog for PgStore {
    async fn upsert_product(&self, p: ProductUpsert) -> Result<Option<Product>, StoreError> {
        events::upsert_product(&self.pool, p).await
    }

    async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError> {
        Ok(self.products.get(vec![sku.clone()]).await?.pop())
    }

    async fn get_products(&self, skus: &[Sku]) -> Result<Vec<Product>, StoreError> {
        self.products.get(skus.to_vec()).await
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

mod batch;
mod cart;
mod coalesce;
mod inventory;
mod outbox;
mod plugins;
mod saga;
