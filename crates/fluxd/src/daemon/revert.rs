//! A failed rollout reverts itself: an automated release whose rollout
//! fails (`ProgressDeadlineExceeded`, or not ready within its deadline) is
//! undone through git, where opted in. The revert commit puts back the
//! image the manifest had and records the failed tag in the workload's
//! `fluxcd.io/reverted.<container>` annotation: in git, so it holds after a
//! restart with an empty data folder, shows in every checkout and review,
//! and is undone by deleting a line; automation never picks that tag again.

use std::collections::HashMap;
use std::time::Duration;

use flux_api::{
    ContainerUpdate, JobSpec, ResultStatus, RevertSpec, RevertedContainer, RolloutStatus,
    WorkloadResult,
};
use flux_git::CommitMessage;
use flux_image::ImageRef;
use flux_manifests::{Checkout, PolicyKey, PolicyUpdate, Reverted};
use jiff::Timestamp;

use super::Inner;
use super::job::parse_id;
use crate::config::parse_duration;
use crate::jobs::{Jobs, Outcome};

impl Inner {
    /// Queues a revert of every automated release applied but not ready
    /// whose rollout failed, for the workloads that opted in; each job is
    /// reverted once.
    pub(super) async fn revert_failed_rollouts(
        &self,
        jobs: &Jobs,
        rollouts: &HashMap<String, flux_api::Rollout>,
        images: &HashMap<String, HashMap<String, String>>,
    ) {
        let Some(checkout) = self
            .loaded
            .lock()
            .await
            .as_ref()
            .map(|l| l.checkout.clone())
        else {
            return;
        };
        for job in jobs.awaiting_ready() {
            let (JobSpec::Automation(_), Some(commit)) = (&job.spec, &job.commit) else {
                continue;
            };
            if self.reverted_jobs().contains(&job.id) {
                continue;
            }
            let containers = failed(&job, &checkout, rollouts, images, self);
            if containers.is_empty() {
                continue;
            }
            self.reverted_jobs().insert(job.id.clone());
            let detected = Timestamp::now();
            for c in &containers {
                tracing::warn!(job = %job.id, workload = %c.workload, image = %c.failed, reason = %c.reason,
                    "automated release failed its rollout: reverting");
            }
            let spec = JobSpec::Revert(RevertSpec {
                job: job.id.clone(),
                commit: commit.clone(),
                subject: job_subject(&job),
                containers,
            });
            jobs.submit(spec, Some(detected));
        }
    }

