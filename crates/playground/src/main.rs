//! `flux-playground`: starts the playground and waits for Ctrl-C (or
//! SIGTERM), then stops it; `flux-playground push` pushes a new tag to a
//! running playground's registry.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use flux_playground::{Cluster, FluxdLog, Options, Playground, context};
use flux_testkit::registry::{ImageSpec, Pusher};

/// Flux on one machine: a local registry, a git repo of the sock-shop
/// manifests and fluxd applying them to a simulated cluster, until Ctrl-C.
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
    /// Run fluxd against this kubeconfig's cluster instead of the simulated one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["use_current_context", "cluster"])]
    kubeconfig: Option<PathBuf>,
    /// Run fluxd against the current kubeconfig context (`KUBECONFIG`, else
    /// `~/.kube/config`) instead of the simulated cluster.
    #[arg(long, conflicts_with = "cluster")]
    use_current_context: bool,
    /// `none`: fluxd runs without a cluster (`--cluster=none`) and applies
    /// nothing [default: simulated, an in-memory API server and controller;
    /// no pods run].
    #[arg(long, value_enum, value_name = "KIND")]
    cluster: Option<ClusterKind>,
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ClusterKind {
    /// The Kubernetes API server double and a simulated controller.
    Simulated,
    /// No cluster: nothing is applied.
    None,
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
    let chosen = args.kubeconfig.is_some() || args.use_current_context;
    let cluster = cluster(&args)?;
    let options = Options {
        fluxd: args.fluxd.map_or_else(|| beside_this("fluxd"), Ok)?,
        fluxctl: args.fluxctl.map_or_else(|| beside_this("fluxctl"), Ok)?,
        cluster,
        fluxd_log: if args.fluxd_log {
            FluxdLog::Terminal
        } else {
            FluxdLog::File
        },
    };
    // Listen before starting anything, so a signal during the start is
    // not lost: the start is abandoned and what it made is removed.
    let mut stop = Stop::listen()?;
    // Probed while the playground starts, so as not to slow it down.
    let probe = (!chosen).then(|| tokio::spawn(context::probe()));
    eprintln!(
        "Starting a registry, a git repo, {} and fluxd ...",
        match options.cluster {
            Cluster::Simulated => "a simulated cluster",
            Cluster::Kubeconfig(_) => "the kubeconfig's cluster",
            Cluster::None => "no cluster",
        }
    );
    let mut playground = tokio::select! {
        started = Playground::start(options) => started?,
        () = stop.requested() => {
            eprintln!("Stopped before the playground was up; removed what was made.");
            return Ok(());
        }
    };
    let current = match probe {
        Some(probe) => probe.await.ok().flatten(),
        None => None,
    };
    println!("{}", playground.instructions(current.as_ref()));
    let exited = tokio::select! {
        () = stop.requested() => None,
        status = fluxd_exit(&mut playground) => Some(status),
    };
    eprintln!("Stopping fluxd, the registry and any simulated cluster ...");
    playground.stop()?;
    eprintln!("Stopped; temporary folders removed.");
    match exited {
        Some(status) => bail!("fluxd exited by itself with {status}"),
        None => Ok(()),
    }
}

/// The cluster the flags ask for; the simulated one unless told otherwise.
fn cluster(args: &RunArgs) -> anyhow::Result<Cluster> {
    if let Some(file) = &args.kubeconfig {
        if !file.is_file() {
            bail!("--kubeconfig {}: not a file", file.display());
        }
        let absolute =
            std::path::absolute(file).with_context(|| format!("resolving {}", file.display()))?;
        return Ok(Cluster::Kubeconfig(absolute.into_os_string()));
    }
    if args.use_current_context {
        let Some(kubeconfig) = context::kubeconfig() else {
            bail!(
                "--use-current-context: no kubeconfig (KUBECONFIG is not set and \
                 ~/.kube/config does not exist); give one with --kubeconfig FILE"
            );
        };
        return Ok(Cluster::Kubeconfig(kubeconfig));
    }
    Ok(match args.cluster {
        Some(ClusterKind::None) => Cluster::None,
        Some(ClusterKind::Simulated) | None => Cluster::Simulated,
    })
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
