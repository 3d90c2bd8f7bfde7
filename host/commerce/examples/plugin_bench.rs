//! Cost of the plugin stage per order: pricing and validation through the
//! real runtime (a fresh, isolated instance per call, from a pooled,
//! pre-instantiated, precompiled component), against the same rules
//! compiled natively into the host.
//!
//! ```text
//! cargo run --release --example plugin_bench
//! ```
//! Uses the example plugins `bulk-discount` (pricing) and `quantity-rules`
//! (validation) on a 20-line cart.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use commerce_app::extensions::{PluginKind, Quote};
use commerce_app::plugins::InstallPlugin;
use commerce_app::{App, Caller, Role};
use commerce_domain::{Currency, OrderLine, OrderStatus, Quantity, Sku};
use commerce_plugins::{PluginRuntime, PluginSettings};
use commerce_store::StoreConfig;
use rust_decimal::Decimal;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Measured iterations per stage.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// Lines in the cart.
    #[arg(long, default_value_t = 20)]
    lines: usize,
    /// Also measure this pricing component alone, e.g. the Python example
    /// built by scripts/python-plugin.sh.
    #[arg(long)]
    component: Option<std::path::PathBuf>,
}

fn quote(lines: usize) -> Quote {
    Quote {
        order_id: Uuid::now_v7(),
        customer_id: Uuid::new_v4(),
        status: OrderStatus::Pending,
        currency: Currency::parse("EUR").unwrap(),
        lines: (0..lines)
            .map(|i| OrderLine {
                sku: Sku::parse(&format!("SKU-{i}")).unwrap(),
                name: format!("Product number {i}"),
                quantity: Quantity::parse(1 + (i as i64 * 7) % 60).unwrap(),
                unit_price: Decimal::new(999 + i as i64 * 100, 2),
            })
            .collect(),
    }
}

/// The example plugins' rules, natively: the highest tier reached gives a
/// percentage off the line; a line above the maximum quantity is a violation.
fn native(quote: &Quote) -> (Vec<i64>, Vec<usize>) {
    let tiers = [(10u32, 10i64), (50, 20)];
    let mut discounts = Vec::new();
    let mut violations = Vec::new();
    for (i, line) in quote.lines.iter().enumerate() {
        let q = line.quantity.get();
        let cents = (line.unit_price * Decimal::from(q) * Decimal::from(100)).trunc();
        let cents: i64 = cents.try_into().unwrap_or(0);
        if let Some((_, pct)) = tiers.iter().rev().find(|(min, _)| q >= *min) {
            discounts.push(cents * pct / 100);
        }
        if q > 100 {
            violations.push(i);
        }
    }
    (discounts, violations)
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99), at(0.999))
}

fn measure(iterations: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..iterations / 10 {
        f();
    }
    let samples = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    percentiles(samples)
}

/// A stage of the table: its name, then p50, p99 and p99.9 in
/// microseconds.
type Row = (&'static str, f64, f64, f64);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = commerce_store::open(&StoreConfig::Sqlite {
        data_dir: dir.path().to_owned(),
    })
    .await?;
    let settings = PluginSettings {
        cache_dir: dir.path().join("plugin-cache"),
        ..Default::default()
    };
    let (app, runtime) = commerce_service::startup::build_app(store, settings).await?;
    let quote = quote(args.lines);
    let mut rows = host_rows(args.iterations, &quote);
    let native_p50 = rows[0].1;
    rows.extend(plugin_rows(&app, &runtime, args.iterations, &quote).await?);
    if let Some(path) = &args.component {
        rows.push(component_row(&app, &runtime, args.iterations, &quote, path).await?);
    }

    println!(
        "{}-line cart, {} iterations, one thread; microseconds",
        args.lines, args.iterations
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>14}",
        "stage", "p50", "p99", "p99.9", "p50 vs native"
    );
    for (name, p50, p99, p999) in rows {
        println!(
            "{name:<32} {p50:>9.1} {p99:>9.1} {p999:>9.1} {:>13.0}x",
            p50 / native_p50
        );
    }
    Ok(())
}

