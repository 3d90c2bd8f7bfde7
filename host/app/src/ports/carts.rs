//! Carts, one per customer: in Redis in production, else in the embedded
//! store.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use commerce_domain::{Currency, Quantity, Sku};

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
    /// had none, or only an expired one). `cart`: the cart as this write
    /// left it, read in the same atomic step (no second read to show it).
    Set { created: bool, cart: StoredCart },
    /// The line is new and the cart already holds `max_lines` lines.
    TooManyLines,
    /// Other lines of the cart are sold in this currency.
    OtherCurrency(Currency),
}

/// The outcome of removing a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveLine {
    /// The cart has no such line (or there is no cart): nothing changed.
    Absent,
    /// Removed; the cart as this write left it, read in the same atomic
    /// step, or `None` if that was its last line and the cart is gone.
    Removed(Option<StoredCart>),
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
    /// new and the cart is full, or other lines are in another currency;
    /// answers with the cart as written.
    async fn set_cart_line(
        &self,
        customer_id: Uuid,
        line: (&Sku, Quantity, Currency),
        max_lines: usize,
        write: CartWrite,
    ) -> Result<SetLine, StoreError>;
    /// Removes a line; a cart left without lines is deleted.
    async fn remove_cart_line(
        &self,
        customer_id: Uuid,
        sku: &Sku,
        write: CartWrite,
    ) -> Result<RemoveLine, StoreError>;
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
