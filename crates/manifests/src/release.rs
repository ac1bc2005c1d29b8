//! Releases: which workloads and containers get an image, and why the
//! others do not, in the original's statuses and reasons.
//!
//! A release either puts one image into every container running its
//! repository ([`Update::Image`], `--update-image`) or gives each container
//! a target decided elsewhere ([`Update::PerContainer`], e.g. the newest
//! tag its policy admits for `--update-all-images`). Either way the same
//! rules say which workloads are looked at and why the others are not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use flux_image::{ImageRef, Name, Policy};

use crate::checkout::Checkout;
use crate::checkout::ImageEdits;
use crate::id::ResourceId;
use crate::policy::Ignore;
use crate::transaction::Transaction;
use crate::workload::{Container, Workload};

/// Reason: the workload is locked.
pub const LOCKED: &str = "locked";
/// Reason: the workload was excluded.
pub const EXCLUDED: &str = "excluded";
/// Reason: other workloads were named.
pub const NOT_INCLUDED: &str = "not included";
/// Reason: its containers already run the image.
pub const UP_TO_DATE: &str = "image(s) up to date";
/// Reason: none of its containers runs the image's repository.
pub const DIFFERENT_IMAGE: &str = "does not use image(s)";
/// Reason: the workload is ignored.
pub const IGNORED: &str = "ignored";
/// Reason: a named workload is not in the manifests.
pub const NOT_FOUND: &str = "not found";

/// What a release changes images to.
#[derive(Debug, Clone)]
pub enum Update {
    /// Every considered container running this image's repository gets it.
    Image(ImageRef),
    /// Each container listed gets its own target; the others stay as they are.
    PerContainer(ContainerTargets),
}

/// Per workload, per container name, what the container should run.
pub type ContainerTargets = BTreeMap<ResourceId, BTreeMap<String, ContainerTarget>>;

/// What one container should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerTarget {
    /// This image.
    Image(ImageRef),
    /// No target could be decided, for this reason (say, its repository
    /// could not be read). The workload fails and keeps its text.
    Unknown(String),
}

/// Which workloads a release looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every workload.
    All,
    /// Only these.
    Only(Vec<ResourceId>),
}

/// What to release.
#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    /// The workloads to consider.
    pub targets: Targets,
    /// Workloads to leave alone.
    pub excludes: Vec<ResourceId>,
    /// The images to release.
    pub update: Update,
    /// Only these containers (empty: every container the update concerns).
    pub containers: Vec<String>,
    /// Release locked workloads too.
    pub force: bool,
}

/// The outcome for one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Updated.
    Success,
    /// Should have been updated but could not be.
    Failed,
    /// Considered and left alone.
    Skipped,
    /// Not considered.
    Ignored,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Ignored => "ignored",
        })
    }
}

/// One container's change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerUpdate {
    /// The container.
    pub container: String,
    /// Its image now (as the file spells it).
    pub current: String,
    /// The image it gets.
    pub target: ImageRef,
}

/// What a release did (or would do) to one workload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadResult {
    /// The workload.
    pub id: ResourceId,
    /// The outcome.
    pub status: Status,
    /// Why it was not a plain success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The container updates (planned, or made).
    pub updates: Vec<ContainerUpdate>,
}

impl WorkloadResult {
    fn with(id: &ResourceId, status: Status, reason: impl Into<String>) -> WorkloadResult {
        WorkloadResult {
            id: id.clone(),
            status,
            reason: Some(reason.into()),
            updates: Vec::new(),
        }
    }
}

/// Decides, for every workload of the checkout (and every named one that is
/// missing), what the release does. Results are sorted by id.
pub fn plan(checkout: &Checkout, spec: &ReleaseSpec) -> Vec<WorkloadResult> {
    let mut results: Vec<WorkloadResult> =
        checkout.workloads.iter().map(|w| judge(w, spec)).collect();
    if let Targets::Only(ids) = &spec.targets {
        for id in ids {
            if checkout.workload(id).is_none() && !results.iter().any(|r| &r.id == id) {
                results.push(WorkloadResult::with(id, Status::Failed, NOT_FOUND));
            }
        }
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    results
}

/// The workloads a release would look at, each with the containers it
/// would consider (before asking what they should run): included, not
/// excluded, not locked unless forced, not ignored. With
/// [`Update::PerContainer`] the update's targets are not consulted, so the
/// caller can ask this first and decide the targets of these containers only.
pub fn candidates<'c>(
    checkout: &'c Checkout,
    spec: &ReleaseSpec,
) -> Vec<(&'c Workload, Vec<&'c Container>)> {
    checkout
        .workloads
        .iter()
        .filter_map(|w| consider(w, spec).ok().map(|containers| (w, containers)))
        .collect()
}

/// The repositories of the containers a release would look at: what a
/// registry scan must cover before [`per_container_targets`] is asked.
pub fn repositories(checkout: &Checkout, spec: &ReleaseSpec) -> BTreeSet<Name> {
    candidates(checkout, spec)
        .into_iter()
        .flat_map(|(_, containers)| containers)
        .map(|c| c.image.name().clone())
        .collect()
}

/// For each container a release would look at, the target `newest` gives
/// for its image and tag policy: `Ok(Some(image))` to move it, `Ok(None)` to
/// leave it, `Err(reason)` to fail its workload (its repository could not
/// be read); a target equal to what the container runs is left out, as
/// `Ok(None)` is. This is `--update-all-images`, with the registry's answer
/// (`flux_registry::newest_admitted`) passed in, since this crate reads no
/// registry.
pub fn per_container_targets(
    checkout: &Checkout,
    spec: &ReleaseSpec,
    mut newest: impl FnMut(&ImageRef, &Policy) -> Result<Option<ImageRef>, String>,
) -> ContainerTargets {
    per_container_targets_of(checkout, spec, |_, container, policy| {
        newest(&container.image, policy)
    })
}

