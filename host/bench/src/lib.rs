//! `commerce bench`: the load generator of issue 6. Seeds products,
//! drives simulated customers (direct orders and cart checkouts, a mix of
//! payment tokens, a hot SKU) at a target rate or flat out, waits for
//! every order to reach a terminal state, prints a summary, and checks
//! that stock, orders, sagas and the payment ledger agree.
//!
//! It talks to the service over HTTP only, the same way whether it
//! started the service in this process or drives one already running
//! (`--url`): the numbers include the HTTP stack, and the check sees what
//! a client can see. It changes nothing in the service.
//!
//! - [`config`]: the options and their checks;
//! - [`target`]: the service in-process or remote, seeding, clean-up;
//! - [`driver`]: the workload and the open-/closed-loop driver;
//! - [`stats`]: percentiles, counts and the summary;
//! - [`check`]: the consistency check.

pub mod check;
pub mod config;
pub mod driver;
pub mod stats;
pub mod target;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use uuid::Uuid;

use commerce_app::Role;
use commerce_service::startup::BundledPlugin;
pub use config::BenchArgs;
use stats::Summary;
use target::Target;

/// Runs the benchmark; an error when the consistency check fails.
/// `examples` are the plugins `--example-plugins` installs in an
/// in-process service (the binary embeds them).
pub async fn run(args: BenchArgs, examples: &'static [BundledPlugin]) -> anyhow::Result<()> {
    init_logs();
    let spec = args.validate()?;
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let target = Target::start(&args, &spec, &run, examples).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(args.prefer_wait + 30))
        .build()?;
    let admin = format!(
        "Bearer {}",
        target
            .keys
            .mint(Uuid::nil(), Role::Admin, Duration::from_secs(86_400))?
    );
    let result = bench(&args, &target, &client, &admin, &run).await;
    let consistent = matches!(&result, Ok(summary) if summary.is_consistent());
    if let Ok(summary) = &result {
        if args.json {
            println!("{}", serde_json::to_string_pretty(summary)?);
        } else {
            print!("{}", summary.text());
        }
    }
    // An in-process service's background work is stopped before its
    // schema and keys go.
    target.finish(args.keep_data || !consistent).await;
    let summary = result?;
    anyhow::ensure!(
        summary.is_consistent(),
        "the consistency check failed: {} problem(s), listed above",
        summary.consistency.len()
    );
    Ok(())
}

/// Seeds the run's products, drives the load, reads back what the service
/// and the simulator hold, checks it, and sums it all up.
async fn bench(
    args: &BenchArgs,
    target: &Target,
    client: &reqwest::Client,
    admin: &str,
    run: &str,
) -> anyhow::Result<Summary> {
    eprintln!("bench: {}; seeding {} products", target.label, args.skus);
    let skus = target::seed(client, &target.base, admin, run, args.skus, args.stock)
        .await
        .context("seeding the products")?;
    let seeded = target::seeded(&skus, args.stock);
    let workload = driver::Workload::build(args, &skus, &target.base, &target.keys)?;
    // Order ids are time-ordered: the check lists orders down to this.
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    eprintln!(
        "bench: {} s warm-up, then {} s measured, at {}",
        args.warmup,
        args.duration,
        if args.rate > 0.0 {
            format!("{} orders/s (open loop)", args.rate)
        } else {
            format!("full speed with {} customers", args.concurrency)
        }
    );
    let counters = target.postgres_url().map(|url| {
        tokio::spawn(database_counters(
            url.to_owned(),
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.duration),
        ))
    });
    let (mut observed, schedule) =
        driver::drive(client.clone(), &target.base, workload, args).await?;
    let database = database_cost(counters, &observed).await;
    let drained = observed.last_settled.map_or(0.0, |t| {
        t.saturating_duration_since(schedule.window_end)
            .as_secs_f64()
    });

    if args.shadow_sample.is_some() {
        report_shadow(client, &target.base, admin).await;
    }
    eprintln!("bench: load over; checking consistency");
    let reader = check::Reader {
        client,
        base: &target.base,
        payment_sim: &target.payment_sim,
        admin,
    };
    let placed = std::mem::take(&mut observed.placed);
    let (snapshot, warnings) = gather(&reader, target, seeded, since, &schedule, placed).await?;
    let consistency = check::check(&snapshot);
    let checked = check::coverage(&snapshot);
    Ok(summary(
        args,
        setup(args, target, run),
        observed,
        drained,
        Checked {
            consistency,
            warnings,
            checked,
        },
        database,
    ))
}

