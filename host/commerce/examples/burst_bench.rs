//! The last units of a product, fought over: how fast the losers hear no.
//!
//! Starts the service in-process on a free port against a fresh store
//! (a schema of its own in PostgreSQL, or embedded SQLite), with the
//! fulfilment saga paying through the embedded payment simulator, and
//! makes one product scarce: `--units` on hand. Then `--buyers` customers,
//! each with its own token and an open connection, place an order for one
//! unit at the same instant (`POST /v1/orders`, released together by a
//! barrier). Exactly `--units` must win (201) and every other buyer must
//! get a clean `409` with the problem type `/problems/out-of-stock`;
//! anything else fails the run. The product is restocked by `--units` and
//! the burst repeated, `--rounds` times in all.
//!
//! Afterwards, once every saga has ended, the product must show nothing
//! reserved and nothing on hand (every unit sold exactly once), and one
//! completed saga per winner. The losers' latencies (sent to answered)
//! are reported per round and over all rounds. A first burst on another
//! product warms the service up and is not counted.
//!
//! ```text
//! cargo run --release --example burst_bench                  # 60 buyers, 3 units, twice
//! cargo run --release --example burst_bench -- --rounds 50   # more samples for the p99
//! cargo run --release --example burst_bench -- --backend sqlite --plugins
//! ```
//! PostgreSQL is reached at TEST_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/test). Exits non-zero if a round
//! does not have exactly `--units` winners and clean losers, or if stock
//! and sagas do not agree afterwards.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use commerce_api::auth::JwtKeys;
use commerce_app::Role;
use commerce_domain::saga::SagaStatus;
use commerce_service::startup::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_parser = ["sqlite", "postgres"], default_value = "postgres")]
    backend: String,
    /// Customers buying at the same instant, one unit each.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(2..=1000))]
    buyers: u32,
    /// Units left of the product when a burst starts.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    units: u32,
    /// Bursts measured (the product restocked by --units before each).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rounds: u32,
    /// Activate the example plugins (pricing, validation, saga hook), as
    /// `commerce serve --example-plugins` does.
    #[arg(long)]
    plugins: bool,
}

/// The SKU fought over, and the one the warm-up burst uses.
const SKU: &str = "LAST-UNITS";
const WARM_UP_SKU: &str = "WARM-UP";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.units < args.buyers, "--units must be below --buyers");
    let dir = tempfile::tempdir()?;
    let fresh = common::FreshStore::create(&args.backend, dir.path()).await?;
    let store = commerce_store::open(&fresh.config).await?;
    let keys = JwtKeys::new(common::SECRET.as_bytes());
    let base = start_service(&args, store.clone(), dir.path(), &keys).await?;
    let admin = keys.mint(Uuid::nil(), Role::Admin, Duration::from_secs(3600))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.buyers as usize)
        .build()?;
    let buyers: Vec<String> = (0..args.buyers)
        .map(|_| keys.mint(Uuid::new_v4(), Role::Customer, Duration::from_secs(3600)))
        .collect::<Result<_, _>>()?;

    // Warm-up: connections opened (one per buyer) and one burst on a
    // product of its own.
    put_product(&client, &base, &admin, WARM_UP_SKU, args.units).await?;
    burst(&client, &base, &buyers, WARM_UP_SKU, args.units)
        .await
        .context("warm-up burst")?;

    put_product(&client, &base, &admin, SKU, 0).await?;
    let mut all_losers = Vec::new();
    println!(
        "backend={} plugins={} buyers={} units={} rounds={}",
        args.backend, args.plugins, args.buyers, args.units, args.rounds
    );
    for round in 1..=args.rounds {
        restock(&client, &base, &admin, args.units).await?;
        let mut result = burst(&client, &base, &buyers, SKU, args.units)
            .await
            .with_context(|| format!("round {round}"))?;
        result.losers.sort();
        println!(
            "round {round}: {} won (p50 {:.2} ms, max {:.2} ms), {} lost with 409 out-of-stock: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            result.winners.len(),
            median_ms(&mut result.winners),
            max_ms(&result.winners),
            result.losers.len(),
            common::percentile_ms(&result.losers, 0.50),
            common::percentile_ms(&result.losers, 0.99),
            common::percentile_ms(&result.losers, 1.0),
        );
        all_losers.extend(result.losers);
    }
    all_losers.sort();
    let p99 = common::percentile_ms(&all_losers, 0.99);
    println!(
        "all rounds: {} losers, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target: p99 < 50 ms, {})",
        all_losers.len(),
        common::percentile_ms(&all_losers, 0.50),
        common::percentile_ms(&all_losers, 0.95),
        p99,
        common::percentile_ms(&all_losers, 1.0),
        if p99 < 50.0 { "met" } else { "not met" },
    );

    check_afterwards(&client, &base, &admin, &*store, &args).await?;
    fresh.drop().await?;
    Ok(())
}

