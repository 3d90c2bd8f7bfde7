//! Building and running the HTTP service: an [`Application`] binds its
//! listener first (port 0 allowed, for tests), then serves until SIGTERM
//! or Ctrl-C, and stops in three phases: unready (`/readyz` answers 503
//! while requests are still served, so load balancers stop routing here),
//! then no new connections while in-flight requests finish, within a
//! deadline. Giving saga leases back comes after, in `cli::serve`.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::app::outbox::{OutboxRelay, RelaySettings};
use crate::app::ports::CartStore;
use crate::app::{App, Store};
use crate::auth::JwtKeys;
use crate::plugins::{PluginRuntime, PluginSettings};
use crate::store::redis::Redis;
use crate::store::redis::cart::RedisCarts;
use crate::store::redis::stock::RedisStockCache;
use crate::store::redis::stream::RedisEventStream;

/// The use cases over `store`, with a plugin runtime that follows the
/// registry (polling it in the background).
pub async fn build_app(
    store: Arc<dyn Store>,
    settings: PluginSettings,
) -> anyhow::Result<(App, Arc<PluginRuntime>)> {
    let runtime = PluginRuntime::start(store.clone(), settings).await?;
    let app = App::new(store, runtime.clone());
    app.background.track(&runtime.spawn_poller());
    Ok((app, runtime))
}

/// Keeps carts in Redis when it is configured, else in the store, for
/// `ttl` each. Redis is not contacted here: it need not be up yet.
pub fn with_carts(app: App, redis: Option<&Redis>, ttl: Duration) -> App {
    let carts: Arc<dyn CartStore> = match redis {
        Some(redis) => Arc::new(RedisCarts::new(redis.clone())),
        None => app.store.clone(),
    };
    app.with_carts(carts, ttl)
}

/// Reads products through the Redis stock cache when Redis is configured,
/// and keeps the cache honest with a reconciler every `reconcile_every`.
pub fn with_stock_cache(app: App, redis: Option<&Redis>, reconcile_every: Duration) -> App {
    let Some(redis) = redis else {
        return app;
    };
    let app = app.with_stock_cache(Arc::new(RedisStockCache::new(redis.clone())));
    app.background
        .spawn(crate::app::availability::run_reconciler(
            app.clone(),
            reconcile_every,
        ));
    app
}

/// Runs fulfilment sagas against the configured payment gateway, or
/// against the payment simulator started here, in this process, when none
/// is configured (so the service works out of the box); and starts the
/// worker that resumes sagas other processes left behind.
pub async fn with_payments(
    app: App,
    args: &crate::config::PaymentArgs,
    settings: crate::app::saga::SagaSettings,
) -> anyhow::Result<App> {
    let url = match args.url() {
        Some(url) => url.to_owned(),
        None => {
            let addr = crate::payment::simulator::spawn(
                "127.0.0.1:0",
                crate::payment::simulator::SimulatorConfig::default(),
            )
            .await?;
            tracing::warn!(simulator = %addr, "PAYMENT_URL is not set: payments go to the embedded payment simulator (tokens tok_ok, tok_decline, tok_error, tok_timeout, tok_slow); set PAYMENT_URL in production");
            format!("http://{addr}")
        }
    };
    let gateway = crate::payment::HttpPaymentGateway::new(&url, args.timeout())?;
    tracing::info!(payment_url = %url, lease_secs = settings.lease.as_secs(), owner = %settings.owner, "sagas enabled");
    let app = app.with_payments(Arc::new(gateway), settings);
    app.background
        .spawn(crate::app::saga::worker::run_worker(app.clone()));
    Ok(app)
}

/// Publishes the event feed to the Redis Stream when Redis is configured:
/// spawns the outbox relay, which runs (and retries) until the process ends.
pub fn spawn_outbox_relay(app: &App, redis: Option<&Redis>, settings: RelaySettings) {
    let Some(redis) = redis else {
        return;
    };
    let stream = Arc::new(RedisEventStream::new(redis.clone()));
    tracing::info!(
        stream = stream.key(),
        "publishing events to the Redis Stream"
    );
    app.background
        .spawn(OutboxRelay::new(app.store.clone(), stream, settings).run());
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
    router: axum::Router,
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
        };
        Ok(Application {
            listener,
            router: api::router(state),
            stopping,
            shutdown: ShutdownSettings::default(),
        })
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
            router,
            stopping,
            shutdown,
        } = self;
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
pub(crate) async fn shutdown_signal() {
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
