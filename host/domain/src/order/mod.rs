//! The `Order` aggregate: commands, events and the order lifecycle.
//!
//! ```text
//! pending -> reserved -> paid -> confirmed -> shipped -> delivered
//!    |          |          |         |            \         /
//!    |          |          |         |             refunded (after paid)
//!    +----------+----------+---------+--> cancelled (before shipped)
//!    +----------+----------+-----------> failed (payment failed / vetoed)
//!    +--> rejected (validation)
//! ```
//!
//! Every transition is decided by [`OrderStatus::after`]; a command that the
//! current status does not allow is an [`OrderError::IllegalTransition`],
//! never a silent no-op.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};
use super::money::{Currency, MoneyError};
use super::pricing::{Adjustment, AdjustmentError, apply_adjustments, check_adjustment};
use super::product::{Quantity, Sku};

/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Longest free-text reason kept on an event.
pub const MAX_REASON_LEN: usize = 500;

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Reserved,
    Paid,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Rejected,
    Failed,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 10] = [
        OrderStatus::Pending,
        OrderStatus::Reserved,
        OrderStatus::Paid,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Rejected,
        OrderStatus::Failed,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Reserved => "reserved",
            OrderStatus::Paid => "paid",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Failed => "failed",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The fulfilment is decided: confirmed (paid) or ended. What a
    /// client waiting on a placement's outcome waits for.
    pub fn is_settled(self) -> bool {
        self == OrderStatus::Confirmed || self.is_terminal()
    }

    /// No further transition is possible.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Delivered
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Failed
                | OrderStatus::Refunded
        )
    }

    /// The lifecycle, in one table: the status an order reaches when
    /// `action` is taken in status `self`, or `None` if it is illegal.
    pub fn after(self, action: OrderAction) -> Option<OrderStatus> {
        use OrderAction as A;
        use OrderStatus as S;
        match (self, action) {
            (S::Pending | S::Reserved, A::ChangeItems) => Some(self),
            (S::Pending, A::MarkReserved) => Some(S::Reserved),
            (S::Pending, A::Reject) => Some(S::Rejected),
            (S::Reserved, A::RecordPayment) => Some(S::Paid),
            (S::Paid, A::Confirm) => Some(S::Confirmed),
            (S::Confirmed, A::Ship) => Some(S::Shipped),
            (S::Shipped, A::Deliver) => Some(S::Delivered),
            (S::Pending | S::Reserved | S::Paid | S::Confirmed, A::Cancel) => Some(S::Cancelled),
            (S::Pending | S::Reserved | S::Paid, A::Fail) => Some(S::Failed),
            (S::Paid | S::Confirmed | S::Shipped | S::Delivered, A::Refund) => Some(S::Refunded),
            _ => None,
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a command does to an existing order, named for error messages and
/// for the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    ChangeItems,
    MarkReserved,
    Reject,
    RecordPayment,
    Confirm,
    Ship,
    Deliver,
    Cancel,
    Fail,
    Refund,
}

impl OrderAction {
    pub const ALL: [OrderAction; 10] = [
        OrderAction::ChangeItems,
        OrderAction::MarkReserved,
        OrderAction::Reject,
        OrderAction::RecordPayment,
        OrderAction::Confirm,
        OrderAction::Ship,
        OrderAction::Deliver,
        OrderAction::Cancel,
        OrderAction::Fail,
        OrderAction::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderAction::ChangeItems => "change items of",
            OrderAction::MarkReserved => "reserve",
            OrderAction::Reject => "reject",
            OrderAction::RecordPayment => "record payment of",
            OrderAction::Confirm => "confirm",
            OrderAction::Ship => "ship",
            OrderAction::Deliver => "deliver",
            OrderAction::Cancel => "cancel",
            OrderAction::Fail => "fail",
            OrderAction::Refund => "refund",
        }
    }
}

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
    Refund {
        reason: Option<String>,
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
            OrderCommand::Refund { .. } => OrderAction::Refund,
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_token: Option<String>,
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
    },
    OrderFailed {
        reason: String,
    },
    OrderRefunded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
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
        }
    }
}

