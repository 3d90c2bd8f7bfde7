//! Three replicas as one service (issue 6, item 6): three `commerce serve`
//! processes share one PostgreSQL schema, one Redis prefix on a Redis
//! Cluster (carts, the stock cache, the outbox stream; issue 20, item 4:
//! the local 3-master cluster of scripts/redis-cluster.sh) and one payment
//! simulator process. A
//! load of direct orders, cart checkouts and cancels is spread over them
//! round-robin; one replica is killed (SIGKILL) with sagas in flight and
//! started again while the load goes on. Clients whose replica vanished
//! send the same request, with the same `Idempotency-Key`, to the next
//! one, as a client behind a load balancer would.
//!
//! Once the service is quiet, the whole state is checked against what the
//! clients were told: no order lost or placed twice, every saga ended,
//! no stock held, on-hand down by exactly what was sold, exactly one
//! charge per confirmed order and none kept for the others, every event
//! published to the stream once, and the stock cache equal to the
//! database. The database is read directly (the test's eyes, not the
//! service's), the simulator's ledger and the stream too.
//!
//! `sagas_survive_a_killed_replica` (saga.rs) is the narrow version of
//! this: two replicas, direct orders only, no Redis.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Backend, KillOnDrop, PaymentSim, TestApp, TestRedis};

/// Stock of each product at the start: far more than the load sells, so
/// that no order is refused for stock and every one must be accounted for.
const STOCK: i64 = 100_000;
const SKUS: [&str; 4] = ["MUG", "TEE", "CAP", "PEN"];
/// Payment tokens of direct orders, in turn: fast and slow approvals and
/// declines, so that sagas are at every step when the replica dies.
const TOKENS: [&str; 7] = [
    "tok_ok",
    "tok_slow",
    "tok_decline",
    "tok_slow",
    "tok_ok",
    "tok_slow",
    "tok_decline",
];
/// Concurrent clients, each a customer of its own.
const CLIENTS: usize = 6;
/// Load before the kill, while one replica is down, after its restart.
const BEFORE_KILL: Duration = Duration::from_secs(3);
const DOWN: Duration = Duration::from_secs(4);
const AFTER_RESTART: Duration = Duration::from_secs(3);
/// How long one client operation may take, failovers included.
const OP_DEADLINE: Duration = Duration::from_secs(20);

/// The replicas' addresses, as a load balancer knows them: a killed one
/// stays listed (clients find out by failing to connect) until the
/// restarted process takes its place.
struct Cluster {
    bases: RwLock<Vec<String>>,
    http: reqwest::Client,
    stop: AtomicBool,
    /// Requests sent again to another replica after a connection error
    /// or a 5xx.
    failovers: AtomicUsize,
    /// Placements answered with `Idempotent-Replayed` (a retry of one
    /// that went through on a replica that died before answering).
    replays: AtomicUsize,
    /// 2xx answers per replica address.
    answered_by: Mutex<HashMap<String, usize>>,
}

/// An order a client was told about (a 2xx with its id).
#[derive(Debug, Clone)]
struct Placed {
    customer: Uuid,
    key: String,
    order_id: String,
}

/// What the clients saw.
#[derive(Default)]
struct Record {
    placed: Vec<Placed>,
    /// Orders whose cancel was answered 200.
    cancelled: HashSet<String>,
}

impl Cluster {
    fn base(&self, replica: usize) -> String {
        let bases = self.bases.read().unwrap();
        bases[replica % bases.len()].clone()
    }

