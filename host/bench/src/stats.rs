//! Latency samples and their percentiles, outcome and error counts, and
//! the summary `commerce bench` prints (text or JSON). No I/O here apart
//! from formatting.

use std::collections::BTreeMap;
use std::time::Duration;

/// Latency samples in microseconds. Runs are short enough (a minute at a
/// few thousand orders per second) that keeping every sample is cheaper
/// and more exact than a histogram.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
    sorted: bool,
}

impl Samples {
    pub fn record(&mut self, d: Duration) {
        self.micros
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The nearest-rank percentile `p` (0 < p <= 100): the smallest sample
    /// that at least p% of the samples do not exceed. `None` when empty.
    pub fn percentile(&mut self, p: f64) -> Option<Duration> {
        if self.micros.is_empty() {
            return None;
        }
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let n = self.micros.len();
        // The epsilon keeps 99.9 / 100 * 1000 (999.000...1 in floating
        // point) at rank 999.
        let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        Some(Duration::from_micros(self.micros[index]))
    }

    /// p50, p95, p99, p99.9 and max, in milliseconds.
    pub fn summary(&mut self) -> LatencySummary {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        LatencySummary {
            count: self.len(),
            p50_ms: ms(self.percentile(50.0)),
            p95_ms: ms(self.percentile(95.0)),
            p99_ms: ms(self.percentile(99.0)),
            p999_ms: ms(self.percentile(99.9)),
            max_ms: ms(self.percentile(100.0)),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl LatencySummary {
    fn line(&self, name: &str) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        format!(
            "{name:<22} p50 {:>8}  p95 {:>8}  p99 {:>8}  p99.9 {:>8}  max {:>8}  ms  ({} samples)",
            f(self.p50_ms),
            f(self.p95_ms),
            f(self.p99_ms),
            f(self.p999_ms),
            f(self.max_ms),
            self.count
        )
    }
}

/// Counts by name, printed sorted.
pub type Counts = BTreeMap<String, u64>;

pub fn bump(counts: &mut Counts, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}

/// Everything the run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// How the run was set up, in words (target, mix, rate).
    pub setup: BTreeMap<String, serde_json::Value>,
    pub measured_secs: f64,
    /// Orders started in the measured window.
    pub sent: u64,
    /// Open loop: sends skipped because --concurrency orders were in
    /// flight, in the measured window.
    pub missed_sends: u64,
    /// Open loop: how late the scheduler sent, worst case and p99.
    pub dispatch_lag_p99_ms: Option<f64>,
    pub dispatch_lag_max_ms: Option<f64>,
    /// Orders that reached a terminal state inside the measured window,
    /// per second of it (whenever they were sent).
    pub terminal_per_sec: f64,
    /// The same, counting `confirmed` only.
    pub confirmed_per_sec: f64,
    /// Outcomes of the orders sent in the measured window: order statuses
    /// (confirmed, failed, ...), `out_of_stock` (409), `refused` (other
    /// 4xx), `error` (5xx or transport), `unsettled` (open at the drain
    /// deadline).
    pub outcomes: Counts,
    /// Every failed request of the run (warm-up and drain included), by
    /// kind: `HTTP <status> <problem type>`, `connect`, `timeout`, ...
    pub errors: Counts,
    /// `POST /v1/orders` or `POST /v1/cart/checkout` until its answer (with
    /// `Prefer: wait`, that includes the saga), from the scheduled send
    /// time in open loop, so that a late send counts against the service.
    pub placement: LatencySummary,
    /// Placement to terminal state, as the service recorded them (the
    /// order's `created_at` to the `updated_at` of its terminal status).
    pub saga_completion: LatencySummary,
    /// `PUT /v1/cart/items/{sku}` of the cart flows.
    pub cart_put: LatencySummary,
    /// Seconds from the end of the load until every order was terminal.
    pub drain_secs: f64,
    /// Problems the consistency check found (empty: consistent).
    pub consistency: Vec<String>,
    /// Findings that do not fail the run (stock cache drift).
    pub warnings: Vec<String>,
    /// What the check covered.
    pub checked: BTreeMap<String, u64>,
    /// In-process on PostgreSQL: what the database did per order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseCost>,
    /// `--ceiling`, and the throughput's share of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<CeilingShare>,
}

/// The throughput against what the database alone can write.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CeilingShare {
    pub ceiling_per_sec: f64,
    /// `terminal_per_sec / ceiling_per_sec`.
    pub share: f64,
}

/// PostgreSQL's own counters over the measured window, per order that
/// reached a terminal state in it: transactions committed in the run's
/// database (a statement outside a transaction counts as one, so reads
/// are in it) and WAL flushes of the whole cluster (what durable commits
/// cost; a group commit shares one).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct DatabaseCost {
    pub transactions_per_order: f64,
    pub wal_flushes_per_order: f64,
}

