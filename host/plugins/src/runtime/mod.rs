//! The runtime: the engine, the active plugin set and its reload, and the
//! extension points the application calls.
//!
//! - [`calls`]: per-call stores, typed calls with their bounds, failure
//!   policies;
//! - [`upload`]: the checks an upload must pass;
//! - [`cache`]: compiled components in memory and on disk;
//! - [`rollout`]: which version serves a customer (canary), shadows;
//! - [`runlog`]: captured calls.

mod cache;
mod calls;
mod rollout;
mod runlog;
mod upload;

pub use rollout::{PLUGIN_CANARY_PERCENT, PLUGIN_SHADOW};
pub use runlog::PLUGIN_RUNS_DROPPED;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::pricing::PricingPre;
use super::bindings::saga_hook::SagaHookPre;
use super::bindings::validation::ValidationPre;
use super::convert;
use super::sandbox::PluginState;
use calls::CallInput;
use commerce_app::extensions::{
    Evaluation, ExtensionFailed, Extensions, HookContext, HookOutcome, PluginKind, Quote,
};
use commerce_app::plugins::{
    LimitMaxima, PluginHost, PluginRejected, PluginStats, ReplayAnswer, ReplayInput, ShadowReport,
};
use commerce_app::ports::{PluginLimits, PluginRecord, PluginRegistry};
use commerce_domain::PluginRef;
use rollout::{Sampler, Shadow, Slot};

/// What a plugin failing at an extension point does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Refuse the request (503).
    Closed,
    /// Go on without the failing plugin (logged and counted).
    Skip,
}

/// Limits and policies of the runtime.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Fuel (about one unit per WebAssembly instruction) per call.
    pub fuel: u64,
    /// Wall-clock budget per call.
    pub deadline: Duration,
    /// Linear memory per call, in bytes.
    pub memory: usize,
    /// Largest input per call, in bytes.
    pub max_input: usize,
    /// Largest output per call, in bytes.
    pub max_output: usize,
    /// Log bytes kept per call.
    pub max_log: usize,
    /// Largest component accepted at upload, in bytes.
    pub max_component: usize,
    pub pricing_policy: FailurePolicy,
    pub hook_policy: FailurePolicy,
    /// Where precompiled artifacts are kept.
    pub cache_dir: PathBuf,
    /// How often the registry's generation is polled.
    pub poll_interval: Duration,
    /// Versions kept per plugin name ([`PluginHost::versions_kept`]).
    pub versions_kept: u32,
    /// Successful live calls captured in the run log, in parts per million
    /// (failed calls are always captured).
    pub run_sample_ppm: u32,
    /// Runs kept in the run log per plugin (the newest).
    pub runs_kept: u32,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            fuel: 10_000_000,
            deadline: Duration::from_millis(50),
            memory: 16 << 20,
            max_input: 128 << 10,
            max_output: 20 << 10,
            max_log: 1 << 10,
            max_component: 32 << 20,
            pricing_policy: FailurePolicy::Closed,
            hook_policy: FailurePolicy::Closed,
            cache_dir: PathBuf::from("./data/plugin-cache"),
            poll_interval: Duration::from_millis(250),
            versions_kept: 10,
            run_sample_ppm: 1_000,
            runs_kept: 1_000,
        }
    }
}

/// Why one plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("ran out of fuel ({0} units)")]
    FuelExhausted(u64),
    #[error("exceeded its deadline of {0:?}")]
    DeadlineExceeded(Duration),
    #[error("ran out of memory (limit {0} bytes)")]
    OutOfMemory(usize),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("input of {size} bytes is over the limit of {limit}")]
    InputTooLarge { size: usize, limit: usize },
    #[error("output of {size} bytes is over the limit of {limit}")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("passed more than {limit} bytes to the host at once (refused before it was copied)")]
    TransferTooLarge { limit: usize },
    #[error("returned an invalid result: {0}")]
    InvalidOutput(String),
    #[error("reported an error: {0}")]
    Failed(String),
    #[error("could not be loaded: {0}")]
    Unavailable(String),
}

