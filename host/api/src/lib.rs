//! The HTTP interface: routes, auth extractors, problem+json errors and
//! the OpenAPI document.
//!
//! Each resource module exposes `router()` (and [`console`] the operations
//! console's static page, a client of these routes); [`router`] merges them and adds
//! the cross-cutting layers (request ids, tracing, body limit, timeout).
//! Handlers are thin: extract, call one `App` use case, map the result.

pub mod auth;
pub mod cart;
pub mod console;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod orders;
pub mod plugins;
pub mod products;
pub mod prometheus;
pub mod sagas;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state, map_response};
use axum::response::Response;
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::auth::JwtKeys;
use commerce_app::App;
use error::ApiError;

/// Largest request body accepted (an order of 1,000 lines with 64-character
/// SKUs is ~90 KiB).
pub const BODY_LIMIT: usize = 256 * 1024;
/// A request that takes longer is answered 408 (the default of
/// `--request-timeout-secs`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline of a plugin upload, which compiles the component.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub keys: Arc<JwtKeys>,
    /// Set when the process received its shutdown signal: `/readyz`
    /// answers 503 from then on, so load balancers stop routing here
    /// before the listener closes.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// A request not done within it is answered 408 (plugin uploads have
    /// [`UPLOAD_TIMEOUT`]); `Prefer: wait` is capped below it.
    pub request_timeout: Duration,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "commerce", description = "Orders, carts, inventory and sagas, extended by WebAssembly plugins. Errors are RFC 9457 problem+json."),
    paths(
        health::healthz, health::readyz,
        orders::create_order, orders::get_order, orders::list_orders, orders::update_order,
        orders::cancel_order, orders::order_events, orders::ship_order, orders::deliver_order,
        orders::refund_order, orders::pay_order,
        products::put_product, products::get_product, products::adjust_stock,
        cart::get_cart, cart::put_cart_item, cart::delete_cart_item, cart::clear_cart,
        cart::checkout,
        plugins::upload_plugin, plugins::list_plugins, plugins::activate_plugin,
        plugins::rollback_plugin, plugins::remove_plugin, plugins::dry_run_plugin,
        plugins::start_shadow, plugins::shadow_status, plugins::stop_shadow,
        plugins::plugin_runs, plugins::plugin_run, plugins::start_replay, plugins::replay_report,
        sagas::list_sagas, sagas::count_sagas, sagas::get_saga, sagas::retry_saga, sagas::abort_saga,
        events::list_events,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi::document())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}

/// HTTP requests by route template, method and status.
pub const HTTP_REQUESTS: &str = "commerce_http_requests_total";
/// Time to answer, by route template and method.
pub const HTTP_DURATION: &str = "commerce_http_request_duration_seconds";

/// Counts and times every request by its route template (`/v1/orders/{id}`,
/// never the raw path, so ids do not blow up the label set).
async fn track_http(req: axum::extract::Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_DURATION, "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// The whole HTTP service.
pub fn router(state: AppState) -> Router {
    crate::prometheus::handle();
    let request_id = HeaderName::from_static("x-request-id");
    let route_limits = limits::RouteLimits {
        body: BODY_LIMIT,
        upload_body: state.app.plugins.max_component_size(),
        timeout: state.request_timeout,
        upload_timeout: UPLOAD_TIMEOUT,
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(orders::router())
        .merge(products::router())
        .merge(cart::router())
        .merge(sagas::router())
        .merge(events::router())
        .merge(plugins::router(route_limits.upload_body))
        .merge(console::router())
        .fallback(not_found)
        .with_state(state)
        .layer(from_fn_with_state(route_limits, limits::refuse_oversized))
        .layer(from_fn(track_http))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(route_limits, limits::deadline))
        .layer(map_response(error::problem_for_bare_errors))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // `order_id` is recorded once known (`app::record_order_id`).
                tracing::info_span!("commerce.http", method = %req.method(), path = %req.uri().path(), request_id = %id, order_id = tracing::field::Empty)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
