//! Without `--url`, fluxctl finds fluxd's pod through the kubeconfig and
//! port-forwards to it through the API server: here the API server double,
//! whose `pods/portforward` leads to a real fluxd on a loopback port.

mod binaries;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use binaries::{stderr, stdout};
use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo};
use flux_testkit::git::{BareRepo, free_port};
use flux_testkit::kube::{ApiServer, AuthorizedRequest};
use serde_json::json;

/// The labels `fluxctl install` puts on fluxd's pod.
const INSTALL_LABELS: &str = "{\"name\": \"flux\", \"app\": \"flux\"}";

/// fluxctl with `args` and the cluster of `kubeconfig`, free of the
/// caller's FLUX_* variables and kubeconfig.
fn fluxctl_in(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("a temporary HOME");
    Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env_remove("FLUX_URL")
        .env_remove("FLUX_TOKEN")
        .env_remove("FLUX_FORWARD_NAMESPACE")
        .env_remove("FLUX_FORWARD_LABELS")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home.path())
        .envs(env.iter().copied())
        .output()
        .expect("fluxctl runs")
}

/// Creates `yaml` in the double with kubectl.
fn create(cluster: &ApiServer, yaml: &str) {
    let mut child = cluster
        .kubectl()
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(yaml.as_bytes())
        .expect("kubectl reads the manifest");
    let out = child.wait_with_output().expect("kubectl finishes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod of fluxd as the Deployment of `install` makes it, in `phase`.
fn pod(cluster: &ApiServer, namespace: &str, name: &str, labels: &str, phase: &str) {
    create(
        cluster,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  \
             labels: {labels}\nspec:\n  containers:\n  - name: flux\n    image: fluxd\n    \
             ports:\n    - name: http\n      containerPort: 3030\n"
        ),
    );
    assert!(cluster.set_status("Pod", Some(namespace), name, json!({"phase": phase})));
}

fn address(fluxd: &Fluxd) -> SocketAddr {
    fluxd
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("fluxd listens on a loopback address")
}

/// A real fluxd on the sock-shop repo (kept with it), reachable as port
/// 3030 of the pod `namespace/name` of the double.
async fn fluxd_behind(cluster: &ApiServer, namespace: &str, name: &str) -> (Fluxd, BareRepo) {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    cluster.forward(namespace, name, 3030, address(&fluxd));
    (fluxd, repo)
}

fn port_forwards(cluster: &ApiServer) -> Vec<AuthorizedRequest> {
    cluster
        .requests()
        .into_iter()
        .filter(|r| r.resource == "pods/portforward")
        .collect()
}

#[tokio::test]
async fn list_workloads_without_url_reaches_fluxd_through_a_port_forward() {
    let cluster = ApiServer::start();
    pod(&cluster, "default", "flux-7d9f", INSTALL_LABELS, "Running");
    let _fluxd = fluxd_behind(&cluster, "default", "flux-7d9f").await;

    let out = fluxctl_in(&cluster.kubeconfig(), &["list-workloads"], &[]);

    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("WORKLOAD"), "{table}");
    assert!(table.contains(FRONT_END), "{table}");
    let forwards = port_forwards(&cluster);
    assert!(!forwards.is_empty(), "no port-forward was asked for");
    assert!(forwards.iter().all(|r| r.verb == "create"
        && r.namespace.as_deref() == Some("default")
        && r.name.as_deref() == Some("flux-7d9f")));
}

#[tokio::test]
async fn a_verb_that_changes_something_works_through_the_forward_too() {
    let cluster = ApiServer::start();
    pod(&cluster, "default", "flux-7d9f", INSTALL_LABELS, "Running");
    let (fluxd, _repo) = fluxd_behind(&cluster, "default", "flux-7d9f").await;

    let out = fluxctl_in(
        &cluster.kubeconfig(),
        &["sync", "--token", &fluxd.token],
        &[],
    );

    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Synchronizing with http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("Done."), "{text}");
}

