//! fluxd at rest: once its watches have listed, syncs that change nothing
//! ask the API server for no discovery and no list.

use std::time::{Duration, Instant};

use flux_testkit::daemon::{Fluxd, sock_shop_repo, wait_for};
use flux_testkit::kube::ApiServer;

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// Every request but watches (which reopen now and then), as `verb path`.
fn asked(cluster: &ApiServer) -> Vec<String> {
    cluster
        .request_counts()
        .into_keys()
        .filter(|(verb, _)| verb != "watch")
        .map(|(verb, path)| format!("{verb} {path}"))
        .collect()
}

#[tokio::test]
async fn syncs_at_rest_ask_for_no_discovery_and_no_list() {
    let cluster = ApiServer::start();
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start_with_cluster(
        fluxd_binary(),
        &repo,
        &cluster.kubeconfig(),
        &["--sync-garbage-collection", "--sync-interval=1s"],
    )
    .await;
    wait_for("the first sync", || async {
        cluster
            .object("Service", Some("sock-shop"), "shipping")
            .is_some()
    })
    .await;

    // Three syncs in a row that ask nothing; the first ones after the start
    // list while the watches have not listed yet.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        cluster.reset_request_counts();
        let before = fluxd.syncs().await;
        wait_for("three more syncs", || async {
            fluxd.syncs().await >= before + 3
        })
        .await;
        let asked = asked(&cluster);
        if asked.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "syncs at rest still asked for {asked:#?}\n{}",
            fluxd.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
