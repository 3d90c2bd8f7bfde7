//! `/v1/plugins` (admin): upload, list, activate (or canary), roll back,
//! remove and dry-run plugins, shadow a version, read the run log. See
//! wit/README.md for the plugin contract.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery, OptionalJson};
use commerce_app::extensions::PluginKind;
use commerce_app::plugins::{InstallPlugin, MAX_RUNS_LISTED, PluginListing, ShadowStatus};
use commerce_app::ports::{PluginLimits, PluginRecord, PluginRun};
use commerce_app::what_if::{MAX_REPLAY_ORDERS, ReplayReport};

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
        .route(
            "/v1/plugins/{name}/shadow",
            post(start_shadow).get(shadow_status).delete(stop_shadow),
        )
        .route("/v1/plugins/{name}/runs", get(plugin_runs))
        .route("/v1/plugins/{name}/runs/{id}", get(plugin_run))
        .route("/v1/plugins/{name}/replay", post(start_replay))
        .route("/v1/plugins/{name}/replays/{id}", get(replay_report))
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
    /// Serve the version to this percent of customers only (a canary,
    /// 1-99, chosen by a stable hash of the customer's id; the others keep
    /// the active version); 100 or absent: activate it for everyone,
    /// which also promotes a canary. `version` is required with a percent
    /// below 100.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub percent: Option<u8>,
}

/// Activate a version, or start a canary of it; every replica follows
/// within a second.
#[utoipa::path(post, path = "/v1/plugins/{name}/activate", tag = "plugins",
    params(("name" = String, Path)), request_body(content = Option<ActivateRequest>),
    responses((status = 200, body = PluginRecord), (status = 404, description = "No such version"),
        (status = 409, description = "A canary needs an active version, and another version than it"),
        (status = 422, description = "Percent out of range")),
    security(("bearer" = [])))]
pub async fn activate_plugin(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    OptionalJson(request): OptionalJson<ActivateRequest>,
) -> Result<axum::Json<PluginRecord>, ApiError> {
    let registry = state.app.registry();
    let record = match request.percent {
        None | Some(100) => {
            registry
                .activate_plugin(caller, &name, request.version)
                .await?
        }
        Some(percent) => {
            let version = request.version.ok_or_else(|| {
                ApiError::from(commerce_app::AppError::Invalid(
                    "a canary names its version".into(),
                ))
            })?;
            registry
                .start_canary(caller, &name, version, percent)
                .await?
        }
    };
    Ok(axum::Json(record))
}

/// Re-activate the version that was active before the current one; while a
/// canary runs, end the canary instead.
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// The version to run beside the active one.
    #[serde(deserialize_with = "commerce_domain::wire::whole_number")]
    pub version: i64,
    /// Share of the plugin's live calls also run on it, above 0 and at
    /// most 1.
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub sample: f64,
}

/// Shadow a version: run it beside the active one on a sample of live
/// calls, off the request's path, and compare the answers (never used).
/// Replaces any shadow the plugin had; every replica follows within a
/// second.
#[utoipa::path(post, path = "/v1/plugins/{name}/shadow", tag = "plugins",
    params(("name" = String, Path)), request_body = ShadowRequest,
    responses((status = 200, body = ShadowStatus), (status = 404, description = "No such plugin or version"),
        (status = 409, description = "No active version, or the version is the active one"),
        (status = 422, description = "Sample out of range")),
    security(("bearer" = [])))]
pub async fn start_shadow(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<ShadowRequest>,
) -> Result<axum::Json<ShadowStatus>, ApiError> {
    Ok(axum::Json(
        state
            .app
            .registry()
            .start_shadow(caller, &name, request.version, request.sample)
            .await?,
    ))
}

/// A plugin's shadow: the version, its sample, and what this replica
/// found (calls, agreed, differed, failed, dropped, the latest differing
/// calls with both answers).
#[utoipa::path(get, path = "/v1/plugins/{name}/shadow", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = ShadowStatus), (status = 404, description = "No such plugin")),
    security(("bearer" = [])))]
pub async fn shadow_status(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<ShadowStatus>, ApiError> {
    Ok(axum::Json(
        state.app.registry().shadow_status(caller, &name).await?,
    ))
}

/// Stop a plugin's shadow.
#[utoipa::path(delete, path = "/v1/plugins/{name}/shadow", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, description = "No such plugin")),
    security(("bearer" = [])))]
