//! Telling people what fluxd did: Kubernetes Events and notifications to
//! Slack, Microsoft Teams, Discord and generic webhooks.
//!
//! fluxd's parts [`Publisher::publish`] a [`Notice`] (a release, an
//! automation commit, a sync error, a failed rollout, a revert, a garbage
//! collection). Publishing never waits: notices go into a bounded broadcast
//! queue, and each deliverer (the Kubernetes event recorder, each
//! notification endpoint) reads it at its own pace on its own task. A
//! deliverer that falls behind by more than the queue's bound loses the
//! oldest notices, counted in `flux_notifications_total{result="dropped"}`;
//! neither a job nor the sync ever waits for a delivery.
//!
//! ```
//! use fluxd::notify::{Notice, NoticeKind, Publisher};
//! let publisher = Publisher::new(64);
//! let mut deliveries = publisher.subscribe();
//! publisher.publish(Notice::new(NoticeKind::Release, "Released front-end"));
//! # tokio::runtime::Runtime::new().expect("a runtime").block_on(async {
//! let notice = deliveries.next().await.expect("the notice is queued");
//! assert_eq!(notice.kind, NoticeKind::Release);
//! # });
//! ```

pub mod deliver;
pub mod events;
pub mod message;
pub mod select;
pub mod settings;
pub mod sources;

use std::fmt;
use std::str::FromStr;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::metrics::NotificationLabels;

/// Notices a queue holds for a deliverer that is behind before it loses some.
pub const QUEUE_BOUND: usize = 1024;

/// What a notice is about; notification endpoints select by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// A release (`fluxctl release`, the API) committed and pushed.
    Release,
    /// Automation committed newer images.
    Automation,
    /// A sync failed: an object the API server refused, a file that does not parse.
    SyncError,
    /// A released workload's rollout failed.
    RolloutFailed,
    /// A commit was reverted (a rollback).
    Revert,
    /// Garbage collection deleted objects that left the repo.
    GarbageCollection,
}

impl NoticeKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [NoticeKind; 6] = [
        NoticeKind::Release,
        NoticeKind::Automation,
        NoticeKind::SyncError,
        NoticeKind::RolloutFailed,
        NoticeKind::Revert,
        NoticeKind::GarbageCollection,
    ];

    /// The kind's name in flags, bodies and headers (`sync-error`).
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Release => "release",
            NoticeKind::Automation => "automation",
            NoticeKind::SyncError => "sync-error",
            NoticeKind::RolloutFailed => "rollout-failed",
            NoticeKind::Revert => "revert",
            NoticeKind::GarbageCollection => "garbage-collection",
        }
    }

    /// Whether the kind reports a failure (a Warning event, a red message).
    pub fn is_failure(self) -> bool {
        matches!(self, NoticeKind::SyncError | NoticeKind::RolloutFailed)
    }
}

impl fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NoticeKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NoticeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = NoticeKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown notification kind {text:?}; known: {}",
                    known.join(", ")
                )
            })
    }
}

/// A Kubernetes object a notice concerns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apps/v1`, `v1`, ...
    pub api_version: String,
    /// `Deployment`, `ConfigMap`, ...
    pub kind: String,
    /// None for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// An object of `kind` in `api_version`.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The object of a workload id (`default:deployment/front-end`), for the
    /// built-in workload kinds; `None` for another kind or a malformed id.
    pub fn workload(id: &str) -> Option<ObjectRef> {
        let (namespace, rest) = id.split_once(':')?;
        let (kind, name) = rest.split_once('/')?;
        let (api_version, kind) = match kind.to_ascii_lowercase().as_str() {
            "deployment" => ("apps/v1", "Deployment"),
            "daemonset" => ("apps/v1", "DaemonSet"),
            "statefulset" => ("apps/v1", "StatefulSet"),
            "cronjob" => ("batch/v1", "CronJob"),
            "job" => ("batch/v1", "Job"),
            _ => return None,
        };
        let namespace = (namespace != "<cluster>").then_some(namespace);
        Some(ObjectRef::new(api_version, kind, namespace, name))
    }

    /// `namespace:kind/name` with the kind lower-cased, as workload ids are
    /// written (`<cluster>` for cluster-scoped objects); what workload globs match.
    pub fn id(&self) -> String {
        format!(
            "{}:{}/{}",
            self.namespace.as_deref().unwrap_or("<cluster>"),
            self.kind.to_ascii_lowercase(),
            self.name
        )
    }
}

