//! `fluxctl`: the Flux command line.
//!
//! Flags are parsed here and handed to the libraries; each verb lives in a
//! module of its own.

mod check_policy;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckPolicy(args) => check_policy::run(args),
    }
}
