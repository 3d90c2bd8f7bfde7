//! Money and stock around payment and cancellation, end to end: paying
//! later, the per-customer limit on unpaid holds, a cancel of a confirmed
//! order (refund and restock), partial refunds with returns, refunds the
//! gateway will not make, zero totals, long system reasons, and a cancel
//! racing a shipment. Each checks the order, the stock and the payment
//! simulator's ledger agree.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, PaymentSim, TestApp, ledger_of, serve};

/// A service whose payments go to `sim`, with fast retries; `extra`
/// holds more flag/value pairs.
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

async fn on_hand(app: &TestApp, sku: &str) -> (i64, i64) {
    let (status, _, p) = app.get(&format!("/v1/products/{sku}"), &app.admin()).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    (
        p["on_hand"].as_i64().unwrap(),
        p["reserved"].as_i64().unwrap(),
    )
}

async fn order(app: &TestApp, id: &str) -> Value {
    let (status, _, order) = app.get(&format!("/v1/orders/{id}"), &app.admin()).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    order
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = order(app, id).await;
        if o["status"] == status {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} stays {}",
            o["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pay(
    app: &TestApp,
    token: &str,
    id: &str,
    payment: &str,
    key: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut headers = vec![("Prefer", "wait=10")];
    if let Some(key) = key {
        headers.push(("Idempotency-Key", key));
    }
    app.call(
        Method::POST,
        &format!("/v1/orders/{id}/pay"),
        Some(token),
        Some(json!({"payment": {"token": payment}})),
        &headers,
    )
    .await
}

async fn refund(app: &TestApp, id: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, _, body) = app
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/refund"),
            Some(&app.admin()),
            body,
            &[("Prefer", "wait=10")],
        )
        .await;
    (status, body)
}

/// Places and pays `qty` of `sku` with `tok_ok`, waiting for the outcome.
async fn confirmed_order(app: &TestApp, token: &str, sku: &str, qty: i64) -> String {
    let (status, _, placed) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(token),
            Some(
                json!({"items": [{"sku": sku, "quantity": qty}], "currency": "EUR",
                        "payment": {"token": "tok_ok"}}),
            ),
            &[("Prefer", "wait=10")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "confirmed", "{placed}");
    placed["id"].as_str().unwrap().to_owned()
}

both_backends!(
    an_unpaid_order_is_paid_later_once,
    a_cancelled_confirmed_order_is_refunded_and_restocked,
    partial_refunds_with_returns_add_up_to_what_was_paid,
);

