//! The product catalog: prices that orders are priced from, and stock.
//!
//! `stock` sets `on_hand`; `reserved` moves with orders (see
//! `app::inventory`) and a product's stock is never set below it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::ports::{Product, ProductUpsert};
use super::{AppError, Caller, Inventory, now};
use commerce_domain::{Currency, OrderLine, Quantity, Sku};

/// Longest product name.
pub const MAX_NAME_LEN: usize = 200;
/// Most units of stock one SKU may hold.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// Why a requested line cannot be priced from the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpriceable {
    /// No product has this SKU.
    UnknownSku,
    /// The product is sold in another currency than the order's.
    CurrencyMismatch { product_currency: Currency },
}

/// Prices `quantity` of `sku` from its catalog entry, in `currency`: the
/// one rule orders and carts share (a cart shows what its checkout would
/// order).
pub fn price_line(
    product: Option<&Product>,
    sku: &Sku,
    quantity: Quantity,
    currency: Currency,
) -> Result<OrderLine, Unpriceable> {
    let product = product.ok_or(Unpriceable::UnknownSku)?;
    if product.currency != currency {
        return Err(Unpriceable::CurrencyMismatch {
            product_currency: product.currency,
        });
    }
    Ok(OrderLine {
        sku: sku.clone(),
        name: product.name.clone(),
        quantity,
        unit_price: product.unit_price,
    })
}

/// `PUT /v1/products/{sku}`, parsed.
#[derive(Debug, Clone)]
pub struct PutProduct {
    pub name: String,
    pub unit_price: Decimal,
    pub currency: Currency,
    pub stock: i64,
}

/// A product as read: price and availability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProductView {
    pub sku: String,
    pub name: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "12.50")]
    pub unit_price: Decimal,
    #[schema(example = "EUR")]
    pub currency: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        ProductView {
            sku: p.sku.to_string(),
            name: p.name,
            unit_price: p.unit_price,
            currency: p.currency.to_string(),
            on_hand: p.on_hand,
            reserved: p.reserved,
            available: p.on_hand - p.reserved,
            version: p.version,
            updated_at: p.updated_at,
        }
    }
}

impl Inventory<'_> {
    /// Creates or replaces a product (admin).
    pub async fn put_product(
        &self,
        caller: Caller,
        sku: Sku,
        put: PutProduct,
    ) -> Result<ProductView, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let name = put.name.trim();
        if name.is_empty() || put.name.chars().count() > MAX_NAME_LEN {
            return Err(AppError::Invalid(format!(
                "name must be 1 to {MAX_NAME_LEN} characters"
            )));
        }
        if !(0..=MAX_STOCK).contains(&put.stock) {
            return Err(AppError::Invalid(format!(
                "stock must be between 0 and {MAX_STOCK}"
            )));
        }
        let unit_price = put.currency.amount(put.unit_price)?;
        let product = self
            .store
            .upsert_product(ProductUpsert {
                sku: sku.clone(),
                name: name.to_owned(),
                unit_price,
                currency: put.currency,
                on_hand: put.stock,
                at: now(),
            })
            .await?
            .ok_or_else(|| {
                AppError::Conflict(format!(
                    "stock of {sku} cannot go below the units reserved for orders"
                ))
            })?;
        tracing::info!(%sku, price = %product.unit_price, currency = %product.currency, on_hand = product.on_hand, "product saved");
        self.stock_changed(std::slice::from_ref(&sku)).await;
        Ok(product.into())
    }

    /// A product's price and availability (any authenticated caller),
    /// through the stock cache when there is one.
    pub async fn get_product(&self, _caller: Caller, sku: &Sku) -> Result<ProductView, AppError> {
        self.read_product(sku)
            .await?
            .map(ProductView::from)
            .ok_or(AppError::NotFound("product"))
    }
}
