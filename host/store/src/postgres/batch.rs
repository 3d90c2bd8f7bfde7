//! Group commit. Appends that arrive while a transaction is being written
//! wait for the next one, and each transaction writes all the appends
//! waiting, as a dozen multi-row statements whatever their number: the
//! idempotency keys, the events, the read models, the sagas and their
//! history, the reservations, and one update per product touched.
//!
//! The batch is all or nothing. If any append in it cannot be made (a
//! version or saga conflict, a key already used, stock gone), the
//! transaction is rolled back and each append is made on its own, through
//! the single-append path, which tells each caller what went wrong with
//! its own append. So the batch changes the cost of appends, never their
//! outcome. One refusal is foreseen rather than met: a hold whose units
//! the batch's earlier holds already took is answered `StockConflict`
//! before the batch is written (`admit`), as it would be alone, so that a
//! product selling out does not send every batch append by append.
//!
//! Stock in a batch is claimed on availability alone: the product rows
//! are locked in SKU order (as every writer of products locks them, so
//! writers never deadlock), then each product moves by the sum of the
//! batch's changes only if that leaves `on_hand - reserved >= 0`. That is
//! what the per-claim version check of the single path protects too (it
//! re-reads and retries on any version that still has the units).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use commerce_app::ports::{Append, InventoryChange, StoreError};
use commerce_app::saga::{SagaInstance, SagaStepRecord, SagaWrite, status_str};
use commerce_domain::Sku;

/// Appends written together at most.
const MAX_BATCH: usize = 256;

/// Batches written by one process that had to be made append by append.
pub const BATCH_FALLBACKS: &str = "commerce_store_batch_fallbacks_total";
/// Appends per group-commit transaction.
pub const BATCH_SIZE: &str = "commerce_store_batch_size";

