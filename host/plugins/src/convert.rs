//! Conversions between the application's types and the WIT types, with the
//! size accounting that enforces the input and output limits.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::bindings::types as wit;
use commerce_app::extensions::{HookContext, Quote, Violation};
use commerce_domain::pricing::apply_adjustments;
use commerce_domain::{Adjustment, AdjustmentKind, Currency, OrderLine};

/// An amount in minor units, as WIT carries it.
pub fn money(amount: Decimal, currency: Currency) -> wit::Money {
    let mut scaled = amount;
    scaled.rescale(currency.minor_digits());
    wit::Money {
        amount: scaled.mantissa().to_i64().unwrap_or(i64::MAX),
        currency: currency.code().to_owned(),
    }
}

fn line_item(line: &OrderLine, currency: Currency) -> wit::LineItem {
    wit::LineItem {
        sku: line.sku.to_string(),
        name: line.name.clone(),
        quantity: line.quantity.get(),
        unit_price: money(line.unit_price, currency),
        line_total: money(
            line.unit_price * Decimal::from(line.quantity.get()),
            currency,
        ),
        attributes: vec![],
    }
}

/// The quote's total once `adjustments` apply (never below zero).
pub fn priced_total(quote: &Quote, adjustments: &[Adjustment]) -> Decimal {
    apply_adjustments(quote.currency, subtotal(quote), adjustments)
}

fn subtotal(quote: &Quote) -> Decimal {
    quote
        .currency
        .total(quote.lines.iter().map(|l| (l.unit_price, l.quantity.get())))
        .unwrap_or_default()
}

/// The cart a pricing plugin sees.
pub fn cart(quote: &Quote) -> wit::Cart {
    wit::Cart {
        currency: quote.currency.code().to_owned(),
        lines: quote
            .lines
            .iter()
            .map(|l| line_item(l, quote.currency))
            .collect(),
        subtotal: money(subtotal(quote), quote.currency),
        customer: wit::Customer {
            id: quote.customer_id.to_string(),
            attributes: vec![],
        },
        attributes: vec![],
    }
}

/// The order a validation plugin or a hook sees, priced.
pub fn order(quote: &Quote, total: Decimal) -> wit::Order {
    let cart = cart(quote);
    wit::Order {
        id: quote.order_id.to_string(),
        status: quote.status.as_str().to_owned(),
        currency: cart.currency,
        lines: cart.lines,
        subtotal: cart.subtotal,
        total: money(total, quote.currency),
        customer: cart.customer,
        attributes: cart.attributes,
    }
}

pub fn step_context(context: &HookContext, total: Decimal) -> wit::StepContext {
    wit::StepContext {
        saga_type: context.saga_type.clone(),
        step: context.step.clone(),
        phase: if context.before {
            wit::Phase::Before
        } else {
            wit::Phase::After
        },
        order: order(&context.quote, total),
    }
}

/// Bytes an input occupies, roughly as the canonical ABI lays it out.
pub fn order_size(order: &wit::Order) -> usize {
    64 + order.id.len() + lines_size(&order.lines)
}

/// [`order_size`] (and [`cart_size`]: ids are UUIDs either way) of what
/// `quote` becomes, without building it.
pub fn quote_order_size(quote: &Quote) -> usize {
    const UUID_TEXT: usize = 36;
    64 + UUID_TEXT
        + quote
            .lines
            .iter()
            .map(|l| 64 + l.sku.as_str().len() + l.name.len())
            .sum::<usize>()
}

pub fn cart_size(cart: &wit::Cart) -> usize {
    64 + cart.customer.id.len() + lines_size(&cart.lines)
}

fn lines_size(lines: &[wit::LineItem]) -> usize {
    lines
        .iter()
        .map(|l| {
            64 + l.sku.len()
                + l.name.len()
                + l.attributes
                    .iter()
                    .map(|a| 16 + a.key.len() + a.value.len())
                    .sum::<usize>()
        })
        .sum()
}

pub fn adjustments_size(adjustments: &[wit::Adjustment]) -> usize {
    adjustments
        .iter()
        .map(|a| 32 + a.label.len() + a.amount.currency.len())
        .sum()
}

