//! The outbox relay's lease and cursor on SQLite (`outbox_relay`): the
//! twin of the PostgreSQL adapter, with the lease in milliseconds since
//! the epoch on this machine's clock (one machine shares one file).

use async_trait::async_trait;
use chrono::Utc;
use sqlx::Row;

use super::SqliteStore;
use crate::classify;
use commerce_app::ports::{FeedCursor, OutboxRelayStore, StoreError};

#[async_trait]
impl OutboxRelayStore for SqliteStore {
    async fn acquire_relay_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<FeedCursor>, StoreError> {
        let now = Utc::now();
        let row = sqlx::query(
            "INSERT INTO outbox_relay (name, owner, lease_until, updated_at) \
             VALUES (?1, ?2, ?3 + ?4, ?5) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             lease_until = excluded.lease_until, updated_at = excluded.updated_at \
             WHERE outbox_relay.owner = excluded.owner OR outbox_relay.lease_until < ?3 \
             RETURNING cursor_tx, cursor_position",
        )
        .bind(name)
        .bind(owner)
        .bind(now.timestamp_millis())
        .bind(ttl.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(classify)?;
        row.map(|r| {
            Ok(FeedCursor {
                tx: r.try_get("cursor_tx").map_err(classify)?,
                position: r.try_get("cursor_position").map_err(classify)?,
            })
        })
        .transpose()
    }

    async fn save_relay_cursor(
        &self,
        name: &str,
        owner: &str,
        cursor: FeedCursor,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox_relay SET cursor_tx = ?3, cursor_position = ?4, updated_at = ?5 \
             WHERE name = ?1 AND owner = ?2",
        )
        .bind(name)
        .bind(owner)
        .bind(cursor.tx)
        .bind(cursor.position)
        .bind(Utc::now())
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}
