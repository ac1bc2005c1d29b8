//! The offline verbs, run as a user runs them: the built `fluxctl` binary
//! on a temporary copy of the sock-shop manifests.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn fluxctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .arg("--manifests")
        .arg(dir)
        .output()
        .expect("fluxctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn original(name: &str) -> String {
    std::fs::read_to_string(flux_testkit::sock_shop_manifests().join(name)).unwrap()
}

#[test]
fn list_workloads_shows_one_row_per_container_in_aligned_columns() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(copy.path(), &["list-workloads", "-n", "sock-shop"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 16, "{out}");
    assert_eq!(
        lines[0],
        "WORKLOAD                           CONTAINER          IMAGE                               RELEASE  POLICY"
    );
    assert_eq!(
        lines[5],
        "sock-shop:deployment/front-end     front-end          weaveworksdemos/front-end:0.3.12"
    );
    assert_eq!(
        lines[11],
        "                                   rabbitmq-exporter  kbudde/rabbitmq-exporter"
    );
    assert!(stderr(&output).is_empty());
}

#[test]
fn list_workloads_filters_by_namespace_and_container_and_drops_headers() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(copy.path(), &["list-workloads", "-n", "default"]);
    assert_eq!(stdout(&output).lines().count(), 1, "only the header");
    let output = fluxctl(
        copy.path(),
        &[
            "list-workloads",
            "-a",
            "-c",
            "rabbitmq-exporter",
            "--no-headers",
        ],
    );
    assert_eq!(
        stdout(&output),
        "sock-shop:deployment/rabbitmq  rabbitmq-exporter  kbudde/rabbitmq-exporter\n"
    );
}

#[test]
fn list_workloads_prints_json() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(copy.path(), &["list-workloads", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 14);
    let front_end = list
        .iter()
        .find(|w| w["id"] == "sock-shop:deployment/front-end")
        .unwrap();
    assert_eq!(
        front_end["containers"][0]["image"],
        "weaveworksdemos/front-end:0.3.12"
    );
    assert_eq!(
        front_end["containers"][0]["canonical"],
        "docker.io/weaveworksdemos/front-end:0.3.12"
    );
}

