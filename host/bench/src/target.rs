//! The service under load: started here, in this process, on a free port
//! (wired as `commerce serve` wires it, over a fresh store and an embedded
//! payment simulator whose ledger the check reads), or one already
//! running. Also seeds the run's products and cleans up afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use uuid::Uuid;

use super::config::{Backend, BenchArgs, TargetSpec};
use commerce_api::auth::JwtKeys;
use commerce_service::startup::{Application, BundledPlugin, Wiring, wire};
use commerce_store::StoreConfig;
use commerce_store::redis::{Redis, RedisConfig};

/// A service to drive, and what to undo afterwards.
pub struct Target {
    /// Base URL of the service, without a trailing slash.
    pub base: String,
    /// Base URL of the payment simulator it pays through.
    pub payment_sim: String,
    /// Signs the run's customer and admin tokens.
    pub keys: JwtKeys,
    /// The simulator's ledger holds this run's payments only.
    pub ledger_is_ours: bool,
    /// In words, for the summary.
    pub label: String,
    /// In-process: the service's store, so that the check reads stock
    /// from the database itself rather than through the Redis cache.
    pub store: Option<Arc<dyn commerce_app::Store>>,
    cleanup: Cleanup,
}

#[derive(Default)]
struct Cleanup {
    /// (admin URL, schema) to drop.
    schema: Option<(String, String)>,
    /// A temporary directory to remove.
    dir: Option<PathBuf>,
    /// (Redis URL, key prefix) whose keys to delete.
    redis: Option<Redis>,
    /// The in-process service's background work, stopped before its data
    /// goes.
    background: Option<Arc<commerce_app::background::Background>>,
}

impl Target {
    /// Starts the service in-process, or points at the remote one.
    pub async fn start(
        args: &BenchArgs,
        spec: &TargetSpec,
        run: &str,
        examples: &'static [BundledPlugin],
    ) -> anyhow::Result<Target> {
        match spec {
            TargetSpec::Remote {
                url,
                jwt_secret,
                payment_sim_url,
            } => Ok(Target {
                base: url.clone(),
                payment_sim: payment_sim_url.clone(),
                keys: JwtKeys::new(jwt_secret.as_bytes()),
                ledger_is_ours: false,
                label: format!("{url} (remote), payments at {payment_sim_url}"),
                store: None,
                cleanup: Cleanup::default(),
            }),
            TargetSpec::InProcess => in_process(args, run, examples).await,
        }
    }

    /// The database of an in-process service on PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.cleanup.schema.as_ref().map(|(url, _)| url.as_str())
    }

    /// Undoes what `start` set up, unless `keep` (then says where it is).
    pub async fn finish(self, keep: bool) {
        let Cleanup {
            schema,
            dir,
            redis,
            background,
        } = self.cleanup;
        if let Some(background) = background {
            background.stop();
        }
        if keep {
            if let Some((_, schema)) = &schema {
                eprintln!("kept: PostgreSQL schema {schema}");
            }
            if let Some(dir) = &dir {
                eprintln!("kept: data directory {}", dir.display());
            }
            if let Some(redis) = &redis {
                eprintln!("kept: Redis keys {}*", redis.prefix());
            }
            return;
        }
        if let Some((url, schema)) = schema {
            let dropped = async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                anyhow::Ok(())
            };
            if let Err(e) = dropped.await {
                eprintln!("warning: could not drop schema {schema}: {e:#}");
            }
        }
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(redis) = redis
            && let Err(e) = redis.delete_keys().await
        {
            eprintln!(
                "warning: could not delete the Redis keys {}*: {e:#}",
                redis.prefix()
            );
        }
    }
}

