//! Refunds and restocking, decided on the order: how much may still be
//! given back, which units may go back on the shelf, and what a refund
//! request becomes.
//!
//! A refund is two events around the gateway's call: requested (the
//! intent, with the amount and the units to restock) and then refunded
//! or failed (the outcome). One refund is pending at a time, so the sum
//! of refunds never passes what was captured.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    MAX_REASON_LEN, Order, OrderCommand, OrderError, OrderEvent, OrderStatus, bounded_reason,
};
use crate::product::{Quantity, Sku};

/// A line of a refund as an operator asks for it: units of a SKU of the
/// order, and whether they go back on the shelf (a return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    pub sku: Sku,
    pub quantity: Quantity,
    #[serde(default)]
    pub restock: bool,
}

/// Units of a SKU put back on hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restock {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// The refund an order waits for the gateway on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRefund {
    pub refund_id: Uuid,
    pub amount: Decimal,
    pub restock: Vec<Restock>,
    pub reason: Option<String>,
}

/// What a refund request asks, as the order records it.
pub(super) struct PlannedRefund {
    pub amount: Decimal,
    pub restock: Vec<Restock>,
}

impl Order {
    /// The event of a refund command: asked, made or given up.
    pub(super) fn refund_event(&self, command: OrderCommand) -> Result<OrderEvent, OrderError> {
        Ok(match command {
            OrderCommand::RequestRefund {
                refund_id,
                amount,
                lines,
                reason,
            } => {
                let planned = self.plan_refund(amount, &lines, reason.as_deref())?;
                OrderEvent::OrderRefundRequested {
                    refund_id,
                    amount: planned.amount,
                    lines,
                    restock: planned.restock,
                    reason,
                }
            }
            OrderCommand::RecordRefund { refund_id } => {
                let pending = self.pending(refund_id)?;
                OrderEvent::OrderRefunded {
                    reason: pending.reason.clone(),
                    refund_id: Some(refund_id),
                    amount: Some(pending.amount),
                    restocked: pending.restock.clone(),
                }
            }
            OrderCommand::AbandonRefund { refund_id, reason } => {
                self.pending(refund_id)?;
                OrderEvent::OrderRefundFailed {
                    refund_id,
                    reason: bounded_reason(reason),
                }
            }
            other => unreachable!("not a refund command: {other:?}"),
        })
    }

    /// Applies a refund event; the status it moves the order to, if any.
    pub(super) fn apply_refund(&mut self, event: &OrderEvent) -> Option<OrderStatus> {
        match event {
            OrderEvent::OrderRefundRequested {
                refund_id,
                amount,
                restock,
                reason,
                ..
            } => {
                self.pending_refund = Some(PendingRefund {
                    refund_id: *refund_id,
                    amount: *amount,
                    restock: restock.clone(),
                    reason: reason.clone(),
                });
                None
            }
            OrderEvent::OrderRefunded {
                reason,
                amount,
                restocked,
                ..
            } => {
                // An event of an older version refunded a paid order that
                // was never confirmed: what it paid is what it got back.
                if amount.is_none() && self.captured.is_zero() {
                    self.captured = self.total;
                }
                self.refund_made(*amount, restocked);
                let current = self.status.unwrap_or(OrderStatus::Confirmed);
                if !self.fully_refunded() || current == OrderStatus::Cancelled {
                    return None;
                }
                self.status_reason = reason.clone();
                Some(OrderStatus::Refunded)
            }
            OrderEvent::OrderRefundFailed { .. } => {
                self.pending_refund = None;
                None
            }
            _ => None,
        }
    }

    /// What may still be refunded: captured minus refunded.
    pub fn refundable(&self) -> Decimal {
        (self.captured - self.refunded).max(Decimal::ZERO)
    }

