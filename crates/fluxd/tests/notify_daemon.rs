//! fluxd tells people about a release: a signed webhook call and a
//! Kubernetes Event on the released Deployment, read through kubectl.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use flux_api::{ImageUpdate, JobSpec, ReleaseSpec, Targets};
use flux_testkit::daemon::{FRONT_END, Fluxd, finished, sock_shop_repo, wait_for};
use flux_testkit::kube::ApiServer;
use hmac::{Hmac, Mac};
use serde_json::Value;

type Calls = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn record(State(calls): State<Calls>, headers: HeaderMap, body: Bytes) {
    calls.lock().expect("not poisoned").push((headers, body));
}

fn kubectl(server: &ApiServer, args: &[&str]) -> String {
    let out = server.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_is_told_to_the_webhook_and_as_an_event_on_the_deployment() {
    let calls: Calls = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let hook = format!("http://{}/flux", listener.local_addr().expect("bound"));
    let router = Router::new().fallback(record).with_state(calls.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().expect("a temp dir");
    let secret_file = dir.path().join("notify-secret");
    std::fs::write(&secret_file, "s3cret\n").expect("writable");
    let secret_file = secret_file.display().to_string();
    let repo = sock_shop_repo(None);
    let cluster = ApiServer::start();
    let fluxd = Fluxd::start_with_cluster(
        std::path::Path::new(env!("CARGO_BIN_EXE_fluxd")),
        &repo,
        &cluster.kubeconfig(),
        &[
            "--notify-webhook",
            &hook,
            "--notify-webhook-secret-file",
            &secret_file,
            "--notify-events",
            "release",
        ],
    )
    .await;
    let client = fluxd.client();
    wait_for("front-end applied", || async {
        cluster
            .object("Deployment", Some("sock-shop"), "front-end")
            .is_some()
    })
    .await;

    let release = JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![FRONT_END.into()]),
        exclude: Vec::new(),
        update: ImageUpdate::Image("weaveworksdemos/front-end:0.4.0".into()),
        force: false,
        dry_run: false,
        message: None,
        user: Some("alice".into()),
        containers: Default::default(),
    });
    let submitted = client.submit(&release).await.expect("queued");
    let job = finished(&client, &submitted.id).await;
    let commit = job.commit.expect("the release made a commit");

    wait_for("the webhook called", || async {
        !calls.lock().expect("not poisoned").is_empty()
    })
    .await;
    let (headers, body) = calls.lock().expect("not poisoned")[0].clone();
    let signature = headers["x-signature"].to_str().expect("ASCII");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("any key length");
    mac.update(&body);
    let given = hex::decode(signature.trim_start_matches("sha256=")).expect("hex");
    assert!(mac.verify_slice(&given).is_ok(), "{signature}");
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["kind"], "release");
    assert_eq!(
        body["summary"],
        "Released weaveworksdemos/front-end:0.4.0 by alice"
    );
    assert_eq!(body["commit"]["id"], commit.as_str());
    assert_eq!(body["changes"][0]["workload"], FRONT_END);
    assert_eq!(body["changes"][0]["to"], "weaveworksdemos/front-end:0.4.0");

    let mut describe = String::new();
    for _ in 0..600 {
        describe = kubectl(
            &cluster,
            &["describe", "-n", "sock-shop", "deploy/front-end"],
        );
        if describe.contains("Released") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(describe.contains("Released"), "{describe}");
    assert!(
        describe.contains("weaveworksdemos/front-end:0.4.0"),
        "{describe}"
    );
    // Only releases were asked for: the sync's own notices did not reach the hook.
    assert!(
        calls
            .lock()
            .expect("not poisoned")
            .iter()
            .all(|(headers, _)| headers["x-flux-event"] == "release")
    );
}
