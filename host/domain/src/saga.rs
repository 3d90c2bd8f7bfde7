//! Sagas as data: a definition is an ordered list of steps, each with an
//! action and, when it has effects to undo, a compensation; a saga's
//! progress is a small state machine that says what to do next. Running
//! the steps (calling the payment gateway, writing the store) belongs to
//! the orchestrator in `app`; nothing here does I/O.
//!
//! ```text
//! running:      step 0 -> step 1 -> ... -> step n-1 -> completed
//!                  \ a step fails for good (or a hook vetoes)
//! compensating: undo k-1 -> ... -> undo 0 -> compensated
//!                  \ a compensation keeps failing
//!               needs_attention (an operator retries or aborts)
//! ```
//!
//! The pivot is marked in the definition: once payment is captured the
//! saga only goes forward, retrying until it completes. A step marked
//! local only touches our own database, so the orchestrator writes it
//! with the step before it. A history line names its step, phase and
//! outcome with the types of [`history`].
//!
//! Adding a step: a [`StepDef`] line in the definition (and a [`Step`]
//! variant with its name); its action is one function in the app's saga
//! module, named where the app chooses each step's action.

use serde::{Deserialize, Serialize};

pub mod history;
pub use history::{Outcome, Phase, StepName};

/// What the fulfilment saga does, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Hold the order's stock (done synchronously when the order is placed).
    ReserveInventory,
    /// Authorize the payment with the gateway.
    AuthorizePayment,
    /// Capture the authorized payment and confirm the order (the pivot).
    CapturePayment,
    /// Tell the customer (an outbox event).
    Notify,
    /// Record a refund's intent on the order (done when it is asked).
    RecordRefund,
    /// Give the money back at the gateway and take the units back.
    RefundPayment,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::ReserveInventory,
        Step::AuthorizePayment,
        Step::CapturePayment,
        Step::Notify,
        Step::RecordRefund,
        Step::RefundPayment,
    ];

    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::ReserveInventory => "reserve-inventory",
            Step::AuthorizePayment => "authorize-payment",
            Step::CapturePayment => "capture-payment",
            Step::Notify => "notify",
            Step::RecordRefund => "record-refund",
            Step::RefundPayment => "refund-payment",
        }
    }
}

/// How a step's effect is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compensation {
    ReleaseInventory,
    VoidPayment,
}

impl Compensation {
    pub fn as_str(self) -> &'static str {
        match self {
            Compensation::ReleaseInventory => "release-inventory",
            Compensation::VoidPayment => "void-payment",
        }
    }
}

/// One step of a definition: what the orchestrator needs to run it,
/// besides its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDef {
    pub step: Step,
    /// `None`: nothing to undo (or nothing can be undone: a pivot).
    pub compensation: Option<Compensation>,
    /// The step only touches our own database, so it is written with the
    /// step before it when that one succeeds, rather than on its own.
    pub local: bool,
    /// Past this step the saga only goes forward: a failure is for an
    /// operator, not a compensation.
    pub pivot: bool,
}

impl StepDef {
    /// A step that calls out (or that is done elsewhere), with nothing to
    /// undo until [`undone_by`](Self::undone_by) says otherwise.
    pub const fn remote(step: Step) -> Self {
        StepDef {
            step,
            compensation: None,
            local: false,
            pivot: false,
        }
    }

    /// A step that only touches our own database.
    pub const fn local(step: Step) -> Self {
        StepDef {
            local: true,
            ..StepDef::remote(step)
        }
    }

    /// The step's effect is undone by `compensation`.
    pub const fn undone_by(self, compensation: Compensation) -> Self {
        StepDef {
            compensation: Some(compensation),
            ..self
        }
    }

    /// The step cannot be undone: the saga only goes forward after it.
    pub const fn pivot(self) -> Self {
        StepDef {
            pivot: true,
            compensation: None,
            ..self
        }
    }
}

/// A saga definition: its type name and its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaDefinition {
    pub saga_type: &'static str,
    pub steps: &'static [StepDef],
}

