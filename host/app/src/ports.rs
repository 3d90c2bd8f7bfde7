//! Ports: what the application needs from storage and from the payment
//! gateway. Adapters in `commerce_store` implement the storage ports for
//! SQLite and PostgreSQL, and one contract test suite
//! (`tests/store_contract.rs`) holds both to the same behaviour;
//! `commerce_payment` implements [`PaymentGateway`] over HTTP.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use super::saga::{SagaInstance, SagaStepRecord, SagaWrite};
use super::views::{OrderQuery, OrderView};
use commerce_domain::saga::SagaStatus;
use commerce_domain::{Currency, Quantity, Sku, StockClaim};

/// Storage failures the application distinguishes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the aggregate first: the expected version
    /// is stale. Reload and retry, or report a conflict.
    #[error("version conflict on aggregate {aggregate_id}: expected version {expected}")]
    VersionConflict { aggregate_id: Uuid, expected: u64 },
    /// The idempotency key was already used by this customer; the append
    /// was not made.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    /// A stock claim did not apply: the product moved past the version it
    /// was planned on, or no longer has the units. Nothing was written;
    /// re-read the stock and plan again.
    #[error("stock of {sku} changed concurrently")]
    StockConflict { sku: Sku },
    /// The saga moved past the revision the writer read (another process
    /// took it over, or an operator or a cancel changed it), or the order
    /// already has a saga. Nothing was written; reload the saga.
    #[error("saga {saga_id} changed concurrently")]
    SagaConflict { saga_id: Uuid },
    /// The database cannot be reached or timed out.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("unexpected storage error")]
    Unexpected(#[source] anyhow::Error),
}

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
    #[schema(value_type = Object)]
    pub data: Value,
    pub recorded_at: DateTime<Utc>,
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

/// A change of the stock an order holds, written atomically with the
/// order's events. Its idempotency per order comes from that: a retried
/// `Hold` carries a stale expected version and is refused whole, and
/// `Release`/`Commit` only touch reservations still `held`, so running
/// one twice changes nothing the second time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryChange {
    /// Applies the claims: each moves `products.reserved` by its delta and
    /// sets the order's held quantity of that SKU, valid until
    /// `expires_at`. A positive delta is a conditional update on the
    /// expected version and on availability; if the product moved on, the
    /// store may re-read it within the transaction and retry a few times
    /// while the units are there, else `StockConflict`.
    Hold {
        order_id: Uuid,
        claims: Vec<StockClaim>,
        expires_at: DateTime<Utc>,
    },
    /// Gives back everything the order holds.
    Release { order_id: Uuid },
    /// What the order holds leaves the shelf: `on_hand` and `reserved`
    /// both go down by it (on payment).
    Commit { order_id: Uuid },
}

impl InventoryChange {
    /// Its name, as a metric label: `hold`, `release` or `commit`.
    pub fn operation(&self) -> &'static str {
        match self {
            InventoryChange::Hold { .. } => "hold",
            InventoryChange::Release { .. } => "release",
            InventoryChange::Commit { .. } => "commit",
        }
    }
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Held,
    Committed,
    Released,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Committed => "committed",
            ReservationState::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Held, Self::Committed, Self::Released]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// Units of one SKU held for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: Uuid,
    pub sku: Sku,
    pub quantity: i64,
    pub state: ReservationState,
    pub expires_at: DateTime<Utc>,
}

/// A manual change of a product's stock.
#[derive(Debug, Clone)]
pub struct StockAdjustment {
    pub sku: Sku,
    pub delta: i64,
    /// Applies only if the product is still at this version.
    pub expected_version: i64,
    pub reason: String,
    pub actor: Uuid,
    pub at: DateTime<Utc>,
}

