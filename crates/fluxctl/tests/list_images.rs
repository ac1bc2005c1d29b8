//! `fluxctl list-images --manifests` against the real registry.

use std::path::Path;
use std::process::Command;

use flux_testkit::registry::{Flavour, ImageSpec, Registry};

fn write_manifests(dir: &Path, registry: &Registry) {
    let host = registry.host();
    let deployment = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: team
  annotations:
    fluxcd.io/tag.web: semver:~1
spec:
  template:
    spec:
      containers:
      - name: web
        image: {host}/team/web:1.1.0
      - name: worker
        image: {host}/team/worker:b
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: other
spec:
  template:
    spec:
      containers:
      - name: db
        image: {host}/team/missing:1
"
    );
    std::fs::write(dir.join("app.yaml"), deployment).unwrap();
}

async fn populate(registry: &Registry) {
    for (tag, created) in [
        ("1.0.0", "2016-11-18T16:00:00Z"),
        ("1.1.0", "2016-11-19T16:00:00Z"),
        ("1.2.0", "2016-11-20T16:00:00Z"),
        ("2.0.0", "2016-11-21T16:00:00Z"),
    ] {
        registry
            .push_image("team/web", tag, &ImageSpec::created(created))
            .await;
    }
    for (tag, created) in [
        ("a", "2017-01-01T00:00:00Z"),
        ("b", "2017-01-02T00:00:00Z"),
        ("c", "2017-01-03T00:00:00Z"),
    ] {
        registry
            .push_image("team/worker", tag, &ImageSpec::created(created).oci())
            .await;
    }
    let specs = [
        ImageSpec::created("2017-02-01T00:00:00Z").platform("linux", "arm64"),
        ImageSpec::created("2017-02-02T00:00:00Z").platform("linux", "s390x"),
    ];
    registry
        .push_index("team/worker", "d-arm", Flavour::Oci, &specs)
        .await;
}

