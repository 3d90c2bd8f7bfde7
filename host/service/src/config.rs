//! Configuration shared by the subcommands: where the data lives and which
//! secret signs tokens. Flags for humans, environment for Kubernetes.

use std::path::PathBuf;
use std::time::Duration;

use commerce_store::StoreConfig;
use commerce_store::redis::RedisConfig;

/// Where the data lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// PostgreSQL URL (e.g. postgres://user@host/db). When unset, the
    /// embedded SQLite database in --data-dir is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory of the embedded database and of the development JWT secret.
    #[arg(long, env = "COMMERCE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Most connections to PostgreSQL held by this process.
    #[arg(long, env = "COMMERCE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl StoreArgs {
    pub fn store_config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) if !url.is_empty() => StoreConfig::Postgres {
                url: url.clone(),
                max_connections: self.db_max_connections,
            },
            _ => StoreConfig::Sqlite {
                data_dir: self.data_dir.clone(),
            },
        }
    }
}

/// The secret that signs bearer tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretArgs {
    /// HS256 secret for bearer tokens, at least 32 bytes. When unset, a
    /// development secret is generated once into <data-dir>/jwt-secret.
    #[arg(long, env = "COMMERCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

/// The plugin runtime's limits and policies.
#[derive(Debug, Clone, clap::Args)]
pub struct PluginArgs {
    /// Fuel per plugin call (about one unit per WebAssembly instruction).
    #[arg(long, env = "COMMERCE_PLUGIN_FUEL", default_value_t = 10_000_000)]
    pub plugin_fuel: u64,
    /// Wall-clock budget per plugin call, in milliseconds. Fuel bounds the
    /// CPU a call uses; this bounds its time, including time the thread
    /// spends descheduled on a busy machine, hence the headroom.
    #[arg(long, env = "COMMERCE_PLUGIN_DEADLINE_MS", default_value_t = 50)]
    pub plugin_deadline_ms: u64,
    /// Linear memory per plugin call, in MiB: the default and the most a
    /// plugin may be installed with (`max_memory`).
    #[arg(long, env = "COMMERCE_PLUGIN_MEMORY_MIB", default_value_t = 16)]
    pub plugin_memory_mib: usize,
    /// Largest input of a plugin call of up to 200 lines, in KiB (larger
    /// carts get it in proportion to their lines): the default and the
    /// most a plugin may be installed with (`max_input`).
    #[arg(long, env = "COMMERCE_PLUGIN_MAX_INPUT_KIB", default_value_t = 128)]
    pub plugin_max_input_kib: usize,
    /// Largest plugin component accepted at upload, in MiB.
    #[arg(long, env = "COMMERCE_PLUGIN_MAX_SIZE_MIB", default_value_t = 32)]
    pub plugin_max_size_mib: usize,
    /// What a failing pricing plugin does: refuse the order, or be skipped.
    #[arg(
        long,
        env = "COMMERCE_PRICING_FAILURE",
        value_enum,
        default_value = "closed"
    )]
    pub pricing_failure: commerce_plugins::FailurePolicy,
    /// What a failing saga hook does: stop the saga, or be skipped.
    #[arg(
        long,
        env = "COMMERCE_HOOK_FAILURE",
        value_enum,
        default_value = "closed"
    )]
    pub hook_failure: commerce_plugins::FailurePolicy,
    /// Versions kept per plugin: an upload deletes older ones beyond this
    /// (never the active version or the one a rollback returns to), with
    /// their compiled artifacts.
    #[arg(long, env = "COMMERCE_PLUGIN_VERSIONS_KEPT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub plugin_versions_kept: u32,
    /// Share (0-1) of successful plugin calls captured in the run log with
    /// their input and output (`GET /v1/plugins/{name}/runs`); failed
    /// calls are always captured.
    #[arg(long, env = "COMMERCE_PLUGIN_RUN_SAMPLE", default_value_t = 0.001, value_parser = parse_share)]
    pub plugin_run_sample: f64,
    /// Runs kept in the run log per plugin (the newest).
    #[arg(long, env = "COMMERCE_PLUGIN_RUNS_KEPT", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub plugin_runs_kept: u32,
}

