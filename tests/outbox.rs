//! The transactional outbox: the event feed (`GET /v1/events`, and
//! `EventStore::read_feed` beneath it) and the relay that publishes it to
//! the Redis Stream `commerce.events`.
//!
//! The trap these tests close: PostgreSQL hands out positions at insert
//! time, so transactions commit out of position order, and a reader that
//! resumes after the last position it saw skips an event that commits
//! late. The feed must hold such an event back until nothing can come
//! before it, and then serve it after the reader's cursor.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_app::outbox::{OutboxRelay, RELAY_NAME, RelaySettings};
use commerce_app::ports::{EventPublisher, FeedCursor};
use commerce_store::redis::stream::RedisEventStream;
use commerce_store::redis::{Redis, RedisConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, TestRedis};
use crate::store_contract::{append, event, feed_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_commits_late_is_held_back_then_served_after_the_cursor() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.open_store().await;
    let url = db.database_url().expect("a PostgreSQL schema");
    let mut raw = sqlx::PgConnection::connect(&url).await.expect("connect");

    // Transaction A takes the lower position and stays open...
    let mut a = raw.begin().await.expect("begin A");
    let a_id = Uuid::now_v7();
    let (a_position,): (i64,) = sqlx::query_as(
        "INSERT INTO events (event_id, aggregate_id, aggregate_type, event_type, \
         schema_version, event_data, version, created_at) \
         VALUES ($1, $2, 'order', 'TestHappened', 1, '{\"n\": 1}', 1, now()) \
         RETURNING position",
    )
    .bind(Uuid::now_v7())
    .bind(a_id)
    .fetch_one(&mut *a)
    .await
    .expect("insert A");

    // ...while B, with a higher position, commits first.
    let b_id = Uuid::now_v7();
    store
        .append(append(b_id, 0, vec![event(2)], Uuid::new_v4()))
        .await
        .expect("append B");
    let b_position = store.load_stream(b_id).await.unwrap()[0].position;
    assert!(b_position > a_position);

    // The trap is real: by position alone, B is there and A is not; a
    // reader that moved its cursor to B's position would never see A.
    let by_position = store.read_after(0, 100).await.unwrap();
    assert_eq!(
        by_position.iter().map(|e| e.position).collect::<Vec<_>>(),
        [b_position]
    );

    // The feed serves nothing past A while A is open: not B.
    let early = store.read_feed(FeedCursor::default(), 100).await.unwrap();
    assert!(
        early.is_empty(),
        "the feed served {early:?} while an older transaction was open"
    );

    // A commits: both come, A first, each once, and nothing after.
    a.commit().await.expect("commit A");
    let feed = feed_until(store.as_ref(), FeedCursor::default(), 2, 100).await;
    assert_eq!(
        feed.iter().map(|e| e.event.position).collect::<Vec<_>>(),
        [a_position, b_position]
    );
    assert_eq!(
        feed.iter()
            .map(|e| e.event.aggregate_id)
            .collect::<Vec<_>>(),
        [a_id, b_id]
    );
    assert!(feed[0].cursor < feed[1].cursor);
    assert!(
        store
            .read_feed(feed[1].cursor, 100)
            .await
            .unwrap()
            .is_empty(),
        "reading on from the last cursor repeats nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_concurrent_writers_sees_every_event_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.open_store().await;
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..EACH {
                let id = Uuid::now_v7();
                store
                    .append(append(id, 0, vec![event(n as u32)], Uuid::new_v4()))
                    .await
                    .expect("append");
            }
        }));
    }
    // Follow the feed while the writers run, a few events at a time.
    let follower = feed_until(store.as_ref(), FeedCursor::default(), WRITERS * EACH, 7).await;
    for w in writers {
        w.await.unwrap();
    }
    let ids: HashSet<Uuid> = follower.iter().map(|e| e.event.event_id).collect();
    assert_eq!(follower.len(), WRITERS * EACH);
    assert_eq!(ids.len(), WRITERS * EACH, "an event was served twice");
    assert!(follower.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let all: HashSet<Uuid> = store
        .read_after(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids, all, "the follower missed an event");
}

both_backends!(every_order_event_is_published_once_in_order_across_a_restart);

/// The whole feed over HTTP, in pages of 3.
async fn http_feed(app: &TestApp) -> Vec<Value> {
    let admin = app.admin();
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let (status, _, body) = app
            .get(&format!("/v1/events?limit=3&after={after}"), &admin)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["items"].as_array().expect("items").clone();
        let next = body["next"].as_str().expect("next").to_owned();
        if page.is_empty() {
            assert_eq!(next, if after.is_empty() { "0-0" } else { &after });
            return items;
        }
        assert_eq!(page.last().unwrap()["cursor"], next.as_str());
        items.extend(page);
        after = next;
    }
}

