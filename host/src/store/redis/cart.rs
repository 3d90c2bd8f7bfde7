//! Carts in Redis: one hash per customer, `{prefix}cart:{<customer>}`, with
//! a field per line (`i:<sku>` = quantity) and two of bookkeeping (`rev`,
//! the revision; `cur`, the currency of every line). The key's TTL is
//! renewed on every use, so an abandoned cart disappears by itself.
//!
//! Each write is one Lua script: the line limit and the one-currency rule
//! are checked and the write made atomically, with no WATCH (which would
//! need a connection of its own) and one round trip.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use uuid::Uuid;

use super::Redis;
use crate::app::ports::{CartStore, CartWrite, SetLine, StoreError, StoredCart};
use crate::domain::{Currency, Quantity, Sku};
use crate::store::{corrupt, parse_currency, parse_sku};

const LINE_PREFIX: &str = "i:";
const REVISION: &str = "rev";
const CURRENCY: &str = "cur";
/// Hash fields that are not lines.
const BOOKKEEPING_FIELDS: usize = 2;

/// KEYS[1] cart; ARGV: line field, quantity, currency, max lines, revision, ttl ms.
static SET_LINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HGET', KEYS[1], 'cur')
local present = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
local lines = 0
if cur then lines = redis.call('HLEN', KEYS[1]) - 2 end
local others = lines
if present then others = lines - 1 end
if others > 0 and cur ~= ARGV[3] then return {'currency', cur} end
if (not present) and lines >= tonumber(ARGV[4]) then return {'full', ''} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'cur', ARGV[3], 'rev', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {'ok', ''}
",
    )
});

/// KEYS[1] cart; ARGV: line field, revision, ttl ms. 1 if removed.
static REMOVE_LINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[1]) <= 2 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'rev', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
",
    )
});

/// KEYS[1] cart; ARGV[1] revision, or '' for any. 1 if deleted.
static DELETE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'rev') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The cart adapter over a shared [`Redis`] handle.
#[derive(Clone)]
pub struct RedisCarts {
    redis: Redis,
}

impl RedisCarts {
    pub fn new(redis: Redis) -> Self {
        RedisCarts { redis }
    }

    /// The key of a customer's cart.
    pub fn key(&self, customer_id: Uuid) -> String {
        self.redis.key("cart", customer_id)
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn decode(fields: HashMap<String, String>) -> Result<Option<StoredCart>, StoreError> {
    if fields.len() <= BOOKKEEPING_FIELDS {
        return Ok(None);
    }
    let field = |name: &str| fields.get(name).ok_or_else(|| corrupt("cart field", name));
    let revision = field(REVISION)?;
    let revision = Uuid::parse_str(revision).map_err(|_| corrupt("cart revision", revision))?;
    let currency = parse_currency(field(CURRENCY)?)?;
    let mut lines = fields
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix(LINE_PREFIX)?, value)))
        .map(|(sku, quantity)| {
            let q = quantity
                .parse::<i64>()
                .ok()
                .and_then(|q| Quantity::parse(q).ok())
                .ok_or_else(|| corrupt("cart quantity", quantity))?;
            Ok((parse_sku(sku)?, q))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(StoredCart {
        lines,
        currency,
        revision,
    }))
}

#[async_trait]
impl CartStore for RedisCarts {
    fn cart_backend(&self) -> &'static str {
        "redis"
    }

    async fn ping_carts(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }

    async fn load_cart(
        &self,
        customer_id: Uuid,
        ttl: Duration,
    ) -> Result<Option<StoredCart>, StoreError> {
        let key = self.key(customer_id);
        let (fields, _): (HashMap<String, String>, i64) = self
            .redis
            .run(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .hgetall(&key)
                    .pexpire(&key, millis(ttl) as i64)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        decode(fields)
    }

    async fn set_cart_line(
        &self,
        customer_id: Uuid,
        (sku, quantity, currency): (&Sku, Quantity, Currency),
        max_lines: usize,
        write: CartWrite,
    ) -> Result<SetLine, StoreError> {
        let key = self.key(customer_id);
        let field = format!("{LINE_PREFIX}{sku}");
        let (outcome, detail): (String, String) = self
            .redis
            .run(|mut conn| async move {
                SET_LINE
                    .key(&key)
                    .arg(&field)
                    .arg(quantity.get())
                    .arg(currency.code())
                    .arg(max_lines)
                    .arg(write.revision.to_string())
                    .arg(millis(write.ttl))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        match outcome.as_str() {
            "ok" => Ok(SetLine::Set),
            "full" => Ok(SetLine::TooManyLines),
            "currency" => Ok(SetLine::OtherCurrency(parse_currency(&detail)?)),
            other => Err(corrupt("cart script outcome", other)),
        }
    }

    async fn remove_cart_line(
        &self,
        customer_id: Uuid,
        sku: &Sku,
        write: CartWrite,
    ) -> Result<bool, StoreError> {
        let key = self.key(customer_id);
        let field = format!("{LINE_PREFIX}{sku}");
        let removed: i64 = self
            .redis
            .run(|mut conn| async move {
                REMOVE_LINE
                    .key(&key)
                    .arg(&field)
                    .arg(write.revision.to_string())
                    .arg(millis(write.ttl))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(removed == 1)
    }

    async fn delete_cart(
        &self,
        customer_id: Uuid,
        revision: Option<Uuid>,
    ) -> Result<bool, StoreError> {
        let key = self.key(customer_id);
        let revision = revision.map(|r| r.to_string()).unwrap_or_default();
        let deleted: i64 = self
            .redis
            .run(|mut conn| async move {
                DELETE_IF
                    .key(&key)
                    .arg(&revision)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(deleted == 1)
    }
}
