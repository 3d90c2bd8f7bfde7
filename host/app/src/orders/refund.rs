//! Giving money back: a refund (partial or full, with units taken back)
//! and the cancel of a confirmed order. Either is recorded on the order
//! first, with the refund saga that will ask the gateway, in one write;
//! the saga then refunds with its own idempotency key and records the
//! outcome (the refund and the restock, in one write). A crash anywhere
//! in between leaves a saga that a worker resumes; a refund that keeps
//! failing waits for an operator, who retries or gives it up.

use std::time::Duration;

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::ports::{InventoryChange, PaymentIntent, RefundIntent, SagaInstance, SagaStepRecord};
use crate::ports::{SagaWrite, status_str};
use crate::views::OrderView;
use crate::{AppError, Caller, Orders, now};

use super::change::handle_all;
use super::{Intent, Plan, RefundRequest};
use commerce_domain::saga::{Outcome, Phase, REFUND, SagaStatus, Step};
use commerce_domain::{Order, OrderAction, OrderCommand, OrderEvent, OrderStatus, Restock};

/// What a refund's requester learns once it waited for the refund saga.
#[derive(Debug)]
pub enum RefundOutcome {
    /// Made (or, with nothing to make, recorded): the order as it is now.
    Done(OrderView),
    /// Still under way when the wait ran out: the order with the refund
    /// pending; the saga goes on.
    Pending(OrderView),
    /// The gateway would not refund: the saga waits for an operator.
    NeedsAttention {
        order: OrderView,
        saga_id: Uuid,
        reason: String,
    },
}