/// Reservations and stock, beyond what travels with an order's events.
#[async_trait]
pub trait Inventory: Send + Sync {
    /// An order's reservations, by SKU.
    async fn reservations(&self, order_id: Uuid) -> Result<Vec<Reservation>, StoreError>;
    /// Orders holding a reservation that expired before `now`, oldest
    /// expiry first.
    async fn expired_holds(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Uuid>, StoreError>;
    /// Releases what the order holds without touching its events (for an
    /// order that can no longer record a failure). Returns the units given back.
    async fn release_holds(&self, order_id: Uuid, at: DateTime<Utc>) -> Result<i64, StoreError>;
    /// Applies a manual adjustment if the product is at the expected
    /// version and stays at or above what is reserved; `Ok(None)` if not.
    async fn adjust_stock(
        &self,
        adjustment: StockAdjustment,
    ) -> Result<Option<Product>, StoreError>;
    /// Every product's stock, for reconciling a cache (`limit` rows with
    /// SKUs after `after`, by SKU).
    async fn stock_page(&self, after: Option<&Sku>, limit: u32)
    -> Result<Vec<Product>, StoreError>;
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
    /// Replaces the whole read model in one transaction (replay).
    async fn replace_views(&self, views: Vec<OrderView>) -> Result<(), StoreError>;
}

/// A product with its price and stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: Sku,
    pub name: String,
    pub unit_price: Decimal,
    pub currency: Currency,
    pub on_hand: i64,
    pub reserved: i64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// What an admin sets with `PUT /v1/products/{sku}`.
#[derive(Debug, Clone)]
pub struct ProductUpsert {
    pub sku: Sku,
    pub name: String,
    pub unit_price: Decimal,
    pub currency: Currency,
    pub on_hand: i64,
    pub at: DateTime<Utc>,
}

/// The product table.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Creates or replaces a product. Stock below what is reserved is a
    /// `Ok(None)`, leaving the product unchanged.
    async fn upsert_product(&self, product: ProductUpsert) -> Result<Option<Product>, StoreError>;
    async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError>;
    /// The products among `skus` that exist (in no particular order).
    async fn get_products(&self, skus: &[Sku]) -> Result<Vec<Product>, StoreError>;
}

