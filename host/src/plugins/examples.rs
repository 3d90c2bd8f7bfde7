//! The example plugins of `plugins/`, built by `host/build.rs` and
//! embedded, installed by `commerce serve --example-plugins` so that a
//! newcomer sees them at work.

/// (name, component, configuration).
pub const EXAMPLES: &[(&str, &[u8], &str)] = &[
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

/// Installs and activates the examples whose active version differs.
pub async fn install(app: &crate::app::App) {
    for (name, bytes, config) in EXAMPLES {
        super::watcher::install(app, name, bytes.to_vec(), (*config).to_owned()).await;
    }
}
