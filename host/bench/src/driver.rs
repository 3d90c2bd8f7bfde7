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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use super::check::{OrderState, is_open};
use super::config::{BenchArgs, TokenMix};
use super::stats::{Counts, Samples, bump};
use commerce_api::auth::JwtKeys;
use commerce_app::Role;

/// How many order shapes are drawn before the run; orders cycle through
/// them.
const SHAPES: usize = 16_384;

/// A simulated customer: who, and the header that says so.
#[derive(Clone)]
struct Customer {
    auth: HeaderValue,
}

impl Customer {
    fn mint(keys: &JwtKeys) -> anyhow::Result<Customer> {
        let token = keys.mint(Uuid::new_v4(), Role::Customer, Duration::from_secs(86_400))?;
        Ok(Customer {
            auth: HeaderValue::try_from(format!("Bearer {token}"))?,
        })
    }
}

/// One order as drawn before the run, with its request bodies ready.
struct Shape {
    /// Through a cart or direct.
    cart: bool,
    /// (index of the SKU, quantity).
    lines: Vec<(usize, u32)>,
    /// `POST /v1/orders` body.
    order_body: Bytes,
    /// `POST /v1/cart/checkout` body.
    checkout_body: Bytes,
}

/// The orders the run will place, drawn from the mix.
pub struct Workload {
    shapes: Vec<Shape>,
    /// `PUT /v1/cart/items/{sku}` URL per SKU.
    cart_item_urls: Vec<reqwest::Url>,
    /// `{"quantity":q}` for q = 1..=max_quantity (index q - 1).
    quantity_bodies: Vec<Bytes>,
    /// Customers placing direct orders (any number at once).
    customers: Vec<Customer>,
    /// Customers free to run a cart flow: a customer has one cart, so two
    /// flows must not share one. Grows when empty.
    cart_customers: Mutex<Vec<Customer>>,
    keys: JwtKeys,
}

