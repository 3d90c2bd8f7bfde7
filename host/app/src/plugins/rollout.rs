//! Safe change of a plugin (admin): a canary (a version for a stable
//! share of customers), a shadow (a version run beside the active one on
//! a sample of live calls, its answers compared), and the run log of
//! captured calls. Replays of recorded orders are in `crate::what_if`.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{admin, check_name};
use crate::ports::{PPM, PluginRecord, PluginRun};
use crate::{AppError, Caller, Registry};

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

impl Registry<'_> {
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
}
