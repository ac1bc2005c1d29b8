//! Watches on the double, read by kubectl: `kubectl rollout status` follows a
//! rollout the controller drives, and raw watches replay changes, move
//! objects in and out of a selection, expire and stream initial events as the
//! real API server's do.

use std::process::Output;

use flux_testkit::kube::{ApiServer, Controller};
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

fn apply(server: &ApiServer, manifest: &str) {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), manifest).expect("the manifest is written");
    let path = file.path().to_str().expect("UTF-8 temporary path");
    run(server, &["apply", "--server-side", "-f", path]);
}

fn config_map(name: &str, app: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app: \"{app}\"\ndata:\n  value: \"{value}\"\n"
    )
}

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
    )
}

/// The events of a watch that ends after a second: `(type, name, resourceVersion)`.
fn watch(server: &ApiServer, query: &str) -> Vec<(String, String, u64)> {
    events(server, query)
        .iter()
        .map(|event| {
            let metadata = &event["object"]["metadata"];
            let revision = metadata["resourceVersion"].as_str().unwrap_or_default();
            (
                event["type"].as_str().unwrap_or_default().to_string(),
                metadata["name"].as_str().unwrap_or_default().to_string(),
                revision.parse().unwrap_or_default(),
            )
        })
        .collect()
}

fn events(server: &ApiServer, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&{query}");
    let output = run(server, &["get", "--raw", &path]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON event"))
        .collect()
}

fn names(events: &[(String, String, u64)]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|(kind, name, _)| (kind.clone(), name.clone()))
        .collect()
}

fn pair(kind: &str, name: &str) -> (String, String) {
    (kind.to_string(), name.to_string())
}

#[test]
fn kubectl_rollout_status_follows_the_rollout_the_controller_drives() {
    let server = ApiServer::start();
    let _controller = Controller::start(&server);
    apply(&server, &deployment("nginx:1.27"));
    let output = run(
        &server,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("successfully rolled out"), "{said}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.verb == "watch" && r.resource == "deployments"),
        "kubectl waited on a watch"
    );

    apply(&server, &deployment("nginx:1.28"));
    let output = run(
        &server,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("successfully rolled out"), "{said}");
    let web = server
        .object("Deployment", Some("default"), "web")
        .expect("the deployment exists");
    assert_eq!(
        web["status"]["observedGeneration"], web["metadata"]["generation"],
        "rollout status returned only once the new generation was rolled out"
    );
}

#[test]
fn a_watch_from_a_resource_version_replays_the_changes_made_after_it() {
    let server = ApiServer::start();
    apply(&server, &config_map("a", "x", "1"));
    let after = server.revision();
    apply(&server, &config_map("b", "x", "1"));
    apply(&server, &config_map("a", "x", "2"));
    run(&server, &["delete", "configmap", "b"]);

    let seen = watch(&server, &format!("resourceVersion={after}"));
    assert_eq!(
        names(&seen),
        [
            pair("ADDED", "b"),
            pair("MODIFIED", "a"),
            pair("DELETED", "b")
        ]
    );
    let revisions: Vec<u64> = seen.iter().map(|(_, _, revision)| *revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]) && revisions[0] > after,
        "resourceVersions rise across the store: {revisions:?}"
    );

    let now = watch(&server, "");
    assert_eq!(
        names(&now),
        [pair("ADDED", "a")],
        "without a resourceVersion a watch starts from what is there"
    );
}

#[test]
fn an_object_leaving_or_entering_a_selection_is_deleted_or_added() {
    let server = ApiServer::start();
    apply(&server, &config_map("a", "x", "1"));
    apply(&server, &config_map("b", "y", "1"));
    let after = server.revision();
    apply(&server, &config_map("a", "y", "1"));
    apply(&server, &config_map("b", "x", "1"));
    apply(&server, &config_map("b", "x", "2"));

    let seen = watch(
        &server,
        &format!("resourceVersion={after}&labelSelector=app%3Dx"),
    );
    assert_eq!(
        names(&seen),
        [
            pair("DELETED", "a"),
            pair("ADDED", "b"),
            pair("MODIFIED", "b")
        ]
    );
    let named = watch(
        &server,
        &format!("resourceVersion={after}&fieldSelector=metadata.name%3Da"),
    );
    assert_eq!(names(&named), [pair("MODIFIED", "a")]);
}

#[test]
fn a_watch_from_a_forgotten_resource_version_is_told_it_expired() {
    let server = ApiServer::start();
    apply(&server, &config_map("a", "x", "1"));
    let after = server.revision();
    apply(&server, &config_map("a", "x", "2"));
    server.compact();

    let seen = events(&server, &format!("resourceVersion={after}"));
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "ERROR");
    let status = &seen[0]["object"];
    assert_eq!(
        (&status["kind"], &status["code"], &status["reason"]),
        (
            &Value::from("Status"),
            &Value::from(410),
            &Value::from("Expired")
        )
    );
    let current = server.revision();
    assert_eq!(
        watch(&server, &format!("resourceVersion={current}")),
        [],
        "a watch from the current resourceVersion does not expire"
    );
}

#[test]
fn a_streaming_list_sends_the_objects_then_a_bookmark_that_ends_them() {
    let server = ApiServer::start();
    apply(&server, &config_map("a", "x", "1"));
    apply(&server, &config_map("b", "x", "1"));
    let seen = events(
        &server,
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    );
    let kinds: Vec<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "BOOKMARK"]);
    let bookmark = &seen[2]["object"]["metadata"];
    assert_eq!(
        bookmark["annotations"]["k8s.io/initial-events-end"], "true",
        "{bookmark}"
    );
    assert_eq!(
        bookmark["resourceVersion"],
        server.revision().to_string().as_str()
    );

    let refused = server
        .kubectl()
        .args([
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true",
        ])
        .output()
        .expect("kubectl runs");
    assert!(
        !refused.status.success(),
        "sendInitialEvents needs NotOlderThan"
    );
}

#[test]
fn requests_are_counted_by_verb_and_path() {
    let server = ApiServer::start();
    apply(&server, &config_map("a", "x", "1"));
    server.reset_request_counts();
    run(&server, &["get", "configmaps"]);
    run(&server, &["get", "configmaps"]);
    let _ = watch(&server, "");
    let counts = server.request_counts();
    let path = "/api/v1/namespaces/default/configmaps".to_string();
    assert_eq!(counts.get(&("list".to_string(), path.clone())), Some(&2));
    assert_eq!(counts.get(&("watch".to_string(), path)), Some(&1));
    assert!(
        server.total_requests() >= 3,
        "discovery is counted too: {counts:?}"
    );
}
