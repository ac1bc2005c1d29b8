//! The job queue: releases and policy changes, carried out one at a time
//! (one writer per repo), each with its status, result and timeline.
//!
//! Submitting answers at once with an id; a worker task runs jobs in order.
//! On shutdown the worker finishes the job it is running and leaves the
//! rest queued, so a commit is never half made.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use flux_api::{ApplyError, Job, JobSpec, JobStatus, Timeline, WorkloadResult};
use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

/// What running a job produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Per-workload results.
    pub result: Vec<WorkloadResult>,
    /// The commit pushed, if any.
    pub commit: Option<String>,
    /// When the commit was made.
    pub committed: Option<Timestamp>,
    /// When the push was accepted.
    pub pushed: Option<Timestamp>,
    /// Automation: when the tags it released were first seen.
    pub first_seen: Option<Timestamp>,
}

/// Marks the worker stopped when dropped.
struct WorkerDone(watch::Sender<bool>);

impl Drop for WorkerDone {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// How many finished jobs are kept for `GET /jobs/{id}`.
const KEEP_FINISHED: usize = 1000;

#[derive(Default)]
struct Table {
    jobs: HashMap<String, Job>,
    finished: VecDeque<String>,
    next: u64,
}

/// Told of each step a job reaches: `queued`, `committed`, `pushed`,
/// `applied`, `ready`.
pub type StepObserver = Arc<dyn Fn(&Job, &'static str) + Send + Sync>;

/// A handle on the queue; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    table: Arc<Mutex<Table>>,
    observer: Arc<OnceLock<StepObserver>>,
    queue: mpsc::UnboundedSender<String>,
    changed: Arc<watch::Sender<u64>>,
    stopped: watch::Receiver<bool>,
}

impl Jobs {
    /// Starts the worker, which runs each job with `execute` until `shutdown`
    /// turns true.
    pub fn start<F, Fut>(execute: F, shutdown: watch::Receiver<bool>) -> Jobs
    where
        F: Fn(JobSpec) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, String>> + Send,
    {
        Jobs::start_gated(
            move |_, spec| execute(spec),
            shutdown,
            || std::future::ready(()),
        )
    }

