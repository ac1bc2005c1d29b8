//! fluxd follows rollouts with watches: a rollout under way costs the API
//! server no lists, and a status the controller writes reaches the API's
//! workloads through the watch.

use std::time::Duration;

use flux_api::RolloutStatus;
use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo, wait_for};
use flux_testkit::kube::{ApiServer, WorkloadState};

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

#[tokio::test]
async fn a_rollout_under_way_is_watched_not_listed() {
    // No controller: every rollout stays under way until the test says.
    let cluster = ApiServer::start();
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start_with_cluster(fluxd_binary(), &repo, &cluster.kubeconfig(), &[]).await;
    let client = fluxd.client();
    wait_for("front-end synced and its rollout seen", || async {
        client.workloads(None).await.is_ok_and(|workloads| {
            workloads
                .iter()
                .any(|w| w.id == FRONT_END && w.rollout.is_some())
        })
    })
    .await;
    // Past the start's list and the first sync's look.
    tokio::time::sleep(Duration::from_secs(2)).await;

    cluster.reset_request_counts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lists: Vec<String> = cluster
        .request_counts()
        .into_keys()
        .filter(|(verb, path)| verb == "list" && path.ends_with("/deployments"))
        .map(|(_, path)| path)
        .collect();
    assert!(
        lists.is_empty(),
        "a rollout under way made fluxd list: {lists:?}\n{}",
        fluxd.log()
    );

    assert!(cluster.set_workload_state(
        "Deployment",
        "sock-shop",
        "front-end",
        WorkloadState::Ready
    ));
    wait_for("the ready rollout in the API's workloads", || async {
        client.workloads(None).await.is_ok_and(|workloads| {
            workloads.iter().any(|w| {
                w.id == FRONT_END
                    && w.rollout
                        .as_ref()
                        .is_some_and(|r| r.status == RolloutStatus::Ready)
            })
        })
    })
    .await;
}
