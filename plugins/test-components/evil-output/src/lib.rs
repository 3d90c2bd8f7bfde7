//! Test component (world `pricing`): `price` returns `Ok` with far more than
//! the host accepts as an answer: `count` fee adjustments of amount 0, each
//! with a `label_len`-character label.
//!
//! Configuration: `{"count": 2000, "label_len": 200}` (the defaults; `{}`
//! works). The defaults give about 400 KB of labels, 20 times the host's
//! 20 KiB output cap, for about 2.5 million units of fuel and 1 MiB of
//! memory: the call gets as far as returning, and it is the output limit
//! that must stop it. Much larger floods die of another limit first:
//! 20000 labels take about 24 million units of fuel (wasmtime charges
//! copies per byte), and 100000 need about 30 MiB of guest memory.

use serde_json::Value;

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

use suuupra::commerce::host;
use suuupra::commerce::types::{AdjustmentKind, Money};

fn setting(config: &Value, key: &str, default: usize) -> usize {
    config
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(default)
}

struct EvilOutput;

impl Guest for EvilOutput {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        let config: Value = serde_json::from_str(&host::config()).unwrap_or(Value::Null);
        let count = setting(&config, "count", 2_000);
        let label_len = setting(&config, "label_len", 200);
        // One label, copied: each copy is an allocation and a memory.copy,
        // so the flood costs little fuel.
        let label: String = "flood "
            .chars()
            .chain(std::iter::repeat('x'))
            .take(label_len)
            .collect();
        Ok((0..count)
            .map(|_| Adjustment {
                label: label.clone(),
                kind: AdjustmentKind::Fee,
                amount: Money {
                    amount: 0,
                    currency: cart.currency.clone(),
                },
                line: None,
            })
            .collect())
    }
}

export!(EvilOutput);