pub fn violations_size(violations: &[wit::Violation]) -> usize {
    violations
        .iter()
        .map(|v| 16 + v.code.len() + v.message.len())
        .sum()
}

/// Whether a plugin's adjustment fits a cart of `lines` lines in
/// `currency`: the same currency, an amount the currency can hold (not
/// negative), a line the cart has. Checked inside the call, so that an
/// answer the host cannot take is the call's failure (counted, captured in
/// the run log) like any other.
pub fn check_adjustment(
    a: &wit::Adjustment,
    currency: Currency,
    lines: usize,
) -> Result<(), String> {
    if a.amount.currency != currency.code() {
        return Err(format!(
            "adjustment {:?} is in {}, the cart is in {}",
            a.label,
            a.amount.currency,
            currency.code()
        ));
    }
    if a.amount.amount < 0 {
        return Err(format!("adjustment {:?} has a negative amount", a.label));
    }
    let amount = Decimal::new(a.amount.amount, currency.minor_digits());
    let checked = Adjustment {
        plugin: String::new(),
        label: String::new(),
        kind: AdjustmentKind::Discount,
        amount,
        line: a.line,
    };
    commerce_domain::pricing::check_adjustment(currency, lines, checked)
        .map(drop)
        .map_err(|e| format!("adjustment {:?}: {e}", a.label))
}

/// A plugin's adjustment, converted (checked by [`check_adjustment`]).
pub fn adjustment(plugin: &str, a: wit::Adjustment, currency: Currency) -> Adjustment {
    Adjustment {
        plugin: plugin.to_owned(),
        label: a.label,
        kind: match a.kind {
            wit::AdjustmentKind::Discount => AdjustmentKind::Discount,
            wit::AdjustmentKind::Fee => AdjustmentKind::Fee,
            wit::AdjustmentKind::Tax => AdjustmentKind::Tax,
        },
        amount: Decimal::new(a.amount.amount, currency.minor_digits()),
        line: a.line,
    }
}

pub fn violation(plugin: &str, v: wit::Violation) -> Violation {
    Violation {
        plugin: plugin.to_owned(),
        code: v.code,
        message: v.message,
        line: v.line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_domain::{OrderStatus, Quantity, Sku};
    use uuid::Uuid;

    #[test]
    fn the_size_of_a_quote_is_the_size_of_its_cart_and_order() {
        let quote = Quote {
            order_id: Uuid::new_v4(),
            customer_id: Uuid::new_v4(),
            status: OrderStatus::Pending,
            currency: Currency::parse("EUR").unwrap(),
            lines: (0..7)
                .map(|i| OrderLine {
                    sku: Sku::parse(&format!("SKU-{i}")).unwrap(),
                    name: "x".repeat(i * 10),
                    quantity: Quantity::parse(1).unwrap(),
                    unit_price: Decimal::new(199, 2),
                })
                .collect(),
        };
        let size = quote_order_size(&quote);
        assert_eq!(size, cart_size(&cart(&quote)));
        assert_eq!(size, order_size(&order(&quote, Decimal::ONE)));
    }

    #[test]
    fn an_adjustment_the_host_cannot_take_is_refused() {
        let eur = Currency::parse("EUR").unwrap();
        let adjustment = |amount: i64, currency: &str, line: Option<u32>| wit::Adjustment {
            label: "x".into(),
            kind: wit::AdjustmentKind::Discount,
            amount: wit::Money {
                amount,
                currency: currency.into(),
            },
            line,
        };
        assert!(check_adjustment(&adjustment(150, "EUR", Some(1)), eur, 2).is_ok());
        assert!(check_adjustment(&adjustment(150, "EUR", None), eur, 0).is_ok());
        for (bad, why) in [
            (adjustment(150, "USD", None), "is in USD"),
            (adjustment(-1, "EUR", None), "negative"),
            (adjustment(150, "EUR", Some(2)), "line"),
            (adjustment(i64::MAX, "EUR", None), "out of range"),
        ] {
            let error = check_adjustment(&bad, eur, 2).unwrap_err();
            assert!(error.contains(why), "{error}");
        }
    }
}
