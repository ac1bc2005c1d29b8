//! `fluxctl policy|automate|deautomate|lock|unlock --manifests DIR`: set or
//! remove policy annotations of one workload in place.

use std::process::ExitCode;

use anyhow::{Context, bail};
use flux_manifests::release::{Status, WorkloadResult};
use flux_manifests::{PolicyUpdate, ResourceId, Transaction};

use crate::offline::{Manifests, parse_id};
use crate::results;

/// The flags every policy verb takes.
#[derive(Debug, clap::Args)]
pub struct Target {
    #[command(flatten)]
    manifests: Manifests,
    /// The workload (`<namespace>:<kind>/<name>`).
    #[arg(short, long = "workload", value_name = "ID")]
    workload: String,
    /// Why (kept as the lock message when locking).
    #[arg(short, long)]
    message: Option<String>,
    /// Who (kept as the lock's user when locking).
    #[arg(long)]
    user: Option<String>,
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
pub fn run_verb(verb: Verb, target: Target) -> ExitCode {
    let update = match verb {
        Verb::Automate => PolicyUpdate::automate(),
        Verb::Deautomate => PolicyUpdate::deautomate(),
        Verb::Lock => PolicyUpdate::lock(target.message.as_deref(), target.user.as_deref()),
        Verb::Unlock => PolicyUpdate::unlock(),
    };
    apply(&target, |_| Ok(update.clone()))
}

/// Runs `policy`.
pub fn run(args: Args) -> ExitCode {
    let target = &args.target;
    apply(target, |containers| {
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
            let tag =
                PolicyUpdate::tag(container, policy).with_context(|| format!("--tag {pair}"))?;
            update = update.and(tag);
        }
        if update.is_empty() {
            bail!(
                "nothing to change: give --automate, --deautomate, --lock, --unlock, --tag or --tag-all"
            );
        }
        Ok(update)
    })
}

fn apply(
    target: &Target,
    update: impl FnOnce(&[String]) -> anyhow::Result<PolicyUpdate>,
) -> ExitCode {
    let id: ResourceId = match parse_id(&target.workload) {
        Ok(id) => id,
        Err(error) => {
            eprintln!("fluxctl: {error:#}");
            return ExitCode::from(2);
        }
    };
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

fn outcome(id: &ResourceId, status: Status, reason: Option<String>) -> WorkloadResult {
    WorkloadResult {
        id: id.clone(),
        status,
        reason,
        updates: Vec::new(),
    }
}
