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

use serde::Deserialize;

wit_bindgen::generate!({ world: "pricing", path: "../../wit" });

use suuupra::commerce::host;
use suuupra::commerce::types::{AdjustmentKind, LineItem, Money};

/// One step of the discount ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier {
    /// The smallest quantity of one line that earns this tier.
    min_quantity: u32,
    /// The discount, in percent of the line total (0 to 100).
    percent: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_tiers")]
    tiers: Vec<Tier>,
}

fn default_tiers() -> Vec<Tier> {
    vec![
        Tier {
            min_quantity: 10,
            percent: 10,
        },
        Tier {
            min_quantity: 50,
            percent: 20,
        },
    ]
}

impl Config {
    fn parse(json: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))?;
        if let Some(tier) = config.tiers.iter().find(|t| t.percent > 100) {
            return Err(format!(
                "invalid config: percent {} is above 100",
                tier.percent
            ));
        }
        Ok(config)
    }

    /// The highest tier a quantity reaches, if any.
    fn tier_for(&self, quantity: u32) -> Option<Tier> {
        self.tiers
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

fn discount_for(config: &Config, index: usize, line: &LineItem) -> Option<Adjustment> {
    let tier = config.tier_for(line.quantity)?;
    Some(Adjustment {
        label: format!("{}% off {} or more", tier.percent, tier.min_quantity),
        kind: AdjustmentKind::Discount,
        amount: Money {
            amount: percent_of(line.line_total.amount, tier.percent),
            currency: line.line_total.currency.clone(),
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
            .iter()
            .enumerate()
            .filter_map(|(index, line)| discount_for(&config, index, line))
            .collect())
    }
}

export!(BulkDiscount);
