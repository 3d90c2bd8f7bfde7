//! {{name}}: a pricing plugin (world `pricing`). Edit `rule`.
//!
//! As generated: 1% off a cart of 10 units or more, as one discount on
//! the whole cart.

wit_bindgen::generate!({ world: "pricing", path: "wit" });

use suuupra::commerce::types::{AdjustmentKind, Money};

/// The units from which the discount applies, and its percent.
const MIN_UNITS: u32 = 10;
const PERCENT: i64 = 1;

fn rule(cart: &Cart) -> Vec<Adjustment> {
    let units: u32 = cart.lines.iter().map(|l| l.quantity).sum();
    let amount = cart.subtotal.amount.max(0) * PERCENT / 100;
    if units < MIN_UNITS || amount == 0 {
        return Vec::new();
    }
    vec![Adjustment {
        label: format!("{PERCENT}% off {MIN_UNITS} units or more"),
        kind: AdjustmentKind::Discount,
        amount: Money {
            amount,
            currency: cart.currency.clone(),
        },
        line: None,
    }]
}

struct Plugin;

impl Guest for Plugin {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        Ok(rule(&cart))
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use suuupra::commerce::types::{Customer, LineItem};

    fn cart(quantity: u32, unit: i64) -> Cart {
        let money = |amount| Money {
            amount,
            currency: "EUR".into(),
        };
        Cart {
            currency: "EUR".into(),
            lines: vec![LineItem {
                sku: "MUG".into(),
                name: "Mug".into(),
                quantity,
                unit_price: money(unit),
                line_total: money(unit * i64::from(quantity)),
                attributes: vec![],
            }],
            subtotal: money(unit * i64::from(quantity)),
            customer: Customer {
                id: "7d444840-9dc0-11d1-b245-5ffdce74fad2".into(),
                attributes: vec![],
            },
            attributes: vec![],
        }
    }

    #[test]
    fn one_percent_off_from_ten_units() {
        assert!(rule(&cart(9, 1000)).is_empty());
        let adjustments = rule(&cart(10, 1000));
        assert_eq!(adjustments.len(), 1);
        assert_eq!(adjustments[0].amount.amount, 100);
    }
}
