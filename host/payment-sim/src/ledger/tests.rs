//! The ledger's rules, without a server.

use super::*;
use AuthorizationStatus as S;
use commerce_domain::Currency;

fn request(token: &str, amount: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        order_id: Uuid::new_v4(),
        amount: amount.parse().unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        token: token.into(),
    }
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn authorized(ledger: &mut Ledger) -> String {
    let a = ledger.authorize(&request(TOKEN_OK, "10.00")).unwrap();
    assert_eq!(a.status, S::Authorized);
    a.id
}

#[test]
fn capture_then_refund() {
    let mut ledger = Ledger::default();
    let id = authorized(&mut ledger);
    let a = ledger.capture(&id, dec("7.5")).unwrap();
    assert_eq!(
        (a.status, a.captured_amount),
        (S::Captured, Some(dec("7.50")))
    );
    assert_eq!(
        ledger.refund(&id, dec("7.51")),
        Err(LedgerError::InvalidAmount(
            "7.51 is more than the 7.50 left to refund".into()
        ))
    );
    // Partial refunds add up, and stay within what was captured.
    let a = ledger.refund(&id, dec("2.50")).unwrap();
    assert_eq!(
        (a.status, a.refunded_amount),
        (S::Captured, Some(dec("2.50")))
    );
    assert!(ledger.refund(&id, dec("5.01")).is_err());
    let a = ledger.refund(&id, dec("5.00")).unwrap();
    assert_eq!(
        (a.status, a.refunded_amount),
        (S::Refunded, Some(dec("7.50")))
    );
    let entry = ledger.get(&id).unwrap();
    assert_eq!((entry.captures, entry.voids, entry.refunds), (1, 0, 2));
}

#[test]
fn a_capture_is_applied_once() {
    let mut ledger = Ledger::default();
    let id = authorized(&mut ledger);
    ledger.capture(&id, dec("10")).unwrap();
    assert_eq!(
        ledger.capture(&id, dec("10")),
        Err(LedgerError::IllegalTransition {
            action: "capture",
            status: S::Captured
        })
    );
    assert_eq!(ledger.get(&id).unwrap().captures, 1);
}

#[test]
fn illegal_transitions_change_nothing() {
    // (how to reach the state, the refused action)
    type Step = fn(&mut Ledger, &str) -> Result<Authorization, LedgerError>;
    let capture: Step = |l, id| l.capture(id, dec("1"));
    let void: Step = |l, id| l.void(id);
    let refund: Step = |l, id| l.refund(id, dec("1"));
    let cases: [(&[Step], Step, S); 6] = [
        (&[void], capture, S::Voided),
        (&[void], refund, S::Voided),
        (&[void], void, S::Voided),
        (&[capture], void, S::Captured),
        (&[], refund, S::Authorized),
        (&[capture, refund], capture, S::Refunded),
    ];
    for (i, (given, when, status)) in cases.into_iter().enumerate() {
        let mut ledger = Ledger::default();
        let id = authorized(&mut ledger);
        for step in given {
            step(&mut ledger, &id).unwrap();
        }
        let before = ledger.get(&id).unwrap().clone();
        let err = when(&mut ledger, &id).unwrap_err();
        assert!(
            matches!(err, LedgerError::IllegalTransition { status: s, .. } if s == status),
            "case {i}: {err:?}"
        );
        assert_eq!(ledger.get(&id).unwrap(), &before, "case {i}");
    }
}

