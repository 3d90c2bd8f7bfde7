//! Order use cases: place, read, list, change, cancel, and the admin
//! transitions, over the event store and its inline projection.
//!
//! Every write is one transaction: the new events at the expected version,
//! the read-model row, and the idempotency key (see `ports::Append`).
//!
//! - [`place`]: placing an order (pricing, plugins, the stock hold, the
//!   saga's start, idempotent replays);
//! - [`change`]: commands on an existing order (change items, cancel, the
//!   admin transitions), retried on lost races;
//! - [`commit`]: loading an order and committing its events with their
//!   projection, stock change and saga write; the stored event codec;
//! - here: the request types and the reads.

mod change;
mod commit;
mod pay;
mod place;
mod refund;

pub use commit::{decode_event, encode_event};
pub(crate) use place::check_idempotency_key;
pub use refund::RefundOutcome;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use uuid::Uuid;

use crate::ports::StoredEvent;
use crate::settlements::Watch;
use crate::views::{DEFAULT_PAGE, MAX_PAGE, OrderPage, OrderQuery, OrderView};
use crate::{AppError, Caller, Orders};
use commerce_domain::{Currency, OrderCommand, OrderEvent, OrderStatus, Quantity, Sku};

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
    /// Only this customer's orders. A customer's list holds only their
    /// own, so asking for another's gives an empty page.
    pub customer: Option<Uuid>,
    pub status: Option<OrderStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// What a write to an existing order wants, decided on its current state.
pub(crate) enum Intent {
    Command(OrderCommand),
    /// Replace the lines, pricing new SKUs from the catalog.
    ChangeItems(Vec<RequestedLine>),
    /// Give money back (and take units back) through a refund saga.
    Refund(RefundRequest),
}

/// `POST /v1/orders/{id}/refund`, parsed: nothing asked is a refund of
/// everything still refundable.
#[derive(Debug, Clone, Default)]
pub struct RefundRequest {
    /// `None`: all that is left.
    pub amount: Option<rust_decimal::Decimal>,
    pub lines: Vec<commerce_domain::RefundLine>,
    pub reason: Option<String>,
}

/// The admin-only transitions exposed over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTransition {
    Ship,
    Deliver,
}

/// What a write to an existing order carries: the commands, decided
/// together, and what goes with them in the same transaction.
pub(crate) struct Plan {
    pub(crate) commands: Vec<OrderCommand>,
    pub(crate) inventory: Option<crate::ports::InventoryChange>,
    pub(crate) saga: Option<crate::ports::SagaWrite>,
    /// A saga this process drives once the write is made.
    pub(crate) drive: Option<crate::ports::SagaInstance>,
}

impl Plan {
    fn of(command: OrderCommand, inventory: Option<crate::ports::InventoryChange>) -> Plan {
        Plan {
            commands: vec![command],
            inventory,
            saga: None,
            drive: None,
        }
    }
}

impl Orders<'_> {
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
        let customer_id = if caller.is_admin() {
            request.customer
        } else if request.customer.is_none_or(|c| c == caller.subject) {
            Some(caller.subject)
        } else {
            return Ok(OrderPage {
                items: Vec::new(),
                next_cursor: None,
            });
        };
        let query = OrderQuery {
            customer_id,
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

    /// An order's history, oldest first.
    pub async fn order_events(
        &self,
        caller: Caller,
        order_id: Uuid,
    ) -> Result<Vec<StoredEvent>, AppError> {
        // Authorize on the read model, then read the stream.
        self.get_order(caller, order_id).await?;
        let events = self.store.load_stream(order_id).await?;
        Ok(events.into_iter().map(StoredEvent::redacted).collect())
    }
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
