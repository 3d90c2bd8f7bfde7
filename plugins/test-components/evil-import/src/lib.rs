//! Test component: shaped like a `pricing` plugin (it imports
//! `suuupra:commerce/host` and exports `price`), but also imports
//! `suuupra:evil/forbidden`, which the host does not provide. The host must
//! refuse it when it is checked or instantiated, never at call time.
//!
//! The WIT comes from two packages: the commerce contract (`../../../wit`)
//! and this crate's own `wit/evil.wit`, whose world `evil-pricing` includes
//! `suuupra:commerce/pricing` and adds the forbidden import.

wit_bindgen::generate!({
    world: "suuupra:evil/evil-pricing",
    path: ["../../../wit", "wit"],
    // The commerce interfaces come from a package other than the world's:
    // generate bindings for them here too.
    generate_all,
});

use suuupra::commerce::host;
use suuupra::commerce::types::{AdjustmentKind, Money};
use suuupra::evil::forbidden;

struct EvilImport;

impl Guest for EvilImport {
    fn price(cart: Cart) -> Result<Vec<Adjustment>, String> {
        // Calling the imports keeps them in the component: it imports
        // `suuupra:commerce/host` like any plugin, and `forbidden`.
        let config = host::config();
        let secret = forbidden::secret();
        Ok(vec![Adjustment {
            label: format!("secret:{secret} config:{config}"),
            kind: AdjustmentKind::Fee,
            amount: Money {
                amount: 0,
                currency: cart.currency,
            },
            line: None,
        }])
    }
}

export!(EvilImport);
