//! `/v1/cart`: the caller's cart (the token's subject), and its checkout
//! into an order. There is no cart id in the path: a customer has one
//! cart and can reach no other.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Auth, idempotency_key};
use super::orders::{PaymentRequest, placed_answer, prefer_wait};
use commerce_app::cart::CartView;
use commerce_app::views::OrderView;
use commerce_domain::Sku;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cart", get(get_cart).delete(clear_cart))
        .route(
            "/v1/cart/items/{sku}",
            put(put_cart_item).delete(delete_cart_item),
        )
        .route("/v1/cart/checkout", post(checkout))
}

/// Body of `PUT /v1/cart/items/{sku}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCartItemRequest {
    /// 0 to 10000; 0 removes the line.
    #[schema(minimum = 0, maximum = 10000, example = 2)]
    #[serde(deserialize_with = "commerce_domain::wire::whole_number")]
    pub quantity: i64,
}

/// Body of `POST /v1/cart/checkout`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub payment: Option<PaymentRequest>,
}

fn parse_sku(sku: &str) -> Result<Sku, ApiError> {
    Sku::parse(sku).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The caller's cart, priced now by the catalog and the pricing plugins.
///
/// Lines asking for more than is available are flagged
/// (`insufficient_stock`); validation plugins' objections are listed in
/// `violations` but do not fail the read. Reading renews the cart's TTL.
#[utoipa::path(get, path = "/v1/cart", tag = "cart",
    responses(
        (status = 200, body = CartView),
        (status = 409, description = "The cart comes to more than an order may carry"),
        (status = 503, description = "The cart storage (Redis) is unreachable"),
    ),
    security(("bearer" = [])))]
pub async fn get_cart(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<axum::Json<CartView>, ApiError> {
    Ok(axum::Json(state.app.cart().get_cart(caller).await?))
}

/// Set how many of a SKU the cart holds (0 removes the line).
#[utoipa::path(put, path = "/v1/cart/items/{sku}", tag = "cart",
    params(("sku" = String, Path)),
    request_body = PutCartItemRequest,
    responses(
        (status = 200, body = CartView, description = "The cart after the change"),
        (status = 404, description = "No such product"),
        (status = 422, description = "Quantity out of range, cart full (1,000 lines), or the product is sold in another currency than the cart's"),
        (status = 503, description = "The cart storage (Redis) is unreachable"),
    ),
    security(("bearer" = [])))]
pub async fn put_cart_item(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<PutCartItemRequest>,
) -> Result<axum::Json<CartView>, ApiError> {
    let sku = parse_sku(&sku)?;
    Ok(axum::Json(
        state
            .app
            .cart()
            .set_cart_item(caller, sku, body.quantity)
            .await?,
    ))
}

/// Remove a line from the cart (a line that is not there is no error).
#[utoipa::path(delete, path = "/v1/cart/items/{sku}", tag = "cart",
    params(("sku" = String, Path)),
    responses((status = 200, body = CartView, description = "The cart after the change")),
    security(("bearer" = [])))]
pub async fn delete_cart_item(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(sku): ApiPath<String>,
) -> Result<axum::Json<CartView>, ApiError> {
    let sku = parse_sku(&sku)?;
    Ok(axum::Json(
        state.app.cart().remove_cart_item(caller, sku).await?,
    ))
}

/// Empty the cart.
#[utoipa::path(delete, path = "/v1/cart", tag = "cart",
    responses((status = 204, description = "Emptied")),
    security(("bearer" = [])))]
pub async fn clear_cart(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Response, ApiError> {
    state.app.cart().clear_cart(caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Turn the cart into an order.
///
/// The order is placed exactly as `POST /v1/orders` would place it, and
/// the cart is emptied once it is placed (lines added meanwhile are kept).
/// The same `Idempotency-Key` returns the same order (with
/// `Idempotent-Replayed: true`), even after the cart was emptied; two
/// checkouts of the same cart with different keys place one order.
/// `Prefer: wait=N` waits for the saga's outcome as `POST /v1/orders` does.
#[utoipa::path(post, path = "/v1/cart/checkout", tag = "cart",
    request_body = CheckoutRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 25): answer once the saga confirmed or ended the order, or after N seconds")),
    responses(
        (status = 201, body = OrderView, description = "Placed"),
        (status = 409, description = "`out-of-stock` (the shortages listed), or `unpaid-limit`"),
        (status = 422, description = "Empty cart, or an order that would be refused"),
        (status = 503, description = "The cart storage (Redis) is unreachable"),
    ),
    security(("bearer" = [])))]
pub async fn checkout(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let wait = prefer_wait(&headers, state.request_timeout);
    let placed = state
        .app
        .cart()
        .checkout_cart(caller, key, body.payment.map(|p| p.token))
        .await?;
    placed_answer(&state, caller, placed, wait, StatusCode::CREATED).await
}
