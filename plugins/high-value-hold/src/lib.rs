//! # high-value-hold: a saga hook (world `saga-hook`)
//!
//! Stops a saga before a chosen step when the order's total is above a
//! threshold, so that a person can review it; the saga compensates.
//!
//! Configuration (the JSON given at install; `{}` means the defaults):
//!
//! ```json
//! {"max_total": 1000000, "step": "authorize-payment"}
//! ```
//!
//! Defaults: 1000000 minor units (10000.00 EUR), before `authorize-payment`.
//! Called before that step with an order whose `total.amount` is above
//! `max_total`, it vetoes with `order total <amount> exceeds the hold
//! threshold <max>; held for manual review` and logs one info line; in every
//! other case it lets the saga continue. A configuration that does not parse
//! is logged at error level and makes the call trap: the host then applies
//! its failure policy for saga hooks (veto or go on), as for any failing hook.

use serde::Deserialize;

wit_bindgen::generate!({ world: "saga-hook", path: "../../wit" });

use suuupra::commerce::host::{self, LogLevel};
use suuupra::commerce::types::Phase;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// In minor units of the order's currency.
    #[serde(default = "default_max_total")]
    max_total: i64,
    #[serde(default = "default_step")]
    step: String,
}

fn default_max_total() -> i64 {
    1_000_000
}

fn default_step() -> String {
    "authorize-payment".into()
}

fn decide(config: &Config, context: &StepContext) -> Decision {
    let total = context.order.total.amount;
    if context.step == config.step && context.phase == Phase::Before && total > config.max_total {
        let reason = format!(
            "order total {total} exceeds the hold threshold {}; held for manual review",
            config.max_total
        );
        host::log(
            LogLevel::Info,
            &format!("order {}: {reason}", context.order.id),
        );
        Decision::Veto(reason)
    } else {
        Decision::Continue
    }
}

struct HighValueHold;

impl Guest for HighValueHold {
    fn on_step(context: StepContext) -> Decision {
        match serde_json::from_str::<Config>(&host::config()) {
            Ok(config) => decide(&config, &context),
            Err(e) => {
                let message = format!("invalid config: {e}");
                host::log(LogLevel::Error, &message);
                panic!("{message}");
            }
        }
    }
}

export!(HighValueHold);
