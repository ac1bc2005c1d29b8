//! `fluxctl install`: the objects it prints are accepted by `kubectl apply`
//! against the API server double (dry run on the server, then for real),
//! they run fluxd with arguments the built fluxd accepts, and they are the
//! same bytes for the same flags.

mod binaries;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use binaries::{fluxctl, stderr, stdout};
use flux_testkit::daemon::{Fluxd, sock_shop_repo, wait_for};
use flux_testkit::git::BRANCH;
use flux_testkit::kube::{ApiServer, AuthorizedRequest};
use serde_json::Value;

const IMAGE: &str = "registry.example:5000/fluxd:0.1.0";

/// The flags every run needs, then `extra`.
fn install(extra: &[&str]) -> Output {
    let base = [
        "install",
        "--git-url",
        "git@github.com:example/flux-get-started",
        "--git-email",
        "flux@example.com",
        "--image",
        IMAGE,
    ];
    fluxctl(&[&base[..], extra].concat())
}

/// The YAML a successful run printed.
fn printed(extra: &[&str]) -> String {
    let output = install(extra);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

/// The printed documents, parsed.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).expect("fluxctl install prints YAML")
}

fn kinds(yaml: &str) -> Vec<String> {
    documents(yaml)
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn deployment(yaml: &str) -> Value {
    documents(yaml)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment is printed")
}

/// The container's arguments, as fluxd receives them.
fn fluxd_args(yaml: &str) -> Vec<String> {
    deployment(yaml)["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the container has args")
        .iter()
        .map(|a| a.as_str().expect("each arg is a string").to_string())
        .collect()
}

/// `kubectl` against `cluster` with `yaml` on its standard input.
fn kubectl_apply(cluster: &ApiServer, flags: &[&str], yaml: &str) -> Output {
    let mut child = cluster
        .kubectl()
        .args(["apply", "-f", "-"])
        .args(flags)
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
        .expect("kubectl reads the objects");
    child.wait_with_output().expect("kubectl finishes")
}

#[test]
fn the_output_is_the_same_bytes_for_the_same_flags() {
    let flags = [
        "--namespace",
        "flux",
        "--git-path",
        "clusters/prod,common",
        "--git-readonly",
        "--sync-garbage-collection",
        "--registry-disable-scanning",
    ];
    let first = printed(&flags);
    assert_eq!(first, printed(&flags));
    insta::assert_snapshot!("cluster_wide", first);
}

#[test]
fn allowed_namespaces_get_roles_and_no_cluster_role() {
    let yaml = printed(&[
        "--namespace",
        "flux",
        "--k8s-allow-namespace",
        "team-a,team-b",
    ]);
    insta::assert_snapshot!("namespaced", yaml);
    let kinds = kinds(&yaml);
    for expected in [
        "Role/flux",
        "RoleBinding/flux",
        "Role/flux-state",
        "RoleBinding/flux-state",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} in {kinds:?}"
        );
    }
    assert!(
        !kinds.iter().any(|k| k.starts_with("ClusterRole")),
        "{kinds:?}"
    );
    let namespaces: Vec<String> = documents(&yaml)
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "flux")
        .map(|d| d["metadata"]["namespace"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(namespaces, ["team-a", "team-b"]);
}

#[test]
fn a_server_side_dry_run_accepts_every_object() {
    let cluster = ApiServer::start();
    let yaml = printed(&["--k8s-allow-namespace", "default,kube-public"]);
    let output = kubectl_apply(&cluster, &["--server-side", "--dry-run=server"], &yaml);
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stdout(&output);
    for object in [
        "serviceaccount/flux serverside-applied (server dry run)",
        "role.rbac.authorization.k8s.io/flux serverside-applied (server dry run)",
        "secret/flux-git-deploy serverside-applied (server dry run)",
        "secret/flux-api serverside-applied (server dry run)",
        "deployment.apps/flux serverside-applied (server dry run)",
        "service/flux serverside-applied (server dry run)",
    ] {
        assert!(said.contains(object), "{object} in:\n{said}");
    }
    assert!(
        cluster
            .object("Deployment", Some("default"), "flux")
            .is_none(),
        "a dry run stores nothing"
    );
}

#[test]
fn kubectl_apply_creates_what_fluxd_runs_with() {
    let cluster = ApiServer::start();
    let known_hosts = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(known_hosts.path(), "github.com ssh-ed25519 AAAAC3Nza\n").expect("written");
    let yaml = printed(&[
        "--namespace",
        "flux",
        "--ssh-known-hosts",
        known_hosts.path().to_str().expect("UTF-8 temporary path"),
    ]);
    let output = kubectl_apply(&cluster, &[], &yaml);
    assert!(output.status.success(), "{}", stderr(&output));

    assert!(cluster.object("Namespace", None, "flux").is_some());
    assert!(
        cluster
            .object("ServiceAccount", Some("flux"), "flux")
            .is_some()
    );
    let role = cluster
        .object("ClusterRole", None, "flux")
        .expect("the ClusterRole");
    let verbs: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"][0] == "*")
        .flat_map(|r| {
            r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
        })
        .collect();
    assert_eq!(verbs, ["get", "create", "patch", "list", "watch", "delete"]);
    let binding = cluster
        .object("ClusterRoleBinding", None, "flux")
        .expect("the ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["namespace"], "flux");
    for secret in ["flux-git-deploy", "flux-api"] {
        assert!(cluster.object("Secret", Some("flux"), secret).is_some());
    }
    let ssh = cluster
        .object("ConfigMap", Some("flux"), "flux-ssh-config")
        .expect("the ConfigMap");
    assert_eq!(
        ssh["data"]["known_hosts"],
        "github.com ssh-ed25519 AAAAC3Nza\n"
    );
    let service = cluster
        .object("Service", Some("flux"), "flux")
        .expect("the Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 3030);

    let live = cluster
        .object("Deployment", Some("flux"), "flux")
        .expect("the Deployment");
    let pod = &live["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "flux");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], IMAGE);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let mounts: Vec<(&str, &str)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("data", "/var/lib/fluxd"),
            ("tmp", "/tmp"),
            ("ssh-config", "/etc/ssh")
        ]
    );
    assert!(
        pod["volumes"][0]["emptyDir"].is_object(),
        "{}",
        pod["volumes"]
    );
    assert_eq!(pod["volumes"][2]["configMap"]["name"], "flux-ssh-config");
}

#[test]
fn fluxd_accepts_every_argument_the_deployment_passes() {
    let yaml = printed(&[
        "--git-path",
        "./clusters/prod",
        "--git-path",
        "common/",
        "--git-branch",
        "main",
        "--git-label",
        "prod-sync",
        "--git-user",
        "Flux Prod",
        "--git-readonly",
        "--manifest-generation",
        "--k8s-allow-namespace",
        "team-a,team-b",
        "--sync-garbage-collection",
        "--registry-disable-scanning",
        "--registry-exclude-image",
        "docker.io/*",
        "--registry-insecure-host",
        "registry.local:5000",
    ]);
    let args = fluxd_args(&yaml);
    assert!(
        args.contains(&"--registry-exclude-image=*".to_string()),
        "{args:?}"
    );
    // clap reads every argument before `--help` and stops at the first it
    // does not know or whose value it refuses.
    let parses = |args: &[String]| {
        Command::new(binaries::fluxd())
            .args(args)
            .arg("--help")
            .output()
            .expect("fluxd runs")
    };
    let output = parses(&args);
    assert!(
        output.status.success(),
        "fluxd refused {args:?}: {}",
        stderr(&output)
    );
    let refused = parses(&[args.clone(), vec!["--no-such-flag=1".into()]].concat());
    assert!(!refused.status.success(), "an unknown flag is refused");
}

#[test]
fn without_a_security_context_the_pod_runs_as_the_image_says() {
    let yaml = printed(&["--add-security-context=false"]);
    let pod = &deployment(&yaml)["spec"]["template"]["spec"];
    assert!(pod["securityContext"].is_null(), "{pod}");
    assert!(pod["containers"][0]["securityContext"].is_null(), "{pod}");
    let default = printed(&[]);
    assert!(deployment(&default)["spec"]["template"]["spec"]["securityContext"].is_object());
}

#[test]
fn fluxd_knows_its_own_pod_from_the_downward_api() {
    let yaml = printed(&[]);
    let env = deployment(&yaml)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .as_array()
            .and_then(|vars| vars.iter().find(|v| v["name"] == name))
            .unwrap_or_else(|| panic!("{name} is set: {env}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{name}");
    }
}

#[test]
fn the_default_namespace_is_not_printed_as_an_object() {
    let kinds = kinds(&printed(&[]));
    assert!(
        !kinds.iter().any(|k| k.starts_with("Namespace/")),
        "{kinds:?}"
    );
    let kinds = self::kinds(&printed(&["--namespace", "flux"]));
    assert_eq!(kinds[0], "Namespace/flux");
}

#[test]
fn output_dir_gets_one_file_per_object_with_stable_names() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let flags = ["--namespace", "flux", "--k8s-allow-namespace", "team-a"];
    let output = install(&[&flags[..], &["-o", dir.path().to_str().unwrap()]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "nothing on stdout with -o");
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "flux-account.yaml",
            "flux-api-secret.yaml",
            "flux-deployment.yaml",
            "flux-git-deploy-secret.yaml",
            "flux-namespace.yaml",
            "flux-role-team-a.yaml",
            "flux-rolebinding-team-a.yaml",
            "flux-service.yaml",
            "flux-state-role.yaml",
            "flux-state-rolebinding.yaml",
        ]
    );
    let printed = printed(&flags);
    let deployment = std::fs::read_to_string(dir.path().join("flux-deployment.yaml")).unwrap();
    assert!(
        printed.contains(&format!("---\n{deployment}")),
        "the same document as printed"
    );
}

