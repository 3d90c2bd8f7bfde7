//! PostgreSQL adapter. Writes that must be atomic run in one transaction;
//! the optimistic lock is the `events_aggregate_version` unique constraint.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, QueryBuilder, Row};
use uuid::Uuid;

use super::{classify, is_unique_violation, parse_currency, parse_sku, parse_status};
use coalesce::Coalescer;
use commerce_app::Store;
use commerce_app::ports::{
    Append, Catalog, EventStore, FeedCursor, FeedEvent, IdempotencyRecord, OrderViews, Product,
    ProductUpsert, StoreError, StoredEvent,
};
use commerce_app::saga::SagaInstance;
use commerce_app::views::{OrderLineView, OrderQuery, OrderView};
use commerce_domain::{Adjustment, Sku};

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
    sqlx::query("SELECT * FROM products WHERE sku = ANY($1)")
        .bind(&skus)
        .fetch_all(&pool)
        .await
        .map_err(classify)?
        .iter()
        .map(product_from_row)
        .collect()
}

const VIEW_COLUMNS: &str = "order_id, customer_id, status, currency, subtotal_amount, \
     adjustments, total_amount, items, status_reason, version, created_at, updated_at";

fn view_from_row(row: &PgRow) -> Result<OrderView, StoreError> {
    let status: String = row.try_get("status").map_err(classify)?;
    let currency: String = row.try_get("currency").map_err(classify)?;
    let Json(items): Json<Vec<OrderLineView>> = row.try_get("items").map_err(classify)?;
    let Json(adjustments): Json<Vec<Adjustment>> = row.try_get("adjustments").map_err(classify)?;
    let version: i64 = row.try_get("version").map_err(classify)?;
    Ok(OrderView {
        id: row.try_get("order_id").map_err(classify)?,
        customer_id: row.try_get("customer_id").map_err(classify)?,
        status: parse_status(&status)?,
        currency: parse_currency(&currency)?.code().to_owned(),
        items,
        subtotal: row.try_get("subtotal_amount").map_err(classify)?,
        adjustments,
        total: row.try_get("total_amount").map_err(classify)?,
        status_reason: row.try_get("status_reason").map_err(classify)?,
        version: version as u64,
        created_at: row.try_get("created_at").map_err(classify)?,
        updated_at: row.try_get("updated_at").map_err(classify)?,
    })
}

fn event_from_row(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let version: i64 = row.try_get("version").map_err(classify)?;
    let schema_version: i32 = row.try_get("schema_version").map_err(classify)?;
    let Json(data): Json<serde_json::Value> = row.try_get("event_data").map_err(classify)?;
    Ok(StoredEvent {
        position: row.try_get("position").map_err(classify)?,
        event_id: row.try_get("event_id").map_err(classify)?,
        aggregate_id: row.try_get("aggregate_id").map_err(classify)?,
        aggregate_type: row.try_get("aggregate_type").map_err(classify)?,
        version: version as u64,
        event_type: row.try_get("event_type").map_err(classify)?,
        schema_version: schema_version as u32,
        data,
        recorded_at: row.try_get("created_at").map_err(classify)?,
    })
}

fn feed_event_from_row(row: &PgRow) -> Result<FeedEvent, StoreError> {
    Ok(FeedEvent {
        cursor: FeedCursor {
            tx: row.try_get("tx_id").map_err(classify)?,
            position: row.try_get("position").map_err(classify)?,
        },
        event: event_from_row(row)?,
    })
}

fn product_from_row(row: &PgRow) -> Result<Product, StoreError> {
    let sku: String = row.try_get("sku").map_err(classify)?;
    let currency: String = row.try_get("currency").map_err(classify)?;
    Ok(Product {
        sku: parse_sku(&sku)?,
        name: row.try_get("name").map_err(classify)?,
        unit_price: row.try_get::<Decimal, _>("unit_price").map_err(classify)?,
        currency: parse_currency(&currency)?,
        on_hand: row.try_get("on_hand").map_err(classify)?,
        reserved: row.try_get("reserved").map_err(classify)?,
        version: row.try_get("version").map_err(classify)?,
        updated_at: row
            .try_get::<DateTime<Utc>, _>("updated_at")
            .map_err(classify)?,
    })
}

const UPSERT_VIEW: &str = "INSERT INTO order_views (order_id, customer_id, status, currency, \
     total_amount, items, status_reason, version, created_at, updated_at, subtotal_amount, adjustments) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, currency = EXCLUDED.currency, \
     total_amount = EXCLUDED.total_amount, items = EXCLUDED.items, \
     subtotal_amount = EXCLUDED.subtotal_amount, adjustments = EXCLUDED.adjustments, \
     status_reason = EXCLUDED.status_reason, version = EXCLUDED.version, \
     updated_at = EXCLUDED.updated_at";

