//! Wire types. Field names are snake_case JSON; optional fields are omitted
//! when empty so that old clients read new answers.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A workload (Deployment, DaemonSet, StatefulSet, CronJob, HelmRelease, …)
/// as git and the cluster know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
pub struct Workload {
    /// `<namespace>:<kind>/<name>`, e.g. `sock-shop:deployment/front-end`.
    pub id: String,
    /// Containers in manifest order.
    pub containers: Vec<Container>,
    /// Policies from the workload's annotations.
    #[serde(default)]
    pub policies: Policies,
    /// The rollout as the cluster reports it; absent without a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Why the last sync of this workload failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_error: Option<String>,
    /// Why its file could not be read at the current revision
    /// (`path:line:column: message`): the workload is shown as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
    /// Automated containers a person rolled back in git: automation leaves
    /// them until a tag newer than the one rolled back from appears.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Hold>,
}

/// A container held where a person's commit rolled it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
pub struct Hold {
    /// The container.
    pub container: String,
    /// The tag it is held at.
    pub tag: String,
    /// The tag it was rolled back from.
    pub from: String,
    /// The commit that rolled it back.
    pub commit: String,
}

impl Hold {
    /// `held at 0.3.12 by a3f9c1e`, as the POLICY column shows it.
    pub fn summary(&self) -> String {
        let short = self.commit.get(..7).unwrap_or(&self.commit);
        format!("held at {} by {short}", self.tag)
    }
}

/// A tag reverted after its rollout failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
pub struct RevertedTag {
    /// The tag.
    pub tag: String,
    /// Why its rollout failed, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl std::fmt::Display for RevertedTag {
    /// `reverted: <tag> failed its rollout (<reason>)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reverted: {} failed its rollout", self.tag)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// Per container, why automation did or did not move it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// The workload.
    pub workload: String,
    /// The container.
    pub container: String,
    /// The image it runs, as the manifest spells it.
    pub image: String,
    /// The tag automation moves it to next, when it would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Why not (further), most decisive first.
    pub reasons: Vec<Reason>,
}

/// One reason automation does not move a container (to a tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// What kind of reason.
    pub kind: ReasonKind,
    /// The tag it concerns, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The reason in words.
    pub message: String,
}

/// The kinds of [`Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// The workload is locked.
    Locked,
    /// The workload is ignored.
    Ignored,
    /// The workload is not automated.
    NotAutomated,
    /// The tag policy rejects the tag.
    Policy,
    /// A glob or regex policy cannot order a tag without a creation time.
    NoCreationTime,
    /// The tag has no image for a wanted platform.
    NoPlatform,
    /// The tag's manifest could not be read.
    Unreadable,
    /// The tag's image carries no valid signature.
    Unsigned,
    /// A person rolled the container back; held until a newer tag.
    Held,
    /// The tag was reverted after its rollout failed.
    Reverted,
    /// It runs the newest tag automation may pick.
    Newest,
    /// Pinned by digest: no tag to move from.
    Digest,
    /// The repository is not scanned, or its scan failed.
    Unknown,
}

/// A resource of the manifests, as written in git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Manifest {
    /// `<namespace>:<kind>/<name>` (`<cluster>` for a cluster-scoped
    /// resource), e.g. `sock-shop:deployment/front-end`.
    pub id: String,
    /// `kind` as written, e.g. `Deployment`.
    pub kind: String,
    /// The file it is in, relative to the repo's root.
    pub file: String,
    /// Its YAML document as the file has it, ending in a newline (an item
    /// of a `List`, unindented).
    pub text: String,
}

/// A container and the image it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
pub struct Container {
    /// The container's name (for a HelmRelease, `chart-image` or the values key).
    pub name: String,
    /// The image as the manifest spells it.
    pub image: String,
    /// The image the cluster's pod template runs, when it is not git's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_image: Option<String>,
}

