//! The `commerce` command line: `serve`, `migrate`, `replay`, `token`,
//! `plugin`, `payment-sim`, `bench`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use commerce_api::auth::{JwtKeys, SecretSource, resolve_secret};
use commerce_app::{App, Role};
use commerce_service::config::{
    CartArgs, InventoryArgs, OutboxArgs, PaymentArgs, PluginArgs, RedisArgs, RetentionArgs,
    SagaArgs, SecretArgs, ShutdownArgs, StoreArgs,
};
use commerce_service::startup::{Application, Wiring, wire};
use commerce_service::telemetry::{self, LogFormat};

/// Commerce service: event-sourced orders, carts, inventory and sagas.
///
/// With no configuration, `commerce serve` keeps its data in an embedded
/// SQLite database under ./data; set DATABASE_URL to use PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "commerce", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (applies pending migrations first).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(MigrateArgs),
    /// Rebuild the read models (order_views) from the event log and exit;
    /// safe while the service runs (a view newer than the replay is kept).
    Replay(MigrateArgs),
    /// Print a bearer token for a subject and role, signed with the
    /// configured secret (or the development secret in --data-dir). An
    /// admin token signs in to the operations console (/console).
    Token(TokenArgs),
    /// Manage plugins in the registry (the running services follow within
    /// a second): install, list, activate, rollback, remove, run (dry run).
    Plugin(PluginCommand),
    /// Run the payment gateway simulator, for development and tests.
    ///
    /// It serves the payment API of docs/payment-api.md over an in-memory
    /// ledger (lost when it stops). The outcome of an authorization is
    /// chosen by its payment token, as card sandboxes do:
    ///   tok_ok       authorized (201)
    ///   tok_decline  declined: 402, problem type /problems/declined
    ///   tok_error    HTTP 500 (nothing recorded; a retry fails again)
    ///   tok_timeout  no answer for --hang-ms, then 504 (nothing recorded)
    ///   tok_slow     authorized, after --slow-ms
    /// Any other token is refused (422). Every POST needs an
    /// Idempotency-Key. GET /v1/ledger and GET /v1/ledger/orders/{id} show
    /// what was authorized, captured, voided and refunded.
    #[command(verbatim_doc_comment)]
    PaymentSim(PaymentSimArgs),
    /// Load generator: seed products, drive customers (direct orders and
    /// cart checkouts, a mix of payment tokens, a hot SKU) at a target
    /// rate or flat out, wait for every order's outcome, print orders/s
    /// and latency percentiles, and check that stock, orders, sagas and
    /// the payment ledger agree (exit status 1 if not). Starts the service
    /// in this process unless --url points at a running one.
    Bench(Box<commerce_bench::BenchArgs>),
}