/// A cache of products (price and stock) in front of the database: Redis
/// when configured. The database stays the truth; the cache may lag or be
/// lost and is repaired by the reconciler.
#[async_trait]
pub trait StockCache: Send + Sync {
    /// The cached products among `skus`, in the same order (`None`: not cached).
    async fn get_many(&self, skus: &[Sku]) -> Result<Vec<Option<Product>>, StoreError>;
    /// Caches products, except where the cache already holds a newer
    /// version of one (concurrent writers cannot go back in time).
    async fn put(&self, products: &[Product]) -> Result<(), StoreError>;
    /// Checks the cache answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Saga instances, their leases and their history. Writes that carry
/// order events go through [`EventStore::append`] with `Append::saga`.
#[async_trait]
pub trait SagaStore: Send + Sync {
    /// Writes a saga without order events (a retry scheduled, a claim
    /// given up, a compensation with nothing to record on the order),
    /// with an optional stock change in the same transaction.
    async fn save_saga(
        &self,
        write: SagaWrite,
        inventory: Option<InventoryChange>,
    ) -> Result<(), StoreError>;
    async fn get_saga(&self, saga_id: Uuid) -> Result<Option<SagaInstance>, StoreError>;
    /// The saga of an order, if it has one.
    async fn saga_of(&self, correlation_id: Uuid) -> Result<Option<SagaInstance>, StoreError>;
    /// A saga's history, oldest first.
    async fn saga_history(&self, saga_id: Uuid) -> Result<Vec<SagaStepRecord>, StoreError>;
    /// Up to `limit` sagas (in one status, or all) with ids after `after`,
    /// by id (UUIDv7: creation order).
    async fn list_sagas(
        &self,
        status: Option<SagaStatus>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<SagaInstance>, StoreError>;
    /// Leases up to `limit` running or compensating sagas that are due
    /// (`next_attempt_at <= now`) and not leased (no lease, or an expired
    /// one) to `owner` until `lease_until`, bumping their revision so a
    /// former owner's late write is refused. Concurrent claimers get
    /// disjoint sets.
    async fn claim_sagas(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SagaInstance>, StoreError>;
    /// How many sagas are in `status`.
    async fn count_sagas(&self, status: SagaStatus) -> Result<i64, StoreError>;
    /// Gives up every lease `owner` holds on an unfinished saga, bumping
    /// the revision (so the owner's late writes are refused) and making
    /// the sagas due now: another replica's worker takes them at once.
    /// Returns how many were released.
    async fn release_saga_leases(&self, owner: &str) -> Result<u64, StoreError>;
}

/// Everything a backend provides.
#[async_trait]
pub trait Store:
    EventStore
    + OrderViews
    + Catalog
    + Inventory
    + PluginRegistry
    + CartStore
    + SagaStore
    + OutboxRelayStore
{
    /// Which backend this is, for logs (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;
    /// Checks that the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A stored plugin version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PluginRecord {
    pub name: String,
    pub version: i64,
    pub kind: super::extensions::PluginKind,
    /// Hex sha256 of the component bytes.
    pub sha256: String,
    /// JSON document handed to the plugin by `host.config()`.
    pub config: String,
    /// Lower runs first; ties are broken by name.
    pub priority: i32,
    /// Size of the component in bytes.
    pub size: i64,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// A new plugin version to store.
#[derive(Debug, Clone)]
pub struct NewPluginVersion {
    pub name: String,
    pub kind: super::extensions::PluginKind,
    pub sha256: String,
    pub bytes: Vec<u8>,
    pub config: String,
    pub priority: i32,
    pub at: DateTime<Utc>,
}

/// The plugin registry. Every change of which versions are active bumps a
/// generation number, which replicas poll to reload within a second.
#[async_trait]
pub trait PluginRegistry: Send + Sync {
    /// Stores the next version of `name` (1 for a new name). A name keeps
    /// its kind: `Ok(None)` if it exists with another kind.
    async fn insert_plugin_version(
        &self,
        version: NewPluginVersion,
    ) -> Result<Option<PluginRecord>, StoreError>;
    /// Every stored version, by name then version.
    async fn list_plugins(&self) -> Result<Vec<PluginRecord>, StoreError>;
    /// Makes `version` (the newest when `None`) the active one, remembering
    /// the one it replaces for rollback. `Ok(None)`: no such version.
    async fn activate_plugin(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<PluginRecord>, StoreError>;
    /// Re-activates the version active before the current one.
    /// `Ok(None)`: nothing to roll back to.
    async fn rollback_plugin(&self, name: &str) -> Result<Option<PluginRecord>, StoreError>;
    /// Deletes every version of `name`; false if there was none.
    async fn remove_plugin(&self, name: &str) -> Result<bool, StoreError>;
    /// The active versions, and the generation they belong to.
    async fn active_plugins(&self) -> Result<(i64, Vec<PluginRecord>), StoreError>;
    /// The current generation (cheap; polled).
    async fn plugin_generation(&self) -> Result<i64, StoreError>;
    /// The component bytes of one version.
    async fn plugin_bytes(&self, name: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError>;
}

/// A customer's cart as stored: quantities by SKU, no prices (those come
/// from the catalog whenever the cart is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCart {
    /// Sorted by SKU.
    pub lines: Vec<(Sku, Quantity)>,
    /// The currency every line is sold in.
    pub currency: Currency,
    /// Changes on every write: names this exact content.
    pub revision: Uuid,
}

/// What every cart write carries: the cart's next revision and how long
/// the cart lives after this use (the TTL slides).
#[derive(Debug, Clone, Copy)]
pub struct CartWrite {
    pub revision: Uuid,
    pub ttl: std::time::Duration,
}

/// The outcome of setting a line's quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetLine {
    /// Set; `created`: the line is the first of a new cart (the customer
    /// had none, or only an expired one).
    Set { created: bool },
    /// The line is new and the cart already holds `max_lines` lines.
    TooManyLines,
    /// Other lines of the cart are sold in this currency.
    OtherCurrency(Currency),
}

/// Carts, one per customer: in Redis in production, else in the embedded
/// store. Every write is atomic per customer (the line limit and the
/// one-currency rule hold under concurrent writes) and gives the cart a
/// new revision and a fresh time to live; an expired cart is an empty one.
#[async_trait]
pub trait CartStore: Send + Sync {
    /// Where carts live, for logs and readiness (`redis`, `sqlite`, `postgres`).
    fn cart_backend(&self) -> &'static str;
    /// Checks that the cart storage answers.
    async fn ping_carts(&self) -> Result<(), StoreError>;
    /// The customer's cart, `None` if empty or expired. Slides the TTL.
    async fn load_cart(
        &self,
        customer_id: Uuid,
        ttl: std::time::Duration,
    ) -> Result<Option<StoredCart>, StoreError>;
    /// Sets the quantity of a line sold in `currency`, unless the line is
    /// new and the cart is full, or other lines are in another currency.
    async fn set_cart_line(
        &self,
        customer_id: Uuid,
        line: (&Sku, Quantity, Currency),
        max_lines: usize,
        write: CartWrite,
    ) -> Result<SetLine, StoreError>;
    /// Removes a line; a cart left without lines is deleted. False if there
    /// was no such line (nothing changes then).
    async fn remove_cart_line(
        &self,
        customer_id: Uuid,
        sku: &Sku,
        write: CartWrite,
    ) -> Result<bool, StoreError>;
    /// Deletes the cart; with `revision`, only if the cart is still at it
    /// (so lines added after a checkout began survive it). True if deleted.
    async fn delete_cart(
        &self,
        customer_id: Uuid,
        revision: Option<Uuid>,
    ) -> Result<bool, StoreError>;
    /// Forgets up to `limit` carts whose time to live (`ttl` since their
    /// last use) ran out: carts abandoned without a checkout. Returns how
    /// many this call forgot; several replicas may sweep at once, and each
    /// expired cart is counted by exactly one call (or by the write that
    /// replaced it, which counts it in `CARTS_ABANDONED` itself).
    async fn sweep_expired_carts(
        &self,
        ttl: std::time::Duration,
        limit: usize,
    ) -> Result<u64, StoreError>;
}

/// A payment to authorize: hold `amount` on the card behind `token` for
/// `order_id`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizeRequest {
    pub order_id: Uuid,
    pub amount: Decimal,
    pub currency: Currency,
    /// The customer's payment token (from the payment form, never a card number).
    pub token: String,
}

/// Where an authorization stands at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationStatus {
    /// Money held, not taken yet: capture it or void it.
    Authorized,
    /// Money taken (once); it can only be refunded now.
    Captured,
    /// The hold was released; nothing was or will be taken.
    Voided,
    /// The captured money went back to the customer.
    Refunded,
    /// The issuer refused it (only in ledgers; `authorize` answers
    /// [`PaymentError::Declined`]).
    Declined,
}

/// An authorization as the gateway reports it after an operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Authorization {
    /// The gateway's id, to capture, void or refund with.
    pub id: String,
    pub order_id: Uuid,
    /// The amount authorized.
    pub amount: Decimal,
    pub currency: Currency,
    pub status: AuthorizationStatus,
    /// The amount taken, once captured.
    pub captured_amount: Option<Decimal>,
    /// The amount given back, once refunded.
    pub refunded_amount: Option<Decimal>,
}

/// Why a payment operation failed, shaped for the saga's one question:
/// retry, or compensate?
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The issuer said no (HTTP 402). Permanent: do not retry; compensate.
    #[error("payment declined: {reason}")]
    Declined { reason: String },
    /// The gateway did not answer in time, could not be reached or failed
    /// (5xx, 408, 429). Retry with backoff and the same idempotency key:
    /// the operation may or may not have happened, and only the key makes
    /// a retry safe.
    #[error("payment gateway unavailable")]
    Transient(#[source] anyhow::Error),
    /// The gateway refused the request as wrong (4xx other than a decline:
    /// unknown authorization, illegal transition such as capturing a
    /// voided authorization, amount above the authorization, a key reused
    /// for another request). Permanent: retrying cannot help; it is a bug
    /// or a state the saga must resolve.
    #[error("payment request rejected: {0}")]
    Rejected(String),
}

impl PaymentError {
    /// True if retrying (with the same idempotency key) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, PaymentError::Transient(_))
    }
}

/// The payment gateway: authorize a payment, then capture it or void it;
/// refund a capture. Every call carries an idempotency key: the same key
/// with the same request yields the first answer and never acts twice, so
/// a call that failed with [`PaymentError::Transient`] is retried with the
/// key it was first made with.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Holds the amount on the customer's payment method.
    async fn authorize(
        &self,
        request: AuthorizeRequest,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
    /// Takes `amount` (at most the authorized amount) of an authorization.
    async fn capture(
        &self,
        authorization_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
    /// Releases an authorization that was not captured.
    async fn void(
        &self,
        authorization_id: &str,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
    /// Gives back `amount` (at most the captured amount) of a capture.
    async fn refund(
        &self,
        authorization_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> Result<Authorization, PaymentError>;
}
