//! Test component (world `pricing`): `price` spins forever.
//!
//! The loop depends on the input through `black_box`, so the optimizer can
//! neither prove it finite nor remove it. The host must stop it with its fuel
//! budget or its wall-clock deadline.

use std::hint::black_box;

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

struct EvilLoop;

impl Guest for EvilLoop {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        let mut state = black_box(cart.lines.len() as u64);
        loop {
            state = black_box(state.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export!(EvilLoop);
