//! Inventory: the storage contract for stock claims and reservations (on
//! both backends, through the `Store` trait), and the behaviour customers
//! and admins see over HTTP: all-or-nothing reservation at placement,
//! never overselling under concurrency, release on cancel and on expiry,
//! manual adjustments.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use commerce_app::Store;
use commerce_app::ports::{
    Append, IdempotencyRecord, InventoryChange, NewEvent, ProductUpsert, ReservationState,
    StockAdjustment, StoreError,
};
use commerce_app::views::OrderView;
use commerce_domain::{Currency, OrderStatus, Sku, StockClaim};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, TestRedis};

both_backends!(
    a_hold_takes_stock_and_records_reservations,
    a_claim_on_a_moved_product_writes_nothing,
    release_and_commit_settle_only_held_reservations,
    expired_holds_are_found_and_released,
    adjustments_are_version_checked_and_never_go_below_reserved,
    many_buyers_of_few_units_exactly_the_stock_succeeds,
    a_multi_sku_order_with_one_short_sku_reserves_nothing,
    cancel_and_item_changes_move_the_hold,
    stock_adjust_over_http,
    an_expired_hold_fails_the_order_and_frees_the_stock,
    the_stock_cache_reads_through_and_is_reconciled,
    many_orders_written_at_once_each_get_their_own_outcome,
    a_used_key_or_stale_version_is_told_before_missing_stock,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_selling_out_does_not_break_up_the_group_commit() {
    a_product_selling_out_keeps_the_batches_whole(Backend::Postgres).await
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

async fn product(store: &Arc<dyn Store>, name: &str, on_hand: i64) {
    store
        .upsert_product(ProductUpsert {
            sku: sku(name),
            name: name.into(),
            unit_price: Decimal::new(100, 2),
            currency: Currency::parse("EUR").unwrap(),
            on_hand,
            at: Utc::now().trunc_subsecs(6),
        })
        .await
        .unwrap()
        .unwrap();
}

async fn stock(store: &Arc<dyn Store>, name: &str) -> (i64, i64, i64) {
    let p = store.get_product(&sku(name)).await.unwrap().unwrap();
    (p.on_hand, p.reserved, p.version)
}

/// An append of one event to a new aggregate carrying `inventory`.
fn append_with(order_id: Uuid, expected: u64, inventory: InventoryChange) -> Append {
    let at = Utc::now().trunc_subsecs(6);
    Append {
        aggregate_id: order_id,
        aggregate_type: "order",
        expected_version: expected,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "TestHappened",
            schema_version: 1,
            data: json!({}),
            recorded_at: at,
        }],
        view: OrderView {
            id: order_id,
            customer_id: Uuid::new_v4(),
            status: OrderStatus::Reserved,
            currency: "EUR".into(),
            items: vec![],
            subtotal: Decimal::ZERO,
            adjustments: vec![],
            total: Decimal::ZERO,
            refunded: Decimal::ZERO,
            status_reason: None,
            version: expected + 1,
            created_at: at,
            updated_at: at,
        },
        idempotency: Vec::new(),
        inventory: Some(inventory),
        saga: None,
    }
}

fn claim(name: &str, quantity: i64, delta: i64, version: i64) -> StockClaim {
    StockClaim {
        sku: sku(name),
        quantity,
        delta,
        expected_version: version,
    }
}

fn hold(order_id: Uuid, claims: Vec<StockClaim>, expires_in: chrono::Duration) -> InventoryChange {
    InventoryChange::Hold {
        order_id,
        claims,
        expires_at: Utc::now().trunc_subsecs(6) + expires_in,
    }
}

async fn held_units(store: &Arc<dyn Store>, order_id: Uuid) -> Vec<(String, i64)> {
    store
        .reservations(order_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.state == ReservationState::Held)
        .map(|r| (r.sku.to_string(), r.quantity))
        .collect()
}

