//! The event store (appends with their inline projection, stock changes
//! and saga writes in one transaction), the ordered feed with the outbox
//! relay's place in it, and the `order_views` read model.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{InventoryChange, SagaWrite, StoreError};
use crate::views::{OrderQuery, OrderView};

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub schema_version: u32,
    pub data: Value,
    pub recorded_at: DateTime<Utc>,
}

/// An event as stored, with its place in the aggregate's stream
/// (`version`, from 1) and in the global feed (`position`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub aggregate_id: Uuid,
    pub aggregate_type: String,
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    /// The event's payload, shaped by `event_type` (docs/events.md).
    #[schema(value_type = Value)]
    pub data: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The event as it may be served or published: a payment token that
    /// an event written before tokens were masked holds is replaced by
    /// its masked reference (the stored bytes are never rewritten).
    pub fn redacted(mut self) -> Self {
        commerce_domain::order::redact_event_data(&self.event_type, &mut self.data);
        self
    }
}

/// "This customer used this key for this request and got this order."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub customer_id: Uuid,
    pub key: String,
    /// sha256 of the canonical request, to refuse a key reused for another request.
    pub request_hash: String,
    pub order_id: Uuid,
}

/// One atomic write: events appended to one aggregate at an expected
/// version, the read model brought up to date, and any idempotency keys
/// recorded; all in one transaction, or nothing. A cart checkout records
/// two keys for one order: the caller's and one for the cart's revision.
#[derive(Debug, Clone)]
pub struct Append {
    pub aggregate_id: Uuid,
    pub aggregate_type: &'static str,
    /// The version the stream must be at (0 for a new aggregate).
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
    pub view: OrderView,
    pub idempotency: Vec<IdempotencyRecord>,
    /// Stock moved in the same transaction as the events.
    pub inventory: Option<InventoryChange>,
    /// The order's saga, started or moved on by these events.
    pub saga: Option<SagaWrite>,
}

/// The event store with its inline order projection.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends atomically; `VersionConflict` if the stream moved on,
    /// `IdempotencyKeyTaken` if any of the keys exists (nothing is written).
    async fn append(&self, append: Append) -> Result<(), StoreError>;
    /// An aggregate's events in version order.
    async fn load_stream(&self, aggregate_id: Uuid) -> Result<Vec<StoredEvent>, StoreError>;
    /// Up to `limit` events with `position > after`, in position order.
    /// Only for reading a log nobody writes to (replay): on PostgreSQL,
    /// positions commit out of order, and a reader that moves past the
    /// last position it saw can skip an event that commits late. Ordered
    /// consumers use [`EventStore::read_feed`].
    async fn read_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
    /// Up to `limit` events after `after` in feed order, each with its
    /// cursor. Never skips an event: it returns only events whose place in
    /// the feed is final (every event that will ever sort before them is
    /// already committed), so an event committed late is returned later,
    /// after the cursor a reader holds, never before it.
    async fn read_feed(&self, after: FeedCursor, limit: u32) -> Result<Vec<FeedEvent>, StoreError>;
    /// The record for a customer's idempotency key, if any.
    async fn find_idempotency(
        &self,
        customer_id: Uuid,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Deletes up to `limit` idempotency keys recorded before `before`;
    /// returns how many. A request repeating a deleted key is a new request.
    async fn purge_idempotency_keys(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// A place in the event feed: the id of the transaction that wrote the
/// event (0 on SQLite, whose single writer commits positions in order),
/// then its position. The feed is ordered by this pair; the default is
/// the start of the feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedCursor {
    pub tx: i64,
    pub position: i64,
}

impl FeedCursor {
    /// Parses the opaque form `<tx>-<position>` of [`fmt::Display`];
    /// `None` for anything else.
    ///
    /// [`fmt::Display`]: std::fmt::Display
    pub fn parse(s: &str) -> Option<Self> {
        let (tx, position) = s.split_once('-')?;
        // Digits only: `i64::from_str` would also take a sign.
        let number = |n: &str| {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse::<i64>().ok()
        };
        Some(FeedCursor {
            tx: number(tx)?,
            position: number(position)?,
        })
    }
}

impl std::fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.tx, self.position)
    }
}

/// An event of the feed with its cursor (to resume after it).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub cursor: FeedCursor,
    pub event: StoredEvent,
}

impl FeedEvent {
    /// [`StoredEvent::redacted`].
    pub fn redacted(self) -> Self {
        FeedEvent {
            cursor: self.cursor,
            event: self.event.redacted(),
        }
    }
}

/// Where a named relay is in the feed, and which process may publish for
/// it: one lease per name, held by one owner at a time.
#[async_trait]
pub trait OutboxRelayStore: Send + Sync {
    /// Takes the lease of relay `name` for `owner` (or renews it) for
    /// `ttl`, if `owner` holds it or it has run out; returns the stored
    /// cursor (the start for a new relay), or `None` if another owner
    /// holds a live lease.
    async fn acquire_relay_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<FeedCursor>, StoreError>;
    /// Stores the relay's cursor if `owner` still holds the lease; false
    /// if another owner took it over (nothing is written).
    async fn save_relay_cursor(
        &self,
        name: &str,
        owner: &str,
        cursor: FeedCursor,
    ) -> Result<bool, StoreError>;
}

/// Where the relay publishes the feed: the Redis Stream `commerce.events`.
/// Every entry carries its cursor, which is how the stream itself knows
/// what it already holds.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// The cursor of the newest entry, `None` if nothing was published.
    async fn last_published(&self) -> Result<Option<FeedCursor>, StoreError>;
    /// Appends the events (in feed order), except any whose cursor is not
    /// after the newest entry's, so that a repeat (a relay that crashed
    /// before saving its cursor, a replica that lost its lease mid-page)
    /// publishes nothing twice. Returns how many were appended.
    async fn publish(&self, events: &[FeedEvent]) -> Result<usize, StoreError>;
}

/// The `order_views` read model.
#[async_trait]
pub trait OrderViews: Send + Sync {
    async fn get_view(&self, order_id: Uuid) -> Result<Option<OrderView>, StoreError>;
    /// Up to `query.limit` views, newest first: keyset-paginated by order
    /// id, which is a UUIDv7 and so ordered by creation time.
    async fn list_views(&self, query: &OrderQuery) -> Result<Vec<OrderView>, StoreError>;
    /// Up to `limit` order ids, oldest first, from `from` on (inclusive;
    /// `None`: the first order): ids are UUIDv7, so this walks orders in
    /// the order they were placed (a plugin replay reads them so).
    async fn order_ids_from(&self, from: Option<Uuid>, limit: u32)
    -> Result<Vec<Uuid>, StoreError>;
    /// Writes views rebuilt from the events (replay), each unless the
    /// stored one is newer (written since the replay read its events), in
    /// short transactions; then deletes views of orders without events.
    /// Safe while the service writes.
    async fn refresh_views(&self, views: Vec<OrderView>) -> Result<(), StoreError>;
    /// What a customer holds unpaid: orders `reserved` with no payment
    /// started (no saga), and the units they hold.
    async fn unpaid_holds(&self, customer_id: Uuid) -> Result<UnpaidHolds, StoreError>;
}

/// Orders a customer holds without paying, and their units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpaidHolds {
    pub orders: i64,
    pub units: i64,
}
