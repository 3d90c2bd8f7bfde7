//! The saga hooks around a step: plugins that see the order before and
//! after each step's action and may veto it. What a veto does (turn the
//! saga back, or nothing past the pivot) is decided here; running the
//! plugins is the extensions port's.

use crate::AppError;
use crate::Sagas;
use crate::extensions::{HookContext, HookOutcome, Quote};
use commerce_domain::saga::{Outcome, Phase, Step};
use commerce_domain::{Order, OrderStatus};

use super::SagaInstance;
use super::round::Round;

impl Sagas<'_> {
    /// Runs the saga hooks of one phase of a step. `Some(reason)`: stop
    /// (a veto, or a hook that failed under a fail-closed policy). Past the
    /// pivot nothing can be undone, so a veto there is recorded and ignored.
    pub(super) async fn hooks(
        &self,
        saga: &SagaInstance,
        order: &Order,
        step: Step,
        before: bool,
        out: &mut Round,
    ) -> Result<Option<String>, AppError> {
        if !self.plugins.has_saga_hooks_at(step.as_str(), before) {
            return Ok(None);
        }
        let context = HookContext {
            saga_type: saga.saga_type.clone(),
            step: step.as_str().to_owned(),
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
        let phase = Phase::hook(before);
        let verdict = match self.plugins.run_hooks(context).await {
            Ok(HookOutcome::Continue) => return Ok(None),
            Ok(HookOutcome::Veto { plugin, reason }) => format!("vetoed by {plugin}: {reason}"),
            Err(failed) => failed.to_string(),
        };
        if saga.data.captured || out.saga.data.captured {
            out.record(
                step,
                phase,
                Outcome::Ignored,
                Some(format!("{verdict} (past the capture)")),
            );
            return Ok(None);
        }
        out.record(step, phase, Outcome::Veto, Some(verdict.clone()));
        Ok(Some(verdict))
    }
}
