//! Reading what runs: workloads (Deployment, DaemonSet, StatefulSet, CronJob, Job) in
//! the allowed namespaces, their containers and images, rollout status, and the image
//! pull secrets of their pods (pod spec and service account).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use futures::stream::{self, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PodSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resource::ResourceId;
use crate::{Cluster, ClusterError};

/// A container of a workload's pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image as written in the pod spec.
    pub image: String,
    /// An init container.
    pub init: bool,
}

impl Container {
    /// The image, parsed.
    pub fn image_ref(&self) -> Result<flux_image::ImageRef, flux_image::RefError> {
        flux_image::ImageRef::parse(&self.image)
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutStatus {
    /// The controller has not yet seen the latest spec.
    Started,
    /// Replicas are being replaced.
    Updating,
    /// Every replica runs the latest spec and is ready.
    Ready,
    /// The rollout failed (e.g. ProgressDeadlineExceeded, a failed Job).
    Error,
}

impl RolloutStatus {
    /// `started`, `updating`, `ready` or `error`, as fluxctl prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Started => "started",
            RolloutStatus::Updating => "updating",
            RolloutStatus::Ready => "ready",
            RolloutStatus::Error => "error",
        }
    }
}

/// A rollout's state and replica counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// Summary.
    pub status: RolloutStatus,
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas running the latest spec.
    pub updated: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Why it failed, when it did.
    pub messages: Vec<String>,
}

/// A workload as the cluster runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    /// `<namespace>:<kind>/<name>`.
    pub id: ResourceId,
    /// Containers of its pod template (init containers first, marked).
    pub containers: Vec<Container>,
    /// Rollout state.
    pub rollout: Rollout,
    /// The workload's labels.
    pub labels: BTreeMap<String, String>,
    /// The workload's annotations (policies such as `fluxcd.io/automated`).
    pub annotations: BTreeMap<String, String>,
    /// The pods' service account (`default` when unset).
    pub service_account: String,
    /// Image pull secret names: the pod spec's, then its service account's.
    pub image_pull_secrets: Vec<String>,
}

impl Cluster {
    /// Every workload in the allowed namespaces (all namespaces when none are set).
    /// Lists five workload kinds and the service accounts of the namespaces that have
    /// workloads; nothing else.
    pub async fn workloads(&self) -> Result<Vec<Workload>, ClusterError> {
        let (deployments, daemonsets, statefulsets, jobs, cronjobs) = futures::try_join!(
            self.list_kind::<Deployment>(),
            self.list_kind::<DaemonSet>(),
            self.list_kind::<StatefulSet>(),
            self.list_kind::<Job>(),
            self.list_kind::<CronJob>(),
        )?;
        let mut workloads: Vec<Workload> = Vec::new();
        workloads.extend(deployments.iter().map(from_deployment));
        workloads.extend(daemonsets.iter().map(from_daemonset));
        workloads.extend(statefulsets.iter().map(from_statefulset));
        workloads.extend(jobs.iter().map(from_job));
        workloads.extend(cronjobs.iter().map(from_cronjob));
        self.add_account_secrets(&mut workloads).await?;
        workloads.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(workloads)
    }

    async fn list_kind<K>(&self) -> Result<Vec<K>, ClusterError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let apis: Vec<Api<K>> = if self.scope.allowed_namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.scope
                .allowed_namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        let mut items = Vec::new();
        for api in apis {
            items.extend(list_pages(&api).await.map_err(ClusterError::Api)?);
        }
        Ok(items)
    }

    /// Adds each workload's service account's image pull secrets, listing service
    /// accounts once per namespace that has workloads.
    async fn add_account_secrets(&self, workloads: &mut [Workload]) -> Result<(), ClusterError> {
        let namespaces: BTreeSet<String> = workloads
            .iter()
            .filter_map(|w| w.id.namespace().map(str::to_string))
            .collect();
        let lists: Vec<Result<(String, Vec<ServiceAccount>), kube::Error>> =
            stream::iter(namespaces)
                .map(|ns| async move {
                    let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &ns);
                    list_pages(&api).await.map(|accounts| (ns, accounts))
                })
                .buffer_unordered(8)
                .collect()
                .await;
        let mut secrets: HashMap<(String, String), Vec<String>> = HashMap::new();
        for listed in lists {
            let (ns, accounts) = listed.map_err(ClusterError::Api)?;
            for account in accounts {
                let names = account
                    .image_pull_secrets
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.name)
                    .filter(|n| !n.is_empty())
                    .collect();
                secrets.insert(
                    (ns.clone(), account.metadata.name.unwrap_or_default()),
                    names,
                );
            }
        }
        for workload in workloads {
            let key = (
                workload.id.namespace().unwrap_or_default().to_string(),
                workload.service_account.clone(),
            );
            for name in secrets.get(&key).into_iter().flatten() {
                if !workload.image_pull_secrets.contains(name) {
                    workload.image_pull_secrets.push(name.clone());
                }
            }
        }
        Ok(())
    }
}