#[test]
fn flags_fluxd_could_not_start_with_are_refused_naming_them() {
    for (flags, named) in [
        (
            &["--namespace", "Flux_System"][..],
            "--namespace \"Flux_System\"",
        ),
        (
            &["--k8s-allow-namespace", "team_a"],
            "--k8s-allow-namespace \"team_a\"",
        ),
        (
            &["--git-path", "../elsewhere"],
            "--git-path \"../elsewhere\"",
        ),
        (&["--git-path", "/etc"], "--git-path \"/etc\""),
        (
            &["-o", "/nonexistent/folder"],
            "--output-dir /nonexistent/folder",
        ),
    ] {
        let output = install(flags);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(
            stderr(&output).contains(named),
            "{flags:?}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty(), "{flags:?} printed objects");
    }
    let output = fluxctl(&["install", "--git-url", "x", "--image", IMAGE]);
    assert!(
        stderr(&output).contains("--git-email"),
        "{}",
        stderr(&output)
    );
}

/// Whether one of `rules` (an RBAC role's) grants `request`, as RBAC
/// matches them: any listed or `*` group, resource and verb.
fn granted(rules: &[Value], request: &AuthorizedRequest) -> bool {
    let lists = |rule: &Value, key: &str, wanted: &str| {
        rule[key]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i == "*" || i == wanted))
    };
    rules.iter().any(|rule| {
        rule["resourceNames"].is_null()
            && lists(rule, "apiGroups", &request.group)
            && lists(rule, "resources", &request.resource)
            && lists(rule, "verbs", &request.verb)
    })
}