    /// Sends a request to `replica`; after a connection error or a 5xx,
    /// sends the same request (same body, same `Idempotency-Key`) to the
    /// next replica, until an answer below 500 or `OP_DEADLINE`.
    async fn send(
        &self,
        replica: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (StatusCode, bool, Value) {
        let deadline = Instant::now() + OP_DEADLINE;
        let mut target = replica;
        loop {
            let base = self.base(target);
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(token);
            if let Some(body) = body {
                req = req.json(body);
            }
            if let Some(key) = key {
                req = req.header("Idempotency-Key", key);
            }
            let failure = match req.send().await {
                Ok(resp) if resp.status().is_server_error() => resp.status().to_string(),
                Ok(resp) => {
                    let status = resp.status();
                    let replayed = resp.headers().contains_key("idempotent-replayed");
                    match resp.bytes().await {
                        Ok(bytes) => {
                            if status.is_success() {
                                *self.answered_by.lock().unwrap().entry(base).or_default() += 1;
                            }
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            return (status, replayed, body);
                        }
                        Err(e) => format!("body cut off: {e}"),
                    }
                }
                Err(e) => format!("{e}"),
            };
            assert!(
                Instant::now() < deadline,
                "{method} {path} found no replica to answer within {OP_DEADLINE:?}: {failure}"
            );
            self.failovers.fetch_add(1, Ordering::Relaxed);
            target += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Places an order (a direct one, or the cart's checkout), resending
    /// while the key is busy on another replica; returns the order's id.
    async fn place(
        &self,
        replica: usize,
        path: &str,
        token: &str,
        body: &Value,
        key: &str,
    ) -> String {
        let deadline = Instant::now() + OP_DEADLINE;
        loop {
            let (status, replayed, order) = self
                .send(replica, Method::POST, path, token, Some(body), Some(key))
                .await;
            if status == StatusCode::CREATED {
                if replayed {
                    self.replays.fetch_add(1, Ordering::Relaxed);
                }
                return order["id"].as_str().expect("an order id").to_owned();
            }
            // The same key in flight elsewhere (our own earlier attempt on
            // a replica that is still working on it): ask again.
            assert!(
                status == StatusCode::CONFLICT
                    && order["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("idempotency key is being used"))
                    && Instant::now() < deadline,
                "POST {path} ({key}): {status} {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cancels an order; true if this cancel was accepted. A 409 is fine
    /// once the order has ended (a decline failed it first, or an earlier
    /// attempt of this very cancel went through on a replica that died
    /// before answering); otherwise the cancel raced a saga write and is
    /// sent again.
    async fn cancel(&self, replica: usize, token: &str, order_id: &str) -> bool {
        let deadline = Instant::now() + OP_DEADLINE;
        let path = format!("/v1/orders/{order_id}");
        loop {
            let (status, _, body) = self
                .send(replica, Method::DELETE, &path, token, None, None)
                .await;
            match status {
                StatusCode::OK => {
                    assert_eq!(body["status"], "cancelled", "{body}");
                    return true;
                }
                StatusCode::CONFLICT => {
                    let (status, _, order) = self
                        .send(replica, Method::GET, &path, token, None, None)
                        .await;
                    assert_eq!(status, StatusCode::OK, "{order}");
                    if order["status"] == "failed" || order["status"] == "cancelled" {
                        return false;
                    }
                }
                _ => panic!("DELETE {path}: {status} {body}"),
            }
            assert!(
                Instant::now() < deadline,
                "the cancel of {order_id} kept conflicting"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One client: its own customer, operations in turn on the next replica,
/// until told to stop.
async fn client(cluster: Arc<Cluster>, app: Arc<TestApp>, n: usize) -> Record {
    let (customer, token) = app.customer();
    let mut record = Record::default();
    let mut op = 0usize;
    while !cluster.stop.load(Ordering::Relaxed) {
        let replica = n + op;
        let key = format!("client-{n}-op-{op}");
        // Two or so lines, changing with the operation.
        let lines: Vec<(&str, i64)> = (0..1 + op % 2)
            .map(|l| (SKUS[(n + op + l) % SKUS.len()], 1 + ((op + l) % 3) as i64))
            .collect();
        let payment = TOKENS[(n + op) % TOKENS.len()];
        let order_id = match op % 4 {
            // A cart filled on one replica, checked out on the next.
            3 => {
                let (status, _, body) = cluster
                    .send(replica, Method::DELETE, "/v1/cart", &token, None, None)
                    .await;
                assert!(status.is_success(), "empty the cart: {status} {body}");
                for (i, (sku, quantity)) in lines.iter().enumerate() {
                    let (status, _, body) = cluster
                        .send(
                            replica + i,
                            Method::PUT,
                            &format!("/v1/cart/items/{sku}"),
                            &token,
                            Some(&json!({ "quantity": quantity })),
                            None,
                        )
                        .await;
                    assert!(status.is_success(), "cart line: {status} {body}");
                }
                cluster
                    .place(
                        replica + 1,
                        "/v1/cart/checkout",
                        &token,
                        &json!({ "payment": { "token": payment } }),
                        &key,
                    )
                    .await
            }
            _ => {
                let items: Vec<Value> = lines
                    .iter()
                    .map(|(sku, q)| json!({ "sku": sku, "quantity": q }))
                    .collect();
                let body =
                    json!({ "items": items, "currency": "EUR", "payment": { "token": payment } });
                cluster
                    .place(replica, "/v1/orders", &token, &body, &key)
                    .await
            }
        };
        record.placed.push(Placed {
            customer,
            key,
            order_id: order_id.clone(),
        });
        // Every fifth order is cancelled at once, on another replica than
        // the one driving its saga: mid-saga, or after it confirmed.
        if op % 5 == 1 && cluster.cancel(replica + 1, &token, &order_id).await {
            record.cancelled.insert(order_id);
        }
        op += 1;
    }
    record
}

/// The pid of a replica's process, which prefixes its saga lease owner.
fn pid(replica: &KillOnDrop) -> u32 {
    replica.0.id()
}

/// Sagas a process holds the lease of and has not finished.
async fn sagas_leased_to(pool: &PgPool, pid: u32) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM saga_instances \
         WHERE status IN ('running', 'compensating') AND lease_owner LIKE $1",
    )
    .bind(format!("{pid}-%"))
    .fetch_one(pool)
    .await
    .expect("count leased sagas")
}

/// Sum of one counter over the replicas' `/metrics`.
async fn counter_sum(cluster: &Cluster, name: &str) -> f64 {
    let bases = cluster.bases.read().unwrap().clone();
    let mut sum = 0.0;
    for base in bases {
        let text = cluster
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        sum += text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_killed_and_restarted_mid_load_behave_as_one() {
    let started = Instant::now();
    // tok_slow authorizations take a second: sagas are mid-flight when
    // the replica dies.
    let sim = PaymentSim::spawn(&["--slow-ms", "1000"]);
    let redis = TestRedis::cluster().await;
    let mut envs = redis.envs();
    envs.push(("PAYMENT_URL", sim.base.as_str()));
    envs.push(("COMMERCE_OUTBOX_POLL_MS", "50"));
    // The relay's lease: if the killed replica was the publisher, another
    // takes over within the test.
    envs.push(("COMMERCE_OUTBOX_LEASE_MS", "1000"));
    let app = TestApp::spawn_with(
        Backend::Postgres,
        &[
            "--saga-lease-secs",
            "2",
            "--saga-poll-ms",
            "200",
            "--payment-timeout-ms",
            "3000",
            "--saga-step-deadline-ms",
            "6000",
            "--stock-reconcile-secs",
            "1",
        ],
        &envs,
    )
    .await;
    let pool = PgPool::connect(&app.db.database_url().unwrap())
        .await
        .expect("connect to the test schema");
    for sku in SKUS {
        app.put_product(sku, "2.50", "EUR", STOCK).await;
    }
    let (second, second_base) = app.spawn_replica();
    let (third, third_base) = app.spawn_replica();
    let app = Arc::new(app);
    let cluster = Arc::new(Cluster {
        bases: RwLock::new(vec![app.base.clone(), second_base, third_base]),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap(),
        stop: AtomicBool::new(false),
        failovers: AtomicUsize::new(0),
        replays: AtomicUsize::new(0),
        answered_by: Mutex::new(HashMap::new()),
    });

    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(cluster.clone(), app.clone(), n)))
        .collect();
    tokio::time::sleep(BEFORE_KILL).await;

    // SIGKILL the second replica at a moment it drives sagas.
    let mut second = Some(second);
    let victim = pid(second.as_ref().unwrap());
    let wait_for_flight = Instant::now() + Duration::from_secs(5);
    let mut in_flight = sagas_leased_to(&pool, victim).await;
    while in_flight < 2 && Instant::now() < wait_for_flight {
        tokio::time::sleep(Duration::from_millis(20)).await;
        in_flight = sagas_leased_to(&pool, victim).await;
    }
    drop(second.take());
    let killed_at = Instant::now();
    assert!(
        in_flight >= 1,
        "the killed replica drove no saga: the test proves nothing"
    );
    tokio::time::sleep(DOWN).await;
    // Its sagas were taken over while it was down (the lease is 2 s).
    assert_eq!(
        sagas_leased_to(&pool, victim).await,
        0,
        "sagas of the dead replica not resumed {:?} after the kill",
        killed_at.elapsed()
    );

    // Started again (on a new port: the balancer learns it).
    let (restarted, restarted_base) = tokio::task::block_in_place(|| app.spawn_replica());
    cluster.bases.write().unwrap()[1] = restarted_base.clone();
    tokio::time::sleep(AFTER_RESTART).await;
    cluster.stop.store(true, Ordering::Relaxed);
    let mut record = Record::default();
    for c in clients {
        let r = c.await.expect("a client panicked");
        record.placed.extend(r.placed);
        record.cancelled.extend(r.cancelled);
    }
    let load_ended = Instant::now();

    // Quiet: every saga ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM saga_instances WHERE status IN ('running', 'compensating')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} sagas still running 20 s after the load"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quiet_after = load_ended.elapsed();

    let failovers = cluster.failovers.load(Ordering::Relaxed);
    assert!(failovers > 0, "no client ever had to go to another replica");
    let restarted_answers = cluster
        .answered_by
        .lock()
        .unwrap()
        .get(&restarted_base)
        .copied()
        .unwrap_or(0);
    assert!(
        restarted_answers > 0,
        "the restarted replica answered nothing"
    );

    // Orders: exactly the ones the clients were told of, each under the
    // key it was placed with, once.
    let told: HashMap<&str, &Placed> = record
        .placed
        .iter()
        .map(|p| (p.order_id.as_str(), p))
        .collect();
    assert_eq!(
        told.len(),
        record.placed.len(),
        "two keys were answered with the same order"
    );
    let orders: Vec<(Uuid, Uuid, String, Decimal, Value)> = sqlx::query_as(
        "SELECT order_id, customer_id, status, total_amount, items FROM order_views",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let in_db: HashSet<String> = orders.iter().map(|o| o.0.to_string()).collect();
    let lost: Vec<&&str> = told.keys().filter(|id| !in_db.contains(**id)).collect();
    assert!(
        lost.is_empty(),
        "orders answered 201 but not stored: {lost:?}"
    );
    let unknown: Vec<&String> = in_db
        .iter()
        .filter(|id| !told.contains_key(id.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "orders nobody was told of (a retry placed a second one?): {unknown:?}"
    );
    let keys: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
        "SELECT customer_id, idem_key, order_id FROM idempotency_keys \
         WHERE idem_key NOT LIKE 'cart:%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let by_key: HashMap<(Uuid, &str), String> = keys
        .iter()
        .map(|(c, k, o)| ((*c, k.as_str()), o.to_string()))
        .collect();
    assert_eq!(by_key.len(), record.placed.len(), "one key per order");
    for p in &record.placed {
        assert_eq!(
            by_key.get(&(p.customer, p.key.as_str())),
            Some(&p.order_id),
            "key {} names another order than the one its client got",
            p.key
        );
    }

    // Every order ended, and so did its saga (one per order).
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _, status, _, _) in &orders {
        assert!(
            ["confirmed", "failed", "cancelled"].contains(&status.as_str()),
            "order {id} is still {status}"
        );
        *by_status.entry(status).or_default() += 1;
    }
    for id in &record.cancelled {
        let status = &orders.iter().find(|o| o.0.to_string() == *id).unwrap().2;
        assert_eq!(status, "cancelled", "order {id} was cancelled (200)");
    }
    let sagas: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT correlation_id, status FROM saga_instances WHERE saga_type = 'order-fulfilment'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(sagas.len(), orders.len(), "one fulfilment saga per order");
    // A confirmed order cancelled later is refunded by a refund saga of
    // its own, which must have finished too.
    let refunds: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT correlation_id, status FROM saga_instances WHERE saga_type = 'order-refund'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (order, status) in &refunds {
        assert_eq!(
            status, "completed",
            "the refund saga of {order} is {status}"
        );
    }
    for (order, status) in &sagas {
        if status == "completed" || status == "compensated" {
            continue;
        }
        let history: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT h.step, h.phase, h.outcome, h.detail FROM saga_steps h \
             JOIN saga_instances s USING (saga_id) WHERE s.correlation_id = $1 ORDER BY h.at",
        )
        .bind(order)
        .fetch_all(&pool)
        .await
        .unwrap();
        panic!("the saga of {order} is {status}; its history: {history:#?}");
    }

    // Stock: nothing held; on hand down by exactly what confirmed orders
    // took and kept (a confirmed order cancelled later was refunded and
    // its units put back).
    let sold_orders: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(
        "SELECT DISTINCT aggregate_id FROM events WHERE event_type = 'OrderConfirmed' \
         AND aggregate_id NOT IN \
         (SELECT aggregate_id FROM events WHERE event_type = 'OrderCancelled')",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut sold: HashMap<String, i64> = HashMap::new();
    for (id, _, _, _, items) in &orders {
        if sold_orders.contains(id) {
            for item in items.as_array().unwrap() {
                *sold
                    .entry(item["sku"].as_str().unwrap().to_owned())
                    .or_default() += item["quantity"].as_i64().unwrap();
            }
        }
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE state = 'held'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(held, 0, "reservations still held");
    let products: Vec<(String, i64, i64, i64)> =
        sqlx::query_as("SELECT sku, on_hand, reserved, version FROM products ORDER BY sku")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (sku, on_hand, reserved, _) in &products {
        assert_eq!(*reserved, 0, "{sku} still has units reserved");
        let sold = sold.get(sku).copied().unwrap_or(0);
        assert_eq!(
            *on_hand,
            STOCK - sold,
            "{sku}: on hand is not the stock less the {sold} units confirmed"
        );
    }

    // The gateway: every charge belongs to a stored order; a confirmed
    // order was authorized and captured once, for its total, and kept;
    // nothing else keeps a capture or an open authorization.
    let ledger: Vec<Value> = reqwest::get(format!("{}/v1/ledger", sim.base))
        .await
        .expect("ledger")
        .json()
        .await
        .expect("ledger json");
    let mut ledger_of: HashMap<String, Vec<&Value>> = HashMap::new();
    for entry in &ledger {
        let order = entry["order_id"].as_str().unwrap().to_owned();
        assert!(in_db.contains(&order), "a charge without an order: {entry}");
        ledger_of.entry(order).or_default().push(entry);
    }
    let amount = |v: &Value| -> Decimal {
        v.as_str()
            .map(|s| s.parse().unwrap())
            .unwrap_or(Decimal::ZERO)
    };
    for (id, _, status, total, _) in &orders {
        let entries = ledger_of.get(&id.to_string()).cloned().unwrap_or_default();
        assert!(entries.len() <= 1, "{id} authorized twice: {entries:?}");
        let entry = entries.first();
        let captures = entry.map_or(0, |e| e["captures"].as_i64().unwrap());
        let net = entry.map_or(Decimal::ZERO, |e| {
            amount(&e["captured_amount"]) - amount(&e["refunded_amount"])
        });
        match status.as_str() {
            "confirmed" => {
                let e = entry.unwrap_or_else(|| panic!("confirmed {id} never charged"));
                assert_eq!(
                    (e["status"].as_str(), captures),
                    (Some("captured"), 1),
                    "{id}: {e}"
                );
                assert_eq!(net, *total, "{id}: {e}");
            }
            _ => {
                assert_eq!(
                    net,
                    Decimal::ZERO,
                    "{status} order {id} kept money: {entry:?}"
                );
                if let Some(e) = entry
                    && !["declined", "voided", "refunded"].contains(&e["status"].as_str().unwrap())
                {
                    let history: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
                        "SELECT h.step, h.phase, h.outcome, h.detail FROM saga_steps h \
                         JOIN saga_instances s USING (saga_id) WHERE s.correlation_id = $1 \
                         ORDER BY h.at",
                    )
                    .bind(id)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                    panic!(
                        "{status} order {id} left its payment {}: {e}\nsaga history: {history:#?}",
                        e["status"]
                    );
                }
            }
        }
    }

    // The outbox: the stream holds every event of the database, once.
    let all_events: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let all_events: HashSet<String> = all_events.iter().map(Uuid::to_string).collect();
    let handle = redis.handle();
    let deadline = Instant::now() + Duration::from_secs(15);
    let published = loop {
        let ids: Vec<String> = redis
            .stream()
            .await
            .into_iter()
            .map(|fields| fields["event_id"].clone())
            .collect();
        if ids.len() >= all_events.len() || Instant::now() >= deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let unique: HashSet<&String> = published.iter().collect();
    assert_eq!(
        unique.len(),
        published.len(),
        "an event was published twice"
    );
    let missing = all_events.iter().filter(|e| !unique.contains(e)).count();
    assert_eq!(missing, 0, "{missing} events never reached the stream");
    assert_eq!(
        published.len(),
        all_events.len(),
        "the stream holds strangers"
    );

    // The stock cache: after reconciliation it says what the database
    // says, through the API of every replica too, and a further round of
    // the reconcilers finds nothing to repair.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut drift = Vec::new();
        for (sku, on_hand, reserved, version) in &products {
            let key = format!("{}stock:{{{sku}}}", redis.prefix);
            let cached: Option<String> = handle
                .run(|mut conn| async move {
                    redis::cmd("HGET")
                        .arg(key)
                        .arg("p")
                        .query_async(&mut conn)
                        .await
                })
                .await
                .unwrap();
            let cached: Value = cached
                .map(|c| serde_json::from_str(&c).unwrap())
                .unwrap_or(Value::Null);
            if (
                cached["on_hand"].as_i64(),
                cached["reserved"].as_i64(),
                cached["version"].as_i64(),
            ) != (Some(*on_hand), Some(*reserved), Some(*version))
            {
                drift.push(format!("{sku}: {cached}"));
            }
        }
        if drift.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stock cache still differs from the database: {drift:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for replica in 0..3 {
        for (sku, on_hand, reserved, _) in &products {
            let (status, _, p) = cluster
                .send(
                    replica,
                    Method::GET,
                    &format!("/v1/products/{sku}"),
                    &app.admin(),
                    None,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{p}");
            assert_eq!(
                (p["on_hand"].as_i64(), p["reserved"].as_i64()),
                (Some(*on_hand), Some(*reserved)),
                "replica {replica} serves {p}"
            );
        }
    }
    const MISMATCHES: &str = "commerce_inventory_cache_mismatches_total";
    let mismatches = counter_sum(&cluster, MISMATCHES).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        counter_sum(&cluster, MISMATCHES).await,
        mismatches,
        "the reconcilers still find drift"
    );

    println!(
        "replicas: {} orders {by_status:?}; {} cancels; {in_flight} sagas in flight at the kill; \
         {failovers} failovers, {} replayed placements; {} events published; \
         {mismatches} cache mismatches repaired; load {:?}, quiet after {:?}, total {:?}",
        orders.len(),
        record.cancelled.len(),
        cluster.replays.load(Ordering::Relaxed),
        published.len(),
        load_ended.duration_since(started),
        quiet_after,
        started.elapsed(),
    );
    drop(restarted);
    drop(third);
}