/// Why a command was refused. Each variant says how to handle it: the
/// `Illegal*`/`AlreadyPlaced` ones are conflicts (409), the others bad input
/// (422), `NotPlaced` a missing order (404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order already exists")]
    AlreadyPlaced,
    #[error("the order does not exist")]
    NotPlaced,
    #[error("cannot {} an order that is {from}", action.as_str())]
    IllegalTransition {
        action: OrderAction,
        from: OrderStatus,
    },
    #[error("an order needs at least one line")]
    NoLines,
    #[error("an order has at most {MAX_LINES} lines")]
    TooManyLines,
    #[error("SKU {0} appears on more than one line")]
    DuplicateSku(Sku),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("invalid price adjustment: {0}")]
    Adjustment(#[from] AdjustmentError),
    #[error("reason is longer than {MAX_REASON_LEN} characters")]
    ReasonTooLong,
}

/// The state of one order: the fold of its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    /// `None` until placed.
    pub status: Option<OrderStatus>,
    pub currency: Option<Currency>,
    pub lines: Vec<OrderLine>,
    pub adjustments: Vec<Adjustment>,
    pub total: Decimal,
    pub payment_token: Option<String>,
    pub payment_id: Option<String>,
    pub plugins: Vec<PluginRef>,
    /// Why the order is cancelled, rejected, failed or refunded.
    pub status_reason: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    version: u64,
}

impl Order {
    /// Whether `action` is legal in the current status.
    pub fn check(&self, action: OrderAction) -> Result<(), OrderError> {
        let from = self.status.ok_or(OrderError::NotPlaced)?;
        match from.after(action) {
            Some(_) => Ok(()),
            None => Err(OrderError::IllegalTransition { action, from }),
        }
    }

    /// Checks lines and adjustments; returns the checked adjustments and the total.
    fn price(
        currency: Currency,
        lines: &[OrderLine],
        adjustments: Vec<Adjustment>,
    ) -> Result<(Vec<Adjustment>, Decimal), OrderError> {
        let subtotal = Self::check_lines(currency, lines)?;
        let adjustments = adjustments
            .into_iter()
            .map(|a| check_adjustment(currency, lines.len(), a))
            .collect::<Result<Vec<_>, _>>()?;
        let total = apply_adjustments(currency, subtotal, &adjustments);
        Ok((adjustments, total))
    }

    /// Sum of line totals at the currency's scale, once placed.
    pub fn subtotal(&self) -> Option<Decimal> {
        self.currency?
            .total(self.lines.iter().map(|l| (l.unit_price, l.quantity.get())))
            .ok()
    }

    fn check_lines(currency: Currency, lines: &[OrderLine]) -> Result<Decimal, OrderError> {
        if lines.is_empty() {
            return Err(OrderError::NoLines);
        }
        if lines.len() > MAX_LINES {
            return Err(OrderError::TooManyLines);
        }
        let mut seen = std::collections::HashSet::with_capacity(lines.len());
        for line in lines {
            if !seen.insert(&line.sku) {
                return Err(OrderError::DuplicateSku(line.sku.clone()));
            }
            currency.amount(line.unit_price)?;
        }
        Ok(currency.total(lines.iter().map(|l| (l.unit_price, l.quantity.get())))?)
    }

