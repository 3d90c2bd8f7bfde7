//! The WebAssembly plugins of `plugins/`, built for `wasm32-wasip2` by
//! this crate's build script (see `build.rs`): the examples that
//! `commerce serve --example-plugins` and `commerce bench
//! --example-plugins` install, and the directory that holds every built
//! component, for the tests.

/// A plugin embedded in the binary: name, component, configuration and,
/// for a saga hook, where it listens (the shape of
/// `commerce_service::startup::BundledPlugin`).
pub type Bundled = (
    &'static str,
    &'static [u8],
    &'static str,
    Option<&'static str>,
);

/// The directory holding every built component (`<name>.wasm`), the
/// examples' and the test components'.
pub const PLUGIN_DIR: &str = env!("COMMERCE_PLUGIN_DIR");

/// The example plugins: one per world.
pub const EXAMPLES: &[Bundled] = &[
    (
        "bulk-discount",
        include_bytes!(concat!(env!("COMMERCE_PLUGIN_DIR"), "/bulk_discount.wasm")),
        r#"{"tiers":[{"min_quantity":10,"percent":10},{"min_quantity":50,"percent":20}]}"#,
        None,
    ),
    (
        "quantity-rules",
        include_bytes!(concat!(env!("COMMERCE_PLUGIN_DIR"), "/quantity_rules.wasm")),
        r#"{"max_quantity_per_sku":100,"blocked_skus":[]}"#,
        None,
    ),
    (
        "high-value-hold",
        include_bytes!(concat!(
            env!("COMMERCE_PLUGIN_DIR"),
            "/high_value_hold.wasm"
        )),
        r#"{"max_total":1000000,"step":"authorize-payment"}"#,
        // It acts before authorize-payment only: called nowhere else.
        Some("authorize-payment:before"),
    ),
];
