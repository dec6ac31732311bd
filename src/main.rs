//! The `replytime` binary: parse flags, set up tracing, run a subcommand.

use std::process::ExitCode;

use clap::Parser;
use replytime::cli::Cli;
use replytime::commands;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replytime: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