/// A share of calls: a number from 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share from 0 to 1")),
    }
}

impl PluginArgs {
    pub fn settings(&self, data_dir: &std::path::Path) -> commerce_plugins::PluginSettings {
        commerce_plugins::PluginSettings {
            fuel: self.plugin_fuel,
            deadline: std::time::Duration::from_millis(self.plugin_deadline_ms.max(1)),
            memory: self.plugin_memory_mib.max(1) << 20,
            max_input: self.plugin_max_input_kib.max(1) << 10,
            max_component: self.plugin_max_size_mib.max(1) << 20,
            pricing_policy: self.pricing_failure,
            hook_policy: self.hook_failure,
            cache_dir: data_dir.join("plugin-cache"),
            versions_kept: self.plugin_versions_kept,
            run_sample_ppm: (self.plugin_run_sample * f64::from(commerce_app::ports::PPM)).round()
                as u32,
            runs_kept: self.plugin_runs_kept,
            ..Default::default()
        }
    }
}

/// How stock is held for orders.
#[derive(Debug, Clone, clap::Args)]
pub struct InventoryArgs {
    /// Seconds an order holds its stock before it must be paid; an
    /// expired hold is released by the sweeper and the order fails.
    #[arg(long, env = "COMMERCE_RESERVATION_TTL_SECS", default_value_t = 900)]
    pub reservation_ttl_secs: u64,
    /// How often the sweeper looks for expired holds, in milliseconds.
    #[arg(long, env = "COMMERCE_RESERVATION_SWEEP_MS", default_value_t = 1000)]
    pub reservation_sweep_ms: u64,
    /// Attempts at placing an order whose stock claim keeps losing races
    /// to concurrent orders (with jittered exponential backoff between).
    #[arg(long, env = "COMMERCE_STOCK_MAX_ATTEMPTS", default_value_t = 50)]
    pub stock_max_attempts: u32,
    /// With Redis: how often the cached availability is compared with the
    /// database (drift is repaired and counted), in seconds.
    #[arg(long, env = "COMMERCE_STOCK_RECONCILE_SECS", default_value_t = 30)]
    pub stock_reconcile_secs: u64,
    /// Most orders one customer may hold unpaid (placed without payment
    /// and not yet paid) at once; placing one more is refused (409
    /// `unpaid-limit`) until one is paid, cancelled or expires.
    #[arg(long, env = "COMMERCE_MAX_UNPAID_ORDERS", default_value_t = 10)]
    pub max_unpaid_orders: i64,
    /// Most units one customer may hold across unpaid orders.
    #[arg(long, env = "COMMERCE_MAX_UNPAID_UNITS", default_value_t = 1000)]
    pub max_unpaid_units: i64,
}

impl InventoryArgs {
    pub fn settings(&self) -> commerce_app::inventory::InventorySettings {
        commerce_app::inventory::InventorySettings {
            reservation_ttl: std::time::Duration::from_secs(self.reservation_ttl_secs.max(1)),
            max_attempts: self.stock_max_attempts.max(1),
            max_unpaid_orders: self.max_unpaid_orders.max(0),
            max_unpaid_units: self.max_unpaid_units.max(0),
            ..Default::default()
        }
    }

    pub fn sweep_every(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.reservation_sweep_ms.max(10))
    }

    pub fn reconcile_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stock_reconcile_secs.max(1))
    }
}

/// Redis, for carts, the availability cache and the event stream.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL (e.g. redis://host:6379/0). When set, carts live in Redis
    /// and the outbox relay publishes events to the stream
    /// `<prefix>commerce.events`; when unset, carts live in the database.
    /// For a Redis Cluster, list one or more of its nodes separated by
    /// commas (redis://10.0.0.1:6379,redis://10.0.0.2:6379), or give one
    /// with --redis-cluster. Redis need not be up at start-up: cart routes
    /// answer 503 until it is, and orders are unaffected.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// REDIS_URL names a Redis Cluster (implied when it lists several
    /// nodes): keys are routed to their slots' nodes, which are found from
    /// the ones listed.
    #[arg(long, env = "COMMERCE_REDIS_CLUSTER")]
    pub redis_cluster: bool,
    /// Prefix of every Redis key, so that deployments can share a Redis.
    #[arg(long, env = "COMMERCE_REDIS_PREFIX", default_value = "commerce:")]
    pub redis_prefix: String,
    /// Bound on one Redis connection attempt and on one reply, in
    /// milliseconds; a call gives up after twice this (then 503).
    #[arg(long, env = "COMMERCE_REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub redis_timeout_ms: u64,
}

