//! One round of a saga, and its write: what a round decided (the saga's
//! next state, its history, the order commands and the stock change it
//! produces), written in one transaction; and, when that write loses a
//! race, the saga reloaded with what the run learned at the gateway
//! merged in.
//!
//! Nothing here calls the gateway or the hooks: the actions
//! ([`super::actions`], [`super::compensations`]) fill a round, the
//! runner ([`super::runner`]) decides what to do with it.

use crate::Sagas;
use crate::ports::{InventoryChange, StoreError};
use crate::{AppError, now};
use commerce_domain::saga::{FULFILMENT, Next, Outcome, Phase, SagaStatus, Step, StepName};
use commerce_domain::{Aggregate, Order, OrderCommand};

use super::{SagaInstance, SagaStepRecord, SagaWrite, chrono_duration};

/// What one round decided, to be written in one transaction.
pub(super) struct Round {
    pub(super) saga: SagaInstance,
    pub(super) history: Vec<SagaStepRecord>,
    /// The order commands this round produces, in order. `required`: the
    /// write is only right if the order takes it (a payment, a
    /// confirmation); otherwise it is recorded only where the order can
    /// still take it (failing an order the customer already cancelled
    /// records nothing on the order).
    pub(super) orders: Vec<(OrderCommand, bool)>,
    pub(super) inventory: Option<InventoryChange>,
    /// A step's action succeeded in this round (hooks included), so the
    /// local steps that follow may join its write.
    pub(super) advanced: bool,
    /// The full cause of a gateway call's failure in this round (the
    /// gateway's own words, addresses, attempts), which the reason told to
    /// the customer leaves out: for the saga's history and `last_error`
    /// (the admin view) and the logs.
    pub(super) cause: Option<String>,
}

/// What this run learned at the gateway that the store may not know yet.
#[derive(Debug, Default, Clone)]
pub(super) struct Learned {
    pub(super) authorization_id: Option<String>,
    pub(super) captured: bool,
}

impl Round {
    pub(super) fn of(saga: &SagaInstance) -> Round {
        Round {
            saga: saga.clone(),
            history: Vec::new(),
            orders: Vec::new(),
            inventory: None,
            advanced: false,
            cause: None,
        }
    }

    /// Keeps the full cause of a failed gateway call (after any earlier
    /// one of this round).
    pub(super) fn add_cause(&mut self, cause: String) {
        self.cause = Some(match self.cause.take() {
            Some(earlier) => format!("{earlier}; then {cause}"),
            None => cause,
        });
    }

    /// The full cause of this round's failure: what a gateway call said,
    /// or else `reason` itself.
    pub(super) fn take_cause(&mut self, reason: &str) -> String {
        self.cause.take().unwrap_or_else(|| reason.to_owned())
    }

    pub(super) fn record(
        &mut self,
        name: impl Into<StepName>,
        phase: Phase,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        self.history.push(SagaStepRecord::new(
            self.saga.saga_id,
            name,
            phase,
            outcome,
            detail,
            self.saga.attempts,
            now(),
        ));
    }

    /// Why the saga turned back, or `otherwise` if it did not say.
    pub(super) fn failure_or(&self, otherwise: &str) -> String {
        self.saga
            .data
            .progress
            .failure
            .clone()
            .unwrap_or_else(|| otherwise.into())
    }

    /// Whether this round confirms the order.
    pub(super) fn confirms(&self) -> bool {
        self.orders
            .iter()
            .any(|(c, required)| *required && matches!(c, OrderCommand::Confirm))
    }

    /// The pivot, when this round's step succeeded right before it: the
    /// two are written together (a crash in between re-runs both with
    /// their idempotency keys). `None` if the round carries a stock change
    /// already, since a write carries one.
    pub(super) fn leads_to_pivot(&self) -> Option<Step> {
        if !self.advanced || self.saga.lease_owner.is_none() || self.inventory.is_some() {
            return None;
        }
        let def = self.saga.definition();
        match self.saga.data.progress.next(def) {
            Next::Act(step) if def.step(step).is_some_and(|s| s.pivot) => Some(step),
            _ => None,
        }
    }

