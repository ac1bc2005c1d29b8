//! Loading a checkout: which files, which resources, which workloads,
//! containers, images and policies, and how problems are reported.

use std::path::Path;

use flux_manifests::{Checkout, ImageSource, LoadError, LoadOptions, Workload};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn load(dir: &Path) -> Checkout {
    Checkout::load(&[dir], LoadOptions::default())
}

fn images(workload: &Workload) -> Vec<(String, String)> {
    workload
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.spelling.clone()))
        .collect()
}

fn workload<'c>(checkout: &'c Checkout, id: &str) -> &'c Workload {
    checkout.workload(&id.parse().unwrap()).unwrap_or_else(|| {
        panic!(
            "no {id} in {:?}",
            checkout
                .workloads
                .iter()
                .map(|w| w.id.to_string())
                .collect::<Vec<_>>()
        )
    })
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n";

#[test]
fn hidden_folders_helm_charts_and_other_extensions_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app/web.yaml", DEPLOYMENT);
    write(
        dir.path(),
        ".git/x.yaml",
        &DEPLOYMENT.replace("web", "hidden"),
    );
    write(dir.path(), "charts/mychart/Chart.yaml", "name: mychart\n");
    write(
        dir.path(),
        "charts/mychart/templates/d.yaml",
        "{{ .Values.broken }\n",
    );
    write(dir.path(), "notes.txt", &DEPLOYMENT.replace("web", "text"));
    write(dir.path(), "other.yml", &DEPLOYMENT.replace("web", "yml"));
    let checkout = load(dir.path());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    let mut ids: Vec<_> = checkout
        .workloads
        .iter()
        .map(|w| w.id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["default:deployment/web", "default:deployment/yml"]);
}

#[test]
fn a_path_that_is_or_is_inside_a_helm_chart_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("charts/mychart");
    write(&chart, "Chart.yaml", "name: mychart\n");
    write(&chart, "templates/d.yaml", "{{ .Values.broken }\n");
    write(&chart, "templates/web.yaml", DEPLOYMENT);
    for path in [
        chart.clone(),
        chart.join("templates"),
        chart.join("templates/d.yaml"),
        chart.join("templates/web.yaml"),
    ] {
        let checkout = Checkout::load(&[&path], LoadOptions::default());
        assert!(
            checkout.errors.is_empty(),
            "{}: {:?}",
            path.display(),
            checkout.errors
        );
        assert!(checkout.workloads.is_empty(), "{}", path.display());
    }
}

#[test]
fn every_workload_kind_yields_containers_and_init_containers() {
    let dir = tempfile::tempdir().unwrap();
    let pod = |kind: &str, api: &str, prefix: &str| {
        format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {n}\n  namespace: apps\n{prefix}      initContainers:\n      - name: init\n        image: busybox:1.36\n      containers:\n      - name: main\n        image: ghcr.io/acme/{n}:1.0\n",
            n = kind.to_ascii_lowercase()
        )
    };
    let template = "spec:\n  template:\n    spec:\n";
    let mut text = String::new();
    for (kind, api) in [
        ("Deployment", "apps/v1"),
        ("DaemonSet", "apps/v1"),
        ("StatefulSet", "apps/v1"),
        ("ReplicaSet", "apps/v1"),
        ("Job", "batch/v1"),
    ] {
        text.push_str("---\n");
        text.push_str(&pod(kind, api, template));
    }
    text.push_str("---\n");
    text.push_str(&pod(
        "CronJob",
        "batch/v1beta1",
        "spec:\n  jobTemplate:\n   spec:\n    template:\n     spec:\n",
    ));
    text.push_str("---\n");
    // A Pod's spec is the pod spec; re-indent the container lists under it.
    text.push_str(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod\n  namespace: apps\nspec:\n  initContainers:\n  - name: init\n    image: busybox:1.36\n  containers:\n  - name: main\n    image: ghcr.io/acme/pod:1.0\n",
    );
    write(dir.path(), "all.yaml", &text);
    let checkout = load(dir.path());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    for kind in [
        "deployment",
        "daemonset",
        "statefulset",
        "replicaset",
        "job",
        "cronjob",
        "pod",
    ] {
        let w = workload(&checkout, &format!("apps:{kind}/{kind}"));
        assert_eq!(
            images(w),
            [
                ("main".to_string(), format!("ghcr.io/acme/{kind}:1.0")),
                ("init".to_string(), "busybox:1.36".to_string())
            ],
            "{kind}"
        );
        assert!(w.containers[1].init);
    }
}

#[test]
fn cronjobs_of_batch_v1_are_workloads_too() {
    let text = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: run, image: 'alpine:3.19'}]\n";
    let checkout = Checkout::from_text(Path::new("c.yaml"), text, LoadOptions::default());
    assert_eq!(
        images(workload(&checkout, "default:cronjob/nightly")),
        [("run".into(), "alpine:3.19".into())]
    );
}