/// The database's cost per order, once the counters' task is done (none
/// against SQLite or a remote service, or when they could not be read).
async fn database_cost(
    counters: Option<tokio::task::JoinHandle<anyhow::Result<(i64, i64)>>>,
    observed: &driver::Observed,
) -> Option<stats::DatabaseCost> {
    match counters {
        Some(task) => match task.await {
            Ok(Ok((transactions, wal_flushes))) => {
                let orders = observed.terminal_in_window.max(1) as f64;
                Some(stats::DatabaseCost {
                    transactions_per_order: transactions as f64 / orders,
                    wal_flushes_per_order: wal_flushes as f64 / orders,
                })
            }
            Ok(Err(e)) => {
                eprintln!("bench: PostgreSQL's counters could not be read: {e:#}");
                None
            }
            Err(_) => None,
        },
        None => None,
    }
}

/// Reads what the check compares once the load is over, and the cache
/// drift warnings. `placed` are the orders the run was answered 201 for.
async fn gather(
    reader: &check::Reader<'_>,
    target: &Target,
    seeded: BTreeMap<String, i64>,
    since: chrono::DateTime<chrono::Utc>,
    schedule: &driver::Schedule,
    placed: HashMap<Uuid, String>,
) -> anyhow::Result<(check::Snapshot, Vec<String>)> {
    let orders = reader.orders(&seeded, since).await?;
    let ids: HashSet<Uuid> = orders.iter().map(|o| o.id).collect();
    let scope = (!target.ledger_is_ours).then_some(&ids);
    let mut open_sagas = reader.open_sagas(scope).await?;
    // A saga may end a moment after its order's last status: give the
    // stragglers until the drain deadline (one needing attention will not
    // end by itself).
    let moving = |sagas: &[check::OpenSaga]| sagas.iter().any(|s| s.status != "needs_attention");
    let mut waited = false;
    while moving(&open_sagas) && tokio::time::Instant::now() < schedule.drain_deadline {
        waited = true;
        tokio::time::sleep(Duration::from_millis(200)).await;
        open_sagas = reader.open_sagas(scope).await?;
    }
    // Orders again if sagas were still moving when they were read.
    let orders = if open_sagas.is_empty() && !waited {
        orders
    } else {
        reader.orders(&seeded, since).await?
    };
    // Stock as clients see it (through the Redis cache, if any) and, in
    // process, as the database holds it: the database is checked, a
    // difference is reported as cache drift.
    let seen = reader.products(&seeded).await?;
    let (products, warnings) = match &target.store {
        Some(store) => {
            let stored = target::stored_products(store.as_ref(), &seeded).await?;
            let drift = check::drift(&seen, &stored);
            (stored, drift)
        }
        None => (seen, Vec::new()),
    };
    let snapshot = check::Snapshot {
        products,
        seeded,
        orders,
        placed,
        open_sagas,
        ledger: reader.ledger().await?,
        ledger_is_ours: target.ledger_is_ours,
    };
    Ok((snapshot, warnings))
}

/// What the consistency check found.
struct Checked {
    /// The problems (empty when consistent).
    consistency: Vec<String>,
    /// Cache drift, not counted as inconsistencies.
    warnings: Vec<String>,
    /// What was covered.
    checked: BTreeMap<String, u64>,
}

