//! `commerce bench`, run briefly: in-process on PostgreSQL with Redis and
//! the example plugins (JSON summary), and against a running service
//! (`--url`, text summary). Both must drain every order and pass the
//! consistency check (exit status 0).

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{Backend, PaymentSim, SECRET, TestApp, admin_database_url, redis_url};

/// A short run: 1 s warm-up, 3 s measured, a small rate, declines mixed in
/// so that both outcomes (and their compensations) are checked.
const SHORT: &[&str] = &[
    "--warmup",
    "1",
    "--duration",
    "3",
    "--drain",
    "30",
    "--rate",
    "25",
    "--concurrency",
    "32",
    "--skus",
    "12",
    "--stock",
    "10000",
    "--customers",
    "20",
    "--cart-share",
    "0.3",
    "--hot-share",
    "0.3",
    "--tokens",
    "tok_ok=0.75,tok_decline=0.25",
    "--seed",
    "42",
];

fn bench(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commerce"));
    cmd.arg("bench")
        .args(SHORT)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("COMMERCE_JWT_SECRET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let out = cmd.output().expect("run commerce bench");
    if !out.status.success() || std::env::var_os("TEST_LOG").is_some() {
        eprintln!("stdout:\n{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

#[tokio::test]
async fn bench_in_process_on_postgres_with_redis_and_plugins() {
    let database_url = admin_database_url();
    let redis = redis_url();
    let out = bench(&[
        "--backend",
        "postgres",
        "--database-url",
        &database_url,
        "--redis-url",
        &redis,
        "--example-plugins",
        "--json",
        "--ceiling",
        "4000",
    ]);
    assert!(
        out.status.success(),
        "commerce bench failed: {:?}",
        out.status
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary on stdout");
    assert_eq!(summary["consistency"], serde_json::json!([]));
    let outcomes = &summary["outcomes"];
    assert!(outcomes["confirmed"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(outcomes["failed"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(outcomes.get("unsettled").is_none(), "{summary}");
    assert!(summary["sent"].as_u64().unwrap() >= 50, "{summary}");
    let throughput = summary["terminal_per_sec"].as_f64().unwrap();
    assert!(throughput > 0.0);
    // The throughput as a share of the ceiling given (scripts/pg-ceiling.sh).
    let share = summary["ceiling"]["share"].as_f64().unwrap();
    assert!((share - throughput / 4000.0).abs() < 1e-9, "{summary}");
    assert!(summary["placement"]["p99_ms"].as_f64().is_some());
    assert!(summary["saga_completion"]["p50_ms"].as_f64().is_some());
    assert!(
        summary["cart_put"]["count"].as_u64().unwrap() > 0,
        "cart flows ran"
    );
    assert!(summary["checked"]["orders"].as_u64().unwrap() >= 50);
    // What PostgreSQL did per order (its counters lag by up to a second,
    // and other tests share the database: only their presence is checked).
    let database = &summary["database"];
    for counter in ["transactions_per_order", "wal_flushes_per_order"] {
        assert!(
            database[counter].as_f64().is_some_and(|v| v >= 0.0),
            "{counter} in {summary}"
        );
    }
}

#[tokio::test]
async fn bench_against_a_running_service() {
    let sim = PaymentSim::spawn(&[]);
    let app = TestApp::spawn_with(Backend::Sqlite, &[], &[("PAYMENT_URL", &sim.base)]).await;
    let out = bench(&[
        "--url",
        &app.base,
        "--jwt-secret",
        SECRET,
        "--payment-sim-url",
        &sim.base,
    ]);
    assert!(
        out.status.success(),
        "commerce bench failed: {:?}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "orders/s to a terminal state",
        "placement",
        "saga completion",
        "p99.9",
        "confirmed",
        "consistency    OK",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn bench_needs_the_secret_and_the_simulator_with_url() {
    let out = bench(&["--url", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--jwt-secret"), "{err}");
}
