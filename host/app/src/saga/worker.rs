//! The worker every replica runs: it claims sagas that are due and that
//! nobody holds (a retry whose back-off passed, a saga whose driver died
//! and whose lease ran out) and drives them. Claims are disjoint across
//! replicas (`FOR UPDATE SKIP LOCKED` on PostgreSQL), and a claim bumps
//! the saga's revision, so a former driver that wakes up late cannot
//! write over the new one.

use std::time::Duration;

use super::chrono_duration;
use crate::{App, now};
use commerce_domain::saga::SagaStatus;

/// Sagas that wait for an operator (the SagaFailure alert).
pub const SAGAS_NEEDING_ATTENTION: &str = "commerce_sagas_needing_attention";
/// Sagas this process took over from the queue.
pub const SAGAS_RESUMED: &str = "commerce_sagas_resumed_total";

/// Claims and drives due sagas every `settings.poll`, forever.
pub async fn run_worker(app: App) {
    let mut tick = tokio::time::interval(app.saga.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u64 = 0;
    loop {
        tick.tick().await;
        rounds += 1;
        if rounds % 10 == 1 {
            match app.store.count_sagas(SagaStatus::NeedsAttention).await {
                Ok(n) => metrics::gauge!(SAGAS_NEEDING_ATTENTION).set(n as f64),
                Err(e) => tracing::warn!(error = %e, "counting sagas that need attention failed"),
            }
        }
        if let Err(e) = claim_round(&app).await {
            tracing::warn!(error = %e, "claiming due sagas failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One round: claims as many due sagas as there are free slots.
pub async fn claim_round(app: &App) -> Result<usize, crate::AppError> {
    let free = app.saga_slots.available_permits().min(64) as u32;
    if free == 0 || app.sagas().is_draining() {
        return Ok(0);
    }
    let at = now();
    let sagas = app
        .store
        .claim_sagas(
            &app.saga.owner,
            at,
            at + chrono_duration(app.saga.lease),
            free,
        )
        .await?;
    // A shutdown that began while the claim was under way released this
    // process's leases before the claim took these (SIGTERM in a busy
    // second): give them back too, or they would wait out their lease with
    // nobody driving them, since a draining process starts no saga.
    if app.sagas().is_draining() {
        app.sagas().release_saga_leases().await;
        return Ok(0);
    }
    let n = sagas.len();
    for saga in sagas {
        tracing::info!(saga_id = %saga.saga_id, order_id = %saga.correlation_id, step = saga.current_step(), attempts = saga.attempts, "resuming saga");
        metrics::counter!(SAGAS_RESUMED).increment(1);
        app.sagas().spawn_saga(saga, None);
    }
    Ok(n)
}