    /// This round, then `next`, which was planned on this round's saga:
    /// written together as one.
    pub(super) fn then(mut self, mut next: Round) -> Round {
        self.history.append(&mut next.history);
        self.orders.append(&mut next.orders);
        Round {
            saga: next.saga,
            history: self.history,
            orders: self.orders,
            inventory: next.inventory.or(self.inventory),
            advanced: next.advanced,
            cause: next.cause.or(self.cause),
        }
    }

    /// The current step acted (its effect stands, whatever follows).
    pub(super) fn step_done(&mut self) {
        let def = self.saga.definition();
        self.saga.data.progress = self.saga.data.progress.clone().acted(def);
    }

    /// The current step acted and its hooks agreed: the saga goes on.
    pub(super) fn step_succeeded(&mut self) {
        self.step_done();
        self.saga.attempts = 0;
        self.advanced = true;
    }

    /// The current compensation is done (or had nothing to undo).
    pub(super) fn compensation_done(&mut self) {
        let def = self.saga.definition();
        self.saga.data.progress = self.saga.data.progress.clone().compensated(def);
    }

    /// The current step failed for good: the saga turns back (or, past the
    /// pivot, waits for an operator).
    /// The step failed: the history and `last_error` keep the full cause,
    /// the saga's failure (which the order's reason and a refused refund's
    /// answer show the customer) keeps `reason`.
    pub(super) fn fail(mut self, step: Step, reason: String) -> Round {
        let cause = self.take_cause(&reason);
        self.record(step, Phase::Action, Outcome::Failed, Some(cause.clone()));
        self.saga.data.last_error = Some(cause);
        let def = self.saga.definition();
        self.saga.data.progress = self.saga.data.progress.clone().failed(def, reason);
        self.saga.attempts = 0;
        self.advanced = false;
        self
    }
}

impl Sagas<'_> {
    /// Writes a round: the saga at its next revision with a renewed lease
    /// (unless it waits for a retry or is done), its history, and the
    /// order event and stock change, in one transaction.
    pub(super) async fn write_round(
        &self,
        read: &SagaInstance,
        order: &mut Order,
        mut out: Round,
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
        // A fulfilment saga that ends leaves no order in processing: if
        // nothing in this round ended the order, it fails here (a no-op
        // for an order already confirmed or ended).
        if status.is_terminal() && out.saga.saga_type == FULFILMENT.saga_type {
            let reason = out.failure_or("the order's saga ended");
            out.orders.push((OrderCommand::Fail { reason }, false));
            if out.inventory.is_none() && order.check(commerce_domain::OrderAction::Fail).is_ok() {
                out.inventory = Some(InventoryChange::Release { order_id: order.id });
            }
        }
        let write = SagaWrite {
            instance: out.saga.clone(),
            expected_revision: Some(read.revision),
            history: out.history,
        };
        let events = order_events(read, order, out.orders, at)?;
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
    pub(super) async fn reconcile(
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
            let (mut merged, changed) = merge_learned(&fresh, learned);
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
                    fresh.current(),
                    Phase::Reconcile,
                    Outcome::Ok,
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
                // A shutdown that released the leases while this write
                // was under way: the lease it took goes back too.
                Ok(()) if self.is_draining() => {
                    self.release_saga_leases().await;
                    return Ok(None);
                }
                Ok(()) => return Ok(self.holds_lease(&merged).then_some(merged)),
                Err(StoreError::SagaConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!("saga {saga_id} keeps changing")))
    }
}

/// The order events a round's commands produce, each command seeing the
/// order as the ones before it left it; `None` when there are none.
fn order_events(
    read: &SagaInstance,
    order: &Order,
    commands: Vec<(OrderCommand, bool)>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Vec<commerce_domain::OrderEvent>>, StoreError> {
    let mut events: Option<Vec<_>> = None;
    let mut scratch = order.clone();
    for (command, required) in commands {
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
    Ok(events)
}

/// The stored saga's successor with what this run learned merged in, and
/// whether that changed anything.
fn merge_learned(fresh: &SagaInstance, learned: &Learned) -> (SagaInstance, bool) {
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
            .acted_late(fresh.definition(), Step::AuthorizePayment);
    }
    (merged, changed)
}