async fn a_hold_takes_stock_and_records_reservations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    product(&store, "A", 5).await;
    product(&store, "B", 2).await;
    let order = Uuid::now_v7();
    let change = hold(
        order,
        vec![claim("B", 2, 2, 1), claim("A", 3, 3, 1)],
        chrono::Duration::minutes(5),
    );
    store
        .append(append_with(order, 0, change.clone()))
        .await
        .unwrap();
    assert_eq!(stock(&store, "A").await, (5, 3, 2));
    assert_eq!(stock(&store, "B").await, (2, 2, 2));
    assert_eq!(
        held_units(&store, order).await,
        [("A".into(), 3), ("B".into(), 2)]
    );
    // The same write again (a retried reserve) is refused whole by the
    // order's version: nothing is reserved twice.
    let again = store.append(append_with(order, 0, change)).await;
    assert!(
        matches!(again, Err(StoreError::VersionConflict { .. })),
        "{again:?}"
    );
    assert_eq!(stock(&store, "A").await, (5, 3, 2));

    // Changing the hold claims only the difference: A 3 -> 1, B 2 -> 0.
    let change = hold(
        order,
        vec![claim("A", 1, -2, 2), claim("B", 0, -2, 2)],
        chrono::Duration::minutes(5),
    );
    store.append(append_with(order, 1, change)).await.unwrap();
    assert_eq!(stock(&store, "A").await, (5, 1, 3));
    assert_eq!(stock(&store, "B").await, (2, 0, 3));
    assert_eq!(held_units(&store, order).await, [("A".into(), 1)]);
}

async fn a_claim_on_a_moved_product_writes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    product(&store, "A", 5).await;
    product(&store, "B", 1).await;
    // B has 1 unit: a claim of 2 is refused, and the A claim made in the
    // same write is undone.
    let order = Uuid::now_v7();
    let change = hold(
        order,
        vec![claim("A", 1, 1, 1), claim("B", 2, 2, 1)],
        chrono::Duration::minutes(5),
    );
    match store.append(append_with(order, 0, change)).await {
        Err(StoreError::StockConflict { sku }) => assert_eq!(sku.as_str(), "B"),
        other => panic!("expected a stock conflict, got {other:?}"),
    }
    assert_eq!(stock(&store, "A").await, (5, 0, 1));
    assert_eq!(stock(&store, "B").await, (1, 0, 1));
    assert!(store.load_stream(order).await.unwrap().is_empty());
    assert!(store.get_view(order).await.unwrap().is_none());
    assert!(store.reservations(order).await.unwrap().is_empty());

    // Planned on a version the product has moved past: the store reads it
    // again, and takes the unit since it is still there.
    let order = Uuid::now_v7();
    let change = hold(
        order,
        vec![claim("B", 1, 1, 7)],
        chrono::Duration::minutes(5),
    );
    store.append(append_with(order, 0, change)).await.unwrap();
    assert_eq!(stock(&store, "B").await, (1, 1, 2));
    // ...but a stale plan never takes units that are gone.
    let late = Uuid::now_v7();
    let change = hold(
        late,
        vec![claim("B", 1, 1, 1)],
        chrono::Duration::minutes(5),
    );
    let result = store.append(append_with(late, 0, change)).await;
    assert!(
        matches!(result, Err(StoreError::StockConflict { .. })),
        "{result:?}"
    );
    assert_eq!(stock(&store, "B").await, (1, 1, 2));
}

