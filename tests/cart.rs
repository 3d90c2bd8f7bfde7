//! The cart over HTTP, against each place carts can live: Redis (with the
//! embedded database for the rest), and the embedded store itself, SQLite
//! and PostgreSQL. Then Redis failures: down at start, down for good, back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, TestDb, TestRedis, component, metric_sum};

/// Where the carts of a test live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carts {
    Redis,
    Sqlite,
    Postgres,
}

/// Runs one test body against every cart store, as three tests.
macro_rules! all_cart_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::Carts::Redis).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Carts::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Carts::Postgres).await
            }
        }
    )*};
}

all_cart_stores!(
    cart_lines_change_and_survive_a_restart,
    bad_cart_writes_are_refused,
    a_full_cart_refuses_a_new_line,
    carts_are_priced_by_plugins_and_flag_short_stock,
    checkout_places_one_order_and_empties_the_cart,
    concurrent_checkouts_with_different_keys_place_one_order,
    concurrent_writes_each_answer_the_cart_as_written,
    a_changed_cart_checks_out_into_a_new_order,
    customers_see_only_their_own_cart,
    the_ttl_is_set_and_slides,
    deleting_at_a_revision_spares_a_changed_cart,
    cart_kpis_count_each_cart_once_across_replicas,
);

/// A service whose carts live in `carts`; the Redis prefix (if any) is
/// cleaned up when this is dropped, after the service.
struct CartApp {
    app: TestApp,
    redis: Option<TestRedis>,
}

impl std::ops::Deref for CartApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

async fn spawn(carts: Carts, args: &[&str]) -> CartApp {
    match carts {
        Carts::Redis => {
            let redis = TestRedis::new();
            let app = TestApp::spawn_with(Backend::Sqlite, args, &redis.envs()).await;
            CartApp {
                app,
                redis: Some(redis),
            }
        }
        Carts::Sqlite => CartApp {
            app: TestApp::spawn_with(Backend::Sqlite, args, &[]).await,
            redis: None,
        },
        Carts::Postgres => CartApp {
            app: TestApp::spawn_with(Backend::Postgres, args, &[]).await,
            redis: None,
        },
    }
}

