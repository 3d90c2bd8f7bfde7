//! Requests waiting for an order to settle (`Prefer: wait` on placement):
//! woken the moment this process commits the order's confirmation or end,
//! instead of each polling the database. An order settled by another
//! replica is still seen, by a slower poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Default)]
pub struct Settlements {
    waiters: Mutex<HashMap<Uuid, Arc<Notify>>>,
}

impl Settlements {
    /// The signal for `order_id`, shared by everyone waiting on it.
    /// Enable the `notified()` future before checking the order, so a
    /// settlement in between is not missed.
    pub fn watch(&self, order_id: Uuid) -> Arc<Notify> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.entry(order_id).or_default().clone()
    }

    /// Done waiting (settled or timed out): forgets the signal when no one
    /// else waits on it.
    pub fn unwatch(&self, order_id: Uuid, signal: Arc<Notify>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and ours.
        if Arc::strong_count(&signal) <= 2
            && waiters
                .get(&order_id)
                .is_some_and(|s| Arc::ptr_eq(s, &signal))
        {
            waiters.remove(&order_id);
        }
    }

    /// The order settled: wakes whoever waits on it.
    pub fn settled(&self, order_id: Uuid) {
        let signal = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.remove(&order_id)
        };
        if let Some(signal) = signal {
            signal.notify_waiters();
        }
    }

    /// Orders being waited on (for tests).
    pub fn len(&self) -> usize {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_settlement_wakes_every_waiter_and_is_forgotten() {
        let s = Arc::new(Settlements::default());
        let order = Uuid::now_v7();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let s = s.clone();
            let signal = s.watch(order);
            tasks.push(tokio::spawn(async move {
                let woke = tokio::time::timeout(Duration::from_secs(5), signal.notified())
                    .await
                    .is_ok();
                s.unwatch(order, signal);
                woke
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.settled(order);
        for t in tasks {
            assert!(t.await.unwrap(), "a waiter was not woken");
        }
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let s = Settlements::default();
        let order = Uuid::now_v7();
        let signal = s.watch(order);
        let woke = tokio::time::timeout(Duration::from_millis(10), signal.notified())
            .await
            .is_ok();
        assert!(!woke);
        s.unwatch(order, signal);
        assert!(s.is_empty());
    }
}
