//! # bulk-discount: a pricing plugin (world `pricing`)
//!
//! A tiered percentage discount on every cart line bought in bulk.
//!
//! Configuration (the JSON given at install; `{}` means the defaults):
//!
//! ```json
//! {"tiers": [{"min_quantity": 10, "percent": 10}, {"min_quantity": 50, "percent": 20}]}
//! ```
//!
//! For each line whose quantity reaches at least one tier, the highest tier
//! reached (the one with the largest `min_quantity`) gives one `discount`
//! adjustment on that line: `floor(line_total * percent / 100)` in the line's
//! currency, labelled e.g. `10% off 10 or more`. Lines below every tier get
//! nothing. A configuration that does not parse, has an unknown field, or a
//! percent above 100 makes every call return `Err("invalid config: ...")`,
//! and the host's failure policy for pricing decides what happens.

use config_json as json;

wit_bindgen::generate!({ world: "pricing", path: "../../wit" });

use suuupra::commerce::host;
use suuupra::commerce::types::{AdjustmentKind, LineItem, Money};

/// One step of the discount ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tier {
    /// The smallest quantity of one line that earns this tier.
    min_quantity: u32,
    /// The discount, in percent of the line total (0 to 100).
    percent: u32,
}

#[derive(Debug, PartialEq, Eq)]
struct Config {
    /// `None`: the default tiers (the field was absent).
    tiers: Option<Vec<Tier>>,
}

const DEFAULT_TIERS: [Tier; 2] = [
    Tier {
        min_quantity: 10,
        percent: 10,
    },
    Tier {
        min_quantity: 50,
        percent: 20,
    },
];

/// `{"min_quantity": u32, "percent": u32}`, both required, nothing else.
fn parse_tier(p: &mut json::Parser) -> json::Result<Tier> {
    let mut tier = Tier {
        min_quantity: 0,
        percent: 0,
    };
    let seen = p.record(&["min_quantity", "percent"], |p, field| {
        let value = p.u32()?;
        if field == 0 {
            tier.min_quantity = value;
        } else {
            tier.percent = value;
        }
        Ok(())
    })?;
    p.require(seen, 0b11)?;
    Ok(tier)
}

impl Config {
    fn parse(input: &str) -> Result<Self, String> {
        let mut p = json::Parser::new(input);
        let parsed = (|| {
            let mut tiers = None;
            p.record(&["tiers"], |p, _| {
                let mut list = Vec::new();
                p.list(|p| {
                    list.push(parse_tier(p)?);
                    Ok(())
                })?;
                tiers = Some(list);
                Ok(())
            })?;
            p.end()?;
            Ok(Config { tiers })
        })();
        let config =
            parsed.map_err(|e: json::Error| format!("invalid config: {}", e.describe(input)))?;
        if let Some(tier) = config.tiers().iter().find(|t| t.percent > 100) {
            return Err(format!(
                "invalid config: percent {} is above 100",
                tier.percent
            ));
        }
        Ok(config)
    }

    fn tiers(&self) -> &[Tier] {
        self.tiers.as_deref().unwrap_or(&DEFAULT_TIERS)
    }

    /// The highest tier a quantity reaches, if any.
    fn tier_for(&self, quantity: u32) -> Option<Tier> {
        self.tiers()
            .iter()
            .filter(|t| quantity >= t.min_quantity)
            .max_by_key(|t| (t.min_quantity, t.percent))
            .copied()
    }
}

/// `floor(amount * percent / 100)`, never negative, without overflow.
fn percent_of(amount: i64, percent: u32) -> i64 {
    let amount = i128::from(amount.max(0));
    let discount = (amount * i128::from(percent)).div_euclid(100);
    i64::try_from(discount).unwrap_or(i64::MAX)
}

fn discount_for(config: &Config, index: usize, line: LineItem) -> Option<Adjustment> {
    let tier = config.tier_for(line.quantity)?;
    Some(Adjustment {
        label: format!("{}% off {} or more", tier.percent, tier.min_quantity),
        kind: AdjustmentKind::Discount,
        amount: Money {
            amount: percent_of(line.line_total.amount, tier.percent),
            currency: line.line_total.currency,
        },
        line: u32::try_from(index).ok(),
    })
}

struct BulkDiscount;

impl Guest for BulkDiscount {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        let config = Config::parse(&host::config())?;
        Ok(cart
            .lines
            .into_iter()
            .enumerate()
            .filter_map(|(index, line)| discount_for(&config, index, line))
            .collect())
    }
}

export!(BulkDiscount);

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers(json: &str) -> Result<Vec<Tier>, String> {
        Config::parse(json).map(|c| c.tiers().to_vec())
    }

    fn t(min_quantity: u32, percent: u32) -> Tier {
        Tier {
            min_quantity,
            percent,
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(tiers("{}").unwrap(), DEFAULT_TIERS);
        assert_eq!(tiers(" \n{ }\t").unwrap(), DEFAULT_TIERS);
        assert_eq!(tiers("[]").unwrap(), DEFAULT_TIERS);
        assert_eq!(tiers(r#"{"tiers": []}"#).unwrap(), []);
    }

    #[test]
    fn tiers_parse() {
        assert_eq!(
            tiers(
                r#"{"tiers":[{"min_quantity":10,"percent":10},{"min_quantity":50,"percent":20}]}"#
            )
            .unwrap(),
            [t(10, 10), t(50, 20)]
        );
        assert_eq!(
            tiers("{ \"tiers\" : [ { \"percent\" : 5 , \"min_quantity\" : 3 } ] }").unwrap(),
            [t(3, 5)]
        );
        assert_eq!(tiers(r#"{"tiers":[[3,100]]}"#).unwrap(), [t(3, 100)]);
        assert_eq!(tiers(r#"{"ti\u0065rs":[]}"#).unwrap(), []);
    }

    #[test]
    fn invalid() {
        for bad in [
            r#"{"tiers": "many"}"#,
            "{not json",
            "",
            "null",
            "[1]",
            "42",
            r#"{"tiers": null}"#,
            r#"{"tiers": [], "x": 1}"#,
            r#"{"tiers": [], "tiers": []}"#,
            r#"{"tiers": [{"min_quantity": 10}]}"#,
            r#"{"tiers": [{"min_quantity": 10, "percent": 1.5}]}"#,
            r#"{"tiers": [{"min_quantity": -1, "percent": 1}]}"#,
            r#"{"tiers": [{"min_quantity": 1, "percent": 1, "x": 0}]}"#,
            r#"{"tiers": [{"min_quantity": 1, "percent": 101}]}"#,
            r#"{"tiers": [[1, 2, 3]]}"#,
            r#"{"tiers": [[1]]}"#,
            r#"{"tiers": [],}"#,
            r#"{"tiers": [{"min_quantity": 1, "percent": 1},]}"#,
            r#"{} x"#,
            r#"{}}"#,
        ] {
            let e = tiers(bad).unwrap_err();
            assert!(e.starts_with("invalid config: "), "{bad}: {e}");
        }
        assert_eq!(
            tiers(r#"{"tiers": [{"min_quantity": 1, "percent": 101}]}"#).unwrap_err(),
            "invalid config: percent 101 is above 100"
        );
    }

    #[test]
    fn highest_tier_wins() {
        let config = Config::parse("{}").unwrap();
        assert_eq!(config.tier_for(9), None);
        assert_eq!(config.tier_for(10), Some(t(10, 10)));
        assert_eq!(config.tier_for(50), Some(t(50, 20)));
        assert_eq!(percent_of(1999, 10), 199);
        assert_eq!(percent_of(-5, 10), 0);
    }
}