impl SagaDefinition {
    /// The definition of `step`, if the saga has it.
    pub fn step(&self, step: Step) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// Whether any of the first `done` steps is the pivot.
    fn past_pivot(&self, done: usize) -> bool {
        self.steps[..done.min(self.steps.len())]
            .iter()
            .any(|s| s.pivot)
    }
}

/// The order-fulfilment saga of docs/design.md. Adding a step: a line
/// here and its action in `commerce_app::saga::actions`.
pub const FULFILMENT: SagaDefinition = SagaDefinition {
    saga_type: "order-fulfilment",
    steps: &[
        // Done synchronously when the order is placed.
        StepDef::local(Step::ReserveInventory).undone_by(Compensation::ReleaseInventory),
        StepDef::remote(Step::AuthorizePayment).undone_by(Compensation::VoidPayment),
        StepDef::remote(Step::CapturePayment).pivot(),
        // The confirmation event in the outbox is the notification.
        StepDef::local(Step::Notify),
    ],
};

/// The refund saga: a refund of a captured payment, asked by an operator
/// or by a cancel of a confirmed order. Its intent is recorded on the
/// order when it is asked (the first step, the pivot: a refund is never
/// taken back), then the gateway is asked; a refund that keeps failing
/// goes to an operator, who retries it or gives it up.
pub const REFUND: SagaDefinition = SagaDefinition {
    saga_type: "order-refund",
    steps: &[
        StepDef::local(Step::RecordRefund).pivot(),
        StepDef::remote(Step::RefundPayment),
    ],
};

/// The definition a stored saga of `saga_type` follows (an unknown type
/// is read as the fulfilment saga, the only type older versions wrote).
pub fn definition(saga_type: &str) -> &'static SagaDefinition {
    if saga_type == REFUND.saga_type {
        &REFUND
    } else {
        &FULFILMENT
    }
}

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    Running,
    Compensating,
    Completed,
    Compensated,
    NeedsAttention,
}

impl SagaStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaStatus::Completed | SagaStatus::Compensated)
    }
}

/// What the orchestrator should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Act(Step),
    Compensate(Compensation),
    /// Nothing: the saga is terminal or waits for an operator.
    Stop,
}

/// A saga's progress: the fold of its step outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaProgress {
    pub status: SagaStatus,
    /// Running: the index of the next step to act. Compensating: one past
    /// the index of the next step to undo (0 once all are undone).
    pub cursor: usize,
    /// Why the saga turned back, once it did.
    pub failure: Option<String>,
}

impl SagaProgress {
    /// A saga whose first `done` steps already happened (the fulfilment
    /// saga starts with its stock reserved at placement: `done` = 1).
    pub fn started(done: usize) -> Self {
        SagaProgress {
            status: SagaStatus::Running,
            cursor: done,
            failure: None,
        }
    }

    /// The next thing to do under `def`.
    pub fn next(&self, def: &SagaDefinition) -> Next {
        match self.status {
            SagaStatus::Running => match def.steps.get(self.cursor) {
                Some(s) => Next::Act(s.step),
                None => Next::Stop,
            },
            SagaStatus::Compensating => def.steps[..self.cursor]
                .iter()
                .rev()
                .find_map(|s| s.compensation)
                .map(Next::Compensate)
                .unwrap_or(Next::Stop),
            _ => Next::Stop,
        }
    }

    /// The current action succeeded.
    pub fn acted(mut self, def: &SagaDefinition) -> Self {
        if self.status == SagaStatus::Running {
            self.cursor += 1;
            if self.cursor >= def.steps.len() {
                self.status = SagaStatus::Completed;
            }
        }
        self
    }

    /// The current action failed for good (declined, vetoed, retries
    /// exhausted). Before the pivot the saga turns back; past it (nothing
    /// left to compensate after a non-compensable step) it needs an
    /// operator, since going back would undo a capture.
    pub fn failed(mut self, def: &SagaDefinition, reason: impl Into<String>) -> Self {
        if self.status != SagaStatus::Running {
            return self;
        }
        self.failure = Some(reason.into());
        self.status = if def.past_pivot(self.cursor) {
            SagaStatus::NeedsAttention
        } else {
            SagaStatus::Compensating
        };
        self.settle(def)
    }