impl Summary {
    pub fn is_consistent(&self) -> bool {
        self.consistency.is_empty()
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line("commerce bench".into());
        for (k, v) in &self.setup {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            line(format!("  {k:<14} {v}"));
        }
        line(format!(
            "window         {:.1} s: {} orders sent, {} sends missed (in-flight limit), dispatch lag p99 {} / max {} ms",
            self.measured_secs,
            self.sent,
            self.missed_sends,
            self.dispatch_lag_p99_ms
                .map_or("-".into(), |v| format!("{v:.1}")),
            self.dispatch_lag_max_ms
                .map_or("-".into(), |v| format!("{v:.1}")),
        ));
        line(format!(
            "throughput     {:.1} orders/s to a terminal state ({:.1} confirmed/s)",
            self.terminal_per_sec, self.confirmed_per_sec
        ));
        if let Some(c) = &self.ceiling {
            line(format!(
                "share          {:.1}% of the ceiling ({:.0} orders/s that PostgreSQL alone writes here)",
                c.share * 100.0,
                c.ceiling_per_sec
            ));
        }
        line(format!("outcomes       {}", join(&self.outcomes)));
        line(self.placement.line("placement"));
        line(self.saga_completion.line("saga completion"));
        if self.cart_put.count > 0 {
            line(self.cart_put.line("cart PUT"));
        }
        line(format!(
            "errors         {}",
            if self.errors.is_empty() {
                "none".into()
            } else {
                join(&self.errors)
            }
        ));
        if let Some(db) = &self.database {
            line(format!(
                "database       {:.2} transactions (reads included) and {:.3} WAL flushes per order",
                db.transactions_per_order, db.wal_flushes_per_order
            ));
        }
        line(format!("drain          {:.2} s", self.drain_secs));
        let checked = join(&self.checked);
        if self.consistency.is_empty() {
            line(format!("consistency    OK ({checked})"));
        } else {
            line(format!(
                "consistency    FAILED: {} problem(s) ({checked})",
                self.consistency.len()
            ));
            for problem in self.consistency.iter().take(50) {
                line(format!("  - {problem}"));
            }
            if self.consistency.len() > 50 {
                line(format!("  ... and {} more", self.consistency.len() - 50));
            }
        }
        if !self.warnings.is_empty() {
            line(format!(
                "warnings       {} (not counted as inconsistencies)",
                self.warnings.len()
            ));
            for warning in self.warnings.iter().take(10) {
                line(format!("  - {warning}"));
            }
            if self.warnings.len() > 10 {
                line(format!("  ... and {} more", self.warnings.len() - 10));
            }
        }
        out
    }
}

fn join(counts: &Counts) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: impl IntoIterator<Item = u64>) -> Samples {
        let mut s = Samples::default();
        for v in ms {
            s.record(Duration::from_millis(v));
        }
        s
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=1000 ms, shuffled: the p-th percentile is p * 10 ms.
        let mut values: Vec<u64> = (1..=1000).collect();
        values.reverse();
        values.swap(10, 500);
        let mut s = samples(values);
        let ms = |d: Option<Duration>| d.unwrap().as_millis();
        assert_eq!(ms(s.percentile(50.0)), 500);
        assert_eq!(ms(s.percentile(95.0)), 950);
        assert_eq!(ms(s.percentile(99.0)), 990);
        assert_eq!(ms(s.percentile(99.9)), 999);
        assert_eq!(ms(s.percentile(100.0)), 1000);
        assert_eq!(ms(s.percentile(0.0)), 1);
        // Recording after a read re-sorts.
        s.record(Duration::from_millis(2000));
        assert_eq!(ms(s.percentile(100.0)), 2000);
    }

    #[test]
    fn small_and_empty_sets() {
        let mut one = samples([7]);
        for p in [0.1, 50.0, 99.9, 100.0] {
            assert_eq!(one.percentile(p), Some(Duration::from_millis(7)));
        }
        // Two samples: p50 is the lower one, p99.9 the upper one.
        let mut two = samples([20, 10]);
        assert_eq!(two.percentile(50.0), Some(Duration::from_millis(10)));
        assert_eq!(two.percentile(99.9), Some(Duration::from_millis(20)));
        let mut none = Samples::default();
        assert_eq!(none.percentile(50.0), None);
        let summary = none.summary();
        assert_eq!((summary.count, summary.p99_ms), (0, None));
        let summary = samples([1, 2, 3, 4]).summary();
        assert_eq!(summary.p50_ms, Some(2.0));
        assert_eq!(summary.max_ms, Some(4.0));
    }

    #[test]
    fn counts() {
        let mut c = Counts::new();
        bump(&mut c, "confirmed");
        bump(&mut c, "failed");
        bump(&mut c, "confirmed");
        assert_eq!(join(&c), "confirmed 2, failed 1");
    }
}
