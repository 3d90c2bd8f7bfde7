//! Sagas as operators and the order use cases touch them: the admin API
//! (list, show with history, retry, abort), a customer's cancel turning a
//! running saga back, and refunds of captured payments.

use crate::Sagas;
use serde::Serialize;
use uuid::Uuid;

use super::{SagaInstance, SagaStepRecord, SagaWrite, chrono_duration, status_str};
use crate::ports::InventoryChange;
use crate::{App, AppError, Caller, now};
use commerce_domain::saga::{FULFILMENT, Outcome, Phase, REFUND, SagaStatus};
use commerce_domain::{Aggregate, OrderCommand};

/// Most sagas in one page of the admin list.
pub const MAX_SAGA_PAGE: u32 = 500;

/// A saga as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SagaView {
    pub saga_id: Uuid,
    pub saga_type: String,
    /// The order.
    pub correlation_id: Uuid,
    /// running, compensating, completed, compensated, needs_attention.
    pub status: String,
    /// What it does next (`-`: nothing).
    pub current_step: String,
    pub failure: Option<String>,
    pub last_error: Option<String>,
    pub authorization_id: Option<String>,
    pub captured: bool,
    pub attempts: i32,
    pub revision: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Only in `GET /v1/sagas/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<SagaStepRecord>>,
}

impl SagaView {
    fn of(saga: &SagaInstance, history: Option<Vec<SagaStepRecord>>) -> Self {
        SagaView {
            saga_id: saga.saga_id,
            saga_type: saga.saga_type.clone(),
            correlation_id: saga.correlation_id,
            status: status_str(saga.status()).to_owned(),
            current_step: saga.current_step().to_owned(),
            failure: saga.data.progress.failure.clone(),
            last_error: saga.data.last_error.clone(),
            authorization_id: saga.data.authorization_id.clone(),
            captured: saga.data.captured,
            attempts: saga.attempts,
            revision: saga.revision,
            lease_owner: saga.lease_owner.clone(),
            lease_until: saga.lease_until,
            next_attempt_at: saga.next_attempt_at,
            created_at: saga.created_at,
            updated_at: saga.updated_at,
            history,
        }
    }
}

/// How many sagas are in each status, for the operations console's
/// overview: the metrics only count sagas that finished in this process
/// (and the ones needing attention), not the ones still running anywhere.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SagaCounts {
    /// Status (`running`, `compensating`, `completed`, `compensated`,
    /// `needs_attention`) to the number of sagas in it, every status present.
    pub counts: std::collections::BTreeMap<String, i64>,
}

/// A page of sagas; `next_cursor` continues it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SagaPage {
    pub items: Vec<SagaView>,
    pub next_cursor: Option<Uuid>,
}

impl Sagas<'_> {
    /// Sagas (in one status, or all), oldest first (admin).
    pub async fn list_sagas(
        &self,
        caller: Caller,
        status: Option<SagaStatus>,
        after: Option<Uuid>,
        limit: Option<u32>,
    ) -> Result<SagaPage, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let limit = limit.unwrap_or(100);
        if !(1..=MAX_SAGA_PAGE).contains(&limit) {
            return Err(AppError::Invalid(format!(
                "limit must be between 1 and {MAX_SAGA_PAGE}"
            )));
        }
        let mut sagas = self.store.list_sagas(status, after, limit + 1).await?;
        let next_cursor = if sagas.len() > limit as usize {
            sagas.truncate(limit as usize);
            sagas.last().map(|s| s.saga_id)
        } else {
            None
        };
        Ok(SagaPage {
            items: sagas.iter().map(|s| SagaView::of(s, None)).collect(),
            next_cursor,
        })
    }

    /// The number of sagas in each status (admin).
    pub async fn count_sagas(&self, caller: Caller) -> Result<SagaCounts, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let mut counts = std::collections::BTreeMap::new();
        for status in crate::ports::SAGA_STATUSES {
            let n = self.store.count_sagas(status).await?;
            counts.insert(status_str(status).to_owned(), n);
        }
        Ok(SagaCounts { counts })
    }

    /// One saga with its step history (admin).
    pub async fn get_saga(&self, caller: Caller, saga_id: Uuid) -> Result<SagaView, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let saga = self
            .store
            .get_saga(saga_id)
            .await?
            .ok_or(AppError::NotFound("saga"))?;
        let history = self.store.saga_history(saga_id).await?;
        Ok(SagaView::of(&saga, Some(history)))
    }

    /// Puts a saga that needs attention back to work at once, with fresh
    /// rounds, driven by this process (admin).
    pub async fn retry_saga(&self, caller: Caller, saga_id: Uuid) -> Result<SagaView, AppError> {
        self.operate(caller, saga_id, Outcome::Retry, |saga, app| {
            if saga.status() != SagaStatus::NeedsAttention {
                return Err(AppError::Conflict(format!(
                    "only a saga that needs attention can be retried; this one is {}",
                    status_str(saga.status())
                )));
            }
            let at = now();
            let mut next = saga.successor(at);
            next.data.progress = next.data.progress.clone().resume(saga.definition());
            next.attempts = 0;
            next.next_attempt_at = at;
            next.lease_owner = Some(app.saga.owner.clone());
            next.lease_until = Some(at + chrono_duration(app.saga.lease));
            Ok((next, None))
        })
        .await
    }

    /// Gives up on a saga that is not finished: it ends compensated with
    /// the operator's reason; the order fails and its stock is released
    /// if it still can (admin).
    pub async fn abort_saga(
        &self,
        caller: Caller,
        saga_id: Uuid,
        reason: Option<String>,
    ) -> Result<SagaView, AppError> {
        let reason = commerce_domain::bounded_reason(format!(
            "aborted by an operator: {}",
            reason.as_deref().unwrap_or("no reason given")
        ));
        self.operate(caller, saga_id, Outcome::Abort, move |saga, _| {
            if saga.status().is_terminal() {
                return Err(AppError::Conflict(format!(
                    "the saga is already {}",
                    status_str(saga.status())
                )));
            }
            let mut next = saga.successor(now());
            next.data.progress = next.data.progress.clone().abort(reason.clone());
            next.lease_owner = None;
            next.lease_until = None;
            Ok((next, Some(reason.clone())))
        })
        .await
    }

    /// Applies an operator's change to a saga at the revision it was read,
    /// recording it in the history; an abort also fails the order.
    async fn operate<F>(
        &self,
        caller: Caller,
        saga_id: Uuid,
        action: Outcome,
        change: F,
    ) -> Result<SagaView, AppError>
    where
        F: Fn(&SagaInstance, &App) -> Result<(SagaInstance, Option<String>), AppError>,
    {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        for _ in 0..5 {
            let saga = self
                .store
                .get_saga(saga_id)
                .await?
                .ok_or(AppError::NotFound("saga"))?;
            let (next, fail_order) = change(&saga, self)?;
            let write = SagaWrite {
                instance: next.clone(),
                expected_revision: Some(saga.revision),
                history: vec![SagaStepRecord::new(
                    saga_id,
                    saga.current(),
                    Phase::Operator,
                    action,
                    Some(format!("by {}", caller.subject)),
                    saga.attempts,
                    now(),
                )],
            };
            let result = match fail_order {
                Some(reason) => self.give_up(&saga, reason, write).await?,
                None => self.store.save_saga(write, None).await,
            };
            match result {
                Ok(()) => {
                    tracing::warn!(%saga_id, order_id = %saga.correlation_id, action = action.as_str(), operator = %caller.subject, "saga changed by an operator");
                    if self.payments.is_some() && next.lease_owner.is_some() {
                        self.spawn_saga(next.clone(), None);
                    }
                    return Ok(SagaView::of(&next, None));
                }
                Err(crate::ports::StoreError::SagaConflict { .. })
                | Err(crate::ports::StoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict("the saga keeps changing; retry".into()))
    }

    /// Writes an operator's abort of `saga` with what it means for the
    /// order: a fulfilment saga fails the order (where it still can) and
    /// releases its stock; a refund saga records the refund as failed.
    async fn give_up(
        &self,
        saga: &SagaInstance,
        reason: String,
        write: SagaWrite,
    ) -> Result<Result<(), crate::ports::StoreError>, AppError> {
        let order = self
            .orders()
            .load_order(Caller::system(), saga.correlation_id)
            .await?;
        let (command, inventory) = match &saga.data.refund {
            Some(refund) if saga.saga_type == REFUND.saga_type => (
                OrderCommand::AbandonRefund {
                    refund_id: refund.refund_id,
                    reason,
                },
                None,
            ),
            _ => (
                OrderCommand::Fail { reason },
                Some(InventoryChange::Release {
                    order_id: saga.correlation_id,
                }),
            ),
        };
        Ok(match order.handle(command) {
            Ok(events) => self
                .orders()
                .commit_all(order, events, Vec::new(), inventory, Some(write))
                .await
                .map(|_| ()),
            Err(_) => self.store.save_saga(write, inventory).await,
        })
    }

    /// What a cancel does to the order's saga, written with the cancel:
    /// a running saga turns back (void, release) and, if nobody drives it,
    /// this process will. (A confirmed order's cancel refunds through a
    /// refund saga: see `orders::refund`.)
    pub(crate) async fn cancel_saga(
        &self,
        order_id: Uuid,
        reason: Option<&str>,
    ) -> Result<(Option<SagaWrite>, Option<SagaInstance>), AppError> {
        let Some(saga) = self.store.saga_of(order_id).await? else {
            return Ok((None, None));
        };
        match saga.status() {
            SagaStatus::Running => {
                let at = now();
                let why = format!("order cancelled: {}", reason.unwrap_or("by the customer"));
                let mut next = saga.successor(at);
                // The authorization may be in flight, or made by a process
                // that died before recording it: the void finds out.
                next.data.progress = next
                    .data
                    .progress
                    .clone()
                    .interrupted(&FULFILMENT, why.clone());
                next.attempts = 0;
                next.next_attempt_at = at;
                let orphaned = saga.lease_until.is_none_or(|until| until <= at);
                if orphaned && self.payments.is_some() {
                    next.lease_owner = Some(self.saga.owner.clone());
                    next.lease_until = Some(at + chrono_duration(self.saga.lease));
                }
                let write = SagaWrite {
                    instance: next.clone(),
                    expected_revision: Some(saga.revision),
                    history: vec![SagaStepRecord::new(
                        saga.saga_id,
                        saga.current(),
                        Phase::Cancel,
                        Outcome::Failed,
                        Some(why),
                        saga.attempts,
                        at,
                    )],
                };
                let drive = (orphaned && self.payments.is_some()).then_some(next);
                Ok((Some(write), drive))
            }
            _ => Ok((None, None)),
        }
    }
}
