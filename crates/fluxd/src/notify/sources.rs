//! Notices from what fluxd's parts produce: a job's outcome, a sync report,
//! the rollouts read after a sync. The daemon hands these over in one call
//! each; what becomes a notice is decided here.
//!
//! A sync that fails the same way as the one before is published as a
//! repeat: Kubernetes Events count it (as kube's recorder aggregates), chat
//! and webhook endpoints do not get it again.

use std::collections::{BTreeSet, HashMap};

use flux_api::{JobSpec, ResultStatus, RolloutStatus};
use flux_cluster::{ResourceId, SyncReport};

use super::{ImageChange, Notice, NoticeKind, ObjectRef};
use crate::jobs::Outcome;

/// The notice of a job that pushed a commit: releases and automation
/// commits (policy changes are not notices).
pub fn of_job(spec: &JobSpec, outcome: &Outcome) -> Option<Notice> {
    let commit = outcome.commit.as_ref()?;
    let (kind, summary) = match spec {
        JobSpec::Release(release) => {
            let image = match &release.update {
                flux_api::ImageUpdate::Image(image) => image.clone(),
                flux_api::ImageUpdate::AllLatest => "all latest images".to_string(),
            };
            let by = release
                .user
                .as_deref()
                .map(|user| format!(" by {user}"))
                .unwrap_or_default();
            (NoticeKind::Release, format!("Released {image}{by}"))
        }
        JobSpec::Automation(_) => (NoticeKind::Automation, "Automated release".to_string()),
        JobSpec::Revert(revert) => (
            NoticeKind::Revert,
            format!("Reverted \"{}\" after its rollout failed", revert.subject),
        ),
        JobSpec::Policy(_) => return None,
    };
    let mut notice = Notice::new(kind, summary).commit(commit.clone());
    for result in &outcome.result {
        if result.status != ResultStatus::Success {
            continue;
        }
        for update in &result.updates {
            notice = notice.change(ImageChange {
                workload: result.workload.clone(),
                container: update.container.clone(),
                from: update.current.clone(),
                to: update.target.clone(),
            });
        }
    }
    Some(notice)
}

/// The API version of the kinds fluxd syncs most, for Events on them;
/// other kinds' events go on fluxd's Pod, their message naming the object.
fn api_version_of(kind: &str) -> Option<&'static str> {
    Some(match kind.to_ascii_lowercase().as_str() {
        "deployment" | "daemonset" | "statefulset" | "replicaset" => "apps/v1",
        "cronjob" | "job" => "batch/v1",
        "service"
        | "configmap"
        | "secret"
        | "serviceaccount"
        | "namespace"
        | "pod"
        | "persistentvolumeclaim" => "v1",
        "ingress" | "networkpolicy" => "networking.k8s.io/v1",
        "role" | "rolebinding" | "clusterrole" | "clusterrolebinding" => {
            "rbac.authorization.k8s.io/v1"
        }
        _ => return None,
    })
}

/// The object of a synced resource, when its kind's API version is known.
pub fn object_of(id: &ResourceId) -> Option<ObjectRef> {
    let api_version = api_version_of(id.kind())?;
    let kind = match id.kind().to_ascii_lowercase().as_str() {
        "deployment" => "Deployment",
        "daemonset" => "DaemonSet",
        "statefulset" => "StatefulSet",
        "replicaset" => "ReplicaSet",
        "cronjob" => "CronJob",
        "job" => "Job",
        "service" => "Service",
        "configmap" => "ConfigMap",
        "secret" => "Secret",
        "serviceaccount" => "ServiceAccount",
        "namespace" => "Namespace",
        "pod" => "Pod",
        "persistentvolumeclaim" => "PersistentVolumeClaim",
        "ingress" => "Ingress",
        "networkpolicy" => "NetworkPolicy",
        "role" => "Role",
        "rolebinding" => "RoleBinding",
        "clusterrole" => "ClusterRole",
        "clusterrolebinding" => "ClusterRoleBinding",
        _ => return None,
    };
    Some(ObjectRef::new(api_version, kind, id.namespace(), id.name()))
}

