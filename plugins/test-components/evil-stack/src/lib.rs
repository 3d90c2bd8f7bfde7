//! Test component (world `pricing`): `price` recurses without end. Each
//! frame keeps a buffer alive across the call and uses the callee's result,
//! so the recursion is not a tail call and cannot become a loop. The wasm
//! stack overflows, which is a trap.

use std::hint::black_box;

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

#[inline(never)]
#[allow(unconditional_recursion)] // the point of this component
fn descend(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    let below = descend(black_box(depth + 1));
    black_box(frame[(depth % 32) as usize].wrapping_add(below))
}

struct EvilStack;

impl Guest for EvilStack {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        let depth = descend(black_box(cart.lines.len() as u64));
        Err(format!("unreachable: came back from depth {depth}"))
    }
}

export!(EvilStack);
