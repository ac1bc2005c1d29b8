//! kubectl is the judge of the API server double: what it does against a real cluster
//! it must be able to do against the double.

use std::process::Output;

use flux_testkit::kube::{ApiServer, Serving, WorkloadState};
use serde_json::Value;

fn run(server: &ApiServer, args: &[&str]) -> Output {
    let output = server.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("kubectl printed JSON")
}

fn sock_shop() -> String {
    flux_testkit::sock_shop_manifests().display().to_string()
}

#[test]
fn kubectl_applies_sock_shop_server_side_and_reads_it_back() {
    let server = ApiServer::start();
    let applied = run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    let text = String::from_utf8_lossy(&applied.stdout);
    assert!(
        text.contains("namespace/sock-shop serverside-applied"),
        "{text}"
    );
    assert!(
        text.contains("deployment.apps/front-end serverside-applied"),
        "{text}"
    );

    let listed = json_of(&run(
        &server,
        &[
            "get",
            "deploy",
            "-n",
            "sock-shop",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    ));
    let items = listed["items"].as_array().expect("a list");
    let mut names: Vec<&str> = items
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names.len(), 14, "{names:?}");
    let front_end = items
        .iter()
        .find(|d| d["metadata"]["name"] == "front-end")
        .expect("front-end");
    assert_eq!(
        front_end["spec"]["template"]["spec"]["containers"][0]["image"],
        "weaveworksdemos/front-end:0.3.12"
    );
    assert_eq!(
        front_end["metadata"]["managedFields"][0]["manager"],
        "kubectl"
    );

    let services = json_of(&run(
        &server,
        &["get", "svc", "-n", "sock-shop", "-o", "json"],
    ));
    assert_eq!(services["items"].as_array().map(Vec::len), Some(14));
}

#[test]
fn kubectl_reapply_changes_nothing_and_delete_removes_the_object() {
    let server = ApiServer::start();
    run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    let revision = server.revision();
    let again = run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("serverside-applied"));
    assert_eq!(
        server.revision(),
        revision,
        "an identical apply changes no object"
    );

    let deleted = run(
        &server,
        &["delete", "deployment", "carts", "-n", "sock-shop"],
    );
    assert!(String::from_utf8_lossy(&deleted.stdout).contains("\"carts\" deleted"));
    assert!(
        server
            .object("Deployment", Some("sock-shop"), "carts")
            .is_none()
    );
    let missing = server
        .kubectl()
        .args(["get", "deployment", "carts", "-n", "sock-shop"])
        .output()
        .expect("kubectl runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
}

#[test]
fn kubectl_sees_conflicts_with_another_field_manager() {
    let server = ApiServer::start();
    run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let original =
        std::fs::read_to_string(flux_testkit::sock_shop_manifests().join("09-front-end-dep.yaml"))
            .expect("fixture");
    let changed = original.replace("front-end:0.3.12", "front-end:0.3.13");
    let file = dir.path().join("front-end.yaml");
    std::fs::write(&file, changed).expect("write");
    let file = file.display().to_string();

    let conflicted = server
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            &file,
        ])
        .output()
        .expect("kubectl runs");
    assert!(!conflicted.status.success());
    let stderr = String::from_utf8_lossy(&conflicted.stderr);
    assert!(stderr.contains("conflict"), "{stderr}");

    run(
        &server,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "--force-conflicts",
            "-f",
            &file,
        ],
    );
    let front_end = server
        .object("Deployment", Some("sock-shop"), "front-end")
        .expect("exists");
    assert_eq!(
        front_end["spec"]["template"]["spec"]["containers"][0]["image"],
        "weaveworksdemos/front-end:0.3.13"
    );
    assert_eq!(front_end["metadata"]["generation"], 2);
}

