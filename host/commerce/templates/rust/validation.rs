//! {{name}}: a validation plugin (world `validation`). Edit `rule`.
//!
//! As generated: refuses an order with more than 50 units on one line.

wit_bindgen::generate!({ world: "validation", path: "wit" });

/// The most units one line may hold.
const MAX_UNITS: u32 = 50;

fn rule(order: &Order) -> Vec<Violation> {
    order
        .lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.quantity > MAX_UNITS)
        .map(|(index, line)| Violation {
            code: "too-many-units".into(),
            message: format!("at most {MAX_UNITS} units of {} per order", line.sku),
            line: u32::try_from(index).ok(),
        })
        .collect()
}

struct Plugin;

impl Guest for Plugin {
    fn validate(order: Order) -> Vec<Violation> {
        rule(&order)
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use suuupra::commerce::types::{Customer, LineItem, Money};

    fn order(quantity: u32) -> Order {
        let money = |amount| Money {
            amount,
            currency: "EUR".into(),
        };
        Order {
            id: "0190b6a2-0000-7000-8000-000000000000".into(),
            status: "pending".into(),
            currency: "EUR".into(),
            lines: vec![LineItem {
                sku: "MUG".into(),
                name: "Mug".into(),
                quantity,
                unit_price: money(100),
                line_total: money(100 * i64::from(quantity)),
                attributes: vec![],
            }],
            subtotal: money(100 * i64::from(quantity)),
            total: money(100 * i64::from(quantity)),
            customer: Customer {
                id: "7d444840-9dc0-11d1-b245-5ffdce74fad2".into(),
                attributes: vec![],
            },
            attributes: vec![],
        }
    }

    #[test]
    fn more_than_fifty_units_on_a_line_is_refused() {
        assert!(rule(&order(50)).is_empty());
        let violations = rule(&order(51));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].code, "too-many-units");
        assert_eq!(violations[0].line, Some(0));
    }
}
