//! Carts on PostgreSQL: the SQL of `shared::cart`. Writers of one cart
//! queue on its row lock (`FOR UPDATE`); purges skip rows another writer
//! holds (`SKIP LOCKED`), so concurrent writers never queue on the same
//! expired carts.

use sqlx::Postgres;

use crate::shared::cart::CartSql;

impl CartSql for Postgres {
    const LOAD: &'static str = "UPDATE carts SET expires_at = $1 \
         WHERE customer_id = $2 AND expires_at > $3 RETURNING revision, currency";
    const LINES: &'static str = "SELECT sku, quantity::int8 FROM cart_lines \
         WHERE customer_id = $1 ORDER BY sku COLLATE \"C\"";
    const PURGE: &'static str = "DELETE FROM carts WHERE expires_at <= $1 \
         AND (customer_id = $2 OR customer_id IN (SELECT customer_id FROM carts \
         WHERE expires_at <= $1 LIMIT $3 FOR UPDATE SKIP LOCKED))";
    const CREATE: &'static str = "INSERT INTO carts \
         (customer_id, revision, currency, expires_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id) DO NOTHING";
    const LOCK_COUNT: &'static str = "SELECT c.currency, \
         (SELECT count(*) FROM cart_lines l WHERE l.customer_id = c.customer_id), \
         (SELECT count(*) FROM cart_lines l WHERE l.customer_id = c.customer_id AND l.sku = $1) \
         FROM carts c WHERE c.customer_id = $2 FOR UPDATE";
    const SET_LINE: &'static str = "INSERT INTO cart_lines (customer_id, sku, quantity) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (customer_id, sku) DO UPDATE SET quantity = excluded.quantity";
    const LOCK: &'static str = "SELECT currency FROM carts WHERE customer_id = $1 FOR UPDATE";
    const DELETE_LINE: &'static str = "DELETE FROM cart_lines WHERE customer_id = $1 AND sku = $2";
    const DELETE: &'static str =
        "DELETE FROM carts WHERE customer_id = $1 AND ($2::uuid IS NULL OR revision = $2)";
    const TOUCH: &'static str = "UPDATE carts SET revision = $1, \
         currency = coalesce($2, currency), expires_at = $3, updated_at = $4 \
         WHERE customer_id = $5";
    const SWEEP: &'static str = "DELETE FROM carts WHERE expires_at <= $1 AND customer_id IN \
         (SELECT customer_id FROM carts WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
}
