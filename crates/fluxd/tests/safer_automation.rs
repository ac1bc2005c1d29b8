//! Safer automation, against real parts: a real registry, a real bare repo,
//! the `fluxd` binary and, for rollouts, the Kubernetes API server double
//! whose test hooks report a rollout as failed. A person's rollback in git
//! holds; a failed rollout is reverted through git; the API says why a
//! container did not move.

use std::time::Duration;

use flux_api::{Change, JobSpec, JobStatus, PolicyChange, PolicySpec, ReasonKind, Workload};
use flux_testkit::daemon::{FRONT_END, Fluxd, finished, sock_shop_repo, wait_for};
use flux_testkit::git::{BRANCH, BareRepo};
use flux_testkit::kube::{ApiServer, WorkloadState};
use flux_testkit::registry::{ImageSpec, Registry};

const FRONT_END_FILE: &str = "manifests/09-front-end-dep.yaml";

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// A registry holding front-end 0.3.12 and 0.3.13, newest last.
async fn registry() -> Registry {
    let registry = Registry::start();
    push(&registry, "0.3.12", "2016-11-18T16:00:00Z").await;
    push(&registry, "0.3.13", "2017-01-10T10:00:00Z").await;
    registry
}

async fn push(registry: &Registry, tag: &str, created: &str) {
    registry
        .push_image("sock-shop/front-end", tag, &ImageSpec::created(created))
        .await;
}

/// fluxd reading `registry`, its automation moved only by events.
async fn start(repo: &BareRepo, registry: &Registry, cluster: Option<&ApiServer>) -> Fluxd {
    start_with(repo, registry, cluster, &[]).await
}

/// The same, with more flags.
async fn start_with(
    repo: &BareRepo,
    registry: &Registry,
    cluster: Option<&ApiServer>,
    extra: &[&str],
) -> Fluxd {
    let include = format!("--registry-include-image={}/*", registry.host());
    let flags = [&[include.as_str(), "--automation-interval=1h"], extra].concat();
    let fluxd = match cluster {
        Some(cluster) => {
            Fluxd::start_with_cluster(fluxd_binary(), repo, &cluster.kubeconfig(), &flags).await
        }
        None => Fluxd::start(fluxd_binary(), repo, &flags).await,
    };
    let client = fluxd.client();
    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await;
        images.is_ok_and(|i| !i[0].containers[0].available.is_empty())
    })
    .await;
    fluxd
}

fn front_end_text(repo: &BareRepo) -> String {
    repo.git(&["show", &format!("{BRANCH}:{FRONT_END_FILE}")])
}

fn subject(repo: &BareRepo) -> String {
    repo.git(&["log", "-1", "--format=%s", BRANCH])
        .trim()
        .to_string()
}

async fn wait_for_subject(repo: &BareRepo, wanted: &str) {
    wait_for(&format!("a commit {wanted:?}"), || async {
        subject(repo) == wanted
    })
    .await;
}

async fn front_end(fluxd: &Fluxd) -> Workload {
    let workloads = fluxd.client().workloads(Some("sock-shop")).await.unwrap();
    workloads.into_iter().find(|w| w.id == FRONT_END).unwrap()
}

/// Long enough for a trigger, a batch window and a push to have happened.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(4)).await;
}

async fn tell_of_image(fluxd: &Fluxd, image: &str) {
    let change = Change::Image { name: image.into() };
    fluxd.client().notify(&change).await.unwrap();
}

fn automate_front_end() -> JobSpec {
    JobSpec::Policy(PolicySpec {
        changes: vec![PolicyChange {
            workload: FRONT_END.into(),
            automated: Some(true),
            ..Default::default()
        }],
        message: None,
        user: None,
    })
}

async fn automate(fluxd: &Fluxd) {
    let client = fluxd.client();
    let submitted = client.submit(&automate_front_end()).await.unwrap();
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
}

