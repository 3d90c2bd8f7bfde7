//! Redis: the connection every Redis-backed adapter shares (carts, the
//! availability cache and the event stream).
//!
//! Two promises hold for every call made through [`Redis::run`]:
//! - it is bounded in time: a connection attempt and a response each time
//!   out after `RedisConfig::timeout`, and the whole call after twice that,
//!   so a dead or unreachable Redis turns into a quick
//!   `StoreError::Unavailable` (a 503), never a hung request;
//! - Redis need not be up: [`Redis::connect`] connects lazily, and the
//!   connection manager reconnects on the next call after a failure, so the
//!   service starts without Redis and recovers when it comes back.
//!
//! Keys are `{prefix}{kind}:{<owner id>}`. The prefix lets several
//! deployments (or tests) share one Redis; the owner id sits in a hash tag,
//! so that all the keys of one customer land on one Redis Cluster slot and
//! multi-key scripts stay legal there. The event stream is one key,
//! `{prefix}commerce.events`.

pub mod cart;
pub mod stock;
pub mod stream;

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::RedisError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use commerce_app::ports::StoreError;

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://`).
    pub url: String,
    /// Prepended to every key, e.g. `commerce:`.
    pub prefix: String,
    /// Bound on one connection attempt and on one response.
    pub timeout: Duration,
}

/// A cheap-to-clone handle on one multiplexed, self-healing connection.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl Redis {
    /// Prepares the connection without opening it (that happens on first
    /// use): fails only on a malformed URL, never because Redis is down.
    /// Must be called within a Tokio runtime.
    pub fn connect(config: &RedisConfig) -> anyhow::Result<Redis> {
        let client = redis::Client::open(config.url.as_str()).context("parsing the Redis URL")?;
        let timeout = config.timeout.max(Duration::from_millis(1));
        // One quick retry: a request that finds Redis gone should fail
        // fast, and the next request tries again anyway.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .context("setting up the Redis connection")?;
        Ok(Redis {
            conn,
            prefix: config.prefix.as_str().into(),
            timeout,
        })
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
    pub async fn run<T, F>(&self, op: impl FnOnce(ConnectionManager) -> F) -> Result<T, StoreError>
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

    /// Checks that Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(drop)
    }
}

/// Connection trouble is `Unavailable` (503, retry later); anything else
/// (a script error, a reply of the wrong type) is a bug: `Unexpected`.
fn classify(e: RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
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
                prefix: String::new(),
                timeout: Duration::from_millis(100),
            })
            .is_err()
        );
    }
}
