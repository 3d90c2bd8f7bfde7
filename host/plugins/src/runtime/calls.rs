//! Calls into plugins: a fresh store per call with its limits, the typed
//! calls of each extension point with their input and output bounds, how
//! a failure is classified, and how a set of plugins is evaluated under
//! each extension point's failure policy.

use std::sync::Arc;

use wasmtime::{Store, Trap};

use crate::bindings::types as wit;
use crate::convert;
use crate::limits;
use crate::sandbox::{CallLimits, MAX_TABLE_ELEMENTS, PluginState};
use commerce_app::extensions::{
    Evaluation, ExtensionFailed, HookContext, HookOutcome, PluginKind, Quote, TooLarge,
};
use commerce_app::plugins::{PLUGIN_CALL_DURATION, PLUGIN_CALLS};
use commerce_domain::pricing::check_adjustment;

use super::*;

/// Bytes one transfer from a plugin to the host may carry.
pub(super) fn transfer_limit(budget: Budget) -> usize {
    budget.max_output.saturating_mul(TRANSFER_PER_OUTPUT)
}

/// A loaded plugin's call series at zero, so that its panels and alerts
/// have data before its first call.
pub(super) fn zero_series(name: &str, kind: PluginKind) {
    let (name, hook) = (name.to_owned(), kind.as_str());
    let _ = metrics::histogram!(PLUGIN_CALL_DURATION, "plugin" => name.clone(), "hook" => hook);
    metrics::counter!(PLUGIN_CALLS, "plugin" => name, "hook" => hook, "outcome" => "ok")
        .increment(0);
}

/// Inputs of up to this many lines get the configured limits; larger ones
/// get them in proportion to their lines (see [`PluginRuntime::budget`]).
pub const BASE_LINES: usize = 200;

/// The limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub fuel: u64,
    pub deadline: Duration,
    pub memory: usize,
    pub max_input: usize,
    pub max_output: usize,
}

impl PluginRuntime {
    /// The limits of a call of a plugin with `limits` on an input of
    /// `lines` lines: the settings' fuel, deadline and output limit and the
    /// plugin's input limit for up to [`BASE_LINES`] lines, and above that
    /// each of these times `lines / BASE_LINES` (a 1,000-line cart gets
    /// five times the fuel, time and bytes of a 200-line one). Memory (the
    /// plugin's) does not scale.
    pub(crate) fn budget(&self, limits: Resolved, lines: usize) -> Budget {
        let s = &self.settings;
        let lines = lines.max(BASE_LINES) as u128;
        let scale = |n: u128| n.saturating_mul(lines) / BASE_LINES as u128;
        let size = |n: usize| usize::try_from(scale(n as u128)).unwrap_or(usize::MAX);
        Budget {
            fuel: u64::try_from(scale(u128::from(s.fuel))).unwrap_or(u64::MAX),
            deadline: Duration::from_micros(
                u64::try_from(scale(s.deadline.as_micros())).unwrap_or(u64::MAX),
            ),
            memory: limits.memory,
            max_input: size(limits.max_input),
            max_output: size(s.max_output),
        }
    }

    pub(super) fn new_store(&self, config: Arc<str>, budget: Budget) -> Store<PluginState> {
        let limits = CallLimits {
            memory: budget.memory,
            log: self.settings.max_log,
        };
        let mut store = Store::new(&self.engine, PluginState::new(config, limits));
        store.limiter(|s| &mut s.limiter);
        // What wasmtime may copy out of the plugin in one transfer: an
        // answer (lifted when the call returns), or the arguments of one
        // call to the host. wasmtime measures every list and string against
        // this before it allocates for it, so an answer built to cost the
        // host more (a list of entries that all point at one large string)
        // is refused before it is copied; the output limit then applies
        // exactly to what was copied.
        store.set_hostcall_fuel(transfer_limit(budget));
        store.set_fuel(budget.fuel).expect("fuel is enabled");
        // Round up, plus one tick: the current tick may be about to end.
        let ticks = budget
            .deadline
            .as_millis()
            .div_ceil(TICK.as_millis())
            .max(1) as u64
            + 1;
        store.set_epoch_deadline(ticks);
        store
    }

