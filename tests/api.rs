//! The orders API over HTTP, on both backends.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{Backend, SECRET, TestApp};
use commerce_app::Role;

both_backends!(
    order_lifecycle_over_http,
    idempotent_create_returns_the_same_order,
    customers_see_only_their_own_orders,
    tokens_are_required_and_checked,
    bad_input_gets_a_problem_json_4xx,
    list_paginates_with_a_stable_cursor,
    restart_keeps_orders,
    replay_rebuilds_identical_views,
    probes_and_openapi,
);

fn assert_problem(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    expected: StatusCode,
    case: &str,
) {
    assert_eq!(status, expected, "{case}: {body}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{case}: content type"
    );
    assert_eq!(body["status"], expected.as_u16(), "{case}: {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{case}: {body}"
    );
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{case}: {body}"
    );
}

async fn order_lifecycle_over_http(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    app.put_product("TEE", "20", "EUR", 100).await;
    let (customer, token) = app.customer();

    // Create: priced by the server, 201 with Location and ETag.
    let (status, headers, order) = app.place(&token, &[("MUG", 2)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/orders/{id}").as_str());
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(order["customer_id"], customer.to_string());
    // Placed and reserved in one step.
    assert_eq!(order["status"], "reserved");
    assert_eq!(order["total"], "25.00");
    assert_eq!(order["items"][0]["unit_price"], "12.50");
    assert_eq!(order["items"][0]["line_total"], "25.00");
    assert_eq!(order["version"], 2);

    // Read and list.
    let (status, _, read) = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, order);
    let (_, _, list) = app.get("/v1/orders", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());

    // Update with If-Match: lines replaced, total recomputed.
    let patch = json!({"items": [{"sku": "MUG", "quantity": 1}, {"sku": "TEE", "quantity": 3}]});
    let path = format!("/v1/orders/{id}");
    let (status, headers, changed) = app
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(patch.clone()),
            &[("If-Match", "\"2\"")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["total"], "72.50");
    assert_eq!(changed["version"], 3);
    assert_eq!(headers["etag"], "\"3\"");

    // A stale version is 412 with the current one; no If-Match is 428.
    let (status, h, body) = app
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(patch.clone()),
            &[("If-Match", "\"1\"")],
        )
        .await;
    assert_problem(
        status,
        &h,
        &body,
        StatusCode::PRECONDITION_FAILED,
        "stale If-Match",
    );
    assert_eq!(body["current_version"], 3);
    let (status, h, body) = app
        .call(Method::PATCH, &path, Some(&token), Some(patch.clone()), &[])
        .await;
    assert_problem(
        status,
        &h,
        &body,
        StatusCode::PRECONDITION_REQUIRED,
        "missing If-Match",
    );

    // Admin transitions follow the lifecycle: a reserved order cannot ship.
    let (status, h, body) = app.post(&format!("{path}/ship"), &app.admin()).await;
    assert_problem(
        status,
        &h,
        &body,
        StatusCode::CONFLICT,
        "ship a reserved order",
    );
    assert_eq!(body["type"], "/problems/illegal-transition");
    let (status, _, _) = app.post(&format!("{path}/ship"), &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "customers cannot ship");

    // Cancel, then every further change is an illegal transition (409).
    let (status, _, cancelled) = app.delete(&path, &token).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["version"], 4);
    let (status, h, body) = app.delete(&path, &token).await;
    assert_problem(status, &h, &body, StatusCode::CONFLICT, "cancel twice");
    assert_eq!(body["status"], 409);
    let (status, h, body) = app
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(patch),
            &[("If-Match", "4")],
        )
        .await;
    assert_problem(
        status,
        &h,
        &body,
        StatusCode::CONFLICT,
        "change a cancelled order",
    );

    // The history tells it all, in order.
    let (status, _, events) = app.get(&format!("{path}/events"), &token).await;
    assert_eq!(status, StatusCode::OK);
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
            "OrderItemsChanged",
            "OrderCancelled"
        ]
    );
    let versions: Vec<u64> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);

    // The status filter sees the cancellation.
    let (_, _, list) = app.get("/v1/orders?status=cancelled", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, _, list) = app.get("/v1/orders?status=pending", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

async fn idempotent_create_returns_the_same_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();

    let (s1, h1, first) = app.place(&token, &[("MUG", 1)], Some("key-1")).await;
    let (s2, h2, second) = app.place(&token, &[("MUG", 1)], Some("key-1")).await;
    assert_eq!(s1, StatusCode::CREATED);
    assert_eq!(s2, StatusCode::CREATED);
    assert_eq!(first["id"], second["id"]);
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2["idempotent-replayed"], "true");

    // The same key for a different request is refused, not replayed.
    let (status, h, body) = app.place(&token, &[("MUG", 2)], Some("key-1")).await;
    assert_problem(
        status,
        &h,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "key reuse",
    );

    // Concurrent retries with one key place one order.
    let mut tasks = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for _ in 0..12 {
        let app = app.clone();
        let token = token.clone();
        tasks.spawn(async move { app.place(&token, &[("MUG", 3)], Some("key-2")).await });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let (status, _, body) = r.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");

    // Keys are per customer: another customer's "key-1" is a new order.
    let (_, other) = app.customer();
    let (status, _, third) = app.place(&other, &[("MUG", 1)], Some("key-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(third["id"], first["id"]);

    let (_, _, list) = app.get("/v1/orders", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
}

async fn customers_see_only_their_own_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, alice) = app.customer();
    let (_, bob) = app.customer();
    let (_, _, order) = app.place(&alice, &[("MUG", 1)], None).await;
    let path = format!("/v1/orders/{}", order["id"].as_str().unwrap());

    for (method, suffix, body, headers) in [
        (Method::GET, "", None, vec![]),
        (Method::GET, "/events", None, vec![]),
        (Method::DELETE, "", None, vec![]),
        (
            Method::PATCH,
            "",
            Some(json!({"items": [{"sku": "MUG", "quantity": 5}]})),
            vec![("If-Match", "1")],
        ),
    ] {
        let (status, h, body) = app
            .call(
                method.clone(),
                &format!("{path}{suffix}"),
                Some(&bob),
                body,
                &headers,
            )
            .await;
        assert_problem(
            status,
            &h,
            &body,
            StatusCode::NOT_FOUND,
            &format!("bob {method} {suffix}"),
        );
    }
    let (_, _, list) = app.get("/v1/orders", &bob).await;
    assert_eq!(list["items"], json!([]));

    // Alice's order is untouched, and an admin sees it.
    let (status, _, read) = app.get(&path, &app.admin()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["status"], "reserved");
    assert_eq!(read["version"], 2);
    let (_, _, all) = app.get("/v1/orders", &app.admin()).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
}

async fn tokens_are_required_and_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let forged = commerce_api::auth::JwtKeys::new(b"another-secret-another-secret-another")
        .mint(
            Uuid::new_v4(),
            Role::Admin,
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let expired = {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let claims = json!({"sub": Uuid::new_v4(), "role": "customer", "exp": 1_000_000, "iat": 0});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let not_a_uuid = {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let claims = json!({"sub": "bob", "role": "admin", "exp": 9_999_999_999u64});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    for (case, token) in [
        ("no token", None),
        ("forged", Some(forged.as_str())),
        ("expired", Some(expired.as_str())),
        ("sub not a uuid", Some(not_a_uuid.as_str())),
        ("garbage", Some("abc.def.ghi")),
    ] {
        for path in ["/v1/orders", "/v1/products/MUG"] {
            let (status, h, body) = app.call(Method::GET, path, token, None, &[]).await;
            assert_problem(status, &h, &body, StatusCode::UNAUTHORIZED, case);
            assert!(h.get("www-authenticate").is_some(), "{case}");
        }
    }
    let (status, h, body) = app
        .call(
            Method::GET,
            "/v1/orders",
            None,
            None,
            &[("Authorization", "Basic YTpi")],
        )
        .await;
    assert_problem(status, &h, &body, StatusCode::UNAUTHORIZED, "basic auth");

    // A customer cannot manage products.
    let (_, customer) = app.customer();
    let (status, h, body) = app
        .call(
            Method::PUT,
            "/v1/products/MUG",
            Some(&customer),
            Some(json!({"name": "Mug", "unit_price": "1.00", "currency": "EUR", "stock": 1})),
            &[],
        )
        .await;
    assert_problem(
        status,
        &h,
        &body,
        StatusCode::FORBIDDEN,
        "customer puts product",
    );
}

async fn bad_input_gets_a_problem_json_4xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    app.put_product("USD-ONLY", "3.00", "USD", 100).await;
    let (_, token) = app.customer();
    let admin = app.admin();
    let order = |items: Value, currency: &str| json!({"items": items, "currency": currency});
    let huge = "x".repeat(commerce_api::BODY_LIMIT + 1024);

    // (case, method, path, token, raw body, content type, expected status)
    let cases: Vec<(&str, Method, String, &str, String, &str, StatusCode)> = vec![
        (
            "malformed json",
            Method::POST,
            "/v1/orders".into(),
            &token,
            "{\"items\": [".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            Method::POST,
            "/v1/orders".into(),
            &token,
            json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR", "total": "0.01"})
                .to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "zero quantity",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "MUG", "quantity": 0}]), "EUR").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "negative quantity",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "MUG", "quantity": -3}]), "EUR").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "absurd quantity",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(
                json!([{"sku": "MUG", "quantity": 1_000_000_000_000u64}]),
                "EUR",
            )
            .to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "fractional quantity",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "MUG", "quantity": 1.5}]), "EUR").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "no items",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([]), "EUR").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "duplicate sku",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(
                json!([{"sku": "MUG", "quantity": 1}, {"sku": "MUG", "quantity": 1}]),
                "EUR",
            )
            .to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown sku",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "NOPE", "quantity": 1}]), "EUR").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "invalid sku",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "a b/c", "quantity": 1}]), "EUR").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unsupported currency",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "MUG", "quantity": 1}]), "XYZ").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "currency mismatch",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "USD-ONLY", "quantity": 1}]), "EUR").to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "not json content type",
            Method::POST,
            "/v1/orders".into(),
            &token,
            order(json!([{"sku": "MUG", "quantity": 1}]), "EUR").to_string(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "absurd body size",
            Method::POST,
            "/v1/orders".into(),
            &token,
            format!("{{\"items\": [], \"currency\": \"EUR\", \"pad\": \"{huge}\"}}"),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "bad order uuid",
            Method::GET,
            "/v1/orders/not-a-uuid".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown order",
            Method::GET,
            format!("/v1/orders/{}", Uuid::new_v4()),
            &token,
            String::new(),
            "application/json",
            StatusCode::NOT_FOUND,
        ),
        (
            "bad status filter",
            Method::GET,
            "/v1/orders?status=lost".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad cursor",
            Method::GET,
            "/v1/orders?cursor=%%%".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "limit zero",
            Method::GET,
            "/v1/orders?limit=0".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "limit not a number",
            Method::GET,
            "/v1/orders?limit=ten".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown route",
            Method::GET,
            "/v1/nothing".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::NOT_FOUND,
        ),
        (
            "wrong method",
            Method::PUT,
            "/v1/orders".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "price as a number",
            Method::PUT,
            "/v1/products/MUG2".into(),
            &admin,
            json!({"name": "Mug", "unit_price": 12.5, "currency": "EUR", "stock": 1}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "price too precise",
            Method::PUT,
            "/v1/products/MUG2".into(),
            &admin,
            json!({"name": "Mug", "unit_price": "12.505", "currency": "EUR", "stock": 1})
                .to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "negative price",
            Method::PUT,
            "/v1/products/MUG2".into(),
            &admin,
            json!({"name": "Mug", "unit_price": "-1.00", "currency": "EUR", "stock": 1})
                .to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "negative stock",
            Method::PUT,
            "/v1/products/MUG2".into(),
            &admin,
            json!({"name": "Mug", "unit_price": "1.00", "currency": "EUR", "stock": -1})
                .to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty name",
            Method::PUT,
            "/v1/products/MUG2".into(),
            &admin,
            json!({"name": " ", "unit_price": "1.00", "currency": "EUR", "stock": 1}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "invalid sku in path",
            Method::PUT,
            "/v1/products/a%20b".into(),
            &admin,
            json!({"name": "Mug", "unit_price": "1.00", "currency": "EUR", "stock": 1}).to_string(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown product",
            Method::GET,
            "/v1/products/NOPE".into(),
            &token,
            String::new(),
            "application/json",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (case, method, path, token, body, content_type, expected) in cases {
        // An oversized body is read before the 413 is sent: the answer
        // gets through on the first try, on a connection that stays usable.
        let mut req = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .bearer_auth(token);
        if !body.is_empty() {
            req = req.header("content-type", content_type).body(body.clone());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{case}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_problem(status, &headers, &body, expected, case);
    }

    // The refused requests left nothing behind.
    let (_, _, list) = app.get("/v1/orders", &token).await;
    assert_eq!(list["items"], json!([]));
    let (_, _, unknown) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(order(
                json!([{"sku": "NOPE", "quantity": 1}, {"sku": "ZZZ", "quantity": 1}]),
                "EUR",
            )),
            &[],
        )
        .await;
    assert_eq!(unknown["skus"], json!(["NOPE", "ZZZ"]));
}

async fn list_paginates_with_a_stable_cursor(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "1.00", "EUR", 100).await;
    let (_, token) = app.customer();
    let mut placed = Vec::new();
    for q in 1..=5 {
        let (_, _, o) = app.place(&token, &[("MUG", q)], None).await;
        placed.push(o["id"].as_str().unwrap().to_owned());
    }
    // Another customer's orders never show up.
    let (_, other) = app.customer();
    app.place(&other, &[("MUG", 1)], None).await;

    let mut seen = Vec::new();
    let mut path = "/v1/orders?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, _, page) = app.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for o in page["items"].as_array().unwrap() {
            seen.push(o["id"].as_str().unwrap().to_owned());
        }
        // An order placed while paging does not disturb the pages.
        if pages == 1 {
            app.place(&token, &[("MUG", 9)], None).await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/orders?limit=2&cursor={c}"),
            None => break,
        }
    }
    placed.reverse();
    assert_eq!(seen, placed, "newest first, each once");
    assert_eq!(pages, 3);
}

