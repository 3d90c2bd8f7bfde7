//! Plugin lifecycle use cases (admin): install a version (checked before it
//! is stored), list, activate (whole, or as a canary to a share of
//! customers), roll back, remove, dry-run, shadow a version beside the
//! active one, and read the run log.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::extensions::{Extensions, PluginKind};
use super::ports::{NewPluginVersion, PPM, PluginLimits, PluginRecord, PluginRun};
use super::{AppError, Caller, Registry, now};

/// Longest plugin name.
pub const MAX_NAME_LEN: usize = 64;
/// Largest configuration document.
pub const MAX_CONFIG_LEN: usize = 64 * 1024;

/// Plugin calls by plugin (its registry name: admins create them, so the
/// set stays small), hook (the extension point: `pricing`, `validation`,
/// `saga-hook`) and outcome (`ok`, or the failure kind of
/// [`PluginStats::failures`]: `trap`, `fuel`, `deadline`, ...).
pub const PLUGIN_CALLS: &str = "commerce_plugin_calls_total";
/// Time in one plugin call (instantiation included), by plugin and hook.
pub const PLUGIN_CALL_DURATION: &str = "commerce_plugin_call_duration_seconds";

/// Why a component was refused (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginRejected(pub String);

/// Per-plugin call counters since this process started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PluginStats {
    pub calls: u64,
    /// Failures by kind: trap, fuel, deadline, memory, output, input, error.
    pub failures: BTreeMap<String, u64>,
}

/// The plugin runtime, as the lifecycle use cases need it.
#[async_trait]
pub trait PluginHost: Extensions {
    /// Compiles a component, checks that it targets the world of `kind` and
    /// imports nothing the host does not grant, and smoke-calls it with
    /// `config`, within `limits` (its declared memory too). Slow
    /// (compilation); never on the request path.
    async fn check(
        &self,
        kind: PluginKind,
        name: &str,
        bytes: Arc<Vec<u8>>,
        config: &str,
        limits: PluginLimits,
    ) -> Result<(), PluginRejected>;
    /// The operator's maxima of the limits set at install.
    fn limit_maxima(&self) -> LimitMaxima;
    /// Re-reads the active set from the registry and swaps it in.
    async fn reload(&self) -> anyhow::Result<()>;
    /// Runs a component on a JSON input, with no side effects.
    async fn dry_run(
        &self,
        record: &PluginRecord,
        bytes: Arc<Vec<u8>>,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, PluginRejected>;
    /// Largest component accepted, in bytes.
    fn max_component_size(&self) -> usize;
    /// Versions kept per plugin name: older ones are pruned at upload.
    fn versions_kept(&self) -> u32;
    /// Forgets compiled components (in memory, artifacts on disk) whose
    /// sha256 is not in `in_use`; returns how many artifacts were deleted.
    async fn forget_unused(&self, in_use: &HashSet<String>) -> usize;
    /// Call counters by plugin name.
    fn stats(&self) -> BTreeMap<String, PluginStats>;
    /// What this process's shadow of `name` found since it started (or
    /// since the shadowed version last changed); `None`: no shadow runs.
    fn shadow_report(&self, name: &str) -> Option<ShadowReport>;
    /// Runs one stored version on recorded inputs, one after another on a
    /// thread of its own (never on a request's path), with no side
    /// effects and nothing counted or captured: a pricing plugin's answer
    /// as an order records it, a validation plugin's violations. One
    /// answer per input, or the failure's description.
    async fn replay(
        &self,
        record: &PluginRecord,
        bytes: Arc<Vec<u8>>,
        inputs: Vec<ReplayInput>,
    ) -> Result<Vec<Result<ReplayAnswer, String>>, PluginRejected>;
}

/// One recorded input of a replay: the quote an order's pricing was given
/// and the total it came to (what validation saw).
#[derive(Debug, Clone)]
pub struct ReplayInput {
    pub quote: super::extensions::Quote,
    pub total: rust_decimal::Decimal,
}

/// A replayed version's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayAnswer {
    Adjustments(Vec<commerce_domain::Adjustment>),
    Violations(Vec<super::extensions::Violation>),
}

