//! Safe change of a plugin (issue 17): the version each customer is
//! served (the active one, or a canary's for a stable share of
//! customers), and shadows — a version run beside the serving one on a
//! sample of live calls, off the request's path, its answers compared and
//! never used.
//!
//! A shadow call is queued, never run on the request's thread: the queue
//! is bounded ([`SHADOW_QUEUE`]) and one worker thread drains it, so a
//! shadow can neither delay an order nor pile up behind orders; a sampled
//! call that finds the queue full is dropped and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::calls::{CallInput, Mode};
use super::{Loaded, PluginRuntime};
use commerce_app::plugins::{SHADOW_EXAMPLES, ShadowExample, ShadowReport, canary_bucket};
use commerce_app::ports::PPM;

/// Shadow calls waiting at most; more are dropped.
pub(super) const SHADOW_QUEUE: usize = 256;

/// Shadow calls by plugin, shadow version and result: `sampled` (taken
/// for the shadow), then `agreed`, `differed` or `failed` once run, or
/// `dropped` (the queue was full).
pub const PLUGIN_SHADOW: &str = "commerce_plugin_shadow_total";
/// The percent of customers a plugin's canary version serves (0: none).
pub const PLUGIN_CANARY_PERCENT: &str = "commerce_plugin_canary_percent";

/// One plugin of the active set: its active version, and the versions in
/// canary or shadow beside it.
pub(super) struct Slot {
    pub active: Arc<Loaded>,
    /// The canary version and the percent of customers it serves.
    pub canary: Option<(Arc<Loaded>, u8)>,
    pub shadow: Option<Shadow>,
}

impl Slot {
    /// The version that serves `customer`.
    pub fn serving(&self, customer: Uuid) -> &Arc<Loaded> {
        match &self.canary {
            Some((canary, percent)) if canary_bucket(&self.active.name, customer) < *percent => {
                canary
            }
            _ => &self.active,
        }
    }

    /// Every version that may serve a call (active and canary).
    pub fn servers(&self) -> impl Iterator<Item = &Arc<Loaded>> {
        std::iter::once(&self.active).chain(self.canary.as_ref().map(|(c, _)| c))
    }
}

/// A version in shadow and its sampler.
pub(super) struct Shadow {
    pub plugin: Arc<Loaded>,
    pub sampler: Sampler,
}

/// Takes an exact share of calls, evenly spread: call n is taken when
/// `n * ppm / 1e6` passes a whole number. Lock-free.
pub(super) struct Sampler {
    ppm: u64,
    seen: AtomicU64,
}

impl Sampler {
    pub fn new(ppm: u32) -> Self {
        Sampler {
            ppm: u64::from(ppm.min(PPM)),
            seen: AtomicU64::new(0),
        }
    }

    pub fn take(&self) -> bool {
        if self.ppm == 0 {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let ppm = u64::from(PPM);
        (n + 1) * self.ppm / ppm > n * self.ppm / ppm
    }
}

/// A sampled call to run on the shadow version.
pub(super) struct ShadowJob {
    plugin: Arc<Loaded>,
    input: CallInput,
    /// The serving version's answer, or its failure kind.
    primary: Result<Value, String>,
    at: DateTime<Utc>,
}

/// The shadow queue and this process's reports.
pub(super) struct Shadows {
    queue: SyncSender<ShadowJob>,
    reports: Mutex<HashMap<String, ShadowReport>>,
}

impl Shadows {
    /// The queue and its receiving end, for [`spawn_worker`].
    pub fn new() -> (Self, Receiver<ShadowJob>) {
        let (queue, jobs) = std::sync::mpsc::sync_channel(SHADOW_QUEUE);
        (
            Shadows {
                queue,
                reports: Mutex::new(HashMap::new()),
            },
            jobs,
        )
    }

    /// Starts a fresh report for every shadow whose version changed (the
    /// others keep counting); forgets plugins no longer shadowed.
    pub fn reset_for(&self, slots: &[Slot]) {
        let mut reports = self.lock();
        let shadowed: HashMap<&str, i64> = slots
            .iter()
            .filter_map(|s| {
                s.shadow
                    .as_ref()
                    .map(|sh| (s.active.name.as_str(), sh.plugin.version))
            })
            .collect();
        reports.retain(|name, report| shadowed.get(name.as_str()) == Some(&report.version));
        for (name, version) in shadowed {
            reports
                .entry(name.to_owned())
                .or_insert_with(|| ShadowReport {
                    version,
                    ..ShadowReport::default()
                });
        }
    }

