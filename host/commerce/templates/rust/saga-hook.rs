//! {{name}}: a saga hook (world `saga-hook`). Edit `rule`.
//!
//! As generated: vetoes the payment (before `authorize-payment`) of an
//! order whose total is above 10,000.00 in its currency's minor unit.
//! Install it with `--listen authorize-payment:before` so that it is
//! called only there.

wit_bindgen::generate!({ world: "saga-hook", path: "wit" });

use suuupra::commerce::types::Phase;

/// The largest total paid without review, in minor units.
const MAX_TOTAL: i64 = 1_000_000;

fn rule(context: &StepContext) -> Decision {
    let before_payment =
        context.step == "authorize-payment" && matches!(context.phase, Phase::Before);
    if before_payment && context.order.total.amount > MAX_TOTAL {
        Decision::Veto(format!("a total above {MAX_TOTAL} needs review"))
    } else {
        Decision::Continue
    }
}

struct Plugin;

impl Guest for Plugin {
    fn on_step(context: StepContext) -> Decision {
        rule(&context)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use suuupra::commerce::types::{Customer, Money, Order};

    fn context(total: i64) -> StepContext {
        let money = |amount| Money {
            amount,
            currency: "EUR".into(),
        };
        StepContext {
            saga_type: "order-fulfilment".into(),
            step: "authorize-payment".into(),
            phase: Phase::Before,
            order: Order {
                id: "0190b6a2-0000-7000-8000-000000000000".into(),
                status: "reserved".into(),
                currency: "EUR".into(),
                lines: vec![],
                subtotal: money(total),
                total: money(total),
                customer: Customer {
                    id: "7d444840-9dc0-11d1-b245-5ffdce74fad2".into(),
                    attributes: vec![],
                },
                attributes: vec![],
            },
        }
    }

    #[test]
    fn big_totals_wait_for_review() {
        assert!(matches!(rule(&context(MAX_TOTAL)), Decision::Continue));
        assert!(matches!(rule(&context(MAX_TOTAL + 1)), Decision::Veto(_)));
    }
}
