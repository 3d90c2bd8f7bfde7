//! Saga instances and their history on SQLite: the SQL of `shared::saga`.
//! The single writer connection serializes claims, so no row locking is
//! needed; the revision check still fences a former lease holder. Times
//! the worker compares are Unix microseconds.

use sqlx::Sqlite;

use crate::shared::saga::SagaSql;

macro_rules! saga_columns {
    () => {
        "saga_id, saga_type, correlation_id, saga_data, revision, attempts, next_attempt_at, \
         lease_owner, lease_until, created_at, updated_at"
    };
}

impl SagaSql for Sqlite {
    const INSERT: &'static str = "INSERT INTO saga_instances (saga_id, saga_type, correlation_id, \
         current_step, saga_data, status, revision, attempts, next_attempt_at, lease_owner, \
         lease_until, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
    const UPDATE: &'static str = "UPDATE saga_instances SET current_step = ?3, saga_data = ?4, \
         status = ?5, revision = ?6, attempts = ?7, next_attempt_at = ?8, lease_owner = ?9, \
         lease_until = ?10, updated_at = ?11 \
         WHERE saga_id = ?1 AND revision = ?2";
    const INSERT_STEP: &'static str = "INSERT INTO saga_steps \
         (record_id, saga_id, step, phase, outcome, detail, attempt, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    const BY_CORRELATION: &'static str = concat!(
        "SELECT ",
        saga_columns!(),
        " FROM saga_instances WHERE correlation_id = ?1 AND saga_type = ?2"
    );
    const HISTORY: &'static str = "SELECT record_id, saga_id, step, phase, outcome, detail, \
         attempt, at FROM saga_steps WHERE saga_id = ?1 ORDER BY record_id";
    const LIST: &'static str = concat!(
        "SELECT ",
        saga_columns!(),
        " FROM saga_instances \
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR saga_id > ?2) \
         ORDER BY saga_id LIMIT ?3"
    );
    const CLAIM: &'static str = concat!(
        "UPDATE saga_instances SET lease_owner = ?1, lease_until = ?3, revision = revision + 1 \
         WHERE saga_id IN ( \
             SELECT saga_id FROM saga_instances \
             WHERE status IN ('running', 'compensating') AND next_attempt_at <= ?2 \
               AND (lease_until IS NULL OR lease_until < ?2) \
             ORDER BY next_attempt_at LIMIT ?4) \
         RETURNING ",
        saga_columns!()
    );
    const RELEASE: &'static str = "UPDATE saga_instances SET lease_owner = NULL, \
         lease_until = NULL, revision = revision + 1 \
         WHERE lease_owner = ?1 AND status IN ('running', 'compensating')";
    const COUNT: &'static str = "SELECT count(*) FROM saga_instances WHERE status = ?1";
}

/// A saga by id ($1).
pub(super) const BY_ID: &str = concat!(
    "SELECT ",
    saga_columns!(),
    " FROM saga_instances WHERE saga_id = ?1"
);
