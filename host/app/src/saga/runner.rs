//! The orchestrator: drives one saga, step by step, while this process
//! holds its lease.
//!
//! Each round asks the saga's progress what comes next, does it (a call
//! to the payment gateway with retries, the saga hooks before and after),
//! then writes the outcome in one transaction: the saga's next state, its
//! history, the order event the step produces and any stock change. Steps
//! that only touch our own database (notify, release the stock, a void
//! with no authorization) are folded into the write of the step before
//! them, and a successful authorization is written with the capture that
//! follows it (a crash in between re-runs both with their idempotency
//! keys, and the gateway answers as before; a cancel in between is seen
//! by re-reading the saga's revision before capturing), so the happy path
//! costs two transactions per order: placement, then payment with
//! confirmation.
//!
//! A write that loses a race (a cancel moved the saga on, a worker took
//! over after our lease ran out) is not retried blindly: the saga is
//! reloaded, what this run learned at the gateway (an authorization, a
//! capture) is merged into it, and the run goes on from the saga's real
//! state, or stops if the saga is now leased to another process.
//!
//! This file is the loop; a round's parts live by concept: the steps'
//! actions in [`super::actions`], the compensations in
//! [`super::compensations`], the hooks in [`super::hooks`], and the
//! round with its write and the reconciliation in [`super::round`].

use crate::Sagas;
use std::sync::Arc;

use tracing::Instrument;

use super::SagaInstance;
use super::compensations::compensate_here;
use super::round::{Learned, Round};
use super::status_str;
use crate::ports::{PaymentGateway, StoreError};
use crate::{AppError, Caller, now};
use commerce_domain::Order;
use commerce_domain::saga::{Next, SagaStatus};

/// Sagas finished, by type and outcome.
pub const SAGAS_FINISHED: &str = "commerce_sagas_finished_total";
/// Saga duration from start to a terminal state or an operator's desk.
pub const SAGA_DURATION: &str = "commerce_saga_duration_seconds";
/// Saga writes that lost a race and were reconciled.
pub const SAGA_CONFLICTS: &str = "commerce_saga_write_conflicts_total";
/// Calls to the payment gateway, by operation and result.
pub const PAYMENT_CALLS: &str = "commerce_payment_calls_total";

