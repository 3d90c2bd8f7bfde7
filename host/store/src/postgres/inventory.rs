//! Stock and reservations on PostgreSQL: the SQL of the shared inventory
//! (`shared/inventory.rs`, where the claims and their retries live).
//! Concurrent claims on one product wait on its row lock in SKU order.

use sqlx::Postgres;

use crate::shared::inventory::InventorySql;

impl InventorySql for Postgres {
    const STOCK_FIRST: bool = false;
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