async fn upsert_view(tx: &mut sqlx::PgConnection, view: &OrderView) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT_VIEW)
        .bind(view.id)
        .bind(view.customer_id)
        .bind(view.status.as_str())
        .bind(&view.currency)
        .bind(view.total)
        .bind(Json(&view.items))
        .bind(&view.status_reason)
        .bind(view.version as i64)
        .bind(view.created_at)
        .bind(view.updated_at)
        .bind(view.subtotal)
        .bind(Json(&view.adjustments))
        .execute(tx)
        .await?;
    Ok(())
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
    for (i, event) in append.events.iter().enumerate() {
        let version = append.expected_version + 1 + i as u64;
        let result = sqlx::query(
            "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, \
             schema_version, event_data, version, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.event_id)
        .bind(append.aggregate_id)
        .bind(append.aggregate_type)
        .bind(event.event_type)
        .bind(event.schema_version as i32)
        .bind(Json(&event.data))
        .bind(version as i64)
        .bind(event.recorded_at)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::VersionConflict {
                    aggregate_id: append.aggregate_id,
                    expected: append.expected_version,
                });
            }
            Err(e) => return Err(classify(e)),
        }
    }
    upsert_view(&mut tx, &append.view).await.map_err(classify)?;
    if let Some(saga) = &append.saga {
        saga::apply(&mut tx, saga).await?;
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
        sqlx::query("SELECT * FROM events WHERE aggregate_id = $1 ORDER BY version")
            .bind(aggregate_id)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn read_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        sqlx::query("SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2")
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(event_from_row)
            .collect()
    }

    // Only events of transactions below the snapshot's xmin: all of those
    // have ended and no new transaction can get an id below it, so no
    // event can ever appear before the last one returned (see
    // migrations/postgres/0006_outbox.sql). A long write transaction holds
    // the feed back until it ends; it never makes it skip.
    async fn read_feed(&self, after: FeedCursor, limit: u32) -> Result<Vec<FeedEvent>, StoreError> {
        sqlx::query(
            "SELECT * FROM events \
             WHERE (tx_id, position) > ($1, $2) \
             AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY tx_id, position LIMIT $3",
        )
        .bind(after.tx)
        .bind(after.position)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?
        .iter()
        .map(feed_event_from_row)
        .collect()
    }

    async fn find_idempotency(
        &self,
        customer_id: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT request_hash, order_id FROM idempotency_keys WHERE customer_id = $1 AND idem_key = $2",
        )
        .bind(customer_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|r| {
            Ok(IdempotencyRecord {
                customer_id,
                key: key.to_owned(),
                request_hash: r.try_get("request_hash").map_err(classify)?,
                order_id: r.try_get("order_id").map_err(classify)?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl OrderViews for PgStore {
    async fn get_view(&self, order_id: Uuid) -> Result<Option<OrderView>, StoreError> {
        let mut q = QueryBuilder::new(format!(
            "SELECT {VIEW_COLUMNS} FROM order_views WHERE order_id = "
        ));
        q.push_bind(order_id);
        q.build()
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .as_ref()
            .map(view_from_row)
            .transpose()
    }

    async fn list_views(&self, query: &OrderQuery) -> Result<Vec<OrderView>, StoreError> {
        let mut q = QueryBuilder::new(format!("SELECT {VIEW_COLUMNS} FROM order_views WHERE true"));
        if let Some(customer) = query.customer_id {
            q.push(" AND customer_id = ").push_bind(customer);
        }
        if let Some(status) = query.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = query.before {
            q.push(" AND order_id < ").push_bind(before);
        }
        q.push(" ORDER BY order_id DESC LIMIT ")
            .push_bind(query.limit as i64);
        q.build()
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(view_from_row)
            .collect()
    }

    async fn replace_views(&self, views: Vec<OrderView>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("DELETE FROM order_views")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for view in &views {
            upsert_view(&mut tx, view).await.map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }
}

#[async_trait]
impl Catalog for PgStore {
    async fn upsert_product(&self, p: ProductUpsert) -> Result<Option<Product>, StoreError> {
        let row = sqlx::query(
            "INSERT INTO products (sku, name, unit_price, currency, on_hand, reserved, version, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 0, 1, $6) \
             ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price, \
             currency = EXCLUDED.currency, on_hand = EXCLUDED.on_hand, \
             version = products.version + 1, updated_at = EXCLUDED.updated_at \
             WHERE products.reserved <= EXCLUDED.on_hand \
             RETURNING *",
        )
        .bind(p.sku.as_str())
        .bind(&p.name)
        .bind(p.unit_price)
        .bind(p.currency.code())
        .bind(p.on_hand)
        .bind(p.at)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(product_from_row).transpose()
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
