//! Release planning: which workloads and containers get the image, and the
//! status and reason of every other workload.

use std::path::Path;

use flux_image::ImageRef;
use std::collections::BTreeMap;

use flux_manifests::release::{self, ContainerTarget, ReleaseSpec, Status, Targets, Update};
use flux_manifests::{Checkout, LoadOptions, ResourceId, Transaction};

const MANIFESTS: &str = "\
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    spec:
      containers:
      - {name: web, image: 'ghcr.io/acme/web:1.0'}
      - {name: proxy, image: 'envoyproxy/envoy:v1.29.0'}
---
kind: Deployment
metadata:
  name: admin
  namespace: shop
  annotations: {fluxcd.io/locked: 'true'}
spec:
  template:
    spec:
      containers: [{name: admin, image: 'ghcr.io/acme/web:1.0'}]
---
kind: Deployment
metadata:
  name: old
  namespace: shop
  annotations: {fluxcd.io/ignore: 'true'}
spec:
  template:
    spec:
      containers: [{name: old, image: 'ghcr.io/acme/web:0.9'}]
---
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: report, image: 'ghcr.io/acme/web:1.1'}]
---
kind: DaemonSet
metadata: {name: agent, namespace: shop}
spec:
  template:
    spec:
      containers: [{name: agent, image: 'datadog/agent:7'}]
";

