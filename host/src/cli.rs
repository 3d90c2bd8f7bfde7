//! The `commerce` command line: `serve`, `migrate`, `replay`, `token`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::app::{App, Role};
use crate::auth::{JwtKeys, SecretSource, resolve_secret};
use crate::config::{SecretArgs, StoreArgs};
use crate::startup::Application;
use crate::telemetry::{self, LogFormat};

/// Commerce service: event-sourced orders, carts, inventory and sagas.
///
/// With no configuration, `commerce serve` keeps its data in an embedded
/// SQLite database under ./data; set DATABASE_URL to use PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "commerce", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (applies pending migrations first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(MigrateArgs),
    /// Rebuild the read models (order_views) from the event log and exit.
    Replay(MigrateArgs),
    /// Print a bearer token for a subject and role, signed with the
    /// configured secret (or the development secret in --data-dir).
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (logged at start-up).
    #[arg(long, env = "COMMERCE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Log format on stdout; filter with RUST_LOG (e.g. RUST_LOG=debug).
    #[arg(long, env = "COMMERCE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Log format on stdout.
    #[arg(long, env = "COMMERCE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Subject: the customer's UUID (admins have one too).
    #[arg(long)]
    pub sub: Uuid,
    /// Role granted by the token.
    #[arg(long, value_enum, default_value = "customer")]
    pub role: RoleArg,
    /// How long the token is valid: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Directory holding the development secret, when no secret is set.
    #[arg(long, env = "COMMERCE_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Customer,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Customer => Role::Customer,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Parses `90`, `90s`, `15m`, `24h`, `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("invalid duration unit in {s:?}: use s, m, h or d")),
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err("the ttl must be between 1s and 366d".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => {
            telemetry::init(args.log_format, "info");
            let store = crate::store::open(&args.store.store_config()).await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Replay(args) => {
            telemetry::init(args.log_format, "info");
            let store = crate::store::open(&args.store.store_config()).await?;
            let report = App::new(store)
                .replay_order_views()
                .await
                .context("replaying the event log")?;
            println!(
                "order_views rebuilt: {} orders from {} events",
                report.orders, report.events
            );
            Ok(())
        }
        Command::Token(args) => {
            let (secret, _) = resolve_secret(args.secret.jwt_secret.as_deref(), &args.data_dir)?;
            let token = JwtKeys::new(&secret).mint(args.sub, args.role.into(), args.ttl)?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, "info,sqlx=warn,tower_http=info");
    let config = args.store.store_config();
    let store = crate::store::open(&config).await?;
    let (secret, source) = resolve_secret(args.secret.jwt_secret.as_deref(), &args.store.data_dir)?;
    match source {
        SecretSource::Configured => {}
        SecretSource::DataDir(path) | SecretSource::Generated(path) => tracing::warn!(
            secret_file = %path.display(),
            "COMMERCE_JWT_SECRET is not set: using the development secret in {}; mint a token with \
             `commerce token --data-dir {} --sub <uuid> --role admin`. Set COMMERCE_JWT_SECRET in production.",
            path.display(),
            args.store.data_dir.display(),
        ),
    }
    let app = Application::build(&args.listen, store.clone(), JwtKeys::new(&secret)).await?;
    tracing::info!(addr = %app.local_addr(), backend = store.backend(), "listening");
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        for bad in ["", "h", "0", "5y", "400d", "-1"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