/// Wires the service with [`wire`], as `commerce serve` does, over a
/// fresh store, Redis when given, and a payment simulator started here
/// (whose ledger the check reads).
async fn in_process(
    args: &BenchArgs,
    run: &str,
    examples: &'static [BundledPlugin],
) -> anyhow::Result<Target> {
    let dir = std::env::temp_dir().join(format!("commerce-bench-{run}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cleanup = Cleanup {
        dir: Some(dir.clone()),
        ..Cleanup::default()
    };
    let (config, backend) = store_config(args, run, &dir, &mut cleanup).await?;
    let store = commerce_store::open(&config).await?;
    let secret = format!(
        "bench-{}-{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    let keys = JwtKeys::new(secret.as_bytes());

    let simulator = commerce_payment_sim::spawn(
        "127.0.0.1:0",
        commerce_payment_sim::SimulatorConfig::default(),
    )
    .await?;
    let payment_sim = format!("http://{simulator}");

    let redis = connect_redis(args, run, &mut cleanup).await?;
    let with_redis = redis.is_some();
    let wiring = Wiring {
        plugins: args.plugins.settings(&dir),
        redis,
        cart_ttl: args.carts.ttl(),
        cart_sweep_every: args.carts.sweep_every(),
        inventory: args.inventory.settings(),
        reservation_sweep_every: args.inventory.sweep_every(),
        stock_reconcile_every: args.inventory.reconcile_every(),
        payment_url: Some(payment_sim.clone()),
        payment_timeout: args.payments.timeout(),
        sagas: args.sagas.settings(),
        outbox: args.outbox.settings(),
        idempotency_window: args.retention.idempotency_window(),
        bundled_plugins: if args.example_plugins { examples } else { &[] },
        plugin_dir: None,
    };
    let app = wire(store.clone(), wiring).await?;
    cleanup.background = Some(app.background.clone());
    if let Some(sample) = args.shadow_sample {
        shadow_bulk_discount(&app, examples, sample).await?;
    }
    let application = Application::build("127.0.0.1:0", app, keys.clone()).await?;
    let base = format!("http://{}", application.local_addr());
    tokio::spawn(async move {
        if let Err(e) = application.run_until_stopped().await {
            tracing::error!(error = ?e, "the in-process service stopped");
        }
    });
    let label = format!(
        "in-process at {base}: {backend}; carts {}; example plugins {}",
        if with_redis {
            "and stock cache in Redis"
        } else {
            "in the database, no stock cache"
        },
        if args.example_plugins { "on" } else { "off" },
    );
    Ok(Target {
        base,
        payment_sim,
        keys,
        ledger_is_ours: true,
        label,
        store: Some(store),
        cleanup,
    })
}

/// Installs a second version of the example bulk discount (other tiers)
/// and shadows it on `sample` of the active one's calls.
async fn shadow_bulk_discount(
    app: &commerce_app::App,
    examples: &[BundledPlugin],
    sample: f64,
) -> anyhow::Result<()> {
    let (name, bytes, ..) = examples
        .iter()
        .find(|(name, ..)| *name == "bulk-discount")
        .context("the examples have no bulk-discount to shadow")?;
    let admin = commerce_app::Caller::system();
    let shadow = app
        .registry()
        .install_plugin(
            admin,
            commerce_app::plugins::InstallPlugin {
                name: (*name).to_owned(),
                kind: commerce_app::extensions::PluginKind::Pricing,
                bytes: bytes.to_vec(),
                config: Some(r#"{"tiers":[{"min_quantity":2,"percent":5}]}"#.into()),
                priority: 0,
                listen: None,
                limits: Default::default(),
                activate: false,
            },
        )
        .await?;
    app.registry()
        .start_shadow(admin, name, shadow.version, sample)
        .await?;
    eprintln!(
        "shadow: {name} v{} on {sample} of its calls",
        shadow.version
    );
    Ok(())
}

/// The in-process service's store, and the words for it: SQLite in `dir`,
/// or a schema of its own in PostgreSQL (created here, dropped by
/// `cleanup`).
async fn store_config(
    args: &BenchArgs,
    run: &str,
    dir: &Path,
    cleanup: &mut Cleanup,
) -> anyhow::Result<(StoreConfig, String)> {
    Ok(match args.backend {
        Backend::Sqlite => (
            StoreConfig::Sqlite {
                data_dir: dir.to_owned(),
            },
            format!("SQLite in {}", dir.display()),
        ),
        Backend::Postgres => {
            let schema = format!("bench_{run}");
            let mut conn = sqlx::PgConnection::connect(&args.database_url)
                .await
                .context("connecting to --database-url")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .context("creating the run's schema")?;
            cleanup.schema = Some((args.database_url.clone(), schema.clone()));
            let separator = if args.database_url.contains('?') {
                '&'
            } else {
                '?'
            };
            (
                StoreConfig::Postgres {
                    url: format!(
                        "{}{separator}options=-c%20search_path%3D{schema}",
                        args.database_url
                    ),
                    max_connections: args.db_max_connections,
                },
                format!("PostgreSQL, schema {schema}"),
            )
        }
    })
}

/// Redis under a key prefix of the run's (deleted by `cleanup`), when
/// `--redis-url` is given; an error if it does not answer.
async fn connect_redis(
    args: &BenchArgs,
    run: &str,
    cleanup: &mut Cleanup,
) -> anyhow::Result<Option<Redis>> {
    let Some(url) = &args.redis_url else {
        return Ok(None);
    };
    let config = RedisConfig {
        url: url.clone(),
        cluster: false,
        prefix: format!("bench:{run}:"),
        timeout: Duration::from_millis(500),
    };
    let redis = Redis::connect(&config)?;
    redis
        .ping()
        .await
        .map_err(|e| anyhow::anyhow!("Redis at {url} does not answer: {e}"))?;
    cleanup.redis = Some(redis.clone());
    Ok(Some(redis))
}

/// Creates the run's products (`PUT /v1/products/{sku}`, 16 at a time):
/// `B<run>-<i>`, each with `stock` units and a price that differs from
/// its neighbours'. Returns SKU → units seeded, in SKU order of index.
pub async fn seed(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    run: &str,
    skus: usize,
    stock: i64,
) -> anyhow::Result<Vec<String>> {
    let names: Arc<Vec<String>> = Arc::new((0..skus).map(|i| format!("B{run}-{i}")).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16.min(skus) {
        let (client, names, next) = (client.clone(), names.clone(), next.clone());
        let (base, admin) = (base.to_owned(), admin.to_owned());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(sku) = names.get(i) else {
                    return anyhow::Ok(());
                };
                let body = serde_json::json!({
                    "name": format!("Bench product {i}"),
                    "unit_price": price(i),
                    "currency": "EUR",
                    "stock": stock,
                });
                let response = client
                    .put(format!("{base}/v1/products/{sku}"))
                    .header(reqwest::header::AUTHORIZATION, &admin)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("seeding {sku}"))?;
                let status = response.status();
                if !status.is_success() {
                    let text = response.text().await.unwrap_or_default();
                    anyhow::bail!("seeding {sku}: {status} {text}");
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(Arc::try_unwrap(names).unwrap_or_else(|names| (*names).clone()))
}

/// A price between 1.00 and 40.99 EUR, varied so that a wrong line or a
/// wrong amount shows in the totals.
pub fn price(i: usize) -> String {
    format!("{}.{:02}", 1 + i % 40, (i * 37) % 100)
}

/// The seeded stock per SKU, as the check wants it.
pub fn seeded(skus: &[String], stock: i64) -> BTreeMap<String, i64> {
    skus.iter().map(|s| (s.clone(), stock)).collect()
}

/// The run's products as the database holds them (in-process only).
pub async fn stored_products(
    store: &dyn commerce_app::Store,
    skus: &BTreeMap<String, i64>,
) -> anyhow::Result<BTreeMap<String, super::check::ProductState>> {
    let skus = skus
        .keys()
        .map(|s| commerce_domain::Sku::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut products = BTreeMap::new();
    for chunk in skus.chunks(500) {
        for p in store.get_products(chunk).await? {
            let sku = p.sku.to_string();
            products.insert(
                sku.clone(),
                super::check::ProductState {
                    sku,
                    on_hand: p.on_hand,
                    reserved: p.reserved,
                },
            );
        }
    }
    Ok(products)
}
