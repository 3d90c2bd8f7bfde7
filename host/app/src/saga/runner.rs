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

use crate::Sagas;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::{SagaInstance, SagaStepRecord, SagaWrite, chrono_duration, status_str};
use crate::extensions::{HookContext, HookOutcome, Quote};
use crate::ports::{AuthorizeRequest, InventoryChange, PaymentError, PaymentGateway, StoreError};
use crate::{AppError, Caller, now};
use commerce_domain::saga::{Compensation, FULFILMENT, Next, SagaStatus, Step};
use commerce_domain::{Aggregate, Order, OrderCommand, OrderStatus};

/// Sagas finished, by type and outcome.
pub const SAGAS_FINISHED: &str = "commerce_sagas_finished_total";
/// Saga duration from start to a terminal state or an operator's desk.
pub const SAGA_DURATION: &str = "commerce_saga_duration_seconds";
/// Saga writes that lost a race and were reconciled.
pub const SAGA_CONFLICTS: &str = "commerce_saga_write_conflicts_total";
/// Calls to the payment gateway, by operation and result.
pub const PAYMENT_CALLS: &str = "commerce_payment_calls_total";

/// What one round decided, to be written in one transaction.
struct Outcome {
    saga: SagaInstance,
    history: Vec<SagaStepRecord>,
    /// The order commands this round produces, in order. `required`: the
    /// write is only right if the order takes it (a payment, a
    /// confirmation); otherwise it is recorded only where the order can
    /// still take it (failing an order the customer already cancelled
    /// records nothing on the order).
    orders: Vec<(OrderCommand, bool)>,
    inventory: Option<InventoryChange>,
}

/// What the saga asks the gateway to authorize: the same request for the
/// step and for the void that looks up what a dead run may have made, so
/// the gateway's idempotency key matches it.
fn authorize_request(saga: &SagaInstance) -> AuthorizeRequest {
    let payment = &saga.data.payment;
    AuthorizeRequest {
        order_id: saga.correlation_id,
        amount: payment.amount,
        currency: payment.currency,
        token: payment.token.clone(),
    }
}

/// A gateway call that failed for good.
struct CallFailed {
    reason: String,
    /// The gateway said no (declined or refused), rather than not answering.
    refused: bool,
}

impl CallFailed {
    fn refused(reason: String) -> CallFailed {
        CallFailed {
            reason,
            refused: true,
        }
    }
}