/// The policies a workload carries in its annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
pub struct Policies {
    /// `fluxcd.io/automated`.
    #[serde(default)]
    pub automated: bool,
    /// `fluxcd.io/locked`.
    #[serde(default)]
    pub locked: bool,
    /// `fluxcd.io/ignore`.
    #[serde(default)]
    pub ignore: bool,
    /// `fluxcd.io/locked_user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_user: Option<String>,
    /// `fluxcd.io/locked_msg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_msg: Option<String>,
    /// `fluxcd.io/tag.<container>`: container name to policy string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `fluxcd.io/rollback-on-failure`.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// `fluxcd.io/reverted.<container>`: per container, the tag reverted
    /// after its rollout failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reverted: BTreeMap<String, RevertedTag>,
}

/// Rollout state of a workload in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
pub struct Rollout {
    /// Overall state.
    pub status: RolloutStatus,
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas running the current template.
    pub updated: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Conditions worth showing (e.g. `ProgressDeadlineExceeded`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}

/// Rollout states, as `fluxctl list-workloads` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RolloutStatus {
    /// Every replica runs the current template and is ready.
    Ready,
    /// A rollout is in progress.
    Updating,
    /// The rollout failed (e.g. its progress deadline passed).
    Error,
    /// Applied, not yet observed by its controller.
    Started,
}

/// The images a workload's containers run and could run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadImages {
    /// Workload id.
    pub id: String,
    /// One entry per container.
    pub containers: Vec<ContainerImages>,
}

/// What one container runs, and the tags of its repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerImages {
    /// Container name.
    pub name: String,
    /// The repository, familiar form (`weaveworksdemos/front-end`).
    pub repository: String,
    /// The tag (or digest) it runs.
    pub current: String,
    /// The container's tag policy (`glob:*` when it has none).
    pub policy: String,
    /// Tags the policy admits, newest first.
    pub available: Vec<TagInfo>,
    /// Why the repository could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One tag of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TagInfo {
    /// The tag.
    pub tag: String,
    /// Manifest digest, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Image creation time, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created: Option<Timestamp>,
    /// With cosign keys for the container (`--registry-verify-key`,
    /// `fluxcd.io/verify.<container>`): whether the tag's image is signed.
    /// Absent when its images need no signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// Whether a tag's image carries a cosign signature that verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Signature {
    /// Signed: a signature verified with this key.
    Signed {
        /// The key's name.
        key: String,
    },
    /// Not signed (automation and `--update-all-images` never pick it).
    Unsigned {
        /// Why: no signature, one over another image, no key matched, not verified yet.
        reason: String,
    },
}

/// A job to run: a release or a policy change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JobSpec {
    /// Update images.
    Release(ReleaseSpec),
    /// Change annotations.
    Policy(PolicySpec),
    /// Move automated workloads to their newest admitted tags (the
    /// daemon's own jobs, from new tags).
    Automation(AutomationSpec),
    /// Undo an automated release whose rollout failed (the daemon's own).
    Revert(RevertSpec),
}

/// A revert of an automated release whose rollout failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevertSpec {
    /// The automation job whose release failed.
    pub job: String,
    /// Its commit.
    pub commit: String,
    /// Its commit's subject (`Auto-release …`).
    pub subject: String,
    /// The containers to put back.
    pub containers: Vec<RevertedContainer>,
}

/// A container whose automated release is reverted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevertedContainer {
    /// The workload.
    pub workload: String,
    /// The container.
    pub container: String,
    /// The image it ran before, as the manifest spelled it.
    pub previous: String,
    /// The image whose rollout failed.
    pub failed: String,
    /// Why the rollout failed.
    pub reason: String,
}

/// An automation run: which automated workloads had something newer when
/// it was queued. The job decides again on the manifests it edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AutomationSpec {
    /// Workload ids, `<namespace>:<kind>/<name>`.
    pub workloads: Vec<String>,
    /// When the scanner first saw the earliest new tag of the batch (also
    /// in the job's timeline; here it is kept in the commit's note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_seen: Option<Timestamp>,
}

