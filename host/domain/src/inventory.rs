//! Inventory as the domain sees it: how much of each SKU an order wants to
//! hold, and the claims that move stock from "available" to "reserved".
//!
//! The rule that nothing is oversold is enforced twice: here, a plan is
//! only made when every SKU has enough available stock (so an order holds
//! all its lines or none), and in the store, where each claim is a
//! conditional update on the product's `version` and on availability, so a
//! plan made on stale numbers fails instead of overselling.

use std::collections::BTreeMap;

use serde::Serialize;

use super::product::Sku;

/// The stock of one SKU as last read: what is free and which version of
/// the product row that number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    /// `on_hand - reserved`.
    pub available: i64,
    /// The product row's version when it was read.
    pub version: i64,
}

/// One change of what an order holds of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockClaim {
    pub sku: Sku,
    /// Units the order holds once the claim is applied (0: none).
    pub quantity: i64,
    /// Change of the product's `reserved`: positive takes stock, negative
    /// gives it back.
    pub delta: i64,
    /// A positive delta applies only if the product is still at this
    /// version (the optimistic lock).
    pub expected_version: i64,
}

/// A SKU without enough free stock for what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Shortage {
    #[schema(value_type = String)]
    pub sku: Sku,
    /// Units the order asked for.
    pub requested: i64,
    /// Units it could have had (free stock plus what it already holds).
    pub available: i64,
}

/// Plans the claims that take an order from holding `held` to holding
/// `wanted` (units per SKU), given the stock last read. Every SKU of
/// `wanted` must appear in `stock`.
///
/// All or nothing: if any SKU is short, no claim is planned and every
/// short SKU is reported, sorted by SKU. Claims come sorted by SKU too, so
/// that concurrent writers lock product rows in one order.
pub fn plan_hold(
    held: &BTreeMap<Sku, i64>,
    wanted: &BTreeMap<Sku, i64>,
    stock: &BTreeMap<Sku, Stock>,
) -> Result<Vec<StockClaim>, Vec<Shortage>> {
    let mut claims = Vec::new();
    let mut short = Vec::new();
    let skus: std::collections::BTreeSet<&Sku> = held.keys().chain(wanted.keys()).collect();
    for sku in skus {
        let before = held.get(sku).copied().unwrap_or(0);
        let after = wanted.get(sku).copied().unwrap_or(0);
        let delta = after - before;
        if delta == 0 {
            continue;
        }
        let current = stock.get(sku).copied().unwrap_or(Stock {
            available: 0,
            version: 0,
        });
        if delta > 0 && current.available < delta {
            short.push(Shortage {
                sku: sku.clone(),
                requested: after,
                available: (current.available + before).max(0),
            });
            continue;
        }
        claims.push(StockClaim {
            sku: sku.clone(),
            quantity: after,
            delta,
            expected_version: current.version,
        });
    }
    if short.is_empty() {
        Ok(claims)
    } else {
        Err(short)
    }
}

/// Why a manual stock adjustment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdjustError {
    #[error("a stock adjustment needs a non-zero delta")]
    ZeroDelta,
    #[error("on hand would be {on_hand_after}, below the {reserved} units reserved for orders")]
    BelowReserved { on_hand_after: i64, reserved: i64 },
    #[error("on hand would be {on_hand_after}, above the limit of {max}")]
    AboveMax { on_hand_after: i64, max: i64 },
}

