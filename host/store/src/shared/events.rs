//! The event store, the order read model and the catalog, once for both
//! backends: appending events at an expected version (a unique violation
//! is a version conflict), keeping `order_views` in step, the feed and
//! stream reads, and product upserts. The backends give the SQL
//! ([`EventSql`]) and decide how appends are grouped into transactions.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Pool};
use uuid::Uuid;

use super::columns::Amount;
use super::rows::{EventRow, FeedRow, IdempotencyRow, ProductRow, ViewRow};
use super::{Arg, Backend, Stmt, execute, fetch_all, fetch_one, fetch_optional, fetch_rows};
use crate::{classify, is_unique_violation};
use commerce_app::ports::{
    Append, FeedCursor, FeedEvent, IdempotencyRecord, Product, ProductUpsert, StoreError,
    StoredEvent, UnpaidHolds,
};
use commerce_app::views::{OrderQuery, OrderView};

/// The columns of `order_views` that [`ViewRow`] reads.
pub(crate) const VIEW_COLUMNS: &str = "order_id, customer_id, status, currency, subtotal_amount, \
     adjustments, total_amount, items, status_reason, version, created_at, updated_at, \
     refunded_amount";

/// The statements of the event store, in the backend's SQL.
pub(crate) trait EventSql {
    /// Event (event_id $1, aggregate_id $2, aggregate_type $3, event_type
    /// $4, schema_version $5, event_data $6, version $7, created_at $8).
    const INSERT_EVENT: &'static str;
    /// Upsert of a view: order_id $1, customer_id $2, status $3, currency
    /// $4, total $5, items $6, status_reason $7, version $8, created_at $9,
    /// updated_at $10, subtotal $11, adjustments $12, refunded $13.
    const UPSERT_VIEW: &'static str;
    const LOAD_STREAM: &'static str;
    const READ_AFTER: &'static str;
    /// Events after cursor ($1, $2) that can no longer be preceded, limit $3.
    const READ_FEED: &'static str;
    const FIND_IDEMPOTENCY: &'static str;
    /// A row if aggregate $1 has an event at version $2.
    const VERSION_TAKEN: &'static str;
    /// Idempotency key (customer_id $1, idem_key $2, request_hash $3,
    /// order_id $4, created_at $5), unless it exists.
    const INSERT_KEY: &'static str;
    /// Up to $2 idempotency keys recorded before $1, deleted.
    const PURGE_KEYS: &'static str;
    /// Product upsert (sku $1, name $2, unit_price $3, currency $4,
    /// on_hand $5, at $6) unless it would put on hand below reserved.
    const UPSERT_PRODUCT: &'static str;
    /// `WHERE` with nothing to filter yet.
    const ALWAYS: &'static str;

    /// The `n`th (from 1) parameter placeholder.
    fn param(n: usize) -> String;
}

/// Inserts `append`'s events after its expected version; a clash on
/// (aggregate, version) is a `VersionConflict`.
pub(crate) async fn insert_events<DB: Backend + EventSql>(
    conn: &mut DB::Connection,
    append: &Append,
) -> Result<(), StoreError> {
    for (i, event) in append.events.iter().enumerate() {
        let version = append.expected_version + 1 + i as u64;
        let result = sqlx::query(DB::INSERT_EVENT)
            .arg(event.event_id)
            .arg(append.aggregate_id)
            .arg(append.aggregate_type)
            .arg(event.event_type)
            .arg(event.schema_version as i32)
            .arg(Json(&event.data))
            .arg(version as i64)
            .arg(event.recorded_at)
            .execute(DB::on(&mut *conn))
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
    Ok(())
}

/// Writes `view` over the stored one.
pub(crate) async fn upsert_view<DB: Backend + EventSql>(
    conn: &mut DB::Connection,
    view: &OrderView,
) -> Result<(), StoreError> {
    execute(bind_view(sqlx::query(DB::UPSERT_VIEW), view), DB::on(conn)).await?;
    Ok(())
}

/// The view's columns, bound in `UPSERT_VIEW`'s order.
fn bind_view<'q, DB: Backend>(statement: Stmt<'q, DB>, view: &'q OrderView) -> Stmt<'q, DB> {
    statement
        .arg(view.id)
        .arg(view.customer_id)
        .arg(view.status.as_str().to_owned())
        .arg(view.currency.clone())
        .arg(Amount(view.total))
        .arg(Json(&view.items))
        .arg(view.status_reason.clone())
        .arg(view.version as i64)
        .arg(view.created_at)
        .arg(view.updated_at)
        .arg(Amount(view.subtotal))
        .arg(Json(&view.adjustments))
        .arg(Amount(view.refunded))
}

/// `EventStore::load_stream`.
pub(crate) async fn load_stream<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    aggregate_id: Uuid,
) -> Result<Vec<StoredEvent>, StoreError> {
    let statement = sqlx::query(DB::LOAD_STREAM).arg(aggregate_id);
    fetch_all::<DB, EventRow, _>(statement, DB::pool(reader)).await
}

