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

use std::borrow::Cow;

use config_json as json;

wit_bindgen::generate!({ world: "validation", path: "../../wit" });

use suuupra::commerce::host;

#[derive(Debug, PartialEq, Eq)]
struct Config<'a> {
    max_quantity_per_sku: u32,
    blocked_skus: Vec<Cow<'a, str>>,
}

impl<'a> Config<'a> {
    /// `{"max_quantity_per_sku": u32, "blocked_skus": [string]}`, both
    /// optional (100, nothing blocked), nothing else.
    fn parse(input: &'a str) -> Result<Self, String> {
        let mut p = json::Parser::new(input);
        let mut config = Config {
            max_quantity_per_sku: 100,
            blocked_skus: Vec::new(),
        };
        let parsed = (|| {
            p.record(&["max_quantity_per_sku", "blocked_skus"], |p, field| {
                if field == 0 {
                    config.max_quantity_per_sku = p.u32()?;
                } else {
                    p.list(|p| {
                        config.blocked_skus.push(p.string()?);
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            p.end()
        })();
        match parsed {
            Ok(()) => Ok(config),
            Err(e) => Err(format!("invalid config: {}", e.describe(input))),
        }
    }
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
        if config.blocked_skus.iter().any(|sku| *sku == line.sku) {
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
        let input = host::config();
        match Config::parse(&input) {
            Ok(config) => check(&config, &order),
            Err(message) => vec![Violation {
                code: "invalid-config".into(),
                message,
                line: None,
            }],
        }
    }
}

export!(QuantityRules);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        for ok in ["{}", " { } ", "[]"] {
            let config = Config::parse(ok).unwrap();
            assert_eq!(config.max_quantity_per_sku, 100, "{ok}");
            assert!(config.blocked_skus.is_empty(), "{ok}");
        }
    }

    #[test]
    fn fields() {
        let config = Config::parse(
            r#"{"blocked_skus": ["RECALLED-1", "A\u0042"], "max_quantity_per_sku": 5}"#,
        )
        .unwrap();
        assert_eq!(config.max_quantity_per_sku, 5);
        assert_eq!(config.blocked_skus, ["RECALLED-1", "AB"]);
        let config = Config::parse(r#"[7, ["X"]]"#).unwrap();
        assert_eq!(config.max_quantity_per_sku, 7);
        assert_eq!(config.blocked_skus, ["X"]);
    }

    #[test]
    fn invalid() {
        for bad in [
            "{not json",
            "",
            "null",
            r#"{"max_quantity_per_sku": -1}"#,
            r#"{"max_quantity_per_sku": 1.5}"#,
            r#"{"max_quantity_per_sku": null}"#,
            r#"{"max_quantity_per_sku": "5"}"#,
            r#"{"blocked_skus": "X"}"#,
            r#"{"blocked_skus": [1]}"#,
            r#"{"blocked_skus": null}"#,
            r#"{"other": 1}"#,
            r#"{"max_quantity_per_sku": 1, "max_quantity_per_sku": 2}"#,
            r#"[1, [], 3]"#,
            r#"{} {}"#,
        ] {
            let e = Config::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid config: "), "{bad}: {e}");
        }
    }
}
