//! Order use cases: place, read, list, change, cancel, and the admin
//! transitions, over the event store and its inline projection.
//!
//! Every write is one transaction: the new events at the expected version,
//! the read-model row, and the idempotency key (see `ports::Append`).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::extensions::{Evaluation, Quote};
use super::ports::{Append, IdempotencyRecord, NewEvent, StoreError, StoredEvent};
use super::views::{DEFAULT_PAGE, MAX_PAGE, OrderPage, OrderQuery, OrderView};
use super::{App, AppError, Caller, now};
use crate::domain::{
    Aggregate, Currency, DomainEvent, Order, OrderAction, OrderCommand, OrderError, OrderEvent,
    OrderLine, OrderStatus, PlaceOrder, Quantity, Sku,
};

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest accepted payment token.
pub const MAX_PAYMENT_TOKEN_LEN: usize = 255;
/// How often a write without `If-Match` is retried when another writer
/// wins the race for the next version.
const CONFLICT_RETRIES: usize = 5;

/// An idempotency key and the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// A line as the customer asks for it: what and how many, never a price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestedLine {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// `POST /v1/orders`, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct PlaceOrderRequest {
    pub currency: Currency,
    pub items: Vec<RequestedLine>,
    pub payment_token: Option<String>,
}

/// The outcome of placing: the order, and whether it was placed by an
/// earlier request with the same idempotency key.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: OrderView,
    pub replayed: bool,
}

/// A list request as the caller writes it.
#[derive(Debug, Clone, Default)]
pub struct ListOrders {
    pub status: Option<OrderStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// What a write to an existing order wants, decided on its current state.
enum Intent {
    Command(OrderCommand),
    /// Replace the lines, pricing new SKUs from the catalog.
    ChangeItems(Vec<RequestedLine>),
}

/// The admin-only transitions exposed over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTransition {
    Ship,
    Deliver,
    Refund,
}

impl App {
    /// Places an order priced from the catalog. With an idempotency key, a
    /// repeat of the same request returns the order the first one placed;
    /// the key reused for a different request is refused.
    pub async fn place_order(
        &self,
        caller: Caller,
        request: PlaceOrderRequest,
        idempotency_key: Option<String>,
    ) -> Result<Placed, AppError> {
        let keys = match idempotency_key {
            Some(key) => {
                check_idempotency_key(&key)?;
                let request_hash = request_hash(&request);
                vec![IdempotencyKey { key, request_hash }]
            }
            None => Vec::new(),
        };
        self.place_order_with_keys(caller, request, keys).await
    }

