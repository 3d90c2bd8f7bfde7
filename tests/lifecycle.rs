//! A model-based test of the whole order lifecycle, on both backends.
//!
//! proptest draws sequences of commands (place with and without a payment
//! token, pay, cancel, ship, deliver, full and partial refunds with and
//! without restock, stock adjustments, hold expiry on a clock moved
//! forward, cart checkout, a replica stopped mid-saga and another taking
//! over, and concurrent pairs: cancel || ship, cancel || capture,
//! pay || expire, two checkouts) and runs them against the application in
//! process, with a real store and the payment simulator. After every step
//! it checks what must always hold; at quiescence, everything: stock,
//! money at the gateway, events against views, the feed, the sagas.
//!
//! A failure shrinks to a minimal sequence, printed by proptest. CI runs
//! `LIFECYCLE_CASES` cases per backend (default 40); set it higher to run
//! thousands.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Backend, TestDb, ledger_of};
use commerce_app::catalog::PutProduct;
use commerce_app::inventory::{AdjustStock, InventorySettings};
use commerce_app::orders::{AdminTransition, PlaceOrderRequest, RefundRequest, RequestedLine};
use commerce_app::ports::{FeedCursor, ReservationState, Store};
use commerce_app::saga::SagaSettings;
use commerce_app::{App, Caller, Role};
use commerce_domain::saga::SagaStatus;
use commerce_domain::{Currency, Order, OrderEvent, OrderStatus, Quantity, RefundLine, Sku};

const SKUS: [&str; 2] = ["A", "B"];
const SEEDED: i64 = 6;
const CUSTOMERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Ok,
    Decline,
    Error,
    Slow,
}

