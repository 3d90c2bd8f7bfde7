//! Stock and reservations, once for both backends.
//!
//! A claim on stock is a conditional `UPDATE` on the product's version
//! and availability (the optimistic lock), re-read and retried inside the
//! transaction when the product moved on: no explicit row or table locks.
//! Claims run in SKU order, so two transactions that touch the same
//! products wait for each other in one order and never deadlock (on
//! SQLite the single writer serializes them anyway). The backends give
//! the SQL ([`InventorySql`]); expiries are [`Micros`].

use chrono::{DateTime, Utc};
use sqlx::Pool;
use uuid::Uuid;

use super::columns::Micros;
use super::rows::{ProductRow, ReservationRow};
use super::{Arg, Backend, execute, fetch_all, fetch_optional, fetch_optional_row, fetch_rows};
use crate::classify;
use commerce_app::ports::{
    InventoryChange, Product, Reservation, ReservationState, StockAdjustment, StoreError,
};
use commerce_domain::{Sku, StockClaim};

/// The statements of the inventory, in the backend's SQL.
pub(crate) trait InventorySql {
    /// Whether an append takes its stock before writing anything else.
    /// Where one writer holds the whole database for its transaction
    /// (SQLite), checking the units first lets an append that cannot have
    /// them give way after one statement instead of after all of them;
    /// where writers lock rows (PostgreSQL), the stock goes last, so that
    /// a hot product's row is locked for the shortest time.
    const STOCK_FIRST: bool;
    /// Reserve $2 more of $1 if at version $3 with $2 available ($4 at).
    const TAKE: &'static str;
    /// Availability and version of $1.
    const AVAILABLE: &'static str;
    /// Give back -$2 reserved units of $1 ($3 at).
    const GIVE_BACK: &'static str;
    /// Hold $3 of $2 for order $1 until $4 ($5 at), replacing its hold.
    const HOLD: &'static str;
    /// Drop the hold of order $1 on $2 ($3 at).
    const DROP_HOLD: &'static str;
    /// Move order $1's held reservations to state $2 ($3 at), returning
    /// `sku, quantity`.
    const SETTLE: &'static str;
    /// $2 units of $1 leave the shelf ($3 at).
    const COMMIT: &'static str;
    /// $2 reserved units of $1 are free again ($3 at).
    const RELEASE: &'static str;
    /// $2 units of $1 come back on hand ($3 at).
    const RESTOCK: &'static str;
    const RESERVATIONS: &'static str;
    /// Orders with a hold expired before $1, limit $2.
    const EXPIRED: &'static str;
    /// Adjust $1 by $2 at version $3 ($4 at), never below reserved,
    /// returning the product.
    const ADJUST: &'static str;
    const LOG_ADJUSTMENT: &'static str;
    /// Products after SKU $1, limit $2.
    const STOCK_PAGE: &'static str;
}

/// Applies `change` inside the caller's transaction.
pub(crate) async fn apply<DB: Backend + InventorySql>(
    conn: &mut DB::Connection,
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
                hold::<DB>(conn, *order_id, claim, *expires_at, at).await?;
            }
            Ok(())
        }
        InventoryChange::Release { order_id } => {
            release::<DB>(conn, *order_id, at).await.map(|_| ())
        }
        InventoryChange::Commit { order_id } => {
            let held = settle::<DB>(conn, *order_id, ReservationState::Committed, at).await?;
            for (sku, quantity) in held {
                move_stock::<DB>(conn, DB::COMMIT, sku, quantity, at).await?;
            }
            Ok(())
        }
        InventoryChange::Restock { units, .. } => {
            let mut units: Vec<_> = units.iter().collect();
            units.sort_by(|a, b| a.0.cmp(&b.0));
            for (sku, quantity) in units {
                move_stock::<DB>(conn, DB::RESTOCK, sku.as_str().to_owned(), *quantity, at).await?;
            }
            Ok(())
        }
    }
}

/// One claim of a hold: the units taken (or given back) and the order's
/// reservation of the SKU set to the claimed quantity.
async fn hold<DB: Backend + InventorySql>(
    conn: &mut DB::Connection,
    order_id: Uuid,
    claim: &StockClaim,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    if claim.delta > 0 {
        take::<DB>(conn, claim, at).await?;
    } else {
        // Giving units back cannot oversell: no version check.
        move_stock::<DB>(
            conn,
            DB::GIVE_BACK,
            claim.sku.as_str().to_owned(),
            claim.delta,
            at,
        )
        .await?;
    }
    let sku = claim.sku.as_str().to_owned();
    let statement = if claim.quantity > 0 {
        sqlx::query(DB::HOLD)
            .arg(order_id)
            .arg(sku)
            .arg(claim.quantity)
            .arg(Micros(expires_at))
            .arg(at)
    } else {
        sqlx::query(DB::DROP_HOLD).arg(order_id).arg(sku).arg(at)
    };
    execute(statement, DB::on(conn)).await?;
    Ok(())
}

