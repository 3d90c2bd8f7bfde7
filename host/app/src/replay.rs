//! Rebuilding read models from the event log (`commerce replay`).
//!
//! Folds every stored event, in global position order, into its
//! aggregate and projects each order through the same
//! [`OrderView::project`] as the inline projection, then swaps the whole
//! `order_views` table in one transaction: readers see the old model or
//! the new one, never a half-built one.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::orders::decode_event;
use super::views::OrderView;
use super::{AppError, Store};
use commerce_domain::{Aggregate, Order};

/// Events read per round trip.
const PAGE: u32 = 1_000;

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub events: u64,
    pub orders: u64,
}

/// Rebuilds `order_views` from `events`.
pub async fn replay_order_views(store: &dyn Store) -> Result<ReplayReport, AppError> {
    let mut orders: BTreeMap<Uuid, Order> = BTreeMap::new();
    let mut after = 0;
    let mut events = 0u64;
    loop {
        let page = store.read_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for stored in &page {
            if stored.aggregate_type != Order::TYPE {
                continue;
            }
            let event = decode_event(stored)?;
            let order = orders
                .entry(stored.aggregate_id)
                .or_insert_with(|| Order::from_events(stored.aggregate_id, []));
            order.apply(&event, stored.recorded_at);
            events += 1;
        }
    }
    let views: Vec<OrderView> = orders
        .values()
        .filter(|o| o.status.is_some())
        .map(OrderView::project)
        .collect();
    let report = ReplayReport {
        events,
        orders: views.len() as u64,
    };
    store.replace_views(views).await?;
    Ok(report)
}