#[derive(Debug, clap::Args)]
pub struct PaymentSimArgs {
    /// Address to listen on; port 0 picks a free one (logged at start-up).
    #[arg(long, env = "PAYMENT_SIM_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// How long tok_slow takes to answer, in milliseconds.
    #[arg(long, env = "PAYMENT_SIM_SLOW_MS", default_value_t = 1500)]
    pub slow_ms: u64,
    /// How long tok_timeout holds a request before answering 504, in
    /// milliseconds: longer than any client waits.
    #[arg(long, env = "PAYMENT_SIM_HANG_MS", default_value_t = 60_000)]
    pub hang_ms: u64,
    /// Authorizations (and stored idempotent answers) the ledger keeps;
    /// past that the oldest are forgotten (their ids answer 404).
    #[arg(long, env = "PAYMENT_SIM_MAX_ENTRIES", default_value_t = commerce_payment_sim::DEFAULT_MAX_ENTRIES as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_entries: u64,
    /// Log format on stdout: auto is text on a terminal, JSON otherwise;
    /// filter with RUST_LOG.
    #[arg(long, env = "COMMERCE_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Args)]
pub struct PluginCommand {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub limits: PluginArgs,
    #[command(subcommand)]
    pub action: PluginAction,
}

#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Check a component and store it as the next version of a plugin.
    Install {
        /// The component (.wasm).
        file: std::path::PathBuf,
        /// Plugin name (a-z, 0-9, '-', '_'); default: the file name.
        #[arg(long)]
        name: Option<String>,
        /// Extension point; default: the world the component exports.
        #[arg(long, value_parser = ["pricing", "validation", "saga-hook"])]
        kind: Option<String>,
        /// Lower runs first; ties are broken by name.
        #[arg(long, default_value_t = 100)]
        priority: i32,
        /// JSON configuration handed to the plugin by `host.config()`.
        #[arg(long)]
        config: Option<String>,
        /// Saga hooks: the steps it is called at, comma-separated, each
        /// alone (before and after) or as STEP:before / STEP:after, e.g.
        /// `authorize-payment:before`; default: before and after every step.
        #[arg(long, value_parser = parse_listen_arg)]
        listen: Option<Vec<String>>,
        /// Linear memory of one call, in bytes, at most the service's
        /// `--plugin-memory-mib`; default: that maximum.
        #[arg(long, value_name = "BYTES")]
        max_memory: Option<u64>,
        /// Largest input of one call of up to 200 lines, in bytes, at most
        /// the service's `--plugin-max-input-kib`; default: that maximum.
        /// Orders over it are refused (422) before the plugin is called.
        #[arg(long, value_name = "BYTES")]
        max_input: Option<u64>,
        /// Activate the new version at once.
        #[arg(long)]
        activate: bool,
    },
    /// List every stored version.
    List,
    /// Activate a version (the newest by default).
    Activate {
        name: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Re-activate the version that was active before the current one.
    Rollback { name: String },
    /// Delete every version of a plugin.
    Remove { name: String },
    /// Serve a version to a stable share of customers (a canary) beside
    /// the active one; `activate` promotes it, `rollback` ends it.
    Canary {
        name: String,
        #[arg(long)]
        version: i64,
        /// Percent of customers (1-99), chosen by a hash of their id.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99))]
        percent: u8,
    },
    /// Run a version beside the active one on a sample of live calls and
    /// compare the answers (GET /v1/plugins/NAME/shadow on a replica shows
    /// what it found); with neither option, print the shadow's setting.
    Shadow {
        name: String,
        #[arg(long, requires = "sample", conflicts_with = "stop")]
        version: Option<i64>,
        /// Share of live calls (above 0, at most 1).
        #[arg(long, requires = "version")]
        sample: Option<f64>,
        /// Stop the shadow.
        #[arg(long)]
        stop: bool,
    },
    /// Replay a version on recorded orders (what-if): re-price or
    /// re-validate each from what its events hold and compare with what
    /// it records; waits for the report and prints it.
    Replay {
        name: String,
        #[arg(long)]
        version: i64,
        /// Orders placed from this instant on (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z); default: the oldest order.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Most orders read, oldest first (1 to 100,000).
        #[arg(long, default_value_t = commerce_app::what_if::DEFAULT_REPLAY_ORDERS)]
        limit: u32,
    },
    /// The run log: failed calls (always captured) and a sample of
    /// successful ones, newest first.
    Runs {
        name: String,
        /// `failed`, one failure kind (`trap`, `fuel`, ...) or `ok`.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Run a version (the active one by default) on a JSON input, with no
    /// side effects; prints its output.
    #[command(group = clap::ArgGroup::new("what").required(true).args(["input", "input_run"]))]
    Run {
        /// An installed plugin, or a component file (`.wasm`) to run as it
        /// would run installed, storing nothing.
        name: String,
        #[arg(long)]
        version: Option<i64>,
        /// JSON file with a cart (pricing), an order (validation) or a step
        /// context (saga-hook), see wit/README.md; or a run exported from
        /// the run log (`GET /v1/plugins/NAME/runs/ID`), whose input is used.
        #[arg(long)]
        input: Option<std::path::PathBuf>,
        /// The id of a run in the run log (`commerce plugin runs NAME`):
        /// re-runs the input it captured, e.g. against a component under
        /// development.
        #[arg(long)]
        input_run: Option<Uuid>,
        /// A component file's extension point; default: the world it exports.
        #[arg(long, value_parser = ["pricing", "validation", "saga-hook"])]
        kind: Option<String>,
        /// A component file's JSON configuration (default `{}`).
        #[arg(long)]
        config: Option<String>,
    },
    /// Create a plugin project that builds as generated, with a rule to
    /// edit, its tests, a sample input and a README of three commands
    /// (build, try with `plugin run`, install). Needs no database.
    New {
        /// The plugin's name (a-z, 0-9, '-', '_').
        name: String,
        #[arg(long, value_parser = ["pricing", "validation", "saga-hook"])]
        kind: String,
        /// Rust (cargo and wit-bindgen) or Python (componentize-py).
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// Where to create it (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (logged at start-up).
    #[arg(long, env = "COMMERCE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Seconds a request may take before it is answered 408 (a plugin
    /// upload, which compiles the component, has 5 minutes);
    /// `Prefer: wait` is capped at five sixths of it.
    #[arg(long, env = "COMMERCE_REQUEST_TIMEOUT_SECS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Log format on stdout: auto is text on a terminal, JSON otherwise;
    /// filter with RUST_LOG (e.g. RUST_LOG=debug).
    #[arg(long, env = "COMMERCE_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub plugins: PluginArgs,
    #[command(flatten)]
    pub inventory: InventoryArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub carts: CartArgs,
    #[command(flatten)]
    pub payments: PaymentArgs,
    #[command(flatten)]
    pub sagas: SagaArgs,
    #[command(flatten)]
    pub outbox: OutboxArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    /// Install and activate the example plugins of plugins/ (bulk
    /// discount, quantity rules, high-value hold) if not already active.
    #[arg(long, env = "COMMERCE_EXAMPLE_PLUGINS")]
    pub example_plugins: bool,
    /// Development: install every NAME.wasm of this directory as plugin
    /// NAME (config from NAME.json), and again whenever it changes.
    #[arg(long, env = "COMMERCE_WATCH_PLUGIN_DIR")]
    pub plugin_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Log format on stdout.
    #[arg(long, env = "COMMERCE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Subject: the customer's UUID (admins have one too).
    #[arg(long)]
    pub sub: Uuid,
    /// Role granted by the token.
    #[arg(long, value_enum, default_value = "customer")]
    pub role: RoleArg,
    /// How long the token is valid: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Directory holding the development secret, when no secret is set.
    #[arg(long, env = "COMMERCE_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Customer,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Customer => Role::Customer,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Parses `90`, `90s`, `15m`, `24h`, `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("invalid duration unit in {s:?}: use s, m, h or d")),
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err("the ttl must be between 1s and 366d".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) => {
            telemetry::init(args.log_format, "info");
            let store = commerce_store::open(&args.store.store_config()).await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Replay(args) => {
            telemetry::init(args.log_format, "info");
            let store = commerce_store::open(&args.store.store_config()).await?;
            let report = commerce_app::replay::replay_order_views(store.as_ref())
                .await
                .context("replaying the event log")?;
            println!(
                "order_views rebuilt: {} orders from {} events",
                report.orders, report.events
            );
            Ok(())
        }
        Command::Plugin(command) => plugin(command).await,
        Command::PaymentSim(args) => payment_sim(args).await,
        Command::Bench(args) => commerce_bench::run(*args, commerce_bundled::EXAMPLES).await,
        Command::Token(args) => {
            let (secret, _) = resolve_secret(args.secret.jwt_secret.as_deref(), &args.data_dir)?;
            let token = JwtKeys::new(&secret).mint(args.sub, args.role.into(), args.ttl)?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, "info,sqlx=warn,tower_http=info");
    let config = args.store.store_config();
    let store = commerce_store::open(&config).await?;
    let (secret, source) = resolve_secret(args.secret.jwt_secret.as_deref(), &args.store.data_dir)?;
    match source {
        SecretSource::Configured => {}
        SecretSource::DataDir(path) | SecretSource::Generated(path) => tracing::warn!(
            secret_file = %path.display(),
            "COMMERCE_JWT_SECRET is not set: using the development secret in {}; mint a token with \
             `commerce token --data-dir {} --sub <uuid> --role admin`. Set COMMERCE_JWT_SECRET in production.",
            path.display(),
            args.store.data_dir.display(),
        ),
    }
    let redis = args
        .redis
        .redis_config()
        .map(|config| commerce_store::redis::Redis::connect(&config))
        .transpose()?;
    let wiring = Wiring {
        plugins: args.plugins.settings(&args.store.data_dir),
        redis,
        cart_ttl: args.carts.ttl(),
        cart_sweep_every: args.carts.sweep_every(),
        inventory: args.inventory.settings(),
        reservation_sweep_every: args.inventory.sweep_every(),
        stock_reconcile_every: args.inventory.reconcile_every(),
        payment_url: args.payments.url().map(str::to_owned),
        payment_timeout: args.payments.timeout(),
        sagas: args.sagas.settings(),
        outbox: args.outbox.settings(),
        idempotency_window: args.retention.idempotency_window(),
        bundled_plugins: if args.example_plugins {
            commerce_bundled::EXAMPLES
        } else {
            &[]
        },
        plugin_dir: args.plugin_dir,
    };
    let app = wire(store.clone(), wiring).await?;
    let carts_backend = app.carts.cart_backend();
    let sagas = app.clone();
    let app = Application::build(&args.listen, app, JwtKeys::new(&secret))
        .await?
        .with_request_timeout(std::time::Duration::from_secs(args.request_timeout_secs))
        .with_shutdown(args.shutdown.settings());
    let console = format!("http://{}/console", app.local_addr());
    tracing::info!(addr = %app.local_addr(), backend = store.backend(), carts = carts_backend, %console, "listening");
    app.run_until_stopped().await?;
    sagas.sagas().release_saga_leases().await;
    tracing::info!("stopped");
    Ok(())
}

async fn payment_sim(args: PaymentSimArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, "info");
    let config = commerce_payment_sim::SimulatorConfig {
        slow: Duration::from_millis(args.slow_ms),
        hang: Duration::from_millis(args.hang_ms),
        max_entries: usize::try_from(args.max_entries).unwrap_or(usize::MAX),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // The same line as `serve`'s, so that scripts and tests find the port.
    tracing::info!(addr = %listener.local_addr()?, service = "payment-sim", "listening");
    let server = axum::serve(listener, commerce_payment_sim::router(config));
    // No draining on shutdown: a tok_timeout request would hold the exit
    // for --hang-ms, and the in-memory ledger dies with the process anyway.
    tokio::select! {
        result = server => result.context("serving the payment simulator")?,
        () = commerce_service::startup::shutdown_signal() => {}
    }
    tracing::info!("stopped");
    Ok(())
}

async fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    if let PluginAction::New {
        name,
        kind,
        lang,
        dir,
    } = &command.action
    {
        let dir = dir.clone().unwrap_or_else(|| name.into());
        let files = crate::scaffold::new_plugin(name, kind, *lang, &dir)?;
        let output = serde_json::json!({ "created": dir, "files": files });
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(());
    }
    let store = commerce_store::open(&command.store.store_config()).await?;
    let settings = command.limits.settings(&command.store.data_dir);
    let runtime = commerce_plugins::PluginRuntime::start(store.clone(), settings).await?;
    let app = App::new(store, runtime);
    let output = plugin_action(&app, command.action).await?;
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// Runs a `commerce plugin` action as the administrator; returns what to
/// print.
async fn plugin_action(app: &App, action: PluginAction) -> anyhow::Result<serde_json::Value> {
    use commerce_app::plugins::InstallPlugin;
    use commerce_app::ports::PluginLimits;
    let admin = commerce_app::Caller {
        subject: Uuid::nil(),
        role: Role::Admin,
    };
    Ok(match action {
        PluginAction::Install {
            file,
            name,
            kind,
            priority,
            config,
            listen,
            max_memory,
            max_input,
            activate,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let name = plugin_name(&file, name)?;
            let config_text = config.clone().unwrap_or_else(|| "{}".into());
            let kind = plugin_kind(app, kind.as_deref(), &name, &bytes, &config_text).await?;
            let record = app
                .registry()
                .install_plugin(
                    admin,
                    InstallPlugin {
                        name,
                        kind,
                        bytes,
                        config,
                        priority,
                        listen,
                        limits: PluginLimits {
                            max_memory,
                            max_input,
                        },
                        activate,
                    },
                )
                .await?;
            serde_json::to_value(record)?
        }
        PluginAction::List => serde_json::to_value(app.registry().list_plugins(admin).await?)?,
        PluginAction::Activate { name, version } => serde_json::to_value(
            app.registry()
                .activate_plugin(admin, &name, version)
                .await?,
        )?,
        PluginAction::Rollback { name } => {
            serde_json::to_value(app.registry().rollback_plugin(admin, &name).await?)?
        }
        PluginAction::Remove { name } => {
            app.registry().remove_plugin(admin, &name).await?;
            serde_json::json!({ "removed": name })
        }
        PluginAction::Canary {
            name,
            version,
            percent,
        } => serde_json::to_value(
            app.registry()
                .start_canary(admin, &name, version, percent)
                .await?,
        )?,
        PluginAction::Shadow {
            name,
            version,
            sample,
            stop,
        } => {
            let registry = app.registry();
            if stop {
                registry.stop_shadow(admin, &name).await?;
            } else if let (Some(version), Some(sample)) = (version, sample) {
                registry.start_shadow(admin, &name, version, sample).await?;
            }
            let status = registry.shadow_status(admin, &name).await?;
            serde_json::json!({ "name": name, "version": status.version, "sample": status.sample })
        }
        PluginAction::Replay {
            name,
            version,
            since,
            limit,
        } => {
            let registry = app.registry();
            let started = registry
                .start_replay(admin, &name, version, since, Some(limit))
                .await?;
            loop {
                let report = registry.replay_report(admin, &name, started.id)?;
                if report.state != commerce_app::what_if::ReplayState::Running {
                    break serde_json::to_value(report)?;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        PluginAction::Runs {
            name,
            outcome,
            limit,
        } => serde_json::to_value(
            app.registry()
                .plugin_runs(admin, &name, outcome.as_deref(), limit)
                .await?,
        )?,
        PluginAction::Run {
            name,
            version,
            input,
            input_run,
            kind,
            config,
        } => {
            let input = run_input(app, input.as_deref(), input_run).await?;
            if name.ends_with(".wasm") {
                let config = config.unwrap_or_else(|| "{}".into());
                run_file(
                    app,
                    std::path::Path::new(&name),
                    kind.as_deref(),
                    config,
                    input,
                )
                .await?
            } else {
                app.registry()
                    .dry_run_plugin(admin, &name, version, input)
                    .await?
            }
        }
        PluginAction::New { .. } => unreachable!("handled before the store is opened"),
    })
}

/// The input of `plugin run`: a JSON file (a run exported from the run log
/// gives its `input`), or a run of the log by id.
async fn run_input(
    app: &App,
    file: Option<&std::path::Path>,
    run: Option<Uuid>,
) -> anyhow::Result<serde_json::Value> {
    if let Some(id) = run {
        let run = app
            .store
            .plugin_run(id)
            .await?
            .with_context(|| format!("no run {id} in the run log"))?;
        return Ok(run.input);
    }
    let file = file.context("--input or --input-run is required")?;
    let value: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
    )
    .context("the input is not JSON")?;
    Ok(
        match serde_json::from_value::<commerce_app::ports::PluginRun>(value.clone()) {
            Ok(run) => run.input,
            Err(_) => value,
        },
    )
}

/// `--name`, or the file's name without its extension, in lower case with
/// '-' for '_'.
fn plugin_name(file: &std::path::Path, name: Option<String>) -> anyhow::Result<String> {
    match name {
        Some(n) => Ok(n),
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.to_ascii_lowercase().replace('_', "-"))
            .context("cannot derive a plugin name from the file name; pass --name"),
    }
}

/// `--kind`, or the plugin world the component exports (tried with its
/// configuration).
async fn plugin_kind(
    app: &App,
    kind: Option<&str>,
    name: &str,
    bytes: &[u8],
    config: &str,
) -> anyhow::Result<commerce_app::extensions::PluginKind> {
    match kind.and_then(commerce_app::extensions::PluginKind::parse) {
        Some(k) => Ok(k),
        None => commerce_plugins::watcher::detect_kind(app, name, bytes, config)
            .await
            .context("the component exports none of the plugin worlds (or its smoke call fails); pass --kind to see why"),
    }
}

/// Runs the component in `file` on `input` as it would run installed
/// (same sandbox and limits), storing nothing.
async fn run_file(
    app: &App,
    file: &std::path::Path,
    kind: Option<&str>,
    config: String,
    input: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    use sha2::Digest;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = plugin_name(file, None)?;
    let kind = plugin_kind(app, kind, &name, &bytes, &config).await?;
    let record = commerce_app::ports::PluginRecord {
        name,
        version: 0,
        kind,
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        config,
        priority: 100,
        listen: None,
        limits: Default::default(),
        size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        active: false,
        canary_percent: None,
        shadow_sample: None,
        created_at: chrono::Utc::now(),
    };
    app.plugins
        .dry_run(&record, std::sync::Arc::new(bytes), input)
        .await
        .map_err(|e| anyhow::anyhow!("the plugin was refused: {}", e.0))
}

/// `--listen`, checked as the API checks it.
fn parse_listen_arg(text: &str) -> Result<Vec<String>, String> {
    commerce_app::extensions::parse_listen(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "h", "0", "5y", "400d", "-1"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