/// The notices of one sync: each failure (an object the API server
/// refused, a file that does not parse), and garbage collection's deletions.
/// Failures also in `previous` (the last sync's) are marked repeats;
/// `previous` becomes this sync's.
pub fn of_sync(
    revision: &str,
    report: &SyncReport,
    previous: &mut BTreeSet<(String, String)>,
) -> Vec<Notice> {
    let mut notices = Vec::new();
    let mut failures = BTreeSet::new();
    for error in &report.errors {
        let key = (error.source.clone(), error.message.clone());
        let repeat = previous.contains(&key);
        failures.insert(key);
        let mut notice = match &error.id {
            Some(id) => {
                let notice = Notice::new(NoticeKind::SyncError, format!("Sync of {id} failed"));
                match object_of(id) {
                    Some(object) => notice.about(object),
                    None => notice,
                }
            }
            None => Notice::new(
                NoticeKind::SyncError,
                format!("{} could not be read", error.source),
            )
            .file(error.source.clone(), None),
        };
        notice = notice.error(error.message.clone()).commit(revision);
        notice.repeat = repeat;
        notices.push(notice);
    }
    *previous = failures;
    if !report.deleted.is_empty() {
        let names: Vec<String> = report.deleted.iter().map(ToString::to_string).collect();
        let mut notice = Notice::new(
            NoticeKind::GarbageCollection,
            format!("Garbage collection deleted {}", names.join(", ")),
        )
        .commit(revision);
        notice.objects = report.deleted.iter().filter_map(object_of).collect();
        notices.push(notice);
    }
    notices
}

/// The notices of workloads whose rollout has failed since the last look.
pub fn of_rollouts(
    previous: &HashMap<String, flux_api::Rollout>,
    current: &HashMap<String, flux_api::Rollout>,
) -> Vec<Notice> {
    let mut failed: Vec<(&String, &flux_api::Rollout)> = current
        .iter()
        .filter(|(_, rollout)| rollout.status == RolloutStatus::Error)
        .filter(|(id, _)| {
            previous
                .get(*id)
                .is_none_or(|r| r.status != RolloutStatus::Error)
        })
        .collect();
    failed.sort_by(|a, b| a.0.cmp(b.0));
    failed
        .into_iter()
        .map(|(id, rollout)| {
            let mut notice =
                Notice::new(NoticeKind::RolloutFailed, format!("Rollout of {id} failed"))
                    .error(rollout.messages.join("; "));
            if let Some(object) = ObjectRef::workload(id) {
                notice = notice.about(object);
            }
            notice
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_cluster::SyncError;

    fn refused() -> SyncReport {
        SyncReport {
            errors: vec![SyncError {
                id: Some(ResourceId::new(Some("default"), "Deployment", "front-end")),
                source: "deploy/front-end.yaml".into(),
                message:
                    "Deployment.apps \"front-end\" is invalid: spec.replicas: Invalid value: -1"
                        .into(),
            }],
            ..SyncReport::default()
        }
    }

    #[test]
    fn a_failure_seen_in_the_sync_before_is_a_repeat() {
        let mut previous = BTreeSet::new();
        let first = of_sync("abc", &refused(), &mut previous);
        let second = of_sync("abc", &refused(), &mut previous);
        assert!(!first[0].repeat);
        assert!(second[0].repeat);
        assert_eq!(
            first[0].objects,
            [ObjectRef::new(
                "apps/v1",
                "Deployment",
                Some("default"),
                "front-end"
            )]
        );
        of_sync("abc", &SyncReport::default(), &mut previous);
        assert!(!of_sync("abc", &refused(), &mut previous)[0].repeat);
    }

    #[test]
    fn a_rollout_is_noticed_once_when_it_fails() {
        let rollout = |status| flux_api::Rollout {
            status,
            desired: 1,
            updated: 1,
            ready: 0,
            messages: vec!["ProgressDeadlineExceeded".into()],
        };
        let id = "default:deployment/front-end".to_string();
        let updating = HashMap::from([(id.clone(), rollout(RolloutStatus::Updating))]);
        let failed = HashMap::from([(id, rollout(RolloutStatus::Error))]);
        assert_eq!(of_rollouts(&updating, &failed).len(), 1);
        assert!(of_rollouts(&failed, &failed).is_empty());
    }
}
