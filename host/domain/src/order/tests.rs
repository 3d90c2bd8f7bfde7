//! Given/when/then tests of the order aggregate, and the whole lifecycle
//! table: every (status, action) pair, legal or not.

use super::*;
use crate::aggregate::DomainEvent;
use crate::product::Quantity;
use chrono::TimeZone;
use serde_json::json;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn line(sku: &str, qty: i64, price: &str) -> OrderLine {
    OrderLine {
        sku: Sku::parse(sku).unwrap(),
        name: format!("product {sku}"),
        quantity: Quantity::parse(qty).unwrap(),
        unit_price: price.parse().unwrap(),
    }
}

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced {
        customer_id: Uuid::nil(),
        currency: eur(),
        lines: vec![line("A", 2, "10.00")],
        adjustments: vec![],
        total: "20.00".parse().unwrap(),
        payment_ref: Some("…k_ok".into()),
        plugins: vec![],
    }
}

/// Given these events, when this command, then...
struct Given(Order);

fn given(events: &[OrderEvent]) -> Given {
    Given(Order::from_events(
        Uuid::nil(),
        events.iter().enumerate().map(|(i, e)| (e, at(i as i64))),
    ))
}

impl Given {
    fn when(self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        self.0.handle(command)
    }
}

/// Events that bring a new order to `status`.
fn history(status: OrderStatus) -> Vec<OrderEvent> {
    use OrderEvent as E;
    let mut h = vec![placed()];
    let path: &[E] = match status {
        OrderStatus::Pending => &[],
        OrderStatus::Reserved => &[E::OrderReserved],
        OrderStatus::Paid => &[
            E::OrderReserved,
            E::OrderPaid {
                payment_id: "p".into(),
            },
        ],
        OrderStatus::Confirmed => &[
            E::OrderReserved,
            E::OrderPaid {
                payment_id: "p".into(),
            },
            E::OrderConfirmed,
        ],
        OrderStatus::Shipped => &[
            E::OrderReserved,
            E::OrderPaid {
                payment_id: "p".into(),
            },
            E::OrderConfirmed,
            E::OrderShipped,
        ],
        OrderStatus::Delivered => &[
            E::OrderReserved,
            E::OrderPaid {
                payment_id: "p".into(),
            },
            E::OrderConfirmed,
            E::OrderShipped,
            E::OrderDelivered,
        ],
        OrderStatus::Cancelled => &[E::OrderCancelled {
            reason: None,
            restocked: vec![],
        }],
        OrderStatus::Rejected => &[E::OrderRejected {
            reason: "no".into(),
        }],
        OrderStatus::Failed => &[E::OrderFailed {
            reason: "declined".into(),
        }],
        OrderStatus::Refunded => &[
            E::OrderReserved,
            E::OrderPaid {
                payment_id: "p".into(),
            },
            E::OrderRefunded {
                reason: None,
                refund_id: None,
                amount: None,
                restocked: vec![],
            },
        ],
    };
    h.extend_from_slice(path);
    h
}

fn command_for(action: OrderAction) -> OrderCommand {
    match action {
        OrderAction::ChangeItems => OrderCommand::ChangeItems {
            lines: vec![line("B", 1, "5.00")],
            adjustments: vec![],
            plugins: vec![],
        },
        OrderAction::MarkReserved => OrderCommand::MarkReserved,
        OrderAction::Reject => OrderCommand::Reject {
            reason: "invalid".into(),
        },
        OrderAction::RecordPayment => OrderCommand::RecordPayment {
            payment_id: "pay_1".into(),
        },
        OrderAction::Confirm => OrderCommand::Confirm,
        OrderAction::Ship => OrderCommand::Ship,
        OrderAction::Deliver => OrderCommand::Deliver,
        OrderAction::Cancel => OrderCommand::Cancel { reason: None },
        OrderAction::Fail => OrderCommand::Fail {
            reason: "declined".into(),
        },
        OrderAction::StartPayment => OrderCommand::StartPayment,
        OrderAction::Refund => OrderCommand::RequestRefund {
            refund_id: Uuid::nil(),
            amount: None,
            lines: vec![],
            reason: None,
        },
        OrderAction::SettleRefund => OrderCommand::RecordRefund {
            refund_id: Uuid::nil(),
        },
    }
}

