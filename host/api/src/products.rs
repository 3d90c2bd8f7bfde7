//! `/v1/products/{sku}`: the catalog that orders are priced from.

use axum::Router;
use axum::extract::State;
use axum::routing::{post, put};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath, Auth};
use commerce_app::catalog::{ProductView, PutProduct};
use commerce_app::inventory::AdjustStock;
use commerce_domain::{Currency, Sku};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/products/{sku}", put(put_product).get(get_product))
        .route("/v1/products/{sku}/adjust", post(adjust_stock))
}

/// Body of `PUT /v1/products/{sku}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutProductRequest {
    #[schema(example = "Red mug")]
    pub name: String,
    /// Decimal string at most at the currency's minor unit, e.g. "12.50".
    #[serde(deserialize_with = "crate::extract::decimal_str::deserialize")]
    #[schema(value_type = String, example = "12.50")]
    pub unit_price: Decimal,
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
    /// Units on hand.
    #[schema(example = 100)]
    #[serde(deserialize_with = "commerce_domain::wire::whole_number")]
    pub stock: i64,
}

fn parse_sku(sku: &str) -> Result<Sku, ApiError> {
    Sku::parse(sku).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Create or replace a product (admin).
#[utoipa::path(put, path = "/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path)),
    request_body = PutProductRequest,
    responses(
        (status = 200, body = ProductView),
        (status = 403, description = "Not an admin"),
        (status = 409, description = "The new stock is below the units reserved for orders"),
        (status = 422, description = "Bad price, currency or stock"),
    ),
    security(("bearer" = [])))]
pub async fn put_product(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<PutProductRequest>,
) -> Result<axum::Json<ProductView>, ApiError> {
    let sku = parse_sku(&sku)?;
    let product = state
        .app
        .inventory()
        .put_product(
            caller,
            sku,
            PutProduct {
                name: body.name,
                unit_price: body.unit_price,
                currency: body.currency,
                stock: body.stock,
            },
        )
        .await?;
    Ok(axum::Json(product))
}

/// A product's price and availability.
#[utoipa::path(get, path = "/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path)),
    responses((status = 200, body = ProductView), (status = 404, description = "No such product")),
    security(("bearer" = [])))]
pub async fn get_product(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(sku): ApiPath<String>,
) -> Result<axum::Json<ProductView>, ApiError> {
    let sku = parse_sku(&sku)?;
    Ok(axum::Json(
        state.app.inventory().get_product(caller, &sku).await?,
    ))
}

/// Add or remove stock (admin): `on_hand` moves by `delta`, never below
/// the units reserved for orders. The reason is kept with the change.
#[utoipa::path(post, path = "/v1/products/{sku}/adjust", tag = "products",
    params(("sku" = String, Path)),
    request_body = AdjustStock,
    responses(
        (status = 200, body = ProductView),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such product"),
        (status = 409, description = "On hand would go below what is reserved"),
        (status = 422, description = "Zero delta, stock above the limit, or no reason"),
    ),
    security(("bearer" = [])))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<AdjustStock>,
) -> Result<axum::Json<ProductView>, ApiError> {
    let sku = parse_sku(&sku)?;
    Ok(axum::Json(
        state
            .app
            .inventory()
            .adjust_stock(caller, sku, body)
            .await?,
    ))
}
