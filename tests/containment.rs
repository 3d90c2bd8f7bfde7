//! Containment of hostile plugins (issue 21): answers, error messages and
//! logs built to make the host allocate far beyond the limits (aliasing
//! answers, multi-megabyte strings, a gigabyte of log), and declarations
//! beyond the sandbox (several memories, huge initial memory or table).
//! Each is stopped with a typed error, is counted, and costs the running
//! service a few MiB at most while it goes on answering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_app::extensions::PluginKind;
use commerce_app::ports::NewPluginVersion;
use commerce_plugins::{CheckError, PluginError, PluginSettings};
use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, TestDb, component, metric_sum};

/// A gigabyte through `host::log`: 16384 messages of 64 KiB (the log keeps
/// 1 KiB), within the default fuel and the per-transfer limit.
const LOG_FLOOD: &str = r#"{"log_calls":16384,"log_message":65536,"stream_bytes":0}"#;

/// What one transfer from a plugin to the host may carry by default: four
/// times the 20 KiB output limit.
const MAX_TRANSFER: usize = 80 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_are_refused_at_upload_with_typed_errors() {
    let db = TestDb::new(Backend::Sqlite).await;
    // A deadline with room for a CI machine running the suite in parallel:
    // the default 50 ms was once missed there by the log flood below, whose
    // point is that it is answered with its log kept to 1 KiB, not its speed
    // (deadlines have their own test in tests/plugins.rs).
    let settings = PluginSettings {
        cache_dir: db.dir.path().join("plugin-cache"),
        deadline: Duration::from_millis(500),
        ..Default::default()
    };
    let (_, runtime) = commerce_service::startup::build_app(db.open_store().await, settings)
        .await
        .unwrap();

    // Answers over the output limit, at every extension point: an
    // aliasing list (pricing, validation), a huge error, a huge veto.
    for (kind, name) in [
        (PluginKind::Pricing, "evil_alias"),
        (PluginKind::Pricing, "evil_error"),
        (PluginKind::Validation, "evil_violations"),
        (PluginKind::SagaHook, "evil_veto"),
    ] {
        let r = runtime
            .try_component(kind, name, Arc::new(component(name)), "{}")
            .await;
        assert!(
            matches!(
                r,
                Err(CheckError::Smoke(PluginError::TransferTooLarge { limit }))
                    if limit == MAX_TRANSFER
            ),
            "{name}: {r:?}"
        );
    }

    // Declarations beyond the sandbox, refused before any call: by the
    // pooling allocator when it compiles them (it has room for one memory
    // of 32 MiB and small tables per module), else by the upload limits.
    for (name, pooled, limited) in [
        (
            "evil_memories",
            "module memory does not fit",
            "defines 2 linear memories",
        ),
        (
            "evil_big_memory",
            "module memory does not fit",
            "starts with 134217728 bytes",
        ),
        (
            "evil_big_table",
            "module table does not fit",
            "a table of 10000000 elements",
        ),
    ] {
        let r = runtime
            .try_component(PluginKind::Pricing, name, Arc::new(component(name)), "{}")
            .await;
        assert!(
            matches!(&r, Err(CheckError::Compile(m)) if m.contains(pooled))
                || matches!(&r, Err(CheckError::Limits(m)) if m.contains(limited)),
            "{name}: {r:?}"
        );
    }

    // A gigabyte of log is not an error: it is kept to 1 KiB, in time.
    runtime
        .try_component(
            PluginKind::Pricing,
            "log-flood",
            Arc::new(component("evil_log")),
            LOG_FLOOD,
        )
        .await
        .expect("a plugin that logs a gigabyte still answers");
}

/// A hostile plugin put straight into the registry and activated, as if it
/// had got past the upload checks, and what its calls must come to.
struct Case {
    name: &'static str,
    kind: PluginKind,
    config: &'static str,
    /// What placing an order answers while it is active.
    status: StatusCode,
    /// The outcomes its calls are counted under.
    outcomes: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "evil_alias",
        kind: PluginKind::Pricing,
        config: "{}",
        status: StatusCode::SERVICE_UNAVAILABLE,
        outcomes: &["output"],
    },
    Case {
        name: "evil_error",
        kind: PluginKind::Pricing,
        config: "{}",
        status: StatusCode::SERVICE_UNAVAILABLE,
        outcomes: &["output"],
    },
    Case {
        name: "evil_violations",
        kind: PluginKind::Validation,
        config: "{}",
        status: StatusCode::SERVICE_UNAVAILABLE,
        outcomes: &["output"],
    },
    // Past the upload check, two memories of 10 MiB: the pooling
    // allocator cannot load it (every call fails as unavailable); without
    // the pool, instantiation meets the 16 MiB cap, all memories together.
    Case {
        name: "evil_memories",
        kind: PluginKind::Pricing,
        config: "{}",
        status: StatusCode::SERVICE_UNAVAILABLE,
        outcomes: &["unavailable", "memory"],
    },
    Case {
        name: "evil_log",
        kind: PluginKind::Pricing,
        config: LOG_FLOOD,
        status: StatusCode::CREATED,
        outcomes: &["ok"],
    },
];

