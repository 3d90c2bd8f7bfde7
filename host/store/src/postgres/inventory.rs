//! Stock and reservations on PostgreSQL: the SQL of the shared inventory
//! (`shared/inventory.rs`, where the claims and their retries live).
//! Concurrent claims on one product wait on its row lock in SKU order.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::PgStore;
use crate::shared::inventory::{self, InventorySql};
use commerce_app::ports::{
    Inventory, InventoryChange, Product, Reservation, StockAdjustment, StoreError,
};
use commerce_domain::Sku;

impl InventorySql for Postgres {
    const TAKE: &'static str = "UPDATE products SET reserved = reserved + $2, \
         version = version + 1, updated_at = $4 \
         WHERE sku = $1 AND version = $3 AND on_hand - reserved >= $2";
    const AVAILABLE: &'static str =
        "SELECT on_hand - reserved, version FROM products WHERE sku = $1";
    const GIVE_BACK: &'static str = "UPDATE products SET reserved = reserved + $2, \
         version = version + 1, updated_at = $3 WHERE sku = $1";
    const HOLD: &'static str = "INSERT INTO reservations \
         (order_id, sku, quantity, state, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'held', $4, $5, $5) \
         ON CONFLICT (order_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity, \
         state = 'held', expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at";
    const DROP_HOLD: &'static str = "UPDATE reservations SET state = 'released', \
         updated_at = $3 WHERE order_id = $1 AND sku = $2 AND state = 'held'";
    const SETTLE: &'static str = "UPDATE reservations SET state = $2, updated_at = $3 \
         WHERE order_id = $1 AND state = 'held' RETURNING sku, quantity";
    const COMMIT: &'static str = "UPDATE products SET on_hand = on_hand - $2, \
         reserved = reserved - $2, version = version + 1, updated_at = $3 WHERE sku = $1";
    const RELEASE: &'static str = "UPDATE products SET reserved = reserved - $2, \
         version = version + 1, updated_at = $3 WHERE sku = $1";
    const RESTOCK: &'static str = "UPDATE products SET on_hand = on_hand + $2, \
         version = version + 1, updated_at = $3 WHERE sku = $1";
    const RESERVATIONS: &'static str =
        "SELECT * FROM reservations WHERE order_id = $1 ORDER BY sku";
    const EXPIRED: &'static str = "SELECT order_id FROM reservations \
         WHERE state = 'held' AND expires_at < $1 \
         GROUP BY order_id ORDER BY min(expires_at) LIMIT $2";
    const ADJUST: &'static str = "UPDATE products SET on_hand = on_hand + $2, \
         version = version + 1, updated_at = $4 \
         WHERE sku = $1 AND version = $3 AND on_hand + $2 >= reserved RETURNING *";
    const LOG_ADJUSTMENT: &'static str = "INSERT INTO stock_adjustments \
         (sku, delta, reason, on_hand_after, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)";
    const STOCK_PAGE: &'static str = "SELECT * FROM products WHERE sku > $1 ORDER BY sku LIMIT $2";
}

/// Applies `change` inside the caller's transaction.
pub(super) async fn apply(
    tx: &mut PgConnection,
    change: &InventoryChange,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    inventory::apply::<Postgres>(tx, change, at).await
}

#[async_trait]
impl Inventory for PgStore {
    async fn reservations(&self, order_id: Uuid) -> Result<Vec<Reservation>, StoreError> {
        inventory::reservations(&self.pool, order_id).await
    }

    async fn expired_holds(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        inventory::expired_holds(&self.pool, now, limit).await
    }

    async fn release_holds(&self, order_id: Uuid, at: DateTime<Utc>) -> Result<i64, StoreError> {
        inventory::release_holds(&self.pool, order_id, at).await
    }

    async fn adjust_stock(&self, a: StockAdjustment) -> Result<Option<Product>, StoreError> {
        inventory::adjust_stock(&self.pool, a).await
    }

    async fn stock_page(
        &self,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError> {
        inventory::stock_page(&self.pool, after, limit).await
    }
}