#[test]
fn kubectl_scale_takes_ownership_of_replicas_through_the_scale_subresource() {
    let server = ApiServer::start();
    run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    let scaled = run(
        &server,
        &[
            "-n",
            "sock-shop",
            "scale",
            "deploy",
            "carts",
            "--replicas=2",
        ],
    );
    assert!(
        String::from_utf8_lossy(&scaled.stdout).contains("deployment.apps/carts scaled"),
        "{}",
        String::from_utf8_lossy(&scaled.stdout)
    );
    let carts = json_of(&run(
        &server,
        &[
            "-n",
            "sock-shop",
            "get",
            "deploy",
            "carts",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    ));
    assert_eq!(carts["spec"]["replicas"], 2);
    let managers = carts["metadata"]["managedFields"]
        .as_array()
        .expect("managed fields");
    let scaler = managers
        .iter()
        .find(|m| m["subresource"] == "scale")
        .unwrap_or_else(|| panic!("an entry for the scale subresource: {managers:?}"));
    assert_eq!(scaler["operation"], "Update");
    assert!(
        scaler["fieldsV1"]["f:spec"]["f:replicas"].is_object(),
        "{scaler}"
    );

    // Applying git's replicas again now conflicts (kubectl's apply and its
    // scale are two managers), worded as the real API server words it.
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest =
        std::fs::read_to_string(flux_testkit::sock_shop_manifests().join("01-carts-dep.yaml"))
            .expect("fixture");
    let file = dir.path().join("carts.yaml");
    std::fs::write(&file, manifest.replace("carts:0.4.8", "carts:0.4.10")).expect("write");
    let file = file.display().to_string();
    let conflicted = server
        .kubectl()
        .args(["apply", "--server-side", "-f", &file])
        .output()
        .expect("kubectl runs");
    assert!(!conflicted.status.success());
    let stderr = String::from_utf8_lossy(&conflicted.stderr);
    let scaler_name = scaler["manager"].as_str().expect("a manager");
    let expected = format!(
        "Apply failed with 1 conflict: conflict with \"{scaler_name}\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    run(
        &server,
        &["apply", "--server-side", "--force-conflicts", "-f", &file],
    );
    let carts = server
        .object("Deployment", Some("sock-shop"), "carts")
        .expect("exists");
    assert_eq!(carts["spec"]["replicas"], 1);
}

#[test]
fn kubectl_gets_unknown_fields_refused() {
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cm.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndatta:\n  a: b\n",
    )
    .expect("write");
    let output = server
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(&file)
        .output()
        .expect("kubectl runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("datta"), "{stderr}");
    assert!(server.object("ConfigMap", Some("default"), "c").is_none());
}

#[test]
fn kubectl_label_selector_and_dry_run_are_honoured() {
    let server = ApiServer::start();
    run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    run(
        &server,
        &[
            "label",
            "deployment",
            "carts",
            "-n",
            "sock-shop",
            "tier=backend",
        ],
    );
    let selected = json_of(&run(
        &server,
        &[
            "get",
            "deploy",
            "-n",
            "sock-shop",
            "-l",
            "tier=backend",
            "-o",
            "json",
        ],
    ));
    assert_eq!(selected["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(selected["items"][0]["metadata"]["name"], "carts");

    let before = server.total_writes();
    run(
        &server,
        &[
            "delete",
            "deployment",
            "carts",
            "-n",
            "sock-shop",
            "--dry-run=server",
        ],
    );
    assert!(
        server
            .object("Deployment", Some("sock-shop"), "carts")
            .is_some()
    );
    assert_eq!(server.total_writes(), before);
}

#[test]
fn created_crd_is_served_through_discovery() {
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let crd = dir.path().join("crd.yaml");
    std::fs::write(
        &crd,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n\
         spec:\n  group: example.com\n  scope: Namespaced\n  names:\n    plural: widgets\n    singular: widget\n    kind: Widget\n\
         \x20   shortNames: [wg]\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n",
    )
    .expect("write");
    run(
        &server,
        &["apply", "--server-side", "-f", &crd.display().to_string()],
    );
    let widget = dir.path().join("widget.yaml");
    std::fs::write(&widget, "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 3\n")
        .expect("write");
    run(
        &server,
        &[
            "apply",
            "--server-side",
            "-f",
            &widget.display().to_string(),
        ],
    );
    let got = json_of(&run(&server, &["get", "wg", "w1", "-o", "json"]));
    assert_eq!(got["spec"]["size"], 3);
}

#[test]
fn workload_state_hook_is_what_kubectl_reads() {
    let server = ApiServer::start();
    run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    assert!(server.set_workload_state("Deployment", "sock-shop", "carts", WorkloadState::Failed));
    let carts = json_of(&run(
        &server,
        &["get", "deploy", "carts", "-n", "sock-shop", "-o", "json"],
    ));
    let conditions = carts["status"]["conditions"]
        .as_array()
        .expect("conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c["reason"] == "ProgressDeadlineExceeded")
    );
}

#[test]
fn requests_are_kept_in_the_terms_rbac_matches() {
    let server = ApiServer::start();
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n";
    std::fs::write(file.path(), manifest).expect("the manifest is written");
    let path = file.path().to_str().expect("UTF-8 temporary path");
    run(&server, &["create", "-f", path]);
    run(&server, &["get", "configmaps", "-n", "default"]);
    run(&server, &["get", "configmap", "settings"]);
    run(&server, &["delete", "configmap", "settings"]);
    let seen: Vec<(String, String, Option<String>, Option<String>)> = server
        .requests()
        .into_iter()
        .filter(|r| r.resource == "configmaps")
        .map(|r| (r.verb, r.group, r.namespace, r.name))
        .collect();
    let default = Some("default".to_string());
    let settings = Some("settings".to_string());
    assert_eq!(
        seen,
        [
            ("create".into(), String::new(), default.clone(), None),
            ("list".into(), String::new(), default.clone(), None),
            (
                "get".into(),
                String::new(),
                default.clone(),
                settings.clone()
            ),
            (
                "delete".into(),
                String::new(),
                default.clone(),
                settings.clone()
            ),
            // kubectl delete waits for the object to be gone.
            ("get".into(), String::new(), default, settings),
        ]
    );

    run(&server, &["apply", "--server-side", "-f", &sock_shop()]);
    let front_end: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.resource == "deployments" && r.name.as_deref() == Some("front-end"))
        .map(|r| format!("{} {}", r.verb, r.group))
        .collect();
    assert_eq!(
        front_end,
        ["create apps", "patch apps"],
        "an apply that makes the object is a create and a patch"
    );
}

#[test]
fn a_misspelt_field_of_a_pod_template_is_refused_as_the_real_server_refuses_it() {
    let server = ApiServer::start();
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  selector:\n    matchLabels:\n      name: app\n  template:\n    metadata:\n      labels:\n        name: app\n    spec:\n      containers:\n      - name: app\n        image: app:1\n        securityContext:\n          readOnlyRootFileSystem: true\n";
    std::fs::write(file.path(), deployment).expect("the manifest is written");
    let path = file.path().to_str().expect("UTF-8 temporary path");
    for (args, said) in [
        (
            &["apply", "--server-side", "-f", path][..],
            ".spec.template.spec.containers[name=\"app\"].securityContext.readOnlyRootFileSystem: field not declared in schema",
        ),
        (
            &["create", "-f", path],
            "unknown field \"spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem\"",
        ),
    ] {
        let output = server.kubectl().args(args).output().expect("kubectl runs");
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
    let fixed = deployment.replace("FileSystem", "Filesystem");
    std::fs::write(file.path(), fixed).expect("the manifest is written");
    run(&server, &["apply", "--server-side", "-f", path]);
}

#[test]
fn a_double_served_as_a_pod_sees_it_wants_tls_and_the_token() {
    let ca = flux_testkit::tls::TestCa::new("cluster CA");
    let server = ApiServer::start_serving(Serving::default().tls(&ca).token("s3cret"));
    assert!(server.url().starts_with("https://"));
    // Its kubeconfig carries the CA and the token: kubectl verifies and is let in.
    run(&server, &["get", "namespaces", "-o", "name"]);
    let stranger = server
        .kubectl()
        .args(["get", "namespaces", "--token", "wrong"])
        .output()
        .expect("kubectl runs");
    assert!(!stranger.status.success(), "a wrong token was let in");
    let stderr = String::from_utf8_lossy(&stranger.stderr);
    assert!(stderr.contains("Unauthorized"), "{stderr}");
    let other_ca = tempfile::NamedTempFile::new().expect("a temporary file");
    flux_testkit::tls::TestCa::new("another CA").write(other_ca.path());
    let unverified = server
        .kubectl()
        .arg("get")
        .arg("namespaces")
        .arg("--certificate-authority")
        .arg(other_ca.path())
        .output()
        .expect("kubectl runs");
    assert!(
        !unverified.status.success(),
        "a certificate of another CA was trusted"
    );
    let stderr = String::from_utf8_lossy(&unverified.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn kubectl_takes_a_lease_and_a_stale_replace_of_it_conflicts() {
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let lease = |holder: &str, version: Option<&str>| {
        let version = version
            .map(|v| format!("\n  resourceVersion: \"{v}\""))
            .unwrap_or_default();
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: fluxd\n  namespace: flux{version}\nspec:\n  holderIdentity: {holder}\n  leaseDurationSeconds: 15\n"
        )
    };
    let file = dir.path().join("lease.yaml");
    std::fs::write(&file, lease("a", None)).expect("write");
    let path = file.display().to_string();
    let namespace = dir.path().join("namespace.yaml");
    std::fs::write(
        &namespace,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux\n",
    )
    .expect("write");
    run(&server, &["create", "-f", &namespace.display().to_string()]);
    run(&server, &["create", "-f", &path]);
    let taken = json_of(&run(
        &server,
        &["get", "lease", "fluxd", "-n", "flux", "-o", "json"],
    ));
    assert_eq!(taken["spec"]["holderIdentity"], "a");
    let version = taken["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .to_string();

    std::fs::write(&file, lease("b", Some(&version))).expect("write");
    run(&server, &["replace", "-f", &path]);
    let stale = server
        .kubectl()
        .args(["replace", "-f", &path])
        .output()
        .expect("kubectl runs");
    assert!(
        !stale.status.success(),
        "a replace at a stale resourceVersion is refused"
    );
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(stderr.contains("the object has been modified"), "{stderr}");
    let held = server
        .object("Lease", Some("flux"), "fluxd")
        .expect("the lease is stored");
    assert_eq!(held["spec"]["holderIdentity"], "b");
}

#[test]
fn a_forbidden_verb_is_answered_as_rbac_answers_it() {
    let server = ApiServer::start();
    run(&server, &["get", "configmaps", "-A"]);
    server.forbid("list", "", "configmaps");
    let refused = server
        .kubectl()
        .args(["get", "configmaps", "-n", "default"])
        .output()
        .expect("kubectl runs");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(
            "Error from server (Forbidden): configmaps is forbidden: User \"system:serviceaccount:flux:flux\" \
             cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        ),
        "{said}"
    );
    // Only that verb: a get of one object still answers.
    let missing = server
        .kubectl()
        .args(["get", "configmap", "nothing", "-n", "default"])
        .output()
        .expect("kubectl runs");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
}

#[test]
fn apiservices_are_served_cluster_wide() {
    let server = ApiServer::start();
    let listed = run(
        &server,
        &[
            "api-resources",
            "--api-group=apiregistration.k8s.io",
            "-o",
            "name",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "apiservices.apiregistration.k8s.io"
    );
    server.add_unavailable_group("metrics.k8s.io", "v1beta1");
    let registered = json_of(&run(
        &server,
        &["get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json"],
    ));
    assert_eq!(registered["spec"]["group"], "metrics.k8s.io");
    assert_eq!(registered["status"]["conditions"][0]["type"], "Available");
    assert_eq!(registered["status"]["conditions"][0]["status"], "False");
}
