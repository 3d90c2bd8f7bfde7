//! The simulator's books: every authorization with its state machine, and
//! the idempotency store. Pure and synchronous (no I/O, no clock), so the
//! HTTP layer holds it under one lock for a whole check-and-act and the
//! rules are unit-tested here without a server.
//!
//! States (`authorized` is the only one an authorization starts in, apart
//! from `declined`):
//!
//! ```text
//! authorized --capture--> captured --refund--> refunded
//!     \--void--> voided           \--refund (part)--/
//! ```
//!
//! Refunds may be partial: each adds to `refunded_amount`, never past
//! what was captured, and the authorization stays `captured` until they
//! add up to all of it.
//!
//! Any other transition is a conflict (409): a capture is never applied
//! twice, a voided or declined authorization is never captured.

use std::collections::HashMap;

use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use commerce_app::ports::{Authorization, AuthorizationStatus, AuthorizeRequest};

/// The tokens the simulator knows; anything else is refused (422).
pub const TOKEN_OK: &str = "tok_ok";
pub const TOKEN_DECLINE: &str = "tok_decline";
pub const TOKEN_ERROR: &str = "tok_error";
pub const TOKEN_TIMEOUT: &str = "tok_timeout";
pub const TOKEN_SLOW: &str = "tok_slow";

/// One authorization as the ledger keeps it: its state and how many times
/// each operation was applied to it (replays of an idempotent request are
/// not counted: they apply nothing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerEntry {
    #[serde(flatten)]
    pub authorization: Authorization,
    pub token: String,
    pub captures: u32,
    pub voids: u32,
    pub refunds: u32,
}

/// Why an operation was refused, each with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// 402: the issuer refused (token `tok_decline`). The declined attempt
    /// is in the ledger under `authorization_id`.
    #[error("the card was declined")]
    Declined {
        reason: String,
        authorization_id: String,
    },
    /// 404.
    #[error("no authorization {0}")]
    NotFound(String),
    /// 409: the authorization is not in a state that allows the action.
    #[error("cannot {action} an authorization that is {status:?}")]
    IllegalTransition {
        action: &'static str,
        status: AuthorizationStatus,
    },
    /// 422: zero, negative, too precise, or above what may be taken.
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    /// 422: not one of the simulator's tokens.
    #[error("unknown payment token")]
    InvalidToken,
}

impl LedgerError {
    fn status(&self) -> StatusCode {
        match self {
            LedgerError::Declined { .. } => StatusCode::PAYMENT_REQUIRED,
            LedgerError::NotFound(_) => StatusCode::NOT_FOUND,
            LedgerError::IllegalTransition { .. } => StatusCode::CONFLICT,
            LedgerError::InvalidAmount(_) | LedgerError::InvalidToken => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            LedgerError::Declined { .. } => "declined",
            LedgerError::NotFound(_) => "not-found",
            LedgerError::IllegalTransition { .. } => "illegal-transition",
            LedgerError::InvalidAmount(_) => "invalid-amount",
            LedgerError::InvalidToken => "invalid-token",
        }
    }

    /// The problem+json answer for this error.
    pub fn reply(&self) -> Reply {
        let mut extensions = Map::new();
        match self {
            LedgerError::Declined {
                reason,
                authorization_id,
            } => {
                extensions.insert("reason".into(), json!(reason));
                extensions.insert("authorization_id".into(), json!(authorization_id));
            }
            LedgerError::IllegalTransition { action, status } => {
                extensions.insert("action".into(), json!(action));
                extensions.insert("authorization_status".into(), json!(status));
            }
            _ => {}
        }
        Reply::problem(self.status(), self.kind(), &self.to_string(), extensions)
    }
}