async fn release_and_commit_settle_only_held_reservations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    product(&store, "A", 10).await;
    let (paid, cancelled) = (Uuid::now_v7(), Uuid::now_v7());
    let five_minutes = chrono::Duration::minutes(5);
    store
        .append(append_with(
            paid,
            0,
            hold(paid, vec![claim("A", 3, 3, 1)], five_minutes),
        ))
        .await
        .unwrap();
    store
        .append(append_with(
            cancelled,
            0,
            hold(cancelled, vec![claim("A", 4, 4, 2)], five_minutes),
        ))
        .await
        .unwrap();
    assert_eq!(stock(&store, "A").await, (10, 7, 3));

    // Twice each: the second run finds nothing held and changes nothing.
    for _ in 0..2 {
        let v = store.load_stream(paid).await.unwrap().len() as u64;
        store
            .append(append_with(
                paid,
                v,
                InventoryChange::Commit { order_id: paid },
            ))
            .await
            .unwrap();
        let v = store.load_stream(cancelled).await.unwrap().len() as u64;
        store
            .append(append_with(
                cancelled,
                v,
                InventoryChange::Release {
                    order_id: cancelled,
                },
            ))
            .await
            .unwrap();
    }
    let (on_hand, reserved, _) = stock(&store, "A").await;
    assert_eq!((on_hand, reserved), (7, 0), "3 sold, 4 back on the shelf");
    let states = |rs: Vec<commerce_app::ports::Reservation>| {
        rs.into_iter()
            .map(|r| (r.quantity, r.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(store.reservations(paid).await.unwrap()),
        [(3, ReservationState::Committed)]
    );
    assert_eq!(
        states(store.reservations(cancelled).await.unwrap()),
        [(4, ReservationState::Released)]
    );
}

async fn expired_holds_are_found_and_released(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    product(&store, "A", 10).await;
    let (old, fresh) = (Uuid::now_v7(), Uuid::now_v7());
    store
        .append(append_with(
            old,
            0,
            hold(
                old,
                vec![claim("A", 2, 2, 1)],
                chrono::Duration::seconds(-1),
            ),
        ))
        .await
        .unwrap();
    store
        .append(append_with(
            fresh,
            0,
            hold(
                fresh,
                vec![claim("A", 3, 3, 2)],
                chrono::Duration::minutes(5),
            ),
        ))
        .await
        .unwrap();
    let now = Utc::now();
    assert_eq!(store.expired_holds(now, 10).await.unwrap(), [old]);
    assert_eq!(store.release_holds(old, now).await.unwrap(), 2);
    assert_eq!(store.release_holds(old, now).await.unwrap(), 0);
    assert!(store.expired_holds(now, 10).await.unwrap().is_empty());
    assert_eq!(stock(&store, "A").await.1, 3);
}

async fn adjustments_are_version_checked_and_never_go_below_reserved(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    product(&store, "A", 10).await;
    let order = Uuid::now_v7();
    store
        .append(append_with(
            order,
            0,
            hold(
                order,
                vec![claim("A", 4, 4, 1)],
                chrono::Duration::minutes(5),
            ),
        ))
        .await
        .unwrap();
    let adjust = |delta: i64, version: i64| StockAdjustment {
        sku: sku("A"),
        delta,
        expected_version: version,
        reason: "count".into(),
        actor: Uuid::nil(),
        at: Utc::now().trunc_subsecs(6),
    };
    // Stale version, then below reserved: refused, unchanged.
    assert!(store.adjust_stock(adjust(-1, 1)).await.unwrap().is_none());
    assert!(store.adjust_stock(adjust(-7, 2)).await.unwrap().is_none());
    assert_eq!(stock(&store, "A").await, (10, 4, 2));
    let p = store.adjust_stock(adjust(-6, 2)).await.unwrap().unwrap();
    assert_eq!((p.on_hand, p.reserved, p.version), (4, 4, 3));
}

// ---------------------------------------------------------------- HTTP

async fn product_json(app: &TestApp, name: &str) -> Value {
    let (status, _, body) = app.get(&format!("/v1/products/{name}"), &app.admin()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn many_buyers_of_few_units_exactly_the_stock_succeeds(backend: Backend) {
    const STOCK: i64 = 5;
    const BUYERS: usize = 20 * STOCK as usize;
    let app = Arc::new(TestApp::spawn(backend).await);
    app.put_product("LAST", "9.99", "EUR", STOCK).await;
    let mut tasks = Vec::new();
    for _ in 0..BUYERS {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (_, token) = app.customer();
            let (status, _, body) = app.place(&token, &[("LAST", 1)], None).await;
            (status, body)
        }));
    }
    let mut placed = HashSet::new();
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => {
                assert_eq!(body["status"], "reserved", "{body}");
                placed.insert(body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["type"], "/problems/out-of-stock", "{body}");
                assert_eq!(
                    body["short"],
                    json!([{"sku": "LAST", "requested": 1, "available": 0}])
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(placed.len(), STOCK as usize);
    assert_eq!(refused, BUYERS - STOCK as usize);
    let p = product_json(&app, "LAST").await;
    assert_eq!(
        (
            p["on_hand"].as_i64(),
            p["reserved"].as_i64(),
            p["available"].as_i64()
        ),
        (Some(STOCK), Some(STOCK), Some(0))
    );

    // Every placed order holds exactly its unit; no other order exists or holds stock.
    let (_, _, list) = app.get("/v1/orders?limit=100", &app.admin()).await;
    let listed: HashSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, placed);
    let store = app.db.open_store().await;
    for id in &placed {
        let held = held_units(&store, id.parse().unwrap()).await;
        assert_eq!(held, [("LAST".to_owned(), 1)]);
    }

    // The refusals are counted for Prometheus.
    let metrics = app.metrics().await;
    let refusals = format!("commerce_inventory_out_of_stock_total {refused}");
    assert!(metrics.lines().any(|l| l == refusals), "{metrics}");
}

async fn a_multi_sku_order_with_one_short_sku_reserves_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("PLENTY", "1.00", "EUR", 100).await;
    app.put_product("FEW", "1.00", "EUR", 2).await;
    app.put_product("NONE", "1.00", "EUR", 0).await;
    let (_, token) = app.customer();
    let (status, headers, body) = app
        .place(
            &token,
            &[("PLENTY", 10), ("FEW", 3), ("NONE", 1)],
            Some("k1"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        body["short"],
        json!([
            {"sku": "FEW", "requested": 3, "available": 2},
            {"sku": "NONE", "requested": 1, "available": 0},
        ])
    );
    for name in ["PLENTY", "FEW", "NONE"] {
        assert_eq!(product_json(&app, name).await["reserved"], 0, "{name}");
    }
    let (_, _, list) = app.get("/v1/orders", &token).await;
    assert_eq!(list["items"], json!([]));
    // The refused request did not use up its idempotency key.
    let (status, _, body) = app
        .place(&token, &[("PLENTY", 10), ("FEW", 2)], Some("k1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(product_json(&app, "FEW").await["available"], 0);
}

async fn cancel_and_item_changes_move_the_hold(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("A", "1.00", "EUR", 10).await;
    app.put_product("B", "1.00", "EUR", 1).await;
    let (_, token) = app.customer();
    let (status, _, order) = app.place(&token, &[("A", 4)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(product_json(&app, "A").await["reserved"], 4);

    // More B than there is: refused, the order and its hold unchanged.
    let change = |items: Value, version: u64| {
        let app = &app;
        let token = token.clone();
        let id = id.clone();
        async move {
            app.call(
                Method::PATCH,
                &format!("/v1/orders/{id}"),
                Some(&token),
                Some(json!({ "items": items })),
                &[("if-match", &format!("\"{version}\""))],
            )
            .await
        }
    };
    let (status, _, body) = change(
        json!([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 2}]),
        2,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["short"],
        json!([{"sku": "B", "requested": 2, "available": 1}])
    );
    assert_eq!(product_json(&app, "A").await["reserved"], 4);

    let (status, _, body) = change(
        json!([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]),
        2,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(product_json(&app, "A").await["reserved"], 2);
    assert_eq!(product_json(&app, "B").await["reserved"], 1);

    let (status, _, body) = app.delete(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    for name in ["A", "B"] {
        let p = product_json(&app, name).await;
        assert_eq!(p["reserved"], 0, "{name}: {p}");
    }
}

async fn stock_adjust_over_http(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("A", "1.00", "EUR", 5).await;
    let (_, token) = app.customer();
    let (status, _, _) = app.place(&token, &[("A", 3)], None).await;
    assert_eq!(status, StatusCode::CREATED);
    let adjust = |body: Value, who: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/products/A/adjust",
                Some(&who),
                Some(body),
                &[],
            )
            .await
        }
    };
    let (status, _, body) = adjust(json!({"delta": 10, "reason": "delivery"}), app.admin()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["on_hand"].as_i64(),
            body["reserved"].as_i64(),
            body["available"].as_i64()
        ),
        (Some(15), Some(3), Some(12))
    );

    let (status, _, body) = adjust(json!({"delta": -13, "reason": "count"}), app.admin()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "/problems/conflict");
    let (status, _, body) = adjust(json!({"delta": -12, "reason": "count"}), app.admin()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["available"], 0);

    for bad in [
        json!({"delta": 0, "reason": "x"}),
        json!({"delta": 1, "reason": " "}),
        json!({"delta": 2_000_000_000, "reason": "x"}),
    ] {
        let (status, _, body) = adjust(bad, app.admin()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (status, _, _) = adjust(json!({"delta": 1, "reason": "x"}), token.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = app
        .call(
            Method::POST,
            "/v1/products/NOPE/adjust",
            Some(&app.admin()),
            Some(json!({"delta": 1, "reason": "x"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn an_expired_hold_fails_the_order_and_frees_the_stock(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            "--reservation-ttl-secs",
            "1",
            "--reservation-sweep-ms",
            "100",
        ],
        &[],
    )
    .await;
    app.put_product("A", "1.00", "EUR", 3).await;
    let (_, token) = app.customer();
    let (status, _, order) = app.place(&token, &[("A", 3)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(product_json(&app, "A").await["available"], 0);
    let id = order["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, _, body) = app.get(&format!("/v1/orders/{id}"), &token).await;
        if body["status"] == "failed" {
            assert_eq!(body["status_reason"], "reservation expired");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never expired: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p = product_json(&app, "A").await;
    assert_eq!(
        (p["reserved"].as_i64(), p["available"].as_i64()),
        (Some(0), Some(3))
    );
    let store = app.db.open_store().await;
    let states: Vec<_> = store
        .reservations(id.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [ReservationState::Released]);
}

/// With Redis, product reads go through the cache; a write refreshes it
/// before it answers (a client reads its own writes); drift is repaired
/// by the reconciler and counted.
async fn the_stock_cache_reads_through_and_is_reconciled(backend: Backend) {
    use redis::AsyncCommands;
    let redis = TestRedis::new();
    let app = TestApp::spawn_with(backend, &["--stock-reconcile-secs", "1"], &redis.envs()).await;
    app.put_product("A", "1.00", "EUR", 10).await;
    let key = format!("{}stock:{{A}}", redis.prefix);
    let mut conn = redis.connection().await;
    let cached = |conn: &mut redis::aio::MultiplexedConnection| {
        let key = key.clone();
        let mut conn = conn.clone();
        async move {
            let json: Option<String> = conn.hget(&key, "p").await.unwrap();
            json.map(|j| serde_json::from_str::<Value>(&j).unwrap())
        }
    };
    assert_eq!(product_json(&app, "A").await["available"], 10);
    assert_eq!(
        cached(&mut conn).await.expect("cached on write")["on_hand"],
        10
    );

    let (_, token) = app.customer();
    let (status, _, body) = app.place(&token, &[("A", 3)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(cached(&mut conn).await.unwrap()["reserved"], 3);
    assert_eq!(product_json(&app, "A").await["available"], 7);
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(ttl > 0, "cache entries expire: {ttl}");

    // Drift behind the service's back: an old version with wrong numbers.
    let mut stale = cached(&mut conn).await.unwrap();
    stale["reserved"] = json!(0);
    stale["version"] = json!(1);
    let _: () = conn
        .hset_multiple(&key, &[("v", "1".to_owned()), ("p", stale.to_string())])
        .await
        .unwrap();
    assert_eq!(
        product_json(&app, "A").await["available"],
        10,
        "served from the cache"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while product_json(&app, "A").await["available"] != 7 {
        assert!(std::time::Instant::now() < deadline, "drift never repaired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("commerce_inventory_cache_mismatches_total") && l.ends_with(" 1")
        ),
        "{metrics}"
    );
    // Redis forgets its scripts (a restart, SCRIPT FLUSH): the next
    // refresh loads the script again and still lands before the answer.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (status, _, body) = app.place(&token, &[("A", 1)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(cached(&mut conn).await.unwrap()["reserved"], 4);
}

/// Many appends at once (PostgreSQL writes them in group-commit
/// transactions): holds, then commits and releases, then a mix with a
/// stale append and a claim beyond the stock among them. Each append gets
/// its own outcome, as if written alone, and the stock adds up exactly.
async fn many_orders_written_at_once_each_get_their_own_outcome(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    product(&store, "A", 1000).await;
    product(&store, "B", 1000).await;
    product(&store, "SCARCE", 1).await;
    const ORDERS: usize = 60;
    let orders: Vec<Uuid> = (0..ORDERS).map(|_| Uuid::now_v7()).collect();
    let ten_minutes = chrono::Duration::minutes(10);

    let run = |appends: Vec<Append>| {
        let store = store.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, a) in appends.into_iter().enumerate() {
                let store = store.clone();
                tasks.spawn(async move { (i, store.append(a).await) });
            }
            let mut results: Vec<_> = tasks.join_all().await;
            results.sort_by_key(|(i, _)| *i);
            results.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
        }
    };
    let all_ok = |results: &[Result<(), StoreError>]| {
        for r in results {
            assert!(r.is_ok(), "{r:?}");
        }
    };

    // Every order holds 1..=3 of A and 2 of B.
    let holds: Vec<Append> = orders
        .iter()
        .enumerate()
        .map(|(i, &o)| {
            let a = (i % 3 + 1) as i64;
            append_with(
                o,
                0,
                hold(
                    o,
                    vec![claim("A", a, a, 1), claim("B", 2, 2, 1)],
                    ten_minutes,
                ),
            )
        })
        .collect();
    all_ok(&run(holds).await);
    let held_a: i64 = (0..ORDERS).map(|i| (i % 3 + 1) as i64).sum();
    let (on_hand, reserved, _) = stock(&store, "A").await;
    assert_eq!((on_hand, reserved), (1000, held_a));
    assert_eq!(stock(&store, "B").await.1, 2 * ORDERS as i64);

    // Even orders are paid (committed), odd ones released.
    let settle: Vec<Append> = orders
        .iter()
        .enumerate()
        .map(|(i, &o)| {
            let change = if i % 2 == 0 {
                InventoryChange::Commit { order_id: o }
            } else {
                InventoryChange::Release { order_id: o }
            };
            append_with(o, 1, change)
        })
        .collect();
    all_ok(&run(settle).await);
    let sold_a: i64 = (0..ORDERS).step_by(2).map(|i| (i % 3 + 1) as i64).sum();
    let sold_b = 2 * ORDERS.div_ceil(2) as i64;
    assert_eq!(stock(&store, "A").await.0, 1000 - sold_a);
    assert_eq!(stock(&store, "A").await.1, 0);
    assert_eq!(stock(&store, "B").await.0, 1000 - sold_b);
    assert_eq!(stock(&store, "B").await.1, 0);
    for (i, &o) in orders.iter().enumerate() {
        let want = if i % 2 == 0 {
            ReservationState::Committed
        } else {
            ReservationState::Released
        };
        let rs = store.reservations(o).await.unwrap();
        assert_eq!(rs.len(), 2);
        assert!(rs.iter().all(|r| r.state == want), "order {i}: {rs:?}");
        assert_eq!(store.load_stream(o).await.unwrap().len(), 2, "order {i}");
    }

    // New orders, one wanting two SCARCE units of which there is one, and
    // a stale append on an order that moved on: those two fail, alone.
    let late: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let mut mixed: Vec<Append> = late
        .iter()
        .map(|&o| append_with(o, 0, hold(o, vec![claim("A", 1, 1, 1)], ten_minutes)))
        .collect();
    let greedy = Uuid::now_v7();
    mixed.push(append_with(
        greedy,
        0,
        hold(greedy, vec![claim("SCARCE", 2, 2, 1)], ten_minutes),
    ));
    mixed.push(append_with(
        orders[0],
        0,
        InventoryChange::Release {
            order_id: orders[0],
        },
    ));
    let results = run(mixed).await;
    all_ok(&results[..late.len()]);
    assert!(
        matches!(results[late.len()], Err(StoreError::StockConflict { .. })),
        "{:?}",
        results[late.len()]
    );
    assert!(
        matches!(
            results[late.len() + 1],
            Err(StoreError::VersionConflict { .. })
        ),
        "{:?}",
        results[late.len() + 1]
    );
    assert_eq!(stock(&store, "A").await.1, 20);
    assert_eq!(
        stock(&store, "SCARCE").await.1,
        0,
        "the greedy order got nothing"
    );
    assert!(store.load_stream(greedy).await.unwrap().is_empty());
    assert_eq!(store.load_stream(orders[0]).await.unwrap().len(), 2);

    // On PostgreSQL the appends did share transactions.
    if let Some(url) = db.database_url() {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let (transactions,): (i64,) =
            sqlx::query_as("SELECT count(DISTINCT tx_id) FROM events WHERE aggregate_id = ANY($1)")
                .bind(&orders)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(
            transactions < ORDERS as i64,
            "{transactions} transactions for {} appends",
            2 * ORDERS
        );
    }
}

/// A product sells out while other orders come in at the same time
/// (PostgreSQL writes them in group-commit batches): the buyers too late
/// for it hear a clean out-of-stock, every other order is placed, and no
/// batch is refused and rewritten append by append for the want of the
/// scarce units: the holds that cannot have them are answered before the
/// batch is written.
async fn a_product_selling_out_keeps_the_batches_whole(backend: Backend) {
    const UNITS: usize = 3;
    const BUYERS: usize = 60;
    let app = Arc::new(TestApp::spawn(backend).await);
    app.put_product("LAST", "9.99", "EUR", UNITS as i64).await;
    app.put_product("PLENTY", "1.00", "EUR", 1000).await;
    let mut tasks = Vec::new();
    for i in 0..2 * BUYERS {
        let app = app.clone();
        let sku = if i % 2 == 0 { "LAST" } else { "PLENTY" };
        tasks.push(tokio::spawn(async move {
            let (_, token) = app.customer();
            let (status, _, body) = app.place(&token, &[(sku, 1)], None).await;
            (sku, status, body)
        }));
    }
    let (mut last, mut plenty, mut refused) = (0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            ("LAST", StatusCode::CREATED, _) => last += 1,
            ("PLENTY", StatusCode::CREATED, _) => plenty += 1,
            ("LAST", StatusCode::CONFLICT, body) => {
                assert_eq!(body["type"], "/problems/out-of-stock", "{body}");
                refused += 1;
            }
            (sku, status, body) => panic!("{sku}: {status} {body}"),
        }
    }
    assert_eq!((last, refused, plenty), (UNITS, BUYERS - UNITS, BUYERS));
    let p = product_json(&app, "LAST").await;
    assert_eq!(
        (p["reserved"].as_i64(), p["available"].as_i64()),
        (Some(UNITS as i64), Some(0))
    );
    assert_eq!(product_json(&app, "PLENTY").await["reserved"], BUYERS);

    let metrics = app.metrics().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    // The orders were written in batches of more than one...
    let (appends, batches) = (
        value("commerce_store_batch_size_sum"),
        value("commerce_store_batch_size_count"),
    );
    assert!(appends > batches, "no batch of several appends: {metrics}");
    // ...and none of them was refused whole.
    assert_eq!(
        value("commerce_store_batch_fallbacks_total"),
        0.0,
        "{metrics}"
    );
}

/// However a backend orders the statements of a write (SQLite takes the
/// stock first, PostgreSQL's batch looks at it before writing), a write
/// that could not have its units and also reuses a key, or comes at a
/// stale version, is told about the key or the version: the answer a
/// retry needs (replay the order, reload it), not "out of stock".
async fn a_used_key_or_stale_version_is_told_before_missing_stock(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    product(&store, "ONE", 1).await;
    let order = Uuid::now_v7();
    let hold_one = |o: Uuid| hold(o, vec![claim("ONE", 1, 1, 1)], chrono::Duration::minutes(5));
    let key = |o: Uuid| IdempotencyRecord {
        customer_id: Uuid::nil(),
        key: "retried".into(),
        request_hash: "h".into(),
        order_id: o,
    };
    let mut first = append_with(order, 0, hold_one(order));
    first.idempotency.push(key(order));
    store.append(first).await.unwrap();
    let sold_out = stock(&store, "ONE").await;
    assert_eq!((sold_out.0, sold_out.1), (1, 1));

    // The same key again for another order, on the sold-out product:
    // alone and in a batch of others.
    let run = |appends: Vec<Append>| {
        let store = store.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for a in appends {
                let store = store.clone();
                tasks.spawn(async move { store.append(a).await });
            }
            tasks.join_all().await
        }
    };
    for together in [1, 20] {
        let mut appends = Vec::new();
        let retry = Uuid::now_v7();
        let mut again = append_with(retry, 0, hold_one(retry));
        again.idempotency.push(key(retry));
        appends.push(again);
        // ...and a write at a version the order is already past.
        appends.push(append_with(order, 0, hold_one(order)));
        for _ in 1..together {
            let o = Uuid::now_v7();
            appends.push(append_with(o, 0, hold_one(o)));
        }
        let results = run(appends).await;
        let count =
            |f: fn(&Result<(), StoreError>) -> bool| results.iter().filter(|r| f(r)).count();
        assert_eq!(
            count(|r| matches!(r, Err(StoreError::IdempotencyKeyTaken))),
            1,
            "{results:?}"
        );
        assert_eq!(
            count(|r| matches!(r, Err(StoreError::VersionConflict { .. }))),
            1,
            "{results:?}"
        );
        assert_eq!(
            count(|r| matches!(r, Err(StoreError::StockConflict { .. }))),
            together - 1,
            "{results:?}"
        );
    }
    // Nothing moved.
    assert_eq!(stock(&store, "ONE").await, sold_out);
}