    pub fn report(&self, name: &str) -> Option<ShadowReport> {
        self.lock().get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ShadowReport>> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `result` in the metrics, and in the report with `update`.
    /// The lock is held only for `update`, which must be a few additions:
    /// the low-priority shadow thread takes it too, and a request must not
    /// wait behind it.
    fn count(&self, plugin: &Loaded, result: &'static str, update: impl FnOnce(&mut ShadowReport)) {
        shadow_metric(plugin, result);
        let mut reports = self.lock();
        if let Some(report) = reports
            .get_mut(&plugin.name)
            .filter(|r| r.version == plugin.version)
        {
            update(report);
        }
    }
}

impl PluginRuntime {
    /// If `slot` has a shadow and this call is sampled, queues the call for
    /// the shadow version (or counts it dropped when the queue is full).
    /// `input` and `primary` are only evaluated for a sampled call.
    pub(super) fn offer_shadow(
        &self,
        slot: &Slot,
        input: impl FnOnce() -> CallInput,
        primary: impl FnOnce() -> Result<Value, String>,
    ) {
        let Some(shadow) = &slot.shadow else { return };
        if !shadow.sampler.take() {
            return;
        }
        // Counted in the report by the shadow thread (or below, if
        // dropped): the request takes no lock.
        shadow_metric(&shadow.plugin, "sampled");
        let job = ShadowJob {
            plugin: shadow.plugin.clone(),
            input: input(),
            primary: primary(),
            at: Utc::now(),
        };
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
            self.shadows.queue.try_send(job)
        {
            self.shadows.count(&job.plugin, "dropped", |r| {
                r.calls += 1;
                r.dropped += 1;
            });
        }
    }

    /// Runs one shadow call and files what it found.
    fn run_shadow(&self, job: ShadowJob) {
        let shadow = self
            .call_input(&job.plugin, &job.input, Mode::Shadow)
            .map_err(|e| e.kind().to_owned());
        let (result, failed) = match (&job.primary, &shadow) {
            (Ok(a), Ok(b)) if a == b => ("agreed", false),
            (Err(a), Err(b)) if a == b => ("agreed", false),
            (Ok(_), Err(_)) => ("failed", true),
            _ => ("differed", false),
        };
        let shown = |answer: &Result<Value, String>| match answer {
            Ok(value) => value.clone(),
            Err(kind) => serde_json::json!({ "failed": kind }),
        };
        // Built before the lock is taken.
        let example = (result != "agreed").then(|| ShadowExample {
            at: job.at,
            input: job.input.redacted(),
            active: shown(&job.primary),
            shadow: shown(&shadow),
        });
        self.shadows.count(&job.plugin, result, |report| {
            report.calls += 1;
            match result {
                "agreed" => report.agreed += 1,
                _ if failed => report.failed += 1,
                _ => report.differed += 1,
            }
            if let Some(example) = example {
                if report.examples.len() == SHADOW_EXAMPLES {
                    report.examples.remove(0);
                }
                report.examples.push(example);
            }
        });
    }
}

fn shadow_metric(plugin: &Loaded, result: &'static str) {
    metrics::counter!(PLUGIN_SHADOW, "plugin" => plugin.name.clone(),
        "version" => plugin.version.to_string(), "result" => result)
    .increment(1);
}

/// The thread that runs shadow calls, one at a time, until the runtime is
/// dropped (which closes the queue).
pub(super) fn spawn_worker(
    runtime: Weak<PluginRuntime>,
    jobs: Receiver<ShadowJob>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("plugin-shadow".into())
        .spawn(move || {
            lower_priority();
            while let Ok(job) = jobs.recv() {
                let Some(runtime) = runtime.upgrade() else {
                    break;
                };
                runtime.run_shadow(job);
            }
        })
        .map(drop)
}

/// Gives the calling thread the lowest CPU priority (nice 19): a shadow
/// call then runs on what the orders leave of the cores, instead of
/// taking a share of them. On Linux the nice value is a thread's own
/// (setpriority(2), "Notes"), so only the shadow thread is lowered.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: gettid takes no arguments; setpriority takes plain integers
    // and changes only the scheduling priority of the thread named.
    let done = unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
    };
    if done != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "the shadow thread keeps the default priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampler_takes_its_exact_share_evenly() {
        let taken = |ppm: u32, calls: usize| {
            let sampler = Sampler::new(ppm);
            (0..calls).filter(|_| sampler.take()).count()
        };
        assert_eq!(taken(PPM, 100), 100);
        assert_eq!(taken(PPM / 2, 100), 50);
        assert_eq!(taken(PPM / 10, 1_000), 100);
        assert_eq!(taken(0, 1_000), 0);
        let sampler = Sampler::new(PPM / 4);
        let pattern: Vec<bool> = (0..8).map(|_| sampler.take()).collect();
        assert_eq!(
            pattern,
            [false, false, false, true, false, false, false, true]
        );
    }
}
