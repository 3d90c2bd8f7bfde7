//! What-if replay of a plugin version (issue 17): re-prices or
//! re-validates recorded orders with a stored version, from what the
//! orders' events hold (the cart as pricing saw it: lines, unit prices,
//! currency, customer), and compares the new answer with the recorded one.
//!
//! Replaying the version that priced an order gives back exactly the
//! adjustments recorded on it: pricing is a pure function of the cart and
//! the version's configuration, and this is where that is shown.
//!
//! A replay runs in the background of the replica that was asked (one
//! task, the plugin calls on one blocking thread, never on a request's
//! path), pages through orders oldest first, and is bounded: at most
//! [`MAX_REPLAY_ORDERS`] orders, [`REPLAY_DEADLINE`] of wall time, and a
//! report that lists at most [`REPLAY_LISTED`] differing orders and
//! [`REPLAY_LISTED_BYTES`] of their answers (the others are counted).
//! This module decides what was recorded and what differs; it does no
//! I/O of its own beyond the ports.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::extensions::{PluginKind, Quote, Violation};
use super::orders::decode_event;
use super::plugins::{ReplayAnswer, ReplayInput};
use super::ports::{PluginRecord, StoredEvent};
use super::{AppError, Caller, Registry, now};
use commerce_domain::pricing::apply_adjustments;
use commerce_domain::{Adjustment, Order, OrderEvent, OrderStatus};

/// Most orders one replay reads.
pub const MAX_REPLAY_ORDERS: u32 = 100_000;
/// Orders a replay reads when the request does not say.
pub const DEFAULT_REPLAY_ORDERS: u32 = 1_000;
/// Wall time a replay may take; it then stops and says so.
pub const REPLAY_DEADLINE: Duration = Duration::from_secs(600);
/// Differing orders a report lists at most (all are counted).
pub const REPLAY_LISTED: usize = 1_000;
/// Bytes of recorded and replayed answers a report lists at most.
pub const REPLAY_LISTED_BYTES: usize = 8 << 20;
/// Orders read and replayed per round.
const PAGE: u32 = 200;
/// Reports a process keeps (the oldest finished ones are forgotten).
const REPORTS_KEPT: usize = 20;

/// Where a replay stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayState {
    Running,
    /// Every order in range was replayed.
    Done,
    /// Stopped at [`REPLAY_DEADLINE`]; the counts cover what was replayed.
    TimedOut,
    /// Stopped by an error (`error` says which); the counts cover what
    /// was replayed before it.
    Failed,
}

/// What a replay found: counts of every order, and the orders whose
/// answer differs or failed, each with the recorded and the new answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    pub id: Uuid,
    pub plugin: String,
    /// The version replayed.
    pub version: i64,
    pub kind: PluginKind,
    /// Orders placed from this instant on were read (all if absent).
    pub since: Option<DateTime<Utc>>,
    /// Most orders read.
    pub limit: u32,
    pub state: ReplayState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Orders replayed so far.
    pub orders: u64,
    /// Orders on which the version answered as recorded.
    pub same: u64,
    /// Orders on which it answered otherwise.
    pub differed: u64,
    /// Of those, orders whose total would change (pricing).
    pub totals_changed: u64,
    /// Orders on which the version failed (trap, fuel, bad output, ...).
    pub failed: u64,
    /// Differing and failed orders, oldest first, up to the report's
    /// bounds.
    pub differences: Vec<ReplayedOrder>,
    /// Differing or failed orders counted but not listed (over the bounds).
    pub unlisted: u64,
    /// Bytes of the answers listed in `differences`.
    #[serde(skip)]
    #[schema(ignore)]
    listed_bytes: usize,
}

