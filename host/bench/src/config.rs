//! What `commerce bench` is asked to do: the target (an in-process service
//! or one already running), the workload and its mix, and the run's
//! timing. Parsed and checked here, so that the driver only sees values
//! that make sense.

use std::time::Duration;

use anyhow::{Context, bail, ensure};

use commerce_service::config::{
    CartArgs, InventoryArgs, OutboxArgs, PaymentTimeoutArgs, PluginArgs, RetentionArgs, SagaArgs,
};

/// Load generator: drives simulated customers through direct orders and
/// cart checkouts, waits for every order to reach a terminal state,
/// prints a summary, and checks that stock, orders, sagas and the payment
/// ledger agree; exits non-zero if they do not.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Drive the service already running at this base URL (e.g.
    /// http://127.0.0.1:8080) instead of starting one in this process.
    /// Needs --jwt-secret and --payment-sim-url.
    #[arg(long, help_heading = "Target")]
    pub url: Option<String>,
    /// With --url: the service's HS256 secret, to mint customer and admin
    /// tokens.
    #[arg(
        long,
        env = "COMMERCE_JWT_SECRET",
        hide_env_values = true,
        help_heading = "Target"
    )]
    pub jwt_secret: Option<String>,
    /// With --url: base URL of the payment simulator the service pays
    /// through, whose ledger the consistency check reads.
    #[arg(long, help_heading = "Target")]
    pub payment_sim_url: Option<String>,
    /// In-process: where the service keeps its data. postgres: a fresh
    /// schema in --database-url, dropped afterwards (kept if the check
    /// fails); sqlite: an embedded database in a temporary directory.
    #[arg(long, value_enum, default_value = "postgres", help_heading = "Target")]
    pub backend: Backend,
    /// In-process, postgres: the database to create the schema in.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        help_heading = "Target"
    )]
    pub database_url: String,
    /// In-process, postgres: most connections the service holds.
    #[arg(long, default_value_t = 32, help_heading = "Target")]
    pub db_max_connections: u32,
    /// In-process: Redis for carts, the availability cache and the event
    /// stream (as `serve` with REDIS_URL), under a key prefix of this run,
    /// deleted afterwards. Without it, carts live in the database.
    #[arg(long, help_heading = "Target")]
    pub redis_url: Option<String>,
    /// In-process: install and activate the example plugins (bulk
    /// discount, quantity rules, high-value hold), as `serve
    /// --example-plugins` does.
    #[arg(long, help_heading = "Target")]
    pub example_plugins: bool,
    /// In-process, with --example-plugins: also shadow the bulk discount
    /// with a second version (other tiers, so that its answers differ) on
    /// this share (0-1) of its calls, to measure what a shadow costs.
    #[arg(long, requires = "example_plugins", help_heading = "Target")]
    pub shadow_sample: Option<f64>,
    /// In-process: keep the PostgreSQL schema (or the SQLite directory)
    /// after the run, for inspection; its location is printed.
    #[arg(long, help_heading = "Target")]
    pub keep_data: bool,

    /// Products seeded for this run (SKUs named after the run, so that a
    /// running service's other products are not touched).
    #[arg(long, default_value_t = 1000, help_heading = "Workload")]
    pub skus: usize,
    /// Units on hand seeded per product.
    #[arg(long, default_value_t = 1_000_000, help_heading = "Workload")]
    pub stock: i64,
    /// Share of lines that go to the one hot SKU (the first); the others
    /// are spread evenly over the rest.
    #[arg(long, default_value_t = 0.1, help_heading = "Workload")]
    pub hot_share: f64,
    /// Share of orders placed through a cart (PUT each line, then POST
    /// /v1/cart/checkout); the rest are direct POST /v1/orders.
    #[arg(long, default_value_t = 0.2, help_heading = "Workload")]
    pub cart_share: f64,
    /// Payment tokens and their weights, e.g.
    /// tok_ok=0.95,tok_decline=0.05 (also tok_error, tok_timeout,
    /// tok_slow: see `commerce payment-sim --help`).
    #[arg(long, default_value = "tok_ok=0.95,tok_decline=0.05", value_parser = parse_mix, help_heading = "Workload")]
    pub tokens: TokenMix,
    /// Most lines per order (each order has 1 to this many distinct SKUs).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20), help_heading = "Workload")]
    pub max_lines: u32,
    /// Most units per line (1 to this many).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100), help_heading = "Workload")]
    pub max_quantity: u32,
    /// Distinct customers (tokens minted before the load starts).
    #[arg(long, default_value_t = 1000, help_heading = "Workload")]
    pub customers: usize,

    /// Orders per second to start, open loop (a scheduler sends on time
    /// whatever the answers; a send that finds --concurrency orders in
    /// flight is counted as missed). 0: flat out, --concurrency customers
    /// each placing their next order once the last one ended.
    #[arg(long, default_value_t = 1000.0, help_heading = "Load")]
    pub rate: f64,
    /// Orders in flight at most (open loop), or customers (flat out). Also
    /// the size of the HTTP connection pool.
    #[arg(long, default_value_t = 512, help_heading = "Load")]
    pub concurrency: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 60, help_heading = "Load")]
    pub duration: u64,
    /// Seconds of load before the measured window (not counted).
    #[arg(long, default_value_t = 5, help_heading = "Load")]
    pub warmup: u64,
    /// Seconds after the load for every order to reach a terminal state;
    /// what is still open then fails the check.
    #[arg(long, default_value_t = 60, help_heading = "Load")]
    pub drain: u64,
    /// `Prefer: wait=N` sent with each order: how long the service holds
    /// the answer for the saga's outcome (it caps the wait at 25).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=30), help_heading = "Load")]
    pub prefer_wait: u64,
    /// Seed of the workload's random choices (a fixed seed gives the same
    /// mix of orders).
    #[arg(long, help_heading = "Load")]
    pub seed: Option<u64>,

    /// Print the summary as one JSON document instead of text.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// What PostgreSQL alone durably writes for the order write shape on
    /// this machine, in orders/s (`scripts/pg-ceiling.sh` measures it):
    /// the summary gives the run's throughput as a share of it.
    #[arg(long, help_heading = "Output")]
    pub ceiling: Option<f64>,

    #[command(flatten, next_help_heading = "In-process service: sagas")]
    pub sagas: SagaArgs,
    #[command(flatten, next_help_heading = "In-process service: inventory")]
    pub inventory: InventoryArgs,
    #[command(flatten, next_help_heading = "In-process service: outbox")]
    pub outbox: OutboxArgs,
    #[command(flatten, next_help_heading = "In-process service: retention")]
    pub retention: RetentionArgs,
    #[command(flatten, next_help_heading = "In-process service: plugins")]
    pub plugins: PluginArgs,
    #[command(flatten, next_help_heading = "In-process service: carts")]
    pub carts: CartArgs,
    #[command(flatten, next_help_heading = "In-process service: payments")]
    pub payments: PaymentTimeoutArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Payment tokens with their probabilities (summing to 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenMix(pub Vec<(String, f64)>);

impl TokenMix {
    /// The token for `u` drawn uniformly from [0, 1).
    pub fn pick(&self, u: f64) -> &str {
        let mut acc = 0.0;
        for (token, p) in &self.0 {
            acc += p;
            if u < acc {
                return token;
            }
        }
        &self.0.last().expect("a mix has a token").0
    }
}

/// Parses `tok_ok=0.95,tok_decline=0.05` (weights are normalised).
pub fn parse_mix(s: &str) -> Result<TokenMix, String> {
    let mut mix = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (token, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected TOKEN=WEIGHT"))?;
        let weight: f64 = weight
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: the weight is not a number"))?;
        if !weight.is_finite() || weight < 0.0 {
            return Err(format!("{part:?}: the weight must be 0 or more"));
        }
        let token = token.trim();
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("{part:?}: a token is letters, digits and '_'"));
        }
        mix.push((token.to_owned(), weight));
    }
    let total: f64 = mix.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return Err("give at least one token with a positive weight".into());
    }
    mix.retain(|(_, w)| *w > 0.0);
    for (_, w) in &mut mix {
        *w /= total;
    }
    Ok(TokenMix(mix))
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// Start the service here, on a free port.
    InProcess,
    /// A running service, its signing secret and its payment simulator.
    Remote {
        url: String,
        jwt_secret: String,
        payment_sim_url: String,
    },
}