    fn reverted_jobs(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.reverted_jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a workload's failed automated releases are reverted, and how
    /// long its rollouts may take.
    fn rollback_policy(&self, workload: &flux_manifests::Workload) -> Option<Duration> {
        let policies = &workload.policies;
        if !policies.rollback_on_failure && !self.config.automation_rollback_on_failure {
            return None;
        }
        let deadline = policies.rollout_deadline.as_deref().map(parse_duration);
        match deadline {
            Some(Ok(deadline)) => Some(deadline),
            Some(Err(error)) => {
                tracing::warn!(workload = %workload.id, %error, "fluxcd.io/rollout-deadline");
                Some(self.config.automation_rollout_deadline)
            }
            None => Some(self.config.automation_rollout_deadline),
        }
    }

    /// The revert job: puts back each container's previous image, where it
    /// still runs the failed one, and records the failed tag.
    pub(super) async fn revert(&self, wire: RevertSpec) -> Result<Outcome, String> {
        let job = JobSpec::Revert(wire.clone());
        let message = revert_message(&wire);
        let mut outcome = self
            .edit_and_push(&job, None, |checkout, transaction| {
                let mut results = Vec::new();
                for c in &wire.containers {
                    let Some(result) = revert_container(checkout, transaction, c)? else {
                        continue;
                    };
                    results.push(result);
                }
                let any = results.iter().any(|r| r.status == ResultStatus::Success);
                Ok((results, any.then(|| message.clone())))
            })
            .await?;
        outcome.first_seen = None;
        Ok(outcome)
    }
}

/// The containers of `job` whose rollout failed, in workloads that opted in.
fn failed(
    job: &flux_api::Job,
    checkout: &Checkout,
    rollouts: &HashMap<String, flux_api::Rollout>,
    images: &HashMap<String, HashMap<String, String>>,
    daemon: &Inner,
) -> Vec<RevertedContainer> {
    let mut containers = Vec::new();
    for result in job.result.iter().filter(|r| !r.updates.is_empty()) {
        let Some(workload) = checkout
            .workloads
            .iter()
            .find(|w| w.id.to_string() == result.workload)
        else {
            continue;
        };
        let Some(deadline) = daemon.rollback_policy(workload) else {
            continue;
        };
        let Some(rollout) = rollouts.get(&result.workload) else {
            continue;
        };
        let running = images.get(&result.workload);
        let runs_release = result.updates.iter().all(|u| {
            running
                .and_then(|i| i.get(&u.container))
                .is_some_and(|image| same_image(image, &u.target))
        });
        if !runs_release {
            // Its spec moved on, or is not applied yet.
            continue;
        }
        let Some(reason) = why_failed(rollout, job.timeline.applied, deadline) else {
            continue;
        };
        containers.extend(result.updates.iter().map(|u| RevertedContainer {
            workload: result.workload.clone(),
            container: u.container.clone(),
            previous: u.current.clone(),
            failed: u.target.clone(),
            reason: reason.clone(),
        }));
    }
    containers
}

/// Why a rollout counts as failed: the controller gave up, or it is not
/// ready `deadline` after it was applied.
fn why_failed(
    rollout: &flux_api::Rollout,
    applied: Option<Timestamp>,
    deadline: Duration,
) -> Option<String> {
    match rollout.status {
        RolloutStatus::Ready => None,
        RolloutStatus::Error => Some(
            rollout
                .messages
                .first()
                .map(|m| format!("ProgressDeadlineExceeded: {m}"))
                .unwrap_or_else(|| "ProgressDeadlineExceeded".into()),
        ),
        RolloutStatus::Started | RolloutStatus::Updating => {
            let waited = Timestamp::now().duration_since(applied?);
            (waited.as_secs_f64() >= deadline.as_secs_f64())
                .then(|| format!("not ready within {}", humane(deadline)))
        }
    }
}

/// `10m`, `90s`: a deadline as the flag would write it.
fn humane(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds > 0 && seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else if seconds > 0 {
        format!("{seconds}s")
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn same_image(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (ImageRef::parse(a), ImageRef::parse(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Puts one container back, when it still runs the failed image; `None`
/// when the workload is gone.
fn revert_container(
    checkout: &Checkout,
    transaction: &mut flux_manifests::Transaction<'_>,
    c: &RevertedContainer,
) -> std::io::Result<Option<WorkloadResult>> {
    let Ok(id) = parse_id(&c.workload) else {
        return Ok(None);
    };
    let Some(workload) = checkout.workloads.iter().find(|w| w.id == id) else {
        return Ok(None);
    };
    let mut result = WorkloadResult {
        workload: c.workload.clone(),
        status: ResultStatus::Skipped,
        error: None,
        updates: Vec::new(),
    };
    let running = workload.container(&c.container).map(|c| c.spelling.clone());
    if !running.as_deref().is_some_and(|r| same_image(r, &c.failed)) {
        result.error = Some(format!(
            "{} no longer runs {}: left as it is",
            c.container, c.failed
        ));
        return Ok(Some(result));
    }
    let (previous, failed) = match (ImageRef::parse(&c.previous), ImageRef::parse(&c.failed)) {
        (Ok(previous), Ok(failed)) => (previous, failed),
        _ => {
            result.status = ResultStatus::Failed;
            result.error = Some(format!("{}: unreadable image", c.container));
            return Ok(Some(result));
        }
    };
    let record = Reverted {
        tag: failed.tag().unwrap_or_default().to_string(),
        reason: Some(c.reason.clone()),
    };
    let update = PolicyUpdate {
        add: vec![(PolicyKey::Reverted(c.container.clone()), record.value())],
        remove: Vec::new(),
    };
    // A half-made revert must not be pushed: a failed edit fails the job.
    transaction
        .set_image(&id, &c.container, &previous)
        .and_then(|_| transaction.update_policies(&id, &update))
        .map_err(|error| {
            std::io::Error::other(format!("{} of {}: {error}", c.container, c.workload))
        })?;
    result.status = ResultStatus::Success;
    result.updates.push(ContainerUpdate {
        container: c.container.clone(),
        current: c.failed.clone(),
        target: c.previous.clone(),
    });
    Ok(Some(result))
}

/// `Revert "Auto-release …"`, as `git revert` heads its commits, then
/// which commit it undoes and why.
fn revert_message(spec: &RevertSpec) -> CommitMessage {
    let mut reasons: Vec<String> = spec
        .containers
        .iter()
        .map(|c| format!("{} of {}: {}", c.failed, c.workload, c.reason))
        .collect();
    reasons.dedup();
    CommitMessage::plain(format!(
        "Revert \"{}\"\n\nThis reverts commit {}: its rollout failed.\n\n{}",
        spec.subject,
        spec.commit,
        reasons.join("\n")
    ))
}

/// The automation commit's subject, as its message would have it.
fn job_subject(job: &flux_api::Job) -> String {
    let images: Vec<String> = job
        .result
        .iter()
        .flat_map(|r| &r.updates)
        .map(|u| u.target.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let message = CommitMessage::auto_release(&images);
    message
        .as_str()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(status: RolloutStatus, messages: &[&str]) -> flux_api::Rollout {
        flux_api::Rollout {
            status,
            desired: 1,
            updated: 1,
            ready: 0,
            messages: messages.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn a_rollout_fails_when_the_controller_gives_up_or_the_deadline_passes() {
        let deadline = Duration::from_secs(300);
        let just = Some(Timestamp::now());
        let long_ago = Some(Timestamp::now() - jiff::SignedDuration::from_secs(301));
        let stuck = rollout(
            RolloutStatus::Error,
            &["ReplicaSet has timed out progressing."],
        );
        assert_eq!(
            why_failed(&stuck, just, deadline).as_deref(),
            Some("ProgressDeadlineExceeded: ReplicaSet has timed out progressing.")
        );
        let updating = rollout(RolloutStatus::Updating, &[]);
        assert_eq!(why_failed(&updating, just, deadline), None, "still in time");
        assert_eq!(
            why_failed(&updating, long_ago, deadline).as_deref(),
            Some("not ready within 5m")
        );
        let ready = rollout(RolloutStatus::Ready, &[]);
        assert_eq!(why_failed(&ready, long_ago, deadline), None);
    }
}
