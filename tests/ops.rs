//! Operations: graceful shutdown, structured logs, KPI metrics.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PaymentSim, TestApp, metric_sum};

/// SIGTERM: `/readyz` goes 503 (problem+json) at once while the process
/// still answers; after the delay it stops accepting, and a request in
/// flight (a paid order waiting for its slow payment) still finishes
/// before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_goes_unready_first_then_drains_in_flight_requests() {
    let sim = PaymentSim::spawn(&["--slow-ms", "3000"]);
    let mut app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            "--shutdown-delay-ms",
            "1000",
            "--payment-timeout-ms",
            "10000",
        ],
        &[("PAYMENT_URL", sim.base.as_str())],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (status, _, ready) = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    // In flight: answered once the saga confirmed the order, about 3 s on.
    let client = app.client.clone();
    let url = format!("{}/v1/orders", app.base);
    let in_flight = tokio::spawn(async move {
        let resp = client
            .post(url)
            .bearer_auth(token)
            .header("Prefer", "wait=20")
            .json(
                &json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR",
                "payment": {"token": "tok_slow"}}),
            )
            .send()
            .await
            .expect("the in-flight request is answered");
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    app.send_sigterm();

    // Unready first, while everything else is still served.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let mut unready = None;
    while signalled.elapsed() < Duration::from_millis(800) {
        let resp = fresh()
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .expect("still answering during the delay");
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
            unready = Some((content_type, resp.json::<Value>().await.unwrap()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (content_type, problem) = unready.expect("/readyz did not go 503 after SIGTERM");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["status"], 503, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/shutting-down"),
        "{problem}"
    );
    let health = fresh()
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("serving during the delay");
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        signalled.elapsed() < Duration::from_millis(1000),
        "the checks took too long to prove anything"
    );

    // After the delay: no new connections, while the request in flight
    // (its payment takes 3 s) is still running.
    tokio::time::sleep(Duration::from_millis(1000).saturating_sub(signalled.elapsed())).await;
    let deadline = Instant::now() + Duration::from_millis(1200);
    loop {
        match fresh().get(format!("{}/healthz", app.base)).send().await {
            // Refused; or, for a connection the kernel queued just as the
            // listener closed, reset before an answer.
            Err(e) => {
                assert!(e.is_connect() || e.is_request(), "{e:?}");
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "still accepting after the delay");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(!in_flight.is_finished(), "the slow request ended too early");
    assert!(
        app.exit_status().is_none(),
        "exited with a request in flight"
    );

    let (status, order) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed", "{order}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = app.exit_status() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
}

/// JSON logs: every line of a request's work carries its `request_id` (the
/// `x-request-id` header) and, once known, the `order_id`; every line of a
/// saga run carries `saga_id` and `order_id` (and the request that started
/// it), as top-level fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_request_order_and_saga_ids() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[],
        &[("RUST_LOG", "info,commerce=debug,tower_http=debug")],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let order = |request_id: &'static str, payment: Option<&'static str>| {
        let mut body = json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR"});
        if let Some(payment) = payment {
            body["payment"] = json!({ "token": payment });
        }
        let (app, token) = (&app, &token);
        async move {
            app.call(
                Method::POST,
                "/v1/orders",
                Some(token),
                Some(body),
                &[("x-request-id", request_id), ("Prefer", "wait=10")],
            )
            .await
        }
    };
    let (status, _, reserved) = order("req-place-1", None).await;
    assert_eq!(status, StatusCode::CREATED, "{reserved}");
    let (status, _, paid) = order("req-pay-1", Some("tok_ok")).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    assert_eq!(paid["status"], "confirmed", "{paid}");
    let (reserved_id, paid_id) = (reserved["id"].clone(), paid["id"].clone());

    // The logs are written by another process: wait for the last lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = app.log_lines();
        let saga_done = lines
            .iter()
            .any(|l| l["message"] == "saga finished" && l["order_id"] == paid_id);
        let answered = lines.iter().any(|l| {
            l["request_id"] == "req-pay-1" && l["message"] == "finished processing request"
        });
        if saga_done && answered {
            break lines;
        }
        assert!(Instant::now() < deadline, "missing log lines: {lines:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let of_request =
        |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["request_id"] == id).collect() };

    // Every line of the request span names its request.
    for line in &lines {
        if line["span"] == "commerce.http" {
            assert!(line["request_id"].is_string(), "{line}");
        }
    }
    // The placement's lines carry the request id, and the order id once
    // the order has one: its "order placed" line and the access log line.
    let placing = of_request("req-place-1");
    let placed = placing
        .iter()
        .find(|l| l["message"] == "order placed, stock reserved")
        .unwrap_or_else(|| panic!("no 'order placed' line for req-place-1: {placing:#?}"));
    assert_eq!(placed["order_id"], reserved_id);
    let answered = placing
        .iter()
        .find(|l| l["message"] == "finished processing request")
        .unwrap_or_else(|| panic!("no access log line for req-place-1: {placing:#?}"));
    assert_eq!(answered["order_id"], reserved_id, "{answered}");
    assert_eq!(answered["status"], 201, "{answered}");

    // The saga's lines carry its id and its order's, and the request that
    // started it, without naming them in each call.
    let finished = lines
        .iter()
        .find(|l| l["message"] == "saga finished" && l["order_id"] == paid_id)
        .unwrap();
    let saga_id = finished["saga_id"].clone();
    assert!(saga_id.is_string(), "{finished}");
    let steps: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "saga step written")
        .collect();
    // The payment (authorize, capture, confirm, notify) is one write.
    assert!(!steps.is_empty(), "{lines:#?}");
    for step in steps {
        assert_eq!(step["saga_id"], saga_id, "{step}");
        assert_eq!(step["order_id"], paid_id, "{step}");
        assert_eq!(step["request_id"], "req-pay-1", "{step}");
        assert_eq!(step["span"], "commerce.saga", "{step}");
    }
    for line in &lines {
        if line["span"] == "commerce.saga" || line["saga_id"].is_string() {
            assert_eq!(line["saga_id"], saga_id, "{line}");
            assert_eq!(line["order_id"], paid_id, "{line}");
        }
    }
}