async fn restart_keeps_orders(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();
    let (_, _, order) = app
        .place(&token, &[("MUG", 2)], Some("before-restart"))
        .await;
    app.restart();
    let (status, _, read) = app
        .get(
            &format!("/v1/orders/{}", order["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, order);
    // The idempotency key survives too.
    let (_, h, again) = app
        .place(&token, &[("MUG", 2)], Some("before-restart"))
        .await;
    assert_eq!(again["id"], order["id"]);
    assert_eq!(h["idempotent-replayed"], "true");
}

async fn replay_rebuilds_identical_views(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    app.put_product("TEE", "7.25", "EUR", 100).await;
    let admin = app.admin();
    for i in 0..6 {
        let (_, token) = app.customer();
        let (_, _, o) = app.place(&token, &[("MUG", i + 1), ("TEE", 1)], None).await;
        let path = format!("/v1/orders/{}", o["id"].as_str().unwrap());
        if i % 2 == 0 {
            let (s, _, _) = app
                .call(
                    Method::PATCH,
                    &path,
                    Some(&token),
                    Some(json!({"items": [{"sku": "TEE", "quantity": 4}]})),
                    &[("If-Match", "2")],
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        if i % 3 == 0 {
            let (s, _, _) = app.delete(&path, &token).await;
            assert_eq!(s, StatusCode::OK);
        }
    }
    let (_, _, before) = app.get("/v1/orders?limit=100", &admin).await;
    assert_eq!(before["items"].as_array().unwrap().len(), 6);

    // The replay reads the feed, which on PostgreSQL serves an event once
    // every older transaction of the server has ended (other tests run
    // theirs): wait until it serves every event of the six orders.
    let events: u64 = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["version"].as_u64().unwrap())
        .sum();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, _, feed) = app.get("/v1/events?limit=1000", &admin).await;
        if feed["items"].as_array().unwrap().len() as u64 >= events {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{feed}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Wipe the read model behind the service's back: the orders vanish...
    app.db.execute_sql("DELETE FROM order_views").await;
    let (_, _, empty) = app.get("/v1/orders?limit=100", &admin).await;
    assert_eq!(empty["items"], json!([]));

    // ...and `commerce replay` brings back exactly what the inline projection wrote.
    let out = app.run_cli(&["replay"]);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("6 orders"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (_, _, after) = app.get("/v1/orders?limit=100", &admin).await;
    assert_eq!(after, before);
}

async fn probes_and_openapi(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, _, body) = app.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["database"], "ok");
    let (status, _, doc) = app
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/events",
        "/v1/products/{sku}",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"]["OrderView"].is_object());
    // Every status code a route can answer is documented, those of the
    // layers in front of the handler included (auth, limits, extractors).
    let patch = &doc["paths"]["/v1/orders/{id}"]["patch"]["responses"];
    for code in [
        "200", "400", "401", "403", "404", "408", "409", "412", "413", "415", "422", "428", "500",
        "503",
    ] {
        assert!(
            patch[code].is_object(),
            "PATCH /v1/orders/{{id}} lacks {code}"
        );
    }
    let healthz = &doc["paths"]["/healthz"]["get"]["responses"];
    assert!(
        healthz["401"].is_null() && healthz["413"].is_null(),
        "{healthz}"
    );
    // The constraints the server enforces are in the document, so a
    // client (or a fuzzer) generating from it sends what is accepted.
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))["schema"]
            .clone()
    };
    assert_eq!(
        param("/v1/products/{sku}", "get", "sku")["pattern"],
        "^[A-Za-z0-9._-]{1,64}$"
    );
    let limit = param("/v1/orders", "get", "limit");
    assert_eq!(
        (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
        (Some(1), Some(100))
    );
    assert_eq!(param("/v1/events", "get", "limit")["maximum"], 1000);
    let statuses = param("/v1/sagas", "get", "status")["enum"].clone();
    assert!(
        statuses
            .as_array()
            .unwrap()
            .contains(&json!("needs_attention")),
        "{statuses}"
    );
    assert!(param("/v1/orders/{id}", "patch", "If-Match")["pattern"].is_string());
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["CreateOrderRequest"]["properties"]["items"]["maxItems"],
        1000
    );
    assert!(
        schemas["CreateOrderRequest"]["properties"]["currency"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("EUR"))
    );
}