impl CartApp {
    async fn put_item(&self, token: &str, sku: &str, quantity: i64) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                Method::PUT,
                &format!("/v1/cart/items/{sku}"),
                Some(token),
                Some(json!({ "quantity": quantity })),
                &[],
            )
            .await;
        (status, body)
    }

    async fn cart(&self, token: &str) -> Value {
        let (status, _, body) = self.get("/v1/cart", token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn checkout(
        &self,
        token: &str,
        key: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call(
            Method::POST,
            "/v1/cart/checkout",
            Some(token),
            Some(json!({ "payment": { "token": "tok_ok" } })),
            &[("Idempotency-Key", key)],
        )
        .await
    }

    async fn order_count(&self, token: &str) -> usize {
        let (status, _, list) = self.get("/v1/orders?limit=100", token).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["items"].as_array().unwrap().len()
    }
}

fn skus(cart: &Value) -> Vec<(String, u64)> {
    cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["sku"].as_str().unwrap().to_owned(),
                i["quantity"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, case: &str) {
    assert_eq!(status, expected, "{case}: {body}");
    assert_eq!(body["status"], expected.as_u16(), "{case}: {body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{case}: {body}"
    );
}

async fn cart_lines_change_and_survive_a_restart(carts: Carts) {
    let mut app = spawn(carts, &[]).await;
    app.app.put_product("MUG", "12.50", "EUR", 100).await;
    app.app.put_product("TEE", "20", "EUR", 100).await;
    let (_, token) = app.customer();

    let empty = app.cart(&token).await;
    assert_eq!(empty["items"], json!([]), "{empty}");
    assert_eq!(empty["revision"], Value::Null);

    let (s, cart) = app.put_item(&token, "MUG", 2).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    assert_eq!(skus(&cart), [("MUG".to_owned(), 2)]);
    assert_eq!(cart["items"][0]["unit_price"], "12.50");
    assert_eq!(cart["items"][0]["line_total"], "25.00");
    assert_eq!(cart["currency"], "EUR");
    let first_revision = cart["revision"].clone();
    assert!(first_revision.is_string(), "{cart}");

    // Setting a quantity replaces it; every write moves the revision.
    let (_, cart) = app.put_item(&token, "MUG", 3).await;
    let (_, cart2) = app.put_item(&token, "TEE", 1).await;
    assert_ne!(cart["revision"], first_revision);
    assert_ne!(cart2["revision"], cart["revision"]);
    assert_eq!(skus(&cart2), [("MUG".to_owned(), 3), ("TEE".to_owned(), 1)]);
    assert_eq!(cart2["subtotal"], "57.50");
    assert_eq!(cart2["total"], "57.50");

    // Prices are the catalog's, now.
    app.app.put_product("TEE", "25", "EUR", 100).await;
    let cart = app.cart(&token).await;
    assert_eq!(cart["items"][1]["unit_price"], "25.00");
    assert_eq!(cart["total"], "62.50");

    // A restart keeps the cart.
    app.app.restart();
    let after = app.cart(&token).await;
    assert_eq!(skus(&after), skus(&cart));
    assert_eq!(after["revision"], cart["revision"]);

    // Quantity 0 removes, DELETE removes (twice is fine), DELETE /v1/cart empties.
    let (s, cart) = app.put_item(&token, "TEE", 0).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    assert_eq!(skus(&cart), [("MUG".to_owned(), 3)]);
    app.put_item(&token, "TEE", 4).await;
    for _ in 0..2 {
        let (s, _, cart) = app.delete("/v1/cart/items/TEE", &token).await;
        assert_eq!(s, StatusCode::OK, "{cart}");
        assert_eq!(skus(&cart), [("MUG".to_owned(), 3)]);
    }
    let (s, _, _) = app.delete("/v1/cart", &token).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.cart(&token).await["items"], json!([]));
    // Removing the last line leaves an empty cart, not a husk.
    app.put_item(&token, "MUG", 1).await;
    let (_, cart) = app.put_item(&token, "MUG", 0).await;
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["revision"], Value::Null, "{cart}");
}

async fn bad_cart_writes_are_refused(carts: Carts) {
    let app = spawn(carts, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    app.put_product("USD-CAP", "9.00", "USD", 100).await;
    let (_, token) = app.customer();

    let (s, body) = app.put_item(&token, "NOPE", 1).await;
    assert_problem(s, &body, StatusCode::NOT_FOUND, "unknown SKU");
    for (quantity, case) in [(-1, "negative"), (10_001, "above the maximum")] {
        let (s, body) = app.put_item(&token, "MUG", quantity).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, case);
    }
    let (s, body) = app.put_item(&token, "bad%20sku", 1).await;
    assert_problem(s, &body, StatusCode::BAD_REQUEST, "malformed SKU");
    let (s, _, body) = app
        .call(
            Method::PUT,
            "/v1/cart/items/MUG",
            Some(&token),
            Some(json!({ "quantity": "two" })),
            &[],
        )
        .await;
    assert_problem(
        s,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "quantity not a number",
    );
    let (s, _, body) = app.call(Method::GET, "/v1/cart", None, None, &[]).await;
    assert_problem(s, &body, StatusCode::UNAUTHORIZED, "no token");

    // One currency per cart.
    let (s, _) = app.put_item(&token, "MUG", 1).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = app.put_item(&token, "USD-CAP", 1).await;
    assert_problem(
        s,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "mixed currencies",
    );
    assert_eq!(body["type"], "/problems/currency-mismatch");
    assert_eq!(skus(&app.cart(&token).await), [("MUG".to_owned(), 1)]);
    // Once the cart is empty, another currency is fine.
    app.put_item(&token, "MUG", 0).await;
    let (s, cart) = app.put_item(&token, "USD-CAP", 1).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    assert_eq!(cart["currency"], "USD");

    // Nothing refused was stored.
    assert_eq!(skus(&app.cart(&token).await), [("USD-CAP".to_owned(), 1)]);
}

