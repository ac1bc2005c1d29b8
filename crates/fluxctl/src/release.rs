//! `fluxctl release --manifests DIR`: put images into workloads by editing
//! their manifests in place — one image given on the command line
//! (`--update-image`), or for each container the newest tag its policy
//! admits, found by scanning the registries (`--update-all-images`).
//! Without `--manifests`, the daemon runs the release as a job: it commits
//! and pushes, and this prints the result and the commit, waits for the
//! commit to be applied, and with `--watch` follows the rollout;
//! `--interactive` lets the user pick the container updates first.

use std::process::ExitCode;

use anyhow::{Context, bail};
use flux_git::CommitMessage;
use flux_image::ImageRef;
use flux_manifests::release::{self, ContainerTargets, ReleaseSpec, Status, Targets, Update};
use flux_manifests::{Checkout, ResourceId, Transaction};
use flux_registry::newest_admitted;

use std::time::Duration;

use flux_api::Client;

use crate::applied::{self, Waited};
use crate::config_repo::{self, Commit, GitArgs};
use crate::daemon::{self, Connection, short};
use crate::interactive;
use crate::offline::{Manifests, Output};
use crate::registry_options::RegistryArgs;
use crate::results;
use crate::rollout::{self, Progress, Watched};
use crate::timeline;

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
    #[command(flatten)]
    git: GitArgs,
    /// Workloads to release to (`<namespace>:<kind>/<name>`, `<kind>/<name>` in --namespace,
    /// `<namespace>/<name>`); comma-separated or repeated. `--service`, `--controller` and `-c`
    /// are Flux v1's (deprecated) spellings.
    #[arg(
        long = "workload",
        value_name = "ID",
        visible_aliases = ["service", "controller"],
        short_alias = 'c',
        value_delimiter = ','
    )]
    workload: Vec<String>,
    /// The namespace of workload ids given as `<kind>/<name>`.
    #[arg(short, long, value_name = "NS")]
    namespace: Option<String>,
    /// Release to every workload (with --update-image: every one running its repository).
    #[arg(long)]
    all: bool,
    /// Workloads to leave alone; comma-separated or repeated.
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    exclude: Vec<String>,
    /// The image to release, with its tag or digest.
    #[arg(short = 'i', long, value_name = "IMG:TAG")]
    update_image: Option<String>,
    /// Release to each container the newest tag its policy admits (asks the registries).
    #[arg(long)]
    update_all_images: bool,
    /// Only this container of the named workloads; may be repeated.
    #[arg(long, value_name = "NAME")]
    container: Vec<String>,
    /// Show what would change, write nothing.
    #[arg(long, conflicts_with_all = ["watch", "interactive"])]
    dry_run: bool,
    /// After the commit is applied, follow the released workloads' rollouts until ready
    /// (daemon only).
    #[arg(short, long)]
    watch: bool,
    /// Choose the container updates to release from a checklist of the plan (daemon only;
    /// needs a terminal).
    #[arg(long)]
    interactive: bool,
    /// How long to wait for the commit to be applied, and then for the rollout: the global
    /// `--timeout`.
    #[arg(skip)]
    apply_timeout: Duration,
    /// Release to locked workloads too.
    #[arg(short, long)]
    force: bool,
    /// Show skipped workloads and the job's timeline too (-vv: ignored workloads as well).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Output format.
    #[arg(short, long, visible_alias = "output-format", value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Why (heads the commit message; with the daemon or --git-url).
    #[arg(short, long)]
    message: Option<String>,
    /// Who asked: with --git-url the commit's author (default: the author of the commit the CI
    /// built), with the daemon its author when fluxd sets authors.
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
    if args.interactive {
        interactive::require_terminal()?;
    }
    let (workloads, excludes) = ids(args)?;
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
        flux_api::Targets::Workloads(workloads.iter().map(ToString::to_string).collect())
    };
    Ok(flux_api::JobSpec::Release(flux_api::ReleaseSpec {
        targets,
        exclude: excludes.iter().map(ToString::to_string).collect(),
        update,
        force: args.force,
        dry_run: args.dry_run,
        message: args.message.clone(),
        user: args.user.clone(),
        containers: Default::default(),
    }))
}

