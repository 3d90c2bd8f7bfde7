//! Test component (world `validation`): `validate` logs `validated` at info
//! level and returns a single violation with code `config` whose message is
//! the plugin's configuration as the host hands it over (`host::config()`),
//! so that the host's tests can check config plumbing and logging.

wit_bindgen::generate!({ world: "validation", path: "../../../wit" });

use suuupra::commerce::host::{self, LogLevel};

struct EchoConfig;

impl Guest for EchoConfig {
    fn validate(_order: Order) -> Vec<Violation> {
        host::log(LogLevel::Info, "validated");
        vec![Violation {
            code: "config".into(),
            message: host::config(),
            line: None,
        }]
    }
}

export!(EchoConfig);