/// The sock-shop repo with front-end at `image` and these annotations.
fn annotated_repo(image: &str, annotations: &[(&str, &str)]) -> BareRepo {
    BareRepo::seeded_with(|work| {
        let manifests = work.join("manifests");
        flux_testkit::copy_dir(&flux_testkit::sock_shop_manifests(), &manifests).unwrap();
        let path = manifests.join("09-front-end-dep.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: String = annotations
            .iter()
            .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
            .collect();
        let moved = text
            .replace("weaveworksdemos/front-end:0.3.12", image)
            .replacen(
                "  namespace: sock-shop\n",
                &format!("  namespace: sock-shop\n  annotations:\n{lines}"),
                1,
            );
        std::fs::write(&path, moved).unwrap();
    })
}

#[tokio::test]
async fn a_person_s_rollback_holds_until_a_tag_newer_than_the_one_rolled_back_from() {
    let registry = registry().await;
    let image = registry.image("sock-shop/front-end");
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.13")));
    let fluxd = start(&repo, &registry, None).await;
    automate(&fluxd).await;

    push(&registry, "0.3.14", "2017-02-10T10:00:00Z").await;
    tell_of_image(&fluxd, &image).await;
    wait_for_subject(&repo, &format!("Auto-release {image}:0.3.14")).await;

    let released = front_end_text(&repo);
    let rolled_back = released.replace(&format!("{image}:0.3.14"), &format!("{image}:0.3.13"));
    assert_ne!(rolled_back, released);
    let rollback = repo.commit_file(BRANCH, FRONT_END_FILE, &rolled_back, "Back to 0.3.13");
    let git = Change::Git { branch: None };
    fluxd.client().notify(&git).await.unwrap();
    wait_for("the rollback to be read", || async {
        !front_end(&fluxd).await.holds.is_empty()
    })
    .await;
    let hold = &front_end(&fluxd).await.holds[0];
    assert_eq!(
        (hold.tag.as_str(), hold.from.as_str(), hold.commit.as_str()),
        ("0.3.13", "0.3.14", rollback.as_str())
    );
    assert_eq!(
        hold.summary(),
        format!("held at 0.3.13 by {}", &rollback[..7])
    );
    settle().await;
    assert_eq!(repo.head(BRANCH), rollback, "fluxd leaves the rollback");

    // Git is the record: a fresh fluxd (empty data folder) holds it too.
    drop(fluxd);
    let fluxd = start(&repo, &registry, None).await;
    tell_of_image(&fluxd, &image).await;
    settle().await;
    assert_eq!(repo.head(BRANCH), rollback, "a restart leaves it too");
    let explained = fluxd.client().explain(FRONT_END).await.unwrap();
    let held = explained[0]
        .reasons
        .iter()
        .find(|r| r.kind == ReasonKind::Held && r.tag.as_deref() == Some("0.3.13"))
        .unwrap_or_else(|| panic!("{explained:#?}"));
    assert!(held.message.contains("rollback from 0.3.14"), "{held:?}");
    assert_eq!(explained[0].next, None);

    push(&registry, "0.3.15", "2017-03-10T10:00:00Z").await;
    tell_of_image(&fluxd, &image).await;
    wait_for_subject(&repo, &format!("Auto-release {image}:0.3.15")).await;
    assert!(front_end_text(&repo).contains(&format!("image: {image}:0.3.15")));
    wait_for("the hold to end", || async {
        front_end(&fluxd).await.holds.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_failed_rollout_is_reverted_through_git_and_its_tag_never_picked_again() {
    let registry = registry().await;
    let image = registry.image("sock-shop/front-end");
    let repo = annotated_repo(
        &format!("{image}:0.3.13"),
        &[
            ("fluxcd.io/automated", "true"),
            ("fluxcd.io/rollback-on-failure", "true"),
        ],
    );
    let cluster = ApiServer::start();
    let fluxd = start(&repo, &registry, Some(&cluster)).await;
    let before = front_end_text(&repo);

    push(&registry, "0.3.14", "2017-02-10T10:00:00Z").await;
    tell_of_image(&fluxd, &image).await;
    let release = format!("Auto-release {image}:0.3.14");
    wait_for_subject(&repo, &release).await;
    let runs = |tag: &'static str| {
        let cluster = &cluster;
        move || async move {
            cluster
                .object("Deployment", Some("sock-shop"), "front-end")
                .is_some_and(|d| {
                    let image = &d["spec"]["template"]["spec"]["containers"][0]["image"];
                    image.as_str().is_some_and(|i| i.ends_with(tag))
                })
        }
    };
    wait_for("0.3.14 applied to the cluster", runs(":0.3.14")).await;

    // The controller gives up on the new replica set.
    let revert = format!("Revert \"{release}\"");
    wait_for("the revert commit", || async {
        cluster.set_workload_state(
            "Deployment",
            "sock-shop",
            "front-end",
            WorkloadState::Failed,
        );
        subject(&repo) == revert
    })
    .await;
    let body = repo.git(&["log", "-1", "--format=%b", BRANCH]);
    assert!(body.contains("ProgressDeadlineExceeded"), "{body}");
    // Exactly the bytes before the release, and the failed tag recorded.
    let reverted = front_end_text(&repo);
    let record = "    fluxcd.io/reverted.front-end: \"0.3.14: ProgressDeadlineExceeded: ReplicaSet has timed out progressing.\"\n";
    assert_eq!(
        reverted.replacen(record, "", 1),
        before,
        "the revert puts back the previous image's bytes and adds only the record"
    );
    wait_for("0.3.13 back in the cluster", runs(":0.3.13")).await;

    let workload = front_end(&fluxd).await;
    let shown = &workload.policies.reverted["front-end"];
    assert_eq!(
        shown.to_string(),
        "reverted: 0.3.14 failed its rollout (ProgressDeadlineExceeded: ReplicaSet has timed out progressing.)"
    );
    let client = fluxd.client();
    let jobs = client.jobs().await.unwrap();
    let job = jobs
        .iter()
        .find(|j| matches!(j.spec, JobSpec::Revert(_)))
        .expect("the revert job");
    wait_for("the revert to be applied", || async {
        client
            .job(&job.id)
            .await
            .unwrap()
            .timeline
            .applied
            .is_some()
    })
    .await;
    let timeline = client.job(&job.id).await.unwrap().timeline;
    let (detected, applied) = (timeline.first_seen.unwrap(), timeline.applied.unwrap());
    let took = applied.duration_since(detected);
    println!(
        "failure detected -> revert applied: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );

    // Never 0.3.14 again; the next newer tag is tried as ever.
    let head = repo.head(BRANCH);
    tell_of_image(&fluxd, &image).await;
    settle().await;
    assert_eq!(repo.head(BRANCH), head, "0.3.14 is not picked again");
    let explained = client.explain(FRONT_END).await.unwrap();
    assert!(
        explained[0]
            .reasons
            .iter()
            .any(|r| r.kind == ReasonKind::Reverted && r.tag.as_deref() == Some("0.3.14")),
        "{explained:#?}"
    );
    push(&registry, "0.3.15", "2017-03-10T10:00:00Z").await;
    tell_of_image(&fluxd, &image).await;
    wait_for_subject(&repo, &format!("Auto-release {image}:0.3.15")).await;
}

#[tokio::test]
async fn a_rollout_not_ready_within_the_deadline_is_reverted_when_fluxd_reverts_them_all() {
    let registry = registry().await;
    let image = registry.image("sock-shop/front-end");
    let repo = annotated_repo(
        &format!("{image}:0.3.13"),
        &[("fluxcd.io/automated", "true")],
    );
    let cluster = ApiServer::start();
    let flags = [
        "--automation-rollback-on-failure",
        "--automation-rollout-deadline=2s",
    ];
    let fluxd = start_with(&repo, &registry, Some(&cluster), &flags).await;

    push(&registry, "0.3.14", "2017-02-10T10:00:00Z").await;
    tell_of_image(&fluxd, &image).await;
    let release = format!("Auto-release {image}:0.3.14");
    wait_for_subject(&repo, &release).await;
    // No controller moves it: the new spec is never ready.
    let revert = format!("Revert \"{release}\"");
    wait_for("the revert commit", || async {
        cluster.set_workload_state(
            "Deployment",
            "sock-shop",
            "front-end",
            WorkloadState::Progressing,
        );
        subject(&repo) == revert
    })
    .await;
    assert!(
        front_end_text(&repo)
            .contains("fluxcd.io/reverted.front-end: \"0.3.14: not ready within 2s\""),
        "{}",
        front_end_text(&repo)
    );
    assert!(front_end_text(&repo).contains(&format!("image: {image}:0.3.13")));
}