    /// The same, with a worker that before each job waits for `may_run`
    /// (leadership, say): while it waits, jobs stay queued. `execute` is
    /// given each job's id with its spec.
    pub fn start_gated<F, Fut, G, GFut>(
        execute: F,
        mut shutdown: watch::Receiver<bool>,
        may_run: G,
    ) -> Jobs
    where
        F: Fn(String, JobSpec) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, String>> + Send,
        G: Fn() -> GFut + Send + Sync + 'static,
        GFut: Future<Output = ()> + Send,
    {
        let (queue, mut pending) = mpsc::unbounded_channel::<String>();
        let (changed, _) = watch::channel(0u64);
        let (worker_done, stopped) = watch::channel(false);
        let jobs = Jobs {
            table: Arc::default(),
            observer: Arc::default(),
            queue,
            changed: Arc::new(changed),
            stopped,
        };
        let worker = jobs.clone();
        tokio::spawn(async move {
            // Told when this task ends, however it ends.
            let _done = WorkerDone(worker_done);
            loop {
                let id = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    next = pending.recv() => match next {
                        Some(id) => id,
                        None => break,
                    },
                };
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = may_run() => {}
                }
                let Some(spec) = worker.begin(&id) else {
                    continue;
                };
                let outcome = execute(id.clone(), spec).await;
                worker.finish(&id, outcome);
            }
        });
        jobs
    }

    /// Sets who is told of each step jobs reach (metrics); only once.
    pub fn observe_steps(&self, observer: StepObserver) {
        let _ = self.observer.set(observer);
    }

    fn observed(&self, job: &Job, step: &'static str) {
        if let Some(observer) = self.observer.get() {
            observer(job, step);
        }
    }

    /// Waits until the worker has stopped: after a shutdown, once the job
    /// it was running (if any) is finished.
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|done| *done).await;
    }

    /// Queues a job; answers with its id.
    pub fn submit(&self, spec: JobSpec, first_seen: Option<Timestamp>) -> String {
        let id = {
            let mut table = self.lock();
            table.next += 1;
            let id = format!("{}-{}", Timestamp::now().as_millisecond(), table.next);
            let job = queued(id.clone(), spec, first_seen);
            self.observed(&job, "queued");
            table.jobs.insert(id.clone(), job);
            id
        };
        if self.queue.send(id.clone()).is_err() {
            self.update(&id, |job| {
                job.status = JobStatus::Failed;
                job.error = Some("fluxd is shutting down".into());
            });
        }
        self.notify();
        id
    }

    /// Queues a job another fluxd took and did not finish (it stopped
    /// leading), under its own id, so that clients asking for it by id find
    /// it here.
    pub fn adopt(&self, id: &str, spec: JobSpec, first_seen: Option<Timestamp>) {
        {
            let mut table = self.lock();
            if table.jobs.contains_key(id) {
                return;
            }
            let job = queued(id.to_string(), spec, first_seen);
            table.jobs.insert(id.to_string(), job);
        }
        if self.queue.send(id.to_string()).is_err() {
            self.update(id, |job| {
                job.status = JobStatus::Failed;
                job.error = Some("fluxd is shutting down".into());
            });
        }
        self.notify();
    }

    /// Records a job another fluxd ran and pushed (its commit's note says
    /// so) as succeeded, without running it again.
    pub fn adopt_pushed(&self, id: &str, spec: JobSpec, commit: String) {
        let mut table = self.lock();
        if table.jobs.contains_key(id) {
            return;
        }
        let job = Job {
            id: id.to_string(),
            spec,
            status: JobStatus::Succeeded,
            error: None,
            result: Vec::new(),
            commit: Some(commit),
            applied: None,
            timeline: Timeline::default(),
            apply_errors: Vec::new(),
            cluster: None,
        };
        table.jobs.insert(id.to_string(), job);
        table.finished.push_back(id.to_string());
        drop(table);
        self.notify();
    }

    /// Jobs queued or running, oldest first.
    pub fn unfinished(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .lock()
            .jobs
            .values()
            .filter(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running))
            .cloned()
            .collect();
        jobs.sort_by(|a, b| {
            a.timeline
                .queued
                .cmp(&b.timeline.queued)
                .then(a.id.cmp(&b.id))
        });
        jobs
    }

    /// A job by id.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().jobs.get(id).cloned()
    }

    /// Every job kept, newest first.
    pub fn list(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self.lock().jobs.values().cloned().collect();
        jobs.sort_by(|a, b| {
            b.timeline
                .queued
                .cmp(&a.timeline.queued)
                .then(b.id.cmp(&a.id))
        });
        jobs
    }

    /// Jobs waiting to run.
    pub fn queued(&self) -> usize {
        self.lock()
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued)
            .count()
    }

    /// The commits of jobs that pushed one not yet applied.
    pub fn awaiting_apply(&self) -> Vec<String> {
        self.lock()
            .jobs
            .values()
            .filter(|job| job.applied.is_none())
            .filter_map(|job| job.commit.clone())
            .collect()
    }

    /// Settles the jobs whose commit a synced revision holds
    /// (`synced_contains`): a job is applied at `revision` when `failures`
    /// finds none among the objects it changed, and otherwise keeps those
    /// failures and stays waiting (a later sync may still apply it).
    /// Answers with the jobs it marked applied.
    pub fn mark_applied(
        &self,
        revision: &str,
        synced_contains: impl Fn(&str) -> bool,
        failures: impl Fn(&Job) -> Vec<ApplyError>,
    ) -> Vec<Job> {
        let now = Timestamp::now();
        let mut marked = Vec::new();
        let mut table = self.lock();
        for job in table.jobs.values_mut() {
            let Some(commit) = &job.commit else { continue };
            if job.applied.is_some() || !synced_contains(commit) {
                continue;
            }
            job.apply_errors = failures(job);
            if job.apply_errors.is_empty() {
                job.applied = Some(revision.to_string());
                job.timeline.applied = Some(now);
                marked.push(job.clone());
            }
        }
        drop(table);
        for job in &marked {
            self.observed(job, "applied");
        }
        self.notify();
        marked
    }

    /// Applied jobs that changed images and whose rollout is not yet seen
    /// ready.
    pub fn awaiting_ready(&self) -> Vec<Job> {
        self.lock()
            .jobs
            .values()
            .filter(|job| job.applied.is_some() && job.timeline.ready.is_none())
            .filter(|job| job.result.iter().any(|r| !r.updates.is_empty()))
            .cloned()
            .collect()
    }

    /// Records that every workload a job changed runs its new spec, ready.
    pub fn mark_ready(&self, id: &str) -> Option<Job> {
        let job = self.update(id, |job| job.timeline.ready = Some(Timestamp::now()))?;
        self.observed(&job, "ready");
        self.notify();
        Some(job)
    }

    /// Waits until a job changes (any job); for long-polling clients.
    pub async fn changed(&self) {
        let mut rx = self.changed.subscribe();
        let _ = rx.changed().await;
    }

    /// A receiver that sees every change of any job from now on, for a
    /// stream of changes that must not miss one between two waits.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn begin(&self, id: &str) -> Option<JobSpec> {
        let spec = self.update(id, |job| job.status = JobStatus::Running)?;
        self.notify();
        Some(spec.spec)
    }

    fn finish(&self, id: &str, outcome: Result<Outcome, String>) {
        let finished = self.update(id, |job| match outcome {
            Ok(outcome) => {
                job.status = JobStatus::Succeeded;
                job.result = outcome.result;
                job.commit = outcome.commit;
                job.timeline.committed = outcome.committed;
                job.timeline.pushed = outcome.pushed;
                job.timeline.first_seen = match (job.timeline.first_seen, outcome.first_seen) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Err(error) => {
                job.status = JobStatus::Failed;
                job.error = Some(error);
            }
        });
        if let Some(job) = &finished {
            for (step, at) in [
                ("committed", job.timeline.committed),
                ("pushed", job.timeline.pushed),
            ] {
                if at.is_some() {
                    self.observed(job, step);
                }
            }
        }
        let mut table = self.lock();
        table.finished.push_back(id.to_string());
        while table.finished.len() > KEEP_FINISHED {
            if let Some(old) = table.finished.pop_front() {
                table.jobs.remove(&old);
            }
        }
        drop(table);
        self.notify();
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut table = self.lock();
        let job = table.jobs.get_mut(id)?;
        change(job);
        Some(job.clone())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A job just queued, with nothing done yet.
fn queued(id: String, spec: JobSpec, first_seen: Option<Timestamp>) -> Job {
    Job {
        id,
        spec,
        status: JobStatus::Queued,
        error: None,
        result: Vec::new(),
        commit: None,
        applied: None,
        timeline: Timeline {
            first_seen,
            queued: Some(Timestamp::now()),
            ..Timeline::default()
        },
        apply_errors: Vec::new(),
        cluster: None,
    }
}