impl PluginError {
    /// The counter this failure goes to.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::FuelExhausted(_) => "fuel",
            PluginError::DeadlineExceeded(_) => "deadline",
            PluginError::OutOfMemory(_) => "memory",
            PluginError::StackOverflow => "stack",
            PluginError::Trap(_) => "trap",
            PluginError::InputTooLarge { .. } => "input",
            PluginError::OutputTooLarge { .. } | PluginError::TransferTooLarge { .. } => "output",
            PluginError::InvalidOutput(_) => "invalid",
            PluginError::Failed(_) => "error",
            PluginError::Unavailable(_) => "unavailable",
        }
    }
}

/// Why a candidate component was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Compile(String),
    #[error("{0}")]
    Link(String),
    #[error("{0}")]
    Limits(String),
    #[error("the smoke call failed: the plugin {0}")]
    Smoke(PluginError),
}

/// A component linked for its world.
enum Linked {
    Pricing(PricingPre<PluginState>),
    Validation(ValidationPre<PluginState>),
    Hook(SagaHookPre<PluginState>),
    /// Could not be loaded; every call fails with this reason.
    Broken(String),
}

/// One active plugin version.
struct Loaded {
    name: String,
    version: i64,
    sha256: String,
    kind: PluginKind,
    config: Arc<str>,
    /// Saga hooks: where it is called (`None`: everywhere).
    listen: Option<Arc<[String]>>,
    /// Its limits, resolved against the operator's maxima.
    limits: Resolved,
    linked: Linked,
}

/// A plugin version's memory and base input limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub memory: usize,
    pub max_input: usize,
}

impl Loaded {
    /// `record`'s version, with `limits` resolved and `linked` as loaded.
    fn new(record: &PluginRecord, limits: Resolved, linked: Linked) -> Self {
        Loaded {
            name: record.name.clone(),
            version: record.version,
            sha256: record.sha256.clone(),
            kind: record.kind,
            config: Arc::from(record.config.as_str()),
            listen: record.listen.clone().map(Arc::from),
            limits,
            linked,
        }
    }

    /// Whether this saga hook is called at `step`, before or after.
    fn listens_at(&self, step: &str, before: bool) -> bool {
        commerce_app::extensions::listens_at(self.listen.as_deref(), step, before)
    }

    fn reference(&self) -> PluginRef {
        PluginRef {
            name: self.name.clone(),
            version: self.version,
            sha256: self.sha256.clone(),
        }
    }
}

/// The active plugins, in the order they run (priority, then name), each
/// with its canary and shadow versions.
struct PluginSet {
    generation: i64,
    slots: Vec<Slot>,
}

impl PluginSet {
    /// The plugins of `kind`, each with the version serving `customer`.
    fn of(&self, kind: PluginKind, customer: uuid::Uuid) -> impl Iterator<Item = (&Slot, &Loaded)> {
        self.slots
            .iter()
            .filter(move |s| s.active.kind == kind)
            .map(move |s| (s, s.serving(customer).as_ref()))
    }

    /// Every version that may serve a call (active and canary).
    fn servers(&self) -> impl Iterator<Item = &Loaded> {
        self.slots.iter().flat_map(Slot::servers).map(Arc::as_ref)
    }
}

/// The runtime. Shared (`Arc`) by the API, the poller and the watcher.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    settings: PluginSettings,
    registry: Arc<dyn PluginRegistry>,
    active: ArcSwap<PluginSet>,
    /// Compiled components by sha256.
    compiled: Mutex<HashMap<String, Component>>,
    stats: Mutex<BTreeMap<String, PluginStats>>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Engine-configuration part of artifact file names.
    cache_tag: String,
    ticker_stop: Arc<AtomicBool>,
    pooled: bool,
    /// Calls running at once, at most: a few per core. Calls are short
    /// and CPU-bound; dozens of blocking threads at once only share the
    /// cores, and a call's wall-clock deadline pays for the sharing (a
    /// burst at start-up once pushed calls past 50 ms). Waiting for a
    /// slot happens before the call's store, and its deadline, exist.
    slots: Arc<tokio::sync::Semaphore>,
    /// Itself, for the blocking tasks that calls run on.
    me: Weak<PluginRuntime>,
    /// The shadow queue and reports.
    shadows: rollout::Shadows,
    /// The run log's capturing end, and which successful calls it takes.
    runs: runlog::RunLog,
    run_sampler: rollout::Sampler,
}

