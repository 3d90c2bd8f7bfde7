//! Saga instances and their history on SQLite, query for query the twin
//! of `store/postgres/saga.rs`. The single writer connection serializes
//! claims, so no row locking is needed; the revision check still fences a
//! former lease holder. Times the worker compares are Unix microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use crate::{classify, corrupt, is_unique_violation};
use commerce_app::ports::{InventoryChange, SagaStore, StoreError};
use commerce_app::saga::{SagaData, SagaInstance, SagaStepRecord, SagaWrite, status_str};
use commerce_domain::saga::SagaStatus;

const COLUMNS: &str = "saga_id, saga_type, correlation_id, saga_data, revision, attempts, \
     next_attempt_at, lease_owner, lease_until, created_at, updated_at";

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| corrupt("saga time", &value.to_string()))
}

fn saga_from_row(row: &SqliteRow) -> Result<SagaInstance, StoreError> {
    let Json(data): Json<SagaData> = row.try_get("saga_data").map_err(classify)?;
    let next: i64 = row.try_get("next_attempt_at").map_err(classify)?;
    let lease: Option<i64> = row.try_get("lease_until").map_err(classify)?;
    Ok(SagaInstance {
        saga_id: row.try_get("saga_id").map_err(classify)?,
        saga_type: row.try_get("saga_type").map_err(classify)?,
        correlation_id: row.try_get("correlation_id").map_err(classify)?,
        data,
        revision: row.try_get("revision").map_err(classify)?,
        attempts: row.try_get("attempts").map_err(classify)?,
        next_attempt_at: from_micros(next)?,
        lease_owner: row.try_get("lease_owner").map_err(classify)?,
        lease_until: lease.map(from_micros).transpose()?,
        created_at: row.try_get("created_at").map_err(classify)?,
        updated_at: row.try_get("updated_at").map_err(classify)?,
    })
}

/// Writes `write` inside the caller's transaction.
pub(super) async fn apply(tx: &mut SqliteConnection, write: &SagaWrite) -> Result<(), StoreError> {
    let s = &write.instance;
    let conflict = || StoreError::SagaConflict { saga_id: s.saga_id };
    match write.expected_revision {
        None => {
            let result = sqlx::query(
                "INSERT INTO saga_instances (saga_id, saga_type, correlation_id, current_step, \
                 saga_data, status, revision, attempts, next_attempt_at, lease_owner, lease_until, \
                 created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .bind(s.saga_id)
            .bind(&s.saga_type)
            .bind(s.correlation_id)
            .bind(s.current_step())
            .bind(Json(&s.data))
            .bind(status_str(s.status()))
            .bind(s.revision)
            .bind(s.attempts)
            .bind(micros(s.next_attempt_at))
            .bind(&s.lease_owner)
            .bind(s.lease_until.map(micros))
            .bind(s.created_at)
            .bind(s.updated_at)
            .execute(&mut *tx)
            .await;
            match result {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(conflict()),
                Err(e) => return Err(classify(e)),
            }
        }
        Some(expected) => {
            let updated = sqlx::query(
                "UPDATE saga_instances SET current_step = ?3, saga_data = ?4, status = ?5, \
                 revision = ?6, attempts = ?7, next_attempt_at = ?8, lease_owner = ?9, \
                 lease_until = ?10, updated_at = ?11 \
                 WHERE saga_id = ?1 AND revision = ?2",
            )
            .bind(s.saga_id)
            .bind(expected)
            .bind(s.current_step())
            .bind(Json(&s.data))
            .bind(status_str(s.status()))
            .bind(s.revision)
            .bind(s.attempts)
            .bind(micros(s.next_attempt_at))
            .bind(&s.lease_owner)
            .bind(s.lease_until.map(micros))
            .bind(s.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if updated.rows_affected() == 0 {
                return Err(conflict());
            }
        }
    }
    for h in &write.history {
        sqlx::query(
            "INSERT INTO saga_steps (record_id, saga_id, step, phase, outcome, detail, attempt, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(h.record_id)
        .bind(h.saga_id)
        .bind(&h.step)
        .bind(&h.phase)
        .bind(&h.outcome)
        .bind(&h.detail)
        .bind(h.attempt)
        .bind(h.at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

#[async_trait]
impl SagaStore for SqliteStore {
    async fn save_saga(
        &self,
        write: SagaWrite,
        inventory: Option<InventoryChange>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        apply(&mut tx, &write).await?;
        if let Some(change) = &inventory {
            super::inventory::apply(&mut tx, change, write.instance.updated_at).await?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn get_saga(&self, saga_id: Uuid) -> Result<Option<SagaInstance>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM saga_instances WHERE saga_id = ?1"
        )))
        .bind(saga_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(classify)?
        .as_ref()
        .map(saga_from_row)
        .transpose()
    }

    async fn saga_of(&self, correlation_id: Uuid) -> Result<Option<SagaInstance>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM saga_instances WHERE correlation_id = ?1"
        )))
        .bind(correlation_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(classify)?
        .as_ref()
        .map(saga_from_row)
        .transpose()
    }

    async fn saga_history(&self, saga_id: Uuid) -> Result<Vec<SagaStepRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT record_id, saga_id, step, phase, outcome, detail, attempt, at \
             FROM saga_steps WHERE saga_id = ?1 ORDER BY record_id",
        )
        .bind(saga_id)
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| {
                Ok(SagaStepRecord {
                    record_id: r.try_get("record_id").map_err(classify)?,
                    saga_id: r.try_get("saga_id").map_err(classify)?,
                    step: r.try_get("step").map_err(classify)?,
                    phase: r.try_get("phase").map_err(classify)?,
                    outcome: r.try_get("outcome").map_err(classify)?,
                    detail: r.try_get("detail").map_err(classify)?,
                    attempt: r.try_get("attempt").map_err(classify)?,
                    at: r.try_get("at").map_err(classify)?,
                })
            })
            .collect()
    }

    async fn list_sagas(
        &self,
        status: Option<SagaStatus>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<SagaInstance>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM saga_instances \
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR saga_id > ?2) \
             ORDER BY saga_id LIMIT ?3"
        )))
        .bind(status.map(status_str))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?
        .iter()
        .map(saga_from_row)
        .collect()
    }

    async fn claim_sagas(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SagaInstance>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE saga_instances SET lease_owner = ?1, lease_until = ?3, revision = revision + 1 \
             WHERE saga_id IN ( \
                 SELECT saga_id FROM saga_instances \
                 WHERE status IN ('running', 'compensating') AND next_attempt_at <= ?2 \
                   AND (lease_until IS NULL OR lease_until < ?2) \
                 ORDER BY next_attempt_at LIMIT ?4) \
             RETURNING {COLUMNS}"
        )))
        .bind(owner)
        .bind(micros(now))
        .bind(micros(lease_until))
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await
        .map_err(classify)?
        .iter()
        .map(saga_from_row)
        .collect()
    }

    async fn release_saga_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let released = sqlx::query(
            "UPDATE saga_instances SET lease_owner = NULL, lease_until = NULL, \
             revision = revision + 1 \
             WHERE lease_owner = ?1 AND status IN ('running', 'compensating')",
        )
        .bind(owner)
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(released.rows_affected())
    }

    async fn count_sagas(&self, status: SagaStatus) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT count(*) FROM saga_instances WHERE status = ?1")
            .bind(status_str(status))
            .fetch_one(&self.reader)
            .await
            .map_err(classify)
    }
}