/// [`per_container_targets`] with `newest` told the workload and the
/// container, for answers that depend on more than the image and the tag
/// policy (automation's restraints; the cosign keys a container's images
/// must be signed by).
pub fn per_container_targets_of(
    checkout: &Checkout,
    spec: &ReleaseSpec,
    mut newest: impl FnMut(&Workload, &Container, &Policy) -> Result<Option<ImageRef>, String>,
) -> ContainerTargets {
    let mut targets = ContainerTargets::new();
    for (workload, containers) in candidates(checkout, spec) {
        for container in containers {
            let policy = workload.policies.tag_policy(&container.name);
            let target = match newest(workload, container, &policy) {
                // A container already at its target is left out: the plan
                // says "up to date" all the same, and at rest nearly every
                // container is, so the map would be all of them.
                Ok(None) => continue,
                Ok(Some(image)) if image == container.image => continue,
                Ok(Some(image)) => ContainerTarget::Image(image),
                Err(reason) => ContainerTarget::Unknown(reason),
            };
            targets
                .entry(workload.id.clone())
                .or_default()
                .insert(container.name.clone(), target);
        }
    }
    targets
}

fn judge(workload: &Workload, spec: &ReleaseSpec) -> WorkloadResult {
    match consider(workload, spec) {
        Ok(containers) => decide(workload, &containers, spec),
        Err((status, reason)) => WorkloadResult::with(&workload.id, status, reason),
    }
}

/// The containers of a workload the release looks at, or the status and
/// reason saying why it looks at none.
fn consider<'w>(
    workload: &'w Workload,
    spec: &ReleaseSpec,
) -> Result<Vec<&'w Container>, (Status, String)> {
    let id = &workload.id;
    if let Targets::Only(ids) = &spec.targets
        && !ids.contains(id)
    {
        return Err((Status::Ignored, NOT_INCLUDED.into()));
    }
    if spec.excludes.contains(id) {
        return Err((Status::Ignored, EXCLUDED.into()));
    }
    let wanted =
        |name: &str| spec.containers.is_empty() || spec.containers.iter().any(|c| c == name);
    let concerned = |container: &Container| match &spec.update {
        Update::Image(image) => container.image.name() == image.name(),
        Update::PerContainer(_) => true,
    };
    let using: Vec<&Container> = workload
        .containers
        .iter()
        .filter(|c| wanted(&c.name) && concerned(c))
        .collect();
    let missing: Vec<&str> = spec
        .containers
        .iter()
        .filter(|name| workload.container(name).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() && matches!(spec.targets, Targets::Only(_)) {
        let reason = format!("container(s) not found: {}", missing.join(", "));
        return Err((Status::Failed, reason));
    }
    if using.is_empty() {
        return Err((Status::Ignored, DIFFERENT_IMAGE.into()));
    }
    if workload.policies.locked && !spec.force {
        return Err((Status::Skipped, LOCKED.into()));
    }
    if workload.policies.ignore == Some(Ignore::All) {
        return Err((Status::Skipped, IGNORED.into()));
    }
    Ok(using)
}

/// What the considered containers of a workload should run, and so the
/// workload's result.
fn decide(workload: &Workload, using: &[&Container], spec: &ReleaseSpec) -> WorkloadResult {
    let id = &workload.id;
    let mut updates = Vec::new();
    let mut unknown = Vec::new();
    for container in using {
        let target = match &spec.update {
            Update::Image(image) => image,
            Update::PerContainer(targets) => {
                match targets.get(id).and_then(|t| t.get(&container.name)) {
                    None => continue,
                    Some(ContainerTarget::Unknown(reason)) => {
                        unknown.push(format!("{}: {reason}", container.name));
                        continue;
                    }
                    Some(ContainerTarget::Image(image)) => image,
                }
            }
        };
        if container.image != *target {
            updates.push(ContainerUpdate {
                container: container.name.clone(),
                current: container.spelling.clone(),
                target: target.clone(),
            });
        }
    }
    if !unknown.is_empty() {
        return WorkloadResult::with(id, Status::Failed, unknown.join("; "));
    }
    if updates.is_empty() {
        return WorkloadResult::with(id, Status::Skipped, UP_TO_DATE);
    }
    WorkloadResult {
        id: id.clone(),
        status: Status::Success,
        reason: None,
        updates,
    }
}

/// Plans the release and makes its edits in `transaction`. A workload whose
/// edit fails is marked failed and keeps its text unchanged.
pub fn execute(transaction: &mut Transaction<'_>, spec: &ReleaseSpec) -> Vec<WorkloadResult> {
    let mut results = plan(transaction.checkout(), spec);
    let edits: Vec<ImageEdits<'_>> = results
        .iter()
        .filter(|r| r.status == Status::Success)
        .map(|r| ImageEdits {
            id: &r.id,
            containers: r
                .updates
                .iter()
                .map(|u| (u.container.as_str(), &u.target))
                .collect(),
        })
        .collect();
    let outcomes = transaction.set_images(&edits);
    drop(edits);
    let refused = results
        .iter_mut()
        .filter(|r| r.status == Status::Success)
        .zip(outcomes)
        .filter_map(|(result, outcome)| Some((result, outcome.err()?)));
    for (result, (container, error)) in refused {
        result.status = Status::Failed;
        result.reason = Some(format!("{container}: {error}"));
    }
    results
}
