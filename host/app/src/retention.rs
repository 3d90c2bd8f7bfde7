//! What the service keeps only for a while: idempotency keys. A key
//! answers repeats of its request for the idempotency window (default
//! 24 h); the purger then deletes it, and a request repeating it is a new
//! request. Keys are deleted within a sweep interval after their window
//! (a twelfth of it, at most five minutes).

use std::time::Duration;

use crate::{App, now};

/// [`run_key_purger`]'s window unless configured.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Keys deleted per statement.
const BATCH: u32 = 1000;

/// How often keys past `window` are looked for.
pub fn purge_every(window: Duration) -> Duration {
    (window / 12).clamp(Duration::from_millis(100), Duration::from_secs(300))
}

/// Deletes idempotency keys older than `window`, for the life of the
/// process. Safe in several replicas at once (each deletes what is there).
pub async fn run_key_purger(app: App, window: Duration) {
    let every = purge_every(window);
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    loop {
        tokio::time::sleep(every).await;
        let before = now() - window;
        loop {
            match app.store.purge_idempotency_keys(before, BATCH).await {
                Ok(n) if n == u64::from(BATCH) => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(purged = n, "idempotency keys past their window deleted");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging idempotency keys failed; retrying next round");
                    break;
                }
            }
        }
    }
}
