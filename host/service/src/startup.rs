//! Building and running the HTTP service: an [`Application`] binds its
//! listener first (port 0 allowed, for tests), then serves until SIGTERM
//! or Ctrl-C, and stops in three phases: unready (`/readyz` answers 503
//! while requests are still served, so load balancers stop routing here),
//! then no new connections while in-flight requests finish, within a
//! deadline. Giving saga leases back comes after, in `cli::serve`.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use commerce_api::auth::JwtKeys;
use commerce_api::{self as api, AppState};
use commerce_app::inventory::InventorySettings;
use commerce_app::outbox::{OutboxRelay, RelaySettings};
use commerce_app::ports::CartStore;
use commerce_app::saga::SagaSettings;
use commerce_app::{App, Store};
use commerce_plugins::{PluginRuntime, PluginSettings};
use commerce_store::redis::Redis;
use commerce_store::redis::cart::RedisCarts;
use commerce_store::redis::stock::RedisStockCache;
use commerce_store::redis::stream::RedisEventStream;

/// A plugin shipped with the binary: (name, component, configuration,
/// where a saga hook listens: see `commerce_app::extensions::parse_listen`).
pub type BundledPlugin = (
    &'static str,
    &'static [u8],
    &'static str,
    Option<&'static str>,
);

/// Everything the service is wired with, beside its store. `commerce
/// serve` and the load generator's in-process service both build one and
/// call [`wire`], so the two cannot drift apart.
pub struct Wiring {
    pub plugins: PluginSettings,
    /// Carts, the stock cache and the event stream live here when set.
    pub redis: Option<Redis>,
    /// How long an untouched cart lives, and how often abandoned carts are
    /// swept.
    pub cart_ttl: Duration,
    pub cart_sweep_every: Duration,
    pub inventory: InventorySettings,
    /// How often expired reservations are released.
    pub reservation_sweep_every: Duration,
    /// How often the Redis stock cache is checked against the database.
    pub stock_reconcile_every: Duration,
    /// The payment gateway; `None` starts the simulator in this process.
    pub payment_url: Option<String>,
    pub payment_timeout: Duration,
    pub sagas: SagaSettings,
    pub outbox: RelaySettings,
    /// How long an idempotency key answers repeats.
    pub idempotency_window: Duration,
    /// Installed and activated at start (`--example-plugins`).
    pub bundled_plugins: &'static [BundledPlugin],
    /// A development directory of plugins to follow, if any.
    pub plugin_dir: Option<PathBuf>,
}

/// The use cases over `store`, wired to their adapters with their
/// background work started: the plugin runtime and its registry poller,
/// carts and the stock cache (Redis when configured, else the store),
/// sagas against the payment gateway (or the embedded simulator) and the
/// worker that resumes them, the reservation and cart sweepers, the outbox
/// relay, and the bundled plugins and plugin directory when asked for.
pub async fn wire(store: Arc<dyn Store>, wiring: Wiring) -> anyhow::Result<App> {
    commerce_api::prometheus::handle();
    commerce_app::telemetry::zero_series();
    let (app, _runtime) = build_app(store.clone(), wiring.plugins).await?;
    let redis = wiring.redis.as_ref();

    let carts: Arc<dyn CartStore> = match redis {
        Some(redis) => Arc::new(RedisCarts::new(redis.clone())),
        None => store,
    };
    let mut app = app
        .with_carts(carts, wiring.cart_ttl)
        .with_inventory(wiring.inventory);
    if let Some(redis) = redis {
        app = app.with_stock_cache(Arc::new(RedisStockCache::new(redis.clone())));
        app.background
            .spawn(commerce_app::availability::run_reconciler(
                app.clone(),
                wiring.stock_reconcile_every,
            ));
    }

    let app = with_payments(
        app,
        wiring.payment_url.as_deref(),
        wiring.payment_timeout,
        wiring.sagas,
    )
    .await?;
    app.background
        .spawn(commerce_app::retention::run_key_purger(
            app.clone(),
            wiring.idempotency_window,
        ));
    app.background.spawn(commerce_app::expiry::run_sweeper(
        app.clone(),
        wiring.reservation_sweep_every,
    ));
    app.background
        .spawn(commerce_app::cart::run_abandonment_sweeper(
            app.clone(),
            wiring.cart_sweep_every,
        ));
    if let Some(redis) = redis {
        let stream = Arc::new(RedisEventStream::new(
            redis.clone(),
            wiring.outbox.stream_max_len,
        ));
        tracing::info!(
            stream = stream.key(),
            "publishing events to the Redis Stream"
        );
        app.background
            .spawn(OutboxRelay::new(app.store.clone(), stream, wiring.outbox).run());
    }
    for (name, bytes, config, listen) in wiring.bundled_plugins {
        let config = (*config).to_owned();
        commerce_plugins::watcher::install(&app, name, bytes.to_vec(), config, *listen).await;
    }
    if let Some(dir) = wiring.plugin_dir {
        commerce_plugins::watcher::spawn(app.clone(), dir);
    }
    Ok(app)
}

