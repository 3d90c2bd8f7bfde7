//! `/v1/orders`: place, read, list, change, cancel, history, and the admin
//! transitions. Handlers extract, call one use case, and shape the answer.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{
    Admin, ApiJson, ApiPath, ApiQuery, Auth, OptionalJson, etag, idempotency_key, parse_if_match,
};
use commerce_app::Caller;
use commerce_app::orders::{
    AdminTransition, ListOrders, PlaceOrderRequest, Placed, RefundOutcome, RefundRequest,
    RequestedLine,
};
use commerce_app::ports::StoredEvent;
use commerce_app::views::{OrderPage, OrderView};
use commerce_domain::{Currency, OrderStatus, Quantity, RefundLine, Sku};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(create_order).get(list_orders))
        .route(
            "/v1/orders/{id}",
            get(get_order).patch(update_order).delete(cancel_order),
        )
        .route("/v1/orders/{id}/events", get(order_events))
        .route("/v1/orders/{id}/ship", post(ship_order))
        .route("/v1/orders/{id}/deliver", post(deliver_order))
        .route("/v1/orders/{id}/refund", post(refund_order))
        .route("/v1/orders/{id}/pay", post(pay_order))
}

/// One requested line: what and how many. Prices come from the catalog.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    #[schema(value_type = String, example = "MUG-RED")]
    pub sku: Sku,
    /// 1 to 10000.
    #[schema(value_type = u32, minimum = 1, maximum = 10000, example = 2)]
    pub quantity: Quantity,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// A payment-gateway token, e.g. `tok_ok`.
    #[schema(example = "tok_ok")]
    pub token: String,
}

/// Body of `POST /v1/orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    pub items: Vec<ItemRequest>,
    /// ISO-4217 code; every product must be priced in it.
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
    pub payment: Option<PaymentRequest>,
}

/// Body of `POST /v1/orders/{id}/pay`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayOrderRequest {
    pub payment: PaymentRequest,
}

/// A line of a refund: units of one SKU of the order, and whether they
/// come back on the shelf (a return).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundLineRequest {
    #[schema(value_type = String, example = "MUG-RED")]
    pub sku: Sku,
    #[schema(value_type = u32, minimum = 1, maximum = 10000, example = 1)]
    pub quantity: Quantity,
    /// The units come back on hand (default false).
    #[serde(default)]
    pub restock: bool,
}

/// Body of `POST /v1/orders/{id}/refund` (optional: no body refunds all
/// that is left).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundOrderRequest {
    /// Decimal string at the currency's scale; absent: all that is left.
    #[serde(
        default,
        deserialize_with = "crate::extract::decimal_str::option::deserialize"
    )]
    #[schema(value_type = Option<String>, example = "5.00")]
    pub amount: Option<rust_decimal::Decimal>,
    #[serde(default)]
    pub lines: Vec<RefundLineRequest>,
    /// At most 500 characters.
    pub reason: Option<String>,
}

/// Body of `PATCH /v1/orders/{id}`: the new set of lines.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrderRequest {
    pub items: Vec<ItemRequest>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this customer's orders (an admin's look-up; a customer's list
    /// holds only their own, so another id gives an empty page).
    pub customer: Option<Uuid>,
    /// Only orders in this status.
    pub status: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    pub items: Vec<StoredEvent>,
}

fn lines(items: Vec<ItemRequest>) -> Vec<RequestedLine> {
    items
        .into_iter()
        .map(|i| RequestedLine {
            sku: i.sku,
            quantity: i.quantity,
        })
        .collect()
}

fn order_response(status: StatusCode, order: OrderView) -> Response {
    let mut response = (status, axum::Json(&order)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(order.version));
    response
}

/// Place an order.
///
/// Prices come from the product catalog, never from the client. With an
/// `Idempotency-Key`, a repeat of the same request returns the order the
/// first one placed (with `Idempotent-Replayed: true`), never a second one.
#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 25): answer once the saga confirmed or ended the order, or after N seconds")),
    responses(
        (status = 201, body = OrderView, description = "Placed"),
        (status = 400, description = "Malformed JSON or header"),
        (status = 401, description = "No valid bearer token"),
        (status = 409, description = "`out-of-stock` (the shortages listed), or `unpaid-limit`: too many unpaid orders held"),
        (status = 422, description = "Invalid order: unknown SKU, bad quantity, unsupported currency, a SKU twice, a product priced in another currency, a plugin's objection"),
    ),
    security(("bearer" = [])))]
