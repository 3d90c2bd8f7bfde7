//! The fulfilment saga end to end: `commerce serve` with a payment
//! simulator of its own (`commerce payment-sim`, so the test can read the
//! simulator's ledger), one scenario per payment token, hook vetoes,
//! cancels mid-saga, a compensation that keeps failing, the operator's
//! API, and a crash of replicas while sagas are in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, PaymentSim, TestApp, component, ledger_of};

/// A service whose payments go to `sim`, with fast retries; `extra` holds
/// flag/value pairs that override the defaults here.
async fn service(backend: Backend, sim: &str, extra: &[&str]) -> TestApp {
    let mut flags: Vec<(&str, &str)> = vec![
        ("--payment-timeout-ms", "400"),
        ("--saga-step-deadline-ms", "1500"),
        ("--saga-poll-ms", "100"),
    ];
    for pair in extra.chunks(2) {
        flags.retain(|(flag, _)| *flag != pair[0]);
        flags.push((pair[0], pair[1]));
    }
    let args: Vec<&str> = flags.iter().flat_map(|(f, v)| [*f, *v]).collect();
    TestApp::spawn_with(backend, &args, &[("PAYMENT_URL", sim)]).await
}

/// Waits until the order reaches one of `statuses`; returns it.
async fn wait_for_status(app: &TestApp, id: &str, statuses: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, _, order) = app.get(&format!("/v1/orders/{id}"), &app.admin()).await;
        assert_eq!(status, StatusCode::OK, "{order}");
        if statuses.contains(&order["status"].as_str().unwrap_or_default()) {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} is still {} after {within:?}, not one of {statuses:?}",
            order["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The saga of an order, with its history, once it reached `status`.
pub(crate) async fn wait_for_saga(
    app: &TestApp,
    order_id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, _, page) = app.get("/v1/sagas?limit=500", &app.admin()).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        let found = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["correlation_id"] == order_id)
            .cloned();
        if let Some(saga) = found
            && saga["status"] == status
        {
            let (code, _, full) = app
                .get(
                    &format!("/v1/sagas/{}", saga["saga_id"].as_str().unwrap()),
                    &app.admin(),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{full}");
            return full;
        }
        assert!(
            Instant::now() < deadline,
            "the saga of {order_id} did not reach {status} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn product(app: &TestApp, sku: &str) -> Value {
    let (status, _, p) = app.get(&format!("/v1/products/{sku}"), &app.admin()).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    p
}

fn steps(saga: &Value) -> Vec<String> {
    saga["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}:{}:{}",
                h["step"].as_str().unwrap(),
                h["phase"].as_str().unwrap(),
                h["outcome"].as_str().unwrap()
            )
        })
        .collect()
}

both_backends!(
    tok_ok_confirms_and_commits_the_stock,
    tok_decline_fails_and_releases_without_a_charge,
    a_veto_after_authorization_voids_and_releases,
    cancel_mid_saga_voids_what_the_saga_authorized,
);