/// Starts the service on a free port, paying through the embedded
/// payment simulator, with the example plugins if asked; returns its base
/// URL.
async fn start_service(
    args: &Args,
    store: Arc<dyn commerce_app::Store>,
    dir: &std::path::Path,
    keys: &JwtKeys,
) -> anyhow::Result<String> {
    let settings = commerce_plugins::PluginSettings {
        cache_dir: dir.join("plugin-cache"),
        ..Default::default()
    };
    let (app, _runtime) = commerce_service::startup::build_app(store, settings).await?;
    let app = commerce_service::startup::with_payments(
        app,
        None,
        commerce_payment::DEFAULT_TIMEOUT,
        Default::default(),
    )
    .await?;
    if args.plugins {
        for (name, bytes, config, listen) in commerce_bundled::EXAMPLES {
            let config = (*config).to_owned();
            commerce_plugins::watcher::install(&app, name, bytes.to_vec(), config, *listen).await;
        }
    }
    let app = Application::build("127.0.0.1:0", app, keys.clone()).await?;
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());
    Ok(base)
}

async fn put_product(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    sku: &str,
    stock: u32,
) -> anyhow::Result<()> {
    let body =
        json!({"name": "The last ones", "unit_price": "49.00", "currency": "EUR", "stock": stock});
    let resp = client
        .put(format!("{base}/v1/products/{sku}"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await?;
    ensure!(resp.status().is_success(), "PUT product: {}", resp.status());
    Ok(())
}

/// Adds `units` to the product's stock, as a restock delivery would.
async fn restock(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    units: u32,
) -> anyhow::Result<()> {
    let resp = client
        .post(format!("{base}/v1/products/{SKU}/adjust"))
        .bearer_auth(admin)
        .json(&json!({"delta": units, "reason": "restock before a burst"}))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "restock: {}", resp.status());
    let available = resp.json::<Value>().await?["available"].as_i64();
    ensure!(
        available == Some(i64::from(units)),
        "after the restock {available:?} units are available, not {units}"
    );
    Ok(())
}

/// What one burst's buyers saw: the latency of each win and each loss.
struct Burst {
    winners: Vec<Duration>,
    losers: Vec<Duration>,
}

/// Every buyer orders one unit of `sku` at the same instant; an error
/// unless exactly `units` win and every other buyer gets a 409
/// out-of-stock.
async fn burst(
    client: &reqwest::Client,
    base: &str,
    buyers: &[String],
    sku: &str,
    units: u32,
) -> anyhow::Result<Burst> {
    let barrier = Arc::new(Barrier::new(buyers.len()));
    let tasks: Vec<_> = buyers
        .iter()
        .map(|token| {
            let (client, base, token) = (client.clone(), base.to_owned(), token.clone());
            let (barrier, sku) = (barrier.clone(), sku.to_owned());
            tokio::spawn(async move { buy(&client, &base, &token, &sku, &barrier).await })
        })
        .collect();
    let mut outcome = Burst {
        winners: Vec::new(),
        losers: Vec::new(),
    };
    for task in tasks {
        let (status, body, latency) = task.await??;
        match status {
            StatusCode::CREATED => outcome.winners.push(latency),
            StatusCode::CONFLICT if body["type"] == "/problems/out-of-stock" => {
                outcome.losers.push(latency)
            }
            other => anyhow::bail!("a buyer got {other}: {body}"),
        }
    }
    ensure!(
        outcome.winners.len() == units as usize,
        "{} buyers won {units} units",
        outcome.winners.len()
    );
    Ok(outcome)
}

/// One buyer: opens its connection (a product read), waits for the
/// others, then orders one unit; returns the order's status, body and
/// latency.
async fn buy(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    sku: &str,
    barrier: &Barrier,
) -> anyhow::Result<(StatusCode, Value, Duration)> {
    let warm = client
        .get(format!("{base}/v1/products/{sku}"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        warm.status().is_success(),
        "product read: {}",
        warm.status()
    );
    warm.bytes().await?;
    barrier.wait().await;
    let started = Instant::now();
    let resp = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({
            "items": [{"sku": sku, "quantity": 1}],
            "currency": "EUR",
            "payment": {"token": "tok_ok"},
        }))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.json::<Value>().await?;
    Ok((status, body, started.elapsed()))
}

/// Once every saga has ended: nothing reserved, nothing left on hand,
/// and one completed saga per winner of every burst (warm-up included).
async fn check_afterwards(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    store: &dyn commerce_app::Store,
    args: &Args,
) -> anyhow::Result<()> {
    let waited = Instant::now();
    while store.count_sagas(SagaStatus::Running).await?
        + store.count_sagas(SagaStatus::Compensating).await?
        > 0
    {
        ensure!(
            waited.elapsed() < Duration::from_secs(60),
            "sagas still running a minute after the last burst"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for sku in [SKU, WARM_UP_SKU] {
        let product: Value = client
            .get(format!("{base}/v1/products/{sku}"))
            .bearer_auth(admin)
            .send()
            .await?
            .json()
            .await?;
        ensure!(
            product["on_hand"] == 0 && product["reserved"] == 0,
            "{sku} afterwards: {product}"
        );
    }
    let completed = store.count_sagas(SagaStatus::Completed).await?;
    let sold = i64::from(args.units) * (i64::from(args.rounds) + 1);
    ensure!(
        completed == sold,
        "{completed} sagas completed for {sold} units sold"
    );
    println!(
        "afterwards: every unit sold once ({sold} orders confirmed, nothing reserved or on hand)"
    );
    Ok(())
}

fn median_ms(latencies: &mut [Duration]) -> f64 {
    latencies.sort();
    common::percentile_ms(latencies, 0.5)
}

fn max_ms(latencies: &[Duration]) -> f64 {
    latencies
        .iter()
        .max()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}
