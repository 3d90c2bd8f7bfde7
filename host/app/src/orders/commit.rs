//! Loading an order from its events and committing new ones: the events
//! at the expected version with the view, stock change, idempotency keys
//! and saga write in one transaction, then the metrics and settlement
//! they imply. Also the stored shape of events (type name + payload).

use uuid::Uuid;

use crate::inventory::INVENTORY_UPDATE_DURATION;
use crate::ports::SagaWrite;
use crate::ports::{Append, IdempotencyRecord, InventoryChange, NewEvent, StoreError, StoredEvent};
use crate::views::OrderView;
use crate::{AppError, Caller, Orders, now};

use super::*;
use commerce_domain::{Aggregate, DomainEvent, Order, OrderEvent};

impl Orders<'_> {
    /// Appends `events` to `order` (whose version is the expected one) with
    /// its new view, and the order's saga when one is started or moved on,
    /// in one transaction.
    pub(crate) async fn commit_all(
        &self,
        mut order: Order,
        events: Vec<OrderEvent>,
        idempotency: Vec<IdempotencyRecord>,
        inventory: Option<InventoryChange>,
        saga: Option<SagaWrite>,
    ) -> Result<Order, StoreError> {
        let expected_version = order.version();
        let at = now();
        let mut new_events = Vec::with_capacity(events.len());
        let mut processed = None;
        for event in &events {
            if let Some(outcome) = processing_outcome(order.status, event)
                && let Some(placed_at) = order.created_at
            {
                let seconds = (at - placed_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                processed = Some((outcome, seconds.max(0.0)));
            }
            order.apply(event, at);
            new_events.push(encode_event(event, at).map_err(StoreError::Unexpected)?);
        }
        let view = OrderView::project(&order);
        let stock_operation = inventory.as_ref().map(InventoryChange::operation);
        let started = std::time::Instant::now();
        self.store
            .append(Append {
                aggregate_id: order.id,
                aggregate_type: Order::TYPE,
                expected_version,
                events: new_events,
                view: view.clone(),
                idempotency,
                inventory,
                saga,
            })
            .await?;
        if let Some(operation) = stock_operation {
            metrics::histogram!(INVENTORY_UPDATE_DURATION, "operation" => operation)
                .record(started.elapsed().as_secs_f64());
        }
        for outcome in events.iter().filter_map(outcome_of) {
            metrics::counter!(ORDERS, "outcome" => outcome).increment(1);
        }
        if let Some((outcome, seconds)) = processed {
            metrics::histogram!(ORDER_PROCESSING, "outcome" => outcome).record(seconds);
        }
        if view.status.is_settled() {
            self.settlements.settled(&view);
        }
        Ok(order)
    }

    /// Loads an order the caller may see, or `NotFound`.
    pub(crate) async fn load_order(
        &self,
        caller: Caller,
        order_id: Uuid,
    ) -> Result<Order, AppError> {
        crate::record_order_id(order_id);
        let stream = self.store.load_stream(order_id).await?;
        let events = stream
            .iter()
            .map(|e| decode_event(e).map(|ev| (ev, e.recorded_at)))
            .collect::<Result<Vec<_>, _>>()?;
        let order = Order::from_events(order_id, events.iter().map(|(e, at)| (e, *at)));
        if order.status.is_none() || !(caller.is_admin() || order.customer_id == caller.subject) {
            return Err(AppError::NotFound("order"));
        }
        Ok(order)
    }
}

/// Turns a domain event into the stored shape: type name + payload.
pub fn encode_event(
    event: &OrderEvent,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<NewEvent, anyhow::Error> {
    let mut json = serde_json::to_value(event)?;
    let data = json
        .as_object_mut()
        .and_then(|o| o.remove("data"))
        .unwrap_or(serde_json::Value::Null);
    Ok(NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event.event_type(),
        schema_version: event.schema_version(),
        data,
        recorded_at: at,
    })
}

/// Reads a stored event back into the domain type.
pub fn decode_event(stored: &StoredEvent) -> Result<OrderEvent, AppError> {
    let mut json = serde_json::Map::new();
    json.insert("type".into(), stored.event_type.clone().into());
    if !stored.data.is_null() {
        json.insert("data".into(), stored.data.clone());
    }
    serde_json::from_value(json.into()).map_err(|e| {
        AppError::Unexpected(anyhow::anyhow!(
            "stored event {} ({}) does not decode: {e}",
            stored.event_id,
            stored.event_type
        ))
    })
}
