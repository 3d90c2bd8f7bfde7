//! The operations console (`/console`), in a real browser: headless
//! Chromium driving the page the binary serves, against a real service.
//! Each test saves screenshots of the pages it visits to docs/console/,
//! which the README shows.
//!
//! And, over plain HTTP, what the console's routes promise: static assets
//! only, under a strict Content-Security-Policy, revalidated by ETag, and
//! outside the OpenAPI document.

use std::time::Duration;

use reqwest::StatusCode;

use crate::browser::{Browser, WAIT};
use crate::helpers::{Backend, TestApp, component};
use crate::saga::{BrokenGateway, wait_for_saga};

/// Opens the console and signs in with `token`.
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&format!("{}/console", app.base)).await;
    browser.type_into("#token", token).await;
    browser.click("#signin button[type=submit]").await;
}

/// Waits until the number shown in `css` is `expected`.
async fn wait_number(browser: &Browser, css: &str, expected: u64) {
    browser
        .wait_until(
            css,
            &expected.to_string(),
            |t| t.trim() == expected.to_string(),
            WAIT,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_customers_then_shows_the_overview_an_order_and_the_stock() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--example-plugins"], &[]).await;
    app.put_product("MUG-RED", "12.50", "EUR", 100).await;
    let browser = Browser::start().await;

    // A customer's token is refused with the API's own detail.
    let (customer_id, customer) = app.customer();
    sign_in(&browser, &app, &customer).await;
    let refusal = browser
        .wait_text("#signin-errors", "not an operator's")
        .await;
    assert!(refusal.contains("needs the admin role"), "{refusal}");
    assert!(
        !browser.is_shown("#nav").await,
        "the pages are listed before sign-in"
    );
    browser.screenshot("signin").await;

    // An admin's is kept; the overview starts from nothing.
    sign_in(&browser, &app, &app.admin()).await;
    wait_number(&browser, "#ov-orders-placed", 0).await;
    assert!(browser.is_shown("#nav").await);

    // Orders placed elsewhere show up on the overview as it polls.
    let mut confirmed = None;
    for _ in 0..3 {
        let (status, _, order) = app
            .place_paying(&customer, &[("MUG-RED", 12)], None, Some("tok_ok"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        confirmed = Some(order["id"].as_str().unwrap().to_owned());
    }
    let (status, _, declined) = app
        .place_paying(&customer, &[("MUG-RED", 1)], None, Some("tok_decline"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{declined}");
    wait_number(&browser, "#ov-orders-placed", 4).await;
    wait_number(&browser, "#ov-orders-confirmed", 3).await;
    wait_number(&browser, "#ov-orders-failed", 1).await;
    browser.wait_text("#ov-failure-total", "25.0 %").await;
    browser.wait_text("#ov-sagas-completed", "3").await;
    browser.wait_text(".cards", "bulk-discount").await;
    browser.screenshot("overview").await;

    // The same page on a phone.
    browser.resize(390, 844).await;
    browser.wait_text("#ov-orders-placed", "4").await;
    browser.screenshot("overview-phone").await;
    browser.resize(1280, 900).await;

    // Looking up the customer lists their orders; one opens with its
    // timeline: placed (priced by the bulk-discount plugin's version),
    // paid, confirmed.
    let order_id = confirmed.unwrap();
    browser.goto(&format!("{}/console#/orders", app.base)).await;
    browser
        .type_into("#order-search", &customer_id.to_string())
        .await;
    browser.click("form[role=search] button").await;
    browser.wait_text("#orders-list", &order_id).await;
    browser
        .click(&format!("#orders-list a[href='#/orders/{order_id}']"))
        .await;
    browser.wait_text("#timeline", "Confirmed").await;
    let timeline = browser.text("#timeline").await.unwrap();
    for expected in [
        "Placed",
        "bulk-discount v1",
        "Paid",
        "Confirmed",
        "−15.00 EUR",
    ] {
        assert!(timeline.contains(expected), "no {expected:?} in {timeline}");
    }
    browser.wait_text("#order-status", "confirmed").await;

    // A partial refund, with its reason, from the order's page.
    browser.click("details summary").await;
    browser
        .type_into("#refund-form input[name=amount]", "5.00")
        .await;
    browser
        .type_into("#refund-form input[name=reason]", "scratched mug")
        .await;
    browser.click("#refund-form button[type=submit]").await;
    browser
        .wait_text("#order-messages", "The refund is recorded")
        .await;
    browser.wait_text("#order-refunded", "5.00 EUR").await;
    browser.wait_text("#timeline", "Refunded").await;
    browser.screenshot("orders").await;
    let (_, _, order) = app
        .get(&format!("/v1/orders/{order_id}"), &app.admin())
        .await;
    assert_eq!(order["refunded"], "5.00", "{order}");

    // Stock: 36 units went to confirmed orders; a delivery of 25 comes in.
    browser
        .goto(&format!("{}/console#/stock/MUG-RED", app.base))
        .await;
    wait_number(&browser, "#stock-on-hand", 64).await;
    browser.type_into("#adjust-delta", "25").await;
    browser
        .type_into("#adjust-reason", "delivery 2026-12-02")
        .await;
    browser.click("#adjust-form button").await;
    wait_number(&browser, "#stock-on-hand", 89).await;
    browser.wait_text("#stock-messages", "Adjusted by 25").await;
    // Taking out more than is there is refused with the API's detail.
    browser.type_into("#adjust-delta", "-1000").await;
    browser.type_into("#adjust-reason", "stock count").await;
    browser.click("#adjust-form button").await;
    browser.wait_text("#stock-messages .problem", "409").await;
    browser.screenshot("stock").await;
    let (_, _, product) = app.get("/v1/products/MUG-RED", &app.admin()).await;
    assert_eq!(product["on_hand"], 89, "{product}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_retries_a_saga_that_needs_attention() {
    // Capture and void fail until the gateway is healed: the saga turns
    // back and its compensation gets stuck.
    let gateway = BrokenGateway::start().await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            "--payment-timeout-ms",
            "400",
            "--saga-step-deadline-ms",
            "300",
            "--saga-poll-ms",
            "100",
            "--saga-compensation-rounds",
            "2",
        ],
        &[("PAYMENT_URL", &gateway.base)],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 10).await;
    let (_, customer) = app.customer();
    let (_, _, order) = app
        .place_paying(&customer, &[("MUG", 1)], None, Some("tok_ok"))
        .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let saga = wait_for_saga(&app, &order_id, "needs_attention", Duration::from_secs(30)).await;
    let saga_id = saga["saga_id"].as_str().unwrap().to_owned();

    let browser = Browser::start().await;
    sign_in(&browser, &app, &app.admin()).await;
    browser.wait_text("#ov-sagas-needs_attention", "1").await;
    browser.click("a[href='#/sagas']").await;
    browser.wait_text("#sagas-list", &order_id).await;
    browser
        .click(&format!("#sagas-list a[href='#/sagas/{saga_id}']"))
        .await;
    browser.wait_text("#saga-status", "needs attention").await;
    browser.wait_text("main", "stuck").await;
    let steps = browser.text("table").await.unwrap_or_default();
    browser.screenshot("sagas").await;

    // The gateway is fixed; the operator retries; the saga compensates.
    gateway
        .healed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    browser.click("#retry-saga").await;
    browser.wait_text("#saga-messages", "Retried").await;
    wait_for_saga(&app, &order_id, "compensated", Duration::from_secs(30)).await;
    browser
        .goto(&format!("{}/console#/sagas/compensated", app.base))
        .await;
    browser.wait_text("#sagas-list", &order_id).await;
    browser
        .click(&format!("#sagas-list a[href='#/sagas/{saga_id}']"))
        .await;
    browser.wait_text("#saga-status", "compensated").await;
    browser.wait_text("main", "operator").await;
    assert!(steps.contains("void-payment"), "{steps}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_uploads_activates_and_dry_runs_a_plugin() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, &app.admin()).await;
    browser.wait_text("#ov-orders-placed", "0").await;
    browser.click("a[href='#/plugins']").await;
    browser.wait_text("#plugins-list", "None.").await;

    // Upload bulk-discount from the bundled examples, activated at once.
    let path = std::path::Path::new(commerce_bundled::PLUGIN_DIR).join("bulk_discount.wasm");
    assert!(!component("bulk_discount").is_empty());
    browser.choose_file("#plugin-file", &path).await;
    browser.type_into("#plugin-name", "bulk-discount").await;
    browser.click("#plugin-activate").await;
    browser.click("#upload-form button[type=submit]").await;
    browser
        .wait_until(
            "#plugin-messages",
            "the upload's outcome",
            |t| t.contains("Uploaded bulk-discount and activated it"),
            Duration::from_secs(120),
        )
        .await;
    browser.wait_text("#plugins-list", "✓ active").await;
    let (_, _, plugins) = app.get("/v1/plugins", &app.admin()).await;
    assert_eq!(plugins[0]["name"], "bulk-discount", "{plugins}");
    assert_eq!(plugins[0]["active"], true, "{plugins}");

    // The form's cart (12 × MUG-RED at 12.50 EUR) is priced by it: 10 % off.
    browser.click("#dry-run-form button[type=submit]").await;
    let priced = browser.wait_text("#dry-run-result", "15.00 EUR").await;
    assert!(priced.contains("Discount"), "{priced}");
    browser.screenshot("plugins").await;
    browser.quit().await;
}

/// What the console's routes serve, and what they do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_assets_are_static_strictly_policed_and_not_in_the_api_document() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = &app.client;
    let page = client
        .get(format!("{}/console", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/assets/app.js"), "{html}");

    // Unchanged: 304, nothing resent.
    let again = client
        .get(format!("{}/console", app.base))
        .header("if-none-match", headers["etag"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    for (asset, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ] {
        let answer = client
            .get(format!("{}/console/assets/{asset}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        assert_eq!(answer.headers()["content-type"], kind, "{asset}");
        assert!(answer.headers().contains_key("content-security-policy"));
    }
    let (status, headers, body) = app
        .call(
            reqwest::Method::GET,
            "/console/assets/secrets.json",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");

    // Not part of the API's contract.
    let (_, _, doc) = app
        .call(reqwest::Method::GET, "/openapi.json", None, None, &[])
        .await;
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(
        paths.iter().all(|p| !p.starts_with("/console")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| *p == "/v1/sagas/counts"), "{paths:?}");

    // The one route the console added: admin only, every status counted.
    let (_, customer) = app.customer();
    let (status, _, _) = app.get("/v1/sagas/counts", &customer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, counts) = app.get("/v1/sagas/counts", &app.admin()).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    let counts = counts["counts"].as_object().unwrap();
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|n| n.as_i64() == Some(0)), "{counts:?}");
}

/// `GET /v1/orders?customer=`: an admin looks up one customer's orders; a
/// customer's list never holds another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_the_orders_of_one_customer() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (alice_id, alice) = app.customer();
    let (bob_id, bob) = app.customer();
    let (_, _, order) = app.place(&alice, &[("MUG", 1)], None).await;
    app.place(&bob, &[("MUG", 1)], None).await;

    let (status, _, page) = app
        .get(&format!("/v1/orders?customer={alice_id}"), &app.admin())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["id"], order["id"]);

    let (_, _, own) = app
        .get(&format!("/v1/orders?customer={alice_id}"), &alice)
        .await;
    assert_eq!(own["items"].as_array().unwrap().len(), 1, "{own}");
    let (status, _, other) = app
        .get(&format!("/v1/orders?customer={bob_id}"), &alice)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(other["items"].as_array().unwrap().len(), 0, "{other}");
}
