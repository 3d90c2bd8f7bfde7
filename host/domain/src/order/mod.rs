//! The `Order` aggregate: commands, events and the order lifecycle.
//!
//! ```text
//! pending -> reserved -> paid -> confirmed -> shipped -> delivered
//!    |          |          |         |            \         /
//!    |          |          |         |             refunded (fully)
//!    +----------+----------+---------+--> cancelled (before shipped;
//!    |          |          |                a confirmed one is refunded
//!    |          |          |                and restocked)
//!    +----------+----------+-----------> failed (payment failed / vetoed
//!    |                                     / unpaid hold expired)
//!    +--> rejected (validation)
//! ```
//!
//! Every transition is decided by [`OrderStatus::after`]; a command that the
//! current status does not allow is an [`OrderError::IllegalTransition`],
//! never a silent no-op. Refunds (partial or full, with units taken back)
//! are decided in [`refund`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::aggregate::Aggregate;
use super::money::{Currency, MoneyError};
use super::pricing::{Adjustment, AdjustmentError, apply_adjustments, check_adjustment};
use super::product::Sku;

mod messages;
pub mod refund;

pub use messages::{OrderCommand, OrderEvent, OrderLine, PlaceOrder, PluginRef};
pub use refund::{PendingRefund, RefundLine, Restock};

/// Most lines in one order (and one cart): B2B orders run to hundreds of
/// lines; plugins get limits in proportion to the lines above 200.
pub const MAX_LINES: usize = 1_000;
/// Longest free-text reason kept on an event.
pub const MAX_REASON_LEN: usize = 500;

/// A reason the service composes (a failure, a veto, an operator's note
/// behind a prefix), cut to [`MAX_REASON_LEN`] characters with an
/// ellipsis: such a reason never blocks the transition it explains.
pub fn bounded_reason(reason: impl Into<String>) -> String {
    let reason = reason.into();
    if reason.chars().count() <= MAX_REASON_LEN {
        return reason;
    }
    let mut cut: String = reason.chars().take(MAX_REASON_LEN - 1).collect();
    cut.push('…');
    cut
}

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

    /// The order's own life is over (a refund, or taking units back, may
    /// still follow a delivery or a cancel of a confirmed order).
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
            (S::Reserved, A::StartPayment) => Some(S::Reserved),
            // A refund is asked first and settled later; the status moves
            // (to refunded) only when the last of the money is given back.
            (S::Confirmed | S::Shipped | S::Delivered | S::Cancelled, A::Refund) => Some(self),
            (S::Confirmed | S::Shipped | S::Delivered | S::Cancelled, A::SettleRefund) => {
                Some(self)
            }
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
    StartPayment,
    Refund,
    SettleRefund,
}

