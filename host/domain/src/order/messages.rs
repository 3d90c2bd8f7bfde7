//! What is said to an order (commands, imperative) and what it says
//! happened (events, past tense), with the lines they carry.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::OrderAction;
use super::refund::{RefundLine, Restock};
use crate::aggregate::DomainEvent;
use crate::money::Currency;
use crate::pricing::Adjustment;
use crate::product::{Quantity, Sku};

/// One line of an order, priced by the server when it was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub name: String,
    pub quantity: Quantity,
    /// Price of one unit, at the order currency's scale.
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
}

/// A plugin version that took part in pricing or validating an order, kept
/// so that a historic quote can be reproduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    pub name: String,
    /// Registry version (it also pins the configuration).
    #[serde(default)]
    pub version: i64,
    pub sha256: String,
}

/// Place a new order. Lines must already carry server-side prices.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub payment_token: Option<String>,
    /// Adjustments from pricing plugins, in the order they apply.
    pub adjustments: Vec<Adjustment>,
    /// Plugin versions that priced and validated the order.
    pub plugins: Vec<PluginRef>,
}

/// Commands, imperative: what somebody asks of an order.
#[derive(Debug, Clone)]
pub enum OrderCommand {
    Place(PlaceOrder),
    ChangeItems {
        lines: Vec<OrderLine>,
        adjustments: Vec<Adjustment>,
        plugins: Vec<PluginRef>,
    },
    MarkReserved,
    Reject {
        reason: String,
    },
    RecordPayment {
        payment_id: String,
    },
    Confirm,
    Ship,
    Deliver,
    Cancel {
        reason: Option<String>,
    },
    Fail {
        reason: String,
    },
    /// Pay a reserved order that was placed without payment.
    StartPayment,
    /// Give money back (and take units back), as an intent: the gateway
    /// is asked after this is recorded.
    RequestRefund {
        refund_id: Uuid,
        /// `None`: everything still refundable.
        amount: Option<Decimal>,
        lines: Vec<RefundLine>,
        reason: Option<String>,
    },
    /// The gateway refunded the pending refund.
    RecordRefund {
        refund_id: Uuid,
    },
    /// The pending refund was given up (an operator aborted it).
    AbandonRefund {
        refund_id: Uuid,
        reason: String,
    },
}

impl OrderCommand {
    /// The transition this command asks for; `None` for `Place`.
    pub fn action(&self) -> Option<OrderAction> {
        Some(match self {
            OrderCommand::Place(_) => return None,
            OrderCommand::ChangeItems { .. } => OrderAction::ChangeItems,
            OrderCommand::MarkReserved => OrderAction::MarkReserved,
            OrderCommand::Reject { .. } => OrderAction::Reject,
            OrderCommand::RecordPayment { .. } => OrderAction::RecordPayment,
            OrderCommand::Confirm => OrderAction::Confirm,
            OrderCommand::Ship => OrderAction::Ship,
            OrderCommand::Deliver => OrderAction::Deliver,
            OrderCommand::Cancel { .. } => OrderAction::Cancel,
            OrderCommand::Fail { .. } => OrderAction::Fail,
            OrderCommand::StartPayment => OrderAction::StartPayment,
            OrderCommand::RequestRefund { .. } => OrderAction::Refund,
            OrderCommand::RecordRefund { .. } | OrderCommand::AbandonRefund { .. } => {
                OrderAction::SettleRefund
            }
        })
    }
}

/// Events, past tense: what happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderPlaced {
        customer_id: Uuid,
        currency: Currency,
        lines: Vec<OrderLine>,
        #[serde(default)]
        adjustments: Vec<Adjustment>,
        #[serde(with = "rust_decimal::serde::str")]
        total: Decimal,
        /// A masked reference to the payment token the order was placed
        /// with ([`payment_ref`](super::payment_ref)), never the token.
        /// Events written before tokens were masked hold the token itself
        /// under `payment_token`: read here, and masked wherever events are
        /// served or published ([`redact_event_data`](super::redact_event_data)).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            alias = "payment_token"
        )]
        payment_ref: Option<String>,
        /// Plugin versions that priced and validated the order.
        #[serde(default)]
        plugins: Vec<PluginRef>,
    },
    OrderItemsChanged {
        lines: Vec<OrderLine>,
        #[serde(default)]
        adjustments: Vec<Adjustment>,
        #[serde(with = "rust_decimal::serde::str")]
        total: Decimal,
        #[serde(default)]
        plugins: Vec<PluginRef>,
    },
    OrderReserved,
    OrderRejected {
        reason: String,
    },
    OrderPaid {
        payment_id: String,
    },
    OrderConfirmed,
    OrderShipped,
    OrderDelivered,
    OrderCancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Units put back on the shelf: a confirmed order's stock.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restocked: Vec<Restock>,
    },
    OrderFailed {
        reason: String,
    },
    /// A payment started for an order placed without one (pay later).
    OrderPaymentStarted,
    /// A refund is asked of the gateway: recorded before it is.
    OrderRefundRequested {
        refund_id: Uuid,
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<RefundLine>,
        /// Units that go back on the shelf when the refund is made.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restock: Vec<Restock>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Money given back (and units taken back). Written by older versions
    /// without `refund_id` and `amount`: a refund of everything captured.
    OrderRefunded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refund_id: Option<Uuid>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "rust_decimal::serde::str_option"
        )]
        amount: Option<Decimal>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restocked: Vec<Restock>,
    },
    /// A requested refund was given up: nothing was refunded or restocked.
    OrderRefundFailed {
        refund_id: Uuid,
        reason: String,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderItemsChanged { .. } => "OrderItemsChanged",
            OrderEvent::OrderReserved => "OrderReserved",
            OrderEvent::OrderRejected { .. } => "OrderRejected",
            OrderEvent::OrderPaid { .. } => "OrderPaid",
            OrderEvent::OrderConfirmed => "OrderConfirmed",
            OrderEvent::OrderShipped => "OrderShipped",
            OrderEvent::OrderDelivered => "OrderDelivered",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
            OrderEvent::OrderFailed { .. } => "OrderFailed",
            OrderEvent::OrderRefunded { .. } => "OrderRefunded",
            OrderEvent::OrderPaymentStarted => "OrderPaymentStarted",
            OrderEvent::OrderRefundRequested { .. } => "OrderRefundRequested",
            OrderEvent::OrderRefundFailed { .. } => "OrderRefundFailed",
        }
    }
}