/// Bodies are read as the document says: a JSON object (serde would also
/// take an array of a struct's fields), whole numbers written `2.0` as
/// well as `2`, and an optional body left out or sent as `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_as_documented() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--example-plugins"], &[]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();
    let (status, _, body) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!([[{"sku": "MUG", "quantity": 1}], "EUR"])),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], "/problems/invalid-body", "{body}");
    let (status, _, order) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"sku": "MUG", "quantity": 2.0}], "currency": "EUR"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["items"][0]["quantity"], 2, "{order}");
    let (status, _, body) = app
        .call(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"sku": "MUG", "quantity": 2.5}], "currency": "EUR"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // The shape of new lines is checked before the order's version: no
    // lines is a 422 even with a stale If-Match.
    let id = order["id"].as_str().unwrap();
    let (status, _, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/orders/{id}"),
            Some(&token),
            Some(json!({"items": []})),
            &[("If-Match", "\"7\"")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for if_match in ["W/W/\"1\"", "\"1", "+1"] {
        let (status, _, body) = app
            .call(
                Method::PATCH,
                &format!("/v1/orders/{id}"),
                Some(&token),
                Some(json!({"items": [{"sku": "MUG", "quantity": 1}]})),
                &[("If-Match", if_match)],
            )
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "If-Match {if_match}: {body}"
        );
    }
    // Activating with a null body activates the newest version; an array
    // is refused.
    let admin = app.admin();
    let path = "/v1/plugins/bulk-discount/activate";
    let (status, _, body) = app
        .call(Method::POST, path, Some(&admin), Some(json!(null)), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true, "{body}");
    let (status, _, body) = app
        .call(Method::POST, path, Some(&admin), Some(json!([])), &[])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A decimal is digits and a fraction, nothing else.
    for price in ["+1.00", "1e2", ".5", "1_000"] {
        let (status, _, body) = app
            .call(
                Method::PUT,
                "/v1/products/TEE",
                Some(&admin),
                Some(json!({"name": "Tee", "unit_price": price, "currency": "EUR", "stock": 1})),
                &[],
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "price {price}: {body}"
        );
    }
}

