//! What the suites against the API server double share: a cluster
//! connected to it, a private copy of the sock-shop manifests, a sync of a
//! folder, and kubectl run against it.

use std::path::{Path, PathBuf};

use flux_cluster::{
    Cluster, Connection, GarbageCollection, ManifestSet, ResourceId, Scope, SyncOptions, SyncReport,
};
use flux_testkit::kube::ApiServer;

pub async fn cluster_in(server: &ApiServer, scope: Scope) -> Cluster {
    let connection = Connection {
        kubeconfig: Some(server.kubeconfig()),
        context: None,
    };
    Cluster::connect(&connection, scope)
        .await
        .expect("connects to the double")
}

/// A private copy of the sock-shop manifests.
pub fn sock_shop_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("manifests");
    std::fs::create_dir(&target).expect("mkdir");
    for entry in std::fs::read_dir(flux_testkit::sock_shop_manifests()).expect("fixtures") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, target.join(path.file_name().expect("file name"))).expect("copy");
    }
    (dir, target)
}

pub async fn sync(cluster: &Cluster, dir: &Path, options: &SyncOptions) -> SyncReport {
    cluster
        .sync(&ManifestSet::load_dir(dir), options)
        .await
        .expect("sync runs")
}

pub fn id(text: &str) -> ResourceId {
    text.parse().expect("a resource id")
}

pub fn gc() -> SyncOptions {
    SyncOptions {
        garbage_collection: GarbageCollection::On,
        ..SyncOptions::default()
    }
}

pub fn kubectl(server: &ApiServer, args: &[&str]) {
    let output = server.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
