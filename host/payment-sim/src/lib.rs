//! The payment simulator: a small card-payment gateway over HTTP, with an
//! in-memory ledger, for development and tests. It is the gateway `serve`
//! talks to when `PAYMENT_URL` is unset (embedded, see [`spawn`]), and runs
//! on its own as `commerce payment-sim`. It must behave as a real gateway
//! would on the points a saga relies on (idempotency, the authorization
//! state machine), and it is not a place for business rules.
//!
//! # Behaviour by token (as card sandboxes do)
//!
//! | token         | `POST /v1/authorizations` answers |
//! |---------------|-----------------------------------|
//! | `tok_ok`      | 201, authorized |
//! | `tok_decline` | 402 problem `type: /problems/declined`, `reason: card_declined` (recorded as `declined`) |
//! | `tok_error`   | 500 problem; nothing recorded, nothing stored under the key |
//! | `tok_timeout` | no answer for `--hang-ms` (60 s), then 504; nothing recorded |
//! | `tok_slow`    | 201 after `--slow-ms` (1.5 s) |
//! | anything else | 422 problem `invalid-token` |
//!
//! # Routes
//!
//! Every `POST` needs an `Idempotency-Key` header (400 without). The same
//! key with the same request answers the stored first answer (status and
//! body) and applies nothing again; the same key with another request
//! (another route, authorization or body) is 422
//! `idempotency-key-reused`. Answers below 500 are stored; 5xx are not.
//! Amounts are decimal strings in the currency's scale (`"12.50"` EUR).
//! Errors are RFC 9457 problem+json.
//!
//! ```text
//! POST /v1/authorizations                  {order_id, amount, currency, token}
//!      201 Authorization | 402 declined | 422 invalid-token, invalid-amount | 500 | 504
//! POST /v1/authorizations/{id}/capture     {amount}  authorized -> captured
//!      200 Authorization | 404 | 409 illegal-transition | 422 invalid-amount (> authorized)
//! POST /v1/authorizations/{id}/void        {}        authorized -> voided
//!      200 Authorization | 404 | 409 illegal-transition
//! POST /v1/authorizations/{id}/refund      {amount}  captured -> refunded
//!      200 Authorization | 404 | 409 illegal-transition | 422 invalid-amount (> captured)
//! GET  /v1/authorizations/{id}             200 LedgerEntry | 404
//! GET  /v1/ledger                          200 [LedgerEntry], oldest first
//! GET  /v1/ledger/orders/{order_id}        200 [LedgerEntry] of that order ([] if none)
//! GET  /healthz                            200 {"status":"ok"}
//!
//! Authorization = {id, order_id, amount, currency,
//!                  status: authorized|captured|voided|refunded|declined,
//!                  captured_amount, refunded_amount}
//! LedgerEntry   = Authorization + {token, captures, voids, refunds}
//! ```
//!
//! A capture is never applied twice: a retry with the same key gets the
//! first answer, any other capture of a captured authorization is 409.
//! The counters count operations applied, not requests, so a test can
//! assert "captured exactly once". The ledger lives as long as the process.

mod ledger;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::{Map, json};
use tokio::net::TcpListener;
use uuid::Uuid;

pub use ledger::{
    DEFAULT_MAX_ENTRIES, Ledger, LedgerEntry, LedgerError, Reply, TOKEN_DECLINE, TOKEN_ERROR,
    TOKEN_OK, TOKEN_SLOW, TOKEN_TIMEOUT,
};

use commerce_app::ports::AuthorizeRequest;

/// The media type of an RFC 9457 problem document.
const PROBLEM_JSON: &str = "application/problem+json";

/// How slow the slow tokens are, and how much the ledger keeps.
#[derive(Debug, Clone, Copy)]
pub struct SimulatorConfig {
    /// How long `tok_slow` takes to answer.
    pub slow: Duration,
    /// How long `tok_timeout` holds a request before answering 504: longer
    /// than any client waits.
    pub hang: Duration,
    /// Authorizations (and stored idempotent answers) kept; the oldest go
    /// first ([`Ledger::bounded`]).
    pub max_entries: usize,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            slow: Duration::from_millis(1500),
            hang: Duration::from_secs(60),
            max_entries: ledger::DEFAULT_MAX_ENTRIES,
        }
    }
}

#[derive(Clone)]
struct SimState {
    ledger: Arc<Mutex<Ledger>>,
    config: SimulatorConfig,
}

impl SimState {
    /// The ledger. Its operations never panic half-way, so a poisoned lock
    /// (a panic elsewhere while holding it) still guards consistent data.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The simulator's routes over a fresh, empty ledger.
pub fn router(config: SimulatorConfig) -> Router {
    let state = SimState {
        ledger: Arc::new(Mutex::new(Ledger::bounded(config.max_entries))),
        config,
    };
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/v1/authorizations", post(authorize))
        .route("/v1/authorizations/{id}", get(authorization))
        .route("/v1/authorizations/{id}/capture", post(capture))
        .route("/v1/authorizations/{id}/void", post(void))
        .route("/v1/authorizations/{id}/refund", post(refund))
        .route("/v1/ledger", get(ledger_all))
        .route("/v1/ledger/orders/{order_id}", get(ledger_of_order))
        .fallback(|| async {
            reply(Reply::problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such route",
                Map::new(),
            ))
        })
        .method_not_allowed_fallback(|| async {
            reply(Reply::problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take this method",
                Map::new(),
            ))
        })
        .with_state(state)
}