    pub(super) fn classify(
        &self,
        error: wasmtime::Error,
        store: &Store<PluginState>,
        budget: Budget,
    ) -> PluginError {
        let memory_denied = store.data().limiter.denied;
        // wasmtime's error type for a transfer over the hostcall budget is
        // private; its message is what identifies it.
        if error.chain().any(|e| {
            e.to_string()
                .contains("fuel allocated for hostcalls has been exhausted")
        }) {
            return PluginError::TransferTooLarge {
                limit: transfer_limit(budget),
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::FuelExhausted(budget.fuel),
            Some(Trap::Interrupt) => PluginError::DeadlineExceeded(budget.deadline),
            Some(Trap::StackOverflow) => PluginError::StackOverflow,
            _ if memory_denied => PluginError::OutOfMemory(budget.memory),
            Some(trap) => PluginError::Trap(trap.to_string()),
            None => PluginError::Trap(format!("{error:#}")),
        }
    }

    /// Runs one call in a fresh store, then logs what the plugin wrote and
    /// counts the outcome.
    pub(super) fn call<R>(
        &self,
        plugin: &Loaded,
        budget: Budget,
        run: impl FnOnce(&Linked, &mut Store<PluginState>) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<R, PluginError> {
        let started = std::time::Instant::now();
        let result = if let Linked::Broken(reason) = &plugin.linked {
            Err(PluginError::Unavailable(reason.clone()))
        } else {
            let mut store = self.new_store(plugin.config.clone(), budget);
            let result = match run(&plugin.linked, &mut store) {
                Ok(r) => r,
                Err(e) => Err(self.classify(e, &store, budget)),
            };
            let (log, dropped) = store.data().log.contents();
            if !log.is_empty() {
                tracing::info!(plugin = %plugin.name, dropped_writes = dropped, output = %log.trim_end(), "plugin log");
            }
            result
        };
        let (name, hook) = (plugin.name.clone(), plugin.kind.as_str());
        metrics::histogram!(PLUGIN_CALL_DURATION, "plugin" => name.clone(), "hook" => hook)
            .record(started.elapsed().as_secs_f64());
        let outcome = result.as_ref().map_or_else(PluginError::kind, |_| "ok");
        metrics::counter!(PLUGIN_CALLS, "plugin" => name, "hook" => hook, "outcome" => outcome)
            .increment(1);
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let entry = stats.entry(plugin.name.clone()).or_default();
        entry.calls += 1;
        if let Err(e) = &result {
            *entry.failures.entry(e.kind().to_owned()).or_default() += 1;
            tracing::warn!(plugin = %plugin.name, sha256 = %plugin.sha256, failure = e.kind(), error = %e, "plugin call failed");
        }
        result
    }

    pub(super) fn check_input(budget: Budget, size: usize) -> Result<(), PluginError> {
        if size > budget.max_input {
            return Err(PluginError::InputTooLarge {
                size,
                limit: budget.max_input,
            });
        }
        Ok(())
    }

    /// What an uploaded component with `memory` bytes of memory may
    /// declare (see [`limits`]).
    pub(super) fn upload_limits(&self, memory: usize) -> limits::UploadLimits {
        limits::UploadLimits {
            memory,
            memories: 1,
            tables: MAX_TABLES,
            table_elements: MAX_TABLE_ELEMENTS as u64,
            imports: MAX_IMPORTS,
            exports: MAX_EXPORTS,
        }
    }

    pub(super) fn check_output(budget: Budget, size: usize) -> Result<(), PluginError> {
        if size > budget.max_output {
            return Err(PluginError::OutputTooLarge {
                size,
                limit: budget.max_output,
            });
        }
        Ok(())
    }

    pub(super) fn call_pricing(
        &self,
        plugin: &Loaded,
        cart: &wit::Cart,
    ) -> Result<Vec<wit::Adjustment>, PluginError> {
        let budget = self.budget(plugin.limits, cart.lines.len());
        Self::check_input(budget, convert::cart_size(cart))?;
        self.call(plugin, budget, |linked, store| {
            let Linked::Pricing(pre) = linked else {
                return Ok(Err(PluginError::Unavailable("not a pricing plugin".into())));
            };
            let bindings = pre.instantiate(&mut *store)?;
            Ok(match bindings.call_price(&mut *store, cart)? {
                Ok(adjustments) => {
                    Self::check_output(budget, convert::adjustments_size(&adjustments))
                        .map(|()| adjustments)
                }
                // An error message is output like any answer.
                Err(message) => Self::check_output(budget, message.len()).and(Err(
                    PluginError::Failed(message.chars().take(500).collect()),
                )),
            })
        })
    }

    pub(super) fn call_validation(
        &self,
        plugin: &Loaded,
        order: &wit::Order,
    ) -> Result<Vec<wit::Violation>, PluginError> {
        let budget = self.budget(plugin.limits, order.lines.len());
        Self::check_input(budget, convert::order_size(order))?;
        self.call(plugin, budget, |linked, store| {
            let Linked::Validation(pre) = linked else {
                return Ok(Err(PluginError::Unavailable(
                    "not a validation plugin".into(),
                )));
            };
            let bindings = pre.instantiate(&mut *store)?;
            let violations = bindings.call_validate(&mut *store, order)?;
            Ok(
                Self::check_output(budget, convert::violations_size(&violations))
                    .map(|()| violations),
            )
        })
    }

    pub(super) fn call_hook(
        &self,
        plugin: &Loaded,
        context: &wit::StepContext,
    ) -> Result<wit::Decision, PluginError> {
        let budget = self.budget(plugin.limits, context.order.lines.len());
        Self::check_input(budget, convert::order_size(&context.order))?;
        self.call(plugin, budget, |linked, store| {
            let Linked::Hook(pre) = linked else {
                return Ok(Err(PluginError::Unavailable(
                    "not a saga-hook plugin".into(),
                )));
            };
            let bindings = pre.instantiate(&mut *store)?;
            let decision = bindings.call_on_step(&mut *store, context)?;
            let size = match &decision {
                wit::Decision::Continue => 0,
                wit::Decision::Veto(reason) => reason.len(),
            };
            Ok(Self::check_output(budget, size).map(|()| decision))
        })
    }

    /// Pricing then validation, on one plugin set.
    pub(super) fn evaluate_on(
        &self,
        set: &PluginSet,
        quote: &Quote,
    ) -> Result<Evaluation, ExtensionFailed> {
        let currency = quote.currency;
        let cart = convert::cart(quote);
        let lines = quote.lines.len();
        self.refuse_oversized(
            set.of(PluginKind::Pricing),
            lines,
            convert::cart_size(&cart),
        )?;
        self.refuse_oversized(
            set.plugins.iter().filter(|p| p.kind != PluginKind::Pricing),
            lines,
            convert::quote_order_size(quote),
        )?;
        let mut evaluation = Evaluation::default();
        for plugin in set.of(PluginKind::Pricing) {
            let priced = self.call_pricing(plugin, &cart).and_then(|adjustments| {
                adjustments
                    .into_iter()
                    .map(|a| {
                        convert::adjustment(&plugin.name, a, currency).and_then(|a| {
                            check_adjustment(currency, quote.lines.len(), a)
                                .map_err(|e| e.to_string())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(PluginError::InvalidOutput)
            });
            match priced {
                Ok(adjustments) => {
                    evaluation.adjustments.extend(adjustments);
                    evaluation.plugins.push(plugin.reference());
                }
                Err(e) => {
                    self.on_failure(PluginKind::Pricing, self.settings.pricing_policy, plugin, e)?
                }
            }
        }
        let order = convert::order(quote, convert::priced_total(quote, &evaluation.adjustments));
        for plugin in set.of(PluginKind::Validation) {
            match self.call_validation(plugin, &order) {
                Ok(violations) => {
                    evaluation.violations.extend(
                        violations
                            .into_iter()
                            .map(|v| convert::violation(&plugin.name, v)),
                    );
                    evaluation.plugins.push(plugin.reference());
                }
                // Validation always fails closed: an order nobody could
                // check is not accepted.
                Err(e) => {
                    self.on_failure(PluginKind::Validation, FailurePolicy::Closed, plugin, e)?
                }
            }
        }
        Ok(evaluation)
    }

    /// Pricing then validation on the current set, on this thread
    /// (benchmarks; the service goes through [`Extensions::evaluate`]).
    pub fn evaluate_now(&self, quote: &Quote) -> Result<Evaluation, ExtensionFailed> {
        let set = self.active.load_full();
        self.evaluate_on(&set, quote)
    }

    /// Refuses an input larger than one of `plugins` accepts, before any
    /// call and whatever the failure policy: the request is too large for
    /// the plugin (a 4xx), the plugin did not fail. Saga hooks are checked
    /// when the order is priced, so an order they could not be called on
    /// is never accepted.
    pub(super) fn refuse_oversized<'a>(
        &self,
        plugins: impl Iterator<Item = &'a Loaded>,
        lines: usize,
        size: usize,
    ) -> Result<(), ExtensionFailed> {
        for plugin in plugins {
            let limit = self.budget(plugin.limits, lines).max_input;
            if size > limit {
                return Err(ExtensionFailed {
                    kind: plugin.kind,
                    plugin: plugin.name.clone(),
                    reason: PluginError::InputTooLarge { size, limit }.to_string(),
                    too_large: Some(TooLarge { size, limit }),
                });
            }
        }
        Ok(())
    }

    pub(super) fn on_failure(
        &self,
        kind: PluginKind,
        policy: FailurePolicy,
        plugin: &Loaded,
        error: PluginError,
    ) -> Result<(), ExtensionFailed> {
        match policy {
            FailurePolicy::Closed => Err(ExtensionFailed {
                kind,
                plugin: plugin.name.clone(),
                reason: error.to_string(),
                too_large: None,
            }),
            FailurePolicy::Skip => {
                tracing::warn!(plugin = %plugin.name, kind = kind.as_str(), error = %error, "skipping a failed plugin");
                Ok(())
            }
        }
    }

    pub(super) fn run_hooks_on(
        &self,
        set: &PluginSet,
        context: &HookContext,
    ) -> Result<HookOutcome, ExtensionFailed> {
        let total = convert::priced_total(&context.quote, &context.adjustments);
        let wit_context = convert::step_context(context, total);
        let listening = set
            .of(PluginKind::SagaHook)
            .filter(|p| p.listens_at(&context.step, context.before));
        for plugin in listening {
            match self.call_hook(plugin, &wit_context) {
                Ok(wit::Decision::Continue) => {}
                Ok(wit::Decision::Veto(reason)) => {
                    return Ok(HookOutcome::Veto {
                        plugin: plugin.name.clone(),
                        reason,
                    });
                }
                Err(e) => {
                    self.on_failure(PluginKind::SagaHook, self.settings.hook_policy, plugin, e)?
                }
            }
        }
        Ok(HookOutcome::Continue)
    }
}
