//! `fluxctl`: the Flux command line.
//!
//! Flags are parsed here and handed to the libraries; each verb lives in a
//! module of its own.

mod check_policy;
mod list_images;
mod offline_workloads;
mod registry_options;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Flux command line.
#[derive(Debug, Parser)]
#[command(name = "fluxctl", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show which tags a tag policy admits, newest first.
    CheckPolicy(check_policy::Args),
    /// Show the images workloads run and the tags their repositories offer.
    ListImages(list_images::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckPolicy(args) => check_policy::run(args),
        Command::ListImages(args) => {
            init_logging();
            list_images::run(args)
        }
    }
}

/// Warnings (an unusable cache rebuilt, a registry error) go to stderr;
/// `RUST_LOG` shows more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // Repository errors are shown in the output itself.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,flux_registry::scan=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