/// Binds `listen` (port 0 picks a free port) and serves the simulator on
/// it in the background of the current Tokio runtime, for as long as the
/// runtime lives. Returns the bound address.
pub async fn spawn(listen: &str, config: SimulatorConfig) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the payment simulator to {listen}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(config)).await {
            tracing::error!(error = ?e, "the payment simulator stopped");
        }
    });
    Ok(addr)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AmountBody {
    amount: Decimal,
}

async fn authorize(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, request) = match parse::<AuthorizeRequest>(&headers, &body) {
        Ok(parsed) => parsed,
        Err(problem) => return reply(problem),
    };
    let fingerprint = fingerprint("authorize", "", &request);
    // A replay answers at once, whatever the token.
    if let Some(stored) = state.ledger().replay(&key, &fingerprint) {
        return reply(stored);
    }
    match request.token.as_str() {
        TOKEN_ERROR => {
            return reply(Reply::problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "gateway-error",
                "simulated gateway failure (tok_error)",
                Map::new(),
            ));
        }
        TOKEN_TIMEOUT => {
            tokio::time::sleep(state.config.hang).await;
            return reply(Reply::problem(
                StatusCode::GATEWAY_TIMEOUT,
                "issuer-timeout",
                "simulated issuer timeout (tok_timeout); nothing was authorized",
                Map::new(),
            ));
        }
        TOKEN_SLOW => tokio::time::sleep(state.config.slow).await,
        _ => {}
    }
    let answer = state.ledger().once(&key, &fingerprint, |ledger| {
        Reply::from_result(StatusCode::CREATED, ledger.authorize(&request))
    });
    reply(answer)
}

async fn capture(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, body) = match parse::<AmountBody>(&headers, &body) {
        Ok(parsed) => parsed,
        Err(problem) => return reply(problem),
    };
    let fingerprint = fingerprint("capture", &id, &body);
    reply(state.ledger().once(&key, &fingerprint, |ledger| {
        Reply::from_result(StatusCode::OK, ledger.capture(&id, body.amount))
    }))
}

async fn void(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // The body, if any, carries nothing.
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(problem) => return reply(problem),
    };
    let fingerprint = fingerprint("void", &id, &());
    reply(state.ledger().once(&key, &fingerprint, |ledger| {
        Reply::from_result(StatusCode::OK, ledger.void(&id))
    }))
}

async fn refund(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, body) = match parse::<AmountBody>(&headers, &body) {
        Ok(parsed) => parsed,
        Err(problem) => return reply(problem),
    };
    let fingerprint = fingerprint("refund", &id, &body);
    reply(state.ledger().once(&key, &fingerprint, |ledger| {
        Reply::from_result(StatusCode::OK, ledger.refund(&id, body.amount))
    }))
}

async fn authorization(State(state): State<SimState>, Path(id): Path<String>) -> Response {
    let found = state.ledger().get(&id).cloned();
    match found {
        Some(entry) => reply(Reply::ok(StatusCode::OK, &entry)),
        None => reply(LedgerError::NotFound(id.chars().take(64).collect()).reply()),
    }
}

async fn ledger_all(State(state): State<SimState>) -> Response {
    let entries = state.ledger().entries().to_vec();
    reply(Reply::ok(StatusCode::OK, &entries))
}

async fn ledger_of_order(State(state): State<SimState>, Path(order_id): Path<String>) -> Response {
    let Ok(order_id) = order_id.parse::<Uuid>() else {
        return reply(bad_request("the order id is not a UUID"));
    };
    let entries = state.ledger().for_order(order_id);
    reply(Reply::ok(StatusCode::OK, &entries))
}

/// What identifies a request for idempotency: the operation, its target
/// and its body, re-serialized so that formatting does not matter.
fn fingerprint(operation: &str, target: &str, body: &impl serde::Serialize) -> String {
    let body = serde_json::to_string(body).unwrap_or_default();
    format!("{operation} {target} {body}")
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, Reply> {
    match headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some(key) if !key.is_empty() && key.len() <= 255 => Ok(key.to_owned()),
        _ => Err(bad_request(
            "an Idempotency-Key header (1 to 255 characters) is required",
        )),
    }
}

/// The idempotency key and the JSON body.
fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<(String, T), Reply> {
    let key = idempotency_key(headers)?;
    let body = serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("invalid request body: {e}")))?;
    Ok((key, body))
}

fn bad_request(detail: &str) -> Reply {
    Reply::problem(StatusCode::BAD_REQUEST, "bad-request", detail, Map::new())
}

fn reply(reply: Reply) -> Response {
    let is_problem = reply.status.is_client_error() || reply.status.is_server_error();
    let mut response = (reply.status, axum::Json(reply.body)).into_response();
    if is_problem {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    }
    response
}