/// (event_id, cursor) of every entry of the stream, oldest first.
async fn stream_entries(redis: &TestRedis) -> Vec<(String, String)> {
    let mut conn = redis.connection().await;
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(format!("{}commerce.events", redis.prefix))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    entries
        .into_iter()
        .map(|(_, fields)| {
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(|p| p[0] == name)
                    .map(|p| p[1].clone())
                    .unwrap_or_else(|| panic!("an entry without {name}: {fields:?}"))
            };
            for name in [
                "aggregate_id",
                "event_type",
                "version",
                "position",
                "data",
                "recorded_at",
            ] {
                field(name);
            }
            serde_json::from_str::<Value>(&field("data")).expect("data is JSON");
            (field("event_id"), field("cursor"))
        })
        .collect()
}

/// The payment tokens orders were placed with (`tok_...`) are nowhere in
/// what is served or published: the feed, the stream, the logs; the
/// placements record a masked reference instead.
async fn assert_no_payment_tokens(app: &TestApp, redis: &TestRedis) {
    let feed = http_feed(app).await;
    let placed: Vec<&Value> = feed
        .iter()
        .filter(|e| e["event_type"] == "OrderPlaced")
        .collect();
    assert!(
        placed.iter().any(|e| e["data"]["payment_ref"].is_string()),
        "{placed:?}"
    );
    let served = serde_json::to_string(&feed).unwrap();
    assert!(!served.contains("tok_"), "the feed holds a token: {served}");
    let mut conn = redis.connection().await;
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(format!("{}commerce.events", redis.prefix))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let published: String = entries
        .iter()
        .flat_map(|(_, fields)| fields.iter().cloned())
        .collect();
    assert!(published.contains("payment_ref"), "{published}");
    assert!(
        !published.contains("tok_"),
        "the stream holds a token: {published}"
    );
    for line in app.log_lines() {
        // (The start-up line naming the simulator's test tokens aside.)
        let text = line.to_string();
        if text.contains("PAYMENT_URL is not set") {
            continue;
        }
        assert!(!text.contains("tok_"), "a log line holds a token: {line}");
    }
}

/// Places `n` orders, cancelling every other one; returns their ids.
async fn place_and_cancel(app: &TestApp, n: usize) -> Vec<String> {
    let (_, token) = app.customer();
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, _, order) = app.place(&token, &[("OUTBOX-1", 1)], None).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let id = order["id"].as_str().unwrap().to_owned();
        if i % 2 == 0 {
            let (status, _, body) = app.delete(&format!("/v1/orders/{id}"), &token).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        ids.push(id);
    }
    ids
}

