//! Expiry of unpaid holds: an order placed without payment holds its
//! stock until it is paid or its hold expires; the sweeper fails expired
//! orders (which releases their stock in the same write) and releases what
//! an order that can no longer fail still holds. Its own module because it
//! uses both orders and inventory, which do not use each other.

use std::time::Duration;

use uuid::Uuid;

use crate::inventory::{EXPIRED, InventoryStats};
use crate::orders::Intent;
use crate::{App, AppError, Caller, Orders, now};
use commerce_domain::{OrderAction, OrderCommand, Sku};

impl Orders<'_> {
    /// Releases the stock of orders whose hold expired: the order fails
    /// ("reservation expired") and gives its units back in one write; an
    /// order that can no longer fail only gives them back. Returns how many
    /// orders were swept. Safe to run in several replicas at once: the
    /// order's version lock lets one failure through, and a release only
    /// touches reservations still held.
    pub async fn sweep_expired_holds(&self, limit: u32) -> Result<usize, AppError> {
        self.sweep_expired_holds_at(now(), limit).await
    }

    /// [`sweep_expired_holds`](Self::sweep_expired_holds) as if the time
    /// were `at`: the sweeper's clock, which a test moves forward.
    pub async fn sweep_expired_holds_at(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<usize, AppError> {
        let expired = self.store.expired_holds(at, limit).await?;
        let mut swept = 0;
        for order_id in expired {
            // An order whose saga still runs is the saga's to settle: it
            // captures (and commits the stock) or compensates (and
            // releases it); expiring its hold here would race it.
            if let Some(saga) = self.store.saga_of(order_id).await?
                && !saga.status().is_terminal()
            {
                continue;
            }
            match self.expire_hold(order_id).await {
                Ok(()) => swept += 1,
                Err(e) => {
                    tracing::warn!(%order_id, error = %e, "could not release an expired reservation; will retry")
                }
            }
        }
        Ok(swept)
    }

    async fn expire_hold(&self, order_id: Uuid) -> Result<(), AppError> {
        let system = Caller::system();
        let status = self
            .load_order(system, order_id)
            .await
            .ok()
            .and_then(|o| o.status);
        if let Some(status) = status
            && status.after(OrderAction::Fail).is_some()
        {
            let command = OrderCommand::Fail {
                reason: "reservation expired".into(),
            };
            match self
                .execute(system, order_id, None, Intent::Command(command))
                .await
            {
                Ok(view) => {
                    InventoryStats::count(&self.inventory_stats.expired, EXPIRED);
                    tracing::info!(order_id = %view.id, "reservation expired: order failed, stock released");
                    return Ok(());
                }
                // Moved on meanwhile (paid, cancelled): fall through and
                // release whatever is still held.
                Err(AppError::Order(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let skus: Vec<Sku> = self
            .store
            .reservations(order_id)
            .await?
            .into_iter()
            .map(|r| r.sku)
            .collect();
        let units = self.store.release_holds(order_id, now()).await?;
        if units > 0 {
            InventoryStats::count(&self.inventory_stats.expired, EXPIRED);
            tracing::warn!(%order_id, ?status, units, "reservation expired on an order that cannot fail: stock released");
            self.inventory().stock_changed(&skus).await;
        }
        Ok(())
    }
}

/// Runs the expiry sweeper for the life of the process: every `every`, up
/// to 500 expired orders a round, more rounds at once while there are more.
pub async fn run_sweeper(app: App, every: Duration) {
    const BATCH: u32 = 500;
    loop {
        tokio::time::sleep(every).await;
        loop {
            match app.orders().sweep_expired_holds(BATCH).await {
                Ok(n) if n as u32 == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reservation sweep failed; retrying next round");
                    break;
                }
            }
        }
    }
}