impl Workload {
    /// Draws the order shapes and mints the customers.
    pub fn build(
        args: &BenchArgs,
        skus: &[String],
        base: &str,
        keys: &JwtKeys,
    ) -> anyhow::Result<Workload> {
        let mut rng = match args.seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        let shapes = (0..SHAPES)
            .map(|_| draw(&mut rng, args, skus))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cart_item_urls = skus
            .iter()
            .map(|sku| reqwest::Url::parse(&format!("{base}/v1/cart/items/{sku}")))
            .collect::<Result<Vec<_>, _>>()?;
        let quantity_bodies = (1..=args.max_quantity)
            .map(|q| Bytes::from(format!(r#"{{"quantity":{q}}}"#)))
            .collect();
        let customers = (0..args.customers)
            .map(|_| Customer::mint(keys))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let carts = ((args.concurrency as f64 * args.cart_share).ceil() as usize).min(4096);
        let cart_customers = (0..carts)
            .map(|_| Customer::mint(keys))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Workload {
            shapes,
            cart_item_urls,
            quantity_bodies,
            customers,
            cart_customers: Mutex::new(cart_customers),
            keys: keys.clone(),
        })
    }

    fn take_cart_customer(&self) -> anyhow::Result<Customer> {
        let free = self
            .cart_customers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match free {
            Some(c) => Ok(c),
            None => Customer::mint(&self.keys),
        }
    }

    fn return_cart_customer(&self, customer: Customer) {
        self.cart_customers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(customer);
    }
}

/// One order drawn from the mix: 1 to --max-lines distinct SKUs (each the
/// hot one with probability --hot-share), 1 to --max-quantity units each.
fn draw(rng: &mut impl Rng, args: &BenchArgs, skus: &[String]) -> anyhow::Result<Shape> {
    let wanted = rng
        .random_range(1..=args.max_lines as usize)
        .min(skus.len());
    let mut lines: Vec<(usize, u32)> = Vec::with_capacity(wanted);
    let mut tries = 0;
    while lines.len() < wanted && tries < 100 {
        tries += 1;
        let sku = if skus.len() == 1 || rng.random::<f64>() < args.hot_share {
            0
        } else {
            rng.random_range(1..skus.len())
        };
        if lines.iter().any(|(s, _)| *s == sku) {
            continue;
        }
        lines.push((sku, rng.random_range(1..=args.max_quantity)));
    }
    let token = pick_token(&args.tokens, rng.random::<f64>());
    let items: Vec<_> = lines
        .iter()
        .map(|(s, q)| serde_json::json!({"sku": skus[*s], "quantity": q}))
        .collect();
    let order_body = serde_json::to_vec(&serde_json::json!({
        "items": items, "currency": "EUR", "payment": {"token": token},
    }))?;
    let checkout_body = serde_json::to_vec(&serde_json::json!({"payment": {"token": token}}))?;
    Ok(Shape {
        cart: rng.random::<f64>() < args.cart_share,
        lines,
        order_body: order_body.into(),
        checkout_body: checkout_body.into(),
    })
}

fn pick_token(mix: &TokenMix, u: f64) -> String {
    mix.pick(u).to_owned()
}

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

/// What one order's task reports.
struct OrderReport {
    scheduled: Instant,
    placement: Option<Duration>,
    /// confirmed, failed, ... or out_of_stock, rejected, refused, error,
    /// unsettled.
    outcome: String,
    settled_at: Option<Instant>,
    saga: Option<Duration>,
    placed: Option<(Uuid, String)>,
    errors: Vec<String>,
    cart_puts: Vec<Duration>,
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

/// Everything an order's task needs.
struct Ctx {
    client: reqwest::Client,
    base: String,
    orders_url: reqwest::Url,
    checkout_url: reqwest::Url,
    prefer: HeaderValue,
    json: HeaderValue,
    workload: Workload,
    schedule: Schedule,
    observed: Mutex<Observed>,
    next: AtomicU64,
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
    let ctx = Arc::new(Ctx {
        client,
        base: base.to_owned(),
        orders_url: reqwest::Url::parse(&format!("{base}/v1/orders"))?,
        checkout_url: reqwest::Url::parse(&format!("{base}/v1/cart/checkout"))?,
        prefer: HeaderValue::try_from(format!("wait={}", args.prefer_wait))?,
        json: HeaderValue::from_static("application/json"),
        workload,
        schedule,
        observed: Mutex::new(Observed::default()),
        next: AtomicU64::new(0),
    });
    let in_flight = Arc::new(Semaphore::new(args.concurrency));
    // Orders started in the window, and in the whole run.
    let sent = Arc::new(AtomicU64::new(0));
    let sent_total = Arc::new(AtomicU64::new(0));
    let count = |t: Instant| {
        sent_total.fetch_add(1, Ordering::Relaxed);
        if schedule.in_window(t) {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    };
    if args.rate > 0.0 {
        // Open loop: order i is due at start + i / rate, whatever the
        // service answers; a send that finds the in-flight limit reached
        // is counted, not queued (queueing would hide the overload).
        let interval = Duration::from_secs_f64(1.0 / args.rate);
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
                        count(due);
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
        let mut observed = ctx.observed.lock().unwrap_or_else(|e| e.into_inner());
        observed.missed = missed;
        observed.dispatch_lag = lag;
    } else {
        // Flat out: each customer places its next order when the last
        // one has settled, until the end of the window.
        for _ in 0..args.concurrency {
            let permit = in_flight.clone().acquire_owned().await?;
            let (ctx, sent, sent_total) = (ctx.clone(), sent.clone(), sent_total.clone());
            tokio::spawn(async move {
                loop {
                    let now = Instant::now();
                    if now >= ctx.schedule.window_end {
                        break;
                    }
                    sent_total.fetch_add(1, Ordering::Relaxed);
                    if ctx.schedule.in_window(now) {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    let report = ctx.order(now).await;
                    ctx.report(report);
                }
                drop(permit);
            });
        }
        tokio::time::sleep_until(schedule.window_end).await;
    }
    // Every task ends by the drain deadline (plus one request's timeout at
    // worst); those that do not are counted as unsettled below.
    let _ = tokio::time::timeout_at(
        schedule.drain_deadline + Duration::from_secs(5),
        in_flight.acquire_many(args.concurrency as u32),
    )
    .await;
    let mut observed = std::mem::take(&mut *ctx.observed.lock().unwrap_or_else(|e| e.into_inner()));
    observed.sent = sent.load(Ordering::Relaxed);
    observed.sent_total = sent_total.load(Ordering::Relaxed);
    let sent_total = observed.sent_total;
    let unreported = sent_total.saturating_sub(observed.reported);
    if unreported > 0 {
        *observed.outcomes.entry("unsettled".into()).or_default() += unreported;
    }
    Ok((observed, schedule))
}

/// Kind of a failed request, for the error counts.
fn transport_kind(what: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connect error"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_decode() {
        "bad body"
    } else {
        "request error"
    };
    format!("{what}: {kind}")
}

/// `HTTP <status> <problem type>` of a non-success answer.
async fn http_kind(what: &str, response: reqwest::Response) -> String {
    let status = response.status();
    let kind = response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    format!("{what}: HTTP {} {kind}", status.as_u16())
}

impl Ctx {
    fn report(&self, report: OrderReport) {
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(report, &self.schedule);
    }

    /// Places one order (direct or through a cart) and follows it to a
    /// terminal state.
    async fn order(&self, scheduled: Instant) -> OrderReport {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let shape = &self.workload.shapes[n % self.workload.shapes.len()];
        let mut report = OrderReport {
            scheduled,
            placement: None,
            outcome: "error".into(),
            settled_at: None,
            saga: None,
            placed: None,
            errors: Vec::new(),
            cart_puts: Vec::new(),
        };
        let (customer, placed) = if shape.cart {
            let customer = match self.workload.take_cart_customer() {
                Ok(c) => c,
                Err(_) => {
                    report.errors.push("minting a token".into());
                    return report;
                }
            };
            let placed = self
                .cart_flow(shape, &customer, scheduled, &mut report)
                .await;
            (customer, placed)
        } else {
            let customer = self.workload.customers[n % self.workload.customers.len()].clone();
            let request = self
                .client
                .post(self.orders_url.clone())
                .header(AUTHORIZATION, customer.auth.clone())
                .header("idempotency-key", Uuid::new_v4().to_string())
                .header("prefer", self.prefer.clone())
                .header(CONTENT_TYPE, self.json.clone())
                .body(shape.order_body.clone());
            let placed = self
                .place(request, "POST /v1/orders", scheduled, &mut report)
                .await;
            (customer, placed)
        };
        let Some(mut order) = placed else {
            if shape.cart {
                self.release_cart(customer, report.outcome != "error").await;
            }
            return report;
        };
        if shape.cart {
            self.workload.return_cart_customer(customer.clone());
        }
        report.placed = Some((order.id, order.status.clone()));
        let mut pause = Duration::from_millis(50);
        while is_open(&order.status) && Instant::now() < self.schedule.drain_deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            let url = format!("{}/v1/orders/{}", self.base, order.id);
            match self
                .client
                .get(url)
                .header(AUTHORIZATION, customer.auth.clone())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => match r.json::<OrderState>().await {
                    Ok(o) => order = o,
                    Err(e) => report
                        .errors
                        .push(transport_kind("GET /v1/orders/{id}", &e)),
                },
                Ok(r) => report
                    .errors
                    .push(http_kind("GET /v1/orders/{id}", r).await),
                Err(e) => report
                    .errors
                    .push(transport_kind("GET /v1/orders/{id}", &e)),
            }
        }
        report.placed = Some((order.id, order.status.clone()));
        if is_open(&order.status) {
            report.outcome = "unsettled".into();
        } else {
            report.outcome = order.status.clone();
            report.settled_at = Some(Instant::now());
            report.saga = (order.updated_at - order.created_at).to_std().ok();
        }
        report
    }

    /// Sends a placement; on 201 returns the order, else records why not.
    async fn place(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        scheduled: Instant,
        report: &mut OrderReport,
    ) -> Option<OrderState> {
        match request.send().await {
            Ok(response) => {
                report.placement = Some(scheduled.elapsed());
                let status = response.status();
                if status == reqwest::StatusCode::CREATED {
                    match response.json::<OrderState>().await {
                        Ok(order) => return Some(order),
                        Err(e) => report.errors.push(transport_kind(what, &e)),
                    }
                    return None;
                }
                report.outcome = match status.as_u16() {
                    409 => "out_of_stock",
                    422 => "rejected",
                    400..=499 => "refused",
                    _ => "error",
                }
                .into();
                report.errors.push(http_kind(what, response).await);
                None
            }
            Err(e) => {
                report.errors.push(transport_kind(what, &e));
                None
            }
        }
    }

    /// Fills the customer's cart line by line, then checks it out.
    async fn cart_flow(
        &self,
        shape: &Shape,
        customer: &Customer,
        scheduled: Instant,
        report: &mut OrderReport,
    ) -> Option<OrderState> {
        for (sku, quantity) in &shape.lines {
            let started = Instant::now();
            let result = self
                .client
                .put(self.workload.cart_item_urls[*sku].clone())
                .header(AUTHORIZATION, customer.auth.clone())
                .header(CONTENT_TYPE, self.json.clone())
                .body(self.workload.quantity_bodies[*quantity as usize - 1].clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    report.cart_puts.push(started.elapsed());
                }
                Ok(r) => {
                    report.outcome = if r.status().is_server_error() {
                        "error"
                    } else {
                        "refused"
                    }
                    .into();
                    report
                        .errors
                        .push(http_kind("PUT /v1/cart/items/{sku}", r).await);
                    return None;
                }
                Err(e) => {
                    report
                        .errors
                        .push(transport_kind("PUT /v1/cart/items/{sku}", &e));
                    return None;
                }
            }
        }
        let request = self
            .client
            .post(self.checkout_url.clone())
            .header(AUTHORIZATION, customer.auth.clone())
            .header("idempotency-key", Uuid::new_v4().to_string())
            .header("prefer", self.prefer.clone())
            .header(CONTENT_TYPE, self.json.clone())
            .body(shape.checkout_body.clone());
        self.place(request, "POST /v1/cart/checkout", scheduled, report)
            .await
    }

    /// After a cart flow that placed nothing: empties the cart so that the
    /// customer's next flow starts clean, and gives the customer back; a
    /// customer whose cart is in doubt is dropped (a fresh one is minted).
    async fn release_cart(&self, customer: Customer, answered: bool) {
        if !answered {
            return;
        }
        let emptied = self
            .client
            .delete(format!("{}/v1/cart", self.base))
            .header(AUTHORIZATION, customer.auth.clone())
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if emptied {
            self.workload.return_cart_customer(customer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn shapes_follow_the_mix() {
        let args = Cli::parse_from([
            "bench",
            "--skus",
            "50",
            "--hot-share",
            "0.3",
            "--cart-share",
            "0.25",
            "--tokens",
            "tok_ok=0.9,tok_decline=0.1",
            "--max-lines",
            "3",
            "--seed",
            "7",
        ])
        .args;
        let skus: Vec<String> = (0..50).map(|i| format!("S-{i}")).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let shapes: Vec<Shape> = (0..20_000)
            .map(|_| draw(&mut rng, &args, &skus).unwrap())
            .collect();
        let lines: Vec<_> = shapes.iter().flat_map(|s| &s.lines).collect();
        let hot = lines.iter().filter(|(s, _)| *s == 0).count() as f64 / lines.len() as f64;
        let carts = shapes.iter().filter(|s| s.cart).count() as f64 / shapes.len() as f64;
        let declines = shapes
            .iter()
            .filter(|s| String::from_utf8_lossy(&s.order_body).contains("tok_decline"))
            .count() as f64
            / shapes.len() as f64;
        // The hot share is per line, before duplicates are dropped.
        assert!((0.2..0.35).contains(&hot), "hot share {hot}");
        assert!((0.22..0.28).contains(&carts), "cart share {carts}");
        assert!((0.08..0.12).contains(&declines), "decline share {declines}");
        for s in &shapes {
            assert!((1..=3).contains(&s.lines.len()));
            let mut skus: Vec<_> = s.lines.iter().map(|(k, _)| k).collect();
            skus.sort();
            skus.dedup();
            assert_eq!(skus.len(), s.lines.len(), "distinct SKUs per order");
        }
    }
}