    fn check_reason(reason: &str) -> Result<(), OrderError> {
        if reason.chars().count() > MAX_REASON_LEN {
            return Err(OrderError::ReasonTooLong);
        }
        Ok(())
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn version(&self) -> u64 {
        self.version
    }

    fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        let Some(action) = command.action() else {
            let OrderCommand::Place(place) = command else {
                unreachable!("only Place has no action")
            };
            if self.status.is_some() {
                return Err(OrderError::AlreadyPlaced);
            }
            let (adjustments, total) =
                Self::price(place.currency, &place.lines, place.adjustments)?;
            return Ok(vec![OrderEvent::OrderPlaced {
                customer_id: place.customer_id,
                currency: place.currency,
                lines: place.lines,
                adjustments,
                total,
                payment_token: place.payment_token,
                plugins: place.plugins,
            }]);
        };
        self.check(action)?;
        let event = match command {
            OrderCommand::Place(_) => unreachable!("handled above"),
            OrderCommand::ChangeItems {
                lines,
                adjustments,
                plugins,
            } => {
                let currency = self.currency.ok_or(OrderError::NotPlaced)?;
                let (adjustments, total) = Self::price(currency, &lines, adjustments)?;
                OrderEvent::OrderItemsChanged {
                    lines,
                    adjustments,
                    total,
                    plugins,
                }
            }
            OrderCommand::MarkReserved => OrderEvent::OrderReserved,
            OrderCommand::Reject { reason } => {
                Self::check_reason(&reason)?;
                OrderEvent::OrderRejected { reason }
            }
            OrderCommand::RecordPayment { payment_id } => OrderEvent::OrderPaid { payment_id },
            OrderCommand::Confirm => OrderEvent::OrderConfirmed,
            OrderCommand::Ship => OrderEvent::OrderShipped,
            OrderCommand::Deliver => OrderEvent::OrderDelivered,
            OrderCommand::Cancel { reason } => {
                if let Some(r) = &reason {
                    Self::check_reason(r)?;
                }
                OrderEvent::OrderCancelled { reason }
            }
            OrderCommand::Fail { reason } => {
                Self::check_reason(&reason)?;
                OrderEvent::OrderFailed { reason }
            }
            OrderCommand::Refund { reason } => {
                if let Some(r) = &reason {
                    Self::check_reason(r)?;
                }
                OrderEvent::OrderRefunded { reason }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &OrderEvent, at: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = Some(at);
        let status = match event {
            OrderEvent::OrderPlaced {
                customer_id,
                currency,
                lines,
                adjustments,
                total,
                payment_token,
                plugins,
            } => {
                self.customer_id = *customer_id;
                self.currency = Some(*currency);
                self.lines = lines.clone();
                self.adjustments = adjustments.clone();
                self.total = *total;
                self.payment_token = payment_token.clone();
                self.plugins = plugins.clone();
                self.created_at = Some(at);
                OrderStatus::Pending
            }
            OrderEvent::OrderItemsChanged {
                lines,
                adjustments,
                total,
                plugins,
            } => {
                self.lines = lines.clone();
                self.adjustments = adjustments.clone();
                self.total = *total;
                self.plugins = plugins.clone();
                return;
            }
            OrderEvent::OrderReserved => OrderStatus::Reserved,
            OrderEvent::OrderRejected { reason } => {
                self.status_reason = Some(reason.clone());
                OrderStatus::Rejected
            }
            OrderEvent::OrderPaid { payment_id } => {
                self.payment_id = Some(payment_id.clone());
                OrderStatus::Paid
            }
            OrderEvent::OrderConfirmed => OrderStatus::Confirmed,
            OrderEvent::OrderShipped => OrderStatus::Shipped,
            OrderEvent::OrderDelivered => OrderStatus::Delivered,
            OrderEvent::OrderCancelled { reason } => {
                self.status_reason = reason.clone();
                OrderStatus::Cancelled
            }
            OrderEvent::OrderFailed { reason } => {
                self.status_reason = Some(reason.clone());
                OrderStatus::Failed
            }
            OrderEvent::OrderRefunded { reason } => {
                self.status_reason = reason.clone();
                OrderStatus::Refunded
            }
        };
        self.status = Some(status);
    }
}

impl Order {
    /// Rebuilds an order with a known id from its events.
    pub fn from_events<'a, I>(id: Uuid, events: I) -> Self
    where
        I: IntoIterator<Item = (&'a OrderEvent, DateTime<Utc>)>,
    {
        let mut order = <Order as Aggregate>::rehydrate(events);
        order.id = id;
        order
    }
}

#[cfg(test)]
mod tests;
