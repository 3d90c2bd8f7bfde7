//! The run log: every failed live call, and a sample of successful ones
//! (`--plugin-run-sample`), captured with its input, output or error,
//! fuel, time and log lines, so that an operator can see why a call
//! failed and re-run its input locally (`commerce plugin run FILE.wasm
//! --input-run ID`).
//!
//! Capturing never waits on the database: runs go through a bounded queue
//! to one writer task, which stores them in batches and keeps the newest
//! `--plugin-runs-kept` per plugin. A full queue drops the run (counted in
//! `commerce_plugin_runs_dropped_total`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use commerce_app::ports::{PluginRegistry, PluginRun};

/// Runs waiting to be stored, at most.
const QUEUE: usize = 1024;
/// Runs stored per transaction, at most.
const BATCH: usize = 100;
/// How often the log is pruned to its bound.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Runs captured but not stored because the queue was full.
pub const PLUGIN_RUNS_DROPPED: &str = "commerce_plugin_runs_dropped_total";

/// The capturing end.
pub(super) struct RunLog {
    queue: mpsc::Sender<PluginRun>,
}

impl RunLog {
    /// Starts the writer (in the current Tokio runtime); it stops when the
    /// `RunLog` is dropped, after storing what was queued.
    pub fn start(registry: Arc<dyn PluginRegistry>, keep: u32) -> RunLog {
        let (queue, runs) = mpsc::channel(QUEUE);
        tokio::spawn(write(registry, runs, keep));
        RunLog { queue }
    }

    /// Queues a run; never blocks.
    pub fn capture(&self, run: PluginRun) {
        if self.queue.try_send(run).is_err() {
            metrics::counter!(PLUGIN_RUNS_DROPPED).increment(1);
        }
    }
}

async fn write(registry: Arc<dyn PluginRegistry>, mut runs: mpsc::Receiver<PluginRun>, keep: u32) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_prune = tokio::time::Instant::now();
    // Pruned every PRUNE_EVERY, or as soon as `keep` more runs were
    // stored: a plugin holds at most about twice `keep` runs.
    let mut stored_since_prune = 0usize;
    while runs.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = registry.record_plugin_runs(&batch).await {
            tracing::warn!(error = %e, runs = batch.len(), "storing plugin runs failed; they are lost");
        } else {
            stored_since_prune += batch.len();
        }
        batch.clear();
        if stored_since_prune > 0
            && (last_prune.elapsed() >= PRUNE_EVERY || stored_since_prune >= keep as usize)
        {
            prune(registry.as_ref(), keep).await;
            last_prune = tokio::time::Instant::now();
            stored_since_prune = 0;
        }
    }
    if stored_since_prune > 0 {
        prune(registry.as_ref(), keep).await;
    }
}

async fn prune(registry: &dyn PluginRegistry, keep: u32) {
    match registry.prune_plugin_runs(keep).await {
        Ok(0) => {}
        Ok(deleted) => tracing::debug!(deleted, keep, "old plugin runs deleted"),
        Err(e) => tracing::warn!(error = %e, "pruning plugin runs failed"),
    }
}