pub async fn create_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request = PlaceOrderRequest {
        currency: body.currency,
        items: lines(body.items),
        payment_token: body.payment.map(|p| p.token),
    };
    let wait = prefer_wait(&headers, state.request_timeout);
    let placed = state.app.orders().place_order(caller, request, key).await?;
    placed_answer(&state, caller, placed, wait, StatusCode::CREATED).await
}

/// Longest `Prefer: wait=N` honoured: well within the request timeout,
/// so a caller waiting for a slow saga gets the order it placed, never a
/// 408 for an order that exists.
/// The longest `Prefer: wait` under a request deadline: five sixths of
/// it (25 s of the default 30 s), so the answer leaves before the 408.
pub(crate) fn max_prefer_wait(request_timeout: std::time::Duration) -> std::time::Duration {
    request_timeout * 5 / 6
}

/// `Prefer: wait=N` (RFC 7240): how long the caller will wait for the
/// saga's outcome. A wait above the maximum is capped. As RFC 7240 asks,
/// preferences the server does not know or cannot follow (other tokens,
/// a wait that is not a number of seconds) are ignored: the answer's
/// `Preference-Applied` header says when a wait was honoured.
pub(crate) fn prefer_wait(
    headers: &HeaderMap,
    request_timeout: std::time::Duration,
) -> Option<std::time::Duration> {
    let value = headers.get("prefer")?.to_str().ok()?;
    value.split([',', ';']).find_map(|preference| {
        let secs: u64 = preference
            .trim()
            .strip_prefix("wait=")?
            .trim()
            .parse()
            .ok()?;
        Some(std::time::Duration::from_secs(secs).min(max_prefer_wait(request_timeout)))
    })
}

/// The answer to a placement (an order or a cart checkout: 201) or a
/// payment (200): with `Prefer: wait`, once the saga settled the order or
/// the wait ran out.
pub(crate) async fn placed_answer(
    state: &AppState,
    caller: Caller,
    mut placed: Placed,
    wait: Option<std::time::Duration>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    if let Some(wait) = wait {
        let settlement = placed.settlement.take();
        placed.order = state
            .app
            .outcomes()
            .await_outcome(caller, placed.order, settlement, wait)
            .await?;
    }
    let mut response = placed_response(placed, status);
    if let Some(wait) = wait {
        let applied = format!("wait={}", wait.as_secs());
        response.headers_mut().insert(
            "preference-applied",
            applied.parse().expect("digits are a valid header"),
        );
    }
    Ok(response)
}

/// `status` (201 for a placement) with the order, its Location and ETag,
/// and `Idempotent-Replayed` when an earlier request placed (or paid) it.
fn placed_response(placed: Placed, status: StatusCode) -> Response {
    let location = format!("/v1/orders/{}", placed.order.id);
    let replayed = placed.replayed;
    let mut response = order_response(status, placed.order);
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        location.parse().expect("uuid path is a valid header"),
    );
    if replayed {
        h.insert(
            "idempotent-replayed",
            "true".parse().expect("static header"),
        );
    }
    response
}

/// Read an order (a customer's own; any for an admin).
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderView), (status = 404, description = "No such order for this caller")),
    security(("bearer" = [])))]
pub async fn get_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let order = state.app.orders().get_order(caller, id).await?;
    Ok(order_response(StatusCode::OK, order))
}

/// List orders, newest first, with cursor pagination.
#[utoipa::path(get, path = "/v1/orders", tag = "orders",
    params(ListParams),
    responses((status = 200, body = OrderPage), (status = 400, description = "Bad status or cursor")),
    security(("bearer" = [])))]
pub async fn list_orders(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::parse(s).ok_or_else(|| {
                let known: Vec<_> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(format!("unknown status {s:?}; one of {}", known.join(", ")))
            })
        })
        .transpose()?;
    let page = state
        .app
        .orders()
        .list_orders(
            caller,
            ListOrders {
                customer: params.customer,
                status,
                limit: params.limit,
                cursor: params.cursor,
            },
        )
        .await?;
    Ok(axum::Json(page))
}

