//! Notices as Kubernetes Events: one on each object a notice concerns, or
//! one on fluxd's own Pod when it concerns none. The recorder (in
//! `flux-cluster`) aggregates repeats and rate-limits each object.

use flux_cluster::{EventRecord, EventType, Recorded, Recorder, Regarding};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::task::JoinHandle;

use super::{Notice, NoticeKind, ObjectRef, Publisher};
use crate::metrics::NotificationLabels;

/// The endpoint label of Kubernetes Events in metrics.
const ENDPOINT: &str = "events";

/// The event's reason (a CamelCase word, as Kubernetes reasons are).
pub fn reason(notice: &Notice) -> &'static str {
    match notice.kind {
        NoticeKind::Release => "Released",
        NoticeKind::Automation => "Automated",
        NoticeKind::SyncError if notice.file.is_some() => "ParseFailed",
        NoticeKind::SyncError => "SyncFailed",
        NoticeKind::RolloutFailed => "RolloutFailed",
        NoticeKind::Revert => "Reverted",
        NoticeKind::GarbageCollection => "GarbageCollected",
    }
}

/// The event's message: the summary, the changes to this object, the file,
/// the error and the commit.
pub fn message(notice: &Notice, object: Option<&ObjectRef>) -> String {
    let mut parts = vec![notice.summary.clone()];
    let id = object.map(ObjectRef::id);
    for change in &notice.changes {
        if id.as_ref().is_none_or(|id| *id == change.workload) {
            parts.push(format!(
                "{}: {} -> {}",
                change.container, change.from, change.to
            ));
        }
    }
    if let Some(file) = &notice.file {
        parts.push(format!("file {file}"));
    }
    if let Some(error) = &notice.error {
        parts.push(error.clone());
    }
    if let Some(commit) = &notice.commit {
        parts.push(format!("commit {commit}"));
    }
    parts.join("; ")
}

fn regarding(object: &ObjectRef) -> Regarding {
    Regarding::new(
        &object.api_version,
        &object.kind,
        object.namespace.as_deref(),
        &object.name,
    )
}

/// Records each notice as Events.
pub struct EventDeliverer {
    recorder: Recorder,
    counts: Family<NotificationLabels, Counter>,
}

impl EventDeliverer {
    /// A deliverer writing through `recorder`.
    pub fn new(recorder: Recorder, counts: Family<NotificationLabels, Counter>) -> EventDeliverer {
        EventDeliverer { recorder, counts }
    }

    /// Records `notice`: an event per object, or one on the fallback Pod.
    pub async fn deliver(&self, notice: &Notice) {
        let type_ = if notice.kind.is_failure() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let targets: Vec<Option<&ObjectRef>> = match notice.objects.as_slice() {
            [] => vec![None],
            objects => objects.iter().map(Some).collect(),
        };
        for object in targets {
            let event = EventRecord {
                type_,
                reason: reason(notice).to_string(),
                message: message(notice, object),
            };
            let regarding = object.map(regarding);
            let result = match self.recorder.record(regarding.as_ref(), &event).await {
                Ok(Recorded::Created | Recorded::Aggregated(_)) => "delivered",
                Ok(Recorded::RateLimited | Recorded::NoObject) => "dropped",
                Err(error) => {
                    tracing::warn!(%error, reason = %event.reason, "event not recorded");
                    "dropped"
                }
            };
            self.counts
                .get_or_create(&NotificationLabels::new(ENDPOINT, result))
                .inc();
        }
    }

    /// Records every notice `publisher` publishes, in order.
    pub fn spawn(self, publisher: &Publisher) -> JoinHandle<()> {
        let mut notices = publisher
            .subscribe()
            .counting(self.counts.clone(), ENDPOINT);
        tokio::spawn(async move {
            while let Some(notice) = notices.next().await {
                self.deliver(&notice).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::ImageChange;

    #[test]
    fn a_release_event_names_its_own_changes_and_the_commit() {
        let notice = Notice::new(NoticeKind::Release, "Release by alice")
            .change(ImageChange {
                workload: "default:deployment/front-end".into(),
                container: "front-end".into(),
                from: "weaveworksdemos/front-end:0.3.12".into(),
                to: "weaveworksdemos/front-end:0.3.13".into(),
            })
            .change(ImageChange {
                workload: "default:deployment/carts".into(),
                container: "carts".into(),
                from: "weaveworksdemos/carts:0.4.7".into(),
                to: "weaveworksdemos/carts:0.4.8".into(),
            })
            .commit("1a2b3c4d");
        let front_end = &notice.objects[0];
        assert_eq!(
            message(&notice, Some(front_end)),
            "Release by alice; front-end: weaveworksdemos/front-end:0.3.12 -> \
             weaveworksdemos/front-end:0.3.13; commit 1a2b3c4d"
        );
        assert_eq!(reason(&notice), "Released");
    }
}