async fn list_pages<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut params = ListParams::default().limit(500);
    let mut items = Vec::new();
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        items.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

fn workload(kind: &str, meta: &ObjectMeta, pod: Option<&PodSpec>, rollout: Rollout) -> Workload {
    let id = ResourceId::new(
        meta.namespace.as_deref(),
        kind,
        meta.name.as_deref().unwrap_or_default(),
    );
    let mut containers = Vec::new();
    if let Some(pod) = pod {
        for c in pod.init_containers.iter().flatten() {
            containers.push(Container {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                init: true,
            });
        }
        for c in &pod.containers {
            containers.push(Container {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                init: false,
            });
        }
    }
    let image_pull_secrets = pod
        .and_then(|p| p.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| !n.is_empty())
        .collect();
    let service_account = pod
        .and_then(|p| {
            p.service_account_name
                .clone()
                .or_else(|| p.service_account.clone())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Workload {
        id,
        containers,
        rollout,
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        service_account,
        image_pull_secrets,
    }
}

fn observed(meta: &ObjectMeta, observed_generation: Option<i64>) -> bool {
    observed_generation.unwrap_or(0) >= meta.generation.unwrap_or(0)
}

fn counted(desired: i32, updated: i32, ready: i32, done: bool) -> Rollout {
    let status = if done {
        RolloutStatus::Ready
    } else {
        RolloutStatus::Updating
    };
    Rollout {
        status,
        desired,
        updated,
        ready,
        messages: Vec::new(),
    }
}

pub(crate) fn from_deployment(d: &Deployment) -> Workload {
    let spec = d.spec.as_ref();
    let status = d.status.clone().unwrap_or_default();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let mut rollout = counted(
        desired,
        updated,
        ready,
        updated == desired && ready == desired && total == updated,
    );
    let stuck = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if !observed(&d.metadata, status.observed_generation) {
        rollout.status = RolloutStatus::Started;
    } else if let Some(condition) = stuck {
        rollout.status = RolloutStatus::Error;
        rollout.messages.push(
            condition
                .message
                .clone()
                .unwrap_or_else(|| "ProgressDeadlineExceeded".into()),
        );
    }
    workload(
        "Deployment",
        &d.metadata,
        spec.and_then(|s| s.template.spec.as_ref()),
        rollout,
    )
}

pub(crate) fn from_daemonset(d: &DaemonSet) -> Workload {
    let status = d.status.clone().unwrap_or_default();
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let ready = status.number_ready;
    let mut rollout = counted(
        desired,
        updated,
        ready,
        updated == desired && ready == desired,
    );
    if !observed(&d.metadata, status.observed_generation) {
        rollout.status = RolloutStatus::Started;
    }
    workload(
        "DaemonSet",
        &d.metadata,
        d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
        rollout,
    )
}

pub(crate) fn from_statefulset(s: &StatefulSet) -> Workload {
    let spec = s.spec.as_ref();
    let status = s.status.clone().unwrap_or_default();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let revised = match (&status.current_revision, &status.update_revision) {
        (Some(current), Some(update)) => current == update,
        _ => true,
    };
    let mut rollout = counted(
        desired,
        updated,
        ready,
        updated == desired && ready == desired && revised,
    );
    if !observed(&s.metadata, status.observed_generation) {
        rollout.status = RolloutStatus::Started;
    }
    workload(
        "StatefulSet",
        &s.metadata,
        spec.and_then(|s| s.template.spec.as_ref()),
        rollout,
    )
}

pub(crate) fn from_job(j: &Job) -> Workload {
    let spec = j.spec.as_ref();
    let status = j.status.clone().unwrap_or_default();
    let desired = spec.and_then(|s| s.completions).unwrap_or(1);
    let succeeded = status.succeeded.unwrap_or(0);
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .cloned()
    };
    let mut rollout = counted(desired, desired, succeeded, condition("Complete").is_some());
    if let Some(failed) = condition("Failed") {
        rollout.status = RolloutStatus::Error;
        let why = failed
            .message
            .or(failed.reason)
            .unwrap_or_else(|| "job failed".into());
        rollout.messages.push(why);
    }
    workload(
        "Job",
        &j.metadata,
        spec.and_then(|s| s.template.spec.as_ref()),
        rollout,
    )
}

pub(crate) fn from_cronjob(c: &CronJob) -> Workload {
    let pod = c
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref());
    // A CronJob has no rollout: its template is in force as soon as it is stored.
    workload("CronJob", &c.metadata, pod, counted(0, 0, 0, true))
}
