//! Carts in Redis: one hash per customer, `{prefix}cart:{<customer>}`, with
//! a field per line (`i:<sku>` = quantity) and two of bookkeeping (`rev`,
//! the revision; `cur`, the currency of every line). The key's TTL is
//! renewed on every use, so an abandoned cart disappears by itself.
//!
//! Each write is one Lua script: the line limit and the one-currency rule
//! are checked and the write made atomically, with no WATCH (which would
//! need a connection of its own) and one round trip.
//!
//! Abandonment (a cart that expires without a checkout) is counted with a
//! sorted set, `{prefix}cart-activity:{carts}`: a member per customer with
//! a cart, scored with the time (Unix ms) from which the cart may have
//! expired. Writes put it there (reads slide the key's TTL but do not
//! touch the set: the key's TTL is the truth and the score only a hint of
//! when to look), and an emptied or checked-out cart leaves it. A sweeper
//! in every replica looks at members whose score is older than the TTL:
//! a cart whose key is gone is removed from the set by a script that
//! removes it only if its score is still the one read, so exactly one
//! replica counts it; a cart still alive (read since) is rescored to when
//! its key expires. A new cart replacing an expired one not swept yet
//! counts that one itself, in the same script that indexes the new one.
//! The set is a key of its own (one hash slot), separate from the carts'
//! keys, so no script spans two slots: it runs on Redis Cluster as is.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use uuid::Uuid;

use super::Redis;
use crate::{corrupt, parse_currency, parse_sku};
use commerce_app::ports::{CartStore, CartWrite, RemoveLine, SetLine, StoreError, StoredCart};
use commerce_domain::{Currency, Quantity, Sku};

const LINE_PREFIX: &str = "i:";
const REVISION: &str = "rev";
const CURRENCY: &str = "cur";
/// Hash fields that are not lines.
const BOOKKEEPING_FIELDS: usize = 2;

/// KEYS[1] cart; ARGV: line field, quantity, currency, max lines, revision,
/// ttl ms. Answers `{outcome, detail, fields}`: on `ok`, the cart's fields
/// as written (HGETALL's pairs), so showing the cart takes no second trip.
static SET_LINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HGET', KEYS[1], 'cur')
local present = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
local lines = 0
if cur then lines = redis.call('HLEN', KEYS[1]) - 2 end
local others = lines
if present then others = lines - 1 end
if others > 0 and cur ~= ARGV[3] then return {'currency', cur, {}} end
if (not present) and lines >= tonumber(ARGV[4]) then return {'full', '', {}} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'cur', ARGV[3], 'rev', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local created = 'new'
if cur then created = '' end
return {'ok', created, redis.call('HGETALL', KEYS[1])}
",
    )
});

/// KEYS[1] cart; ARGV: line field, revision, ttl ms. Answers `{outcome,
/// fields}`: 0 if there was no such line, 1 if removed (with the cart's
/// fields as written), 2 if removed and the cart with it.
static REMOVE_LINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {0, {}} end
if redis.call('HLEN', KEYS[1]) <= 2 then
  redis.call('DEL', KEYS[1])
  return {2, {}}
end
redis.call('HSET', KEYS[1], 'rev', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, redis.call('HGETALL', KEYS[1])}
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

/// KEYS[1] activity set; ARGV: customer, now (ms), '1' if the cart was
/// just created. Indexes the cart; 1 if it replaces an expired cart that
/// was never swept (abandoned: the caller counts it), else 0.
static INDEX_CART: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if old and ARGV[3] == '1' then return 1 end
return 0
",
    )
});

/// KEYS[1] activity set; ARGV: pairs of customer and the score it was
/// read with. Removes each member still at that score (its cart expired
/// and nobody wrote it since); returns how many this call removed.
static CLAIM_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
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

    /// The sorted set of carts by when they may have expired.
    pub fn activity_key(&self) -> String {
        self.redis.key("cart-activity", "carts")
    }

    /// After a write: indexes the cart; counts the expired cart it
    /// replaced, if that one was never swept. A failure here is logged:
    /// the write stands, only the cart's abandonment may go uncounted.
    async fn index(&self, customer_id: Uuid, created: bool) {
        let key = self.activity_key();
        let result: Result<i64, StoreError> = self
            .redis
            .run(|mut conn| async move {
                INDEX_CART
                    .key(&key)
                    .arg(customer_id.to_string())
                    .arg(now_millis())
                    .arg(if created { "1" } else { "0" })
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        match result {
            Ok(1) => metrics::counter!(commerce_app::cart::CARTS_ABANDONED).increment(1),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%customer_id, error = %e, "cart not indexed for abandonment")
            }
        }
    }

    /// After a cart is gone by a customer's doing (emptied, checked out):
    /// it is not abandoned.
    async fn unindex(&self, customer_id: Uuid) {
        let key = self.activity_key();
        let result: Result<i64, StoreError> = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("ZREM")
                    .arg(&key)
                    .arg(customer_id.to_string())
                    .query_async(&mut conn)
                    .await
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(%customer_id, error = %e, "cart not unindexed; it may be counted abandoned");
        }
    }
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
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