/// `EventStore::read_after`.
pub(crate) async fn read_after<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let statement = sqlx::query(DB::READ_AFTER).arg(after).arg(limit as i64);
    fetch_all::<DB, EventRow, _>(statement, DB::pool(reader)).await
}

/// `EventStore::read_feed`.
pub(crate) async fn read_feed<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    after: FeedCursor,
    limit: u32,
) -> Result<Vec<FeedEvent>, StoreError> {
    let statement = sqlx::query(DB::READ_FEED)
        .arg(after.tx)
        .arg(after.position)
        .arg(limit as i64);
    fetch_all::<DB, FeedRow, _>(statement, DB::pool(reader)).await
}

/// `EventStore::find_idempotency`.
pub(crate) async fn find_idempotency<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    customer_id: Uuid,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let row = sqlx::query(DB::FIND_IDEMPOTENCY)
        .arg(customer_id)
        .arg(key.to_owned())
        .fetch_optional(DB::pool(reader))
        .await
        .map_err(classify)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let row: IdempotencyRow = DB::read(&row)?;
    Ok(Some(IdempotencyRecord {
        customer_id,
        key: key.to_owned(),
        request_hash: row.request_hash,
        order_id: row.order_id,
    }))
}

/// `OrderViews::get_view`.
pub(crate) async fn get_view<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    order_id: Uuid,
) -> Result<Option<OrderView>, StoreError> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM order_views WHERE order_id = {}",
        DB::param(1)
    );
    let statement = sqlx::query(AssertSqlSafe(sql)).arg(order_id);
    fetch_optional::<DB, ViewRow, _>(statement, DB::pool(reader)).await
}

/// `OrderViews::list_views`: newest first, after the optional filters.
pub(crate) async fn list_views<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    query: &OrderQuery,
) -> Result<Vec<OrderView>, StoreError> {
    let mut sql = format!(
        "SELECT {VIEW_COLUMNS} FROM order_views WHERE {}",
        DB::ALWAYS
    );
    let mut params = 0;
    let mut next = || {
        params += 1;
        DB::param(params)
    };
    if query.customer_id.is_some() {
        let _ = write!(sql, " AND customer_id = {}", next());
    }
    if query.status.is_some() {
        let _ = write!(sql, " AND status = {}", next());
    }
    if query.before.is_some() {
        let _ = write!(sql, " AND order_id < {}", next());
    }
    let _ = write!(sql, " ORDER BY order_id DESC LIMIT {}", next());
    let mut statement = sqlx::query(AssertSqlSafe(sql));
    if let Some(customer) = query.customer_id {
        statement = statement.arg(customer);
    }
    if let Some(status) = query.status {
        statement = statement.arg(status.as_str().to_owned());
    }
    if let Some(before) = query.before {
        statement = statement.arg(before);
    }
    let statement = statement.arg(query.limit as i64);
    fetch_all::<DB, ViewRow, _>(statement, DB::pool(reader)).await
}

