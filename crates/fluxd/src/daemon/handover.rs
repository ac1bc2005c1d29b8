//! Jobs handed from one leader to the next (`--leader-election`).
//!
//! The leader keeps the jobs it has queued or is running in the Lease's
//! `fluxcd.io/queued-jobs` annotation, written again whenever its job table
//! changes, with the branch head it had read then. A replica taking the Lease
//! over reads them, fetches git, and looks at the notes of the commits since
//! that head: a job whose note is there was pushed and is recorded as done
//! with its commit; every other one is queued again under its own id.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_api::JobSpec;
use flux_cluster::Holder;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Inner;
use super::leader::Handover;
use crate::jobs::Jobs;

/// The Lease annotation holding the leader's unfinished jobs.
pub const QUEUED_ANNOTATION: &str = "fluxcd.io/queued-jobs";

/// How long a replica that took jobs over waits between tries to read git.
const GIT_RETRY: Duration = Duration::from_secs(2);

/// What the annotation holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Queued {
    /// The branch head read when the jobs were written: every job's commit,
    /// if it made one, comes after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    jobs: Vec<Kept>,
}

/// One unfinished job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kept {
    id: String,
    spec: JobSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_seen: Option<Timestamp>,
}

/// The job queue as the Lease carries it.
pub(super) struct QueuedJobs {
    daemon: Arc<Inner>,
    jobs: Jobs,
    /// Jobs taken over and not yet looked up in git: kept on the Lease
    /// meanwhile, so a leader that dies now loses none of them.
    awaiting: Mutex<Option<Queued>>,
}

impl QueuedJobs {
    pub(super) fn new(daemon: Arc<Inner>, jobs: Jobs) -> Self {
        QueuedJobs {
            daemon,
            jobs,
            awaiting: Mutex::new(None),
        }
    }

    fn awaiting(&self) -> std::sync::MutexGuard<'_, Option<Queued>> {
        self.awaiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queued(&self) -> Queued {
        let read = match &self.daemon.view.borrow().read {
            Ok(read) => Some(read.revision.clone()),
            Err(_) => None,
        };
        let awaiting = self.awaiting().clone();
        let mut queued = Queued {
            since: read,
            jobs: Vec::new(),
        };
        if let Some(awaiting) = awaiting {
            // The older head: the jobs taken over may have committed after it.
            queued.since = awaiting.since;
            queued.jobs = awaiting.jobs;
        }
        queued
            .jobs
            .extend(self.jobs.unfinished().into_iter().map(|job| Kept {
                id: job.id,
                spec: job.spec,
                first_seen: job.timeline.first_seen,
            }));
        queued
    }

    /// Queues again what the previous leader left unfinished, but for the
    /// jobs it pushed.
    async fn adopt(&self, queued: Queued) {
        let pushed = loop {
            match self.pushed(queued.since.as_deref()).await {
                Ok(pushed) => break pushed,
                Err(error) => {
                    tracing::warn!(%error, jobs = queued.jobs.len(), "jobs taken over wait: cannot tell from git which of them pushed");
                    tokio::time::sleep(GIT_RETRY).await;
                }
            }
        };
        for kept in queued.jobs {
            match pushed.get(&kept.id) {
                Some(commit) => {
                    tracing::info!(job = %kept.id, %commit, "job taken over was pushed already: not run again");
                    self.jobs.adopt_pushed(&kept.id, kept.spec, commit.clone());
                }
                None => {
                    tracing::info!(job = %kept.id, "job taken over: queued");
                    self.jobs.adopt(&kept.id, kept.spec, kept.first_seen);
                }
            }
        }
        self.daemon
            .metrics
            .queue_length
            .set(self.jobs.queued() as i64);
        *self.awaiting() = None;
    }

    /// The jobs whose commits are on the branch after `since`, by id, from
    /// the commits' notes.
    async fn pushed(&self, since: Option<&str>) -> Result<HashMap<String, String>, String> {
        let repo = &self.daemon.repo;
        repo.refresh().await.map_err(|e| e.to_string())?;
        let head = repo.head().await.map_err(|e| e.to_string())?;
        let commits = repo
            .commits_since(since, &head)
            .await
            .map_err(|e| e.to_string())?;
        let mut pushed = HashMap::new();
        for commit in commits {
            let Some(note) = repo.note(&commit.id).await.map_err(|e| e.to_string())? else {
                continue;
            };
            if let Some(id) = job_of(&note) {
                pushed.insert(id, commit.id);
            }
        }
        Ok(pushed)
    }
}

/// The job id a commit's note records.
fn job_of(note: &str) -> Option<String> {
    let note: serde_json::Value = serde_json::from_str(note).ok()?;
    Some(note.get("jobID")?.as_str()?.to_string())
}

impl Handover for QueuedJobs {
    fn annotations(&self) -> Vec<(&'static str, String)> {
        let text =
            serde_json::to_string(&self.queued()).expect("job specs are plain data and serialize");
        vec![(QUEUED_ANNOTATION, text)]
    }

    fn changed(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.jobs.changed())
    }

    fn taken(self: Arc<Self>, previous: Holder) {
        let Some(text) = previous.annotations.get(QUEUED_ANNOTATION) else {
            return;
        };
        let queued: Queued = match serde_json::from_str(text) {
            Ok(queued) => queued,
            Err(error) => {
                tracing::warn!(%error, "the previous leader's jobs cannot be read: none taken over");
                return;
            }
        };
        if queued.jobs.is_empty() {
            return;
        }
        *self.awaiting() = Some(queued.clone());
        tokio::spawn(async move { self.adopt(queued).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_its_job() {
        let note = r#"{"jobID":"1764600000000-3","spec":{},"result":[]}"#;
        assert_eq!(job_of(note).as_deref(), Some("1764600000000-3"));
        assert_eq!(job_of(r#"{"spec":{}}"#), None);
        assert_eq!(job_of("not json"), None);
    }
}
