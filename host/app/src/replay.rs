//! Rebuilding read models from the event log (`commerce replay`).
//!
//! Folds every stored event, in the feed's order (the order in which
//! events commit, as `GET /v1/events` serves them: an event that commits
//! late is never skipped, so each order's events come whole and in
//! version order), into its aggregate and projects each order through the
//! same [`OrderView::project`] as the inline projection, then writes each
//! view unless the stored one is newer. Safe while the service runs: an
//! order written after the replay read it keeps its newer view.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::orders::decode_event;
use super::ports::{FeedCursor, FeedEvent};
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
    let mut after = FeedCursor::default();
    let mut events = 0u64;
    loop {
        let page = store.read_feed(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.cursor;
        for FeedEvent { event: stored, .. } in &page {
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
    store.refresh_views(views).await?;
    Ok(report)
}
