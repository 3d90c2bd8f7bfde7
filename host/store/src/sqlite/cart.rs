//! Carts in the embedded SQLite database, the twin of `postgres/cart.rs`.
//! Every statement runs on the single writer connection (reads too: a read
//! slides the cart's expiry), so a check and the write that follows it
//! cannot interleave with another writer.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use crate::{classify, corrupt, parse_currency, parse_sku};
use commerce_app::Store;
use commerce_app::ports::{CartStore, CartWrite, SetLine, StoreError, StoredCart};
use commerce_domain::{Currency, Quantity, Sku};

/// Expired carts purged per write, besides the writer's own: enough to
/// keep up with abandonment, small enough to keep writes short.
const PURGE_BATCH: i64 = 10;

fn expiry(ttl: Duration) -> (i64, i64) {
    let now = Utc::now().timestamp_millis();
    (now, now.saturating_add(ttl.as_millis() as i64))
}

/// Deletes the customer's cart if it has expired, and a few other expired ones.
async fn purge_expired(
    conn: &mut SqliteConnection,
    customer_id: Uuid,
    now: i64,
) -> Result<u64, StoreError> {
    let purged = sqlx::query(
        "DELETE FROM carts WHERE expires_at <= ?1 AND (customer_id = ?2 OR customer_id IN \
         (SELECT customer_id FROM carts WHERE expires_at <= ?1 LIMIT ?3))",
    )
    .bind(now)
    .bind(customer_id)
    .bind(PURGE_BATCH)
    .execute(conn)
    .await
    .map_err(classify)?
    .rows_affected();
    Ok(purged)
}

/// Counts the carts a committed write purged: each expired without a
/// checkout, and a row is deleted by one transaction only.
fn count_abandoned(purged: u64) {
    if purged > 0 {
        metrics::counter!(commerce_app::cart::CARTS_ABANDONED).increment(purged);
    }
}

/// Gives the cart its new revision and expiry.
async fn touch(
    conn: &mut SqliteConnection,
    customer_id: Uuid,
    currency: Option<Currency>,
    write: CartWrite,
) -> Result<(), StoreError> {
    let (_, expires_at) = expiry(write.ttl);
    sqlx::query(
        "UPDATE carts SET revision = ?1, currency = coalesce(?2, currency), expires_at = ?3, \
         updated_at = ?4 WHERE customer_id = ?5",
    )
    .bind(write.revision)
    .bind(currency.map(|c| c.code()))
    .bind(expires_at)
    .bind(Utc::now())
    .bind(customer_id)
    .execute(conn)
    .await
    .map_err(classify)?;
    Ok(())
}

#[async_trait]
impl CartStore for SqliteStore {
    fn cart_backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping_carts(&self) -> Result<(), StoreError> {
        self.ping().await
    }

