//! Spawning the service and talking to it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use commerce_api::auth::JwtKeys;
use commerce_app::{Role, Store};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use uuid::Uuid;

pub const SECRET: &str = "e2e-test-secret-that-is-long-enough-0123456789";

/// The two storage backends every test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body against both backends, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A private place to store data: a temporary directory, and for
/// PostgreSQL a fresh schema (dropped when this is dropped).
pub struct TestDb {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub schema: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let schema = format!("e2e_{}", Uuid::new_v4().simple());
                let mut conn = connect_admin().await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test schema");
                Some(schema)
            }
        };
        TestDb {
            backend,
            dir,
            schema,
        }
    }

    /// `DATABASE_URL` for the service, if PostgreSQL.
    pub fn database_url(&self) -> Option<String> {
        self.schema.as_ref().map(|schema| {
            let base = admin_database_url();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `sql` on the database directly, behind the service's back.
    pub async fn execute_sql(&self, sql: &'static str) {
        use sqlx::Connection;
        match self.database_url() {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            None => {
                let path = self.data_dir().join("commerce.db");
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    /// The store, opened in-process (migrations applied).
    pub async fn open_store(&self) -> Arc<dyn Store> {
        let config = match self.database_url() {
            Some(url) => commerce_store::StoreConfig::Postgres {
                url,
                max_connections: 30,
            },
            None => commerce_store::StoreConfig::Sqlite {
                data_dir: self.data_dir(),
            },
        };
        commerce_store::open(&config).await.expect("open store")
    }
}

impl TestDb {
    /// The use cases over `store`, with a plugin runtime of its own.
    pub async fn app(&self, store: Arc<dyn Store>) -> commerce_app::App {
        self.app_and_runtime(store).await.0
    }

    pub async fn app_and_runtime(
        &self,
        store: Arc<dyn Store>,
    ) -> (commerce_app::App, Arc<commerce_plugins::PluginRuntime>) {
        let settings = commerce_plugins::PluginSettings {
            cache_dir: self.dir.path().join("plugin-cache"),
            ..Default::default()
        };
        commerce_service::startup::build_app(store, settings)
            .await
            .expect("plugin runtime")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Drop runs inside the test's runtime; use a thread of our own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let mut conn = connect_admin().await;
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                });
            })
            .join();
        }
    }
}

async fn connect_admin() -> sqlx::PgConnection {
    use sqlx::Connection;
    let url = admin_database_url();
    sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required for these tests and is unreachable at {url}: {e}")
    })
}

/// A running `commerce serve` and a client for it.
pub struct TestApp {
    pub db: TestDb,
    pub base: String,
    pub client: reqwest::Client,
    keys: JwtKeys,
    child: Child,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Every line the service wrote on stdout (its logs), in order.
    logs: Logs,
}

/// The lines a service logged, collected as it runs.
pub type Logs = Arc<std::sync::Mutex<Vec<String>>>;

