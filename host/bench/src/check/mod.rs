//! The consistency check at the end of a run: what the service and the
//! payment simulator hold must add up to what the run did.
//!
//! [`check`] is pure (a [`Snapshot`] in, problems out) so that it is
//! unit-tested on seeded inconsistencies; [`Reader`] reads the snapshot
//! over HTTP, through the public API (admin token) and the simulator's
//! ledger, the same way for an in-process and a remote service.

mod reader;

pub use reader::Reader;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use commerce_app::ports::AuthorizationStatus;
use commerce_payment_sim::LedgerEntry;

/// A product's stock as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ProductState {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LineState {
    pub sku: String,
    pub quantity: i64,
}

/// An order as the service reports it (the fields of `OrderView` the
/// check and the driver need).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct OrderState {
    pub id: Uuid,
    pub status: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub items: Vec<LineState>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Statuses in which a fulfilment saga may still change the order.
pub fn is_open(status: &str) -> bool {
    matches!(status, "pending" | "reserved" | "paid")
}

/// Statuses whose stock left the warehouse (committed at confirmation)
/// and whose payment was taken.
fn is_fulfilled(status: &str) -> bool {
    matches!(status, "confirmed" | "shipped" | "delivered")
}

/// A saga that has not ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct OpenSaga {
    pub saga_id: Uuid,
    /// The order.
    pub correlation_id: Uuid,
    pub status: String,
}

/// Everything the check compares.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Units on hand seeded per SKU of the run.
    pub seeded: BTreeMap<String, i64>,
    /// The run's products as the service reports them now.
    pub products: BTreeMap<String, ProductState>,
    /// Every order with a line on the run's SKUs.
    pub orders: Vec<OrderState>,
    /// Orders the run was answered 201 for, with the status it saw last.
    pub placed: HashMap<Uuid, String>,
    /// Sagas still running, compensating or needing attention.
    pub open_sagas: Vec<OpenSaga>,
    /// The simulator's ledger.
    pub ledger: Vec<LedgerEntry>,
    /// The ledger holds this run's payments only (in-process simulator):
    /// a charge for an order the service does not have is then a problem;
    /// against a shared simulator such entries are someone else's.
    pub ledger_is_ours: bool,
}

/// The problems found, each a sentence; empty when everything adds up.
///
/// - every product: nothing reserved, and on hand = seeded − the units of
///   its confirmed orders;
/// - every order: in a terminal state (not pending, reserved, paid);
///   every order the run placed exists, in the status the run saw;
/// - no saga running, compensating or needing attention;
/// - ledger: a confirmed order has exactly one captured authorization, of
///   its total; an order that is not confirmed has no captured one; no
///   authorization is left held (`authorized`).
pub fn check(s: &Snapshot) -> Vec<String> {
    let mut problems = Vec::new();
    stock(s, &mut problems);
    let by_id: HashMap<Uuid, &OrderState> = s.orders.iter().map(|o| (o.id, o)).collect();
    orders(s, &by_id, &mut problems);
    for saga in &s.open_sagas {
        problems.push(format!(
            "saga {} (order {}): still {}",
            saga.saga_id, saga.correlation_id, saga.status
        ));
    }
    payments(s, &by_id, &mut problems);
    problems
}

/// Every product: nothing reserved, and on hand = seeded − the units of
/// its fulfilled orders.
fn stock(s: &Snapshot, problems: &mut Vec<String>) {
    let mut taken: HashMap<&str, i64> = HashMap::new();
    for order in &s.orders {
        if is_fulfilled(&order.status) {
            for line in &order.items {
                *taken.entry(line.sku.as_str()).or_default() += line.quantity;
            }
        }
    }
    for (sku, seeded) in &s.seeded {
        let Some(p) = s.products.get(sku) else {
            problems.push(format!("product {sku}: missing"));
            continue;
        };
        if p.reserved != 0 {
            problems.push(format!(
                "product {sku}: {} units still reserved after the drain",
                p.reserved
            ));
        }
        let expected = seeded - taken.get(sku.as_str()).copied().unwrap_or(0);
        if p.on_hand != expected {
            problems.push(format!(
                "product {sku}: on hand {} but seeded {seeded} minus confirmed {} is {expected}",
                p.on_hand,
                seeded - expected
            ));
        }
    }
}