    /// Stopped from outside (a cancel) while the current action may be
    /// under way in a process that has not recorded it, or died before it
    /// could: it fails like [`failed`](Self::failed), but the current
    /// action is undone too when it can be, by a compensation that first
    /// finds out whether there is anything to undo.
    pub fn interrupted(mut self, def: &SagaDefinition, reason: impl Into<String>) -> Self {
        if self.status != SagaStatus::Running {
            return self;
        }
        if def
            .steps
            .get(self.cursor)
            .is_some_and(|s| s.compensation.is_some())
        {
            self.cursor += 1;
        }
        self.failed(def, reason)
    }

    /// A process learned that `step` did act after the saga had already
    /// turned back from before it (a cancel while the action was in
    /// flight, recorded by nobody): its compensation joins the ones still
    /// to run, even if the saga had ended compensated. Anything else is
    /// left as it is.
    pub fn acted_late(mut self, def: &SagaDefinition, step: Step) -> Self {
        let Some(i) = def.steps.iter().position(|s| s.step == step) else {
            return self;
        };
        let turned_back = matches!(
            self.status,
            SagaStatus::Compensating | SagaStatus::Compensated
        );
        if turned_back && self.cursor <= i && def.steps[i].compensation.is_some() {
            self.status = SagaStatus::Compensating;
            self.cursor = i + 1;
        }
        self
    }

    /// The current compensation succeeded.
    pub fn compensated(mut self, def: &SagaDefinition) -> Self {
        if self.status != SagaStatus::Compensating {
            return self;
        }
        // Skip down past the step just undone.
        if let Some(i) = def.steps[..self.cursor]
            .iter()
            .rposition(|s| s.compensation.is_some())
        {
            self.cursor = i;
        }
        self.settle(def)
    }

    /// The current compensation keeps failing: an operator must look.
    pub fn stuck(mut self, reason: impl Into<String>) -> Self {
        if self.status == SagaStatus::Compensating {
            self.status = SagaStatus::NeedsAttention;
            self.failure = Some(reason.into());
        }
        self
    }

    /// An operator retries a saga that needs attention: it goes on from
    /// where it stopped, forward if it stopped past the pivot, else
    /// compensating.
    pub fn resume(mut self, def: &SagaDefinition) -> Self {
        if self.status == SagaStatus::NeedsAttention {
            self.status = if def.past_pivot(self.cursor) {
                SagaStatus::Running
            } else {
                SagaStatus::Compensating
            };
        }
        self
    }

    /// An operator gives up on a saga that is not finished: it ends
    /// compensated with the operator's reason (what is left to undo is
    /// theirs to settle).
    pub fn abort(mut self, reason: impl Into<String>) -> Self {
        if !self.status.is_terminal() {
            self.status = SagaStatus::Compensated;
            self.failure = Some(reason.into());
        }
        self
    }