#[test]
fn amounts_are_checked() {
    let mut ledger = Ledger::default();
    for bad in ["0", "-1", "1.001"] {
        assert!(
            matches!(
                ledger.authorize(&request(TOKEN_OK, bad)),
                Err(LedgerError::InvalidAmount(_))
            ),
            "{bad}"
        );
    }
    let id = authorized(&mut ledger);
    for bad in ["0", "10.01", "0.001"] {
        assert!(
            matches!(
                ledger.capture(&id, dec(bad)),
                Err(LedgerError::InvalidAmount(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(ledger.entries().len(), 1);
    assert_eq!(ledger.get(&id).unwrap().authorization.status, S::Authorized);
}

#[test]
fn declines_are_recorded_and_cannot_be_captured() {
    let mut ledger = Ledger::default();
    let request = request(TOKEN_DECLINE, "5");
    let Err(LedgerError::Declined {
        authorization_id, ..
    }) = ledger.authorize(&request)
    else {
        panic!("not declined")
    };
    assert_eq!(ledger.for_order(request.order_id).len(), 1);
    assert!(matches!(
        ledger.capture(&authorization_id, dec("5")),
        Err(LedgerError::IllegalTransition {
            status: S::Declined,
            ..
        })
    ));
    assert_eq!(
        ledger.authorize(&super::tests::request("tok_nope", "5")),
        Err(LedgerError::InvalidToken)
    );
    assert_eq!(
        ledger.capture("auth_x", dec("1")),
        Err(LedgerError::NotFound("auth_x".into()))
    );
}

#[test]
fn idempotency_replays_and_refuses_another_request() {
    let mut ledger = Ledger::default();
    let request = request(TOKEN_OK, "3");
    let run = |ledger: &mut Ledger, key: &str, fingerprint: &str| {
        ledger.once(key, fingerprint, |l| {
            Reply::from_result(StatusCode::CREATED, l.authorize(&request))
        })
    };
    let first = run(&mut ledger, "k1", "a");
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(run(&mut ledger, "k1", "a"), first);
    assert_eq!(ledger.entries().len(), 1);
    let reused = run(&mut ledger, "k1", "b");
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.body["type"], "/problems/idempotency-key-reused");
    assert_ne!(run(&mut ledger, "k2", "a").body["id"], first.body["id"]);
    assert_eq!(ledger.entries().len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Capture(i64),
    Void,
    Refund(i64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    // Cents from -1 to 12.00: some above the 10.00 authorized.
    prop_oneof![
        (-100i64..1200).prop_map(Op::Capture),
        Just(Op::Void),
        (-100i64..1200).prop_map(Op::Refund),
    ]
}

proptest::proptest! {
    /// Whatever is asked, in any order: at most one capture and one
    /// void; never both captured and voided; never more taken
    /// than authorized nor given back than taken; and the status says
    /// what was applied.
    #[test]
    fn the_state_machine_holds_under_any_sequence(ops in proptest::collection::vec(op(), 0..12)) {
        let mut ledger = Ledger::default();
        let id = authorized(&mut ledger);
        for op in ops {
            let _ = match op {
                Op::Capture(cents) => ledger.capture(&id, Decimal::new(cents, 2)),
                Op::Void => ledger.void(&id),
                Op::Refund(cents) => ledger.refund(&id, Decimal::new(cents, 2)),
            };
            let e = ledger.get(&id).unwrap();
            let a = &e.authorization;
            proptest::prop_assert!(e.captures <= 1 && e.voids <= 1);
            proptest::prop_assert!(e.refunds == 0 || e.captures == 1);
            proptest::prop_assert!(e.captures + e.voids <= 1);
            proptest::prop_assert!(a.captured_amount.unwrap_or_default() <= a.amount);
            proptest::prop_assert!(a.refunded_amount.unwrap_or_default() <= a.captured_amount.unwrap_or_default());
            let all_back = a.captured_amount.is_some()
                && a.refunded_amount == a.captured_amount;
            let expected = match (e.captures, e.voids, e.refunds) {
                (0, 0, 0) => S::Authorized,
                (1, 0, _) if all_back => S::Refunded,
                (1, 0, _) => S::Captured,
                (0, 1, 0) => S::Voided,
                other => panic!("impossible counts {other:?}"),
            };
            proptest::prop_assert_eq!(a.status, expected);
        }
    }
}

#[test]
fn server_errors_are_not_stored() {
    let mut ledger = Ledger::default();
    let fail =
        |_: &mut Ledger| Reply::problem(StatusCode::INTERNAL_SERVER_ERROR, "x", "x", Map::new());
    ledger.once("k", "f", fail);
    assert!(ledger.replay("k", "f").is_none());
}

#[test]
fn the_books_are_bounded_oldest_first() {
    let mut ledger = Ledger::bounded(10);
    let ids: Vec<String> = (0..25).map(|_| authorized(&mut ledger)).collect();
    assert!(ledger.entries().len() <= 10, "{}", ledger.entries().len());
    let newest = ids.last().unwrap();
    assert_eq!(ledger.get(newest).unwrap().authorization.id, *newest);
    assert!(ledger.get(&ids[0]).is_none());
    // What is kept still works, by id.
    ledger.capture(newest, dec("10.00")).unwrap();
    assert!(matches!(
        ledger.capture(&ids[0], dec("10.00")),
        Err(LedgerError::NotFound(_))
    ));
    // Stored answers too: the oldest keys are forgotten first.
    for n in 0..25 {
        ledger.once(&format!("k{n}"), "f", |_| {
            Reply::ok(StatusCode::OK, &json!({"n": n}))
        });
    }
    assert!(ledger.replay("k0", "f").is_none());
    assert!(ledger.replay("k24", "f").is_some());
}
