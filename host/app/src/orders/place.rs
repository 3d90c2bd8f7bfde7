//! Placing an order: priced from the catalog, evaluated by the plugins,
//! placed and reserved in one write with its idempotency keys and, with a
//! payment token, its saga's start; a repeat answered with what the first
//! request placed.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::catalog::{Unpriceable, price_line};
use crate::extensions::{Evaluation, Quote};
use crate::ports::{IdempotencyRecord, Product, StoreError};
use crate::ports::{PaymentIntent, SagaInstance, SagaStepRecord, SagaWrite};
use crate::views::OrderView;
use crate::{AppError, Caller, Orders, now};

use super::change::{handle_all, held_by};
use super::*;
use commerce_domain::order::check_skus;
use commerce_domain::saga::{Outcome, Phase, Step};
use commerce_domain::{
    Aggregate, Currency, Order, OrderCommand, OrderLine, OrderStatus, PlaceOrder, Sku,
};

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
        // Cheap checks first: a body of a thousand copies of one SKU is a
        // 422, never a read of the catalog or a call of the plugins.
        check_skus(request.items.iter().map(|i| &i.sku))?;
        if request.payment_token.is_none() {
            self.check_unpaid_limit(caller, &request.items).await?;
        }
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
        let order_id = Uuid::now_v7();
        crate::record_order_id(order_id);
        let (lines, command) = self
            .place_command(caller, order_id, &request, &products)
            .await?;
        // Placed and reserved in one write: the order exists only with its stock.
        let order = Order::from_events(order_id, []);
        let events = handle_all(&order, [command, OrderCommand::MarkReserved])?;
        let saga = self.saga_start(&order, &events, &request);
        let saga_write = saga.as_ref().map(reserved_with_the_order);
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
                    products = self.inventory().load_products(&skus).await?;
                    // Sold out rather than raced: the buyer hears it now,
                    // not after the pause.
                    self.still_in_stock(&wanted, &products)?;
                    self.after_stock_conflict(&mut attempt).await?;
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

    /// The command that places `order_id`: its lines priced from
    /// `products`, then evaluated by the pricing and validation plugins.
    async fn place_command(
        &self,
        caller: Caller,
        order_id: Uuid,
        request: &PlaceOrderRequest,
        products: &HashMap<Sku, Product>,
    ) -> Result<(Vec<OrderLine>, OrderCommand), AppError> {
        let lines = price_lines(products, request.currency, &request.items, &[])?;
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
        Ok((lines, command))
    }

    /// With a payment token (and a gateway), the fulfilment saga of the
    /// order that `events` place: it starts in the placing write, leased to
    /// this process, which drives it at once.
    fn saga_start(
        &self,
        order: &Order,
        events: &[OrderEvent],
        request: &PlaceOrderRequest,
    ) -> Option<SagaInstance> {
        let (Some(_), Some(token)) = (&self.payments, &request.payment_token) else {
            return None;
        };
        let mut placed = order.clone();
        let at = now();
        for event in events {
            placed.apply(event, at);
        }
        let payment = PaymentIntent {
            token: token.clone(),
            amount: placed.total,
            currency: request.currency,
        };
        Some(SagaInstance::start(
            order.id,
            payment,
            &self.saga.owner,
            self.saga.lease,
            at,
        ))
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
        crate::record_order_id(record.order_id);
        let order = self.store.get_view(record.order_id).await?.ok_or_else(|| {
            AppError::Unexpected(anyhow::anyhow!("idempotency record without its order"))
        })?;
        Ok(Some(Placed {
            order,
            replayed: true,
            settlement: None,
        }))
    }

    /// Refuses an order placed without payment when the customer already
    /// holds the most unpaid orders or units allowed. (Two placements at
    /// the same instant may both pass: the limit bounds hoarding, it is
    /// not a ledger.)
    async fn check_unpaid_limit(
        &self,
        caller: Caller,
        items: &[RequestedLine],
    ) -> Result<(), AppError> {
        let settings = &self.inventory_settings;
        let held = self.store.unpaid_holds(caller.subject).await?;
        let units: i64 = items.iter().map(|i| i64::from(i.quantity.get())).sum();
        if held.orders + 1 > settings.max_unpaid_orders
            || held.units + units > settings.max_unpaid_units
        {
            return Err(AppError::UnpaidLimit {
                held_orders: held.orders,
                held_units: held.units,
                max_orders: settings.max_unpaid_orders,
                max_units: settings.max_unpaid_units,
            });
        }
        Ok(())
    }

    /// Runs the pricing and validation plugins; any violation refuses.
    pub(super) async fn evaluate(&self, quote: Quote) -> Result<Evaluation, AppError> {
        let evaluation = self.plugins.evaluate(quote).await?;
        if !evaluation.violations.is_empty() {
            metrics::counter!(ORDERS, "outcome" => "rejected").increment(1);
            return Err(AppError::Rejected(evaluation.violations));
        }
        Ok(evaluation)
    }
}

/// Prices requested lines from the catalog, in the order's currency.
/// `keep` holds prices already quoted on the order, which stay.
pub(super) fn price_lines(
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

fn check_payment_token(request: &PlaceOrderRequest) -> Result<(), AppError> {
    request.payment_token.as_deref().map_or(Ok(()), check_token)
}

/// A payment token is 1 to [`MAX_PAYMENT_TOKEN_LEN`] characters.
pub(crate) fn check_token(token: &str) -> Result<(), AppError> {
    if token.is_empty() || token.chars().count() > MAX_PAYMENT_TOKEN_LEN {
        return Err(AppError::Invalid(format!(
            "payment.token must be 1 to {MAX_PAYMENT_TOKEN_LEN} characters"
        )));
    }
    Ok(())
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

/// The saga write that starts `saga` with its first step done: the stock
/// was reserved with the order.
pub(super) fn reserved_with_the_order(saga: &SagaInstance) -> SagaWrite {
    SagaWrite {
        instance: saga.clone(),
        expected_revision: None,
        history: vec![SagaStepRecord::new(
            saga.saga_id,
            Step::ReserveInventory,
            Phase::Action,
            Outcome::Ok,
            Some("stock reserved with the order".into()),
            0,
            saga.created_at,
        )],
    }
}