/// Which workloads a release targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    /// Every workload (`--all`).
    All,
    /// These workload ids (`--workload`, repeatable).
    Workloads(Vec<String>),
}

/// What a release changes images to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageUpdate {
    /// `--update-image IMG:TAG`: containers running this repository get this tag.
    Image(String),
    /// `--update-all-images`: each container gets the newest tag its policy admits.
    AllLatest,
}

/// A release, as `fluxctl release` asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseSpec {
    /// Workloads to consider.
    pub targets: Targets,
    /// Workload ids to leave alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// The images to move to.
    pub update: ImageUpdate,
    /// Release locked workloads too.
    #[serde(default)]
    pub force: bool,
    /// Plan only: answer with what would change, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The user's message, heading the commit message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who asked (the commit author with `--git-set-author`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only these containers, by workload id (`fluxctl release
    /// --interactive`): a container not listed under its workload's id is
    /// left as it is. Empty: every container the update concerns.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, BTreeSet<String>>,
}

/// A batch of policy changes, as `fluxctl policy` / `automate` / `lock` ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicySpec {
    /// One entry per workload.
    pub changes: Vec<PolicyChange>,
    /// The user's message, heading the commit message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Policy changes for one workload; `None` leaves a policy as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyChange {
    /// Workload id.
    pub workload: String,
    /// Set or clear `fluxcd.io/automated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<bool>,
    /// Set or clear `fluxcd.io/locked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Container to tag policy; an empty string or `glob:*` removes the filter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for the repo's writer.
    Queued,
    /// Being carried out.
    Running,
    /// Committed and pushed (or nothing to do).
    Succeeded,
    /// Gave up; see the error.
    Failed,
}

/// A job and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// What was asked.
    pub spec: JobSpec,
    /// Where it stands.
    pub status: JobStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per-workload outcome.
    #[serde(default)]
    pub result: Vec<WorkloadResult>,
    /// The commit pushed, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The commit applied to the cluster, once synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
    /// When each step happened.
    #[serde(default)]
    pub timeline: Timeline,
    /// Objects the sync of a revision holding the commit could not apply,
    /// with the API server's message; empty once the commit is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apply_errors: Vec<ApplyError>,
    /// Whether the daemon applies commits to a cluster: `Some(false)` when
    /// it runs with `--cluster=none`, so `applied` will never be set;
    /// `None` from a daemon that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<bool>,
}

/// An object a job changed that the sync failed to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyError {
    /// The object, `<namespace>:<kind>/<name>`.
    pub id: String,
    /// Why: the API server's message, or why its file could not be read.
    pub error: String,
}

/// Outcome of a job for one workload, as the original's result table shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadResult {
    /// Workload id.
    pub workload: String,
    /// Outcome.
    pub status: ResultStatus,
    /// Why it was skipped, ignored or failed (`locked`, `excluded`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Images changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<ContainerUpdate>,
}

/// Outcome of a job for one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// Changed.
    Success,
    /// Could not be changed.
    Failed,
    /// Left alone for a reason the user chose (locked, excluded, …).
    Skipped,
    /// Not concerned (does not use the image, not included).
    Ignored,
}

/// One container's image change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerUpdate {
    /// Container name.
    pub container: String,
    /// Image before.
    pub current: String,
    /// Image after.
    pub target: String,
}

/// When each step of a job happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    /// Automation: when the new tag was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_seen: Option<Timestamp>,
    /// When the job was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub queued: Option<Timestamp>,
    /// When the commit was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub committed: Option<Timestamp>,
    /// When the push was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub pushed: Option<Timestamp>,
    /// When the commit was applied to the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub applied: Option<Timestamp>,
    /// When the rollout was ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ready: Option<Timestamp>,
}

/// Answer to a job submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The job's id, to poll.
    pub id: String,
    /// For a dry run: the plan, already complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<WorkloadResult>>,
}