#[tokio::test]
async fn the_token_fluxd_keeps_in_its_secret_is_used_when_none_is_given() {
    use base64::Engine;
    let cluster = ApiServer::start();
    pod(&cluster, "default", "flux-7d9f", INSTALL_LABELS, "Running");
    let (fluxd, _repo) = fluxd_behind(&cluster, "default", "flux-7d9f").await;
    let refused = fluxctl_in(&cluster.kubeconfig(), &["sync"], &[]);
    assert!(
        !refused.status.success(),
        "a sync went through with no token"
    );

    let token = base64::engine::general_purpose::STANDARD.encode(&fluxd.token);
    create(
        &cluster,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: flux-api\n  namespace: default\ndata:\n  api-token: {token}\n"
        ),
    );
    let out = fluxctl_in(&cluster.kubeconfig(), &["sync"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Done."), "{}", stdout(&out));
}

#[test]
fn without_a_pod_the_error_says_what_was_looked_for() {
    let cluster = ApiServer::start();

    let out = fluxctl_in(&cluster.kubeconfig(), &["list-workloads"], &[]);

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let text = stderr(&out);
    assert!(
        text.contains(
            "no fluxd pod with labels app=flux (or name in (flux,fluxd,weave-flux-agent)) \
             in namespace \"default\""
        ) && text.contains("--k8s-fwd-ns")
            && text.contains("--k8s-fwd-labels"),
        "{text}"
    );
    assert!(port_forwards(&cluster).is_empty());
}

#[tokio::test]
async fn fluxd_in_another_namespace_is_found_by_flag_or_environment() {
    let cluster = ApiServer::start();
    create(
        &cluster,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux\n",
    );
    pod(&cluster, "flux", "flux-7d9f", INSTALL_LABELS, "Running");
    let _fluxd = fluxd_behind(&cluster, "flux", "flux-7d9f").await;
    let kubeconfig = cluster.kubeconfig();

    let missed = fluxctl_in(&kubeconfig, &["list-workloads"], &[]);
    assert_eq!(missed.status.code(), Some(1));
    assert!(
        stderr(&missed).contains("in namespace \"default\""),
        "{}",
        stderr(&missed)
    );

    let by_flag = fluxctl_in(
        &kubeconfig,
        &["--k8s-fwd-ns", "flux", "list-workloads"],
        &[],
    );
    assert!(by_flag.status.success(), "{}", stderr(&by_flag));
    assert!(stdout(&by_flag).contains(FRONT_END), "{}", stdout(&by_flag));

    let by_env = fluxctl_in(
        &kubeconfig,
        &["list-workloads"],
        &[("FLUX_FORWARD_NAMESPACE", "flux")],
    );
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    assert!(stdout(&by_env).contains(FRONT_END), "{}", stdout(&by_env));
}

#[tokio::test]
async fn custom_labels_find_a_pod_the_default_ones_miss() {
    let cluster = ApiServer::start();
    pod(
        &cluster,
        "default",
        "cd-0",
        "{\"component\": \"cd\"}",
        "Running",
    );
    let _fluxd = fluxd_behind(&cluster, "default", "cd-0").await;
    let kubeconfig = cluster.kubeconfig();

    let missed = fluxctl_in(&kubeconfig, &["list-workloads"], &[]);
    assert_eq!(missed.status.code(), Some(1));

    let found = fluxctl_in(
        &kubeconfig,
        &["--k8s-fwd-labels", "component=cd", "list-workloads"],
        &[],
    );
    assert!(found.status.success(), "{}", stderr(&found));
    assert!(stdout(&found).contains(FRONT_END), "{}", stdout(&found));
}

#[tokio::test]
async fn the_name_label_of_v1_manifests_is_found_too() {
    let cluster = ApiServer::start();
    pod(
        &cluster,
        "default",
        "flux-v1",
        "{\"name\": \"fluxd\"}",
        "Running",
    );
    let _fluxd = fluxd_behind(&cluster, "default", "flux-v1").await;

    let out = fluxctl_in(&cluster.kubeconfig(), &["list-workloads"], &[]);

    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(FRONT_END), "{}", stdout(&out));
}

#[test]
fn a_pod_that_is_not_running_is_said_to_be() {
    let cluster = ApiServer::start();
    pod(&cluster, "default", "flux-7d9f", INSTALL_LABELS, "Pending");

    let out = fluxctl_in(&cluster.kubeconfig(), &["list-workloads"], &[]);

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let text = stderr(&out);
    assert!(
        text.contains("fluxd's pod flux-7d9f in namespace \"default\" is Pending, not Running"),
        "{text}"
    );
}

#[test]
fn a_pod_port_nothing_listens_on_is_told() {
    let cluster = ApiServer::start();
    pod(&cluster, "default", "flux-7d9f", INSTALL_LABELS, "Running");

    let out = fluxctl_in(&cluster.kubeconfig(), &["list-workloads"], &[]);

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let text = stderr(&out);
    assert!(
        text.contains("port-forwarding to pod flux-7d9f port 3030")
            && text.contains("nothing listens on it"),
        "{text}"
    );
}

#[test]
fn an_unreachable_api_server_is_said_to_be() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let port = free_port();
    std::fs::write(&kubeconfig, kubeconfig_text(&[("gone", port)], "gone")).expect("writable");

    let out = fluxctl_in(&kubeconfig, &["list-workloads"], &[]);

    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let text = stderr(&out);
    assert!(
        text.contains(&format!(
            "cannot reach the Kubernetes API server at http://127.0.0.1:{port}/"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn context_picks_the_cluster_to_look_in() {
    let cluster = ApiServer::start();
    pod(&cluster, "default", "flux-7d9f", INSTALL_LABELS, "Running");
    let _fluxd = fluxd_behind(&cluster, "default", "flux-7d9f").await;
    let dir = tempfile::tempdir().expect("a temporary dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let double = cluster
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the double's URL ends in its port");
    let contexts = [("gone", free_port()), ("double", double)];
    std::fs::write(&kubeconfig, kubeconfig_text(&contexts, "gone")).expect("writable");

    let current = fluxctl_in(&kubeconfig, &["list-workloads"], &[]);
    assert_eq!(current.status.code(), Some(1));
    assert!(stderr(&current).contains("cannot reach the Kubernetes API server"));

    let chosen = fluxctl_in(&kubeconfig, &["--context", "double", "list-workloads"], &[]);
    assert!(chosen.status.success(), "{}", stderr(&chosen));
    assert!(stdout(&chosen).contains(FRONT_END), "{}", stdout(&chosen));
}

#[tokio::test]
async fn with_url_the_forwarding_flags_are_ignored_and_said_to_be() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let nowhere = Path::new("/nonexistent/kubeconfig");

    let out = fluxctl_in(
        nowhere,
        &["-u", &fluxd.url, "--k8s-fwd-ns", "flux", "list-workloads"],
        &[],
    );

    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("--url is given, so --k8s-fwd-ns are ignored"));
}

/// A kubeconfig with one context per `(name, port)`, each a cluster on a
/// loopback port.
fn kubeconfig_text(contexts: &[(&str, u16)], current: &str) -> String {
    let mut clusters = String::new();
    let mut named = String::new();
    for (name, port) in contexts {
        clusters.push_str(&format!(
            "- name: {name}\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        ));
        named.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {name}\n    user: tester\n"
        ));
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{named}\
         current-context: {current}\nusers:\n- name: tester\n  user: {{}}\n"
    )
}
