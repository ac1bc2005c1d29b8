//! With a cluster: applying the manifests last read, moving the sync marker,
//! marking the jobs whose commits were applied, and following rollouts until
//! every workload a job changed is ready.
//!
//! The manifests to apply come from [`Inner::reload`], read from the same
//! files the workloads were, at the same revision. A sync runs when they
//! change, when asked, and every `--sync-interval`; an unchanged object is
//! not written (its checksum says so), so the interval costs reads only.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_api::{ApplyError, JobStatus, ResultStatus, RolloutStatus};
use flux_cluster::{Cluster, ManifestError, ManifestSet, SyncOptions, SyncReport};
use jiff::Timestamp;
use tokio::sync::{Notify, watch};

use super::Inner;
use crate::jobs::{Jobs, StepObserver};
use crate::metrics::{Metrics, StepLabels, SyncLabels};
use crate::view::{ClusterFacts, Workloads, same_image};

/// How long changes the watches see are gathered before the rollouts are
/// looked at again: a controller writes several statuses in a row, and a
/// sync touches many workloads at once.
const ROLLOUT_SETTLE: Duration = Duration::from_millis(100);

/// How often the rollouts are read by listing the workloads, whatever the
/// watches say: the safety net should a watch have missed a change (the
/// watcher itself lists again whenever its watch fails or expires).
const ROLLOUT_RESYNC: Duration = Duration::from_secs(15 * 60);

/// The manifest files to apply, `(name, text)` each, and the revision
/// they were read at.
pub(super) struct Desired {
    pub revision: String,
    pub files: Arc<Vec<(String, String)>>,
    /// Kustomize trees that did not build: `(kustomization file, why)`.
    pub unbuilt: Arc<Vec<(String, String)>>,
}

/// What the cluster said last, by workload id.
#[derive(Default)]
struct Live {
    facts: ClusterFacts,
    /// The last sync's failures (source, message), so that repeats are told once.
    notified_failures: BTreeSet<(String, String)>,
}

/// The cluster, how it is synced, and what it said last.
pub(super) struct ClusterSide {
    cluster: Cluster,
    options: SyncOptions,
    desired: watch::Sender<Option<Arc<Desired>>>,
    /// Asks for a sync now.
    pub wake: Notify,
    /// Asks for a look at the rollouts now.
    look: Notify,
    live: std::sync::Mutex<Live>,
    /// Why the last sync could not reach the API server; None once one did.
    pub unreachable: std::sync::Mutex<Option<String>>,
}

impl ClusterSide {
    pub fn new(cluster: Cluster, options: SyncOptions) -> ClusterSide {
        ClusterSide {
            cluster,
            options,
            desired: watch::channel(None).0,
            wake: Notify::new(),
            look: Notify::new(),
            live: std::sync::Mutex::default(),
            unreachable: std::sync::Mutex::default(),
        }
    }

    /// The client of the cluster, for Events.
    pub fn client(&self) -> &kube::Client {
        self.cluster.client()
    }

    /// Hands the sync loop the manifests read at a new revision.
    pub fn want(&self, desired: Desired) {
        self.desired.send_replace(Some(Arc::new(desired)));
    }

