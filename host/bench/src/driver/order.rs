//! One order's task: a simulated customer places an order, directly or
//! through its cart (filled line by line, then checked out), and follows
//! it to a terminal state (normally in the placement's answer, thanks to
//! `Prefer: wait`, else by polling), then reports what it saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::time::Instant;
use uuid::Uuid;

use super::workload::{Customer, Shape, Workload};
use super::{Observed, Schedule};
use crate::check::{OrderState, is_open};

/// What one order's task reports.
pub(super) struct OrderReport {
    pub(super) scheduled: Instant,
    pub(super) placement: Option<Duration>,
    /// confirmed, failed, ... or out_of_stock, rejected, refused, error,
    /// unsettled.
    pub(super) outcome: String,
    pub(super) settled_at: Option<Instant>,
    pub(super) saga: Option<Duration>,
    pub(super) placed: Option<(Uuid, String)>,
    pub(super) errors: Vec<String>,
    pub(super) cart_puts: Vec<Duration>,
}

impl OrderReport {
    /// Nothing seen yet: an error until the order gets further.
    fn new(scheduled: Instant) -> OrderReport {
        OrderReport {
            scheduled,
            placement: None,
            outcome: "error".into(),
            settled_at: None,
            saga: None,
            placed: None,
            errors: Vec::new(),
            cart_puts: Vec::new(),
        }
    }

    /// The order as last seen: its outcome, or `unsettled` if it is still
    /// open (the drain deadline passed).
    fn settle(&mut self, order: &OrderState) {
        self.placed = Some((order.id, order.status.clone()));
        if is_open(&order.status) {
            self.outcome = "unsettled".into();
        } else {
            self.outcome = order.status.clone();
            self.settled_at = Some(Instant::now());
            self.saga = (order.updated_at - order.created_at).to_std().ok();
        }
    }
}

/// Everything an order's task needs.
pub(super) struct Ctx {
    client: reqwest::Client,
    base: String,
    orders_url: reqwest::Url,
    checkout_url: reqwest::Url,
    prefer: HeaderValue,
    json: HeaderValue,
    workload: Workload,
    pub(super) schedule: Schedule,
    observed: Mutex<Observed>,
    /// The next order shape to place.
    next: AtomicU64,
    /// Orders started in the window.
    pub(super) sent: AtomicU64,
    /// Orders started in the whole run.
    pub(super) sent_total: AtomicU64,
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
    /// The context of a run against `base`, waiting `prefer_wait` seconds
    /// for each placement's outcome.
    pub(super) fn new(
        client: reqwest::Client,
        base: &str,
        workload: Workload,
        schedule: Schedule,
        prefer_wait: u64,
    ) -> anyhow::Result<Ctx> {
        Ok(Ctx {
            client,
            base: base.to_owned(),
            orders_url: reqwest::Url::parse(&format!("{base}/v1/orders"))?,
            checkout_url: reqwest::Url::parse(&format!("{base}/v1/cart/checkout"))?,
            prefer: HeaderValue::try_from(format!("wait={prefer_wait}"))?,
            json: HeaderValue::from_static("application/json"),
            workload,
            schedule,
            observed: Mutex::new(Observed::default()),
            next: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            sent_total: AtomicU64::new(0),
        })
    }

    /// Counts an order started at `t`.
    pub(super) fn count_sent(&self, t: Instant) {
        self.sent_total.fetch_add(1, Ordering::Relaxed);
        if self.schedule.in_window(t) {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the run has observed so far.
    pub(super) fn observed(&self) -> MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an order's report to what the run observed.
    pub(super) fn report(&self, report: OrderReport) {
        self.observed().add(report, &self.schedule);
    }

    /// Places one order (direct or through a cart) and follows it to a
    /// terminal state.
    pub(super) async fn order(&self, scheduled: Instant) -> OrderReport {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let shape = &self.workload.shapes[n % self.workload.shapes.len()];
        let mut report = OrderReport::new(scheduled);
        let customer = if shape.cart {
            match self.workload.take_cart_customer() {
                Ok(c) => c,
                Err(_) => {
                    report.errors.push("minting a token".into());
                    return report;
                }
            }
        } else {
            self.workload.customers[n % self.workload.customers.len()].clone()
        };
        let placed = if shape.cart {
            self.cart_flow(shape, &customer, scheduled, &mut report)
                .await
        } else {
            self.place_direct(shape, &customer, scheduled, &mut report)
                .await
        };
        let Some(order) = placed else {
            if shape.cart {
                self.release_cart(customer, report.outcome != "error").await;
            }
            return report;
        };
        if shape.cart {
            self.workload.return_cart_customer(customer.clone());
        }
        report.placed = Some((order.id, order.status.clone()));
        let order = self.follow(order, &customer, &mut report).await;
        report.settle(&order);
        report
    }

    /// While the order is open and the drain deadline not passed, reads it
    /// again, waiting 50 ms and then twice as long each time (up to 500 ms).
    async fn follow(
        &self,
        mut order: OrderState,
        customer: &Customer,
        report: &mut OrderReport,
    ) -> OrderState {
        let mut pause = Duration::from_millis(50);
        while is_open(&order.status) && Instant::now() < self.schedule.drain_deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            if let Some(now) = self.read_order(order.id, customer, report).await {
                order = now;
            }
        }
        order
    }

    /// `GET /v1/orders/{id}` as its customer; a failure is recorded.
    async fn read_order(
        &self,
        id: Uuid,
        customer: &Customer,
        report: &mut OrderReport,
    ) -> Option<OrderState> {
        let url = format!("{}/v1/orders/{id}", self.base);
        match self
            .client
            .get(url)
            .header(AUTHORIZATION, customer.auth.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => match r.json::<OrderState>().await {
                Ok(o) => return Some(o),
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
        None
    }

    /// `POST /v1/orders` with the shape's body.
    async fn place_direct(
        &self,
        shape: &Shape,
        customer: &Customer,
        scheduled: Instant,
        report: &mut OrderReport,
    ) -> Option<OrderState> {
        let request = self
            .client
            .post(self.orders_url.clone())
            .header(AUTHORIZATION, customer.auth.clone())
            .header("idempotency-key", Uuid::new_v4().to_string())
            .header("prefer", self.prefer.clone())
            .header(CONTENT_TYPE, self.json.clone())
            .body(shape.order_body.clone());
        self.place(request, "POST /v1/orders", scheduled, report)
            .await
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