    /// Places an order recorded under every one of `keys`, in the same
    /// transaction: if any key already names an order, that order is the
    /// answer and nothing is placed. A cart checkout passes two, the
    /// caller's key and one for the cart's revision.
    pub(crate) async fn place_order_with_keys(
        &self,
        caller: Caller,
        request: PlaceOrderRequest,
        keys: Vec<IdempotencyKey>,
    ) -> Result<Placed, AppError> {
        check_payment_token(&request)?;
        if let Some(placed) = self.replay_any(caller, &keys).await? {
            return Ok(placed);
        }

        let lines = self.price_lines(request.currency, &request.items).await?;
        let order_id = Uuid::now_v7();
        let evaluation = self
            .evaluate(Quote {
                order_id,
                customer_id: caller.subject,
                status: OrderStatus::Pending,
                currency: request.currency,
                lines: lines.clone(),
            })
            .await?;
        let command = OrderCommand::Place(PlaceOrder {
            order_id,
            customer_id: caller.subject,
            currency: request.currency,
            lines,
            payment_token: request.payment_token,
            adjustments: evaluation.adjustments,
            plugins: evaluation.plugins,
        });
        let order = Order::from_events(order_id, []);
        let events = order.handle(command)?;
        let records = keys
            .iter()
            .map(|k| IdempotencyRecord {
                customer_id: caller.subject,
                key: k.key.clone(),
                request_hash: k.request_hash.clone(),
                order_id,
            })
            .collect();
        match self.commit(order, events, records).await {
            Ok(view) => {
                tracing::info!(order_id = %view.id, customer_id = %view.customer_id, total = %view.total, currency = %view.currency, "order placed");
                Ok(Placed {
                    order: view,
                    replayed: false,
                })
            }
            // A concurrent request with one of the keys won the race:
            // answer with what it placed.
            Err(StoreError::IdempotencyKeyTaken) => self
                .replay_any(caller, &keys)
                .await?
                .ok_or_else(|| AppError::Conflict("idempotency key is being used".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The order recorded under the first of `keys` that has one.
    async fn replay_any(
        &self,
        caller: Caller,
        keys: &[IdempotencyKey],
    ) -> Result<Option<Placed>, AppError> {
        for k in keys {
            if let Some(placed) = self
                .replay_idempotent(caller, &k.key, &k.request_hash)
                .await?
            {
                return Ok(Some(placed));
            }
        }
        Ok(None)
    }

    pub(crate) async fn replay_idempotent(
        &self,
        caller: Caller,
        key: &str,
        hash: &str,
    ) -> Result<Option<Placed>, AppError> {
        let Some(record) = self.store.find_idempotency(caller.subject, key).await? else {
            return Ok(None);
        };
        if record.request_hash != hash {
            return Err(AppError::IdempotencyKeyReused);
        }
        let order = self.store.get_view(record.order_id).await?.ok_or_else(|| {
            AppError::Unexpected(anyhow::anyhow!("idempotency record without its order"))
        })?;
        Ok(Some(Placed {
            order,
            replayed: true,
        }))
    }

    /// Prices requested lines from the catalog, in the order's currency.
    /// `keep` holds prices already quoted on the order, which stay.
    async fn price_lines_keeping(
        &self,
        currency: Currency,
        items: &[RequestedLine],
        keep: &[OrderLine],
    ) -> Result<Vec<OrderLine>, AppError> {
        let skus: Vec<Sku> = items.iter().map(|i| i.sku.clone()).collect();
        let products: HashMap<Sku, _> = self
            .store
            .get_products(&skus)
            .await?
            .into_iter()
            .map(|p| (p.sku.clone(), p))
            .collect();
        let mut unknown: Vec<String> = skus
            .iter()
            .filter(|s| !products.contains_key(*s))
            .map(|s| s.to_string())
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            unknown.dedup();
            return Err(AppError::UnknownSkus(unknown));
        }
        items
            .iter()
            .map(|item| {
                if let Some(quoted) = keep.iter().find(|l| l.sku == item.sku) {
                    return Ok(OrderLine {
                        quantity: item.quantity,
                        ..quoted.clone()
                    });
                }
                let product = &products[&item.sku];
                if product.currency != currency {
                    return Err(AppError::CurrencyMismatch {
                        sku: item.sku.to_string(),
                        product_currency: product.currency.to_string(),
                        order_currency: currency.to_string(),
                    });
                }
                Ok(OrderLine {
                    sku: item.sku.clone(),
                    name: product.name.clone(),
                    quantity: item.quantity,
                    unit_price: product.unit_price,
                })
            })
            .collect()
    }

    /// Runs the pricing and validation plugins; any violation refuses.
    async fn evaluate(&self, quote: Quote) -> Result<Evaluation, AppError> {
        let evaluation = self.plugins.evaluate(quote).await?;
        if !evaluation.violations.is_empty() {
            return Err(AppError::Rejected(evaluation.violations));
        }
        Ok(evaluation)
    }

    async fn price_lines(
        &self,
        currency: Currency,
        items: &[RequestedLine],
    ) -> Result<Vec<OrderLine>, AppError> {
        self.price_lines_keeping(currency, items, &[]).await
    }

    /// Appends `events` to `order` (whose version is the expected one) with
    /// its new view, in one transaction.
    async fn commit(
        &self,
        mut order: Order,
        events: Vec<OrderEvent>,
        idempotency: Vec<IdempotencyRecord>,
    ) -> Result<OrderView, StoreError> {
        let expected_version = order.version();
        let at = now();
        let mut new_events = Vec::with_capacity(events.len());
        for event in &events {
            order.apply(event, at);
            new_events.push(encode_event(event, at).map_err(StoreError::Unexpected)?);
        }
        let view = OrderView::project(&order);
        self.store
            .append(Append {
                aggregate_id: order.id,
                aggregate_type: Order::TYPE,
                expected_version,
                events: new_events,
                view: view.clone(),
                idempotency,
            })
            .await?;
        Ok(view)
    }

    /// Loads an order the caller may see, or `NotFound`.
    async fn load_order(&self, caller: Caller, order_id: Uuid) -> Result<Order, AppError> {
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

    /// Runs a command on an existing order. With `if_match`, the order must
    /// be at that version (else `PreconditionFailed`); without, a lost race
    /// is retried on the fresh state.
    async fn execute(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: Option<u64>,
        intent: Intent,
    ) -> Result<OrderView, AppError> {
        let mut attempt = 0;
        loop {
            let order = self.load_order(caller, order_id).await?;
            if let Some(expected) = if_match
                && expected != order.version()
            {
                return Err(AppError::PreconditionFailed {
                    expected,
                    current: order.version(),
                });
            }
            let command = match &intent {
                Intent::Command(command) => command.clone(),
                Intent::ChangeItems(items) => {
                    // Check the transition first, so that changing a closed
                    // order is a 409 even if its new lines would not price.
                    order.check(OrderAction::ChangeItems)?;
                    let currency = order.currency.ok_or(OrderError::NotPlaced)?;
                    let lines = self
                        .price_lines_keeping(currency, items, &order.lines)
                        .await?;
                    let evaluation = self
                        .evaluate(Quote {
                            order_id: order.id,
                            customer_id: order.customer_id,
                            status: order.status.ok_or(OrderError::NotPlaced)?,
                            currency,
                            lines: lines.clone(),
                        })
                        .await?;
                    OrderCommand::ChangeItems {
                        lines,
                        adjustments: evaluation.adjustments,
                        plugins: evaluation.plugins,
                    }
                }
            };
            let events = order.handle(command)?;
            match self.commit(order, events, Vec::new()).await {
                Ok(view) => return Ok(view),
                Err(StoreError::VersionConflict { .. }) => match if_match {
                    None if attempt < CONFLICT_RETRIES => attempt += 1,
                    None => {
                        return Err(AppError::Conflict(
                            "the order is being changed concurrently; retry".into(),
                        ));
                    }
                    Some(expected) => {
                        let current = self.load_order(caller, order_id).await?.version();
                        return Err(AppError::PreconditionFailed { expected, current });
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn get_order(&self, caller: Caller, order_id: Uuid) -> Result<OrderView, AppError> {
        match self.store.get_view(order_id).await? {
            Some(view) if caller.is_admin() || view.customer_id == caller.subject => Ok(view),
            _ => Err(AppError::NotFound("order")),
        }
    }

    /// The caller's orders (an admin's: everybody's), newest first.
    pub async fn list_orders(
        &self,
        caller: Caller,
        request: ListOrders,
    ) -> Result<OrderPage, AppError> {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AppError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let before = request.cursor.as_deref().map(decode_cursor).transpose()?;
        let query = OrderQuery {
            customer_id: (!caller.is_admin()).then_some(caller.subject),
            status: request.status,
            limit: limit + 1,
            before,
        };
        let mut items = self.store.list_views(&query).await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|v| encode_cursor(v.id))
        } else {
            None
        };
        Ok(OrderPage { items, next_cursor })
    }

    /// Replaces the lines of an open order at version `if_match`. Lines
    /// already on the order keep the price they were quoted; new SKUs are
    /// priced from the catalog now.
    pub async fn change_order_items(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: u64,
        items: Vec<RequestedLine>,
    ) -> Result<OrderView, AppError> {
        let view = self
            .execute(caller, order_id, Some(if_match), Intent::ChangeItems(items))
            .await?;
        tracing::info!(order_id = %view.id, version = view.version, "order items changed");
        Ok(view)
    }

    /// Cancels an order (before it ships).
    pub async fn cancel_order(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: Option<u64>,
        reason: Option<String>,
    ) -> Result<OrderView, AppError> {
        let view = self
            .execute(
                caller,
                order_id,
                if_match,
                Intent::Command(OrderCommand::Cancel { reason }),
            )
            .await?;
        tracing::info!(order_id = %view.id, "order cancelled");
        Ok(view)
    }

    /// Ships, delivers or refunds an order (admin).
    pub async fn transition_order(
        &self,
        caller: Caller,
        order_id: Uuid,
        transition: AdminTransition,
    ) -> Result<OrderView, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let command = match transition {
            AdminTransition::Ship => OrderCommand::Ship,
            AdminTransition::Deliver => OrderCommand::Deliver,
            AdminTransition::Refund => OrderCommand::Refund { reason: None },
        };
        let view = self
            .execute(caller, order_id, None, Intent::Command(command))
            .await?;
        tracing::info!(order_id = %view.id, status = %view.status, "order transitioned by admin");
        Ok(view)
    }

    /// An order's history, oldest first.
    pub async fn order_events(
        &self,
        caller: Caller,
        order_id: Uuid,
    ) -> Result<Vec<StoredEvent>, AppError> {
        // Authorize on the read model, then read the stream.
        self.get_order(caller, order_id).await?;
        Ok(self.store.load_stream(order_id).await?)
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

fn check_payment_token(request: &PlaceOrderRequest) -> Result<(), AppError> {
    match &request.payment_token {
        Some(token) if token.is_empty() || token.len() > MAX_PAYMENT_TOKEN_LEN => {
            Err(AppError::Invalid(format!(
                "payment.token must be 1 to {MAX_PAYMENT_TOKEN_LEN} characters"
            )))
        }
        _ => Ok(()),
    }
}

pub(crate) fn check_idempotency_key(key: &str) -> Result<(), AppError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )))
    }
}

/// A fingerprint of the request, to tell a retry from a different request
/// that reuses a key.
fn request_hash(request: &PlaceOrderRequest) -> String {
    let canonical = serde_json::to_vec(request).expect("request serializes");
    hex::encode(Sha256::digest(&canonical))
}

fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| AppError::BadRequest("invalid cursor".into()))
}