/// Cheap checks come before the plugins: a body of a thousand copies of
/// one SKU (its plugin input far over the plugins' input limit) is the
/// customer's mistake, a 422, not a 503 from the plugin stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_checks_run_before_the_plugins() {
    let app = TestApp::spawn_with(Backend::Sqlite, &["--example-plugins"], &[]).await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();
    // The plugins are in force: bulk-discount takes 10% off 12 mugs.
    let (status, _, order) = app.place(&token, &[("MUG", 12)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["total"], "135.00", "{order}");

    let copies: Vec<(&str, i64)> = vec![("MUG", 1); 2 * commerce_domain::order::MAX_LINES];
    let (status, headers, body) = app.place(&token, &copies, None).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "copies",
    );
    assert!(
        body["detail"].as_str().unwrap().contains("1000 lines"),
        "{body}"
    );
    let copies: Vec<(&str, i64)> = vec![("MUG", 1); 100];
    let (status, headers, body) = app.place(&token, &copies, None).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "twice",
    );
    assert!(body["detail"].as_str().unwrap().contains("MUG"), "{body}");

    let skus: Vec<String> = (0..=commerce_domain::order::MAX_LINES)
        .map(|n| format!("SKU-{n}"))
        .collect();
    let many: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), 1)).collect();
    let (status, headers, body) = app.place(&token, &many, None).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "lines",
    );
}

