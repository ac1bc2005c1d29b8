//! Two fluxd with `--leader-election` on one repo and one cluster (the API
//! server double): one leads and is the only one to sync and commit; a
//! release sent to the follower is run once, by the leader; when the leader
//! is killed the follower takes the Lease over and runs what it is sent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flux_api::{Client, ImageUpdate, JobSpec, JobStatus, ReleaseSpec, Targets};
use flux_testkit::daemon::{FRONT_END, Fluxd, finished, sock_shop_repo, wait_for};
use flux_testkit::git::{BRANCH, BareRepo};
use flux_testkit::kube::ApiServer;
use serde_json::Value;

const LEASE: &str = "fluxd-test";
const LEASE_DURATION: Duration = Duration::from_secs(6);

/// Election flags with a lease short enough for a test and long enough for
/// a loaded machine to renew in time.
const ELECTION: [&str; 5] = [
    "--leader-election",
    "--leader-election-name=fluxd-test",
    "--leader-election-lease-duration=6s",
    "--leader-election-renew-deadline=4s",
    "--leader-election-retry-period=1s",
];

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// A replica; `token` is the API token file every replica shares (as
/// replicas of one Deployment mount one Secret).
async fn replica(repo: &BareRepo, cluster: &ApiServer, token: &Path) -> Fluxd {
    let token = format!("--api-token-file={}", token.display());
    let mut flags = ELECTION.to_vec();
    flags.extend(["--sync-interval=1s", "--git-poll-interval=1s", &token]);
    Fluxd::start_with_cluster(fluxd_binary(), repo, &cluster.kubeconfig(), &flags).await
}

/// The two replicas' shared token file.
fn shared_token() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("api-token");
    std::fs::write(&file, "replicas-share-this-token\n").expect("written");
    (dir, file)
}

fn lease(cluster: &ApiServer) -> Option<Value> {
    cluster.object("Lease", Some("default"), LEASE)
}

/// The `host:port` the Lease's holder wrote, when it has a holder.
fn leader_address(cluster: &ApiServer) -> Option<String> {
    let lease = lease(cluster)?;
    lease["spec"]["holderIdentity"].as_str()?;
    let address = lease["metadata"]["annotations"]["fluxcd.io/leader-address"].as_str()?;
    Some(format!("http://{address}"))
}

fn commits(repo: &BareRepo) -> u64 {
    repo.git(&["rev-list", "--count", BRANCH])
        .trim()
        .parse()
        .expect("a count")
}

fn live_image(cluster: &ApiServer) -> Option<String> {
    let object = cluster.object("Deployment", Some("sock-shop"), "front-end")?;
    Some(
        object["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()?
            .to_string(),
    )
}

fn release_of(image: &str) -> JobSpec {
    JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![FRONT_END.into()]),
        exclude: Vec::new(),
        update: ImageUpdate::Image(image.into()),
        force: false,
        dry_run: false,
        message: None,
        user: None,
        containers: Default::default(),
    })
}