    async fn load_cart(
        &self,
        customer_id: Uuid,
        ttl: Duration,
    ) -> Result<Option<StoredCart>, StoreError> {
        let (now, expires_at) = expiry(ttl);
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let Some(row) = sqlx::query(
            "UPDATE carts SET expires_at = ?1 WHERE customer_id = ?2 AND expires_at > ?3 \
             RETURNING revision, currency",
        )
        .bind(expires_at)
        .bind(customer_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?
        else {
            return Ok(None);
        };
        let rows =
            sqlx::query("SELECT sku, quantity FROM cart_lines WHERE customer_id = ?1 ORDER BY sku")
                .bind(customer_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        let currency: String = row.try_get("currency").map_err(classify)?;
        let lines = rows
            .iter()
            .map(|r| {
                let sku: String = r.try_get("sku").map_err(classify)?;
                let quantity: i64 = r.try_get("quantity").map_err(classify)?;
                let quantity = Quantity::parse(quantity)
                    .map_err(|_| corrupt("cart quantity", &quantity.to_string()))?;
                Ok((parse_sku(&sku)?, quantity))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if lines.is_empty() {
            return Ok(None);
        }
        Ok(Some(StoredCart {
            lines,
            currency: parse_currency(&currency)?,
            revision: row.try_get("revision").map_err(classify)?,
        }))
    }

    async fn set_cart_line(
        &self,
        customer_id: Uuid,
        (sku, quantity, currency): (&Sku, Quantity, Currency),
        max_lines: usize,
        write: CartWrite,
    ) -> Result<SetLine, StoreError> {
        let (now, expires_at) = expiry(write.ttl);
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let purged = purge_expired(&mut tx, customer_id, now).await?;
        let created = sqlx::query(
            "INSERT INTO carts (customer_id, revision, currency, expires_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (customer_id) DO NOTHING",
        )
        .bind(customer_id)
        .bind(write.revision)
        .bind(currency.code())
        .bind(expires_at)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT c.currency, \
             (SELECT count(*) FROM cart_lines l WHERE l.customer_id = c.customer_id) AS lines, \
             EXISTS (SELECT 1 FROM cart_lines l WHERE l.customer_id = c.customer_id AND l.sku = ?2) AS present \
             FROM carts c WHERE c.customer_id = ?1",
        )
        .bind(customer_id)
        .bind(sku.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let cart_currency: String = row.try_get("currency").map_err(classify)?;
        let lines: i64 = row.try_get("lines").map_err(classify)?;
        let present = row.try_get::<i64, _>("present").map_err(classify)? != 0;
        let others = lines - i64::from(present);
        // Returning early drops the transaction: nothing is written.
        if others > 0 && cart_currency != currency.code() {
            return Ok(SetLine::OtherCurrency(parse_currency(&cart_currency)?));
        }
        if !present && lines >= max_lines as i64 {
            return Ok(SetLine::TooManyLines);
        }
        sqlx::query(
            "INSERT INTO cart_lines (customer_id, sku, quantity) VALUES (?1, ?2, ?3) \
             ON CONFLICT (customer_id, sku) DO UPDATE SET quantity = excluded.quantity",
        )
        .bind(customer_id)
        .bind(sku.as_str())
        .bind(i64::from(quantity.get()))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        touch(&mut tx, customer_id, Some(currency), write).await?;
        tx.commit().await.map_err(classify)?;
        count_abandoned(purged);
        Ok(SetLine::Set { created })
    }

    async fn remove_cart_line(
        &self,
        customer_id: Uuid,
        sku: &Sku,
        write: CartWrite,
    ) -> Result<bool, StoreError> {
        let (now, _) = expiry(write.ttl);
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let purged = purge_expired(&mut tx, customer_id, now).await?;
        let removed = sqlx::query("DELETE FROM cart_lines WHERE customer_id = ?1 AND sku = ?2")
            .bind(customer_id)
            .bind(sku.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM cart_lines WHERE customer_id = ?1")
                .bind(customer_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
        if left == 0 {
            sqlx::query("DELETE FROM carts WHERE customer_id = ?1")
                .bind(customer_id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        } else {
            touch(&mut tx, customer_id, None, write).await?;
        }
        tx.commit().await.map_err(classify)?;
        count_abandoned(purged);
        Ok(true)
    }

    async fn delete_cart(
        &self,
        customer_id: Uuid,
        revision: Option<Uuid>,
    ) -> Result<bool, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM carts WHERE customer_id = ?1 AND (?2 IS NULL OR revision = ?2)",
        )
        .bind(customer_id)
        .bind(revision)
        .execute(&self.writer)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(deleted > 0)
    }

    async fn sweep_expired_carts(&self, _ttl: Duration, limit: usize) -> Result<u64, StoreError> {
        let swept = sqlx::query(
            "DELETE FROM carts WHERE expires_at <= ?1 AND customer_id IN \
             (SELECT customer_id FROM carts WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .bind(Utc::now().timestamp_millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.writer)
        .await
        .map_err(classify)?
        .rows_affected();
        Ok(swept)
    }
}