async fn an_unpaid_order_is_paid_later_once(backend: Backend) {
    let sim = PaymentSim::spawn(&[]);
    let app = service(backend, &sim.base, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();

    // Placed without payment: the stock is held, nothing is charged.
    let (status, _, placed) = app.place(&token, &[("MUG", 2)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "reserved");
    let id = placed["id"].as_str().unwrap();
    assert_eq!(on_hand(&app, "MUG").await, (10, 2));
    assert!(ledger_of(&sim.base, id).await.is_empty());

    // Another customer cannot pay it (it is not theirs to see).
    let (_, stranger) = app.customer();
    let (status, _, problem) = pay(&app, &stranger, id, "tok_ok", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");

    // Paid: the saga runs, the order is confirmed, the stock leaves.
    let (status, headers, paid) = pay(&app, &token, id, "tok_ok", Some("pay-1")).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "confirmed", "{paid}");
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(on_hand(&app, "MUG").await, (8, 0));

    // Paying again, with the same key or without one, charges nothing more.
    let (status, headers, again) = pay(&app, &token, id, "tok_ok", Some("pay-1")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, headers, again) = pay(&app, &token, id, "tok_ok", None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["status"], "confirmed");
    let ledger = ledger_of(&sim.base, id).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["captures"], 1, "{ledger:?}");
    assert_eq!(ledger[0]["captured_amount"], "25.00", "{ledger:?}");
    // The key names this payment: another request with it is refused.
    let (status, _, problem) = pay(&app, &token, id, "tok_decline", Some("pay-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");

    // A cancelled order cannot be paid: a 409 problem, nothing charged.
    let (_, _, placed) = app.place(&token, &[("MUG", 1)], None).await;
    let cancelled = placed["id"].as_str().unwrap();
    let (status, _, _) = app.delete(&format!("/v1/orders/{cancelled}"), &token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, problem) = pay(&app, &token, cancelled, "tok_ok", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "/problems/illegal-transition", "{problem}");
    assert!(ledger_of(&sim.base, cancelled).await.is_empty());

    // A declined payment fails the order and gives the units back; the
    // failed order cannot be paid again.
    let (_, _, placed) = app.place(&token, &[("MUG", 3)], None).await;
    let declined = placed["id"].as_str().unwrap();
    let (status, _, failed) = pay(&app, &token, declined, "tok_decline", None).await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(on_hand(&app, "MUG").await, (8, 0));
    let (status, _, problem) = pay(&app, &token, declined, "tok_ok", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // Bad input is a 4xx problem.
    let (status, _, problem) = app
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/pay"),
            Some(&token),
            Some(json!({"payment": {}})),
            &[],
        )
        .await;
    assert!(status.is_client_error(), "{status} {problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_cannot_be_paid() {
    let sim = PaymentSim::spawn(&[]);
    let app = service(
        Backend::Sqlite,
        &sim.base,
        &[
            "--reservation-ttl-secs",
            "1",
            "--reservation-sweep-ms",
            "100",
        ],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (_, _, placed) = app.place(&token, &[("MUG", 2)], None).await;
    let id = placed["id"].as_str().unwrap();
    wait_for_status(&app, id, "failed").await;
    let (status, _, problem) = pay(&app, &token, id, "tok_ok", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(ledger_of(&sim.base, id).await.is_empty());
    assert_eq!(on_hand(&app, "MUG").await, (10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_may_hold_only_so_much_unpaid() {
    let sim = PaymentSim::spawn(&[]);
    let app = service(
        Backend::Postgres,
        &sim.base,
        &["--max-unpaid-orders", "2", "--max-unpaid-units", "5"],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();
    let (_, _, first) = app.place(&token, &[("MUG", 1)], None).await;
    let (status, _, _) = app.place(&token, &[("MUG", 1)], None).await;
    assert_eq!(status, StatusCode::CREATED);
    // A third unpaid order is refused with a problem that says why.
    let (status, _, problem) = app.place(&token, &[("MUG", 1)], None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "/problems/unpaid-limit", "{problem}");
    assert_eq!(problem["max_unpaid_orders"], 2);
    // Another customer is not affected, and paid orders do not count.
    let (_, other) = app.customer();
    let (status, _, _) = app.place(&other, &[("MUG", 5)], None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, problem) = app.place(&other, &[("MUG", 1)], None).await;
    assert_eq!(status, StatusCode::CONFLICT, "units: {problem}");
    confirmed_order(&app, &token, "MUG", 1).await;
    // Paying one frees its place.
    let first = first["id"].as_str().unwrap();
    let (status, _, paid) = pay(&app, &token, first, "tok_ok", None).await;
    assert_eq!(paid["status"], "confirmed", "{status} {paid}");
    let (status, _, placed) = app.place(&token, &[("MUG", 1)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
}

async fn a_cancelled_confirmed_order_is_refunded_and_restocked(backend: Backend) {
    let sim = PaymentSim::spawn(&[]);
    let app = service(backend, &sim.base, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 5).await;
    let (_, token) = app.customer();
    let id = confirmed_order(&app, &token, "MUG", 2).await;
    assert_eq!(on_hand(&app, "MUG").await, (3, 0));

    let (status, _, cancelled) = app.delete(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["refunded"], "25.00", "{cancelled}");
    assert_eq!(on_hand(&app, "MUG").await, (5, 0));
    let ledger = ledger_of(&sim.base, &id).await;
    assert_eq!(ledger[0]["status"], "refunded", "{ledger:?}");
    assert_eq!(ledger[0]["refunded_amount"], "25.00", "{ledger:?}");

    // The story is in the events: cancelled with the units restocked,
    // the refund asked, then made.
    let (_, _, events) = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let types: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(
        types.ends_with(&["OrderCancelled", "OrderRefundRequested", "OrderRefunded"]),
        "{types:?}"
    );
    // Cancelling again changes nothing.
    let (status, _, _) = app.delete(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(on_hand(&app, "MUG").await, (5, 0));
}

async fn partial_refunds_with_returns_add_up_to_what_was_paid(backend: Backend) {
    let sim = PaymentSim::spawn(&[]);
    let app = service(backend, &sim.base, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 10).await;
    app.put_product("CUP", "5.00", "EUR", 10).await;
    let (_, token) = app.customer();
    let (_, _, placed) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(
                json!({"items": [{"sku": "MUG", "quantity": 2}, {"sku": "CUP", "quantity": 2}],
                        "currency": "EUR", "payment": {"token": "tok_ok"}}),
            ),
            &[("Prefer", "wait=10")],
        )
        .await;
    let id = placed["id"].as_str().unwrap();
    assert_eq!(placed["status"], "confirmed", "{placed}");
    let (status, _, _) = app
        .post(&format!("/v1/orders/{id}/ship"), &app.admin())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(on_hand(&app, "MUG").await, (8, 0));

    // A reason over 500 characters is refused before anything moves; the
    // document says so (maxLength), and a body that is not an object too.
    let long = "é".repeat(commerce_domain::order::MAX_REASON_LEN + 1);
    let (status, body) = refund(&app, id, Some(json!({"amount": "1.00", "reason": long}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = refund(&app, id, Some(json!(["1.00"]))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(on_hand(&app, "MUG").await, (8, 0));

    // A return of one mug: 10.00 back, the mug back on the shelf.
    let (status, first) = refund(
        &app,
        id,
        Some(json!({"amount": "10.00", "reason": "returned",
                    "lines": [{"sku": "MUG", "quantity": 1, "restock": true}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "shipped");
    assert_eq!(first["refunded"], "10.00");
    assert_eq!(on_hand(&app, "MUG").await, (9, 0));
    // A goodwill refund, nothing returned.
    let (status, second) = refund(&app, id, Some(json!({"amount": "2.50"}))).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["refunded"], "12.50");
    assert_eq!(on_hand(&app, "CUP").await, (8, 0));

    // Never more than was paid, never more units than were sold.
    let (status, problem) = refund(&app, id, Some(json!({"amount": "17.51"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "/problems/refund-too-large");
    assert_eq!(problem["refundable"], "17.50");
    let (status, problem) = refund(
        &app,
        id,
        Some(json!({"amount": "0", "lines": [{"sku": "MUG", "quantity": 2, "restock": true}]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, problem) = refund(
        &app,
        id,
        Some(json!({"amount": "1", "lines": [{"sku": "NOPE", "quantity": 1}]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, problem) = refund(&app, id, Some(json!({"amount": "one"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    // Customers cannot refund.
    let (status, _, _) = app.post(&format!("/v1/orders/{id}/refund"), &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The rest: the order is refunded, the ledger agrees.
    let (status, last) = refund(&app, id, None).await;
    assert_eq!(status, StatusCode::OK, "{last}");
    assert_eq!(last["status"], "refunded");
    assert_eq!(last["refunded"], "30.00");
    let ledger = ledger_of(&sim.base, id).await;
    assert_eq!(ledger[0]["status"], "refunded", "{ledger:?}");
    assert_eq!(ledger[0]["refunded_amount"], "30.00", "{ledger:?}");
    assert_eq!(ledger[0]["refunds"], 3, "{ledger:?}");
    let (status, problem) = refund(&app, id, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // Shipped units not marked for return stay out.
    assert_eq!(on_hand(&app, "MUG").await, (9, 0));
    assert_eq!(on_hand(&app, "CUP").await, (8, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_total_confirms_without_the_gateway() {
    let sim = PaymentSim::spawn(&[]);
    let app = service(Backend::Sqlite, &sim.base, &[]).await;
    app.put_product("FREEBIE", "0.00", "EUR", 3).await;
    let (_, token) = app.customer();
    let id = confirmed_order(&app, &token, "FREEBIE", 1).await;
    assert!(ledger_of(&sim.base, &id).await.is_empty());
    assert_eq!(on_hand(&app, "FREEBIE").await, (2, 0));
    let (_, _, saga) = app.get("/v1/sagas?limit=10", &app.admin()).await;
    let saga_id = saga["items"][0]["saga_id"].as_str().unwrap().to_owned();
    let (_, _, saga) = app.get(&format!("/v1/sagas/{saga_id}"), &app.admin()).await;
    let details: Vec<String> = saga["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["detail"].as_str().map(str::to_owned))
        .collect();
    assert!(
        details.iter().any(|d| d.contains("the total is zero")),
        "{details:?}"
    );
    // Cancelling it puts the unit back with nothing to refund.
    let (status, _, cancelled) = app.delete(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(on_hand(&app, "FREEBIE").await, (3, 0));
}

/// A gateway that authorizes and captures, but refuses every refund.
async fn gateway_refusing_refunds() -> String {
    use axum::routing::post;
    let app = axum::Router::new()
        .route(
            "/v1/authorizations",
            post(|body: axum::Json<Value>| async move {
                axum::Json(
                    json!({"id": "auth_1", "order_id": body["order_id"], "amount": body["amount"],
                    "currency": body["currency"], "status": "authorized",
                    "captured_amount": null, "refunded_amount": null}),
                )
            }),
        )
        .route(
            "/v1/authorizations/{id}/capture",
            post(|body: axum::Json<Value>| async move {
                axum::Json(
                    json!({"id": "auth_1", "order_id": uuid::Uuid::nil(), "amount": body["amount"],
                    "currency": "EUR", "status": "captured",
                    "captured_amount": body["amount"], "refunded_amount": null}),
                )
            }),
        )
        .route(
            "/v1/authorizations/{id}/refund",
            post(|| async {
                (
                    StatusCode::CONFLICT,
                    axum::Json(json!({"type": "/problems/refund-window-closed",
                                      "title": "The refund window has closed"})),
                )
            }),
        );
    serve(app).await
}

/// A refund the gateway refuses leaves the order as it was, the refund
/// recorded as asked; its saga waits for an operator, whose abort records
/// the refund as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_gateway_refuses_waits_for_an_operator() {
    let gateway = gateway_refusing_refunds().await;
    let app = service(Backend::Postgres, &gateway, &[]).await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let id = confirmed_order(&app, &token, "MUG", 1).await;

    let (status, problem) = refund(&app, &id, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "/problems/refund-failed", "{problem}");
    let saga_id = problem["saga_id"].as_str().unwrap().to_owned();
    let o = order(&app, &id).await;
    assert_eq!(
        (o["status"].as_str(), o["refunded"].as_str()),
        (Some("confirmed"), Some("0.00"))
    );
    // One refund at a time: the stuck one must be settled first; the
    // order cannot ship meanwhile either.
    let (status, problem) = refund(&app, &id, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, _, _) = app
        .post(&format!("/v1/orders/{id}/ship"), &app.admin())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, _, saga) = app
        .post(
            &format!("/v1/sagas/{saga_id}/abort?reason={}", "x".repeat(490)),
            &app.admin(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saga}");
    let (_, _, events) = app
        .get(&format!("/v1/orders/{id}/events"), &app.admin())
        .await;
    let last = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event_type"], "OrderRefundFailed", "{last}");
    let (status, _, shipped) = app
        .post(&format!("/v1/orders/{id}/ship"), &app.admin())
        .await;
    assert_eq!(status, StatusCode::OK, "{shipped}");
}

/// A long operator reason is cut, never refused, and the order ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_abort_reason_still_ends_the_order() {
    // Nothing listens here: the saga keeps retrying its authorization.
    let app = service(
        Backend::Sqlite,
        "http://127.0.0.1:9",
        &["--saga-step-deadline-ms", "60000"],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (_, _, placed) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_ok"))
        .await;
    let id = placed["id"].as_str().unwrap();
    let (_, _, page) = app.get("/v1/sagas?limit=10", &app.admin()).await;
    let saga_id = page["items"][0]["saga_id"].as_str().unwrap().to_owned();
    let (status, _, saga) = app
        .post(
            &format!("/v1/sagas/{saga_id}/abort?reason={}", "r".repeat(490)),
            &app.admin(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saga}");
    let o = wait_for_status(&app, id, "failed").await;
    let reason = o["status_reason"].as_str().unwrap();
    assert_eq!(reason.chars().count(), 500, "{reason}");
    assert!(reason.ends_with('…'));
    assert_eq!(on_hand(&app, "MUG").await, (10, 0));
}

/// A cancel and a shipment racing each other end in one story: shipped
/// and not refunded, or cancelled, refunded and restocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_shipment_ends_in_one_story() {
    let sim = PaymentSim::spawn(&[]);
    let app = service(Backend::Postgres, &sim.base, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 100).await;
    let (_, token) = app.customer();
    let mut shipped = 0;
    for _ in 0..8 {
        let id = confirmed_order(&app, &token, "MUG", 1).await;
        let order_path = format!("/v1/orders/{id}");
        let cancel = app.delete(&order_path, &token);
        let admin = app.admin();
        let ship_path = format!("/v1/orders/{id}/ship");
        let ship = app.post(&ship_path, &admin);
        let ((c, _, _), (s, _, _)) = tokio::join!(cancel, ship);
        assert_ne!(
            c == StatusCode::OK,
            s == StatusCode::OK,
            "cancel {c}, ship {s}"
        );
        let o = order(&app, &id).await;
        let ledger = ledger_of(&sim.base, &id).await;
        if s == StatusCode::OK {
            shipped += 1;
            assert_eq!(o["status"], "shipped");
            assert_eq!(o["refunded"], "0.00");
            assert_eq!(ledger[0]["status"], "captured", "{ledger:?}");
        } else {
            assert_eq!(o["status"], "cancelled");
            assert_eq!(o["refunded"], "10.00");
            assert_eq!(ledger[0]["status"], "refunded", "{ledger:?}");
        }
    }
    // Every unit is either out with a shipped order or back on the shelf.
    assert_eq!(on_hand(&app, "MUG").await, (100 - shipped, 0));
}

/// A gateway that authorizes and captures, and whose first refund never
/// answers (the service is killed while it waits); later refunds answer,
/// and every refund's idempotency key is kept.
async fn gateway_hanging_the_first_refund() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::routing::post;
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = keys.clone();
    let app = axum::Router::new()
        .route(
            "/v1/authorizations",
            post(|body: axum::Json<Value>| async move {
                axum::Json(
                    json!({"id": "auth_1", "order_id": body["order_id"], "amount": body["amount"],
                    "currency": body["currency"], "status": "authorized",
                    "captured_amount": null, "refunded_amount": null}),
                )
            }),
        )
        .route(
            "/v1/authorizations/{id}/capture",
            post(|body: axum::Json<Value>| async move {
                axum::Json(
                    json!({"id": "auth_1", "order_id": uuid::Uuid::nil(), "amount": body["amount"],
                    "currency": "EUR", "status": "captured",
                    "captured_amount": body["amount"], "refunded_amount": null}),
                )
            }),
        )
        .route(
            "/v1/authorizations/{id}/refund",
            post(
                move |headers: reqwest::header::HeaderMap, body: axum::Json<Value>| {
                    let seen = seen.clone();
                    async move {
                        let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                        let first = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(key);
                            seen.len() == 1
                        };
                        if first {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        axum::Json(json!({"id": "auth_1", "order_id": uuid::Uuid::nil(),
                            "amount": body["amount"], "currency": "EUR", "status": "refunded",
                            "captured_amount": body["amount"], "refunded_amount": body["amount"]}))
                    }
                },
            ),
        );
    (serve(app).await, keys)
}

/// The service dies (kill -9) while the gateway works on a refund: the
/// refund was recorded first, so the restarted service's saga worker asks
/// again with the same idempotency key, and the order ends refunded and
/// restocked, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_interrupted_by_a_crash_is_finished_with_the_same_key() {
    let (gateway, keys) = gateway_hanging_the_first_refund().await;
    let mut app = service(
        Backend::Postgres,
        &gateway,
        &[
            "--saga-lease-secs",
            "1",
            "--payment-timeout-ms",
            "60000",
            "--saga-step-deadline-ms",
            "60000",
        ],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let id = confirmed_order(&app, &token, "MUG", 2).await;
    assert_eq!(on_hand(&app, "MUG").await, (8, 0));

    let (status, _, pending) = app
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/refund"),
            Some(&app.admin()),
            None,
            &[("Prefer", "wait=1")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(pending["refunded"], "0.00");
    assert_eq!(
        keys.lock().unwrap().len(),
        1,
        "the gateway is working on it"
    );

    app.restart();
    let o = wait_for_status(&app, &id, "refunded").await;
    assert_eq!(o["refunded"], "25.00", "{o}");
    assert_eq!(
        on_hand(&app, "MUG").await,
        (10, 0),
        "a full refund before shipping restocks"
    );
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        keys[0], keys[1],
        "the refund is asked again with the same key"
    );
    let (_, _, events) = app
        .get(&format!("/v1/orders/{id}/events"), &app.admin())
        .await;
    let refunded = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "OrderRefunded")
        .count();
    assert_eq!(refunded, 1);
}

/// A gateway whose first capture is made but never answered (the service
/// is killed while it waits), and which refuses to void a captured
/// authorization, as a real one does.
async fn gateway_capturing_silently() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::routing::post;
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let (on_capture, on_void, on_refund) = (calls.clone(), calls.clone(), calls.clone());
    let authorization = |status: &str, amount: &Value| {
        json!({"id": "auth_1", "order_id": uuid::Uuid::nil(), "amount": amount, "currency": "EUR",
               "status": status, "captured_amount": null, "refunded_amount": null})
    };
    let app = axum::Router::new()
        .route(
            "/v1/authorizations",
            post(move |body: axum::Json<Value>| async move {
                axum::Json(authorization("authorized", &body["amount"]))
            }),
        )
        .route(
            "/v1/authorizations/{id}/capture",
            post(move || async move {
                on_capture.lock().unwrap().push("capture".into());
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route(
            "/v1/authorizations/{id}/void",
            post(move || async move {
                on_void.lock().unwrap().push("void".into());
                (
                    StatusCode::CONFLICT,
                    axum::Json(json!({"type": "/problems/illegal-transition",
                        "title": "Conflict", "status": 409,
                        "detail": "cannot void an authorization that is Captured"})),
                )
            }),
        )
        .route(
            "/v1/authorizations/{id}/refund",
            post(move |body: axum::Json<Value>| async move {
                on_refund.lock().unwrap().push("refund".into());
                axum::Json(authorization("refunded", &body["amount"]))
            }),
        );
    (serve(app).await, calls)
}

/// Found by the model-based test: a replica captured and died before
/// recording it, then the customer cancelled. The saga turns back; the
/// gateway refuses to void what it captured, so the saga refunds it
/// instead of waiting for an operator, and the order ends cancelled with
/// nothing kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_nobody_recorded_is_refunded_when_the_order_is_cancelled() {
    let (gateway, calls) = gateway_capturing_silently().await;
    let mut app = service(
        Backend::Sqlite,
        &gateway,
        &[
            "--saga-lease-secs",
            "1",
            "--payment-timeout-ms",
            "60000",
            "--saga-step-deadline-ms",
            "60000",
        ],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let (_, _, placed) = app
        .place_paying(&token, &[("MUG", 1)], None, Some("tok_ok"))
        .await;
    let id = placed["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !calls.lock().unwrap().contains(&"capture".to_owned()) {
        assert!(Instant::now() < deadline, "the capture was never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed while the gateway captures; nothing recorded the capture.
    app.restart();
    let (status, _, cancelled) = app.delete(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, _, page) = app.get("/v1/sagas?limit=10", &app.admin()).await;
        let saga = &page["items"][0];
        if saga["status"] == "compensated" {
            break;
        }
        assert_ne!(saga["status"], "needs_attention", "{saga}");
        assert!(
            Instant::now() < deadline,
            "the saga is still {}",
            saga["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.ends_with(&["void".to_owned(), "refund".to_owned()]),
        "{calls:?}"
    );
    assert_eq!(on_hand(&app, "MUG").await, (10, 0));
}

/// `Prefer: wait` is capped below the request timeout: asked to wait 30 s
/// for a saga whose gateway never answers in time, the service answers
/// the order it placed (201, still reserved) before the request deadline,
/// never a 408 for an order that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_wait_answers_the_placed_order_before_the_request_deadline() {
    use axum::routing::post;
    let gateway = serve(axum::Router::new().route(
        "/v1/authorizations",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::SERVICE_UNAVAILABLE
        }),
    ))
    .await;
    let app = service(
        Backend::Sqlite,
        &gateway,
        &[
            "--payment-timeout-ms",
            "90000",
            "--saga-step-deadline-ms",
            "90000",
        ],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, token) = app.customer();
    let started = Instant::now();
    let body = json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR",
                      "payment": {"token": "tok_ok"}});
    let (status, _, placed) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(body),
            &[("Prefer", "wait=30")],
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["status"], "reserved", "{placed}");
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(29),
        "answered after {waited:?}"
    );
    assert_eq!(on_hand(&app, "MUG").await, (10, 1));
}
