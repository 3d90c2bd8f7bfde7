//! `GET /v1/events`: the ordered event feed, for admins and for consumers
//! that cannot read the Redis Stream. The same events, in the same order,
//! with the same cursors as the stream's entries.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Auth};
use commerce_app::feed::FeedPage;
use commerce_app::ports::StoredEvent;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", get(list_events))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// Start after this cursor (the `next` of the previous page); from
    /// the beginning when absent.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// An event and its place in the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedItem {
    /// Opaque; pass it as `after` to read on from this event.
    #[schema(example = "0-42")]
    pub cursor: String,
    #[serde(flatten)]
    pub event: StoredEvent,
}

/// A page of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Feed {
    pub items: Vec<FeedItem>,
    /// Where the next page starts: the last item's cursor, or `after` when
    /// the page is empty. Poll with it to follow the feed.
    #[schema(example = "0-42")]
    pub next: String,
}

impl From<FeedPage> for Feed {
    fn from(page: FeedPage) -> Self {
        Feed {
            items: page
                .items
                .into_iter()
                .map(|e| FeedItem {
                    cursor: e.cursor.to_string(),
                    event: e.event,
                })
                .collect(),
            next: page.next.to_string(),
        }
    }
}

/// The event feed (admin).
///
/// Every stored event, each exactly once, in an order that never changes
/// behind a reader: an event that commits late is served after the cursor
/// a reader holds, never skipped. Event ids let consumers deduplicate.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(FeedParams),
    responses(
        (status = 200, body = Feed, description = "A page of the feed"),
        (status = 400, description = "Malformed cursor or limit"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Not an admin"),
        (status = 422, description = "Limit out of range"),
    ),
    security(("bearer" = [])))]
pub async fn list_events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(params): ApiQuery<FeedParams>,
) -> Result<axum::Json<Feed>, ApiError> {
    let page = state
        .app
        .orders()
        .read_feed(caller, params.after.as_deref(), params.limit)
        .await?;
    Ok(axum::Json(page.into()))
}
