//! The event feed (`GET /v1/events`): every stored event, in an order that
//! never changes behind a reader, paged by an opaque cursor.
//!
//! The order is the store's feed order ([`EventStore::read_feed`]), not
//! plain `position`: on PostgreSQL positions commit out of order, and a
//! reader that resumes after the last position it saw would skip an event
//! that committed late. The cursor is the place of the last event read;
//! a reader keeps `next` and asks again, and sees every event once.
//!
//! [`EventStore::read_feed`]: super::ports::EventStore::read_feed

use super::ports::{FeedCursor, FeedEvent};
use super::{AppError, Caller, Orders};

/// Events per page when the caller does not say.
pub const DEFAULT_FEED_LIMIT: u32 = 100;
/// Most events per page.
pub const MAX_FEED_LIMIT: u32 = 1000;

/// One page of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    pub items: Vec<FeedEvent>,
    /// Where the next page starts: the cursor of the last item, or the
    /// cursor asked for when the page is empty.
    pub next: FeedCursor,
}

impl Orders<'_> {
    /// Up to `limit` events after the cursor `after` (from the start when
    /// absent). Admin only: the feed holds every customer's orders.
    pub async fn read_feed(
        &self,
        caller: Caller,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<FeedPage, AppError> {
        if !caller.is_admin() {
            return Err(AppError::Forbidden);
        }
        let after = match after {
            None | Some("") => FeedCursor::default(),
            Some(text) => FeedCursor::parse(text).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "`after` must be a cursor of this feed (the `next` of a page, e.g. \"0-0\"), not {text:?}"
                ))
            })?,
        };
        let limit = limit.unwrap_or(DEFAULT_FEED_LIMIT);
        if !(1..=MAX_FEED_LIMIT).contains(&limit) {
            return Err(AppError::Invalid(format!(
                "limit must be 1 to {MAX_FEED_LIMIT}"
            )));
        }
        let items = self.store.read_feed(after, limit).await?;
        let next = items.last().map_or(after, |e| e.cursor);
        let items = items.into_iter().map(FeedEvent::redacted).collect();
        Ok(FeedPage { items, next })
    }
}