/// Concurrent plugin calls per core. Measured with `commerce bench`
/// flat out on 2 cores (BENCHMARKS.md): 8 gave 1,700-1,780 orders/s;
/// 2, 4 and 16 gave 1,400-1,530, unbounded 1,500.
const CALLS_PER_CORE: usize = 8;

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Core tables a plugin may define: one for its functions, a few for the
/// glue toolchains put around imports.
const MAX_TABLES: u32 = 4;

/// Component imports a plugin may have: each must be one the host
/// provides (WASI p2 and `host`, about 30 interfaces).
const MAX_IMPORTS: usize = 64;

/// Component exports a plugin may have: a world exports one function.
const MAX_EXPORTS: usize = 8;

/// How many times the output limit one transfer from a plugin to the host
/// may carry, as wasmtime counts it (host bytes: about 72 per adjustment
/// and 56 per violation, where the output limit counts 32 and 16, plus the
/// strings). Any answer within the output limit fits; see `new_store`.
const TRANSFER_PER_OUTPUT: usize = 4;

/// Bytes of each pooled memory and table kept resident between instances.
const KEEP_RESIDENT: usize = 256 << 10;

/// Time per epoch tick: the granularity of call deadlines. Coarse enough
/// that the ticker thread does not steal the CPU from calls on a small
/// machine (1 ms ticks showed in the p99 of the plugin stage).
const TICK: Duration = Duration::from_millis(5);

fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10);
    config
}

/// An engine with the pooling allocator, or the on-demand one when the
/// address space for the pool cannot be reserved (containers with a low
/// `ulimit -v`, for instance).
fn build_engine(settings: &PluginSettings) -> anyhow::Result<(Engine, bool)> {
    let mut config = engine_config();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(512)
        .total_memories(512)
        .total_tables(512)
        .total_stacks(256)
        // Our limiter, not the pool, is the binding memory constraint, so
        // that running out of memory is reported as such.
        .max_memory_size(settings.memory.saturating_mul(2))
        // Reset the first pages of a returned memory with memset rather
        // than madvise, so that the next instance does not page-fault them
        // back in: most calls touch only these.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // Where the kernel can say which pages a call dirtied (Linux 6.7+),
        // reset only those, not the whole resident prefix.
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok((engine, true)),
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; instantiating on demand");
            let mut config = engine_config();
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Ok((
                Engine::new(&config).map_err(|e| anyhow::anyhow!("{e}"))?,
                false,
            ))
        }
    }
}