pub async fn stop_shadow(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.app.registry().stop_shadow(caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// `failed` (every failure), one failure kind (`trap`, `fuel`,
    /// `deadline`, `memory`, `stack`, `input`, `output`, `invalid`,
    /// `error`, `unavailable`) or `ok`; default: all.
    pub outcome: Option<String>,
    /// Runs listed, newest first (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The run log of a plugin: failed calls always, a sample of successful
/// ones (`--plugin-run-sample`), newest first, each with its input, output
/// or error, fuel, time and log. `commerce plugin run FILE.wasm
/// --input-run ID` re-runs one locally.
#[utoipa::path(get, path = "/v1/plugins/{name}/runs", tag = "plugins",
    params(("name" = String, Path), RunsParams),
    responses((status = 200, body = Vec<PluginRun>), (status = 422, description = "Bad outcome or limit")),
    security(("bearer" = [])))]
pub async fn plugin_runs(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<RunsParams>,
) -> Result<axum::Json<Vec<PluginRun>>, ApiError> {
    let limit = params.limit.unwrap_or(50.min(MAX_RUNS_LISTED));
    Ok(axum::Json(
        state
            .app
            .registry()
            .plugin_runs(caller, &name, params.outcome.as_deref(), limit)
            .await?,
    ))
}

/// One captured call.
#[utoipa::path(get, path = "/v1/plugins/{name}/runs/{id}", tag = "plugins",
    params(("name" = String, Path), ("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PluginRun), (status = 404, description = "No such run")),
    security(("bearer" = [])))]
pub async fn plugin_run(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath((name, id)): ApiPath<(String, uuid::Uuid)>,
) -> Result<axum::Json<PluginRun>, ApiError> {
    Ok(axum::Json(
        state.app.registry().plugin_run(caller, &name, id).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The version to replay (pricing or validation).
    #[serde(deserialize_with = "commerce_domain::wire::whole_number")]
    pub version: i64,
    /// Replay orders placed from this instant on (RFC 3339); default: the
    /// oldest order.
    #[serde(default)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Most orders read, oldest first (default 1,000).
    #[serde(
        default,
        deserialize_with = "commerce_domain::wire::optional_whole_number"
    )]
    pub limit: Option<i64>,
}

/// Replay a version on recorded orders (what-if): re-price or re-validate
/// each order from what its events hold, and compare with what it
/// records. Runs in the background on this replica; the answer (202) is
/// the report as it starts, and `Location` where to follow it.
#[utoipa::path(post, path = "/v1/plugins/{name}/replay", tag = "plugins",
    params(("name" = String, Path)), request_body = ReplayRequest,
    responses((status = 202, body = ReplayReport,
            headers(("Location" = String, description = "The report: GET it until its state is not running"))),
        (status = 404, description = "No such plugin version"),
        (status = 422, description = "A saga hook, or a limit out of range")),
    security(("bearer" = [])))]
pub async fn start_replay(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<ReplayRequest>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let limit = request
        .limit
        .map(|l| {
            u32::try_from(l).map_err(|_| {
                commerce_app::AppError::Invalid(format!(
                    "limit is {l}; a replay reads 1 to {MAX_REPLAY_ORDERS} orders"
                ))
            })
        })
        .transpose()?;
    let report = state
        .app
        .registry()
        .start_replay(caller, &name, request.version, request.since, limit)
        .await?;
    let location = format!("/v1/plugins/{name}/replays/{}", report.id);
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        axum::Json(report),
    ))
}

/// A replay's report: its state, the counts (same, differed, totals
/// changed, failed) and the differing orders with the recorded and the new
/// answer. Reports live on the replica that ran them.
#[utoipa::path(get, path = "/v1/plugins/{name}/replays/{id}", tag = "plugins",
    params(("name" = String, Path), ("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ReplayReport), (status = 404, description = "No such replay on this replica")),
    security(("bearer" = [])))]
pub async fn replay_report(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath((name, id)): ApiPath<(String, uuid::Uuid)>,
) -> Result<axum::Json<ReplayReport>, ApiError> {
    Ok(axum::Json(
        state.app.registry().replay_report(caller, &name, id)?,
    ))
}
