//! The automation loop and its job: automated workloads move to the newest
//! tags their policies admit, a burst of new tags making one commit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flux_api::{AutomationSpec, JobSpec, WorkloadResult};
use flux_git::CommitMessage;
use flux_image::ImageRef;
use flux_manifests::Checkout;
use flux_manifests::release::{self, ReleaseSpec, Status, Targets, Update};
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use super::Inner;
use super::hold::Moved;
use super::job::wire_result;
use crate::jobs::{Jobs, Outcome};

/// Runs automation when asked (a new tag, a new head) and every
/// `--automation-interval`: at once for a lone new tag, after gathering
/// the requests of a batch otherwise, so a burst of new tags makes one
/// job, one commit, one push.
pub(super) async fn automation_loop(
    daemon: Arc<Inner>,
    jobs: Jobs,
    mut requests: mpsc::UnboundedReceiver<Option<Timestamp>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: Option<Submitted> = None;
    let mut looking = daemon.looking.subscribe();
    loop {
        let mut first_seen = tokio::select! {
            () = tokio::time::sleep(daemon.config.automation_interval) => None,
            request = requests.recv() => match request {
                Some(seen) => seen,
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let window = daemon.config.automation_batch_window;
        match gather(
            &mut requests,
            first_seen,
            window,
            &mut looking,
            &mut shutdown,
        )
        .await
        {
            Some(seen) => first_seen = seen,
            None => return,
        }
        if daemon.config.git_readonly {
            // Nothing could be pushed; a failing job per new tag helps no one.
            continue;
        }
        daemon.leadership.lead().await;
        let Some((moving, head)) = daemon.automation_plan().await else {
            continue;
        };
        if last.as_ref().is_some_and(|l| l.still_pending(&jobs, &head)) {
            // Its commit is not read yet; reading it asks again.
            continue;
        }
        if moving.is_empty() {
            continue;
        }
        tracing::info!(workloads = ?moving, "automation: newer images admitted");
        let spec = JobSpec::Automation(AutomationSpec {
            workloads: moving,
            first_seen,
        });
        let id = jobs.submit(spec, first_seen);
        daemon.metrics.queue_length.set(jobs.queued() as i64);
        last = Some(Submitted { id, head });
    }
}

/// Gathers automation's triggers into one batch. A lone trigger, with no
/// look at a repository a change named still queued or under way, is
/// acted on at once. Otherwise the batch waits for those looks, and, once
/// a second trigger came, until triggers stop coming for a quarter of the
/// batch window; never more than the whole window after the first. Answers
/// with the earliest first-seen time, or `None` when fluxd stops.
async fn gather(
    requests: &mut mpsc::UnboundedReceiver<Option<Timestamp>>,
    mut first_seen: Option<Timestamp>,
    window: Duration,
    looking: &mut watch::Receiver<usize>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Option<Timestamp>> {
    let quiet = window / 4;
    let last_chance = tokio::time::Instant::now() + window;
    // Set once a second trigger came: from then on, a quiet spell ends the batch.
    let mut settles: Option<tokio::time::Instant> = None;
    loop {
        while let Ok(request) = requests.try_recv() {
            first_seen = earliest(first_seen, request);
            settles = Some((tokio::time::Instant::now() + quiet).min(last_chance));
        }
        let busy = *looking.borrow_and_update() > 0;
        if !busy && settles.is_none() {
            return Some(first_seen);
        }
        let wake = match settles {
            Some(settles) if !busy => settles,
            _ => last_chance,
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => return Some(first_seen),
            request = requests.recv() => {
                first_seen = earliest(first_seen, request?);
                settles = Some((tokio::time::Instant::now() + quiet).min(last_chance));
            }
            changed = looking.changed() => changed.ok()?,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
    }
}

/// The automation job last queued, and the head it was planned on.
struct Submitted {
    id: String,
    head: String,
}

impl Submitted {
    /// Whether planning again now would repeat this job: it has not
    /// finished, or it pushed a commit the manifests last read predate.
    fn still_pending(&self, jobs: &Jobs, head: &str) -> bool {
        let Some(job) = jobs.get(&self.id) else {
            return false;
        };
        match job.status {
            flux_api::JobStatus::Queued | flux_api::JobStatus::Running => true,
            _ => job.commit.is_some() && self.head == head,
        }
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Inner {
    /// Moves each automated workload's containers to their newest admitted
    /// tags, decided again on the manifests being edited and the registry
    /// cache; one commit for all of them, none when nothing moves.
    pub(super) async fn automate(&self, wire: AutomationSpec) -> Result<Outcome, String> {
        let job = JobSpec::Automation(wire.clone());
        let Some((read, moves)) = self.last_read().await else {
            return Ok(Outcome::default());
        };
        self.edit_and_push(&job, None, |checkout, transaction| {
            let mut spec = self.automation_spec(checkout, &moves);
            leave_changed_since(&read, checkout, &mut spec);
            let made = release::execute(transaction, &spec);
            let images: BTreeSet<String> = made
                .iter()
                .filter(|r| r.status == Status::Success)
                .flat_map(|r| &r.updates)
                .map(|u| flux_manifests::respell(&u.current, &u.target))
                .collect();
            let results = made
                .iter()
                .filter(|r| !r.updates.is_empty())
                .map(wire_result)
                .collect();
            let images: Vec<String> = images.into_iter().collect();
            let message = (!images.is_empty()).then(|| CommitMessage::auto_release(&images));
            Ok((results, message))
        })
        .await
    }

    /// For automation: when the scanner first saw the tags the job moves
    /// to (the earliest), whatever trigger started the job; a trigger's own
    /// time counts too.
    pub(super) fn first_seen(
        &self,
        job: &JobSpec,
        results: &[WorkloadResult],
    ) -> Option<Timestamp> {
        let JobSpec::Automation(automation) = job else {
            return None;
        };
        let cache = self.scanner.cache();
        results
            .iter()
            .flat_map(|r| &r.updates)
            .filter_map(|u| {
                let image = ImageRef::parse(&u.target).ok()?;
                let state = cache.repository(&image.name().canonical())?;
                state.tags.get(image.tag()?)?.first_seen
            })
            .fold(automation.first_seen, |a, b| earliest(a, Some(b)))
    }

    /// A release of every automated, unlocked workload to the newest tags
    /// its policies admit (locked and ignored ones are left by the release
    /// rules themselves).
    fn automation_spec(&self, checkout: &Checkout, moves: &[Moved]) -> ReleaseSpec {
        let automated = checkout
            .workloads
            .iter()
            .filter(|w| w.policies.automated && !w.policies.locked)
            .map(|w| w.id.clone())
            .collect();
        let mut spec = ReleaseSpec {
            targets: Targets::Only(automated),
            excludes: Vec::new(),
            update: Update::PerContainer(release::ContainerTargets::new()),
            containers: Vec::new(),
            force: false,
        };
        let repositories = self.cached_all(release::repositories(checkout, &spec));
        let targets = release::per_container_targets_of(checkout, &spec, |w, c, policy| {
            let restraint = self.restraint(checkout, moves, &w.id, &c.name);
            flux_registry::newest_allowed(&c.image, policy, &repositories, &restraint)
        });
        spec.update = Update::PerContainer(targets);
        spec
    }

    /// The manifests last read and the moves people made up to them.
    async fn last_read(&self) -> Option<(Arc<Checkout>, Arc<Vec<Moved>>)> {
        let loaded = self.loaded.lock().await;
        let loaded = loaded.as_ref()?;
        Some((loaded.checkout.clone(), loaded.moves.clone()))
    }

    /// The automated workloads that would move, on the manifests last
    /// read, and the head they were read at; `None` before the first read.
    async fn automation_plan(&self) -> Option<(Vec<String>, String)> {
        let (checkout, head, moves) = {
            let loaded = self.loaded.lock().await;
            let loaded = loaded.as_ref()?;
            (
                loaded.checkout.clone(),
                loaded.head.clone(),
                loaded.moves.clone(),
            )
        };
        let spec = self.automation_spec(&checkout, &moves);
        let moving = release::plan(&checkout, &spec)
            .into_iter()
            .filter(|r| r.status == Status::Success && !r.updates.is_empty())
            .map(|r| r.id.to_string())
            .collect();
        Some((moving, head))
    }
}

/// Leaves out the containers whose image changed since the manifests were
/// last read (a person's commit the job's fetch brought): whether that was
/// a rollback to respect is known only once that head is read, and reading
/// it asks automation again.
fn leave_changed_since(read: &Checkout, editing: &Checkout, spec: &mut ReleaseSpec) {
    let Update::PerContainer(targets) = &mut spec.update else {
        return;
    };
    for (id, containers) in targets.iter_mut() {
        let before = read.workloads.iter().find(|w| w.id == *id);
        let now = editing.workloads.iter().find(|w| w.id == *id);
        containers.retain(|name, _| {
            let image = |w: Option<&flux_manifests::Workload>| {
                w.and_then(|w| w.container(name)).map(|c| c.image.clone())
            };
            image(before) == image(now)
        });
    }
    targets.retain(|_, containers| !containers.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends a trigger after each pause, with a change's look at a
    /// repository under way for the first `busy` milliseconds, then waits
    /// for the batch.
    async fn batch_after(pauses: &[u64], busy: Option<u64>) -> (Duration, Option<Timestamp>) {
        let (triggers, mut requests) = mpsc::unbounded_channel();
        let (_stop, mut shutdown) = watch::channel(false);
        let (looks, mut looking) = watch::channel(usize::from(busy.is_some()));
        let started = tokio::time::Instant::now();
        let sender = tokio::spawn({
            let pauses = pauses.to_vec();
            async move {
                for (n, pause) in pauses.into_iter().enumerate() {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let seen = Timestamp::from_second(1_000 + n as i64).expect("a valid time");
                    let _ = triggers.send(Some(seen));
                }
                // Keeps the channel open for the rest of the test.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        let looker = tokio::spawn(async move {
            if let Some(busy) = busy {
                tokio::time::sleep(Duration::from_millis(busy)).await;
                looks.send_replace(0);
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let window = Duration::from_secs(1);
        let gathered = gather(&mut requests, None, window, &mut looking, &mut shutdown).await;
        sender.abort();
        looker.abort();
        (started.elapsed(), gathered.expect("fluxd did not stop"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_trigger_with_nothing_else_under_way_is_acted_on_at_once() {
        let (took, _) = batch_after(&[], None).await;
        assert_eq!(took, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_trigger_waits_for_the_looks_changes_asked_for() {
        let (took, _) = batch_after(&[], Some(40)).await;
        assert_eq!(took, Duration::from_millis(40));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_triggers_is_one_batch_with_the_earliest_first_seen() {
        let (took, seen) = batch_after(&[10, 100, 100], Some(20)).await;
        assert_eq!(
            took,
            Duration::from_millis(460),
            "a quarter-window after the last"
        );
        assert_eq!(seen, Some(Timestamp::from_second(1_000).unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_that_keep_coming_are_cut_at_the_whole_window() {
        let (took, _) = batch_after(&[200; 20], Some(5_000)).await;
        assert_eq!(took, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn looks_that_never_end_are_cut_at_the_whole_window() {
        let (took, _) = batch_after(&[], Some(5_000)).await;
        assert_eq!(took, Duration::from_secs(1));
    }
}
