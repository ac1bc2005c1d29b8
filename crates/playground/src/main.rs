//! `flux-playground`: starts the playground and waits for Ctrl-C (or
//! SIGTERM), then stops it; `flux-playground push` pushes a new tag to a
//! running playground's registry.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use flux_playground::{FluxdLog, Options, Playground};
use flux_testkit::registry::{ImageSpec, Pusher};

/// Flux on one machine: a local registry, a git repo of the sock-shop
/// manifests and fluxd on them, until Ctrl-C.
#[derive(Debug, Parser)]
#[command(
    name = "flux-playground",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Verb>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Push a new tag of an image to the running playground's registry.
    Push(PushArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Run fluxd against this kubeconfig's cluster instead of without a cluster.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The fluxd binary [default: beside this one].
    #[arg(long, value_name = "PATH")]
    fluxd: Option<PathBuf>,
    /// The fluxctl binary [default: beside this one].
    #[arg(long, value_name = "PATH")]
    fluxctl: Option<PathBuf>,
    /// Show fluxd's log here instead of in a file.
    #[arg(long)]
    fluxd_log: bool,
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    /// The image and its new tag, e.g. `weaveworksdemos/front-end:0.3.14`
    /// (a leading `localhost:<port>/` is allowed).
    image: String,
    /// The playground's registry, `localhost:<port>`.
    #[arg(long, env = "FLUX_PLAYGROUND_REGISTRY")]
    registry: String,
    /// The image's creation time, RFC 3339 [default: now].
    #[arg(long)]
    created: Option<jiff::Timestamp>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Verb::Push(args)) => runtime.block_on(push(args)),
        None => runtime.block_on(run(cli.run)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let options = Options {
        fluxd: args.fluxd.map_or_else(|| beside_this("fluxd"), Ok)?,
        fluxctl: args.fluxctl.map_or_else(|| beside_this("fluxctl"), Ok)?,
        kubeconfig: args.kubeconfig,
        fluxd_log: if args.fluxd_log {
            FluxdLog::Terminal
        } else {
            FluxdLog::File
        },
    };
    // Listen before starting anything, so a signal during the start is
    // not lost: the start is abandoned and what it made is removed.
    let mut stop = Stop::listen()?;
    eprintln!("Starting a registry, a git repo and fluxd ...");
    let mut playground = tokio::select! {
        started = Playground::start(options) => started?,
        () = stop.requested() => {
            eprintln!("Stopped before the playground was up; removed what was made.");
            return Ok(());
        }
    };
    println!("{}", playground.instructions());
    let exited = tokio::select! {
        () = stop.requested() => None,
        status = fluxd_exit(&mut playground) => Some(status),
    };
    eprintln!("Stopping fluxd and the registry ...");
    playground.stop()?;
    eprintln!("Stopped; temporary folders removed.");
    match exited {
        Some(status) => bail!("fluxd exited by itself with {status}"),
        None => Ok(()),
    }
}

/// Waits for fluxd to exit by itself.
async fn fluxd_exit(playground: &mut Playground) -> std::process::ExitStatus {
    loop {
        if let Some(status) = playground.fluxd_exited() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// SIGINT and SIGTERM.
struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    fn listen() -> anyhow::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

fn beside_this(name: &str) -> anyhow::Result<PathBuf> {
    let this = std::env::current_exe().context("finding this program's path")?;
    Ok(this.with_file_name(name))
}

async fn push(args: PushArgs) -> anyhow::Result<()> {
    let image = args
        .image
        .strip_prefix(&format!("{}/", args.registry))
        .unwrap_or(&args.image);
    let Some((repository, tag)) = image.rsplit_once(':').filter(|(r, _)| !r.contains('@')) else {
        bail!(
            "{}: expected <repository>:<tag>, e.g. weaveworksdemos/front-end:0.3.14",
            args.image
        );
    };
    if repository.is_empty() || tag.is_empty() || tag.contains('/') {
        bail!(
            "{}: expected <repository>:<tag>, e.g. weaveworksdemos/front-end:0.3.14",
            args.image
        );
    }
    let created = args.created.unwrap_or_else(jiff::Timestamp::now);
    let reachable =
        tokio::net::TcpStream::connect(args.registry.replace("localhost", "127.0.0.1")).await;
    if let Err(error) = reachable {
        bail!(
            "no registry at {}: {error} (is the playground running?)",
            args.registry
        );
    }
    Pusher::new(&args.registry)
        .push_image(repository, tag, &ImageSpec::created(&created.to_string()))
        .await;
    println!(
        "Pushed {}/{repository}:{tag} (created {created})",
        args.registry
    );
    Ok(())
}
