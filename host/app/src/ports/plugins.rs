//! The plugin registry: versions, their bytes and configuration, which
//! are active (and which are in canary or shadow beside the active one),
//! and the run log of captured calls.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;

/// A stored plugin version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
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
    /// Set on the version in canary: the percent of customers (1-99, by a
    /// stable hash of their id) it serves instead of the active one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_percent: Option<u8>,
    /// Set on the version in shadow: the share of the active version's
    /// live calls (0-1) it is also run on, its answers only compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_sample: Option<f64>,
    pub created_at: DateTime<Utc>,
}

/// Parts per million: how a shadow's sample is stored (exact, no float).
pub const PPM: u32 = 1_000_000;

/// One captured plugin call (the run log).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PluginRun {
    pub id: Uuid,
    pub name: String,
    pub version: i64,
    pub kind: crate::extensions::PluginKind,
    /// `ok`, or the failure kind (`trap`, `fuel`, `deadline`, ...).
    pub outcome: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the plugin was given: a cart, an order or a step context, as
    /// in wit/README.md (what `commerce plugin run --input` takes).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// What it answered, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// Fuel used (about one unit per WebAssembly instruction).
    pub fuel: u64,
    pub duration_us: u64,
    /// What it wrote to its log (bounded like every call's log).
    pub log: String,
    /// Whether it was a shadow call (issue 17), not one that served a request.
    #[serde(default)]
    pub shadow: bool,
    pub at: DateTime<Utc>,
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
    /// Serves `version` to `percent` (1-99) percent of customers beside
    /// the active version, or ends the canary (`None`). An activation ends
    /// it too. False: no such plugin or version.
    async fn set_plugin_canary(
        &self,
        name: &str,
        canary: Option<(i64, u8)>,
    ) -> Result<bool, StoreError>;
    /// Runs `version` beside the active one on `ppm` parts per million of
    /// its calls, or stops the shadow (`None`). False: no such plugin or
    /// version.
    async fn set_plugin_shadow(
        &self,
        name: &str,
        shadow: Option<(i64, u32)>,
    ) -> Result<bool, StoreError>;

    // The run log.

    /// Stores captured calls.
    async fn record_plugin_runs(&self, runs: &[PluginRun]) -> Result<(), StoreError>;
    /// The newest runs of `name`, newest first, only those with `outcome`
    /// if given (`failed`: every outcome but `ok`).
    async fn plugin_runs(
        &self,
        name: &str,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PluginRun>, StoreError>;
    /// One run.
    async fn plugin_run(&self, id: Uuid) -> Result<Option<PluginRun>, StoreError>;
    /// Deletes all but the newest `keep` runs of each plugin; returns how many.
    async fn prune_plugin_runs(&self, keep: u32) -> Result<u64, StoreError>;
}