/// The lifecycle of DESIGN.md written out by hand, independently of
/// `OrderStatus::after`: every legal (from, action, to).
const LEGAL: &[(OrderStatus, OrderAction, OrderStatus)] = {
    use OrderAction as A;
    use OrderStatus as S;
    &[
        (S::Pending, A::ChangeItems, S::Pending),
        (S::Reserved, A::ChangeItems, S::Reserved),
        (S::Pending, A::MarkReserved, S::Reserved),
        (S::Pending, A::Reject, S::Rejected),
        (S::Reserved, A::RecordPayment, S::Paid),
        (S::Paid, A::Confirm, S::Confirmed),
        (S::Confirmed, A::Ship, S::Shipped),
        (S::Shipped, A::Deliver, S::Delivered),
        (S::Pending, A::Cancel, S::Cancelled),
        (S::Reserved, A::Cancel, S::Cancelled),
        (S::Paid, A::Cancel, S::Cancelled),
        (S::Confirmed, A::Cancel, S::Cancelled),
        (S::Pending, A::Fail, S::Failed),
        (S::Reserved, A::Fail, S::Failed),
        (S::Paid, A::Fail, S::Failed),
        (S::Reserved, A::StartPayment, S::Reserved),
        // Asking for a refund changes no status; settling it may.
        (S::Confirmed, A::Refund, S::Confirmed),
        (S::Shipped, A::Refund, S::Shipped),
        (S::Delivered, A::Refund, S::Delivered),
    ]
};

#[test]
fn every_transition_legal_and_illegal() {
    let mut legal_seen = 0;
    for from in OrderStatus::ALL {
        let order = given(&history(from)).0;
        assert_eq!(order.status, Some(from), "history reaches {from}");
        for action in OrderAction::ALL {
            let expected = LEGAL
                .iter()
                .find(|(f, a, _)| *f == from && *a == action)
                .map(|(_, _, to)| *to);
            let result = order.handle(command_for(action));
            if action == OrderAction::SettleRefund && from.after(action).is_some() {
                // Legal in the status, but only for the pending refund.
                assert_eq!(result, Err(OrderError::NoSuchRefund(Uuid::nil())));
                continue;
            }
            if action == OrderAction::Refund && from == OrderStatus::Cancelled {
                // Legal only once the cancelled order had been paid for.
                assert_eq!(result, Err(OrderError::IllegalTransition { action, from }));
                continue;
            }
            match expected {
                Some(to) => {
                    legal_seen += 1;
                    let events = result.unwrap_or_else(|e| panic!("{from} --{action:?}--> : {e}"));
                    let mut next = order.clone();
                    for e in &events {
                        next.apply(e, at(100));
                    }
                    assert_eq!(next.status, Some(to), "{from} --{action:?}-->");
                    assert_eq!(next.version(), order.version() + events.len() as u64);
                }
                None => assert_eq!(
                    result,
                    Err(OrderError::IllegalTransition { action, from }),
                    "{from} --{action:?}--> must be illegal"
                ),
            }
        }
    }
    assert_eq!(legal_seen, LEGAL.len());
}

#[test]
fn terminal_statuses_allow_nothing_but_refunds_after_delivery_or_cancel() {
    for from in OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
        let allowed: Vec<_> = OrderAction::ALL
            .into_iter()
            .filter(|a| from.after(*a).is_some())
            .collect();
        if matches!(from, OrderStatus::Delivered | OrderStatus::Cancelled) {
            assert_eq!(
                allowed,
                vec![OrderAction::Refund, OrderAction::SettleRefund]
            );
        } else {
            assert!(allowed.is_empty(), "{from} allows {allowed:?}");
        }
    }
}

#[test]
fn placing_computes_the_total_from_lines() {
    let events = given(&[])
        .when(OrderCommand::Place(PlaceOrder {
            order_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            currency: eur(),
            lines: vec![line("A", 3, "1.10"), line("B", 1, "0.05")],
            payment_token: None,
            adjustments: vec![],
            plugins: vec![],
        }))
        .unwrap();
    let [OrderEvent::OrderPlaced { total, .. }] = events.as_slice() else {
        panic!("expected one OrderPlaced, got {events:?}")
    };
    assert_eq!(total.to_string(), "3.35");
}

