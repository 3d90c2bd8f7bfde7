//! The extension points as the use cases see them: pricing and validation
//! of an order, and saga-step hooks. `commerce_plugins` implements them with
//! sandboxed WebAssembly components; the application only knows this port.

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

use commerce_domain::{Adjustment, Currency, OrderLine, OrderStatus, PluginRef};

/// The three extension points.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Pricing,
    Validation,
    SagaHook,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Pricing => "pricing",
            PluginKind::Validation => "validation",
            PluginKind::SagaHook => "saga-hook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            PluginKind::Pricing,
            PluginKind::Validation,
            PluginKind::SagaHook,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order to price and validate.
#[derive(Debug, Clone)]
pub struct Quote {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
}

/// A reason a validation plugin gives to refuse an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Violation {
    pub plugin: String,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// What the active plugins said about a quote. All of it comes from one
/// consistent plugin set, even if an activation happens meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// In the order they apply.
    pub adjustments: Vec<Adjustment>,
    pub violations: Vec<Violation>,
    /// The plugin versions that took part.
    pub plugins: Vec<PluginRef>,
}

/// Where a saga is when it asks the hooks.
#[derive(Debug, Clone)]
pub struct HookContext {
    pub saga_type: String,
    pub step: String,
    pub before: bool,
    pub quote: Quote,
    pub adjustments: Vec<Adjustment>,
}

/// The hooks' verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Continue,
    Veto { plugin: String, reason: String },
}

/// A plugin failed and the extension point's policy is to fail closed,
/// or the request's input is larger than an active plugin accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} plugin {plugin} failed: {reason}")]
pub struct ExtensionFailed {
    pub kind: PluginKind,
    pub plugin: String,
    pub reason: String,
    /// Set when no plugin was called because the input is over the
    /// plugin's input limit: the request's fault (413), not the plugin's.
    pub too_large: Option<TooLarge>,
}

/// An input over a plugin's input limit, in bytes as the limit counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub size: usize,
    pub limit: usize,
}

/// The extension points.
#[async_trait]
pub trait Extensions: Send + Sync {
    /// Runs the active pricing plugins, then the validation plugins on the
    /// priced order.
    async fn evaluate(&self, quote: Quote) -> Result<Evaluation, ExtensionFailed>;
    /// Runs the active saga hooks for one step and phase.
    async fn run_hooks(&self, context: HookContext) -> Result<HookOutcome, ExtensionFailed>;
    /// Whether an active saga hook listens at this step and phase (so a
    /// saga can skip building the hooks' context when none does).
    fn has_saga_hooks_at(&self, step: &str, before: bool) -> bool {
        let _ = (step, before);
        true
    }
}

/// Whether a saga hook that listens at `listen` (`step:before` and
/// `step:after` entries; `None`: everywhere) is called at this step and
/// phase.
pub fn listens_at(listen: Option<&[String]>, step: &str, before: bool) -> bool {
    let phase = if before { "before" } else { "after" };
    listen.is_none_or(|points| {
        points
            .iter()
            .any(|p| p.split_once(':') == Some((step, phase)))
    })
}

/// Parses where a saga hook listens: comma-separated saga steps, each
/// alone (both phases) or as `step:before` / `step:after`; the answer
/// holds one `step:phase` entry per point, in order, without repeats.
pub fn parse_listen(text: &str) -> Result<Vec<String>, String> {
    let mut points: Vec<String> = Vec::new();
    for item in text.split(',') {
        let (step, phases): (&str, &[&str]) = match item.split_once(':') {
            None => (item, &["before", "after"]),
            Some((step, "before")) => (step, &["before"]),
            Some((step, "after")) => (step, &["after"]),
            Some(_) => return Err(format!("{item:?}: the phase is before or after")),
        };
        if commerce_domain::saga::Step::parse(step).is_none() {
            let known: Vec<&str> = commerce_domain::saga::Step::ALL
                .iter()
                .map(|s| s.as_str())
                .collect();
            return Err(format!(
                "{step:?} is not a saga step; one of {}",
                known.join(", ")
            ));
        }
        for phase in phases {
            let point = format!("{step}:{phase}");
            if !points.contains(&point) {
                points.push(point);
            }
        }
    }
    Ok(points)
}

#[cfg(test)]
mod listen_tests {
    use super::*;

    #[test]
    fn listen_points_are_parsed_and_matched() {
        let points = parse_listen("authorize-payment:before,notify").unwrap();
        assert_eq!(
            points,
            ["authorize-payment:before", "notify:before", "notify:after"]
        );
        assert!(listens_at(Some(&points), "authorize-payment", true));
        assert!(!listens_at(Some(&points), "authorize-payment", false));
        assert!(listens_at(Some(&points), "notify", false));
        assert!(!listens_at(Some(&points), "capture-payment", true));
        assert!(
            listens_at(None, "capture-payment", true),
            "no points: everywhere"
        );
        assert_eq!(
            parse_listen("notify,notify:after").unwrap(),
            ["notify:before", "notify:after"]
        );
        for bad in [
            "",
            "authorise-payment",
            "notify:during",
            "notify, notify",
            "notify,",
            ":before",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?}");
        }
    }
}
