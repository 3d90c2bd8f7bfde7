//! The ports of `commerce_app::ports` for a SQL backend's store, written
//! once: [`sql_store_ports!`] implements every port for a type that
//! implements [`SqlStore`] (Rust's orphan rule forbids a blanket impl of
//! the application's traits, so a macro names the type). A store says
//! which pool reads and which writes take, and brings its own machinery
//! for the three things that differ: how an append is written
//! (PostgreSQL's group commit), and how products and sagas are read by
//! key (PostgreSQL's read coalescing).

use std::future::Future;

use chrono::Utc;
use sqlx::Pool;
use uuid::Uuid;

use super::cart::CartSql;
use super::events::EventSql;
use super::inventory::{self, InventorySql};
use super::plugins::PluginSql;
use super::saga::{self, SagaSql};
use super::{Arg, Backend, execute};
use crate::classify;
use commerce_app::ports::{Append, InventoryChange, Product, StoreError};
use commerce_app::saga::{SagaInstance, SagaWrite};
use commerce_domain::Sku;

/// A SQL backend's store.
pub(crate) trait SqlStore: Send + Sync {
    type DB: Backend + EventSql + InventorySql + SagaSql + PluginSql + CartSql;
    /// `Store::backend`.
    const NAME: &'static str;

    /// The pool reads take.
    fn reads(&self) -> &Pool<Self::DB>;
    /// The pool writes take.
    fn writes(&self) -> &Pool<Self::DB>;
    /// `EventStore::append`.
    fn write_append(&self, append: Append) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The products of these SKUs that exist, in no particular order.
    fn products_by_sku(
        &self,
        skus: Vec<Sku>,
    ) -> impl Future<Output = Result<Vec<Product>, StoreError>> + Send;
    /// `SagaStore::get_saga`.
    fn saga_by_id(
        &self,
        saga_id: Uuid,
    ) -> impl Future<Output = Result<Option<SagaInstance>, StoreError>> + Send;
}

/// One append in its own transaction: idempotency keys, events, view,
/// saga, and its stock last, or first where the backend says so
/// (`InventorySql::STOCK_FIRST`).
pub(crate) async fn append_one<DB>(writer: &Pool<DB>, append: &Append) -> Result<(), StoreError>
where
    DB: Backend + EventSql + InventorySql + SagaSql,
{
    let mut tx = writer.begin().await.map_err(classify)?;
    let stock = append.inventory.as_ref();
    if let Some(change) = stock.filter(|_| DB::STOCK_FIRST)
        && let Err(refused) = inventory::apply::<DB>(&mut tx, change, append.view.updated_at).await
    {
        // Looking at the stock first must not change the answer: a key
        // already used or a stale version still says so.
        return Err(refused_before_stock::<DB>(&mut tx, append)
            .await?
            .unwrap_or(refused));
    }
    for key in &append.idempotency {
        let statement = sqlx::query(DB::INSERT_KEY)
            .arg(key.customer_id)
            .arg(key.key.clone())
            .arg(key.request_hash.clone())
            .arg(key.order_id)
            .arg(Utc::now());
        if execute(statement, DB::on(&mut tx)).await? == 0 {
            return Err(StoreError::IdempotencyKeyTaken);
        }
    }
    super::events::insert_events::<DB>(&mut tx, append).await?;
    super::events::upsert_view::<DB>(&mut tx, &append.view).await?;
    if let Some(saga) = &append.saga {
        saga::apply::<DB>(&mut tx, saga).await?;
    }
    if let Some(change) = stock.filter(|_| !DB::STOCK_FIRST) {
        inventory::apply::<DB>(&mut tx, change, append.view.updated_at).await?;
    }
    tx.commit().await.map_err(classify)
}