/// One order on which the replayed version did not answer as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplayedOrder {
    pub order_id: Uuid,
    /// The version of the order's event that was replayed (its latest
    /// pricing: the placement or the last change of its items).
    pub event_version: u64,
    /// The version of this plugin recorded on that event; null when it
    /// took no part (it was not active, or it failed and was skipped).
    pub recorded_version: Option<i64>,
    /// `differed` or `failed`.
    pub outcome: ReplayOutcome,
    /// What the order records: `{adjustments, total}` (this plugin's
    /// adjustments, the order's total) or `{violations}`.
    #[schema(value_type = Object)]
    pub recorded: Value,
    /// What the version answered now, in the same shape, or `{error}`.
    #[schema(value_type = Object)]
    pub replayed: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcome {
    Same,
    Differed,
    Failed,
}

/// The replays this process ran, newest last.
#[derive(Default)]
pub struct Replays {
    reports: Mutex<VecDeque<Arc<Mutex<ReplayReport>>>>,
}

impl Replays {
    fn start(&self, report: ReplayReport) -> Arc<Mutex<ReplayReport>> {
        let report = Arc::new(Mutex::new(report));
        let mut reports = lock(&self.reports);
        while reports.len() >= REPORTS_KEPT {
            // Forget the oldest finished one; if all run, the oldest.
            let finished = reports
                .iter()
                .position(|r| lock(r).state != ReplayState::Running)
                .unwrap_or(0);
            reports.remove(finished);
        }
        reports.push_back(report.clone());
        report
    }