struct Job {
    append: Append,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue in front of the writer task.
#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the writer on `pool`. It runs until every `Batcher` clone is
    /// dropped.
    pub fn start(pool: PgPool) -> Batcher {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, jobs));
        Batcher { queue }
    }

    pub async fn append(&self, append: Append) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable(anyhow::anyhow!("the store's writer has stopped"));
        self.queue
            .send(Job { append, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(pool: PgPool, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (together, alone): (Vec<Job>, Vec<Job>) =
            batch.drain(..).partition(|j| batchable(&j.append));
        let mut one_by_one = alone;
        let together = match admit(&pool, together, &mut one_by_one).await {
            Ok(admitted) => admitted,
            Err((jobs, e)) => {
                // Not read: the batch is written as if every hold fitted,
                // and falls back append by append if one does not.
                tracing::debug!(error = %e, "stock for the batch's holds could not be read");
                jobs
            }
        };
        metrics::histogram!(BATCH_SIZE).record(together.len() as f64);
        if together.len() > 1 {
            let appends: Vec<&Append> = together.iter().map(|j| &j.append).collect();
            match write(&pool, &appends).await {
                Ok(()) => {
                    for job in together {
                        let _ = job.reply.send(Ok(()));
                    }
                }
                Err(e) => {
                    metrics::counter!(BATCH_FALLBACKS).increment(1);
                    tracing::debug!(error = %e, appends = appends.len(), "group commit fell back to one append at a time");
                    one_by_one.extend(together);
                }
            }
        } else {
            one_by_one.extend(together);
        }
        // Alone, each append in its own transaction, one after the other,
        // as if no other had come at the same time; each caller learns
        // its own append's conflict.
        for job in one_by_one {
            let result = crate::shared::ports::append_one(&pool, &job.append).await;
            let _ = job.reply.send(result);
        }
    }
}

/// Holds that find their units gone are answered here, before the
/// batch is written, instead of refusing the batch (which would then be
/// written append by append, one transaction each: on a product selling
/// out under load, every batch). The stock of the batch's holds is read
/// once; the holds are admitted in the order they came while the units
/// last; a hold that does not fit gets `StockConflict`, as the
/// single-append path would give it, and its caller re-reads and plans
/// again (finding the product sold out, or the units back). Unless it
/// would have been refused before its stock was reached (a used key, a
/// stale version): then it goes alone, to be told that. Stock that
/// other appends of the same batch give back is not counted: a hold
/// refused for want of it only goes round once more. The batch's own
/// update still checks availability under the row locks, so a writer
/// that moved the stock since this read refuses the batch as before.
async fn admit(
    pool: &PgPool,
    jobs: Vec<Job>,
    alone: &mut Vec<Job>,
) -> Result<Vec<Job>, (Vec<Job>, sqlx::Error)> {
    let mut skus: Vec<&str> = jobs.iter().flat_map(|j| held_skus(&j.append)).collect();
    if skus.is_empty() {
        return Ok(jobs);
    }
    skus.sort_unstable();
    skus.dedup();
    let read = sqlx::query_as::<_, (String, i64)>(
        "SELECT sku, on_hand - reserved FROM products WHERE sku = ANY($1)",
    )
    .bind(&skus)
    .fetch_all(pool)
    .await;
    let mut available: BTreeMap<String, i64> = match read {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => return Err((jobs, e)),
    };
    let mut admitted = Vec::with_capacity(jobs.len());
    let mut short = Vec::new();
    for job in jobs {
        match take_from(&mut available, &job.append) {
            None => admitted.push(job),
            Some(sku) => short.push((job, sku)),
        }
    }
    if short.is_empty() {
        return Ok(admitted);
    }
    // Alone, a stale version or a used key is met before the stock: those
    // appends go alone, to hear it.
    let appends: Vec<&Append> = short.iter().map(|(j, _)| &j.append).collect();
    let refused_earlier = match refused_before_stock(pool, &appends).await {
        Ok(refused) => refused,
        Err(e) => {
            tracing::debug!(error = %e, "keys and versions of short holds could not be read");
            alone.extend(short.into_iter().map(|(j, _)| j));
            return Ok(admitted);
        }
    };
    for (job, sku) in short {
        if refused_earlier.contains(&job.append.aggregate_id) {
            alone.push(job);
        } else {
            let _ = job.reply.send(Err(StoreError::StockConflict { sku }));
        }
    }
    Ok(admitted)
}

/// The aggregates of `appends` whose idempotency key is already used or
/// whose next version is already taken.
async fn refused_before_stock(
    pool: &PgPool,
    appends: &[&Append],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    let (mut k_customer, mut k_key, mut k_aggregate) = (Vec::new(), Vec::new(), Vec::new());
    for a in appends {
        for k in &a.idempotency {
            k_customer.push(k.customer_id);
            k_key.push(k.key.as_str());
            k_aggregate.push(a.aggregate_id);
        }
    }
    let mut refused: std::collections::HashSet<Uuid> = sqlx::query_scalar(
        "SELECT w.aggregate_id FROM UNNEST($1::uuid[], $2::text[], $3::uuid[]) \
         AS w(customer_id, idem_key, aggregate_id) \
         JOIN idempotency_keys k ON k.customer_id = w.customer_id AND k.idem_key = w.idem_key",
    )
    .bind(&k_customer)
    .bind(&k_key)
    .bind(&k_aggregate)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let next: Vec<(Uuid, i64)> = appends
        .iter()
        .filter(|a| !a.events.is_empty())
        .map(|a| (a.aggregate_id, (a.expected_version + 1) as i64))
        .collect();
    let stale: Vec<Uuid> = sqlx::query_scalar(
        "SELECT e.aggregate_id FROM events e \
         JOIN UNNEST($1::uuid[], $2::int8[]) AS w(aggregate_id, version) \
         ON e.aggregate_id = w.aggregate_id AND e.version = w.version \
         WHERE e.aggregate_id = ANY($1)",
    )
    .bind(next.iter().map(|n| n.0).collect::<Vec<_>>())
    .bind(next.iter().map(|n| n.1).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    refused.extend(stale);
    Ok(refused)
}

/// The SKUs `append` takes units of.
fn held_skus(append: &Append) -> impl Iterator<Item = &str> {
    let claims = match &append.inventory {
        Some(InventoryChange::Hold { claims, .. }) => claims.as_slice(),
        _ => &[],
    };
    claims.iter().map(|c| c.sku.as_str())
}

/// Takes the units of `append`'s hold from `available`, all or none;
/// the first SKU short of them if none.
fn take_from(available: &mut BTreeMap<String, i64>, append: &Append) -> Option<Sku> {
    let Some(InventoryChange::Hold { claims, .. }) = &append.inventory else {
        return None;
    };
    let short = claims
        .iter()
        .find(|c| available.get(c.sku.as_str()).is_none_or(|&a| a < c.delta));
    if let Some(c) = short {
        return Some(c.sku.clone());
    }
    for c in claims {
        if let Some(a) = available.get_mut(c.sku.as_str()) {
            *a -= c.delta;
        }
    }
    None
}

/// What the multi-row statements cover: any events, keys and saga
/// writes, and stock changes that only take stock or settle what an order
/// holds. Changing an order's items (claims that give stock back or drop
/// a SKU) goes alone.
fn batchable(append: &Append) -> bool {
    match &append.inventory {
        None
        | Some(InventoryChange::Release { .. })
        | Some(InventoryChange::Commit { .. })
        | Some(InventoryChange::Restock { .. }) => true,
        Some(InventoryChange::Hold { claims, .. }) => {
            claims.iter().all(|c| c.delta > 0 && c.quantity > 0)
        }
    }
}

/// Why a batch could not be written whole.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Conflict(&'static str),
}

// Each statement joins its arrays to a table by key; the key also goes in
// as `= ANY($1)` so the planner finds the rows by index rather than
// hashing the UNNEST against a scan of the whole table.
async fn write(pool: &PgPool, appends: &[&Append]) -> Result<(), Refused> {
    let mut tx = pool.begin().await?;
    keys(&mut tx, appends).await?;
    events(&mut tx, appends).await?;
    views(&mut tx, appends).await?;
    sagas(&mut tx, appends).await?;
    stock(&mut tx, appends).await?;
    tx.commit().await?;
    Ok(())
}

async fn keys(tx: &mut PgConnection, appends: &[&Append]) -> Result<(), Refused> {
    let keys: Vec<_> = appends.iter().flat_map(|a| &a.idempotency).collect();
    if keys.is_empty() {
        return Ok(());
    }
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (customer_id, idem_key, request_hash, order_id, created_at) \
         SELECT k.customer_id, k.idem_key, k.request_hash, k.order_id, now() \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[]) \
         AS k(customer_id, idem_key, request_hash, order_id) \
         ON CONFLICT DO NOTHING",
    )
    .bind(keys.iter().map(|k| k.customer_id).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>())
    .bind(
        keys.iter()
            .map(|k| k.request_hash.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(keys.iter().map(|k| k.order_id).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() != keys.len() as u64 {
        return Err(Refused::Conflict("an idempotency key is taken"));
    }
    Ok(())
}

async fn events(tx: &mut PgConnection, appends: &[&Append]) -> Result<(), Refused> {
    let mut ids = Vec::new();
    let mut aggregates = Vec::new();
    let mut types = Vec::new();
    let mut event_types = Vec::new();
    let mut schemas = Vec::new();
    let mut data = Vec::new();
    let mut versions = Vec::new();
    let mut at = Vec::new();
    for a in appends {
        for (i, e) in a.events.iter().enumerate() {
            ids.push(e.event_id);
            aggregates.push(a.aggregate_id);
            types.push(a.aggregate_type);
            event_types.push(e.event_type);
            schemas.push(e.schema_version as i32);
            data.push(Json(&e.data));
            versions.push((a.expected_version + 1 + i as u64) as i64);
            at.push(e.recorded_at);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    // UNNEST keeps the arrays' order, so positions follow it: an
    // aggregate's events are in version order in the feed.
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, \
         schema_version, event_data, version, created_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[], \
         $6::jsonb[], $7::int8[], $8::timestamptz[])",
    )
    .bind(ids)
    .bind(aggregates)
    .bind(types)
    .bind(event_types)
    .bind(schemas)
    .bind(data)
    .bind(versions)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn views(tx: &mut PgConnection, appends: &[&Append]) -> Result<(), Refused> {
    let v: Vec<_> = appends.iter().map(|a| &a.view).collect();
    sqlx::query(
        "INSERT INTO order_views (order_id, customer_id, status, currency, total_amount, items, \
         status_reason, version, created_at, updated_at, subtotal_amount, adjustments, \
         refunded_amount) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::numeric[], \
         $6::jsonb[], $7::text[], $8::int8[], $9::timestamptz[], $10::timestamptz[], \
         $11::numeric[], $12::jsonb[], $13::numeric[]) \
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, \
         currency = EXCLUDED.currency, total_amount = EXCLUDED.total_amount, \
         items = EXCLUDED.items, subtotal_amount = EXCLUDED.subtotal_amount, \
         adjustments = EXCLUDED.adjustments, status_reason = EXCLUDED.status_reason, \
         version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, \
         refunded_amount = EXCLUDED.refunded_amount",
    )
    .bind(v.iter().map(|v| v.id).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.customer_id).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.status.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.currency.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.total).collect::<Vec<Decimal>>())
    .bind(v.iter().map(|v| Json(&v.items)).collect::<Vec<_>>())
    .bind(
        v.iter()
            .map(|v| v.status_reason.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(v.iter().map(|v| v.version as i64).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.created_at).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.updated_at).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.subtotal).collect::<Vec<Decimal>>())
    .bind(v.iter().map(|v| Json(&v.adjustments)).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.refunded).collect::<Vec<Decimal>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn sagas(tx: &mut PgConnection, appends: &[&Append]) -> Result<(), Refused> {
    let writes: Vec<_> = appends.iter().filter_map(|a| a.saga.as_ref()).collect();
    if writes.is_empty() {
        return Ok(());
    }
    let (new, moved): (Vec<_>, Vec<_>) = writes.iter().partition(|w| w.expected_revision.is_none());
    if !new.is_empty() {
        insert_sagas(tx, &new).await?;
    }
    if !moved.is_empty() {
        update_sagas(tx, &moved).await?;
    }
    let history: Vec<_> = writes.iter().flat_map(|w| &w.history).collect();
    if !history.is_empty() {
        insert_history(tx, &history).await?;
    }
    Ok(())
}

/// Inserts the sagas started in this batch.
async fn insert_sagas(tx: &mut PgConnection, new: &[&&SagaWrite]) -> Result<(), Refused> {
    bind_saga_columns(
        sqlx::query(
            "INSERT INTO saga_instances (saga_id, current_step, saga_data, status, revision, \
         attempts, next_attempt_at, lease_owner, lease_until, updated_at, saga_type, \
         correlation_id, created_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::int8[], \
         $6::int4[], $7::timestamptz[], $8::text[], $9::timestamptz[], $10::timestamptz[], \
         $11::text[], $12::uuid[], $13::timestamptz[])",
        ),
        new,
    )
    .bind(
        new.iter()
            .map(|w| w.instance.saga_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|w| w.instance.correlation_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|w| w.instance.created_at)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves on the sagas of this batch, each at the revision it was read at;
/// one that moved meanwhile refuses the batch.
async fn update_sagas(tx: &mut PgConnection, moved: &[&&SagaWrite]) -> Result<(), Refused> {
    let updated = bind_saga_columns(
        sqlx::query(
            "UPDATE saga_instances AS s SET current_step = v.current_step, \
         saga_data = v.saga_data, status = v.status, revision = v.revision, \
         attempts = v.attempts, next_attempt_at = v.next_attempt_at, \
         lease_owner = v.lease_owner, lease_until = v.lease_until, updated_at = v.updated_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::int8[], \
         $6::int4[], $7::timestamptz[], $8::text[], $9::timestamptz[], $10::timestamptz[], \
         $11::int8[]) AS v(saga_id, current_step, saga_data, status, revision, attempts, \
         next_attempt_at, lease_owner, lease_until, updated_at, expected) \
         WHERE s.saga_id = ANY($1) AND s.saga_id = v.saga_id AND s.revision = v.expected",
        ),
        moved,
    )
    .bind(
        moved
            .iter()
            .map(|w| w.expected_revision.unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != moved.len() as u64 {
        return Err(Refused::Conflict("a saga moved on"));
    }
    Ok(())
}

/// Appends the batch's saga history.
async fn insert_history(tx: &mut PgConnection, history: &[&SagaStepRecord]) -> Result<(), Refused> {
    sqlx::query(
        "INSERT INTO saga_steps (record_id, saga_id, step, phase, outcome, detail, attempt, at) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::int4[], $8::timestamptz[])",
    )
    .bind(history.iter().map(|h| h.record_id).collect::<Vec<_>>())
    .bind(history.iter().map(|h| h.saga_id).collect::<Vec<_>>())
    .bind(history.iter().map(|h| h.step.as_str()).collect::<Vec<_>>())
    .bind(history.iter().map(|h| h.phase.as_str()).collect::<Vec<_>>())
    .bind(
        history
            .iter()
            .map(|h| h.outcome.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        history
            .iter()
            .map(|h| h.detail.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(history.iter().map(|h| h.attempt).collect::<Vec<_>>())
    .bind(history.iter().map(|h| h.at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Binds $1..$10, the columns a saga insert and update share, one array
/// each.
fn bind_saga_columns<'a>(
    query: Query<'a, Postgres, PgArguments>,
    writes: &[&&'a SagaWrite],
) -> Query<'a, Postgres, PgArguments> {
    let s: Vec<&'a SagaInstance> = writes.iter().map(|w| &w.instance).collect();
    query
        .bind(s.iter().map(|s| s.saga_id).collect::<Vec<_>>())
        .bind(s.iter().map(|s| s.current_step()).collect::<Vec<_>>())
        .bind(s.iter().map(|s| Json(&s.data)).collect::<Vec<_>>())
        .bind(s.iter().map(|s| status_str(s.status())).collect::<Vec<_>>())
        .bind(s.iter().map(|s| s.revision).collect::<Vec<_>>())
        .bind(s.iter().map(|s| s.attempts).collect::<Vec<_>>())
        .bind(s.iter().map(|s| s.next_attempt_at).collect::<Vec<_>>())
        .bind(
            s.iter()
                .map(|s| s.lease_owner.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(s.iter().map(|s| s.lease_until).collect::<Vec<_>>())
        .bind(s.iter().map(|s| s.updated_at).collect::<Vec<_>>())
}

/// How one product moves in this batch.
#[derive(Default)]
struct Movement {
    on_hand: i64,
    reserved: i64,
}

async fn stock(tx: &mut PgConnection, appends: &[&Append]) -> Result<(), Refused> {
    let mut moves: BTreeMap<String, Movement> = BTreeMap::new();
    let at: DateTime<Utc> = appends
        .iter()
        .map(|a| a.view.updated_at)
        .max()
        .unwrap_or_else(Utc::now);

    // What orders held and now settle: committed (leaves the shelf) or released.
    let mut settle_orders = Vec::new();
    let mut settle_states = Vec::new();
    // New holds.
    let (mut h_order, mut h_sku, mut h_qty, mut h_expiry, mut h_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for a in appends {
        match &a.inventory {
            None => {}
            Some(InventoryChange::Release { order_id }) => {
                settle_orders.push(*order_id);
                settle_states.push("released");
            }
            Some(InventoryChange::Commit { order_id }) => {
                settle_orders.push(*order_id);
                settle_states.push("committed");
            }
            Some(InventoryChange::Restock { units, .. }) => {
                for (sku, quantity) in units {
                    moves.entry(sku.as_str().to_owned()).or_default().on_hand += quantity;
                }
            }
            Some(InventoryChange::Hold {
                order_id,
                claims,
                expires_at,
            }) => {
                for c in claims {
                    moves.entry(c.sku.as_str().to_owned()).or_default().reserved += c.delta;
                    h_order.push(*order_id);
                    h_sku.push(c.sku.as_str());
                    h_qty.push(c.quantity);
                    h_expiry.push(*expires_at);
                    h_at.push(a.view.updated_at);
                }
            }
        }
    }
    if !settle_orders.is_empty() {
        settle(tx, &settle_orders, &settle_states, at, &mut moves).await?;
    }
    if !h_order.is_empty() {
        let holds = Holds {
            order: &h_order,
            sku: &h_sku,
            quantity: &h_qty,
            expiry: &h_expiry,
            at: &h_at,
        };
        insert_holds(tx, holds).await?;
    }
    moves.retain(|_, m| m.on_hand != 0 || m.reserved != 0);
    if moves.is_empty() {
        return Ok(());
    }
    apply_moves(tx, &moves, at).await
}

/// Moves each product's stock by the batch's net movement, locked in SKU
/// order; a product without the units refuses the batch.
async fn apply_moves(
    tx: &mut PgConnection,
    moves: &BTreeMap<String, Movement>,
    at: DateTime<Utc>,
) -> Result<(), Refused> {
    let skus: Vec<&str> = moves.keys().map(String::as_str).collect();
    // Stock last, locked in SKU order: a hot product's row is held for
    // the shortest time, and never in an order that could deadlock.
    sqlx::query("SELECT 1 FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE")
        .bind(&skus)
        .execute(&mut *tx)
        .await?;
    let updated = sqlx::query(
        "UPDATE products AS p SET on_hand = p.on_hand + v.on_hand, \
         reserved = p.reserved + v.reserved, version = p.version + 1, updated_at = $4 \
         FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS v(sku, on_hand, reserved) \
         WHERE p.sku = ANY($1) AND p.sku = v.sku AND p.reserved + v.reserved >= 0 \
         AND p.on_hand + v.on_hand >= p.reserved + v.reserved",
    )
    .bind(&skus)
    .bind(moves.values().map(|m| m.on_hand).collect::<Vec<_>>())
    .bind(moves.values().map(|m| m.reserved).collect::<Vec<_>>())
    .bind(at)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != skus.len() as u64 {
        return Err(Refused::Conflict("not enough stock for the whole batch"));
    }
    Ok(())
}

/// Settles the reservations of orders whose hold ends in this batch
/// (committed: the units leave the shelf; released: they are free again)
/// and adds what that does to each product to `moves`.
async fn settle(
    tx: &mut PgConnection,
    settle_orders: &[Uuid],
    settle_states: &[&str],
    at: DateTime<Utc>,
    moves: &mut BTreeMap<String, Movement>,
) -> Result<(), Refused> {
    let settled = sqlx::query(
        "UPDATE reservations AS r SET state = v.state, updated_at = $3 \
         FROM UNNEST($1::uuid[], $2::text[]) AS v(order_id, state) \
         WHERE r.order_id = ANY($1) AND r.order_id = v.order_id AND r.state = 'held' \
         RETURNING r.sku, r.quantity, v.state",
    )
    .bind(settle_orders)
    .bind(settle_states)
    .bind(at)
    .fetch_all(&mut *tx)
    .await?;
    for row in settled {
        let sku: String = row.try_get(0)?;
        let quantity: i64 = row.try_get(1)?;
        let state: String = row.try_get(2)?;
        let m = moves.entry(sku).or_default();
        m.reserved -= quantity;
        if state == "committed" {
            m.on_hand -= quantity;
        }
    }
    Ok(())
}

/// The holds of this batch, one array per column.
struct Holds<'a> {
    order: &'a [Uuid],
    sku: &'a [&'a str],
    quantity: &'a [i64],
    expiry: &'a [DateTime<Utc>],
    at: &'a [DateTime<Utc>],
}

/// Records the batch's new holds (a held order holding anew replaces its
/// line).
async fn insert_holds(tx: &mut PgConnection, holds: Holds<'_>) -> Result<(), Refused> {
    sqlx::query(
        "INSERT INTO reservations (order_id, sku, quantity, state, expires_at, created_at, updated_at) \
         SELECT h.order_id, h.sku, h.quantity, 'held', h.expires_at, h.at, h.at \
         FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::timestamptz[], $5::timestamptz[]) \
         AS h(order_id, sku, quantity, expires_at, at) \
         ON CONFLICT (order_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity, \
         state = 'held', expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at",
    )
    .bind(holds.order)
    .bind(holds.sku)
    .bind(holds.quantity)
    .bind(holds.expiry)
    .bind(holds.at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
