//! Safe change of a plugin (issue 17), through the real binary: a shadow
//! version compared beside the active one on live calls, a canary served
//! to a stable share of customers on every replica, and the run log of
//! captured calls re-run locally with `commerce plugin run`.

use std::time::{Duration, Instant};

use commerce_app::Role;
use commerce_app::plugins::canary_bucket;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, component, component_path, metric_sum};

both_backends!(a_shadow_reports_differing_answers_while_orders_keep_the_active_prices);

/// A wall-clock budget per plugin call that a busy two-core test machine
/// cannot exhaust (the default 50 ms can be, and a pricing call past it
/// fails the order): these tests are about which version answers, not
/// about deadlines.
const PATIENT: [&str; 2] = ["--plugin-deadline-ms", "5000"];

const TEN_PERCENT: &str = r#"{"tiers":[{"min_quantity":10,"percent":10}]}"#;
const TWENTY_PERCENT: &str = r#"{"tiers":[{"min_quantity":10,"percent":20}]}"#;

/// Uploads bulk_discount as `bulk` twice: version 1 (10% off 10 or more)
/// active, version 2 (20%) stored beside it. Returns both versions.
async fn two_bulk_versions(app: &TestApp) -> (i64, i64) {
    let (s, v1) = app
        .upload(
            "bulk",
            component("bulk_discount"),
            Some("pricing"),
            Some(TEN_PERCENT),
            true,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v1}");
    let (s, v2) = app
        .upload(
            "bulk",
            component("bulk_discount"),
            Some("pricing"),
            Some(TWENTY_PERCENT),
            false,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v2}");
    assert_eq!(v1["active"], true, "{v1}");
    assert_eq!(v2["active"], false, "{v2}");
    (
        v1["version"].as_i64().unwrap(),
        v2["version"].as_i64().unwrap(),
    )
}