impl RedisArgs {
    /// `None` when no Redis is configured.
    pub fn redis_config(&self) -> Option<RedisConfig> {
        let url = self.redis_url.as_ref().filter(|u| !u.is_empty())?;
        Some(RedisConfig {
            url: url.clone(),
            cluster: self.redis_cluster,
            prefix: self.redis_prefix.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms.max(1)),
        })
    }
}

/// The outbox relay, which publishes the event feed to the Redis Stream
/// `commerce.events` (when Redis is configured).
#[derive(Debug, Clone, clap::Args)]
pub struct OutboxArgs {
    /// How often the relay looks for new events once caught up, in
    /// milliseconds (a full page is followed at once).
    #[arg(long, env = "COMMERCE_OUTBOX_POLL_MS", default_value_t = 100)]
    pub outbox_poll_ms: u64,
    /// How long a replica's lease on publishing lasts unless renewed, in
    /// milliseconds: if the publishing replica dies, another one takes
    /// over after at most about this long.
    #[arg(long, env = "COMMERCE_OUTBOX_LEASE_MS", default_value_t = 10_000)]
    pub outbox_lease_ms: u64,
    /// Entries the Redis Stream keeps: each append trims the oldest beyond
    /// this. A consumer further behind catches up from `GET /v1/events`
    /// after the `cursor` of the last entry it handled (docs/events.md).
    #[arg(long, env = "COMMERCE_STREAM_MAX_LEN", default_value_t = commerce_app::outbox::DEFAULT_STREAM_MAX_LEN, value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_max_len: u64,
}

impl OutboxArgs {
    pub fn settings(&self) -> commerce_app::outbox::RelaySettings {
        let mut settings = commerce_app::outbox::RelaySettings::new(
            Duration::from_millis(self.outbox_poll_ms.max(1)),
            Duration::from_millis(self.outbox_lease_ms.max(100)),
        );
        settings.stream_max_len = self.stream_max_len;
        settings
    }
}

/// What is kept only for a while.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// Seconds an idempotency key answers repeats of its request; after
    /// that (and within a twelfth of it, at most 5 minutes) it is deleted,
    /// and a request repeating it is a new request.
    #[arg(long, env = "COMMERCE_IDEMPOTENCY_WINDOW_SECS", default_value_t = commerce_app::retention::DEFAULT_IDEMPOTENCY_WINDOW.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_window_secs: u64,
}

impl RetentionArgs {
    pub fn idempotency_window(&self) -> Duration {
        Duration::from_secs(self.idempotency_window_secs.max(1))
    }
}

/// Carts.
#[derive(Debug, Clone, clap::Args)]
pub struct CartArgs {
    /// Days an untouched cart is kept; every read or change of a cart
    /// starts the count again.
    #[arg(long, env = "COMMERCE_CART_TTL_DAYS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub cart_ttl_days: u64,
    /// The same in seconds, instead of --cart-ttl-days (short-lived carts;
    /// tests).
    #[arg(long, env = "COMMERCE_CART_TTL_SECS",
        value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub cart_ttl_secs: Option<u64>,
    /// How often expired carts are looked for and counted as abandoned
    /// (`commerce_carts_abandoned_total`), in milliseconds.
    #[arg(long, env = "COMMERCE_CART_SWEEP_MS", default_value_t = 60_000,
        value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
    pub cart_sweep_ms: u64,
}

impl CartArgs {
    pub fn ttl(&self) -> Duration {
        match self.cart_ttl_secs {
            Some(secs) => Duration::from_secs(secs),
            None => Duration::from_secs(self.cart_ttl_days * 86_400),
        }
    }

