//! The storage contract: one suite, run unchanged against SQLite and
//! PostgreSQL through the `Store` trait the application uses.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use commerce_app::orders::{PlaceOrderRequest, RequestedLine};
use commerce_app::ports::{
    Append, FeedCursor, FeedEvent, IdempotencyRecord, NewEvent, ProductUpsert, StoreError,
};
use commerce_app::views::{OrderQuery, OrderView};
use commerce_app::{Caller, Role, Store};
use commerce_domain::{Currency, OrderStatus, Quantity, Sku};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{Backend, TestDb};

both_backends!(
    appends_load_in_order_and_read_after_positions,
    a_stale_expected_version_is_a_conflict_and_writes_nothing,
    concurrent_appends_one_winner_per_version,
    an_idempotency_key_is_taken_once,
    views_list_by_customer_status_and_cursor,
    products_upsert_and_fetch,
    replay_equals_the_inline_projection,
    sagas_are_written_with_events_fenced_by_revision_and_claimed_once,
    the_feed_pages_every_event_once_by_cursor,
    a_relay_lease_has_one_owner_at_a_time,
    old_plugin_versions_are_pruned_but_never_the_active_or_rollback_one,
    canary_and_shadow_versions_are_kept_beside_the_active_one,
    plugin_runs_are_filtered_newest_first_and_pruned_per_plugin,
    order_ids_are_walked_oldest_first_from_an_id,
);

pub(crate) fn event(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestHappened",
        schema_version: 1,
        data: json!({ "n": n }),
        recorded_at: Utc::now().trunc_subsecs(6),
    }
}

fn view(id: Uuid, customer: Uuid, status: OrderStatus, version: u64) -> OrderView {
    let at = Utc::now().trunc_subsecs(6);
    OrderView {
        id,
        customer_id: customer,
        status,
        currency: "EUR".into(),
        items: vec![],
        subtotal: Decimal::new(1050, 2),
        adjustments: vec![],
        total: Decimal::new(1050, 2),
        refunded: Decimal::ZERO,
        status_reason: None,
        version,
        created_at: at,
        updated_at: at,
    }
}

pub(crate) fn append(id: Uuid, expected: u64, events: Vec<NewEvent>, customer: Uuid) -> Append {
    let version = expected + events.len() as u64;
    Append {
        aggregate_id: id,
        aggregate_type: "order",
        expected_version: expected,
        events,
        view: view(id, customer, OrderStatus::Pending, version),
        idempotency: Vec::new(),
        inventory: None,
        saga: None,
    }
}