async fn a_full_cart_refuses_a_new_line(carts: Carts) {
    let app = spawn(carts, &[]).await;
    let (_, token) = app.customer();
    let full = commerce_app::cart::MAX_CART_LINES;
    for i in 0..=full {
        app.put_product(&format!("P{i:04}"), "1.00", "EUR", 10)
            .await;
    }
    for i in 0..full {
        let (s, body) = app.put_item(&token, &format!("P{i:04}"), 1).await;
        assert_eq!(s, StatusCode::OK, "line {i}: {body}");
    }
    let (s, body) = app.put_item(&token, &format!("P{full:04}"), 1).await;
    assert_problem(
        s,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "one line too many",
    );
    // Changing a line already there is still fine.
    let (s, cart) = app.put_item(&token, "P0000", 5).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    assert_eq!(cart["items"].as_array().unwrap().len(), full);
    assert_eq!(cart["subtotal"], format!("{}.00", full + 4));
}

async fn carts_are_priced_by_plugins_and_flag_short_stock(carts: Carts) {
    let app = spawn(carts, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 1_000).await;
    app.put_product("RARE", "100", "EUR", 5).await;
    let (s, body) = app
        .upload(
            "bulk-discount",
            component("bulk_discount"),
            Some("pricing"),
            None,
            true,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = app
        .upload(
            "quantity-rules",
            component("quantity_rules"),
            Some("validation"),
            Some(r#"{"max_quantity_per_sku":100,"blocked_skus":[]}"#),
            true,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, token) = app.customer();

    // 12 mugs: 10% off the line (150.00 - 15.00), as an order would be.
    let (s, cart) = app.put_item(&token, "MUG", 12).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    assert_eq!(cart["subtotal"], "150.00");
    assert_eq!(cart["adjustments"][0]["plugin"], "bulk-discount", "{cart}");
    assert_eq!(cart["total"], "135.00");
    assert_eq!(cart["items"][0]["insufficient_stock"], false);
    assert_eq!(cart["items"][0]["available"], 1_000);

    // More than is in stock: flagged, not refused.
    let (s, cart) = app.put_item(&token, "RARE", 6).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    let rare = &cart["items"][1];
    assert_eq!(rare["sku"], "RARE");
    assert_eq!(rare["available"], 5);
    assert_eq!(rare["insufficient_stock"], true);

    // A validation plugin's objection is shown, and the read still works.
    app.put_item(&token, "MUG", 150).await;
    let cart = app.cart(&token).await;
    assert_eq!(cart["violations"][0]["plugin"], "quantity-rules", "{cart}");
    assert_eq!(
        cart["total"], "2100.00",
        "20% off 1875.00, plus 600.00: {cart}"
    );
    // ...and the checkout, which places an order, is refused as the order is.
    let (s, _, body) = app.checkout(&token, "refused").await;
    assert_problem(
        s,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected checkout",
    );
    assert_eq!(app.cart(&token).await["items"].as_array().unwrap().len(), 2);

    // Within the plugin's limits but above the stock: the checkout is the
    // order's 409, naming the short SKU; nothing is reserved, the cart stays.
    app.put_item(&token, "MUG", 12).await;
    let (s, _, body) = app.checkout(&token, "short").await;
    assert_problem(s, &body, StatusCode::CONFLICT, "short checkout");
    assert_eq!(
        body["short"],
        json!([{"sku": "RARE", "requested": 6, "available": 5}])
    );
    let (_, _, rare) = app.get("/v1/products/RARE", &token).await;
    assert_eq!(rare["reserved"], 0);
    assert_eq!(app.cart(&token).await["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.order_count(&token).await, 0);
}

async fn checkout_places_one_order_and_empties_the_cart(carts: Carts) {
    let app = spawn(carts, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (customer, token) = app.customer();

    let (s, _, body) = app.checkout(&token, "empty").await;
    assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "empty cart");

    app.put_item(&token, "MUG", 2).await;
    let (s, headers, order) = app.checkout(&token, "k1").await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    assert_eq!(order["customer_id"], customer.to_string());
    assert_eq!(order["total"], "25.00");
    assert_eq!(order["items"][0]["quantity"], 2);
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/orders/{id}").as_str());
    assert_eq!(app.cart(&token).await["items"], json!([]), "emptied");

    // A retry with the same key, cart gone: the same order, marked replayed.
    let (s, headers, again) = app.checkout(&token, "k1").await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(headers["idempotent-replayed"], "true");
    // ...even once the cart holds something else, which stays.
    app.put_item(&token, "MUG", 7).await;
    let (_, _, again) = app.checkout(&token, "k1").await;
    assert_eq!(again["id"], id.as_str());
    assert_eq!(skus(&app.cart(&token).await), [("MUG".to_owned(), 7)]);
    assert_eq!(app.order_count(&token).await, 1);

    // The key of a checkout cannot be reused for another kind of request.
    let (s, _, body) = app.place(&token, &[("MUG", 1)], Some("k1")).await;
    assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "key reused");

    // The order is an order like any other.
    let (s, _, read) = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read["id"], id.as_str());
}

async fn concurrent_checkouts_with_different_keys_place_one_order(carts: Carts) {
    let app = spawn(carts, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    app.put_product("TEE", "20.00", "EUR", 100).await;
    let (_, token) = app.customer();
    app.put_item(&token, "MUG", 1).await;
    app.put_item(&token, "TEE", 2).await;

    // A double click and a retry: different keys, the same cart.
    let (a, b, c, d) = tokio::join!(
        app.checkout(&token, "click-0"),
        app.checkout(&token, "click-1"),
        app.checkout(&token, "retry-0"),
        app.checkout(&token, "retry-1"),
    );
    // Each gets the one order, or, if it read the cart after the winner
    // had emptied it, a 422 for the empty cart: never a second order.
    let mut ids = Vec::new();
    for (s, _, body) in [&a, &b, &c, &d] {
        match *s {
            StatusCode::CREATED => ids.push(body["id"].as_str().unwrap().to_owned()),
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(body["detail"], "the cart is empty", "{body}")
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(!ids.is_empty());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one order for all: {ids:?}");
    assert_eq!(app.order_count(&token).await, 1);
    assert_eq!(app.cart(&token).await["items"], json!([]));
}

/// One customer's writes racing (two tabs, a script): each answer shows
/// the cart its own write left, every line in it priced from the catalog,
/// including lines another write added while this one was under way.
async fn concurrent_writes_each_answer_the_cart_as_written(carts: Carts) {
    let app = spawn(carts, &[]).await;
    let names: Vec<String> = (0..12).map(|i| format!("SKU-{i}")).collect();
    for name in &names {
        app.put_product(name, "3.00", "EUR", 100).await;
    }
    let (_, token) = app.customer();
    let answers = futures_util::future::join_all(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| app.put_item(&token, name, i as i64 + 1)),
    )
    .await;
    let mut sizes = Vec::new();
    for ((status, body), (i, name)) in answers.iter().zip(names.iter().enumerate()) {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(
            body["unavailable"].as_array().is_none_or(|u| u.is_empty()),
            "every line is priced: {body}"
        );
        let lines = skus(body);
        assert!(
            lines.contains(&(name.clone(), i as u64 + 1)),
            "{name}: {body}"
        );
        for item in body["items"].as_array().unwrap() {
            assert_eq!(item["unit_price"], "3.00", "{body}");
            assert_eq!(item["available"], 100, "{body}");
        }
        // Quantities sum to what the lines say: the total is of this cart.
        let units: u64 = lines.iter().map(|(_, q)| q).sum();
        assert_eq!(body["total"], format!("{}.00", units * 3), "{body}");
        sizes.push(lines.len());
    }
    // The last write to land saw every line.
    assert_eq!(sizes.iter().max(), Some(&names.len()), "{sizes:?}");
    assert_eq!(skus(&app.cart(&token).await).len(), names.len());
}

async fn a_changed_cart_checks_out_into_a_new_order(carts: Carts) {
    // Each cart state is its own order: after a checkout, new lines make
    // a new revision, which checks out into a new order.
    let app = spawn(carts, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    app.put_product("TEE", "20.00", "EUR", 100).await;
    let (_, token) = app.customer();
    app.put_item(&token, "MUG", 1).await;
    let (s, _, order) = app.checkout(&token, "a").await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    app.put_item(&token, "TEE", 1).await;
    let (s, _, second) = app.checkout(&token, "b").await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_ne!(second["id"], order["id"], "a new cart state is a new order");
    assert_eq!(second["items"][0]["sku"], "TEE");
    assert_eq!(app.order_count(&token).await, 2);
}

async fn customers_see_only_their_own_cart(carts: Carts) {
    let app = spawn(carts, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, alice) = app.customer();
    let (_, bob) = app.customer();
    app.put_item(&alice, "MUG", 3).await;
    assert_eq!(app.cart(&bob).await["items"], json!([]));
    let (s, _, body) = app.checkout(&bob, "bob-1").await;
    assert_problem(
        s,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bob's empty cart",
    );
    let (s, _, _) = app.delete("/v1/cart", &bob).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(skus(&app.cart(&alice).await), [("MUG".to_owned(), 3)]);
    // An admin's cart is their own too.
    let admin = app.admin();
    assert_eq!(app.cart(&admin).await["items"], json!([]));

    // The routes are described.
    let (_, _, doc) = app
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await;
    for path in ["/v1/cart", "/v1/cart/items/{sku}", "/v1/cart/checkout"] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the OpenAPI document"
        );
    }
}

/// The store under the cart routes, opened in-process: a checkout empties
/// the cart only if it is still at the revision it ordered, so lines added
/// while the order was being placed survive.
async fn deleting_at_a_revision_spares_a_changed_cart(carts: Carts) {
    use commerce_app::ports::{CartStore, CartWrite, RemoveLine, SetLine, StoredCart};
    use commerce_domain::{Currency, Quantity, Sku};
    let backend = if carts == Carts::Postgres {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let db = TestDb::new(backend).await;
    let redis = TestRedis::new();
    let store: Arc<dyn CartStore> = match carts {
        Carts::Redis => {
            let handle =
                commerce_store::redis::Redis::connect(&commerce_store::redis::RedisConfig {
                    url: redis.url.clone(),
                    cluster: false,
                    prefix: redis.prefix.clone(),
                    timeout: Duration::from_millis(500),
                })
                .unwrap();
            Arc::new(commerce_store::redis::cart::RedisCarts::new(handle))
        }
        Carts::Sqlite | Carts::Postgres => db.open_store().await,
    };
    let customer = Uuid::new_v4();
    let eur = Currency::parse("EUR").unwrap();
    let (mug, tee) = (Sku::parse("MUG").unwrap(), Sku::parse("TEE").unwrap());
    let write = || CartWrite {
        revision: Uuid::new_v4(),
        ttl: Duration::from_secs(3600),
    };
    let one = Quantity::parse(1).unwrap();
    let first = write();
    // The write answers with the cart as it left it.
    assert_eq!(
        store
            .set_cart_line(customer, (&mug, one, eur), 100, first)
            .await
            .unwrap(),
        SetLine::Set {
            created: true,
            cart: StoredCart {
                lines: vec![(mug.clone(), one)],
                currency: eur,
                revision: first.revision,
            }
        }
    );
    let loaded = store
        .load_cart(customer, Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.revision, first.revision);
    // A line arrives while the checkout of `first` is under way.
    let second = write();
    let SetLine::Set { created, cart } = store
        .set_cart_line(customer, (&tee, one, eur), 100, second)
        .await
        .unwrap()
    else {
        panic!("the second line is refused")
    };
    assert!(!created);
    assert_eq!(cart.lines, [(mug.clone(), one), (tee.clone(), one)]);
    assert_eq!(cart.revision, second.revision);
    assert!(
        !store
            .delete_cart(customer, Some(first.revision))
            .await
            .unwrap()
    );
    let kept = store
        .load_cart(customer, Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.lines, [(mug.clone(), one), (tee.clone(), one)]);
    // At its current revision, it goes.
    assert!(
        store
            .delete_cart(customer, Some(kept.revision))
            .await
            .unwrap()
    );
    assert!(
        store
            .load_cart(customer, Duration::from_secs(3600))
            .await
            .unwrap()
            .is_none()
    );
    // The limits hold at the store: a full cart, another currency.
    store
        .set_cart_line(customer, (&mug, one, eur), 1, write())
        .await
        .unwrap();
    assert_eq!(
        store
            .set_cart_line(customer, (&tee, one, eur), 1, write())
            .await
            .unwrap(),
        SetLine::TooManyLines
    );
    let usd = Currency::parse("USD").unwrap();
    store
        .set_cart_line(customer, (&tee, one, eur), 2, write())
        .await
        .unwrap();
    assert_eq!(
        store
            .set_cart_line(customer, (&mug, one, usd), 2, write())
            .await
            .unwrap(),
        SetLine::OtherCurrency(eur)
    );
    // A removal answers with what it left: the other line, then nothing.
    let third = write();
    assert_eq!(
        store.remove_cart_line(customer, &tee, third).await.unwrap(),
        RemoveLine::Removed(Some(StoredCart {
            lines: vec![(mug.clone(), one)],
            currency: eur,
            revision: third.revision,
        }))
    );
    assert_eq!(
        store
            .remove_cart_line(customer, &tee, write())
            .await
            .unwrap(),
        RemoveLine::Absent
    );
    assert_eq!(
        store
            .remove_cart_line(customer, &mug, write())
            .await
            .unwrap(),
        RemoveLine::Removed(None)
    );
    assert!(
        store
            .load_cart(customer, Duration::from_secs(3600))
            .await
            .unwrap()
            .is_none()
    );
}

/// Milliseconds left before the caller's cart expires, read from where it
/// is stored.
async fn ttl_left(app: &CartApp, carts: Carts, customer: Uuid) -> i64 {
    match carts {
        Carts::Redis => {
            let redis = app.redis.as_ref().unwrap();
            let mut conn = redis.connection().await;
            let key = format!("{}cart:{{{customer}}}", redis.prefix);
            redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap()
        }
        Carts::Sqlite | Carts::Postgres => {
            let now = chrono::Utc::now();
            expires_at(app, customer).await.expect("a stored cart") - now.timestamp_millis()
        }
    }
}

/// The embedded cart's expiry in Unix milliseconds, if it has a row.
async fn expires_at(app: &CartApp, customer: Uuid) -> Option<i64> {
    use sqlx::Connection;
    match app.db.database_url() {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let at: Option<chrono::DateTime<chrono::Utc>> =
                sqlx::query_scalar("SELECT expires_at FROM carts WHERE customer_id = $1")
                    .bind(customer)
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap();
            at.map(|t| t.timestamp_millis())
        }
        None => {
            let path = app.db.data_dir().join("commerce.db");
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query_scalar("SELECT expires_at FROM carts WHERE customer_id = ?1")
                .bind(customer)
                .fetch_optional(&mut conn)
                .await
                .unwrap()
        }
    }
}

/// Makes the embedded cart of `customer` expired.
async fn expire_now(app: &CartApp, customer: Uuid) {
    use sqlx::Connection;
    match app.db.database_url() {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(
                "UPDATE carts SET expires_at = now() - interval '1 second' WHERE customer_id = $1",
            )
            .bind(customer)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        None => {
            let path = app.db.data_dir().join("commerce.db");
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query("UPDATE carts SET expires_at = 0 WHERE customer_id = ?1")
                .bind(customer)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn the_ttl_is_set_and_slides(carts: Carts) {
    let app = spawn(carts, &["--cart-ttl-days", "2"]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (customer, token) = app.customer();
    let two_days: i64 = 2 * 86_400_000;

    app.put_item(&token, "MUG", 1).await;
    let first = ttl_left(&app, carts, customer).await;
    assert!(
        (two_days - 60_000..=two_days).contains(&first),
        "a fresh cart lives the configured TTL: {first} ms"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let aged = ttl_left(&app, carts, customer).await;
    assert!(aged <= first - 1_000, "{aged} vs {first}");
    // Reading the cart renews it; so does writing it.
    app.cart(&token).await;
    let renewed = ttl_left(&app, carts, customer).await;
    assert!(
        renewed > aged + 500,
        "a read slides the TTL: {renewed} vs {aged}"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.put_item(&token, "MUG", 2).await;
    let rewritten = ttl_left(&app, carts, customer).await;
    assert!(
        rewritten > renewed - 500,
        "a write slides the TTL: {rewritten} vs {renewed}"
    );

    if carts != Carts::Redis {
        // An expired embedded cart is an empty one, and is purged by the
        // next write instead of being revived.
        expire_now(&app, customer).await;
        assert_eq!(app.cart(&token).await["items"], json!([]));
        let (s, cart) = app.put_item(&token, "MUG", 5).await;
        assert_eq!(s, StatusCode::OK, "{cart}");
        assert_eq!(skus(&cart), [("MUG".to_owned(), 5)]);
        let fresh = ttl_left(&app, carts, customer).await;
        assert!(fresh > two_days - 60_000, "{fresh}");
    }
}

/// Redis configured but unreachable (nothing listens on port 1): the
/// service starts, cart routes fail fast with 503, orders go on, and
/// readiness reports the degraded dependency without failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_degrades_only_the_cart() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[],
        &[("REDIS_URL", "redis://127.0.0.1:1")],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();
    let calls: [(Method, &str, Option<Value>); 5] = [
        (Method::GET, "/v1/cart", None),
        (
            Method::PUT,
            "/v1/cart/items/MUG",
            Some(json!({"quantity": 1})),
        ),
        (Method::DELETE, "/v1/cart/items/MUG", None),
        (Method::DELETE, "/v1/cart", None),
        (
            Method::POST,
            "/v1/cart/checkout",
            Some(json!({"payment": {"token": "tok_ok"}})),
        ),
    ];
    for (method, path, body) in calls {
        let started = Instant::now();
        let (s, headers, problem) = app
            .call(
                method.clone(),
                path,
                Some(&token),
                body,
                &[("Idempotency-Key", "x")],
            )
            .await;
        let took = started.elapsed();
        assert_problem(s, &problem, StatusCode::SERVICE_UNAVAILABLE, path);
        assert_eq!(headers["content-type"], "application/problem+json");
        assert!(
            took < Duration::from_secs(2),
            "{method} {path} took {took:?}"
        );
    }
    let (s, _, order) = app.place(&token, &[("MUG", 1)], None).await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    let (s, _, ready) = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["redis"], "unavailable");
    assert_eq!(ready["status"], "degraded");
}

/// A Redis of our own, killed when dropped.
struct RedisServer(std::process::Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis(port: u16) -> RedisServer {
    let child = std::process::Command::new(
        std::env::var("TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
    )
    .args([
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("redis-server is needed for this test (or TEST_REDIS_SERVER)");
    RedisServer(child)
}

/// Redis down when the service starts, then up, then down, then up again:
/// the cart follows without a restart of the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_recovers_when_redis_comes_back() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let app = TestApp::spawn_with(Backend::Sqlite, &[], &[("REDIS_URL", url.as_str())]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();
    let (s, _, _) = app.get("/v1/cart", &token).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);

    let until_ok = |what: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (s, _, body) = app
                    .call(
                        Method::PUT,
                        "/v1/cart/items/MUG",
                        Some(token),
                        Some(json!({"quantity": 2})),
                        &[],
                    )
                    .await;
                if s == StatusCode::OK {
                    return body;
                }
                assert!(Instant::now() < deadline, "{what}: still {s}: {body}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let server = start_redis(port);
    let cart = until_ok("after Redis started").await;
    assert_eq!(cart["items"][0]["quantity"], 2);

    drop(server);
    let (s, _, _) = app.get("/v1/cart", &token).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let _server = start_redis(port);
    until_ok("after Redis restarted").await;
    let (s, _, ready) = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ready["checks"]["redis"], "ok", "{ready}");
}

/// Conversion and abandonment: a cart is created by its first line,
/// converted by a checkout, abandoned when it expires untouched (not when
/// emptied or checked out). With two replicas sweeping the same carts
/// (PostgreSQL or Redis), each abandoned cart is counted once between them,
/// including one replaced by a new cart before any sweep saw it.
async fn cart_kpis_count_each_cart_once_across_replicas(carts: Carts) {
    let args = ["--cart-ttl-secs", "2", "--cart-sweep-ms", "100"];
    let redis = (carts == Carts::Redis).then(TestRedis::new);
    let (backend, envs) = match &redis {
        Some(redis) => (Backend::Postgres, redis.envs()),
        None if carts == Carts::Postgres => (Backend::Postgres, vec![]),
        None => (Backend::Sqlite, vec![]),
    };
    let app = TestApp::spawn_with(backend, &args, &envs).await;
    // SQLite is one process's database: one replica there.
    let replica = (backend == Backend::Postgres).then(|| app.spawn_replica());
    let bases: Vec<String> = std::iter::once(app.base.clone())
        .chain(replica.iter().map(|(_, base)| base.clone()))
        .collect();
    let total = |name: &'static str| {
        let (app, bases) = (&app, &bases);
        async move {
            let mut sum = 0.0;
            for base in bases {
                let text = app.metrics_at(base).await;
                sum += metric_sum(&text, name, &[]);
            }
            sum
        }
    };
    let put = |base: &str, token: &str, sku: &str, quantity: i64| {
        let request = app
            .client
            .put(format!("{base}/v1/cart/items/{sku}"))
            .bearer_auth(token)
            .json(&json!({ "quantity": quantity }));
        async move {
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    };
    app.put_product("MUG", "12.50", "EUR", 100).await;
    app.put_product("TEE", "20.00", "EUR", 100).await;
    let other = bases.last().unwrap().as_str();

    // Checked out: created once (the second line is not a new cart).
    let (_, buyer) = app.customer();
    put(&app.base, &buyer, "MUG", 1).await;
    put(other, &buyer, "TEE", 1).await;
    let (s, _, order) = app
        .call(
            Method::POST,
            "/v1/cart/checkout",
            Some(&buyer),
            Some(json!({ "payment": { "token": "tok_ok" } })),
            &[("Idempotency-Key", "kpi-1")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    // Emptied by the customer: created, not abandoned.
    let (_, emptier) = app.customer();
    put(&app.base, &emptier, "MUG", 1).await;
    put(other, &emptier, "MUG", 0).await;
    // Abandoned: three carts, written through either replica.
    for base in [app.base.as_str(), other, other] {
        let (_, token) = app.customer();
        put(base, &token, "MUG", 2).await;
    }
    // Abandoned, then a new cart of the same customer after it expired.
    let (_, returning) = app.customer();
    put(&app.base, &returning, "MUG", 1).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    put(other, &returning, "TEE", 1).await;
    assert_eq!(total(CARTS_CREATED).await, 7.0);
    assert_eq!(total(CHECKOUTS).await, 1.0);

    // Once the returning customer's new cart expires too: five abandoned.
    let deadline = Instant::now() + Duration::from_secs(15);
    while total(ABANDONED).await < 5.0 {
        assert!(
            Instant::now() < deadline,
            "abandoned: {}",
            total(ABANDONED).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Many sweeps later, by both replicas: still five.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(total(ABANDONED).await, 5.0);
    assert_eq!(total(CARTS_CREATED).await, 7.0);
    assert_eq!(total(CHECKOUTS).await, 1.0);
}

const CARTS_CREATED: &str = "commerce_carts_created_total";
const CHECKOUTS: &str = "commerce_cart_checkouts_total";
const ABANDONED: &str = "commerce_carts_abandoned_total";

/// A cart whose lines came to more than an order may carry (here its
/// price rose after the lines were put) is read as a conflict with its
/// content (409, saying what to do), not as bad input; lowering a
/// quantity makes it readable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_over_the_largest_amount_is_a_conflict_to_read() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.put_product("GOLD", "1.00", "EUR", 100_000).await;
    let (_, token) = app.customer();
    let put = |quantity: i64| {
        app.call(
            Method::PUT,
            "/v1/cart/items/GOLD",
            Some(&token),
            Some(json!({ "quantity": quantity })),
            &[],
        )
    };
    let (s, _, cart) = put(2_000).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    app.put_product("GOLD", "999999999.00", "EUR", 100_000)
        .await;
    let (s, headers, problem) = app.get("/v1/cart", &token).await;
    assert_eq!(s, StatusCode::CONFLICT, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("more than an order may carry"), "{detail}");
    let (s, _, cart) = put(1).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
    let (s, _, cart) = app.get("/v1/cart", &token).await;
    assert_eq!(s, StatusCode::OK, "{cart}");
}
