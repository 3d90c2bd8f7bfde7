//! # quantity-rules: a validation plugin (world `validation`)
//!
//! Refuses orders that buy too much of one SKU, or any of a blocked SKU.
//!
//! Configuration (the JSON given at install; `{}` means the defaults):
//!
//! ```json
//! {"max_quantity_per_sku": 100, "blocked_skus": ["RECALLED-1"]}
//! ```
//!
//! Defaults: at most 100 of a SKU, nothing blocked. Each offending line gives
//! a violation pointing at it: `max-quantity` when its quantity is above the
//! maximum, `blocked-sku` when its SKU is blocked (a line can give both).
//! A configuration that does not parse, or has an unknown field, gives a
//! single `invalid-config` violation, so the order is refused: validation
//! fails closed.

use serde::Deserialize;

wit_bindgen::generate!({ world: "validation", path: "../../wit" });

use suuupra::commerce::host;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_quantity")]
    max_quantity_per_sku: u32,
    #[serde(default)]
    blocked_skus: Vec<String>,
}

fn default_max_quantity() -> u32 {
    100
}

fn check(config: &Config, order: &Order) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (index, line) in order.lines.iter().enumerate() {
        let at = u32::try_from(index).ok();
        if line.quantity > config.max_quantity_per_sku {
            violations.push(Violation {
                code: "max-quantity".into(),
                message: format!(
                    "{}: quantity {} is above the maximum of {} per order",
                    line.sku, line.quantity, config.max_quantity_per_sku
                ),
                line: at,
            });
        }
        if config.blocked_skus.contains(&line.sku) {
            violations.push(Violation {
                code: "blocked-sku".into(),
                message: format!("{} cannot be ordered", line.sku),
                line: at,
            });
        }
    }
    violations
}

struct QuantityRules;

impl Guest for QuantityRules {
    fn validate(order: Order) -> Vec<Violation> {
        match serde_json::from_str::<Config>(&host::config()) {
            Ok(config) => check(&config, &order),
            Err(e) => vec![Violation {
                code: "invalid-config".into(),
                message: format!("invalid config: {e}"),
                line: None,
            }],
        }
    }
}

export!(QuantityRules);