/// Places one paid order per payment token and waits until each saga
/// ends; returns (order id, the event that ends it: `OrderConfirmed` or
/// `OrderFailed`).
async fn place_paid(app: &TestApp, payments: &[&str]) -> Vec<(String, &'static str)> {
    let (_, token) = app.customer();
    let mut ids = Vec::new();
    for payment in payments {
        let (status, _, order) = app
            .place_paying(&token, &[("OUTBOX-1", 1)], None, Some(payment))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    let mut ended = Vec::new();
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, _, order) = app.get(&format!("/v1/orders/{id}"), &app.admin()).await;
            match order["status"].as_str() {
                Some("confirmed") => break ended.push((id, "OrderConfirmed")),
                Some("failed") => break ended.push((id, "OrderFailed")),
                _ => {}
            }
            assert!(Instant::now() < deadline, "{order}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ended
}

/// Every confirmed or failed order's final event is in the feed once.
async fn assert_outcomes_once(app: &TestApp, outcomes: &[(String, &'static str)]) {
    let feed = http_feed(app).await;
    for (id, event_type) in outcomes {
        let n = feed
            .iter()
            .filter(|e| e["aggregate_id"] == id.as_str() && e["event_type"] == *event_type)
            .count();
        assert_eq!(n, 1, "order {id}: {event_type} appears {n} times");
    }
}

/// How many events the orders have, by their own histories.
async fn events_of(app: &TestApp, orders: &[String]) -> usize {
    let admin = app.admin();
    let mut total = 0;
    for id in orders {
        let (status, _, body) = app.get(&format!("/v1/orders/{id}/events"), &admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        total += body["items"].as_array().unwrap().len();
    }
    total
}

/// Waits until the feed and the stream both hold `expected` events, then
/// checks they hold the same ones, once each, in the same order.
async fn assert_published(app: &TestApp, redis: &TestRedis, orders: &[String], expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (feed, stream) = loop {
        let feed = http_feed(app).await;
        let stream = stream_entries(redis).await;
        if feed.len() >= expected && stream.len() >= expected {
            break (feed, stream);
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s the feed holds {} and the stream {} of {expected} events",
            feed.len(),
            stream.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        feed.len(),
        expected,
        "the feed holds more than the orders' events"
    );
    let from_feed: Vec<(String, String)> = feed
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_owned(),
                e["cursor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(stream, from_feed, "the stream and the feed differ");
    let unique: HashSet<&String> = stream.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), stream.len(), "an event was published twice");
    let cursors: Vec<FeedCursor> = stream
        .iter()
        .map(|(_, c)| FeedCursor::parse(c).expect("a cursor"))
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "out of order: {cursors:?}"
    );
    let aggregates: HashSet<&str> = feed
        .iter()
        .map(|e| e["aggregate_id"].as_str().unwrap())
        .collect();
    for id in orders {
        assert!(
            aggregates.contains(id.as_str()),
            "order {id} is not in the feed"
        );
    }
}

async fn every_order_event_is_published_once_in_order_across_a_restart(backend: Backend) {
    let redis = TestRedis::new();
    let mut envs = redis.envs();
    envs.push(("COMMERCE_OUTBOX_POLL_MS", "20"));
    // Short, so that the restarted process takes over from the killed
    // one (which never gave its lease back) within the test.
    envs.push(("COMMERCE_OUTBOX_LEASE_MS", "1000"));
    let mut app = TestApp::spawn_with(backend, &[], &envs).await;
    app.put_product("OUTBOX-1", "4.50", "EUR", 1000).await;

    let mut orders = place_and_cancel(&app, 6).await;
    // Orders whose sagas confirm or fail them: how the notification
    // service hears of the outcome.
    let mut outcomes = place_paid(&app, &["tok_ok", "tok_decline"]).await;
    orders.extend(outcomes.iter().map(|(id, _)| id.clone()));
    let expected = events_of(&app, &orders).await;
    assert!(
        expected >= 9 + 7,
        "6 orders, 3 of them cancelled, one confirmed, one failed: {expected} events"
    );
    assert_published(&app, &redis, &orders, expected).await;
    assert_outcomes_once(&app, &outcomes).await;
    assert_no_payment_tokens(&app, &redis).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!("commerce_outbox_published_total {expected}")),
        "{metrics}"
    );
    assert!(metrics.contains("commerce_outbox_lag_seconds"), "{metrics}");

    // Killed and started again: it resumes where the stream is, and
    // publishes the new events once, after the old ones.
    app.restart();
    orders.extend(place_and_cancel(&app, 4).await);
    let more = place_paid(&app, &["tok_decline", "tok_ok"]).await;
    orders.extend(more.iter().map(|(id, _)| id.clone()));
    outcomes.extend(more);
    let expected = events_of(&app, &orders).await;
    assert_published(&app, &redis, &orders, expected).await;
    assert_outcomes_once(&app, &outcomes).await;

    // Nothing more arrives later (no late repeats).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream_entries(&redis).await.len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_is_for_admins_and_refuses_bad_cursors_and_limits() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, _, _) = app.call(Method::GET, "/v1/events", None, None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, customer) = app.customer();
    let (status, headers, body) = app.get("/v1/events", &customer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");

    let admin = app.admin();
    let (status, _, body) = app.get("/v1/events", &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"], serde_json::json!([]));
    assert_eq!(body["next"], "0-0");
    let (status, _, body) = app.get("/v1/events?after=5-7", &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["next"], "5-7", "an empty page keeps the cursor");

    for (query, expected) in [
        ("after=abc", StatusCode::BAD_REQUEST),
        ("after=12", StatusCode::BAD_REQUEST),
        ("after=1-", StatusCode::BAD_REQUEST),
        ("after=-1-2", StatusCode::BAD_REQUEST),
        ("after=1-2-3", StatusCode::BAD_REQUEST),
        ("after=1-%2B2", StatusCode::BAD_REQUEST),
        ("after=99999999999999999999-1", StatusCode::BAD_REQUEST),
        ("limit=abc", StatusCode::BAD_REQUEST),
        ("limit=-1", StatusCode::BAD_REQUEST),
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=1001", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, headers, body) = app.get(&format!("/v1/events?{query}"), &admin).await;
        assert_eq!(status, expected, "{query}: {body}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{query}"
        );
        assert_eq!(body["status"], expected.as_u16(), "{query}");
    }
    let (status, _, _) = app.get("/v1/events?limit=1000", &admin).await;
    assert_eq!(status, StatusCode::OK);

    let (_, _, doc) = app
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert!(
        doc["paths"]["/v1/events"]["get"].is_object(),
        "openapi lacks /v1/events"
    );
    assert!(doc["components"]["schemas"]["Feed"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_resumes_after_what_the_stream_holds_and_repeats_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.open_store().await;
    let redis = TestRedis::new();
    let handle = Redis::connect(&RedisConfig {
        url: redis.url.clone(),
        cluster: false,
        prefix: redis.prefix.clone(),
        timeout: Duration::from_secs(1),
    })
    .expect("redis");
    let stream = Arc::new(RedisEventStream::new(
        handle,
        commerce_app::outbox::DEFAULT_STREAM_MAX_LEN,
    ));
    for n in 0..5 {
        store
            .append(append(Uuid::now_v7(), 0, vec![event(n)], Uuid::new_v4()))
            .await
            .unwrap();
    }
    let feed = feed_until(store.as_ref(), FeedCursor::default(), 5, 100).await;

    // A relay published three events and died before it saved its cursor.
    assert_eq!(stream.last_published().await.unwrap(), None);
    assert_eq!(stream.publish(&feed[..3]).await.unwrap(), 3);
    // Publishing them again appends only what is new: the stream refuses
    // repeats by itself (a replica that lost its lease mid-page).
    assert_eq!(stream.publish(&feed[..4]).await.unwrap(), 1);
    assert_eq!(stream.last_published().await.unwrap(), Some(feed[3].cursor));

    // The next relay starts from the later of its stored cursor (none)
    // and the stream's, publishes the rest, and saves where it is.
    let settings = RelaySettings::new(Duration::from_millis(10), Duration::from_secs(30));
    let owner = settings.owner.clone();
    let mut relay = OutboxRelay::new(store.clone(), stream.clone(), settings);
    assert_eq!(
        relay.round().await.unwrap(),
        Some(Duration::from_millis(10)),
        "caught up"
    );
    let expected: Vec<(String, String)> = feed
        .iter()
        .map(|e| (e.event.event_id.to_string(), e.cursor.to_string()))
        .collect();
    assert_eq!(stream_entries(&redis).await, expected);
    assert_eq!(
        store
            .acquire_relay_lease(RELAY_NAME, &owner, Duration::from_secs(30))
            .await
            .unwrap(),
        Some(feed[4].cursor)
    );
    // Another replica cannot publish while the lease is held.
    let mut other = OutboxRelay::new(
        store.clone(),
        stream.clone(),
        RelaySettings::new(Duration::from_millis(10), Duration::from_secs(30)),
    );
    store
        .append(append(Uuid::now_v7(), 0, vec![event(9)], Uuid::new_v4()))
        .await
        .unwrap();
    feed_until(store.as_ref(), feed[4].cursor, 1, 100).await;
    assert!(other.round().await.unwrap().is_some());
    assert_eq!(
        stream_entries(&redis).await.len(),
        5,
        "the other replica published"
    );
    relay.round().await.unwrap();
    assert_eq!(stream_entries(&redis).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_reach_redis_retries_and_the_service_carries_on() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[],
        &[
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("COMMERCE_REDIS_TIMEOUT_MS", "50"),
            ("COMMERCE_OUTBOX_POLL_MS", "10"),
        ],
    )
    .await;
    app.put_product("OUTBOX-1", "4.50", "EUR", 10).await;
    let orders = place_and_cancel(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, body) = app.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let feed = http_feed(&app).await;
    assert_eq!(feed.len(), events_of(&app, &orders).await);
}

/// The stream keeps its newest `COMMERCE_STREAM_MAX_LEN` entries: older
/// ones are trimmed as new ones arrive, and what it keeps is the tail of
/// the feed, where a consumer that fell behind catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_trimmed_to_its_length_and_the_feed_keeps_everything() {
    let redis = TestRedis::new();
    let mut envs = redis.envs();
    envs.push(("COMMERCE_OUTBOX_POLL_MS", "20"));
    envs.push(("COMMERCE_STREAM_MAX_LEN", "4"));
    let app = TestApp::spawn_with(Backend::Sqlite, &[], &envs).await;
    app.put_product("OUTBOX-1", "4.50", "EUR", 1000).await;
    let orders = place_and_cancel(&app, 6).await;
    let expected = events_of(&app, &orders).await;
    assert!(expected >= 9, "{expected}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (feed, stream) = loop {
        let feed = http_feed(&app).await;
        let stream = stream_entries(&redis).await;
        let last = feed.last().and_then(|e| e["cursor"].as_str());
        if feed.len() == expected && stream.last().map(|(_, c)| c.as_str()) == last {
            break (feed, stream);
        }
        assert!(
            Instant::now() < deadline,
            "{} events published",
            stream.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let tail: Vec<(String, String)> = feed[expected - 4..]
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_owned(),
                e["cursor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(stream, tail, "the stream is not the feed's last 4 events");
}