/// The new `on_hand` after adding `delta` to a product with `on_hand` and
/// `reserved`, or why not: stock never goes below what orders hold.
pub fn adjust_on_hand(
    on_hand: i64,
    reserved: i64,
    delta: i64,
    max: i64,
) -> Result<i64, AdjustError> {
    if delta == 0 {
        return Err(AdjustError::ZeroDelta);
    }
    let after = on_hand.saturating_add(delta);
    if after < reserved {
        return Err(AdjustError::BelowReserved {
            on_hand_after: after,
            reserved,
        });
    }
    if after > max {
        return Err(AdjustError::AboveMax {
            on_hand_after: after,
            max,
        });
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn map<V: Copy>(items: &[(&str, V)]) -> BTreeMap<Sku, V> {
        items.iter().map(|(s, v)| (sku(s), *v)).collect()
    }

    fn stock(available: i64, version: i64) -> Stock {
        Stock { available, version }
    }

    #[test]
    fn a_new_order_claims_every_line_at_the_version_it_read() {
        let claims = plan_hold(
            &BTreeMap::new(),
            &map(&[("B", 2), ("A", 1)]),
            &map(&[("A", stock(5, 3)), ("B", stock(2, 9))]),
        )
        .unwrap();
        assert_eq!(
            claims,
            vec![
                StockClaim {
                    sku: sku("A"),
                    quantity: 1,
                    delta: 1,
                    expected_version: 3
                },
                StockClaim {
                    sku: sku("B"),
                    quantity: 2,
                    delta: 2,
                    expected_version: 9
                },
            ]
        );
    }

    #[test]
    fn one_short_sku_plans_nothing_and_every_short_sku_is_reported() {
        let short = plan_hold(
            &BTreeMap::new(),
            &map(&[("A", 1), ("B", 3), ("C", 4)]),
            &map(&[("A", stock(5, 1)), ("B", stock(2, 1)), ("C", stock(0, 1))]),
        )
        .unwrap_err();
        assert_eq!(
            short,
            vec![
                Shortage {
                    sku: sku("B"),
                    requested: 3,
                    available: 2
                },
                Shortage {
                    sku: sku("C"),
                    requested: 4,
                    available: 0
                },
            ]
        );
    }

    #[test]
    fn changing_a_held_order_claims_only_the_difference() {
        // Holds A:2, B:1; wants A:3, C:1 (B dropped).
        let claims = plan_hold(
            &map(&[("A", 2), ("B", 1)]),
            &map(&[("A", 3), ("C", 1)]),
            &map(&[("A", stock(1, 4)), ("B", stock(0, 2)), ("C", stock(1, 7))]),
        )
        .unwrap();
        assert_eq!(
            claims,
            vec![
                StockClaim {
                    sku: sku("A"),
                    quantity: 3,
                    delta: 1,
                    expected_version: 4
                },
                StockClaim {
                    sku: sku("B"),
                    quantity: 0,
                    delta: -1,
                    expected_version: 2
                },
                StockClaim {
                    sku: sku("C"),
                    quantity: 1,
                    delta: 1,
                    expected_version: 7
                },
            ]
        );
    }

    #[test]
    fn what_an_order_holds_counts_as_available_to_it() {
        let short = plan_hold(
            &map(&[("A", 2)]),
            &map(&[("A", 5)]),
            &map(&[("A", stock(1, 1))]),
        )
        .unwrap_err();
        assert_eq!(
            short,
            vec![Shortage {
                sku: sku("A"),
                requested: 5,
                available: 3
            }]
        );
        // Giving units back never needs stock, and an unchanged line claims nothing.
        assert_eq!(
            plan_hold(
                &map(&[("A", 2), ("B", 1)]),
                &map(&[("A", 1), ("B", 1)]),
                &map(&[("A", stock(0, 1)), ("B", stock(0, 1))])
            )
            .unwrap(),
            vec![StockClaim {
                sku: sku("A"),
                quantity: 1,
                delta: -1,
                expected_version: 1
            }]
        );
    }

    #[test]
    fn adjustments_keep_stock_at_or_above_what_is_reserved() {
        assert_eq!(adjust_on_hand(10, 4, -6, 100), Ok(4));
        assert_eq!(
            adjust_on_hand(10, 4, -7, 100),
            Err(AdjustError::BelowReserved {
                on_hand_after: 3,
                reserved: 4
            })
        );
        assert_eq!(adjust_on_hand(10, 0, 0, 100), Err(AdjustError::ZeroDelta));
        assert_eq!(
            adjust_on_hand(10, 0, 91, 100),
            Err(AdjustError::AboveMax {
                on_hand_after: 101,
                max: 100
            })
        );
        assert!(adjust_on_hand(10, 0, i64::MIN, 100).is_err());
    }
}
