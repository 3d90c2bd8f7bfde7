//! Saga instances and their history, once for both backends: a write is
//! an `INSERT` that the one-saga-per-order constraint guards, or a
//! conditional `UPDATE` on the revision the writer read (a former lease
//! holder is fenced off either way), with its history, inside the caller's
//! transaction. The backends give the SQL ([`SagaSql`]): PostgreSQL claims
//! with `FOR UPDATE SKIP LOCKED`, SQLite's single writer needs no lock;
//! worker times are [`Micros`].

use chrono::{DateTime, Utc};
use sqlx::Pool;
use sqlx::types::Json;
use uuid::Uuid;

use super::columns::Micros;
use super::rows::{SagaRow, StepRow};
use super::{Arg, Backend, execute, fetch_all, fetch_one, fetch_optional};
use crate::{classify, is_unique_violation};
use commerce_app::ports::StoreError;
use commerce_app::saga::{SagaInstance, SagaStepRecord, SagaWrite, status_str};
use commerce_domain::saga::SagaStatus;

/// The statements of the saga store, in the backend's SQL.
pub(crate) trait SagaSql {
    /// A new instance ($1 saga_id .. $13 updated_at, in column order).
    const INSERT: &'static str;
    /// The instance $1 at revision $2 gets the state $3 .. $11.
    const UPDATE: &'static str;
    const INSERT_STEP: &'static str;
    const BY_CORRELATION: &'static str;
    const HISTORY: &'static str;
    /// Page by optional status $1, after optional id $2, limit $3.
    const LIST: &'static str;
    /// Lease (owner $1, due at $2, until $3) up to $4 due, unleased sagas.
    const CLAIM: &'static str;
    const RELEASE: &'static str;
    const COUNT: &'static str;
}

/// Writes `write` inside the caller's transaction.
pub(crate) async fn apply<DB: Backend + SagaSql>(
    conn: &mut DB::Connection,
    write: &SagaWrite,
) -> Result<(), StoreError> {
    let s = &write.instance;
    let conflict = || StoreError::SagaConflict { saga_id: s.saga_id };
    match write.expected_revision {
        None => {
            let result = sqlx::query(DB::INSERT)
                .arg(s.saga_id)
                .arg(s.saga_type.clone())
                .arg(s.correlation_id)
                .arg(s.current_step())
                .arg(Json(&s.data))
                .arg(status_str(s.status()))
                .arg(s.revision)
                .arg(s.attempts)
                .arg(Micros(s.next_attempt_at))
                .arg(s.lease_owner.clone())
                .arg(s.lease_until.map(Micros))
                .arg(s.created_at)
                .arg(s.updated_at)
                .execute(DB::on(&mut *conn))
                .await;
            match result {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(conflict()),
                Err(e) => return Err(classify(e)),
            }
        }
        Some(expected) => {
            let statement = sqlx::query(DB::UPDATE)
                .arg(s.saga_id)
                .arg(expected)
                .arg(s.current_step())
                .arg(Json(&s.data))
                .arg(status_str(s.status()))
                .arg(s.revision)
                .arg(s.attempts)
                .arg(Micros(s.next_attempt_at))
                .arg(s.lease_owner.clone())
                .arg(s.lease_until.map(Micros))
                .arg(s.updated_at);
            if execute(statement, DB::on(&mut *conn)).await? == 0 {
                return Err(conflict());
            }
        }
    }
    for h in &write.history {
        let statement = sqlx::query(DB::INSERT_STEP)
            .arg(h.record_id)
            .arg(h.saga_id)
            .arg(h.step.clone())
            .arg(h.phase.clone())
            .arg(h.outcome.clone())
            .arg(h.detail.clone())
            .arg(h.attempt)
            .arg(h.at);
        execute(statement, DB::on(&mut *conn)).await?;
    }
    Ok(())
}

/// `SagaStore::saga_of`.
pub(crate) async fn saga_of<DB: Backend + SagaSql>(
    reader: &Pool<DB>,
    saga_type: &str,
    correlation_id: Uuid,
) -> Result<Option<SagaInstance>, StoreError> {
    let statement = sqlx::query(DB::BY_CORRELATION)
        .arg(correlation_id)
        .arg(saga_type.to_owned());
    fetch_optional::<DB, SagaRow, _>(statement, DB::pool(reader)).await
}

/// `SagaStore::saga_history`.
pub(crate) async fn history<DB: Backend + SagaSql>(
    reader: &Pool<DB>,
    saga_id: Uuid,
) -> Result<Vec<SagaStepRecord>, StoreError> {
    let statement = sqlx::query(DB::HISTORY).arg(saga_id);
    fetch_all::<DB, StepRow, _>(statement, DB::pool(reader)).await
}

/// `SagaStore::list_sagas`.
pub(crate) async fn list<DB: Backend + SagaSql>(
    reader: &Pool<DB>,
    status: Option<SagaStatus>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<SagaInstance>, StoreError> {
    let statement = sqlx::query(DB::LIST)
        .arg(status.map(|s| status_str(s).to_owned()))
        .arg(after)
        .arg(limit as i64);
    fetch_all::<DB, SagaRow, _>(statement, DB::pool(reader)).await
}

/// `SagaStore::claim_sagas`.
pub(crate) async fn claim<DB: Backend + SagaSql>(
    writer: &Pool<DB>,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<SagaInstance>, StoreError> {
    let statement = sqlx::query(DB::CLAIM)
        .arg(owner.to_owned())
        .arg(Micros(now))
        .arg(Micros(lease_until))
        .arg(limit as i64);
    fetch_all::<DB, SagaRow, _>(statement, DB::pool(writer)).await
}

/// `SagaStore::release_saga_leases`.
pub(crate) async fn release<DB: Backend + SagaSql>(
    writer: &Pool<DB>,
    owner: &str,
) -> Result<u64, StoreError> {
    execute(
        sqlx::query(DB::RELEASE).arg(owner.to_owned()),
        DB::pool(writer),
    )
    .await
}

/// `SagaStore::count_sagas`.
pub(crate) async fn count<DB: Backend + SagaSql>(
    reader: &Pool<DB>,
    status: SagaStatus,
) -> Result<i64, StoreError> {
    let statement = sqlx::query(DB::COUNT).arg(status_str(status));
    let (count,) = fetch_one(statement, DB::pool(reader)).await?;
    Ok(count)
}