    /// Shows the rollouts, images and sync errors last seen on the API's
    /// workloads.
    pub fn decorate(&self, workloads: &mut Workloads) {
        workloads.show_cluster(self.live().facts.clone());
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Syncs when the manifests change, when asked, and every sync interval.
pub(super) async fn sync_loop(daemon: Arc<Inner>, jobs: Jobs, mut shutdown: watch::Receiver<bool>) {
    let Some(side) = daemon.cluster.as_ref() else {
        return;
    };
    let mut desired = side.desired.subscribe();
    // Manifests read before this loop started are not yet synced.
    desired.mark_changed();
    loop {
        tokio::select! {
            () = tokio::time::sleep(daemon.config.sync_interval) => {}
            () = side.wake.notified() => {}
            changed = desired.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        daemon.leadership.lead().await;
        let Some(wanted) = desired.borrow_and_update().clone() else {
            continue;
        };
        daemon.sync_once(side, &wanted, &jobs).await;
    }
}

/// Follows the workloads' rollouts with watches: looks again whenever the
/// watches see a change and when a sync asks, reading the watches' cache.
/// At the start and every [`ROLLOUT_RESYNC`] it lists the workloads
/// instead.
pub(super) async fn rollout_loop(
    daemon: Arc<Inner>,
    jobs: Jobs,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(side) = daemon.cluster.as_ref() else {
        return;
    };
    let workloads = side.cluster.watch_workloads();
    let mut changes = workloads.changes();
    let mut resync = tokio::time::interval(ROLLOUT_RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (listed, changed) = tokio::select! {
            _ = resync.tick() => (true, false),
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                (false, true)
            }
            () = side.look.notified() => (false, false),
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        if changed {
            tokio::time::sleep(ROLLOUT_SETTLE).await;
            changes.borrow_and_update();
        }
        // Until every watch has listed, only a list knows.
        let cached = workloads.workloads().filter(|_| !listed);
        let read = match cached {
            Some(cached) => Ok(cached),
            None => side.cluster.workloads().await,
        };
        match read {
            Ok(read) => daemon.follow_rollouts(side, &jobs, &read).await,
            Err(error) => tracing::warn!(%error, "reading the workloads' rollouts failed"),
        }
    }
}

impl Inner {
    async fn sync_once(&self, side: &ClusterSide, wanted: &Desired, jobs: &Jobs) {
        let started = Instant::now();
        let files = wanted.files.clone();
        let set = match tokio::task::spawn_blocking(move || ManifestSet::parse(&files)).await {
            Ok(mut set) => {
                set.errors
                    .extend(wanted.unbuilt.iter().map(|(file, message)| ManifestError {
                        file: file.clone(),
                        line: None,
                        message: message.clone(),
                    }));
                set
            }
            Err(error) => {
                tracing::warn!(revision = %wanted.revision, %error, "parsing the manifests failed");
                return;
            }
        };
        let synced = side.cluster.sync(&set, &side.options).await;
        drop(set);
        let result = match &synced {
            Ok(report) if report.is_success() => "success",
            _ => "error",
        };
        self.metrics
            .sync_duration
            .get_or_create(&SyncLabels {
                result: result.into(),
            })
            .observe(started.elapsed().as_secs_f64());
        let report = match synced {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(revision = %wanted.revision, %error, "sync failed");
                *side
                    .unreachable
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
                return;
            }
        };
        *side
            .unreachable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        log_report(&wanted.revision, &report);
        {
            let mut live = side.live();
            live.facts.sync_errors = Arc::new(sync_errors(&report));
            self.notices.publish_all(crate::notify::sources::of_sync(
                &wanted.revision,
                &report,
                &mut live.notified_failures,
            ));
        }
        self.view
            .send_modify(|view| side.decorate(&mut view.workloads));
        // Jobs are applied once the cluster has their objects as committed;
        // moving the marker (a push) may wait behind a job holding the repo.
        self.mark_applied(jobs, &wanted.revision, &report).await;
        // Per-object failures do not hold the marker back (as in the
        // original): the rest was applied, and the errors are shown per
        // workload until a sync succeeds.
        self.move_marker(&wanted.revision).await;
        side.look.notify_one();
    }

    async fn move_marker(&self, revision: &str) {
        let at = matches!(self.repo.sync_marker().await, Ok(Some(marker)) if marker == revision);
        if !at && let Err(error) = self.repo.move_sync_marker(revision).await {
            tracing::warn!(%revision, %error, "moving the sync marker failed");
            return;
        }
        self.view.send_if_modified(|view| match &mut view.read {
            Ok(read) if read.synced.as_deref() != Some(revision) => {
                read.synced = Some(revision.to_string());
                true
            }
            _ => false,
        });
    }

    async fn mark_applied(&self, jobs: &Jobs, revision: &str, report: &SyncReport) {
        let mut synced = BTreeSet::new();
        for commit in jobs.awaiting_apply() {
            match self.repo.is_ancestor(&commit, revision).await {
                Ok(true) => {
                    synced.insert(commit);
                }
                Ok(false) => {}
                // A commit the mirror has not fetched yet is not applied.
                Err(error) => tracing::debug!(%commit, %error, "ancestry unknown"),
            }
        }
        if synced.is_empty() {
            return;
        }
        let outcomes = Outcomes::of(report);
        let marked = jobs.mark_applied(
            revision,
            |commit| synced.contains(commit),
            |job| outcomes.failures(job),
        );
        let failed = synced.len() - marked.len();
        if failed > 0 {
            tracing::debug!(%revision, jobs = failed, "jobs not applied: some of their objects failed");
        }
    }

    /// Shows the workloads' rollouts and marks the jobs whose workloads
    /// are all ready.
    async fn follow_rollouts(
        &self,
        side: &ClusterSide,
        jobs: &Jobs,
        workloads: &[flux_cluster::Workload],
    ) {
        let rollouts: HashMap<String, flux_api::Rollout> = workloads
            .iter()
            .map(|w| (w.id.to_string(), wire_rollout(&w.rollout)))
            .collect();
        let images: HashMap<String, HashMap<String, String>> = workloads
            .iter()
            .map(|w| {
                let containers = w.containers.iter();
                let images = containers.map(|c| (c.name.clone(), c.image.clone()));
                (w.id.to_string(), images.collect())
            })
            .collect();
        for job in jobs.awaiting_ready() {
            if all_ready(&job, &rollouts, &images) {
                jobs.mark_ready(&job.id);
            }
        }
        self.revert_failed_rollouts(jobs, &rollouts, &images).await;
        {
            let mut live = side.live();
            let previous = std::mem::replace(&mut live.facts.rollouts, Arc::new(rollouts));
            self.notices
                .publish_all(crate::notify::sources::of_rollouts(
                    &previous,
                    &live.facts.rollouts,
                ));
            live.facts.images = Arc::new(images);
        }
        self.view
            .send_modify(|view| side.decorate(&mut view.workloads));
    }
}

/// Whether every workload a job changed runs its new spec, ready: the
/// controller observed the latest generation and every replica runs it
/// (the rollout is `ready`), and that spec's images are the ones released.
fn all_ready(
    job: &flux_api::Job,
    rollouts: &HashMap<String, flux_api::Rollout>,
    images: &HashMap<String, HashMap<String, String>>,
) -> bool {
    job.status == JobStatus::Succeeded
        && job
            .result
            .iter()
            .filter(|r| !r.updates.is_empty())
            .all(|r| {
                let ready = rollouts
                    .get(&r.workload)
                    .is_some_and(|rollout| rollout.status == RolloutStatus::Ready);
                let running = images.get(&r.workload);
                ready
                    && r.updates.iter().all(|u| {
                        running
                            .and_then(|i| i.get(&u.container))
                            .is_some_and(|image| same_image(image, &u.target))
                    })
            })
}

/// What one sync did to each object, by id.
struct Outcomes {
    /// Applied, or already as applied.
    synced: HashSet<String>,
    /// Refused by the API server (or the sync), with the message.
    failed: HashMap<String, String>,
    /// Skipped for `fluxcd.io/ignore`.
    ignored: HashSet<String>,
    /// Files that could not be read: their objects were not in the sync.
    unread: Vec<String>,
}

impl Outcomes {
    fn of(report: &SyncReport) -> Outcomes {
        let ids =
            |list: &[flux_cluster::ResourceId]| list.iter().map(ToString::to_string).collect();
        let mut failed = HashMap::new();
        let mut unread = Vec::new();
        for error in &report.errors {
            match &error.id {
                Some(id) => {
                    failed
                        .entry(id.to_string())
                        .or_insert_with(|| error.message.clone());
                }
                None => unread.push(format!("{}: {}", error.source, error.message)),
            }
        }
        let mut synced: HashSet<String> = ids(&report.applied);
        synced.extend(ids(&report.unchanged));
        Outcomes {
            synced,
            failed,
            ignored: ids(&report.ignored),
            unread,
        }
    }

    /// The objects a job changed that this sync did not apply, and why.
    fn failures(&self, job: &flux_api::Job) -> Vec<ApplyError> {
        job.result
            .iter()
            .filter(|r| r.status == ResultStatus::Success)
            .filter(|r| !self.synced.contains(&r.workload))
            .map(|r| ApplyError {
                id: r.workload.clone(),
                error: self.why(&r.workload),
            })
            .collect()
    }

    fn why(&self, id: &str) -> String {
        if let Some(message) = self.failed.get(id) {
            return message.clone();
        }
        if self.ignored.contains(id) {
            return "not applied: the object is marked fluxcd.io/ignore".into();
        }
        if self.unread.is_empty() {
            return "not applied: the synced manifests do not hold it".into();
        }
        format!(
            "not applied: the synced manifests do not hold it ({})",
            self.unread.join("; ")
        )
    }
}

fn log_report(revision: &str, report: &SyncReport) {
    for error in &report.errors {
        let id = error.id.as_ref().map(ToString::to_string);
        tracing::warn!(%revision, source = %error.source, id, "{}", error.message);
    }
    tracing::info!(
        %revision,
        applied = report.applied.len(),
        unchanged = report.unchanged.len(),
        deleted = report.deleted.len(),
        errors = report.errors.len(),
        "synced"
    );
}

/// The first error of each workload the sync failed to apply.
fn sync_errors(report: &SyncReport) -> HashMap<String, String> {
    let mut errors = HashMap::new();
    for error in &report.errors {
        if let Some(id) = &error.id {
            errors
                .entry(id.to_string())
                .or_insert_with(|| error.message.clone());
        }
    }
    errors
}

fn wire_rollout(rollout: &flux_cluster::Rollout) -> flux_api::Rollout {
    flux_api::Rollout {
        status: match rollout.status {
            flux_cluster::RolloutStatus::Started => RolloutStatus::Started,
            flux_cluster::RolloutStatus::Updating => RolloutStatus::Updating,
            flux_cluster::RolloutStatus::Ready => RolloutStatus::Ready,
            flux_cluster::RolloutStatus::Error => RolloutStatus::Error,
        },
        desired: rollout.desired,
        updated: rollout.updated,
        ready: rollout.ready,
        messages: rollout.messages.clone(),
    }
}

/// Exports each step jobs reach as seconds since the job began (the new
/// tag first seen, for automation), and push-to-applied latency.
pub(super) fn step_metrics(metrics: Arc<Metrics>) -> StepObserver {
    Arc::new(move |job, step| {
        let timeline = &job.timeline;
        let Some(start) = timeline.first_seen.or(timeline.queued) else {
            return;
        };
        let at = match step {
            "queued" if timeline.first_seen.is_some() => timeline.queued,
            "committed" => timeline.committed,
            "pushed" => timeline.pushed,
            "applied" => timeline.applied,
            "ready" => timeline.ready,
            _ => None,
        };
        let Some(at) = at else {
            return;
        };
        metrics
            .job_step
            .get_or_create(&StepLabels { step: step.into() })
            .observe(seconds(start, at));
        if let ("applied", Some(pushed)) = (step, timeline.pushed) {
            metrics.push_to_applied.observe(seconds(pushed, at));
        }
    })
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use flux_api::{
        AutomationSpec, ContainerUpdate, Job, JobSpec, JobStatus, ResultStatus, Rollout,
        RolloutStatus, WorkloadResult,
    };
    use flux_cluster::{ResourceId, SyncError, SyncReport};

    use super::{Outcomes, all_ready};

    const CARTS: &str = "sock-shop:deployment/carts";

    fn released(workload: &str, target: &str) -> Job {
        Job {
            id: "1-1".into(),
            spec: JobSpec::Automation(AutomationSpec {
                workloads: vec![workload.into()],
                first_seen: None,
            }),
            status: JobStatus::Succeeded,
            error: None,
            result: vec![WorkloadResult {
                workload: workload.into(),
                status: ResultStatus::Success,
                error: None,
                updates: vec![ContainerUpdate {
                    container: "carts".into(),
                    current: "weaveworksdemos/carts:0.4.8".into(),
                    target: target.into(),
                }],
            }],
            commit: Some("c0ffee1".into()),
            applied: Some("c0ffee1".into()),
            timeline: Default::default(),
            apply_errors: Vec::new(),
            cluster: Some(true),
        }
    }

    fn ready() -> HashMap<String, Rollout> {
        let rollout = Rollout {
            status: RolloutStatus::Ready,
            desired: 2,
            updated: 2,
            ready: 2,
            messages: Vec::new(),
        };
        HashMap::from([(CARTS.to_string(), rollout)])
    }

    fn running(image: &str) -> HashMap<String, HashMap<String, String>> {
        let containers = HashMap::from([("carts".to_string(), image.to_string())]);
        HashMap::from([(CARTS.to_string(), containers)])
    }

    #[test]
    fn ready_needs_the_released_images_running_not_only_ready_replicas() {
        let job = released(CARTS, "weaveworksdemos/carts:0.4.10");
        let old = running("weaveworksdemos/carts:0.4.8");
        assert!(!all_ready(&job, &ready(), &old));
        let new = running("docker.io/weaveworksdemos/carts:0.4.10");
        assert!(
            all_ready(&job, &ready(), &new),
            "spelled otherwise, the same image"
        );
        assert!(!all_ready(&job, &HashMap::new(), &new), "no rollout seen");
    }

    fn id(text: &str) -> ResourceId {
        text.parse().expect("a resource id")
    }

    #[test]
    fn a_job_is_applied_only_when_every_object_it_changed_was() {
        let job = released(CARTS, "weaveworksdemos/carts:0.4.10");
        let conflict = "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas";
        let failed = SyncReport {
            applied: vec![id("sock-shop:deployment/front-end")],
            errors: vec![SyncError {
                id: Some(id(CARTS)),
                source: "manifests/01-carts-dep.yaml".into(),
                message: conflict.into(),
            }],
            ..SyncReport::default()
        };
        let failures = Outcomes::of(&failed).failures(&job);
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0].id.as_str(), failures[0].error.as_str()),
            (CARTS, conflict)
        );

        let unchanged = SyncReport {
            unchanged: vec![id(CARTS)],
            ..SyncReport::default()
        };
        assert!(Outcomes::of(&unchanged).failures(&job).is_empty());

        let unreadable = SyncReport {
            errors: vec![SyncError {
                id: None,
                source: "manifests/01-carts-dep.yaml".into(),
                message: "line 3: did not find expected key".into(),
            }],
            ..SyncReport::default()
        };
        let failures = Outcomes::of(&unreadable).failures(&job);
        assert!(
            failures[0]
                .error
                .contains("manifests/01-carts-dep.yaml: line 3"),
            "{failures:?}"
        );
    }
}
