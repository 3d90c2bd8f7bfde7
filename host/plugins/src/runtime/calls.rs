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
use commerce_app::ports::PluginRun;
use commerce_domain::pricing::check_adjustment;

use super::*;

/// Who a call is for: what it is counted in, and whether it is captured
/// in the run log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Serves a request: counted, failures (and a sample of the others)
    /// captured.
    Live,
    /// A shadow's copy of a live call: counted only in the shadow's
    /// report; failures captured, marked as shadow runs.
    Shadow,
    /// A dry run or a smoke call at upload: counted, never captured.
    Dry,
    /// A replay of recorded orders (`commerce_app::what_if`): neither
    /// counted nor captured, so that it cannot skew what live calls show.
    Replay,
}

/// The input of one call, of any extension point.
#[derive(Debug, Clone)]
pub(super) enum CallInput {
    Pricing(wit::Cart),
    Validation(wit::Order),
    Hook(wit::StepContext),
}

impl CallInput {
    /// Reads the JSON input of a plugin of `kind` (wit/README.md).
    pub fn parse(kind: PluginKind, input: serde_json::Value) -> serde_json::Result<Self> {
        Ok(match kind {
            PluginKind::Pricing => CallInput::Pricing(serde_json::from_value(input)?),
            PluginKind::Validation => CallInput::Validation(serde_json::from_value(input)?),
            PluginKind::SagaHook => CallInput::Hook(serde_json::from_value(input)?),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            CallInput::Pricing(cart) => serde_json::to_value(cart),
            CallInput::Validation(order) => serde_json::to_value(order),
            CallInput::Hook(context) => serde_json::to_value(context),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    /// The input as shown to an operator next to a shadow's answers: the
    /// customer's id masked to its last four characters (what an operator
    /// needs is the cart, not who it belongs to).
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = self.to_json();
        let customer = match &mut value {
            serde_json::Value::Object(o) if o.contains_key("order") => o
                .get_mut("order")
                .and_then(|order| order.get_mut("customer")),
            other => other.get_mut("customer"),
        };
        if let Some(id) = customer.and_then(|c| c.get_mut("id"))
            && let Some(text) = id.as_str()
        {
            let tail: String = text
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            *id = serde_json::Value::String(format!("…{tail}"));
        }
        value
    }
}

/// Bytes one transfer from a plugin to the host may carry.
pub(super) fn transfer_limit(budget: Budget) -> usize {
    budget.max_output.saturating_mul(TRANSFER_PER_OUTPUT)
}

/// A loaded plugin's call series at zero, so that its panels and alerts
/// have data before its first call.
pub(super) fn zero_series(plugin: &Loaded) {
    let (name, hook) = (plugin.name.clone(), plugin.kind.as_str());
    let _ = metrics::histogram!(PLUGIN_CALL_DURATION, "plugin" => name.clone(), "hook" => hook);
    metrics::counter!(PLUGIN_CALLS, "plugin" => name, "hook" => hook,
        "version" => plugin.version.to_string(), "outcome" => "ok")
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

    /// Runs one call in a fresh store, then logs what the plugin wrote,
    /// counts the outcome and captures the call in the run log as `mode`
    /// says (`input` is only built for a captured call).
    pub(super) fn call<R: serde::Serialize>(
        &self,
        plugin: &Loaded,
        budget: Budget,
        mode: Mode,
        input: impl FnOnce() -> serde_json::Value,
        run: impl FnOnce(&Linked, &mut Store<PluginState>) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<R, PluginError> {
        let started = std::time::Instant::now();
        let (result, fuel, log) = if let Linked::Broken(reason) = &plugin.linked {
            (
                Err(PluginError::Unavailable(reason.clone())),
                0,
                String::new(),
            )
        } else {
            let mut store = self.new_store(plugin.config.clone(), budget);
            let result = match run(&plugin.linked, &mut store) {
                Ok(r) => r,
                Err(e) => Err(self.classify(e, &store, budget)),
            };
            let fuel = budget.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
            let (log, dropped) = store.data().log.contents();
            if !log.is_empty() {
                tracing::info!(plugin = %plugin.name, dropped_writes = dropped, output = %log.trim_end(), "plugin log");
            }
            (result, fuel, log)
        };
        let elapsed = started.elapsed();
        let outcome = result.as_ref().map_or_else(PluginError::kind, |_| "ok");
        if matches!(mode, Mode::Live | Mode::Dry) {
            let (name, hook) = (plugin.name.clone(), plugin.kind.as_str());
            metrics::histogram!(PLUGIN_CALL_DURATION, "plugin" => name.clone(), "hook" => hook)
                .record(elapsed.as_secs_f64());
            metrics::counter!(PLUGIN_CALLS, "plugin" => name, "hook" => hook,
                "version" => plugin.version.to_string(), "outcome" => outcome)
            .increment(1);
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            let entry = stats.entry(plugin.name.clone()).or_default();
            entry.calls += 1;
            if let Err(e) = &result {
                *entry.failures.entry(e.kind().to_owned()).or_default() += 1;
            }
        }
        if let Err(e) = &result {
            tracing::warn!(plugin = %plugin.name, version = plugin.version, sha256 = %plugin.sha256, shadow = mode == Mode::Shadow, failure = e.kind(), error = %e, "plugin call failed");
        }
        let captured = match mode {
            Mode::Live => result.is_err() || self.run_sampler.take(),
            Mode::Shadow => result.is_err(),
            Mode::Dry | Mode::Replay => false,
        };
        if captured {
            self.runs.capture(PluginRun {
                id: uuid::Uuid::now_v7(),
                name: plugin.name.clone(),
                version: plugin.version,
                kind: plugin.kind,
                outcome: outcome.to_owned(),
                error: result.as_ref().err().map(ToString::to_string),
                input: input(),
                output: result
                    .as_ref()
                    .ok()
                    .and_then(|r| serde_json::to_value(r).ok()),
                fuel,
                duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                log,
                shadow: mode == Mode::Shadow,
                // The call's start, read from the clock only for a
                // captured call.
                at: chrono::Utc::now() - chrono::Duration::from_std(elapsed).unwrap_or_default(),
            });
        }
        result
    }

    /// Calls `plugin` on `input`, whatever its extension point; the answer
    /// as JSON (adjustments, violations or a decision).
    pub(super) fn call_input(
        &self,
        plugin: &Loaded,
        input: &CallInput,
        mode: Mode,
    ) -> Result<serde_json::Value, PluginError> {
        let json = |r: serde_json::Result<serde_json::Value>| {
            r.map_err(|e| PluginError::InvalidOutput(e.to_string()))
        };
        match input {
            CallInput::Pricing(cart) => self
                .call_pricing(plugin, cart, mode)
                .and_then(|a| json(serde_json::to_value(a))),
            CallInput::Validation(order) => self
                .call_validation(plugin, order, mode)
                .and_then(|v| json(serde_json::to_value(v))),
            CallInput::Hook(context) => self
                .call_hook(plugin, context, mode)
                .and_then(|d| json(serde_json::to_value(d))),
        }
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
        mode: Mode,
    ) -> Result<Vec<wit::Adjustment>, PluginError> {
        let budget = self.budget(plugin.limits, cart.lines.len());
        Self::check_input(budget, convert::cart_size(cart))?;
        let input = || serde_json::to_value(cart).unwrap_or_default();
        self.call(plugin, budget, mode, input, |linked, store| {
            let Linked::Pricing(pre) = linked else {
                return Ok(Err(PluginError::Unavailable("not a pricing plugin".into())));
            };
            let bindings = pre.instantiate(&mut *store)?;
            Ok(match bindings.call_price(&mut *store, cart)? {
                Ok(adjustments) => {
                    Self::check_output(budget, convert::adjustments_size(&adjustments))
                        .and_then(|()| Self::check_adjustments(cart, &adjustments))
                        .map(|()| adjustments)
                }
                // An error message is output like any answer.
                Err(message) => Self::check_output(budget, message.len()).and(Err(
                    PluginError::Failed(message.chars().take(500).collect()),
                )),
            })
        })
    }

    /// Whether the host can take a pricing answer for `cart` (see
    /// [`convert::check_adjustment`]). A cart the host built has a known
    /// currency; a dry run's may not, and is then checked when priced.
    fn check_adjustments(
        cart: &wit::Cart,
        adjustments: &[wit::Adjustment],
    ) -> Result<(), PluginError> {
        let Ok(currency) = commerce_domain::Currency::parse(&cart.currency) else {
            return Ok(());
        };
        adjustments
            .iter()
            .try_for_each(|a| convert::check_adjustment(a, currency, cart.lines.len()))
            .map_err(PluginError::InvalidOutput)
    }

    pub(super) fn call_validation(
        &self,
        plugin: &Loaded,
        order: &wit::Order,
        mode: Mode,
    ) -> Result<Vec<wit::Violation>, PluginError> {
        let budget = self.budget(plugin.limits, order.lines.len());
        Self::check_input(budget, convert::order_size(order))?;
        let input = || serde_json::to_value(order).unwrap_or_default();
        self.call(plugin, budget, mode, input, |linked, store| {
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
        mode: Mode,
    ) -> Result<wit::Decision, PluginError> {
        let budget = self.budget(plugin.limits, context.order.lines.len());
        Self::check_input(budget, convert::order_size(&context.order))?;
        let input = || serde_json::to_value(context).unwrap_or_default();
        self.call(plugin, budget, mode, input, |linked, store| {
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
        let customer = quote.customer_id;
        let cart = convert::cart(quote);
        let lines = quote.lines.len();
        self.refuse_oversized(
            set.of(PluginKind::Pricing, customer).map(|(_, p)| p),
            lines,
            convert::cart_size(&cart),
        )?;
        self.refuse_oversized(
            set.slots
                .iter()
                .map(|s| s.serving(customer).as_ref())
                .filter(|p| p.kind != PluginKind::Pricing),
            lines,
            convert::quote_order_size(quote),
        )?;
        let mut evaluation = Evaluation::default();
        for (slot, plugin) in set.of(PluginKind::Pricing, customer) {
            let answer = self.call_pricing(plugin, &cart, Mode::Live);
            self.offer_shadow(
                slot,
                || CallInput::Pricing(cart.clone()),
                || answered(&answer),
            );
            match answer.and_then(|adjustments| priced(plugin, quote, adjustments)) {
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
        for (slot, plugin) in set.of(PluginKind::Validation, customer) {
            let answer = self.call_validation(plugin, &order, Mode::Live);
            self.offer_shadow(
                slot,
                || CallInput::Validation(order.clone()),
                || answered(&answer),
            );
            match answer {
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
            .of(PluginKind::SagaHook, context.quote.customer_id)
            .filter(|(_, p)| p.listens_at(&context.step, context.before));
        for (slot, plugin) in listening {
            let answer = self.call_hook(plugin, &wit_context, Mode::Live);
            self.offer_shadow(
                slot,
                || CallInput::Hook(wit_context.clone()),
                || answered(&answer),
            );
            match answer {
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

/// A pricing plugin's answer as an order records it: each adjustment
/// converted and put to the domain's rule. Its fit to the cart (currency,
/// amount, line) was checked inside the call ([`convert::check_adjustment`]),
/// whose cart the host built from this quote.
pub(super) fn priced(
    plugin: &Loaded,
    quote: &Quote,
    adjustments: Vec<wit::Adjustment>,
) -> Result<Vec<commerce_domain::Adjustment>, PluginError> {
    let currency = quote.currency;
    adjustments
        .into_iter()
        .map(|a| {
            check_adjustment(
                currency,
                quote.lines.len(),
                convert::adjustment(&plugin.name, a, currency),
            )
            .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(PluginError::InvalidOutput)
}

/// A call's answer as a shadow compares it: its JSON, or its failure kind.
fn answered<R: serde::Serialize>(
    answer: &Result<R, PluginError>,
) -> Result<serde_json::Value, String> {
    match answer {
        Ok(r) => serde_json::to_value(r).map_err(|e| e.to_string()),
        Err(e) => Err(e.kind().to_owned()),
    }
}