/// Every order terminal; every order the run placed exists, in the status
/// the run last saw (when that was terminal).
fn orders(s: &Snapshot, by_id: &HashMap<Uuid, &OrderState>, problems: &mut Vec<String>) {
    for order in &s.orders {
        if is_open(&order.status) {
            problems.push(format!(
                "order {}: still {} after the drain",
                order.id, order.status
            ));
        }
    }
    let mut placed: Vec<_> = s.placed.iter().collect();
    placed.sort();
    for (id, seen) in placed {
        match by_id.get(id) {
            None => problems.push(format!("order {id}: placed (201) but not found")),
            Some(o) if !is_open(seen) && o.status != *seen => problems.push(format!(
                "order {id}: the run saw it {seen}, the service now says {}",
                o.status
            )),
            Some(_) => {}
        }
    }
}

/// An authorization still held (neither captured nor voided).
fn is_held(e: &LedgerEntry) -> bool {
    e.authorization.status == AuthorizationStatus::Authorized
}

/// An authorization whose money was taken.
fn is_charged(e: &LedgerEntry) -> bool {
    e.authorization.status == AuthorizationStatus::Captured
}

/// The ledger against the orders: each order's payments, then (when the
/// ledger is the run's own) payments for orders the service does not have.
fn payments(s: &Snapshot, by_id: &HashMap<Uuid, &OrderState>, problems: &mut Vec<String>) {
    let mut entries: HashMap<Uuid, Vec<&LedgerEntry>> = HashMap::new();
    for e in &s.ledger {
        entries.entry(e.authorization.order_id).or_default().push(e);
    }
    for order in &s.orders {
        let of_order = entries.get(&order.id).map(Vec::as_slice).unwrap_or(&[]);
        order_payments(order, of_order, problems);
    }
    if s.ledger_is_ours {
        let mut unknown: Vec<_> = s
            .ledger
            .iter()
            .filter(|e| {
                !by_id.contains_key(&e.authorization.order_id) && (is_held(e) || is_charged(e))
            })
            .collect();
        unknown.sort_by_key(|e| e.authorization.order_id);
        for e in unknown {
            problems.push(format!(
                "authorization {} ({:?}) for order {} the service does not have",
                e.authorization.id, e.authorization.status, e.authorization.order_id
            ));
        }
    }
}

/// One order's ledger entries: none held; a fulfilled order captured
/// exactly once, for its total; any other (but a refunded one) not
/// charged.
fn order_payments(order: &OrderState, of_order: &[&LedgerEntry], problems: &mut Vec<String>) {
    for e in of_order.iter().filter(|e| is_held(e)) {
        problems.push(format!(
            "order {} ({}): authorization {} still held",
            order.id, order.status, e.authorization.id
        ));
    }
    let captured: Vec<_> = of_order.iter().filter(|e| is_charged(e)).collect();
    let captures: u32 = of_order.iter().map(|e| e.captures).sum();
    if is_fulfilled(&order.status) {
        match captured.as_slice() {
            [one] if captures == 1 => {
                let amount = one.authorization.captured_amount.unwrap_or_default();
                if amount != order.total {
                    problems.push(format!(
                        "order {}: captured {amount} but its total is {}",
                        order.id, order.total
                    ));
                }
            }
            _ => problems.push(format!(
                "order {} ({}): {} captured authorization(s), {captures} capture(s); expected exactly one",
                order.id,
                order.status,
                captured.len()
            )),
        }
    } else if order.status != "refunded" && !captured.is_empty() {
        problems.push(format!(
            "order {} ({}): charged {} without being confirmed",
            order.id,
            order.status,
            captured[0]
                .authorization
                .captured_amount
                .unwrap_or_default()
        ));
    }
}

