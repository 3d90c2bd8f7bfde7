//! Redis: the connection every Redis-backed adapter shares (carts, the
//! availability cache and the event stream), to one Redis or to a Redis
//! Cluster.
//!
//! Two promises hold for every call made through [`Redis::run`]:
//! - it is bounded in time: a connection attempt and a response each time
//!   out after `RedisConfig::timeout`, and the whole call after twice that,
//!   so a dead or unreachable Redis turns into a quick
//!   `StoreError::Unavailable` (a 503), never a hung request;
//! - Redis need not be up: [`Redis::connect`] connects lazily, and the
//!   connection manager (or the cluster connection, which also follows
//!   slots as they move) reconnects on the next call after a failure, so
//!   the service starts without Redis and recovers when it comes back.
//!
//! Keys are `{prefix}{kind}:{<owner id>}`. The prefix lets several
//! deployments (or tests) share one Redis; the owner id sits in a hash tag,
//! so that all the keys of one customer land on one Redis Cluster slot and
//! every script touches keys of one slot only. The event stream is one key,
//! `{prefix}commerce.events`. Commands on the keys of several owners (the
//! stock of several SKUs, the carts due for a sweep) go through
//! [`Redis::run_each`]: one pipeline on a single Redis, one command per key
//! on a cluster, where a pipeline may not span slots.

pub mod cart;
pub mod stock;
pub mod stream;

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError, RedisFuture, Value};

use commerce_app::ports::StoreError;

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://`); for a
    /// Redis Cluster, one or more of its nodes separated by commas
    /// (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`): the others are
    /// found from them.
    pub url: String,
    /// Talk to a Redis Cluster. Implied when `url` lists several nodes.
    pub cluster: bool,
    /// Prepended to every key, e.g. `commerce:`. May not hold `{` or `}`
    /// (it would take over the keys' hash tags).
    pub prefix: String,
    /// Bound on one connection attempt and on one response.
    pub timeout: Duration,
}

impl RedisConfig {
    /// The nodes `url` lists.
    fn nodes(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether this is a Redis Cluster: said so, or several nodes listed.
    pub fn is_cluster(&self) -> bool {
        self.cluster || self.nodes().len() > 1
    }
}

/// One multiplexed connection: to one Redis, or to every node of a
/// cluster (each command routed to its key's node).
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// A cheap-to-clone handle on one multiplexed, self-healing connection.
#[derive(Clone)]
pub struct Redis {
    conn: Connection,
    prefix: Arc<str>,
    timeout: Duration,
}

impl Redis {
    /// Prepares the connection without opening it (that happens on first
    /// use): fails only on a malformed URL or prefix, never because Redis
    /// is down. Must be called within a Tokio runtime.
    pub fn connect(config: &RedisConfig) -> anyhow::Result<Redis> {
        if config.prefix.contains(['{', '}']) {
            anyhow::bail!(
                "the Redis key prefix {:?} holds a brace: it would become every key's hash tag",
                config.prefix
            );
        }
        let timeout = config.timeout.max(Duration::from_millis(1));
        let nodes = config.nodes();
        let conn = if config.is_cluster() {
            anyhow::ensure!(!nodes.is_empty(), "the Redis Cluster URL lists no node");
            // One quick retry, as below; the cluster connection also
            // refreshes its slot map when a node answers MOVED.
            let client = ClusterClientBuilder::new(nodes)
                .retries(1)
                .min_retry_wait(20)
                .max_retry_wait(100)
                .build()
                .context("parsing the Redis Cluster URLs")?;
            let cluster = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            Connection::Cluster(client.get_pending_async_connection_with_config(cluster))
        } else {
            let client = redis::Client::open(config.url.trim()).context("parsing the Redis URL")?;
            // One quick retry: a request that finds Redis gone should fail
            // fast, and the next request tries again anyway.
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(100));
            Connection::Single(
                ConnectionManager::new_lazy_with_config(client, manager)
                    .context("setting up the Redis connection")?,
            )
        };
        Ok(Redis {
            conn,
            prefix: config.prefix.as_str().into(),
            timeout,
        })
    }

