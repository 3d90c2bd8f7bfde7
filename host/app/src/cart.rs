//! Cart use cases: one cart per customer (the token's subject), read with
//! current catalog prices and the pricing plugins' adjustments, and
//! checked out into an order through the same path as `POST /v1/orders`.
//!
//! A cart stores only SKUs and quantities; prices are never stored, so a
//! cart always shows what an order placed now would cost. Every write
//! gives the cart a fresh random revision. Checkout records the order
//! under the key `cart:<revision>` besides the caller's key, in the order's
//! own transaction: two checkouts of the same cart state (a double click
//! and a retry with another key) place one order between them. Afterwards
//! the cart is deleted only if it is still at that revision, so a line
//! added meanwhile is not lost.

use std::collections::HashMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::catalog::{Unpriceable, price_line};
use super::extensions::{Quote, Violation};
use super::orders::{
    IdempotencyKey, PlaceOrderRequest, Placed, RequestedLine, check_idempotency_key,
};
use super::ports::{CartWrite, Product, RemoveLine, SetLine, StoredCart};
use super::{App, AppError, Caller, Carts};
use commerce_domain::order::MAX_LINES;
use commerce_domain::pricing::apply_adjustments;
use commerce_domain::product::MAX_QUANTITY;
use commerce_domain::{Adjustment, OrderStatus, Quantity, Sku};

/// How long an untouched cart lives by default.
pub const DEFAULT_CART_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Most lines in a cart: as many as an order may have.
pub const MAX_CART_LINES: usize = MAX_LINES;
/// Carts created: a first line put into a customer's empty (or expired)
/// cart. Conversion is `CART_CHECKOUTS / CARTS_CREATED`.
pub const CARTS_CREATED: &str = "commerce_carts_created_total";
/// Checkouts that placed an order (a retried or concurrent checkout of the
/// same cart state, which answers with the same order, counts once).
pub const CART_CHECKOUTS: &str = "commerce_cart_checkouts_total";
/// Carts that expired without a checkout (nor being emptied), each counted
/// by exactly one replica (see `CartStore::sweep_expired_carts`).
pub const CARTS_ABANDONED: &str = "commerce_carts_abandoned_total";
/// Expired carts one sweep forgets at most; a full batch is followed at once.
const SWEEP_BATCH: usize = 500;

/// A cart line that can be bought now, priced from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CartLineView {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    /// The catalog's current price.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "12.50")]
    pub unit_price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "25.00")]
    pub line_total: Decimal,
    /// Units that can be ordered now (on hand minus reserved).
    pub available: i64,
    /// More is asked for than is available: checking out would be refused.
    pub insufficient_stock: bool,
}

/// A cart line that cannot be bought now: its product was removed from the
/// catalog, or is now sold in another currency than the cart's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UnavailableLine {
    pub sku: String,
    pub quantity: u32,
    /// `unknown-sku` or `currency-mismatch`.
    pub reason: &'static str,
}

/// The caller's cart, priced now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CartView {
    pub customer_id: Uuid,
    /// ISO-4217 code of every line; null for an empty cart.
    #[schema(example = "EUR")]
    pub currency: Option<String>,
    /// Changes on every write; null for an empty cart.
    pub revision: Option<Uuid>,
    /// By SKU. Adjustments' `line` indexes this list.
    pub items: Vec<CartLineView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<UnavailableLine>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "25.00")]
    pub subtotal: Decimal,
    /// From the active pricing plugins, in the order they apply.
    pub adjustments: Vec<Adjustment>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "22.50")]
    pub total: Decimal,
    /// What validation plugins would object to at checkout; informative.
    pub violations: Vec<Violation>,
}

impl CartView {
    fn empty(customer_id: Uuid) -> Self {
        CartView {
            customer_id,
            currency: None,
            revision: None,
            items: Vec::new(),
            unavailable: Vec::new(),
            subtotal: Decimal::ZERO,
            adjustments: Vec::new(),
            total: Decimal::ZERO,
            violations: Vec::new(),
        }
    }
}

