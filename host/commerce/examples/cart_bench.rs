//! Cart operations over HTTP: operations/s and latency percentiles.
//!
//! Starts the service in-process on a free port (catalog in an embedded
//! SQLite database in a temporary directory, carts in Redis under a
//! prefix of its own, deleted at the end), seeds a catalog, then has
//! `--concurrency` customers each alternate `PUT /v1/cart/items/{sku}` and
//! `GET /v1/cart` as fast as the service answers, for `--duration`
//! seconds. Carts stay small: each customer cycles over `--lines` SKUs.
//!
//! ```text
//! cargo run --release --example cart_bench
//! cargo run --release --example cart_bench -- --carts embedded --concurrency 64
//! ```
//! Redis is reached at TEST_REDIS_URL (default redis://127.0.0.1:6379).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use commerce_api::auth::JwtKeys;
use commerce_app::Role;
use commerce_service::startup::Application;
use commerce_store::StoreConfig;
use commerce_store::redis::{Redis, RedisConfig};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Where carts live: Redis, or the embedded SQLite store.
    #[arg(long, value_parser = ["redis", "embedded"], default_value = "redis")]
    carts: String,
    /// Concurrent customers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of load (after a 1 s warm-up).
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Products in the catalog.
    #[arg(long, default_value_t = 100)]
    skus: usize,
    /// Distinct lines each customer's cart cycles over.
    #[arg(long, default_value_t = 5)]
    lines: usize,
}

/// Latencies of one operation, and its failures.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: u64,
}

impl Samples {
    fn record(&mut self, started: Instant, ok: bool, measuring: bool) {
        if !measuring {
            return;
        }
        if ok {
            self.latencies.push(started.elapsed());
        } else {
            self.errors += 1;
        }
    }

    fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
    }

    fn report(&mut self, name: &str, seconds: u64) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| {
            self.latencies
                .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(f64::NAN)
        };
        println!(
            "{name:<4} ops={n} errors={} ops/s={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
            self.errors,
            n as f64 / seconds as f64,
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.lines >= 1 && args.lines <= args.skus,
        "--lines must be between 1 and --skus"
    );
    let dir = tempfile::tempdir()?;
    let redis_config = RedisConfig {
        url: std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        cluster: false,
        prefix: format!("bench:{}:", Uuid::new_v4().simple()),
        timeout: Duration::from_millis(500),
    };
    let keys = JwtKeys::new(common::SECRET.as_bytes());
    let (base, with_redis) = start_service(&args, dir.path(), &redis_config, &keys).await?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    common::seed(&client, &base, &keys, args.skus, 1_000_000).await?;

    let (mut put, mut get) = load(&args, &client, &base, &keys).await?;
    println!(
        "carts={} concurrency={} duration={}s",
        args.carts, args.concurrency, args.duration
    );
    put.report("PUT", args.duration);
    get.report("GET", args.duration);
    println!(
        "all  ops/s={:.0}",
        (put.latencies.len() + get.latencies.len()) as f64 / args.duration as f64
    );

    if with_redis {
        // Leave the shared Redis as we found it.
        Redis::connect(&redis_config)?.delete_keys().await?;
    }
    Ok(())
}

/// Starts the service on a free port, its catalog in SQLite in `dir` and
/// its carts in Redis (`--carts redis`, an error if Redis does not
/// answer) or in the store; returns its base URL and whether carts are
/// in Redis.
async fn start_service(
    args: &Args,
    dir: &Path,
    redis_config: &RedisConfig,
    keys: &JwtKeys,
) -> anyhow::Result<(String, bool)> {
    let store = commerce_store::open(&StoreConfig::Sqlite {
        data_dir: dir.to_owned(),
    })
    .await?;
    let settings = commerce_plugins::PluginSettings {
        cache_dir: dir.join("plugin-cache"),
        ..Default::default()
    };
    let (app, _runtime) = commerce_service::startup::build_app(store, settings).await?;
    let redis = if args.carts == "redis" {
        let redis = Redis::connect(redis_config)?;
        redis
            .ping()
            .await
            .map_err(|e| anyhow::anyhow!("Redis at {} does not answer: {e}", redis_config.url))?;
        Some(redis)
    } else {
        None
    };
    let with_redis = redis.is_some();
    let app = match redis {
        Some(redis) => app.with_carts(
            std::sync::Arc::new(commerce_store::redis::cart::RedisCarts::new(redis)),
            commerce_app::cart::DEFAULT_CART_TTL,
        ),
        None => app,
    };
    let app = Application::build("127.0.0.1:0", app, keys.clone()).await?;
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());
    Ok((base, with_redis))
}

/// `--concurrency` customers working their carts for 1 s of warm-up and
/// `--duration` seconds more; the PUT and GET samples of all of them.
async fn load(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
    keys: &JwtKeys,
) -> anyhow::Result<(Samples, Samples)> {
    let warmup = Instant::now() + Duration::from_secs(1);
    let deadline = warmup + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, base) = (client.clone(), base.to_owned());
        let token = keys.mint(Uuid::new_v4(), Role::Customer, Duration::from_secs(3600))?;
        let customer = Customer {
            worker,
            skus: args.skus,
            lines: args.lines,
        };
        tasks.push(tokio::spawn(async move {
            customer.run(&client, &base, &token, warmup, deadline).await
        }));
    }
    let (mut put, mut get) = (Samples::default(), Samples::default());
    for t in tasks {
        let (p, g) = t.await?;
        put.merge(p);
        get.merge(g);
    }
    Ok((put, get))
}

/// One simulated customer: which SKUs its cart cycles over.
struct Customer {
    worker: usize,
    skus: usize,
    lines: usize,
}

impl Customer {
    /// Alternates `PUT /v1/cart/items/{sku}` and `GET /v1/cart` until
    /// `deadline`, measuring after `warmup`.
    async fn run(
        &self,
        client: &reqwest::Client,
        base: &str,
        token: &str,
        warmup: Instant,
        deadline: Instant,
    ) -> (Samples, Samples) {
        let (mut put, mut get) = (Samples::default(), Samples::default());
        let mut n = self.worker;
        loop {
            let started = Instant::now();
            if started >= deadline {
                break;
            }
            let measuring = started >= warmup;
            n += 1;
            let sku = (self.worker * 7 + n % self.lines) % self.skus;
            let result = client
                .put(format!("{base}/v1/cart/items/SKU-{sku}"))
                .bearer_auth(token)
                .json(&json!({"quantity": 1 + n % 5}))
                .send()
                .await;
            put.record(
                started,
                matches!(&result, Ok(r) if r.status().is_success()),
                measuring,
            );

            let started = Instant::now();
            let result = client
                .get(format!("{base}/v1/cart"))
                .bearer_auth(token)
                .send()
                .await;
            let ok = match result {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            get.record(started, ok, measuring);
        }
        (put, get)
    }
}