impl Sagas<'_> {
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// On shutdown: stops taking saga leases and gives back the ones held,
    /// so another replica resumes those sagas at once instead of after the
    /// lease. A run still in flight here then finds its next write refused
    /// (the release bumped the revision) and stops; its step is re-run,
    /// with the same idempotency key, by whoever takes the saga.
    pub async fn release_saga_leases(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.payments.is_none() {
            return;
        }
        match self.store.release_saga_leases(&self.saga.owner).await {
            Ok(n) => {
                tracing::info!(released = n, owner = %self.saga.owner, "saga leases released for other replicas")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release saga leases; they expire on their own")
            }
        }
    }

    /// Drives `saga` (leased to this process) in the background, in a
    /// `commerce.saga` span carrying `saga_id` and `order_id`: every line
    /// the run logs (payment calls, hooks, retries) carries both. Started
    /// by a request, the span is a child of the request's and its lines
    /// carry that `request_id` too; resumed by the worker, it is a root.
    /// `order`: the saga's order as just written, if the caller has it (it
    /// is read from the store otherwise).
    pub fn spawn_saga(
        &self,
        saga: SagaInstance,
        order: Option<Order>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.is_draining() {
            return None;
        }
        let span = tracing::info_span!(
            "commerce.saga",
            saga_id = %saga.saga_id,
            order_id = %saga.correlation_id
        );
        let app = self.app.clone();
        Some(tokio::spawn(
            async move {
                let _permit = app.saga_slots.clone().acquire_owned().await;
                app.sagas().drive_saga(saga, order).await;
            }
            .instrument(span),
        ))
    }

    /// Drives `saga` until it is terminal, waits for a later retry, needs
    /// an operator, or belongs to another process. Errors are logged; the
    /// lease then runs out and a worker resumes the saga.
    pub async fn drive_saga(&self, saga: SagaInstance, order: Option<Order>) {
        let saga_id = saga.saga_id;
        let order_id = saga.correlation_id;
        if let Err(e) = self.run_saga(saga, order).await {
            tracing::warn!(%saga_id, %order_id, error = %e, "saga run stopped; a worker resumes it when its lease expires");
        }
    }

    async fn run_saga(&self, mut saga: SagaInstance, order: Option<Order>) -> Result<(), AppError> {
        let Some(gateway) = self.payments.clone() else {
            return Err(AppError::Unavailable(anyhow::anyhow!(
                "no payment gateway configured"
            )));
        };
        let mut learned = Learned::default();
        // The order as this run last wrote it: hooks and writes need it,
        // and only this run (or a cancel, which a write then finds out
        // about) changes it.
        let mut order = match order {
            Some(order) => order,
            None => {
                self.orders()
                    .load_order(Caller::system(), saga.correlation_id)
                    .await?
            }
        };
        while self.holds_lease(&saga) {
            let Some(out) = self.round(&saga, &order, &gateway, &mut learned).await? else {
                return Ok(());
            };
            let out = self.fold_local(out, &order, &gateway, &mut learned).await?;
            match self.write_round(&saga, &mut order, out).await {
                Ok(next) => {
                    // No ids here: the `commerce.saga` span carries them.
                    tracing::debug!(
                        step = next.current_step(),
                        status = status_str(next.status()),
                        "saga step written"
                    );
                    self.finished(&saga, &next);
                    saga = next;
                    if saga.lease_owner.is_none() {
                        // A retry is scheduled; whichever worker is free takes it.
                        return Ok(());
                    }
                }
                Err(StoreError::SagaConflict { .. } | StoreError::VersionConflict { .. }) => {
                    metrics::counter!(SAGA_CONFLICTS).increment(1);
                    match self.reconcile(saga.saga_id, &learned).await? {
                        Some(fresh) => saga = fresh,
                        None => return Ok(()),
                    }
                    order = self
                        .orders()
                        .load_order(Caller::system(), saga.correlation_id)
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Does what the saga asks next; `None` when it asks nothing. A step
    /// that succeeds right before the pivot is run with the pivot, unless
    /// the saga changed meanwhile (a cancel): then it is written alone,
    /// loses the race and is undone, and nothing is captured from a
    /// customer who cancelled.
    async fn round(
        &self,
        saga: &SagaInstance,
        order: &Order,
        gateway: &Arc<dyn PaymentGateway>,
        learned: &mut Learned,
    ) -> Result<Option<Round>, AppError> {
        let out = match saga.data.progress.next(saga.definition()) {
            Next::Stop => return Ok(None),
            Next::Compensate(c) => self.undo(saga, c, gateway, learned).await?,
            Next::Act(step) => self.act(saga, order, step, gateway, learned).await?,
        };
        match out.leads_to_pivot() {
            Some(pivot) if self.unchanged(saga).await? => {
                let next = self.act(&out.saga, order, pivot, gateway, learned).await?;
                Ok(Some(out.then(next)))
            }
            _ => Ok(Some(out)),
        }
    }

    /// Adds what needs no call out to the round's write: the local steps
    /// that follow a step that succeeded (the notification after the
    /// capture), and the compensations that can be done here (releasing
    /// the stock, a void with nothing to void).
    async fn fold_local(
        &self,
        mut out: Round,
        order: &Order,
        gateway: &Arc<dyn PaymentGateway>,
        learned: &mut Learned,
    ) -> Result<Round, AppError> {
        while out.saga.lease_owner.is_some() {
            let def = out.saga.definition();
            match out.saga.data.progress.next(def) {
                Next::Act(step) if out.advanced && def.step(step).is_some_and(|s| s.local) => {
                    out = self.fold_step(out, order, step, gateway, learned).await?;
                }
                Next::Compensate(c) if compensate_here(c, &mut out) => {}
                _ => break,
            }
        }
        Ok(out)
    }

    /// Whether the stored saga is still the one this run read.
    async fn unchanged(&self, saga: &SagaInstance) -> Result<bool, AppError> {
        let stored = self.store.get_saga(saga.saga_id).await?;
        Ok(stored.is_some_and(|s| s.revision == saga.revision))
    }

    pub(super) fn holds_lease(&self, saga: &SagaInstance) -> bool {
        !self.is_draining()
            && saga.lease_owner.as_deref() == Some(self.saga.owner.as_str())
            && saga.lease_until.is_some_and(|until| until > now())
    }

    /// Counts and logs a saga that just reached the end of its run.
    fn finished(&self, before: &SagaInstance, after: &SagaInstance) {
        let status = after.status();
        if status == before.status()
            || matches!(status, SagaStatus::Running | SagaStatus::Compensating)
        {
            return;
        }
        let outcome = status_str(status);
        let seconds = (after.updated_at - after.created_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        metrics::counter!(SAGAS_FINISHED, "saga_type" => after.saga_type.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(SAGA_DURATION, "saga_type" => after.saga_type.clone(), "outcome" => outcome)
            .record(seconds);
        let failure = after.data.progress.failure.as_deref().unwrap_or("-");
        match status {
            SagaStatus::NeedsAttention => {}
            _ => {
                tracing::info!(saga_id = %after.saga_id, order_id = %after.correlation_id, outcome, seconds, failure, "saga finished")
            }
        }
    }
}