/// `OrderViews::order_ids_from`: by the primary key, oldest first.
pub(crate) async fn order_ids_from<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    from: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let sql = format!(
        "SELECT order_id FROM order_views WHERE order_id >= {} ORDER BY order_id LIMIT {}",
        DB::param(1),
        DB::param(2)
    );
    let statement = sqlx::query(AssertSqlSafe(sql))
        .arg(from.unwrap_or(Uuid::nil()))
        .arg(i64::from(limit));
    let rows: Vec<(Uuid,)> = fetch_rows(statement, DB::pool(reader)).await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// `OrderViews::unpaid_holds`: reserved orders of the customer with no
/// saga (no payment started), and the units they hold.
pub(crate) async fn unpaid_holds<DB: Backend + EventSql>(
    reader: &Pool<DB>,
    customer_id: Uuid,
) -> Result<UnpaidHolds, StoreError> {
    let sql = format!(
        "SELECT CAST(count(DISTINCT v.order_id) AS BIGINT), CAST(sum(r.quantity) AS BIGINT) \
         FROM order_views v JOIN reservations r ON r.order_id = v.order_id AND r.state = 'held' \
         WHERE v.customer_id = {} AND v.status = 'reserved' \
         AND NOT EXISTS (SELECT 1 FROM saga_instances s WHERE s.correlation_id = v.order_id)",
        DB::param(1)
    );
    let statement = sqlx::query(AssertSqlSafe(sql)).arg(customer_id);
    let (orders, units) =
        fetch_one::<DB, (Option<i64>, Option<i64>)>(statement, DB::pool(reader)).await?;
    Ok(UnpaidHolds {
        orders: orders.unwrap_or(0),
        units: units.unwrap_or(0),
    })
}

/// Views written per transaction by [`refresh_views`]: live writers of
/// those orders wait on their rows for one such transaction at most.
const REFRESH_CHUNK: usize = 500;

/// `OrderViews::refresh_views`: each view written unless the stored one
/// is newer (an order written since the replay read its events), then
/// the views of orders that have no events deleted.
pub(crate) async fn refresh_views<DB: Backend + EventSql>(
    writer: &Pool<DB>,
    views: Vec<OrderView>,
) -> Result<(), StoreError> {
    let guarded = format!(
        "{} WHERE order_views.version <= excluded.version",
        DB::UPSERT_VIEW
    );
    for chunk in views.chunks(REFRESH_CHUNK) {
        let mut tx = writer.begin().await.map_err(classify)?;
        for view in chunk {
            let statement = sqlx::query(AssertSqlSafe(guarded.clone()));
            execute(bind_view(statement, view), DB::on(&mut tx)).await?;
        }
        tx.commit().await.map_err(classify)?;
    }
    let orphans = "DELETE FROM order_views WHERE NOT EXISTS \
         (SELECT 1 FROM events WHERE events.aggregate_id = order_views.order_id)";
    execute(sqlx::query(orphans), DB::pool(writer)).await?;
    Ok(())
}

/// `Catalog::upsert_product`.
pub(crate) async fn upsert_product<DB: Backend + EventSql>(
    writer: &Pool<DB>,
    p: ProductUpsert,
) -> Result<Option<Product>, StoreError> {
    let statement = sqlx::query(DB::UPSERT_PRODUCT)
        .arg(p.sku.as_str().to_owned())
        .arg(p.name)
        .arg(Amount(p.unit_price))
        .arg(p.currency.code().to_owned())
        .arg(p.on_hand)
        .arg(p.at);
    fetch_optional::<DB, ProductRow, _>(statement, DB::pool(writer)).await
}

/// `EventStore::purge_idempotency_keys`.
pub(crate) async fn purge_keys<DB: Backend + EventSql>(
    writer: &Pool<DB>,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    let statement = sqlx::query(DB::PURGE_KEYS)
        .arg(before)
        .arg(i64::from(limit));
    execute(statement, DB::pool(writer)).await
}

/// `Store::ping`: one round trip.
pub(crate) async fn ping<DB: Backend>(reader: &Pool<DB>) -> Result<(), StoreError> {
    execute(sqlx::query("SELECT 1"), DB::pool(reader))
        .await
        .map(|_| ())
}