impl PluginRuntime {
    /// Builds the engine and linker and loads the active set.
    pub async fn start(
        registry: Arc<dyn PluginRegistry>,
        settings: PluginSettings,
    ) -> anyhow::Result<Arc<Self>> {
        let (engine, pooled) = build_engine(&settings)?;
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        super::sandbox::add_host_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache_tag = format!("{:016x}", hasher.finish());
        std::fs::create_dir_all(&settings.cache_dir)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })?;
        }
        let (shadows, shadow_jobs) = rollout::Shadows::new();
        let runs = runlog::RunLog::start(registry.clone(), settings.runs_kept);
        let run_sampler = rollout::Sampler::new(settings.run_sample_ppm);
        let runtime = Arc::new_cyclic(|me| PluginRuntime {
            me: me.clone(),
            shadows,
            runs,
            run_sampler,
            engine,
            linker,
            settings,
            registry,
            active: ArcSwap::from_pointee(PluginSet {
                generation: -1,
                slots: vec![],
            }),
            compiled: Mutex::new(HashMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            reload_lock: tokio::sync::Mutex::new(()),
            cache_tag,
            ticker_stop,
            pooled,
            slots: Arc::new(tokio::sync::Semaphore::new(
                CALLS_PER_CORE
                    * std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
        });
        rollout::spawn_worker(Arc::downgrade(&runtime), shadow_jobs)?;
        runtime.reload_now().await?;
        tracing::info!(pooling = runtime.pooled, cache = %runtime.settings.cache_dir.display(), "plugin runtime ready");
        Ok(runtime)
    }

    /// Runs `call` on a blocking thread once a slot is free (see
    /// `slots`), holding the slot until it ends. Its log lines (plugin
    /// output, failures) belong to the request or saga that made it.
    async fn in_slot<R, F>(&self, kind: PluginKind, call: F) -> Result<R, ExtensionFailed>
    where
        R: Send + 'static,
        F: FnOnce(&PluginRuntime) -> Result<R, ExtensionFailed> + Send + 'static,
    {
        let runtime = self.self_arc();
        let span = tracing::Span::current();
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the call slots are never closed");
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            span.in_scope(|| call(&runtime))
        })
        .await
        .map_err(|e| ExtensionFailed {
            kind,
            plugin: "-".into(),
            reason: format!("plugin task failed: {e}"),
            too_large: None,
        })?
    }

    /// A version's limits: what it was installed with, else the settings'
    /// (which are the maxima; an install cannot go above them, and a
    /// lowered setting lowers what older versions get too).
    pub(crate) fn resolve(&self, limits: PluginLimits) -> Resolved {
        let within = |set: Option<u64>, max: usize| {
            set.map_or(max, |v| usize::try_from(v).unwrap_or(usize::MAX).min(max))
        };
        Resolved {
            memory: within(limits.max_memory, self.settings.memory),
            max_input: within(limits.max_input, self.settings.max_input),
        }
    }

    fn self_arc(&self) -> Arc<Self> {
        self.me
            .upgrade()
            .expect("the runtime is alive while called")
    }

    /// Polls the registry's generation and reloads when it moves, until the
    /// runtime is dropped.
    pub fn spawn_poller(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.settings.poll_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(runtime) = weak.upgrade() else { break };
                match runtime.registry.plugin_generation().await {
                    Ok(g) if g != runtime.active.load().generation => {
                        if let Err(e) = runtime.reload_now().await {
                            tracing::error!(error = ?e, "reloading plugins failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = ?e, "polling the plugin registry failed"),
                }
            }
        })
    }

    /// Links a component for the world of `kind`.
    fn link(&self, kind: PluginKind, component: &Component) -> Result<Linked, String> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| format!("it imports something the host does not provide: {e:#}"))?;
        let world = kind.as_str();
        let wrong = |e: wasmtime::Error| format!("it does not export the {world} world: {e:#}");
        Ok(match kind {
            PluginKind::Pricing => Linked::Pricing(PricingPre::new(pre).map_err(wrong)?),
            PluginKind::Validation => Linked::Validation(ValidationPre::new(pre).map_err(wrong)?),
            PluginKind::SagaHook => Linked::Hook(SagaHookPre::new(pre).map_err(wrong)?),
        })
    }

    /// Reloads the active set from the registry now.
    pub async fn reload_now(&self) -> anyhow::Result<()> {
        let _serialized = self.reload_lock.lock().await;
        let (generation, records) = self.registry.active_plugins().await?;
        let mut loaded = Vec::with_capacity(records.len());
        for record in records {
            let runtime = self.self_arc();
            let registry = self.registry.clone();
            let (name, version) = (record.name.clone(), record.version);
            let handle = tokio::runtime::Handle::current();
            let rec = record.clone();
            let linked = tokio::task::spawn_blocking(move || {
                let component = runtime.component(&rec.sha256, || {
                    handle
                        .block_on(registry.plugin_bytes(&name, version))
                        .ok()
                        .flatten()
                        .map(Arc::new)
                })?;
                runtime.link(rec.kind, &component)
            })
            .await?
            .unwrap_or_else(|reason| {
                tracing::error!(plugin = %record.name, version = record.version, %reason, "a plugin version in use cannot be loaded; its calls will fail");
                Linked::Broken(reason)
            });
            let plugin = Arc::new(Loaded::new(&record, self.resolve(record.limits), linked));
            loaded.push((record, plugin));
        }
        let slots = slots(loaded);
        for slot in &slots {
            for plugin in slot.servers() {
                calls::zero_series(plugin);
            }
            let canary = slot.canary.as_ref();
            metrics::gauge!(PLUGIN_CANARY_PERCENT, "plugin" => slot.active.name.clone())
                .set(canary.map_or(0.0, |(_, percent)| f64::from(*percent)));
        }
        self.shadows.reset_for(&slots);
        let names: Vec<String> = slots
            .iter()
            .map(|s| {
                let p = &s.active;
                let mut name = format!("{}@{}", p.name, &p.sha256[..12.min(p.sha256.len())]);
                if let Some((canary, percent)) = &s.canary {
                    name += &format!(" (canary v{} {percent}%)", canary.version);
                }
                if let Some(shadow) = &s.shadow {
                    name += &format!(" (shadow v{})", shadow.plugin.version);
                }
                name
            })
            .collect();
        self.active.store(Arc::new(PluginSet { generation, slots }));
        tracing::info!(generation, plugins = ?names, "plugin set loaded");
        Ok(())
    }
}