/// The cart a write's script answered with: it has the line just written
/// (or the ones a removal left), so it cannot be empty.
fn decode_written(fields: HashMap<String, String>) -> Result<StoredCart, StoreError> {
    decode(fields)?.ok_or_else(|| corrupt("cart after a write", "no lines"))
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
        let (outcome, detail, fields): (String, String, HashMap<String, String>) = self
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
            "ok" => {
                let created = detail == "new";
                let cart = decode_written(fields)?;
                self.index(customer_id, created).await;
                Ok(SetLine::Set { created, cart })
            }
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
    ) -> Result<RemoveLine, StoreError> {
        let key = self.key(customer_id);
        let field = format!("{LINE_PREFIX}{sku}");
        let (removed, fields): (i64, HashMap<String, String>) = self
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
        match removed {
            0 => Ok(RemoveLine::Absent),
            2 => {
                self.unindex(customer_id).await;
                Ok(RemoveLine::Removed(None))
            }
            _ => {
                let cart = decode_written(fields)?;
                self.index(customer_id, false).await;
                Ok(RemoveLine::Removed(Some(cart)))
            }
        }
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
        if deleted == 1 {
            self.unindex(customer_id).await;
        }
        Ok(deleted == 1)
    }

    async fn sweep_expired_carts(&self, ttl: Duration, limit: usize) -> Result<u64, StoreError> {
        let key = self.activity_key();
        let ttl = millis(ttl) as i64;
        let now = now_millis();
        // Member, score, member, score, ...
        let due: Vec<String> = {
            let key = key.clone();
            self.redis
                .run(|mut conn| async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg("-inf")
                        .arg(now - ttl)
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .query_async(&mut conn)
                        .await
                })
                .await?
        };
        let due: Vec<(&String, f64)> = due
            .chunks_exact(2)
            .filter_map(|pair| Some((&pair[0], pair[1].parse::<f64>().ok()?)))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        // Where each cart stands: -2 gone (expired), else ms left. The
        // carts' keys lie on many slots: one command each on a cluster.
        let ttls = due
            .iter()
            .map(|(member, _)| match Uuid::parse_str(member) {
                Ok(customer) => redis::cmd("PTTL").arg(self.key(customer)).clone(),
                // Not ours: treat as gone, so it leaves the set.
                Err(_) => redis::cmd("PTTL")
                    .arg(format!("{}-not-a-cart", key))
                    .clone(),
            })
            .collect();
        let left: Vec<i64> = self.redis.run_each(ttls).await?;
        let mut claim = CLAIM_EXPIRED.prepare_invoke();
        claim.key(&key);
        let mut expired = 0;
        let mut rescore = redis::pipe();
        let mut alive = 0;
        for ((member, score), left) in due.iter().zip(left) {
            if left == -2 {
                claim.arg(member).arg(*score);
                expired += 1;
            } else {
                // Read since it was indexed: due when its key expires. GT
                // keeps a newer score a concurrent write set.
                let due_at = if left >= 0 { now + left - ttl } else { now };
                rescore
                    .cmd("ZADD")
                    .arg(&key)
                    .arg("XX")
                    .arg("GT")
                    .arg(due_at)
                    .arg(member)
                    .ignore();
                alive += 1;
            }
        }
        if alive > 0 {
            self.redis
                .run(|mut conn| async move { rescore.query_async::<()>(&mut conn).await })
                .await?;
        }
        if expired == 0 {
            return Ok(0);
        }
        let claimed: i64 = self
            .redis
            .run(|mut conn| async move { claim.invoke_async(&mut conn).await })
            .await?;
        Ok(claimed.max(0) as u64)
    }
}
