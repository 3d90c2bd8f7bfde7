//! Replay (what-if) of a plugin version on recorded orders (issue 17):
//! replaying the version that priced thousands of orders gives back
//! exactly their adjustments; a changed version lists exactly the orders
//! whose totals change; a changed validation rule lists the orders it
//! would refuse.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, component};

both_backends!(replay_reproduces_recorded_prices_and_lists_what_a_change_would_reprice);

/// The example's tiers (what priced the orders), and a change that drops
/// the 20% tier.
const TIERS: &str =
    r#"{"tiers":[{"min_quantity":10,"percent":10},{"min_quantity":50,"percent":20}]}"#;
const WITHOUT_TOP_TIER: &str = r#"{"tiers":[{"min_quantity":10,"percent":10}]}"#;
const AT_MOST_100: &str = r#"{"max_quantity_per_sku":100,"blocked_skus":[]}"#;
const AT_MOST_40: &str = r#"{"max_quantity_per_sku":40,"blocked_skus":[]}"#;

/// A placed order: its id, the mugs on it and its total.
struct Placed {
    id: Uuid,
    mugs: i64,
    total: String,
}

/// Places `count` orders (mugs 1-60, every fourth with cups too) from 8
/// clients, each of them several customers.
async fn place_orders(app: &Arc<TestApp>, first: usize, count: usize) -> Vec<Placed> {
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        let app = app.clone();
        clients.spawn(async move {
            let mut placed = Vec::new();
            let tokens: Vec<String> = (0..4).map(|_| app.customer().1).collect();
            for i in (first + client..first + count).step_by(8) {
                let mugs = 1 + (i % 60) as i64;
                let mut items = vec![("MUG", mugs)];
                if i % 4 == 0 {
                    items.push(("CUP", 1 + (i % 3) as i64));
                }
                let (status, _, order) = app.place(&tokens[i % tokens.len()], &items, None).await;
                assert_eq!(status, StatusCode::CREATED, "{order}");
                placed.push(Placed {
                    id: order["id"].as_str().unwrap().parse().unwrap(),
                    mugs,
                    total: order["total"].as_str().unwrap().to_owned(),
                });
            }
            placed
        });
    }
    let mut all = Vec::new();
    while let Some(placed) = clients.join_next().await {
        all.extend(placed.unwrap());
    }
    all
}