#[test]
fn placing_twice_is_refused() {
    let place = OrderCommand::Place(PlaceOrder {
        order_id: Uuid::nil(),
        customer_id: Uuid::nil(),
        currency: eur(),
        lines: vec![line("A", 1, "1.00")],
        payment_token: None,
        adjustments: vec![],
        plugins: vec![],
    });
    assert_eq!(
        given(&[placed()]).when(place),
        Err(OrderError::AlreadyPlaced)
    );
}

#[test]
fn commands_on_a_missing_order_are_refused() {
    assert_eq!(
        given(&[]).when(OrderCommand::Confirm),
        Err(OrderError::NotPlaced)
    );
}

#[test]
fn bad_lines_are_refused() {
    let place = |lines: Vec<OrderLine>| {
        given(&[]).when(OrderCommand::Place(PlaceOrder {
            order_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            currency: eur(),
            lines,
            payment_token: None,
            adjustments: vec![],
            plugins: vec![],
        }))
    };
    assert_eq!(place(vec![]), Err(OrderError::NoLines));
    assert_eq!(
        place(vec![line("A", 1, "1.00"), line("A", 2, "1.00")]),
        Err(OrderError::DuplicateSku(Sku::parse("A").unwrap()))
    );
    let many = (0..=MAX_LINES)
        .map(|i| line(&format!("S{i}"), 1, "1.00"))
        .collect();
    assert_eq!(place(many), Err(OrderError::TooManyLines));
    assert!(matches!(
        place(vec![line("A", 1, "1.001")]),
        Err(OrderError::Money(_))
    ));
}

#[test]
fn changing_items_reprices_and_keeps_status() {
    let events = given(&history(OrderStatus::Reserved))
        .when(OrderCommand::ChangeItems {
            lines: vec![line("B", 4, "2.50")],
            adjustments: vec![],
            plugins: vec![],
        })
        .unwrap();
    assert_eq!(
        events,
        vec![OrderEvent::OrderItemsChanged {
            lines: vec![line("B", 4, "2.50")],
            adjustments: vec![],
            total: "10.00".parse().unwrap(),
            plugins: vec![],
        }]
    );
}

#[test]
fn rehydration_tracks_version_reason_and_timestamps() {
    let order = given(&history(OrderStatus::Failed)).0;
    assert_eq!(order.version(), 2);
    assert_eq!(order.status_reason.as_deref(), Some("declined"));
    assert_eq!(order.created_at, Some(at(0)));
    assert_eq!(order.updated_at, Some(at(1)));
}

#[test]
fn events_round_trip_through_json_with_stable_type_names() {
    for status in OrderStatus::ALL {
        for event in history(status) {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.event_type());
            let back: OrderEvent = serde_json::from_value(json).unwrap();
            assert_eq!(back, event);
        }
    }
}

