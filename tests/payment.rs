//! The payment gateway client ([`HttpPaymentGateway`]) against the real
//! simulator: `commerce payment-sim` spawned on port 0, one per test, so
//! each test has a ledger of its own. The ledger routes are read raw, as
//! the documented JSON, to assert what the gateway really did.

use std::time::{Duration, Instant};

use commerce_app::ports::{
    Authorization, AuthorizationStatus, AuthorizeRequest, PaymentError, PaymentGateway,
};
use commerce_domain::Currency;
use commerce_payment::{DEFAULT_TIMEOUT, HttpPaymentGateway};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::PaymentSim;

/// A simulator and a client of it.
struct Gateway {
    sim: PaymentSim,
    client: HttpPaymentGateway,
    http: reqwest::Client,
}

impl Gateway {
    fn start(args: &[&str]) -> Gateway {
        let sim = PaymentSim::spawn(args);
        let client = HttpPaymentGateway::new(&sim.base, DEFAULT_TIMEOUT).expect("client");
        Gateway {
            sim,
            client,
            http: reqwest::Client::new(),
        }
    }

    /// Another client of the same simulator, with another timeout.
    fn client_with_timeout(&self, timeout: Duration) -> HttpPaymentGateway {
        HttpPaymentGateway::new(&self.sim.base, timeout).expect("client")
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.sim.base))
            .send()
            .await
            .expect("GET");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The ledger entries of an order.
    async fn ledger_of(&self, order_id: Uuid) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/ledger/orders/{order_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().expect("a list").clone()
    }

    /// An authorization of `amount` EUR with `tok_ok`.
    async fn authorized(&self, amount: &str) -> Authorization {
        let a = self
            .client
            .authorize(request("tok_ok", amount), &key())
            .await
            .expect("authorize");
        assert_eq!(a.status, AuthorizationStatus::Authorized);
        a
    }
}

fn request(token: &str, amount: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        order_id: Uuid::new_v4(),
        amount: dec(amount),
        currency: Currency::parse("EUR").unwrap(),
        token: token.to_owned(),
    }
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn key() -> String {
    Uuid::new_v4().to_string()
}

#[tokio::test]
async fn each_token_maps_to_its_outcome() {
    let gw = Gateway::start(&[]);

    let ok = request("tok_ok", "12.5");
    let a = gw.client.authorize(ok.clone(), &key()).await.unwrap();
    assert_eq!(
        (a.order_id, a.amount, a.status, a.captured_amount),
        (
            ok.order_id,
            dec("12.50"),
            AuthorizationStatus::Authorized,
            None
        )
    );
    assert_eq!(a.amount.to_string(), "12.50");

    let declined = request("tok_decline", "12.50");
    match gw.client.authorize(declined.clone(), &key()).await {
        Err(PaymentError::Declined { reason }) => assert_eq!(reason, "card_declined"),
        other => panic!("tok_decline: {other:?}"),
    }
    let entries = gw.ledger_of(declined.order_id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["status"], "declined");

    let error = request("tok_error", "12.50");
    let err = gw
        .client
        .authorize(error.clone(), &key())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "tok_error: {err:?}");
    assert!(format!("{:#}", anyhow::Error::new(err)).contains("500"));
    assert!(gw.ledger_of(error.order_id).await.is_empty());

    let unknown = request("tok_unknown", "12.50");
    let err = gw.client.authorize(unknown, &key()).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("422") && m.contains("invalid-token")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_gateway_that_does_not_answer_is_transient_within_the_timeout() {
    let gw = Gateway::start(&[]);
    let timeout = Duration::from_millis(500);
    let client = gw.client_with_timeout(timeout);
    let request = request("tok_timeout", "10");
    let started = Instant::now();
    let err = client.authorize(request.clone(), &key()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        format!("{:#}", anyhow::Error::new(err)).contains("timed out"),
        "not reported as a timeout"
    );
    // Not before the timeout, and not long after (the simulator holds
    // tok_timeout for 60 s); slack for a loaded 2-core machine.
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert!(gw.ledger_of(request.order_id).await.is_empty());
}

