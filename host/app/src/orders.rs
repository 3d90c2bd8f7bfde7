//! Order use cases: place, read, list, change, cancel, and the admin
//! transitions, over the event store and its inline projection.
//!
//! Every write is one transaction: the new events at the expected version,
//! the read-model row, and the idempotency key (see `ports::Append`).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::catalog::{Unpriceable, price_line};
use super::extensions::{Evaluation, Quote};
use super::inventory::{
    HOLD_CONFLICTS, INVENTORY_UPDATE_DURATION, InventoryStats, OUT_OF_STOCK, stock_of,
};
use super::ports::{
    Append, IdempotencyRecord, InventoryChange, NewEvent, Product, StoreError, StoredEvent,
};
use super::ports::{PaymentIntent, SagaInstance, SagaStepRecord, SagaWrite};
use super::settlements::Watch;
use super::views::{DEFAULT_PAGE, MAX_PAGE, OrderPage, OrderQuery, OrderView};
use super::{AppError, Caller, Orders, now};
use commerce_domain::inventory::plan_hold;
use commerce_domain::saga::{Outcome, Phase, Step};
use commerce_domain::{
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
/// Orders by outcome: placed, confirmed, failed, cancelled, rejected
/// (by validation), refunded. Counted when the event that says so commits.
pub const ORDERS: &str = "commerce_orders_total";
/// From placement to the end of processing, by outcome: `confirmed`
/// (paid and confirmed), `failed` (declined, vetoed, expired unpaid) or
/// `cancelled` (by the customer before confirmation). Recorded once per
/// order, when the event that ends its processing commits; what happens
/// after confirmation (shipping, a refund) is not processing time.
pub const ORDER_PROCESSING: &str = "commerce_order_processing_seconds";

/// The outcome label of [`ORDER_PROCESSING`] when `event` ends the
/// processing of an order that was `before`.
fn processing_outcome(before: Option<OrderStatus>, event: &OrderEvent) -> Option<&'static str> {
    let in_processing = matches!(
        before,
        Some(OrderStatus::Pending | OrderStatus::Reserved | OrderStatus::Paid)
    );
    match event {
        _ if !in_processing => None,
        OrderEvent::OrderConfirmed => Some("confirmed"),
        OrderEvent::OrderFailed { .. } => Some("failed"),
        OrderEvent::OrderCancelled { .. } => Some("cancelled"),
        _ => None,
    }
}

/// The outcome an event records, for [`ORDERS`].
fn outcome_of(event: &OrderEvent) -> Option<&'static str> {
    Some(match event {
        OrderEvent::OrderPlaced { .. } => "placed",
        OrderEvent::OrderConfirmed => "confirmed",
        OrderEvent::OrderFailed { .. } => "failed",
        OrderEvent::OrderCancelled { .. } => "cancelled",
        OrderEvent::OrderRejected { .. } => "rejected",
        OrderEvent::OrderRefunded { .. } => "refunded",
        _ => return None,
    })
}

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
#[derive(Debug)]
pub struct Placed {
    pub order: OrderView,
    pub replayed: bool,
    /// A watch on the order's settlement, when this request started its
    /// saga: taken before the saga runs, so `Prefer: wait` gets the
    /// outcome from the commit that settles it, without reading it back.
    pub settlement: Option<Watch>,
}

/// A list request as the caller writes it.
#[derive(Debug, Clone, Default)]
pub struct ListOrders {
    pub status: Option<OrderStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// What a write to an existing order wants, decided on its current state.
pub(crate) enum Intent {
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

impl Orders<'_> {
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
        // Keys are looked up only when placing fails: a repeat finds its
        // key taken at the write (or, if the stock or the plugins now say
        // no, is answered with what the first request placed). A first
        // request, the common case, costs no read.
        match self.place_new(caller, request, &keys).await {
            Ok(placed) => Ok(placed),
            Err(e) if keys.is_empty() => Err(e),
            Err(e) => match self.replay_any(caller, &keys).await? {
                Some(placed) => Ok(placed),
                None => Err(e),
            },
        }
    }

