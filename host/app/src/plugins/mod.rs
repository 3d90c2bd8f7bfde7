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
use super::ports::{NewPluginVersion, PluginLimits, PluginRecord};
use super::{AppError, Caller, Registry, now};

mod rollout;

pub use rollout::{
    MAX_RUNS_LISTED, RUN_OUTCOMES, SHADOW_EXAMPLES, ShadowExample, ShadowReport, ShadowStatus,
    canary_bucket, check_canary_percent, sample_ppm,
};

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

/// The largest limits an install may set (operator settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitMaxima {
    /// Linear memory of one call, in bytes (`--plugin-memory-mib`).
    pub memory: u64,
    /// Input of one call of up to 200 lines, in bytes (`--plugin-max-input-kib`).
    pub input: u64,
}

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
