//! Commands on an existing order: change its items, cancel it, the admin
//! transitions; each decided on the order's current state and committed at
//! its version, retried when another writer or a stock claim wins a race.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::extensions::Quote;
use crate::inventory::{HOLD_CONFLICTS, InventoryStats, OUT_OF_STOCK, stock_of};
use crate::ports::{InventoryChange, Product, StoreError};
use crate::views::OrderView;
use crate::{AppError, Caller, Orders, now};

use super::place::price_lines;
use super::*;
use commerce_domain::inventory::plan_hold;
use commerce_domain::{
    Aggregate, Order, OrderAction, OrderCommand, OrderError, OrderEvent, OrderLine, OrderStatus,
    Sku,
};

impl Orders<'_> {
    /// Runs a command on an existing order. With `if_match`, the order must
    /// be at that version (else `PreconditionFailed`); without, a lost race
    /// is retried on the fresh state.
    pub(crate) async fn execute(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: Option<u64>,
        intent: Intent,
    ) -> Result<OrderView, AppError> {
        let (view, _run) = self
            .execute_driving(caller, order_id, if_match, intent)
            .await?;
        Ok(view)
    }

    /// [`execute`](Self::execute), and the run of the saga the write
    /// started or turned back, if this process drives it.
    pub(crate) async fn execute_driving(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: Option<u64>,
        intent: Intent,
    ) -> Result<(OrderView, Option<tokio::task::JoinHandle<()>>), AppError> {
        let mut attempt = 0;
        let mut stock_attempt = 0;
        loop {
            let order = self.load_order(caller, order_id).await?;
            if let Some(expected) = if_match
                && expected != order.version()
            {
                return Err(AppError::PreconditionFailed {
                    expected,
                    current: order.version(),
                });
            }
            let plan = match &intent {
                Intent::Command(OrderCommand::Cancel { reason }) => {
                    self.plan_cancel(&order, reason.clone()).await?
                }
                Intent::Command(command @ OrderCommand::Fail { .. }) => {
                    // An order whose saga runs is the saga's to end.
                    if let Some(saga) = self.store.saga_of(order_id).await?
                        && !saga.status().is_terminal()
                    {
                        return Err(AppError::Conflict(
                            "the order's payment is in progress".into(),
                        ));
                    }
                    // Leaving the order's life early gives its stock back.
                    Plan::of(command.clone(), Some(InventoryChange::Release { order_id }))
                }
                Intent::Command(command) => Plan::of(command.clone(), None),
                Intent::ChangeItems(items) => {
                    let (command, inventory) = self.change_items(&order, items).await?;
                    Plan::of(command, inventory)
                }
                Intent::Refund(ask) => self.plan_refund(&order, ask).await?,
            };
            let events = handle_all(&order, plan.commands)?;
            let skus = touched_skus(&order, plan.inventory.as_ref());
            let lost = match self
                .commit_all(order, events, Vec::new(), plan.inventory, plan.saga)
                .await
            {
                Ok(order) => {
                    self.inventory().stock_changed(&skus).await;
                    let run = plan
                        .drive
                        .and_then(|saga| self.sagas().spawn_saga(saga, Some(order.clone())));
                    return Ok((OrderView::project(&order), run));
                }
                Err(e) => e,
            };
            match lost {
                StoreError::StockConflict { .. } => {
                    self.after_stock_conflict(&mut stock_attempt).await?;
                }
                StoreError::SagaConflict { .. } if attempt < CONFLICT_RETRIES => attempt += 1,
                StoreError::VersionConflict { .. } => match if_match {
                    None if attempt < CONFLICT_RETRIES => attempt += 1,
                    None => {
                        return Err(AppError::Conflict(
                            "the order is being changed concurrently; retry".into(),
                        ));
                    }
                    Some(expected) => {
                        let current = self.load_order(caller, order_id).await?.version();
                        return Err(AppError::PreconditionFailed { expected, current });
                    }
                },
                e => return Err(e.into()),
            }
        }
    }

    /// The command that replaces an order's items with `items`, priced
    /// (lines already on the order keep their quote) and evaluated by the
    /// plugins, and the stock change it needs: a reserved order holds the
    /// new lines instead of the old, claiming only the difference.
    async fn change_items(
        &self,
        order: &Order,
        items: &[RequestedLine],
    ) -> Result<(OrderCommand, Option<InventoryChange>), AppError> {
        // Check the transition first, so that changing a closed order is
        // a 409 even if its new lines would not price.
        order.check(OrderAction::ChangeItems)?;
        if let Some(saga) = self.store.saga_of(order.id).await?
            && !saga.status().is_terminal()
        {
            return Err(AppError::Conflict(
                "the order's payment is in progress; its items can no longer change (cancel it instead)".into(),
            ));
        }
        let currency = order.currency.ok_or(OrderError::NotPlaced)?;
        let status = order.status.ok_or(OrderError::NotPlaced)?;
        let skus: Vec<Sku> = items
            .iter()
            .map(|i| i.sku.clone())
            .chain(order.lines.iter().map(|l| l.sku.clone()))
            .collect();
        let products = self.inventory().load_products(&skus).await?;
        let lines = price_lines(&products, currency, items, &order.lines)?;
        let evaluation = self
            .evaluate(Quote {
                order_id: order.id,
                customer_id: order.customer_id,
                status,
                currency,
                lines: lines.clone(),
            })
            .await?;
        let inventory = if status == OrderStatus::Reserved {
            Some(self.plan_hold(
                order.id,
                &held_by(&order.lines),
                &held_by(&lines),
                &products,
            )?)
        } else {
            None
        };
        let command = OrderCommand::ChangeItems {
            lines,
            adjustments: evaluation.adjustments,
            plugins: evaluation.plugins,
        };
        Ok((command, inventory))
    }

    /// Plans the claims that take `order_id` from holding `held` to
    /// holding `wanted`, on the stock in `products`; a shortage refuses
    /// the whole write.
    pub(super) fn plan_hold(
        &self,
        order_id: Uuid,
        held: &BTreeMap<Sku, i64>,
        wanted: &BTreeMap<Sku, i64>,
        products: &HashMap<Sku, Product>,
    ) -> Result<InventoryChange, AppError> {
        InventoryStats::bump(&self.inventory_stats.hold_attempts);
        match plan_hold(held, wanted, &stock_of(products)) {
            Ok(claims) => Ok(InventoryChange::Hold {
                order_id,
                claims,
                expires_at: now()
                    + chrono::Duration::from_std(self.inventory_settings.reservation_ttl)
                        .unwrap_or(chrono::Duration::MAX),
            }),
            Err(short) => Err(self.out_of_stock(short)),
        }
    }

    /// The refusal of an order short of `short`, counted.
    fn out_of_stock(&self, short: Vec<commerce_domain::inventory::Shortage>) -> AppError {
        InventoryStats::count(&self.inventory_stats.out_of_stock, OUT_OF_STOCK);
        AppError::OutOfStock(short)
    }

    /// After a stock claim failed, on the stock read again: `OutOfStock`
    /// if the units `wanted` are gone (sold out, not raced: nothing to
    /// retry, and the buyer should hear it without a pause).
    pub(super) fn still_in_stock(
        &self,
        wanted: &BTreeMap<Sku, i64>,
        products: &HashMap<Sku, Product>,
    ) -> Result<(), AppError> {
        plan_hold(&BTreeMap::new(), wanted, &stock_of(products))
            .map(drop)
            .map_err(|short| self.out_of_stock(short))
    }

    /// A stock claim lost a race: pause (bounded, jittered) before the
    /// next attempt, or give up after the last.
    pub(super) async fn after_stock_conflict(&self, attempt: &mut u32) -> Result<(), AppError> {
        InventoryStats::count(&self.inventory_stats.hold_conflicts, HOLD_CONFLICTS);
        if *attempt + 1 >= self.inventory_settings.max_attempts {
            InventoryStats::bump(&self.inventory_stats.exhausted);
            return Err(AppError::Conflict(
                "the stock of this order is in high demand and kept changing; retry".into(),
            ));
        }
        tokio::time::sleep(self.inventory_settings.backoff(*attempt)).await;
        *attempt += 1;
        Ok(())
    }

    /// Replaces the lines of an open order at version `if_match`. Lines
    /// already on the order keep the price they were quoted; new SKUs are
    /// priced from the catalog now.
    pub async fn change_order_items(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: u64,
        items: Vec<RequestedLine>,
    ) -> Result<OrderView, AppError> {
        // The request's own shape (how many lines, each SKU once) first,
        // before the order is even read.
        commerce_domain::order::check_skus(items.iter().map(|i| &i.sku))?;
        let view = self
            .execute(caller, order_id, Some(if_match), Intent::ChangeItems(items))
            .await?;
        tracing::info!(order_id = %view.id, version = view.version, "order items changed");
        Ok(view)
    }

    /// Cancels an order (before it ships). A confirmed order's units go
    /// back on the shelf and its payment is refunded: the answer waits up
    /// to `wait` for the refund.
    pub async fn cancel_order(
        &self,
        caller: Caller,
        order_id: Uuid,
        if_match: Option<u64>,
        reason: Option<String>,
        wait: std::time::Duration,
    ) -> Result<OrderView, AppError> {
        let (view, run) = self
            .execute_driving(
                caller,
                order_id,
                if_match,
                Intent::Command(OrderCommand::Cancel { reason }),
            )
            .await?;
        tracing::info!(order_id = %view.id, "order cancelled");
        if view.refunded.is_zero() && run.is_some() {
            return Ok(match self.refund_outcome(caller, view, run, wait).await? {
                super::RefundOutcome::Done(v)
                | super::RefundOutcome::Pending(v)
                | super::RefundOutcome::NeedsAttention { order: v, .. } => v,
            });
        }
        Ok(view)
    }

    /// Ships or delivers an order (admin).
    pub async fn transition_order(
        &self,
        caller: Caller,
        order_id: Uuid,
        transition: AdminTransition,
    ) -> Result<OrderView, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let command = match transition {
            AdminTransition::Ship => OrderCommand::Ship,
            AdminTransition::Deliver => OrderCommand::Deliver,
        };
        let view = self
            .execute(caller, order_id, None, Intent::Command(command))
            .await?;
        tracing::info!(order_id = %view.id, status = %view.status, "order transitioned by admin");
        Ok(view)
    }
}