impl Token {
    fn as_str(self) -> &'static str {
        match self {
            Token::Ok => "tok_ok",
            Token::Decline => "tok_decline",
            Token::Error => "tok_error",
            Token::Slow => "tok_slow",
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Place {
        customer: usize,
        sku: usize,
        qty: u32,
        token: Option<Token>,
    },
    Pay {
        order: usize,
        token: Token,
    },
    Cancel {
        order: usize,
    },
    Ship {
        order: usize,
    },
    Deliver {
        order: usize,
    },
    Refund {
        order: usize,
        /// `None`: all that is left; else this share of it, in percent.
        percent: Option<u32>,
        restock: Option<u32>,
    },
    Adjust {
        sku: usize,
        delta: i64,
    },
    /// The sweeper runs with its clock a day ahead: unpaid holds expire.
    Expire,
    Checkout {
        customer: usize,
        sku: usize,
        qty: u32,
        token: Option<Token>,
    },
    /// The replica driving sagas stops (mid-step, with its leases given
    /// up); a new one takes over.
    Handover,
    CancelShip {
        order: usize,
    },
    /// Placed with a slow token, cancelled while the gateway works.
    CancelCapture {
        customer: usize,
        sku: usize,
    },
    PayExpire {
        order: usize,
    },
    TwoCheckouts {
        customer: usize,
        sku: usize,
    },
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![
        4 => Just(Token::Ok),
        1 => Just(Token::Decline),
        1 => Just(Token::Error),
        1 => Just(Token::Slow),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CUSTOMERS;
    let s = 0..SKUS.len();
    let o = 0usize..8;
    prop_oneof![
        4 => (c.clone(), s.clone(), 1u32..4, proptest::option::weighted(0.7, token()))
            .prop_map(|(customer, sku, qty, token)| Op::Place { customer, sku, qty, token }),
        2 => (o.clone(), token()).prop_map(|(order, token)| Op::Pay { order, token }),
        2 => o.clone().prop_map(|order| Op::Cancel { order }),
        2 => o.clone().prop_map(|order| Op::Ship { order }),
        1 => o.clone().prop_map(|order| Op::Deliver { order }),
        2 => (o.clone(), proptest::option::of(10u32..100), proptest::option::of(1u32..3))
            .prop_map(|(order, percent, restock)| Op::Refund { order, percent, restock }),
        1 => (s.clone(), -2i64..4).prop_map(|(sku, delta)| Op::Adjust { sku, delta }),
        1 => Just(Op::Expire),
        1 => (c.clone(), s.clone(), 1u32..3, proptest::option::of(token()))
            .prop_map(|(customer, sku, qty, token)| Op::Checkout { customer, sku, qty, token }),
        1 => Just(Op::Handover),
        1 => o.clone().prop_map(|order| Op::CancelShip { order }),
        1 => (c.clone(), s.clone()).prop_map(|(customer, sku)| Op::CancelCapture { customer, sku }),
        1 => o.clone().prop_map(|order| Op::PayExpire { order }),
        1 => (c, s).prop_map(|(customer, sku)| Op::TwoCheckouts { customer, sku }),
    ]
}

/// One case's world: the store, the replica driving it, the gateway.
struct World {
    _db: TestDb,
    store: Arc<dyn Store>,
    app: App,
    sim: String,
    customers: Vec<Caller>,
    orders: Vec<Uuid>,
    /// Stock adjustments that applied, per SKU.
    adjusted: BTreeMap<String, i64>,
    /// Replicas that were stopped, whose background work ends with the case.
    retired: Vec<App>,
}

impl Drop for World {
    /// Stops every replica's background work (worker, sweepers, plugin
    /// poller), so the case's connections close with it.
    fn drop(&mut self) {
        self.app.background.stop();
        for app in &self.retired {
            app.background.stop();
        }
    }
}

fn admin() -> Caller {
    Caller {
        subject: Uuid::nil(),
        role: Role::Admin,
    }
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

async fn replica(db: &TestDb, store: Arc<dyn Store>, sim: &str) -> App {
    let app = db.app(store).await.with_inventory(InventorySettings {
        max_unpaid_orders: 1000,
        max_unpaid_units: 100_000,
        ..Default::default()
    });
    let sagas = SagaSettings {
        lease: Duration::from_secs(2),
        step_deadline: Duration::from_millis(400),
        compensation_rounds: 3,
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        poll: Duration::from_millis(50),
        ..Default::default()
    };
    commerce_service::startup::with_payments(app, Some(sim), Duration::from_millis(300), sagas)
        .await
        .expect("payments")
}

impl World {
    async fn new(backend: Backend, sim: &str) -> World {
        let db = TestDb::new(backend).await;
        let store = db.open_store().await;
        let app = replica(&db, store.clone(), sim).await;
        for sku in SKUS {
            app.inventory()
                .put_product(
                    admin(),
                    Sku::parse(sku).unwrap(),
                    PutProduct {
                        name: format!("product {sku}"),
                        unit_price: "10.00".parse().unwrap(),
                        currency: eur(),
                        stock: SEEDED,
                    },
                )
                .await
                .expect("seed");
        }
        let customers = (0..CUSTOMERS)
            .map(|_| Caller {
                subject: Uuid::now_v7(),
                role: Role::Customer,
            })
            .collect();
        World {
            _db: db,
            store,
            app,
            sim: sim.to_owned(),
            customers,
            orders: Vec::new(),
            adjusted: BTreeMap::new(),
            retired: Vec::new(),
        }
    }

    fn order(&self, i: usize) -> Option<Uuid> {
        (!self.orders.is_empty()).then(|| self.orders[i % self.orders.len()])
    }

    async fn owner_of(&self, id: Uuid) -> Caller {
        let view = self.store.get_view(id).await.unwrap().unwrap();
        Caller {
            subject: view.customer_id,
            role: Role::Customer,
        }
    }

    async fn place(&mut self, customer: usize, sku: usize, qty: u32, token: Option<Token>) {
        let request = PlaceOrderRequest {
            currency: eur(),
            items: vec![RequestedLine {
                sku: Sku::parse(SKUS[sku]).unwrap(),
                quantity: Quantity::parse(i64::from(qty)).unwrap(),
            }],
            payment_token: token.map(|t| t.as_str().to_owned()),
        };
        if let Ok(placed) = self
            .app
            .orders()
            .place_order(self.customers[customer], request, None)
            .await
        {
            self.orders.push(placed.order.id);
        }
    }

    async fn checkout(&mut self, customer: usize, sku: usize, qty: u32, token: Option<Token>) {
        let caller = self.customers[customer];
        let cart = self.app.cart();
        if cart
            .set_cart_item(caller, Sku::parse(SKUS[sku]).unwrap(), i64::from(qty))
            .await
            .is_err()
        {
            return;
        }
        let token = token.map(|t| t.as_str().to_owned());
        if let Ok(placed) = cart.checkout_cart(caller, None, token).await {
            self.orders.push(placed.order.id);
        }
    }

    async fn refund(&self, id: Uuid, percent: Option<u32>, restock: Option<u32>) {
        let order = fold(&self.store, id).await;
        let amount = percent.map(|p| {
            let mut a = order.refundable() * Decimal::from(p) / Decimal::from(100);
            a = a.round_dp(2);
            a
        });
        let lines = match (restock, order.lines.first()) {
            (Some(units), Some(line)) => vec![RefundLine {
                sku: line.sku.clone(),
                quantity: Quantity::parse(i64::from(units)).unwrap(),
                restock: true,
            }],
            _ => Vec::new(),
        };
        let request = RefundRequest {
            amount,
            lines,
            reason: Some("model".into()),
        };
        let _ = self
            .app
            .orders()
            .refund_order(admin(), id, request, Duration::from_secs(5))
            .await;
    }

    async fn cancel(&self, id: Uuid) {
        let owner = self.owner_of(id).await;
        let _ = self
            .app
            .orders()
            .cancel_order(
                owner,
                id,
                None,
                Some("model".into()),
                Duration::from_secs(5),
            )
            .await;
    }

    async fn ship(&self, id: Uuid) {
        let _ = self
            .app
            .orders()
            .transition_order(admin(), id, AdminTransition::Ship)
            .await;
    }

    /// The sweeper, with its clock a day ahead.
    async fn sweep(&self) {
        let later = chrono::Utc::now() + chrono::Duration::days(1);
        let _ = self.app.orders().sweep_expired_holds_at(later, 100).await;
    }

    async fn pay(&self, id: Uuid, token: Token) {
        let owner = self.owner_of(id).await;
        let _ = self
            .app
            .orders()
            .pay_order(owner, id, token.as_str().to_owned(), None)
            .await;
    }

    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::Place {
                customer,
                sku,
                qty,
                token,
            } => self.place(customer, sku, qty, token).await,
            Op::Pay { order, token } => {
                if let Some(id) = self.order(order) {
                    self.pay(id, token).await;
                }
            }
            Op::Cancel { order } => {
                if let Some(id) = self.order(order) {
                    self.cancel(id).await;
                }
            }
            Op::Ship { order } => {
                if let Some(id) = self.order(order) {
                    self.ship(id).await;
                }
            }
            Op::Deliver { order } => {
                if let Some(id) = self.order(order) {
                    let _ = self
                        .app
                        .orders()
                        .transition_order(admin(), id, AdminTransition::Deliver)
                        .await;
                }
            }
            Op::Refund {
                order,
                percent,
                restock,
            } => {
                if let Some(id) = self.order(order) {
                    self.refund(id, percent, restock).await;
                }
            }
            Op::Adjust { sku, delta } => {
                let adjusted = self
                    .app
                    .inventory()
                    .adjust_stock(
                        admin(),
                        Sku::parse(SKUS[sku]).unwrap(),
                        AdjustStock {
                            delta,
                            reason: "count".into(),
                        },
                    )
                    .await;
                if adjusted.is_ok() {
                    *self.adjusted.entry(SKUS[sku].to_owned()).or_default() += delta;
                }
            }
            Op::Expire => self.sweep().await,
            Op::Checkout {
                customer,
                sku,
                qty,
                token,
            } => self.checkout(customer, sku, qty, token).await,
            Op::Handover => {
                self.app.sagas().release_saga_leases().await;
                let next = replica(&self._db, self.store.clone(), &self.sim).await;
                let stopped = std::mem::replace(&mut self.app, next);
                self.retired.push(stopped);
            }
            Op::CancelShip { order } => {
                if let Some(id) = self.order(order) {
                    tokio::join!(self.cancel(id), self.ship(id));
                }
            }
            Op::CancelCapture { customer, sku } => {
                let before = self.orders.len();
                self.place(customer, sku, 1, Some(Token::Slow)).await;
                if self.orders.len() > before {
                    let id = *self.orders.last().unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    self.cancel(id).await;
                }
            }
            Op::PayExpire { order } => {
                if let Some(id) = self.order(order) {
                    tokio::join!(self.pay(id, Token::Ok), self.sweep());
                }
            }
            Op::TwoCheckouts { customer, sku } => {
                let caller = self.customers[customer];
                let cart = self.app.cart();
                if cart
                    .set_cart_item(caller, Sku::parse(SKUS[sku]).unwrap(), 1)
                    .await
                    .is_ok()
                {
                    let (a, b) = tokio::join!(
                        cart.checkout_cart(caller, None, Some("tok_ok".into())),
                        cart.checkout_cart(caller, None, Some("tok_ok".into()))
                    );
                    let ids: HashSet<Uuid> = [a, b]
                        .into_iter()
                        .filter_map(|r| r.ok().map(|p| p.order.id))
                        .collect();
                    assert!(ids.len() <= 1, "one cart became two orders: {ids:?}");
                    self.orders.extend(ids);
                }
            }
        }
    }
}

/// An order as its events say.
async fn fold(store: &Arc<dyn Store>, id: Uuid) -> Order {
    let stored = store.load_stream(id).await.unwrap();
    let decoded: Vec<(OrderEvent, _)> = stored
        .iter()
        .map(|e| {
            (
                commerce_app::orders::decode_event(e).unwrap(),
                e.recorded_at,
            )
        })
        .collect();
    Order::from_events(id, decoded.iter().map(|(e, at)| (e, *at)))
}

/// What the events of every order say.
struct Story {
    events: HashMap<Uuid, Vec<OrderEvent>>,
    orders: HashMap<Uuid, Order>,
}

async fn story(world: &World) -> Story {
    let mut events = HashMap::new();
    let mut orders = HashMap::new();
    for &id in &world.orders {
        let stored = world.store.load_stream(id).await.unwrap();
        let decoded: Vec<(OrderEvent, _)> = stored
            .iter()
            .map(|e| {
                (
                    commerce_app::orders::decode_event(e).unwrap(),
                    e.recorded_at,
                )
            })
            .collect();
        let order = Order::from_events(id, decoded.iter().map(|(e, at)| (e, *at)));
        events.insert(id, decoded.into_iter().map(|(e, _)| e).collect());
        orders.insert(id, order);
    }
    Story { events, orders }
}

fn check(cond: bool, message: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(message()))
    }
}

