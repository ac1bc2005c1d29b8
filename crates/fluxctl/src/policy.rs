//! `fluxctl policy|automate|deautomate|lock|unlock`: set or remove policy
//! annotations of one workload — in place with `--manifests DIR`, else as a
//! job of the daemon (which commits and pushes).

use std::process::ExitCode;

use anyhow::{Context, bail};
use flux_git::{CommitMessage, PolicyChange as GitPolicyChange};
use flux_manifests::release::{Status, WorkloadResult};
use flux_manifests::{Checkout, PolicyUpdate, ResourceId, Transaction};

use crate::config_repo::{self, Commit, GitArgs};
use crate::daemon::{self, Connection, short};
use crate::offline::Manifests;
use crate::results;

/// The flags every policy verb takes.
#[derive(Debug, clap::Args)]
pub struct Target {
    #[command(flatten)]
    manifests: Manifests,
    #[command(flatten)]
    git: GitArgs,
    /// The workload (`<namespace>:<kind>/<name>`, `<kind>/<name>` in --namespace,
    /// `<namespace>/<name>`). `--service`, `--controller` and `-c` are Flux v1's (deprecated)
    /// spellings.
    #[arg(
        short,
        long = "workload",
        value_name = "ID",
        visible_aliases = ["service", "controller"],
        short_alias = 'c'
    )]
    workload: String,
    /// The namespace of a workload id given as `<kind>/<name>`.
    #[arg(short, long, value_name = "NS")]
    namespace: Option<String>,
    /// Why (kept as the lock message when locking).
    #[arg(short, long)]
    message: Option<String>,
    /// Who (kept as the lock's user when locking).
    #[arg(long, env = "FLUX_USER")]
    user: Option<String>,
    /// Output format of the daemon's job.
    #[arg(
        short,
        long,
        visible_alias = "output-format",
        value_enum,
        default_value_t = crate::offline::Output::Text
    )]
    output: crate::offline::Output,
}

impl Target {
    /// The workload's id, read in `--namespace`.
    fn id(&self) -> Result<ResourceId, crate::workload_id::InvalidId> {
        self.manifests
            .namespaces(self.namespace.as_deref())
            .parse("--workload", &self.workload)
    }
}

/// Arguments of `policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Release new images automatically.
    #[arg(long, conflicts_with = "deautomate")]
    automate: bool,
    /// Stop releasing new images automatically.
    #[arg(long)]
    deautomate: bool,
    /// Lock: releases leave the workload alone.
    #[arg(long, conflicts_with = "unlock")]
    lock: bool,
    /// Unlock.
    #[arg(long)]
    unlock: bool,
    /// A container's tag filter, `CONTAINER=POLICY`; `=*` or `=glob:*` removes it. May be repeated.
    #[arg(long, value_name = "CONTAINER=POLICY")]
    tag: Vec<String>,
    /// The tag filter for every container of the workload.
    #[arg(long, value_name = "POLICY")]
    tag_all: Option<String>,
}

/// Which single-purpose verb.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// `automate`
    Automate,
    /// `deautomate`
    Deautomate,
    /// `lock`
    Lock,
    /// `unlock`
    Unlock,
}

/// Runs `automate`, `deautomate`, `lock` or `unlock`.
pub fn run_verb(verb: Verb, target: Target, connection: &Connection) -> ExitCode {
    let id = match target.id() {
        Ok(id) => id,
        Err(error) => {
            eprintln!("fluxctl: {error}");
            return ExitCode::from(2);
        }
    };
    if target.manifests.paths.is_empty() && !target.git.given() {
        let mut change = flux_api::PolicyChange {
            workload: id.to_string(),
            ..Default::default()
        };
        match verb {
            Verb::Automate => change.automated = Some(true),
            Verb::Deautomate => change.automated = Some(false),
            Verb::Lock => change.locked = Some(true),
            Verb::Unlock => change.locked = Some(false),
        }
        return daemon::block_on(through_daemon(&target, |_| Ok(change), connection));
    }
    let update = match verb {
        Verb::Automate => PolicyUpdate::automate(),
        Verb::Deautomate => PolicyUpdate::deautomate(),
        Verb::Lock => PolicyUpdate::lock(target.message.as_deref(), target.user.as_deref()),
        Verb::Unlock => PolicyUpdate::unlock(),
    };
    let ids = vec![id.to_string()];
    let kind = match verb {
        Verb::Automate => GitPolicyChange::Automated(ids),
        Verb::Deautomate => GitPolicyChange::Deautomated(ids),
        Verb::Lock => GitPolicyChange::Locked(ids),
        Verb::Unlock => GitPolicyChange::Unlocked(ids),
    };
    apply(&target, vec![kind], |_| Ok(update.clone()), connection)
}

