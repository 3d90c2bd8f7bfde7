//! Requests waiting for an order to settle (`Prefer: wait` on placement):
//! handed the settled order by the commit in this process that confirms
//! or ends it, instead of each reading the database. An order settled by
//! another replica is still seen, by a slower poll.
//!
//! Placement starts watching its order before the saga runs, so the
//! settlement cannot slip in between; whoever does not wait simply drops
//! the [`Watch`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

use super::views::OrderView;
use super::{AppError, Caller, Outcomes};

/// One order's settlement, shared by everyone waiting on it.
#[derive(Default)]
struct Slot {
    signal: Notify,
    settled: Mutex<Option<OrderView>>,
}

#[derive(Default)]
pub struct Settlements {
    waiters: Mutex<HashMap<Uuid, Arc<Slot>>>,
}

/// A watch on one order's settlement; dropping it stops watching.
pub struct Watch {
    owner: Arc<Settlements>,
    order_id: Uuid,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("order_id", &self.order_id)
            .finish()
    }
}

impl Settlements {
    /// Starts watching `order_id`: a settlement committed by this process
    /// from now on is kept for [`Watch::settled`] and wakes
    /// [`Watch::changed`].
    pub fn watch(self: &Arc<Self>, order_id: Uuid) -> Watch {
        let mut waiters = lock(&self.waiters);
        let slot = waiters.entry(order_id).or_default().clone();
        Watch {
            owner: self.clone(),
            order_id,
            slot,
        }
    }

    /// The order settled: hands its view to whoever watches it.
    pub fn settled(&self, view: &OrderView) {
        let slot = lock(&self.waiters).remove(&view.id);
        if let Some(slot) = slot {
            *lock(&slot.settled) = Some(view.clone());
            slot.signal.notify_waiters();
        }
    }

    /// Orders being watched (for tests).
    pub fn len(&self) -> usize {
        lock(&self.waiters).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Watch {
    /// The order as the settling commit left it, once this process
    /// settled it.
    pub fn settled(&self) -> Option<OrderView> {
        lock(&self.slot.settled).clone()
    }

    /// Waits until this process settles the order or `timeout` passes;
    /// `Some` is the settled order.
    pub async fn wait(&self, timeout: std::time::Duration) -> Option<OrderView> {
        let woken = self.slot.signal.notified();
        tokio::pin!(woken);
        // Registered before the check, so a settlement in between wakes it.
        woken.as_mut().enable();
        if let Some(view) = self.settled() {
            return Some(view);
        }
        let _ = tokio::time::timeout(timeout, woken).await;
        self.settled()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut waiters = lock(&self.owner.waiters);
        // The map's reference and ours: nobody else watches.
        if Arc::strong_count(&self.slot) <= 2
            && waiters
                .get(&self.order_id)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            waiters.remove(&self.order_id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often a request waiting for an order re-reads it, for orders
/// another replica settles.
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(250);

impl Outcomes<'_> {
    /// The order once its saga confirmed or ended it, or as it is after
    /// `wait` (`Prefer: wait=N`). An order without a saga is returned at once.
    /// `settlement`: the watch placement took on the order it just placed
    /// (its saga runs here; the settling commit hands the outcome over).
    /// Without one (a replayed request), the order is looked up.
    pub async fn await_outcome(
        &self,
        caller: Caller,
        order: crate::views::OrderView,
        settlement: Option<Watch>,
        wait: std::time::Duration,
    ) -> Result<crate::views::OrderView, AppError> {
        if order.status.is_settled() {
            return Ok(order);
        }
        let deadline = tokio::time::Instant::now() + wait;
        let order_id = order.id;
        // The first look at the database: at once for a replayed request
        // (its saga may have ended long ago, or run elsewhere), after a
        // poll interval for our own placement.
        let (watch, mut read_now) = match settlement {
            Some(watch) => (watch, false),
            None => {
                if self.store.saga_of(order_id).await?.is_none() {
                    return Ok(order);
                }
                (self.settlements.watch(order_id), true)
            }
        };
        let mut current = order;
        loop {
            if let Some(view) = watch.settled() {
                return Ok(view);
            }
            if read_now {
                current = self.orders().get_order(caller, order_id).await?;
                if current.status.is_settled() {
                    return Ok(current);
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(current);
            }
            // This process hands us the order when it settles it; another
            // replica's settlement is seen at the next poll.
            if let Some(view) = watch.wait((deadline - now).min(SETTLE_POLL)).await {
                return Ok(view);
            }
            read_now = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settled_view(order_id: Uuid) -> OrderView {
        let now = chrono::Utc::now();
        OrderView {
            id: order_id,
            customer_id: Uuid::now_v7(),
            status: commerce_domain::OrderStatus::Confirmed,
            currency: "EUR".into(),
            items: Vec::new(),
            subtotal: rust_decimal::Decimal::ZERO,
            adjustments: Vec::new(),
            total: rust_decimal::Decimal::ZERO,
            refunded: rust_decimal::Decimal::ZERO,
            status_reason: None,
            version: 4,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn a_settlement_reaches_every_watcher_and_is_forgotten() {
        let s = Arc::new(Settlements::default());
        let order = Uuid::now_v7();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let watch = s.watch(order);
            tasks.push(tokio::spawn(async move {
                watch.wait(Duration::from_secs(5)).await.map(|v| v.status)
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.settled(&settled_view(order));
        for t in tasks {
            assert_eq!(
                t.await.unwrap(),
                Some(commerce_domain::OrderStatus::Confirmed),
                "a watcher did not get the settled order"
            );
        }
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn a_settlement_before_the_wait_is_not_missed() {
        let s = Arc::new(Settlements::default());
        let order = Uuid::now_v7();
        let watch = s.watch(order);
        s.settled(&settled_view(order));
        let got = tokio::time::timeout(
            Duration::from_millis(100),
            watch.wait(Duration::from_secs(5)),
        )
        .await
        .expect("the wait should end at once");
        assert!(got.is_some());
    }

    #[tokio::test]
    async fn a_watcher_that_gives_up_leaves_nothing_behind() {
        let s = Arc::new(Settlements::default());
        let order = Uuid::now_v7();
        let watch = s.watch(order);
        assert!(watch.wait(Duration::from_millis(10)).await.is_none());
        drop(watch);
        assert!(s.is_empty());
        // Settling an order nobody watches keeps nothing.
        s.settled(&settled_view(order));
        assert!(s.is_empty());
    }
}