/// A child process killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bytes of a component built by host/bundled/build.rs
/// (`bulk_discount`, ...).
pub fn component(name: &str) -> Vec<u8> {
    let path = component_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Where [`component`] reads `name` from (for the CLI's `plugin run`).
pub fn component_path(name: &str) -> String {
    format!("{}/{name}.wasm", commerce_bundled::PLUGIN_DIR)
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[], &[]).await
    }

    /// Spawns with extra `serve` arguments and environment.
    pub async fn spawn_with(backend: Backend, args: &[&str], envs: &[(&str, &str)]) -> TestApp {
        let db = TestDb::new(backend).await;
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let logs = Logs::default();
        let (child, base) = start_service_with(&db, &args, &envs, Some(logs.clone()));
        TestApp {
            db,
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            keys: JwtKeys::new(SECRET.as_bytes()),
            child,
            args,
            envs,
            logs,
        }
    }

    /// The service's log lines so far, parsed (each is one JSON object).
    pub fn log_lines(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Starts another `commerce serve` on the same data: a second replica.
    /// Returns its base URL; it is stopped when `child` is dropped.
    pub fn spawn_replica(&self) -> (KillOnDrop, String) {
        let (child, base) = start_service_with(&self.db, &self.args, &self.envs, None);
        (KillOnDrop(child), base)
    }

    /// Stores and activates `bytes` as pricing plugin `name` straight in
    /// the registry, skipping the upload checks as if it had passed them
    /// (a trapping component does not); the service picks it up by
    /// polling.
    pub async fn activate_unchecked(&self, name: &str, bytes: Vec<u8>) {
        let store = self.db.open_store().await;
        store
            .insert_plugin_version(commerce_app::ports::NewPluginVersion {
                name: name.into(),
                kind: commerce_app::extensions::PluginKind::Pricing,
                sha256: "0".repeat(64),
                bytes,
                config: "{}".into(),
                priority: 1,
                listen: None,
                limits: Default::default(),
                at: chrono::Utc::now(),
            })
            .await
            .unwrap()
            .unwrap();
        store.activate_plugin(name, None).await.unwrap().unwrap();
    }

    /// Uploads a component; returns status and body.
    pub async fn upload(
        &self,
        name: &str,
        bytes: Vec<u8>,
        kind: Option<&str>,
        config: Option<&str>,
        activate: bool,
    ) -> (StatusCode, Value) {
        let mut query = format!("{name}?activate={activate}");
        if let Some(kind) = kind {
            query.push_str(&format!("&kind={kind}"));
        }
        if let Some(config) = config {
            query.push_str(&format!("&config={}", encode(config)));
        }
        self.upload_at(&query, bytes).await
    }

    /// `PUT /v1/plugins/{query}` with a component, as an admin.
    pub async fn upload_at(&self, query: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        self.upload_with(&self.client, query, bytes).await
    }

    /// The same, through `client` (e.g. one with a longer timeout).
    pub async fn upload_with(
        &self,
        client: &reqwest::Client,
        query: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let resp = client
            .put(format!("{}/v1/plugins/{query}", self.base))
            .bearer_auth(self.admin())
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Stops the service and starts it again on the same data.
    pub fn restart(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
        let (child, base) =
            start_service_with(&self.db, &self.args, &self.envs, Some(self.logs.clone()));
        self.child = child;
        self.base = base;
    }

    /// The service's process id (to read its `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The service's `/metrics` exposition.
    pub async fn metrics(&self) -> String {
        self.metrics_at(&self.base).await
    }

    /// `/metrics` of the service at `base` (this one, or a replica).
    pub async fn metrics_at(&self, base: &str) -> String {
        self.client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sends SIGTERM (a graceful stop) and waits until the process exits;
    /// true if it exited within `within`.
    pub fn terminate(&mut self, within: Duration) -> bool {
        self.send_sigterm();
        self.wait_exit(within).is_some()
    }

    /// Sends SIGTERM and returns at once.
    pub fn send_sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
    }

    /// The process's exit status if it has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits until the process exits; its status, `None` if it still runs
    /// after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Runs another `commerce` subcommand against the same data.
    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_commerce"));
        configure(&mut cmd, &self.db);
        cmd.args(args).output().expect("run commerce")
    }

    pub fn token(&self, subject: Uuid, role: Role) -> String {
        self.keys
            .mint(subject, role, Duration::from_secs(600))
            .expect("mint")
    }

    pub fn admin(&self) -> String {
        self.token(Uuid::from_u128(1), Role::Admin)
    }

    pub fn customer(&self) -> (Uuid, String) {
        let id = Uuid::new_v4();
        (id, self.token(id, Role::Customer))
    }

    /// Sends a request; returns status, headers and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
        self.call(Method::GET, path, Some(token), None, &[]).await
    }

    /// A `POST` with no body (an action: retry, refund, checkout...).
    pub async fn post(&self, path: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
        self.call(Method::POST, path, Some(token), None, &[]).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
        self.call(Method::DELETE, path, Some(token), None, &[])
            .await
    }

    pub async fn put_product(&self, sku: &str, price: &str, currency: &str, stock: i64) {
        let (status, _, body) = self
            .call(
                Method::PUT,
                &format!("/v1/products/{sku}"),
                Some(&self.admin()),
                Some(json!({"name": format!("Product {sku}"), "unit_price": price, "currency": currency, "stock": stock})),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "put product: {body}");
    }

    /// Places an order of `items` (sku, quantity) in EUR without a payment
    /// token, so no saga runs and the order stays `reserved`; returns
    /// status and body.
    pub async fn place(
        &self,
        token: &str,
        items: &[(&str, i64)],
        key: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        self.place_paying(token, items, key, None).await
    }

    /// Places an order paid with `payment` (a simulator token such as
    /// `tok_ok`): its fulfilment saga starts at once.
    pub async fn place_paying(
        &self,
        token: &str,
        items: &[(&str, i64)],
        key: Option<&str>,
        payment: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let items: Vec<Value> = items
            .iter()
            .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
            .collect();
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        let mut body = json!({"items": items, "currency": "EUR"});
        if let Some(payment) = payment {
            body["payment"] = json!({ "token": payment });
        }
        self.call(
            Method::POST,
            "/v1/orders",
            Some(token),
            Some(body),
            &headers,
        )
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn configure(cmd: &mut Command, db: &TestDb) {
    cmd.env("COMMERCE_JWT_SECRET", SECRET)
        .env("COMMERCE_DATA_DIR", db.data_dir())
        .env("COMMERCE_LOG_FORMAT", "json")
        // Tests stop services at once; the shutdown tests set their delay.
        .env("COMMERCE_SHUTDOWN_DELAY_MS", "0")
        // Most tests place many unpaid orders as one customer; the tests
        // of the limit set it with flags, which win over these.
        .env("COMMERCE_MAX_UNPAID_ORDERS", "1000000")
        .env("COMMERCE_MAX_UNPAID_UNITS", "100000000")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("PAYMENT_URL")
        .env_remove("COMMERCE_REDIS_PREFIX")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    if let Some(url) = db.database_url() {
        cmd.env("DATABASE_URL", url);
    }
}

/// Starts `commerce serve` on port 0 and waits for its "listening" line.
fn start_service_with(
    db: &TestDb,
    args: &[String],
    envs: &[(String, String)],
    logs: Option<Logs>,
) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commerce"));
    configure(&mut cmd, db);
    cmd.envs(envs.iter().map(|(k, v)| (k, v)));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn commerce serve");
    let addr = wait_until_listening_logging(&mut child, logs)
        .unwrap_or_else(|| panic!("commerce serve did not start ({:?})", db.backend));
    (child, format!("http://{addr}"))
}

/// The Redis the tests use (`TEST_REDIS_URL`, default the local one).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The Redis Cluster the tests use, as `REDIS_URL` lists its nodes
/// (`TEST_REDIS_CLUSTER_URL`, default the 3-master cluster that
/// scripts/redis-cluster.sh starts on 127.0.0.1:7000-7002).
pub fn redis_cluster_url() -> String {
    std::env::var("TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002".to_owned()
    })
}

