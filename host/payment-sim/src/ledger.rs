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

use std::collections::{HashMap, VecDeque};

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

/// Authorizations (in creation order) and stored idempotent answers,
/// each at most `max` (the oldest go first): the simulator runs for as
/// long as the service does, so its books are bounded.
#[derive(Debug)]
pub struct Ledger {
    entries: Vec<LedgerEntry>,
    by_id: HashMap<String, usize>,
    replies: HashMap<String, Stored>,
    /// Keys of `replies`, oldest first.
    reply_order: VecDeque<String>,
    max: usize,
}

/// [`Ledger`]'s bound unless configured: far more than a load test makes.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

impl Default for Ledger {
    fn default() -> Self {
        Ledger::bounded(DEFAULT_MAX_ENTRIES)
    }
}

impl Ledger {
    /// A ledger keeping at most `max` authorizations and `max` stored
    /// answers: past that, the oldest tenth of the authorizations go at
    /// once (their ids then answer 404), and the oldest answer per new one.
    pub fn bounded(max: usize) -> Self {
        Ledger {
            entries: Vec::new(),
            by_id: HashMap::new(),
            replies: HashMap::new(),
            reply_order: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Forgets the oldest authorizations once there are more than `max`.
    fn evict(&mut self) {
        if self.entries.len() <= self.max {
            return;
        }
        let drop = (self.max / 10).max(1).min(self.entries.len());
        self.entries.drain(..drop);
        self.by_id = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.authorization.id.clone(), i))
            .collect();
    }

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
            self.reply_order.push_back(key.to_owned());
            while self.replies.len() > self.max {
                let Some(oldest) = self.reply_order.pop_front() else {
                    break;
                };
                self.replies.remove(&oldest);
            }
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
        self.evict();
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
mod tests;