/// What this run learned at the gateway that the store may not know yet.
#[derive(Debug, Default, Clone)]
struct Learned {
    authorization_id: Option<String>,
    captured: bool,
}

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
    pub fn spawn_saga(&self, saga: SagaInstance, order: Option<Order>) {
        if self.is_draining() {
            return;
        }
        let span = tracing::info_span!(
            "commerce.saga",
            saga_id = %saga.saga_id,
            order_id = %saga.correlation_id
        );
        let app = self.app.clone();
        tokio::spawn(
            async move {
                let _permit = app.saga_slots.clone().acquire_owned().await;
                app.sagas().drive_saga(saga, order).await;
            }
            .instrument(span),
        );
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
        loop {
            if !self.holds_lease(&saga) {
                return Ok(());
            }
            let outcome = match saga.data.progress.next(&FULFILMENT) {
                Next::Stop => return Ok(()),
                Next::Act(step) => {
                    let out = self
                        .act(&saga, &order, step, &gateway, &mut learned)
                        .await?;
                    // Written with the capture, unless the saga changed
                    // meanwhile (a cancel): then the authorization is
                    // written alone, loses the race and is voided, and
                    // nothing is captured from a customer who cancelled.
                    if step == Step::AuthorizePayment
                        && out.authorized()
                        && self.unchanged(&saga).await?
                    {
                        let capture = self
                            .act(
                                &out.saga,
                                &order,
                                Step::CapturePayment,
                                &gateway,
                                &mut learned,
                            )
                            .await?;
                        out.then(capture)
                    } else {
                        out
                    }
                }
                Next::Compensate(c) => self.undo(&saga, c, &gateway, &mut learned).await?,
            };
            let outcome = self.fold_local(outcome, &order).await?;
            match self.write_outcome(&saga, &mut order, outcome).await {
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
    }

    /// Whether the stored saga is still the one this run read.
    async fn unchanged(&self, saga: &SagaInstance) -> Result<bool, AppError> {
        let stored = self.store.get_saga(saga.saga_id).await?;
        Ok(stored.is_some_and(|s| s.revision == saga.revision))
    }

    fn holds_lease(&self, saga: &SagaInstance) -> bool {
        !self.is_draining()
            && saga.lease_owner.as_deref() == Some(self.saga.owner.as_str())
            && saga.lease_until.is_some_and(|until| until > now())
    }

    /// Runs a step's action.
    async fn act(
        &self,
        saga: &SagaInstance,
        order: &Order,
        step: Step,
        gateway: &Arc<dyn PaymentGateway>,
        learned: &mut Learned,
    ) -> Result<Outcome, AppError> {
        let mut out = Outcome::of(saga);
        if let Some(veto) = self
            .hooks(saga, order, step.as_str(), true, &mut out)
            .await?
        {
            return Ok(out.fail(step.as_str(), veto));
        }
        let key = format!("{}:{}", saga.saga_id, step.as_str());
        match step {
            Step::AuthorizePayment => {
                let request = authorize_request(saga);
                let result = self
                    .with_retries(&mut out, step.as_str(), "authorize", || {
                        gateway.authorize(request.clone(), &key)
                    })
                    .await;
                match result {
                    Ok(auth) => {
                        learned.authorization_id = Some(auth.id.clone());
                        out.saga.data.authorization_id = Some(auth.id.clone());
                        out.record(
                            step.as_str(),
                            "action",
                            "ok",
                            Some(format!("authorization {}", auth.id)),
                        );
                        out.orders.push((
                            OrderCommand::RecordPayment {
                                payment_id: auth.id,
                            },
                            true,
                        ));
                    }
                    Err(failed) => return Ok(out.fail(step.as_str(), failed.reason)),
                }
            }
            Step::CapturePayment => {
                let Some(auth) = saga.data.authorization_id.clone() else {
                    return Ok(out.fail(step.as_str(), "no authorization to capture".into()));
                };
                let amount = saga.data.payment.amount;
                let result = self
                    .with_retries(&mut out, step.as_str(), "capture", || {
                        gateway.capture(&auth, amount, &key)
                    })
                    .await;
                match result {
                    Ok(_) => {
                        learned.captured = true;
                        out.saga.data.captured = true;
                        out.record(
                            step.as_str(),
                            "action",
                            "ok",
                            Some(format!("captured {amount}")),
                        );
                        out.orders.push((OrderCommand::Confirm, true));
                        out.inventory = Some(InventoryChange::Commit {
                            order_id: saga.correlation_id,
                        });
                    }
                    Err(failed) => return Ok(out.fail(step.as_str(), failed.reason)),
                }
            }
            // Local steps are folded into the write before them; a saga
            // resumed right before one does it here.
            Step::Notify | Step::ReserveInventory => {
                out.record(step.as_str(), "action", "ok", None);
            }
        }
        if let Some(veto) = self
            .hooks(saga, order, step.as_str(), false, &mut out)
            .await?
        {
            // The step did act: its effect is undone with the others.
            out.saga.data.progress = out.saga.data.progress.clone().acted(&FULFILMENT);
            return Ok(out.fail(step.as_str(), veto));
        }
        out.saga.data.progress = out.saga.data.progress.clone().acted(&FULFILMENT);
        out.saga.attempts = 0;
        Ok(out)
    }

    /// Runs a compensation.
    async fn undo(
        &self,
        saga: &SagaInstance,
        compensation: Compensation,
        gateway: &Arc<dyn PaymentGateway>,
        learned: &mut Learned,
    ) -> Result<Outcome, AppError> {
        let mut out = Outcome::of(saga);
        let name = compensation.as_str();
        match compensation {
            Compensation::VoidPayment => {
                let known = saga
                    .data
                    .authorization_id
                    .clone()
                    .or_else(|| learned.authorization_id.clone());
                let auth = match known {
                    Some(auth) => auth,
                    None => match self.find_authorization(saga, gateway, &mut out).await {
                        Ok(Some(auth)) => {
                            learned.authorization_id = Some(auth.clone());
                            out.saga.data.authorization_id = Some(auth.clone());
                            auth
                        }
                        Ok(None) => {
                            out.skip_void();
                            return Ok(out);
                        }
                        Err(reason) => return Ok(self.compensation_failed(out, name, reason)),
                    },
                };
                let amount = saga.data.payment.amount;
                // A capture that raced a cancel is given back, not voided.
                let captured = saga.data.captured || learned.captured;
                let key = format!(
                    "{}:{}",
                    saga.saga_id,
                    if captured { "refund" } else { name }
                );
                let result = if captured {
                    self.with_retries(&mut out, name, "refund", || {
                        gateway.refund(&auth, amount, &key)
                    })
                    .await
                } else {
                    self.with_retries(&mut out, name, "void", || gateway.void(&auth, &key))
                        .await
                };
                match result {
                    Ok(a) => {
                        out.record(
                            name,
                            "compensation",
                            "ok",
                            Some(format!("authorization {} {:?}", a.id, a.status).to_lowercase()),
                        );
                        out.saga.data.progress =
                            out.saga.data.progress.clone().compensated(&FULFILMENT);
                        out.saga.attempts = 0;
                    }
                    Err(failed) => return Ok(self.compensation_failed(out, name, failed.reason)),
                }
            }
            Compensation::ReleaseInventory => {
                out.release();
                out.saga.attempts = 0;
            }
        }
        Ok(out)
    }

    /// A compensation round failed: try again later (any replica), or,
    /// after the last round, hand the saga to an operator.
    fn compensation_failed(&self, mut out: Outcome, name: &str, reason: String) -> Outcome {
        out.saga.attempts += 1;
        out.saga.data.last_error = Some(reason.clone());
        if out.saga.attempts as u32 >= self.saga.compensation_rounds {
            out.record(name, "compensation", "stuck", Some(reason.clone()));
            out.saga.data.progress = out
                .saga
                .data
                .progress
                .clone()
                .stuck(format!("{name} keeps failing: {reason}"));
            tracing::error!(saga_id = %out.saga.saga_id, order_id = %out.saga.correlation_id, compensation = name, %reason, "saga needs attention: a compensation keeps failing");
        } else {
            out.record(name, "compensation", "failed", Some(reason));
            let wait = self.saga.backoff(out.saga.attempts as u32);
            out.saga.next_attempt_at = now() + chrono_duration(wait);
            out.saga.lease_owner = None;
            out.saga.lease_until = None;
        }
        out
    }

    /// The authorization a run may have made and died before recording,
    /// while a cancel turned the saga back: the gateway is asked again with
    /// the authorization's own idempotency key, and answers as it did then
    /// (or authorizes now, and the void that follows undoes it). `None`:
    /// it declines or refuses, so nothing is held. `Err`: it does not
    /// answer; the compensation is tried again later.
    async fn find_authorization(
        &self,
        saga: &SagaInstance,
        gateway: &Arc<dyn PaymentGateway>,
        out: &mut Outcome,
    ) -> Result<Option<String>, String> {
        let step = Step::AuthorizePayment.as_str();
        let key = format!("{}:{step}", saga.saga_id);
        let request = authorize_request(saga);
        let name = Compensation::VoidPayment.as_str();
        match self
            .with_retries(out, name, "authorize", || {
                gateway.authorize(request.clone(), &key)
            })
            .await
        {
            Ok(auth) => {
                out.record(
                    name,
                    "compensation",
                    "found",
                    Some(format!("authorization {} (not recorded before)", auth.id)),
                );
                Ok(Some(auth.id))
            }
            Err(failed) if failed.refused => Ok(None),
            Err(failed) => Err(failed.reason),
        }
    }

    /// Runs the saga hooks of one phase of a step. `Some(reason)`: stop
    /// (a veto, or a hook that failed under a fail-closed policy). Past the
    /// pivot nothing can be undone, so a veto there is recorded and ignored.
    async fn hooks(
        &self,
        saga: &SagaInstance,
        order: &Order,
        step: &str,
        before: bool,
        out: &mut Outcome,
    ) -> Result<Option<String>, AppError> {
        if !self.plugins.has_saga_hooks() {
            return Ok(None);
        }
        let context = HookContext {
            saga_type: saga.saga_type.clone(),
            step: step.to_owned(),
            before,
            quote: Quote {
                order_id: order.id,
                customer_id: order.customer_id,
                status: order.status.unwrap_or(OrderStatus::Pending),
                currency: saga.data.payment.currency,
                lines: order.lines.clone(),
            },
            adjustments: order.adjustments.clone(),
        };
        let phase = if before { "hook-before" } else { "hook-after" };
        let verdict = match self.plugins.run_hooks(context).await {
            Ok(HookOutcome::Continue) => return Ok(None),
            Ok(HookOutcome::Veto { plugin, reason }) => format!("vetoed by {plugin}: {reason}"),
            Err(failed) => failed.to_string(),
        };
        if saga.data.captured || out.saga.data.captured {
            out.record(
                step,
                phase,
                "ignored",
                Some(format!("{verdict} (past the capture)")),
            );
            return Ok(None);
        }
        out.record(step, phase, "veto", Some(verdict.clone()));
        Ok(Some(verdict))
    }

    /// Calls the gateway until it answers for good or the step's deadline
    /// passes; every attempt carries the same idempotency key. `Err` is
    /// the reason the step failed.
    async fn with_retries<T, F, Fut>(
        &self,
        out: &mut Outcome,
        step: &str,
        operation: &'static str,
        mut call: F,
    ) -> Result<T, CallFailed>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PaymentError>>,
    {
        let deadline = Instant::now() + self.saga.step_deadline;
        let mut attempt = 0u32;
        loop {
            let result = call().await;
            let label = match &result {
                Ok(_) => "ok",
                Err(PaymentError::Declined { .. }) => "declined",
                Err(PaymentError::Transient(_)) => "transient",
                Err(PaymentError::Rejected(_)) => "rejected",
            };
            metrics::counter!(PAYMENT_CALLS, "operation" => operation, "result" => label)
                .increment(1);
            match result {
                Ok(value) => return Ok(value),
                Err(PaymentError::Declined { reason }) => {
                    return Err(CallFailed::refused(format!("payment declined: {reason}")));
                }
                Err(PaymentError::Rejected(message)) => {
                    return Err(CallFailed::refused(format!(
                        "payment gateway refused the {operation}: {message}"
                    )));
                }
                Err(PaymentError::Transient(e)) => {
                    let wait = self.saga.backoff(attempt);
                    attempt += 1;
                    out.record(
                        step,
                        "action",
                        "retry",
                        Some(format!("{operation} attempt {attempt}: {e:#}")),
                    );
                    if Instant::now() + wait >= deadline {
                        return Err(CallFailed {
                            reason: format!(
                                "payment gateway unavailable for the {operation} after {attempt} attempts: {e:#}"
                            ),
                            refused: false,
                        });
                    }
                    tracing::debug!(saga_id = %out.saga.saga_id, operation, attempt, "payment gateway unavailable; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Adds the local steps that follow to the same write: notifying after
    /// the capture, releasing the stock after the void, and so on.
    async fn fold_local(&self, mut out: Outcome, order: &Order) -> Result<Outcome, AppError> {
        loop {
            if out.saga.lease_owner.is_none() {
                return Ok(out);
            }
            match out.saga.data.progress.next(&FULFILMENT) {
                Next::Act(Step::Notify) if out.confirms() => {
                    // The confirmation event in the outbox is the notification.
                    let saga = out.saga.clone();
                    let mut hooks_out = Outcome::of(&saga);
                    self.hooks(&saga, order, Step::Notify.as_str(), true, &mut hooks_out)
                        .await?;
                    self.hooks(&saga, order, Step::Notify.as_str(), false, &mut hooks_out)
                        .await?;
                    out.history.append(&mut hooks_out.history);
                    out.record(
                        Step::Notify.as_str(),
                        "action",
                        "ok",
                        Some("OrderConfirmed published".into()),
                    );
                    out.saga.data.progress = out.saga.data.progress.clone().acted(&FULFILMENT);
                }
                Next::Compensate(Compensation::ReleaseInventory) if out.inventory.is_none() => {
                    out.release();
                }
                Next::Compensate(Compensation::VoidPayment)
                    if out.saga.data.authorization_id.is_none() =>
                {
                    out.skip_void();
                }
                _ => return Ok(out),
            }
        }
    }

    /// Writes a round's outcome: the saga at its next revision with a
    /// renewed lease (unless it waits for a retry or is done), its history,
    /// and the order event and stock change, in one transaction.
    async fn write_outcome(
        &self,
        read: &SagaInstance,
        order: &mut Order,
        mut out: Outcome,
    ) -> Result<SagaInstance, StoreError> {
        let at = now();
        out.saga.revision = read.revision + 1;
        out.saga.updated_at = at;
        let status = out.saga.status();
        if status != SagaStatus::Running && status != SagaStatus::Compensating {
            out.saga.lease_owner = None;
            out.saga.lease_until = None;
        } else if out.saga.lease_owner.is_some() {
            out.saga.lease_until = Some(at + chrono_duration(self.saga.lease));
        }
        let write = SagaWrite {
            instance: out.saga.clone(),
            expected_revision: Some(read.revision),
            history: out.history,
        };
        let mut events: Option<Vec<_>> = None;
        // Each command sees the order as the ones before it left it.
        let mut scratch = order.clone();
        for (command, required) in out.orders {
            match scratch.handle(command) {
                Ok(new) => {
                    for event in &new {
                        scratch.apply(event, at);
                    }
                    events.get_or_insert_with(Vec::new).extend(new);
                }
                // The order moved on under us (a cancel): the saga moved
                // with it, so this round was planned on a stale saga.
                Err(_) if required => {
                    return Err(StoreError::SagaConflict {
                        saga_id: read.saga_id,
                    });
                }
                Err(_) => {}
            }
        }
        let skus: Vec<_> = match &events {
            Some(_) => order.lines.iter().map(|l| l.sku.clone()).collect(),
            None => Vec::new(),
        };
        match events {
            Some(events) => {
                *order = self
                    .orders()
                    .commit_all(
                        order.clone(),
                        events,
                        Vec::new(),
                        out.inventory.clone(),
                        Some(write),
                    )
                    .await?;
            }
            None => self.store.save_saga(write, out.inventory.clone()).await?,
        }
        if out.inventory.is_some() && !skus.is_empty() {
            self.inventory().stock_changed(&skus).await;
        }
        Ok(out.saga)
    }

    /// The saga after a lost write race, with what this run learned at the
    /// gateway merged in; `None` if another process now drives it.
    async fn reconcile(
        &self,
        saga_id: uuid::Uuid,
        learned: &Learned,
    ) -> Result<Option<SagaInstance>, AppError> {
        for _ in 0..10 {
            if self.is_draining() {
                return Ok(None);
            }
            let Some(fresh) = self.store.get_saga(saga_id).await? else {
                return Ok(None);
            };
            let mut merged = fresh.successor(now());
            let mut changed = false;
            if merged.data.authorization_id.is_none() && learned.authorization_id.is_some() {
                merged.data.authorization_id = learned.authorization_id.clone();
                changed = true;
            }
            if learned.captured && !merged.data.captured {
                merged.data.captured = true;
                changed = true;
            }
            // A cancel turned the saga back while its authorization was in
            // flight: the saga thinks nothing was authorized, but this run
            // knows better, so the void joins the compensations.
            if changed && merged.data.authorization_id.is_some() {
                merged.data.progress = merged
                    .data
                    .progress
                    .clone()
                    .acted_late(&FULFILMENT, Step::AuthorizePayment);
            }
            let ours = self.holds_lease(&fresh);
            let free = fresh.lease_until.is_none_or(|until| until <= now());
            let active = matches!(
                fresh.status(),
                SagaStatus::Running | SagaStatus::Compensating
            );
            if !(changed || (active && free)) {
                return Ok(ours.then_some(fresh));
            }
            if active && (ours || free) {
                merged.lease_owner = Some(self.saga.owner.clone());
                merged.lease_until = Some(now() + chrono_duration(self.saga.lease));
            }
            let history = if changed {
                vec![SagaStepRecord::new(
                    saga_id,
                    fresh.current_step(),
                    "reconcile",
                    "ok",
                    Some(format!(
                        "merged after a concurrent change: authorization {:?}, captured {}",
                        learned.authorization_id, learned.captured
                    )),
                    fresh.attempts,
                    now(),
                )]
            } else {
                Vec::new()
            };
            let write = SagaWrite {
                instance: merged.clone(),
                expected_revision: Some(fresh.revision),
                history,
            };
            match self.store.save_saga(write, None).await {
                Ok(()) => return Ok(self.holds_lease(&merged).then_some(merged)),
                Err(StoreError::SagaConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!("saga {saga_id} keeps changing")))
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

impl Outcome {
    fn of(saga: &SagaInstance) -> Outcome {
        Outcome {
            saga: saga.clone(),
            history: Vec::new(),
            orders: Vec::new(),
            inventory: None,
        }
    }

    fn record(&mut self, step: &str, phase: &str, outcome: &str, detail: Option<String>) {
        self.history.push(SagaStepRecord::new(
            self.saga.saga_id,
            step,
            phase,
            outcome,
            detail,
            self.saga.attempts,
            now(),
        ));
    }

    /// Releases the order's stock and fails the order with the saga's
    /// failure (where it can still fail): the last compensation.
    fn release(&mut self) {
        let reason = self
            .saga
            .data
            .progress
            .failure
            .clone()
            .unwrap_or_else(|| "saga compensated".into());
        self.record(
            Compensation::ReleaseInventory.as_str(),
            "compensation",
            "ok",
            None,
        );
        self.orders.push((OrderCommand::Fail { reason }, false));
        self.inventory = Some(InventoryChange::Release {
            order_id: self.saga.correlation_id,
        });
        self.saga.data.progress = self.saga.data.progress.clone().compensated(&FULFILMENT);
    }

    /// Whether this round confirms the order.
    fn confirms(&self) -> bool {
        self.orders
            .iter()
            .any(|(c, required)| *required && matches!(c, OrderCommand::Confirm))
    }

    /// This round, then `next`, which was planned on this round's saga:
    /// written together as one.
    fn then(mut self, mut next: Outcome) -> Outcome {
        self.history.append(&mut next.history);
        self.orders.append(&mut next.orders);
        Outcome {
            saga: next.saga,
            history: self.history,
            orders: self.orders,
            inventory: next.inventory.or(self.inventory),
        }
    }

    /// A successful authorization, to be written with the capture it
    /// leads to rather than on its own.
    fn authorized(&self) -> bool {
        self.saga.data.authorization_id.is_some()
            && self.saga.lease_owner.is_some()
            && self.inventory.is_none()
            && self.saga.data.progress.next(&FULFILMENT) == Next::Act(Step::CapturePayment)
    }

    /// The void with nothing to void: no authorization was made.
    fn skip_void(&mut self) {
        self.record(
            Compensation::VoidPayment.as_str(),
            "compensation",
            "skipped",
            Some("no authorization was made".into()),
        );
        self.saga.data.progress = self.saga.data.progress.clone().compensated(&FULFILMENT);
    }

    /// The current step failed for good: the saga turns back (or, past the
    /// pivot, waits for an operator).
    fn fail(mut self, step: &str, reason: String) -> Outcome {
        self.record(step, "action", "failed", Some(reason.clone()));
        self.saga.data.last_error = Some(reason.clone());
        self.saga.data.progress = self.saga.data.progress.clone().failed(&FULFILMENT, reason);
        self.saga.attempts = 0;
        self
    }
}
