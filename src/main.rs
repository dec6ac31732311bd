//! The `replytime` binary: parse flags, set up tracing, run a subcommand.

use std::process::ExitCode;

use clap::Parser;
use replytime::cli::Cli;

/// jemalloc for the whole process, RocksDB's C++ allocations included (its
/// `malloc` replaces the C library's at link time). With glibc's malloc, RocksDB's
/// block churn on several threads left the resident set 20–50 % above what was in
/// use, growing with the state; jemalloc returns freed pages to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The one shutdown token of the process: commands that run until stopped
    // cancel it on SIGTERM or SIGINT and hand it down to their loops.
    let shutdown = replytime::pipeline::shutdown::CancellationToken::new();
    match replytime::cli::dispatch(cli, shutdown).await {
        Ok(code) => code,
        Err(e) if replytime::cli::json_logs() => {
            // Log collectors read one JSON object per line: the fatal error is one.
            tracing::error!(error = %error_chain(&e), "replytime stopped with an error");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("replytime: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without a cause whose
/// text its parent already ends with (errors that print their source inline).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