/// Runs `sql` (sku $1, quantity $2, at $3).
async fn move_stock<DB: Backend + InventorySql>(
    conn: &mut DB::Connection,
    sql: &'static str,
    sku: String,
    quantity: i64,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let statement = sqlx::query(sql).arg(sku).arg(quantity).arg(at);
    execute(statement, DB::on(conn)).await?;
    Ok(())
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
async fn take<DB: Backend + InventorySql>(
    conn: &mut DB::Connection,
    claim: &StockClaim,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut version = claim.expected_version;
    for _ in 0..=REREADS {
        let statement = sqlx::query(DB::TAKE)
            .arg(claim.sku.as_str().to_owned())
            .arg(claim.delta)
            .arg(version)
            .arg(at);
        if execute(statement, DB::on(&mut *conn)).await? == 1 {
            return Ok(());
        }
        let statement = sqlx::query(DB::AVAILABLE).arg(claim.sku.as_str().to_owned());
        let current = fetch_optional_row::<DB, (i64, i64)>(statement, DB::on(&mut *conn)).await?;
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
async fn settle<DB: Backend + InventorySql>(
    conn: &mut DB::Connection,
    order_id: Uuid,
    state: ReservationState,
    at: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, StoreError> {
    let statement = sqlx::query(DB::SETTLE)
        .arg(order_id)
        .arg(state.as_str())
        .arg(at);
    let mut held: Vec<(String, i64)> = fetch_rows(statement, DB::on(conn)).await?;
    held.sort();
    Ok(held)
}

/// Releases what the order holds; the units given back.
pub(crate) async fn release<DB: Backend + InventorySql>(
    conn: &mut DB::Connection,
    order_id: Uuid,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let held = settle::<DB>(conn, order_id, ReservationState::Released, at).await?;
    let mut units = 0;
    for (sku, quantity) in held {
        move_stock::<DB>(conn, DB::RELEASE, sku, quantity, at).await?;
        units += quantity;
    }
    Ok(units)
}

/// `Inventory::reservations`.
pub(crate) async fn reservations<DB: Backend + InventorySql>(
    reader: &Pool<DB>,
    order_id: Uuid,
) -> Result<Vec<Reservation>, StoreError> {
    let statement = sqlx::query(DB::RESERVATIONS).arg(order_id);
    fetch_all::<DB, ReservationRow, _>(statement, DB::pool(reader)).await
}

/// `Inventory::expired_holds`.
pub(crate) async fn expired_holds<DB: Backend + InventorySql>(
    reader: &Pool<DB>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let statement = sqlx::query(DB::EXPIRED).arg(Micros(now)).arg(limit as i64);
    let rows: Vec<(Uuid,)> = fetch_rows(statement, DB::pool(reader)).await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// `Inventory::release_holds`.
pub(crate) async fn release_holds<DB: Backend + InventorySql>(
    writer: &Pool<DB>,
    order_id: Uuid,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    let units = release::<DB>(&mut tx, order_id, at).await?;
    tx.commit().await.map_err(classify)?;
    Ok(units)
}

/// `Inventory::adjust_stock`: the change and its log line, in one
/// transaction.
pub(crate) async fn adjust_stock<DB: Backend + InventorySql>(
    writer: &Pool<DB>,
    a: StockAdjustment,
) -> Result<Option<Product>, StoreError> {
    let mut tx = writer.begin().await.map_err(classify)?;
    let statement = sqlx::query(DB::ADJUST)
        .arg(a.sku.as_str().to_owned())
        .arg(a.delta)
        .arg(a.expected_version)
        .arg(a.at);
    let Some(product) =
        fetch_optional::<DB, ProductRow, Product>(statement, DB::on(&mut tx)).await?
    else {
        return Ok(None);
    };
    let statement = sqlx::query(DB::LOG_ADJUSTMENT)
        .arg(a.sku.as_str().to_owned())
        .arg(a.delta)
        .arg(a.reason)
        .arg(product.on_hand)
        .arg(a.actor)
        .arg(a.at);
    execute(statement, DB::on(&mut tx)).await?;
    tx.commit().await.map_err(classify)?;
    Ok(Some(product))
}

/// `Inventory::stock_page`.
pub(crate) async fn stock_page<DB: Backend + InventorySql>(
    reader: &Pool<DB>,
    after: Option<&Sku>,
    limit: u32,
) -> Result<Vec<Product>, StoreError> {
    let statement = sqlx::query(DB::STOCK_PAGE)
        .arg(after.map(Sku::as_str).unwrap_or("").to_owned())
        .arg(limit as i64);
    fetch_all::<DB, ProductRow, _>(statement, DB::pool(reader)).await
}
