//! Paying later. An order placed without payment holds its stock until
//! its reservation expires (then the sweeper fails it and the units go
//! back); `pay_order` starts its fulfilment saga in one write with an
//! `OrderPaymentStarted` event at the order's version, so a cancel or an
//! expiry racing the payment either comes first (and the payment is
//! refused) or sees the saga and leaves the order to it.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ports::{IdempotencyRecord, PaymentIntent, SagaInstance, StoreError};
use crate::views::OrderView;
use crate::{AppError, Caller, Orders, now};

use super::place::{check_token, reserved_with_the_order};
use super::*;
use commerce_domain::{Aggregate, Order, OrderError, OrderStatus};

impl Orders<'_> {
    /// Pays a `reserved` order with `token`: its fulfilment saga starts,
    /// driven by this process. Paying an order whose payment already
    /// started answers with that order again (`replayed`); an order that
    /// is no longer reserved (cancelled, expired) is a conflict.
    pub async fn pay_order(
        &self,
        caller: Caller,
        order_id: Uuid,
        token: String,
        idempotency_key: Option<String>,
    ) -> Result<Placed, AppError> {
        check_token(&token)?;
        let key = match idempotency_key {
            Some(key) => {
                check_idempotency_key(&key)?;
                let hash = hex::encode(Sha256::digest(format!("pay:{order_id}:{token}")));
                if let Some(placed) = self.replay_idempotent(caller, &key, &hash).await? {
                    return Ok(placed);
                }
                Some((key, hash))
            }
            None => None,
        };
        if self.payments.is_none() {
            return Err(AppError::Unavailable(anyhow::anyhow!(
                "no payment gateway is configured"
            )));
        }
        let mut attempt = 0;
        loop {
            let order = self.load_order(caller, order_id).await?;
            if let Some(placed) = self.already_paying(&order).await? {
                return Ok(placed);
            }
            let events = order.handle(OrderCommand::StartPayment)?;
            self.check_hold_is_alive(order_id).await?;
            let saga = self.payment_saga(&order, &token)?;
            let records = key
                .iter()
                .map(|(key, hash)| IdempotencyRecord {
                    customer_id: caller.subject,
                    key: key.clone(),
                    request_hash: hash.clone(),
                    order_id,
                })
                .collect();
            let write = reserved_with_the_order(&saga);
            match self
                .commit_all(order, events, records, None, Some(write))
                .await
            {
                Ok(paying) => {
                    tracing::info!(%order_id, saga_id = %saga.saga_id, "payment of a reserved order started");
                    let watch = self.settlements.watch(order_id);
                    self.sagas().spawn_saga(saga, Some(paying.clone()));
                    return Ok(Placed {
                        order: OrderView::project(&paying),
                        replayed: false,
                        settlement: Some(watch),
                    });
                }
                Err(StoreError::VersionConflict { .. } | StoreError::SagaConflict { .. })
                    if attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                }
                Err(StoreError::IdempotencyKeyTaken) => {
                    let (key, hash) = key.as_ref().expect("only a keyed write can clash");
                    return self
                        .replay_idempotent(caller, key, hash)
                        .await?
                        .ok_or_else(|| AppError::Conflict("idempotency key is being used".into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The fulfilment saga that pays `order` with `token`, leased to this
    /// process (its stock is already held).
    fn payment_saga(&self, order: &Order, token: &str) -> Result<SagaInstance, AppError> {
        let currency = order.currency.ok_or(OrderError::NotPlaced)?;
        let payment = PaymentIntent {
            token: token.to_owned(),
            amount: order.total,
            currency,
        };
        Ok(SagaInstance::start(
            order.id,
            payment,
            &self.saga.owner,
            self.saga.lease,
            now(),
        ))
    }

    /// The answer to paying an order whose payment already started (or
    /// that was placed with one): the order as it is, watched until its
    /// saga settles it; a conflict if that payment ended it (declined,
    /// cancelled).
    async fn already_paying(&self, order: &Order) -> Result<Option<Placed>, AppError> {
        if self.store.saga_of(order.id).await?.is_none() {
            return Ok(None);
        }
        if let Some(from) = order.status
            && matches!(
                from,
                OrderStatus::Cancelled | OrderStatus::Failed | OrderStatus::Rejected
            )
        {
            return Err(OrderError::IllegalTransition {
                action: commerce_domain::OrderAction::StartPayment,
                from,
            }
            .into());
        }
        let view = OrderView::project(order);
        let settlement = (!view.status.is_settled()).then(|| self.settlements.watch(order.id));
        Ok(Some(Placed {
            order: view,
            replayed: true,
            settlement,
        }))
    }

    /// Refuses to pay for a hold that has expired (the sweeper is about to
    /// fail the order and give its units back).
    async fn check_hold_is_alive(&self, order_id: Uuid) -> Result<(), AppError> {
        let at = now();
        let expired = self
            .store
            .reservations(order_id)
            .await?
            .iter()
            .any(|r| r.state == crate::ports::ReservationState::Held && r.expires_at <= at);
        if expired {
            return Err(AppError::Conflict(
                "the order's reservation has expired; place the order again".into(),
            ));
        }
        Ok(())
    }
}
