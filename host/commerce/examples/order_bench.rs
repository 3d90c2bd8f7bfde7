//! Order creation over HTTP: orders/s and latency percentiles.
//!
//! Starts the service in-process on a free port against a fresh store
//! (embedded SQLite in a temporary directory, or a fresh schema in
//! PostgreSQL), seeds a catalog, then has `--concurrency` clients place
//! orders (`POST /v1/orders` with an Idempotency-Key, 1 to 3 lines) as fast
//! as the service answers, for `--duration` seconds. Client and service
//! share the machine, as they would in a single-box deployment.
//!
//! Every order reserves its stock as it is placed, so `--skus` sets the
//! contention: `--skus 1` puts every order on one hot SKU (every claim
//! races every other), `--skus 1000` spreads them out. The summary reports
//! the stock claims that lost a race and were retried. `--stock` sets the
//! units per product: below what the run orders, the products sell out
//! under load, and the losers' `409 out-of-stock` answers are counted
//! apart from errors.
//!
//! After the load the run checks every product against what the clients
//! were told: the units reserved (or, with `--saga`, sold) are exactly
//! the units of the orders answered 201, and never more than were on
//! hand. A run that oversells, or loses a hold, exits non-zero.
//!
//! ```text
//! cargo run --release --example order_bench -- --backend sqlite
//! cargo run --release --example order_bench -- --backend postgres
//! cargo run --release --example order_bench -- --backend postgres --skus 1
//! cargo run --release --example order_bench -- --backend postgres --skus 1 --stock 20000
//! ```
//! PostgreSQL is reached at TEST_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/test).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use commerce_api::auth::JwtKeys;
use commerce_app::Role;
use commerce_app::inventory::InventoryStats;
use commerce_service::startup::Application;
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_parser = ["sqlite", "postgres"], default_value = "sqlite")]
    backend: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of load (after a 2 s warm-up).
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Products in the catalog.
    #[arg(long, default_value_t = 100)]
    skus: usize,
    /// Units on hand seeded per product.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(0..))]
    stock: i64,
    /// Activate the example pricing and validation plugins.
    #[arg(long)]
    plugins: bool,
    /// Run the fulfilment saga of every order through the payment
    /// simulator (embedded, as `commerce serve` runs it without
    /// PAYMENT_URL), and report orders/s to `confirmed` and saga
    /// durations.
    #[arg(long)]
    saga: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let admin_url = common::admin_url();
    let fresh = common::FreshStore::create(&args.backend, dir.path()).await?;
    let store = commerce_store::open(&fresh.config).await?;
    let keys = JwtKeys::new(common::SECRET.as_bytes());
    let (base, inventory) = start_service(&args, store.clone(), dir.path(), &keys).await?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    common::seed(&client, &base, &keys, args.skus, args.stock).await?;

    let stats_before = pg_stats(&args, &admin_url).await?;
    let load = load(&args, &client, &base, &keys).await?;
    print_latencies(&args, &load);
    print_stock_claims(&inventory, load.placed);
    if let (Some(before), Some(after)) = (stats_before, pg_stats(&args, &admin_url).await?) {
        // Over the whole run, warm-up included: transactions of any kind
        // (reads are transactions too) and WAL flushes (durable commits).
        let placed = load.placed;
        println!(
            "postgres per order: {:.2} transactions, {:.2} WAL flushes ({placed} orders)",
            (after.0 - before.0) as f64 / placed as f64,
            (after.1 - before.1) as f64 / placed as f64,
        );
    }
    if args.saga {
        saga_summary(&*store, args.duration as f64).await?;
    }
    let checked = check_stock(&args, &client, &base, &keys, &load).await;
    fresh.drop().await?;
    checked
}

/// Every product against what the clients were told: the units of the
/// orders answered 201 are reserved (sold, once the sagas ended), no more
/// and no fewer, and never more than were on hand.
async fn check_stock(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
    keys: &JwtKeys,
    load: &Load,
) -> anyhow::Result<()> {
    let admin = keys.mint(Uuid::nil(), Role::Admin, Duration::from_secs(60))?;
    for (i, &held) in load.held.iter().enumerate() {
        let product: serde_json::Value = client
            .get(format!("{base}/v1/products/SKU-{i}"))
            .bearer_auth(&admin)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let field = |name: &str| product[name].as_i64().unwrap_or(-1);
        let (on_hand, reserved) = (field("on_hand"), field("reserved"));
        let held = i64::try_from(held)?;
        // With the saga every order was paid (tok_ok), and a capture takes
        // its units off the shelf.
        let expected = if args.saga {
            (args.stock - held, 0)
        } else {
            (args.stock, held)
        };
        anyhow::ensure!(
            (on_hand, reserved) == expected && held <= args.stock,
            "stock check failed for SKU-{i}: on hand {on_hand}, reserved {reserved}; \
             the clients were sold {held} of {} units",
            args.stock
        );
    }
    let units: u64 = load.held.iter().sum();
    println!(
        "stock check: OK ({units} units sold over {} products, each as told to its buyer, none oversold; {} refused out of stock)",
        load.held.len(),
        load.refused
    );
    Ok(())
}