/// The stages without a plugin: the rules compiled natively (the first
/// row, the baseline), and creating a sandbox's context alone.
fn host_rows(iterations: usize, quote: &Quote) -> Vec<Row> {
    let mut rows = Vec::new();
    let (n50, n99, n999) = measure(iterations, || {
        black_box(native(black_box(quote)));
    });
    rows.push(("native rules (both)", n50, n99, n999));
    let sandbox = measure(iterations, || {
        let state = commerce_plugins::sandbox::PluginState::new(
            std::sync::Arc::from("{}"),
            commerce_plugins::sandbox::CallLimits {
                memory: 16 << 20,
                log: 1024,
            },
        );
        black_box(state);
    });
    rows.push(("sandbox context only", sandbox.0, sandbox.1, sandbox.2));
    rows
}

/// The stages through the runtime: a minimal plugin (the floor), then the
/// pricing plugin, then pricing and validation, installed one after the
/// other; validation alone is the difference of the last two.
async fn plugin_rows(
    app: &App,
    runtime: &PluginRuntime,
    iterations: usize,
    quote: &Quote,
) -> anyhow::Result<Vec<Row>> {
    let admin = Caller {
        subject: Uuid::nil(),
        role: Role::Admin,
    };
    let mut rows = Vec::new();
    // The floor: a 1.6 KB pricing component written in WAT, importing no
    // WASI, doing no work; what instantiating and calling costs by itself.
    app.registry()
        .install_plugin(
            admin,
            InstallPlugin {
                name: "floor".into(),
                kind: PluginKind::Pricing,
                bytes: std::fs::read(
                    Path::new(commerce_bundled::PLUGIN_DIR).join("wat_free_shipping.wasm"),
                )?,
                config: None,
                priority: 100,
                listen: None,
                limits: Default::default(),
                activate: true,
            },
        )
        .await?;
    let floor = measure(iterations, || {
        black_box(runtime.evaluate_now(quote).expect("floor"));
    });
    rows.push(("minimal WAT plugin (floor)", floor.0, floor.1, floor.2));
    app.registry().remove_plugin(admin, "floor").await?;
    app.registry()
        .install_plugin(admin, example("bulk-discount", PluginKind::Pricing))
        .await?;
    let pricing = measure(iterations, || {
        let e = runtime.evaluate_now(quote).expect("pricing");
        black_box(e);
    });
    rows.push(("pricing plugin", pricing.0, pricing.1, pricing.2));
    app.registry()
        .install_plugin(admin, example("quantity-rules", PluginKind::Validation))
        .await?;
    let both = measure(iterations, || {
        let e = runtime.evaluate_now(quote).expect("pricing + validation");
        black_box(e);
    });
    rows.push(("pricing + validation plugins", both.0, both.1, both.2));
    let validation = (both.0 - pricing.0, both.1 - pricing.1, both.2 - pricing.2);
    rows.push((
        "validation plugin (difference)",
        validation.0,
        validation.1,
        validation.2,
    ));
    Ok(rows)
}

/// The pricing component at `path`, alone (the examples removed).
async fn component_row(
    app: &App,
    runtime: &PluginRuntime,
    iterations: usize,
    quote: &Quote,
    path: &Path,
) -> anyhow::Result<Row> {
    let admin = Caller {
        subject: Uuid::nil(),
        role: Role::Admin,
    };
    for name in ["bulk-discount", "quantity-rules"] {
        app.registry().remove_plugin(admin, name).await?;
    }
    let bytes = std::fs::read(path)?;
    let install = InstallPlugin {
        name: "component".into(),
        kind: PluginKind::Pricing,
        bytes,
        config: None,
        priority: 100,
        listen: None,
        limits: Default::default(),
        activate: true,
    };
    app.registry().install_plugin(admin, install).await?;
    let (p50, p99, p999) = measure(iterations, || {
        black_box(runtime.evaluate_now(quote).expect("the component prices"));
    });
    Ok(("--component alone", p50, p99, p999))
}

/// The install request of the example plugin `name`, active.
fn example(name: &str, kind: PluginKind) -> InstallPlugin {
    let (_, bytes, config, _) = commerce_bundled::EXAMPLES
        .iter()
        .find(|(n, _, _, _)| *n == name)
        .unwrap();
    InstallPlugin {
        name: name.into(),
        kind,
        bytes: bytes.to_vec(),
        config: Some((*config).into()),
        priority: 100,
        listen: None,
        limits: Default::default(),
        activate: true,
    }
}
