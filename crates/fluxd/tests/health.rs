//! The probes a pod's kubelet asks: `/healthz` while the process serves,
//! `/readyz` once git was read and the cluster's API server answers.

use flux_testkit::daemon::{Fluxd, sock_shop_repo, wait_for};
use flux_testkit::git::free_port;
use flux_testkit::kube::ApiServer;

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("fluxd answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn before_git_is_read_fluxd_is_live_but_not_ready() {
    let url = format!("http://127.0.0.1:{}/nothing.git", free_port());
    let fluxd = Fluxd::spawn(fluxd_binary(), &url, None, free_port(), &[], &[]).await;
    assert_eq!(
        get(&format!("{}/healthz", fluxd.url)).await,
        (200, "ok\n".into())
    );
    let (status, body) = get(&format!("{}/readyz", fluxd.url)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("has not read the git repo"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fluxd_is_ready_while_the_api_server_answers_its_syncs() {
    let repo = sock_shop_repo(None);
    let cluster = ApiServer::start();
    let fluxd = Fluxd::start_with_cluster(
        fluxd_binary(),
        &repo,
        &cluster.kubeconfig(),
        &["--sync-interval=1s"],
    )
    .await;
    let readyz = format!("{}/readyz", fluxd.url);
    wait_for("ready", || async { get(&readyz).await.0 == 200 }).await;
    drop(cluster);
    wait_for(
        "not ready once a sync cannot reach the API server",
        || async {
            let (status, body) = get(&readyz).await;
            status == 503 && body.contains("did not answer the last sync")
        },
    )
    .await;
    assert_eq!(get(&format!("{}/healthz", fluxd.url)).await.0, 200);
}
