//! The workload and its driver: simulated customers placing orders, either
//! directly (`POST /v1/orders`) or through their cart (`PUT
//! /v1/cart/items/{sku}` per line, then `POST /v1/cart/checkout`), sent on
//! an open-loop schedule (`--rate`) or flat out by `--concurrency`
//! customers, and followed until each order reaches a terminal state.
//!
//! The client shares the machine with the service, so it is kept cheap:
//! tokens are minted and order bodies serialized before the load starts,
//! one keep-alive connection pool serves every customer, and the outcome
//! comes back with the placement's answer (`Prefer: wait=N`) rather than
//! by polling, which is only the fallback.
//!
//! - `workload`: the order shapes and customers, drawn before the run;
//! - `order`: one order's task, from placement to a terminal state;
//! - here: the schedule, the two drivers and what the run observed.

mod order;
mod workload;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use super::config::BenchArgs;
use super::stats::{Counts, Samples, bump};
use order::{Ctx, OrderReport};
pub use workload::Workload;

/// When the load runs and when it must be over.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    /// The measured window: [window_start, window_end).
    pub window_start: Instant,
    pub window_end: Instant,
    /// Orders still open after this are given up on (`unsettled`).
    pub drain_deadline: Instant,
}

impl Schedule {
    pub fn new(warmup: Duration, duration: Duration, drain: Duration) -> Schedule {
        let start = Instant::now();
        let window_start = start + warmup;
        let window_end = window_start + duration;
        Schedule {
            start,
            window_start,
            window_end,
            drain_deadline: window_end + drain,
        }
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.window_start && t < self.window_end
    }
}

/// What the run observed.
#[derive(Default)]
pub struct Observed {
    /// Orders started in the window.
    pub sent: u64,
    /// Orders started in the whole run.
    pub sent_total: u64,
    /// Open loop, in the window: sends skipped at the in-flight limit.
    pub missed: u64,
    pub dispatch_lag: Samples,
    pub placement: Samples,
    pub saga: Samples,
    pub cart_put: Samples,
    /// Outcomes of the orders sent in the window.
    pub outcomes: Counts,
    /// Failed requests of the whole run, by kind.
    pub errors: Counts,
    /// Orders that reached a terminal state inside the window (whenever
    /// sent), and how many of them are confirmed.
    pub terminal_in_window: u64,
    pub confirmed_in_window: u64,
    /// Orders answered 201, with the status last seen.
    pub placed: std::collections::HashMap<Uuid, String>,
    /// Orders whose task reported back.
    pub reported: u64,
    /// When the last order settled (or the load ended).
    pub last_settled: Option<Instant>,
}

impl Observed {
    fn add(&mut self, r: OrderReport, schedule: &Schedule) {
        self.reported += 1;
        for e in &r.errors {
            bump(&mut self.errors, e);
        }
        if let Some((id, status)) = r.placed {
            self.placed.insert(id, status);
        }
        if let Some(at) = r.settled_at {
            if schedule.in_window(at) {
                self.terminal_in_window += 1;
                if r.outcome == "confirmed" {
                    self.confirmed_in_window += 1;
                }
            }
            self.last_settled = self.last_settled.max(Some(at));
        }
        if !schedule.in_window(r.scheduled) {
            return;
        }
        bump(&mut self.outcomes, &r.outcome);
        if let Some(d) = r.placement {
            self.placement.record(d);
        }
        if let Some(d) = r.saga {
            self.saga.record(d);
        }
        for d in r.cart_puts {
            self.cart_put.record(d);
        }
    }
}

/// Runs the load to the end of the window and waits (until the drain
/// deadline) for every order to settle.
pub async fn drive(
    client: reqwest::Client,
    base: &str,
    workload: Workload,
    args: &BenchArgs,
) -> anyhow::Result<(Observed, Schedule)> {
    let schedule = Schedule::new(args.warmup(), args.duration(), args.drain());
    let ctx = Arc::new(Ctx::new(
        client,
        base,
        workload,
        schedule,
        args.prefer_wait,
    )?);
    let in_flight = Arc::new(Semaphore::new(args.concurrency));
    if args.rate > 0.0 {
        open_loop(&ctx, &in_flight, args.rate).await;
    } else {
        flat_out(&ctx, &in_flight, args.concurrency).await?;
    }
    // Every task ends by the drain deadline (plus one request's timeout at
    // worst); those that do not are counted as unsettled below.
    let _ = tokio::time::timeout_at(
        schedule.drain_deadline + Duration::from_secs(5),
        in_flight.acquire_many(args.concurrency as u32),
    )
    .await;
    Ok((observed(&ctx), schedule))
}

/// Open loop: order i is due at start + i / rate, whatever the service
/// answers; a send that finds the in-flight limit reached is counted, not
/// queued (queueing would hide the overload).
async fn open_loop(ctx: &Arc<Ctx>, in_flight: &Arc<Semaphore>, rate: f64) {
    let schedule = ctx.schedule;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut missed = 0u64;
    let mut lag = Samples::default();
    let mut due = schedule.start;
    while due < schedule.window_end {
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let now = Instant::now();
        while due <= now && due < schedule.window_end {
            let counted = schedule.in_window(due);
            match in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    ctx.count_sent(due);
                    if counted {
                        lag.record(now - due);
                    }
                    let ctx = ctx.clone();
                    let scheduled = due;
                    tokio::spawn(async move {
                        let report = ctx.order(scheduled).await;
                        ctx.report(report);
                        drop(permit);
                    });
                }
                Err(_) => missed += u64::from(counted),
            }
            due += interval;
        }
    }
    let mut observed = ctx.observed();
    observed.missed = missed;
    observed.dispatch_lag = lag;
}

/// Flat out: each of `customers` places its next order when the last one
/// has settled, until the end of the window.
async fn flat_out(
    ctx: &Arc<Ctx>,
    in_flight: &Arc<Semaphore>,
    customers: usize,
) -> anyhow::Result<()> {
    for _ in 0..customers {
        let permit = in_flight.clone().acquire_owned().await?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                let now = Instant::now();
                if now >= ctx.schedule.window_end {
                    break;
                }
                ctx.count_sent(now);
                let report = ctx.order(now).await;
                ctx.report(report);
            }
            drop(permit);
        });
    }
    tokio::time::sleep_until(ctx.schedule.window_end).await;
    Ok(())
}

/// What the run observed, with the sends counted and the orders whose
/// task never reported back counted as unsettled.
fn observed(ctx: &Ctx) -> Observed {
    let mut observed = std::mem::take(&mut *ctx.observed());
    observed.sent = ctx.sent.load(Ordering::Relaxed);
    observed.sent_total = ctx.sent_total.load(Ordering::Relaxed);
    let sent_total = observed.sent_total;
    let unreported = sent_total.saturating_sub(observed.reported);
    if unreported > 0 {
        *observed.outcomes.entry("unsettled".into()).or_default() += unreported;
    }
    observed
}
