//! Operations: graceful shutdown, structured logs, KPI metrics.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, PaymentSim, TestApp};

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
            Err(e) => {
                assert!(e.is_connect(), "{e:?}");
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
