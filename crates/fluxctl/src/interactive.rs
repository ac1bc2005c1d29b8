//! `fluxctl release --interactive`: the daemon plans the release, the user
//! ticks the container updates to make in a terminal checklist (all ticked
//! at first), and only those are released.
//!
//! The chosen updates travel as the release's `containers` (workload id to
//! container names). Before anything is pushed, the narrowed release is
//! planned once more and must match the choice exactly: a daemon that does
//! not know `containers`, or a new tag that changed a target meanwhile,
//! stops the release instead of pushing something the user did not see.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;

use anyhow::{Context as _, bail};
use flux_api::{Client, JobSpec, ReleaseSpec, ResultStatus, Targets, WorkloadResult};

/// One row of the checklist: a planned container update.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Choice {
    /// Workload id.
    pub workload: String,
    /// Container name.
    pub container: String,
    /// The image it runs.
    pub current: String,
    /// The image it would get.
    pub target: String,
}

/// The planned updates, one per workload and container, in plan order.
pub fn choices(plan: &[WorkloadResult]) -> Vec<Choice> {
    plan.iter()
        .filter(|r| r.status == ResultStatus::Success)
        .flat_map(|r| {
            r.updates.iter().map(|u| Choice {
                workload: r.workload.clone(),
                container: u.container.clone(),
                current: u.current.clone(),
                target: u.target.clone(),
            })
        })
        .collect()
}

/// The checklist's lines, workload ids padded to one width:
/// `sock-shop:deployment/front-end  front-end: <current> -> <target>`.
pub fn labels(choices: &[Choice]) -> Vec<String> {
    let width = choices
        .iter()
        .map(|c| c.workload.chars().count())
        .max()
        .unwrap_or(0);
    choices
        .iter()
        .map(|c| {
            format!(
                "{:width$}  {}: {} -> {}",
                c.workload, c.container, c.current, c.target
            )
        })
        .collect()
}

/// The release of the picked rows only: their workloads as targets, their
/// containers as the filter; `None` when nothing is picked.
pub fn narrowed(spec: &ReleaseSpec, choices: &[Choice], picked: &[usize]) -> Option<ReleaseSpec> {
    let mut containers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for choice in picked.iter().filter_map(|&n| choices.get(n)) {
        containers
            .entry(choice.workload.clone())
            .or_default()
            .insert(choice.container.clone());
    }
    if containers.is_empty() {
        return None;
    }
    Some(ReleaseSpec {
        targets: Targets::Workloads(containers.keys().cloned().collect()),
        dry_run: false,
        containers,
        ..spec.clone()
    })
}

/// Checks that the plan of the narrowed release makes exactly the picked
/// updates, with the targets the user saw.
pub fn check(plan: &[WorkloadResult], choices: &[Choice], picked: &[usize]) -> anyhow::Result<()> {
    let wanted: BTreeSet<Choice> = picked
        .iter()
        .filter_map(|&n| choices.get(n).cloned())
        .collect();
    let planned: BTreeSet<Choice> = self::choices(plan).into_iter().collect();
    if let Some(extra) = planned.iter().find(|c| {
        !wanted
            .iter()
            .any(|w| w.workload == c.workload && w.container == c.container)
    }) {
        bail!(
            "fluxd would also update {} container {}, which was not chosen: \
             it does not support releasing chosen containers (upgrade fluxd); nothing released",
            extra.workload,
            extra.container
        );
    }
    if planned != wanted {
        bail!(
            "the plan changed since it was shown (a new tag, or another release); \
             nothing released, run the release again"
        );
    }
    Ok(())
}

/// Refuses to run without a person at a terminal to answer.
pub fn require_terminal() -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        bail!(
            "--interactive needs a terminal on standard input and standard error; \
             use --dry-run to see the plan"
        );
    }
    Ok(())
}

/// Plans the release, asks which updates to make, and answers with the
/// release of those (checked against a second plan); `None` when there is
/// nothing to release or the user chose nothing.
pub async fn choose(client: &Client, spec: &ReleaseSpec) -> anyhow::Result<Option<JobSpec>> {
    eprintln!("Submitting dry-run release ...");
    let plan_spec = ReleaseSpec {
        dry_run: true,
        ..spec.clone()
    };
    let plan = planned(client, plan_spec).await?;
    let choices = choices(&plan);
    if choices.is_empty() {
        eprintln!("Nothing to release.");
        return Ok(None);
    }
    let defaults = vec![true; choices.len()];
    let picked = dialoguer::MultiSelect::new()
        .with_prompt("Updates to release (space toggles, enter confirms, esc cancels)")
        .items(labels(&choices))
        .defaults(&defaults)
        .interact_opt()
        .context("reading the checklist")?;
    let picked = picked.unwrap_or_default();
    let Some(narrowed) = narrowed(spec, &choices, &picked) else {
        eprintln!("Nothing chosen; nothing released.");
        return Ok(None);
    };
    let check_spec = ReleaseSpec {
        dry_run: true,
        ..narrowed.clone()
    };
    check(&planned(client, check_spec).await?, &choices, &picked)?;
    eprintln!("Submitting selected release ...");
    Ok(Some(JobSpec::Release(narrowed)))
}

