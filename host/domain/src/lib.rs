//! The domain: pure types and rules of commerce, free of I/O.
//!
//! Nothing here talks to a database, the network, a clock or a plugin; it
//! imports no sqlx, axum, redis, wasmtime or tokio. Values that cross the
//! boundary (`Sku`, `Quantity`, `Currency`, money amounts) are parsed once
//! into newtypes so that an invalid one cannot exist past it, and the order
//! lifecycle is a state machine whose every transition is decided in
//! [`order::Order::handle`].
//!
//! Layout:
//! - [`money`]: ISO-4217 currencies and decimal amounts in them;
//! - [`product`]: SKUs and quantities;
//! - [`inventory`]: what an order holds of each SKU, and claims on stock;
//! - [`aggregate`]: the event-sourcing abstraction (handle / apply / rehydrate);
//! - [`order`]: the `Order` aggregate, its commands, events and lifecycle;
//! - [`pricing`]: adjustments proposed by pricing plugins and how they add up;
//! - [`saga`]: saga definitions as data and the state machine of a saga's progress.

pub mod aggregate;
pub mod inventory;
pub mod money;
pub mod order;
pub mod pricing;
pub mod product;
pub mod saga;
pub mod wire;

pub use aggregate::{Aggregate, DomainEvent};
pub use inventory::{Shortage, Stock, StockClaim};
pub use money::{Currency, MoneyError};
pub use order::{
    Order, OrderAction, OrderCommand, OrderError, OrderEvent, OrderLine, OrderStatus, PlaceOrder,
    PluginRef, RefundLine, Restock, bounded_reason,
};
pub use pricing::{Adjustment, AdjustmentKind};
pub use product::{Quantity, Sku};
