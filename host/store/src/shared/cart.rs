//! Carts in SQL, once for both backends (Redis carts are `crate::redis`).
//!
//! Concurrent writers of one cart are serialized by the lock on its
//! `carts` row, taken before the line limit and the currency are checked
//! (PostgreSQL's `FOR UPDATE`; on SQLite the single writer connection runs
//! every statement, reads too, since a read slides the cart's expiry). A
//! cart whose expiry has passed counts as empty and is purged by the next
//! write, with a few other expired ones. Expiries are [`Millis`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Pool;
use uuid::Uuid;

use super::columns::Millis;
use super::{Arg, Backend, execute, fetch_one, fetch_optional_row, fetch_rows};
use crate::{corrupt, parse_currency, parse_sku};
use commerce_app::ports::{CartWrite, RemoveLine, SetLine, StoreError, StoredCart};
use commerce_domain::{Currency, Quantity, Sku};

/// Expired carts purged per write, besides the writer's own: enough to
/// keep up with abandonment, small enough to keep writes short.
const PURGE_BATCH: i64 = 10;

/// The statements of the cart store, in the backend's SQL.
pub(crate) trait CartSql {
    /// Slide customer $2's unexpired (at $3) cart to expire at $1,
    /// returning `revision, currency`; locks the cart.
    const LOAD: &'static str;
    /// Customer $1's lines, `sku, quantity` (as a 64-bit integer), in
    /// byte order of the SKU.
    const LINES: &'static str;
    /// Delete carts expired at $1: customer $2's and up to $3 others.
    const PURGE: &'static str;
    /// Create customer $1's cart: revision $2, currency $3, expiry $4 ($5
    /// at), unless it exists.
    const CREATE: &'static str;
    /// Lock customer $2's cart: `currency, lines, present` (1 if SKU $1
    /// is one of its lines, else 0).
    const LOCK_COUNT: &'static str;
    /// Set customer $1's line for $2 to quantity $3.
    const SET_LINE: &'static str;
    /// Lock customer $1's cart: its `currency`, a row if it exists.
    const LOCK: &'static str;
    const DELETE_LINE: &'static str;
    /// Delete customer $1's cart if its revision is $2 (any if null).
    const DELETE: &'static str;
    /// New revision $1, currency $2 if not null, expiry $3 ($4 at), for
    /// customer $5.
    const TOUCH: &'static str;
    /// Delete up to $2 carts expired at $1.
    const SWEEP: &'static str;
}

/// Now, and when a cart written now expires.
fn expiry(ttl: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let expires_at = now
        .checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (now, expires_at)
}

/// Counts the carts a committed write purged: each expired without a
/// checkout, and a row is deleted by one transaction only.
fn count_abandoned(purged: u64) {
    if purged > 0 {
        metrics::counter!(commerce_app::cart::CARTS_ABANDONED).increment(purged);
    }
}

async fn purge_expired<DB: Backend + CartSql>(
    conn: &mut DB::Connection,
    customer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let statement = sqlx::query(DB::PURGE)
        .arg(Millis(now))
        .arg(customer_id)
        .arg(PURGE_BATCH);
    execute(statement, DB::on(conn)).await
}

/// Gives the cart its new revision and expiry (and currency, if given).
async fn touch<DB: Backend + CartSql>(
    conn: &mut DB::Connection,
    customer_id: Uuid,
    currency: Option<Currency>,
    write: CartWrite,
) -> Result<(), StoreError> {
    let (now, expires_at) = expiry(write.ttl);
    let statement = sqlx::query(DB::TOUCH)
        .arg(write.revision)
        .arg(currency.map(|c| c.code()))
        .arg(Millis(expires_at))
        .arg(now)
        .arg(customer_id);
    execute(statement, DB::on(conn)).await.map(|_| ())
}

/// The customer's lines, sorted by SKU.
async fn lines_of<DB: Backend + CartSql>(
    conn: &mut DB::Connection,
    customer_id: Uuid,
) -> Result<Vec<(Sku, Quantity)>, StoreError> {
    let statement = sqlx::query(DB::LINES).arg(customer_id);
    let rows: Vec<(String, i64)> = fetch_rows(statement, DB::on(conn)).await?;
    rows.into_iter()
        .map(|(sku, quantity)| {
            let quantity = Quantity::parse(quantity)
                .map_err(|_| corrupt("cart quantity", &quantity.to_string()))?;
            Ok((parse_sku(&sku)?, quantity))
        })
        .collect()
}

/// The customer's cart, its expiry slid by `ttl`; none if it is empty or
/// has expired.
pub(crate) async fn load<DB: Backend + CartSql>(
    pool: &Pool<DB>,
    customer_id: Uuid,
    ttl: Duration,
) -> Result<Option<StoredCart>, StoreError> {
    let (now, expires_at) = expiry(ttl);
    let mut tx = pool.begin().await.map_err(crate::classify)?;
    // The update locks the cart row: no writer is half-way through its
    // lines while they are read below.
    let statement = sqlx::query(DB::LOAD)
        .arg(Millis(expires_at))
        .arg(customer_id)
        .arg(Millis(now));
    let Some((revision, currency)) =
        fetch_optional_row::<DB, (Uuid, String)>(statement, DB::on(&mut tx)).await?
    else {
        return Ok(None);
    };
    let lines = lines_of::<DB>(&mut tx, customer_id).await?;
    tx.commit().await.map_err(crate::classify)?;
    if lines.is_empty() {
        return Ok(None);
    }
    Ok(Some(StoredCart {
        lines,
        currency: parse_currency(&currency)?,
        revision,
    }))
}

