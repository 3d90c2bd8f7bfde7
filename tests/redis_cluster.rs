//! Everything the service keeps in Redis, on a Redis Cluster: carts, the
//! stock cache and the outbox stream, against the local 3-master cluster
//! that `scripts/redis-cluster.sh` starts (127.0.0.1:7000-7002;
//! `TEST_REDIS_CLUSTER_URL` to point elsewhere). These tests never skip: a
//! cluster that does not answer fails them. The three-replica test
//! (replicas.rs) runs on the cluster too.
//!
//! What a cluster adds: a key lives on the node that serves its slot, a
//! script or a pipeline may touch one slot only, and a node may hold
//! none of a given set of keys. So each test checks that its keys really
//! spread over several nodes, and does what a single Redis forgives
//! (commands over many owners' keys, scripts Redis forgot) on them.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use commerce_app::ports::{CartStore, CartWrite, Product, SetLine, StockCache};
use commerce_domain::{Currency, Quantity, Sku};
use commerce_store::redis::cart::RedisCarts;
use commerce_store::redis::stock::RedisStockCache;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, TestRedis};

/// How many of the test's keys of `kind` each node holds, read from each
/// node over a plain connection (not cluster-aware: it sees only the keys
/// that node holds).
async fn spread_of(redis: &TestRedis, kind: &str) -> Vec<usize> {
    let mut counts = vec![];
    for mut node in nodes(redis).await {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}{kind}:*", redis.prefix))
            .query_async(&mut node)
            .await
            .unwrap();
        counts.push(keys.len());
    }
    counts
}

/// A plain connection to each node the URL lists.
async fn nodes(redis: &TestRedis) -> Vec<redis::aio::MultiplexedConnection> {
    let mut nodes = vec![];
    for url in redis.url.split(',') {
        let client = redis::Client::open(url.trim()).expect("node url");
        nodes.push(
            client
                .get_multiplexed_async_connection()
                .await
                .expect("node answers"),
        );
    }
    nodes
}

/// Nodes that hold at least one of the keys counted.
fn nodes_used(spread: &[usize]) -> usize {
    spread.iter().filter(|&&n| n > 0).count()
}