async fn tok_ok_confirms_and_commits_the_stock(backend: Backend) {
    let sim = PaymentSim::spawn(&[]);
    let app = service(backend, &sim.base, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();

    let (status, _, order) = app
        .place_paying(&token, &[("MUG", 2)], None, Some("tok_ok"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap();
    let order = wait_for_status(&app, id, &["confirmed"], Duration::from_secs(10)).await;
    assert_eq!(order["total"], "25.00");

    // The stock left the shelf: nothing reserved, two fewer on hand.
    let mug = product(&app, "MUG").await;
    assert_eq!(
        (mug["on_hand"].as_i64(), mug["reserved"].as_i64()),
        (Some(8), Some(0)),
        "{mug}"
    );

    // Captured exactly once, for the order's total.
    let ledger = ledger_of(&sim.base, id).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["status"], "captured");
    assert_eq!(ledger[0]["captured_amount"], "25.00");
    assert_eq!(ledger[0]["captures"], 1);

    let saga = wait_for_saga(&app, id, "completed", Duration::from_secs(5)).await;
    assert_eq!(
        steps(&saga),
        [
            "reserve-inventory:action:ok",
            "authorize-payment:action:ok",
            "capture-payment:action:ok",
            "notify:action:ok"
        ]
    );
    // Placement wrote the saga; the authorization, the capture, the
    // confirmation and the notification were one more write.
    assert_eq!(saga["revision"], 2, "{saga}");
    // The order's history tells the same story.
    let (_, _, events) = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let types: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "OrderPlaced",
            "OrderReserved",
            "OrderPaid",
            "OrderConfirmed"
        ]
    );

    // `Prefer: wait=N` answers with the saga's outcome, and says so.
    let (status, headers, waited) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR", "payment": {"token": "tok_ok"}})),
            &[("Prefer", "wait=10")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{waited}");
    assert_eq!(waited["status"], "confirmed", "{waited}");
    assert_eq!(headers["preference-applied"], "wait=10");
    // A wait that is not a number of seconds is ignored (RFC 7240): the
    // order is placed and answered at once, without Preference-Applied.
    let (status, headers, unwaited) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR"})),
            &[("Prefer", "wait=soon")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{unwaited}");
    assert_eq!(unwaited["status"], "reserved", "{unwaited}");
    assert!(headers.get("preference-applied").is_none());

    // The KPIs: orders by outcome, requests by route template and status.
    let metrics = app.metrics().await;
    // Each group: fragments one line of the exposition must all hold.
    let groups: [&[&str]; 5] = [
        &["commerce_orders_total{", r#"outcome="confirmed""#, "} 2"],
        &["commerce_orders_total{", r#"outcome="placed""#, "} 3"],
        &[
            "commerce_http_requests_total{",
            r#"route="/v1/orders""#,
            r#"status="201""#,
            r#"method="POST""#,
        ],
        &[
            "commerce_http_requests_total{",
            r#"route="/v1/orders/{id}""#,
            r#"status="200""#,
        ],
        &[
            "commerce_sagas_finished_total{",
            r#"outcome="completed""#,
            "} 2",
        ],
    ];
    for group in groups {
        assert!(
            metrics.lines().any(|l| group.iter().all(|f| l.contains(f))),
            "no line with {group:?} in {metrics}"
        );
    }

    // An admin refund gives the capture back at the gateway.
    let (status, _, refunded) = app
        .post(&format!("/v1/orders/{id}/refund"), &app.admin())
        .await;
    assert_eq!(status, StatusCode::OK, "{refunded}");
    assert_eq!(refunded["status"], "refunded");
    let ledger = ledger_of(&sim.base, id).await;
    assert_eq!(ledger[0]["status"], "refunded", "{ledger:?}");
    assert_eq!(ledger[0]["refunded_amount"], "25.00", "{ledger:?}");
    // So does the customer's cancel of a confirmed order.
    let waited_id = waited["id"].as_str().unwrap();
    let (status, _, cancelled) = app.delete(&format!("/v1/orders/{waited_id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let ledger = ledger_of(&sim.base, waited_id).await;
    assert_eq!(ledger[0]["status"], "refunded", "{ledger:?}");
}

async fn tok_decline_fails_and_releases_without_a_charge(backend: Backend) {
    let sim = PaymentSim::spawn(&[]);
    let app = service(backend, &sim.base, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (status, _, order) = app
        .place_paying(&token, &[("MUG", 3)], None, Some("tok_decline"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap();
    let order = wait_for_status(&app, id, &["failed"], Duration::from_secs(10)).await;
    assert!(
        order["status_reason"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{order}"
    );
    let mug = product(&app, "MUG").await;
    assert_eq!(
        (mug["on_hand"].as_i64(), mug["reserved"].as_i64()),
        (Some(10), Some(0)),
        "{mug}"
    );
    let ledger = ledger_of(&sim.base, id).await;
    assert!(ledger.iter().all(|e| e["captures"] == 0), "{ledger:?}");
    let saga = wait_for_saga(&app, id, "compensated", Duration::from_secs(5)).await;
    assert!(
        steps(&saga).contains(&"release-inventory:compensation:ok".to_owned()),
        "{saga}"
    );
}

async fn a_veto_after_authorization_voids_and_releases(backend: Backend) {
    let sim = PaymentSim::spawn(&[]);
    let app = service(backend, &sim.base, &[]).await;
    // Holds orders above 10.00 before the capture: after the authorization.
    let (status, body) = app
        .upload(
            "high-value-hold",
            component("high_value_hold"),
            Some("saga-hook"),
            Some(r#"{"max_total": 1000, "step": "capture-payment"}"#),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();

    let (_, _, order) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_ok"))
        .await;
    let id = order["id"].as_str().unwrap();
    let order = wait_for_status(&app, id, &["failed"], Duration::from_secs(10)).await;
    assert!(
        order["status_reason"]
            .as_str()
            .unwrap()
            .contains("high-value-hold"),
        "{order}"
    );
    let ledger = ledger_of(&sim.base, id).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["status"], "voided", "{ledger:?}");
    assert_eq!(ledger[0]["captures"], 0);
    let mug = product(&app, "MUG").await;
    assert_eq!(
        (mug["on_hand"].as_i64(), mug["reserved"].as_i64()),
        (Some(10), Some(0)),
        "{mug}"
    );
    let saga = wait_for_saga(&app, id, "compensated", Duration::from_secs(5)).await;
    let steps = steps(&saga);
    assert!(
        steps.contains(&"capture-payment:hook-before:veto".to_owned()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&"void-payment:compensation:ok".to_owned()),
        "{steps:?}"
    );
}

async fn cancel_mid_saga_voids_what_the_saga_authorized(backend: Backend) {
    // tok_slow answers the authorization after 1.5 s: the cancel lands
    // while the gateway is still deciding.
    let sim = PaymentSim::spawn(&["--slow-ms", "1500"]);
    let app = service(
        backend,
        &sim.base,
        &[
            "--payment-timeout-ms",
            "5000",
            "--saga-step-deadline-ms",
            "8000",
        ],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (_, _, order) = app
        .place_paying(&token, &[("MUG", 2)], None, Some("tok_slow"))
        .await;
    let id = order["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, cancelled) = app.delete(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");

    // The saga learns of the authorization after the cancel, and voids it.
    let saga = wait_for_saga(&app, id, "compensated", Duration::from_secs(15)).await;
    let ledger = ledger_of(&sim.base, id).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["status"], "voided", "{ledger:?} {saga}");
    let order = wait_for_status(&app, id, &["cancelled"], Duration::from_secs(1)).await;
    assert_eq!(order["status"], "cancelled");
    let mug = product(&app, "MUG").await;
    assert_eq!(
        (mug["on_hand"].as_i64(), mug["reserved"].as_i64()),
        (Some(10), Some(0)),
        "{mug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_error_retries_then_compensates() {
    let sim = PaymentSim::spawn(&[]);
    let app = service(Backend::Sqlite, &sim.base, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (_, _, order) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_error"))
        .await;
    let id = order["id"].as_str().unwrap();
    let order = wait_for_status(&app, id, &["failed"], Duration::from_secs(10)).await;
    assert!(
        order["status_reason"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{order}"
    );
    // The customer is told what happened, not where: the gateway's
    // address and answer go to the admin's saga view (and the logs).
    let told = order["status_reason"].as_str().unwrap();
    assert!(
        !told.contains("http") && !told.contains("127.0.0.1") && !told.contains("500"),
        "{told}"
    );
    let saga = wait_for_saga(&app, id, "compensated", Duration::from_secs(5)).await;
    let cause = saga["last_error"].as_str().unwrap_or_default();
    assert!(cause.contains(&sim.base), "{saga}");
    let retries = steps(&saga)
        .iter()
        .filter(|s| *s == "authorize-payment:action:retry")
        .count();
    assert!(retries >= 2, "retried {retries} times: {saga}");
    assert!(ledger_of(&sim.base, id).await.is_empty());
    assert_eq!(product(&app, "MUG").await["reserved"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_timeout_retries_then_compensates() {
    let sim = PaymentSim::spawn(&["--hang-ms", "5000"]);
    let app = service(
        Backend::Postgres,
        &sim.base,
        &["--payment-timeout-ms", "300"],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let started = Instant::now();
    let (status, _, order) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_timeout"))
        .await;
    // Placing does not wait for the gateway.
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let id = order["id"].as_str().unwrap();
    wait_for_status(&app, id, &["failed"], Duration::from_secs(15)).await;
    let saga = wait_for_saga(&app, id, "compensated", Duration::from_secs(5)).await;
    let retries = steps(&saga)
        .iter()
        .filter(|s| *s == "authorize-payment:action:retry")
        .count();
    assert!(retries >= 2, "retried {retries} times: {saga}");
    assert!(
        ledger_of(&sim.base, id)
            .await
            .iter()
            .all(|e| e["captures"] == 0)
    );
    assert_eq!(product(&app, "MUG").await["reserved"], 0);
}

/// A gateway (a real HTTP server in this process) that authorizes but
/// whose capture and void fail with 500 until it is healed: the
/// compensation keeps failing. The console's tests use it too.
pub(crate) struct BrokenGateway {
    pub(crate) base: String,
    pub(crate) healed: Arc<AtomicBool>,
    voids: Arc<AtomicUsize>,
}

impl BrokenGateway {
    pub(crate) async fn start() -> BrokenGateway {
        use axum::extract::{Path, State};
        use axum::response::IntoResponse;
        use axum::routing::post;
        let healed = Arc::new(AtomicBool::new(false));
        let voids = Arc::new(AtomicUsize::new(0));
        let state = (healed.clone(), voids.clone());
        let authorization = |id: &str, order: &Value, status: &str| {
            json!({"id": id, "order_id": order["order_id"], "amount": order["amount"], "currency": order["currency"],
                   "status": status, "captured_amount": null, "refunded_amount": null})
        };
        let router = axum::Router::new()
            .route(
                "/v1/authorizations",
                post(move |axum::Json(body): axum::Json<Value>| async move {
                    (StatusCode::CREATED, axum::Json(authorization("auth-1", &body, "authorized")))
                }),
            )
            .route(
                "/v1/authorizations/{id}/capture",
                post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route(
                "/v1/authorizations/{id}/void",
                post(
                    |State((healed, voids)): State<(Arc<AtomicBool>, Arc<AtomicUsize>)>,
                     Path(id): Path<String>| async move {
                        voids.fetch_add(1, Ordering::SeqCst);
                        if !healed.load(Ordering::SeqCst) {
                            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                        }
                        let voided = json!({"id": id, "order_id": "00000000-0000-0000-0000-000000000000",
                            "amount": "12.50", "currency": "EUR", "status": "voided",
                            "captured_amount": null, "refunded_amount": null});
                        (StatusCode::OK, axum::Json(voided)).into_response()
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        BrokenGateway {
            base,
            healed,
            voids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_keeps_failing_needs_attention_then_an_operator_retries() {
    let gateway = BrokenGateway::start().await;
    let app = service(
        Backend::Postgres,
        &gateway.base,
        &[
            "--saga-step-deadline-ms",
            "300",
            "--saga-compensation-rounds",
            "2",
        ],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (_, _, order) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_ok"))
        .await;
    let id = order["id"].as_str().unwrap().to_owned();

    // Capture fails, so the saga turns back; the void keeps failing.
    let saga = wait_for_saga(&app, &id, "needs_attention", Duration::from_secs(20)).await;
    assert!(gateway.voids.load(Ordering::SeqCst) >= 2);
    let steps_seen = steps(&saga);
    assert!(
        steps_seen.contains(&"void-payment:compensation:failed".to_owned()),
        "{steps_seen:?}"
    );
    assert!(
        steps_seen.contains(&"void-payment:compensation:stuck".to_owned()),
        "{steps_seen:?}"
    );
    // Not dropped: the stock is still held, the order not yet failed.
    assert_eq!(product(&app, "MUG").await["reserved"], 1);
    let (_, _, listed) = app
        .get("/v1/sagas?status=needs_attention", &app.admin())
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    // The SagaFailure alert's metric counts it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = app.metrics().await;
        if metrics.contains("commerce_sagas_needing_attention 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Customers may not touch sagas.
    let saga_id = saga["saga_id"].as_str().unwrap();
    let (status, _, _) = app
        .post(&format!("/v1/sagas/{saga_id}/retry"), &token)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The gateway is fixed; the operator retries; the saga finishes.
    gateway.healed.store(true, Ordering::SeqCst);
    let (status, _, retried) = app
        .post(&format!("/v1/sagas/{saga_id}/retry"), &app.admin())
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    wait_for_saga(&app, &id, "compensated", Duration::from_secs(10)).await;
    wait_for_status(&app, &id, &["failed"], Duration::from_secs(5)).await;
    assert_eq!(product(&app, "MUG").await["reserved"], 0);
    // Another order gets stuck the same way; the operator gives up on it:
    // the saga ends compensated, the order fails, its stock comes back.
    gateway.healed.store(false, Ordering::SeqCst);
    let (_, _, second) = app
        .place_paying(&token, &[("MUG", 2)], None, Some("tok_ok"))
        .await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let stuck = wait_for_saga(&app, &second_id, "needs_attention", Duration::from_secs(20)).await;
    assert_eq!(product(&app, "MUG").await["reserved"], 2);
    let stuck_id = stuck["saga_id"].as_str().unwrap();
    let (status, _, aborted) = app
        .post(
            &format!("/v1/sagas/{stuck_id}/abort?reason=voided%20by%20phone"),
            &app.admin(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{aborted}");
    assert_eq!(aborted["status"], "compensated");
    let order = wait_for_status(&app, &second_id, &["failed"], Duration::from_secs(5)).await;
    assert!(
        order["status_reason"]
            .as_str()
            .unwrap()
            .contains("voided by phone"),
        "{order}"
    );
    assert_eq!(product(&app, "MUG").await["reserved"], 0);

    // A finished saga cannot be retried or aborted.
    let (status, _, _) = app
        .post(&format!("/v1/sagas/{saga_id}/abort"), &app.admin())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// Two replicas share PostgreSQL and a simulator; one is killed (SIGKILL)
/// with sagas in flight and started again. Every saga ends, every order
/// is confirmed or failed, no stock stays held, and each confirmed order
/// was captured exactly once (failed ones never).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_survive_a_killed_replica() {
    let sim = PaymentSim::spawn(&["--slow-ms", "400"]);
    let mut app = service(
        Backend::Postgres,
        &sim.base,
        &[
            "--saga-lease-secs",
            "2",
            "--payment-timeout-ms",
            "3000",
            "--saga-step-deadline-ms",
            "1500",
        ],
    )
    .await;
    let (_replica, replica_base) = app.spawn_replica();
    app.put_product("MUG", "10.00", "EUR", 1_000).await;
    let (_, token) = app.customer();

    let tokens = ["tok_ok", "tok_slow", "tok_decline", "tok_slow", "tok_ok"];
    let mut ids = Vec::new();
    for i in 0..40 {
        let payment = tokens[i % tokens.len()];
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            replica_base.clone()
        };
        let resp = app
            .client
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&token)
            .json(&json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR", "payment": {"token": payment}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    // Kill the first replica mid-flight (slow authorizations are pending)
    // and start it again.
    app.restart();

    let mut statuses: HashMap<String, String> = HashMap::new();
    for id in &ids {
        let order =
            wait_for_status(&app, id, &["confirmed", "failed"], Duration::from_secs(30)).await;
        statuses.insert(id.clone(), order["status"].as_str().unwrap().to_owned());
    }
    // Every saga terminal.
    let (_, _, page) = app.get("/v1/sagas?limit=500", &app.admin()).await;
    let sagas = page["items"].as_array().unwrap();
    assert_eq!(sagas.len(), ids.len());
    for s in sagas {
        assert!(
            s["status"] == "completed" || s["status"] == "compensated",
            "{s}"
        );
    }
    // Stock: nothing held; on hand lowered by the confirmed orders only.
    let confirmed = statuses.values().filter(|s| *s == "confirmed").count() as i64;
    let mug = product(&app, "MUG").await;
    assert_eq!(mug["reserved"], 0, "{mug}");
    assert_eq!(mug["on_hand"].as_i64(), Some(1_000 - confirmed), "{mug}");
    // The gateway: exactly one capture per confirmed order, none otherwise.
    for (id, status) in &statuses {
        let ledger = ledger_of(&sim.base, id).await;
        let captures: i64 = ledger.iter().map(|e| e["captures"].as_i64().unwrap()).sum();
        let authorizations = ledger.len();
        match status.as_str() {
            "confirmed" => {
                assert_eq!(captures, 1, "{id}: {ledger:?}");
                assert_eq!(authorizations, 1, "{id}: {ledger:?}");
            }
            _ => assert_eq!(captures, 0, "{id}: {ledger:?}"),
        }
    }
    assert!(confirmed > 0);
}

/// A resumed run racing the run it replaced, in process: the order's saga
/// is claimed by exactly one of two workers, and a stale run that acts
/// again (as after a crash between the gateway's answer and the saga's
/// write) gets the gateway's first answers back and cannot write: one
/// authorization, one capture, the stock committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_run_racing_a_resume_never_charges_twice() {
    use commerce_app::catalog::PutProduct;
    use commerce_app::orders::{PlaceOrderRequest, RequestedLine};
    use commerce_app::saga::{SagaSettings, worker};
    use commerce_app::{Caller, Role};
    use commerce_domain::{Currency, Quantity, Sku};

    let sim = PaymentSim::spawn(&[]);
    let db = crate::helpers::TestDb::new(Backend::Postgres).await;
    let store = db.open_store().await;
    let gateway = Arc::new(
        commerce_payment::HttpPaymentGateway::new(&sim.base, Duration::from_secs(2)).unwrap(),
    );
    let app_with = |owner: &str, lease: Duration| {
        let settings = SagaSettings {
            owner: owner.into(),
            lease,
            ..Default::default()
        };
        let gateway = gateway.clone();
        let db = &db;
        let store = store.clone();
        async move { db.app(store).await.with_payments(gateway, settings) }
    };
    // The placing process's lease is over at once: as if it died.
    let placer = app_with("placer", Duration::from_millis(1)).await;
    let (a, b) = (
        app_with("a", Duration::from_secs(30)).await,
        app_with("b", Duration::from_secs(30)).await,
    );
    let admin = Caller {
        subject: uuid::Uuid::nil(),
        role: Role::Admin,
    };
    let sku = Sku::parse("MUG").unwrap();
    placer
        .inventory()
        .put_product(
            admin,
            sku.clone(),
            PutProduct {
                name: "Mug".into(),
                unit_price: "10.00".parse().unwrap(),
                currency: Currency::parse("EUR").unwrap(),
                stock: 5,
            },
        )
        .await
        .unwrap();
    let customer = Caller {
        subject: uuid::Uuid::new_v4(),
        role: Role::Customer,
    };
    let placed = placer
        .orders()
        .place_order(
            customer,
            PlaceOrderRequest {
                currency: Currency::parse("EUR").unwrap(),
                items: vec![RequestedLine {
                    sku: sku.clone(),
                    quantity: Quantity::parse(2).unwrap(),
                }],
                payment_token: Some("tok_ok".into()),
            },
            None,
        )
        .await
        .unwrap();
    let order_id = placed.order.id;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stale = store.saga_of(order_id).await.unwrap().unwrap();

    // Two workers race for it: one wins.
    let (na, nb) = tokio::join!(worker::claim_round(&a), worker::claim_round(&b));
    assert_eq!(na.unwrap() + nb.unwrap(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while placer
        .orders()
        .get_order(customer, order_id)
        .await
        .unwrap()
        .status
        .as_str()
        != "confirmed"
    {
        assert!(Instant::now() < deadline, "the order was not confirmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The stale run wakes up believing it holds the lease, right after
    // its authorization (so it never wrote it), and captures again.
    let done = store.saga_of(order_id).await.unwrap().unwrap();
    let mut zombie = stale.clone();
    zombie.data.progress = zombie
        .data
        .progress
        .clone()
        .acted(&commerce_domain::saga::FULFILMENT);
    zombie.data.authorization_id = done.data.authorization_id.clone();
    zombie.lease_owner = Some("a".into());
    zombie.lease_until = Some(chrono::Utc::now() + chrono::Duration::seconds(30));
    a.sagas().drive_saga(zombie, None).await;

    let ledger = ledger_of(&sim.base, &order_id.to_string()).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["captures"], 1, "{ledger:?}");
    assert_eq!(ledger[0]["status"], "captured");
    let product = store.get_product(&sku).await.unwrap().unwrap();
    assert_eq!((product.on_hand, product.reserved), (3, 0));
    let saga = store.saga_of(order_id).await.unwrap().unwrap();
    assert_eq!(format!("{:?}", saga.status()), "Completed");
    let events = store.load_stream(order_id).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "OrderConfirmed")
            .count(),
        1
    );
}

/// A gateway (a real HTTP server in this process) that answers 500 to
/// everything until healed, then authorizes and captures.
async fn gateway_down_until_healed() -> (String, Arc<AtomicBool>) {
    use axum::extract::Path;
    use axum::response::IntoResponse;
    use axum::routing::post;
    let healed = Arc::new(AtomicBool::new(false));
    let answer = |healed: Arc<AtomicBool>, body: Value| {
        if healed.load(Ordering::SeqCst) {
            (StatusCode::OK, axum::Json(body)).into_response()
        } else {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    let (h1, h2) = (healed.clone(), healed.clone());
    let router = axum::Router::new()
        .route(
            "/v1/authorizations",
            post(move |axum::Json(body): axum::Json<Value>| async move {
                let auth = json!({"id": format!("auth-{}", body["order_id"].as_str().unwrap_or("-")),
                    "order_id": body["order_id"], "amount": body["amount"], "currency": body["currency"],
                    "status": "authorized", "captured_amount": null, "refunded_amount": null});
                answer(h1, auth)
            }),
        )
        .route(
            "/v1/authorizations/{id}/capture",
            post(move |Path(id): Path<String>, axum::Json(body): axum::Json<Value>| async move {
                let order = id.trim_start_matches("auth-").to_owned();
                let auth = json!({"id": id, "order_id": order, "amount": body["amount"], "currency": "EUR",
                    "status": "captured", "captured_amount": body["amount"], "refunded_amount": null});
                answer(h2, auth)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, healed)
}

/// SIGTERM on a replica whose saga waits for the gateway: it stops at
/// once and gives its lease back, so the other replica finishes the saga
/// long before the (two-minute) lease would have run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_hands_its_sagas_over_at_once() {
    let (gateway, healed) = gateway_down_until_healed().await;
    let mut app = service(
        Backend::Postgres,
        &gateway,
        &[
            "--saga-lease-secs",
            "120",
            "--saga-step-deadline-ms",
            "60000",
        ],
    )
    .await;
    let (_replica, replica_base) = app.spawn_replica();
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (status, _, order) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_ok"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    // The placing replica drives the saga and retries the gateway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        app.terminate(Duration::from_secs(10)),
        "serve did not stop on SIGTERM"
    );
    healed.store(true, Ordering::SeqCst);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = app
            .client
            .get(format!("{replica_base}/v1/orders/{id}"))
            .bearer_auth(app.admin())
            .send()
            .await
            .unwrap();
        let order: Value = resp.json().await.unwrap();
        if order["status"] == "confirmed" {
            break;
        }
        assert!(Instant::now() < deadline, "not taken over: {order}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operator's saga API and `Prefer: wait` refuse bad input with a
/// problem, and act only on sagas in a state the action fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_api_refuses_bad_input_and_wrong_states() {
    let sim = PaymentSim::spawn(&[]);
    let app = service(Backend::Sqlite, &sim.base, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let admin = app.admin();
    let problem = |status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value| {
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{status} {body}"
        );
        assert_eq!(body["status"], status.as_u16(), "{body}");
    };

    // Listing: an unknown status is a bad request, a limit out of range
    // is invalid.
    let (status, headers, body) = app.get("/v1/sagas?status=paused", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    problem(status, &headers, &body);
    for limit in ["0", "100000"] {
        let (status, headers, body) = app.get(&format!("/v1/sagas?limit={limit}"), &admin).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit {limit}: {body}"
        );
        problem(status, &headers, &body);
    }

    // A saga that completed cannot be retried (it needs no attention),
    // and an abort's reason has a size limit, checked first.
    let (status, _, order) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_ok"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap();
    let saga = wait_for_saga(&app, id, "completed", Duration::from_secs(10)).await;
    let saga_id = saga["saga_id"].as_str().unwrap();
    let (status, headers, body) = app
        .post(&format!("/v1/sagas/{saga_id}/retry"), &admin)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    problem(status, &headers, &body);
    let long = "x".repeat(501);
    let (status, headers, body) = app
        .post(&format!("/v1/sagas/{saga_id}/abort?reason={long}"), &admin)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    problem(status, &headers, &body);
    let unknown = uuid::Uuid::now_v7();
    let (status, _, body) = app.get(&format!("/v1/sagas/{unknown}"), &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A query parameter the route does not take is refused, not ignored.
    for path in [
        "/v1/sagas?status=running&colour=red",
        "/v1/orders?limit=5&sort=asc",
        "/v1/events?from=0",
    ] {
        let (status, headers, body) = app.get(path, &admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        problem(status, &headers, &body);
        assert!(
            body["detail"].as_str().unwrap().contains("unknown field"),
            "{body}"
        );
    }
}