#[tokio::test]
async fn fluxd_asks_the_api_server_for_nothing_the_cluster_role_does_not_grant() {
    let yaml = printed(&[]);
    let role = documents(&yaml)
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole is printed");
    let rules = role["rules"].as_array().expect("rules").clone();

    let cluster = ApiServer::start();
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start_with_cluster(
        &binaries::fluxd(),
        &repo,
        &cluster.kubeconfig(),
        &["--sync-garbage-collection"],
    )
    .await;
    let shipping = || cluster.object("Service", Some("sock-shop"), "shipping");
    wait_for("the first sync", || async { shipping().is_some() }).await;
    repo.commit_file(
        BRANCH,
        "manifests/24-shipping-svc.yaml",
        "",
        "Retire shipping",
    );
    let synced = fluxctl(&["--url", &fluxd.url, "--token", &fluxd.token, "sync"]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    assert!(
        shipping().is_none(),
        "collected; fluxd said:\n{}",
        fluxd.log()
    );

    let requests = cluster.requests();
    for verb in ["get", "list", "create", "patch", "delete"] {
        assert!(
            requests.iter().any(|r| r.verb == verb),
            "fluxd made no {verb} request: the test would not check that rule"
        );
    }
    let refused: Vec<&AuthorizedRequest> =
        requests.iter().filter(|r| !granted(&rules, r)).collect();
    assert!(
        refused.is_empty(),
        "not granted by the ClusterRole: {refused:#?}"
    );
    let collection = AuthorizedRequest {
        verb: "deletecollection".into(),
        ..requests[0].clone()
    };
    assert!(
        !granted(&rules, &collection),
        "a verb fluxd does not use is not granted"
    );
}

#[tokio::test]
async fn with_allowed_namespaces_only_cluster_scoped_requests_fall_outside_the_roles() {
    let yaml = printed(&["--k8s-allow-namespace", "sock-shop"]);
    let role = documents(&yaml)
        .into_iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "flux")
        .expect("a Role in sock-shop is printed");
    assert_eq!(role["metadata"]["namespace"], "sock-shop");
    let rules = role["rules"].as_array().expect("rules").clone();

    let cluster = ApiServer::start();
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start_with_cluster(
        &binaries::fluxd(),
        &repo,
        &cluster.kubeconfig(),
        &[
            "--sync-garbage-collection",
            "--k8s-allow-namespace=sock-shop",
        ],
    )
    .await;
    wait_for("the first sync", || async {
        cluster
            .object("Service", Some("sock-shop"), "shipping")
            .is_some()
    })
    .await;
    let synced = fluxctl(&["--url", &fluxd.url, "--token", &fluxd.token, "sync"]);
    assert!(synced.status.success(), "{}", stderr(&synced));

    let requests = cluster.requests();
    let (namespaced, cluster_wide): (Vec<_>, Vec<_>) =
        requests.iter().partition(|r| r.namespace.is_some());
    assert!(!namespaced.is_empty());
    for request in namespaced {
        assert_eq!(
            request.namespace.as_deref(),
            Some("sock-shop"),
            "{request:?}"
        );
        assert!(
            granted(&rules, request),
            "not granted by the Role: {request:?}"
        );
    }
    // What the README says a Role cannot grant: the repo's Namespace, and
    // the lists and watches of cluster-scoped kinds (garbage collection's,
    // and those of CustomResourceDefinitions and APIServices).
    let listed = cluster
        .kubectl()
        .args(["api-resources", "--namespaced=false", "-o", "name"])
        .output()
        .expect("kubectl runs");
    let cluster_scoped: Vec<String> = stdout(&listed).lines().map(str::to_string).collect();
    assert!(
        cluster_scoped.iter().any(|r| r == "namespaces"),
        "{cluster_scoped:?}"
    );
    assert!(
        cluster_wide.iter().any(|r| r.verb == "list"),
        "garbage collection lists cluster-scoped kinds (the README says a Role skips it)"
    );
    for request in cluster_wide {
        let name = match request.group.as_str() {
            "" => request.resource.clone(),
            group => format!("{}.{group}", request.resource),
        };
        let namespace_object = request.resource == "namespaces" && request.verb != "list";
        let scoped_read =
            matches!(request.verb.as_str(), "list" | "watch") && cluster_scoped.contains(&name);
        assert!(
            namespace_object || scoped_read,
            "a cluster-wide request besides the Namespace and reads of cluster-scoped kinds: {request:?}"
        );
    }
}