/// One image a release or automation changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageChange {
    /// Workload id (`default:deployment/front-end`).
    pub workload: String,
    /// Container name.
    pub container: String,
    /// The image before.
    pub from: String,
    /// The image after.
    pub to: String,
}

/// A place in the repo (a file that failed to parse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileLine {
    /// Path inside the repo.
    pub path: String,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl fmt::Display for FileLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// Something fluxd did or failed to do, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// One line saying what happened.
    pub summary: String,
    /// The objects concerned (none: the event goes on fluxd's Pod).
    pub objects: Vec<ObjectRef>,
    /// Images changed.
    pub changes: Vec<ImageChange>,
    /// The commit made, synced or reverted.
    pub commit: Option<String>,
    /// The API server's or the parser's message, for failures.
    pub error: Option<String>,
    /// The file concerned, for a file that failed to parse.
    pub file: Option<FileLine>,
    /// When it happened.
    pub time: jiff::Timestamp,
    /// The same failure as the sync before: Events count it, notification
    /// endpoints do not get it again.
    pub repeat: bool,
}

impl Notice {
    /// A notice of `kind` saying `summary`, now, about nothing in particular.
    pub fn new(kind: NoticeKind, summary: impl Into<String>) -> Notice {
        Notice {
            kind,
            summary: summary.into(),
            objects: Vec::new(),
            changes: Vec::new(),
            commit: None,
            error: None,
            file: None,
            time: jiff::Timestamp::now(),
            repeat: false,
        }
    }

    /// The notice about `object` as well.
    pub fn about(mut self, object: ObjectRef) -> Notice {
        self.objects.push(object);
        self
    }

    /// The notice naming `commit`.
    pub fn commit(mut self, commit: impl Into<String>) -> Notice {
        self.commit = Some(commit.into());
        self
    }

    /// The notice carrying the failure's message.
    pub fn error(mut self, error: impl Into<String>) -> Notice {
        self.error = Some(error.into());
        self
    }

    /// The notice naming a file and line.
    pub fn file(mut self, path: impl Into<String>, line: Option<u64>) -> Notice {
        self.file = Some(FileLine {
            path: path.into(),
            line,
        });
        self
    }

    /// The notice listing an image change (and its workload, when a built-in kind).
    pub fn change(mut self, change: ImageChange) -> Notice {
        if let Some(object) = ObjectRef::workload(&change.workload)
            && !self.objects.contains(&object)
        {
            self.objects.push(object);
        }
        self.changes.push(change);
        self
    }
}

/// Where fluxd's parts put notices; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Publisher {
    queue: broadcast::Sender<Notice>,
}

impl Publisher {
    /// A publisher whose readers may fall `bound` notices behind.
    pub fn new(bound: usize) -> Publisher {
        let (queue, _) = broadcast::channel(bound.max(1));
        Publisher { queue }
    }

    /// Queues `notice` for every deliverer; returns at once. With no
    /// deliverer configured the notice goes nowhere.
    pub fn publish(&self, notice: Notice) {
        // An error only means nobody listens.
        let _ = self.queue.send(notice);
    }

    /// Queues each of `notices` (none, one, many) in order.
    pub fn publish_all(&self, notices: impl IntoIterator<Item = Notice>) {
        for notice in notices {
            self.publish(notice);
        }
    }

    /// A reader of every notice published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            queue: self.queue.subscribe(),
            dropped: None,
        }
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new(QUEUE_BOUND)
    }
}

