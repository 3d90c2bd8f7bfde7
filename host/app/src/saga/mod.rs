//! The order-fulfilment saga, run: the orchestrator that drives a saga's
//! steps against the payment gateway and the store ([`runner`]), the
//! worker that resumes sagas a dead process left behind ([`worker`]), and
//! the operator's view and controls ([`admin`]).
//!
//! What a saga does is data (`domain::saga::FULFILMENT`) and where it is
//! a pure state machine (`domain::saga::SagaProgress`); this module adds
//! what running it needs: the saga's row with its lease and revision, and
//! the history of every step.
//!
//! Every step's outcome is written with the order events it produces and
//! the saga's next state in one transaction. Side effects at the gateway
//! carry idempotency keys derived from the saga and the step, so a step
//! re-run after a crash between the gateway's answer and that write gets
//! the first answer back and acts once.

mod actions;
pub mod admin;
mod compensations;
mod hooks;
mod round;
pub mod runner;
pub mod worker;

pub(crate) use crate::ports::sagas::chrono_duration;
pub use crate::ports::sagas::{
    PaymentIntent, SagaData, SagaInstance, SagaStepRecord, SagaWrite, parse_status, status_str,
};

use std::time::Duration;

use uuid::Uuid;

/// How sagas are run.
#[derive(Debug, Clone)]
pub struct SagaSettings {
    /// Who this process is, in leases (unique per process).
    pub owner: String,
    /// How long a lease lasts: a saga whose driver died is resumed by
    /// another process after at most this long. Every write renews it.
    pub lease: Duration,
    /// How long one step retries transient failures before it fails
    /// (a step's action) or gives up for this round (a compensation).
    pub step_deadline: Duration,
    /// Rounds a compensation gets before the saga needs an operator.
    pub compensation_rounds: u32,
    /// First pause between retries; doubles up to `max_backoff`, jittered.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the worker looks for sagas to resume.
    pub poll: Duration,
    /// Most sagas one process drives at once.
    pub concurrency: usize,
}

impl Default for SagaSettings {
    fn default() -> Self {
        SagaSettings {
            owner: format!("{}-{}", std::process::id(), Uuid::new_v4().simple()),
            lease: Duration::from_secs(30),
            step_deadline: Duration::from_secs(10),
            compensation_rounds: 5,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            poll: Duration::from_millis(500),
            concurrency: 256,
        }
    }
}

impl SagaSettings {
    /// The pause before retry number `attempt` (from 0): exponential,
    /// capped, with full jitter so retries of many sagas spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.min_backoff.as_micros() as u64;
        let cap = self.max_backoff.as_micros() as u64;
        let ceiling = base.saturating_mul(1u64 << attempt.min(20)).min(cap).max(1);
        Duration::from_micros(ceiling / 2 + rand::random_range(0..=ceiling / 2))
    }
}