#[async_trait]
impl Extensions for PluginRuntime {
    async fn evaluate(&self, quote: Quote) -> Result<Evaluation, ExtensionFailed> {
        let set = self.active.load_full();
        if set
            .slots
            .iter()
            .all(|s| s.active.kind == PluginKind::SagaHook)
        {
            // No call now; the hooks' input limits still hold for the order.
            let size = convert::quote_order_size(&quote);
            let hooks = set
                .slots
                .iter()
                .map(|s| s.serving(quote.customer_id).as_ref());
            self.refuse_oversized(hooks, quote.lines.len(), size)?;
            return Ok(Evaluation::default());
        }
        self.in_slot(PluginKind::Pricing, move |runtime| {
            runtime.evaluate_on(&set, &quote)
        })
        .await
    }

    fn has_saga_hooks_at(&self, step: &str, before: bool) -> bool {
        self.active
            .load()
            .servers()
            .any(|p| p.kind == PluginKind::SagaHook && p.listens_at(step, before))
    }

    async fn run_hooks(&self, context: HookContext) -> Result<HookOutcome, ExtensionFailed> {
        let set = self.active.load_full();
        if !set
            .of(PluginKind::SagaHook, context.quote.customer_id)
            .any(|(_, p)| p.listens_at(&context.step, context.before))
        {
            return Ok(HookOutcome::Continue);
        }
        self.in_slot(PluginKind::SagaHook, move |runtime| {
            runtime.run_hooks_on(&set, &context)
        })
        .await
    }
}

#[async_trait]
impl PluginHost for PluginRuntime {
    async fn check(
        &self,
        kind: PluginKind,
        name: &str,
        bytes: Arc<Vec<u8>>,
        config: &str,
        limits: PluginLimits,
    ) -> Result<(), PluginRejected> {
        self.try_component_within(kind, name, bytes, config, limits)
            .await
            .map_err(|e| PluginRejected(e.to_string()))
    }

    fn limit_maxima(&self) -> LimitMaxima {
        LimitMaxima {
            memory: self.settings.memory as u64,
            input: self.settings.max_input as u64,
        }
    }

    async fn reload(&self) -> anyhow::Result<()> {
        self.reload_now().await
    }

