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

/// A plugin failed and the extension point's policy is to fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} plugin {plugin} failed: {reason}")]
pub struct ExtensionFailed {
    pub kind: PluginKind,
    pub plugin: String,
    pub reason: String,
}

/// The extension points.
#[async_trait]
pub trait Extensions: Send + Sync {
    /// Runs the active pricing plugins, then the validation plugins on the
    /// priced order.
    async fn evaluate(&self, quote: Quote) -> Result<Evaluation, ExtensionFailed>;
    /// Runs the active saga hooks for one step and phase.
    async fn run_hooks(&self, context: HookContext) -> Result<HookOutcome, ExtensionFailed>;
    /// Whether any saga hook is active (so a saga can skip building the
    /// hooks' context when none is).
    fn has_saga_hooks(&self) -> bool {
        true
    }
}