/// Change the lines of an open order. `If-Match` must carry the version
/// the change was based on: a stale one is 412.
#[utoipa::path(patch, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The order version, e.g. \"1\"")),
    request_body = UpdateOrderRequest,
    responses(
        (status = 200, body = OrderView),
        (status = 409, description = "The order is no longer open, or `out-of-stock` for the new lines"),
        (status = 412, description = "Stale version"),
        (status = 428, description = "If-Match missing"),
    ),
    security(("bearer" = [])))]
pub async fn update_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateOrderRequest>,
) -> Result<Response, ApiError> {
    let version = parse_if_match(&headers)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "PATCH needs If-Match with the order version (the ETag of GET)",
        )
    })?;
    let order = state
        .app
        .orders()
        .change_order_items(caller, id, version, lines(body.items))
        .await?;
    Ok(order_response(StatusCode::OK, order))
}

/// Pay an order placed without payment.
///
/// Starts the order's payment (its fulfilment saga) with the token. The
/// order must be `reserved` and its hold alive; paying an order whose
/// payment already started answers with it again
/// (`Idempotent-Replayed: true`).
#[utoipa::path(post, path = "/v1/orders/{id}/pay", tag = "orders",
    request_body = PayOrderRequest,
    params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 25): answer once the saga confirmed or ended the order, or after N seconds")),
    responses(
        (status = 200, body = OrderView, description = "Payment started (or already started)"),
        (status = 404, description = "No such order for this caller"),
        (status = 409, description = "`illegal-transition`: not reserved (cancelled, expired, paid); `conflict`: the hold expired"),
        (status = 422, description = "`invalid-request`: bad token; `idempotency-key-reused`"),
        (status = 503, description = "No payment gateway configured"),
    ),
    security(("bearer" = [])))]
pub async fn pay_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PayOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let wait = prefer_wait(&headers, state.request_timeout);
    let placed = state
        .app
        .orders()
        .pay_order(caller, id, body.payment.token, key)
        .await?;
    placed_answer(&state, caller, placed, wait, StatusCode::OK).await
}

/// How long a refund (or a cancel that refunds) waits for the gateway
/// when the request does not say (`Prefer: wait=N`).
const DEFAULT_REFUND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Cancel an order (before it ships). `If-Match` is optional. A confirmed
/// order's units go back on the shelf and its payment is refunded (the
/// answer waits for the refund up to `Prefer: wait`, default 10 s).
#[utoipa::path(delete, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "Cancel only if the order is still at this version, e.g. \"1\""),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: how long to wait for the refund of a confirmed order")),
    responses((status = 200, body = OrderView), (status = 409, description = "Too late to cancel, or a refund of the order is in progress"),
        (status = 412, description = "Stale version (If-Match)")),
    security(("bearer" = [])))]
pub async fn cancel_order(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_match = parse_if_match(&headers)?;
    let reason = if caller.is_admin() {
        "cancelled by an administrator"
    } else {
        "cancelled by the customer"
    };
    let wait = prefer_wait(&headers, state.request_timeout)
        .unwrap_or(DEFAULT_REFUND_WAIT)
        .min(max_prefer_wait(state.request_timeout));
    let order = state
        .app
        .orders()
        .cancel_order(caller, id, if_match, Some(reason.to_owned()), wait)
        .await?;
    Ok(order_response(StatusCode::OK, order))
}

/// An order's history: its events, oldest first.
#[utoipa::path(get, path = "/v1/orders/{id}/events", tag = "orders",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EventList)),
    security(("bearer" = [])))]
pub async fn order_events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<EventList>, ApiError> {
    let items = state.app.orders().order_events(caller, id).await?;
    Ok(axum::Json(EventList { items }))
}

async fn admin_transition(
    state: AppState,
    caller: commerce_app::Caller,
    id: Uuid,
    transition: AdminTransition,
) -> Result<Response, ApiError> {
    let order = state
        .app
        .orders()
        .transition_order(caller, id, transition)
        .await?;
    Ok(order_response(StatusCode::OK, order))
}