/// Products whose stock as the API shows it (`seen`, through the Redis
/// availability cache when there is one) differs from the database
/// (`stored`): cache drift. Not an inconsistency of the books (the
/// database is the truth and the reconciler repairs the cache), but
/// clients are shown stale availability, so the summary reports it.
pub fn drift(
    seen: &BTreeMap<String, ProductState>,
    stored: &BTreeMap<String, ProductState>,
) -> Vec<String> {
    stored
        .iter()
        .filter_map(|(sku, db)| match seen.get(sku) {
            Some(api) if api != db => Some(format!(
                "stock cache drift on {sku}: the API shows on hand {} / reserved {}, the database {} / {}",
                api.on_hand, api.reserved, db.on_hand, db.reserved
            )),
            _ => None,
        })
        .collect()
}

/// What the check covered, for the summary.
pub fn coverage(s: &Snapshot) -> BTreeMap<String, u64> {
    let captured = s
        .ledger
        .iter()
        .filter(|e| e.authorization.status == AuthorizationStatus::Captured)
        .count();
    BTreeMap::from([
        ("products".to_owned(), s.products.len() as u64),
        ("orders".to_owned(), s.orders.len() as u64),
        ("captures".to_owned(), captured as u64),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_app::ports::Authorization;
    use commerce_domain::Currency;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn order(status: &str, total: &str, lines: &[(&str, i64)]) -> OrderState {
        OrderState {
            id: Uuid::now_v7(),
            status: status.into(),
            total: dec(total),
            items: lines
                .iter()
                .map(|(sku, quantity)| LineState {
                    sku: (*sku).into(),
                    quantity: *quantity,
                })
                .collect(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn entry(
        order: &OrderState,
        status: AuthorizationStatus,
        captured: Option<&str>,
    ) -> LedgerEntry {
        LedgerEntry {
            authorization: Authorization {
                id: format!("auth_{}", Uuid::new_v4().simple()),
                order_id: order.id,
                amount: order.total,
                currency: Currency::parse("EUR").unwrap(),
                status,
                captured_amount: captured.map(dec),
                refunded_amount: None,
            },
            token: "tok_ok".into(),
            captures: u32::from(captured.is_some()),
            voids: u32::from(status == AuthorizationStatus::Voided),
            refunds: 0,
        }
    }

    /// Two products; a confirmed order of 2 A + 1 B, a failed one of 5 A
    /// (declined), a confirmed one of 3 B; all paid as they should be.
    fn consistent() -> Snapshot {
        let confirmed = order("confirmed", "30.00", &[("A", 2), ("B", 1)]);
        let failed = order("failed", "50.00", &[("A", 5)]);
        let confirmed2 = order("confirmed", "30.00", &[("B", 3)]);
        let ledger = vec![
            entry(&confirmed, AuthorizationStatus::Captured, Some("30.00")),
            entry(&failed, AuthorizationStatus::Declined, None),
            entry(&confirmed2, AuthorizationStatus::Captured, Some("30")),
        ];
        let placed = [&confirmed, &failed, &confirmed2]
            .iter()
            .map(|o| (o.id, o.status.clone()))
            .collect();
        Snapshot {
            seeded: BTreeMap::from([("A".into(), 100), ("B".into(), 10)]),
            products: BTreeMap::from([
                (
                    "A".into(),
                    ProductState {
                        sku: "A".into(),
                        on_hand: 98,
                        reserved: 0,
                    },
                ),
                (
                    "B".into(),
                    ProductState {
                        sku: "B".into(),
                        on_hand: 6,
                        reserved: 0,
                    },
                ),
            ]),
            orders: vec![confirmed, failed, confirmed2],
            placed,
            open_sagas: vec![],
            ledger,
            ledger_is_ours: true,
        }
    }

    #[test]
    fn a_consistent_run_passes() {
        let s = consistent();
        assert_eq!(check(&s), Vec::<String>::new());
        assert_eq!(coverage(&s)["captures"], 2);
    }

    /// Each seeded inconsistency is found, and named.
    #[test]
    fn seeded_inconsistencies_are_found() {
        type Break = fn(&mut Snapshot);
        let cases: Vec<(&str, Break, &str)> = vec![
            (
                "leaked reservation",
                |s| s.products.get_mut("A").unwrap().reserved = 5,
                "5 units still reserved",
            ),
            (
                "oversold",
                |s| s.products.get_mut("B").unwrap().on_hand = 5,
                "on hand 5 but seeded 10 minus confirmed 4 is 6",
            ),
            (
                "missing product",
                |s| {
                    s.products.remove("B");
                },
                "product B: missing",
            ),
            (
                "order left open",
                |s| s.orders[1].status = "reserved".into(),
                "still reserved after the drain",
            ),
            (
                "lost order",
                |s| {
                    s.orders.pop();
                },
                "placed (201) but not found",
            ),
            (
                "status changed",
                |s| s.orders[0].status = "failed".into(),
                "the run saw it confirmed",
            ),
            (
                "saga left running",
                |s| {
                    s.open_sagas.push(OpenSaga {
                        saga_id: Uuid::new_v4(),
                        correlation_id: s.orders[0].id,
                        status: "running".into(),
                    })
                },
                "still running",
            ),
            (
                "confirmed, not captured",
                |s| {
                    s.ledger.remove(0);
                },
                "0 captured authorization(s)",
            ),
            (
                "captured twice",
                |s| {
                    let again = s.ledger[0].clone();
                    s.ledger.push(again);
                },
                "2 captured authorization(s)",
            ),
            (
                "wrong amount",
                |s| s.ledger[0].authorization.captured_amount = Some(dec("29.99")),
                "captured 29.99 but its total is 30.00",
            ),
            (
                "failed but charged",
                |s| {
                    let failed = s.orders[1].clone();
                    s.ledger
                        .push(entry(&failed, AuthorizationStatus::Captured, Some("50.00")));
                },
                "charged 50.00 without being confirmed",
            ),
            (
                "hold not voided",
                |s| {
                    let failed = s.orders[1].clone();
                    s.ledger
                        .push(entry(&failed, AuthorizationStatus::Authorized, None));
                },
                "still held",
            ),
            (
                "charge without order",
                |s| {
                    let ghost = order("confirmed", "1.00", &[("A", 1)]);
                    s.ledger
                        .push(entry(&ghost, AuthorizationStatus::Captured, Some("1.00")));
                },
                "the service does not have",
            ),
        ];
        for (name, break_it, expected) in cases {
            let mut s = consistent();
            break_it(&mut s);
            let problems = check(&s);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{name}: expected a problem containing {expected:?}, got {problems:?}"
            );
        }
    }

    #[test]
    fn cache_drift_is_named() {
        let stored = consistent().products;
        let mut seen = stored.clone();
        assert!(drift(&seen, &stored).is_empty());
        seen.get_mut("B").unwrap().on_hand = 10;
        assert_eq!(
            drift(&seen, &stored),
            vec![
                "stock cache drift on B: the API shows on hand 10 / reserved 0, the database 6 / 0"
            ]
        );
    }

    #[test]
    fn a_shared_ledger_is_not_blamed_for_others_payments() {
        let mut s = consistent();
        s.ledger_is_ours = false;
        let other = order("confirmed", "1.00", &[("Z", 1)]);
        s.ledger
            .push(entry(&other, AuthorizationStatus::Captured, Some("1.00")));
        assert_eq!(check(&s), Vec::<String>::new());
    }
}
