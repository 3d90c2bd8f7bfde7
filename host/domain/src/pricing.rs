//! Price adjustments proposed by pricing plugins, and how they combine
//! into an order total.
//!
//! Adjustments apply in the order given (the host sorts plugins by
//! priority, then name); a discount never takes the running total below
//! zero, whatever plugins propose.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::money::{Currency, MoneyError};

/// Whether an adjustment lowers or raises the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentKind {
    Discount,
    Fee,
    Tax,
}

/// A change to an order's price, and the plugin that proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Adjustment {
    /// Name of the pricing plugin.
    pub plugin: String,
    pub label: String,
    pub kind: AdjustmentKind,
    /// Zero or positive, at the currency's scale; `kind` gives the sign.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "2.50")]
    pub amount: Decimal,
    /// Index of the order line it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// Why an adjustment is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdjustmentError {
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("adjustment refers to line {line}, but there are {lines} lines")]
    NoSuchLine { line: u32, lines: usize },
}

/// Checks an adjustment against an order of `lines` lines in `currency`,
/// bringing its amount to the currency's scale.
pub fn check_adjustment(
    currency: Currency,
    lines: usize,
    mut adjustment: Adjustment,
) -> Result<Adjustment, AdjustmentError> {
    adjustment.amount = currency.amount(adjustment.amount)?;
    if let Some(line) = adjustment.line
        && line as usize >= lines
    {
        return Err(AdjustmentError::NoSuchLine { line, lines });
    }
    Ok(adjustment)
}

/// The total after applying `adjustments` in order to `subtotal`; never
/// below zero.
pub fn apply_adjustments(
    currency: Currency,
    subtotal: Decimal,
    adjustments: &[Adjustment],
) -> Decimal {
    let mut total = subtotal;
    for a in adjustments {
        total = match a.kind {
            AdjustmentKind::Discount => (total - a.amount).max(Decimal::ZERO),
            AdjustmentKind::Fee | AdjustmentKind::Tax => total + a.amount,
        };
    }
    total.rescale(currency.minor_digits());
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn adj(kind: AdjustmentKind, amount: &str) -> Adjustment {
        Adjustment {
            plugin: "p".into(),
            label: "l".into(),
            kind,
            amount: amount.parse().unwrap(),
            line: None,
        }
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn discounts_fees_and_taxes_combine_in_order() {
        let total = apply_adjustments(
            eur(),
            "100.00".parse().unwrap(),
            &[
                adj(AdjustmentKind::Discount, "10.00"),
                adj(AdjustmentKind::Tax, "18.00"),
                adj(AdjustmentKind::Fee, "4.99"),
            ],
        );
        assert_eq!(total.to_string(), "112.99");
    }

    #[test]
    fn a_total_never_goes_below_zero() {
        let total = apply_adjustments(
            eur(),
            "10.00".parse().unwrap(),
            &[
                adj(AdjustmentKind::Discount, "25.00"),
                adj(AdjustmentKind::Fee, "1.00"),
            ],
        );
        assert_eq!(total.to_string(), "1.00");
    }

    #[test]
    fn adjustments_are_checked() {
        assert!(check_adjustment(eur(), 1, adj(AdjustmentKind::Fee, "-1")).is_err());
        assert!(check_adjustment(eur(), 1, adj(AdjustmentKind::Fee, "0.001")).is_err());
        let mut on_line = adj(AdjustmentKind::Discount, "1");
        on_line.line = Some(1);
        assert_eq!(
            check_adjustment(eur(), 1, on_line.clone()),
            Err(AdjustmentError::NoSuchLine { line: 1, lines: 1 })
        );
        assert_eq!(
            check_adjustment(eur(), 2, on_line)
                .unwrap()
                .amount
                .to_string(),
            "1.00"
        );
    }

    proptest! {
        #[test]
        fn total_is_never_negative(subtotal in 0i64..1_000_000, adjustments in proptest::collection::vec((0u8..3, 0i64..2_000_000), 0..10)) {
            let adjustments: Vec<Adjustment> = adjustments
                .into_iter()
                .map(|(k, cents)| {
                    let kind = [AdjustmentKind::Discount, AdjustmentKind::Fee, AdjustmentKind::Tax][k as usize];
                    Adjustment { plugin: "p".into(), label: "l".into(), kind, amount: Decimal::new(cents, 2), line: None }
                })
                .collect();
            let total = apply_adjustments(eur(), Decimal::new(subtotal, 2), &adjustments);
            prop_assert!(total >= Decimal::ZERO);
            prop_assert_eq!(total.scale(), 2);
        }
    }
}
