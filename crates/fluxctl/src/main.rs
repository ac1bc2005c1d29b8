//! `fluxctl`: the Flux command line.
//!
//! Flags are parsed here and handed to the libraries; each verb lives in a
//! module of its own. With `--manifests DIR` a verb works on a checkout;
//! without, it asks the daemon at `--url`, or finds fluxd's pod in the
//! cluster and port-forwards to it.

mod applied;
mod check_policy;
mod ci;
mod completion;
mod config_repo;
mod daemon;
mod explain;
mod identity;
mod install;
mod interactive;
mod list_images;
mod list_workloads;
mod offline;
mod plugin;
mod policy;
mod port_forward;
mod registry_options;
mod release;
mod results;
mod rollout;
mod save;
mod sync;
mod table;
mod timeline;
mod workload_id;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Flux command line.
#[derive(Debug, Parser)]
#[command(name = "fluxctl", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    connection: daemon::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show which tags a tag policy admits, newest first.
    CheckPolicy(check_policy::Args),
    /// Show the images workloads run and the tags their repositories offer.
    ListImages(list_images::Args),
    /// List the workloads, containers and images in a checkout, with their policies.
    #[command(visible_aliases = ["list-services", "list-controllers"])]
    ListWorkloads(list_workloads::Args),
    /// Release images to workloads by editing their manifests.
    Release(Box<release::Args>),
    /// Turn on automated releases of new images for a workload.
    Automate(policy::Target),
    /// Turn off automated releases for a workload.
    Deautomate(policy::Target),
    /// Lock a workload: releases leave it alone.
    Lock(policy::Target),
    /// Unlock a workload.
    Unlock(policy::Target),
    /// Change a workload's policies: automation, lock, tag filters.
    Policy(policy::Args),
    /// Ask the daemon to fetch git now and wait until the head is applied.
    Sync(sync::Args),
    /// Write the resources of the manifests as YAML: to stdout, or one file per resource.
    Save(save::Args),
    /// Show the daemon's public deploy key.
    Identity(identity::Args),
    /// Print the Kubernetes objects that run fluxd in the cluster, or write one file per object.
    Install(Box<install::Args>),
    /// Show fluxctl's version.
    Version,
    /// Write a shell completion script.
    Completion(completion::Args),
    /// Run as a CI step (Drone, Woodpecker, GitHub Actions): release with the settings of the
    /// PLUGIN_* (or INPUT_*) variables.
    Plugin,
}

fn main() -> ExitCode {
    run(Cli::parse())
}

fn run(cli: Cli) -> ExitCode {
    let connection = &cli.connection;
    match cli.command {
        Command::CheckPolicy(args) => check_policy::run(args),
        Command::ListImages(args) => {
            init_logging();
            list_images::run(args, connection)
        }
        Command::ListWorkloads(args) => list_workloads::run(args, connection),
        Command::Release(args) => {
            init_logging();
            release::run(*args, connection)
        }
        Command::Automate(target) => policy::run_verb(policy::Verb::Automate, target, connection),
        Command::Deautomate(target) => {
            policy::run_verb(policy::Verb::Deautomate, target, connection)
        }
        Command::Lock(target) => policy::run_verb(policy::Verb::Lock, target, connection),
        Command::Unlock(target) => policy::run_verb(policy::Verb::Unlock, target, connection),
        Command::Policy(args) => policy::run(args, connection),
        Command::Sync(args) => sync::run(args, connection),
        Command::Save(args) => save::run(args, connection),
        Command::Identity(args) => identity::run(args, connection),
        Command::Install(args) => install::run(*args),
        Command::Version => {
            println!("fluxctl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Completion(args) => {
            completion::run(args);
            ExitCode::SUCCESS
        }
        Command::Plugin => as_plugin(),
    }
}

/// The settings made into a release and run; exit 2 on a bad setting,
/// before anything is cloned.
fn as_plugin() -> ExitCode {
    let prepared = match plugin::prepare() {
        Ok(prepared) => prepared,
        Err(error) => {
            eprintln!("fluxctl plugin: {error}");
            return ExitCode::from(2);
        }
    };
    match Cli::try_parse_from(&prepared.argv) {
        Ok(cli) => run(cli),
        Err(error) => {
            // The settings were checked, so this is a setting clap reads
            // differently; its message names the flag.
            eprint!("fluxctl plugin: {error}");
            ExitCode::from(2)
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