/// Places an order of `quantity` mugs (EUR, unpaid) at `base`, one
/// replica or the other; the order.
async fn place_at(client: &reqwest::Client, base: &str, token: &str, quantity: i64) -> Value {
    let resp = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(token)
        .json(&json!({"items": [{"sku": "MUG", "quantity": quantity}], "currency": "EUR"}))
        .send()
        .await
        .expect("place an order");
    let status = resp.status();
    let body: Value = resp.json().await.expect("order json");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The version of `plugin` that priced `order`, as its first event
/// records it (`None`: the plugin did not price it).
async fn priced_by(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    order: &Value,
    plugin: &str,
) -> Option<i64> {
    let id = order["id"].as_str().expect("order id");
    let resp = client
        .get(format!("{base}/v1/orders/{id}/events"))
        .bearer_auth(token)
        .send()
        .await
        .expect("order events");
    assert_eq!(resp.status(), StatusCode::OK);
    let events: Value = resp.json().await.expect("events json");
    let plugins = events["items"][0]["data"]["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("no plugins in the first event: {events}"))
        .clone();
    plugins
        .iter()
        .find(|p| p["name"] == plugin)
        .map(|p| p["version"].as_i64().expect("a version"))
}

/// Places 10 mugs at 10.00 at `base` and returns the bulk version that
/// priced it, checking the total is that version's (90.00 for 10% off,
/// 80.00 for 20%).
async fn bulk_version_served(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    (v1, v2): (i64, i64),
) -> i64 {
    let order = place_at(client, base, token, 10).await;
    let version = priced_by(client, base, token, &order, "bulk")
        .await
        .unwrap_or_else(|| panic!("bulk did not price {order}"));
    let expected = if version == v1 {
        "90.00"
    } else if version == v2 {
        "80.00"
    } else {
        panic!("priced by an unknown version {version}: {order}")
    };
    assert_eq!(order["total"], expected, "priced by v{version}: {order}");
    version
}

/// The listing's record of `name` at `version`.
async fn record(app: &TestApp, name: &str, version: i64) -> Value {
    let (s, _, list) = app.get("/v1/plugins", &app.admin()).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name && r["version"] == version)
        .unwrap_or_else(|| panic!("no {name} v{version} in {list}"))
        .clone()
}

async fn a_shadow_reports_differing_answers_while_orders_keep_the_active_prices(backend: Backend) {
    let app = TestApp::spawn_with(backend, &PATIENT, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 100_000).await;
    let (v1, v2) = two_bulk_versions(&app).await;
    assert_eq!(
        shadow_thread_nice(app.pid()),
        19,
        "shadow calls run at the lowest CPU priority, after the orders"
    );
    let admin = app.admin();
    let (customer, token) = app.customer();
    let shadow = |body: Value, token: &str| {
        let token = token.to_owned();
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/plugins/bulk/shadow",
                Some(&token),
                Some(body),
                &[],
            )
            .await
        }
    };

    // Refused: a share out of (0, 1], the active version, an unknown
    // version or plugin, a customer.
    for sample in [json!(0), json!(0.0), json!(1.5), json!(-0.1)] {
        let (s, headers, body) = shadow(json!({"version": v2, "sample": sample}), &admin).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "sample {sample}: {body}"
        );
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let (s, headers, body) = shadow(json!({"version": v1, "sample": 1.0}), &admin).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (s, _, body) = shadow(json!({"version": 99, "sample": 1.0}), &admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, _, body) = app
        .call(
            Method::POST,
            "/v1/plugins/nobody/shadow",
            Some(&admin),
            Some(json!({"version": 1, "sample": 1.0})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, _, body) = shadow(json!({"version": v2, "sample": 1.0}), &token).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, _, body) = app.get("/v1/plugins/bulk/shadow", &token).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    // None of them started a shadow.
    let (s, _, status) = app.get("/v1/plugins/bulk/shadow", &admin).await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["version"], Value::Null, "{status}");

    // Shadow v2 on every call.
    let (s, _, status) = shadow(json!({"version": v2, "sample": 1.0}), &admin).await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["version"], v2, "{status}");
    assert_eq!(status["sample"], 1.0, "{status}");
    assert_eq!(status["report"]["calls"], 0, "{status}");
    assert_eq!(record(&app, "bulk", v2).await["shadow_sample"], 1.0);
    let active = record(&app, "bulk", v1).await;
    assert_eq!(active["active"], true, "{active}");
    assert!(active.get("shadow_sample").is_none(), "{active}");

    // Three orders the versions price differently, two they agree on;
    // every order keeps the active version's price.
    for quantity in [10, 1, 10, 1, 10] {
        let order = place_at(&app.client, &app.base, &token, quantity).await;
        let total = if quantity == 10 { "90.00" } else { "10.00" };
        assert_eq!(order["total"], total, "the shadow changed a price: {order}");
        let version = priced_by(&app.client, &app.base, &token, &order, "bulk").await;
        assert_eq!(version, Some(v1), "{order}");
    }

    // The shadow runs off the request's path: wait for its findings.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let (s, _, status) = app.get("/v1/plugins/bulk/shadow", &admin).await;
        assert_eq!(s, StatusCode::OK, "{status}");
        let report = &status["report"];
        let done = ["agreed", "differed", "failed"]
            .iter()
            .map(|k| report[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        if report["calls"] == 5 && done == 5 {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the shadow never caught up: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let report = &status["report"];
    assert_eq!(report["version"], v2, "{status}");
    assert_eq!(report["agreed"], 2, "{status}");
    assert_eq!(report["differed"], 3, "{status}");
    assert_eq!(report["failed"], 0, "{status}");
    assert_eq!(report["dropped"], 0, "{status}");
    let examples = report["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 3, "{status}");
    let full_id = customer.to_string();
    let masked = format!("…{}", &full_id[full_id.len() - 4..]);
    for example in examples {
        // Both answers: 10% and 20% of the 100.00 line, in cents.
        assert_eq!(example["active"][0]["amount"]["amount"], 1000, "{example}");
        assert_eq!(example["shadow"][0]["amount"]["amount"], 2000, "{example}");
        assert_eq!(example["input"]["lines"][0]["sku"], "MUG", "{example}");
        assert_eq!(example["input"]["lines"][0]["quantity"], 10, "{example}");
        assert_eq!(example["input"]["customer"]["id"], masked, "{example}");
        assert!(example["at"].is_string(), "{example}");
    }
    // The shadowed version is not also a canary: for the canary's
    // customers it would be compared with itself.
    let (s, _, body) = app
        .call(
            Method::POST,
            "/v1/plugins/bulk/activate",
            Some(&admin),
            Some(json!({"version": v2, "percent": 10})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let shown = status.to_string();
    assert!(
        !shown.contains(&full_id) && !shown.contains(&customer.simple().to_string()),
        "the customer's id is shown: {shown}"
    );
    let metrics = app.metrics().await;
    let shadow_total = |result: &str| {
        metric_sum(
            &metrics,
            "commerce_plugin_shadow_total",
            &[("plugin", "bulk"), ("result", result)],
        )
    };
    assert_eq!(shadow_total("differed"), 3.0, "{metrics}");
    assert_eq!(shadow_total("agreed"), 2.0, "{metrics}");
    assert_eq!(shadow_total("sampled"), 5.0, "{metrics}");

    // Stopped: no version, no more shadow calls, prices unchanged.
    let (s, _, body) = app.delete("/v1/plugins/bulk/shadow", &admin).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, _, status) = app.get("/v1/plugins/bulk/shadow", &admin).await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["version"], Value::Null, "{status}");
    assert_eq!(status["sample"], Value::Null, "{status}");
    assert!(
        record(&app, "bulk", v2)
            .await
            .get("shadow_sample")
            .is_none()
    );
    for _ in 0..2 {
        let order = place_at(&app.client, &app.base, &token, 10).await;
        assert_eq!(order["total"], "90.00", "{order}");
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "commerce_plugin_shadow_total",
            &[("plugin", "bulk"), ("result", "sampled")],
        ),
        5.0,
        "a stopped shadow still samples calls"
    );
    let (s, _, body) = app.delete("/v1/plugins/nobody/shadow", &admin).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_started_on_one_replica_serves_a_stable_share_of_customers_on_both() {
    const CUSTOMERS: usize = 200;
    const TASKS: usize = 8;
    let app = TestApp::spawn_with(Backend::Postgres, &PATIENT, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 10_000_000).await;
    let versions = two_bulk_versions(&app).await;
    let (v1, v2) = versions;
    let (_replica, b) = app.spawn_replica();
    let a = app.base.clone();
    let client = app.client.clone();
    let admin = app.admin();
    let in_canary = |id: Uuid| canary_bucket("bulk", id) < 10;
    // One customer the canary reaches and one it does not.
    let pick = |canary: bool| loop {
        let id = Uuid::new_v4();
        if in_canary(id) == canary {
            break (id, app.token(id, Role::Customer));
        }
    };
    let (_, reached) = pick(true);
    let (_, spared) = pick(false);
    assert_eq!(
        bulk_version_served(&client, &b, &reached, versions).await,
        v1
    );

    let activate = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.call(
                Method::POST,
                "/v1/plugins/bulk/activate",
                Some(&admin),
                Some(body),
                &[],
            )
            .await
        }
    };
    // Refused: a percent out of range, a canary of the active version.
    for percent in [0, 150] {
        let (s, _, body) = activate(json!({"version": v2, "percent": percent})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{percent}: {body}");
    }
    let (s, _, body) = activate(json!({"version": v1, "percent": 10})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");

    // A 10% canary of v2, started through replica A.
    let (s, _, canary) = activate(json!({"version": v2, "percent": 10})).await;
    assert_eq!(s, StatusCode::OK, "{canary}");
    let started = Instant::now();
    assert_eq!(canary["version"], v2, "{canary}");
    assert_eq!(canary["canary_percent"], 10, "{canary}");
    assert_eq!(canary["active"], false, "{canary}");
    let active = record(&app, "bulk", v1).await;
    assert_eq!(active["active"], true, "{active}");
    assert!(active.get("canary_percent").is_none(), "{active}");
    assert_eq!(record(&app, "bulk", v2).await["canary_percent"], 10);
    // Replica B follows within a second.
    wait_for_version(&client, &b, &reached, versions, v2, started).await;
    assert_eq!(
        bulk_version_served(&client, &b, &spared, versions).await,
        v1
    );
    assert_eq!(
        bulk_version_served(&client, &a, &reached, versions).await,
        v2
    );
    assert_eq!(
        bulk_version_served(&client, &a, &spared, versions).await,
        v1
    );

    // Many customers, one order on each replica: the same version on
    // both, v2 exactly for those in the canary's buckets.
    let customers: Vec<(Uuid, String)> = (0..CUSTOMERS).map(|_| app.customer()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in customers.chunks(CUSTOMERS.div_ceil(TASKS)) {
        let chunk = chunk.to_vec();
        let (client, a, b) = (client.clone(), a.clone(), b.clone());
        tasks.spawn(async move {
            let mut served = Vec::with_capacity(chunk.len());
            for (id, token) in chunk {
                let on_a = bulk_version_served(&client, &a, &token, versions).await;
                let on_b = bulk_version_served(&client, &b, &token, versions).await;
                served.push((id, on_a, on_b));
            }
            served
        });
    }
    let served: Vec<(Uuid, i64, i64)> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(served.len(), CUSTOMERS);
    for (id, on_a, on_b) in &served {
        assert_eq!(
            on_a, on_b,
            "customer {id} saw v{on_a} on A and v{on_b} on B"
        );
        let expected = if in_canary(*id) { v2 } else { v1 };
        assert_eq!(
            *on_a,
            expected,
            "customer {id} in bucket {}",
            canary_bucket("bulk", *id)
        );
    }
    // About 10%: P(outside 3..=45) is below 1e-6 for 200 customers.
    let reached_count = served.iter().filter(|(_, v, _)| *v == v2).count();
    assert!(
        (3..=45).contains(&reached_count),
        "{reached_count} of {CUSTOMERS} customers in a 10% canary"
    );

    // Some customers of each side, to check the rollback and the
    // promotion with.
    let mut sample: Vec<&(Uuid, String)> = customers
        .iter()
        .filter(|(id, _)| in_canary(*id))
        .take(10)
        .collect();
    sample.extend(customers.iter().filter(|(id, _)| !in_canary(*id)).take(10));

    // A rollback ends the canary: everyone gets v1 again.
    let (s, _, body) = app.post("/v1/plugins/bulk/rollback", &admin).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ended = Instant::now();
    assert_eq!(body["version"], v1, "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert!(
        record(&app, "bulk", v2)
            .await
            .get("canary_percent")
            .is_none()
    );
    assert_eq!(record(&app, "bulk", v1).await["active"], true);
    wait_for_version(&client, &b, &reached, versions, v1, ended).await;
    for (id, token) in &sample {
        for base in [&a, &b] {
            let version = bulk_version_served(&client, base, token, versions).await;
            assert_eq!(version, v1, "customer {id} at {base} after the rollback");
        }
    }

    // Activating the active version ends a canary too.
    let (s, _, body) = activate(json!({"version": v2, "percent": 10})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    wait_for_version(&client, &b, &reached, versions, v2, Instant::now()).await;
    let (s, _, body) = activate(json!({"version": v1})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ended = Instant::now();
    assert!(
        record(&app, "bulk", v2)
            .await
            .get("canary_percent")
            .is_none(),
        "re-activating v1 ends the canary"
    );
    wait_for_version(&client, &b, &reached, versions, v1, ended).await;

    // Percent 100 activates v2 for everyone.
    let (s, _, body) = activate(json!({"version": v2, "percent": 100})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let promoted = Instant::now();
    assert_eq!(body["version"], v2, "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert!(body.get("canary_percent").is_none(), "{body}");
    wait_for_version(&client, &b, &spared, versions, v2, promoted).await;
    for (id, token) in &sample {
        for base in [&a, &b] {
            let version = bulk_version_served(&client, base, token, versions).await;
            assert_eq!(version, v2, "customer {id} at {base} after the promotion");
        }
    }
}

/// Places orders as `token` at `base` until `version` prices them; fails
/// if that takes over a second from `since`.
async fn wait_for_version(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    versions: (i64, i64),
    version: i64,
    since: Instant,
) {
    loop {
        if bulk_version_served(client, base, token, versions).await == version {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{base} did not serve v{version} within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `commerce ARGS` against the app's data; its status, stdout and
/// stderr.
fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = tokio::task::block_in_place(|| app.run_cli(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `GET path` (a list of runs) until it holds at least `count`.
async fn wait_for_runs(app: &TestApp, path: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, runs) = app.get(path, &app.admin()).await;
        assert_eq!(s, StatusCode::OK, "{runs}");
        let runs = runs.as_array().cloned().unwrap_or_default();
        if runs.len() >= count {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{path} holds {} runs, not {count}",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugins_failures_are_in_the_run_log_and_rerun_locally() {
    // Skip lets orders through without the failing plugin; bulk (10%)
    // prices them, its successes captured at the default share only.
    let args = [&PATIENT[..], &["--pricing-failure", "skip"]].concat();
    let app = TestApp::spawn_with(Backend::Sqlite, &args, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 10_000).await;
    app.activate_unchecked("trapper", component("evil_trap"))
        .await;
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
    let admin = app.admin();
    let (customer, token) = app.customer();
    // The upload reloaded the set, trapper included.
    let first = place_at(&app.client, &app.base, &token, 10).await;
    assert_eq!(first["total"], "90.00", "{first}");
    assert_eq!(
        priced_by(&app.client, &app.base, &token, &first, "trapper").await,
        None,
        "a skipped plugin did not price the order"
    );
    let (_, _, list) = app.get("/v1/plugins", &admin).await;
    let trapper = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "trapper")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(trapper["stats"]["failures"]["trap"], 1, "{list}");
    let second = place_at(&app.client, &app.base, &token, 12).await;
    assert_eq!(second["total"], "108.00", "{second}");

    // Both failures are captured (by a writer task: poll), newest first.
    let runs = wait_for_runs(&app, "/v1/plugins/trapper/runs?outcome=failed", 2).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1]["input"]["lines"][0]["quantity"], 10, "{runs:?}");
    let at =
        |run: &Value| chrono::DateTime::parse_from_rfc3339(run["at"].as_str().unwrap()).unwrap();
    assert!(at(&runs[0]) >= at(&runs[1]), "newest first: {runs:?}");
    let run = runs[0].clone();
    assert_eq!(run["name"], "trapper", "{run}");
    assert_eq!(run["version"], 1, "{run}");
    assert_eq!(run["kind"], "pricing", "{run}");
    assert_eq!(run["outcome"], "trap", "{run}");
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("trapped")),
        "{run}"
    );
    // What it wrote before it trapped (its panic message).
    assert!(
        run["log"]
            .as_str()
            .is_some_and(|log| log.contains("refusing to price a cart of 1 lines")),
        "{run}"
    );
    assert!(run.get("output").is_none_or(Value::is_null), "{run}");
    assert_eq!(run["shadow"], false, "{run}");
    assert_eq!(run["input"]["lines"][0]["sku"], "MUG", "{run}");
    assert_eq!(run["input"]["lines"][0]["quantity"], 12, "{run}");
    assert_eq!(
        run["input"]["lines"][0]["unit_price"]["amount"], 1000,
        "{run}"
    );
    assert_eq!(run["input"]["currency"], "EUR", "{run}");
    assert_eq!(
        run["input"]["customer"]["id"],
        customer.to_string(),
        "{run}"
    );
    assert!(run["duration_us"].is_u64() && run["fuel"].is_u64(), "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    // Filters: the failure kind, and successes.
    let (s, _, traps) = app
        .get("/v1/plugins/trapper/runs?outcome=trap&limit=1", &admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{traps}");
    assert_eq!(traps.as_array().unwrap().len(), 1, "{traps}");
    assert_eq!(traps[0]["id"], id.as_str());
    let (_, _, none) = app.get("/v1/plugins/trapper/runs?outcome=ok", &admin).await;
    assert_eq!(none, json!([]));
    let (_, _, none) = app
        .get("/v1/plugins/trapper/runs?outcome=fuel", &admin)
        .await;
    assert_eq!(none, json!([]));
    // bulk's successes, queued before the second failure, were not
    // captured: the default share takes one in a thousand.
    let (_, _, bulk_runs) = app.get("/v1/plugins/bulk/runs", &admin).await;
    assert_eq!(bulk_runs, json!([]));

    // One run by id; 404 for another plugin's or an unknown id.
    let (s, _, one) = app
        .get(&format!("/v1/plugins/trapper/runs/{id}"), &admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one, run);
    let (s, _, body) = app
        .get(&format!("/v1/plugins/bulk/runs/{id}"), &admin)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, _, body) = app
        .get(
            &format!("/v1/plugins/trapper/runs/{}", Uuid::new_v4()),
            &admin,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    // Bad queries, and customers.
    for query in ["outcome=bogus", "limit=0", "limit=501"] {
        let (s, headers, body) = app
            .get(&format!("/v1/plugins/trapper/runs?{query}"), &admin)
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let (s, _, body) = app.get("/v1/plugins/trapper/runs", &token).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, _, body) = app
        .get(&format!("/v1/plugins/trapper/runs/{id}"), &token)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // The CLI lists it.
    let (ok, out, err) = cli(&app, &["plugin", "runs", "trapper", "--outcome", "failed"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    let (ok, out, err) = cli(&app, &["plugin", "runs", "trapper", "--outcome", "ok"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]));

    // Re-run locally: the trapping component traps again...
    let trap = component_path("evil_trap");
    let (ok, out, err) = cli(
        &app,
        &[
            "plugin",
            "run",
            &trap,
            "--input-run",
            &id,
            "--kind",
            "pricing",
        ],
    );
    assert!(!ok, "the trap did not fail: {out}");
    assert!(err.contains("trapped"), "{err}");
    // ...a fixed one answers (with the configuration given: 20% of 120.00).
    let bulk = component_path("bulk_discount");
    let (ok, out, err) = cli(
        &app,
        &[
            "plugin",
            "run",
            &bulk,
            "--input-run",
            &id,
            "--kind",
            "pricing",
            "--config",
            TWENTY_PERCENT,
        ],
    );
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let adjustments = answer["adjustments"].as_array().unwrap();
    assert_eq!(adjustments.len(), 1, "{answer}");
    assert_eq!(adjustments[0]["amount"]["amount"], 2400, "{answer}");
    assert_eq!(adjustments[0]["amount"]["currency"], "EUR", "{answer}");
    // An unknown run id is an error.
    let unknown = Uuid::new_v4().to_string();
    let (ok, _, err) = cli(
        &app,
        &[
            "plugin",
            "run",
            &bulk,
            "--input-run",
            &unknown,
            "--kind",
            "pricing",
        ],
    );
    assert!(!ok);
    assert!(err.contains(&unknown), "{err}");

    // A run exported from the API is an input file.
    let dir = tempfile::tempdir().unwrap();
    let exported = dir.path().join("run.json");
    std::fs::write(&exported, serde_json::to_string_pretty(&one).unwrap()).unwrap();
    let (ok, out, err) = cli(
        &app,
        &[
            "plugin",
            "run",
            &bulk,
            "--input",
            exported.to_str().unwrap(),
            "--kind",
            "pricing",
            "--config",
            TWENTY_PERCENT,
        ],
    );
    assert!(ok, "{err}");
    let from_file: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(from_file, answer);
    // So is the bare input.
    let bare = dir.path().join("cart.json");
    std::fs::write(&bare, one["input"].to_string()).unwrap();
    let (ok, out, err) = cli(
        &app,
        &[
            "plugin",
            "run",
            &bulk,
            "--input",
            bare.to_str().unwrap(),
            "--kind",
            "pricing",
            "--config",
            TWENTY_PERCENT,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), answer);
    // Neither input: refused.
    let (ok, _, _) = cli(&app, &["plugin", "run", &bulk, "--kind", "pricing"]);
    assert!(!ok, "plugin run without an input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_calls_are_captured_at_the_run_sample() {
    let args = [&PATIENT[..], &["--plugin-run-sample", "1"]].concat();
    let app = TestApp::spawn_with(Backend::Sqlite, &args, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 10_000).await;
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
    let (_, token) = app.customer();
    for quantity in [10, 1] {
        place_at(&app.client, &app.base, &token, quantity).await;
    }
    // The dry runs of the upload's checks are not captured; both live
    // calls are.
    let runs = wait_for_runs(&app, "/v1/plugins/bulk/runs?outcome=ok", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, _, all) = app.get("/v1/plugins/bulk/runs", &app.admin()).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    // Newest first: the 1-mug order, no adjustment; then the 10 mugs.
    let (one, ten) = (&runs[0], &runs[1]);
    for run in [one, ten] {
        assert_eq!(run["outcome"], "ok", "{run}");
        assert_eq!(run["version"], 1, "{run}");
        assert_eq!(run["shadow"], false, "{run}");
        assert!(run.get("error").is_none_or(Value::is_null), "{run}");
        assert!(run["fuel"].as_u64().unwrap() > 0, "{run}");
    }
    assert_eq!(one["input"]["lines"][0]["quantity"], 1, "{one}");
    assert_eq!(one["output"], json!([]), "{one}");
    assert_eq!(ten["input"]["lines"][0]["quantity"], 10, "{ten}");
    assert_eq!(ten["output"][0]["amount"]["amount"], 1000, "{ten}");
    let (_, _, failed) = app
        .get("/v1/plugins/bulk/runs?outcome=failed", &app.admin())
        .await;
    assert_eq!(failed, json!([]));
    let (_, _, limited) = app.get("/v1/plugins/bulk/runs?limit=1", &app.admin()).await;
    assert_eq!(limited.as_array().unwrap().len(), 1, "{limited}");
    assert_eq!(limited[0]["id"], one["id"]);
}

/// `GET {base}/v1/plugins/bulk/shadow` as `token`, at one replica or the
/// other; the status (its report is that replica's).
async fn bulk_shadow_at(client: &reqwest::Client, base: &str, token: &str) -> Value {
    let resp = client
        .get(format!("{base}/v1/plugins/bulk/shadow"))
        .bearer_auth(token)
        .send()
        .await
        .expect("shadow status");
    let status = resp.status();
    let body: Value = resp.json().await.expect("shadow status json");
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Shadow calls `base` sampled for bulk, by its `/metrics`.
async fn bulk_sampled_at(app: &TestApp, base: &str) -> f64 {
    metric_sum(
        &app.metrics_at(base).await,
        "commerce_plugin_shadow_total",
        &[("plugin", "bulk"), ("result", "sampled")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_started_on_one_replica_is_in_force_on_the_other_within_a_second() {
    let app = TestApp::spawn_with(Backend::Postgres, &PATIENT, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 100_000).await;
    let (v1, v2) = two_bulk_versions(&app).await;
    let (_replica, b) = app.spawn_replica();
    let a = app.base.clone();
    let client = app.client.clone();
    let admin = app.admin();
    let (_, token) = app.customer();
    // Before the shadow, B shadows nothing.
    let order = place_at(&client, &b, &token, 10).await;
    assert_eq!(order["total"], "90.00", "{order}");
    let status = bulk_shadow_at(&client, &b, &admin).await;
    assert_eq!(status["version"], Value::Null, "{status}");
    assert_eq!(status["report"]["calls"], 0, "{status}");

    // Shadow v2 on every call, started through replica A.
    let (s, _, status) = app
        .call(
            Method::POST,
            "/v1/plugins/bulk/shadow",
            Some(&admin),
            Some(json!({"version": v2, "sample": 1.0})),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{status}");
    let started = Instant::now();
    assert_eq!(status["version"], v2, "{status}");

    // What is bounded: the order of B's that the shadow sampled was
    // answered within a second of A's answer to the POST. A sampled call
    // is counted in B's metrics (commerce_plugin_shadow_total, result
    // sampled) before the order is answered, so the metrics read right
    // after an order cover it; the call itself runs later on B's shadow
    // thread (lowest priority), and its report is waited for below with a
    // looser deadline (a busy two-core machine may delay that thread).
    let mut placed = 0;
    let sampled = loop {
        let order = place_at(&client, &b, &token, 10).await;
        let answered = started.elapsed();
        placed += 1;
        assert_eq!(
            order["total"], "90.00",
            "the shadow changed a price: {order}"
        );
        assert_eq!(
            priced_by(&client, &b, &token, &order, "bulk").await,
            Some(v1),
            "{order}"
        );
        let status = bulk_shadow_at(&client, &b, &admin).await;
        let calls = bulk_sampled_at(&app, &b).await as u64;
        assert!(
            answered < Duration::from_secs(1),
            "B had not shadowed any of {placed} orders a second after the shadow started \
             (the last answered after {answered:?}): {status}"
        );
        if calls >= 1 {
            assert_eq!(status["version"], v2, "{status}");
            assert_eq!(status["sample"], 1.0, "{status}");
            break calls;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        sampled <= placed,
        "{sampled} calls sampled of {placed} orders"
    );
    // B compares what it sampled: v1 took 10.00 off, v2 would take 20.00.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = bulk_shadow_at(&client, &b, &admin).await;
        if status["report"]["differed"].as_u64().unwrap_or(0) >= 1 {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "B never compared the call it sampled: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["report"]["version"], v2, "{status}");
    assert!(status["report"]["calls"].as_u64() >= Some(1), "{status}");
    assert_eq!(status["report"]["agreed"], 0, "{status}");
    assert_eq!(status["report"]["failed"], 0, "{status}");
    let example = &status["report"]["examples"][0];
    assert_eq!(example["active"][0]["amount"]["amount"], 1000, "{status}");
    assert_eq!(example["shadow"][0]["amount"]["amount"], 2000, "{status}");
    // A shadows its own calls too.
    let before = bulk_sampled_at(&app, &a).await;
    let order = place_at(&client, &a, &token, 10).await;
    assert_eq!(order["total"], "90.00", "{order}");
    assert_eq!(bulk_sampled_at(&app, &a).await, before + 1.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = bulk_shadow_at(&client, &a, &admin).await;
        if status["report"]["calls"].as_u64() >= Some(1) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "A never ran the call it sampled: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["version"], v2, "{status}");

    // Stopped through B: A stops sampling within a second of B's answer
    // (with a sample of 1, every call of a shadowed plugin is sampled).
    let resp = client
        .delete(format!("{b}/v1/plugins/bulk/shadow"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("stop the shadow");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let stopped = Instant::now();
    let status = bulk_shadow_at(&client, &a, &admin).await;
    assert_eq!(status["version"], Value::Null, "{status}");
    assert_eq!(status["sample"], Value::Null, "{status}");
    loop {
        let before = bulk_sampled_at(&app, &a).await;
        let order = place_at(&client, &a, &token, 10).await;
        assert_eq!(order["total"], "90.00", "{order}");
        let after = bulk_sampled_at(&app, &a).await;
        if after == before {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(1),
            "A still shadowed calls a second after the shadow stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And it stays stopped, on both; A's report is gone with the shadow.
    let (on_a, on_b) = (
        bulk_sampled_at(&app, &a).await,
        bulk_sampled_at(&app, &b).await,
    );
    for base in [&a, &b, &a, &b] {
        let order = place_at(&client, base, &token, 10).await;
        assert_eq!(order["total"], "90.00", "{order}");
    }
    assert_eq!(
        bulk_sampled_at(&app, &a).await,
        on_a,
        "A samples a stopped shadow"
    );
    assert_eq!(
        bulk_sampled_at(&app, &b).await,
        on_b,
        "B samples a stopped shadow"
    );
    let status = bulk_shadow_at(&client, &a, &admin).await;
    assert_eq!(status["version"], Value::Null, "{status}");
    assert_eq!(status["report"]["calls"], 0, "{status}");
}

/// `commerce ARGS`, which must succeed; its output, as JSON.
fn cli_json(app: &TestApp, args: &[&str]) -> Value {
    let (ok, out, err) = cli(app, args);
    assert!(ok, "commerce {}: {err}", args.join(" "));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("commerce {}: {e}: {out}", args.join(" ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_starts_canaries_and_shadows_lists_runs_and_replays() {
    let app = TestApp::spawn_with(Backend::Sqlite, &PATIENT, &[]).await;
    app.put_product("MUG", "10.00", "EUR", 100_000).await;
    let versions = two_bulk_versions(&app).await;
    let (v1, v2) = versions;
    assert_eq!(
        (v1, v2),
        (1, 2),
        "the CLI calls below name versions 1 and 2"
    );
    let (client, base, admin) = (app.client.clone(), app.base.clone(), app.admin());

    // A replay of v1 on the three orders v1 priced: the same answers.
    let (_, token) = app.customer();
    for quantity in [10, 1, 12] {
        place_at(&client, &base, &token, quantity).await;
    }
    let report = cli_json(
        &app,
        &["plugin", "replay", "bulk", "--version", "1", "--limit", "5"],
    );
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["plugin"], "bulk", "{report}");
    assert_eq!(report["version"], 1, "{report}");
    assert_eq!(report["orders"], 3, "{report}");
    assert_eq!(report["same"], 3, "{report}");
    assert_eq!(report["differed"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");

    // A 30% canary of v2: the service follows within a second.
    let pick = |canary: bool| loop {
        let (id, token) = app.customer();
        if (canary_bucket("bulk", id) < 30) == canary {
            break token;
        }
    };
    let (reached, spared) = (pick(true), pick(false));
    let canary = cli_json(
        &app,
        &[
            "plugin",
            "canary",
            "bulk",
            "--version",
            "2",
            "--percent",
            "30",
        ],
    );
    let started = Instant::now();
    assert_eq!(canary["name"], "bulk", "{canary}");
    assert_eq!(canary["version"], 2, "{canary}");
    assert_eq!(canary["canary_percent"], 30, "{canary}");
    assert_eq!(canary["active"], false, "{canary}");
    wait_for_version(&client, &base, &reached, versions, v2, started).await;
    assert_eq!(
        bulk_version_served(&client, &base, &spared, versions).await,
        v1
    );
    // 100 is an activation, not a canary: refused before it reaches the
    // registry.
    let (ok, out, err) = cli(
        &app,
        &[
            "plugin",
            "canary",
            "bulk",
            "--version",
            "2",
            "--percent",
            "100",
        ],
    );
    assert!(!ok, "a canary of 100%: {out}");
    assert!(err.contains("--percent"), "{err}");
    assert_eq!(record(&app, "bulk", v2).await["canary_percent"], 30);
    assert_eq!(
        bulk_version_served(&client, &base, &spared, versions).await,
        v1
    );

    // The canary's version is not shadowed (it would be compared with
    // itself for the canary's customers): the canary ends first.
    let (ok, out, err) = cli(
        &app,
        &[
            "plugin",
            "shadow",
            "bulk",
            "--version",
            "2",
            "--sample",
            "0.5",
        ],
    );
    assert!(!ok, "a shadow of the canary: {out}");
    assert!(err.contains("in canary"), "{err}");
    let (ok, out, err) = cli(&app, &["plugin", "rollback", "bulk"]);
    assert!(ok, "{out} {err}");
    assert!(
        record(&app, "bulk", v2)
            .await
            .get("canary_percent")
            .is_none()
    );

    // A shadow: started, shown, stopped.
    let shadow = cli_json(
        &app,
        &[
            "plugin",
            "shadow",
            "bulk",
            "--version",
            "2",
            "--sample",
            "0.5",
        ],
    );
    assert_eq!(
        shadow,
        json!({"name": "bulk", "version": 2, "sample": 0.5}),
        "{shadow}"
    );
    let status = bulk_shadow_at(&client, &base, &admin).await;
    assert_eq!(status["version"], v2, "{status}");
    assert_eq!(status["sample"], 0.5, "{status}");
    let shown = cli_json(&app, &["plugin", "shadow", "bulk"]);
    assert_eq!(shown, shadow);
    // A version needs a sample.
    let (ok, out, _) = cli(&app, &["plugin", "shadow", "bulk", "--version", "2"]);
    assert!(!ok, "a shadow without a sample: {out}");
    let stopped = cli_json(&app, &["plugin", "shadow", "bulk", "--stop"]);
    assert_eq!(
        stopped,
        json!({"name": "bulk", "version": null, "sample": null}),
        "{stopped}"
    );
    let status = bulk_shadow_at(&client, &base, &admin).await;
    assert_eq!(status["version"], Value::Null, "{status}");
    assert_eq!(status["sample"], Value::Null, "{status}");
    let shown = cli_json(&app, &["plugin", "shadow", "bulk"]);
    assert_eq!(shown, stopped);

    // The run log's filter names what it takes.
    let (ok, out, err) = cli(&app, &["plugin", "runs", "bulk", "--outcome", "bogus"]);
    assert!(!ok, "an unknown outcome: {out}");
    assert!(err.contains("bogus"), "{err}");
    for outcome in ["ok", "failed", "trap", "fuel", "deadline"] {
        assert!(err.contains(outcome), "{outcome} is not named: {err}");
    }
}

/// The nice value of the service's `plugin-shadow` thread, from
/// /proc/PID/task/TID/stat (its 19th field).
fn shadow_thread_nice(pid: u32) -> i64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == "plugin-shadow" {
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            // After the command, which is in parentheses: state is field 3.
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            return fields[19 - 3].parse().unwrap();
        }
    }
    panic!("the service has no plugin-shadow thread");
}
