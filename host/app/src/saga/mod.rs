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

pub mod admin;
pub mod runner;
pub mod worker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use commerce_domain::Currency;
use commerce_domain::saga::{FULFILMENT, Next, SagaProgress, SagaStatus};

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

/// What the saga needs to pay for the order, copied from the order when
/// the saga starts (the order's lines cannot change while it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub token: String,
    pub amount: Decimal,
    pub currency: Currency,
}

/// The saga's own state, stored as `saga_data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaData {
    pub progress: SagaProgress,
    pub payment: PaymentIntent,
    /// The gateway's authorization, once one was made for this saga.
    pub authorization_id: Option<String>,
    /// The payment was captured (the pivot is behind us).
    pub captured: bool,
    /// The last failure of the current step or compensation, for operators.
    pub last_error: Option<String>,
}

/// A saga as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaInstance {
    pub saga_id: Uuid,
    pub saga_type: String,
    /// The order the saga fulfils.
    pub correlation_id: Uuid,
    pub data: SagaData,
    /// Goes up on every write; writers name the one they read.
    pub revision: i64,
    /// Failed rounds of the current step or compensation.
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SagaInstance {
    /// A fulfilment saga for `order_id`, its stock already reserved, leased
    /// to `owner` who starts driving it at once.
    pub fn start(
        order_id: Uuid,
        payment: PaymentIntent,
        owner: &str,
        lease: Duration,
        at: DateTime<Utc>,
    ) -> Self {
        SagaInstance {
            saga_id: Uuid::now_v7(),
            saga_type: FULFILMENT.saga_type.to_owned(),
            correlation_id: order_id,
            data: SagaData {
                progress: SagaProgress::started(1),
                payment,
                authorization_id: None,
                captured: false,
                last_error: None,
            },
            revision: 1,
            attempts: 0,
            next_attempt_at: at,
            lease_owner: Some(owner.to_owned()),
            lease_until: Some(at + chrono_duration(lease)),
            created_at: at,
            updated_at: at,
        }
    }

    pub fn status(&self) -> SagaStatus {
        self.data.progress.status
    }

    /// What the saga does next, by name (`-` when it does nothing).
    pub fn current_step(&self) -> &'static str {
        match self.data.progress.next(&FULFILMENT) {
            Next::Act(step) => step.as_str(),
            Next::Compensate(c) => c.as_str(),
            Next::Stop => "-",
        }
    }

    /// The next state of this saga, to be written over this revision.
    pub fn successor(&self, at: DateTime<Utc>) -> SagaInstance {
        SagaInstance {
            revision: self.revision + 1,
            updated_at: at,
            ..self.clone()
        }
    }
}

/// One line of a saga's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SagaStepRecord {
    #[serde(skip)]
    pub record_id: Uuid,
    #[serde(skip)]
    pub saga_id: Uuid,
    /// The step or compensation (`authorize-payment`, `void-payment`, ...).
    pub step: String,
    /// `action`, `compensation`, `hook-before`, `hook-after`, `operator`.
    pub phase: String,
    /// `ok`, `failed`, `retry`, `veto`, `skipped`, `stuck`, `found` (an
    /// authorization a dead run made without recording it).
    pub outcome: String,
    pub detail: Option<String>,
    pub attempt: i32,
    pub at: DateTime<Utc>,
}

impl SagaStepRecord {
    pub fn new(
        saga_id: Uuid,
        step: &str,
        phase: &str,
        outcome: &str,
        detail: Option<String>,
        attempt: i32,
        at: DateTime<Utc>,
    ) -> Self {
        SagaStepRecord {
            record_id: Uuid::now_v7(),
            saga_id,
            step: step.to_owned(),
            phase: phase.to_owned(),
            outcome: outcome.to_owned(),
            detail,
            attempt,
            at,
        }
    }
}

/// A saga written with whatever else the transaction carries: a new saga
/// (`expected_revision` `None`; refused if the order has one already) or
/// the next state of one at `expected_revision` (refused if another
/// writer got there first), plus lines of history.
#[derive(Debug, Clone)]
pub struct SagaWrite {
    pub instance: SagaInstance,
    pub expected_revision: Option<i64>,
    pub history: Vec<SagaStepRecord>,
}

pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The status as stored and in the API.
pub fn status_str(status: SagaStatus) -> &'static str {
    match status {
        SagaStatus::Running => "running",
        SagaStatus::Compensating => "compensating",
        SagaStatus::Completed => "completed",
        SagaStatus::Compensated => "compensated",
        SagaStatus::NeedsAttention => "needs_attention",
    }
}

pub fn parse_status(s: &str) -> Option<SagaStatus> {
    [
        SagaStatus::Running,
        SagaStatus::Compensating,
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::NeedsAttention,
    ]
    .into_iter()
    .find(|st| status_str(*st) == s)
}