/// Answer to a sync request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncRequested {
    /// The branch fetched.
    pub branch: String,
    /// The revision to wait for: the head, or with
    /// `--git-verify-signatures` the newest verified commit when the head
    /// does not verify.
    pub revision: String,
    /// Why the head is not applied, when it does not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<Unverified>,
}

/// A commit (or the sync tag) whose signature does not verify
/// (`--git-verify-signatures`): nothing from it on is applied or built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Unverified {
    /// The branch head that is not applied.
    pub head: String,
    /// The first commit that does not verify, as `commit <id>`, or the
    /// sync tag, as `the sync tag <name>`.
    pub what: String,
    /// Why: not signed, a key that is not trusted, a bad signature.
    pub reason: String,
}

/// Whether a revision has been applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStatus {
    /// The revision asked about.
    pub revision: String,
    /// Commits between the last applied revision and this one that touch
    /// the synced paths; empty when applied.
    pub pending: Vec<String>,
    /// Files that could not be read at the revision fluxd read last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FileError>,
}

/// A manifest file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileError {
    /// The file, relative to the repository's root.
    pub file: String,
    /// 1-based line, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// What is wrong, as `file:line:column: message`.
    pub message: String,
}

/// What fluxd read from git last: the revision, and the files it could not
/// read there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadState {
    /// The revision the workloads were read at.
    pub revision: String,
    /// Files that could not be read at it; their workloads are shown as
    /// last read.
    #[serde(default)]
    pub errors: Vec<FileError>,
    /// With `--git-verify-signatures`: why the branch head is not the
    /// revision read (the newest verified commit is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<Unverified>,
    /// Where the sync marker is: the revision last applied to the cluster
    /// (none before the first sync, or without a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<String>,
    /// The web page of a commit, `{commit}` standing for its id, when the
    /// repo is on GitHub, GitLab or Gitea.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_url: Option<String>,
}

/// The daemon's deploy key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    /// The public key, one line, as `~/.ssh/id_ed25519.pub` holds it.
    pub public_key: String,
    /// Its fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// A change the daemon should react to at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Change {
    /// New tags in a repository (`name` without tag).
    Image {
        /// Repository name.
        name: String,
    },
    /// New commits in the config repo.
    Git {
        /// The branch that moved, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
    },
}

/// The daemon's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    /// Semantic version of fluxd.
    pub version: String,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// What went wrong, for a person to read.
    pub error: String,
}

/// A page of workloads, as the dashboard asks for them
/// (`GET /api/v1/workloads/page`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadPage {
    /// How many workloads the filter selects, over every page.
    pub total: usize,
    /// Where this page starts among them.
    pub offset: usize,
    /// The workloads of this page, in the listing's order.
    pub workloads: Vec<Workload>,
    /// Every namespace that has a workload, sorted, for a namespace filter.
    pub namespaces: Vec<String>,
}

/// A dry-run release with the manifest lines it would change
/// (`POST /api/v1/release/preview`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleasePreview {
    /// The plan, as a dry run answers it.
    pub plan: Vec<WorkloadResult>,
    /// Each line the release would rewrite, before and after.
    pub lines: Vec<ChangedLine>,
}

/// A manifest line a release would rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangedLine {
    /// The workload whose container it sets.
    pub workload: String,
    /// The container.
    pub container: String,
    /// The file, relative to the repository's root.
    pub file: String,
    /// 1-based line within the workload's YAML document in that file.
    pub line: usize,
    /// The line as it is.
    pub before: String,
    /// The line as the release writes it.
    pub after: String,
}

/// The tags a tag policy admits (`GET /api/v1/policy/check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyCheck {
    /// The policy, normalized (`glob:*` for an empty one).
    pub policy: String,
    /// The tags of the container's repository it admits, newest first.
    pub admitted: Vec<TagInfo>,
    /// How many of the repository's tags it leaves out.
    pub refused: usize,
}
