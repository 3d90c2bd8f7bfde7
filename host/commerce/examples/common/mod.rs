//! What the benchmark examples share (a directory without `main.rs`, so
//! Cargo does not take it for an example of its own).

use std::time::Duration;

use commerce_api::auth::JwtKeys;
use commerce_app::Role;
use serde_json::json;
use uuid::Uuid;

/// Creates `SKU-0` .. `SKU-<skus - 1>`, a million units each.
pub async fn seed(
    client: &reqwest::Client,
    base: &str,
    keys: &JwtKeys,
    skus: usize,
) -> anyhow::Result<()> {
    let admin = keys.mint(Uuid::nil(), Role::Admin, Duration::from_secs(3600))?;
    for i in 0..skus {
        let product = json!({
            "name": format!("Product {i}"),
            "unit_price": "9.99",
            "currency": "EUR",
            "stock": 1_000_000,
        });
        let resp = client
            .put(format!("{base}/v1/products/SKU-{i}"))
            .bearer_auth(&admin)
            .json(&product)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "seeding failed: {}",
            resp.status()
        );
    }
    Ok(())
}
