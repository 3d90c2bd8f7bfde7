//! `/v1/plugins` (admin): upload, list, activate, roll back, remove and
//! dry-run plugins. See wit/README.md for the plugin contract.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery, OptionalJson};
use commerce_app::extensions::PluginKind;
use commerce_app::plugins::{InstallPlugin, PluginListing};
use commerce_app::ports::{PluginLimits, PluginRecord};

pub fn router(max_component: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/plugins/{name}",
            put(upload_plugin)
                .layer(DefaultBodyLimit::max(max_component))
                .delete(remove_plugin),
        )
        .route("/v1/plugins", axum::routing::get(list_plugins))
        .route("/v1/plugins/{name}/activate", post(activate_plugin))
        .route("/v1/plugins/{name}/rollback", post(rollback_plugin))
        .route("/v1/plugins/{name}/dry-run", post(dry_run_plugin))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// `pricing`, `validation` or `saga-hook`; default: the world the
    /// component exports.
    pub kind: Option<String>,
    /// Lower runs first (default 100); ties are broken by name.
    pub priority: Option<i32>,
    /// JSON configuration handed to the plugin by `host.config()`.
    pub config: Option<String>,
    /// Saga hooks: the steps it is called at, comma-separated, each alone
    /// (before and after) or as `step:before` / `step:after`, e.g.
    /// `authorize-payment:before`; default: before and after every step.
    pub listen: Option<String>,
    /// Linear memory of one call, in bytes: at least 65536, at most the
    /// service's maximum (`--plugin-memory-mib`, the default).
    pub max_memory: Option<u64>,
    /// Largest input of one call of up to 200 lines, in bytes (larger
    /// carts get it in proportion to their lines): at least 1024, at most
    /// the service's maximum (`--plugin-max-input-kib`, the default). An
    /// order or cart over it is refused (422 `plugin-input-too-large`)
    /// before the plugin is called.
    pub max_input: Option<u64>,
    /// Activate the new version at once (default false).
    pub activate: Option<bool>,
}

/// Upload a new version of a plugin (admin).
///
/// The body is the component (`application/wasm`). It is checked before
/// anything is stored: size, compilation, the world of its kind, imports
/// limited to what the host grants, and a smoke call. A refused upload is a
/// 422 naming the reason and changes nothing.
#[utoipa::path(put, path = "/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path), UploadParams),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = PluginRecord), (status = 422, description = "Refused component")),
    security(("bearer" = [])))]
pub async fn upload_plugin(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<UploadParams>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<PluginRecord>), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the body must be the component (.wasm)",
        ));
    }
    let config = params.config.clone().unwrap_or_else(|| "{}".into());
    let listen = params
        .listen
        .as_deref()
        .map(commerce_app::extensions::parse_listen)
        .transpose()
        .map_err(|e| ApiError::from(commerce_app::AppError::Invalid(format!("listen: {e}"))))?;
    let kind = match params.kind.as_deref() {
        Some(k) => PluginKind::parse(k).ok_or_else(|| {
            ApiError::bad_request("kind must be pricing, validation or saga-hook")
        })?,
        None => commerce_plugins::watcher::detect_kind(&state.app, &name, &body, &config)
            .await
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "plugin-rejected",
                    "the component exports none of the plugin worlds, or fails its smoke call; pass kind= to see why",
                )
            })?,
    };
    let record = state
        .app
        .registry()
        .install_plugin(
            caller,
            InstallPlugin {
                name,
                kind,
                bytes: body.to_vec(),
                config: params.config,
                priority: params.priority.unwrap_or(100),
                listen,
                limits: PluginLimits {
                    max_memory: params.max_memory,
                    max_input: params.max_input,
                },
                activate: params.activate.unwrap_or(false),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

/// Every stored plugin version, with call counters for the active ones.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<PluginListing>)), security(("bearer" = [])))]
pub async fn list_plugins(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> Result<axum::Json<Vec<PluginListing>>, ApiError> {
    Ok(axum::Json(state.app.registry().list_plugins(caller).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The version to activate; default: the newest.
    #[serde(
        default,
        deserialize_with = "commerce_domain::wire::optional_whole_number"
    )]
    pub version: Option<i64>,
}

/// Activate a version; every replica follows within a second.
#[utoipa::path(post, path = "/v1/plugins/{name}/activate", tag = "plugins",
    params(("name" = String, Path)), request_body(content = Option<ActivateRequest>),
    responses((status = 200, body = PluginRecord), (status = 404, description = "No such version")),
    security(("bearer" = [])))]
pub async fn activate_plugin(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    OptionalJson(request): OptionalJson<ActivateRequest>,
) -> Result<axum::Json<PluginRecord>, ApiError> {
    Ok(axum::Json(
        state
            .app
            .registry()
            .activate_plugin(caller, &name, request.version)
            .await?,
    ))
}

/// Re-activate the version that was active before the current one.
#[utoipa::path(post, path = "/v1/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = PluginRecord), (status = 409, description = "Nothing to roll back to")),
    security(("bearer" = [])))]
pub async fn rollback_plugin(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<PluginRecord>, ApiError> {
    Ok(axum::Json(
        state.app.registry().rollback_plugin(caller, &name).await?,
    ))
}

/// Delete every version of a plugin.
#[utoipa::path(delete, path = "/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, description = "No such plugin")),
    security(("bearer" = [])))]
pub async fn remove_plugin(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.app.registry().remove_plugin(caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// Default: the active version, else the newest.
    #[serde(
        default,
        deserialize_with = "commerce_domain::wire::optional_whole_number"
    )]
    pub version: Option<i64>,
    /// A cart (pricing), an order (validation) or a step context
    /// (saga-hook), shaped as in wit/README.md.
    #[schema(value_type = Object)]
    pub input: Value,
}

/// Run a version on a posted input, with no side effects.
#[utoipa::path(post, path = "/v1/plugins/{name}/dry-run", tag = "plugins",
    params(("name" = String, Path)), request_body = DryRunRequest,
    responses((status = 200, description = "The plugin's output"), (status = 422, description = "Bad input or failing plugin")),
    security(("bearer" = [])))]
pub async fn dry_run_plugin(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<DryRunRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(
        state
            .app
            .registry()
            .dry_run_plugin(caller, &name, request.version, request.input)
            .await?,
    ))
}
