//! Cached availability: `GET /v1/products/{sku}` reads through a cache
//! (Redis when configured), writes refresh it after they commit, and a
//! reconciler compares it with the database, repairs drift and counts it
//! (the `InventoryMismatch` alert).
//!
//! The database is the truth and every stock decision is taken there; the
//! cache only answers reads. A cache that fails is skipped, never a reason
//! to fail a request.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::inventory::InventoryStats;
use super::ports::{Product, StockCache};
use super::{App, AppError, Inventory};
use commerce_domain::Sku;

/// Products compared per round trip by the reconciler.
const RECONCILE_PAGE: u32 = 500;
/// Longest a write waits for its cache refresh.
const REFRESH_BUDGET: Duration = Duration::from_millis(200);
/// How long a suspected drift is given to settle (a refresh in flight)
/// before it counts as a mismatch.
const SETTLE: Duration = Duration::from_millis(500);

/// Cache refreshes after writes, coalesced: the SKUs of every write that
/// committed while a refresh was running go into the next one, a single
/// database read and cache write for all of them. A writer still waits
/// for a refresh that began after its commit, so it reads its own write.
#[derive(Clone)]
pub struct StockRefresher {
    queue: mpsc::UnboundedSender<(Vec<Sku>, oneshot::Sender<()>)>,
}

impl StockRefresher {
    /// Starts the refresher of `cache` from `store`; it stops when the
    /// last `StockRefresher` clone is dropped.
    pub fn start(store: Arc<dyn Store>, cache: Arc<dyn StockCache>) -> StockRefresher {
        let (queue, mut jobs) = mpsc::unbounded_channel::<(Vec<Sku>, oneshot::Sender<()>)>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while jobs.recv_many(&mut batch, 1024).await > 0 {
                let skus: Vec<Sku> = batch
                    .iter()
                    .flat_map(|(skus, _)| skus.iter().cloned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let refresh = async {
                    let products = store.get_products(&skus).await?;
                    cache.put(&products).await
                };
                match tokio::time::timeout(REFRESH_BUDGET, refresh).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "stock cache not refreshed; the reconciler will")
                    }
                    Err(_) => {
                        tracing::debug!("stock cache refresh timed out; the reconciler will")
                    }
                }
                for (_, done) in batch.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        StockRefresher { queue }
    }
}

impl Inventory<'_> {
    /// A product for reading: from the cache if it holds it, else from the
    /// database (and then cached).
    pub(crate) async fn read_product(&self, sku: &Sku) -> Result<Option<Product>, AppError> {
        if let Some(cache) = &self.stock_cache {
            match cache.get_many(std::slice::from_ref(sku)).await {
                Ok(mut hits) => {
                    if let Some(Some(product)) = hits.pop() {
                        InventoryStats::bump(&self.inventory_stats.cache_hits);
                        return Ok(Some(product));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "stock cache unavailable; reading the database")
                }
            }
        }
        let product = self.store.get_product(sku).await?;
        if let (Some(cache), Some(p)) = (&self.stock_cache, &product)
            && let Err(e) = cache.put(std::slice::from_ref(p)).await
        {
            tracing::debug!(error = %e, "stock cache unavailable; not cached");
        }
        Ok(product)
    }

    /// Called after a commit that changed the stock or price of `skus`:
    /// refreshes their cache entries from the database before the caller
    /// answers, so that a client reads its own writes. The cache keeps the
    /// higher version, so a slower concurrent refresh cannot undo this one.
    /// Bounded by [`REFRESH_BUDGET`]: a slow cache delays nobody for long,
    /// and what it misses the reconciler repairs.
    pub(crate) async fn stock_changed(&self, skus: &[Sku]) {
        let Some(refresher) = &self.stock_refresher else {
            return;
        };
        if skus.is_empty() {
            return;
        }
        let (done, refreshed) = oneshot::channel();
        if refresher.queue.send((skus.to_vec(), done)).is_err() {
            return;
        }
        if tokio::time::timeout(REFRESH_BUDGET, refreshed)
            .await
            .is_err()
        {
            tracing::debug!("stock cache refresh timed out; the reconciler will");
        }
    }

    /// Compares every cached product with the database, repairs the ones
    /// that drifted, and returns how many did. An entry newer than the
    /// database read (a write that landed meanwhile) is not drift, and a
    /// suspect counts only if, a moment later, the cache is still behind
    /// what the database held at the first look: a product written many
    /// times a second is almost always one refresh behind its latest
    /// write, which is not drift.
    pub async fn reconcile_stock_cache(&self) -> Result<u64, AppError> {
        let Some(cache) = &self.stock_cache else {
            return Ok(0);
        };
        let mut after: Option<Sku> = None;
        let mut mismatches = 0;
        loop {
            let page = self
                .store
                .stock_page(after.as_ref(), RECONCILE_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.sku.clone());
            let suspects = drifted(&page, &cache.get_many(&skus_of(&page)).await?);
            if !suspects.is_empty() {
                tokio::time::sleep(SETTLE).await;
                let suspects: BTreeSet<&Sku> = suspects.iter().collect();
                let seen: Vec<Product> = page
                    .iter()
                    .filter(|p| suspects.contains(&p.sku))
                    .cloned()
                    .collect();
                let cached = cache.get_many(&skus_of(&seen)).await?;
                let confirmed = drifted(&seen, &cached);
                if !confirmed.is_empty() {
                    // Repaired with what the database holds now (the
                    // cache keeps the newer version if a refresh wins).
                    let repair = self.store.get_products(&confirmed).await?;
                    cache.put(&repair).await?;
                    tracing::warn!(skus = ?confirmed, "stock cache drifted from the database; repaired");
                    mismatches += confirmed.len() as u64;
                }
            }
            if (page.len() as u32) < RECONCILE_PAGE {
                break;
            }
        }
        self.inventory_stats
            .cache_mismatches
            .fetch_add(mismatches, std::sync::atomic::Ordering::Relaxed);
        // Always touched, so that the series exists (at 0) for the alert.
        metrics::counter!(super::inventory::CACHE_MISMATCHES).increment(mismatches);
        Ok(mismatches)
    }
}

fn skus_of(products: &[Product]) -> Vec<Sku> {
    products.iter().map(|p| p.sku.clone()).collect()
}

/// SKUs whose cache entry is older than, or disagrees at the same version
/// with, the database. Missing entries are not drift (reads fill them).
fn drifted(truth: &[Product], cached: &[Option<Product>]) -> Vec<Sku> {
    truth
        .iter()
        .zip(cached)
        .filter_map(|(db, cached)| match cached {
            Some(c) if c.version < db.version || (c.version == db.version && c != db) => {
                Some(db.sku.clone())
            }
            _ => None,
        })
        .collect()
}

/// Runs the reconciler for the life of the process, every `every`.
pub async fn run_reconciler(app: App, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = app.inventory().reconcile_stock_cache().await {
            tracing::warn!(error = %e, "stock cache reconciliation failed; retrying next round");
        }
    }
}