    /// Compensating with nothing left to undo is compensated.
    fn settle(mut self, def: &SagaDefinition) -> Self {
        if self.status == SagaStatus::Compensating && self.next(def) == Next::Stop {
            self.status = SagaStatus::Compensated;
            self.cursor = 0;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &SagaDefinition = &FULFILMENT;

    #[test]
    fn a_saga_that_succeeds_walks_every_step_then_completes() {
        let mut p = SagaProgress::started(1);
        let mut seen = vec![];
        while let Next::Act(step) = p.next(F) {
            seen.push(step);
            p = p.acted(F);
        }
        assert_eq!(
            seen,
            [Step::AuthorizePayment, Step::CapturePayment, Step::Notify]
        );
        assert_eq!(p.status, SagaStatus::Completed);
        assert_eq!(p.next(F), Next::Stop);
    }

    #[test]
    fn an_authorization_learned_late_is_voided_before_the_stock_goes() {
        // Cancelled while authorizing, and the run that authorized did not
        // record it: the saga released the stock and ended compensated.
        let cancelled = SagaProgress::started(1).failed(F, "cancelled");
        let ended = cancelled.clone().compensated(F);
        assert_eq!(ended.status, SagaStatus::Compensated);
        for progress in [cancelled, ended] {
            let p = progress.acted_late(F, Step::AuthorizePayment);
            assert_eq!(p.status, SagaStatus::Compensating);
            assert_eq!(p.next(F), Next::Compensate(Compensation::VoidPayment));
            let p = p.compensated(F);
            assert_eq!(p.next(F), Next::Compensate(Compensation::ReleaseInventory));
            assert_eq!(p.compensated(F).status, SagaStatus::Compensated);
        }
    }

    #[test]
    fn acting_late_changes_nothing_when_the_step_is_already_covered() {
        // Running: the run records the step itself.
        let running = SagaProgress::started(1);
        assert_eq!(
            running.clone().acted_late(F, Step::AuthorizePayment),
            running
        );
        // Already voiding it.
        let voiding = SagaProgress::started(2).failed(F, "declined");
        assert_eq!(
            voiding.clone().acted_late(F, Step::AuthorizePayment),
            voiding
        );
        // A step with nothing to undo.
        let cancelled = SagaProgress::started(1).failed(F, "cancelled");
        assert_eq!(
            cancelled.clone().acted_late(F, Step::CapturePayment),
            cancelled
        );
    }

    #[test]
    fn a_declined_payment_undoes_only_what_was_done_in_reverse() {
        // Authorize fails: only the reservation is released.
        let p = SagaProgress::started(1).failed(F, "declined");
        assert_eq!(p.status, SagaStatus::Compensating);
        assert_eq!(p.next(F), Next::Compensate(Compensation::ReleaseInventory));
        let p = p.compensated(F);
        assert_eq!(p.status, SagaStatus::Compensated);
        assert_eq!(p.failure.as_deref(), Some("declined"));
        assert_eq!(p.next(F), Next::Stop);
    }

    #[test]
    fn a_cancel_during_authorization_voids_whatever_it_made_then_releases() {
        let p = SagaProgress::started(1).interrupted(F, "cancelled");
        assert_eq!(p.status, SagaStatus::Compensating);
        assert_eq!(p.next(F), Next::Compensate(Compensation::VoidPayment));
        let p = p.compensated(F);
        assert_eq!(p.next(F), Next::Compensate(Compensation::ReleaseInventory));
        assert_eq!(p.compensated(F).status, SagaStatus::Compensated);
        // At the capture (the pivot, not compensable) it fails as usual.
        let at_capture = SagaProgress::started(1).acted(F);
        assert_eq!(
            at_capture.clone().interrupted(F, "cancelled"),
            at_capture.failed(F, "cancelled")
        );
    }

    #[test]
    fn a_veto_after_authorization_voids_then_releases() {
        let p = SagaProgress::started(1).acted(F).failed(F, "vetoed");
        assert_eq!(p.next(F), Next::Compensate(Compensation::VoidPayment));
        let p = p.compensated(F);
        assert_eq!(p.status, SagaStatus::Compensating);
        assert_eq!(p.next(F), Next::Compensate(Compensation::ReleaseInventory));
        assert_eq!(p.compensated(F).status, SagaStatus::Compensated);
    }

    #[test]
    fn past_the_capture_a_failure_is_for_an_operator_not_a_compensation() {
        let p = SagaProgress::started(1)
            .acted(F)
            .acted(F)
            .failed(F, "notify failed");
        assert_eq!(p.status, SagaStatus::NeedsAttention);
        assert_eq!(p.next(F), Next::Stop);
    }

    #[test]
    fn a_compensation_that_keeps_failing_needs_attention_and_is_never_dropped() {
        let p = SagaProgress::started(1)
            .acted(F)
            .failed(F, "vetoed")
            .stuck("void keeps failing");
        assert_eq!(p.status, SagaStatus::NeedsAttention);
        assert_eq!(p.failure.as_deref(), Some("void keeps failing"));
        assert!(!p.status.is_terminal());
    }

    #[test]
    fn an_operator_retry_resumes_where_the_saga_stopped() {
        let stuck = SagaProgress::started(1)
            .acted(F)
            .failed(F, "vetoed")
            .stuck("void keeps failing");
        let resumed = stuck.resume(F);
        assert_eq!(resumed.status, SagaStatus::Compensating);
        assert_eq!(resumed.next(F), Next::Compensate(Compensation::VoidPayment));
        let past_pivot = SagaProgress::started(1)
            .acted(F)
            .acted(F)
            .failed(F, "notify failed")
            .resume(F);
        assert_eq!(past_pivot.status, SagaStatus::Running);
        assert_eq!(past_pivot.next(F), Next::Act(Step::Notify));
        let aborted = SagaProgress::started(1).acted(F).abort("by hand");
        assert_eq!(aborted.status, SagaStatus::Compensated);
        assert_eq!(aborted.next(F), Next::Stop);
    }

    #[test]
    fn outcomes_that_do_not_apply_change_nothing() {
        let done = SagaProgress::started(4);
        assert_eq!(done.next(F), Next::Stop);
        let completed = SagaProgress::started(3).acted(F);
        assert_eq!(completed.status, SagaStatus::Completed);
        assert_eq!(completed.clone().failed(F, "late"), completed);
        assert_eq!(completed.clone().compensated(F), completed);
        assert_eq!(completed.clone().stuck("x"), completed);
    }

    #[test]
    fn the_fulfilment_definition_says_how_each_step_runs() {
        // Given the fulfilment saga, then the capture is its only pivot,
        // nothing after the pivot can be undone, and the steps that only
        // touch our database are the reservation and the notification.
        let pivots: Vec<Step> = F.steps.iter().filter(|s| s.pivot).map(|s| s.step).collect();
        assert_eq!(pivots, [Step::CapturePayment]);
        let pivot = F.steps.iter().position(|s| s.pivot).unwrap();
        assert!(F.steps[pivot..].iter().all(|s| s.compensation.is_none()));
        let local: Vec<Step> = F.steps.iter().filter(|s| s.local).map(|s| s.step).collect();
        assert_eq!(local, [Step::ReserveInventory, Step::Notify]);
        assert_eq!(
            F.step(Step::AuthorizePayment).and_then(|s| s.compensation),
            Some(Compensation::VoidPayment)
        );
        // A pivot cannot be given a compensation by mistake.
        let def = StepDef::remote(Step::CapturePayment)
            .undone_by(Compensation::VoidPayment)
            .pivot();
        assert_eq!(def.compensation, None);
    }

    #[test]
    fn a_refund_that_fails_goes_to_an_operator_and_is_never_turned_back() {
        const R: &SagaDefinition = &REFUND;
        assert_eq!(definition("order-refund"), R);
        assert_eq!(definition("order-fulfilment"), F);
        let started = SagaProgress::started(1);
        assert_eq!(started.next(R), Next::Act(Step::RefundPayment));
        assert_eq!(started.clone().acted(R).status, SagaStatus::Completed);
        let failed = started.failed(R, "gateway refused");
        assert_eq!(failed.status, SagaStatus::NeedsAttention);
        let retried = failed.resume(R);
        assert_eq!(retried.status, SagaStatus::Running);
        assert_eq!(retried.next(R), Next::Act(Step::RefundPayment));
    }

    #[test]
    fn a_step_with_nothing_to_undo_before_the_pivot_does_not_stop_the_way_back() {
        // Given a definition with a step that needs no undoing before the
        // pivot (only the pivot is one-way)
        const D: &SagaDefinition = &SagaDefinition {
            saga_type: "test",
            steps: &[
                StepDef::local(Step::ReserveInventory).undone_by(Compensation::ReleaseInventory),
                StepDef::local(Step::Notify),
                StepDef::remote(Step::AuthorizePayment).undone_by(Compensation::VoidPayment),
                StepDef::remote(Step::CapturePayment).pivot(),
            ],
        };
        // When the capture fails
        let p = SagaProgress::started(1)
            .acted(D)
            .acted(D)
            .failed(D, "declined");
        // Then the saga turns back past the step with nothing to undo
        assert_eq!(p.status, SagaStatus::Compensating);
        assert_eq!(p.next(D), Next::Compensate(Compensation::VoidPayment));
        let p = p.compensated(D);
        assert_eq!(p.next(D), Next::Compensate(Compensation::ReleaseInventory));
        assert_eq!(p.compensated(D).status, SagaStatus::Compensated);
    }
}
