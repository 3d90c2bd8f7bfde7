//! The workload, drawn before the load starts: the order shapes (direct or
//! through a cart, which SKUs, how many units, which payment token) with
//! their request bodies serialized, and the customers with their tokens
//! minted, so that the run itself spends nothing on either.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use rand::{Rng, SeedableRng};
use reqwest::header::HeaderValue;
use uuid::Uuid;

use crate::config::{BenchArgs, TokenMix};
use commerce_api::auth::JwtKeys;
use commerce_app::Role;

/// How many order shapes are drawn before the run; orders cycle through
/// them.
const SHAPES: usize = 16_384;

/// A simulated customer: who, and the header that says so.
#[derive(Clone)]
pub(super) struct Customer {
    /// `Bearer <token>`.
    pub(super) auth: HeaderValue,
}

impl Customer {
    /// A new customer with a day-long token.
    fn mint(keys: &JwtKeys) -> anyhow::Result<Customer> {
        let token = keys.mint(Uuid::new_v4(), Role::Customer, Duration::from_secs(86_400))?;
        Ok(Customer {
            auth: HeaderValue::try_from(format!("Bearer {token}"))?,
        })
    }
}

/// One order as drawn before the run, with its request bodies ready.
pub(super) struct Shape {
    /// Through a cart or direct.
    pub(super) cart: bool,
    /// (index of the SKU, quantity).
    pub(super) lines: Vec<(usize, u32)>,
    /// `POST /v1/orders` body.
    pub(super) order_body: Bytes,
    /// `POST /v1/cart/checkout` body.
    pub(super) checkout_body: Bytes,
}

/// The orders the run will place, drawn from the mix.
pub struct Workload {
    pub(super) shapes: Vec<Shape>,
    /// `PUT /v1/cart/items/{sku}` URL per SKU.
    pub(super) cart_item_urls: Vec<reqwest::Url>,
    /// `{"quantity":q}` for q = 1..=max_quantity (index q - 1).
    pub(super) quantity_bodies: Vec<Bytes>,
    /// Customers placing direct orders (any number at once).
    pub(super) customers: Vec<Customer>,
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

    /// A customer free to run a cart flow (a new one if none is).
    pub(super) fn take_cart_customer(&self) -> anyhow::Result<Customer> {
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

    /// Gives a customer whose cart is empty back for the next flow.
    pub(super) fn return_cart_customer(&self, customer: Customer) {
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

/// The payment token at `u` (in [0, 1)) of the mix.
fn pick_token(mix: &TokenMix, u: f64) -> String {
    mix.pick(u).to_owned()
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