async fn appends_load_in_order_and_read_after_positions(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::new_v4());
    store
        .append(append(a, 0, vec![event(1), event(2)], c))
        .await
        .unwrap();
    store.append(append(b, 0, vec![event(1)], c)).await.unwrap();
    store.append(append(a, 2, vec![event(3)], c)).await.unwrap();

    let stream = store.load_stream(a).await.unwrap();
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        stream
            .iter()
            .map(|e| e.data["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        stream
            .iter()
            .all(|e| e.aggregate_type == "order" && e.event_type == "TestHappened")
    );

    let all = store.read_after(0, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let tail = store.read_after(all[1].position, 100).await.unwrap();
    assert_eq!(tail, all[2..].to_vec());
    assert_eq!(store.read_after(0, 1).await.unwrap(), all[..1].to_vec());
    assert!(store.load_stream(Uuid::new_v4()).await.unwrap().is_empty());

    let v = store.get_view(a).await.unwrap().unwrap();
    assert_eq!(v.version, 3);
    assert_eq!(v.total.to_string(), "10.50");
}

async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let (id, c) = (Uuid::now_v7(), Uuid::new_v4());
    store
        .append(append(id, 0, vec![event(1), event(2)], c))
        .await
        .unwrap();
    for stale in [0, 1] {
        let mut stale_append = append(id, stale, vec![event(9)], c);
        stale_append.view.status = OrderStatus::Cancelled;
        let err = store.append(stale_append).await.unwrap_err();
        assert!(
            matches!(err, StoreError::VersionConflict { expected, .. } if expected == stale),
            "{err:?}"
        );
    }
    assert_eq!(store.load_stream(id).await.unwrap().len(), 2);
    assert_eq!(
        store.get_view(id).await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
}

async fn concurrent_appends_one_winner_per_version(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let (id, c) = (Uuid::now_v7(), Uuid::new_v4());
    store
        .append(append(id, 0, vec![event(0)], c))
        .await
        .unwrap();
    const WRITERS: u32 = 24;
    for round in 1..=3u64 {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.spawn(async move { store.append(append(id, round, vec![event(w)], c)).await });
        }
        let (mut won, mut conflicts) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(()) => won += 1,
                Err(StoreError::VersionConflict { .. }) => conflicts += 1,
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!((won, conflicts), (1, WRITERS - 1), "round {round}");
    }
    let stream = store.load_stream(id).await.unwrap();
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

async fn an_idempotency_key_is_taken_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let customer = Uuid::new_v4();
    let keyed = |order_id: Uuid| {
        let mut a = append(order_id, 0, vec![event(1)], customer);
        a.idempotency = vec![IdempotencyRecord {
            customer_id: customer,
            key: "k".into(),
            request_hash: "h".into(),
            order_id,
        }];
        a
    };
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    store.append(keyed(first)).await.unwrap();
    let err = store.append(keyed(second)).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyKeyTaken), "{err:?}");
    assert!(
        store.load_stream(second).await.unwrap().is_empty(),
        "nothing of the loser is written"
    );
    assert!(store.get_view(second).await.unwrap().is_none());
    let record = store
        .find_idempotency(customer, "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.order_id, first);
    assert_eq!(record.request_hash, "h");
    assert!(
        store
            .find_idempotency(Uuid::new_v4(), "k")
            .await
            .unwrap()
            .is_none()
    );

    // Two keys for one order (a cart checkout): if either is taken,
    // nothing is written, not even the other key.
    let third = Uuid::now_v7();
    let mut both = keyed(third);
    both.idempotency.insert(
        0,
        IdempotencyRecord {
            customer_id: customer,
            key: "fresh".into(),
            request_hash: "h2".into(),
            order_id: third,
        },
    );
    let err = store.append(both).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyKeyTaken), "{err:?}");
    assert!(store.get_view(third).await.unwrap().is_none());
    assert!(
        store
            .find_idempotency(customer, "fresh")
            .await
            .unwrap()
            .is_none(),
        "the fresh key of a refused append is not kept"
    );

    // Past its window a key is purged, oldest first, and the same key is
    // then a new request.
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.purge_idempotency_keys(hour_ago, 10).await.unwrap(), 0);
    assert!(
        store
            .find_idempotency(customer, "k")
            .await
            .unwrap()
            .is_some()
    );
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.purge_idempotency_keys(later, 10).await.unwrap(), 1);
    assert!(
        store
            .find_idempotency(customer, "k")
            .await
            .unwrap()
            .is_none()
    );
    let fourth = Uuid::now_v7();
    store.append(keyed(fourth)).await.unwrap();
    let record = store
        .find_idempotency(customer, "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.order_id, fourth);
}

async fn views_list_by_customer_status_and_cursor(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut alices = Vec::new();
    for i in 0..5 {
        let id = Uuid::now_v7();
        let mut a = append(id, 0, vec![event(i)], alice);
        if i == 2 {
            a.view.status = OrderStatus::Cancelled;
        }
        store.append(a).await.unwrap();
        alices.push(id);
    }
    store
        .append(append(Uuid::now_v7(), 0, vec![event(9)], bob))
        .await
        .unwrap();
    let ids = |views: Vec<OrderView>| views.into_iter().map(|v| v.id).collect::<Vec<_>>();
    let query = |customer_id, status, limit, before| OrderQuery {
        customer_id,
        status,
        limit,
        before,
    };

    let newest_first: Vec<Uuid> = alices.iter().rev().copied().collect();
    assert_eq!(
        ids(store
            .list_views(&query(Some(alice), None, 10, None))
            .await
            .unwrap()),
        newest_first
    );
    assert_eq!(
        ids(store
            .list_views(&query(Some(alice), None, 2, None))
            .await
            .unwrap()),
        newest_first[..2]
    );
    assert_eq!(
        ids(store
            .list_views(&query(Some(alice), None, 2, Some(newest_first[1])))
            .await
            .unwrap()),
        newest_first[2..4]
    );
    assert_eq!(
        ids(store
            .list_views(&query(Some(alice), Some(OrderStatus::Cancelled), 10, None))
            .await
            .unwrap()),
        [alices[2]]
    );
    assert_eq!(
        store
            .list_views(&query(None, None, 100, None))
            .await
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        store
            .list_views(&query(Some(Uuid::new_v4()), None, 10, None))
            .await
            .unwrap()
            .len(),
        0
    );
}

