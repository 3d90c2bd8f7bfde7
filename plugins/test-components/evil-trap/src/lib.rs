//! Test component (world `pricing`): `price` panics. Plugins are built with
//! `panic = "abort"`, so the panic is a wasm trap (`unreachable`).

wit_bindgen::generate!({ world: "pricing", path: "../../../wit" });

struct EvilTrap;

impl Guest for EvilTrap {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        panic!(
            "evil_trap: refusing to price a cart of {} lines",
            cart.lines.len()
        );
    }
}

export!(EvilTrap);
