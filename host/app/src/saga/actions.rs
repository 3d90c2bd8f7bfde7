//! The steps' actions: one function per step, chosen in one place
//! ([`Sagas::action`]), and the generic way a step runs around it (its
//! hooks before and after, its failure, its success), whether on its own
//! or folded into the write of the step before it.
//!
//! Adding a step: its line in `commerce_domain::saga::FULFILMENT` and its
//! arm in [`Sagas::action`] with the function it names. Nothing here
//! writes the store; the round it fills is written by the runner.

use std::sync::Arc;
use std::time::Instant;

use crate::AppError;
use crate::Sagas;
use crate::ports::{AuthorizeRequest, InventoryChange, PaymentError, PaymentGateway};
use commerce_domain::saga::{Outcome, Phase, Step, StepName};
use commerce_domain::{Order, OrderCommand};

use super::SagaInstance;
use super::round::{Learned, Round};
use super::runner::PAYMENT_CALLS;

/// What an action works with: the saga as this round read it, the
/// gateway, what this run learned there, and the round it fills.
pub(super) struct Turn<'a> {
    pub(super) saga: &'a SagaInstance,
    pub(super) gateway: &'a Arc<dyn PaymentGateway>,
    pub(super) learned: &'a mut Learned,
    pub(super) out: &'a mut Round,
}

/// The payment id an order with nothing to pay records.
pub const ZERO_TOTAL: &str = "zero-total";

/// An action's own failure: the reason the step (or compensation) failed.
pub(super) type Failure = String;

/// The idempotency key of a gateway call made for `name` of `saga`: the
/// same on every attempt and in every process.
pub(super) fn idempotency_key(saga: &SagaInstance, name: &str) -> String {
    format!("{}:{}", saga.saga_id, name)
}

/// What the saga asks the gateway to authorize: the same request for the
/// step and for the void that looks up what a dead run may have made, so
/// the gateway's idempotency key matches it.
pub(super) fn authorize_request(saga: &SagaInstance) -> AuthorizeRequest {
    let payment = &saga.data.payment;
    AuthorizeRequest {
        order_id: saga.correlation_id,
        amount: payment.amount,
        currency: payment.currency,
        token: payment.token.clone(),
    }
}

/// A gateway call that failed for good.
pub(super) struct CallFailed {
    pub(super) reason: String,
    /// The gateway said no (declined or refused), rather than not answering.
    pub(super) refused: bool,
}

impl CallFailed {
    fn refused(reason: String) -> CallFailed {
        CallFailed {
            reason,
            refused: true,
        }
    }
}