/// A client that writes a whole oversized body before reading (no
/// `Expect: 100-continue`, as Python's urllib and most clients do) gets
/// the 413 problem, not a broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_written_whole_gets_a_413() {
    use std::io::{Read, Write};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, token) = app.customer();
    let address = app.base.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let body = format!(
            "{{\"items\": [], \"pad\": \"{}\"}}",
            "x".repeat(1024 * 1024)
        );
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let head = format!(
            "POST /v1/orders HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("writing the head");
        stream
            .write_all(body.as_bytes())
            .expect("writing the whole body");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        // Up to the end of the problem's JSON body.
        while !answer.ends_with(b"}") {
            let n = stream.read(&mut chunk).expect("reading the answer");
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("/problems/payload-too-large"), "{answer}");
}

/// An idempotency key answers repeats for its window
/// (`COMMERCE_IDEMPOTENCY_WINDOW_SECS`); after it, the key is deleted and
/// the same request places a new order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_expires_after_its_window() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[],
        &[("COMMERCE_IDEMPOTENCY_WINDOW_SECS", "1")],
    )
    .await;
    app.put_product("MUG", "12.50", "EUR", 100).await;
    let (_, token) = app.customer();
    let (status, _, first) = app.place(&token, &[("MUG", 1)], Some("k-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (_, headers, repeat) = app.place(&token, &[("MUG", 1)], Some("k-1")).await;
    assert_eq!(repeat["id"], first["id"]);
    assert_eq!(headers["idempotent-replayed"], "true");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (status, headers, later) = app.place(&token, &[("MUG", 1)], Some("k-1")).await;
        assert_eq!(status, StatusCode::CREATED, "{later}");
        if later["id"] != first["id"] {
            assert!(headers.get("idempotent-replayed").is_none());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key still answers after 10 s"
        );
    }
}

