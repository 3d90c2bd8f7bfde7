//! The outbox relay: publishes the event feed, in order, to an
//! [`EventPublisher`] (the Redis Stream `commerce.events`).
//!
//! The `events` table is the outbox: an event is stored in the transaction
//! that changes its order, so nothing is published that did not happen and
//! nothing that happened is lost. The relay reads the feed after its
//! cursor, publishes a page, then stores the cursor of the page's last
//! event (`outbox_relay`).
//!
//! Exactly once on the stream, not just at least once: every entry carries
//! its feed cursor, and the publisher appends only events after the
//! stream's newest entry. A relay that crashed between publishing and
//! saving its cursor, or a replica that lost its lease in the middle of a
//! page, re-sends events the stream already holds, and they are dropped.
//! When it takes the lease the relay also starts from the later of the
//! stored cursor and the stream's, so it does not even re-send them.
//!
//! One publisher among replicas: the relay holds a lease on its row,
//! renews it while it runs, and publishes only while it holds it; a
//! replica that died is replaced once its lease runs out. Failures (the
//! database, Redis) are logged and retried with backoff: the relay never
//! stops and never takes the process down.
//!
//! It must not decide anything about events: it moves them as stored.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::Store;
use super::ports::{EventPublisher, FeedCursor, FeedEvent, StoreError};

/// Events published, counted once each (repeats dropped by the stream
/// are not counted).
pub const PUBLISHED: &str = "commerce_outbox_published_total";
/// Age of the oldest event not yet published; 0 when caught up.
pub const LAG: &str = "commerce_outbox_lag_seconds";

/// The name of the relay's row in `outbox_relay`.
pub const RELAY_NAME: &str = "commerce.events";

/// Longest pause after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Its row in `outbox_relay`: relays of different names run side by side.
    pub name: String,
    /// Who this process is, unique among replicas (and restarts).
    pub owner: String,
    /// Pause between polls when caught up; a full page is followed at once.
    pub poll: Duration,
    /// How long the lease lasts unless renewed: after a crash, another
    /// replica takes over within this.
    pub lease: Duration,
    /// Events per page.
    pub page: u32,
    /// Entries the stream keeps: each append trims the oldest beyond
    /// this. A consumer that falls further behind catches up from `GET
    /// /v1/events`, after the `cursor` of the last entry it handled.
    pub stream_max_len: u64,
}

/// [`RelaySettings::stream_max_len`] unless configured: about a day of
/// events at ten orders a second.
pub const DEFAULT_STREAM_MAX_LEN: u64 = 1_000_000;

impl RelaySettings {
    pub fn new(poll: Duration, lease: Duration) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "commerce".into());
        RelaySettings {
            name: RELAY_NAME.into(),
            owner: format!("{host}/{}", uuid::Uuid::new_v4()),
            poll: poll.max(Duration::from_millis(1)),
            lease: lease.max(Duration::from_millis(100)),
            page: 500,
            stream_max_len: DEFAULT_STREAM_MAX_LEN,
        }
    }
}

/// The lease as this process holds it.
struct Held {
    /// The last event published.
    cursor: FeedCursor,
    /// When to renew (a third into the lease).
    renew_at: Instant,
    /// When the lease runs out if not renewed.
    expires_at: Instant,
}

/// The relay; [`OutboxRelay::run`] drives it.
pub struct OutboxRelay {
    store: Arc<dyn Store>,
    publisher: Arc<dyn EventPublisher>,
    settings: RelaySettings,
    held: Option<Held>,
}

impl OutboxRelay {
    pub fn new(
        store: Arc<dyn Store>,
        publisher: Arc<dyn EventPublisher>,
        settings: RelaySettings,
    ) -> Self {
        OutboxRelay {
            store,
            publisher,
            settings,
            held: None,
        }
    }

    /// Publishes for ever: polls, publishes what is new, retries failures
    /// with exponential backoff.
    pub async fn run(mut self) {
        tracing::info!(owner = %self.settings.owner, poll = ?self.settings.poll, "outbox relay started");
        let mut failures = 0u32;
        loop {
            let pause = match self.round().await {
                Ok(pause) => {
                    failures = 0;
                    pause
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = self
                        .settings
                        .poll
                        .saturating_mul(1 << failures.min(10))
                        .min(MAX_BACKOFF);
                    tracing::warn!(error = ?error, retry_in = ?pause, failures, "outbox relay: publishing failed; retrying");
                    Some(pause)
                }
            };
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// One round: make sure of the lease, publish one page. Returns how
    /// long to wait before the next (`None`: at once, more is waiting).
    pub async fn round(&mut self) -> Result<Option<Duration>, StoreError> {
        let Some(cursor) = self.lease().await? else {
            // Someone else publishes; look again well before its lease
            // could run out.
            return Ok(Some((self.settings.lease / 4).max(self.settings.poll)));
        };
        let page: Vec<FeedEvent> = self
            .store
            .read_feed(cursor, self.settings.page)
            .await?
            .into_iter()
            .map(FeedEvent::redacted)
            .collect();
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            metrics::gauge!(LAG).set(0.0);
            return Ok(Some(self.settings.poll));
        };
        let age = (Utc::now() - first.event.recorded_at)
            .num_milliseconds()
            .max(0);
        metrics::gauge!(LAG).set(age as f64 / 1000.0);
        let appended = self.publisher.publish(&page).await?;
        metrics::counter!(PUBLISHED).increment(appended as u64);
        let cursor = last.cursor;
        let name = &self.settings.name;
        if !self
            .store
            .save_relay_cursor(name, &self.settings.owner, cursor)
            .await?
        {
            self.lost("another replica took the lease over");
            return Ok(Some(self.settings.poll));
        }
        if let Some(held) = &mut self.held {
            held.cursor = cursor;
        }
        tracing::debug!(events = page.len(), appended, %cursor, "outbox relay published a page");
        let full = page.len() as u32 >= self.settings.page;
        Ok((!full).then_some(self.settings.poll))
    }

    /// Takes or renews the lease when due; the cursor to publish after if
    /// this process holds it, `None` if another does.
    async fn lease(&mut self) -> Result<Option<FeedCursor>, StoreError> {
        let now = Instant::now();
        if let Some(held) = &self.held {
            if now < held.renew_at {
                return Ok(Some(held.cursor));
            }
            if now >= held.expires_at {
                self.lost("the lease ran out before it could be renewed");
            }
        }
        let lease = self.settings.lease;
        let stored = self
            .store
            .acquire_relay_lease(&self.settings.name, &self.settings.owner, lease)
            .await?;
        let Some(stored) = stored else {
            if self.held.is_some() {
                self.lost("another replica holds the lease");
            }
            return Ok(None);
        };
        let cursor = match &self.held {
            Some(held) => held.cursor,
            None => {
                // Taking over: the stream may be ahead of the stored
                // cursor (a crash between publishing and saving).
                let on_stream = self.publisher.last_published().await?.unwrap_or_default();
                let cursor = stored.max(on_stream);
                tracing::info!(owner = %self.settings.owner, %cursor, %stored, %on_stream, "outbox relay took the lease");
                cursor
            }
        };
        self.held = Some(Held {
            cursor,
            renew_at: now + lease / 3,
            expires_at: now + lease,
        });
        Ok(Some(cursor))
    }

    fn lost(&mut self, why: &str) {
        if self.held.take().is_some() {
            tracing::warn!(owner = %self.settings.owner, why, "outbox relay lost the lease; publishing stops here");
            metrics::gauge!(LAG).set(0.0);
        }
    }
}