/// Runs several commands on an order in turn, as one decision: the events
/// of all of them, or the first refusal.
pub(super) fn handle_all(
    order: &Order,
    commands: impl IntoIterator<Item = OrderCommand>,
) -> Result<Vec<OrderEvent>, OrderError> {
    let mut state = order.clone();
    let mut all = Vec::new();
    let at = now();
    for command in commands {
        let events = state.handle(command)?;
        for event in &events {
            state.apply(event, at);
        }
        all.extend(events);
    }
    Ok(all)
}

/// Units per SKU that holding `lines` takes.
pub(super) fn held_by(lines: &[OrderLine]) -> BTreeMap<Sku, i64> {
    lines
        .iter()
        .map(|l| (l.sku.clone(), i64::from(l.quantity.get())))
        .collect()
}

/// The SKUs whose stock `inventory` changes on `order`: the claimed ones
/// of a hold, the restocked ones, every line's on a release or commit.
fn touched_skus(order: &Order, inventory: Option<&InventoryChange>) -> Vec<Sku> {
    match inventory {
        Some(InventoryChange::Hold { claims, .. }) => {
            claims.iter().map(|c| c.sku.clone()).collect()
        }
        Some(InventoryChange::Restock { units, .. }) => {
            units.iter().map(|(sku, _)| sku.clone()).collect()
        }
        Some(_) => order.lines.iter().map(|l| l.sku.clone()).collect(),
        None => Vec::new(),
    }
}