/// A key prefix of its own in the test Redis (or Redis Cluster), so that
/// tests run in parallel; every key under it is deleted when this is
/// dropped.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    pub cluster: bool,
}

impl TestRedis {
    pub fn new() -> TestRedis {
        TestRedis {
            url: redis_url(),
            prefix: format!("test:{}:", Uuid::new_v4().simple()),
            cluster: false,
        }
    }

    /// On the test Redis Cluster; panics, saying how to start one, if it
    /// does not answer (these tests never skip).
    pub async fn cluster() -> TestRedis {
        let redis = TestRedis {
            url: redis_cluster_url(),
            prefix: format!("test:{}:", Uuid::new_v4().simple()),
            cluster: true,
        };
        let url = &redis.url;
        redis.handle().ping().await.unwrap_or_else(|e| {
            panic!(
                "these tests need a Redis Cluster at {url} (scripts/redis-cluster.sh starts one): {e}"
            )
        });
        redis
    }

    /// `REDIS_URL` and `COMMERCE_REDIS_PREFIX` for the service.
    pub fn envs(&self) -> Vec<(&str, &str)> {
        vec![
            ("REDIS_URL", self.url.as_str()),
            ("COMMERCE_REDIS_PREFIX", self.prefix.as_str()),
        ]
    }