/// A shadow's findings in this process: every sampled live call of the
/// active (or canary) version also ran on the shadow version, off the
/// request's path, and the two answers were compared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ShadowReport {
    /// The shadow version.
    pub version: i64,
    /// Calls of the shadowed plugin sampled for the shadow and run on it
    /// (or dropped); a call still queued is counted once run.
    pub calls: u64,
    /// Shadow answers equal to the serving version's.
    pub agreed: u64,
    /// Shadow answers that differ (an answer against a failure included).
    pub differed: u64,
    /// Shadow calls that failed where the serving version answered.
    pub failed: u64,
    /// Sampled calls not shadowed because the shadow queue was full.
    pub dropped: u64,
    /// The latest differing calls (at most [`SHADOW_EXAMPLES`]), newest
    /// last, with the customer's id masked.
    pub examples: Vec<ShadowExample>,
}

/// Differing calls a shadow report keeps.
pub const SHADOW_EXAMPLES: usize = 5;

/// One call on which the shadow version answered differently.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ShadowExample {
    pub at: chrono::DateTime<chrono::Utc>,
    /// The input both versions were given (the customer's id masked).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// The serving version's answer, or `{"failed": kind}`.
    #[schema(value_type = Object)]
    pub active: serde_json::Value,
    /// The shadow version's answer, or `{"failed": kind}`.
    #[schema(value_type = Object)]
    pub shadow: serde_json::Value,
}

/// A plugin's shadow: its configuration (shared by every replica) and
/// this replica's findings.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ShadowStatus {
    /// The shadow version; null when no shadow runs.
    pub version: Option<i64>,
    /// Share of live calls shadowed (0-1).
    pub sample: Option<f64>,
    /// This replica's findings (each replica compares the calls it serves).
    pub report: ShadowReport,
}

/// Most runs one request lists.
pub const MAX_RUNS_LISTED: u32 = 500;

/// The percent of customers a canary serves is 1-99: 100 is a full
/// activation and 0 no canary.
pub fn check_canary_percent(percent: u8) -> Result<(), AppError> {
    if (1..=99).contains(&percent) {
        Ok(())
    } else {
        Err(AppError::Invalid(format!(
            "percent is {percent}; a canary serves 1 to 99 percent of customers (100 activates the version for everyone)"
        )))
    }
}

/// Which percentile (0-99) of customers `customer` falls in for `plugin`'s
/// canary: a hash of both, so a customer sees one version across requests
/// and replicas, and each plugin's canary reaches a different share of
/// customers.
pub fn canary_bucket(plugin: &str, customer: uuid::Uuid) -> u8 {
    let digest = Sha256::new()
        .chain_update(plugin.as_bytes())
        .chain_update([0])
        .chain_update(customer.as_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % 100) as u8
}

/// A sample share (0-1, at least one call per million) in parts per million.
pub fn sample_ppm(sample: f64) -> Result<u32, AppError> {
    if sample.is_finite() && sample > 0.0 && sample <= 1.0 {
        Ok(((sample * f64::from(PPM)).round() as u32).max(1))
    } else {
        Err(AppError::Invalid(format!(
            "sample is {sample}; it is a share of calls, above 0 and at most 1"
        )))
    }
}

/// The largest limits an install may set (operator settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitMaxima {
    /// Linear memory of one call, in bytes (`--plugin-memory-mib`).
    pub memory: u64,
    /// Input of one call of up to 200 lines, in bytes (`--plugin-max-input-kib`).
    pub input: u64,
}

/// What `outcome` may filter runs by: `failed` (any failure) or one kind.
pub const RUN_OUTCOMES: &[&str] = &[
    "ok",
    "failed",
    "fuel",
    "deadline",
    "memory",
    "stack",
    "trap",
    "input",
    "output",
    "invalid",
    "error",
    "unavailable",
];

/// Smallest memory limit: one WebAssembly page.
pub const MIN_MEMORY_LIMIT: u64 = 64 << 10;
/// Smallest input limit: a one-line cart fits in well under this.
pub const MIN_INPUT_LIMIT: u64 = 1 << 10;