/// The use cases over `store` with a plugin runtime that follows the
/// registry (polling it in the background), and nothing else: the first
/// step of [`wire`], and what plugin tests and micro-benchmarks need.
pub async fn build_app(
    store: Arc<dyn Store>,
    settings: PluginSettings,
) -> anyhow::Result<(App, Arc<PluginRuntime>)> {
    let runtime = PluginRuntime::start(store.clone(), settings).await?;
    let app = App::new(store, runtime.clone());
    app.background.track(&runtime.spawn_poller());
    Ok((app, runtime))
}

/// Runs fulfilment sagas against the payment gateway at `url`, or against
/// the payment simulator started here, in this process, when none is
/// configured (so the service works out of the box); and starts the
/// worker that resumes sagas other processes left behind.
pub async fn with_payments(
    app: App,
    url: Option<&str>,
    timeout: Duration,
    settings: SagaSettings,
) -> anyhow::Result<App> {
    let url = match url.filter(|u| !u.is_empty()) {
        Some(url) => url.to_owned(),
        None => {
            let addr = commerce_payment_sim::spawn(
                "127.0.0.1:0",
                commerce_payment_sim::SimulatorConfig::default(),
            )
            .await?;
            tracing::warn!(simulator = %addr, "PAYMENT_URL is not set: payments go to the embedded payment simulator (tokens tok_ok, tok_decline, tok_error, tok_timeout, tok_slow); set PAYMENT_URL in production");
            format!("http://{addr}")
        }
    };
    let gateway = commerce_payment::HttpPaymentGateway::new(&url, timeout)?;
    tracing::info!(payment_url = %url, lease_secs = settings.lease.as_secs(), owner = %settings.owner, "sagas enabled");
    let app = app.with_payments(Arc::new(gateway), settings);
    app.background
        .spawn(commerce_app::saga::worker::run_worker(app.clone()));
    Ok(app)
}

/// How an [`Application`] stops.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownSettings {
    /// From the signal to closing the listener: `/readyz` answers 503 and
    /// everything else is served as usual, while load balancers notice.
    pub delay: Duration,
    /// From closing the listener: how long in-flight requests get.
    pub drain: Duration,
}

impl Default for ShutdownSettings {
    /// No delay (benchmarks and in-process uses; `serve` sets its own),
    /// and as long a drain as the longest request may take.
    fn default() -> Self {
        ShutdownSettings {
            delay: Duration::ZERO,
            drain: api::REQUEST_TIMEOUT,
        }
    }
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Shared with `/readyz`: set when the shutdown signal arrives.
    stopping: Arc<AtomicBool>,
    shutdown: ShutdownSettings,
}

impl Application {
    /// Binds `listen` and wires the routes to `app`.
    pub async fn build(listen: &str, app: App, keys: JwtKeys) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let state = AppState {
            app,
            keys: Arc::new(keys),
            stopping: stopping.clone(),
            request_timeout: api::REQUEST_TIMEOUT,
        };
        Ok(Application {
            listener,
            state,
            stopping,
            shutdown: ShutdownSettings::default(),
        })
    }

    /// Answers 408 to a request not done within `timeout` (plugin uploads
    /// have a deadline of their own) rather than after 30 s.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.state.request_timeout = timeout;
        self
    }

    /// Stops with `settings` rather than the defaults.
    pub fn with_shutdown(mut self, settings: ShutdownSettings) -> Self {
        self.shutdown = settings;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until a shutdown signal; then answers `/readyz` with 503 for
    /// the delay, serving everything else as usual; then closes the
    /// listener and waits for in-flight requests, at most the drain
    /// deadline (what still runs then is cut off).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            stopping,
            shutdown,
        } = self;
        let router = api::router(state);
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let unready_then_drain = async move {
            shutdown_signal().await;
            stopping.store(true, Ordering::SeqCst);
            tracing::info!(
                delay_ms = shutdown.delay.as_millis() as u64,
                "shutting down: /readyz answers 503; serving on while load balancers stop routing here"
            );
            tokio::time::sleep(shutdown.delay).await;
            tracing::info!(
                drain_secs = shutdown.drain.as_secs_f64(),
                "shutting down: no new connections; finishing in-flight requests"
            );
            let _ = draining_tx.send(());
        };
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(unready_then_drain)
            .into_future();
        let deadline = async move {
            match draining_rx.await {
                Ok(()) => tokio::time::sleep(shutdown.drain).await,
                // The server ended on its own: nothing to time.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            result = server => result?,
            () = deadline => tracing::warn!(
                drain_secs = shutdown.drain.as_secs_f64(),
                "shutting down: the drain deadline passed; requests still running are cut off"
            ),
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
