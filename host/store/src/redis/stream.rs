//! The event stream on Redis: the outbox relay appends every event to the
//! stream `{prefix}commerce.events`, one entry per event, in feed order.
//!
//! Entry fields (all strings): `event_id` (for consumers to deduplicate),
//! `aggregate_id`, `aggregate_type`, `event_type`, `schema_version`,
//! `version` (in its aggregate), `position`, `cursor` (its place in the
//! feed, as `GET /v1/events` shows it), `data` (the event as JSON) and
//! `recorded_at` (RFC 3339).
//!
//! Appends go through a script that reads the newest entry's cursor and
//! appends only events after it: the stream itself refuses repeats, so a
//! relay that publishes a page twice (a crash before it saved its cursor,
//! a lease lost mid-page) leaves each event on it once. The stream is one
//! key, so the script is legal on Redis Cluster. Cursors are compared as
//! Lua numbers (doubles), exact up to 2^53: far beyond any transaction id
//! or position.
//!
//! Each append trims the stream to its configured length (`MAXLEN`, the
//! oldest entries first): the stream is a window on the feed, which
//! `GET /v1/events` serves whole.

use async_trait::async_trait;
use chrono::SecondsFormat;

use commerce_app::ports::{EventPublisher, FeedCursor, FeedEvent, StoreError};

/// The stream's name, after the key prefix.
pub const STREAM: &str = "commerce.events";

/// Fields per entry (each a name and a value in the script's arguments).
const FIELDS: usize = 10;

/// ARGV: the stream's length to keep, the number of arguments per
/// entry's fields, then per event its cursor (tx, position) and its
/// field/value pairs. Returns how many entries were appended.
const APPEND_AFTER_NEWEST: &str = r#"
local function cursor_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'cursor' then
      local tx, pos = string.match(fields[i + 1], '^(%d+)-(%d+)$')
      if tx then return tonumber(tx), tonumber(pos) end
    end
  end
  return -1, -1
end
local last_tx, last_pos = -1, -1
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest > 0 then
  last_tx, last_pos = cursor_of(newest[1][2])
end
local max_len = ARGV[1]
local width = tonumber(ARGV[2])
local appended = 0
local i = 3
while i <= #ARGV do
  local tx, pos = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if tx > last_tx or (tx == last_tx and pos > last_pos) then
    redis.call('XADD', KEYS[1], 'MAXLEN', max_len, '*', unpack(ARGV, i + 2, i + 1 + width))
    last_tx, last_pos = tx, pos
    appended = appended + 1
  end
  i = i + 2 + width
end
return appended
"#;

/// The Redis stream publisher.
#[derive(Clone)]
pub struct RedisEventStream {
    redis: super::Redis,
    script: redis::Script,
    key: String,
    max_len: u64,
}

impl RedisEventStream {
    /// The stream `{prefix}commerce.events`, keeping its newest `max_len`
    /// entries.
    pub fn new(redis: super::Redis, max_len: u64) -> Self {
        let key = format!("{}{STREAM}", redis.prefix());
        RedisEventStream {
            redis,
            script: redis::Script::new(APPEND_AFTER_NEWEST),
            key,
            max_len: max_len.max(1),
        }
    }

    /// The stream's key: `{prefix}commerce.events`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[async_trait]
impl EventPublisher for RedisEventStream {
    async fn last_published(&self) -> Result<Option<FeedCursor>, StoreError> {
        let key = self.key.clone();
        let newest: Vec<(String, Vec<String>)> = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let Some((id, fields)) = newest.into_iter().next() else {
            return Ok(None);
        };
        let cursor = fields
            .chunks(2)
            .find(|pair| pair[0] == "cursor")
            .and_then(|pair| pair.get(1))
            .and_then(|text| FeedCursor::parse(text))
            .ok_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!(
                    "the newest entry {id} of {} has no cursor",
                    self.key
                ))
            })?;
        Ok(Some(cursor))
    }

    async fn publish(&self, events: &[FeedEvent]) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut call = self.script.key(&self.key);
        call.arg(self.max_len).arg(FIELDS * 2);
        for FeedEvent { cursor, event } in events {
            let data =
                serde_json::to_string(&event.data).map_err(|e| StoreError::Unexpected(e.into()))?;
            call.arg(cursor.tx)
                .arg(cursor.position)
                .arg("event_id")
                .arg(event.event_id.to_string())
                .arg("aggregate_id")
                .arg(event.aggregate_id.to_string())
                .arg("aggregate_type")
                .arg(&event.aggregate_type)
                .arg("event_type")
                .arg(&event.event_type)
                .arg("schema_version")
                .arg(event.schema_version)
                .arg("version")
                .arg(event.version)
                .arg("position")
                .arg(event.position)
                .arg("cursor")
                .arg(cursor.to_string())
                .arg("data")
                .arg(data)
                .arg("recorded_at")
                .arg(
                    event
                        .recorded_at
                        .to_rfc3339_opts(SecondsFormat::Micros, true),
                );
        }
        let appended: i64 = self
            .redis
            .run(|mut conn| async move { call.invoke_async(&mut conn).await })
            .await?;
        Ok(appended as usize)
    }
}