/// Starts a replay and follows its report until it is no longer running.
async fn replay(app: &TestApp, plugin: &str, body: Value) -> Value {
    let admin = app.admin();
    let (status, headers, started) = app
        .call(
            Method::POST,
            &format!("/v1/plugins/{plugin}/replay"),
            Some(&admin),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let location = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!(
            "/v1/plugins/{plugin}/replays/{}",
            started["id"].as_str().unwrap()
        )
    );
    let began = Instant::now();
    loop {
        let (status, _, report) = app.get(&location, &admin).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        if report["state"] != "running" {
            assert_eq!(report["state"], "done", "{report}");
            return report;
        }
        assert!(
            began.elapsed() < Duration::from_secs(180),
            "the replay did not finish: {report}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn listed(report: &Value) -> BTreeSet<Uuid> {
    report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["order_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn replay_reproduces_recorded_prices_and_lists_what_a_change_would_reprice(backend: Backend) {
    let orders = match backend {
        Backend::Sqlite => 2_000,
        Backend::Postgres => 1_000,
    };
    let args = [
        "--max-unpaid-orders",
        "1000000",
        "--max-unpaid-units",
        "1000000000",
    ];
    let app = Arc::new(TestApp::spawn_with(backend, &args, &[]).await);
    app.put_product("MUG", "10.00", "EUR", 100_000_000).await;
    app.put_product("CUP", "4.99", "EUR", 100_000_000).await;
    for (name, bytes, kind, config, activate) in [
        ("bulk", "bulk_discount", "pricing", TIERS, true),
        ("bulk", "bulk_discount", "pricing", WITHOUT_TOP_TIER, false),
        ("rules", "quantity_rules", "validation", AT_MOST_100, true),
        ("rules", "quantity_rules", "validation", AT_MOST_40, false),
        ("hold", "high_value_hold", "saga-hook", "{}", false),
    ] {
        let (status, body) = app
            .upload(name, component(bytes), Some(kind), Some(config), activate)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let half = orders / 2;
    let mut placed = place_orders(&app, 0, half).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let midway = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    placed.extend(place_orders(&app, half, orders - half).await);
    assert_eq!(placed.len(), orders);
    let discounted = placed.iter().filter(|p| p.mugs >= 10).count();
    assert!(discounted > orders / 2, "the plugin priced most orders");

    // The version that priced every order gives back exactly what each
    // recorded.
    let same = replay(&app, "bulk", json!({"version": 1, "limit": 100_000})).await;
    assert_eq!(same["orders"], orders, "{same}");
    assert_eq!(same["same"], orders, "{}", same["differences"]);
    assert_eq!(
        (&same["differed"], &same["failed"], &same["totals_changed"]),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(same["kind"], "pricing");

    // Without the 20% tier, exactly the orders of 50 mugs or more would
    // cost more, and the report says by how much.
    let changed = replay(&app, "bulk", json!({"version": 2, "limit": 100_000})).await;
    let expected: BTreeSet<Uuid> = placed
        .iter()
        .filter(|p| p.mugs >= 50)
        .map(|p| p.id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(listed(&changed), expected);
    assert_eq!(changed["differed"], expected.len());
    assert_eq!(changed["totals_changed"], expected.len());
    assert_eq!(changed["same"], orders - expected.len());
    assert_eq!(changed["unlisted"], 0);
    for difference in changed["differences"].as_array().unwrap() {
        let id: Uuid = difference["order_id"].as_str().unwrap().parse().unwrap();
        let order = placed.iter().find(|p| p.id == id).unwrap();
        assert_eq!(difference["recorded_version"], 1);
        assert_eq!(difference["recorded"]["total"], order.total.as_str());
        let recorded: f64 = order.total.parse().unwrap();
        let replayed: f64 = difference["replayed"]["total"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // 10% off the mugs instead of 20%: 1.00 more per mug.
        let more = replayed - recorded;
        assert!(
            (more - order.mugs as f64).abs() < 0.005,
            "{difference}: {more} more for {} mugs",
            order.mugs
        );
    }

    // Orders placed since an instant, and a limit.
    let recent = replay(
        &app,
        "bulk",
        json!({"version": 1, "since": midway.to_rfc3339(), "limit": 100_000}),
    )
    .await;
    assert_eq!(recent["orders"], orders - half);
    let few = replay(&app, "bulk", json!({"version": 2, "limit": 10})).await;
    assert_eq!(few["orders"], 10);

    // A stricter validation rule lists the orders it would have refused.
    let stricter = replay(&app, "rules", json!({"version": 2, "limit": 100_000})).await;
    let refused: BTreeSet<Uuid> = placed
        .iter()
        .filter(|p| p.mugs > 40)
        .map(|p| p.id)
        .collect();
    assert_eq!(listed(&stricter), refused);
    assert_eq!(stricter["kind"], "validation");
    let violation = &stricter["differences"][0]["replayed"]["violations"][0];
    assert_eq!(violation["plugin"], "rules", "{violation}");
    assert_eq!(
        stricter["differences"][0]["recorded"]["violations"],
        json!([])
    );

    // The CLI waits for the report.
    if backend == Backend::Sqlite {
        let out = app.run_cli(&[
            "plugin",
            "replay",
            "bulk",
            "--version",
            "1",
            "--limit",
            "25",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (&report["state"], &report["same"]),
            (&json!("done"), &json!(25))
        );
    }

    // Refused before anything runs.
    let admin = app.admin();
    let (_, customer) = app.customer();
    for (token, plugin, body, expected) in [
        (
            &admin,
            "hold",
            json!({"version": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (&admin, "bulk", json!({"version": 9}), StatusCode::NOT_FOUND),
        (&admin, "nope", json!({"version": 1}), StatusCode::NOT_FOUND),
        (
            &admin,
            "bulk",
            json!({"version": 1, "limit": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &admin,
            "bulk",
            json!({"version": 1, "limit": 100_001}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &admin,
            "bulk",
            json!({"version": 1, "since": "yesterday"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &customer,
            "bulk",
            json!({"version": 1}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, headers, body) = app
            .call(
                Method::POST,
                &format!("/v1/plugins/{plugin}/replay"),
                Some(token),
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(status, expected, "{plugin} {body}");
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let (status, _, _) = app
        .get(
            &format!("/v1/plugins/bulk/replays/{}", Uuid::now_v7()),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A replay changes no order.
    let (_, _, order) = app
        .get(&format!("/v1/orders/{}", placed[0].id), &admin)
        .await;
    assert_eq!(order["total"], placed[0].total.as_str());
}