/// The whole service on the cluster: customers' carts (their keys on
/// every node), checkouts that place orders and empty the carts, product
/// reads through the stock cache, and the relay's stream holding every
/// event once, in feed order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_stock_and_the_event_stream_work_on_a_cluster() {
    let cluster = TestRedis::cluster().await;
    let app = TestApp::spawn_with(
        Backend::Postgres,
        &["--outbox-poll-ms", "50"],
        &cluster.envs(),
    )
    .await;
    let (status, _, ready) = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "ready", "the cluster checked: {ready}");

    let skus: Vec<String> = (0..12).map(|i| format!("SKU-{i}")).collect();
    for sku in &skus {
        app.put_product(sku, "2.50", "EUR", 100).await;
    }
    let stock = spread_of(&cluster, "stock").await;
    assert_eq!(stock.iter().sum::<usize>(), skus.len(), "{stock:?}");
    assert!(
        nodes_used(&stock) >= 2,
        "stock keys on one node only: {stock:?}"
    );

    let customers: Vec<(Uuid, String)> = (0..9).map(|_| app.customer()).collect();
    for (n, (_, token)) in customers.iter().enumerate() {
        for k in 0..3 {
            let sku = &skus[(n + k * 4) % skus.len()];
            let (status, _, body) = app
                .call(
                    Method::PUT,
                    &format!("/v1/cart/items/{sku}"),
                    Some(token),
                    Some(json!({ "quantity": k + 1 })),
                    &[],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let removed = &skus[(n + 8) % skus.len()];
        let (status, _, cart) = app
            .delete(&format!("/v1/cart/items/{removed}"), token)
            .await;
        assert_eq!(status, StatusCode::OK, "{cart}");
        assert_eq!(cart["items"].as_array().unwrap().len(), 2, "{cart}");
    }
    let carts = spread_of(&cluster, "cart").await;
    assert_eq!(carts.iter().sum::<usize>(), customers.len(), "{carts:?}");
    assert!(
        nodes_used(&carts) >= 2,
        "cart keys on one node only: {carts:?}"
    );

    let mut orders = vec![];
    for (n, (customer, token)) in customers.iter().enumerate() {
        let (status, _, order) = app
            .call(
                Method::POST,
                "/v1/cart/checkout",
                Some(token),
                Some(json!({ "payment": { "token": "tok_ok" } })),
                &[("Idempotency-Key", &format!("checkout-{n}"))],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        assert_eq!(order["customer_id"], customer.to_string());
        // 1 + 2 units at 2.50.
        assert_eq!(order["total"], "7.50", "{order}");
        let (status, _, cart) = app.get("/v1/cart", token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cart["items"], json!([]), "emptied by the checkout");
        orders.push(order["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(spread_of(&cluster, "cart").await.iter().sum::<usize>(), 0);

    // Stock read through the cache, which every order refreshed: what
    // the orders took, SKU by SKU.
    let mut taken: BTreeMap<&str, i64> = BTreeMap::new();
    for n in 0..customers.len() {
        for k in 0..2 {
            *taken.entry(&skus[(n + k * 4) % skus.len()]).or_default() += k as i64 + 1;
        }
    }
    let admin = app.admin();
    for sku in &skus {
        let (status, _, product) = app.get(&format!("/v1/products/{sku}"), &admin).await;
        assert_eq!(status, StatusCode::OK, "{product}");
        let expected = 100 - taken.get(sku.as_str()).copied().unwrap_or(0);
        assert_eq!(product["available"], expected, "{sku}: {product}");
    }

    // The relay's stream (one key, one slot) holds the feed once, in
    // order, every order's events among it.
    let (status, _, feed) = app.get("/v1/events?limit=1000", &admin).await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    let feed_ids: Vec<String> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let entries = loop {
        let entries = cluster.stream().await;
        if entries.len() >= feed_ids.len() {
            break entries;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events on the stream",
            entries.len(),
            feed_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let published: Vec<String> = entries
        .iter()
        .take(feed_ids.len())
        .map(|e| e["event_id"].clone())
        .collect();
    assert_eq!(published, feed_ids, "the feed, once, in order");
    let placed: HashSet<&str> = entries
        .iter()
        .filter(|e| e["aggregate_type"] == "order")
        .map(|e| e["aggregate_id"].as_str())
        .collect();
    for id in &orders {
        assert!(placed.contains(id.as_str()), "order {id} on the stream");
    }
}

fn product(sku: &str, version: i64, on_hand: i64) -> Product {
    Product {
        sku: Sku::parse(sku).unwrap(),
        name: format!("product {sku}"),
        unit_price: Decimal::new(250, 2),
        currency: Currency::parse("EUR").unwrap(),
        on_hand,
        reserved: 0,
        version,
        updated_at: Utc::now(),
    }
}

/// The stock cache over SKUs on every node: one put and one read for all
/// of them, a script every node forgot (SCRIPT FLUSH) loaded again, and
/// an older version never overwriting a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_cache_spans_the_nodes_and_keeps_the_newer_version() {
    let cluster = TestRedis::cluster().await;
    let cache = RedisStockCache::new(cluster.handle());
    let skus: Vec<String> = (0..30).map(|i| format!("P{i}")).collect();
    let first: Vec<Product> = skus.iter().map(|s| product(s, 2, 10)).collect();
    cache.put(&first).await.unwrap();
    let spread = spread_of(&cluster, "stock").await;
    assert_eq!(nodes_used(&spread), 3, "{spread:?}");

    let wanted: Vec<Sku> = skus
        .iter()
        .map(|s| Sku::parse(s).unwrap())
        .chain([Sku::parse("NOT-CACHED").unwrap()])
        .collect();
    let read = cache.get_many(&wanted).await.unwrap();
    assert_eq!(read.len(), skus.len() + 1);
    for (got, sku) in read.iter().zip(&skus) {
        let got = got.as_ref().expect("cached");
        assert_eq!((got.sku.as_str(), got.version), (sku.as_str(), 2));
    }
    assert!(read[skus.len()].is_none(), "a SKU nobody cached");

    for mut node in nodes(&cluster).await {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut node)
            .await
            .unwrap();
    }
    // Newer for the even SKUs, older for the odd ones.
    let second: Vec<Product> = skus
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i % 2 == 0 {
                product(s, 3, 7)
            } else {
                product(s, 1, 99)
            }
        })
        .collect();
    cache.put(&second).await.unwrap();
    let read = cache.get_many(&wanted[..skus.len()]).await.unwrap();
    for (i, got) in read.iter().enumerate() {
        let got = got.as_ref().unwrap();
        let expected = if i % 2 == 0 { (3, 7) } else { (2, 10) };
        assert_eq!((got.version, got.on_hand), expected, "{}", got.sku);
    }
}

/// Carts of many customers (on every node) that expire unread: the
/// sweep, which looks at all of them at once, counts each exactly once,
/// and leaves a cart that is still alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_carts_on_every_node_are_counted_once() {
    let cluster = TestRedis::cluster().await;
    let carts = RedisCarts::new(cluster.handle());
    let eur = Currency::parse("EUR").unwrap();
    let mug = Sku::parse("MUG").unwrap();
    let one = Quantity::parse(1).unwrap();
    let short = Duration::from_millis(300);
    for _ in 0..20 {
        let write = CartWrite {
            revision: Uuid::new_v4(),
            ttl: short,
        };
        assert!(matches!(
            carts
                .set_cart_line(Uuid::new_v4(), (&mug, one, eur), 10, write)
                .await
                .unwrap(),
            SetLine::Set { created: true, .. }
        ));
    }
    let alive = Uuid::new_v4();
    carts
        .set_cart_line(
            alive,
            (&mug, one, eur),
            10,
            CartWrite {
                revision: Uuid::new_v4(),
                ttl: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
    let spread = spread_of(&cluster, "cart").await;
    assert_eq!(spread.iter().sum::<usize>(), 21);
    assert_eq!(nodes_used(&spread), 3, "{spread:?}");

    tokio::time::sleep(short * 3).await;
    assert_eq!(spread_of(&cluster, "cart").await.iter().sum::<usize>(), 1);
    // Two replicas sweeping at once: 20 between them, none twice.
    let (a, b) = tokio::join!(
        carts.sweep_expired_carts(short, 1000),
        carts.sweep_expired_carts(short, 1000)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 20);
    assert_eq!(carts.sweep_expired_carts(short, 1000).await.unwrap(), 0);
    assert!(
        carts
            .load_cart(alive, Duration::from_secs(3600))
            .await
            .unwrap()
            .is_some(),
        "the live cart stays"
    );
}

/// A cluster whose nodes do not answer: the cart routes answer a clear
/// 503, readiness says "degraded" (it does not take the replica out, as
/// orders need no Redis), and orders go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_does_not_answer_is_a_503_and_orders_go_on() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[],
        &[
            ("REDIS_URL", "redis://127.0.0.1:1,redis://127.0.0.1:2"),
            ("COMMERCE_REDIS_TIMEOUT_MS", "100"),
        ],
    )
    .await;
    app.put_product("MUG", "1.00", "EUR", 5).await;
    let (_, token) = app.customer();
    let (status, _, body) = app
        .call(
            Method::PUT,
            "/v1/cart/items/MUG",
            Some(&token),
            Some(json!({ "quantity": 1 })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], 503, "problem+json: {body}");
    let (status, _, ready) = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["redis"], "unavailable", "{ready}");
    let (status, _, order): (StatusCode, _, Value) = app.place(&token, &[("MUG", 1)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
}
