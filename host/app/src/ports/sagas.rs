//! Saga instances as stored: the row with its lease and revision, the
//! history of every step, and the store that keeps them. What a saga does
//! is `commerce_domain::saga`; running it is `crate::saga`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{InventoryChange, StoreError};
use commerce_domain::Currency;
use commerce_domain::saga::{
    FULFILMENT, Outcome, Phase, REFUND, SagaDefinition, SagaProgress, SagaStatus, StepName,
    definition,
};

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
    /// A refund saga's current refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundIntent>,
}

/// The refund a refund saga makes: the order's pending refund, as the
/// gateway is asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundIntent {
    pub refund_id: Uuid,
    pub amount: Decimal,
    /// Units that go back on the shelf with the refund.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restock: Vec<commerce_domain::Restock>,
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
                refund: None,
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

    /// This new saga made a refund saga of its order, over `previous`
    /// (the order's refund saga that made its earlier refunds, which must
    /// be finished): the refund is recorded on the order with its first
    /// write, so it starts at the gateway's step.
    pub fn into_refund(
        self,
        previous: Option<&SagaInstance>,
        authorization_id: Option<String>,
        refund: RefundIntent,
    ) -> Self {
        let mut saga = self;
        saga.saga_type = REFUND.saga_type.to_owned();
        saga.data.authorization_id = authorization_id;
        saga.data.captured = true;
        saga.data.refund = Some(refund);
        if let Some(previous) = previous {
            saga.saga_id = previous.saga_id;
            saga.revision = previous.revision + 1;
            saga.created_at = previous.created_at;
        }
        saga
    }

    pub fn status(&self) -> SagaStatus {
        self.data.progress.status
    }

    /// The definition this saga follows.
    pub fn definition(&self) -> &'static SagaDefinition {
        definition(&self.saga_type)
    }

    /// What the saga does next.
    pub fn current(&self) -> StepName {
        self.data.progress.next(self.definition()).into()
    }

    /// What the saga does next, by name (`-` when it does nothing).
    pub fn current_step(&self) -> &'static str {
        self.current().as_str()
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

/// One line of a saga's history. The names are stored and shown as
/// text; they are written only from their typed forms
/// ([`StepName`], [`Phase`], [`Outcome`]).
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
        step: impl Into<StepName>,
        phase: Phase,
        outcome: Outcome,
        detail: Option<String>,
        attempt: i32,
        at: DateTime<Utc>,
    ) -> Self {
        SagaStepRecord {
            record_id: Uuid::now_v7(),
            saga_id,
            step: step.into().as_str().to_owned(),
            phase: phase.as_str().to_owned(),
            outcome: outcome.as_str().to_owned(),
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

/// Every saga status, in the order of a saga's life.
pub const SAGA_STATUSES: [SagaStatus; 5] = [
    SagaStatus::Running,
    SagaStatus::Compensating,
    SagaStatus::Completed,
    SagaStatus::Compensated,
    SagaStatus::NeedsAttention,
];

pub fn parse_status(s: &str) -> Option<SagaStatus> {
    SAGA_STATUSES.into_iter().find(|st| status_str(*st) == s)
}

/// Saga instances, their leases and their history. Writes that carry
/// order events go through [`EventStore::append`] with `Append::saga`.
#[async_trait]
pub trait SagaStore: Send + Sync {
    /// Writes a saga without order events (a retry scheduled, a claim
    /// given up, a compensation with nothing to record on the order),
    /// with an optional stock change in the same transaction.
    async fn save_saga(
        &self,
        write: SagaWrite,
        inventory: Option<InventoryChange>,
    ) -> Result<(), StoreError>;
    async fn get_saga(&self, saga_id: Uuid) -> Result<Option<SagaInstance>, StoreError>;
    /// The fulfilment saga of an order, if it has one.
    async fn saga_of(&self, correlation_id: Uuid) -> Result<Option<SagaInstance>, StoreError> {
        self.saga_of_type(FULFILMENT.saga_type, correlation_id)
            .await
    }
    /// The saga of type `saga_type` of an order, if it has one.
    async fn saga_of_type(
        &self,
        saga_type: &str,
        correlation_id: Uuid,
    ) -> Result<Option<SagaInstance>, StoreError>;
    /// A saga's history, oldest first.
    async fn saga_history(&self, saga_id: Uuid) -> Result<Vec<SagaStepRecord>, StoreError>;
    /// Up to `limit` sagas (in one status, or all) with ids after `after`,
    /// by id (UUIDv7: creation order).
    async fn list_sagas(
        &self,
        status: Option<SagaStatus>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<SagaInstance>, StoreError>;
    /// Leases up to `limit` running or compensating sagas that are due
    /// (`next_attempt_at <= now`) and not leased (no lease, or an expired
    /// one) to `owner` until `lease_until`, bumping their revision so a
    /// former owner's late write is refused. Concurrent claimers get
    /// disjoint sets.
    async fn claim_sagas(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SagaInstance>, StoreError>;
    /// How many sagas are in `status`.
    async fn count_sagas(&self, status: SagaStatus) -> Result<i64, StoreError>;
    /// Gives up every lease `owner` holds on an unfinished saga, bumping
    /// the revision (so the owner's late writes are refused) and making
    /// the sagas due now: another replica's worker takes them at once.
    /// Returns how many were released.
    async fn release_saga_leases(&self, owner: &str) -> Result<u64, StoreError>;
}