/// Runs `policy`.
pub fn run(args: Args, connection: &Connection) -> ExitCode {
    let target = &args.target;
    let id = match target.id() {
        Ok(id) => id,
        Err(error) => {
            eprintln!("fluxctl: {error}");
            return ExitCode::from(2);
        }
    };
    if target.manifests.paths.is_empty() && !target.git.given() {
        let change = |containers: &[String]| change_of(&args, &id, containers);
        return daemon::block_on(through_daemon(target, change, connection));
    }
    let kinds = changed_kinds(&args, &id);
    apply(
        target,
        kinds,
        |containers| {
            let mut update = PolicyUpdate::default();
            if args.automate {
                update = update.and(PolicyUpdate::automate());
            }
            if args.deautomate {
                update = update.and(PolicyUpdate::deautomate());
            }
            if args.lock {
                update = update.and(PolicyUpdate::lock(
                    target.message.as_deref(),
                    target.user.as_deref(),
                ));
            }
            if args.unlock {
                update = update.and(PolicyUpdate::unlock());
            }
            if let Some(policy) = &args.tag_all {
                for container in containers {
                    let tag = PolicyUpdate::tag(container, policy)
                        .with_context(|| format!("--tag-all {policy}"))?;
                    update = update.and(tag);
                }
            }
            for pair in &args.tag {
                let Some((container, policy)) = pair.split_once('=') else {
                    bail!("--tag {pair}: expected CONTAINER=POLICY");
                };
                let tag = PolicyUpdate::tag(container, policy)
                    .with_context(|| format!("--tag {pair}"))?;
                update = update.and(tag);
            }
            if update.is_empty() {
                bail!(
                    "nothing to change: give --automate, --deautomate, --lock, --unlock, --tag or --tag-all"
                );
            }
            Ok(update)
        },
        connection,
    )
}

/// The kinds of change `policy` makes, for the commit message.
fn changed_kinds(args: &Args, id: &ResourceId) -> Vec<GitPolicyChange> {
    let ids = || vec![id.to_string()];
    let mut kinds = Vec::new();
    if args.automate {
        kinds.push(GitPolicyChange::Automated(ids()));
    }
    if args.deautomate {
        kinds.push(GitPolicyChange::Deautomated(ids()));
    }
    if args.lock {
        kinds.push(GitPolicyChange::Locked(ids()));
    }
    if args.unlock {
        kinds.push(GitPolicyChange::Unlocked(ids()));
    }
    if args.tag_all.is_some() || !args.tag.is_empty() {
        kinds.push(GitPolicyChange::UpdatedPolicies(ids()));
    }
    kinds
}

/// The daemon's form of `policy`'s flags.
fn change_of(
    args: &Args,
    id: &ResourceId,
    containers: &[String],
) -> anyhow::Result<flux_api::PolicyChange> {
    let mut change = flux_api::PolicyChange {
        workload: id.to_string(),
        ..Default::default()
    };
    if args.automate {
        change.automated = Some(true);
    }
    if args.deautomate {
        change.automated = Some(false);
    }
    if args.lock {
        change.locked = Some(true);
    }
    if args.unlock {
        change.locked = Some(false);
    }
    if let Some(policy) = &args.tag_all {
        for container in containers {
            // Checked here so that a bad policy is refused before anything is sent.
            PolicyUpdate::tag(container, policy).with_context(|| format!("--tag-all {policy}"))?;
            change.tags.insert(container.clone(), policy.clone());
        }
    }
    for pair in &args.tag {
        let Some((container, policy)) = pair.split_once('=') else {
            bail!("--tag {pair}: expected CONTAINER=POLICY");
        };
        PolicyUpdate::tag(container, policy).with_context(|| format!("--tag {pair}"))?;
        change
            .tags
            .insert(container.to_string(), policy.to_string());
    }
    let unchanged = change.automated.is_none() && change.locked.is_none() && change.tags.is_empty();
    if unchanged {
        bail!(
            "nothing to change: give --automate, --deautomate, --lock, --unlock, --tag or --tag-all"
        );
    }
    Ok(change)
}