async fn through_daemon(
    args: Args,
    spec: flux_api::JobSpec,
    connection: &Connection,
) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let json = args.output == Output::Json;
    let spec = match spec {
        flux_api::JobSpec::Release(release) if args.interactive => {
            match interactive::choose(&client, &release).await? {
                Some(chosen) => chosen,
                None => return Ok(ExitCode::SUCCESS),
            }
        }
        spec if args.dry_run => {
            eprintln!("Submitting dry-run release ...");
            spec
        }
        spec => {
            eprintln!("Submitting release ...");
            spec
        }
    };
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
    follow(&client, job, &args).await
}

/// After the job: the result and the commit pushed, then (unless nothing
/// was pushed) the wait for the commit to be applied and, with `--watch`,
/// for the rollout; with `-v` the timeline, with `-o json` the job alone.
async fn follow(client: &Client, job: flux_api::Job, args: &Args) -> anyhow::Result<ExitCode> {
    let json = args.output == Output::Json;
    if !json {
        print!("{}", daemon::render_results(&job.result, args.verbose));
        if let Some(commit) = &job.commit {
            println!("Commit pushed:\t{}", short(commit));
        }
    }
    let mut failed = daemon::failed(&job);
    let mut job = job;
    // A workload that failed does not hold back the others' commit.
    if job.commit.is_some() {
        let (last, ok) = applied_and_rolled_out(client, job, args).await?;
        job = last;
        failed |= !ok;
    } else if args.watch && !failed {
        eprintln!("fluxctl: nothing was pushed, so there is no rollout to watch");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else if args.verbose > 0 {
        print!("{}", timeline::render(&job.timeline));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits for the commit to be applied, then (with `--watch`) for the
/// rollout; answers with the job as last read and whether all went well.
async fn applied_and_rolled_out(
    client: &Client,
    job: flux_api::Job,
    args: &Args,
) -> anyhow::Result<(flux_api::Job, bool)> {
    let json = args.output == Output::Json;
    let job = match applied::wait(client, job, args.apply_timeout).await? {
        Waited::Applied(job) => job,
        Waited::NoCluster(job) => {
            eprintln!("fluxctl: {}", applied::no_cluster(&job));
            if args.watch {
                eprintln!("fluxctl: --watch: no rollout to follow without a cluster");
            }
            return Ok((job, !args.watch));
        }
        Waited::Failed(job) => {
            eprintln!("fluxctl: {}", applied::failed(&job));
            return Ok((job, false));
        }
        Waited::TimedOut(job) => {
            let workloads = client.workloads(None).await.unwrap_or_default();
            eprintln!(
                "fluxctl: {}",
                applied::timed_out(&job, args.apply_timeout, &workloads)
            );
            return Ok((job, false));
        }
    };
    if !json && let Some(commit) = &job.applied {
        println!("Commit applied:\t{}", short(commit));
    }
    if !args.watch {
        return Ok((job, true));
    }
    eprintln!("Monitoring rollout ...");
    let ids = applied::released(&job);
    let watched = rollout::watch(client, &ids, args.apply_timeout, args.verbose, |table| {
        if !json {
            println!("{table}");
        }
    })
    .await?;
    let ok = explain_rollout(&watched, args.apply_timeout);
    // The daemon may have recorded the rollout's end meanwhile.
    let job = client.job(&job.id).await.unwrap_or(job);
    Ok((job, ok))
}

/// Says how the watch ended, on standard error; whether all became ready.
fn explain_rollout(watched: &Watched, timeout: Duration) -> bool {
    match watched {
        Watched::Ended(Progress::Ready | Progress::Rolling) => {
            eprintln!("All workloads ready.");
            true
        }
        Watched::Ended(Progress::NoRollout) => {
            eprintln!(
                "fluxctl: fluxd reports no rollout for the released workloads: \
                 it has no cluster to watch"
            );
            false
        }
        Watched::Ended(Progress::Failed(failures)) => {
            for (workload, messages) in failures {
                eprintln!("There was a problem releasing {workload}:");
                for message in messages {
                    eprintln!("{message}");
                }
            }
            false
        }
        Watched::TimedOut => {
            eprintln!(
                "fluxctl: the rollout was not ready within {}s; see list-workloads",
                timeout.as_secs()
            );
            false
        }
    }
}

/// The spec as the flags give it; with `--update-all-images` its targets
/// are still empty (decided after scanning).
fn spec(args: &Args) -> anyhow::Result<ReleaseSpec> {
    let update = match &args.update_image {
        Some(text) => Update::Image(image_to_release(text)?),
        None => Update::PerContainer(ContainerTargets::new()),
    };
    let (workloads, excludes) = ids(args)?;
    let targets = if args.all {
        Targets::All
    } else {
        Targets::Only(workloads)
    };
    Ok(ReleaseSpec {
        targets,
        excludes,
        update,
        containers: args.container.clone(),
        force: args.force,
    })
}

/// The `--workload` and `--exclude` ids, read in `--namespace`.
fn ids(args: &Args) -> anyhow::Result<(Vec<ResourceId>, Vec<ResourceId>)> {
    let namespaces = args.manifests.namespaces(args.namespace.as_deref());
    Ok((
        namespaces.parse_all("--workload", &args.workload)?,
        namespaces.parse_all("--exclude", &args.exclude)?,
    ))
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
pub fn run(mut args: Args, connection: &Connection) -> ExitCode {
    args.apply_timeout = connection.timeout;
    if args.git.given() {
        return to_config_repo(args, connection);
    }
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
    if args.watch || args.interactive {
        eprintln!(
            "fluxctl: --watch and --interactive work with the daemon only, not with --manifests"
        );
        return ExitCode::from(2);
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

/// `--git-url`: clone, edit, commit, push; then, with `--url`, wait for
/// that daemon to apply the commit. Exit 2 on bad arguments, before
/// anything is cloned.
fn to_config_repo(args: Args, connection: &Connection) -> ExitCode {
    if args.watch || args.interactive {
        eprintln!(
            "fluxctl: --watch and --interactive work with the daemon only, not with --git-url"
        );
        return ExitCode::from(2);
    }
    let spec = match spec(&args) {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("fluxctl: {error:#}");
            return ExitCode::from(2);
        }
    };
    let client = match &connection.url {
        Some(_) => match connection.client_at_url() {
            Ok(client) => Some(client),
            Err(error) => {
                eprintln!("fluxctl: {error:#}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    daemon::block_on(release_to_config_repo(args, spec, client))
}

async fn release_to_config_repo(
    args: Args,
    spec: ReleaseSpec,
    client: Option<Client>,
) -> anyhow::Result<ExitCode> {
    let commit = Commit {
        message: commit_message(&args).headed_by(args.message.as_deref()),
        user: args.user.clone(),
    };
    let mut change = |checkout: &Checkout, transaction: &mut Transaction<'_>| {
        let mut spec = spec.clone();
        if args.update_all_images {
            // The registry scan runs a runtime of its own: off this one.
            let targets = std::thread::scope(|scope| {
                scope
                    .spawn(|| newest_targets(checkout, &spec, &args.registry))
                    .join()
                    .expect("the registry scan does not panic")
            })?;
            spec.update = Update::PerContainer(targets);
        }
        Ok(release::execute(transaction, &spec))
    };
    let edited = config_repo::edit_and_push(
        &args.git,
        &args.manifests,
        args.dry_run,
        commit,
        &mut change,
    )
    .await?;
    let json = args.output == Output::Json;
    if json {
        println!("{}", serde_json::to_string_pretty(&edited.results)?);
    } else {
        print!("{}", results::render(&edited.results, args.verbose));
    }
    let mut failed = edited.unreadable || edited.results.iter().any(|r| r.status == Status::Failed);
    let Some(pushed) = edited.pushed else {
        if args.dry_run {
            eprintln!("fluxctl: dry run, nothing pushed");
        } else {
            eprintln!("fluxctl: nothing to commit: no file changed, nothing pushed");
        }
        return Ok(exit(failed));
    };
    if pushed.attempts > 1 {
        eprintln!(
            "fluxctl: pushed at attempt {}: other writers moved the branch meanwhile, \
             so the release was made again on their commits",
            pushed.attempts
        );
    }
    if !json {
        println!("Commit pushed:\t{}", short(&pushed.revision));
    }
    if let Some(client) = client {
        failed |=
            !applied::wait_for_revision(&client, &pushed.revision, args.apply_timeout).await?;
        if !json && !failed {
            println!("Commit applied:\t{}", short(&pushed.revision));
        }
    }
    Ok(exit(failed))
}

/// `Release <image> to <workloads>`, as fluxd writes it.
fn commit_message(args: &Args) -> CommitMessage {
    let image = args.update_image.as_deref().unwrap_or("<all latest>");
    if args.all {
        return CommitMessage::release(image, &["<all>"]);
    }
    let ids = ids(args).map(|(ids, _)| ids).unwrap_or_default();
    CommitMessage::release(image, &ids)
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