/// An HTTP answer as stored for idempotent replay: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn ok(status: StatusCode, body: &impl serde::Serialize) -> Reply {
        Reply {
            status,
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }

    pub fn problem(
        status: StatusCode,
        kind: &str,
        detail: &str,
        extensions: Map<String, Value>,
    ) -> Reply {
        // RFC 9457, as the service's own API answers; written here so that
        // the simulator, a stand-in for another company's gateway, shares
        // nothing with the service's HTTP layer.
        let mut body = Map::new();
        body.insert("type".into(), Value::from(format!("/problems/{kind}")));
        body.insert(
            "title".into(),
            Value::from(status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), Value::from(status.as_u16()));
        body.insert("detail".into(), Value::from(detail));
        body.extend(extensions);
        Reply {
            status,
            body: Value::Object(body),
        }
    }

    /// The answer to an operation: `success` on success, the error's
    /// problem otherwise.
    pub fn from_result(success: StatusCode, result: Result<Authorization, LedgerError>) -> Reply {
        match result {
            Ok(authorization) => Reply::ok(success, &authorization),
            Err(e) => e.reply(),
        }
    }
}

/// A stored answer and the request it answered.
#[derive(Debug, Clone)]
struct Stored {
    fingerprint: String,
    reply: Reply,
}

/// Authorizations (in creation order) and stored idempotent answers.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Vec<LedgerEntry>,
    by_id: HashMap<String, usize>,
    replies: HashMap<String, Stored>,
}