    async fn dry_run(
        &self,
        record: &PluginRecord,
        bytes: Arc<Vec<u8>>,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, PluginRejected> {
        let runtime = self.self_arc();
        let record = record.clone();
        tokio::task::spawn_blocking(move || {
            let plugin = runtime.load_record(&record, bytes)?;
            let input = CallInput::parse(record.kind, input).map_err(|e| {
                PluginRejected(format!(
                    "the input is not a {} input: {e}",
                    record.kind.as_str()
                ))
            })?;
            let output = runtime
                .call_input(&plugin, &input, calls::Mode::Dry)
                .map_err(|e| PluginRejected(format!("the plugin {e}")))?;
            let field = match record.kind {
                PluginKind::Pricing => "adjustments",
                PluginKind::Validation => "violations",
                PluginKind::SagaHook => "decision",
            };
            Ok(serde_json::json!({ field: output }))
        })
        .await
        .map_err(|e| PluginRejected(format!("the dry run failed: {e}")))?
    }

    fn max_component_size(&self) -> usize {
        self.settings.max_component
    }

    fn versions_kept(&self) -> u32 {
        self.settings.versions_kept
    }

    async fn forget_unused(&self, in_use: &HashSet<String>) -> usize {
        let runtime = self.self_arc();
        let in_use = in_use.clone();
        tokio::task::spawn_blocking(move || runtime.forget_compiled(&in_use))
            .await
            .unwrap_or(0)
    }

    fn stats(&self) -> BTreeMap<String, PluginStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn shadow_report(&self, name: &str) -> Option<ShadowReport> {
        self.shadows.report(name)
    }

    async fn replay(
        &self,
        record: &PluginRecord,
        bytes: Arc<Vec<u8>>,
        inputs: Vec<ReplayInput>,
    ) -> Result<Vec<Result<ReplayAnswer, String>>, PluginRejected> {
        let runtime = self.self_arc();
        let record = record.clone();
        tokio::task::spawn_blocking(move || {
            let plugin = runtime.load_record(&record, bytes)?;
            Ok(inputs
                .iter()
                .map(|input| runtime.replay_one(&plugin, input))
                .collect())
        })
        .await
        .map_err(|e| PluginRejected(format!("the replay failed: {e}")))?
    }
}

impl PluginRuntime {
    /// A stored version, compiled (or taken from the cache) and linked, to
    /// call outside the active set (dry runs, replays).
    fn load_record(
        &self,
        record: &PluginRecord,
        bytes: Arc<Vec<u8>>,
    ) -> Result<Loaded, PluginRejected> {
        let component = self
            .component(&record.sha256, || Some(bytes))
            .map_err(PluginRejected)?;
        let linked = self.link(record.kind, &component).map_err(PluginRejected)?;
        Ok(Loaded::new(record, self.resolve(record.limits), linked))
    }

    /// One recorded input, replayed: what an order would record.
    fn replay_one(&self, plugin: &Loaded, input: &ReplayInput) -> Result<ReplayAnswer, String> {
        let quote = &input.quote;
        let answer = match plugin.kind {
            PluginKind::Pricing => self
                .call_pricing(plugin, &convert::cart(quote), calls::Mode::Replay)
                .and_then(|adjustments| calls::priced(plugin, quote, adjustments))
                .map(ReplayAnswer::Adjustments),
            PluginKind::Validation => self
                .call_validation(
                    plugin,
                    &convert::order(quote, input.total),
                    calls::Mode::Replay,
                )
                .map(|violations| {
                    ReplayAnswer::Violations(
                        violations
                            .into_iter()
                            .map(|v| convert::violation(&plugin.name, v))
                            .collect(),
                    )
                }),
            PluginKind::SagaHook => {
                return Err("a saga hook is not replayed".into());
            }
        };
        answer.map_err(|e| format!("{}: {e}", e.kind()))
    }
}

/// Groups the loaded versions (active, canary and shadow records, in the
/// registry's order) into one slot per plugin with an active version, in
/// the active versions' order.
fn slots(loaded: Vec<(PluginRecord, Arc<Loaded>)>) -> Vec<Slot> {
    let mut slots: Vec<Slot> = loaded
        .iter()
        .filter(|(record, _)| record.active)
        .map(|(_, plugin)| Slot {
            active: plugin.clone(),
            canary: None,
            shadow: None,
        })
        .collect();
    for (record, plugin) in loaded {
        let Some(slot) = slots.iter_mut().find(|s| s.active.name == record.name) else {
            continue;
        };
        if let Some(percent) = record.canary_percent {
            slot.canary = Some((plugin.clone(), percent));
        }
        if let Some(sample) = record.shadow_sample {
            let ppm = (sample * f64::from(commerce_app::ports::PPM)).round() as u32;
            slot.shadow = Some(Shadow {
                plugin,
                sampler: Sampler::new(ppm),
            });
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types as wit;

    /// An answer within the output limit always fits in one transfer:
    /// wasmtime counts the host size of each list entry where the output
    /// limit counts 32 bytes per adjustment and 16 per violation (strings
    /// count their bytes in both).
    #[test]
    fn an_answer_within_the_output_limit_fits_in_one_transfer() {
        assert!(std::mem::size_of::<wit::Adjustment>() <= 32 * TRANSFER_PER_OUTPUT);
        assert!(std::mem::size_of::<wit::Violation>() <= 16 * TRANSFER_PER_OUTPUT);
    }
}
