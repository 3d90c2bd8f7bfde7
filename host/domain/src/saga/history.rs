//! What a line of a saga's history says, typed: which step or
//! compensation it is about ([`StepName`]), who wrote it ([`Phase`]) and
//! how it turned out ([`Outcome`]). Each is stored and shown by the API
//! as the text its `as_str` gives, which must never change.

use super::{Compensation, Next, Step};

/// What a saga's history line is about: a step, a compensation, or
/// nothing (a line written when the saga had nothing left to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepName {
    Step(Step),
    Compensation(Compensation),
    /// Stored as `-`.
    Idle,
}

impl StepName {
    /// The name as stored and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Step(s) => s.as_str(),
            StepName::Compensation(c) => c.as_str(),
            StepName::Idle => "-",
        }
    }
}

impl From<Step> for StepName {
    fn from(step: Step) -> Self {
        StepName::Step(step)
    }
}

impl From<Compensation> for StepName {
    fn from(compensation: Compensation) -> Self {
        StepName::Compensation(compensation)
    }
}

impl From<Next> for StepName {
    fn from(next: Next) -> Self {
        match next {
            Next::Act(step) => StepName::Step(step),
            Next::Compensate(c) => StepName::Compensation(c),
            Next::Stop => StepName::Idle,
        }
    }
}

/// Who or what wrote a line of a saga's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// A step's action (and the retries of any gateway call).
    Action,
    Compensation,
    /// The saga hooks run before a step's action, and after it.
    HookBefore,
    HookAfter,
    /// An operator's retry or abort.
    Operator,
    /// A customer's cancel turning the saga back.
    Cancel,
    /// A run that lost a write race merged what it learned.
    Reconcile,
}

impl Phase {
    /// The phase as stored and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Action => "action",
            Phase::Compensation => "compensation",
            Phase::HookBefore => "hook-before",
            Phase::HookAfter => "hook-after",
            Phase::Operator => "operator",
            Phase::Cancel => "cancel",
            Phase::Reconcile => "reconcile",
        }
    }

    /// The hook phase on either side of an action.
    pub fn hook(before: bool) -> Phase {
        if before {
            Phase::HookBefore
        } else {
            Phase::HookAfter
        }
    }
}

/// How a line of a saga's history turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Failed,
    /// A gateway call that did not answer, tried again; also an
    /// operator's retry.
    Retry,
    /// A hook said no.
    Veto,
    /// A veto past the pivot: recorded, not obeyed.
    Ignored,
    /// A compensation with nothing to undo.
    Skipped,
    /// A compensation that keeps failing: an operator must look.
    Stuck,
    /// An authorization a dead run made without recording it.
    Found,
    /// An operator gave up on the saga.
    Abort,
}

impl Outcome {
    /// The outcome as stored and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Retry => "retry",
            Outcome::Veto => "veto",
            Outcome::Ignored => "ignored",
            Outcome::Skipped => "skipped",
            Outcome::Stuck => "stuck",
            Outcome::Found => "found",
            Outcome::Abort => "abort",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FULFILMENT, SagaDefinition, SagaProgress};
    use super::*;

    const F: &SagaDefinition = &FULFILMENT;

    #[test]
    fn history_names_are_stored_as_they_always_were() {
        // Given every phase, outcome and step name
        let phases = [
            (Phase::Action, "action"),
            (Phase::Compensation, "compensation"),
            (Phase::HookBefore, "hook-before"),
            (Phase::HookAfter, "hook-after"),
            (Phase::Operator, "operator"),
            (Phase::Cancel, "cancel"),
            (Phase::Reconcile, "reconcile"),
        ];
        let outcomes = [
            (Outcome::Ok, "ok"),
            (Outcome::Failed, "failed"),
            (Outcome::Retry, "retry"),
            (Outcome::Veto, "veto"),
            (Outcome::Ignored, "ignored"),
            (Outcome::Skipped, "skipped"),
            (Outcome::Stuck, "stuck"),
            (Outcome::Found, "found"),
            (Outcome::Abort, "abort"),
        ];
        let names = [
            (StepName::from(Step::ReserveInventory), "reserve-inventory"),
            (StepName::from(Step::AuthorizePayment), "authorize-payment"),
            (StepName::from(Step::CapturePayment), "capture-payment"),
            (StepName::from(Step::Notify), "notify"),
            (
                StepName::from(Compensation::ReleaseInventory),
                "release-inventory",
            ),
            (StepName::from(Compensation::VoidPayment), "void-payment"),
            (StepName::Idle, "-"),
        ];
        // When each is written, then it reads as the database and the API
        // have always had it.
        for (phase, stored) in phases {
            assert_eq!(phase.as_str(), stored);
        }
        for (outcome, stored) in outcomes {
            assert_eq!(outcome.as_str(), stored);
        }
        for (name, stored) in names {
            assert_eq!(name.as_str(), stored);
        }
        assert_eq!(Phase::hook(true), Phase::HookBefore);
        assert_eq!(Phase::hook(false), Phase::HookAfter);
    }

    #[test]
    fn a_step_name_says_what_the_saga_does_next() {
        // Given a saga at each point of its life, when it is named, then
        // the name is its next step, its next compensation, or idle.
        let authorizing = SagaProgress::started(1);
        assert_eq!(
            StepName::from(authorizing.next(F)),
            StepName::Step(Step::AuthorizePayment)
        );
        let voiding = SagaProgress::started(2).failed(F, "vetoed");
        assert_eq!(
            StepName::from(voiding.next(F)),
            StepName::Compensation(Compensation::VoidPayment)
        );
        let done = SagaProgress::started(3).acted(F);
        assert_eq!(StepName::from(done.next(F)), StepName::Idle);
    }
}
