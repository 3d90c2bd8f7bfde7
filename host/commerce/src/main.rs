//! `commerce`: see `commerce --help`.

use clap::Parser;

mod cli;
mod scaffold;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = crate::cli::Cli::parse();
    match crate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "exiting on error");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