    pub fn config(&self) -> commerce_store::redis::RedisConfig {
        commerce_store::redis::RedisConfig {
            url: self.url.clone(),
            cluster: self.cluster,
            prefix: self.prefix.clone(),
            timeout: Duration::from_secs(1),
        }
    }

    /// The service's own handle on it (cluster-aware: each key to its
    /// node).
    pub fn handle(&self) -> commerce_store::redis::Redis {
        commerce_store::redis::Redis::connect(&self.config()).expect("a valid Redis URL")
    }

    /// A plain connection to the (single) test Redis.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        assert!(!self.cluster, "a cluster is reached through handle()");
        let url = &self.url;
        redis::Client::open(url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| {
                panic!("Redis is required for these tests and is unreachable at {url}: {e}")
            })
    }

    /// The entries of the stream `<prefix>commerce.events`, as field
    /// maps, oldest first.
    pub async fn stream(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        let key = format!("{}commerce.events", self.prefix);
        let entries: Vec<(String, std::collections::BTreeMap<String, String>)> = self
            .handle()
            .run(|mut conn| async move {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
            })
            .await
            .expect("XRANGE");
        entries.into_iter().map(|(_, fields)| fields).collect()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let config = self.config();
        // Drop cannot await, and may run inside a runtime: a thread with
        // a runtime of its own. SCAN per node, DEL per key (cluster-safe).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                commerce_store::redis::Redis::connect(&config)
                    .ok()?
                    .delete_keys()
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A running `commerce payment-sim` (its own in-memory ledger), stopped
/// when dropped.
pub struct PaymentSim {
    pub base: String,
    _child: KillOnDrop,
}

impl PaymentSim {
    /// Starts `commerce payment-sim` on port 0 with extra arguments and
    /// waits for its "listening" line.
    pub fn spawn(args: &[&str]) -> PaymentSim {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_commerce"));
        cmd.args(["payment-sim", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("COMMERCE_LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .env_remove("PAYMENT_SIM_SLOW_MS")
            .env_remove("PAYMENT_SIM_HANG_MS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn commerce payment-sim");
        let addr = wait_until_listening(&mut child);
        let child = KillOnDrop(child);
        let addr = addr.expect("commerce payment-sim did not start");
        PaymentSim {
            base: format!("http://{addr}"),
            _child: child,
        }
    }
}

/// Reads a `commerce` child's JSON logs until its "listening" line and
/// returns the address logged there (`None` if it exits or takes over a
/// minute); keeps draining the logs afterwards (printing them if
/// `TEST_LOG` is set).
pub fn wait_until_listening(child: &mut Child) -> Option<String> {
    wait_until_listening_logging(child, None)
}

/// [`wait_until_listening`], keeping every line in `logs` too.
fn wait_until_listening_logging(child: &mut Child, logs: Option<Logs>) -> Option<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let log = std::env::var_os("TEST_LOG").is_some();
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if log {
                println!("{line}");
            }
            if let Some(logs) = &logs {
                logs.lock().unwrap().push(line.clone());
            }
            if let Some(sender) = &tx
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening"
            {
                let _ = sender.send(v["addr"].as_str().unwrap_or_default().to_owned());
                tx = None;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).ok()
}

/// The sum of the series of `name` whose labels include `labels`, in a
/// `/metrics` exposition (0 if none).
pub fn metric_sum(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The payment simulator's ledger entries of one order.
pub async fn ledger_of(sim: &str, order_id: impl std::fmt::Display) -> Vec<Value> {
    let body: Value = reqwest::get(format!("{sim}/v1/ledger/orders/{order_id}"))
        .await
        .expect("ledger")
        .json()
        .await
        .expect("ledger json");
    body.as_array().cloned().unwrap_or_default()
}

/// Serves `router` (a fake gateway) on a free port of this process; its
/// base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}
