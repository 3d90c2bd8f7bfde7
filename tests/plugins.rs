//! The plugin platform through the real runtime: the examples at work,
//! refused uploads, malicious components, the sandbox, hot swap under
//! traffic, rollback, a second replica and the plugin directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_app::extensions::{Extensions, HookContext, HookOutcome, PluginKind, Quote};
use commerce_app::ports::PluginLimits;
use commerce_domain::{Currency, OrderLine, OrderStatus, Quantity, Sku};
use commerce_plugins::{CheckError, PluginError};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, component, encode};

both_backends!(
    examples_price_and_validate_orders,
    bad_uploads_are_refused_and_change_nothing,
    hot_swap_under_traffic_prices_each_order_with_one_set,
    rollback_restores_the_previous_behaviour,
    a_plugin_written_in_another_language_runs,
    failing_plugins_follow_the_failure_policy,
    hooks_are_called_only_where_they_listen,
    limits_set_at_install_bound_a_plugin_and_refuse_larger_orders,
);

const TEN_PERCENT: &str = r#"{"tiers":[{"min_quantity":10,"percent":10}]}"#;
const TWENTY_PERCENT: &str = r#"{"tiers":[{"min_quantity":10,"percent":20}]}"#;

fn quote(quantity: i64, price: &str) -> Quote {
    Quote {
        order_id: Uuid::now_v7(),
        customer_id: Uuid::new_v4(),
        status: OrderStatus::Pending,
        currency: Currency::parse("EUR").unwrap(),
        lines: vec![OrderLine {
            sku: Sku::parse("MUG").unwrap(),
            name: "Mug".into(),
            quantity: Quantity::parse(quantity).unwrap(),
            unit_price: price.parse().unwrap(),
        }],
    }
}

async fn place(app: &TestApp, token: &str, quantity: i64) -> (StatusCode, Value) {
    let (status, _, body) = app.place(token, &[("MUG", quantity)], None).await;
    (status, body)
}