/// The two replicas, leader first, once one holds the Lease and has synced.
async fn elected(repo: &BareRepo, cluster: &ApiServer, token: &Path) -> (Fluxd, Fluxd) {
    let a = replica(repo, cluster, token).await;
    let b = replica(repo, cluster, token).await;
    wait_for("a leader to hold the Lease", || async {
        leader_address(cluster).is_some()
    })
    .await;
    let leader = leader_address(cluster).expect("a leader");
    let (leader, follower) = if leader == a.url { (a, b) } else { (b, a) };
    assert_eq!(leader_address(cluster), Some(leader.url.clone()));
    wait_for("the leader's first sync", || async {
        live_image(cluster).is_some()
    })
    .await;
    (leader, follower)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_syncs_and_a_release_sent_to_the_follower_is_run_once_by_it() {
    let repo = sock_shop_repo(None);
    let cluster = ApiServer::start();
    let (_dir, token) = shared_token();
    let (leader, follower) = elected(&repo, &cluster, &token).await;
    wait_for("the leader to sync again and again", || async {
        leader.syncs().await >= 3
    })
    .await;
    assert_eq!(follower.syncs().await, 0, "the follower synced");

    let before = commits(&repo);
    cluster.reset_writes();
    let client = follower.client();
    let submitted = client
        .submit(&release_of("weaveworksdemos/front-end:0.3.13"))
        .await
        .expect("the follower hands the release to the leader");
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let commit = job.commit.clone().expect("the release committed");
    assert_eq!(
        leader
            .client()
            .job(&submitted.id)
            .await
            .expect("the leader's job")
            .commit,
        Some(commit.clone()),
        "the job is the leader's"
    );
    wait_for("the release applied", || async {
        live_image(&cluster).as_deref() == Some("weaveworksdemos/front-end:0.3.13")
    })
    .await;
    // Both replicas read the new commit (git is polled every second);
    // several syncs later still one commit and one write of front-end.
    let synced = leader.syncs().await;
    wait_for("three more syncs", || async {
        leader.syncs().await >= synced + 3
    })
    .await;
    assert_eq!(commits(&repo), before + 1, "one commit for one release");
    assert_eq!(repo.head(BRANCH), commit);
    assert_eq!(cluster.writes("sock-shop:Deployment/front-end"), 1);
    assert_eq!(follower.syncs().await, 0, "the follower synced");
    assert!(!follower.log().contains("job failed"), "{}", follower.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_leader_is_killed_the_follower_takes_over_within_the_lease_duration() {
    let repo = sock_shop_repo(None);
    let cluster = ApiServer::start();
    let (_dir, token) = shared_token();
    let (mut leader, follower) = elected(&repo, &cluster, &token).await;
    let was = lease(&cluster).expect("the Lease")["spec"]["holderIdentity"].clone();

    leader.child.kill().expect("kill -9 the leader");
    leader.child.wait().expect("the leader is gone");
    let killed = Instant::now();
    // Until the lease runs out, the follower can only say who leads.
    let refused = Client::new(&follower.url, Some(follower.token.clone()))
        .expect("a client")
        .submit(&release_of("weaveworksdemos/front-end:0.3.13"))
        .await
        .expect_err("no leader answers");
    let message = refused.to_string();
    assert!(
        message.contains(was.as_str().expect("an identity"))
            && message.contains("could not be reached"),
        "{message}"
    );

    wait_for("the follower to take the Lease over", || async {
        leader_address(&cluster).as_deref() == Some(follower.url.as_str())
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!(
        "takeover: {:.1} s after kill -9 (lease duration {:?}, retry period 1s)",
        takeover.as_secs_f64(),
        LEASE_DURATION
    );
    let now = lease(&cluster).expect("the Lease");
    assert_ne!(now["spec"]["holderIdentity"], was);
    assert_eq!(now["spec"]["leaseTransitions"], 1);

    let before = commits(&repo);
    let client = follower.client();
    let submitted = client
        .submit(&release_of("weaveworksdemos/front-end:0.3.13"))
        .await
        .expect("the new leader takes the release");
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    wait_for("the new leader to apply it", || async {
        live_image(&cluster).as_deref() == Some("weaveworksdemos/front-end:0.3.13")
    })
    .await;
    assert_eq!(commits(&repo), before + 1);
    assert!(follower.syncs().await > 0, "the new leader syncs");
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_election_without_a_cluster_is_refused_at_start() {
    let repo = sock_shop_repo(None);
    let output = std::process::Command::new(fluxd_binary())
        .args([
            "--git-url",
            &repo.url(),
            "--cluster=none",
            "--leader-election",
        ])
        .arg("--data-dir")
        .arg(tempfile::tempdir().expect("a temporary folder").path())
        .output()
        .expect("fluxd runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--leader-election needs a cluster"),
        "{stderr}"
    );
}

/// A Lease as a leader killed with two jobs unfinished leaves it: one
/// whose commit it had pushed (its note names the job), one not yet run.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_left_on_the_lease_by_a_dead_leader_are_run_once_by_the_next() {
    let repo = sock_shop_repo(None);
    let cluster = ApiServer::start();
    let since = repo.head(BRANCH);
    let fixture =
        std::fs::read_to_string(flux_testkit::sock_shop_manifests().join("09-front-end-dep.yaml"))
            .expect("the fixture");
    let pushed = repo.commit_file(
        BRANCH,
        "manifests/09-front-end-dep.yaml",
        &fixture.replace("front-end:0.3.12", "front-end:0.3.13"),
        "Release weaveworksdemos/front-end:0.3.13 to sock-shop:deployment/front-end",
    );
    let done = release_of("weaveworksdemos/front-end:0.3.13");
    let note = serde_json::json!({"jobID": "1-1", "spec": done, "result": []}).to_string();
    repo.git(&["notes", "--ref=flux", "add", "-m", &note, &pushed]);
    let not_run = JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec!["sock-shop:deployment/carts".into()]),
        update: ImageUpdate::Image("weaveworksdemos/carts:0.4.9".into()),
        ..match release_of("x") {
            JobSpec::Release(spec) => spec,
            _ => unreachable!("a release"),
        }
    });
    let queued = serde_json::json!({
        "since": since,
        "jobs": [{"id": "1-1", "spec": done}, {"id": "1-2", "spec": not_run}],
    });
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("lease.json");
    let left_by_the_dead = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": "default",
            "annotations": {"fluxcd.io/leader-address": "127.0.0.1:9", "fluxcd.io/queued-jobs": queued.to_string()}},
        "spec": {"holderIdentity": "gone_00000001", "leaseDurationSeconds": 6},
    });
    std::fs::write(&file, left_by_the_dead.to_string()).expect("written");
    let created = cluster
        .kubectl()
        .args(["create", "-f"])
        .arg(&file)
        .output()
        .expect("kubectl runs");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let before = commits(&repo);

    let (_dir, token) = shared_token();
    let next = replica(&repo, &cluster, &token).await;
    wait_for("the new replica to take the Lease over", || async {
        leader_address(&cluster).as_deref() == Some(next.url.as_str())
    })
    .await;
    let client = next.client();
    wait_for("the jobs taken over", || async {
        client.job("1-2").await.is_ok()
    })
    .await;
    let ran = finished(&client, "1-2").await;
    assert_eq!(ran.status, JobStatus::Succeeded, "{:?}", ran.error);
    let commit = ran.commit.expect("the job not run before commits");
    let note = repo.git(&["notes", "--ref=flux", "show", &commit]);
    assert!(note.contains(r#""jobID":"1-2""#), "{note}");
    let recorded = client.job("1-1").await.expect("the pushed job is recorded");
    assert_eq!(recorded.status, JobStatus::Succeeded);
    assert_eq!(
        recorded.commit.as_deref(),
        Some(pushed.as_str()),
        "not run again"
    );
    assert_eq!(
        commits(&repo),
        before + 1,
        "one commit: the job not run before"
    );
    wait_for("the carts release applied", || async {
        cluster
            .object("Deployment", Some("sock-shop"), "carts")
            .is_some_and(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "weaveworksdemos/carts:0.4.9"
            })
    })
    .await;
    wait_for("the new leader's queue on the Lease to empty", || async {
        let lease = lease(&cluster).expect("the Lease");
        let text = lease["metadata"]["annotations"]["fluxcd.io/queued-jobs"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        serde_json::from_str::<Value>(&text).is_ok_and(|q| q["jobs"] == serde_json::json!([]))
    })
    .await;
}
