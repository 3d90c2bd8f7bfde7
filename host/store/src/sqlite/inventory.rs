//! Stock and reservations on SQLite, query for query the twin of
//! `store/postgres/inventory.rs`. Writes go through the single writer
//! connection, so claims never wait on each other here; the version check
//! still refuses a claim planned on stock that changed since it was read.
//!
//! A claim on stock is a conditional `UPDATE` on the product's version
//! and availability (the optimistic lock), re-read and retried inside the
//! transaction when the product moved on: no explicit row or table locks.
//! Claims run in SKU order, so two transactions that touch the same
//! products wait for each other in one order and never deadlock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use crate::shared::rows::product_from_row;
use crate::{classify, corrupt, parse_sku};
use commerce_app::ports::{
    Inventory, InventoryChange, Product, Reservation, ReservationState, StockAdjustment, StoreError,
};
use commerce_domain::{Sku, StockClaim};

/// Applies `change` inside the caller's transaction.
pub(super) async fn apply(
    tx: &mut SqliteConnection,
    change: &InventoryChange,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    match change {
        InventoryChange::Hold {
            order_id,
            claims,
            expires_at,
        } => {
            let mut claims: Vec<_> = claims.iter().collect();
            claims.sort_by(|a, b| a.sku.cmp(&b.sku));
            for claim in claims {
                if claim.delta > 0 {
                    take(&mut *tx, claim, at).await?;
                } else {
                    // Giving units back cannot oversell: no version check.
                    sqlx::query(
                        "UPDATE products SET reserved = reserved + ?2, version = version + 1, updated_at = ?3 \
                         WHERE sku = ?1",
                    )
                    .bind(claim.sku.as_str())
                    .bind(claim.delta)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                }
                if claim.quantity > 0 {
                    sqlx::query(
                        "INSERT INTO reservations (order_id, sku, quantity, state, expires_at, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, 'held', ?4, ?5, ?5) \
                         ON CONFLICT (order_id, sku) DO UPDATE SET quantity = excluded.quantity, \
                         state = 'held', expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                    )
                    .bind(order_id)
                    .bind(claim.sku.as_str())
                    .bind(claim.quantity)
                    .bind(expires_at.timestamp_micros())
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                } else {
                    sqlx::query(
                        "UPDATE reservations SET state = 'released', updated_at = ?3 \
                         WHERE order_id = ?1 AND sku = ?2 AND state = 'held'",
                    )
                    .bind(order_id)
                    .bind(claim.sku.as_str())
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                }
            }
            Ok(())
        }
        InventoryChange::Release { order_id } => release(tx, *order_id, at).await.map(|_| ()),
        InventoryChange::Commit { order_id } => {
            let held = settle(tx, *order_id, ReservationState::Committed, at).await?;
            for (sku, quantity) in held {
                sqlx::query(
                    "UPDATE products SET on_hand = on_hand - ?2, reserved = reserved - ?2, \
                     version = version + 1, updated_at = ?3 WHERE sku = ?1",
                )
                .bind(sku)
                .bind(quantity)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            Ok(())
        }
        InventoryChange::Restock { units, .. } => {
            let mut units: Vec<_> = units.iter().collect();
            units.sort_by(|a, b| a.0.cmp(&b.0));
            for (sku, quantity) in units {
                sqlx::query(
                    "UPDATE products SET on_hand = on_hand + ?2, version = version + 1, \
                     updated_at = ?3 WHERE sku = ?1",
                )
                .bind(sku.as_str())
                .bind(*quantity)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            Ok(())
        }
    }
}

/// Times a claim re-reads the product within the transaction after
/// finding it moved past the version it was planned on, before the whole
/// write is given back to the application to plan again.
const REREADS: usize = 4;

/// Takes `claim.delta` units: a conditional update on the version the
/// claim was planned on and on availability. If the product moved on, it
/// is read again inside the transaction (each statement sees the latest
/// commit) and the update retried on the new version, as long as the
/// units are there: a lost race costs a round trip, not a new plan.
/// `StockConflict` when the units are gone or the product keeps moving.
async fn take(
    tx: &mut SqliteConnection,
    claim: &StockClaim,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut version = claim.expected_version;
    for _ in 0..=REREADS {
        let updated = sqlx::query(
            "UPDATE products SET reserved = reserved + ?2, version = version + 1, updated_at = ?4 \
             WHERE sku = ?1 AND version = ?3 AND on_hand - reserved >= ?2",
        )
        .bind(claim.sku.as_str())
        .bind(claim.delta)
        .bind(version)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        let current: Option<(i64, i64)> =
            sqlx::query_as("SELECT on_hand - reserved, version FROM products WHERE sku = ?1")
                .bind(claim.sku.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
        match current {
            Some((available, current)) if available >= claim.delta => {
                metrics::counter!(commerce_app::inventory::CLAIM_REREADS).increment(1);
                version = current;
            }
            _ => break,
        }
    }
    Err(StoreError::StockConflict {
        sku: claim.sku.clone(),
    })
}

/// Moves the order's held reservations to `state`; returns what they held,
/// by SKU.
async fn settle(
    tx: &mut SqliteConnection,
    order_id: Uuid,
    state: ReservationState,
    at: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut held: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE reservations SET state = ?2, updated_at = ?3 \
         WHERE order_id = ?1 AND state = 'held' RETURNING sku, quantity",
    )
    .bind(order_id)
    .bind(state.as_str())
    .bind(at)
    .fetch_all(&mut *tx)
    .await
    .map_err(classify)?;
    held.sort();
    Ok(held)
}

async fn release(
    tx: &mut SqliteConnection,
    order_id: Uuid,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let held = settle(tx, order_id, ReservationState::Released, at).await?;
    let mut units = 0;
    for (sku, quantity) in held {
        sqlx::query(
            "UPDATE products SET reserved = reserved - ?2, version = version + 1, updated_at = ?3 \
             WHERE sku = ?1",
        )
        .bind(sku)
        .bind(quantity)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        units += quantity;
    }
    Ok(units)
}

fn reservation_from_row(row: &SqliteRow) -> Result<Reservation, StoreError> {
    let sku: String = row.try_get("sku").map_err(classify)?;
    let state: String = row.try_get("state").map_err(classify)?;
    Ok(Reservation {
        order_id: row.try_get("order_id").map_err(classify)?,
        sku: parse_sku(&sku)?,
        quantity: row.try_get("quantity").map_err(classify)?,
        state: ReservationState::parse(&state)
            .ok_or_else(|| corrupt("reservation state", &state))?,
        expires_at: {
            let micros: i64 = row.try_get("expires_at").map_err(classify)?;
            DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| corrupt("reservation expiry", &micros.to_string()))?
        },
    })
}

#[async_trait]
impl Inventory for SqliteStore {
    async fn reservations(&self, order_id: Uuid) -> Result<Vec<Reservation>, StoreError> {
        sqlx::query("SELECT * FROM reservations WHERE order_id = ?1 ORDER BY sku")
            .bind(order_id)
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?
            .iter()
            .map(reservation_from_row)
            .collect()
    }

    async fn expired_holds(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT order_id FROM reservations WHERE state = 'held' AND expires_at < ?1 \
             GROUP BY order_id ORDER BY min(expires_at) LIMIT ?2",
        )
        .bind(now.timestamp_micros())
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn release_holds(&self, order_id: Uuid, at: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let units = release(&mut tx, order_id, at).await?;
        tx.commit().await.map_err(classify)?;
        Ok(units)
    }

    async fn adjust_stock(&self, a: StockAdjustment) -> Result<Option<Product>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let row = sqlx::query(
            "UPDATE products SET on_hand = on_hand + ?2, version = version + 1, updated_at = ?4 \
             WHERE sku = ?1 AND version = ?3 AND on_hand + ?2 >= reserved RETURNING *",
        )
        .bind(a.sku.as_str())
        .bind(a.delta)
        .bind(a.expected_version)
        .bind(a.at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let product = product_from_row::<sqlx::Sqlite>(&row)?;
        sqlx::query(
            "INSERT INTO stock_adjustments (sku, delta, reason, on_hand_after, actor, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(a.sku.as_str())
        .bind(a.delta)
        .bind(&a.reason)
        .bind(product.on_hand)
        .bind(a.actor)
        .bind(a.at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(product))
    }

    async fn stock_page(
        &self,
        after: Option<&Sku>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError> {
        sqlx::query("SELECT * FROM products WHERE sku > ?1 ORDER BY sku LIMIT ?2")
            .bind(after.map(Sku::as_str).unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?
            .iter()
            .map(product_from_row::<sqlx::Sqlite>)
            .collect()
    }
}