async fn products_upsert_and_fetch(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let eur = Currency::parse("EUR").unwrap();
    let upsert = |sku: &str, price: &str, on_hand| ProductUpsert {
        sku: Sku::parse(sku).unwrap(),
        name: format!("Product {sku}"),
        unit_price: price.parse().unwrap(),
        currency: eur,
        on_hand,
        at: Utc::now().trunc_subsecs(6),
    };
    let created = store
        .upsert_product(upsert("A", "1.50", 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (created.version, created.on_hand, created.reserved),
        (1, 10, 0)
    );
    let updated = store
        .upsert_product(upsert("A", "2.00", 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((updated.version, updated.on_hand), (2, 20));
    assert_eq!(updated.unit_price.to_string(), "2.00");
    store
        .upsert_product(upsert("B", "3.00", 0))
        .await
        .unwrap()
        .unwrap();

    let a = store
        .get_product(&Sku::parse("A").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a, updated);
    assert!(
        store
            .get_product(&Sku::parse("Z").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let skus = ["A", "B", "Z"].map(|s| Sku::parse(s).unwrap());
    let found: HashSet<String> = store
        .get_products(&skus)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.sku.to_string())
        .collect();
    assert_eq!(found, HashSet::from(["A".to_owned(), "B".to_owned()]));
    assert!(store.get_products(&[]).await.unwrap().is_empty());
}

async fn replay_equals_the_inline_projection(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store: Arc<dyn Store> = db.open_store().await;
    let app = db.app(store.clone()).await;
    let admin = Caller {
        subject: Uuid::nil(),
        role: Role::Admin,
    };
    let eur = Currency::parse("EUR").unwrap();
    store
        .upsert_product(ProductUpsert {
            sku: Sku::parse("MUG").unwrap(),
            name: "Mug".into(),
            unit_price: "3.33".parse().unwrap(),
            currency: eur,
            on_hand: 100,
            at: Utc::now().trunc_subsecs(6),
        })
        .await
        .unwrap();
    for i in 1..=8 {
        let caller = Caller {
            subject: Uuid::new_v4(),
            role: Role::Customer,
        };
        let placed = app
            .orders()
            .place_order(
                caller,
                PlaceOrderRequest {
                    currency: eur,
                    items: vec![RequestedLine {
                        sku: Sku::parse("MUG").unwrap(),
                        quantity: Quantity::parse(i).unwrap(),
                    }],
                    payment_token: None,
                },
                None,
            )
            .await
            .unwrap();
        if i % 2 == 0 {
            app.orders()
                .cancel_order(
                    caller,
                    placed.order.id,
                    None,
                    Some("changed my mind".into()),
                    std::time::Duration::from_secs(5),
                )
                .await
                .unwrap();
        }
    }
    let all = OrderQuery {
        customer_id: None,
        status: None,
        limit: 100,
        before: None,
    };
    let inline = store.list_views(&all).await.unwrap();
    assert_eq!(inline.len(), 8);
    // The replay reads the feed, which on PostgreSQL serves an event once
    // every older transaction of the server has ended (other tests run
    // theirs): wait until it serves all 20.
    feed_until(store.as_ref(), FeedCursor::default(), 20, 100).await;
    let report = commerce_app::replay::replay_order_views(store.as_ref())
        .await
        .unwrap();
    // Placed + reserved for each, cancelled for every other one.
    assert_eq!((report.orders, report.events), (8, 20));
    assert_eq!(store.list_views(&all).await.unwrap(), inline);
    let _ = admin;
}

/// Reads the feed after `after` until it holds at least `n` events (on
/// PostgreSQL an event shows once every older transaction of the server
/// has ended, and other tests run transactions of their own), in pages
/// of `page`.
pub(crate) async fn feed_until(
    store: &dyn Store,
    mut after: FeedCursor,
    n: usize,
    page: u32,
) -> Vec<FeedEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let batch = store.read_feed(after, page).await.unwrap();
        assert!(batch.len() <= page as usize);
        if let Some(last) = batch.last() {
            after = last.cursor;
        }
        let got = batch.len();
        seen.extend(batch);
        if seen.len() >= n {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the feed shows {} events of {n}",
            seen.len()
        );
        if got < page as usize {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn the_feed_pages_every_event_once_by_cursor(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::new_v4());
    store
        .append(append(a, 0, vec![event(1), event(2)], c))
        .await
        .unwrap();
    store.append(append(b, 0, vec![event(3)], c)).await.unwrap();
    store.append(append(a, 2, vec![event(4)], c)).await.unwrap();

    let all = feed_until(store.as_ref(), FeedCursor::default(), 4, 100).await;
    assert_eq!(
        all.iter()
            .map(|e| e.event.data["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "sequential appends come in the order they committed"
    );
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert!(all.iter().all(|e| e.cursor.position == e.event.position));
    // Pages of one, each after the previous cursor: the same events.
    let paged = feed_until(store.as_ref(), FeedCursor::default(), 4, 1).await;
    assert_eq!(paged, all);
    let tail = store.read_feed(all[1].cursor, 100).await.unwrap();
    assert_eq!(tail, all[2..].to_vec());
    assert!(
        store
            .read_feed(all[3].cursor, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // The opaque form survives a round trip.
    for e in &all {
        assert_eq!(FeedCursor::parse(&e.cursor.to_string()), Some(e.cursor));
    }
}

async fn a_relay_lease_has_one_owner_at_a_time(backend: Backend) {
    use std::time::Duration;
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let long = Duration::from_secs(30);
    assert_eq!(
        store.acquire_relay_lease("r", "a", long).await.unwrap(),
        Some(FeedCursor::default()),
        "a new relay starts at the beginning"
    );
    assert_eq!(
        store.acquire_relay_lease("r", "b", long).await.unwrap(),
        None
    );
    let at = FeedCursor { tx: 7, position: 3 };
    assert!(store.save_relay_cursor("r", "a", at).await.unwrap());
    assert!(!store.save_relay_cursor("r", "b", at).await.unwrap());
    assert_eq!(
        store.acquire_relay_lease("r", "a", long).await.unwrap(),
        Some(at),
        "the owner renews and gets its cursor back"
    );
    // Another name is another relay.
    assert_eq!(
        store.acquire_relay_lease("other", "b", long).await.unwrap(),
        Some(FeedCursor::default())
    );
    // A lease that runs out is taken over, cursor and all; the old owner
    // can no longer move the cursor.
    assert!(
        store
            .acquire_relay_lease("r", "a", Duration::from_millis(1))
            .await
            .unwrap()
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.acquire_relay_lease("r", "b", long).await.unwrap(),
        Some(at)
    );
    assert!(
        !store
            .save_relay_cursor("r", "a", FeedCursor { tx: 9, position: 9 })
            .await
            .unwrap()
    );
    assert_eq!(
        store.acquire_relay_lease("r", "a", long).await.unwrap(),
        None
    );
}

async fn sagas_are_written_with_events_fenced_by_revision_and_claimed_once(backend: Backend) {
    use commerce_app::saga::{PaymentIntent, SagaInstance, SagaWrite};
    use commerce_domain::saga::SagaStatus;
    use std::time::Duration;

    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let at = Utc::now().trunc_subsecs(6);
    let order = Uuid::now_v7();
    let payment = PaymentIntent {
        token: "tok_ok".into(),
        amount: Decimal::new(1050, 2),
        currency: Currency::parse("EUR").unwrap(),
    };
    // Leased by "a" until a second ago: its driver died.
    let saga = SagaInstance::start(
        order,
        payment.clone(),
        "a",
        Duration::from_secs(1),
        at - chrono::Duration::seconds(2),
    );
    let mut placement = append(order, 0, vec![event(1)], Uuid::new_v4());
    placement.saga = Some(SagaWrite {
        instance: saga.clone(),
        expected_revision: None,
        history: vec![],
    });
    store.append(placement).await.unwrap();
    let stored = store.saga_of(order).await.unwrap().unwrap();
    assert_eq!(stored, saga);

    // A second saga for the same order is refused, with its events.
    let mut twin = append(order, 1, vec![event(2)], Uuid::new_v4());
    let other = SagaInstance::start(order, payment, "b", Duration::from_secs(30), at);
    twin.saga = Some(SagaWrite {
        instance: other,
        expected_revision: None,
        history: vec![],
    });
    assert!(matches!(
        store.append(twin).await,
        Err(StoreError::SagaConflict { .. })
    ));
    assert_eq!(store.load_stream(order).await.unwrap().len(), 1);

    // Two claimers race: exactly one gets it, and the claim bumps the
    // revision, so the dead driver's late write is refused.
    let later = at + chrono::Duration::seconds(60);
    let (x, y) = tokio::join!(
        store.claim_sagas("x", at, later, 10),
        store.claim_sagas("y", at, later, 10)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 1, "{x:?} {y:?}");
    let claimed = x.into_iter().chain(y).next().unwrap();
    assert_eq!(claimed.revision, saga.revision + 1);
    let late = SagaWrite {
        instance: saga.successor(at),
        expected_revision: Some(saga.revision),
        history: vec![],
    };
    assert!(matches!(
        store.save_saga(late, None).await,
        Err(StoreError::SagaConflict { .. })
    ));
    // Leased now: nobody else claims it.
    assert!(
        store
            .claim_sagas("z", at, later, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The new owner finishes it; the history and the counts follow.
    let mut done = claimed.successor(at);
    done.data.progress = done.data.progress.clone().abort("test");
    let record = commerce_app::saga::SagaStepRecord::new(
        done.saga_id,
        commerce_domain::saga::Step::AuthorizePayment,
        commerce_domain::saga::Phase::Operator,
        commerce_domain::saga::Outcome::Abort,
        None,
        0,
        at,
    );
    store
        .save_saga(
            SagaWrite {
                instance: done.clone(),
                expected_revision: Some(claimed.revision),
                history: vec![record.clone()],
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store.saga_history(done.saga_id).await.unwrap(),
        vec![record]
    );
    assert_eq!(store.count_sagas(SagaStatus::Compensated).await.unwrap(), 1);
    let listed = store
        .list_sagas(Some(SagaStatus::Compensated), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        store
            .list_sagas(Some(SagaStatus::Running), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn old_plugin_versions_are_pruned_but_never_the_active_or_rollback_one(backend: Backend) {
    use commerce_app::ports::NewPluginVersion;
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let upload = plugin_upload;
    for n in 1..=5 {
        store
            .insert_plugin_version(upload(n))
            .await
            .unwrap()
            .unwrap();
    }
    store.activate_plugin("p", Some(1)).await.unwrap().unwrap();
    store.activate_plugin("p", Some(2)).await.unwrap().unwrap();
    let versions = |records: Vec<commerce_app::ports::PluginRecord>| {
        records.iter().map(|r| r.version).collect::<Vec<_>>()
    };
    // Keep the newest 2 (4, 5), the active 2 and the rollback target 1.
    assert_eq!(store.prune_plugin_versions("p", 2).await.unwrap(), 1);
    assert_eq!(versions(store.list_plugins().await.unwrap()), [1, 2, 4, 5]);
    assert_eq!(store.prune_plugin_versions("p", 2).await.unwrap(), 0);
    assert_eq!(store.prune_plugin_versions("nope", 2).await.unwrap(), 0);
    // The next upload still numbers after the newest, and rollback works.
    // Limits set at install are stored with the version.
    let limits = commerce_app::ports::PluginLimits {
        max_memory: Some(4 << 20),
        max_input: Some(8 << 10),
    };
    let six = store
        .insert_plugin_version(NewPluginVersion {
            limits,
            ..upload(6)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(six.version, 6);
    assert_eq!(six.limits, limits);
    assert_eq!(
        store.list_plugins().await.unwrap().last().unwrap().limits,
        limits
    );
    assert_eq!(
        store.rollback_plugin("p").await.unwrap().unwrap().version,
        1
    );
    assert_eq!(store.prune_plugin_versions("p", 2).await.unwrap(), 1);
    assert_eq!(versions(store.list_plugins().await.unwrap()), [1, 2, 5, 6]);
}

fn plugin_upload(n: u8) -> commerce_app::ports::NewPluginVersion {
    commerce_app::ports::NewPluginVersion {
        name: "p".into(),
        kind: commerce_app::extensions::PluginKind::Pricing,
        sha256: format!("{n:064}"),
        bytes: vec![n; 8],
        config: "{}".into(),
        priority: 1,
        listen: None,
        limits: Default::default(),
        at: Utc::now(),
    }
}

async fn canary_and_shadow_versions_are_kept_beside_the_active_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    for n in 1..=4 {
        store
            .insert_plugin_version(plugin_upload(n))
            .await
            .unwrap()
            .unwrap();
    }
    store.activate_plugin("p", Some(1)).await.unwrap().unwrap();
    let generation = store.plugin_generation().await.unwrap();
    assert!(store.set_plugin_canary("p", Some((2, 10))).await.unwrap());
    assert!(
        store
            .set_plugin_shadow("p", Some((3, 250_000)))
            .await
            .unwrap()
    );
    assert!(
        store.plugin_generation().await.unwrap() >= generation + 2,
        "each change reaches the replicas like an activation"
    );
    assert!(!store.set_plugin_canary("p", Some((99, 10))).await.unwrap());
    assert!(!store.set_plugin_shadow("nope", Some((1, 1))).await.unwrap());
    let (_, active) = store.active_plugins().await.unwrap();
    let roles: Vec<(i64, bool, Option<u8>, Option<f64>)> = active
        .iter()
        .map(|r| (r.version, r.active, r.canary_percent, r.shadow_sample))
        .collect();
    assert_eq!(
        roles,
        [
            (1, true, None, None),
            (2, false, Some(10), None),
            (3, false, None, Some(0.25))
        ]
    );
    // Neither is pruned while it serves or shadows.
    assert_eq!(store.prune_plugin_versions("p", 1).await.unwrap(), 0);
    // Activating the canary's version ends the canary; the shadow stays
    // unless it is the version activated.
    store.activate_plugin("p", Some(2)).await.unwrap().unwrap();
    let (_, active) = store.active_plugins().await.unwrap();
    let versions: Vec<i64> = active.iter().map(|r| r.version).collect();
    assert_eq!(versions, [2, 3]);
    assert!(active.iter().all(|r| r.canary_percent.is_none()));
    store.activate_plugin("p", Some(3)).await.unwrap().unwrap();
    let (_, active) = store.active_plugins().await.unwrap();
    assert_eq!(active.len(), 1);
    assert!(active[0].shadow_sample.is_none());
    assert!(store.set_plugin_shadow("p", Some((4, 1))).await.unwrap());
    assert!(store.set_plugin_shadow("p", None).await.unwrap());
    assert_eq!(store.active_plugins().await.unwrap().1.len(), 1);
}

async fn plugin_runs_are_filtered_newest_first_and_pruned_per_plugin(backend: Backend) {
    use commerce_app::ports::PluginRun;
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let start = Utc::now().trunc_subsecs(6);
    let run = |name: &str, n: i64, outcome: &str| PluginRun {
        id: Uuid::now_v7(),
        name: name.into(),
        version: 1,
        kind: commerce_app::extensions::PluginKind::Pricing,
        outcome: outcome.into(),
        error: (outcome != "ok").then(|| format!("failed {n}")),
        input: json!({"n": n}),
        output: (outcome == "ok").then(|| json!([{"n": n}])),
        fuel: 1_000 + n as u64,
        duration_us: 10,
        log: format!("line {n}\n"),
        shadow: n == 3,
        at: start + chrono::Duration::milliseconds(n),
    };
    let runs = vec![
        run("p", 1, "ok"),
        run("p", 2, "trap"),
        run("p", 3, "fuel"),
        run("p", 4, "ok"),
        run("q", 5, "trap"),
    ];
    store.record_plugin_runs(&runs).await.unwrap();
    let ns = |listed: Vec<PluginRun>| {
        listed
            .iter()
            .map(|r| r.input["n"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ns(store.plugin_runs("p", None, 10).await.unwrap()),
        [4, 3, 2, 1]
    );
    assert_eq!(
        ns(store.plugin_runs("p", Some("failed"), 10).await.unwrap()),
        [3, 2]
    );
    assert_eq!(
        ns(store.plugin_runs("p", Some("trap"), 10).await.unwrap()),
        [2]
    );
    assert_eq!(
        ns(store.plugin_runs("p", Some("ok"), 1).await.unwrap()),
        [4]
    );
    let stored = store.plugin_run(runs[2].id).await.unwrap().unwrap();
    assert_eq!(stored, runs[2], "a run reads back as it was captured");
    assert!(store.plugin_run(Uuid::now_v7()).await.unwrap().is_none());
    // The newest two of each plugin are kept.
    assert_eq!(store.prune_plugin_runs(2).await.unwrap(), 2);
    assert_eq!(ns(store.plugin_runs("p", None, 10).await.unwrap()), [4, 3]);
    assert_eq!(ns(store.plugin_runs("q", None, 10).await.unwrap()), [5]);
}

async fn order_ids_are_walked_oldest_first_from_an_id(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = Uuid::now_v7();
        store
            .append(append(id, 0, vec![event(i)], Uuid::new_v4()))
            .await
            .unwrap();
        ids.push(id);
    }
    assert_eq!(store.order_ids_from(None, 10).await.unwrap(), ids);
    assert_eq!(store.order_ids_from(None, 2).await.unwrap(), ids[..2]);
    assert_eq!(
        store.order_ids_from(Some(ids[2]), 10).await.unwrap(),
        ids[2..]
    );
    assert!(
        store
            .order_ids_from(Some(Uuid::max()), 10)
            .await
            .unwrap()
            .is_empty()
    );
}