    pub fn sweep_every(&self) -> Duration {
        Duration::from_millis(self.cart_sweep_ms)
    }
}

/// Where the payment gateway is and how long to wait for it.
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentArgs {
    /// Base URL of the payment gateway (e.g. http://payments:8090). When
    /// unset, the payment simulator runs embedded.
    #[arg(long, env = "PAYMENT_URL")]
    pub payment_url: Option<String>,
    #[command(flatten)]
    pub timeout: PaymentTimeoutArgs,
}

impl PaymentArgs {
    /// The configured gateway URL, `None` if unset or empty.
    pub fn url(&self) -> Option<&str> {
        self.payment_url.as_deref().filter(|u| !u.is_empty())
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.timeout()
    }
}

/// How long to wait for the payment gateway (the load generator's
/// in-process service has its own simulator, so only this part).
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentTimeoutArgs {
    /// Bound on one payment call (connection and answer), in
    /// milliseconds; a call that takes longer is a transient failure the
    /// saga retries.
    #[arg(long, env = "PAYMENT_TIMEOUT_MS", default_value_t = 2000)]
    pub payment_timeout_ms: u64,
}

impl PaymentTimeoutArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.payment_timeout_ms.max(1))
    }
}

/// How fulfilment sagas run.
#[derive(Debug, Clone, clap::Args)]
pub struct SagaArgs {
    /// A saga whose process died is resumed by another after this many
    /// seconds (its lease). Every step renews the lease.
    #[arg(long, env = "COMMERCE_SAGA_LEASE_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub saga_lease_secs: u64,
    /// How long one step retries an unavailable payment gateway (with
    /// backoff and the same idempotency key) before the step fails and the
    /// saga compensates, in milliseconds. Keep it well under the lease.
    #[arg(long, env = "COMMERCE_SAGA_STEP_DEADLINE_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub saga_step_deadline_ms: u64,
    /// Rounds a failing compensation gets (each one retries until the
    /// step deadline, then backs off) before the saga needs an operator.
    #[arg(long, env = "COMMERCE_SAGA_COMPENSATION_ROUNDS", default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub saga_compensation_rounds: u32,
    /// How often the worker looks for sagas to resume, in milliseconds.
    #[arg(long, env = "COMMERCE_SAGA_POLL_MS", default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub saga_poll_ms: u64,
    /// Most sagas this process drives at once.
    #[arg(long, env = "COMMERCE_SAGA_CONCURRENCY", default_value_t = 512,
        value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub saga_concurrency: u64,
}

impl SagaArgs {
    pub fn settings(&self) -> commerce_app::saga::SagaSettings {
        commerce_app::saga::SagaSettings {
            lease: Duration::from_secs(self.saga_lease_secs),
            step_deadline: Duration::from_millis(self.saga_step_deadline_ms),
            compensation_rounds: self.saga_compensation_rounds,
            poll: Duration::from_millis(self.saga_poll_ms),
            concurrency: self.saga_concurrency as usize,
            ..Default::default()
        }
    }
}

/// How `serve` stops on SIGTERM (or Ctrl-C): unready first, then drained.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownArgs {
    /// After SIGTERM, how long the process keeps serving while `/readyz`
    /// answers 503, so that load balancers and the Service's endpoints stop
    /// sending it traffic before it stops accepting, in milliseconds.
    #[arg(long, env = "COMMERCE_SHUTDOWN_DELAY_MS", default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub shutdown_delay_ms: u64,
    /// Then, how long in-flight requests get to finish once the process
    /// stops accepting, in seconds (a request cannot take longer than the
    /// 30 s request timeout anyway); what is still running then is cut.
    #[arg(long, env = "COMMERCE_SHUTDOWN_DRAIN_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_drain_secs: u64,
}

impl ShutdownArgs {
    pub fn settings(&self) -> crate::startup::ShutdownSettings {
        crate::startup::ShutdownSettings {
            delay: Duration::from_millis(self.shutdown_delay_ms),
            drain: Duration::from_secs(self.shutdown_drain_secs),
        }
    }
}
