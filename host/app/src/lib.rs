//! Application layer: use cases and the ports they need.
//!
//! Each use case takes a [`Caller`] (who asks) and enforces access here, so
//! that handlers stay thin and every interface (HTTP today, others later)
//! gets the same rules. Storage is reached only through the traits of
//! [`ports`], implemented by the adapters in `commerce_store`.

pub mod availability;
pub mod background;
pub mod cart;
pub mod catalog;
pub mod error;
pub mod expiry;
pub mod extensions;
pub mod feed;
pub mod inventory;
pub mod orders;
pub mod outbox;
pub mod plugins;
pub mod ports;
pub mod replay;
pub mod retention;
pub mod saga;
pub mod settlements;
pub mod telemetry;
pub mod views;
pub mod what_if;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

pub use error::AppError;
pub use ports::Store;

/// Who is asking: the verified subject of a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub subject: Uuid,
    pub role: Role,
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees and changes only their own carts and orders.
    Customer,
    /// Manages products, sees every order, ships, refunds.
    Admin,
}

impl Caller {
    /// The service itself, acting on its own schedule (the reservation
    /// sweeper): an admin with the nil subject, so logs tell it apart.
    pub fn system() -> Self {
        Caller {
            subject: Uuid::nil(),
            role: Role::Admin,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The current time, at the microsecond precision every store keeps, so
/// that a read model written now equals one replayed from stored events.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Records `order_id` on the current span (the request's) once an order's
/// id is known, so that the rest of the request's log lines carry it. A
/// no-op outside a span that declared the field.
pub fn record_order_id(order_id: Uuid) {
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
}

/// Defines a use-case service: the view of the shared [`App`] context that
/// one concern's use cases are methods of, borrowed for the call (a task
/// that must outlive it clones the `App`, which is cheap).
macro_rules! service {
    ($(#[$doc:meta])* $name:ident, $accessor:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            app: &'a App,
        }

        impl std::ops::Deref for $name<'_> {
            type Target = App;
            fn deref(&self) -> &App {
                self.app
            }
        }

        impl App {
            #[doc = concat!("The [`", stringify!($name), "`] use cases.")]
            pub fn $accessor(&self) -> $name<'_> {
                $name { app: self }
            }
        }
    };
}

service!(
    /// Orders (`orders`): place, read, list, change, cancel, lifecycle
    /// transitions, history; the event feed (`feed`).
    Orders,
    orders
);
service!(
    /// The customer's cart (`cart`): read (priced), change, checkout.
    Carts,
    cart
);
service!(
    /// Products and their stock (`catalog`, `inventory`, `availability`):
    /// the catalog, stock adjustments, expiring holds, the stock cache.
    Inventory,
    inventory
);
service!(
    /// Fulfilment sagas (`saga`): running them, and the operator's view and
    /// controls.
    Sagas,
    sagas
);
service!(
    /// The plugin registry's use cases (`plugins`): install, list,
    /// activate, roll back, remove, dry-run.
    Registry,
    registry
);
service!(
    /// Waiting for placed orders to settle (`settlements`): `Prefer: wait`.
    Outcomes,
    outcomes
);

/// The context every use case shares: one store, one plugin runtime, the
/// adapters and settings the wiring chose, and the process's shared state
/// (saga slots, settlements, background tasks). Cheap to clone. The use
/// cases are methods of the services above (`app.orders().place_order(..)`).
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub plugins: Arc<dyn plugins::PluginHost>,
    pub inventory_settings: inventory::InventorySettings,
    pub inventory_stats: Arc<inventory::InventoryStats>,
    /// Redis in front of product reads, when configured.
    pub stock_cache: Option<Arc<dyn ports::StockCache>>,
    /// Refreshes the cache after writes, when there is one.
    pub stock_refresher: Option<availability::StockRefresher>,
    /// Where carts live: the store itself unless Redis is configured.
    pub carts: Arc<dyn ports::CartStore>,
    /// How long an untouched cart lives.
    pub cart_ttl: Duration,
    /// The payment gateway. Without one, orders stay `reserved` (no saga
    /// starts) until paid some other way or their reservation expires.
    pub payments: Option<Arc<dyn ports::PaymentGateway>>,
    pub saga: Arc<saga::SagaSettings>,
    /// Bounds the sagas this process drives at once.
    pub saga_slots: Arc<tokio::sync::Semaphore>,
    /// Set on shutdown: this process takes no saga leases any more.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Requests waiting for orders to settle.
    pub settlements: Arc<settlements::Settlements>,
    /// The background tasks working for this service.
    pub background: Arc<background::Background>,
    /// Plugin replays run by this process (`what_if`).
    pub replays: Arc<what_if::Replays>,
}

impl App {
    /// Use cases over `store`, which keeps the carts too.
    pub fn new(store: Arc<dyn Store>, plugins: Arc<dyn plugins::PluginHost>) -> Self {
        App {
            carts: store.clone(),
            store,
            plugins,
            cart_ttl: cart::DEFAULT_CART_TTL,
            inventory_settings: inventory::InventorySettings::default(),
            inventory_stats: Arc::default(),
            stock_cache: None,
            stock_refresher: None,
            payments: None,
            saga: Arc::new(saga::SagaSettings::default()),
            saga_slots: Arc::new(tokio::sync::Semaphore::new(
                saga::SagaSettings::default().concurrency,
            )),
            draining: Arc::default(),
            settlements: Arc::default(),
            background: Arc::default(),
            replays: Arc::default(),
        }
    }

    /// Runs a fulfilment saga for every order placed with a payment
    /// token, against `gateway`.
    pub fn with_payments(
        mut self,
        gateway: Arc<dyn ports::PaymentGateway>,
        settings: saga::SagaSettings,
    ) -> Self {
        self.payments = Some(gateway);
        self.saga_slots = Arc::new(tokio::sync::Semaphore::new(settings.concurrency));
        self.saga = Arc::new(settings);
        self
    }

    /// Keeps carts in `carts` (Redis, in production), for `ttl` each.
    pub fn with_carts(mut self, carts: Arc<dyn ports::CartStore>, ttl: Duration) -> Self {
        self.carts = carts;
        self.cart_ttl = ttl;
        self
    }

    /// The same use cases, reading products through `cache`.
    /// Reads products through `cache` and refreshes it after writes (this
    /// starts the refresher task: call it inside the runtime).
    pub fn with_stock_cache(mut self, cache: Arc<dyn ports::StockCache>) -> Self {
        self.stock_refresher = Some(availability::StockRefresher::start(
            self.store.clone(),
            cache.clone(),
        ));
        self.stock_cache = Some(cache);
        self
    }

    /// The same use cases with other inventory settings.
    pub fn with_inventory(mut self, settings: inventory::InventorySettings) -> Self {
        self.inventory_settings = settings;
        self
    }
}
