//! Host bindings generated from `wit/`: the one place `bindgen!` runs.
//! Each world gets its own module; the shared `types` and `host`
//! interfaces are generated once (in `pricing`) and reused by the others.

pub mod pricing {
    wasmtime::component::bindgen!({
        world: "pricing",
        path: "../../wit",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub mod validation {
    wasmtime::component::bindgen!({
        world: "validation",
        path: "../../wit",
        with: {
            "suuupra:commerce/types": super::pricing::suuupra::commerce::types,
            "suuupra:commerce/host": super::pricing::suuupra::commerce::host,
        },
    });
}

pub mod saga_hook {
    wasmtime::component::bindgen!({
        world: "saga-hook",
        path: "../../wit",
        with: {
            "suuupra:commerce/types": super::pricing::suuupra::commerce::types,
            "suuupra:commerce/host": super::pricing::suuupra::commerce::host,
        },
    });
}

pub use pricing::suuupra::commerce::host;
pub use pricing::suuupra::commerce::types;