/// Refuses limits outside `[minimum, maximum]`, naming the setting that
/// bounds them.
fn check_limits(limits: PluginLimits, maxima: LimitMaxima) -> Result<(), AppError> {
    let checks = [
        (
            "max_memory",
            limits.max_memory,
            MIN_MEMORY_LIMIT,
            maxima.memory,
            "--plugin-memory-mib",
        ),
        (
            "max_input",
            limits.max_input,
            MIN_INPUT_LIMIT,
            maxima.input,
            "--plugin-max-input-kib",
        ),
    ];
    for (what, value, min, max, setting) in checks {
        match value {
            Some(v) if v < min => {
                return Err(AppError::Invalid(format!(
                    "{what} is {v} bytes; the least a plugin may have is {min}"
                )));
            }
            Some(v) if v > max => {
                return Err(AppError::Invalid(format!(
                    "{what} is {v} bytes; this service allows at most {max} ({setting})"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What an admin uploads.
#[derive(Debug, Clone)]
pub struct InstallPlugin {
    pub name: String,
    pub kind: PluginKind,
    pub bytes: Vec<u8>,
    pub config: Option<String>,
    pub priority: i32,
    /// Saga hooks only: where it is called (see
    /// [`crate::extensions::parse_listen`]); `None`: at every step.
    pub listen: Option<Vec<String>>,
    /// Memory and input limits of this version (see [`PluginLimits`]).
    pub limits: PluginLimits,
    pub activate: bool,
}

/// A plugin version with its call counters.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginListing {
    #[serde(flatten)]
    pub record: PluginRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<PluginStats>,
}

pub fn check_name(name: &str) -> Result<(), AppError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "plugin names are 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-' and '_'"
        )))
    }
}

pub(crate) fn admin(caller: Caller) -> Result<(), AppError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

impl Registry<'_> {
    /// Checks and stores a new version of a plugin, and activates it if asked.
    pub async fn install_plugin(
        &self,
        caller: Caller,
        install: InstallPlugin,
    ) -> Result<PluginRecord, AppError> {
        admin(caller)?;
        check_name(&install.name)?;
        let config = install.config.unwrap_or_else(|| "{}".to_owned());
        if config.len() > MAX_CONFIG_LEN {
            return Err(AppError::Invalid(format!(
                "config is larger than {MAX_CONFIG_LEN} bytes"
            )));
        }
        serde_json::from_str::<serde_json::Value>(&config)
            .map_err(|e| AppError::Invalid(format!("config is not JSON: {e}")))?;
        if install.listen.is_some() && install.kind != PluginKind::SagaHook {
            return Err(AppError::Invalid(
                "listen is for saga hooks: pricing and validation plugins are called for every order".into(),
            ));
        }
        if install.listen.as_ref().is_some_and(Vec::is_empty) {
            return Err(AppError::Invalid("listen names no step".into()));
        }
        check_limits(install.limits, self.plugins.limit_maxima())?;
        let max = self.plugins.max_component_size();
        if install.bytes.len() > max {
            return Err(AppError::PluginRejected(format!(
                "the component is {} bytes; the limit is {max}",
                install.bytes.len()
            )));
        }
        let bytes = Arc::new(install.bytes);
        if let Err(e) = self
            .plugins
            .check(
                install.kind,
                &install.name,
                bytes.clone(),
                &config,
                install.limits,
            )
            .await
        {
            // What compiling it left behind goes too.
            self.forget_unused().await;
            return Err(AppError::PluginRejected(e.0));
        }
        let sha256 = hex::encode(Sha256::digest(bytes.as_slice()));
        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        let record = self
            .store
            .insert_plugin_version(NewPluginVersion {
                name: install.name.clone(),
                kind: install.kind,
                sha256,
                bytes,
                config,
                priority: install.priority,
                listen: install.listen,
                limits: install.limits,
                at: now(),
            })
            .await?
            .ok_or_else(|| {
                AppError::Conflict(format!(
                    "plugin {} exists with another kind; remove it first or choose another name",
                    install.name
                ))
            })?;
        tracing::info!(plugin = %record.name, version = record.version, kind = record.kind.as_str(), sha256 = %record.sha256, "plugin version installed");
        let record = if install.activate {
            self.activate_plugin(caller, &record.name, Some(record.version))
                .await?
        } else {
            record
        };
        self.prune(&record.name).await;
        Ok(record)
    }

    /// Deletes the versions of `name` beyond the newest kept (never the
    /// active one or the rollback target), then the compiled artifacts no
    /// version uses. A failure is logged: the upload itself stands.
    async fn prune(&self, name: &str) {
        let keep = self.plugins.versions_kept();
        match self.store.prune_plugin_versions(name, keep).await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!(plugin = %name, pruned, keep, "old plugin versions deleted");
            }
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "pruning old plugin versions failed")
            }
        }
        self.forget_unused().await;
    }

    /// Forgets the compiled components of versions no longer stored.
    async fn forget_unused(&self) {
        match self.store.list_plugins().await {
            Ok(records) => {
                let in_use: HashSet<String> = records.into_iter().map(|r| r.sha256).collect();
                let deleted = self.plugins.forget_unused(&in_use).await;
                if deleted > 0 {
                    tracing::debug!(deleted, "compiled artifacts of unused components deleted");
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing plugins to prune artifacts failed"),
        }
    }

    pub async fn list_plugins(&self, caller: Caller) -> Result<Vec<PluginListing>, AppError> {
        admin(caller)?;
        let stats = self.plugins.stats();
        Ok(self
            .store
            .list_plugins()
            .await?
            .into_iter()
            .map(|record| PluginListing {
                stats: record
                    .active
                    .then(|| stats.get(&record.name).cloned().unwrap_or_default()),
                record,
            })
            .collect())
    }

    /// Activates a version (the newest by default) on every replica.
    pub async fn activate_plugin(
        &self,
        caller: Caller,
        name: &str,
        version: Option<i64>,
    ) -> Result<PluginRecord, AppError> {
        admin(caller)?;
        let record = self
            .store
            .activate_plugin(name, version)
            .await?
            .ok_or(AppError::NotFound("plugin version"))?;
        self.reload_plugins().await;
        tracing::info!(plugin = %record.name, version = record.version, sha256 = %record.sha256, "plugin activated");
        Ok(record)
    }

    /// Serves `version` to `percent` (1-99) percent of customers, chosen by
    /// a stable hash of their id, while the others keep the active version;
    /// on every replica within a second. Activating a version (or raising
    /// the canary to 100) promotes it; a rollback ends the canary.
    pub async fn start_canary(
        &self,
        caller: Caller,
        name: &str,
        version: i64,
        percent: u8,
    ) -> Result<PluginRecord, AppError> {
        admin(caller)?;
        check_canary_percent(percent)?;
        let versions = self.versions_of(name).await?;
        let active = versions
            .iter()
            .find(|r| r.active)
            .ok_or_else(|| {
                AppError::Conflict(format!(
                    "plugin {name} has no active version for a canary to share customers with; activate one first"
                ))
            })?;
        if active.version == version {
            return Err(AppError::Conflict(format!(
                "version {version} of {name} is the active one already"
            )));
        }
        if versions
            .iter()
            .any(|r| r.shadow_sample.is_some() && r.version == version)
        {
            return Err(AppError::Conflict(format!(
                "version {version} of {name} is in shadow: for the canary's customers it would be compared with itself; stop the shadow first"
            )));
        }
        if !versions.iter().any(|r| r.version == version) {
            return Err(AppError::NotFound("plugin version"));
        }
        if !self
            .store
            .set_plugin_canary(name, Some((version, percent)))
            .await?
        {
            return Err(AppError::NotFound("plugin version"));
        }
        self.reload_plugins().await;
        tracing::info!(plugin = %name, version, percent, "plugin canary started");
        self.versions_of(name)
            .await?
            .into_iter()
            .find(|r| r.version == version)
            .ok_or(AppError::NotFound("plugin version"))
    }

    /// Every stored version of `name`; `NotFound` if there is none.
    async fn versions_of(&self, name: &str) -> Result<Vec<PluginRecord>, AppError> {
        let versions: Vec<PluginRecord> = self
            .store
            .list_plugins()
            .await?
            .into_iter()
            .filter(|r| r.name == name)
            .collect();
        if versions.is_empty() {
            return Err(AppError::NotFound("plugin"));
        }
        Ok(versions)
    }

    /// Runs `version` beside the active one on `sample` (0-1) of its live
    /// calls, on every replica within a second, comparing the answers;
    /// replaces any shadow the plugin had.
    pub async fn start_shadow(
        &self,
        caller: Caller,
        name: &str,
        version: i64,
        sample: f64,
    ) -> Result<ShadowStatus, AppError> {
        admin(caller)?;
        let ppm = sample_ppm(sample)?;
        let versions = self.versions_of(name).await?;
        if !versions.iter().any(|r| r.active) {
            return Err(AppError::Conflict(format!(
                "plugin {name} has no active version to shadow; activate one first"
            )));
        }
        if versions.iter().any(|r| r.active && r.version == version) {
            return Err(AppError::Conflict(format!(
                "version {version} of {name} is the active one: a shadow runs another version beside it"
            )));
        }
        if versions
            .iter()
            .any(|r| r.canary_percent.is_some() && r.version == version)
        {
            return Err(AppError::Conflict(format!(
                "version {version} of {name} is in canary: for the canary's customers it would be compared with itself; end the canary first (rollback)"
            )));
        }
        if !versions.iter().any(|r| r.version == version)
            || !self
                .store
                .set_plugin_shadow(name, Some((version, ppm)))
                .await?
        {
            return Err(AppError::NotFound("plugin version"));
        }
        self.reload_plugins().await;
        tracing::info!(plugin = %name, version, sample, "plugin shadow started");
        self.shadow_status(caller, name).await
    }

    /// The plugin's shadow: which version, on what share, and what this
    /// replica found.
    pub async fn shadow_status(
        &self,
        caller: Caller,
        name: &str,
    ) -> Result<ShadowStatus, AppError> {
        admin(caller)?;
        let versions = self.versions_of(name).await?;
        let shadow = versions.iter().find(|r| r.shadow_sample.is_some());
        Ok(ShadowStatus {
            version: shadow.map(|r| r.version),
            sample: shadow.and_then(|r| r.shadow_sample),
            report: self
                .plugins
                .shadow_report(name)
                .filter(|report| shadow.is_some_and(|r| r.version == report.version))
                .unwrap_or_default(),
        })
    }

    /// Stops the plugin's shadow (on every replica within a second).
    pub async fn stop_shadow(&self, caller: Caller, name: &str) -> Result<(), AppError> {
        admin(caller)?;
        if !self.store.set_plugin_shadow(name, None).await? {
            return Err(AppError::NotFound("plugin"));
        }
        self.reload_plugins().await;
        tracing::info!(plugin = %name, "plugin shadow stopped");
        Ok(())
    }

    /// The newest captured calls of a plugin (failed ones always, a sample
    /// of the others), newest first; `outcome` filters (`failed`: every
    /// failure, or one kind such as `trap`, or `ok`).
    pub async fn plugin_runs(
        &self,
        caller: Caller,
        name: &str,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PluginRun>, AppError> {
        admin(caller)?;
        check_name(name)?;
        if limit == 0 || limit > MAX_RUNS_LISTED {
            return Err(AppError::Invalid(format!(
                "limit is {limit}; 1 to {MAX_RUNS_LISTED} runs are listed at once"
            )));
        }
        if let Some(outcome) = outcome
            && !RUN_OUTCOMES.contains(&outcome)
        {
            return Err(AppError::Invalid(format!(
                "outcome is {outcome:?}; one of {}",
                RUN_OUTCOMES.join(", ")
            )));
        }
        Ok(self.store.plugin_runs(name, outcome, limit).await?)
    }

    /// One captured call.
    pub async fn plugin_run(
        &self,
        caller: Caller,
        name: &str,
        id: uuid::Uuid,
    ) -> Result<PluginRun, AppError> {
        admin(caller)?;
        self.store
            .plugin_run(id)
            .await?
            .filter(|run| run.name == name)
            .ok_or(AppError::NotFound("plugin run"))
    }

    /// Re-activates the version that was active before the current one;
    /// while a canary runs, ends the canary instead (every customer gets
    /// the active version again).
    pub async fn rollback_plugin(
        &self,
        caller: Caller,
        name: &str,
    ) -> Result<PluginRecord, AppError> {
        admin(caller)?;
        let versions = self.store.list_plugins().await?;
        let mut versions = versions.into_iter().filter(|r| r.name == name);
        if let Some(canary) = versions.clone().find(|r| r.canary_percent.is_some()) {
            self.store.set_plugin_canary(name, None).await?;
            self.reload_plugins().await;
            tracing::info!(plugin = %name, version = canary.version, "plugin canary ended by a rollback");
            if let Some(active) = versions.find(|r| r.active) {
                return Ok(active);
            }
        }
        let Some(record) = self.store.rollback_plugin(name).await? else {
            let exists = self
                .store
                .list_plugins()
                .await?
                .iter()
                .any(|r| r.name == name);
            return Err(if exists {
                AppError::Conflict(format!(
                    "plugin {name} has no previous version to roll back to"
                ))
            } else {
                AppError::NotFound("plugin")
            });
        };
        self.reload_plugins().await;
        tracing::info!(plugin = %record.name, version = record.version, "plugin rolled back");
        Ok(record)
    }

    /// Deactivates and deletes every version of a plugin.
    pub async fn remove_plugin(&self, caller: Caller, name: &str) -> Result<(), AppError> {
        admin(caller)?;
        if !self.store.remove_plugin(name).await? {
            return Err(AppError::NotFound("plugin"));
        }
        self.reload_plugins().await;
        tracing::info!(plugin = %name, "plugin removed");
        Ok(())
    }

    /// Runs a version (the active one, else the newest) on `input`.
    pub async fn dry_run_plugin(
        &self,
        caller: Caller,
        name: &str,
        version: Option<i64>,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, AppError> {
        admin(caller)?;
        let versions: Vec<PluginRecord> = self
            .store
            .list_plugins()
            .await?
            .into_iter()
            .filter(|r| r.name == name)
            .collect();
        let record = match version {
            Some(v) => versions.iter().find(|r| r.version == v),
            None => versions.iter().find(|r| r.active).or(versions.last()),
        }
        .ok_or(AppError::NotFound("plugin version"))?;
        let bytes = self
            .store
            .plugin_bytes(&record.name, record.version)
            .await?
            .ok_or(AppError::NotFound("plugin version"))?;
        self.plugins
            .dry_run(record, Arc::new(bytes), input)
            .await
            .map_err(|e| AppError::PluginRejected(e.0))
    }

    /// Applies registry changes here at once; other replicas follow by polling.
    async fn reload_plugins(&self) {
        if let Err(e) = self.plugins.reload().await {
            tracing::error!(error = ?e, "reloading plugins failed; the poller will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_buckets_are_stable_spread_and_per_plugin() {
        let customers: Vec<uuid::Uuid> = (0..10_000u128).map(uuid::Uuid::from_u128).collect();
        let first: Vec<u8> = customers.iter().map(|c| canary_bucket("p", *c)).collect();
        let again: Vec<u8> = customers.iter().map(|c| canary_bucket("p", *c)).collect();
        assert_eq!(first, again, "a customer keeps its bucket");
        assert!(first.iter().all(|b| *b < 100));
        let under_10 = first.iter().filter(|b| **b < 10).count();
        assert!(
            (800..1200).contains(&under_10),
            "{under_10} of 10,000 in 10%"
        );
        let other: Vec<u8> = customers.iter().map(|c| canary_bucket("q", *c)).collect();
        assert_ne!(
            first, other,
            "another plugin's canary reaches other customers"
        );
    }

    #[test]
    fn canary_percent_and_sample_bounds() {
        assert!(check_canary_percent(1).is_ok() && check_canary_percent(99).is_ok());
        assert!(check_canary_percent(0).is_err() && check_canary_percent(100).is_err());
        assert_eq!(sample_ppm(1.0).unwrap(), PPM);
        assert_eq!(sample_ppm(0.25).unwrap(), 250_000);
        assert_eq!(
            sample_ppm(1e-9).unwrap(),
            1,
            "at least one call per million"
        );
        for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            assert!(sample_ppm(bad).is_err(), "{bad}");
        }
    }

    const MAXIMA: LimitMaxima = LimitMaxima {
        memory: 16 << 20,
        input: 128 << 10,
    };

    fn limits(max_memory: Option<u64>, max_input: Option<u64>) -> PluginLimits {
        PluginLimits {
            max_memory,
            max_input,
        }
    }

    #[test]
    fn limits_within_the_maxima_or_absent_are_accepted() {
        for ok in [
            limits(None, None),
            limits(Some(MIN_MEMORY_LIMIT), Some(MIN_INPUT_LIMIT)),
            limits(Some(MAXIMA.memory), Some(MAXIMA.input)),
        ] {
            assert!(check_limits(ok, MAXIMA).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn limits_outside_the_range_are_refused_naming_the_bound() {
        let cases = [
            (limits(Some(MAXIMA.memory + 1), None), "--plugin-memory-mib"),
            (
                limits(None, Some(MAXIMA.input + 1)),
                "--plugin-max-input-kib",
            ),
            (limits(Some(0), None), "least a plugin may have is 65536"),
            (limits(None, Some(1023)), "least a plugin may have is 1024"),
        ];
        for (bad, says) in cases {
            match check_limits(bad, MAXIMA) {
                Err(AppError::Invalid(reason)) => assert!(reason.contains(says), "{reason}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