#[test]
fn list_items_are_resources_of_their_own() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: a, namespace: x}\n  spec: {template: {spec: {containers: [{name: a, image: 'a:1'}]}}}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n";
    let checkout = Checkout::from_text(Path::new("l.yaml"), text, LoadOptions::default());
    let ids: Vec<_> = checkout
        .resources
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(ids, ["x:deployment/a", "x:service/a"]);
    let deployments = "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- kind: Deployment\n  metadata: {name: b}\n  spec: {template: {spec: {containers: [{name: b, image: 'b:1'}]}}}\n";
    let checkout = Checkout::from_text(Path::new("d.yaml"), deployments, LoadOptions::default());
    assert_eq!(
        images(workload(&checkout, "default:deployment/b")),
        [("b".into(), "b:1".into())]
    );
}

#[test]
fn cluster_scoped_kinds_get_the_cluster_namespace_and_others_the_default() {
    let text = "kind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {name: reader, namespace: ignored}\n---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: settings}\n";
    let options = LoadOptions {
        default_namespace: "flux-system".into(),
        ..LoadOptions::default()
    };
    let checkout = Checkout::from_text(Path::new("r.yaml"), text, options);
    let ids: Vec<_> = checkout
        .resources
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(
        ids,
        [
            "<cluster>:clusterrole/reader",
            "flux-system:configmap/settings"
        ]
    );
}

#[test]
fn a_broken_file_is_reported_with_line_and_column_and_the_others_still_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", DEPLOYMENT);
    write(
        dir.path(),
        "b.yaml",
        "kind: Deployment\nmetadata:\n  name: [broken\n",
    );
    let checkout = load(dir.path());
    assert_eq!(checkout.workloads.len(), 1);
    let [
        LoadError::Syntax {
            path, line, column, ..
        },
    ] = checkout.errors.as_slice()
    else {
        panic!("{:?}", checkout.errors);
    };
    assert!(path.ends_with("b.yaml"));
    assert_eq!((*line, *column), (3, 9), "the unclosed bracket");
    assert!(
        checkout.errors[0]
            .to_string()
            .starts_with(&format!("{}:3:9: ", path.display()))
    );
}

#[test]
fn a_duplicate_key_is_an_error_at_its_line_and_the_others_still_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", DEPLOYMENT);
    // Read the first `spec:` and the container runs 1.25; the second, 1.27.
    let two_specs = format!(
        "{}spec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n",
        DEPLOYMENT.replace("name: web\n", "name: twice\n")
    );
    write(dir.path(), "b.yaml", &two_specs);
    let two_images = DEPLOYMENT.replace("name: web\n", "name: images\n").replace(
        "image: nginx:1.25\n",
        "image: nginx:1.25\n        image: nginx:1.27\n",
    );
    write(dir.path(), "c.yaml", &two_images);
    let checkout = load(dir.path());
    let ids: Vec<String> = checkout
        .workloads
        .iter()
        .map(|w| w.id.to_string())
        .collect();
    assert_eq!(ids, ["default:deployment/web"]);
    let errors: Vec<String> = checkout.errors.iter().map(|e| e.to_string()).collect();
    let at = |name: &str| dir.path().join(name).display().to_string();
    assert_eq!(
        errors,
        [
            format!(
                "{}:11:1: duplicate key \"spec\" (first at line 5)",
                at("b.yaml")
            ),
            format!(
                "{}:11:9: duplicate key \"image\" (first at line 10)",
                at("c.yaml")
            ),
        ]
    );
}

