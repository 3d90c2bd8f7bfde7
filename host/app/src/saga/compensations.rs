//! The compensations: one function per compensation, chosen in one place
//! ([`Sagas::compensate`]), plus, for each, what it can do without
//! calling out, so it joins the write of the round before it
//! ([`compensate_here`]); and what a failed compensation round does
//! (retry later, then an operator).

use std::sync::Arc;

use crate::Sagas;
use crate::ports::{InventoryChange, PaymentGateway};
use crate::{AppError, now};
use commerce_domain::OrderCommand;
use commerce_domain::saga::{Compensation, Outcome, Phase, Step};

use super::actions::{Failure, Turn, authorize_request, idempotency_key};
use super::round::{Learned, Round};
use super::{SagaInstance, chrono_duration};

/// What a compensation did.
pub(super) enum Undone {
    /// It undid its step's effect: its failed rounds are forgotten.
    Done,
    /// There was nothing to undo.
    Nothing,
}

/// Does `compensation` inside `out` if it needs no call out, to be
/// written with it; `false` if it must run in a round of its own.
pub(super) fn compensate_here(compensation: Compensation, out: &mut Round) -> bool {
    let done = match compensation {
        Compensation::ReleaseInventory => release_inventory_here(out),
        Compensation::VoidPayment => void_payment_here(out),
    };
    if done {
        out.compensation_done();
    }
    done
}