#[tokio::test]
async fn a_slow_gateway_answers_within_the_timeout_and_a_retry_after_giving_up_is_safe() {
    let gw = Gateway::start(&["--slow-ms", "400"]);

    let started = Instant::now();
    let a = gw
        .client
        .authorize(request("tok_slow", "5"), &key())
        .await
        .expect("tok_slow within the default 2 s");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(a.status, AuthorizationStatus::Authorized);

    // A client that gives up first sees a transient error; its retry with
    // the same key yields one authorization, whatever became of the first
    // request at the simulator.
    let impatient = gw.client_with_timeout(Duration::from_millis(100));
    let request = request("tok_slow", "5");
    let key = key();
    let err = impatient
        .authorize(request.clone(), &key)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let retried = gw.client.authorize(request.clone(), &key).await.unwrap();
    let again = gw.client.authorize(request.clone(), &key).await.unwrap();
    assert_eq!(retried, again);
    let entries = gw.ledger_of(request.order_id).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["id"], retried.id.as_str());
}

#[tokio::test]
async fn authorize_is_idempotent_per_key() {
    let gw = Gateway::start(&[]);
    let request = request("tok_ok", "20.00");
    let key = key();
    let first = gw.client.authorize(request.clone(), &key).await.unwrap();
    let second = gw.client.authorize(request.clone(), &key).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(gw.ledger_of(request.order_id).await.len(), 1);

    // The same key for another request is refused, and changes nothing.
    let mut other = request.clone();
    other.amount = dec("21.00");
    let err = gw.client.authorize(other, &key).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("422") && m.contains("idempotency-key-reused")),
        "{err:?}"
    );
    let entries = gw.ledger_of(request.order_id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["amount"], "20.00");

    // Another key is another authorization.
    let third = gw
        .client
        .authorize(request.clone(), &self::key())
        .await
        .unwrap();
    assert_ne!(third.id, first.id);
    assert_eq!(gw.ledger_of(request.order_id).await.len(), 2);
}