    /// Units of `sku` that left the shelf for this order and have not
    /// come back.
    pub fn restockable(&self, sku: &Sku) -> u32 {
        if !self.stock_committed {
            return 0;
        }
        let sold = self
            .lines
            .iter()
            .find(|l| &l.sku == sku)
            .map_or(0, |l| l.quantity.get());
        sold.saturating_sub(self.restocked.get(sku).copied().unwrap_or(0))
    }

    /// Every unit still out: what a cancel of a confirmed order, or a
    /// full refund of one that never shipped, puts back.
    pub fn everything_out(&self) -> Vec<Restock> {
        self.lines
            .iter()
            .filter_map(|l| {
                let units = self.restockable(&l.sku);
                Quantity::parse(i64::from(units))
                    .ok()
                    .map(|quantity| Restock {
                        sku: l.sku.clone(),
                        quantity,
                    })
            })
            .collect()
    }

    /// Checks a refund request: the order was paid for (or its stock left
    /// the shelf), nothing else is pending, the amount fits what is left
    /// and at the currency's scale, the lines are the order's.
    pub(super) fn plan_refund(
        &self,
        amount: Option<Decimal>,
        lines: &[RefundLine],
        reason: Option<&str>,
    ) -> Result<PlannedRefund, OrderError> {
        let status = self.status.ok_or(OrderError::NotPlaced)?;
        if !self.stock_committed {
            return Err(OrderError::IllegalTransition {
                action: super::OrderAction::Refund,
                from: status,
            });
        }
        if self.pending_refund.is_some() {
            return Err(OrderError::RefundInProgress);
        }
        if reason.is_some_and(|r| r.chars().count() > MAX_REASON_LEN) {
            return Err(OrderError::ReasonTooLong);
        }
        let currency = self.currency.ok_or(OrderError::NotPlaced)?;
        let refundable = self.refundable();
        let amount = match amount {
            Some(a) => currency.amount(a)?,
            None => refundable,
        };
        if amount > refundable {
            return Err(OrderError::RefundTooLarge { refundable });
        }
        let mut asked: BTreeMap<&Sku, (u32, bool)> = BTreeMap::new();
        for line in lines {
            let Some(ordered) = self.lines.iter().find(|l| l.sku == line.sku) else {
                return Err(OrderError::NotOnOrder(line.sku.clone()));
            };
            if asked
                .insert(&line.sku, (line.quantity.get(), line.restock))
                .is_some()
            {
                return Err(OrderError::DuplicateSku(line.sku.clone()));
            }
            let limit = if line.restock {
                self.restockable(&line.sku)
            } else {
                ordered.quantity.get()
            };
            if line.quantity.get() > limit {
                return Err(OrderError::TooManyUnits {
                    sku: line.sku.clone(),
                    most: limit,
                });
            }
        }
        // A full refund of an order that never shipped ends it: every
        // unit still out goes back, marked or not.
        let ends_unshipped = status == OrderStatus::Confirmed && amount == refundable;
        let restock = if ends_unshipped && refundable > Decimal::ZERO {
            self.everything_out()
        } else {
            lines
                .iter()
                .filter(|l| l.restock)
                .map(|l| Restock {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect()
        };
        if amount.is_zero() && restock.is_empty() {
            return Err(OrderError::NothingToRefund);
        }
        Ok(PlannedRefund { amount, restock })
    }

    /// Applies a refund made at the gateway (`amount` `None`: an event of
    /// an older version, a refund of everything captured).
    pub(super) fn refund_made(&mut self, amount: Option<Decimal>, restocked: &[Restock]) {
        let amount = amount.unwrap_or_else(|| self.refundable());
        self.refunded += amount;
        self.restock(restocked);
        self.pending_refund = None;
    }

    pub(super) fn restock(&mut self, restocked: &[Restock]) {
        for r in restocked {
            *self.restocked.entry(r.sku.clone()).or_default() += r.quantity.get();
        }
    }

    /// Whether the refunds so far give back everything captured.
    pub(super) fn fully_refunded(&self) -> bool {
        self.captured > Decimal::ZERO && self.refunded >= self.captured
    }
}