#[test]
fn an_invalid_policy_names_workload_and_annotation_and_spares_the_rest() {
    let bad = DEPLOYMENT.replace(
        "  name: web\n",
        "  name: web\n  annotations:\n    fluxcd.io/tag.web: 'semver:>=>1'\n    fluxcd.io/automated: 'true'\n",
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.yaml", &bad);
    write(dir.path(), "good.yaml", &DEPLOYMENT.replace("web", "api"));
    let checkout = load(dir.path());
    assert_eq!(checkout.workloads.len(), 2);
    let [error @ LoadError::Policy { .. }] = checkout.errors.as_slice() else {
        panic!("{:?}", checkout.errors);
    };
    let message = error.to_string();
    assert!(message.contains("default:deployment/web"), "{message}");
    assert!(message.contains("fluxcd.io/tag.web"), "{message}");
    assert!(
        workload(&checkout, "default:deployment/web")
            .policies
            .automated
    );
}

#[test]
fn policies_are_read_from_current_and_legacy_annotations() {
    let text = DEPLOYMENT.replace(
        "  name: web\n",
        "  name: web\n  annotations:\n    flux.weave.works/automated: \"true\"\n    fluxcd.io/locked: \"true\"\n    fluxcd.io/locked_user: ops\n    filter.fluxcd.io/web: glob:1.*\n",
    );
    let checkout = Checkout::from_text(Path::new("w.yaml"), &text, LoadOptions::default());
    let policies = &workload(&checkout, "default:deployment/web").policies;
    assert!(policies.automated && policies.locked);
    assert_eq!(policies.locked_user.as_deref(), Some("ops"));
    assert_eq!(policies.tag_policy("web").to_string(), "glob:1.*");
}

const HELM: &str = r#"apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: apps
  annotations:
    repository.fluxcd.io/exporter: sidecar.exporter.repo
    tag.fluxcd.io/exporter: sidecar.exporter.version
spec:
  values:
    image: ghcr.io/stefanprodan/podinfo
    tag: 6.5.0
    cache:
      image: redis:7.2
    db:
      registry: quay.io
      image: acme/postgres
      tag: '16.1'
    proxy:
      image:
        repository: envoyproxy/envoy
        tag: v1.29.0
        registry: docker.io
    notes:
      text: "image: not-an-image:1"
    sidecar:
      exporter:
        repo: prom/statsd-exporter
        version: v0.26.0
"#;

#[test]
fn helm_release_images_follow_the_original_rules() {
    let checkout = Checkout::from_text(Path::new("hr.yaml"), HELM, LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    let w = workload(&checkout, "apps:helmrelease/podinfo");
    assert_eq!(
        images(w),
        [
            (
                "chart-image".to_string(),
                "ghcr.io/stefanprodan/podinfo:6.5.0".to_string()
            ),
            ("cache".into(), "redis:7.2".into()),
            ("db".into(), "quay.io/acme/postgres:16.1".into()),
            ("exporter".into(), "prom/statsd-exporter:v0.26.0".into()),
            ("proxy".into(), "docker.io/envoyproxy/envoy:v1.29.0".into()),
        ],
        "the chart's image first, then the others by name, as the original lists them"
    );
    assert!(matches!(w.containers[1].source, ImageSource::Whole(_)));
    assert!(matches!(
        &w.containers[2].source,
        ImageSource::Split(split) if split.tag.is_some() && split.registry.is_some()
    ));
}

#[test]
fn a_bad_image_in_one_helm_value_is_named_and_the_others_are_still_found() {
    let text = HELM.replace("image: redis:7.2", "image: Redis/Cache:7.2");
    let checkout = Checkout::from_text(Path::new("hr.yaml"), &text, LoadOptions::default());
    assert_eq!(checkout.errors.len(), 1, "{:?}", checkout.errors);
    let error = checkout.errors[0].to_string();
    assert!(error.starts_with("hr.yaml:14: "), "{error}");
    assert!(error.contains("container cache"), "{error}");
    let w = workload(&checkout, "apps:helmrelease/podinfo");
    let names: Vec<&str> = w.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["chart-image", "db", "exporter", "proxy"]);
}

#[test]
fn helm_releases_of_the_old_api_are_read_and_other_groups_are_not() {
    let old = HELM.replace("helm.toolkit.fluxcd.io/v2", "helm.fluxcd.io/v1");
    let checkout = Checkout::from_text(Path::new("hr.yaml"), &old, LoadOptions::default());
    assert_eq!(
        workload(&checkout, "apps:helmrelease/podinfo")
            .containers
            .len(),
        5
    );
    let other = HELM.replace("helm.toolkit.fluxcd.io/v2", "example.com/v1");
    let checkout = Checkout::from_text(Path::new("hr.yaml"), &other, LoadOptions::default());
    assert!(checkout.workloads.is_empty());
}

#[test]
fn a_kustomization_read_on_its_own_has_its_images_as_containers_of_a_cluster_workload() {
    // A checkout builds kustomizations (tests/kustomize.rs); one file read
    // alone is what an edit of an `images:` entry works on.
    let text = "resources:\n- ../../base\nimages:\n- name: nginx\n  newTag: 1.25.3\n- name: ghcr.io/acme/api\n  newName: registry.acme.io/api\n  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    let checkout = Checkout::from_text(
        Path::new("kustomization.yaml"),
        text,
        LoadOptions::default(),
    );
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    let w = workload(&checkout, "<cluster>:kustomization/.");
    assert_eq!(
        images(w),
        [
            ("nginx".to_string(), "nginx:1.25.3".to_string()),
            (
                "ghcr.io/acme/api".to_string(),
                "registry.acme.io/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string()
            ),
        ]
    );
}

#[test]
fn images_behind_aliases_are_read() {
    let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: &img nginx:1.25\n  - name: b\n    image: *img\n";
    let checkout = Checkout::from_text(Path::new("p.yaml"), text, LoadOptions::default());
    assert_eq!(
        images(workload(&checkout, "default:pod/p")),
        [
            ("a".into(), "nginx:1.25".into()),
            ("b".into(), "nginx:1.25".into())
        ]
    );
}

#[test]
fn a_container_with_a_bad_image_is_reported_and_the_rest_is_kept() {
    let text = DEPLOYMENT.replace("nginx:1.25", "UPPER/Case:1");
    let checkout = Checkout::from_text(Path::new("w.yaml"), &text, LoadOptions::default());
    assert_eq!(checkout.workloads.len(), 1);
    let message = checkout.errors[0].to_string();
    assert!(
        message.contains("w.yaml:10") && message.contains("container web"),
        "{message}"
    );
}
