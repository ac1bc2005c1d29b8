//! Syncs at rest read the served types and the marked objects from watches,
//! against the API server double (which counts every request by verb and
//! path): nothing is discovered or listed again while nothing changes, and a
//! change made out of band is still seen.

use std::path::Path;
use std::time::{Duration, Instant};

use flux_cluster::{Cluster, ResourceId, Scope, SyncOptions, SyncReport};
use flux_testkit::kube::ApiServer;

mod double;
use double::{cluster_in, gc, id, kubectl, sock_shop_copy, sync};

/// Far longer than a watch takes to list or to deliver an event, even on a
/// loaded machine; only a broken watch waits this long.
const PATIENCE: Duration = Duration::from_secs(60);

async fn cluster_for(server: &ApiServer) -> Cluster {
    cluster_in(server, Scope::default()).await
}

/// Waits until the cluster handle's watches have listed.
async fn until_watched(cluster: &Cluster) {
    let deadline = Instant::now() + PATIENCE;
    while !cluster.syncs_from_watches() {
        assert!(Instant::now() < deadline, "the sync's watches never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The requests counted since the last reset that are discovery or lists
/// (watches reopening are not).
fn reads(server: &ApiServer) -> Vec<String> {
    server
        .request_counts()
        .into_iter()
        .filter(|((verb, _), _)| verb != "watch")
        .map(|((verb, path), count)| format!("{count}× {verb} {path}"))
        .collect()
}

/// Syncs until `done` says the report shows what a watch event brings, for
/// at most [`PATIENCE`]; the watch's event may land just after a sync began.
async fn sync_until(
    cluster: &Cluster,
    dir: &Path,
    options: &SyncOptions,
    done: impl Fn(&SyncReport) -> bool,
) -> SyncReport {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let report = sync(cluster, dir, options).await;
        if done(&report) || Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn syncs_at_rest_neither_discover_nor_list() {
    let server = ApiServer::start();
    let cluster = cluster_for(&server).await;
    let (_keep, dir) = sock_shop_copy();
    let first = sync(&cluster, &dir, &gc()).await;
    assert!(first.is_success(), "{:?}", first.errors);
    until_watched(&cluster).await;

    server.reset_request_counts();
    for _ in 0..3 {
        let report = sync(&cluster, &dir, &gc()).await;
        assert!(report.is_success(), "{:?}", report.errors);
        assert_eq!(report.unchanged.len(), first.applied.len());
        assert_eq!(report.gc_skipped, None);
    }
    assert_eq!(reads(&server), Vec::<String>::new());

    // Without garbage collection only the set's own kinds are watched, and
    // read from their watches as well.
    let off = SyncOptions::default();
    sync(&cluster, &dir, &off).await;
    until_watched(&cluster).await;
    server.reset_request_counts();
    let report = sync(&cluster, &dir, &off).await;
    assert_eq!(report.unchanged.len(), first.applied.len());
    assert_eq!(reads(&server), Vec::<String>::new());
}

/// The real server's shortest watch timeout, which every watch asks for:
/// kube-runtime's own 290 s would reopen each watch six times as often.
const WATCH_SECONDS: u64 = 1800;

#[tokio::test(flavor = "multi_thread")]
async fn every_watch_of_the_sync_and_the_rollouts_asks_to_last_half_an_hour() {
    let server = ApiServer::start();
    let cluster = cluster_for(&server).await;
    let (_keep, dir) = sock_shop_copy();
    assert!(sync(&cluster, &dir, &gc()).await.is_success());
    until_watched(&cluster).await;
    let rollouts = cluster.watch_workloads();
    let deadline = Instant::now() + PATIENCE;
    while rollouts.workloads().is_none() {
        assert!(
            Instant::now() < deadline,
            "the rollout watches never listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let watches = server.watch_timeouts();
    let watched = |resource: &str| watches.iter().any(|(r, _)| r == resource);
    assert!(
        watched("deployments.apps") && watched("customresourcedefinitions.apiextensions.k8s.io"),
        "{watches:?}"
    );
    let shorter: Vec<_> = watches
        .iter()
        .filter(|(_, asked)| *asked != Some(WATCH_SECONDS))
        .collect();
    assert_eq!(shorter, Vec::<&(String, Option<u64>)>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_allowed_namespaces_the_marks_are_watched_per_namespace() {
    let server = ApiServer::start();
    let scope = Scope {
        allowed_namespaces: vec!["sock-shop".into()],
        ..Scope::default()
    };
    let cluster = cluster_in(&server, scope).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    until_watched(&cluster).await;
    let watched: Vec<(String, String)> = server
        .request_counts()
        .into_keys()
        .filter(|(verb, path)| verb == "watch" && path.ends_with("/services"))
        .collect();
    assert_eq!(
        watched,
        [(
            "watch".to_string(),
            "/api/v1/namespaces/sock-shop/services".to_string()
        )]
    );

    std::fs::remove_file(dir.join("02-carts-svc.yml")).expect("remove");
    server.reset_request_counts();
    let report = sync(&cluster, &dir, &gc()).await;
    assert_eq!(report.deleted, vec![id("sock-shop:service/carts")]);
    assert!(
        reads(&server).iter().all(|r| !r.contains(" list ")),
        "{:#?}",
        reads(&server)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crd_created_out_of_band_is_served_to_a_later_sync() {
    let server = ApiServer::start();
    let cluster = cluster_for(&server).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    until_watched(&cluster).await;

    let crd = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        crd.path(),
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n\
         spec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: widgets, singular: widget, kind: Widget}\n\
         \x20 versions:\n  - name: v1\n    served: true\n    storage: true\n",
    )
    .expect("write");
    kubectl(&server, &["apply", "-f", &crd.path().display().to_string()]);
    std::fs::write(
        dir.join("widget.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: sock-shop\nspec:\n  size: 3\n",
    )
    .expect("write");

    let widget = id("sock-shop:widget/w1");
    let report = sync_until(&cluster, &dir, &gc(), |r| r.applied.contains(&widget)).await;
    assert!(report.is_success(), "{:?}", report.errors);
    assert_eq!(report.applied, vec![widget]);
    let stored = server
        .object("Widget", Some("sock-shop"), "w1")
        .expect("stored");
    assert_eq!(stored["spec"]["size"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_removed_from_git_is_collected_from_the_watched_marks() {
    let server = ApiServer::start();
    let cluster = cluster_for(&server).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    until_watched(&cluster).await;
    std::fs::remove_file(dir.join("02-carts-svc.yml")).expect("remove");

    server.reset_request_counts();
    let report = sync(&cluster, &dir, &gc()).await;
    assert_eq!(report.deleted, vec![id("sock-shop:service/carts")]);
    assert!(
        server
            .object("Service", Some("sock-shop"), "carts")
            .is_none()
    );
    // The whole object is still read before it is deleted; nothing is listed.
    assert_eq!(
        reads(&server),
        [
            "1× delete /api/v1/namespaces/sock-shop/services/carts",
            "1× get /api/v1/namespaces/sock-shop/services/carts",
        ]
    );
    let again = sync(&cluster, &dir, &gc()).await;
    assert_eq!(again.deleted, Vec::<ResourceId>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orphan_another_fluxd_marked_is_seen_and_collected() {
    let server = ApiServer::start();
    let cluster = cluster_for(&server).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    until_watched(&cluster).await;

    // Another fluxd of the same sync set applies one more object.
    let other = cluster_for(&server).await;
    let (_also, more) = sock_shop_copy();
    std::fs::write(
        more.join("extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: sock-shop\ndata:\n  k: v\n",
    )
    .expect("write");
    let report = sync(&other, &more, &gc()).await;
    assert_eq!(report.applied, vec![id("sock-shop:configmap/extra")]);

    let extra = id("sock-shop:configmap/extra");
    let report = sync_until(&cluster, &dir, &gc(), |r| r.deleted.contains(&extra)).await;
    assert_eq!(report.deleted, vec![extra]);
    assert!(
        server
            .object("ConfigMap", Some("sock-shop"), "extra")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_watches_fall_back_to_discovery_and_lists() {
    let server = ApiServer::start();
    server.forbid("watch", "apiextensions.k8s.io", "customresourcedefinitions");
    server.forbid("watch", "", "services");
    let cluster = cluster_for(&server).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    std::fs::remove_file(dir.join("02-carts-svc.yml")).expect("remove");

    server.reset_request_counts();
    let report = sync(&cluster, &dir, &gc()).await;
    assert_eq!(report.deleted, vec![id("sock-shop:service/carts")]);
    assert_eq!(report.gc_skipped, None);
    assert!(!cluster.syncs_from_watches());
    let reads = reads(&server);
    for asked in ["1× get /apis", "1× list /api/v1/services"] {
        assert!(reads.iter().any(|r| r == asked), "{asked} in {reads:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forbidden_watch_and_list_still_stop_collection() {
    let server = ApiServer::start();
    let cluster = cluster_for(&server).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    server.forbid("watch", "", "services");
    server.forbid("list", "", "services");
    std::fs::remove_file(dir.join("02-carts-svc.yml")).expect("remove");

    // The services' watch already listed: it fails only when it reopens, so
    // this is about a cluster handle starting under such RBAC.
    let fresh = cluster_for(&server).await;
    let report = sync(&fresh, &dir, &gc()).await;
    let skipped = report.gc_skipped.expect("collection needs every kind");
    assert!(skipped.contains("services"), "{skipped}");
    assert!(skipped.contains("forbidden"), "{skipped}");
    assert!(
        server
            .object("Service", Some("sock-shop"), "carts")
            .is_some()
    );
}