/// Starts the service on a free port, with payments and the example
/// plugins if asked; returns its base URL and its stock-claim counters.
async fn start_service(
    args: &Args,
    store: Arc<dyn commerce_app::Store>,
    dir: &Path,
    keys: &JwtKeys,
) -> anyhow::Result<(String, Arc<InventoryStats>)> {
    let settings = commerce_plugins::PluginSettings {
        cache_dir: dir.join("plugin-cache"),
        ..Default::default()
    };
    let (app, _runtime) = commerce_service::startup::build_app(store, settings).await?;
    let app = if args.saga {
        commerce_service::startup::with_payments(
            app,
            None,
            commerce_payment::DEFAULT_TIMEOUT,
            Default::default(),
        )
        .await?
    } else {
        app
    };
    if args.plugins {
        for (name, bytes, config, listen) in commerce_bundled::EXAMPLES {
            let config = (*config).to_owned();
            commerce_plugins::watcher::install(&app, name, bytes.to_vec(), config, *listen).await;
        }
    }
    let inventory = app.inventory_stats.clone();
    let app = Application::build("127.0.0.1:0", app, keys.clone()).await?;
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());
    Ok((base, inventory))
}

/// What the clients saw.
#[derive(Default)]
struct Load {
    /// Latencies of the orders placed after the warm-up, sorted.
    latencies: Vec<Duration>,
    /// Failed placements after the warm-up.
    errors: u64,
    /// Orders placed, warm-up included.
    placed: u64,
    /// Orders answered 409 out-of-stock, warm-up included.
    refused: u64,
    /// Units of the placed orders per product (`SKU-i` at `i`).
    held: Vec<u64>,
}

/// `--concurrency` clients placing orders for 2 s of warm-up and
/// `--duration` seconds more.
async fn load(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
    keys: &JwtKeys,
) -> anyhow::Result<Load> {
    let warmup = Instant::now() + Duration::from_secs(2);
    let deadline = warmup + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, base) = (client.clone(), base.to_owned());
        let token = keys.mint(Uuid::new_v4(), Role::Customer, Duration::from_secs(3600))?;
        let skus = args.skus;
        tasks.push(tokio::spawn(async move {
            place_orders(&client, &base, &token, worker, skus, warmup, deadline).await
        }));
    }
    let mut load = Load {
        held: vec![0; args.skus],
        ..Load::default()
    };
    for t in tasks {
        let one = t.await?;
        load.latencies.extend(one.latencies);
        load.errors += one.errors;
        load.placed += one.placed;
        load.refused += one.refused;
        for (all, mine) in load.held.iter_mut().zip(one.held) {
            *all += mine;
        }
    }
    load.latencies.sort();
    Ok(load)
}

/// One client: places orders of 1 to 3 lines until `deadline`; returns
/// the latencies and errors after `warmup`, and what it placed. A 409
/// out-of-stock is a refusal, not an error (and not a latency sample).
async fn place_orders(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    worker: usize,
    skus: usize,
    warmup: Instant,
    deadline: Instant,
) -> Load {
    let mut mine = Load {
        held: vec![0; skus],
        ..Load::default()
    };
    let mut n = worker;
    loop {
        let start = Instant::now();
        if start >= deadline {
            break;
        }
        n += 7;
        // 1 to 3 lines of distinct SKUs (fewer when there are fewer SKUs).
        let lines = 1 + n % skus.min(3);
        let step = if skus >= 40 { 13 } else { 1 };
        let lines: Vec<(usize, usize)> =
            (0..lines).map(|l| ((n + l * step) % skus, 1 + l)).collect();
        let items: Vec<_> = lines
            .iter()
            .map(|(sku, quantity)| json!({"sku": format!("SKU-{sku}"), "quantity": quantity}))
            .collect();
        let result = client
            .post(format!("{base}/v1/orders"))
            .bearer_auth(token)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&json!({"items": items, "currency": "EUR", "payment": {"token": "tok_ok"}}))
            .send()
            .await;
        let status = result.as_ref().map(reqwest::Response::status).ok();
        let ok = status == Some(reqwest::StatusCode::CREATED);
        let refused = status == Some(reqwest::StatusCode::CONFLICT) && {
            let body = result.map(|r| r.text());
            match body {
                Ok(text) => text
                    .await
                    .is_ok_and(|t| t.contains("/problems/out-of-stock")),
                Err(_) => false,
            }
        };
        if ok {
            mine.placed += 1;
            for &(sku, quantity) in &lines {
                mine.held[sku] += quantity as u64;
            }
        }
        mine.refused += refused as u64;
        if start >= warmup {
            if ok {
                mine.latencies.push(start.elapsed());
            } else if !refused {
                mine.errors += 1;
            }
        }
    }
    mine
}