/// Sends one workload's policy change as a job and prints its result.
async fn through_daemon(
    target: &Target,
    change: impl FnOnce(&[String]) -> anyhow::Result<flux_api::PolicyChange>,
    connection: &Connection,
) -> anyhow::Result<ExitCode> {
    let id = target.id()?;
    let client = connection.client().await?;
    let workloads = client.workloads(Some(id.namespace())).await?;
    let Some(workload) = workloads.iter().find(|w| w.id == id.to_string()) else {
        bail!("the daemon knows no workload {id}");
    };
    let containers: Vec<String> = workload.containers.iter().map(|c| c.name.clone()).collect();
    let spec = flux_api::JobSpec::Policy(flux_api::PolicySpec {
        changes: vec![change(&containers)?],
        message: target.message.clone(),
        user: target.user.clone(),
    });
    let job = daemon::submit_and_wait(&client, &spec).await?;
    let json = target.output == crate::offline::Output::Json;
    Ok(daemon::report(&job, 1, json))
}

fn apply(
    target: &Target,
    kinds: Vec<GitPolicyChange>,
    update: impl Fn(&[String]) -> anyhow::Result<PolicyUpdate>,
    connection: &Connection,
) -> ExitCode {
    let id: ResourceId = match target.id() {
        Ok(id) => id,
        Err(error) => {
            eprintln!("fluxctl: {error:#}");
            return ExitCode::from(2);
        }
    };
    if target.git.given() {
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
        let message = match target.message.as_deref() {
            Some(user) => CommitMessage::policies_with_user_message(user, &kinds),
            None => CommitMessage::policies(&kinds),
        };
        let applied = to_config_repo(target, &id, message, update, client, connection.timeout);
        return daemon::block_on(applied);
    }
    let (checkout, load_failed) = target.manifests.load();
    let Some(workload) = checkout.workload(&id) else {
        eprintln!("fluxctl: no workload {id} in the manifests");
        return ExitCode::FAILURE;
    };
    let containers: Vec<String> = workload.containers.iter().map(|c| c.name.clone()).collect();
    let update = match update(&containers) {
        Ok(update) => update,
        Err(error) => {
            eprintln!("fluxctl: {error:#}");
            return ExitCode::from(2);
        }
    };
    let mut transaction = Transaction::new(&checkout);
    let result = match transaction.update_policies(&id, &update) {
        Ok(true) => outcome(&id, Status::Success, None),
        Ok(false) => outcome(&id, Status::Skipped, Some("no changes".into())),
        Err(error) => outcome(&id, Status::Failed, Some(error.to_string())),
    };
    let failed =
        load_failed || result.status == Status::Failed || !crate::offline::write(transaction);
    print!("{}", results::render(&[result], 1));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--git-url`: clone, change the workload's policies, commit and push;
/// then, with `--url`, wait for that daemon to apply the commit.
async fn to_config_repo(
    target: &Target,
    id: &ResourceId,
    message: CommitMessage,
    update: impl Fn(&[String]) -> anyhow::Result<PolicyUpdate>,
    client: Option<flux_api::Client>,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let commit = Commit {
        message,
        user: target.user.clone(),
    };
    let mut change = |checkout: &Checkout, transaction: &mut Transaction<'_>| {
        let Some(workload) = checkout.workload(id) else {
            bail!("no workload {id} in the manifests");
        };
        let containers: Vec<String> = workload.containers.iter().map(|c| c.name.clone()).collect();
        let update = update(&containers)?;
        Ok(vec![match transaction.update_policies(id, &update) {
            Ok(true) => outcome(id, Status::Success, None),
            Ok(false) => outcome(id, Status::Skipped, Some("no changes".into())),
            Err(error) => outcome(id, Status::Failed, Some(error.to_string())),
        }])
    };
    let edited =
        config_repo::edit_and_push(&target.git, &target.manifests, false, commit, &mut change)
            .await?;
    print!("{}", results::render(&edited.results, 1));
    let mut failed = edited.unreadable || edited.results.iter().any(|r| r.status == Status::Failed);
    let Some(pushed) = edited.pushed else {
        eprintln!("fluxctl: nothing to commit: no file changed, nothing pushed");
        return Ok(exit(failed));
    };
    println!("Commit pushed:\t{}", short(&pushed.revision));
    if let Some(client) = client {
        failed |= !crate::applied::wait_for_revision(&client, &pushed.revision, timeout).await?;
        if !failed {
            println!("Commit applied:\t{}", short(&pushed.revision));
        }
    }
    Ok(exit(failed))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn outcome(id: &ResourceId, status: Status, reason: Option<String>) -> WorkloadResult {
    WorkloadResult {
        id: id.clone(),
        status,
        reason,
        updates: Vec::new(),
    }
}
