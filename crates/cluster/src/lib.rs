//! `flux-cluster`: the Kubernetes side of Flux.
//!
//! It owns talking to the API server through `kube`: the connection (kubeconfig or
//! in-cluster, [`Connection`]), discovery of served kinds (CRDs included), sync by
//! server-side apply with field manager `fluxd` in the original Flux's kind order
//! ([`Cluster::sync`]), the marks it leaves (`fluxcd.io/sync-gc-mark` label,
//! `fluxcd.io/sync-checksum` annotation), garbage collection of what a sync set
//! applied and no longer has, and reading live workloads with their images and
//! rollout status ([`Cluster::workloads`]), or following them with watches
//! ([`Cluster::watch_workloads`]), and leader election on a Lease ([`LeaseLock`]).
//! Between syncs a handle keeps its discovery and the marked objects, both
//! fed by watches, so that a sync with nothing to change asks for nothing.
//!
//! It does not read checkouts or edit manifests (that is `flux-manifests`; its input
//! here is the small [`Manifest`] type), and it does not pick the Kubernetes version
//! of `k8s-openapi`: the binary enables one version feature.
//!
//! ```no_run
//! # async fn run() -> Result<(), flux_cluster::ClusterError> {
//! use flux_cluster::{Cluster, Connection, ManifestSet, Scope, SyncOptions};
//!
//! let client = Connection::default().client().await?;
//! let cluster = Cluster::new(client, Scope::default());
//! let set = ManifestSet::load_dir(std::path::Path::new("manifests"));
//! let report = cluster.sync(&set, &SyncOptions::default()).await?;
//! for error in &report.errors {
//!     eprintln!("{}: {}", error.source, error.message);
//! }
//! for workload in cluster.workloads().await? {
//!     println!("{} {}", workload.id, workload.rollout.status.as_str());
//! }
//! # Ok(()) }
//! ```

mod catalog;
pub mod checksum;
mod connect;
pub mod events;
pub mod lease;
pub mod order;
mod resource;
mod sync;
mod watch;
mod watched;
mod workload;

use kube::api::{Api, DynamicObject};

pub use checksum::{CHECKSUM_ANNOTATION, GC_MARK_LABEL, gc_mark};
pub use connect::Connection;
pub use events::{EventRecord, EventType, Recorded, Recorder, Regarding};
pub use lease::{Held, Holder, LeaseLock};
pub use resource::{
    CLUSTER_SCOPE, FORCE_CONFLICTS_ANNOTATION, IGNORE_ANNOTATION, IgnorePolicy,
    LEGACY_IGNORE_ANNOTATION, Manifest, ManifestError, ManifestSet, ResourceId,
};
pub use sync::{GarbageCollection, KeepReason, Kept, SyncError, SyncOptions, SyncReport};
pub use watch::WorkloadWatch;
pub use workload::{Container, Rollout, RolloutStatus, Workload};

use catalog::ServedType;

/// Failures that stop a whole operation (per-resource failures go in reports).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A kubeconfig could not be read or used.
    #[error("kubeconfig {origin}: {source}")]
    Kubeconfig {
        /// The file (or `KUBECONFIG`).
        origin: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor the in-cluster configuration was found.
    #[error("no cluster configuration: {0}")]
    NoConfig(String),
    /// The API server could not be asked or refused.
    #[error("Kubernetes API: {}", describe(.0))]
    Api(kube::Error),
}

/// Which namespaces a cluster handle may touch, and the namespace of manifests that
/// name none.
#[derive(Debug, Clone)]
pub struct Scope {
    /// `--k8s-allow-namespace`: when not empty, only these namespaces are read and
    /// written.
    pub allowed_namespaces: Vec<String>,
    /// Namespace for namespaced manifests without one.
    pub default_namespace: String,
}

impl Default for Scope {
    fn default() -> Self {
        Scope {
            allowed_namespaces: Vec::new(),
            default_namespace: "default".into(),
        }
    }
}

/// A Kubernetes cluster, within a [`Scope`].
///
/// Clones share the watches its syncs keep (see [`Cluster::sync`]); they end
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    scope: Scope,
    watched: std::sync::Arc<watched::Watched>,
}

impl Cluster {
    /// A cluster handle over a client.
    pub fn new(client: kube::Client, scope: Scope) -> Self {
        Cluster {
            client,
            scope,
            watched: Default::default(),
        }
    }

    /// Whether the next sync reads the served types and the marked objects
    /// from its watches alone (they have listed and are not failing), so
    /// that it asks the API server for nothing but its writes.
    pub fn syncs_from_watches(&self) -> bool {
        self.watched.sound()
    }

    /// Connects as `connection` says.
    pub async fn connect(connection: &Connection, scope: Scope) -> Result<Self, ClusterError> {
        Ok(Cluster::new(connection.client().await?, scope))
    }

    /// The scope this handle works in.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The client this handle talks through (an event [`Recorder`] shares it).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn api(&self, served: &ServedType, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if served.namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &served.resource)
            }
            _ => Api::all_with(self.client.clone(), &served.resource),
        }
    }
}

/// A kube error as a person reads it: the API server's message and reason.
pub(crate) fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({}, {})", status.message, status.reason, status.code)
        }
        other => other.to_string(),
    }
}