/// The run's line: orders/s and latency percentiles.
fn print_latencies(args: &Args, load: &Load) {
    let latencies = &load.latencies;
    let orders = latencies.len() as f64;
    println!(
        "backend={} plugins={} skus={} concurrency={} duration={}s orders={} errors={} orders/s={:.0} p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
        args.backend,
        args.plugins,
        args.skus,
        args.concurrency,
        args.duration,
        latencies.len(),
        load.errors,
        orders / args.duration as f64,
        common::percentile_ms(latencies, 0.50),
        common::percentile_ms(latencies, 0.95),
        common::percentile_ms(latencies, 0.99),
        common::percentile_ms(latencies, 1.0),
    );
}

/// The stock claims' races, warm-up included, per write and per order.
fn print_stock_claims(inventory: &InventoryStats, placed: u64) {
    use commerce_app::inventory::InventoryStats as S;
    let attempts = S::get(&inventory.hold_attempts);
    let conflicts = S::get(&inventory.hold_conflicts);
    // Races lost inside the write (re-read and retried on the new
    // version, same transaction) and races that sent the whole order
    // back to be planned again (a new transaction, after a backoff).
    let rereads: u64 = commerce_api::prometheus::handle()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(commerce_app::inventory::CLAIM_REREADS))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    println!(
        "stock claims (warm-up included): {attempts} writes with a claim; {rereads} claims re-read and retried \
         in their transaction ({:.1}% of writes); {conflicts} writes replanned after a backoff ({:.2} per placed order); \
         {} gave up, {} out of stock",
        100.0 * rereads as f64 / attempts.max(1) as f64,
        conflicts as f64 / placed.max(1) as f64,
        S::get(&inventory.exhausted),
        S::get(&inventory.out_of_stock),
    );
}

/// (transactions committed in this database, WAL syncs of the cluster).
async fn pg_stats(args: &Args, url: &str) -> anyhow::Result<Option<(i64, i64)>> {
    if args.backend != "postgres" {
        return Ok(None);
    }
    let mut conn = sqlx::PgConnection::connect(url).await?;
    // Statistics are flushed lazily; let them catch up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let row: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), \
         (SELECT wal_sync FROM pg_stat_wal)",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(Some(row))
}

/// Waits for every saga to finish, then reports how many orders reached
/// `confirmed` per second of load and how long the sagas took (from the
/// placement that started them to their last write).
async fn saga_summary(store: &dyn commerce_app::Store, seconds: f64) -> anyhow::Result<()> {
    use commerce_domain::saga::SagaStatus;
    let waited = Instant::now();
    loop {
        let running = store.count_sagas(SagaStatus::Running).await?
            + store.count_sagas(SagaStatus::Compensating).await?;
        if running == 0 || waited.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut durations, mut outcomes) = (Vec::new(), std::collections::BTreeMap::new());
    let (mut first, mut last_end) = (None, None);
    let mut after = None;
    loop {
        let page = store.list_sagas(None, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.saga_id);
        for s in &page {
            *outcomes.entry(format!("{:?}", s.status())).or_insert(0u64) += 1;
            first = first.min(Some(s.created_at)).or(Some(s.created_at));
            last_end = last_end.max(Some(s.updated_at));
            if s.status() == SagaStatus::Completed {
                durations.push((s.updated_at - s.created_at).to_std().unwrap_or_default());
            }
        }
    }
    durations.sort();
    let pct = |p: f64| {
        durations
            .get(((durations.len() as f64 * p) as usize).min(durations.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    // Warm-up orders included: from the first placement to the last
    // confirmation.
    let span = match (first, last_end) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default().as_secs_f64(),
        _ => seconds,
    };
    println!(
        "sagas (warm-up included): {outcomes:?}; confirmed/s from first placement to last confirmation={:.0} ({:.1}s); saga p50={:.1}ms p99={:.1}ms max={:.1}ms; drained {:.1}s after the load",
        durations.len() as f64 / span.max(0.001),
        span,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        waited.elapsed().as_secs_f64(),
    );
    Ok(())
}
