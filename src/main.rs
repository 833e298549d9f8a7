//! `fim`: file integrity monitoring for containers.
//!
//! The binary only parses flags, sets up telemetry and the health listener,
//! picks a transport and runs the stages the command asks for; the stages
//! live in their own crates and never know which mode they run in.

mod cli;
mod http;
mod modes;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    notifier::install_crypto_provider();
    // A scan is a batch job with exit statuses of its own (0, 1, 2).
    if let cli::Command::Scan(args) = &cli.command {
        return modes::scan(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fim: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(modes::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