/// What holds after every step: stock never negative, never more
/// reserved than on hand, never more refunded than captured.
async fn check_always(world: &World) -> Result<(), TestCaseError> {
    for sku in SKUS {
        let p = world
            .store
            .get_product(&Sku::parse(sku).unwrap())
            .await
            .unwrap()
            .unwrap();
        check(
            p.on_hand >= 0 && p.reserved >= 0 && p.reserved <= p.on_hand,
            || format!("{sku}: on hand {} reserved {}", p.on_hand, p.reserved),
        )?;
    }
    for &id in &world.orders {
        for entry in ledger_of(&world.sim, id).await {
            let captured = amount(&entry["captured_amount"]);
            let refunded = amount(&entry["refunded_amount"]);
            check(refunded <= captured, || {
                format!("{id} refunded more than captured: {entry}")
            })?;
        }
    }
    Ok(())
}

fn amount(v: &Value) -> Decimal {
    v.as_str().map(|s| s.parse().unwrap()).unwrap_or_default()
}

/// Waits until no saga runs.
async fn settle(world: &World) {
    for _ in 0..400 {
        let running = world.store.count_sagas(SagaStatus::Running).await.unwrap()
            + world
                .store
                .count_sagas(SagaStatus::Compensating)
                .await
                .unwrap();
        if running == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator's part: a saga cancelled while its gateway kept failing
/// (`tok_error`) cannot learn whether an authorization was made, so it
/// waits for an operator, who looks at the gateway and, finding nothing
/// there, aborts it. Any other saga needing attention is a failure.
async fn operate(world: &World) -> Result<(), TestCaseError> {
    for &id in &world.orders {
        let Some(saga) = world.store.saga_of(id).await.unwrap() else {
            continue;
        };
        if saga.status() != SagaStatus::NeedsAttention {
            continue;
        }
        let entries = ledger_of(&world.sim, id).await;
        check(entries.is_empty(), || {
            format!("the saga of {id} needs attention with {entries:?} at the gateway")
        })?;
        world
            .app
            .sagas()
            .abort_saga(admin(), saga.saga_id, Some("nothing at the gateway".into()))
            .await
            .map_err(|e| TestCaseError::fail(format!("abort {id}: {e}")))?;
    }
    Ok(())
}

/// Waits until every saga is terminal (an operator settling what only an
/// operator can), then checks everything.
async fn check_at_rest(world: &World) -> Result<(), TestCaseError> {
    settle(world).await;
    operate(world).await?;
    let story = story(world).await;
    check_sagas(world, &story).await?;
    check_stock(world, &story).await?;
    check_money(world, &story).await?;
    check_views_and_feed(world, &story).await
}

async fn check_sagas(world: &World, story: &Story) -> Result<(), TestCaseError> {
    for (&id, order) in &story.orders {
        let status = order.status.unwrap();
        let saga = world.store.saga_of(id).await.unwrap();
        if let Some(saga) = &saga {
            check(saga.status().is_terminal(), || {
                format!("the saga of {id} is {:?}", saga.status())
            })?;
        }
        let processing = matches!(
            status,
            OrderStatus::Pending | OrderStatus::Reserved | OrderStatus::Paid
        );
        // Unpaid orders (no saga) wait for their payment or their TTL.
        check(
            !processing || saga.is_none() && status == OrderStatus::Reserved,
            || format!("{id} is {status} with its saga finished"),
        )?;
        if let Some(refund) = world.store.saga_of_type("order-refund", id).await.unwrap() {
            check(refund.status() == SagaStatus::Completed, || {
                format!("the refund saga of {id} is {:?}", refund.status())
            })?;
        }
    }
    Ok(())
}

async fn check_stock(world: &World, story: &Story) -> Result<(), TestCaseError> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for (&id, events) in &story.events {
        let order = &story.orders[&id];
        for event in events {
            match event {
                OrderEvent::OrderConfirmed => {
                    for l in &order.lines {
                        *out.entry(l.sku.to_string()).or_default() += i64::from(l.quantity.get());
                    }
                }
                OrderEvent::OrderCancelled { restocked, .. }
                | OrderEvent::OrderRefunded { restocked, .. } => {
                    for r in restocked {
                        *out.entry(r.sku.to_string()).or_default() -= i64::from(r.quantity.get());
                    }
                }
                _ => {}
            }
        }
        for r in world.store.reservations(id).await.unwrap() {
            if r.state == ReservationState::Held {
                check(order.status == Some(OrderStatus::Reserved), || {
                    format!("{id} is {:?} and still holds {}", order.status, r.sku)
                })?;
                *held.entry(r.sku.to_string()).or_default() += r.quantity;
            }
        }
    }
    for sku in SKUS {
        let p = world
            .store
            .get_product(&Sku::parse(sku).unwrap())
            .await
            .unwrap()
            .unwrap();
        let expected = SEEDED + world.adjusted.get(sku).copied().unwrap_or(0)
            - out.get(sku).copied().unwrap_or(0);
        check(p.on_hand == expected, || {
            format!(
                "{sku}: on hand {} but seeded + adjusted - sold + restocked = {expected}",
                p.on_hand
            )
        })?;
        let reserved = held.get(sku).copied().unwrap_or(0);
        check(p.reserved == reserved, || {
            format!(
                "{sku}: reserved {} but open holds hold {reserved}",
                p.reserved
            )
        })?;
    }
    Ok(())
}

async fn check_money(world: &World, story: &Story) -> Result<(), TestCaseError> {
    for (&id, order) in &story.orders {
        let entries = ledger_of(&world.sim, id).await;
        check(entries.len() <= 1, || {
            format!("{id} authorized twice: {entries:?}")
        })?;
        let (captured, refunded, status) =
            entries
                .first()
                .map_or((Decimal::ZERO, Decimal::ZERO, String::new()), |e| {
                    (
                        amount(&e["captured_amount"]),
                        amount(&e["refunded_amount"]),
                        e["status"].as_str().unwrap_or_default().to_owned(),
                    )
                });
        check(
            captured - refunded == order.captured - order.refunded,
            || {
                format!(
                    "{id}: the gateway kept {} but the events say {} paid, {} refunded ({entries:?})",
                    captured - refunded,
                    order.captured,
                    order.refunded
                )
            },
        )?;
        check(status != "authorized", || {
            format!("{id} left an authorization open: {entries:?}")
        })?;
        let never_confirmed = !order.stock_committed;
        check(
            !never_confirmed || captured - refunded == Decimal::ZERO,
            || format!("{id} ({:?}) kept money: {entries:?}", order.status),
        )?;
    }
    Ok(())
}

async fn check_views_and_feed(world: &World, story: &Story) -> Result<(), TestCaseError> {
    for (&id, order) in &story.orders {
        let view = world.store.get_view(id).await.unwrap().unwrap();
        let replayed = commerce_app::views::OrderView::project(order);
        check(view == replayed, || {
            format!("{id}: view {view:?} but replay {replayed:?}")
        })?;
    }
    let mut seen = HashSet::new();
    let mut cursor = FeedCursor { tx: 0, position: 0 };
    loop {
        let page = world.store.read_feed(cursor, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        for e in &page {
            check(seen.insert(e.event.event_id), || {
                format!("the feed holds {} twice", e.event.event_id)
            })?;
        }
    }
    let stored: usize = story.events.values().map(Vec::len).sum();
    check(seen.len() == stored, || {
        format!("the feed holds {} events, the orders {stored}", seen.len())
    })
}

fn run(backend: Backend) {
    let cases = std::env::var("LIFECYCLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(async {
        let config = commerce_payment_sim::SimulatorConfig {
            slow: Duration::from_millis(150),
            hang: Duration::from_secs(5),
            ..Default::default()
        };
        let addr = commerce_payment_sim::spawn("127.0.0.1:0", config)
            .await
            .expect("simulator");
        format!("http://{addr}")
    });
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    // What the cases reached, to show they reach every status.
    let seen = std::sync::Mutex::new(BTreeMap::<String, usize>::new());
    let result = runner.run(&proptest::collection::vec(op(), 1..14), |ops| {
        rt.block_on(async {
            let mut world = World::new(backend, &sim).await;
            for op in &ops {
                world.apply(op).await;
                check_always(&world).await?;
            }
            check_at_rest(&world).await?;
            for &id in &world.orders {
                let view = world.store.get_view(id).await.unwrap().unwrap();
                let mut label = view.status.to_string();
                if !view.refunded.is_zero() {
                    label.push_str("+refund");
                }
                *seen.lock().unwrap().entry(label).or_default() += 1;
            }
            Ok(())
        })
    });
    eprintln!(
        "{backend:?}: {cases} cases; orders by outcome: {:?}",
        seen.lock().unwrap()
    );
    if let Err(e) = result {
        panic!("{backend:?}: {e}");
    }
}

#[test]
fn the_lifecycle_keeps_stock_money_and_events_in_agreement_on_sqlite() {
    run(Backend::Sqlite);
}

#[test]
fn the_lifecycle_keeps_stock_money_and_events_in_agreement_on_postgres() {
    run(Backend::Postgres);
}