/// What a write of `append` would have been refused for before its stock
/// was reached: its idempotency key already used, or the version after
/// the one it expects already taken.
pub(crate) async fn refused_before_stock<DB>(
    conn: &mut DB::Connection,
    append: &Append,
) -> Result<Option<StoreError>, StoreError>
where
    DB: Backend + EventSql,
{
    for key in &append.idempotency {
        let found = sqlx::query(DB::FIND_IDEMPOTENCY)
            .arg(key.customer_id)
            .arg(key.key.clone())
            .fetch_optional(DB::on(&mut *conn))
            .await
            .map_err(classify)?;
        if found.is_some() {
            return Ok(Some(StoreError::IdempotencyKeyTaken));
        }
    }
    if append.events.is_empty() {
        return Ok(None);
    }
    let found = sqlx::query(DB::VERSION_TAKEN)
        .arg(append.aggregate_id)
        .arg((append.expected_version + 1) as i64)
        .fetch_optional(DB::on(&mut *conn))
        .await
        .map_err(classify)?;
    Ok(found.map(|_| StoreError::VersionConflict {
        aggregate_id: append.aggregate_id,
        expected: append.expected_version,
    }))
}

/// `SagaStore::save_saga`: the saga's write and its stock change in one
/// transaction.
pub(crate) async fn save_saga<DB>(
    writer: &Pool<DB>,
    write: SagaWrite,
    change: Option<InventoryChange>,
) -> Result<(), StoreError>
where
    DB: Backend + InventorySql + SagaSql,
{
    let mut tx = writer.begin().await.map_err(classify)?;
    saga::apply::<DB>(&mut tx, &write).await?;
    if let Some(change) = &change {
        inventory::apply::<DB>(&mut tx, change, write.instance.updated_at).await?;
    }
    tx.commit().await.map_err(classify)
}