impl Ledger {
    /// The stored answer for `key`, if any: the answer itself when the
    /// request (`fingerprint`) is the same, a 422 when the key was used for
    /// another request.
    pub fn replay(&self, key: &str, fingerprint: &str) -> Option<Reply> {
        let stored = self.replies.get(key)?;
        if stored.fingerprint == fingerprint {
            Some(stored.reply.clone())
        } else {
            Some(Reply::problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this Idempotency-Key was used for another request",
                Map::new(),
            ))
        }
    }

    /// Runs `op` once per key: a replay answers what the first run
    /// answered (or 422 for another request under the same key). Answers
    /// below 500 are stored; a 5xx is not, so a retry runs again.
    pub fn once(
        &mut self,
        key: &str,
        fingerprint: &str,
        op: impl FnOnce(&mut Ledger) -> Reply,
    ) -> Reply {
        if let Some(reply) = self.replay(key, fingerprint) {
            return reply;
        }
        let reply = op(self);
        if !reply.status.is_server_error() {
            self.replies.insert(
                key.to_owned(),
                Stored {
                    fingerprint: fingerprint.to_owned(),
                    reply: reply.clone(),
                },
            );
        }
        reply
    }

    /// Records an authorization (`tok_ok`, `tok_slow`) or a declined
    /// attempt (`tok_decline`). The HTTP layer handles `tok_error` and
    /// `tok_timeout` before it gets here.
    pub fn authorize(&mut self, request: &AuthorizeRequest) -> Result<Authorization, LedgerError> {
        let status = match request.token.as_str() {
            TOKEN_OK | TOKEN_SLOW => AuthorizationStatus::Authorized,
            TOKEN_DECLINE => AuthorizationStatus::Declined,
            _ => return Err(LedgerError::InvalidToken),
        };
        if request.amount <= Decimal::ZERO {
            return Err(LedgerError::InvalidAmount(
                "the amount must be positive".into(),
            ));
        }
        let amount = request
            .currency
            .amount(request.amount)
            .map_err(|e| LedgerError::InvalidAmount(e.to_string()))?;
        let id = format!("auth_{}", Uuid::new_v4().simple());
        let authorization = Authorization {
            id: id.clone(),
            order_id: request.order_id,
            amount,
            currency: request.currency,
            status,
            captured_amount: None,
            refunded_amount: None,
        };
        self.by_id.insert(id.clone(), self.entries.len());
        self.entries.push(LedgerEntry {
            authorization: authorization.clone(),
            token: request.token.clone(),
            captures: 0,
            voids: 0,
            refunds: 0,
        });
        if status == AuthorizationStatus::Declined {
            return Err(LedgerError::Declined {
                reason: "card_declined".into(),
                authorization_id: id,
            });
        }
        Ok(authorization)
    }

    /// Takes `amount` (positive, at most the authorized amount) of an
    /// `authorized` authorization.
    pub fn capture(&mut self, id: &str, amount: Decimal) -> Result<Authorization, LedgerError> {
        let entry = self.entry_in(id, "capture", AuthorizationStatus::Authorized)?;
        let amount = checked_amount(entry, amount, entry.authorization.amount, "authorized")?;
        entry.authorization.status = AuthorizationStatus::Captured;
        entry.authorization.captured_amount = Some(amount);
        entry.captures += 1;
        Ok(entry.authorization.clone())
    }

    /// Releases an `authorized` authorization.
    pub fn void(&mut self, id: &str) -> Result<Authorization, LedgerError> {
        let entry = self.entry_in(id, "void", AuthorizationStatus::Authorized)?;
        entry.authorization.status = AuthorizationStatus::Voided;
        entry.voids += 1;
        Ok(entry.authorization.clone())
    }

    /// Gives back `amount` (positive, at most the captured amount) of a
    /// `captured` authorization.
    pub fn refund(&mut self, id: &str, amount: Decimal) -> Result<Authorization, LedgerError> {
        let entry = self.entry_in(id, "refund", AuthorizationStatus::Captured)?;
        let captured = entry.authorization.captured_amount.unwrap_or_default();
        let before = entry.authorization.refunded_amount.unwrap_or_default();
        let amount = checked_amount(entry, amount, captured - before, "left to refund")?;
        let refunded = before + amount;
        if refunded >= captured {
            entry.authorization.status = AuthorizationStatus::Refunded;
        }
        entry.authorization.refunded_amount = Some(refunded);
        entry.refunds += 1;
        Ok(entry.authorization.clone())
    }

    /// One authorization.
    pub fn get(&self, id: &str) -> Option<&LedgerEntry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// Every authorization, oldest first.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// The authorizations of one order, oldest first.
    pub fn for_order(&self, order_id: Uuid) -> Vec<LedgerEntry> {
        self.entries
            .iter()
            .filter(|e| e.authorization.order_id == order_id)
            .cloned()
            .collect()
    }

    /// The entry `id`, if it is in `expected` state.
    fn entry_in(
        &mut self,
        id: &str,
        action: &'static str,
        expected: AuthorizationStatus,
    ) -> Result<&mut LedgerEntry, LedgerError> {
        let index = *self
            .by_id
            .get(id)
            .ok_or_else(|| LedgerError::NotFound(id.chars().take(64).collect()))?;
        let entry = &mut self.entries[index];
        if entry.authorization.status != expected {
            return Err(LedgerError::IllegalTransition {
                action,
                status: entry.authorization.status,
            });
        }
        Ok(entry)
    }
}