/// The run's setup in words, for the summary.
fn setup(args: &BenchArgs, target: &Target, run: &str) -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([
        ("target".to_owned(), json!(target.label)),
        (
            "load".to_owned(),
            json!(if args.rate > 0.0 {
                format!(
                    "open loop at {} orders/s, at most {} in flight",
                    args.rate, args.concurrency
                )
            } else {
                format!("flat out, {} customers", args.concurrency)
            }),
        ),
        (
            "timing".to_owned(),
            json!(format!(
                "{} s warm-up, {} s measured, {} s drain deadline; Prefer: wait={}",
                args.warmup, args.duration, args.drain, args.prefer_wait
            )),
        ),
        (
            "mix".to_owned(),
            json!(format!(
                "{} SKUs x {} units, hot SKU share {}, cart share {}, 1-{} lines of 1-{} units, {} customers",
                args.skus,
                args.stock,
                args.hot_share,
                args.cart_share,
                args.max_lines,
                args.max_quantity,
                args.customers
            )),
        ),
        (
            "tokens".to_owned(),
            json!(
                args.tokens
                    .0
                    .iter()
                    .map(|(t, p)| format!("{t}={p:.3}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        ("run".to_owned(), json!(run)),
    ])
}

/// The summary of what was observed and checked.
fn summary(
    args: &BenchArgs,
    setup: BTreeMap<String, serde_json::Value>,
    mut observed: driver::Observed,
    drained: f64,
    checked: Checked,
    database: Option<stats::DatabaseCost>,
) -> Summary {
    let secs = args.duration as f64;
    Summary {
        setup,
        measured_secs: secs,
        sent: observed.sent,
        missed_sends: observed.missed,
        dispatch_lag_p99_ms: observed
            .dispatch_lag
            .percentile(99.0)
            .map(|d| d.as_secs_f64() * 1000.0),
        dispatch_lag_max_ms: observed
            .dispatch_lag
            .percentile(100.0)
            .map(|d| d.as_secs_f64() * 1000.0),
        terminal_per_sec: observed.terminal_in_window as f64 / secs,
        ceiling: args
            .ceiling
            .filter(|c| *c > 0.0)
            .map(|c| stats::CeilingShare {
                ceiling_per_sec: c,
                share: observed.terminal_in_window as f64 / secs / c,
            }),
        confirmed_per_sec: observed.confirmed_in_window as f64 / secs,
        outcomes: observed.outcomes,
        errors: observed.errors,
        placement: observed.placement.summary(),
        saga_completion: observed.saga.summary(),
        cart_put: observed.cart_put.summary(),
        drain_secs: drained,
        consistency: checked.consistency,
        warnings: checked.warnings,
        checked: checked.checked,
        database,
    }
}

/// Transactions committed in the database and WAL flushes in the cluster
/// over the measured window (from `warmup` after the load starts, for
/// `duration`).
async fn database_counters(
    url: String,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(i64, i64)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    async fn read(conn: &mut sqlx::PgConnection) -> anyhow::Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), \
             (SELECT wal_sync FROM pg_stat_wal)",
        )
        .fetch_one(conn)
        .await?)
    }
    tokio::time::sleep(warmup).await;
    let before = read(&mut conn).await?;
    tokio::time::sleep(duration).await;
    let after = read(&mut conn).await?;
    Ok((after.0 - before.0, after.1 - before.1))
}

/// The service's logs go to stderr (the summary owns stdout), warnings
/// and errors only (the payment client's warnings about declines and
/// sqlx's about slow statements, expected under load, are left out)
/// unless RUST_LOG says otherwise.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,sqlx=error,commerce::payment::client=error")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// What the bulk discount's shadow (`--shadow-sample`) found, on stderr.
async fn report_shadow(client: &reqwest::Client, base: &str, admin: &str) {
    let report = async {
        client
            .get(format!("{base}/v1/plugins/bulk-discount/shadow"))
            .header("authorization", admin)
            .send()
            .await?
            .error_for_status()?
            .json::<serde_json::Value>()
            .await
    };
    match report.await {
        Ok(status) => {
            let r = &status["report"];
            eprintln!(
                "bench: shadow v{}: {} calls sampled, {} agreed, {} differed, {} failed, {} dropped",
                status["version"],
                r["calls"],
                r["agreed"],
                r["differed"],
                r["failed"],
                r["dropped"]
            );
        }
        Err(e) => eprintln!("bench: could not read the shadow's report: {e}"),
    }
}
