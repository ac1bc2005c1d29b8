//! What every job shares: running it with its metrics, editing the write
//! checkout, committing with a note and pushing.

use flux_api::{AutomationSpec, ContainerUpdate, JobSpec, ResultStatus, WorkloadResult};
use flux_git::{CommitMessage, CommitSpec, GitError};
use flux_manifests::release::{self, Status};
use flux_manifests::{Checkout, ResourceId, Transaction};
use jiff::Timestamp;

use super::Inner;
use crate::jobs::Outcome;
use crate::metrics::JobLabels;

impl Inner {
    /// Runs one job: edits, commit and push; the outcome the queue records.
    pub(super) async fn execute(&self, spec: JobSpec) -> Result<Outcome, String> {
        let started = std::time::Instant::now();
        let kind = match &spec {
            JobSpec::Release(_) => "release",
            JobSpec::Policy(_) => "policy",
            JobSpec::Automation(_) => "automation",
        };
        let outcome = match spec.clone() {
            JobSpec::Release(release) => self.release(release).await,
            JobSpec::Policy(policy) => self.policy(policy).await,
            JobSpec::Automation(automation) => self.automate(automation).await,
        };
        let status = if outcome.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        self.metrics
            .job_duration
            .get_or_create(&JobLabels {
                kind: kind.into(),
                status: status.into(),
            })
            .observe(started.elapsed().as_secs_f64());
        if let Err(error) = &outcome {
            tracing::warn!(kind, %error, "job failed");
        }
        outcome
    }

    /// Runs a job's edit in the repo's write checkout and pushes the commit:
    /// `edit` makes its changes in the transaction and answers with the
    /// per-workload results and the commit message (none: nothing to commit).
    /// It may run more than once, when another writer pushed first.
    pub(super) async fn edit_and_push<F>(
        &self,
        job: &JobSpec,
        user: Option<&str>,
        mut edit: F,
    ) -> Result<Outcome, String>
    where
        F: for<'c> FnMut(
            &'c Checkout,
            &mut Transaction<'c>,
        ) -> std::io::Result<(Vec<WorkloadResult>, Option<CommitMessage>)>,
    {
        let mut results = Vec::new();
        let mut committed = None;
        let mut first_seen = None;
        let pushed = self
            .repo
            .commit_and_push(|dir| {
                let checkout = blocking(|| self.load(dir));
                let mut transaction = Transaction::new(&checkout);
                let (made, message) = edit(&checkout, &mut transaction)?;
                results = made;
                let Some(message) = message else {
                    return Ok(None);
                };
                transaction.write()?;
                committed = Some(Timestamp::now());
                first_seen = self.first_seen(job, &results);
                let spec = with_first_seen(job, first_seen);
                Ok::<_, std::io::Error>(Some(commit(message, user, note(&spec, &results))))
            })
            .await;
        let mut outcome = self.finish(pushed, results, committed)?;
        outcome.first_seen = first_seen;
        Ok(outcome)
    }

    /// The job's outcome from its push: a commit, no commit when nothing
    /// changed, or the error.
    fn finish(
        &self,
        pushed: Result<flux_git::Pushed, GitError>,
        result: Vec<WorkloadResult>,
        committed: Option<Timestamp>,
    ) -> Result<Outcome, String> {
        match pushed {
            Ok(pushed) => {
                self.git_wake.notify_one();
                Ok(Outcome {
                    result,
                    commit: Some(pushed.revision),
                    committed,
                    pushed: Some(Timestamp::now()),
                    first_seen: None,
                })
            }
            Err(GitError::NothingToCommit) => Ok(Outcome {
                result,
                ..Outcome::default()
            }),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// Runs file work that may take a while (reading every manifest) from
/// inside an async edit: on a multi-threaded runtime the other tasks (the
/// API's handlers) move to other threads meanwhile.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

pub(super) fn parse_id(text: &str) -> Result<ResourceId, String> {
    text.parse()
        .map_err(|e| format!("invalid workload id {text:?}: {e}"))
}

fn commit(message: CommitMessage, user: Option<&str>, note: String) -> CommitSpec {
    let spec = CommitSpec::new(message).note(note);
    match user {
        Some(user) => spec.author(user),
        None => spec,
    }
}

/// The spec as the note records it: an automation job with the time its
/// tags were first seen.
fn with_first_seen(job: &JobSpec, first_seen: Option<Timestamp>) -> JobSpec {
    match job {
        JobSpec::Automation(automation) => JobSpec::Automation(AutomationSpec {
            first_seen,
            ..automation.clone()
        }),
        other => other.clone(),
    }
}

/// The git note of a job: what was asked and what it did.
fn note(spec: &JobSpec, result: &[WorkloadResult]) -> String {
    serde_json::json!({ "spec": spec, "result": result }).to_string()
}

pub(super) fn wire_result(result: &release::WorkloadResult) -> WorkloadResult {
    WorkloadResult {
        workload: result.id.to_string(),
        status: match result.status {
            Status::Success => ResultStatus::Success,
            Status::Failed => ResultStatus::Failed,
            Status::Skipped => ResultStatus::Skipped,
            Status::Ignored => ResultStatus::Ignored,
        },
        error: result.reason.clone(),
        updates: result
            .updates
            .iter()
            .map(|u| ContainerUpdate {
                container: u.container.clone(),
                current: u.current.clone(),
                target: flux_manifests::respell(&u.current, &u.target),
            })
            .collect(),
    }
}