/// `amount` at the entry's currency scale, if positive and at most `limit`.
fn checked_amount(
    entry: &LedgerEntry,
    amount: Decimal,
    limit: Decimal,
    what: &str,
) -> Result<Decimal, LedgerError> {
    if amount <= Decimal::ZERO {
        return Err(LedgerError::InvalidAmount(
            "the amount must be positive".into(),
        ));
    }
    let amount = entry
        .authorization
        .currency
        .amount(amount)
        .map_err(|e| LedgerError::InvalidAmount(e.to_string()))?;
    if amount > limit {
        return Err(LedgerError::InvalidAmount(format!(
            "{amount} is more than the {limit} {what}"
        )));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthorizationStatus as S;
    use commerce_domain::Currency;

    fn request(token: &str, amount: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            order_id: Uuid::new_v4(),
            amount: amount.parse().unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            token: token.into(),
        }
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn authorized(ledger: &mut Ledger) -> String {
        let a = ledger.authorize(&request(TOKEN_OK, "10.00")).unwrap();
        assert_eq!(a.status, S::Authorized);
        a.id
    }

    #[test]
    fn capture_then_refund() {
        let mut ledger = Ledger::default();
        let id = authorized(&mut ledger);
        let a = ledger.capture(&id, dec("7.5")).unwrap();
        assert_eq!(
            (a.status, a.captured_amount),
            (S::Captured, Some(dec("7.50")))
        );
        assert_eq!(
            ledger.refund(&id, dec("7.51")),
            Err(LedgerError::InvalidAmount(
                "7.51 is more than the 7.50 left to refund".into()
            ))
        );
        // Partial refunds add up, and stay within what was captured.
        let a = ledger.refund(&id, dec("2.50")).unwrap();
        assert_eq!(
            (a.status, a.refunded_amount),
            (S::Captured, Some(dec("2.50")))
        );
        assert!(ledger.refund(&id, dec("5.01")).is_err());
        let a = ledger.refund(&id, dec("5.00")).unwrap();
        assert_eq!(
            (a.status, a.refunded_amount),
            (S::Refunded, Some(dec("7.50")))
        );
        let entry = ledger.get(&id).unwrap();
        assert_eq!((entry.captures, entry.voids, entry.refunds), (1, 0, 2));
    }

    #[test]
    fn a_capture_is_applied_once() {
        let mut ledger = Ledger::default();
        let id = authorized(&mut ledger);
        ledger.capture(&id, dec("10")).unwrap();
        assert_eq!(
            ledger.capture(&id, dec("10")),
            Err(LedgerError::IllegalTransition {
                action: "capture",
                status: S::Captured
            })
        );
        assert_eq!(ledger.get(&id).unwrap().captures, 1);
    }

    #[test]
    fn illegal_transitions_change_nothing() {
        // (how to reach the state, the refused action)
        type Step = fn(&mut Ledger, &str) -> Result<Authorization, LedgerError>;
        let capture: Step = |l, id| l.capture(id, dec("1"));
        let void: Step = |l, id| l.void(id);
        let refund: Step = |l, id| l.refund(id, dec("1"));
        let cases: [(&[Step], Step, S); 6] = [
            (&[void], capture, S::Voided),
            (&[void], refund, S::Voided),
            (&[void], void, S::Voided),
            (&[capture], void, S::Captured),
            (&[], refund, S::Authorized),
            (&[capture, refund], capture, S::Refunded),
        ];
        for (i, (given, when, status)) in cases.into_iter().enumerate() {
            let mut ledger = Ledger::default();
            let id = authorized(&mut ledger);
            for step in given {
                step(&mut ledger, &id).unwrap();
            }
            let before = ledger.get(&id).unwrap().clone();
            let err = when(&mut ledger, &id).unwrap_err();
            assert!(
                matches!(err, LedgerError::IllegalTransition { status: s, .. } if s == status),
                "case {i}: {err:?}"
            );
            assert_eq!(ledger.get(&id).unwrap(), &before, "case {i}");
        }
    }

    #[test]
    fn amounts_are_checked() {
        let mut ledger = Ledger::default();
        for bad in ["0", "-1", "1.001"] {
            assert!(
                matches!(
                    ledger.authorize(&request(TOKEN_OK, bad)),
                    Err(LedgerError::InvalidAmount(_))
                ),
                "{bad}"
            );
        }
        let id = authorized(&mut ledger);
        for bad in ["0", "10.01", "0.001"] {
            assert!(
                matches!(
                    ledger.capture(&id, dec(bad)),
                    Err(LedgerError::InvalidAmount(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(ledger.entries().len(), 1);
        assert_eq!(ledger.get(&id).unwrap().authorization.status, S::Authorized);
    }

    #[test]
    fn declines_are_recorded_and_cannot_be_captured() {
        let mut ledger = Ledger::default();
        let request = request(TOKEN_DECLINE, "5");
        let Err(LedgerError::Declined {
            authorization_id, ..
        }) = ledger.authorize(&request)
        else {
            panic!("not declined")
        };
        assert_eq!(ledger.for_order(request.order_id).len(), 1);
        assert!(matches!(
            ledger.capture(&authorization_id, dec("5")),
            Err(LedgerError::IllegalTransition {
                status: S::Declined,
                ..
            })
        ));
        assert_eq!(
            ledger.authorize(&super::tests::request("tok_nope", "5")),
            Err(LedgerError::InvalidToken)
        );
        assert_eq!(
            ledger.capture("auth_x", dec("1")),
            Err(LedgerError::NotFound("auth_x".into()))
        );
    }

    #[test]
    fn idempotency_replays_and_refuses_another_request() {
        let mut ledger = Ledger::default();
        let request = request(TOKEN_OK, "3");
        let run = |ledger: &mut Ledger, key: &str, fingerprint: &str| {
            ledger.once(key, fingerprint, |l| {
                Reply::from_result(StatusCode::CREATED, l.authorize(&request))
            })
        };
        let first = run(&mut ledger, "k1", "a");
        assert_eq!(first.status, StatusCode::CREATED);
        assert_eq!(run(&mut ledger, "k1", "a"), first);
        assert_eq!(ledger.entries().len(), 1);
        let reused = run(&mut ledger, "k1", "b");
        assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.body["type"], "/problems/idempotency-key-reused");
        assert_ne!(run(&mut ledger, "k2", "a").body["id"], first.body["id"]);
        assert_eq!(ledger.entries().len(), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Capture(i64),
        Void,
        Refund(i64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Cents from -1 to 12.00: some above the 10.00 authorized.
        prop_oneof![
            (-100i64..1200).prop_map(Op::Capture),
            Just(Op::Void),
            (-100i64..1200).prop_map(Op::Refund),
        ]
    }

    proptest::proptest! {
        /// Whatever is asked, in any order: at most one capture and one
        /// void; never both captured and voided; never more taken
        /// than authorized nor given back than taken; and the status says
        /// what was applied.
        #[test]
        fn the_state_machine_holds_under_any_sequence(ops in proptest::collection::vec(op(), 0..12)) {
            let mut ledger = Ledger::default();
            let id = authorized(&mut ledger);
            for op in ops {
                let _ = match op {
                    Op::Capture(cents) => ledger.capture(&id, Decimal::new(cents, 2)),
                    Op::Void => ledger.void(&id),
                    Op::Refund(cents) => ledger.refund(&id, Decimal::new(cents, 2)),
                };
                let e = ledger.get(&id).unwrap();
                let a = &e.authorization;
                proptest::prop_assert!(e.captures <= 1 && e.voids <= 1);
                proptest::prop_assert!(e.refunds == 0 || e.captures == 1);
                proptest::prop_assert!(e.captures + e.voids <= 1);
                proptest::prop_assert!(a.captured_amount.unwrap_or_default() <= a.amount);
                proptest::prop_assert!(a.refunded_amount.unwrap_or_default() <= a.captured_amount.unwrap_or_default());
                let all_back = a.captured_amount.is_some()
                    && a.refunded_amount == a.captured_amount;
                let expected = match (e.captures, e.voids, e.refunds) {
                    (0, 0, 0) => S::Authorized,
                    (1, 0, _) if all_back => S::Refunded,
                    (1, 0, _) => S::Captured,
                    (0, 1, 0) => S::Voided,
                    other => panic!("impossible counts {other:?}"),
                };
                proptest::prop_assert_eq!(a.status, expected);
            }
        }
    }

    #[test]
    fn server_errors_are_not_stored() {
        let mut ledger = Ledger::default();
        let fail = |_: &mut Ledger| {
            Reply::problem(StatusCode::INTERNAL_SERVER_ERROR, "x", "x", Map::new())
        };
        ledger.once("k", "f", fail);
        assert!(ledger.replay("k", "f").is_none());
    }
}