    /// Whether this talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Connection::Cluster(_))
    }

    /// The key of `kind` owned by `owner`: `{prefix}{kind}:{<owner>}`.
    pub fn key(&self, kind: &str, owner: impl Display) -> String {
        format!("{}{kind}:{{{owner}}}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs one Redis operation on a clone of the connection, within the
    /// time bound, sorting its failure into a `StoreError`.
    pub async fn run<T, F>(&self, op: impl FnOnce(Connection) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let deadline = self.timeout * 2;
        match tokio::time::timeout(deadline, op(self.conn.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
                "Redis did not answer within {deadline:?}"
            ))),
        }
    }

    /// Runs commands that each touch keys of one slot, independently of
    /// one another, and answers their replies in order: one pipeline (one
    /// round trip) on a single Redis; on a cluster, where a pipeline may
    /// not span slots, each command on its own, all at once (the cluster
    /// connection pipelines those bound for one node).
    pub async fn run_each<T>(&self, cmds: Vec<Cmd>) -> Result<Vec<T>, StoreError>
    where
        T: FromRedisValue + Send + 'static,
    {
        if cmds.is_empty() {
            return Ok(vec![]);
        }
        self.run(|conn| async move {
            match conn {
                Connection::Single(mut conn) => {
                    let mut pipe = redis::pipe();
                    for cmd in cmds {
                        pipe.add_command(cmd);
                    }
                    pipe.query_async(&mut conn).await
                }
                Connection::Cluster(conn) => {
                    futures_util::future::try_join_all(cmds.into_iter().map(|cmd| {
                        let mut conn = conn.clone();
                        async move { cmd.query_async::<T>(&mut conn).await }
                    }))
                    .await
                }
            }
        })
        .await
    }

    /// Deletes every key under this handle's prefix and answers how many
    /// (for benchmarks and tests that clean up after themselves; SCAN, so
    /// Redis keeps serving meanwhile). On a cluster, each primary is
    /// scanned (its address from `CLUSTER NODES`) and each key deleted on
    /// its own, since one DEL may not span slots.
    pub async fn delete_keys(&self) -> Result<u64, StoreError> {
        let pattern = format!("{}*", self.prefix);
        let nodes: Vec<Option<(String, u16)>> = match &self.conn {
            Connection::Single(_) => vec![None],
            Connection::Cluster(_) => {
                let listing: String = self
                    .run(|mut conn| async move {
                        redis::cmd("CLUSTER")
                            .arg("NODES")
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
                primaries(&listing).into_iter().map(Some).collect()
            }
        };
        let mut deleted = 0;
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let node = node.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .run(|conn| async move {
                        match (conn, node) {
                            (Connection::Cluster(mut conn), Some((host, port))) => {
                                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                                let routing =
                                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                        host,
                                        port,
                                    });
                                let reply = conn.route_command(scan, routing).await?;
                                Ok(redis::from_redis_value(reply)?)
                            }
                            (mut conn, _) => scan.query_async(&mut conn).await,
                        }
                    })
                    .await?;
                let dels = keys
                    .iter()
                    .map(|k| redis::cmd("DEL").arg(k).clone())
                    .collect();
                let counts: Vec<u64> = self.run_each(dels).await?;
                deleted += counts.iter().sum::<u64>();
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    /// Checks that Redis answers (readiness): on a cluster, the nodes
    /// serving every slot (`CLUSTER INFO` says `cluster_state:ok`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        if self.is_cluster() {
            let info: String = self
                .run(|mut conn| async move {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(StoreError::Unavailable(anyhow::anyhow!(
                    "the Redis Cluster is not serving all its slots (cluster_state is not ok)"
                )));
            }
            return Ok(());
        }
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(drop)
    }
}

/// The primaries' addresses in a `CLUSTER NODES` listing (lines of
/// `<id> <ip:port@cport[,hostname]> <flags> ...`).
fn primaries(listing: &str) -> Vec<(String, u16)> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let host_port = address.split(['@', ',']).next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Connection trouble is `Unavailable` (503, retry later); anything else
/// (a script error, a reply of the wrong type) is a bug: `Unexpected`.
fn classify(e: RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.is_cluster_error()
        || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
    {
        StoreError::Unavailable(anyhow::Error::new(e).context("Redis unavailable"))
    } else {
        StoreError::Unexpected(anyhow::Error::new(e).context("Redis"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_carry_the_prefix_and_a_hash_tag() {
        let redis = Redis::connect(&RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            cluster: false,
            prefix: "shop:".into(),
            timeout: Duration::from_millis(100),
        })
        .expect("connecting is lazy: a down Redis is no error");
        let id = uuid::Uuid::nil();
        assert_eq!(
            redis.key("cart", id),
            "shop:cart:{00000000-0000-0000-0000-000000000000}"
        );
    }

    #[tokio::test]
    async fn a_down_redis_fails_fast_as_unavailable() {
        let redis = Redis::connect(&RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            cluster: false,
            prefix: String::new(),
            timeout: Duration::from_millis(200),
        })
        .unwrap();
        let started = std::time::Instant::now();
        let err = redis.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_malformed_url_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(
            Redis::connect(&RedisConfig {
                url: "http://nope".into(),
                cluster: false,
                prefix: String::new(),
                timeout: Duration::from_millis(100),
            })
            .is_err()
        );
    }

    #[tokio::test]
    async fn several_nodes_mean_a_cluster_and_a_down_one_fails_fast() {
        let config = RedisConfig {
            url: "redis://127.0.0.1:1, redis://127.0.0.1:2".into(),
            cluster: false,
            prefix: "shop:".into(),
            timeout: Duration::from_millis(200),
        };
        assert!(config.is_cluster());
        let redis = Redis::connect(&config).expect("connecting is lazy");
        assert!(redis.is_cluster());
        let started = std::time::Instant::now();
        let err = redis.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let err = redis
            .run_each::<Option<String>>(vec![redis::cmd("GET").arg("a").clone()])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_prefix_with_a_brace_is_refused() {
        let err = Redis::connect(&RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            cluster: false,
            prefix: "shop{eu}:".into(),
            timeout: Duration::from_millis(100),
        })
        .err()
        .expect("refused");
        assert!(err.to_string().contains("hash tag"), "{err}");
    }

    #[test]
    fn the_primaries_are_read_off_cluster_nodes() {
        let listing = "\
a1 127.0.0.1:7002@17002 master - 0 1 3 connected 10923-16383
b2 127.0.0.1:7001@17001,node-b master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7000@17000 myself,master - 0 1 1 connected 0-5460
d4 127.0.0.1:7003@17003 slave c3 0 1 1 connected
e5 127.0.0.1:7004@17004 master,fail - 0 1 4 disconnected
";
        assert_eq!(
            primaries(listing),
            [
                ("127.0.0.1".to_owned(), 7002),
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7000)
            ]
        );
    }
}