/// Orders placed while each hostile plugin is active, after the first.
const ORDERS: usize = 10;

/// How much the service's resident memory may grow over those orders, at
/// its peak: the hostile plugins' own linear memory (4 MiB for the
/// aliasing answers, 1 MiB and its copy for the log flood) and a margin.
/// Copying the aliasing answer, as the host once did, would take up to
/// wasmtime's 128 MiB copy budget per call, and gigabytes without it.
const MAX_GROWTH_KIB: u64 = 8 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_cost_the_service_a_few_mib_and_are_counted() {
    for case in CASES {
        let app = TestApp::spawn(Backend::Sqlite).await;
        app.put_product("MUG", "10.00", "EUR", 1_000).await;
        install_unchecked(&app, case).await;
        let (_, token) = app.customer();

        // The poller loads it within a second; the first order that shows
        // it also compiles it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, _, body) = app.place(&token, &[("MUG", 1)], None).await;
            // A plugin that answers is loaded once its calls are counted.
            let loaded = s == case.status
                && (s != StatusCode::CREATED || plugin_calls(&app, case).await > 0.0);
            if loaded {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: never took effect: {s} {body}",
                case.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let before = Memory::reset_peak(app.pid());
        for _ in 0..ORDERS {
            let (s, _, body) = app.place(&token, &[("MUG", 1)], None).await;
            assert_eq!(s, case.status, "{}: {body}", case.name);
            if s == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(body["type"], "/problems/plugin-failed", "{body}");
                assert_eq!(body["plugin"], case.name, "{body}");
            }
        }
        let after = Memory::read(app.pid());
        let growth = after.peak_kib.saturating_sub(before.rss_kib);
        eprintln!("{}: the service's peak grew by {growth} KiB", case.name);
        assert!(
            growth <= MAX_GROWTH_KIB,
            "{}: the service grew by {growth} KiB at its peak ({before:?} -> {after:?})",
            case.name
        );

        // The service goes on answering, and counts every call.
        let (s, _, list) = app.get("/v1/plugins", &app.admin()).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        if case.outcomes != ["ok"] {
            let failures: u64 = case
                .outcomes
                .iter()
                .filter_map(|o| list[0]["stats"]["failures"][o].as_u64())
                .sum();
            assert!(failures > ORDERS as u64, "{}: {list}", case.name);
        }
        assert!(
            plugin_calls(&app, case).await > ORDERS as f64,
            "{}: calls not counted under {:?}",
            case.name,
            case.outcomes
        );
    }
}

async fn install_unchecked(app: &TestApp, case: &Case) {
    let store = app.db.open_store().await;
    store
        .insert_plugin_version(NewPluginVersion {
            name: case.name.into(),
            kind: case.kind,
            sha256: "0".repeat(64),
            bytes: component(case.name),
            config: case.config.into(),
            priority: 1,
            listen: None,
            limits: Default::default(),
            at: chrono::Utc::now(),
        })
        .await
        .unwrap()
        .unwrap();
    store
        .activate_plugin(case.name, None)
        .await
        .unwrap()
        .unwrap();
}

/// The calls of `case`'s plugin counted under its expected outcomes.
async fn plugin_calls(app: &TestApp, case: &Case) -> f64 {
    let metrics = app.metrics().await;
    case.outcomes
        .iter()
        .map(|outcome| {
            metric_sum(
                &metrics,
                "commerce_plugin_calls_total",
                &[("plugin", case.name), ("outcome", outcome)],
            )
        })
        .sum()
}

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Debug)]
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

impl Memory {
    fn read(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }

    /// Resets the peak to the current resident size (Linux: writing 5 to
    /// `clear_refs`), then reads both.
    fn reset_peak(pid: u32) -> Memory {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        Memory::read(pid)
    }
}