impl Orders<'_> {
    /// Refunds an order (admin): `request` names the amount (all that is
    /// left when absent), the lines and whether their units come back.
    /// Waits up to `wait` for the gateway.
    pub async fn refund_order(
        &self,
        caller: Caller,
        order_id: Uuid,
        request: RefundRequest,
        wait: Duration,
    ) -> Result<RefundOutcome, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let (view, run) = self
            .execute_driving(caller, order_id, None, Intent::Refund(request))
            .await?;
        tracing::info!(order_id = %view.id, "refund recorded; asking the gateway");
        self.refund_outcome(caller, view, run, wait).await
    }

    /// Waits up to `wait` for the refund saga `run` drives, then says how
    /// the order's last refund stands.
    pub(crate) async fn refund_outcome(
        &self,
        caller: Caller,
        view: OrderView,
        run: Option<tokio::task::JoinHandle<()>>,
        wait: Duration,
    ) -> Result<RefundOutcome, AppError> {
        let Some(run) = run else {
            return Ok(RefundOutcome::Done(view));
        };
        if tokio::time::timeout(wait, run).await.is_err() {
            let view = self.get_order(caller, view.id).await?;
            return Ok(RefundOutcome::Pending(view));
        }
        let order = self.get_order(caller, view.id).await?;
        let saga = self.store.saga_of_type(REFUND.saga_type, view.id).await?;
        Ok(match saga {
            Some(saga) if saga.status() == SagaStatus::NeedsAttention => {
                RefundOutcome::NeedsAttention {
                    order,
                    saga_id: saga.saga_id,
                    reason: saga.data.progress.failure.clone().unwrap_or_default(),
                }
            }
            Some(saga) if !saga.status().is_terminal() => RefundOutcome::Pending(order),
            _ => RefundOutcome::Done(order),
        })
    }

    /// A cancel: before payment, the saga turns back (or the hold is
    /// released); a confirmed order is cancelled, every unit goes back on
    /// the shelf in the same write, and what was paid is refunded.
    pub(super) async fn plan_cancel(
        &self,
        order: &Order,
        reason: Option<String>,
    ) -> Result<Plan, AppError> {
        order.check(OrderAction::Cancel)?;
        let order_id = order.id;
        let cancel = OrderCommand::Cancel {
            reason: reason.clone(),
        };
        if order.status != Some(OrderStatus::Confirmed) {
            let (saga, drive) = self
                .sagas()
                .cancel_saga(order_id, reason.as_deref())
                .await?;
            return Ok(Plan {
                commands: vec![cancel],
                inventory: Some(InventoryChange::Release { order_id }),
                saga,
                drive,
            });
        }
        let mut plan = Plan::of(
            cancel,
            InventoryChange::restock(order_id, &order.everything_out()),
        );
        if order.refundable() > Decimal::ZERO {
            let refund = OrderCommand::RequestRefund {
                refund_id: Uuid::now_v7(),
                amount: None,
                lines: Vec::new(),
                reason: Some(commerce_domain::bounded_reason(format!(
                    "order cancelled: {}",
                    reason.as_deref().unwrap_or("no reason given")
                ))),
            };
            plan.commands.push(refund);
            self.with_refund_saga(order, &mut plan).await?;
        }
        Ok(plan)
    }

    /// A refund asked by an operator.
    pub(super) async fn plan_refund(
        &self,
        order: &Order,
        ask: &RefundRequest,
    ) -> Result<Plan, AppError> {
        let command = OrderCommand::RequestRefund {
            refund_id: Uuid::now_v7(),
            amount: ask.amount,
            lines: ask.lines.clone(),
            reason: ask.reason.clone(),
        };
        let mut plan = Plan::of(command, None);
        self.with_refund_saga(order, &mut plan).await?;
        Ok(plan)
    }

    /// Adds to `plan` the refund saga of the refund its commands request,
    /// leased to this process: a new one, or the order's earlier refund
    /// saga (finished) taken up for this refund.
    async fn with_refund_saga(&self, order: &Order, plan: &mut Plan) -> Result<(), AppError> {
        let events = handle_all(order, plan.commands.clone())?;
        let Some((refund_id, amount, restock)) = requested(&events) else {
            return Ok(());
        };
        let previous = self.store.saga_of_type(REFUND.saga_type, order.id).await?;
        if let Some(p) = &previous
            && !p.status().is_terminal()
        {
            return Err(AppError::Conflict(format!(
                "an earlier refund of this order is {} (saga {}); it must end first",
                status_str(p.status()),
                p.saga_id
            )));
        }
        let fulfilment = self.store.saga_of(order.id).await?;
        let authorization_id = fulfilment.and_then(|f| f.data.authorization_id);
        if amount > Decimal::ZERO && authorization_id.is_none() {
            return Err(AppError::Conflict(
                "the order has no captured payment to refund".into(),
            ));
        }
        let currency = order
            .currency
            .ok_or(commerce_domain::OrderError::NotPlaced)?;
        let at = now();
        let payment = PaymentIntent {
            token: String::new(),
            amount,
            currency,
        };
        let saga = SagaInstance::start(order.id, payment, &self.saga.owner, self.saga.lease, at)
            .into_refund(
                previous.as_ref(),
                authorization_id,
                RefundIntent {
                    refund_id,
                    amount,
                    restock,
                },
            );
        plan.saga = Some(SagaWrite {
            instance: saga.clone(),
            expected_revision: previous.map(|p| p.revision),
            history: vec![SagaStepRecord::new(
                saga.saga_id,
                Step::RecordRefund,
                Phase::Action,
                Outcome::Ok,
                Some(format!(
                    "refund {refund_id} of {amount} recorded on the order"
                )),
                0,
                at,
            )],
        });
        plan.drive = Some(saga);
        Ok(())
    }
}

/// The refund that `events` request: its id, amount and restock.
fn requested(events: &[OrderEvent]) -> Option<(Uuid, Decimal, Vec<Restock>)> {
    events.iter().find_map(|e| match e {
        OrderEvent::OrderRefundRequested {
            refund_id,
            amount,
            restock,
            ..
        } => Some((*refund_id, *amount, restock.clone())),
        _ => None,
    })
}
