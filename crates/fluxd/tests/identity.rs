//! The deploy key outlives the pod: with a cluster and an ssh repo URL,
//! fluxd keeps it in the Secret `flux-git-deploy` (data key `identity`),
//! so a fluxd with an empty data folder shows the same key, and a new key
//! from `POST /api/v1/identity` is the one the next start shows.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use flux_api::Client;
use flux_testkit::daemon::Fluxd;
use flux_testkit::git::{IsolatedEnv, free_port};
use flux_testkit::kube::ApiServer;

fn fluxd_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// A repo over ssh that nobody answers: fluxd makes or reads its key at
/// start either way.
fn ssh_url() -> String {
    format!("ssh://git@127.0.0.1:{}/config.git", free_port())
}

async fn start(cluster: &ApiServer, url: &str, extra: &[&str]) -> Fluxd {
    Fluxd::spawn(
        fluxd_binary(),
        url,
        Some(&cluster.kubeconfig()),
        free_port(),
        extra,
        &[],
    )
    .await
}

/// The private key under `identity` in the Secret, decoded as the real API
/// server's clients decode `data` (base64).
fn key_in_secret(cluster: &ApiServer, namespace: &str) -> Option<String> {
    let secret = cluster.object("Secret", Some(namespace), "flux-git-deploy")?;
    let encoded = secret["data"]["identity"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the Secret's data is base64");
    Some(String::from_utf8(bytes).expect("the key is text"))
}

/// The public key (type and base64, no comment) of a private key.
fn public_key_of(private: &str) -> String {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("key");
    std::fs::write(&path, private).expect("the temporary folder is writable");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("the key file's mode can be set");
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "{out:?}");
    key_fields(&String::from_utf8_lossy(&out.stdout))
}

fn key_fields(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn shown_key(fluxd: &Fluxd) -> String {
    let client = Client::new(&fluxd.url, None).expect("the URL is well formed");
    let identity = client.identity().await.expect("fluxd shows its deploy key");
    key_fields(&identity.public_key)
}

#[tokio::test]
async fn the_first_start_stores_the_key_in_the_secret() {
    let cluster = ApiServer::start();
    assert_eq!(key_in_secret(&cluster, "default"), None);

    let fluxd = start(&cluster, &ssh_url(), &[]).await;

    let stored = key_in_secret(&cluster, "default").expect("the Secret holds the key");
    assert_eq!(public_key_of(&stored), shown_key(&fluxd).await);
    let on_disk = fluxd.data.path().join("ssh/identity");
    assert_eq!(
        std::fs::read_to_string(&on_disk).expect("the key file git's ssh uses"),
        stored
    );
}

#[tokio::test]
async fn an_empty_data_folder_gets_the_key_back_from_the_secret() {
    let cluster = ApiServer::start();
    let url = ssh_url();
    let first = start(&cluster, &url, &[]).await;
    let key = shown_key(&first).await;
    drop(first);

    let second = start(&cluster, &url, &[]).await;

    assert_eq!(shown_key(&second).await, key);
    let on_disk = second.data.path().join("ssh/identity");
    let mode = std::fs::metadata(&on_disk)
        .expect("the key is written for git's ssh")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_regenerated_key_replaces_the_one_in_the_secret() {
    let cluster = ApiServer::start();
    let url = ssh_url();
    let fluxd = start(&cluster, &url, &[]).await;
    let old = key_in_secret(&cluster, "default").expect("the Secret holds the key");

    let client = Client::new(&fluxd.url, Some(fluxd.token.clone())).expect("a client");
    let new = client
        .regenerate_identity()
        .await
        .expect("fluxd makes a new key");
    drop(fluxd);

    let stored = key_in_secret(&cluster, "default").expect("the Secret holds the key");
    assert_ne!(stored, old);
    assert_eq!(public_key_of(&stored), key_fields(&new.public_key));
    let restarted = start(&cluster, &url, &[]).await;
    assert_eq!(shown_key(&restarted).await, key_fields(&new.public_key));
}

#[tokio::test]
async fn an_existing_empty_secret_is_filled_and_its_other_data_kept() {
    let cluster = ApiServer::start();
    let manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux\n---\n\
        apiVersion: v1\nkind: Secret\nmetadata:\n  name: flux-git-deploy\n  namespace: flux\n\
        data:\n  other: a2VwdA==\n";
    let mut apply = cluster
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    std::io::Write::write_all(
        &mut apply.stdin.take().expect("kubectl's stdin"),
        manifest.as_bytes(),
    )
    .expect("kubectl reads the manifest");
    let made = apply.wait_with_output().expect("kubectl finishes");
    assert!(made.status.success(), "{made:?}");

    let fluxd = start(&cluster, &ssh_url(), &["--k8s-secret-namespace=flux"]).await;

    let stored = key_in_secret(&cluster, "flux").expect("the Secret holds the key");
    assert_eq!(public_key_of(&stored), shown_key(&fluxd).await);
    let secret = cluster
        .object("Secret", Some("flux"), "flux-git-deploy")
        .expect("the Secret is there");
    assert_eq!(secret["data"]["other"], "a2VwdA==", "{secret}");
    assert_eq!(key_in_secret(&cluster, "default"), None);
}

#[tokio::test]
async fn a_secret_the_api_server_refuses_stops_the_start() {
    let refusing = refusing_api_server().await;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_for(&refusing)).expect("writable");
    let env = IsolatedEnv::new();

    // Awaited, not blocking: the refusing server answers on this runtime.
    let out = tokio::process::Command::new(fluxd_binary())
        .args(["--cluster=kubeconfig", "--git-url", &ssh_url()])
        .arg(format!("--listen=127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("KUBECONFIG", &kubeconfig)
        .envs(env.vars())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    // Generous: a fluxd that ignores the refusal keeps running and fails here.
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("fluxd stops instead of running without its Secret")
        .expect("fluxd runs");

    assert!(!out.status.success(), "fluxd started: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deploy key Secret default/flux-git-deploy")
            && stderr.contains("cannot get resource \"secrets\""),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data/ssh/identity").exists(),
        "no key of its own was made"
    );
}

/// An API server that forbids every request, as one whose RBAC grants
/// fluxd nothing on Secrets answers: the double grants everything, so this
/// refusal is the one shape it cannot give.
async fn refusing_api_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    let router = axum::Router::new().fallback(|| async {
        let status = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": "secrets \"flux-git-deploy\" is forbidden: User \"system:serviceaccount:default:flux\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\"",
            "reason": "Forbidden",
            "code": 403,
        });
        (axum::http::StatusCode::FORBIDDEN, axum::Json(status))
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\ncurrent-context: c\n"
    )
}
