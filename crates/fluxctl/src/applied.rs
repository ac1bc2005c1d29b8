//! Waiting until the daemon has applied a job's commit to its cluster:
//! `Commit applied:` after a release.

use std::time::{Duration, Instant};

use flux_api::{Client, Job, Workload};

use crate::daemon::{self, short};
use crate::sync::{self, Synced};

/// How often the job is asked about while waiting.
const POLL: Duration = Duration::from_millis(250);

/// How the wait ended.
#[derive(Debug)]
pub enum Waited {
    /// The commit is applied; the job as the daemon last answered.
    Applied(Job),
    /// The daemon says it runs without a cluster: nothing will apply it.
    NoCluster(Job),
    /// The sync of a revision holding the commit failed some of the objects
    /// the job changed (`apply_errors`).
    Failed(Job),
    /// Not applied before the deadline.
    TimedOut(Job),
}

/// Polls the job until its commit is applied, the daemon says it has no
/// cluster, or `timeout` passes (a spinner on a terminal meanwhile).
pub async fn wait(client: &Client, mut job: Job, timeout: Duration) -> anyhow::Result<Waited> {
    let spinner = job.commit.as_deref().and_then(|commit| {
        daemon::spinner(&format!("Waiting for {} to be applied", short(commit)))
    });
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        if job.applied.is_some() {
            break Waited::Applied(job);
        }
        if job.cluster == Some(false) {
            break Waited::NoCluster(job);
        }
        if !job.apply_errors.is_empty() {
            break Waited::Failed(job);
        }
        if Instant::now() >= deadline {
            break Waited::TimedOut(job);
        }
        tokio::time::sleep(POLL).await;
        job = client.job(&job.id).await?;
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    Ok(outcome)
}

/// Asks the daemon to fetch git now, then waits until it has applied
/// `revision` (a commit pushed by someone else than the daemon); says on
/// standard error why not, and answers whether it was applied in full.
pub async fn wait_for_revision(
    client: &Client,
    revision: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    client.sync().await?;
    match sync::until_synced(client, revision, timeout).await? {
        Synced::Applied(unread) if unread.is_empty() => Ok(true),
        Synced::Applied(unread) => {
            for error in &unread {
                eprintln!("fluxctl: {}", error.message);
            }
            eprintln!(
                "fluxctl: {} applied, except what the {} file(s) above hold: they could not be read",
                short(revision),
                unread.len()
            );
            Ok(false)
        }
        Synced::Pending(pending) => {
            eprintln!(
                "fluxctl: {} was not applied within {}s ({pending} commit(s) pending); \
                 the daemon keeps trying, see its log",
                short(revision),
                timeout.as_secs()
            );
            Ok(false)
        }
    }
}

/// The ids of the workloads a job changed.
pub fn released(job: &Job) -> Vec<String> {
    job.result
        .iter()
        .filter(|r| !r.updates.is_empty())
        .map(|r| r.workload.clone())
        .collect()
}

/// Why nothing was applied in time, for a person: the commit, the wait,
/// and, when the daemon did not say whether it has a cluster but reports no
/// rollout for any released workload, that it likely runs without one.
pub fn timed_out(job: &Job, timeout: Duration, workloads: &[Workload]) -> String {
    let commit = job.commit.as_deref().map(short).unwrap_or("the commit");
    let mut message = format!(
        "{commit} was not applied within {}s; the daemon keeps trying, see its log",
        timeout.as_secs()
    );
    if job.cluster.is_none() && !any_rollout(&released(job), workloads) {
        message.push_str(
            " (fluxd reports no rollout for the released workloads: \
             it likely runs without a cluster, --cluster=none)",
        );
    }
    message
}

/// Why the commit was not applied, for a person: each object the sync
/// failed, with the API server's message.
pub fn failed(job: &Job) -> String {
    let commit = job.commit.as_deref().map(short).unwrap_or("the commit");
    let mut message = format!("{commit} was not applied:");
    for failure in &job.apply_errors {
        message.push_str(&format!("\n  {}: {}", failure.id, failure.error));
    }
    message
}

