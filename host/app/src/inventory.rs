//! Inventory use cases: holding stock for orders with optimistic locking,
//! releasing what nobody paid for in time, and manual stock adjustments.
//!
//! Holding stock is planned on the stock as read (`domain::inventory`) and
//! written with the order's events in one transaction. A claim whose
//! product moved on is first retried by the store on the new version,
//! inside the transaction, while the units are there; if it still fails
//! (`StoreError::StockConflict`), the whole write is planned again on
//! fresh numbers after a short, jittered, exponentially growing pause. The number of attempts is
//! bounded; no lock is held across attempts and nothing in the host
//! serializes orders.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use super::catalog::{MAX_STOCK, ProductView};
use super::ports::{Product, StockAdjustment};
use super::{AppError, Caller, Inventory, now};
use commerce_domain::inventory::{AdjustError, adjust_on_hand};
use commerce_domain::{Sku, Stock};

/// Prometheus counters of the reservation path.
pub(crate) const HOLD_CONFLICTS: &str = "commerce_inventory_hold_conflicts_total";
pub(crate) const OUT_OF_STOCK: &str = "commerce_inventory_out_of_stock_total";
pub(crate) const EXPIRED: &str = "commerce_inventory_holds_expired_total";
pub(crate) const CACHE_MISMATCHES: &str = "commerce_inventory_cache_mismatches_total";
/// Claims that found their product moved on and were retried on the new
/// version inside their transaction (counted by the store adapters).
pub const CLAIM_REREADS: &str = "commerce_inventory_claim_rereads_total";
/// Time to commit a write that changes stock, by operation: `hold`
/// (placing an order), `release` (cancel, failure, expiry), `commit`
/// (payment takes the units off the shelf), `adjust` (admin).
pub const INVENTORY_UPDATE_DURATION: &str = "commerce_inventory_update_duration_seconds";

/// Longest reason on a stock adjustment.
pub const MAX_ADJUST_REASON_LEN: usize = 500;

/// How holds behave; set from the command line.
#[derive(Debug, Clone, Copy)]
pub struct InventorySettings {
    /// How long stock stays held for an order that nobody pays for.
    pub reservation_ttl: Duration,
    /// Attempts at a write whose stock claim lost a race, in total.
    pub max_attempts: u32,
    /// First pause after a lost race; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest pause between attempts.
    pub backoff_cap: Duration,
    /// Most orders a customer holds unpaid at once.
    pub max_unpaid_orders: i64,
    /// Most units a customer holds across unpaid orders.
    pub max_unpaid_units: i64,
}

impl Default for InventorySettings {
    fn default() -> Self {
        InventorySettings {
            reservation_ttl: Duration::from_secs(15 * 60),
            max_attempts: 50,
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(20),
            max_unpaid_orders: 10,
            max_unpaid_units: 1000,
        }
    }
}

impl InventorySettings {
    /// The pause before attempt `attempt + 1`: "full jitter", a uniform
    /// draw below an exponentially growing ceiling, so that the losers of
    /// one race do not all come back at the same instant.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.backoff_cap);
        let micros = ceiling.as_micros().max(1) as u64;
        Duration::from_micros(rand::rng().random_range(0..=micros))
    }
}

/// Counters of the reservation path, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct InventoryStats {
    /// Writes that carried a stock claim (every attempt counts).
    pub hold_attempts: AtomicU64,
    /// Attempts refused because a product moved on (then retried).
    pub hold_conflicts: AtomicU64,
    /// Orders refused for lack of stock.
    pub out_of_stock: AtomicU64,
    /// Writes that gave up after `max_attempts`.
    pub exhausted: AtomicU64,
    /// Orders whose hold expired and was released by the sweeper.
    pub expired: AtomicU64,
    /// Product reads answered by the stock cache.
    pub cache_hits: AtomicU64,
    /// Cache entries found drifted from the database (and repaired).
    pub cache_mismatches: AtomicU64,
}

impl InventoryStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Bumps `counter` and the Prometheus counter `name`.
    pub(crate) fn count(counter: &AtomicU64, name: &'static str) {
        Self::bump(counter);
        metrics::counter!(name).increment(1);
    }
}

/// `POST /v1/products/{sku}/adjust`, parsed.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    /// Units to add (positive) or remove (negative) from `on_hand`.
    #[serde(deserialize_with = "commerce_domain::wire::whole_number")]
    pub delta: i64,
    /// Why: a delivery, a stock count, damage.
    pub reason: String,
}

/// The stock of each product in `products`, as the planner sees it.
pub(crate) fn stock_of(products: &HashMap<Sku, Product>) -> BTreeMap<Sku, Stock> {
    products
        .iter()
        .map(|(sku, p)| {
            (
                sku.clone(),
                Stock {
                    available: p.on_hand - p.reserved,
                    version: p.version,
                },
            )
        })
        .collect()
}

impl Inventory<'_> {
    /// Loads the products among `skus`, by SKU (no read for none).
    pub(crate) async fn load_products(
        &self,
        skus: &[Sku],
    ) -> Result<HashMap<Sku, Product>, AppError> {
        if skus.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self
            .store
            .get_products(skus)
            .await?
            .into_iter()
            .map(|p| (p.sku.clone(), p))
            .collect())
    }

    /// Adds to or removes from a product's stock (admin), never below what
    /// is reserved for orders, with optimistic locking like every stock write.
    pub async fn adjust_stock(
        &self,
        caller: Caller,
        sku: Sku,
        request: AdjustStock,
    ) -> Result<ProductView, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let reason = request.reason.trim();
        if reason.is_empty() || request.reason.chars().count() > MAX_ADJUST_REASON_LEN {
            return Err(AppError::Invalid(format!(
                "reason must be 1 to {MAX_ADJUST_REASON_LEN} characters"
            )));
        }
        let mut attempt = 0;
        loop {
            let product = self
                .store
                .get_product(&sku)
                .await?
                .ok_or(AppError::NotFound("product"))?;
            adjust_on_hand(product.on_hand, product.reserved, request.delta, MAX_STOCK).map_err(
                |e| match e {
                    AdjustError::BelowReserved { .. } => AppError::Conflict(e.to_string()),
                    _ => AppError::Invalid(e.to_string()),
                },
            )?;
            let started = std::time::Instant::now();
            let adjusted = self
                .store
                .adjust_stock(StockAdjustment {
                    sku: sku.clone(),
                    delta: request.delta,
                    expected_version: product.version,
                    reason: reason.to_owned(),
                    actor: caller.subject,
                    at: now(),
                })
                .await?;
            match adjusted {
                Some(product) => {
                    metrics::histogram!(INVENTORY_UPDATE_DURATION, "operation" => "adjust")
                        .record(started.elapsed().as_secs_f64());
                    tracing::info!(%sku, delta = request.delta, on_hand = product.on_hand, reserved = product.reserved, reason, "stock adjusted");
                    self.stock_changed(std::slice::from_ref(&sku)).await;
                    return Ok(product.into());
                }
                None if attempt + 1 < self.inventory_settings.max_attempts => {
                    tokio::time::sleep(self.inventory_settings.backoff(attempt)).await;
                    attempt += 1;
                }
                None => {
                    return Err(AppError::Conflict(format!(
                        "the stock of {sku} is changing concurrently; retry"
                    )));
                }
            }
        }
    }
}
