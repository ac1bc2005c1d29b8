//! Inside a pod fluxd reaches its cluster as every in-cluster client does: the
//! API server's address in `KUBERNETES_SERVICE_HOST`/`_PORT`, and the service
//! account's token, CA and namespace in the files the kubelet mounts at
//! `/var/run/secrets/kubernetes.io/serviceaccount`; there is no kubeconfig.
//!
//! Here fluxd runs in a mount namespace of its own (`unshare`, as root), where
//! those files are put where the kubelet would mount them, against the API
//! server double served over TLS under a CA of the test's, refusing requests
//! without the token.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use flux_api::{Client, ClientError};
use flux_testkit::daemon::{sock_shop_repo, wait_for};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv, free_port};
use flux_testkit::kube::{ApiServer, Serving};
use flux_testkit::tls::TestCa;

const TOKEN: &str = "service-account-token";
const NAMESPACE: &str = "flux";

/// What the kubelet mounts into a pod for its service account.
fn service_account(ca: &TestCa) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("token"), TOKEN).expect("the folder is writable");
    std::fs::write(dir.path().join("namespace"), NAMESPACE).expect("the folder is writable");
    ca.write(&dir.path().join("ca.crt"));
    dir
}

/// A fluxd as a pod runs it, with an empty data folder of its own.
struct Pod {
    child: Child,
    url: String,
    data: tempfile::TempDir,
    _env: IsolatedEnv,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pod {
    fn start(cluster: &ApiServer, account: &Path, repo: &BareRepo) -> Pod {
        let data = tempfile::tempdir().expect("a temporary folder");
        let env = IsolatedEnv::new();
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(data.path().join("fluxd.log")).expect("writable");
        // /var/run is /run on Debian; a tmpfs over it is seen by fluxd alone.
        let script = "run=$(readlink -f /var/run) && mount -t tmpfs tmpfs \"$run\" \
                      && mkdir -p \"$run/secrets/kubernetes.io\" \
                      && cp -r \"$ACCOUNT\" \"$run/secrets/kubernetes.io/serviceaccount\" \
                      && exec \"$@\"";
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "pod",
            ])
            .arg(env!("CARGO_BIN_EXE_fluxd"))
            .args(["--git-url", &repo.url(), "--git-branch", BRANCH])
            .args(["--git-path", "manifests", "--listen", &listen])
            .args([
                "--git-poll-interval",
                "1h",
                "--registry-poll-interval",
                "1h",
            ])
            .args(["--sync-interval", "1s", "--k8s-api-secret-name", "flux-api"])
            .arg("--data-dir")
            .arg(data.path())
            .envs(env.vars())
            .env_remove("KUBECONFIG")
            .env("ACCOUNT", account)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env(
                "KUBERNETES_SERVICE_PORT",
                cluster.address().port().to_string(),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unshare runs");
        Pod {
            child,
            url: format!("http://{listen}"),
            data,
            _env: env,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("fluxd.log")
    }

    async fn answering(self) -> Pod {
        let client = Client::new(&self.url, None).expect("a well-formed URL");
        let log = self.log_path();
        wait_for("fluxd in its pod to answer", || async {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                !said.contains("Error:"),
                "fluxd did not start in the pod:\n{said}"
            );
            client.version().await.is_ok()
        })
        .await;
        self
    }
}

/// The API token fluxd keeps in its Secret, in the service account's namespace.
fn token_in_secret(cluster: &ApiServer) -> Option<String> {
    use base64::Engine;
    let secret = cluster.object("Secret", Some(NAMESPACE), "flux-api")?;
    let encoded = secret["data"]["api-token"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("a Secret's data is base64");
    Some(String::from_utf8(bytes).expect("the token is text"))
}

async fn sync_with(pod: &Pod, token: &str) -> Result<(), ClientError> {
    let client = Client::new(&pod.url, Some(token.to_string())).expect("a well-formed URL");
    client.sync().await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_pod_fluxd_syncs_as_its_service_account_and_keeps_its_token_in_its_namespace() {
    let ca = TestCa::new("cluster CA");
    let cluster = ApiServer::start_serving(Serving::default().tls(&ca).token(TOKEN));
    let namespace = tempfile::NamedTempFile::new().expect("a temporary file");
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n");
    std::fs::write(namespace.path(), manifest).expect("the file is writable");
    let created = cluster
        .kubectl()
        .arg("apply")
        .arg("--server-side")
        .arg("-f")
        .arg(namespace.path())
        .output()
        .expect("kubectl runs");
    assert!(created.status.success(), "{created:?}");
    let account = service_account(&ca);
    let repo = sock_shop_repo(None);

    let pod = Pod::start(&cluster, account.path(), &repo)
        .answering()
        .await;
    wait_for("the sock-shop to be applied", || async {
        cluster
            .object("Deployment", Some("sock-shop"), "front-end")
            .is_some()
    })
    .await;
    let client = Client::new(&pod.url, None).expect("a well-formed URL");
    wait_for(
        "the sync marker to be shown where the sync left it",
        || async {
            let read = client.read_state().await.expect("fluxd answers");
            read.synced.as_deref() == Some(read.revision.as_str())
        },
    )
    .await;
    let token = token_in_secret(&cluster).expect("the API token is in the Secret");
    sync_with(&pod, &token)
        .await
        .expect("the Secret's token lets a client in");
    assert!(
        sync_with(&pod, "not-the-token").await.is_err(),
        "a wrong token was let in"
    );
    assert!(
        !pod.data.path().join("api-token").exists(),
        "the token went to the data folder as well"
    );
    drop(pod);

    // The pod is replaced: a new data folder, the same token.
    let again = Pod::start(&cluster, account.path(), &repo)
        .answering()
        .await;
    sync_with(&again, &token)
        .await
        .unwrap_or_else(|e| panic!("the kept token was not read back: {e}\n{}", again.log()));
}