/// The explanation when the daemon says it has no cluster.
pub fn no_cluster(job: &Job) -> String {
    let commit = job.commit.as_deref().map(short).unwrap_or("the commit");
    format!(
        "fluxd runs without a cluster (--cluster=none): nothing applies {commit}; \
         apply it with your own tool"
    )
}

/// Whether the daemon reports a rollout for any of `ids`.
pub fn any_rollout(ids: &[String], workloads: &[Workload]) -> bool {
    workloads
        .iter()
        .any(|w| w.rollout.is_some() && ids.contains(&w.id))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flux_api::{
        ContainerUpdate, ImageUpdate, Job, JobSpec, JobStatus, ReleaseSpec, ResultStatus, Rollout,
        RolloutStatus, Targets, Workload, WorkloadResult,
    };

    const FRONT_END: &str = "sock-shop:deployment/front-end";

    fn job(cluster: Option<bool>) -> Job {
        Job {
            id: "1-1".into(),
            spec: JobSpec::Release(ReleaseSpec {
                targets: Targets::All,
                exclude: Vec::new(),
                update: ImageUpdate::AllLatest,
                force: false,
                dry_run: false,
                message: None,
                user: None,
                containers: Default::default(),
            }),
            status: JobStatus::Succeeded,
            error: None,
            result: vec![WorkloadResult {
                workload: FRONT_END.into(),
                status: ResultStatus::Success,
                error: None,
                updates: vec![ContainerUpdate {
                    container: "front-end".into(),
                    current: "weaveworksdemos/front-end:0.3.12".into(),
                    target: "weaveworksdemos/front-end:0.4.0".into(),
                }],
            }],
            commit: Some("0123456789abcdef".into()),
            applied: None,
            timeline: Default::default(),
            apply_errors: Vec::new(),
            cluster,
        }
    }

    fn workload(rollout: Option<Rollout>) -> Workload {
        Workload {
            id: FRONT_END.into(),
            containers: Vec::new(),
            policies: Default::default(),
            rollout,
            sync_error: None,
            read_error: None,
            holds: Vec::new(),
        }
    }

    #[test]
    fn a_timeout_without_any_rollout_suggests_the_daemon_has_no_cluster() {
        let message = super::timed_out(&job(None), Duration::from_secs(1), &[workload(None)]);
        assert!(
            message.starts_with("0123456 was not applied within 1s"),
            "{message}"
        );
        assert!(message.contains("--cluster=none"), "{message}");
    }

    #[test]
    fn a_timeout_with_a_rollout_does_not_blame_the_cluster() {
        let rollout = Rollout {
            status: RolloutStatus::Ready,
            desired: 1,
            updated: 1,
            ready: 1,
            messages: Vec::new(),
        };
        let message = super::timed_out(
            &job(None),
            Duration::from_secs(60),
            &[workload(Some(rollout))],
        );
        assert!(!message.contains("cluster"), "{message}");
        let said = super::timed_out(&job(Some(true)), Duration::from_secs(60), &[workload(None)]);
        assert!(
            !said.contains("cluster"),
            "the daemon said it has one: {said}"
        );
    }

    #[tokio::test]
    async fn a_commit_whose_objects_failed_is_not_applied() {
        let mut failed = job(Some(true));
        failed.apply_errors = vec![flux_api::ApplyError {
            id: FRONT_END.into(),
            error: "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas".into(),
        }];
        let client = flux_api::Client::new("http://127.0.0.1:9", None).expect("a valid URL");
        let outcome = super::wait(&client, failed, Duration::from_secs(60))
            .await
            .expect("no request is made");
        let super::Waited::Failed(job) = outcome else {
            panic!("{outcome:?}")
        };
        let message = super::failed(&job);
        assert_eq!(
            message,
            "0123456 was not applied:\n  sock-shop:deployment/front-end: Apply failed with 1 conflict: \
             conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
    }

    #[tokio::test]
    async fn a_daemon_without_a_cluster_is_not_waited_for() {
        let client = flux_api::Client::new("http://127.0.0.1:9", None).expect("a valid URL");
        let outcome = super::wait(&client, job(Some(false)), Duration::from_secs(60))
            .await
            .expect("no request is made");
        assert!(
            matches!(outcome, super::Waited::NoCluster(_)),
            "{outcome:?}"
        );
    }
}
