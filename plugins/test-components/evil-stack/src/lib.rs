//! Test component (world `pricing`): `price` recurses without end. Each
//! frame uses the callee's result (`f(n + 1) * 31 + n` is no tail call, and
//! not an accumulator the optimizer can turn into a loop), and the end of
//! the recursion depends on a value the optimizer cannot see through, so the
//! recursion stays. It keeps its state in wasm locals, not in the shadow
//! stack in linear memory, so it is the engine's call stack that overflows:
//! a trap.

use std::hint::black_box;

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

#[inline(never)]
fn descend(depth: u64, bottom: u64) -> u64 {
    if depth == bottom {
        return depth;
    }
    descend(depth + 1, bottom)
        .wrapping_mul(31)
        .wrapping_add(depth)
}

struct EvilStack;

impl Guest for EvilStack {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        // `bottom` is u64::MAX, out of reach; the optimizer only sees an
        // opaque value.
        let start = cart.lines.len() as u64;
        let value = descend(start, black_box(u64::MAX));
        Err(format!("unreachable: came back with {value}"))
    }
}

export!(EvilStack);