/// The KPIs: plugin calls by plugin, hook and outcome, with their latency;
/// order processing time by outcome; inventory update latency by operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_metrics_cover_plugins_order_processing_and_inventory_updates() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &["--example-plugins", "--pricing-failure", "skip"],
        &[],
    )
    .await;
    // A pricing plugin that traps on every call, as if it had passed its
    // upload checks.
    app.activate_unchecked("trapper", crate::helpers::component("evil_trap"))
        .await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();

    // Placed until the trapping plugin is loaded (the registry is polled).
    let deadline = Instant::now() + Duration::from_secs(10);
    let unpaid = loop {
        let (status, _, order) = app.place(&token, &[("MUG", 12)], None).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let metrics = app.metrics().await;
        let trapped = [
            ("plugin", "trapper"),
            ("hook", "pricing"),
            ("outcome", "trap"),
        ];
        if metric_sum(&metrics, "commerce_plugin_calls_total", &trapped) >= 1.0 {
            break order;
        }
        assert!(Instant::now() < deadline, "the trapper was never called");
        let id = order["id"].as_str().unwrap();
        let (status, _, _) = app.delete(&format!("/v1/orders/{id}"), &token).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let before = app.metrics().await;
    let id = unpaid["id"].as_str().unwrap();
    let (status, _, cancelled) = app.delete(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let (status, _, paid) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(
                json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR",
                "payment": {"token": "tok_ok"}}),
            ),
            &[("Prefer", "wait=10")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    assert_eq!(paid["status"], "confirmed", "{paid}");
    // The saga records its metrics just after its write commits, which the
    // waiting request may see first.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = app.metrics().await;
        let confirmed = [("outcome", "confirmed")];
        if metric_sum(
            &after,
            "commerce_order_processing_seconds_count",
            &confirmed,
        ) >= 1.0
            || Instant::now() > deadline
        {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let grew = |name: &str, labels: &[(&str, &str)]| {
        metric_sum(&after, name, labels) - metric_sum(&before, name, labels)
    };

    // Plugins, by plugin, hook and outcome, and their latency.
    let ok_pricing = [
        ("plugin", "bulk-discount"),
        ("hook", "pricing"),
        ("outcome", "ok"),
    ];
    assert!(
        grew("commerce_plugin_calls_total", &ok_pricing) >= 1.0,
        "{after}"
    );
    let ok_validation = [
        ("plugin", "quantity-rules"),
        ("hook", "validation"),
        ("outcome", "ok"),
    ];
    assert!(
        grew("commerce_plugin_calls_total", &ok_validation) >= 1.0,
        "{after}"
    );
    let ok_hook = [
        ("plugin", "high-value-hold"),
        ("hook", "saga-hook"),
        ("outcome", "ok"),
    ];
    assert!(
        grew("commerce_plugin_calls_total", &ok_hook) >= 1.0,
        "{after}"
    );
    let trapped = [
        ("plugin", "trapper"),
        ("hook", "pricing"),
        ("outcome", "trap"),
    ];
    assert!(
        grew("commerce_plugin_calls_total", &trapped) >= 1.0,
        "{after}"
    );
    let timed = [("plugin", "bulk-discount"), ("hook", "pricing")];
    assert!(grew("commerce_plugin_call_duration_seconds_count", &timed) >= 1.0);
    assert!(metric_sum(&after, "commerce_plugin_call_duration_seconds_sum", &timed) > 0.0);

    // Order processing: one cancelled, one confirmed, since `before`.
    let processing = "commerce_order_processing_seconds_count";
    assert_eq!(
        grew(processing, &[("outcome", "cancelled")]),
        1.0,
        "{after}"
    );
    assert_eq!(
        grew(processing, &[("outcome", "confirmed")]),
        1.0,
        "{after}"
    );
    assert_eq!(grew(processing, &[("outcome", "failed")]), 0.0, "{after}");

    // Inventory updates: the cancel released, the paid order held then
    // committed.
    let updates = "commerce_inventory_update_duration_seconds_count";
    assert_eq!(grew(updates, &[("operation", "release")]), 1.0, "{after}");
    assert_eq!(grew(updates, &[("operation", "hold")]), 1.0, "{after}");
    assert_eq!(grew(updates, &[("operation", "commit")]), 1.0, "{after}");
    let (status, _, _) = app
        .call(
            Method::POST,
            "/v1/products/MUG/adjust",
            Some(&app.admin()),
            Some(json!({"delta": 5, "reason": "delivery"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let adjusted = app.metrics().await;
    assert_eq!(
        metric_sum(&adjusted, updates, &[("operation", "adjust")]),
        1.0,
        "{adjusted}"
    );
}

/// Every metric family the alert rules and the dashboard read exists on a
/// freshly started replica that has served nothing but a probe: panels
/// show 0, not "no data", and `rate()` alerts can fire on a quiet replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_read_exists_from_start_up() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--example-plugins"], &[]).await;
    let (status, _, _) = app.get("/healthz", &app.admin()).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = app.metrics().await;
    let exported: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let monitoring = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s/monitoring");
    let mut read = std::collections::BTreeSet::new();
    for file in ["rules.yaml", "dashboard.json"] {
        let text = std::fs::read_to_string(monitoring.join(file)).unwrap();
        for (at, _) in text.match_indices("commerce_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            read.insert(name);
        }
    }
    assert!(read.len() >= 15, "{read:?}");
    let missing: Vec<&String> = read
        .iter()
        .filter(|name| {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            !exported.iter().any(|series| {
                *series == name.as_str()
                    || *series == family
                    || series
                        .strip_prefix(family)
                        .is_some_and(|rest| ["_bucket", "_count", "_sum"].contains(&rest))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not exported at start-up: {missing:?}\n{metrics}"
    );
    // A replica that loads the plugins from the registry (installing
    // nothing, so calling nothing) counts their calls from zero.
    let (_replica, base) = app.spawn_replica();
    let metrics = app.metrics_at(&base).await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("commerce_plugin_calls_total{")
                && line.contains("plugin=\"bulk-discount\"")
                && line.ends_with(" 0")),
        "{metrics}"
    );
}