impl BenchArgs {
    /// Checks the combination of options.
    pub fn validate(&self) -> anyhow::Result<TargetSpec> {
        let share = |name: &str, v: f64| {
            ensure!(
                (0.0..=1.0).contains(&v),
                "--{name} must be between 0 and 1, not {v}"
            );
            Ok(())
        };
        share("hot-share", self.hot_share)?;
        share("cart-share", self.cart_share)?;
        ensure!(self.skus >= 1, "--skus must be at least 1");
        ensure!(
            (1..=commerce_app::catalog::MAX_STOCK).contains(&self.stock),
            "--stock must be between 1 and {}",
            commerce_app::catalog::MAX_STOCK
        );
        ensure!(
            self.rate.is_finite() && self.rate >= 0.0,
            "--rate must be 0 (flat out) or a positive number of orders per second"
        );
        ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        ensure!(self.customers >= 1, "--customers must be at least 1");
        ensure!(self.duration >= 1, "--duration must be at least 1 second");
        match &self.url {
            None => Ok(TargetSpec::InProcess),
            Some(url) => {
                let jwt_secret = self
                    .jwt_secret
                    .clone()
                    .filter(|s| !s.is_empty())
                    .context("--url needs --jwt-secret (or COMMERCE_JWT_SECRET): the service's secret, to mint tokens")?;
                let Some(payment_sim_url) = self.payment_sim_url.clone() else {
                    bail!(
                        "--url needs --payment-sim-url: the payment simulator the service pays through, whose ledger the check reads"
                    );
                };
                Ok(TargetSpec::Remote {
                    url: url.trim_end_matches('/').to_owned(),
                    jwt_secret,
                    payment_sim_url: payment_sim_url.trim_end_matches('/').to_owned(),
                })
            }
        }
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_mixes() {
        let mix = parse_mix("tok_ok=3, tok_decline=1").unwrap();
        assert_eq!(
            mix,
            TokenMix(vec![("tok_ok".into(), 0.75), ("tok_decline".into(), 0.25)])
        );
        assert_eq!(mix.pick(0.0), "tok_ok");
        assert_eq!(mix.pick(0.749), "tok_ok");
        assert_eq!(mix.pick(0.75), "tok_decline");
        assert_eq!(mix.pick(0.999_999), "tok_decline");
        assert_eq!(parse_mix("tok_ok=1,tok_slow=0").unwrap().0.len(), 1);
        for bad in [
            "",
            "tok_ok",
            "tok_ok=x",
            "tok_ok=-1",
            "tok_ok=0",
            "=1",
            "a b=1",
        ] {
            assert!(parse_mix(bad).is_err(), "{bad}");
        }
    }
}