#[test]
fn a_broken_file_is_reported_on_stderr_and_the_rest_is_listed() {
    let copy = flux_testkit::sock_shop_copy();
    std::fs::write(
        copy.path().join("99-broken.yaml"),
        "kind: Deployment\nmetadata: {name: [x}\n",
    )
    .unwrap();
    let output = fluxctl(copy.path(), &["list-workloads"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("99-broken.yaml:2:"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stdout(&output).lines().count(), 16);
}

#[test]
fn release_changes_only_the_tag_bytes_and_keeps_the_file_mode() {
    let copy = flux_testkit::sock_shop_copy();
    let file = copy.path().join("09-front-end-dep.yaml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let output = fluxctl(
        copy.path(),
        &[
            "release",
            "--workload",
            "sock-shop:deployment/front-end",
            "--update-image",
            "weaveworksdemos/front-end:0.3.13",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "WORKLOAD                        STATUS   UPDATES\nsock-shop:deployment/front-end  success  front-end: weaveworksdemos/front-end:0.3.12 -> 0.3.13\n"
    );
    let expected =
        original("09-front-end-dep.yaml").replace("front-end:0.3.12", "front-end:0.3.13");
    assert_eq!(read(copy.path(), "09-front-end-dep.yaml"), expected);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let others = std::fs::read_dir(copy.path()).unwrap().count();
    assert_eq!(others, 29, "no temporary files left behind");
}

#[test]
fn release_all_reports_every_status_with_its_reason() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(
        copy.path(),
        &[
            "release",
            "--all",
            "--exclude",
            "sock-shop:deployment/orders-db",
            "--update-image",
            "mongo:4.4",
            "-vv",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains("sock-shop:deployment/carts-db      success  carts-db: mongo -> 4.4\n"),
        "{out}"
    );
    assert!(
        out.contains("sock-shop:deployment/orders-db     ignored  excluded\n"),
        "{out}"
    );
    assert!(
        out.contains("sock-shop:deployment/front-end     ignored  does not use image(s)\n"),
        "{out}"
    );
    assert!(read(copy.path(), "03-carts-db-dep.yaml").contains("image: mongo:4.4\n"));
    assert_eq!(
        read(copy.path(), "13-orders-db-dep.yaml"),
        original("13-orders-db-dep.yaml")
    );
}

#[test]
fn locked_workloads_are_skipped_unless_forced() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(
        copy.path(),
        &[
            "lock",
            "-w",
            "sock-shop:deployment/user",
            "-m",
            "freeze",
            "--user",
            "ops",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let locked = read(copy.path(), "25-user-dep.yaml");
    assert!(locked.contains("  annotations:\n    fluxcd.io/locked: \"true\"\n    fluxcd.io/locked_msg: freeze\n    fluxcd.io/locked_user: ops\n"), "{locked}");
    let release = [
        "release",
        "--workload",
        "sock-shop:deployment/user",
        "-i",
        "weaveworksdemos/user:0.4.8",
        "-v",
    ];
    let output = fluxctl(copy.path(), &release);
    assert!(output.status.success());
    assert!(
        stdout(&output).contains("sock-shop:deployment/user  skipped  locked"),
        "{}",
        stdout(&output)
    );
    assert_eq!(read(copy.path(), "25-user-dep.yaml"), locked);
    let output = fluxctl(copy.path(), &[&release[..], &["--force"]].concat());
    assert!(stdout(&output).contains("success"), "{}", stdout(&output));
    let output = fluxctl(copy.path(), &["unlock", "-w", "sock-shop:deployment/user"]);
    assert!(output.status.success());
    assert_eq!(
        read(copy.path(), "25-user-dep.yaml"),
        original("25-user-dep.yaml").replace("user:0.4.7", "user:0.4.8")
    );
}

#[test]
fn up_to_date_and_dry_run_releases_write_nothing() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(
        copy.path(),
        &[
            "release",
            "--workload",
            "sock-shop:deployment/user",
            "-i",
            "weaveworksdemos/user:0.4.7",
            "-v",
        ],
    );
    assert!(
        stdout(&output).contains("skipped  image(s) up to date"),
        "{}",
        stdout(&output)
    );
    let output = fluxctl(
        copy.path(),
        &[
            "release",
            "--workload",
            "sock-shop:deployment/user",
            "-i",
            "weaveworksdemos/user:0.5.0",
            "--dry-run",
        ],
    );
    assert!(output.status.success());
    assert!(stdout(&output).contains("success  user: weaveworksdemos/user:0.4.7 -> 0.5.0"));
    assert_eq!(
        read(copy.path(), "25-user-dep.yaml"),
        original("25-user-dep.yaml")
    );
}

#[test]
fn missing_workloads_and_containers_fail_the_release() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(
        copy.path(),
        &[
            "release",
            "--workload",
            "sock-shop:deployment/nope",
            "-i",
            "nginx:1.27",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("sock-shop:deployment/nope  failed  not found"),
        "{}",
        stdout(&output)
    );
    let output = fluxctl(
        copy.path(),
        &[
            "release",
            "--workload",
            "sock-shop:deployment/user",
            "--container",
            "sidecar",
            "-i",
            "weaveworksdemos/user:0.5.0",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output)
            .contains("sock-shop:deployment/user  failed  container(s) not found: sidecar"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn bad_arguments_are_refused_before_anything_is_written() {
    let copy = flux_testkit::sock_shop_copy();
    let output = fluxctl(
        copy.path(),
        &[
            "release",
            "--workload",
            "front-end",
            "-i",
            "weaveworksdemos/front-end:1",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("expected <namespace>:<kind>/<name>"),
        "{}",
        stderr(&output)
    );
    let output = fluxctl(
        copy.path(),
        &["release", "--all", "-i", "weaveworksdemos/front-end"],
    );
    assert_eq!(output.status.code(), Some(2));
    let output = fluxctl(
        copy.path(),
        &[
            "policy",
            "-w",
            "sock-shop:deployment/front-end",
            "--tag",
            "front-end=semver:>=>1",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    assert_eq!(
        read(copy.path(), "09-front-end-dep.yaml"),
        original("09-front-end-dep.yaml")
    );
}

#[test]
fn policy_sets_and_removes_tag_filters_and_automation() {
    let copy = flux_testkit::sock_shop_copy();
    let id = "sock-shop:deployment/front-end";
    let output = fluxctl(
        copy.path(),
        &[
            "policy",
            "-w",
            id,
            "--automate",
            "--tag",
            "front-end=semver:~0.3",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = read(copy.path(), "09-front-end-dep.yaml");
    assert!(text.contains("  annotations:\n    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.front-end: semver:~0.3\n"), "{text}");
    let listed = fluxctl(
        copy.path(),
        &["list-workloads", "-c", "front-end", "--no-headers"],
    );
    assert!(
        stdout(&listed).trim_end().ends_with("automated"),
        "{}",
        stdout(&listed)
    );
    let output = fluxctl(copy.path(), &["policy", "-w", id, "--tag-all", "glob:*"]);
    assert!(output.status.success());
    let output = fluxctl(copy.path(), &["deautomate", "-w", id]);
    assert!(output.status.success());
    assert_eq!(
        read(copy.path(), "09-front-end-dep.yaml"),
        original("09-front-end-dep.yaml")
    );
    let output = fluxctl(copy.path(), &["deautomate", "-w", id]);
    assert!(
        stdout(&output).contains("skipped  no changes"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn manifests_may_be_given_several_times() {
    let copy = flux_testkit::sock_shop_copy();
    let overlay = tempfile::tempdir().unwrap();
    let kustomization = "namespace: staging\nresources:\n- front-end.yaml\nimages:\n- name: weaveworksdemos/front-end\n  newTag: 0.3.12\n";
    std::fs::write(overlay.path().join("kustomization.yaml"), kustomization).unwrap();
    std::fs::write(
        overlay.path().join("front-end.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: front-end\nspec:\n  template:\n    spec:\n      containers:\n      - name: front-end\n        image: weaveworksdemos/front-end:0.3.11\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args([
            "release",
            "--all",
            "--update-image",
            "weaveworksdemos/front-end:0.3.13",
            "--manifests",
        ])
        .arg(copy.path())
        .arg("--manifests")
        .arg(overlay.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert_eq!(
        out,
        "WORKLOAD                        STATUS   UPDATES\n\
         sock-shop:deployment/front-end  success  front-end: weaveworksdemos/front-end:0.3.12 -> 0.3.13\n\
         staging:deployment/front-end    success  front-end: weaveworksdemos/front-end:0.3.12 -> 0.3.13\n"
    );
    assert_eq!(
        std::fs::read_to_string(overlay.path().join("kustomization.yaml")).unwrap(),
        kustomization.replace("0.3.12", "0.3.13")
    );
}

#[test]
fn save_writes_one_file_per_resource_in_flux_v1s_layout() {
    let copy = flux_testkit::sock_shop_copy();
    let out = tempfile::tempdir().unwrap();
    let output = fluxctl(copy.path(), &["save", "-o", out.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    let front_end = read(out.path(), "sock-shop/front-end-dep.yaml");
    assert_eq!(
        front_end,
        original("09-front-end-dep.yaml"),
        "the document as written, after its `---`"
    );
    let namespace = read(out.path(), "sock-shop-ns.yaml");
    assert_eq!(
        namespace,
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: sock-shop\n"
    );
    assert!(out.path().join("sock-shop/carts-svc.yaml").is_file());
    assert!(out.path().join("sock-shop/carts-db-dep.yaml").is_file());
    assert!(
        stderr(&output).contains("sock-shop/front-end-dep.yaml"),
        "each file written is named on stderr: {}",
        stderr(&output)
    );
}

#[test]
fn save_to_stdout_separates_the_documents_and_unindents_list_items() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("list.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: settings # kept\n    data:\n      a: \"1\"\n  - apiVersion: v1\n    kind: Service\n    metadata:\n      name: web\n",
    )
    .unwrap();
    let output = fluxctl(dir.path(), &["save"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings # kept\ndata:\n  a: \"1\"\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
    );
    let out = tempfile::tempdir().unwrap();
    let saved = fluxctl(dir.path(), &["save", "--out", out.path().to_str().unwrap()]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(out.path().join("default/settings-ConfigMap.yaml").is_file());
    assert!(out.path().join("default/web-svc.yaml").is_file());
}

#[test]
fn save_refuses_names_that_would_leave_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: ../../escape\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let inner = out.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    let output = fluxctl(dir.path(), &["save", "-o", inner.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not a plain file or folder name"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        1,
        "only inner/"
    );
    assert_eq!(std::fs::read_dir(&inner).unwrap().count(), 0);
}