impl Carts<'_> {
    /// The caller's cart, priced now. Reading it renews its time to live.
    pub async fn get_cart(&self, caller: Caller) -> Result<CartView, AppError> {
        let cart = self.carts.load_cart(caller.subject, self.cart_ttl).await?;
        self.price_cart(caller, cart).await
    }

    /// Sets how many of `sku` the cart holds; 0 removes the line.
    ///
    /// Three reads and writes, not four: the product, the line written
    /// (the write answers with the cart as it left it, so it is not read
    /// back), the products of the cart's other lines. Reading the cart
    /// ahead, beside the product, to overlap the last step with the write
    /// was measured too: fewer steps to wait for, but more work per PUT,
    /// and a worse p99 with four clients on two cores (BENCHMARKS.md).
    pub async fn set_cart_item(
        &self,
        caller: Caller,
        sku: Sku,
        quantity: i64,
    ) -> Result<CartView, AppError> {
        if !(0..=i64::from(MAX_QUANTITY)).contains(&quantity) {
            return Err(AppError::Invalid(format!(
                "quantity must be between 0 and {MAX_QUANTITY}, got {quantity}"
            )));
        }
        let Ok(quantity) = Quantity::parse(quantity) else {
            return self.remove_cart_item(caller, sku).await;
        };
        let product = self
            .store
            .get_product(&sku)
            .await?
            .ok_or(AppError::NotFound("product"))?;
        let outcome = self
            .carts
            .set_cart_line(
                caller.subject,
                (&sku, quantity, product.currency),
                MAX_CART_LINES,
                self.cart_write(),
            )
            .await?;
        match outcome {
            SetLine::Set { created, cart } => {
                if created {
                    metrics::counter!(CARTS_CREATED).increment(1);
                }
                let others: Vec<Sku> = cart
                    .lines
                    .iter()
                    .map(|(s, _)| s)
                    .filter(|s| **s != sku)
                    .cloned()
                    .collect();
                let mut products = self.inventory().load_products(&others).await?;
                products.insert(sku, product);
                self.price_stored(caller, cart, &products).await
            }
            SetLine::TooManyLines => Err(AppError::Invalid(format!(
                "a cart holds at most {MAX_CART_LINES} lines"
            ))),
            SetLine::OtherCurrency(cart_currency) => Err(AppError::CurrencyMismatch {
                sku: sku.to_string(),
                product_currency: product.currency.to_string(),
                order_currency: cart_currency.to_string(),
            }),
        }
    }

    /// Removes a line (nothing happens if the cart has none for `sku`).
    /// The removal answers with the cart as it left it: not read back.
    pub async fn remove_cart_item(&self, caller: Caller, sku: Sku) -> Result<CartView, AppError> {
        match self
            .carts
            .remove_cart_line(caller.subject, &sku, self.cart_write())
            .await?
        {
            RemoveLine::Removed(left) => self.price_cart(caller, left).await,
            // Unchanged: shown as a read would (which slides its TTL).
            RemoveLine::Absent => self.get_cart(caller).await,
        }
    }

    /// Empties the caller's cart.
    pub async fn clear_cart(&self, caller: Caller) -> Result<(), AppError> {
        self.carts.delete_cart(caller.subject, None).await?;
        Ok(())
    }

    /// Turns the caller's cart into an order, exactly as `place_order`
    /// would, and then empties the cart if nobody changed it meanwhile.
    /// A retry with the same key returns the same order, even once the cart
    /// is gone; a concurrent checkout of the same cart with another key
    /// returns the order the first one placed.
    pub async fn checkout_cart(
        &self,
        caller: Caller,
        idempotency_key: Option<String>,
        payment_token: Option<String>,
    ) -> Result<Placed, AppError> {
        let caller_key = match idempotency_key {
            Some(key) => {
                check_idempotency_key(&key)?;
                let request_hash = fingerprint(&serde_json::json!({
                    "checkout": "cart",
                    "payment_token": payment_token,
                }));
                Some(IdempotencyKey { key, request_hash })
            }
            None => None,
        };
        // A retry of a checkout that went through: the cart may be empty
        // (or hold new lines) by now, so answer before reading it.
        if let Some(k) = &caller_key
            && let Some(placed) = self
                .orders()
                .replay_idempotent(caller, &k.key, &k.request_hash)
                .await?
        {
            return Ok(placed);
        }
        let cart = self
            .carts
            .load_cart(caller.subject, self.cart_ttl)
            .await?
            .ok_or_else(|| AppError::Invalid("the cart is empty".into()))?;
        let request = PlaceOrderRequest {
            currency: cart.currency,
            items: cart
                .lines
                .iter()
                .map(|(sku, quantity)| RequestedLine {
                    sku: sku.clone(),
                    quantity: *quantity,
                })
                .collect(),
            payment_token,
        };
        let revision_key = IdempotencyKey {
            key: format!("cart:{}", cart.revision),
            request_hash: fingerprint(&serde_json::json!({ "cart_revision": cart.revision })),
        };
        let keys = std::iter::once(revision_key).chain(caller_key).collect();
        let placed = self
            .orders()
            .place_order_with_keys(caller, request, keys)
            .await?;
        if !placed.replayed {
            metrics::counter!(CART_CHECKOUTS).increment(1);
        }
        // The order stands whatever happens to the cart now; a cart left
        // behind by a failure here checks out again into the same order.
        match self
            .carts
            .delete_cart(caller.subject, Some(cart.revision))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(customer_id = %caller.subject, "cart changed during checkout; kept")
            }
            Err(e) => {
                tracing::warn!(customer_id = %caller.subject, error = ?e, "cart not emptied after checkout")
            }
        }
        Ok(placed)
    }

    fn cart_write(&self) -> CartWrite {
        CartWrite {
            revision: Uuid::new_v4(),
            ttl: self.cart_ttl,
        }
    }

    /// Prices a stored cart from the catalog and runs the plugins on it.
    async fn price_cart(
        &self,
        caller: Caller,
        cart: Option<StoredCart>,
    ) -> Result<CartView, AppError> {
        let Some(cart) = cart else {
            return Ok(CartView::empty(caller.subject));
        };
        let skus: Vec<Sku> = cart.lines.iter().map(|(sku, _)| sku.clone()).collect();
        let products = self.inventory().load_products(&skus).await?;
        self.price_stored(caller, cart, &products).await
    }

    /// Prices a cart with `products` (the catalog's, read now) and runs the
    /// plugins on it. Violations are reported, not enforced: that happens
    /// at checkout.
    async fn price_stored(
        &self,
        caller: Caller,
        cart: StoredCart,
        products: &HashMap<Sku, Product>,
    ) -> Result<CartView, AppError> {
        let currency = cart.currency;
        let mut items = Vec::new();
        let mut unavailable = Vec::new();
        let mut lines = Vec::new();
        for (sku, quantity) in &cart.lines {
            let reason = match price_line(products.get(sku), sku, *quantity, currency) {
                Err(Unpriceable::UnknownSku) => "unknown-sku",
                Err(Unpriceable::CurrencyMismatch { .. }) => "currency-mismatch",
                Ok(line) => {
                    let mut line_total = line.unit_price * Decimal::from(quantity.get());
                    line_total.rescale(currency.minor_digits());
                    let available = products.get(sku).map_or(0, |p| p.on_hand - p.reserved);
                    items.push(CartLineView {
                        sku: sku.to_string(),
                        name: line.name.clone(),
                        quantity: quantity.get(),
                        unit_price: line.unit_price,
                        line_total,
                        available,
                        insufficient_stock: i64::from(quantity.get()) > available,
                    });
                    lines.push(line);
                    continue;
                }
            };
            unavailable.push(UnavailableLine {
                sku: sku.to_string(),
                quantity: quantity.get(),
                reason,
            });
        }
        // A cart can come to more than an order may carry (its lines'
        // prices rose, or it was filled to the brim): showing it is then a
        // conflict with its content, not bad input.
        let subtotal = currency
            .total(lines.iter().map(|l| (l.unit_price, l.quantity.get())))
            .map_err(|e| match e {
                commerce_domain::MoneyError::OutOfRange(amount) => AppError::Conflict(format!(
                    "the cart comes to {amount}, more than an order may carry; lower a quantity or remove a line"
                )),
                other => AppError::Money(other),
            })?;
        let evaluation = if lines.is_empty() {
            Default::default()
        } else {
            self.plugins
                .evaluate(Quote {
                    // The revision names this content: the same cart is
                    // quoted with the same id, so plugins answer alike.
                    order_id: cart.revision,
                    customer_id: caller.subject,
                    status: OrderStatus::Pending,
                    currency,
                    lines,
                })
                .await?
        };
        let total = apply_adjustments(currency, subtotal, &evaluation.adjustments);
        Ok(CartView {
            customer_id: caller.subject,
            currency: Some(currency.to_string()),
            revision: Some(cart.revision),
            items,
            unavailable,
            subtotal,
            adjustments: evaluation.adjustments,
            total,
            violations: evaluation.violations,
        })
    }
}

fn fingerprint(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// Forgets expired carts every `every`, counting each in
/// [`CARTS_ABANDONED`]; runs in every replica (each expired cart is
/// counted once between them) until the process ends.
pub async fn run_abandonment_sweeper(app: App, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        loop {
            match app
                .carts
                .sweep_expired_carts(app.cart_ttl, SWEEP_BATCH)
                .await
            {
                Ok(swept) => {
                    if swept > 0 {
                        metrics::counter!(CARTS_ABANDONED).increment(swept);
                        tracing::debug!(swept, "abandoned carts swept");
                    }
                    if swept < SWEEP_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "abandoned carts not swept; trying again later");
                    break;
                }
            }
        }
    }
}
