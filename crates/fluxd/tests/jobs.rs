//! The job queue: one job at a time, in order, with status and timeline,
//! and a shutdown that never abandons a running job halfway.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flux_api::{JobSpec, JobStatus, PolicyChange, PolicySpec};
use fluxd::jobs::{Jobs, Outcome};
use tokio::sync::watch;

fn policy_job(workload: &str) -> JobSpec {
    JobSpec::Policy(PolicySpec {
        changes: vec![PolicyChange {
            workload: workload.into(),
            automated: Some(true),
            ..Default::default()
        }],
        message: None,
        user: None,
    })
}

async fn wait_for(jobs: &Jobs, id: &str, status: JobStatus) -> flux_api::Job {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let job = jobs.get(id).expect("job is known");
            if job.status == status {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("job reaches the status in time")
}

#[tokio::test]
async fn jobs_run_one_at_a_time_in_submission_order() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (_stop, shutdown) = watch::channel(false);
    let (r, m, o) = (running.clone(), most.clone(), order.clone());
    let jobs = Jobs::start(
        move |spec| {
            let (r, m, o) = (r.clone(), m.clone(), o.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                let JobSpec::Policy(p) = spec else {
                    unreachable!()
                };
                o.lock().unwrap().push(p.changes[0].workload.clone());
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(Outcome {
                    commit: Some("abc1234".into()),
                    ..Outcome::default()
                })
            }
        },
        shutdown,
    );
    let ids: Vec<String> = (0..5)
        .map(|i| jobs.submit(policy_job(&format!("ns:deployment/w{i}")), None))
        .collect();
    let last = wait_for(&jobs, &ids[4], JobStatus::Succeeded).await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two jobs at once");
    assert_eq!(
        *order.lock().unwrap(),
        (0..5)
            .map(|i| format!("ns:deployment/w{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(last.commit.as_deref(), Some("abc1234"));
    assert!(last.timeline.queued.is_some());
}

#[tokio::test]
async fn a_failed_job_keeps_its_error() {
    let (_stop, shutdown) = watch::channel(false);
    let jobs = Jobs::start(
        |_| async { Err("workload not found".to_string()) },
        shutdown,
    );
    let id = jobs.submit(policy_job("ns:deployment/missing"), None);
    let job = wait_for(&jobs, &id, JobStatus::Failed).await;
    assert_eq!(job.error.as_deref(), Some("workload not found"));
}

#[tokio::test]
async fn shutdown_finishes_the_running_job_and_leaves_the_rest_queued() {
    let (stop, shutdown) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let jobs = Jobs::start(
        move |_| {
            let mut release = release_rx.clone();
            async move {
                let _ = release.wait_for(|go| *go).await;
                Ok(Outcome::default())
            }
        },
        shutdown,
    );
    let first = jobs.submit(policy_job("ns:deployment/a"), None);
    let second = jobs.submit(policy_job("ns:deployment/b"), None);
    wait_for(&jobs, &first, JobStatus::Running).await;
    stop.send(true).unwrap();
    release_tx.send(true).unwrap();
    wait_for(&jobs, &first, JobStatus::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(jobs.get(&second).unwrap().status, JobStatus::Queued);
}

/// A queue whose jobs push the commit `c0ffee1`, and one such job, finished.
async fn committed_job() -> (Jobs, String, watch::Sender<bool>) {
    let (stop, shutdown) = watch::channel(false);
    let jobs = Jobs::start(
        |_| async {
            Ok(Outcome {
                commit: Some("c0ffee1".into()),
                ..Outcome::default()
            })
        },
        shutdown,
    );
    let id = jobs.submit(policy_job("ns:deployment/a"), None);
    wait_for(&jobs, &id, JobStatus::Succeeded).await;
    (jobs, id, stop)
}

#[tokio::test]
async fn applied_revisions_mark_the_jobs_whose_commits_they_contain() {
    let (jobs, id, _stop) = committed_job().await;
    jobs.mark_applied("d00d000", |commit| commit == "nope", |_| Vec::new());
    assert_eq!(jobs.get(&id).unwrap().applied, None);
    jobs.mark_applied("d00d000", |commit| commit == "c0ffee1", |_| Vec::new());
    let job = jobs.get(&id).unwrap();
    assert_eq!(job.applied.as_deref(), Some("d00d000"));
    assert!(job.timeline.applied.is_some());
}

#[tokio::test]
async fn a_revision_whose_sync_failed_the_jobs_objects_does_not_apply_it() {
    let (jobs, id, _stop) = committed_job().await;
    let conflict = flux_api::ApplyError {
        id: "ns:deployment/a".into(),
        error:
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
                .into(),
    };
    let marked = jobs.mark_applied("d00d000", |_| true, |_| vec![conflict.clone()]);
    assert!(marked.is_empty());
    let job = jobs.get(&id).unwrap();
    assert_eq!((job.applied.as_deref(), job.timeline.applied), (None, None));
    assert_eq!(job.apply_errors, [conflict]);
    assert_eq!(
        jobs.awaiting_apply(),
        ["c0ffee1"],
        "a later sync may still apply it"
    );
    // A later sync that applies the objects applies the job, and the errors go.
    jobs.mark_applied("d00d001", |_| true, |_| Vec::new());
    let job = jobs.get(&id).unwrap();
    assert_eq!(job.applied.as_deref(), Some("d00d001"));
    assert!(job.apply_errors.is_empty());
}
