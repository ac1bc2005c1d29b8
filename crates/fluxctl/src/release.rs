//! `fluxctl release --manifests DIR`: put images into workloads by editing
//! their manifests in place — one image given on the command line
//! (`--update-image`), or for each container the newest tag its policy
//! admits, found by scanning the registries (`--update-all-images`).
//! Without `--manifests`, the daemon runs the release as a job: it commits
//! and pushes, and this prints the result and the commit.

use std::process::ExitCode;

use anyhow::{Context, bail};
use flux_image::ImageRef;
use flux_manifests::release::{self, ContainerTargets, ReleaseSpec, Status, Targets, Update};
use flux_manifests::{Checkout, Transaction};
use flux_registry::newest_admitted;

use crate::daemon::{self, Connection};
use crate::offline::{Manifests, Output, parse_id};
use crate::registry_options::RegistryArgs;
use crate::results;

/// Arguments of `release`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["workload", "all"])))]
#[command(group(
    clap::ArgGroup::new("update")
        .required(true)
        .args(["update_image", "update_all_images"])
))]
pub struct Args {
    #[command(flatten)]
    manifests: Manifests,
    /// A workload to release to (`<namespace>:<kind>/<name>`); may be repeated.
    #[arg(short, long = "workload", value_name = "ID")]
    workload: Vec<String>,
    /// Release to every workload (with --update-image: every one running its repository).
    #[arg(long)]
    all: bool,
    /// A workload to leave alone; may be repeated.
    #[arg(long, value_name = "ID")]
    exclude: Vec<String>,
    /// The image to release, with its tag or digest.
    #[arg(short = 'i', long, value_name = "IMG:TAG")]
    update_image: Option<String>,
    /// Release to each container the newest tag its policy admits (asks the registries).
    #[arg(long)]
    update_all_images: bool,
    /// Only this container of the named workloads; may be repeated.
    #[arg(short, long, value_name = "NAME")]
    container: Vec<String>,
    /// Show what would change, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Release to locked workloads too.
    #[arg(long)]
    force: bool,
    /// Show skipped workloads too (-vv: ignored ones as well).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Why (heads the commit message; daemon only).
    #[arg(short, long)]
    message: Option<String>,
    /// Who asked (the commit author when the daemon sets authors; daemon only).
    #[arg(long, env = "FLUX_USER")]
    user: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// The job the daemon is asked to run.
fn job_spec(args: &Args) -> anyhow::Result<flux_api::JobSpec> {
    if !args.container.is_empty() {
        bail!("--container works only with --manifests");
    }
    for id in args.workload.iter().chain(&args.exclude) {
        parse_id(id)?;
    }
    let update = match &args.update_image {
        Some(text) => {
            image_to_release(text)?;
            flux_api::ImageUpdate::Image(text.clone())
        }
        None => flux_api::ImageUpdate::AllLatest,
    };
    let targets = if args.all {
        flux_api::Targets::All
    } else {
        flux_api::Targets::Workloads(args.workload.clone())
    };
    Ok(flux_api::JobSpec::Release(flux_api::ReleaseSpec {
        targets,
        exclude: args.exclude.clone(),
        update,
        force: args.force,
        dry_run: args.dry_run,
        message: args.message.clone(),
        user: args.user.clone(),
    }))
}

async fn through_daemon(
    args: Args,
    spec: flux_api::JobSpec,
    connection: &Connection,
) -> anyhow::Result<ExitCode> {
    let client = connection.client()?;
    eprintln!("Submitting release ...");
    let json = args.output == Output::Json;
    if args.dry_run {
        let submitted = client.submit(&spec).await?;
        let plan = submitted.plan.unwrap_or_default();
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", daemon::render_results(&plan, args.verbose));
        }
        let failed = plan
            .iter()
            .any(|r| r.status == flux_api::ResultStatus::Failed);
        return Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let job = daemon::submit_and_wait(&client, &spec).await?;
    Ok(daemon::report(&job, args.verbose, json))
}

/// The spec as the flags give it; with `--update-all-images` its targets
/// are still empty (decided after scanning).
fn spec(args: &Args) -> anyhow::Result<ReleaseSpec> {
    let update = match &args.update_image {
        Some(text) => Update::Image(image_to_release(text)?),
        None => Update::PerContainer(ContainerTargets::new()),
    };
    let targets = if args.all {
        Targets::All
    } else {
        Targets::Only(
            args.workload
                .iter()
                .map(|w| parse_id(w))
                .collect::<Result<_, _>>()?,
        )
    };
    let excludes = args
        .exclude
        .iter()
        .map(|w| parse_id(w))
        .collect::<Result<_, _>>()?;
    Ok(ReleaseSpec {
        targets,
        excludes,
        update,
        containers: args.container.clone(),
        force: args.force,
    })
}

fn image_to_release(text: &str) -> anyhow::Result<ImageRef> {
    let image = ImageRef::parse(text).with_context(|| format!("--update-image {text}"))?;
    if image.tag().is_none() && image.digest().is_none() {
        bail!("--update-image {text}: name a tag or digest");
    }
    Ok(image)
}

/// Edits, verifies and writes; exits 1 when a workload failed or a file
/// could not be read, 2 on bad arguments.
pub fn run(args: Args, connection: &Connection) -> ExitCode {
    if args.manifests.paths.is_empty() {
        // Bad arguments are refused (exit 2) before the daemon is asked.
        let spec = match job_spec(&args) {
            Ok(spec) => spec,
            Err(error) => {
                eprintln!("fluxctl: {error:#}");
                return ExitCode::from(2);
            }
        };
        return daemon::block_on(through_daemon(args, spec, connection));
    }
    let mut spec = match spec(&args) {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("fluxctl: {error:#}");
            return ExitCode::from(2);
        }
    };
    let (checkout, mut failed) = args.manifests.load();
    if args.update_all_images {
        match newest_targets(&checkout, &spec, &args.registry) {
            Ok(targets) => spec.update = Update::PerContainer(targets),
            Err(error) => {
                eprintln!("fluxctl: {error:#}");
                return ExitCode::from(2);
            }
        }
    }
    let mut transaction = Transaction::new(&checkout);
    let results = release::execute(&mut transaction, &spec);
    failed |= results.iter().any(|r| r.status == Status::Failed);
    if args.dry_run {
        eprintln!("fluxctl: dry run, nothing written");
    } else {
        failed |= !crate::offline::write(transaction);
    }
    match args.output {
        Output::Json => {
            let json = serde_json::to_string_pretty(&results).expect("results always serialise");
            println!("{json}");
        }
        Output::Text => print!("{}", results::render(&results, args.verbose)),
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// For the containers the release looks at, the newest tag each one's
/// policy admits (when newer than what it runs), from one scan of their
/// repositories. A container whose repository can't be read gets an
/// unknown target, which fails its workload only.
fn newest_targets(
    checkout: &Checkout,
    spec: &ReleaseSpec,
    registry: &RegistryArgs,
) -> anyhow::Result<ContainerTargets> {
    let repositories = registry.scan(release::repositories(checkout, spec))?;
    Ok(release::per_container_targets(
        checkout,
        spec,
        |image, policy| newest_admitted(image, policy, &repositories),
    ))
}
