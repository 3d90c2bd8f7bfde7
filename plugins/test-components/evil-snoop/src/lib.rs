//! Test component (world `pricing`): reports what the sandbox lets it see.
//!
//! `price` tries the filesystem, the environment, the arguments, the clocks
//! and the random source, and returns one fee adjustment of amount 0 (in the
//! cart's currency) per observation, in this order, labelled:
//!
//! - `fs:ok` / `fs:err`: reading `/etc/passwd`;
//! - `dir:ok` / `dir:err`: listing `/`;
//! - `env:<count>`: the number of environment variables;
//! - `args:<count>`: the number of program arguments;
//! - `clock:<seconds>`: wall-clock seconds since the UNIX epoch;
//! - `random:<16 hex digits>`: 8 bytes from the WASI random source.
//!
//! It also reads the monotonic clock (`Instant`), without reporting it, so
//! that the component imports that interface too.
//!
//! Under the host's deny-all WASI the expected answer is `fs:err`,
//! `dir:err`, `env:0`, `args:0`, and the same `clock:` and `random:` on
//! every call.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

use suuupra::commerce::types::{AdjustmentKind, Money};

fn observe() -> Vec<String> {
    let started = Instant::now();
    let mut seen = Vec::new();

    let fs = std::fs::read("/etc/passwd").is_ok();
    seen.push(format!("fs:{}", if fs { "ok" } else { "err" }));

    let dir = std::fs::read_dir("/").is_ok();
    seen.push(format!("dir:{}", if dir { "ok" } else { "err" }));

    seen.push(format!("env:{}", std::env::vars_os().count()));
    seen.push(format!("args:{}", std::env::args_os().count()));

    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    seen.push(format!("clock:{seconds}"));

    black_box(started.elapsed());

    let mut bytes = [0u8; 8];
    let random = match getrandom::fill(&mut bytes) {
        Ok(()) => bytes.iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        }),
        Err(e) => format!("error {e}"),
    };
    seen.push(format!("random:{random}"));
    seen
}

struct EvilSnoop;

impl Guest for EvilSnoop {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        Ok(observe()
            .into_iter()
            .map(|label| Adjustment {
                label,
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

export!(EvilSnoop);