    fn get(&self, id: Uuid) -> Option<ReplayReport> {
        lock(&self.reports)
            .iter()
            .map(|r| lock(r).clone())
            .find(|r| r.id == id)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What an order records of one pricing (the latest), as a replay needs it.
#[derive(Debug, Clone)]
pub struct RecordedPricing {
    pub event_version: u64,
    pub quote: Quote,
    /// Every adjustment recorded, in the order they applied.
    pub adjustments: Vec<Adjustment>,
    pub total: Decimal,
    /// The version of the replayed plugin recorded on it.
    pub recorded_version: Option<i64>,
}

/// The latest pricing of order `id` in its `events` (its placement or the
/// last change of its items), with the quote that pricing was given;
/// `None` for an order with no placement.
pub fn recorded_pricing(
    id: Uuid,
    events: &[StoredEvent],
    plugin: &str,
) -> Result<Option<RecordedPricing>, AppError> {
    let decoded: Vec<(OrderEvent, DateTime<Utc>, u64)> = events
        .iter()
        .map(|e| decode_event(e).map(|event| (event, e.recorded_at, e.version)))
        .collect::<Result<_, _>>()?;
    let Some(at) = decoded.iter().rposition(|(e, ..)| {
        matches!(
            e,
            OrderEvent::OrderPlaced { .. } | OrderEvent::OrderItemsChanged { .. }
        )
    }) else {
        return Ok(None);
    };
    // The order as it stood when it was priced: its status then is what
    // validation saw; the placement gives customer and currency.
    let before = Order::from_events(id, decoded[..at].iter().map(|(e, t, _)| (e, *t)));
    let (lines, adjustments, total, plugins, customer_id, currency, status) = match &decoded[at].0 {
        OrderEvent::OrderPlaced {
            customer_id,
            currency,
            lines,
            adjustments,
            total,
            plugins,
            ..
        } => (
            lines,
            adjustments,
            *total,
            plugins,
            *customer_id,
            *currency,
            OrderStatus::Pending,
        ),
        OrderEvent::OrderItemsChanged {
            lines,
            adjustments,
            total,
            plugins,
        } => {
            let (Some(currency), Some(status)) = (before.currency, before.status) else {
                return Ok(None);
            };
            (
                lines,
                adjustments,
                *total,
                plugins,
                before.customer_id,
                currency,
                status,
            )
        }
        _ => unreachable!("found as a pricing event"),
    };
    Ok(Some(RecordedPricing {
        event_version: decoded[at].2,
        quote: Quote {
            order_id: id,
            customer_id,
            status,
            currency,
            lines: lines.clone(),
        },
        adjustments: adjustments.clone(),
        total,
        recorded_version: plugins.iter().find(|p| p.name == plugin).map(|p| p.version),
    }))
}

/// How the replayed answer compares with what `recorded` holds for
/// `plugin`; the order's entry when it is not the same.
pub fn compare(
    plugin: &str,
    recorded: &RecordedPricing,
    answer: Result<ReplayAnswer, String>,
) -> (ReplayOutcome, bool, ReplayedOrder) {
    let entry = |outcome, recorded_answer, replayed| ReplayedOrder {
        order_id: recorded.quote.order_id,
        event_version: recorded.event_version,
        recorded_version: recorded.recorded_version,
        outcome,
        recorded: recorded_answer,
        replayed,
    };
    match answer {
        Ok(ReplayAnswer::Adjustments(new)) => {
            let own: Vec<&Adjustment> = recorded
                .adjustments
                .iter()
                .filter(|a| a.plugin == plugin)
                .collect();
            let same = own.len() == new.len() && own.iter().zip(&new).all(|(a, b)| *a == b);
            let total = total_with(plugin, recorded, &new);
            let outcome = if same {
                ReplayOutcome::Same
            } else {
                ReplayOutcome::Differed
            };
            (
                outcome,
                total != recorded.total,
                entry(
                    outcome,
                    json!({ "adjustments": own, "total": recorded.total.to_string() }),
                    json!({ "adjustments": new, "total": total.to_string() }),
                ),
            )
        }
        Ok(ReplayAnswer::Violations(violations)) => {
            // A stored order passed validation: nothing was refused.
            let outcome = if violations.is_empty() {
                ReplayOutcome::Same
            } else {
                ReplayOutcome::Differed
            };
            let none: [Violation; 0] = [];
            (
                outcome,
                false,
                entry(
                    outcome,
                    json!({ "violations": none }),
                    json!({ "violations": violations }),
                ),
            )
        }
        Err(error) => (
            ReplayOutcome::Failed,
            false,
            entry(
                ReplayOutcome::Failed,
                Value::Null,
                json!({ "error": error }),
            ),
        ),
    }
}

/// The order's total had `plugin` answered `new`: its recorded
/// adjustments replaced by `new` where they stood (at the end if it had
/// none), the others kept.
fn total_with(plugin: &str, recorded: &RecordedPricing, new: &[Adjustment]) -> Decimal {
    let at = recorded
        .adjustments
        .iter()
        .position(|a| a.plugin == plugin)
        .unwrap_or(recorded.adjustments.len());
    let mut adjustments: Vec<Adjustment> = recorded.adjustments[..at]
        .iter()
        .filter(|a| a.plugin != plugin)
        .cloned()
        .collect();
    adjustments.extend(new.iter().cloned());
    adjustments.extend(
        recorded.adjustments[at..]
            .iter()
            .filter(|a| a.plugin != plugin)
            .cloned(),
    );
    let quote = &recorded.quote;
    let subtotal = quote
        .currency
        .total(quote.lines.iter().map(|l| (l.unit_price, l.quantity.get())))
        .unwrap_or_default();
    apply_adjustments(quote.currency, subtotal, &adjustments)
}

/// The first UUIDv7 of instant `t`: order ids placed at or after `t` sort
/// from it on.
pub fn first_id_at(t: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(t.timestamp_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

impl ReplayReport {
    /// A report of a replay of `record` that starts now.
    fn start(record: &PluginRecord, since: Option<DateTime<Utc>>, limit: u32) -> Self {
        ReplayReport {
            id: Uuid::now_v7(),
            plugin: record.name.clone(),
            version: record.version,
            kind: record.kind,
            since,
            limit,
            state: ReplayState::Running,
            error: None,
            started_at: now(),
            finished_at: None,
            orders: 0,
            same: 0,
            differed: 0,
            totals_changed: 0,
            failed: 0,
            differences: vec![],
            unlisted: 0,
            listed_bytes: 0,
        }
    }

    /// Counts one order, listing it within the bounds unless the same.
    fn file(&mut self, outcome: ReplayOutcome, total_changed: bool, entry: ReplayedOrder) {
        self.orders += 1;
        match outcome {
            ReplayOutcome::Same => {
                self.same += 1;
                return;
            }
            ReplayOutcome::Differed => self.differed += 1,
            ReplayOutcome::Failed => self.failed += 1,
        }
        self.totals_changed += u64::from(total_changed);
        if self.differences.len() < REPLAY_LISTED {
            let size = entry.recorded.to_string().len() + entry.replayed.to_string().len();
            if self.listed_bytes + size <= REPLAY_LISTED_BYTES {
                self.listed_bytes += size;
                self.differences.push(entry);
                return;
            }
        }
        self.unlisted += 1;
    }

    fn finish(&mut self, state: ReplayState, error: Option<String>) {
        self.state = state;
        self.error = error;
        self.finished_at = Some(now());
    }
}

impl Registry<'_> {
    /// Starts replaying `version` of `name` on up to `limit` recorded
    /// orders placed from `since` on (pricing or validation plugins); the
    /// report is read with [`Registry::replay_report`] on this replica.
    pub async fn start_replay(
        &self,
        caller: Caller,
        name: &str,
        version: i64,
        since: Option<DateTime<Utc>>,
        limit: Option<u32>,
    ) -> Result<ReplayReport, AppError> {
        super::plugins::admin(caller)?;
        let limit = limit.unwrap_or(DEFAULT_REPLAY_ORDERS);
        if limit == 0 || limit > MAX_REPLAY_ORDERS {
            return Err(AppError::Invalid(format!(
                "limit is {limit}; a replay reads 1 to {MAX_REPLAY_ORDERS} orders"
            )));
        }
        let record = self
            .store
            .list_plugins()
            .await?
            .into_iter()
            .find(|r| r.name == name && r.version == version)
            .ok_or(AppError::NotFound("plugin version"))?;
        if record.kind == PluginKind::SagaHook {
            return Err(AppError::Invalid(format!(
                "{name} is a saga hook; a replay re-prices or re-validates orders, so it takes pricing and validation plugins"
            )));
        }
        let bytes = self
            .store
            .plugin_bytes(name, version)
            .await?
            .ok_or(AppError::NotFound("plugin version"))?;
        let report = ReplayReport::start(&record, since, limit);
        let job = self.replays.start(report.clone());
        let app = self.app.clone();
        let bytes = Arc::new(bytes);
        self.background.spawn(async move {
            let started = tokio::time::Instant::now();
            let result = tokio::time::timeout(
                REPLAY_DEADLINE,
                run(&app, &job, &record, bytes, since, limit),
            )
            .await;
            let mut report = lock(&job);
            match result {
                Ok(Ok(())) => report.finish(ReplayState::Done, None),
                Ok(Err(e)) => {
                    tracing::warn!(plugin = %report.plugin, version = report.version, error = %e, "plugin replay failed");
                    report.finish(ReplayState::Failed, Some(e.to_string()));
                }
                Err(_) => report.finish(ReplayState::TimedOut, None),
            }
            tracing::info!(plugin = %report.plugin, version = report.version, orders = report.orders,
                same = report.same, differed = report.differed, failed = report.failed,
                elapsed_ms = started.elapsed().as_millis() as u64, state = ?report.state, "plugin replay finished");
        });
        tracing::info!(plugin = %name, version, limit, ?since, id = %report.id, "plugin replay started");
        Ok(report)
    }

    /// A replay's report (running or finished) on this replica.
    pub fn replay_report(
        &self,
        caller: Caller,
        name: &str,
        id: Uuid,
    ) -> Result<ReplayReport, AppError> {
        super::plugins::admin(caller)?;
        self.replays
            .get(id)
            .filter(|r| r.plugin == name)
            .ok_or(AppError::NotFound("plugin replay"))
    }
}

/// Pages through the orders, replays each page on one blocking thread and
/// files the answers in `job`.
async fn run(
    app: &super::App,
    job: &Mutex<ReplayReport>,
    record: &PluginRecord,
    bytes: Arc<Vec<u8>>,
    since: Option<DateTime<Utc>>,
    limit: u32,
) -> Result<(), AppError> {
    let mut from = since.map(first_id_at);
    let mut left = limit;
    while left > 0 {
        let ids = app.store.order_ids_from(from, PAGE.min(left)).await?;
        let Some(last) = ids.last() else { break };
        from = Some(next_id(*last));
        left = left.saturating_sub(u32::try_from(ids.len()).unwrap_or(u32::MAX));
        let mut recorded = Vec::with_capacity(ids.len());
        for id in ids {
            let events = app.store.load_stream(id).await?;
            if let Some(pricing) = recorded_pricing(id, &events, &record.name)? {
                recorded.push(pricing);
            }
        }
        let inputs = recorded
            .iter()
            .map(|r| ReplayInput {
                quote: r.quote.clone(),
                total: r.total,
            })
            .collect();
        let answers = app
            .plugins
            .replay(record, bytes.clone(), inputs)
            .await
            .map_err(|e| AppError::Invalid(format!("the version cannot be replayed: {e}")))?;
        let mut report = lock(job);
        for (pricing, answer) in recorded.iter().zip(answers) {
            let (outcome, total_changed, entry) = compare(&record.name, pricing, answer);
            report.file(outcome, total_changed, entry);
        }
    }
    Ok(())
}

/// The id right after `id`, to page on from.
fn next_id(id: Uuid) -> Uuid {
    Uuid::from_u128(id.as_u128().wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_domain::{AdjustmentKind, Currency, OrderLine, PluginRef, Quantity, Sku};

    fn placed(quantity: u32, adjustments: Vec<Adjustment>, total: &str) -> StoredEvent {
        let event = OrderEvent::OrderPlaced {
            customer_id: Uuid::from_u128(7),
            currency: Currency::parse("EUR").unwrap(),
            lines: vec![OrderLine {
                sku: Sku::parse("MUG").unwrap(),
                name: "Mug".into(),
                quantity: Quantity::parse(i64::from(quantity)).unwrap(),
                unit_price: Decimal::new(1000, 2),
            }],
            adjustments,
            total: total.parse().unwrap(),
            payment_ref: None,
            plugins: vec![PluginRef {
                name: "bulk".into(),
                version: 3,
                sha256: "ab".into(),
            }],
        };
        stored(&event, 1)
    }

    fn stored(event: &OrderEvent, version: u64) -> StoredEvent {
        let json = serde_json::to_value(event).unwrap();
        StoredEvent {
            position: version as i64,
            event_id: Uuid::new_v4(),
            aggregate_id: Uuid::from_u128(1),
            aggregate_type: "order".into(),
            version,
            event_type: json["type"].as_str().unwrap().to_owned(),
            schema_version: 1,
            data: json["data"].clone(),
            recorded_at: Utc::now(),
        }
    }

    fn discount(plugin: &str, amount: &str) -> Adjustment {
        Adjustment {
            plugin: plugin.into(),
            label: "bulk".into(),
            kind: AdjustmentKind::Discount,
            amount: amount.parse().unwrap(),
            line: Some(0),
        }
    }

    #[test]
    fn the_latest_pricing_is_the_one_replayed() {
        let events = vec![
            placed(10, vec![discount("bulk", "10.00")], "90.00"),
            stored(&OrderEvent::OrderReserved, 2),
        ];
        let recorded = recorded_pricing(Uuid::from_u128(1), &events, "bulk")
            .unwrap()
            .unwrap();
        assert_eq!(recorded.event_version, 1);
        assert_eq!(recorded.recorded_version, Some(3));
        assert_eq!(recorded.quote.status, OrderStatus::Pending);
        assert_eq!(recorded.quote.customer_id, Uuid::from_u128(7));

        let mut changed = events.clone();
        changed.push(stored(
            &OrderEvent::OrderItemsChanged {
                lines: recorded.quote.lines.clone(),
                adjustments: vec![],
                total: "100.00".parse().unwrap(),
                plugins: vec![],
            },
            3,
        ));
        let recorded = recorded_pricing(Uuid::from_u128(1), &changed, "bulk")
            .unwrap()
            .unwrap();
        assert_eq!(recorded.event_version, 3);
        assert_eq!(recorded.quote.status, OrderStatus::Reserved, "as it stood");
        assert_eq!(recorded.recorded_version, None, "the change had no plugin");
        assert!(
            recorded_pricing(Uuid::from_u128(1), &[], "bulk")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn answers_compare_with_the_plugins_own_adjustments_and_the_total() {
        let events = vec![placed(
            10,
            vec![discount("other", "5.00"), discount("bulk", "10.00")],
            "85.00",
        )];
        let recorded = recorded_pricing(Uuid::from_u128(1), &events, "bulk")
            .unwrap()
            .unwrap();
        let same = compare(
            "bulk",
            &recorded,
            Ok(ReplayAnswer::Adjustments(vec![discount("bulk", "10.00")])),
        );
        assert_eq!((same.0, same.1), (ReplayOutcome::Same, false));
        let more = compare(
            "bulk",
            &recorded,
            Ok(ReplayAnswer::Adjustments(vec![discount("bulk", "20.00")])),
        );
        assert_eq!((more.0, more.1), (ReplayOutcome::Differed, true));
        assert_eq!(more.2.replayed["total"], "75.00");
        assert_eq!(more.2.recorded["total"], "85.00");
        let relabelled = compare(
            "bulk",
            &recorded,
            Ok(ReplayAnswer::Adjustments(vec![Adjustment {
                label: "other words".into(),
                ..discount("bulk", "10.00")
            }])),
        );
        assert_eq!(
            (relabelled.0, relabelled.1),
            (ReplayOutcome::Differed, false),
            "a new label with the same amount differs, the total does not"
        );
        let failed = compare("bulk", &recorded, Err("trap".into()));
        assert_eq!(failed.0, ReplayOutcome::Failed);
        let refused = compare(
            "bulk",
            &recorded,
            Ok(ReplayAnswer::Violations(vec![Violation {
                plugin: "bulk".into(),
                code: "too-many".into(),
                message: "too many".into(),
                line: Some(0),
            }])),
        );
        assert_eq!(refused.0, ReplayOutcome::Differed);
    }

    #[test]
    fn the_first_id_of_an_instant_sorts_before_every_id_made_then() {
        let t = Utc::now();
        let floor = first_id_at(t);
        assert_eq!(floor.get_version_num(), 7);
        let later = Uuid::now_v7();
        assert!(floor <= later);
        assert!(first_id_at(t + chrono::Duration::seconds(1)) > later);
    }

    #[test]
    fn a_report_counts_everything_and_lists_within_its_bounds() {
        let record = PluginRecord {
            name: "bulk".into(),
            version: 1,
            kind: PluginKind::Pricing,
            sha256: String::new(),
            config: "{}".into(),
            priority: 0,
            listen: None,
            limits: Default::default(),
            size: 0,
            active: true,
            canary_percent: None,
            shadow_sample: None,
            created_at: Utc::now(),
        };
        let mut report = ReplayReport::start(&record, None, 10);
        let entry = |outcome| ReplayedOrder {
            order_id: Uuid::nil(),
            event_version: 1,
            recorded_version: None,
            outcome,
            recorded: Value::Null,
            replayed: Value::Null,
        };
        report.file(ReplayOutcome::Same, false, entry(ReplayOutcome::Same));
        for _ in 0..REPLAY_LISTED + 5 {
            report.file(
                ReplayOutcome::Differed,
                true,
                entry(ReplayOutcome::Differed),
            );
        }
        report.file(ReplayOutcome::Failed, false, entry(ReplayOutcome::Failed));
        assert_eq!(report.orders, REPLAY_LISTED as u64 + 7);
        assert_eq!((report.same, report.failed), (1, 1));
        assert_eq!(report.differed, REPLAY_LISTED as u64 + 5);
        assert_eq!(report.totals_changed, REPLAY_LISTED as u64 + 5);
        assert_eq!(report.differences.len(), REPLAY_LISTED);
        assert_eq!(report.unlisted, 6);
    }
}