impl Sagas<'_> {
    /// The action of each step: the one place a step is tied to what it
    /// does. `Err`: the step failed for good, for this reason.
    async fn action(&self, step: Step, turn: &mut Turn<'_>) -> Result<(), Failure> {
        match step {
            Step::ReserveInventory => reserve_inventory(turn),
            Step::AuthorizePayment => self.authorize_payment(turn).await,
            Step::CapturePayment => self.capture_payment(turn).await,
            Step::Notify => notify(turn),
            Step::RecordRefund => record_refund(turn),
            Step::RefundPayment => self.refund_payment(turn).await,
        }
    }

    /// Runs a step on its own: its hooks before, its action, its hooks
    /// after.
    pub(super) async fn act(
        &self,
        saga: &SagaInstance,
        order: &Order,
        step: Step,
        gateway: &Arc<dyn PaymentGateway>,
        learned: &mut Learned,
    ) -> Result<Round, AppError> {
        let mut out = Round::of(saga);
        if let Some(veto) = self.hooks(saga, order, step, true, &mut out).await? {
            return Ok(out.fail(step, veto));
        }
        let mut turn = Turn {
            saga,
            gateway,
            learned,
            out: &mut out,
        };
        if let Err(reason) = self.action(step, &mut turn).await {
            return Ok(out.fail(step, reason));
        }
        if let Some(veto) = self.hooks(saga, order, step, false, &mut out).await? {
            // The step did act: its effect is undone with the others.
            out.step_done();
            return Ok(out.fail(step, veto));
        }
        out.step_succeeded();
        Ok(out)
    }

    /// Runs a local step inside the round of the step before it, to be
    /// written with it: its hooks (before, then after), then its action.
    pub(super) async fn fold_step(
        &self,
        mut out: Round,
        order: &Order,
        step: Step,
        gateway: &Arc<dyn PaymentGateway>,
        learned: &mut Learned,
    ) -> Result<Round, AppError> {
        let saga = out.saga.clone();
        if let Some(veto) = self.hooks(&saga, order, step, true, &mut out).await? {
            return Ok(out.fail(step, veto));
        }
        let after = self.hooks(&saga, order, step, false, &mut out).await?;
        let mut turn = Turn {
            saga: &saga,
            gateway,
            learned,
            out: &mut out,
        };
        if let Err(reason) = self.action(step, &mut turn).await {
            return Ok(out.fail(step, reason));
        }
        if let Some(veto) = after {
            out.step_done();
            return Ok(out.fail(step, veto));
        }
        out.step_succeeded();
        Ok(out)
    }

    /// Authorizes the payment: the order records it.
    async fn authorize_payment(&self, turn: &mut Turn<'_>) -> Result<(), Failure> {
        let step = Step::AuthorizePayment;
        if turn.saga.data.payment.amount.is_zero() {
            // Nothing to pay: the gateway is not asked (it refuses zero).
            let out = &mut *turn.out;
            out.record(
                step,
                Phase::Action,
                Outcome::Ok,
                Some("nothing to authorize: the total is zero".into()),
            );
            out.orders.push((
                OrderCommand::RecordPayment {
                    payment_id: ZERO_TOTAL.into(),
                },
                true,
            ));
            return Ok(());
        }
        let request = authorize_request(turn.saga);
        let key = idempotency_key(turn.saga, step.as_str());
        let gateway = turn.gateway;
        let auth = self
            .with_retries(turn.out, step.into(), "authorize", || {
                gateway.authorize(request.clone(), &key)
            })
            .await
            .map_err(|failed| failed.reason)?;
        turn.learned.authorization_id = Some(auth.id.clone());
        let out = &mut *turn.out;
        out.saga.data.authorization_id = Some(auth.id.clone());
        out.record(
            step,
            Phase::Action,
            Outcome::Ok,
            Some(format!("authorization {}", auth.id)),
        );
        out.orders.push((
            OrderCommand::RecordPayment {
                payment_id: auth.id,
            },
            true,
        ));
        Ok(())
    }

    /// Captures the authorized payment (the pivot): the order is confirmed
    /// and its stock leaves the shelf.
    async fn capture_payment(&self, turn: &mut Turn<'_>) -> Result<(), Failure> {
        let step = Step::CapturePayment;
        let amount = turn.saga.data.payment.amount;
        let detail = if amount.is_zero() {
            "nothing to capture: the total is zero".to_owned()
        } else {
            let Some(auth) = turn.saga.data.authorization_id.clone() else {
                return Err("no authorization to capture".into());
            };
            let key = idempotency_key(turn.saga, step.as_str());
            let gateway = turn.gateway;
            self.with_retries(turn.out, step.into(), "capture", || {
                gateway.capture(&auth, amount, &key)
            })
            .await
            .map_err(|failed| failed.reason)?;
            turn.learned.captured = true;
            turn.out.saga.data.captured = true;
            format!("captured {amount}")
        };
        let out = &mut *turn.out;
        out.record(step, Phase::Action, Outcome::Ok, Some(detail));
        out.orders.push((OrderCommand::Confirm, true));
        out.inventory = Some(InventoryChange::Commit {
            order_id: turn.saga.correlation_id,
        });
        Ok(())
    }

    /// Gives the refund's money back at the gateway (with a key of its
    /// own, the same on every attempt), then records it on the order with
    /// the units that come back on the shelf, in one write.
    async fn refund_payment(&self, turn: &mut Turn<'_>) -> Result<(), Failure> {
        let step = Step::RefundPayment;
        let Some(refund) = turn.saga.data.refund.clone() else {
            return Err("the saga has no refund to make".into());
        };
        let detail = if refund.amount.is_zero() {
            "no money to give back: units only".to_owned()
        } else {
            let Some(auth) = turn.saga.data.authorization_id.clone() else {
                return Err("no captured payment to refund".into());
            };
            let key = idempotency_key(turn.saga, &format!("refund:{}", refund.refund_id));
            let gateway = turn.gateway;
            self.with_retries(turn.out, step.into(), "refund", || {
                gateway.refund(&auth, refund.amount, &key)
            })
            .await
            .map_err(|failed| failed.reason)?;
            format!("refunded {}", refund.amount)
        };
        let order_id = turn.saga.correlation_id;
        let out = &mut *turn.out;
        out.record(step, Phase::Action, Outcome::Ok, Some(detail));
        out.orders.push((
            OrderCommand::RecordRefund {
                refund_id: refund.refund_id,
            },
            true,
        ));
        out.inventory = InventoryChange::restock(order_id, &refund.restock);
        Ok(())
    }

    /// Calls the gateway until it answers for good or the step's deadline
    /// passes; every attempt carries the same idempotency key. `Err` is
    /// the reason the step failed.
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        out: &mut Round,
        name: StepName,
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
                    let cause = format!("payment gateway refused the {operation}: {message}");
                    tracing::warn!(saga_id = %out.saga.saga_id, order_id = %out.saga.correlation_id, operation, %cause, "payment gateway refused a call");
                    out.add_cause(cause);
                    return Err(CallFailed::refused(format!(
                        "the payment service refused the {operation}"
                    )));
                }
                Err(PaymentError::Transient(e)) => {
                    let wait = self.saga.backoff(attempt);
                    attempt += 1;
                    out.record(
                        name,
                        Phase::Action,
                        Outcome::Retry,
                        Some(format!("{operation} attempt {attempt}: {e:#}")),
                    );
                    if Instant::now() + wait >= deadline {
                        let cause = format!(
                            "payment gateway unavailable for the {operation} after {attempt} attempts: {e:#}"
                        );
                        tracing::warn!(saga_id = %out.saga.saga_id, order_id = %out.saga.correlation_id, operation, %cause, "payment gateway unavailable; giving up");
                        out.add_cause(cause);
                        return Err(CallFailed {
                            reason: format!(
                                "the payment service was unavailable for the {operation}"
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
}

/// The stock is held when the order is placed, with the saga's first
/// write; a saga found right before this step only records it.
fn reserve_inventory(turn: &mut Turn<'_>) -> Result<(), Failure> {
    turn.out
        .record(Step::ReserveInventory, Phase::Action, Outcome::Ok, None);
    Ok(())
}

/// A refund's intent is recorded on the order when it is asked, with the
/// saga's first write; a saga found right before this step only records it.
fn record_refund(turn: &mut Turn<'_>) -> Result<(), Failure> {
    turn.out
        .record(Step::RecordRefund, Phase::Action, Outcome::Ok, None);
    Ok(())
}

/// The confirmation event in the outbox is the notification: written with
/// the capture when the two share a round, or already written by the
/// capture's round when a saga is resumed right before this step.
fn notify(turn: &mut Turn<'_>) -> Result<(), Failure> {
    let detail = turn
        .out
        .confirms()
        .then(|| "OrderConfirmed published".to_owned());
    turn.out
        .record(Step::Notify, Phase::Action, Outcome::Ok, detail);
    Ok(())
}