fn checkout() -> Checkout {
    let checkout = Checkout::from_text(Path::new("m.yaml"), MANIFESTS, LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    checkout
}

fn spec(targets: Targets, image: &str) -> ReleaseSpec {
    ReleaseSpec {
        targets,
        excludes: Vec::new(),
        update: Update::Image(ImageRef::parse(image).unwrap()),
        containers: Vec::new(),
        force: false,
    }
}

fn id(text: &str) -> ResourceId {
    text.parse().unwrap()
}

fn outcome(results: &[release::WorkloadResult]) -> Vec<(String, Status, String)> {
    results
        .iter()
        .map(|r| {
            (
                r.id.to_string(),
                r.status,
                r.reason.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn releasing_to_all_gives_every_workload_a_status_and_reason() {
    let results = release::plan(&checkout(), &spec(Targets::All, "ghcr.io/acme/web:1.1"));
    assert_eq!(
        outcome(&results),
        [
            (
                "shop:cronjob/report".to_string(),
                Status::Skipped,
                "image(s) up to date".to_string()
            ),
            (
                "shop:daemonset/agent".into(),
                Status::Ignored,
                "does not use image(s)".into()
            ),
            (
                "shop:deployment/admin".into(),
                Status::Skipped,
                "locked".into()
            ),
            (
                "shop:deployment/old".into(),
                Status::Skipped,
                "ignored".into()
            ),
            ("shop:deployment/web".into(), Status::Success, String::new()),
        ]
    );
    let web = results
        .iter()
        .find(|r| r.status == Status::Success)
        .unwrap();
    assert_eq!(web.updates.len(), 1, "the proxy runs another image");
    assert_eq!(web.updates[0].container, "web");
    assert_eq!(web.updates[0].current, "ghcr.io/acme/web:1.0");
}

#[test]
fn named_workloads_exclusions_force_and_missing_ones() {
    let mut spec = spec(
        Targets::Only(vec![
            id("shop:deployment/admin"),
            id("shop:deployment/web"),
            id("shop:deployment/gone"),
        ]),
        "ghcr.io/acme/web:2.0",
    );
    spec.excludes = vec![id("shop:deployment/web")];
    spec.force = true;
    let results = release::plan(&checkout(), &spec);
    let statuses = outcome(&results);
    assert!(statuses.contains(&(
        "shop:deployment/admin".into(),
        Status::Success,
        String::new()
    )));
    assert!(statuses.contains(&(
        "shop:deployment/web".into(),
        Status::Ignored,
        "excluded".into()
    )));
    assert!(statuses.contains(&(
        "shop:deployment/gone".into(),
        Status::Failed,
        "not found".into()
    )));
    assert!(statuses.contains(&(
        "shop:daemonset/agent".into(),
        Status::Ignored,
        "not included".into()
    )));
}

#[test]
fn a_named_container_the_workload_lacks_fails_it() {
    let mut spec = spec(
        Targets::Only(vec![id("shop:deployment/web")]),
        "ghcr.io/acme/web:2.0",
    );
    spec.containers = vec!["web".into(), "sidecar".into()];
    let results = release::plan(&checkout(), &spec);
    let web = results
        .iter()
        .find(|r| r.id == id("shop:deployment/web"))
        .unwrap();
    assert_eq!(web.status, Status::Failed);
    assert_eq!(
        web.reason.as_deref(),
        Some("container(s) not found: sidecar")
    );
}

#[test]
fn executing_a_release_edits_only_the_planned_containers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let checkout = Checkout::load(&[dir.path()], LoadOptions::default());
    let mut transaction = Transaction::new(&checkout);
    let results = release::execute(
        &mut transaction,
        &spec(Targets::All, "ghcr.io/acme/web:1.1"),
    );
    assert_eq!(
        results
            .iter()
            .filter(|r| r.status == Status::Success)
            .count(),
        1
    );
    transaction.write().unwrap();
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        MANIFESTS.replacen(
            "{name: web, image: 'ghcr.io/acme/web:1.0'}",
            "{name: web, image: 'ghcr.io/acme/web:1.1'}",
            1
        )
    );
}

fn per_container(targets: &[(&str, &str, ContainerTarget)]) -> Update {
    let mut map: release::ContainerTargets = BTreeMap::new();
    for (workload, container, target) in targets {
        map.entry(id(workload))
            .or_default()
            .insert(container.to_string(), target.clone());
    }
    Update::PerContainer(map)
}

fn image(text: &str) -> ContainerTarget {
    ContainerTarget::Image(ImageRef::parse(text).unwrap())
}

#[test]
fn per_container_targets_keep_the_statuses_and_reasons_of_an_image_release() {
    let mut spec = spec(Targets::All, "ghcr.io/acme/web:1.1");
    spec.update = per_container(&[
        (
            "shop:deployment/web",
            "proxy",
            image("envoyproxy/envoy:v1.30.1"),
        ),
        (
            "shop:deployment/admin",
            "admin",
            image("ghcr.io/acme/web:2.0"),
        ),
        ("shop:deployment/old", "old", image("ghcr.io/acme/web:2.0")),
        (
            "shop:cronjob/report",
            "report",
            image("ghcr.io/acme/web:1.1"),
        ),
    ]);
    let results = release::plan(&checkout(), &spec);
    assert_eq!(
        outcome(&results),
        [
            (
                "shop:cronjob/report".to_string(),
                Status::Skipped,
                "image(s) up to date".to_string()
            ),
            (
                "shop:daemonset/agent".into(),
                Status::Skipped,
                "image(s) up to date".into()
            ),
            (
                "shop:deployment/admin".into(),
                Status::Skipped,
                "locked".into()
            ),
            (
                "shop:deployment/old".into(),
                Status::Skipped,
                "ignored".into()
            ),
            ("shop:deployment/web".into(), Status::Success, String::new()),
        ]
    );
    let web = results
        .iter()
        .find(|r| r.status == Status::Success)
        .unwrap();
    assert_eq!(
        web.updates.len(),
        1,
        "web has no target, so only the proxy moves"
    );
    assert_eq!(web.updates[0].container, "proxy");
    assert_eq!(web.updates[0].current, "envoyproxy/envoy:v1.29.0");
}

#[test]
fn an_unknown_target_fails_its_workload_only() {
    let mut spec = spec(Targets::All, "ghcr.io/acme/web:1.1");
    spec.update = per_container(&[
        (
            "shop:deployment/web",
            "web",
            ContainerTarget::Unknown("ghcr.io: 500".into()),
        ),
        (
            "shop:deployment/web",
            "proxy",
            image("envoyproxy/envoy:v1.30.1"),
        ),
        ("shop:daemonset/agent", "agent", image("datadog/agent:7.50")),
    ]);
    let results = release::plan(&checkout(), &spec);
    let web = results
        .iter()
        .find(|r| r.id == id("shop:deployment/web"))
        .unwrap();
    assert_eq!(web.status, Status::Failed);
    assert_eq!(web.reason.as_deref(), Some("web: ghcr.io: 500"));
    assert!(web.updates.is_empty(), "a failed workload keeps its text");
    let agent = results
        .iter()
        .find(|r| r.id == id("shop:daemonset/agent"))
        .unwrap();
    assert_eq!(agent.status, Status::Success);
}

#[test]
fn candidates_are_the_workloads_a_release_would_look_at() {
    let checkout = checkout();
    let mut spec = spec(Targets::All, "ghcr.io/acme/web:1.1");
    spec.update = Update::PerContainer(BTreeMap::new());
    spec.excludes = vec![id("shop:daemonset/agent")];
    let names = |spec: &ReleaseSpec| {
        release::candidates(&checkout, spec)
            .iter()
            .map(|(w, containers)| {
                let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                format!("{} {}", w.id, names.join(","))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&spec),
        [
            "shop:deployment/web web,proxy",
            "shop:cronjob/report report"
        ]
    );
    spec.force = true;
    spec.update = Update::Image(ImageRef::parse("ghcr.io/acme/web:2.0").unwrap());
    assert_eq!(
        names(&spec),
        [
            "shop:deployment/web web",
            "shop:deployment/admin admin",
            "shop:cronjob/report report"
        ]
    );
}

#[test]
fn per_container_targets_ask_only_for_considered_containers() {
    let checkout = checkout();
    let mut spec = spec(Targets::All, "ghcr.io/acme/web:2.0");
    spec.update = Update::PerContainer(release::ContainerTargets::new());
    let repositories: Vec<String> = release::repositories(&checkout, &spec)
        .iter()
        .map(|n| n.familiar())
        .collect();
    // Locked (admin) and ignored (old) workloads are not asked about.
    assert_eq!(
        repositories,
        ["datadog/agent", "envoyproxy/envoy", "ghcr.io/acme/web"]
    );
    let mut asked = Vec::new();
    let targets = release::per_container_targets(&checkout, &spec, |image, policy| {
        asked.push((image.familiar(), policy.to_string()));
        match image.name().familiar().as_str() {
            "ghcr.io/acme/web" => Ok(Some(image.name().with_tag("2.0").unwrap())),
            "datadog/agent" => Err("registry down".to_string()),
            _ => Ok(None),
        }
    });
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(
        asked.iter().all(|(_, policy)| policy == "glob:*"),
        "{asked:?}"
    );
    assert_eq!(
        targets[&id("shop:deployment/web")],
        BTreeMap::from([(
            "web".to_string(),
            ContainerTarget::Image(ImageRef::parse("ghcr.io/acme/web:2.0").unwrap())
        )])
    );
    assert_eq!(
        targets[&id("shop:daemonset/agent")]["agent"],
        ContainerTarget::Unknown("registry down".into())
    );
    assert!(!targets.contains_key(&id("shop:deployment/admin")));
}

#[test]
fn per_container_targets_leave_out_containers_already_at_their_target() {
    let checkout = checkout();
    let mut spec = spec(Targets::All, "ghcr.io/acme/web:2.0");
    spec.update = Update::PerContainer(release::ContainerTargets::new());
    let targets =
        release::per_container_targets(&checkout, &spec, |image, _| Ok(Some(image.clone())));
    assert!(targets.is_empty(), "{targets:?}");
    spec.update = Update::PerContainer(targets);
    let results = release::plan(&checkout, &spec);
    assert!(
        results.iter().all(|r| r.updates.is_empty()),
        "nothing moves: {results:?}"
    );
}