/// Mark a confirmed order shipped (admin).
#[utoipa::path(post, path = "/v1/orders/{id}/ship", tag = "orders",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderView), (status = 409, description = "Not confirmed")),
    security(("bearer" = [])))]
pub async fn ship_order(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    admin_transition(state, caller, id, AdminTransition::Ship).await
}

/// Mark a shipped order delivered (admin).
#[utoipa::path(post, path = "/v1/orders/{id}/deliver", tag = "orders",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderView), (status = 409, description = "Not shipped")),
    security(("bearer" = [])))]
pub async fn deliver_order(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    admin_transition(state, caller, id, AdminTransition::Deliver).await
}

/// Refund an order, in full or in part, taking units back (admin).
///
/// The refund is recorded on the order first (`OrderRefundRequested`),
/// then asked of the gateway by a refund saga with its own idempotency
/// key; its outcome is `OrderRefunded` (with the units restocked) or, if
/// an operator gives it up, `OrderRefundFailed`. Without a body, all that
/// is left is refunded. One refund runs at a time; together they never
/// pass what was captured. A full refund of an order that has not shipped
/// puts every unit back; otherwise only lines marked `restock` come back.
#[utoipa::path(post, path = "/v1/orders/{id}/refund", tag = "orders",
    request_body(content = Option<RefundOrderRequest>, description = "Optional"),
    params(("id" = Uuid, Path),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: how long to wait for the gateway (default 10 s)")),
    responses(
        (status = 200, body = OrderView, description = "Refunded (the view shows `refunded`)"),
        (status = 202, body = OrderView, description = "Recorded; the gateway has not answered yet"),
        (status = 409, description = "`illegal-transition`: never paid; `conflict`: a refund is in progress; `refund-failed`: the gateway would not refund (the saga needs an operator)"),
        (status = 422, description = "`refund-too-large`, `invalid-order` (lines not on the order, too many units), `invalid-body`"),
    ),
    security(("bearer" = [])))]
pub async fn refund_order(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<RefundOrderRequest>,
) -> Result<Response, ApiError> {
    let request = RefundRequest {
        amount: body.amount,
        lines: body
            .lines
            .into_iter()
            .map(|l| RefundLine {
                sku: l.sku,
                quantity: l.quantity,
                restock: l.restock,
            })
            .collect(),
        reason: body.reason,
    };
    let wait = prefer_wait(&headers, state.request_timeout)
        .unwrap_or(DEFAULT_REFUND_WAIT)
        .min(max_prefer_wait(state.request_timeout));
    let outcome = state
        .app
        .orders()
        .refund_order(caller, id, request, wait)
        .await?;
    Ok(match outcome {
        RefundOutcome::Done(order) => order_response(StatusCode::OK, order),
        RefundOutcome::Pending(order) => order_response(StatusCode::ACCEPTED, order),
        RefundOutcome::NeedsAttention {
            saga_id, reason, ..
        } => ApiError::new(
            StatusCode::CONFLICT,
            "refund-failed",
            format!(
                "the refund was not made ({reason}); its saga needs an operator (retry or abort it)"
            ),
        )
        .with("saga_id", saga_id.to_string())
        .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(value: &str) -> Option<std::time::Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", value.parse().unwrap());
        prefer_wait(&headers, crate::REQUEST_TIMEOUT)
    }

    #[test]
    fn prefer_wait_is_read_and_capped_below_the_request_timeout() {
        use std::time::Duration;
        assert_eq!(prefer_wait(&HeaderMap::new(), crate::REQUEST_TIMEOUT), None);
        assert_eq!(prefer("wait=10"), Some(Duration::from_secs(10)));
        assert_eq!(
            prefer("respond-async, wait=5"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(prefer("wait=3600"), Some(Duration::from_secs(25)));
        assert!(prefer("wait=30").unwrap() < crate::REQUEST_TIMEOUT);
        assert_eq!(prefer("return=minimal"), None);
        // RFC 7240: a preference the server cannot follow is ignored.
        assert_eq!(prefer("wait=soon"), None);
        assert_eq!(prefer("wait=soon, wait=3"), Some(Duration::from_secs(3)));
    }
}
