//! The stock cache on Redis: one hash per product,
//! `{prefix}stock:{<sku>}` = { v: version, p: the product as JSON }, with
//! an expiry so that entries nobody reads fade away.
//!
//! Writes go through a script that keeps the newer version: two refreshes
//! racing each other cannot leave the older numbers behind. Each key is
//! written on its own (no multi-key script) so that the same code runs on
//! Redis Cluster, where keys of different SKUs live on different slots.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use commerce_app::ports::{Product, StockCache, StoreError};
use commerce_domain::{Currency, Sku};

/// Cached entries expire after an hour without a refresh.
const TTL_MS: u64 = 60 * 60 * 1000;

/// Keeps the entry with the higher version (ties: the new one).
const PUT_IF_NEWER: &str = r#"
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'p', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

#[derive(Serialize, Deserialize)]
struct Cached {
    sku: String,
    name: String,
    #[serde(with = "rust_decimal::serde::str")]
    unit_price: Decimal,
    currency: String,
    on_hand: i64,
    reserved: i64,
    version: i64,
    updated_at: DateTime<Utc>,
}

impl From<&Product> for Cached {
    fn from(p: &Product) -> Self {
        Cached {
            sku: p.sku.to_string(),
            name: p.name.clone(),
            unit_price: p.unit_price,
            currency: p.currency.code().to_owned(),
            on_hand: p.on_hand,
            reserved: p.reserved,
            version: p.version,
            updated_at: p.updated_at,
        }
    }
}

impl Cached {
    fn into_product(self) -> Option<Product> {
        Some(Product {
            sku: Sku::parse(&self.sku).ok()?,
            name: self.name,
            unit_price: self.unit_price,
            currency: Currency::parse(&self.currency).ok()?,
            on_hand: self.on_hand,
            reserved: self.reserved,
            version: self.version,
            updated_at: self.updated_at,
        })
    }
}

/// Whether `e` is Redis saying it does not know the script (NOSCRIPT).
fn is_no_script(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<redis::RedisError>())
        .any(|e| e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}

/// The Redis stock cache.
#[derive(Clone)]
pub struct RedisStockCache {
    redis: super::Redis,
    script: redis::Script,
}

impl RedisStockCache {
    pub fn new(redis: super::Redis) -> Self {
        RedisStockCache {
            redis,
            script: redis::Script::new(PUT_IF_NEWER),
        }
    }

    fn key(&self, sku: &Sku) -> String {
        self.redis.key("stock", sku)
    }
}

#[async_trait]
impl StockCache for RedisStockCache {
    async fn get_many(&self, skus: &[Sku]) -> Result<Vec<Option<Product>>, StoreError> {
        let cmds = skus
            .iter()
            .map(|sku| redis::cmd("HGET").arg(self.key(sku)).arg("p").clone())
            .collect();
        let values: Vec<Option<String>> = self.redis.run_each(cmds).await?;
        Ok(values
            .into_iter()
            .map(|v| {
                v.and_then(|json| serde_json::from_str::<Cached>(&json).ok())
                    .and_then(Cached::into_product)
            })
            .collect())
    }

    /// One round trip for all of `products` (on a cluster, one per key, at
    /// once): the script's EVALSHA per key, loading the script first if
    /// Redis lost it (on a cluster, SCRIPT LOAD goes to every primary).
    async fn put(&self, products: &[Product]) -> Result<(), StoreError> {
        if products.is_empty() {
            return Ok(());
        }
        let mut cmds = Vec::with_capacity(products.len());
        for p in products {
            let json = serde_json::to_string(&Cached::from(p))
                .map_err(|e| StoreError::Unexpected(e.into()))?;
            cmds.push(
                redis::cmd("EVALSHA")
                    .arg(self.script.get_hash())
                    .arg(1)
                    .arg(self.key(&p.sku))
                    .arg(p.version)
                    .arg(json)
                    .arg(TTL_MS)
                    .clone(),
            );
        }
        match self.redis.run_each::<redis::Value>(cmds.clone()).await {
            Err(StoreError::Unexpected(e)) if is_no_script(&e) => {
                let script = self.script.clone();
                self.redis
                    .run(|mut conn| async move {
                        script.prepare_invoke().load_async(&mut conn).await
                    })
                    .await?;
                self.redis.run_each::<redis::Value>(cmds).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}
