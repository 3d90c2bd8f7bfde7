//! What the benchmark examples share (a directory without `main.rs`, so
//! Cargo does not take it for an example of its own).

// Each example compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use commerce_api::auth::JwtKeys;
use commerce_app::Role;
use commerce_store::StoreConfig;
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

/// The HS256 secret the examples' in-process services are started with.
pub const SECRET: &str = "benchmark-secret-benchmark-secret-0123456789";

/// Creates `SKU-0` .. `SKU-<skus - 1>`, `stock` units each.
pub async fn seed(
    client: &reqwest::Client,
    base: &str,
    keys: &JwtKeys,
    skus: usize,
    stock: i64,
) -> anyhow::Result<()> {
    let admin = keys.mint(Uuid::nil(), Role::Admin, Duration::from_secs(3600))?;
    for i in 0..skus {
        let product = json!({
            "name": format!("Product {i}"),
            "unit_price": "9.99",
            "currency": "EUR",
            "stock": stock,
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

/// A fresh store for one run: embedded SQLite in a directory, or a schema
/// of its own in PostgreSQL (at TEST_DATABASE_URL, default
/// postgres://postgres@127.0.0.1:5432/test), dropped by [`FreshStore::drop`].
pub struct FreshStore {
    pub config: StoreConfig,
    /// The PostgreSQL database and the schema created in it.
    postgres: Option<(String, String)>,
}

impl FreshStore {
    /// `backend` is `sqlite` (in `dir`) or `postgres`.
    pub async fn create(backend: &str, dir: &Path) -> anyhow::Result<FreshStore> {
        if backend != "postgres" {
            return Ok(FreshStore {
                config: StoreConfig::Sqlite {
                    data_dir: dir.to_owned(),
                },
                postgres: None,
            });
        }
        let admin_url = admin_url();
        let schema = format!("bench_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await?;
        Ok(FreshStore {
            config: StoreConfig::Postgres {
                url: format!("{admin_url}?options=-c%20search_path%3D{schema}"),
                max_connections: 32,
            },
            postgres: Some((admin_url, schema)),
        })
    }

    /// Drops the PostgreSQL schema (nothing to do for SQLite: the
    /// directory is temporary).
    pub async fn drop(self) -> anyhow::Result<()> {
        if let Some((admin_url, schema)) = self.postgres {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// The PostgreSQL database the examples create their schemas in.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The `p`-quantile (0 to 1) of `sorted`, in milliseconds; NaN if empty.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(f64::NAN)
}