impl Sagas<'_> {
    /// The action of each compensation: the one place a compensation is
    /// tied to what it does. `Err`: this round failed, for this reason.
    async fn compensate(
        &self,
        compensation: Compensation,
        turn: &mut Turn<'_>,
    ) -> Result<Undone, Failure> {
        match compensation {
            Compensation::ReleaseInventory => {
                release_inventory(turn.out);
                Ok(Undone::Done)
            }
            Compensation::VoidPayment => self.void_payment(turn).await,
        }
    }

    /// Runs a compensation in a round of its own.
    pub(super) async fn undo(
        &self,
        saga: &SagaInstance,
        compensation: Compensation,
        gateway: &Arc<dyn PaymentGateway>,
        learned: &mut Learned,
    ) -> Result<Round, AppError> {
        let mut out = Round::of(saga);
        let mut turn = Turn {
            saga,
            gateway,
            learned,
            out: &mut out,
        };
        match self.compensate(compensation, &mut turn).await {
            Ok(undone) => {
                out.compensation_done();
                if let Undone::Done = undone {
                    out.saga.attempts = 0;
                }
                Ok(out)
            }
            Err(reason) => Ok(self.compensation_failed(out, compensation, reason)),
        }
    }

    /// A compensation round failed: try again later (any replica), or,
    /// after the last round, hand the saga to an operator.
    fn compensation_failed(
        &self,
        mut out: Round,
        compensation: Compensation,
        reason: String,
    ) -> Round {
        let name = compensation.as_str();
        let reason = out.take_cause(&reason);
        out.saga.attempts += 1;
        out.saga.data.last_error = Some(reason.clone());
        if out.saga.attempts as u32 >= self.saga.compensation_rounds {
            out.record(
                compensation,
                Phase::Compensation,
                Outcome::Stuck,
                Some(reason.clone()),
            );
            out.saga.data.progress = out
                .saga
                .data
                .progress
                .clone()
                .stuck(format!("{name} keeps failing: {reason}"));
            tracing::error!(saga_id = %out.saga.saga_id, order_id = %out.saga.correlation_id, compensation = name, %reason, "saga needs attention: a compensation keeps failing");
        } else {
            out.record(
                compensation,
                Phase::Compensation,
                Outcome::Failed,
                Some(reason),
            );
            let wait = self.saga.backoff(out.saga.attempts as u32);
            out.saga.next_attempt_at = now() + chrono_duration(wait);
            out.saga.lease_owner = None;
            out.saga.lease_until = None;
        }
        out
    }

    /// Voids the authorization (the one recorded, the one this run made,
    /// or one a dead run made without recording it); a capture that raced
    /// a cancel is given back instead.
    async fn void_payment(&self, turn: &mut Turn<'_>) -> Result<Undone, Failure> {
        let name = Compensation::VoidPayment;
        let saga = turn.saga;
        if saga.data.payment.amount.is_zero() {
            // Nothing was asked of the gateway for a zero total.
            skip_void(turn.out);
            return Ok(Undone::Nothing);
        }
        let known = saga
            .data
            .authorization_id
            .clone()
            .or_else(|| turn.learned.authorization_id.clone());
        let auth = match known {
            Some(auth) => auth,
            None => match self
                .find_authorization(saga, turn.gateway, turn.out)
                .await?
            {
                Some(auth) => {
                    turn.learned.authorization_id = Some(auth.clone());
                    turn.out.saga.data.authorization_id = Some(auth.clone());
                    auth
                }
                None => {
                    skip_void(turn.out);
                    return Ok(Undone::Nothing);
                }
            },
        };
        let captured = saga.data.captured || turn.learned.captured;
        let gateway = turn.gateway;
        let result = if captured {
            self.give_back(saga, gateway, &auth, turn.out).await
        } else {
            let key = idempotency_key(saga, name.as_str());
            match self
                .with_retries(turn.out, name.into(), "void", || gateway.void(&auth, &key))
                .await
            {
                // A run that captured and died before recording it (a
                // replica stopped or killed, a lease lost): the gateway
                // refuses to void what it captured, so the money goes
                // back as a refund, with the saga's refund key.
                Err(void) if void.refused => self
                    .give_back(saga, gateway, &auth, turn.out)
                    .await
                    .map_err(|failed| super::actions::CallFailed {
                        reason: format!("{}; then {}", void.reason, failed.reason),
                        refused: failed.refused,
                    }),
                other => other,
            }
        };
        let a = result.map_err(|failed| failed.reason)?;
        turn.out.record(
            name,
            Phase::Compensation,
            Outcome::Ok,
            Some(format!("authorization {} {:?}", a.id, a.status).to_lowercase()),
        );
        Ok(Undone::Done)
    }

    /// Refunds what the saga captured, with its refund key.
    async fn give_back(
        &self,
        saga: &SagaInstance,
        gateway: &Arc<dyn PaymentGateway>,
        auth: &str,
        out: &mut Round,
    ) -> Result<crate::ports::Authorization, super::actions::CallFailed> {
        let key = idempotency_key(saga, "refund");
        let amount = saga.data.payment.amount;
        self.with_retries(out, Compensation::VoidPayment.into(), "refund", || {
            gateway.refund(auth, amount, &key)
        })
        .await
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
        out: &mut Round,
    ) -> Result<Option<String>, Failure> {
        let key = idempotency_key(saga, Step::AuthorizePayment.as_str());
        let request = authorize_request(saga);
        let name = Compensation::VoidPayment;
        match self
            .with_retries(out, name.into(), "authorize", || {
                gateway.authorize(request.clone(), &key)
            })
            .await
        {
            Ok(auth) => {
                out.record(
                    name,
                    Phase::Compensation,
                    Outcome::Found,
                    Some(format!("authorization {} (not recorded before)", auth.id)),
                );
                Ok(Some(auth.id))
            }
            Err(failed) if failed.refused => Ok(None),
            Err(failed) => Err(failed.reason),
        }
    }
}

/// Releases the order's stock and fails the order with the saga's
/// failure (where it can still fail): the last compensation.
fn release_inventory(out: &mut Round) {
    let reason = out.failure_or("saga compensated");
    out.record(
        Compensation::ReleaseInventory,
        Phase::Compensation,
        Outcome::Ok,
        None,
    );
    out.orders.push((OrderCommand::Fail { reason }, false));
    out.inventory = Some(InventoryChange::Release {
        order_id: out.saga.correlation_id,
    });
}

/// The release only touches our database: it joins any round that does
/// not change the stock already (a write carries one change).
fn release_inventory_here(out: &mut Round) -> bool {
    if out.inventory.is_some() {
        return false;
    }
    release_inventory(out);
    true
}

/// A void with no authorization known to the round has nothing to void.
fn void_payment_here(out: &mut Round) -> bool {
    if out.saga.data.authorization_id.is_some() {
        return false;
    }
    skip_void(out);
    true
}

/// The void with nothing to void: no authorization was made.
fn skip_void(out: &mut Round) {
    out.record(
        Compensation::VoidPayment,
        Phase::Compensation,
        Outcome::Skipped,
        Some("no authorization was made".into()),
    );
}