    async fn place_new(
        &self,
        caller: Caller,
        request: PlaceOrderRequest,
        keys: &[IdempotencyKey],
    ) -> Result<Placed, AppError> {
        let skus: Vec<Sku> = request.items.iter().map(|i| i.sku.clone()).collect();
        let mut products = self.inventory().load_products(&skus).await?;
        let lines = price_lines(&products, request.currency, &request.items, &[])?;
        let order_id = Uuid::now_v7();
        super::record_order_id(order_id);
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
            lines: lines.clone(),
            payment_token: request.payment_token.clone(),
            adjustments: evaluation.adjustments,
            plugins: evaluation.plugins,
        });
        // Placed and reserved in one write: the order exists only with its stock.
        let order = Order::from_events(order_id, []);
        let events = handle_all(&order, [command, OrderCommand::MarkReserved])?;
        // With a payment token, the fulfilment saga starts in the same
        // write, leased to this process, which drives it at once.
        let saga = match (&self.payments, &request.payment_token) {
            (Some(_), Some(token)) => {
                let mut placed = order.clone();
                let at = now();
                for event in &events {
                    placed.apply(event, at);
                }
                let payment = PaymentIntent {
                    token: token.clone(),
                    amount: placed.total,
                    currency: request.currency,
                };
                Some(SagaInstance::start(
                    order_id,
                    payment,
                    &self.saga.owner,
                    self.saga.lease,
                    at,
                ))
            }
            _ => None,
        };
        let saga_write = saga.as_ref().map(|s| SagaWrite {
            instance: s.clone(),
            expected_revision: None,
            history: vec![SagaStepRecord::new(
                s.saga_id,
                Step::ReserveInventory,
                Phase::Action,
                Outcome::Ok,
                Some("stock reserved with the order".into()),
                0,
                s.created_at,
            )],
        });
        let records: Vec<IdempotencyRecord> = keys
            .iter()
            .map(|k| IdempotencyRecord {
                customer_id: caller.subject,
                key: k.key.clone(),
                request_hash: k.request_hash.clone(),
                order_id,
            })
            .collect();
        let wanted = held_by(&lines);
        let mut attempt = 0;
        loop {
            let hold = self.plan_hold(order_id, &BTreeMap::new(), &wanted, &products)?;
            let result = self
                .commit_all(
                    order.clone(),
                    events.clone(),
                    records.clone(),
                    Some(hold),
                    saga_write.clone(),
                )
                .await;
            match result {
                Ok(placed) => {
                    let view = OrderView::project(&placed);
                    tracing::info!(order_id = %view.id, customer_id = %view.customer_id, total = %view.total, currency = %view.currency, attempts = attempt + 1, saga_id = saga.as_ref().map(|s| tracing::field::display(s.saga_id)), "order placed, stock reserved");
                    self.inventory().stock_changed(&skus).await;
                    let settlement = saga.map(|saga| {
                        let watch = self.settlements.watch(order_id);
                        self.sagas().spawn_saga(saga, Some(placed));
                        watch
                    });
                    return Ok(Placed {
                        order: view,
                        replayed: false,
                        settlement,
                    });
                }
                Err(StoreError::StockConflict { .. }) => {
                    self.after_stock_conflict(&mut attempt).await?;
                    products = self.inventory().load_products(&skus).await?;
                }
                // A repeat, or a concurrent request with one of the keys
                // won the race: the caller answers with what it placed.
                Err(StoreError::IdempotencyKeyTaken) => {
                    return Err(AppError::Conflict("idempotency key is being used".into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Plans the claims that take `order_id` from holding `held` to
    /// holding `wanted`, on the stock in `products`; a shortage refuses
    /// the whole write.
    fn plan_hold(
        &self,
        order_id: Uuid,
        held: &BTreeMap<Sku, i64>,
        wanted: &BTreeMap<Sku, i64>,
        products: &HashMap<Sku, Product>,
    ) -> Result<InventoryChange, AppError> {
        InventoryStats::bump(&self.inventory_stats.hold_attempts);
        match plan_hold(held, wanted, &stock_of(products)) {
            Ok(claims) => Ok(InventoryChange::Hold {
                order_id,
                claims,
                expires_at: now()
                    + chrono::Duration::from_std(self.inventory_settings.reservation_ttl)
                        .unwrap_or(chrono::Duration::MAX),
            }),
            Err(short) => {
                InventoryStats::count(&self.inventory_stats.out_of_stock, OUT_OF_STOCK);
                Err(AppError::OutOfStock(short))
            }
        }
    }

    /// A stock claim lost a race: pause (bounded, jittered) before the
    /// next attempt, or give up after the last.
    async fn after_stock_conflict(&self, attempt: &mut u32) -> Result<(), AppError> {
        InventoryStats::count(&self.inventory_stats.hold_conflicts, HOLD_CONFLICTS);
        if *attempt + 1 >= self.inventory_settings.max_attempts {
            InventoryStats::bump(&self.inventory_stats.exhausted);
            return Err(AppError::Conflict(
                "the stock of this order is in high demand and kept changing; retry".into(),
            ));
        }
        tokio::time::sleep(self.inventory_settings.backoff(*attempt)).await;
        *attempt += 1;
        Ok(())
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
        super::record_order_id(record.order_id);
        let order = self.store.get_view(record.order_id).await?.ok_or_else(|| {
            AppError::Unexpected(anyhow::anyhow!("idempotency record without its order"))
        })?;
        Ok(Some(Placed {
            order,
            replayed: true,
            settlement: None,
        }))
    }

    /// Runs the pricing and validation plugins; any violation refuses.
    async fn evaluate(&self, quote: Quote) -> Result<Evaluation, AppError> {
        let evaluation = self.plugins.evaluate(quote).await?;
        if !evaluation.violations.is_empty() {
            metrics::counter!(ORDERS, "outcome" => "rejected").increment(1);
            return Err(AppError::Rejected(evaluation.violations));
        }
        Ok(evaluation)
    }

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
        super::record_order_id(order_id);
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
    pub(crate) async fn execute(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: Option<u64>,
        intent: Intent,
    ) -> Result<OrderView, AppError> {
        let mut attempt = 0;
        let mut stock_attempt = 0;
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
            let (command, inventory) = match &intent {
                Intent::Command(command) => {
                    // Leaving the order's life early gives its stock back.
                    let inventory = matches!(
                        command,
                        OrderCommand::Cancel { .. } | OrderCommand::Fail { .. }
                    )
                    .then_some(InventoryChange::Release { order_id });
                    (command.clone(), inventory)
                }
                Intent::ChangeItems(items) => {
                    // Check the transition first, so that changing a closed
                    // order is a 409 even if its new lines would not price.
                    order.check(OrderAction::ChangeItems)?;
                    if let Some(saga) = self.store.saga_of(order_id).await?
                        && !saga.status().is_terminal()
                    {
                        return Err(AppError::Conflict(
                            "the order's payment is in progress; its items can no longer change (cancel it instead)".into(),
                        ));
                    }
                    let currency = order.currency.ok_or(OrderError::NotPlaced)?;
                    let status = order.status.ok_or(OrderError::NotPlaced)?;
                    let skus: Vec<Sku> = items
                        .iter()
                        .map(|i| i.sku.clone())
                        .chain(order.lines.iter().map(|l| l.sku.clone()))
                        .collect();
                    let products = self.inventory().load_products(&skus).await?;
                    let lines = price_lines(&products, currency, items, &order.lines)?;
                    let evaluation = self
                        .evaluate(Quote {
                            order_id: order.id,
                            customer_id: order.customer_id,
                            status,
                            currency,
                            lines: lines.clone(),
                        })
                        .await?;
                    // A reserved order holds its lines: it holds the new ones
                    // instead, claiming only the difference.
                    let inventory = if status == OrderStatus::Reserved {
                        Some(self.plan_hold(
                            order_id,
                            &held_by(&order.lines),
                            &held_by(&lines),
                            &products,
                        )?)
                    } else {
                        None
                    };
                    let command = OrderCommand::ChangeItems {
                        lines,
                        adjustments: evaluation.adjustments,
                        plugins: evaluation.plugins,
                    };
                    (command, inventory)
                }
            };
            let (saga_write, to_drive) = match &command {
                OrderCommand::Cancel { reason } => {
                    order.check(OrderAction::Cancel)?;
                    self.sagas()
                        .cancel_saga(order_id, reason.as_deref())
                        .await?
                }
                _ => (None, None),
            };
            let events = order.handle(command)?;
            let skus: Vec<Sku> = match &inventory {
                Some(InventoryChange::Hold { claims, .. }) => {
                    claims.iter().map(|c| c.sku.clone()).collect()
                }
                Some(_) => order.lines.iter().map(|l| l.sku.clone()).collect(),
                None => Vec::new(),
            };
            match self
                .commit_all(order, events, Vec::new(), inventory, saga_write)
                .await
            {
                Ok(order) => {
                    self.inventory().stock_changed(&skus).await;
                    if let Some(saga) = to_drive {
                        self.sagas().spawn_saga(saga, None);
                    }
                    return Ok(OrderView::project(&order));
                }
                Err(StoreError::StockConflict { .. }) => {
                    self.after_stock_conflict(&mut stock_attempt).await?;
                }
                Err(StoreError::SagaConflict { .. }) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                }
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
            AdminTransition::Refund => {
                let order = self.load_order(caller, order_id).await?;
                order.check(OrderAction::Refund)?;
                self.sagas().refund_payment(order_id).await?;
                OrderCommand::Refund { reason: None }
            }
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

/// Runs several commands on an order in turn, as one decision: the events
/// of all of them, or the first refusal.
fn handle_all(
    order: &Order,
    commands: impl IntoIterator<Item = OrderCommand>,
) -> Result<Vec<OrderEvent>, OrderError> {
    let mut state = order.clone();
    let mut all = Vec::new();
    let at = now();
    for command in commands {
        let events = state.handle(command)?;
        for event in &events {
            state.apply(event, at);
        }
        all.extend(events);
    }
    Ok(all)
}

/// Units per SKU that holding `lines` takes.
fn held_by(lines: &[OrderLine]) -> BTreeMap<Sku, i64> {
    lines
        .iter()
        .map(|l| (l.sku.clone(), i64::from(l.quantity.get())))
        .collect()
}

/// Prices requested lines from the catalog, in the order's currency.
/// `keep` holds prices already quoted on the order, which stay.
fn price_lines(
    products: &HashMap<Sku, Product>,
    currency: Currency,
    items: &[RequestedLine],
    keep: &[OrderLine],
) -> Result<Vec<OrderLine>, AppError> {
    let mut unknown: Vec<String> = items
        .iter()
        .filter(|i| !products.contains_key(&i.sku))
        .map(|i| i.sku.to_string())
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
            price_line(products.get(&item.sku), &item.sku, item.quantity, currency).map_err(
                |refused| match refused {
                    Unpriceable::UnknownSku => AppError::UnknownSkus(vec![item.sku.to_string()]),
                    Unpriceable::CurrencyMismatch { product_currency } => {
                        AppError::CurrencyMismatch {
                            sku: item.sku.to_string(),
                            product_currency: product_currency.to_string(),
                            order_currency: currency.to_string(),
                        }
                    }
                },
            )
        })
        .collect()
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