fn fluxctl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env("HOME", "/nonexistent")
        .output()
        .expect("run fluxctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn table_lists_tags_newest_first_by_policy_with_markers_and_errors() {
    let registry = Registry::start();
    populate(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), &registry);
    let manifests = dir.path().to_str().unwrap();

    let (code, stdout, stderr) = fluxctl(&[
        "list-images",
        "--manifests",
        manifests,
        "--no-registry-cache",
    ]);
    assert_eq!(code, 1, "a repository could not be read: {stderr}");
    let host = registry.host();
    let image_width = host.len() + "/team/missing".len() + 2;
    let row = |workload: &str, container: &str, image: &str, created: &str| {
        format!("{workload:<22}{container:<11}{image:<image_width$}{created}")
            .trim_end()
            .to_string()
    };
    let lines = [
        row("WORKLOAD", "CONTAINER", "IMAGE", "CREATED"),
        row(
            "other:statefulset/db",
            "db",
            &format!("{host}/team/missing"),
            &format!(
                "{host}: 404 for tags of team/missing: NAME_UNKNOWN repository name not known to registry"
            ),
        ),
        row(
            "team:deployment/app",
            "web",
            &format!("{host}/team/web"),
            "",
        ),
        row("", "", "|   2.0.0", "21 Nov 16 16:00 UTC"),
        row("", "", "|   1.2.0", "20 Nov 16 16:00 UTC"),
        row("", "", "'-> 1.1.0", "19 Nov 16 16:00 UTC"),
        row("", "", "    1.0.0", "18 Nov 16 16:00 UTC"),
        row("", "worker", &format!("{host}/team/worker"), ""),
        row("", "", "|   c", "03 Jan 17 00:00 UTC"),
        row("", "", "'-> b", "02 Jan 17 00:00 UTC"),
        row("", "", "    a", "01 Jan 17 00:00 UTC"),
        row("", "", "    d-arm", "(no image for linux/amd64)"),
    ];
    let expected = lines.join("\n") + "\n";
    assert_eq!(stdout, expected, "stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_limit_and_json() {
    let registry = Registry::start();
    populate(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), &registry);
    let manifests = dir.path().to_str().unwrap();

    let (code, stdout, _) = fluxctl(&[
        "list-images",
        "--manifests",
        manifests,
        "-w",
        "team:deployment/app",
        "-l",
        "1",
        "--no-registry-cache",
    ]);
    assert_eq!(code, 0);
    let column = stdout.find("IMAGE").expect("header");
    let created = stdout.find("CREATED").expect("header");
    let images: Vec<&str> = stdout
        .lines()
        .skip(1)
        .map(|l| l[column..created.min(l.len())].trim())
        .collect();
    let host = registry.host();
    assert_eq!(
        images,
        [
            format!("{host}/team/web").as_str(),
            "|   2.0.0",
            ": (1 image(s) omitted)",
            "'-> 1.1.0",
            ": (1 image(s) omitted)",
            format!("{host}/team/worker").as_str(),
            "|   c",
            "'-> b",
            ": (2 image(s) omitted)",
        ]
    );

    let (code, stdout, _) = fluxctl(&[
        "list-images",
        "--manifests",
        manifests,
        "-n",
        "team",
        "-o",
        "json",
        "--no-registry-cache",
    ]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let workloads = json.as_array().unwrap();
    assert_eq!(workloads.len(), 1);
    let web = &workloads[0]["Containers"][0];
    assert_eq!(web["Name"], "web");
    assert_eq!(web["Current"]["ID"], format!("{host}/team/web:1.1.0"));
    assert_eq!(web["Current"]["CreatedAt"], "2016-11-19T16:00:00Z");
    assert!(
        web["Current"]["Digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(web["Available"].as_array().unwrap().len(), 4);
    assert_eq!(web["AvailableError"], "");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_file_is_used_across_runs_and_rebuilt_when_corrupt() {
    let registry = Registry::start();
    populate(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), &registry);
    let manifests = dir.path().to_str().unwrap();
    let cache = dir.path().join("cache/registry.redb");
    let cache = cache.to_str().unwrap();
    let args = [
        "list-images",
        "--manifests",
        manifests,
        "--registry-cache",
        cache,
    ];
    let (_, first, _) = fluxctl(&args);
    let (_, second, _) = fluxctl(&args);
    assert_eq!(first, second);
    std::fs::write(cache, b"garbage garbage garbage garbage garbage").unwrap();
    let (_, third, stderr) = fluxctl(&args);
    assert_eq!(first, third);
    assert!(stderr.contains("rebuilding"), "{stderr}");
}

#[test]
fn a_missing_manifests_folder_is_reported_like_the_other_verbs_do() {
    let (code, stdout, stderr) = fluxctl(&[
        "list-images",
        "--manifests",
        "/nonexistent/manifests",
        "--no-registry-cache",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/manifests"), "{stderr}");
    assert_eq!(stdout, "WORKLOAD  CONTAINER  IMAGE  CREATED\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_release_and_kustomize_built_containers_are_listed_and_load_errors_reported() {
    let registry = Registry::start();
    populate(&registry).await;
    let dir = tempfile::tempdir().unwrap();
    let host = registry.host();
    let helm = format!(
        "apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: web
  namespace: team
spec:
  values:
    image: {host}/team/web
    tag: 1.1.0
"
    );
    std::fs::write(dir.path().join("helm.yaml"), helm).unwrap();
    let overlay = dir.path().join("overlays/prod");
    std::fs::create_dir_all(&overlay).unwrap();
    let worker = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: worker\nspec:\n  template:\n    spec:\n      containers:\n      - name: worker\n        image: {host}/team/worker:a\n"
    );
    std::fs::write(overlay.join("worker.yaml"), worker).unwrap();
    let kustomization = format!(
        "namespace: prod\nresources:\n- worker.yaml\nimages:\n- name: {host}/team/worker\n  newTag: c\n"
    );
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "kind: [unclosed\n").unwrap();
    let manifests = dir.path().to_str().unwrap();

    let (code, stdout, stderr) = fluxctl(&[
        "list-images",
        "--manifests",
        manifests,
        "-l",
        "1",
        "--no-registry-cache",
    ]);
    assert_eq!(code, 1, "the broken file fails the run: {stderr}");
    assert!(stderr.contains("broken.yaml:1:"), "{stderr}");
    let cells: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let worker = format!("{host}/team/worker");
    let web = format!("{host}/team/web");
    assert_eq!(
        cells,
        [
            vec!["WORKLOAD", "CONTAINER", "IMAGE", "CREATED"],
            vec!["prod:deployment/worker", "worker", &worker],
            vec!["'-> c", "03 Jan 17 00:00 UTC"],
            vec![": (3 image(s) omitted)"],
            vec!["team:helmrelease/web", "chart-image", &web],
            // `|` and its tag are three spaces apart, so they read as two cells.
            vec!["|", "2.0.0", "21 Nov 16 16:00 UTC"],
            vec![": (1 image(s) omitted)"],
            vec!["'-> 1.1.0", "19 Nov 16 16:00 UTC"],
            vec![": (1 image(s) omitted)"],
        ]
    );
}
