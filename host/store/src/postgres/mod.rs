//! PostgreSQL adapter. Writes that must be atomic run in one transaction;
//! the optimistic lock is the `events_aggregate_version` unique constraint.
//! Appends go through the group commit (`batch`), products and sagas by
//! key through the read coalescer (`coalesce`); every port is the shared
//! one (`shared::ports`) over one pool.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Pool, Postgres};
use uuid::Uuid;

use crate::shared::events::EventSql;
use crate::shared::fetch_all;
use crate::shared::ports::{SqlStore, sql_store_ports};
use crate::shared::rows::ProductRow;
use coalesce::Coalescer;
use commerce_app::ports::{Append, Product, StoreError};
use commerce_app::saga::SagaInstance;
use commerce_domain::Sku;

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
        crate::migrations::postgres().run(&pool).await?;
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
    const VERSION_TAKEN: &'static str =
        "SELECT 1 FROM events WHERE aggregate_id = $1 AND version = $2";
    const FIND_IDEMPOTENCY: &'static str = "SELECT request_hash, order_id FROM idempotency_keys \
         WHERE customer_id = $1 AND idem_key = $2";
    const PURGE_KEYS: &'static str = "DELETE FROM idempotency_keys WHERE ctid IN \
         (SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)";
    const UPSERT_PRODUCT: &'static str = "INSERT INTO products \
         (sku, name, unit_price, currency, on_hand, reserved, version, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 1, $6) \
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price, \
         currency = EXCLUDED.currency, on_hand = EXCLUDED.on_hand, \
         version = products.version + 1, updated_at = EXCLUDED.updated_at \
         WHERE products.reserved <= EXCLUDED.on_hand \
         RETURNING *";
    const INSERT_KEY: &'static str = "INSERT INTO idempotency_keys \
         (customer_id, idem_key, request_hash, order_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
    const ALWAYS: &'static str = "true";

    fn param(n: usize) -> String {
        format!("${n}")
    }
}

impl SqlStore for PgStore {
    type DB = Postgres;
    const NAME: &'static str = "postgres";

    fn reads(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn writes(&self) -> &Pool<Postgres> {
        &self.pool
    }

    async fn write_append(&self, append: Append) -> Result<(), StoreError> {
        self.batcher.append(append).await
    }

    async fn products_by_sku(&self, skus: Vec<Sku>) -> Result<Vec<Product>, StoreError> {
        self.products.get(skus).await
    }

    async fn saga_by_id(&self, saga_id: Uuid) -> Result<Option<SagaInstance>, StoreError> {
        Ok(self.sagas.get(vec![saga_id]).await?.pop())
    }
}

sql_store_ports!(PgStore);

mod batch;
mod cart;
mod coalesce;
mod inventory;
mod outbox;
mod plugins;
mod saga;
