//! Configuration shared by the subcommands: where the data lives and which
//! secret signs tokens. Flags for humans, environment for Kubernetes.

use std::path::PathBuf;

use crate::store::StoreConfig;

/// Where the data lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// PostgreSQL URL (e.g. postgres://user@host/db). When unset, the
    /// embedded SQLite database in --data-dir is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory of the embedded database and of the development JWT secret.
    #[arg(long, env = "COMMERCE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Most connections to PostgreSQL held by this process.
    #[arg(long, env = "COMMERCE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl StoreArgs {
    pub fn store_config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) if !url.is_empty() => StoreConfig::Postgres {
                url: url.clone(),
                max_connections: self.db_max_connections,
            },
            _ => StoreConfig::Sqlite {
                data_dir: self.data_dir.clone(),
            },
        }
    }
}

/// The secret that signs bearer tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretArgs {
    /// HS256 secret for bearer tokens, at least 32 bytes. When unset, a
    /// development secret is generated once into <data-dir>/jwt-secret.
    #[arg(long, env = "COMMERCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}
