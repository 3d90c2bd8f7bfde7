//! The plugin registry: versions, their bytes and configuration, and which
//! are active.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// A stored plugin version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PluginRecord {
    pub name: String,
    pub version: i64,
    pub kind: crate::extensions::PluginKind,
    /// Hex sha256 of the component bytes.
    pub sha256: String,
    /// JSON document handed to the plugin by `host.config()`.
    pub config: String,
    /// Lower runs first; ties are broken by name.
    pub priority: i32,
    /// Saga hooks only: the steps and phases it is called at
    /// (`authorize-payment:before`, ...); null: at every one.
    pub listen: Option<Vec<String>>,
    /// Limits set at install for this version, within the operator's
    /// maxima.
    pub limits: PluginLimits,
    /// Size of the component in bytes.
    pub size: i64,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// Limits an admin sets on one plugin version at install, each at most
/// the operator's maximum (`--plugin-memory-mib`, `--plugin-max-input-kib`); an
/// absent one is that maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PluginLimits {
    /// Linear memory of one call, in bytes.
    pub max_memory: Option<u64>,
    /// Largest input of one call of up to 200 lines, in bytes (larger
    /// inputs get it in proportion to their lines, like every limit).
    pub max_input: Option<u64>,
}

/// A new plugin version to store.
#[derive(Debug, Clone)]
pub struct NewPluginVersion {
    pub name: String,
    pub kind: crate::extensions::PluginKind,
    pub sha256: String,
    pub bytes: Vec<u8>,
    pub config: String,
    pub priority: i32,
    /// See [`PluginRecord::listen`].
    pub listen: Option<Vec<String>>,
    pub limits: PluginLimits,
    pub at: DateTime<Utc>,
}

/// The plugin registry. Every change of which versions are active bumps a
/// generation number, which replicas poll to reload within a second.
#[async_trait]
pub trait PluginRegistry: Send + Sync {
    /// Stores the next version of `name` (1 for a new name). A name keeps
    /// its kind: `Ok(None)` if it exists with another kind.
    async fn insert_plugin_version(
        &self,
        version: NewPluginVersion,
    ) -> Result<Option<PluginRecord>, StoreError>;
    /// Every stored version, by name then version.
    async fn list_plugins(&self) -> Result<Vec<PluginRecord>, StoreError>;
    /// Deletes the versions of `name` older than its newest `keep`,
    /// except the active one and the one a rollback returns to; returns
    /// how many.
    async fn prune_plugin_versions(&self, name: &str, keep: u32) -> Result<u64, StoreError>;
    /// Makes `version` (the newest when `None`) the active one, remembering
    /// the one it replaces for rollback. `Ok(None)`: no such version.
    async fn activate_plugin(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<PluginRecord>, StoreError>;
    /// Re-activates the version active before the current one.
    /// `Ok(None)`: nothing to roll back to.
    async fn rollback_plugin(&self, name: &str) -> Result<Option<PluginRecord>, StoreError>;
    /// Deletes every version of `name`; false if there was none.
    async fn remove_plugin(&self, name: &str) -> Result<bool, StoreError>;
    /// The active versions, and the generation they belong to.
    async fn active_plugins(&self) -> Result<(i64, Vec<PluginRecord>), StoreError>;
    /// The current generation (cheap; polled).
    async fn plugin_generation(&self) -> Result<i64, StoreError>;
    /// The component bytes of one version.
    async fn plugin_bytes(&self, name: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError>;
}