#[tokio::test]
async fn a_capture_is_made_exactly_once() {
    let gw = Gateway::start(&[]);
    let a = gw.authorized("30.00").await;
    let key = key();
    let captured = gw.client.capture(&a.id, dec("30"), &key).await.unwrap();
    assert_eq!(captured.status, AuthorizationStatus::Captured);
    assert_eq!(captured.captured_amount, Some(dec("30.00")));

    // A retry with the same key: the same answer, nothing done again.
    let retried = gw.client.capture(&a.id, dec("30"), &key).await.unwrap();
    assert_eq!(retried, captured);
    // Another key: refused.
    let err = gw
        .client
        .capture(&a.id, dec("30"), &self::key())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("409")),
        "{err:?}"
    );

    let entries = gw.ledger_of(a.order_id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["status"], "captured");
    assert_eq!(entries[0]["captures"], 1);
    assert_eq!(entries[0]["captured_amount"], "30.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_captures_with_different_keys_capture_once() {
    let gw = Gateway::start(&[]);
    let a = gw.authorized("9.99").await;
    let attempts = (0..8).map(|_| {
        let client = gw.client.clone();
        let id = a.id.clone();
        tokio::spawn(async move { client.capture(&id, dec("9.99"), &key()).await })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(c) => {
                assert_eq!(c.status, AuthorizationStatus::Captured);
                won += 1;
            }
            Err(PaymentError::Rejected(m)) => assert!(m.contains("409"), "{m}"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(gw.ledger_of(a.order_id).await[0]["captures"], 1);
}

#[tokio::test]
async fn a_voided_authorization_is_never_captured() {
    let gw = Gateway::start(&[]);
    let a = gw.authorized("15.00").await;
    let voided = gw.client.void(&a.id, &key()).await.unwrap();
    assert_eq!(voided.status, AuthorizationStatus::Voided);
    let err = gw
        .client
        .capture(&a.id, dec("15"), &key())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("409") && m.contains("illegal-transition")),
        "{err:?}"
    );
    let entries = gw.ledger_of(a.order_id).await;
    assert_eq!(
        (
            &entries[0]["status"],
            &entries[0]["captures"],
            &entries[0]["voids"]
        ),
        (&json!("voided"), &json!(0), &json!(1))
    );
}

#[tokio::test]
async fn a_refund_follows_a_capture() {
    let gw = Gateway::start(&[]);
    let a = gw.authorized("40.00").await;
    let err = gw
        .client
        .refund(&a.id, dec("40"), &key())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("409")),
        "refund before capture: {err:?}"
    );
    // A capture of more than the authorization is refused; of less, fine.
    let err = gw
        .client
        .capture(&a.id, dec("40.01"), &key())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("422")),
        "{err:?}"
    );
    gw.client.capture(&a.id, dec("35"), &key()).await.unwrap();
    let err = gw
        .client
        .refund(&a.id, dec("35.01"), &key())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("422")),
        "refund above the capture: {err:?}"
    );
    let refunded = gw.client.refund(&a.id, dec("35"), &key()).await.unwrap();
    assert_eq!(refunded.status, AuthorizationStatus::Refunded);
    assert_eq!(refunded.refunded_amount, Some(dec("35.00")));
    let err = gw.client.void(&a.id, &key()).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("409")),
        "{err:?}"
    );

    let entry = &gw.ledger_of(a.order_id).await[0];
    assert_eq!(
        (
            &entry["captures"],
            &entry["refunds"],
            &entry["refunded_amount"]
        ),
        (&json!(1), &json!(1), &json!("35.00"))
    );
    // An unknown authorization is a 404, rejected.
    let err = gw.client.void("auth_unknown", &key()).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected(m) if m.contains("404")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_ledger_and_the_wire_format() {
    let gw = Gateway::start(&[]);
    let (status, body) = gw.get("/v1/ledger").await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));

    let first = gw.authorized("1.00").await;
    let second = gw.authorized("2.00").await;
    gw.client
        .capture(&second.id, dec("2"), &key())
        .await
        .unwrap();
    let (_, ledger) = gw.get("/v1/ledger").await;
    let ids: Vec<&str> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
    assert_eq!(ledger[1]["order_id"], second.order_id.to_string());
    assert_eq!(ledger[1]["currency"], "EUR");
    assert_eq!(ledger[1]["token"], "tok_ok");
    let (status, entry) = gw.get(&format!("/v1/authorizations/{}", first.id)).await;
    assert_eq!(
        (status, &entry["status"]),
        (StatusCode::OK, &json!("authorized"))
    );

    assert!(gw.ledger_of(Uuid::new_v4()).await.is_empty());
    let (status, body) = gw.get("/v1/ledger/orders/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = gw.get("/v1/authorizations").await;
    assert_eq!(
        (status, &body["type"]),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            &json!("/problems/method-not-allowed")
        )
    );

    // The documented request format, raw; a POST without a key is refused.
    let order_id = Uuid::new_v4();
    let body =
        json!({"order_id": order_id, "amount": "7.00", "currency": "EUR", "token": "tok_ok"});
    let url = format!("{}/v1/authorizations", gw.sim.base);
    let resp = gw.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = gw
        .http
        .post(&url)
        .header("Idempotency-Key", "raw-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(
        (&created["status"], &created["amount"], &created["order_id"]),
        (&json!("authorized"), &json!("7.00"), &json!(order_id))
    );
}

#[tokio::test]
async fn an_unreachable_gateway_is_transient() {
    // A port nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client =
        HttpPaymentGateway::new(&format!("http://127.0.0.1:{port}"), DEFAULT_TIMEOUT).unwrap();
    let started = Instant::now();
    let err = client
        .authorize(request("tok_ok", "1"), &key())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() < DEFAULT_TIMEOUT + Duration::from_secs(1));
}

#[tokio::test]
async fn the_simulator_runs_embedded() {
    let addr = commerce_payment_sim::spawn("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let client = HttpPaymentGateway::new(&format!("http://{addr}"), DEFAULT_TIMEOUT).unwrap();
    let a = client
        .authorize(request("tok_ok", "3"), &key())
        .await
        .unwrap();
    let c = client.capture(&a.id, dec("3"), &key()).await.unwrap();
    assert_eq!(c.status, AuthorizationStatus::Captured);
}

#[test]
fn payment_sim_help_explains_the_tokens() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commerce"))
        .args(["payment-sim", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "tok_ok",
        "tok_decline",
        "tok_error",
        "tok_timeout",
        "tok_slow",
        "PAYMENT_SIM_LISTEN",
        "Idempotency-Key",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
