//! The example plugins of `plugins/`, built by `build.rs` and embedded in
//! the binary (not in any library), installed by `commerce serve
//! --example-plugins` (and `commerce bench --example-plugins`) so that a
//! newcomer sees them at work.

use commerce_service::startup::BundledPlugin;

/// (name, component, configuration).
pub const EXAMPLES: &[BundledPlugin] = &[
    (
        "bulk-discount",
        include_bytes!(concat!(env!("COMMERCE_PLUGIN_DIR"), "/bulk_discount.wasm")),
        r#"{"tiers":[{"min_quantity":10,"percent":10},{"min_quantity":50,"percent":20}]}"#,
    ),
    (
        "quantity-rules",
        include_bytes!(concat!(env!("COMMERCE_PLUGIN_DIR"), "/quantity_rules.wasm")),
        r#"{"max_quantity_per_sku":100,"blocked_skus":[]}"#,
    ),
    (
        "high-value-hold",
        include_bytes!(concat!(
            env!("COMMERCE_PLUGIN_DIR"),
            "/high_value_hold.wasm"
        )),
        r#"{"max_total":1000000,"step":"authorize-payment"}"#,
    ),
];
