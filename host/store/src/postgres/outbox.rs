//! The outbox relay's lease and cursor on PostgreSQL (`outbox_relay`).
//! The lease runs on the database's clock, which every replica shares.

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::classify;
use commerce_app::ports::{FeedCursor, OutboxRelayStore, StoreError};

#[async_trait]
impl OutboxRelayStore for PgStore {
    async fn acquire_relay_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<FeedCursor>, StoreError> {
        // One statement creates the row or takes it over, so that two
        // replicas starting together cannot both win.
        let row = sqlx::query(
            "INSERT INTO outbox_relay (name, owner, lease_until, updated_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3), now()) \
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, \
             lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at \
             WHERE outbox_relay.owner = EXCLUDED.owner OR outbox_relay.lease_until < now() \
             RETURNING cursor_tx, cursor_position",
        )
        .bind(name)
        .bind(owner)
        .bind(ttl.as_secs_f64())
        .fetch_optional(self.pool())
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
            "UPDATE outbox_relay SET cursor_tx = $3, cursor_position = $4, updated_at = now() \
             WHERE name = $1 AND owner = $2",
        )
        .bind(name)
        .bind(owner)
        .bind(cursor.tx)
        .bind(cursor.position)
        .execute(self.pool())
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }
}