/// Implements every storage port (and `Store`) for `$store: SqlStore`.
macro_rules! sql_store_ports {
    ($store:ty) => {
        const _: () = {
            use std::time::Duration;

            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use uuid::Uuid;

            use commerce_app::Store;
            use commerce_app::ports::*;
            use commerce_app::saga::{SagaInstance, SagaStepRecord, SagaWrite};
            use commerce_app::views::{OrderQuery, OrderView};
            use commerce_domain::saga::SagaStatus;
            use commerce_domain::{Currency, Quantity, Sku};
            use $crate::shared::ports::SqlStore;
            use $crate::shared::{cart, events, inventory, plugins, ports, saga};

            #[async_trait]
            impl Store for $store {
                fn backend(&self) -> &'static str {
                    <$store as SqlStore>::NAME
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    events::ping(self.reads()).await
                }
            }

            #[async_trait]
            impl EventStore for $store {
                async fn append(&self, append: Append) -> Result<(), StoreError> {
                    self.write_append(append).await
                }

                async fn load_stream(&self, id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
                    events::load_stream(self.reads(), id).await
                }

                async fn read_after(
                    &self,
                    after: i64,
                    limit: u32,
                ) -> Result<Vec<StoredEvent>, StoreError> {
                    events::read_after(self.reads(), after, limit).await
                }

                async fn read_feed(
                    &self,
                    after: FeedCursor,
                    limit: u32,
                ) -> Result<Vec<FeedEvent>, StoreError> {
                    events::read_feed(self.reads(), after, limit).await
                }

                async fn find_idempotency(
                    &self,
                    customer_id: Uuid,
                    key: &str,
                ) -> Result<Option<IdempotencyRecord>, StoreError> {
                    events::find_idempotency(self.reads(), customer_id, key).await
                }

                async fn purge_idempotency_keys(
                    &self,
                    before: DateTime<Utc>,
                    limit: u32,
                ) -> Result<u64, StoreError> {
                    events::purge_keys(self.writes(), before, limit).await
                }
            }

            #[async_trait]
            impl OrderViews for $store {
                async fn get_view(&self, order_id: Uuid) -> Result<Option<OrderView>, StoreError> {
                    events::get_view(self.reads(), order_id).await
                }

                async fn list_views(
                    &self,
                    query: &OrderQuery,
                ) -> Result<Vec<OrderView>, StoreError> {
                    events::list_views(self.reads(), query).await
                }

                async fn order_ids_from(
                    &self,
                    from: Option<Uuid>,
                    limit: u32,
                ) -> Result<Vec<Uuid>, StoreError> {
                    events::order_ids_from(self.reads(), from, limit).await
                }

                async fn unpaid_holds(&self, customer_id: Uuid) -> Result<UnpaidHolds, StoreError> {
                    events::unpaid_holds(self.reads(), customer_id).await
                }

                async fn refresh_views(&self, views: Vec<OrderView>) -> Result<(), StoreError> {
                    events::refresh_views(self.writes(), views).await
                }
            }

            #[async_trait]
            impl Catalog for $store {
                async fn upsert_product(
                    &self,
                    p: ProductUpsert,
                ) -> Result<Option<Product>, StoreError> {
                    events::upsert_product(self.writes(), p).await
                }

                async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError> {
                    Ok(self.products_by_sku(vec![sku.clone()]).await?.pop())
                }

                async fn get_products(&self, skus: &[Sku]) -> Result<Vec<Product>, StoreError> {
                    if skus.is_empty() {
                        return Ok(vec![]);
                    }
                    self.products_by_sku(skus.to_vec()).await
                }
            }

            #[async_trait]
            impl Inventory for $store {
                async fn reservations(
                    &self,
                    order_id: Uuid,
                ) -> Result<Vec<Reservation>, StoreError> {
                    inventory::reservations(self.reads(), order_id).await
                }

                async fn expired_holds(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                ) -> Result<Vec<Uuid>, StoreError> {
                    inventory::expired_holds(self.reads(), now, limit).await
                }

                async fn release_holds(
                    &self,
                    order_id: Uuid,
                    at: DateTime<Utc>,
                ) -> Result<i64, StoreError> {
                    inventory::release_holds(self.writes(), order_id, at).await
                }

                async fn adjust_stock(
                    &self,
                    a: StockAdjustment,
                ) -> Result<Option<Product>, StoreError> {
                    inventory::adjust_stock(self.writes(), a).await
                }

                async fn stock_page(
                    &self,
                    after: Option<&Sku>,
                    limit: u32,
                ) -> Result<Vec<Product>, StoreError> {
                    inventory::stock_page(self.reads(), after, limit).await
                }
            }

            #[async_trait]
            impl SagaStore for $store {
                async fn save_saga(
                    &self,
                    write: SagaWrite,
                    inventory: Option<InventoryChange>,
                ) -> Result<(), StoreError> {
                    ports::save_saga(self.writes(), write, inventory).await
                }

                async fn get_saga(
                    &self,
                    saga_id: Uuid,
                ) -> Result<Option<SagaInstance>, StoreError> {
                    self.saga_by_id(saga_id).await
                }

                async fn saga_of_type(
                    &self,
                    saga_type: &str,
                    correlation_id: Uuid,
                ) -> Result<Option<SagaInstance>, StoreError> {
                    saga::saga_of(self.reads(), saga_type, correlation_id).await
                }

                async fn saga_history(
                    &self,
                    saga_id: Uuid,
                ) -> Result<Vec<SagaStepRecord>, StoreError> {
                    saga::history(self.reads(), saga_id).await
                }

                async fn list_sagas(
                    &self,
                    status: Option<SagaStatus>,
                    after: Option<Uuid>,
                    limit: u32,
                ) -> Result<Vec<SagaInstance>, StoreError> {
                    saga::list(self.reads(), status, after, limit).await
                }

                async fn claim_sagas(
                    &self,
                    owner: &str,
                    now: DateTime<Utc>,
                    lease_until: DateTime<Utc>,
                    limit: u32,
                ) -> Result<Vec<SagaInstance>, StoreError> {
                    saga::claim(self.writes(), owner, now, lease_until, limit).await
                }

                async fn release_saga_leases(&self, owner: &str) -> Result<u64, StoreError> {
                    saga::release(self.writes(), owner).await
                }

                async fn count_sagas(&self, status: SagaStatus) -> Result<i64, StoreError> {
                    saga::count(self.reads(), status).await
                }
            }

            #[async_trait]
            impl PluginRegistry for $store {
                async fn insert_plugin_version(
                    &self,
                    new: NewPluginVersion,
                ) -> Result<Option<PluginRecord>, StoreError> {
                    plugins::insert_version(self.writes(), new).await
                }

                async fn list_plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
                    plugins::list(self.reads()).await
                }

                async fn prune_plugin_versions(
                    &self,
                    name: &str,
                    keep: u32,
                ) -> Result<u64, StoreError> {
                    plugins::prune(self.writes(), name, keep).await
                }

                async fn activate_plugin(
                    &self,
                    name: &str,
                    version: Option<i64>,
                ) -> Result<Option<PluginRecord>, StoreError> {
                    plugins::activate(self.writes(), name, version).await
                }

                async fn rollback_plugin(
                    &self,
                    name: &str,
                ) -> Result<Option<PluginRecord>, StoreError> {
                    plugins::rollback(self.writes(), name).await
                }

                async fn remove_plugin(&self, name: &str) -> Result<bool, StoreError> {
                    plugins::remove(self.writes(), name).await
                }

                async fn active_plugins(&self) -> Result<(i64, Vec<PluginRecord>), StoreError> {
                    plugins::active(self.reads()).await
                }

                async fn plugin_generation(&self) -> Result<i64, StoreError> {
                    plugins::generation(self.reads()).await
                }

                async fn plugin_bytes(
                    &self,
                    name: &str,
                    version: i64,
                ) -> Result<Option<Vec<u8>>, StoreError> {
                    plugins::bytes(self.reads(), name, version).await
                }

                async fn set_plugin_canary(
                    &self,
                    name: &str,
                    canary: Option<(i64, u8)>,
                ) -> Result<bool, StoreError> {
                    plugins::set_canary(self.writes(), name, canary).await
                }

                async fn set_plugin_shadow(
                    &self,
                    name: &str,
                    shadow: Option<(i64, u32)>,
                ) -> Result<bool, StoreError> {
                    plugins::set_shadow(self.writes(), name, shadow).await
                }

                async fn record_plugin_runs(&self, runs: &[PluginRun]) -> Result<(), StoreError> {
                    plugins::record_runs(self.writes(), runs).await
                }

                async fn plugin_runs(
                    &self,
                    name: &str,
                    outcome: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<PluginRun>, StoreError> {
                    plugins::runs(self.reads(), name, outcome, limit).await
                }

                async fn plugin_run(&self, id: Uuid) -> Result<Option<PluginRun>, StoreError> {
                    plugins::run(self.reads(), id).await
                }

                async fn prune_plugin_runs(&self, keep: u32) -> Result<u64, StoreError> {
                    plugins::prune_runs(self.writes(), keep).await
                }
            }

            // A cart read slides its expiry: reads take the writer too.
            #[async_trait]
            impl CartStore for $store {
                fn cart_backend(&self) -> &'static str {
                    <$store as SqlStore>::NAME
                }

                async fn ping_carts(&self) -> Result<(), StoreError> {
                    self.ping().await
                }

                async fn load_cart(
                    &self,
                    customer_id: Uuid,
                    ttl: Duration,
                ) -> Result<Option<StoredCart>, StoreError> {
                    cart::load(self.writes(), customer_id, ttl).await
                }

                async fn set_cart_line(
                    &self,
                    customer_id: Uuid,
                    line: (&Sku, Quantity, Currency),
                    max_lines: usize,
                    write: CartWrite,
                ) -> Result<SetLine, StoreError> {
                    cart::set_line(self.writes(), customer_id, line, max_lines, write).await
                }

                async fn remove_cart_line(
                    &self,
                    customer_id: Uuid,
                    sku: &Sku,
                    write: CartWrite,
                ) -> Result<RemoveLine, StoreError> {
                    cart::remove_line(self.writes(), customer_id, sku, write).await
                }

                async fn delete_cart(
                    &self,
                    customer_id: Uuid,
                    revision: Option<Uuid>,
                ) -> Result<bool, StoreError> {
                    cart::delete(self.writes(), customer_id, revision).await
                }

                async fn sweep_expired_carts(
                    &self,
                    _ttl: Duration,
                    limit: usize,
                ) -> Result<u64, StoreError> {
                    cart::sweep(self.writes(), limit).await
                }
            }
        };
    };
}

pub(crate) use sql_store_ports;