impl OrderAction {
    pub const ALL: [OrderAction; 12] = [
        OrderAction::ChangeItems,
        OrderAction::MarkReserved,
        OrderAction::Reject,
        OrderAction::RecordPayment,
        OrderAction::Confirm,
        OrderAction::Ship,
        OrderAction::Deliver,
        OrderAction::Cancel,
        OrderAction::Fail,
        OrderAction::StartPayment,
        OrderAction::Refund,
        OrderAction::SettleRefund,
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
            OrderAction::StartPayment => "pay",
            OrderAction::Refund => "refund",
            OrderAction::SettleRefund => "settle a refund of",
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
    #[error("a refund of this order is in progress; wait for it to finish")]
    RefundInProgress,
    #[error("at most {refundable} can still be refunded")]
    RefundTooLarge { refundable: Decimal },
    #[error("the refund gives back neither money nor units")]
    NothingToRefund,
    #[error("SKU {0} is not on the order")]
    NotOnOrder(Sku),
    #[error("at most {most} units of {sku} can be refunded or taken back")]
    TooManyUnits { sku: Sku, most: u32 },
    #[error("the order has no pending refund {0}")]
    NoSuchRefund(Uuid),
    #[error("the order's payment has already started")]
    PaymentStarted,
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
    /// The masked reference of the token it was placed with.
    pub payment_ref: Option<String>,
    pub payment_id: Option<String>,
    pub plugins: Vec<PluginRef>,
    /// Why the order is cancelled, rejected, failed or refunded.
    pub status_reason: Option<String>,
    /// What the gateway captured: the total, once confirmed.
    pub captured: Decimal,
    /// The order's stock left the shelf (it was confirmed).
    pub stock_committed: bool,
    /// Sum of the refunds made.
    pub refunded: Decimal,
    pub pending_refund: Option<PendingRefund>,
    /// Units put back on hand, by SKU.
    pub restocked: BTreeMap<Sku, u32>,
    /// A payment was started after placement (pay later).
    pub payment_started: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    version: u64,
}

/// What an order records of a payment token: its last four characters
/// behind an ellipsis (`…k_ok`), or the ellipsis alone for a token
/// shorter than eight, so the token itself never enters an event, a view,
/// a log or the stream. A reference already masked is kept as it is.
pub fn payment_ref_of(token: &str) -> String {
    if token.starts_with(MASK) {
        return token.to_owned();
    }
    let chars: Vec<char> = token.chars().collect();
    if chars.len() < 8 {
        return MASK.to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{MASK}{tail}")
}

const MASK: &str = "…";

/// An `OrderPlaced` event's data as it may be served or published: an
/// event written before tokens were masked holds `payment_token`, which
/// becomes its `payment_ref`. Other events, and events written since,
/// are left as they are. True if anything changed.
pub fn redact_event_data(event_type: &str, data: &mut serde_json::Value) -> bool {
    if event_type != "OrderPlaced" {
        return false;
    }
    let Some(object) = data.as_object_mut() else {
        return false;
    };
    let Some(token) = object.remove("payment_token") else {
        return false;
    };
    if let Some(token) = token.as_str() {
        object.insert("payment_ref".into(), payment_ref_of(token).into());
    }
    true
}

/// The checks of an order's lines that need nothing but their SKUs: at
/// least one line, at most [`MAX_LINES`], no SKU twice. Cheap, so callers
/// run them before anything costly (reading the catalog, the plugins).
pub fn check_skus<'a>(skus: impl ExactSizeIterator<Item = &'a Sku>) -> Result<(), OrderError> {
    match skus.len() {
        0 => return Err(OrderError::NoLines),
        n if n > MAX_LINES => return Err(OrderError::TooManyLines),
        _ => {}
    }
    let mut seen = std::collections::HashSet::with_capacity(skus.len());
    for sku in skus {
        if !seen.insert(sku) {
            return Err(OrderError::DuplicateSku(sku.clone()));
        }
    }
    Ok(())
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
        check_skus(lines.iter().map(|line| &line.sku))?;
        for line in lines {
            currency.amount(line.unit_price)?;
        }
        Ok(currency.total(lines.iter().map(|l| (l.unit_price, l.quantity.get())))?)
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
            return self.place(place).map(|placed| vec![placed]);
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
            OrderCommand::Reject { reason } => OrderEvent::OrderRejected {
                reason: bounded_reason(reason),
            },
            OrderCommand::RecordPayment { payment_id } => OrderEvent::OrderPaid { payment_id },
            OrderCommand::Confirm => OrderEvent::OrderConfirmed,
            OrderCommand::Ship if self.pending_refund.is_some() => {
                return Err(OrderError::RefundInProgress);
            }
            OrderCommand::Ship => OrderEvent::OrderShipped,
            OrderCommand::Deliver => OrderEvent::OrderDelivered,
            OrderCommand::Cancel { .. } if self.pending_refund.is_some() => {
                return Err(OrderError::RefundInProgress);
            }
            OrderCommand::Cancel { reason } => OrderEvent::OrderCancelled {
                reason: reason.map(bounded_reason),
                restocked: self.everything_out(),
            },
            OrderCommand::Fail { reason } => OrderEvent::OrderFailed {
                reason: bounded_reason(reason),
            },
            OrderCommand::StartPayment if self.payment_started => {
                return Err(OrderError::PaymentStarted);
            }
            OrderCommand::StartPayment => OrderEvent::OrderPaymentStarted,
            refund @ (OrderCommand::RequestRefund { .. }
            | OrderCommand::RecordRefund { .. }
            | OrderCommand::AbandonRefund { .. }) => self.refund_event(refund)?,
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
                payment_ref,
                plugins,
            } => {
                self.customer_id = *customer_id;
                self.currency = Some(*currency);
                self.lines = lines.clone();
                self.adjustments = adjustments.clone();
                self.total = *total;
                self.payment_ref = payment_ref.as_deref().map(payment_ref_of);
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
            OrderEvent::OrderConfirmed => {
                self.captured = self.total;
                self.stock_committed = true;
                OrderStatus::Confirmed
            }
            OrderEvent::OrderShipped => OrderStatus::Shipped,
            OrderEvent::OrderDelivered => OrderStatus::Delivered,
            OrderEvent::OrderCancelled { reason, restocked } => {
                self.status_reason = reason.clone();
                self.restock(restocked);
                OrderStatus::Cancelled
            }
            OrderEvent::OrderFailed { reason } => {
                self.status_reason = Some(reason.clone());
                OrderStatus::Failed
            }
            OrderEvent::OrderPaymentStarted => {
                self.payment_started = true;
                return;
            }
            OrderEvent::OrderRefundRequested { .. }
            | OrderEvent::OrderRefunded { .. }
            | OrderEvent::OrderRefundFailed { .. } => match self.apply_refund(event) {
                Some(status) => status,
                None => return,
            },
        };
        self.status = Some(status);
    }
}

impl Order {
    /// The event that places this (new) order.
    fn place(&self, place: PlaceOrder) -> Result<OrderEvent, OrderError> {
        if self.status.is_some() {
            return Err(OrderError::AlreadyPlaced);
        }
        let (adjustments, total) = Self::price(place.currency, &place.lines, place.adjustments)?;
        Ok(OrderEvent::OrderPlaced {
            customer_id: place.customer_id,
            currency: place.currency,
            lines: place.lines,
            adjustments,
            total,
            payment_ref: place.payment_token.as_deref().map(payment_ref_of),
            plugins: place.plugins,
        })
    }

    /// The pending refund `refund_id`.
    pub(super) fn pending(&self, refund_id: Uuid) -> Result<&PendingRefund, OrderError> {
        self.pending_refund
            .as_ref()
            .filter(|p| p.refund_id == refund_id)
            .ok_or(OrderError::NoSuchRefund(refund_id))
    }

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
