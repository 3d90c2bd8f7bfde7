//! Products (price and stock), reservations and manual stock changes, and
//! the cache of products in front of the database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::StoreError;
use commerce_domain::{Currency, Sku, StockClaim};

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
    /// Units of a confirmed order come back on the shelf (a cancel after
    /// payment, a return): `on_hand` goes up by each. Its idempotency
    /// comes from the order event it is written with, at the order's
    /// version.
    Restock {
        order_id: Uuid,
        units: Vec<(Sku, i64)>,
    },
}

impl InventoryChange {
    /// Its name, as a metric label: `hold`, `release`, `commit` or
    /// `restock`.
    pub fn operation(&self) -> &'static str {
        match self {
            InventoryChange::Hold { .. } => "hold",
            InventoryChange::Release { .. } => "release",
            InventoryChange::Commit { .. } => "commit",
            InventoryChange::Restock { .. } => "restock",
        }
    }

    /// The restock of `restocked`, if it puts anything back.
    pub fn restock(order_id: Uuid, restocked: &[commerce_domain::Restock]) -> Option<Self> {
        (!restocked.is_empty()).then(|| InventoryChange::Restock {
            order_id,
            units: restocked
                .iter()
                .map(|r| (r.sku.clone(), i64::from(r.quantity.get())))
                .collect(),
        })
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