/// One deliverer's view of the queue.
pub struct Subscription {
    queue: broadcast::Receiver<Notice>,
    dropped: Option<(Family<NotificationLabels, Counter>, &'static str)>,
}

impl Subscription {
    /// Counts notices this reader lost by falling behind under `endpoint`.
    pub fn counting(
        mut self,
        family: Family<NotificationLabels, Counter>,
        endpoint: &'static str,
    ) -> Self {
        self.dropped = Some((family, endpoint));
        self
    }

    /// The next notice; `None` once every publisher is gone.
    pub async fn next(&mut self) -> Option<Notice> {
        loop {
            match self.queue.recv().await {
                Ok(notice) => return Some(notice),
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::warn!(lost, "notifications fell behind; the oldest were dropped");
                    if let Some((family, endpoint)) = &self.dropped {
                        family
                            .get_or_create(&NotificationLabels::new(endpoint, "dropped"))
                            .inc_by(lost);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Starts one task per deliverer: Kubernetes Events through `recorder`
/// when there is one, then each endpoint. They run until the publisher
/// and its clones are dropped.
pub fn start(
    publisher: &Publisher,
    recorder: Option<flux_cluster::Recorder>,
    endpoints: Vec<deliver::Endpoint>,
    retry: deliver::Retry,
    repo: Option<message::WebRepo>,
    counts: &Family<NotificationLabels, Counter>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(recorder) = recorder {
        tasks.push(events::EventDeliverer::new(recorder, counts.clone()).spawn(publisher));
    }
    for endpoint in endpoints {
        tracing::info!(endpoint = %endpoint.display(), "notifications on");
        let deliverer = deliver::Deliverer::new(endpoint, retry, repo.clone(), counts.clone());
        tasks.push(deliverer.spawn(publisher));
    }
    tasks
}

/// A recorder of fluxd's Events through `client`, reporting from its Pod
/// (`POD_NAME`, `POD_NAMESPACE`) and putting events about no object there.
pub fn recorder(client: &kube::Client) -> flux_cluster::Recorder {
    let pod = settings::own_pod();
    let instance = pod
        .as_ref()
        .map(|pod| pod.name.clone())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "fluxd".to_string());
    let recorder = flux_cluster::Recorder::new(client.clone(), "fluxd", &instance);
    match pod {
        Some(pod) => recorder.with_fallback(flux_cluster::Regarding::new(
            &pod.api_version,
            &pod.kind,
            pod.namespace.as_deref(),
            &pod.name,
        )),
        None => recorder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names_and_refuse_others() {
        for kind in NoticeKind::ALL {
            assert_eq!(kind.as_str().parse::<NoticeKind>(), Ok(kind));
        }
        let error = "deploys".parse::<NoticeKind>().unwrap_err();
        assert!(error.contains("release, automation"), "{error}");
    }

    #[test]
    fn a_workload_id_names_its_object() {
        let object = ObjectRef::workload("default:deployment/front-end").expect("a workload");
        assert_eq!(
            object,
            ObjectRef::new("apps/v1", "Deployment", Some("default"), "front-end")
        );
        assert_eq!(object.id(), "default:deployment/front-end");
        assert_eq!(ObjectRef::workload("default:helmrelease/x"), None);
    }

    #[tokio::test]
    async fn publishing_never_waits_and_a_reader_behind_loses_the_oldest() {
        let publisher = Publisher::new(2);
        let family = Family::<NotificationLabels, Counter>::default();
        let mut slow = publisher.subscribe().counting(family.clone(), "slack");
        for n in 0..5 {
            publisher.publish(Notice::new(NoticeKind::Release, format!("release {n}")));
        }
        let first = slow.next().await.expect("a notice");
        assert_eq!(first.summary, "release 3");
        assert_eq!(
            family
                .get_or_create(&NotificationLabels::new("slack", "dropped"))
                .get(),
            3
        );
    }
}
