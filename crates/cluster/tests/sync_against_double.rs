//! Sync, garbage collection and workload reading against the API server double.

use flux_cluster::{
    CHECKSUM_ANNOTATION, Cluster, Connection, GC_MARK_LABEL, GarbageCollection, KeepReason,
    RolloutStatus, Scope, SyncOptions,
};
use flux_testkit::kube::{ApiServer, WorkloadState};

mod double;
use double::{cluster_in, gc, id, kubectl, sock_shop_copy, sync};

#[tokio::test(flavor = "multi_thread")]
async fn sock_shop_sync_applies_every_object_with_marks() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let report = sync(
        &cluster,
        &flux_testkit::sock_shop_manifests(),
        &SyncOptions::default(),
    )
    .await;
    assert!(report.is_success(), "{:?}", report.errors);
    assert_eq!(report.applied.len(), 29);
    assert!(
        report
            .applied
            .contains(&id("<cluster>:namespace/sock-shop"))
    );

    let carts = server
        .object("Deployment", Some("sock-shop"), "carts")
        .expect("carts exists");
    let label = carts["metadata"]["labels"][GC_MARK_LABEL]
        .as_str()
        .expect("gc mark");
    assert_eq!(
        label,
        flux_cluster::gc_mark("fluxd", &id("sock-shop:deployment/carts"))
    );
    assert_eq!(
        carts["metadata"]["annotations"][CHECKSUM_ANNOTATION]
            .as_str()
            .map(str::len),
        Some(64)
    );
    assert_eq!(carts["metadata"]["managedFields"][0]["manager"], "fluxd");
    assert_eq!(carts["metadata"]["managedFields"][0]["operation"], "Apply");
    assert_eq!(server.writes("sock-shop:Deployment/carts"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn resync_without_change_writes_nothing() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    sync(&cluster, &flux_testkit::sock_shop_manifests(), &gc()).await;
    server.reset_writes();
    let report = sync(&cluster, &flux_testkit::sock_shop_manifests(), &gc()).await;
    assert!(report.is_success(), "{:?}", report.errors);
    assert_eq!(report.unchanged.len(), 29);
    assert!(report.applied.is_empty() && report.deleted.is_empty());
    assert_eq!(server.total_writes(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_manifest_is_reapplied_alone() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &SyncOptions::default()).await;
    let file = dir.join("09-front-end-dep.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replace("front-end:0.3.12", "front-end:0.3.13")).expect("write");
    server.reset_writes();
    let report = sync(&cluster, &dir, &SyncOptions::default()).await;
    assert_eq!(report.applied, vec![id("sock-shop:deployment/front-end")]);
    assert_eq!(server.total_writes(), 1);
    let live = server
        .object("Deployment", Some("sock-shop"), "front-end")
        .expect("exists");
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "weaveworksdemos/front-end:0.3.13"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_file_is_collected_and_nothing_else() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    std::fs::remove_file(dir.join("02-carts-svc.yml")).expect("remove");

    let dry = SyncOptions {
        garbage_collection: GarbageCollection::DryRun,
        ..SyncOptions::default()
    };
    let report = sync(&cluster, &dir, &dry).await;
    assert_eq!(report.would_delete, vec![id("sock-shop:service/carts")]);
    assert!(
        server
            .object("Service", Some("sock-shop"), "carts")
            .is_some()
    );

    server.reset_writes();
    let report = sync(&cluster, &dir, &gc()).await;
    assert_eq!(report.deleted, vec![id("sock-shop:service/carts")]);
    assert!(
        server
            .object("Service", Some("sock-shop"), "carts")
            .is_none()
    );
    assert!(
        server
            .object("Deployment", Some("sock-shop"), "carts")
            .is_some()
    );
    assert_eq!(server.total_writes(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn collection_keeps_ignored_and_changed_objects() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    kubectl(
        &server,
        &[
            "annotate",
            "service",
            "carts",
            "-n",
            "sock-shop",
            "fluxcd.io/ignore=true",
        ],
    );
    kubectl(
        &server,
        &[
            "label",
            "service",
            "catalogue",
            "-n",
            "sock-shop",
            "name=changed",
            "--overwrite",
        ],
    );
    for file in [
        "02-carts-svc.yml",
        "06-catalogue-svc.yaml",
        "08-catalogue-db-svc.yaml",
    ] {
        std::fs::remove_file(dir.join(file)).expect("remove");
    }
    let report = sync(&cluster, &dir, &gc()).await;
    assert_eq!(report.deleted, vec![id("sock-shop:service/catalogue-db")]);
    let mut kept = report.kept.clone();
    kept.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(
        (kept[0].id.clone(), kept[0].reason),
        (id("sock-shop:service/carts"), KeepReason::Ignored)
    );
    assert_eq!(
        (kept[1].id.clone(), kept[1].reason),
        (id("sock-shop:service/catalogue"), KeepReason::Changed)
    );
    assert!(
        server
            .object("Service", Some("sock-shop"), "catalogue")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_of_another_sync_set_are_not_collected() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let (_keep, dir) = sock_shop_copy();
    sync(&cluster, &dir, &gc()).await;
    let other = SyncOptions {
        set_name: "other".into(),
        ..gc()
    };
    let empty = tempfile::tempdir().expect("temp dir");
    let report = sync(&cluster, empty.path(), &other).await;
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert!(
        server
            .object("Deployment", Some("sock-shop"), "carts")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_fail_alone_and_stop_collection() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let (_keep, dir) = sock_shop_copy();
    std::fs::write(
        dir.join("30-broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("31-invalid.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n  namespace: sock-shop\ndata: {a: b}\n",
    )
    .expect("write");
    let front_end = dir.join("09-front-end-dep.yaml");
    let text = std::fs::read_to_string(&front_end).expect("read");
    std::fs::write(&front_end, text.replace("  replicas: 1", "  replicsa: 1")).expect("write");
    let report = sync(&cluster, &dir, &gc()).await;
    assert_eq!(report.applied.len(), 28);
    assert_eq!(report.errors.len(), 3, "{:?}", report.errors);
    let typo = report
        .errors
        .iter()
        .find(|e| e.id == Some(id("sock-shop:deployment/front-end")));
    let typo = typo.expect("the misspelt field fails its resource");
    assert!(
        typo.message
            .contains(".spec.replicsa: field not declared in schema"),
        "{}",
        typo.message
    );
    let broken = report
        .errors
        .iter()
        .find(|e| e.id.is_none())
        .expect("the unreadable file");
    assert!(broken.source.ends_with("30-broken.yaml"));
    assert!(
        broken.message.contains("30-broken.yaml:4"),
        "{}",
        broken.message
    );
    let invalid = report
        .errors
        .iter()
        .find(|e| e.id.is_some())
        .expect("the refused object");
    assert_eq!(invalid.id, Some(id("sock-shop:configmap/Not_Valid")));
    assert!(invalid.message.contains("Invalid"), "{}", invalid.message);
    assert!(report.gc_skipped.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_api_group_costs_only_collection() {
    let server = ApiServer::start();
    server.add_unavailable_group("metrics.k8s.io", "v1beta1");
    let cluster = cluster_in(&server, Scope::default()).await;
    let report = sync(&cluster, &flux_testkit::sock_shop_manifests(), &gc()).await;
    assert!(report.is_success(), "{:?}", report.errors);
    assert_eq!(report.applied.len(), 29);
    let skipped = report.gc_skipped.expect("collection needs every kind");
    assert!(skipped.contains("metrics.k8s.io/v1beta1"), "{skipped}");
}

#[tokio::test(flavor = "multi_thread")]
async fn crd_and_its_custom_resource_sync_together() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("widget.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("z-crd.yaml"),
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n\
         spec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: widgets, singular: widget, kind: Widget}\n\
         \x20 versions:\n  - name: v1\n    served: true\n    storage: true\n",
    )
    .expect("write");
    let report = sync(&cluster, dir.path(), &SyncOptions::default()).await;
    assert!(report.is_success(), "{:?}", report.errors);
    assert!(report.applied.contains(&id("default:widget/w1")));
    let widget = server
        .object("Widget", Some("default"), "w1")
        .expect("stored");
    assert_eq!(widget["spec"]["size"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_stores_and_writes_nothing() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {a: b}\n",
    )
    .expect("write");
    let options = SyncOptions {
        dry_run: true,
        ..SyncOptions::default()
    };
    let report = sync(&cluster, dir.path(), &options).await;
    assert_eq!(report.applied, vec![id("default:configmap/c")]);
    assert!(server.object("ConfigMap", Some("default"), "c").is_none());
    assert_eq!(server.total_writes(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_outside_the_allowed_ones_are_refused() {
    let server = ApiServer::start();
    let scope = Scope {
        allowed_namespaces: vec!["default".into()],
        default_namespace: "default".into(),
    };
    let cluster = cluster_in(&server, scope).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("cms.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: {a: b}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: kube-system\ndata: {a: b}\n",
    )
    .expect("write");
    let report = sync(&cluster, dir.path(), &SyncOptions::default()).await;
    assert_eq!(report.applied, vec![id("default:configmap/a")]);
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0].message.contains("kube-system"),
        "{}",
        report.errors[0].message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_of_another_manager_are_taken_only_with_force() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let (_keep, dir) = sock_shop_copy();
    kubectl(
        &server,
        &[
            "apply",
            "--server-side",
            "-f",
            &dir.join("00-sock-shop-ns.yaml").display().to_string(),
        ],
    );
    let edited = dir.parent().expect("parent").join("front-end.yaml");
    let text = std::fs::read_to_string(dir.join("09-front-end-dep.yaml")).expect("read");
    std::fs::write(&edited, text.replace("replicas: 1", "replicas: 2")).expect("write");
    kubectl(
        &server,
        &[
            "apply",
            "--server-side",
            "-f",
            &edited.display().to_string(),
        ],
    );

    let report = sync(&cluster, &dir, &SyncOptions::default()).await;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(
        report.errors[0].id,
        Some(id("sock-shop:deployment/front-end"))
    );
    assert!(
        report.errors[0].message.contains("conflict"),
        "{}",
        report.errors[0].message
    );

    let forced = SyncOptions {
        force: true,
        ..SyncOptions::default()
    };
    let report = sync(&cluster, &dir, &forced).await;
    assert!(report.is_success(), "{:?}", report.errors);
    let live = server
        .object("Deployment", Some("sock-shop"), "front-end")
        .expect("exists");
    assert_eq!(live["spec"]["replicas"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_sync_leaves_an_ignored_object_it_never_applied_alone() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cm.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n    fluxcd.io/ignore: \"true\"\ndata: {a: hand-made}\n",
    )
    .expect("write");
    kubectl(
        &server,
        &["apply", "--server-side", "-f", &file.display().to_string()],
    );
    let repo = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        repo.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {a: from-git}\n",
    )
    .expect("write");
    let forced = SyncOptions {
        force: true,
        ..SyncOptions::default()
    };
    let report = sync(&cluster, repo.path(), &forced).await;
    assert_eq!(report.ignored, vec![id("default:configmap/c")]);
    let live = server
        .object("ConfigMap", Some("default"), "c")
        .expect("exists");
    assert_eq!(live["data"]["a"], "hand-made");

    let plain = sync(&cluster, repo.path(), &SyncOptions::default()).await;
    assert_eq!(
        plain.errors.len(),
        1,
        "another manager's field is not taken without force"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_carry_images_rollout_status_and_pull_secrets() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let (_keep, dir) = sock_shop_copy();
    std::fs::write(
        dir.join("40-private.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: puller\n  namespace: sock-shop\nimagePullSecrets:\n- name: regcred\n---\n\
         apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: report\n  namespace: sock-shop\nspec:\n  schedule: '0 * * * *'\n\
         \x20 jobTemplate:\n    spec:\n      template:\n        spec:\n          serviceAccountName: puller\n\
         \x20         imagePullSecrets: [{name: own}]\n          restartPolicy: Never\n\
         \x20         containers:\n          - name: report\n            image: registry.example.com/report:1.0\n",
    )
    .expect("write");
    let report = sync(&cluster, &dir, &SyncOptions::default()).await;
    assert!(report.is_success(), "{:?}", report.errors);
    assert!(server.set_workload_state("Deployment", "sock-shop", "carts", WorkloadState::Ready));
    assert!(server.set_workload_state("Deployment", "sock-shop", "orders", WorkloadState::Failed));
    assert!(server.set_workload_state(
        "Deployment",
        "sock-shop",
        "front-end",
        WorkloadState::Progressing
    ));

    let workloads = cluster.workloads().await.expect("workloads");
    assert_eq!(workloads.len(), 15);
    let find = |text: &str| workloads.iter().find(|w| w.id == id(text)).expect(text);
    let carts = find("sock-shop:deployment/carts");
    assert_eq!(carts.rollout.status, RolloutStatus::Ready);
    assert_eq!(
        (
            carts.rollout.desired,
            carts.rollout.updated,
            carts.rollout.ready
        ),
        (1, 1, 1)
    );
    assert_eq!(carts.containers[0].image, "weaveworksdemos/carts:0.4.8");
    let orders = find("sock-shop:deployment/orders");
    assert_eq!(orders.rollout.status, RolloutStatus::Error);
    assert!(
        orders.rollout.messages[0].contains("timed out"),
        "{:?}",
        orders.rollout.messages
    );
    assert_eq!(
        find("sock-shop:deployment/front-end").rollout.status,
        RolloutStatus::Updating
    );
    assert_eq!(
        find("sock-shop:deployment/user").rollout.status,
        RolloutStatus::Started
    );
    let cron = find("sock-shop:cronjob/report");
    assert_eq!(
        cron.image_pull_secrets,
        vec!["own".to_string(), "regcred".to_string()]
    );
    assert_eq!(
        cron.containers[0]
            .image_ref()
            .expect("parses")
            .name()
            .registry(),
        "registry.example.com"
    );

    let narrow = Scope {
        allowed_namespaces: vec!["default".into()],
        default_namespace: "default".into(),
    };
    let narrow = cluster_in(&server, narrow).await;
    assert!(narrow.workloads().await.expect("workloads").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_is_applied_before_what_it_holds_whatever_the_file_order() {
    let server = ApiServer::start();
    let cluster = cluster_in(&server, Scope::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("all.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: late}\nspec:\n  selector: {matchLabels: {app: web}}\n\
         \x20 template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx:1.27}]}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: late}\ndata: {a: b}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: late}\n",
    )
    .expect("write");
    let report = sync(&cluster, dir.path(), &SyncOptions::default()).await;
    assert!(report.is_success(), "{:?}", report.errors);
    assert_eq!(report.applied.len(), 3);
    assert!(server.object("Deployment", Some("late"), "web").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_picks_the_named_context_and_refuses_an_unknown_one() {
    let server = ApiServer::start();
    let named = Connection {
        kubeconfig: Some(server.kubeconfig()),
        context: Some("double".into()),
    };
    let cluster = Cluster::connect(&named, Scope::default())
        .await
        .expect("the context exists");
    assert!(cluster.workloads().await.expect("reachable").is_empty());

    let unknown = Connection {
        kubeconfig: Some(server.kubeconfig()),
        context: Some("elsewhere".into()),
    };
    let error = Cluster::connect(&unknown, Scope::default())
        .await
        .err()
        .expect("no such context");
    assert!(error.to_string().contains("elsewhere"), "{error}");

    let missing = Connection {
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        context: None,
    };
    let error = Cluster::connect(&missing, Scope::default())
        .await
        .err()
        .expect("no such file");
    assert!(
        error.to_string().contains("/nonexistent/kubeconfig"),
        "{error}"
    );
}
