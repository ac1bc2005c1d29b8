//! Following the workloads with watches instead of lists: one kube-runtime
//! watcher per workload kind (per allowed namespace when some are set) feeds
//! a reflector store, and every change wakes whoever follows rollouts. At
//! rest the API server is asked nothing but, now and then, to reopen a
//! watch that ended.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Cluster;
use crate::workload::{
    Workload, from_cronjob, from_daemonset, from_deployment, from_job, from_statefulset,
};

/// The workloads as the API server's watches last said, kept current by
/// background tasks that end when this is dropped.
pub struct WorkloadWatch {
    deployments: Vec<Store<Deployment>>,
    daemonsets: Vec<Store<DaemonSet>>,
    statefulsets: Vec<Store<StatefulSet>>,
    jobs: Vec<Store<Job>>,
    cronjobs: Vec<Store<CronJob>>,
    /// How many watchers have not finished their first list yet.
    listing: Arc<AtomicUsize>,
    /// Counts the changes seen, to wake followers.
    changes: Arc<watch::Sender<u64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for WorkloadWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Cluster {
    /// Starts watching the workloads of the allowed namespaces (all
    /// namespaces when none are set). Needs a Tokio runtime.
    pub fn watch_workloads(&self) -> WorkloadWatch {
        let mut watch = WorkloadWatch {
            deployments: Vec::new(),
            daemonsets: Vec::new(),
            statefulsets: Vec::new(),
            jobs: Vec::new(),
            cronjobs: Vec::new(),
            listing: Arc::new(AtomicUsize::new(0)),
            changes: Arc::new(watch::Sender::new(0)),
            tasks: Vec::new(),
        };
        let deployments = self.reflect(&mut watch);
        let daemonsets = self.reflect(&mut watch);
        let statefulsets = self.reflect(&mut watch);
        let jobs = self.reflect(&mut watch);
        let cronjobs = self.reflect(&mut watch);
        watch.deployments = deployments;
        watch.daemonsets = daemonsets;
        watch.statefulsets = statefulsets;
        watch.jobs = jobs;
        watch.cronjobs = cronjobs;
        watch
    }

    /// One store per namespace watched, each fed by its own watcher task.
    fn reflect<K>(&self, watch: &mut WorkloadWatch) -> Vec<Store<K>>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
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
        let mut stores = Vec::new();
        for api in apis {
            let (store, writer) = reflector::store();
            watch.listing.fetch_add(1, Ordering::SeqCst);
            let listing = watch.listing.clone();
            let changes = watch.changes.clone();
            let config = watcher::Config::default().timeout(crate::watched::WATCH_TIMEOUT);
            let events = watcher(api, config).default_backoff().reflect(writer);
            watch.tasks.push(tokio::spawn(async move {
                let mut events = std::pin::pin!(events);
                let mut listed = false;
                while let Some(event) = events.next().await {
                    match event {
                        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                        Ok(watcher::Event::InitDone) if !listed => {
                            listed = true;
                            listing.fetch_sub(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(error) => {
                            // The watcher lists again after a backoff.
                            tracing::debug!(%error, kind = K::kind(&()).as_ref(), "watch failed");
                            continue;
                        }
                    }
                    changes.send_modify(|seen| *seen += 1);
                }
            }));
            stores.push(store);
        }
        stores
    }
}

impl WorkloadWatch {
    /// Wakes on every change the watches see (a relist included).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every workload the watches know, sorted by id, once each watcher has
    /// listed; `None` before. The image pull secrets are the pod specs'
    /// only (service accounts are not watched).
    pub fn workloads(&self) -> Option<Vec<Workload>> {
        if self.listing.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let mut workloads: Vec<Workload> = Vec::new();
        for store in &self.deployments {
            workloads.extend(store.state().iter().map(|d| from_deployment(d)));
        }
        for store in &self.daemonsets {
            workloads.extend(store.state().iter().map(|d| from_daemonset(d)));
        }
        for store in &self.statefulsets {
            workloads.extend(store.state().iter().map(|s| from_statefulset(s)));
        }
        for store in &self.jobs {
            workloads.extend(store.state().iter().map(|j| from_job(j)));
        }
        for store in &self.cronjobs {
            workloads.extend(store.state().iter().map(|c| from_cronjob(c)));
        }
        workloads.sort_by(|a, b| a.id.cmp(&b.id));
        Some(workloads)
    }
}