/// Sets one line, creating the cart; refuses a line of another currency
/// than the cart's other lines, and a new line beyond `max_lines`.
pub(crate) async fn set_line<DB: Backend + CartSql>(
    pool: &Pool<DB>,
    customer_id: Uuid,
    (sku, quantity, currency): (&Sku, Quantity, Currency),
    max_lines: usize,
    write: CartWrite,
) -> Result<SetLine, StoreError> {
    let (now, expires_at) = expiry(write.ttl);
    let mut tx = pool.begin().await.map_err(crate::classify)?;
    let purged = purge_expired::<DB>(&mut tx, customer_id, now).await?;
    let statement = sqlx::query(DB::CREATE)
        .arg(customer_id)
        .arg(write.revision)
        .arg(currency.code())
        .arg(Millis(expires_at))
        .arg(now);
    let created = execute(statement, DB::on(&mut tx)).await? == 1;
    let statement = sqlx::query(DB::LOCK_COUNT)
        .arg(sku.as_str().to_owned())
        .arg(customer_id);
    let (cart_currency, lines, present): (String, i64, i64) =
        fetch_one(statement, DB::on(&mut tx)).await?;
    let present = present != 0;
    let others = lines - i64::from(present);
    // Returning early drops the transaction: nothing is written.
    if others > 0 && cart_currency != currency.code() {
        return Ok(SetLine::OtherCurrency(parse_currency(&cart_currency)?));
    }
    if !present && lines >= max_lines as i64 {
        return Ok(SetLine::TooManyLines);
    }
    let statement = sqlx::query(DB::SET_LINE)
        .arg(customer_id)
        .arg(sku.as_str().to_owned())
        .arg(i64::from(quantity.get()));
    execute(statement, DB::on(&mut tx)).await?;
    touch::<DB>(&mut tx, customer_id, Some(currency), write).await?;
    let lines = lines_of::<DB>(&mut tx, customer_id).await?;
    tx.commit().await.map_err(crate::classify)?;
    count_abandoned(purged);
    Ok(SetLine::Set {
        created,
        cart: StoredCart {
            lines,
            currency,
            revision: write.revision,
        },
    })
}

/// Removes one line (the cart with its last line).
pub(crate) async fn remove_line<DB: Backend + CartSql>(
    pool: &Pool<DB>,
    customer_id: Uuid,
    sku: &Sku,
    write: CartWrite,
) -> Result<RemoveLine, StoreError> {
    let (now, _) = expiry(write.ttl);
    let mut tx = pool.begin().await.map_err(crate::classify)?;
    let purged = purge_expired::<DB>(&mut tx, customer_id, now).await?;
    let statement = sqlx::query(DB::LOCK).arg(customer_id);
    let Some((currency,)) = fetch_optional_row::<DB, (String,)>(statement, DB::on(&mut tx)).await?
    else {
        return Ok(RemoveLine::Absent);
    };
    let statement = sqlx::query(DB::DELETE_LINE)
        .arg(customer_id)
        .arg(sku.as_str().to_owned());
    if execute(statement, DB::on(&mut tx)).await? == 0 {
        return Ok(RemoveLine::Absent);
    }
    let lines = lines_of::<DB>(&mut tx, customer_id).await?;
    let left = if lines.is_empty() {
        let statement = sqlx::query(DB::DELETE).arg(customer_id).arg(None::<Uuid>);
        execute(statement, DB::on(&mut tx)).await?;
        None
    } else {
        touch::<DB>(&mut tx, customer_id, None, write).await?;
        Some(StoredCart {
            lines,
            currency: parse_currency(&currency)?,
            revision: write.revision,
        })
    };
    tx.commit().await.map_err(crate::classify)?;
    count_abandoned(purged);
    Ok(RemoveLine::Removed(left))
}

/// Deletes the cart, only at `revision` if one is given.
pub(crate) async fn delete<DB: Backend + CartSql>(
    pool: &Pool<DB>,
    customer_id: Uuid,
    revision: Option<Uuid>,
) -> Result<bool, StoreError> {
    let statement = sqlx::query(DB::DELETE).arg(customer_id).arg(revision);
    Ok(execute(statement, DB::pool(pool)).await? > 0)
}

/// Deletes up to `limit` expired carts.
pub(crate) async fn sweep<DB: Backend + CartSql>(
    pool: &Pool<DB>,
    limit: usize,
) -> Result<u64, StoreError> {
    let statement = sqlx::query(DB::SWEEP)
        .arg(Millis(Utc::now()))
        .arg(i64::try_from(limit).unwrap_or(i64::MAX));
    execute(statement, DB::pool(pool)).await
}
