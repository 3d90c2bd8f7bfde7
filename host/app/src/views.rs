//! The order read model: what `GET /v1/orders...` returns, projected from
//! the `Order` aggregate. Both the inline projection (at append) and
//! `commerce replay` go through [`OrderView::project`], so they cannot
//! disagree.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use commerce_domain::{Adjustment, Aggregate, Order, OrderStatus};

/// Largest page of a list.
pub const MAX_PAGE: u32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 20;

/// One line of an order as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLineView {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    /// Decimal string, at the currency's scale.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "12.50")]
    pub unit_price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "25.00")]
    pub line_total: Decimal,
}

/// An order as read: a row of `order_views`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// ISO-4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    pub items: Vec<OrderLineView>,
    /// Sum of the line totals.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "25.00")]
    pub subtotal: Decimal,
    /// Discounts, fees and taxes from pricing plugins, in the order they apply.
    pub adjustments: Vec<Adjustment>,
    /// What the customer pays: the subtotal with every adjustment applied.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "22.50")]
    pub total: Decimal,
    /// What has been refunded so far (partial refunds add up; the status
    /// becomes `refunded` once it reaches what was paid).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "0.00")]
    pub refunded: Decimal,
    /// Why the order is cancelled, rejected, failed or refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The aggregate version; send it back in `If-Match` to change the order.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// The view of a placed order. Panics on an order that was never
    /// placed: projecting nothing is a bug, not an input error.
    pub fn project(order: &Order) -> OrderView {
        let status = order.status.expect("only placed orders are projected");
        let currency = order.currency.expect("a placed order has a currency");
        let items = order
            .lines
            .iter()
            .map(|l| {
                let mut line_total = l.unit_price * Decimal::from(l.quantity.get());
                line_total.rescale(currency.minor_digits());
                OrderLineView {
                    sku: l.sku.to_string(),
                    name: l.name.clone(),
                    quantity: l.quantity.get(),
                    unit_price: l.unit_price,
                    line_total,
                }
            })
            .collect();
        OrderView {
            id: order.id,
            customer_id: order.customer_id,
            status,
            currency: currency.code().to_owned(),
            items,
            subtotal: order.subtotal().expect("a placed order has a subtotal"),
            adjustments: order.adjustments.clone(),
            total: order.total,
            refunded: {
                let mut refunded = order.refunded;
                refunded.rescale(currency.minor_digits());
                refunded
            },
            status_reason: order.status_reason.clone(),
            version: order.version(),
            created_at: order.created_at.expect("placed"),
            updated_at: order.updated_at.expect("placed"),
        }
    }
}

/// A page request over `order_views`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only this customer's orders; `None` (admins only) for all.
    pub customer_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
    /// How many rows to return at most.
    pub limit: u32,
    /// Only orders older than this one (the previous page's last id).
    pub before: Option<Uuid>,
}

/// A page of orders, newest first, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