async fn examples_price_and_validate_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "12.50", "EUR", 10_000).await;
    let (s, bulk) = app
        .upload(
            "bulk-discount",
            component("bulk_discount"),
            Some("pricing"),
            None,
            true,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{bulk}");
    let (s, rules) = app
        .upload(
            "quantity-rules",
            component("quantity_rules"),
            Some("validation"),
            Some(r#"{"max_quantity_per_sku":100,"blocked_skus":["BANNED"]}"#),
            true,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rules}");
    let (_, token) = app.customer();

    // Below every tier: no adjustment.
    let (s, order) = place(&app, &token, 2).await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    assert_eq!(order["adjustments"], json!([]));
    assert_eq!(order["total"], "25.00");

    // 12 mugs: 10% off the line, recorded with the plugin that gave it.
    let (_, order) = place(&app, &token, 12).await;
    assert_eq!(order["subtotal"], "150.00");
    assert_eq!(order["adjustments"][0]["plugin"], "bulk-discount");
    assert_eq!(order["adjustments"][0]["kind"], "discount");
    assert_eq!(order["adjustments"][0]["amount"], "15.00");
    assert_eq!(order["adjustments"][0]["line"], 0);
    assert_eq!(order["total"], "135.00");
    // 50 or more: the higher default tier (20%).
    let (_, order) = place(&app, &token, 60).await;
    assert_eq!(order["total"], "600.00");

    // The events record which plugin versions priced and validated it.
    let (_, _, events) = app
        .get(
            &format!("/v1/orders/{}/events", order["id"].as_str().unwrap()),
            &token,
        )
        .await;
    let plugins = &events["items"][0]["data"]["plugins"];
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bulk-discount", "quantity-rules"]);
    assert_eq!(plugins[0]["sha256"], bulk["sha256"]);
    assert_eq!(plugins[1]["sha256"], rules["sha256"]);

    // Validation: over the maximum is a 422 listing the violation; nothing is stored.
    let (s, body) = place(&app, &token, 150).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], "/problems/order-rejected");
    assert_eq!(body["violations"][0]["code"], "max-quantity");
    assert_eq!(body["violations"][0]["plugin"], "quantity-rules");
    assert_eq!(body["violations"][0]["line"], 0);
    let (_, _, list) = app.get("/v1/orders?limit=100", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);

    // Dry runs: no order is touched.
    let admin = app.admin();
    let cart = json!({"currency": "EUR", "lines": [{"sku": "X", "name": "X", "quantity": 10, "unit_price": {"amount": 1000, "currency": "EUR"}, "line_total": {"amount": 10000, "currency": "EUR"}, "attributes": []}], "subtotal": {"amount": 10000, "currency": "EUR"}, "customer": {"id": "c", "attributes": []}, "attributes": []});
    let (s, _, out) = app
        .call(
            Method::POST,
            "/v1/plugins/bulk-discount/dry-run",
            Some(&admin),
            Some(json!({"input": cart})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["adjustments"][0]["amount"]["amount"], 1000);
    let (s, _, out) = app
        .call(
            Method::POST,
            "/v1/plugins/bulk-discount/dry-run",
            Some(&admin),
            Some(json!({"input": {"not": "a cart"}})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");

    // The saga hook: continue below the threshold, veto above it.
    let (s, hook) = app
        .upload(
            "high-value-hold",
            component("high_value_hold"),
            None,
            Some(r#"{"max_total":50000}"#),
            false,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["kind"], "saga-hook", "the world is detected");
    let context = |total: i64| {
        let money = json!({"amount": total, "currency": "EUR"});
        json!({"input": {"saga_type": "order-fulfilment", "step": "authorize-payment", "phase": "Before", "order": {"id": "o", "status": "reserved", "currency": "EUR", "lines": [], "subtotal": money, "total": money, "customer": {"id": "c", "attributes": []}, "attributes": []}}})
    };
    let (_, _, out) = app
        .call(
            Method::POST,
            "/v1/plugins/high-value-hold/dry-run",
            Some(&admin),
            Some(context(10_000)),
            &[],
        )
        .await;
    assert_eq!(out["decision"], "Continue", "{out}");
    let (_, _, out) = app
        .call(
            Method::POST,
            "/v1/plugins/high-value-hold/dry-run",
            Some(&admin),
            Some(context(90_000)),
            &[],
        )
        .await;
    assert!(
        out["decision"]["Veto"]
            .as_str()
            .unwrap()
            .contains("held for manual review"),
        "{out}"
    );

    // Listing shows versions, activity and call counters; customers cannot see it.
    let (s, _, list) = app.get("/v1/plugins", &admin).await;
    assert_eq!(s, StatusCode::OK);
    let bulk_row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bulk-discount")
        .unwrap();
    assert_eq!(bulk_row["active"], true);
    assert!(
        bulk_row["stats"]["calls"].as_u64().unwrap() >= 3,
        "{bulk_row}"
    );
    let (s, _, _) = app.get("/v1/plugins", &token).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

async fn bad_uploads_are_refused_and_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // (name, component, kind, config, what the refusal says)
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "not-wasm",
            b"\0asm garbage".to_vec(),
            Some("pricing"),
            None,
            "does not compile",
        ),
        (
            "imports-too-much",
            component("evil_import"),
            Some("pricing"),
            None,
            "imports something the host does not provide",
        ),
        (
            "wrong-world",
            component("quantity_rules"),
            Some("pricing"),
            None,
            "does not export the pricing world",
        ),
        (
            "loops",
            component("evil_loop"),
            Some("pricing"),
            None,
            "smoke call failed",
        ),
        (
            "traps",
            component("evil_trap"),
            Some("pricing"),
            None,
            "smoke call failed",
        ),
        (
            "bad-config",
            component("bulk_discount"),
            Some("pricing"),
            Some(r#"{"tiers": "many"}"#),
            "smoke call failed",
        ),
    ];
    for (name, bytes, kind, config, reason) in cases {
        let (status, body) = app.upload(name, bytes, kind, config, true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(body["type"], "/problems/plugin-rejected", "{name}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{name}: {body}"
        );
    }
    let (status, body) = app
        .upload(
            "bad-json",
            component("bulk_discount"),
            Some("pricing"),
            Some("{not json"),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .upload(
            "Bad Name",
            component("bulk_discount"),
            Some("pricing"),
            None,
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .upload(
            "kindless",
            component("bulk_discount"),
            Some("shipping"),
            None,
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A name keeps its kind.
    let (status, _) = app
        .upload(
            "bulk",
            component("bulk_discount"),
            Some("pricing"),
            None,
            false,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .upload(
            "bulk",
            component("echo_config"),
            Some("validation"),
            None,
            false,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (_, _, list) = app.get("/v1/plugins", &app.admin()).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bulk"], "refused uploads stored nothing");
    assert_eq!(list[0]["active"], false);
}

async fn hot_swap_under_traffic_prices_each_order_with_one_set(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    app.put_product("MUG", "10.00", "EUR", 1_000_000).await;
    let (_, v1) = app
        .upload(
            "bulk",
            component("bulk_discount"),
            Some("pricing"),
            Some(TEN_PERCENT),
            true,
        )
        .await;
    let (_, v2) = app
        .upload(
            "bulk",
            component("bulk_discount"),
            Some("pricing"),
            Some(TWENTY_PERCENT),
            false,
        )
        .await;
    assert_eq!(
        (v1["version"].as_i64(), v2["version"].as_i64()),
        (Some(1), Some(2))
    );

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (app, stop) = (app.clone(), stop.clone());
        clients.spawn(async move {
            let (_, token) = app.customer();
            let mut orders = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, order) = place(&app, &token, 10).await;
                assert_eq!(
                    status,
                    StatusCode::CREATED,
                    "no request is lost during a swap: {order}"
                );
                orders.push((order, token.clone()));
            }
            orders
        });
    }
    let admin = app.admin();
    for i in 0..10 {
        let version = if i % 2 == 0 { 2 } else { 1 };
        let (s, _, body) = app
            .call(
                Method::POST,
                "/v1/plugins/bulk/activate",
                Some(&admin),
                Some(json!({"version": version})),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut totals = std::collections::HashMap::new();
    let mut checked = 0;
    while let Some(orders) = clients.join_next().await {
        for (order, token) in orders.unwrap() {
            // The discount matches the version recorded on the order's event.
            let (_, _, events) = app
                .get(
                    &format!("/v1/orders/{}/events", order["id"].as_str().unwrap()),
                    &token,
                )
                .await;
            let plugins = events["items"][0]["data"]["plugins"]
                .as_array()
                .unwrap()
                .clone();
            assert_eq!(plugins.len(), 1, "{plugins:?}");
            let expected = match plugins[0]["version"].as_i64().unwrap() {
                1 => "90.00",
                2 => "80.00",
                v => panic!("unknown version {v}"),
            };
            assert_eq!(order["total"], expected, "{order}");
            *totals.entry(expected).or_insert(0) += 1;
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} orders");
    assert_eq!(totals.len(), 2, "both versions priced orders: {totals:?}");
}

async fn rollback_restores_the_previous_behaviour(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "10.00", "EUR", 1_000).await;
    let (_, token) = app.customer();
    let admin = app.admin();
    let (s, _, body) = app.post("/v1/plugins/bulk/rollback", &admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    app.upload(
        "bulk",
        component("bulk_discount"),
        Some("pricing"),
        Some(TEN_PERCENT),
        true,
    )
    .await;
    assert_eq!(place(&app, &token, 10).await.1["total"], "90.00");
    app.upload(
        "bulk",
        component("bulk_discount"),
        Some("pricing"),
        Some(TWENTY_PERCENT),
        true,
    )
    .await;
    assert_eq!(place(&app, &token, 10).await.1["total"], "80.00");

    let (s, _, body) = app.post("/v1/plugins/bulk/rollback", &admin).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(place(&app, &token, 10).await.1["total"], "90.00");

    let (s, _, _) = app.delete("/v1/plugins/bulk", &admin).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(place(&app, &token, 10).await.1["total"], "100.00");
    let (s, _, _) = app.delete("/v1/plugins/bulk", &admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn a_plugin_written_in_another_language_runs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "10.00", "EUR", 1_000).await;
    let (s, body) = app
        .upload(
            "free-shipping",
            component("wat_free_shipping"),
            None,
            None,
            true,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "pricing");
    let (_, token) = app.customer();
    let (_, order) = place(&app, &token, 1).await;
    assert_eq!(order["adjustments"][0]["label"], "free shipping", "{order}");
    assert_eq!(order["adjustments"][0]["kind"], "fee");
    assert_eq!(order["total"], "10.00");
}

async fn failing_plugins_follow_the_failure_policy(backend: Backend) {
    // A plugin that passed its checks can still fail on real input; put one
    // straight into the registry, as if it had.
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "10.00", "EUR", 1_000).await;
    app.activate_unchecked("trapper", component("evil_trap"))
        .await;
    let (_, token) = app.customer();
    // Pricing fails closed by default: 503, nothing placed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (s, body) = place(&app, &token, 1).await;
        if s == StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["type"], "/problems/plugin-failed", "{body}");
    assert_eq!(body["plugin"], "trapper");
    let (_, fresh) = app.customer();
    let (s, body) = place(&app, &fresh, 1).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (_, _, list) = app.get("/v1/orders", &fresh).await;
    assert_eq!(list["items"], json!([]), "a refused order leaves nothing");

    // With the skip policy, orders go through without the failing plugin.
    let skipping = TestApp::spawn_with(app.db.backend, &["--pricing-failure", "skip"], &[]).await;
    skipping.put_product("MUG", "10.00", "EUR", 1_000).await;
    skipping
        .activate_unchecked("trapper", component("evil_trap"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, order) = place(&skipping, &token, 1).await;
        assert_eq!(s, StatusCode::CREATED, "{order}");
        assert_eq!(order["adjustments"], json!([]));
        let (_, _, list) = skipping.get("/v1/plugins", &skipping.admin()).await;
        if list[0]["stats"]["failures"]["trap"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the trapping plugin was never called: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_components_are_stopped_with_typed_errors_while_good_calls_succeed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.open_store().await;
    // A generous deadline, so that fuel and memory, not time, stop the
    // loop and the memory bomb (the deadline has its own check below).
    let settings = commerce_plugins::PluginSettings {
        cache_dir: db.dir.path().join("plugin-cache"),
        deadline: Duration::from_secs(5),
        ..Default::default()
    };
    let (app, runtime) = commerce_service::startup::build_app(store.clone(), settings)
        .await
        .unwrap();
    let admin = commerce_app::Caller {
        subject: Uuid::nil(),
        role: commerce_app::Role::Admin,
    };
    app.registry()
        .install_plugin(
            admin,
            commerce_app::plugins::InstallPlugin {
                name: "bulk".into(),
                kind: PluginKind::Pricing,
                bytes: component("bulk_discount"),
                config: Some(TEN_PERCENT.into()),
                priority: 100,
                listen: None,
                limits: Default::default(),
                activate: true,
            },
        )
        .await
        .unwrap();

    // Good traffic runs all along.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good = {
        let (runtime, stop) = (runtime.clone(), stop.clone());
        tokio::spawn(async move {
            let mut calls = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let evaluation = runtime
                    .evaluate(quote(10, "10.00"))
                    .await
                    .expect("good calls succeed");
                assert_eq!(evaluation.adjustments[0].amount, Decimal::new(1000, 2));
                calls += 1;
            }
            calls
        })
    };

    let expect = |name: &str,
                  check: &dyn Fn(&PluginError) -> bool,
                  result: Result<(), CheckError>| match result {
        Err(CheckError::Smoke(e)) => assert!(check(&e), "{name}: {e:?}"),
        other => panic!("{name}: {other:?}"),
    };
    let started = Instant::now();
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "loop",
            Arc::new(component("evil_loop")),
            "{}",
        )
        .await;
    expect("loop", &|e| matches!(e, PluginError::FuelExhausted(_)), r);
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "memory",
            Arc::new(component("evil_memory")),
            "{}",
        )
        .await;
    expect("memory", &|e| matches!(e, PluginError::OutOfMemory(_)), r);
    // The same bomb installed with a memory limit of its own stops there.
    let r = runtime
        .try_component_within(
            PluginKind::Pricing,
            "memory",
            Arc::new(component("evil_memory")),
            "{}",
            PluginLimits {
                max_memory: Some(2 << 20),
                max_input: None,
            },
        )
        .await;
    expect(
        "memory within its own limit",
        &|e| *e == PluginError::OutOfMemory(2 << 20),
        r,
    );
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "stack",
            Arc::new(component("evil_stack")),
            "{}",
        )
        .await;
    expect("stack", &|e| matches!(e, PluginError::StackOverflow), r);
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "trap",
            Arc::new(component("evil_trap")),
            "{}",
        )
        .await;
    expect("trap", &|e| matches!(e, PluginError::Trap(_)), r);
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "output",
            Arc::new(component("evil_output")),
            "{}",
        )
        .await;
    expect(
        "output",
        &|e| {
            matches!(
                e,
                PluginError::OutputTooLarge { .. }
                    | PluginError::TransferTooLarge { .. }
                    | PluginError::OutOfMemory(_)
            )
        },
        r,
    );
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "import",
            Arc::new(component("evil_import")),
            "{}",
        )
        .await;
    assert!(matches!(r, Err(CheckError::Link(_))), "{r:?}");
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "wrong-world",
            Arc::new(component("quantity_rules")),
            "{}",
        )
        .await;
    assert!(
        matches!(r, Err(CheckError::Link(ref m)) if m.contains("does not export")),
        "{r:?}"
    );
    let r = runtime
        .try_component(
            PluginKind::Pricing,
            "garbage",
            Arc::new(b"garbage".to_vec()),
            "{}",
        )
        .await;
    assert!(matches!(r, Err(CheckError::Compile(_))), "{r:?}");
    // Logs are bounded, and printing a lot is not an error.
    runtime
        .try_component(
            PluginKind::Pricing,
            "log",
            Arc::new(component("evil_log")),
            "{}",
        )
        .await
        .expect("a chatty plugin still works");
    assert!(started.elapsed() < Duration::from_secs(60), "nothing hangs");

    // With unlimited fuel, the wall-clock deadline stops the loop.
    let settings = commerce_plugins::PluginSettings {
        cache_dir: db.dir.path().join("plugin-cache"),
        fuel: u64::MAX,
        deadline: Duration::from_millis(20),
        ..Default::default()
    };
    let (_, timed) = commerce_service::startup::build_app(store, settings)
        .await
        .unwrap();
    let started = Instant::now();
    let r = timed
        .try_component(
            PluginKind::Pricing,
            "loop",
            Arc::new(component("evil_loop")),
            "{}",
        )
        .await;
    expect(
        "loop on the clock",
        &|e| matches!(e, PluginError::DeadlineExceeded(_)),
        r,
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        started.elapsed()
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let calls = good.await.unwrap();
    assert!(calls > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_grants_nothing_and_calls_are_reproducible() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (s, body) = app
        .upload(
            "snoop",
            component("evil_snoop"),
            Some("pricing"),
            None,
            false,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let cart = json!({"currency": "EUR", "lines": [], "subtotal": {"amount": 0, "currency": "EUR"}, "customer": {"id": "c", "attributes": []}, "attributes": []});
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (s, _, out) = app
            .call(
                Method::POST,
                "/v1/plugins/snoop/dry-run",
                Some(&app.admin()),
                Some(json!({"input": cart})),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{out}");
        let labels: Vec<String> = out["adjustments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["label"].as_str().unwrap().to_owned())
            .collect();
        seen.push(labels);
    }
    let labels = &seen[0];
    for expected in ["fs:err", "dir:err", "env:0", "args:0"] {
        assert!(
            labels.iter().any(|l| l == expected),
            "{expected} in {labels:?}"
        );
    }
    assert!(labels.iter().any(|l| l.starts_with("clock:")), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("random:")),
        "{labels:?}"
    );
    assert_eq!(
        seen[0], seen[1],
        "the same input gives the same output: clock and randomness are fixed"
    );

    // The config plumbing: a plugin reads exactly its own configuration.
    let (s, body) = app
        .upload(
            "echo",
            component("echo_config"),
            Some("validation"),
            Some(r#"{"hello":"world"}"#),
            false,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let money = json!({"amount": 0, "currency": "EUR"});
    let order = json!({"id": "o", "status": "pending", "currency": "EUR", "lines": [], "subtotal": money, "total": money, "customer": {"id": "c", "attributes": []}, "attributes": []});
    let (_, _, out) = app
        .call(
            Method::POST,
            "/v1/plugins/echo/dry-run",
            Some(&app.admin()),
            Some(json!({"input": order})),
            &[],
        )
        .await;
    assert_eq!(
        out["violations"][0]["message"], r#"{"hello":"world"}"#,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_hooks_continue_or_veto() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.open_store().await;
    let (app, runtime) = db.app_and_runtime(store).await;
    let context = |quantity, step: &str, before| HookContext {
        saga_type: "order-fulfilment".into(),
        step: step.into(),
        before,
        quote: quote(quantity, "100.00"),
        adjustments: vec![],
    };
    assert_eq!(
        runtime
            .run_hooks(context(1, "authorize-payment", true))
            .await
            .unwrap(),
        HookOutcome::Continue
    );
    let admin = commerce_app::Caller {
        subject: Uuid::nil(),
        role: commerce_app::Role::Admin,
    };
    app.registry()
        .install_plugin(
            admin,
            commerce_app::plugins::InstallPlugin {
                name: "hold".into(),
                kind: PluginKind::SagaHook,
                bytes: component("high_value_hold"),
                config: Some(r#"{"max_total":100000}"#.into()),
                priority: 100,
                listen: None,
                limits: Default::default(),
                activate: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        runtime
            .run_hooks(context(5, "authorize-payment", true))
            .await
            .unwrap(),
        HookOutcome::Continue
    );
    assert_eq!(
        runtime
            .run_hooks(context(50, "authorize-payment", false))
            .await
            .unwrap(),
        HookOutcome::Continue
    );
    assert_eq!(
        runtime
            .run_hooks(context(50, "notify", true))
            .await
            .unwrap(),
        HookOutcome::Continue
    );
    match runtime
        .run_hooks(context(50, "authorize-payment", true))
        .await
        .unwrap()
    {
        HookOutcome::Veto { plugin, reason } => {
            assert_eq!(plugin, "hold");
            assert!(reason.contains("held for manual review"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_follows_an_activation_within_a_second() {
    let app = TestApp::spawn(Backend::Postgres).await;
    app.put_product("MUG", "10.00", "EUR", 1_000).await;
    let (_replica, replica_base) = app.spawn_replica();
    let (_, token) = app.customer();
    let client = reqwest::Client::new();
    let place_on_replica = || async {
        let resp = client
            .post(format!("{replica_base}/v1/orders"))
            .bearer_auth(&token)
            .json(&json!({"items": [{"sku": "MUG", "quantity": 10}], "currency": "EUR"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<Value>().await.unwrap()
    };
    assert_eq!(place_on_replica().await["total"], "100.00");
    let (s, body) = app
        .upload(
            "bulk",
            component("bulk_discount"),
            Some("pricing"),
            Some(TEN_PERCENT),
            true,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let activated = Instant::now();
    loop {
        if place_on_replica().await["total"] == "90.00" {
            break;
        }
        assert!(
            activated.elapsed() < Duration::from_secs(1),
            "the replica did not follow within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_directory_is_installed_and_watched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bulk.wasm"), component("bulk_discount")).unwrap();
    std::fs::write(dir.path().join("bulk.json"), TEN_PERCENT).unwrap();
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn_with(Backend::Sqlite, &["--plugin-dir", &dir_arg], &[]).await;
    app.put_product("MUG", "10.00", "EUR", 1_000).await;
    let (_, token) = app.customer();
    let wait_for_total = |expected: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (_, order) = place(app, &token, 10).await;
                if order["total"] == expected {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "total stayed {} instead of {expected}",
                    order["total"]
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for_total("90.00").await;
    // Changing the configuration next to it installs a new version.
    std::fs::write(dir.path().join("bulk.json"), TWENTY_PERCENT).unwrap();
    wait_for_total("80.00").await;
    let (_, _, list) = app.get("/v1/plugins", &app.admin()).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

/// `bytes` with a custom section appended: the same component, other bytes
/// (another sha256, another artifact).
fn variant(mut bytes: Vec<u8>, tag: u8) -> Vec<u8> {
    bytes.extend([0, 3, 1, b't', tag]);
    bytes
}

/// The compiled artifacts on disk.
fn artifacts(app: &TestApp) -> Vec<String> {
    let dir = app.db.data_dir().join("plugin-cache");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cwasm"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Uploads keep the newest `COMMERCE_PLUGIN_VERSIONS_KEPT` versions of a
/// plugin (and the active one, and the rollback target), and compiled
/// artifacts only for what is stored: a refused upload leaves none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_prune_old_versions_and_their_artifacts() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[],
        &[("COMMERCE_PLUGIN_VERSIONS_KEPT", "2")],
    )
    .await;
    let base = component("bulk_discount");
    for tag in 1..=5u8 {
        let activate = tag <= 2;
        let (status, body) = app
            .upload("bulk", variant(base.clone(), tag), None, None, activate)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, _, list) = app.get("/v1/plugins", &app.admin()).await;
    let versions: Vec<i64> = list["items"]
        .as_array()
        .unwrap_or_else(|| list.as_array().expect("a list"))
        .iter()
        .filter(|p| p["name"] == "bulk")
        .map(|p| p["version"].as_i64().unwrap())
        .collect();
    // 2 is active, 1 the rollback target, 4 and 5 the newest.
    assert_eq!(versions, [1, 2, 4, 5], "{list}");
    assert_eq!(artifacts(&app).len(), 4, "{:?}", artifacts(&app));

    // A refused upload (its smoke call never ends) leaves
    // no artifact behind.
    let (status, body) = app
        .upload("evil", component("evil_loop"), Some("pricing"), None, false)
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(artifacts(&app).len(), 4, "{:?}", artifacts(&app));
}

/// A plugin written in Python (plugins/python-loyalty, built with
/// componentize-py by scripts/python-plugin.sh): an 18 MB component whose
/// compilation takes seconds, uploaded to a service whose requests get
/// 1 s. The upload has a deadline of its own, so it is installed (not a
/// 408), and the plugin prices orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_python_plugin_uploads_past_the_request_deadline_and_prices() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let built = std::process::Command::new(format!("{root}/scripts/python-plugin.sh"))
        .output()
        .expect("scripts/python-plugin.sh runs (python3 with venv is needed)");
    assert!(
        built.status.success(),
        "building the Python plugin failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let path = String::from_utf8(built.stdout).unwrap();
    let bytes = std::fs::read(format!("{root}/{}", path.trim())).expect("the built component");
    assert!(bytes.len() > 10 << 20, "{} bytes", bytes.len());

    let app = TestApp::spawn_with(Backend::Sqlite, &["--request-timeout-secs", "1"], &[]).await;
    app.put_product("MUG", "60.00", "EUR", 100).await;
    let started = Instant::now();
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let query = "loyalty?kind=pricing&activate=true";
    let (status, body) = app.upload_with(&patient, query, bytes).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "after {took:?}: {body}");
    assert!(
        took > Duration::from_secs(1),
        "the upload outlived the request deadline: {took:?}"
    );
    eprintln!(
        "uploaded and compiled an {} MB Python component in {took:?}",
        body["size"].as_u64().unwrap() >> 20
    );

    // 120.00 EUR reaches the 5% tier of the default configuration; 60.00
    // reaches none.
    let (_, token) = app.customer();
    let (status, order) = place(&app, &token, 2).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(
        order["adjustments"][0]["label"], "5% loyalty discount",
        "{order}"
    );
    assert_eq!(order["adjustments"][0]["amount"], "6.00", "{order}");
    assert_eq!(order["total"], "114.00", "{order}");
    let (_, order) = place(&app, &token, 1).await;
    assert_eq!(order["adjustments"], json!([]), "{order}");
}

/// Successful calls of `plugin` so far, from the service's metrics.
async fn calls_of(app: &TestApp, plugin: &str) -> u64 {
    let metrics = app.metrics().await;
    let labels = [("plugin", plugin), ("outcome", "ok")];
    crate::helpers::metric_sum(&metrics, "commerce_plugin_calls_total", &labels) as u64
}

async fn confirmed_order(app: &TestApp, token: &str) {
    let (status, _, order) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(token),
            Some(json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR", "payment": {"token": "tok_ok"}})),
            &[("Prefer", "wait=10")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed", "{order}");
}

/// A saga hook is called only at the steps and phases it listens to: the
/// example `high-value-hold` listens before authorize-payment, so a
/// confirmed order costs one hook call, not one before and after every
/// step.
async fn hooks_are_called_only_where_they_listen(backend: Backend) {
    let app = TestApp::spawn_with(backend, &["--example-plugins"], &[]).await;
    app.put_product("MUG", "10.00", "EUR", 1_000).await;
    let admin = app.admin();
    let (_, _, listing) = app.get("/v1/plugins", &admin).await;
    let hold = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "high-value-hold")
        .unwrap()
        .clone();
    assert_eq!(
        hold["listen"],
        json!(["authorize-payment:before"]),
        "{hold}"
    );
    let (_, token) = app.customer();
    // Installing counted the smoke calls of the upload checks.
    let installed_hold = calls_of(&app, "high-value-hold").await;
    for _ in 0..3 {
        confirmed_order(&app, &token).await;
    }
    let hold = calls_of(&app, "high-value-hold").await - installed_hold;
    assert_eq!(hold, 3, "one call per order");

    // The same hook listening everywhere: called before and after each
    // step of the saga.
    let (status, body) = app
        .upload(
            "hold-everywhere",
            component("high_value_hold"),
            Some("saga-hook"),
            Some(r#"{"max_total":100000000}"#),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["listen"], Value::Null, "{body}");
    let installed = calls_of(&app, "hold-everywhere").await;
    confirmed_order(&app, &token).await;
    let everywhere = calls_of(&app, "hold-everywhere").await - installed;
    eprintln!(
        "hook calls per confirmed order: {everywhere} listening everywhere, 1 listening before authorize-payment"
    );
    assert_eq!(
        everywhere, 6,
        "before and after authorize, capture and notify"
    );
    assert_eq!(calls_of(&app, "high-value-hold").await - installed_hold, 4);

    // Listen points are checked: saga steps and phases, for saga hooks.
    for (query, bytes) in [
        (
            "odd?kind=saga-hook&listen=authorise-payment",
            component("high_value_hold"),
        ),
        (
            "odd?kind=saga-hook&listen=notify:during",
            component("high_value_hold"),
        ),
        ("odd?kind=pricing&listen=notify", component("bulk_discount")),
    ] {
        let (status, body) = app.upload_at(query, bytes).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
    }
    let query = "hold-after?kind=saga-hook&listen=notify,capture-payment:after";
    let (status, body) = app.upload_at(query, component("high_value_hold")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["listen"],
        json!(["notify:before", "notify:after", "capture-payment:after"]),
        "{body}"
    );
}

/// Limits grow with the cart: a 200-line and a 1,000-line order, ten
/// units a line, priced and validated by the example plugins. Every line
/// earns a bulk discount, so the 1,000-line answer holds 1,000
/// adjustments (about 50 KB), far over the 20 KiB output limit of a cart
/// of up to 200 lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_orders_get_plugin_limits_in_proportion_to_their_lines() {
    let args = ["--example-plugins", "--max-unpaid-units", "100000"];
    let app = TestApp::spawn_with(Backend::Sqlite, &args, &[]).await;
    for i in 0..1_000 {
        app.put_product(&format!("B{i:04}"), "1.00", "EUR", 100)
            .await;
    }
    let (_, token) = app.customer();
    for lines in [200, 1_000] {
        let skus: Vec<String> = (0..lines).map(|i| format!("B{i:04}")).collect();
        let items: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), 10)).collect();
        let (status, _, order) = app.place(&token, &items, None).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{lines} lines: {}",
            order["detail"]
        );
        let adjustments = order["adjustments"].as_array().unwrap();
        assert_eq!(adjustments.len(), lines, "one discount per line");
        assert_eq!(adjustments[0]["label"], "10% off 10 or more");
        // 10.00 a line, 10% off each.
        assert_eq!(order["total"], format!("{}.00", lines * 9), "{lines} lines");
    }
}

/// An admin sets a plugin's memory and input limits at install, within
/// the operator's maxima (16 MiB and 128 KiB by default here); an order
/// larger than a plugin accepts is refused with a 422 naming the plugin,
/// before any call, and nothing is reserved.
async fn limits_set_at_install_bound_a_plugin_and_refuse_larger_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let refused = [
        (
            format!("bulk?kind=pricing&max_memory={}", 32 << 20),
            "this service allows at most 16777216 (--plugin-memory-mib)",
        ),
        (
            format!("bulk?kind=pricing&max_input={}", 256 << 10),
            "this service allows at most 131072 (--plugin-max-input-kib)",
        ),
        (
            "bulk?kind=pricing&max_input=100".to_owned(),
            "the least a plugin may have is 1024",
        ),
        // Less than the component itself starts with.
        (
            "bulk?kind=pricing&max_memory=65536".to_owned(),
            "bytes of linear memory; the limit is 65536",
        ),
    ];
    for (query, says) in refused {
        let (status, body) = app.upload_at(&query, component("bulk_discount")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{query}: {detail}");
    }
    let (_, _, list) = app.get("/v1/plugins", &app.admin()).await;
    assert_eq!(list, json!([]), "a refused upload stores nothing");

    let query = format!(
        "bulk?kind=pricing&activate=true&max_input=4096&config={}",
        encode(TEN_PERCENT)
    );
    let (status, body) = app.upload_at(&query, component("bulk_discount")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["limits"],
        json!({"max_memory": null, "max_input": 4096}),
        "{body}"
    );
    let skus: Vec<String> = (0..80).map(|i| format!("L{i:02}")).collect();
    for sku in &skus {
        app.put_product(sku, "1.00", "EUR", 100).await;
    }
    let (_, token) = app.customer();
    let order_of = |lines: usize| -> Vec<(&str, i64)> {
        skus[..lines].iter().map(|s| (s.as_str(), 10)).collect()
    };

    let calls_before = calls_of(&app, "bulk").await;
    // Ten lines are well within 4 KiB: priced by the plugin.
    let (status, _, order) = app.place(&token, &order_of(10), None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["adjustments"].as_array().map(Vec::len), Some(10));

    // Eighty are not: refused before the call, nothing held.
    let (status, _, problem) = app.place(&token, &order_of(80), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/plugin-input-too-large");
    assert_eq!(problem["plugin"], "bulk");
    assert_eq!(problem["limit"], 4096);
    assert!(problem["size"].as_u64().unwrap() > 4096, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("the pricing plugin bulk"), "{detail}");
    let (_, _, product) = app.get("/v1/products/L79", &app.admin()).await;
    assert_eq!(product["reserved"], 0, "{product}");
    let (_, _, orders) = app.get("/v1/orders", &token).await;
    assert_eq!(
        orders["items"].as_array().map(Vec::len),
        Some(1),
        "{orders}"
    );
    let calls = calls_of(&app, "bulk").await - calls_before;
    assert_eq!(calls, 1, "the plugin was called for the small order only");
}