#[test]
fn more_than_one_replica_runs_fluxd_with_leader_election() {
    let single = printed(&[]);
    assert_eq!(deployment(&single)["spec"]["replicas"], 1);
    assert!(!fluxd_args(&single).contains(&"--leader-election".to_string()));
    assert_eq!(deployment(&single)["spec"]["strategy"]["type"], "Recreate");

    let yaml = printed(&["--replicas", "3"]);
    let deployed = deployment(&yaml);
    assert_eq!(deployed["spec"]["replicas"], 3);
    assert_eq!(deployed["spec"]["strategy"]["type"], "RollingUpdate");
    assert!(fluxd_args(&yaml).contains(&"--leader-election".to_string()));
    let env = deployed["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("the container has env")
        .clone();
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
    ] {
        assert!(
            env.iter()
                .any(|e| e["name"] == name && e["valueFrom"]["fieldRef"]["fieldPath"] == field),
            "{name} from {field}: {env:?}"
        );
    }
    let cluster = ApiServer::start();
    let output = kubectl_apply(&cluster, &["--server-side", "--dry-run=server"], &yaml);
    assert!(output.status.success(), "{}", stderr(&output));

    let refused = install(&["--replicas", "0"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--replicas"),
        "{}",
        stderr(&refused)
    );
}