/// `commerce replay` while the service takes orders: replays race the
/// writers, and afterwards every view is exactly the fold of its order's
/// events (no view older than its events, none lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_while_orders_are_written_leaves_every_view_current() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use commerce_app::views::{OrderQuery, OrderView};
    use commerce_domain::{Aggregate, Order};

    let app = TestApp::spawn(Backend::Postgres).await;
    app.put_product("MUG", "1.00", "EUR", 1_000_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (_, token) = app.customer();
        let (client, base, stop) = (app.client.clone(), app.base.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut placed = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let order: Value = client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&token)
                    .json(&json!({"items": [{"sku": "MUG", "quantity": 1}], "currency": "EUR"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = order["id"].as_str().expect("placed").to_owned();
                if placed.is_multiple_of(2) {
                    let status = client
                        .delete(format!("{base}/v1/orders/{id}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    assert_eq!(status, StatusCode::OK);
                }
                placed += 1;
            }
            placed
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..3 {
        let out = tokio::task::block_in_place(|| app.run_cli(&["replay"]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut placed = 0;
    for writer in writers {
        placed += writer.await.unwrap();
    }
    assert!(
        placed >= 20,
        "only {placed} orders placed during the replays"
    );

    let store = app.db.open_store().await;
    let views = store
        .list_views(&OrderQuery {
            customer_id: None,
            status: None,
            limit: 100_000,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(views.len(), placed, "a view is missing");
    for view in views {
        let stream = store.load_stream(view.id).await.unwrap();
        let events: Vec<_> = stream
            .iter()
            .map(|e| {
                (
                    commerce_app::orders::decode_event(e).unwrap(),
                    e.recorded_at,
                )
            })
            .collect();
        let order = Order::from_events(view.id, events.iter().map(|(e, at)| (e, *at)));
        assert_eq!(order.version(), stream.len() as u64);
        assert_eq!(view, OrderView::project(&order), "order {}", view.id);
    }
}