async fn planned(client: &Client, spec: ReleaseSpec) -> anyhow::Result<Vec<WorkloadResult>> {
    let submitted = client.submit(&JobSpec::Release(spec)).await?;
    Ok(submitted.plan.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use flux_api::{
        ContainerUpdate, ImageUpdate, ReleaseSpec, ResultStatus, Targets, WorkloadResult,
    };

    const FRONT_END: &str = "sock-shop:deployment/front-end";
    const CARTS: &str = "sock-shop:deployment/carts";

    fn update(container: &str, current: &str, target: &str) -> ContainerUpdate {
        ContainerUpdate {
            container: container.into(),
            current: current.into(),
            target: target.into(),
        }
    }

    fn result(
        workload: &str,
        status: ResultStatus,
        updates: Vec<ContainerUpdate>,
    ) -> WorkloadResult {
        WorkloadResult {
            workload: workload.into(),
            status,
            error: None,
            updates,
        }
    }

    fn plan() -> Vec<WorkloadResult> {
        vec![
            result(
                CARTS,
                ResultStatus::Success,
                vec![update(
                    "carts",
                    "weaveworksdemos/carts:0.4.7",
                    "weaveworksdemos/carts:0.4.8",
                )],
            ),
            result(
                FRONT_END,
                ResultStatus::Success,
                vec![
                    update(
                        "front-end",
                        "weaveworksdemos/front-end:0.3.12",
                        "weaveworksdemos/front-end:0.4.0",
                    ),
                    update("proxy", "envoyproxy/envoy:v1.29", "envoyproxy/envoy:v1.30"),
                ],
            ),
            result(
                "sock-shop:deployment/user",
                ResultStatus::Skipped,
                Vec::new(),
            ),
        ]
    }

    fn all_latest() -> ReleaseSpec {
        ReleaseSpec {
            targets: Targets::All,
            exclude: vec!["sock-shop:deployment/user-db".into()],
            update: ImageUpdate::AllLatest,
            force: true,
            dry_run: true,
            message: Some("why".into()),
            user: None,
            containers: Default::default(),
        }
    }

    #[test]
    fn the_checklist_has_one_row_per_planned_container_update() {
        let choices = super::choices(&plan());
        assert_eq!(choices.len(), 3);
        assert_eq!(
            super::labels(&choices),
            [
                "sock-shop:deployment/carts      carts: weaveworksdemos/carts:0.4.7 -> weaveworksdemos/carts:0.4.8",
                "sock-shop:deployment/front-end  front-end: weaveworksdemos/front-end:0.3.12 -> weaveworksdemos/front-end:0.4.0",
                "sock-shop:deployment/front-end  proxy: envoyproxy/envoy:v1.29 -> envoyproxy/envoy:v1.30",
            ]
        );
    }

    #[test]
    fn the_picked_rows_become_targets_and_a_container_filter() {
        let choices = super::choices(&plan());
        let spec = super::narrowed(&all_latest(), &choices, &[2]).expect("one row picked");
        assert_eq!(spec.targets, Targets::Workloads(vec![FRONT_END.into()]));
        assert_eq!(spec.containers.len(), 1);
        assert!(spec.containers[FRONT_END].contains("proxy"));
        assert_eq!(spec.containers[FRONT_END].len(), 1);
        assert!(!spec.dry_run, "the chosen release is carried out");
        assert!(spec.force);
        assert_eq!(spec.message.as_deref(), Some("why"));
        assert_eq!(spec.update, ImageUpdate::AllLatest);

        let both = super::narrowed(&all_latest(), &choices, &[0, 1, 2]).expect("rows picked");
        assert_eq!(
            both.targets,
            Targets::Workloads(vec![CARTS.into(), FRONT_END.into()])
        );
        assert_eq!(both.containers[FRONT_END].len(), 2);
    }

    #[test]
    fn nothing_picked_releases_nothing() {
        let choices = super::choices(&plan());
        assert_eq!(super::narrowed(&all_latest(), &choices, &[]), None);
    }

    #[test]
    fn a_second_plan_matching_the_choice_passes() {
        let choices = super::choices(&plan());
        let second = vec![result(
            FRONT_END,
            ResultStatus::Success,
            vec![update(
                "proxy",
                "envoyproxy/envoy:v1.29",
                "envoyproxy/envoy:v1.30",
            )],
        )];
        super::check(&second, &choices, &[2]).expect("the plan matches");
    }

    #[test]
    fn a_daemon_ignoring_the_choice_is_caught_before_anything_is_pushed() {
        let choices = super::choices(&plan());
        let error = super::check(&plan(), &choices, &[2]).expect_err("more than chosen");
        assert!(
            error
                .to_string()
                .contains("does not support releasing chosen containers"),
            "{error}"
        );
    }

    #[test]
    fn a_target_that_moved_since_the_plan_stops_the_release() {
        let choices = super::choices(&plan());
        let moved = vec![result(
            FRONT_END,
            ResultStatus::Success,
            vec![update(
                "proxy",
                "envoyproxy/envoy:v1.29",
                "envoyproxy/envoy:v1.31",
            )],
        )];
        let error = super::check(&moved, &choices, &[2]).expect_err("the target moved");
        assert!(error.to_string().contains("plan changed"), "{error}");
    }
}