#[test]
fn adjustments_set_the_total_and_are_checked() {
    use crate::pricing::{Adjustment, AdjustmentKind};
    let adj = |kind, amount: &str, line| Adjustment {
        plugin: "bulk".into(),
        label: "x".into(),
        kind,
        amount: amount.parse().unwrap(),
        line,
    };
    let place = |adjustments| {
        given(&[]).when(OrderCommand::Place(PlaceOrder {
            order_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            currency: eur(),
            lines: vec![line("A", 10, "3.00")],
            payment_token: None,
            adjustments,
            plugins: vec![],
        }))
    };
    let events = place(vec![
        adj(AdjustmentKind::Discount, "3", Some(0)),
        adj(AdjustmentKind::Tax, "0.5", None),
    ])
    .unwrap();
    let [
        OrderEvent::OrderPlaced {
            total, adjustments, ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(total.to_string(), "27.50");
    assert_eq!(adjustments[1].amount.to_string(), "0.50");
    assert!(matches!(
        place(vec![adj(AdjustmentKind::Discount, "1", Some(3))]),
        Err(OrderError::Adjustment(_))
    ));
    let order = given(&events).0;
    assert_eq!(order.subtotal().unwrap().to_string(), "30.00");
    assert_eq!(order.total.to_string(), "27.50");
}

mod refunds {
    use super::*;

    fn confirmed() -> Order {
        given(&history(OrderStatus::Confirmed)).0
    }

    fn after(order: &Order, command: OrderCommand) -> Result<Order, OrderError> {
        let mut next = order.clone();
        for e in order.handle(command)? {
            next.apply(&e, at(50));
        }
        Ok(next)
    }

    fn request(amount: Option<&str>, lines: Vec<RefundLine>) -> OrderCommand {
        OrderCommand::RequestRefund {
            refund_id: Uuid::from_u128(7),
            amount: amount.map(|a| a.parse().unwrap()),
            lines,
            reason: Some("damaged".into()),
        }
    }

    fn settle() -> OrderCommand {
        OrderCommand::RecordRefund {
            refund_id: Uuid::from_u128(7),
        }
    }

    fn units(sku: &str, quantity: i64, restock: bool) -> RefundLine {
        RefundLine {
            sku: Sku::parse(sku).unwrap(),
            quantity: Quantity::parse(quantity).unwrap(),
            restock,
        }
    }

    #[test]
    fn partial_refunds_add_up_to_what_was_captured_and_never_more() {
        let shipped = given(&history(OrderStatus::Shipped)).0;
        assert_eq!(shipped.refundable().to_string(), "20.00");
        let asked = after(&shipped, request(Some("5"), vec![])).unwrap();
        // One pending at a time, and shipping waits for it.
        assert_eq!(
            asked.handle(request(Some("1"), vec![])),
            Err(OrderError::RefundInProgress)
        );
        let first = after(&asked, settle()).unwrap();
        assert_eq!(first.refunded.to_string(), "5.00");
        assert_eq!(first.status, Some(OrderStatus::Shipped));
        assert_eq!(
            first.handle(request(Some("15.01"), vec![])),
            Err(OrderError::RefundTooLarge {
                refundable: "15.00".parse().unwrap()
            })
        );
        assert!(matches!(
            first.handle(request(Some("0.001"), vec![])),
            Err(OrderError::Money(_))
        ));
        let rest = after(&after(&first, request(None, vec![])).unwrap(), settle()).unwrap();
        assert_eq!(rest.refunded.to_string(), "20.00");
        assert_eq!(rest.status, Some(OrderStatus::Refunded));
        assert_eq!(
            rest.handle(request(Some("1"), vec![])),
            Err(OrderError::IllegalTransition {
                action: OrderAction::Refund,
                from: OrderStatus::Refunded
            })
        );
    }

    #[test]
    fn a_return_restocks_only_marked_units_and_never_more_than_sold() {
        let delivered = given(&history(OrderStatus::Delivered)).0;
        let events = delivered
            .handle(request(Some("10"), vec![units("A", 1, true)]))
            .unwrap();
        let [OrderEvent::OrderRefundRequested { restock, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(restock.len(), 1);
        let once = after(
            &after(&delivered, request(Some("10"), vec![units("A", 1, true)])).unwrap(),
            settle(),
        )
        .unwrap();
        assert_eq!(once.restockable(&Sku::parse("A").unwrap()), 1);
        assert_eq!(
            once.handle(request(Some("0"), vec![units("A", 2, true)])),
            Err(OrderError::TooManyUnits {
                sku: Sku::parse("A").unwrap(),
                most: 1
            })
        );
        assert_eq!(
            once.handle(request(Some("1"), vec![units("Z", 1, true)])),
            Err(OrderError::NotOnOrder(Sku::parse("Z").unwrap()))
        );
        assert_eq!(
            once.handle(request(Some("0"), vec![units("A", 1, false)])),
            Err(OrderError::NothingToRefund)
        );
    }

    #[test]
    fn a_full_refund_before_shipping_and_a_cancel_of_a_confirmed_order_put_every_unit_back() {
        let full = after(
            &after(&confirmed(), request(None, vec![])).unwrap(),
            settle(),
        )
        .unwrap();
        assert_eq!(full.status, Some(OrderStatus::Refunded));
        assert_eq!(full.restocked.values().sum::<u32>(), 2);

        let cancelled = after(&confirmed(), OrderCommand::Cancel { reason: None }).unwrap();
        assert_eq!(cancelled.restocked.values().sum::<u32>(), 2);
        // The money follows, and the order stays cancelled.
        let refunded = after(&after(&cancelled, request(None, vec![])).unwrap(), settle()).unwrap();
        assert_eq!(refunded.status, Some(OrderStatus::Cancelled));
        assert_eq!(refunded.refunded.to_string(), "20.00");
        assert_eq!(refunded.restocked.values().sum::<u32>(), 2);
    }

    #[test]
    fn a_given_up_refund_gives_nothing_back_and_frees_the_order() {
        let asked = after(&confirmed(), request(Some("5"), vec![])).unwrap();
        let given_up = after(
            &asked,
            OrderCommand::AbandonRefund {
                refund_id: Uuid::from_u128(7),
                reason: "x".repeat(2000),
            },
        )
        .unwrap();
        assert!(given_up.pending_refund.is_none());
        assert!(given_up.refunded.is_zero());
        assert!(given_up.handle(OrderCommand::Ship).is_ok());
        assert_eq!(
            asked.handle(OrderCommand::Ship),
            Err(OrderError::RefundInProgress)
        );
    }

    #[test]
    fn reasons_the_service_composes_are_cut_never_refused() {
        let long = "é".repeat(MAX_REASON_LEN + 40);
        let order = given(&history(OrderStatus::Paid)).0;
        let failed = after(
            &order,
            OrderCommand::Fail {
                reason: long.clone(),
            },
        )
        .unwrap();
        let reason = failed.status_reason.unwrap();
        assert_eq!(reason.chars().count(), MAX_REASON_LEN);
        assert!(reason.ends_with('…'));
        assert_eq!(bounded_reason("short"), "short");
    }

    #[test]
    fn a_payment_starts_once() {
        let reserved = given(&history(OrderStatus::Reserved)).0;
        let paying = after(&reserved, OrderCommand::StartPayment).unwrap();
        assert_eq!(paying.status, Some(OrderStatus::Reserved));
        assert_eq!(
            paying.handle(OrderCommand::StartPayment),
            Err(OrderError::PaymentStarted)
        );
    }
}

#[test]
fn a_payment_token_is_recorded_masked_and_old_events_are_redacted() {
    assert_eq!(super::payment_ref_of("tok_4242424242424242"), "…4242");
    assert_eq!(super::payment_ref_of("tok_ok"), "…");
    assert_eq!(super::payment_ref_of("…4242"), "…4242");

    // A placement records the reference, never the token.
    let events = given(&[])
        .when(OrderCommand::Place(PlaceOrder {
            order_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            currency: eur(),
            lines: vec![line("A", 1, "10.00")],
            payment_token: Some("tok_visa_secret_1234".into()),
            adjustments: vec![],
            plugins: vec![],
        }))
        .unwrap();
    let json = serde_json::to_value(&events[0]).unwrap();
    assert!(!json.to_string().contains("secret"), "{json}");
    assert_eq!(json["data"]["payment_ref"], "…1234");

    // An event written before masking: its token is served as a reference.
    let mut old = json!({"customer_id": Uuid::nil(), "payment_token": "tok_visa_secret_1234"});
    assert!(super::redact_event_data("OrderPlaced", &mut old));
    assert_eq!(
        old,
        json!({"customer_id": Uuid::nil(), "payment_ref": "…1234"})
    );
    assert!(!super::redact_event_data("OrderPlaced", &mut old));
    let mut other = json!({"payment_token": "x"});
    assert!(!super::redact_event_data("OrderConfirmed", &mut other));
    // And it still folds: the order keeps the masked reference.
    let legacy: OrderEvent = serde_json::from_value(json!({"type": "OrderPlaced", "data": {
        "customer_id": Uuid::nil(), "currency": "EUR", "lines": [], "total": "0",
        "payment_token": "tok_visa_secret_1234"}}))
    .unwrap();
    let order = Order::from_events(Uuid::nil(), [(&legacy, at(0))]);
    assert_eq!(order.payment_ref.as_deref(), Some("…1234"));
}
