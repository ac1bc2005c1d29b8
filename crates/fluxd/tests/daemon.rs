//! The `fluxd` binary with `--cluster=none`, against real parts: a bare git
//! repo seeded with the sock-shop manifests, and a real registry holding a
//! few tags of the front-end image (the seeded manifest points at it).
//! Everything goes through the client `fluxctl` uses.

use std::process::Command;
use std::time::{Duration, Instant};

use flux_api::{
    Client, ClientError, ImageUpdate, JobSpec, JobStatus, PolicyChange, PolicySpec, ReleaseSpec,
    ResultStatus, Targets,
};
use flux_testkit::daemon::{
    FRONT_END, Fluxd, finished, registry_with_front_end, sock_shop_repo, wait_for,
};
use flux_testkit::git::{BRANCH, BareRepo, free_port};
use flux_testkit::registry::{ImageSpec, Registry};
use flux_testkit::unreachable::{HangingHost, refusing_host};

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// Changed lines of the last commit, `+…` and `-…`, without headers.
fn last_commit_lines(repo: &BareRepo) -> Vec<String> {
    repo.git(&["diff", "-U0", "HEAD~1", "HEAD"])
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .map(str::to_string)
        .collect()
}

fn last_commit_message(repo: &BareRepo) -> String {
    repo.git(&["log", "-1", "--format=%B", BRANCH])
        .trim()
        .to_string()
}

fn release(image: ImageUpdate, dry_run: bool) -> JobSpec {
    JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![FRONT_END.into()]),
        exclude: Vec::new(),
        update: image,
        force: false,
        dry_run,
        message: None,
        user: None,
        containers: Default::default(),
    })
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

#[tokio::test]
async fn workloads_come_from_git_with_every_sock_shop_container() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[]).await;
    let workloads = fluxd.client().workloads(Some("sock-shop")).await.unwrap();
    let containers: usize = workloads.iter().map(|w| w.containers.len()).sum();
    assert_eq!(containers, 15, "{workloads:#?}");
    let front_end = workloads.iter().find(|w| w.id == FRONT_END).unwrap();
    assert_eq!(
        front_end.containers[0].image,
        "weaveworksdemos/front-end:0.3.12"
    );
}

#[tokio::test]
async fn automating_commits_only_the_inserted_annotation_lines() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[]).await;
    let client = fluxd.client();
    let before = repo.head(BRANCH);
    let submitted = client.submit(&automate_front_end()).await.unwrap();
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    let after = repo.head(BRANCH);
    assert_ne!(after, before);
    assert_eq!(job.commit.as_deref(), Some(after.as_str()));
    assert_eq!(job.result[0].workload, FRONT_END);
    assert_eq!(job.result[0].status, ResultStatus::Success);
    assert_eq!(
        last_commit_message(&repo),
        "Automated: sock-shop:deployment/front-end"
    );
    assert_eq!(
        last_commit_lines(&repo),
        ["+  annotations:", "+    fluxcd.io/automated: \"true\""],
    );
    let note = repo.git(&["notes", "--ref=flux", "show", &after]);
    assert!(note.contains(r#""status":"success""#), "{note}");
    wait_for("the view to show the policy", || async {
        client
            .workloads(None)
            .await
            .unwrap()
            .iter()
            .any(|w| w.id == FRONT_END && w.policies.automated)
    })
    .await;
}

#[tokio::test]
async fn releasing_an_image_commits_only_its_bytes_and_a_dry_run_writes_nothing() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let include = format!("--registry-include-image={}/*", registry.host());
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[&include]).await;
    let client = fluxd.client();

    // The registry is scanned for the images in use, and the view shows its tags.
    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await.unwrap();
        images[0].containers[0].available.len() == 3
    })
    .await;

    let before = repo.head(BRANCH);
    let target = format!("{image}:0.3.13");
    let planned = client
        .submit(&release(ImageUpdate::Image(target.clone()), true))
        .await
        .unwrap();
    let plan = planned.plan.expect("a dry run answers with its plan");
    let front_end = plan.iter().find(|r| r.workload == FRONT_END).unwrap();
    assert_eq!(front_end.status, ResultStatus::Success);
    assert_eq!(front_end.updates[0].target, target);
    assert_eq!(repo.head(BRANCH), before, "a dry run commits nothing");

    let submitted = client
        .submit(&release(ImageUpdate::Image(target.clone()), false))
        .await
        .unwrap();
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    assert_eq!(
        last_commit_message(&repo),
        format!("Release {target} to {FRONT_END}")
    );
    assert_eq!(
        last_commit_lines(&repo),
        [
            format!("-        image: {image}:0.3.12"),
            format!("+        image: {image}:0.3.13"),
        ],
    );

    // All latest: the newest tag by creation time, from the cached scan.
    let submitted = client
        .submit(&release(ImageUpdate::AllLatest, false))
        .await
        .unwrap();
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    assert_eq!(
        last_commit_message(&repo),
        format!("Release all latest to {FRONT_END}")
    );
    assert_eq!(
        last_commit_lines(&repo),
        [
            format!("-        image: {image}:0.3.13"),
            format!("+        image: {image}:0.4.0"),
        ],
    );

    // Nothing newer: the job succeeds and leaves no commit.
    let head = repo.head(BRANCH);
    let submitted = client
        .submit(&release(ImageUpdate::AllLatest, false))
        .await
        .unwrap();
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    assert_eq!(job.commit, None);
    let front_end = job.result.iter().find(|r| r.workload == FRONT_END).unwrap();
    assert_eq!(front_end.status, ResultStatus::Skipped);
    assert_eq!(front_end.error.as_deref(), Some("image(s) up to date"));
    assert_eq!(repo.head(BRANCH), head);
}

#[tokio::test]
async fn a_job_without_the_token_is_refused_and_commits_nothing() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let anonymous = Client::new(&fluxd.url, None).unwrap();
    let refused = anonymous.submit(&automate_front_end()).await;
    assert!(
        matches!(refused, Err(ClientError::Unauthorized)),
        "{refused:?}"
    );
    let wrong = Client::new(&fluxd.url, Some("wrong".into())).unwrap();
    assert!(matches!(
        wrong.submit(&automate_front_end()).await,
        Err(ClientError::Unauthorized)
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(repo.head(BRANCH), before);
}

#[tokio::test]
async fn a_failed_job_leaves_no_commit() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[]).await;
    let client = fluxd.client();
    let before = repo.head(BRANCH);
    let spec = JobSpec::Policy(PolicySpec {
        changes: vec![PolicyChange {
            workload: "sock-shop:deployment/no-such-thing".into(),
            locked: Some(true),
            ..Default::default()
        }],
        message: None,
        user: None,
    });
    let submitted = client.submit(&spec).await.unwrap();
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:#?}");
    assert!(
        job.error.as_deref().unwrap_or("").contains("no-such-thing"),
        "{job:#?}"
    );
    assert_eq!(repo.head(BRANCH), before);
}

#[tokio::test]
async fn a_hand_made_commit_shows_after_sync() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[]).await;
    let client = fluxd.client();
    let extra = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: extra\n  namespace: sock-shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: extra\n        image: example/extra:1.0\n";
    let pushed = repo.commit_file(BRANCH, "manifests/99-extra-dep.yaml", extra, "Add extra");
    let answer = client.sync().await.unwrap();
    assert_eq!(answer.revision, pushed);
    assert_eq!(answer.branch, BRANCH);
    let workloads = client.workloads(None).await.unwrap();
    assert!(
        workloads
            .iter()
            .any(|w| w.id == "sock-shop:deployment/extra"),
        "{workloads:#?}"
    );
    // With --cluster=none a revision is synced once read.
    let status = client.sync_status(&pushed).await.unwrap();
    assert!(status.pending.is_empty(), "{status:?}");
    let later = repo.commit_file(BRANCH, "manifests/99-extra-dep.yaml", "", "Remove extra");
    assert!(
        client.sync_status(&later).await.is_err(),
        "a revision fluxd has not fetched is unknown"
    );
}

#[tokio::test]
async fn sigterm_stops_fluxd_cleanly() {
    let repo = sock_shop_repo(None);
    let mut fluxd = Fluxd::start(fluxd_binary(), &repo, &[]).await;
    let killed = Command::new("kill")
        .args(["-TERM", &fluxd.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = fluxd.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "fluxd did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn without_a_cluster_configuration_fluxd_refuses_to_start_and_names_the_way_out() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fluxd"))
        .env("HOME", data.path())
        .env("KUBECONFIG", data.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args([
            "--git-url",
            "file:///nowhere.git",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cluster=none"), "{stderr}");
}

#[tokio::test]
async fn an_image_notification_polls_its_repository_at_once() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let include = format!("--registry-include-image={}/*", registry.host());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let listen_metrics = format!("--listen-metrics={metrics_addr}");
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[&include, &listen_metrics]).await;
    let client = fluxd.client();
    let tags = || async {
        let images = client.images(&[FRONT_END.to_string()], None).await.unwrap();
        images[0].containers[0].available.len()
    };
    wait_for("the first scan", || async { tags().await == 3 }).await;
    registry
        .push_image(
            "sock-shop/front-end",
            "0.4.1",
            &ImageSpec::created("2017-04-01T10:00:00Z"),
        )
        .await;
    // The poll interval is an hour: only the notification can bring the tag in.
    client
        .notify(&flux_api::Change::Image {
            name: image.clone(),
        })
        .await
        .unwrap();
    wait_for("the notified tag", || async { tags().await == 4 }).await;

    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let host = registry.host();
    assert!(
        metrics.contains(&format!(
            r#"flux_registry_requests_total{{host="{host}",status="200"}}"#
        )),
        "{metrics}"
    );
    assert!(metrics.contains("flux_git_ready 1"), "{metrics}");
}

#[tokio::test]
async fn the_users_message_heads_the_commit_and_the_user_is_its_author() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(
        fluxd_binary(),
        &repo,
        &["--git-set-author", "--git-ci-skip"],
    )
    .await;
    let client = fluxd.client();
    let spec = JobSpec::Policy(PolicySpec {
        changes: vec![PolicyChange {
            workload: FRONT_END.into(),
            locked: Some(true),
            ..Default::default()
        }],
        message: Some("freeze for the demo".into()),
        user: Some("Jane <jane@example.com>".into()),
    });
    let submitted = client.submit(&spec).await.unwrap();
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    assert_eq!(
        last_commit_message(&repo),
        "freeze for the demo\n\n- Locked: sock-shop:deployment/front-end\n\n[ci skip]"
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>", BRANCH])
            .trim(),
        "Jane <jane@example.com>|Weave Flux <support@weave.works>"
    );
    let added = last_commit_lines(&repo).join("\n");
    assert!(added.contains("fluxcd.io/locked: \"true\""), "{added}");
    assert!(added.contains("freeze for the demo"), "{added}");
}

/// The sock-shop manifests with front-end at `image` and carrying
/// `annotations` (`key: value` lines).
fn annotated_repo(image: &str, annotations: &[(&str, &str)]) -> BareRepo {
    annotated_repo_with_carts(image, annotations, None)
}

/// The same, with carts's image moved to `carts` when given.
fn annotated_repo_with_carts(
    image: &str,
    annotations: &[(&str, &str)],
    carts: Option<&str>,
) -> BareRepo {
    BareRepo::seeded_with(|work| {
        let manifests = work.join("manifests");
        flux_testkit::copy_dir(&flux_testkit::sock_shop_manifests(), &manifests).unwrap();
        if let Some(carts) = carts {
            let path = manifests.join("01-carts-dep.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            let moved = text.replace("weaveworksdemos/carts:0.4.8", carts);
            assert_ne!(moved, text, "the fixture names carts 0.4.8");
            std::fs::write(&path, moved).unwrap();
        }
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

const AUTOMATED: (&str, &str) = ("fluxcd.io/automated", "true");

/// fluxd with automation triggered only by events (new tags, new heads).
async fn automating_fluxd(repo: &BareRepo, registry: &Registry) -> Fluxd {
    let include = format!("--registry-include-image={}/*", registry.host());
    let fluxd = Fluxd::start(
        fluxd_binary(),
        repo,
        &[&include, "--automation-interval=1h"],
    )
    .await;
    let client = fluxd.client();
    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await.unwrap();
        !images[0].containers[0].available.is_empty()
    })
    .await;
    fluxd
}

fn commit_count(repo: &BareRepo) -> usize {
    repo.git(&["rev-list", "--count", BRANCH])
        .trim()
        .parse()
        .unwrap()
}

/// Long enough for a trigger, a batch window and a push to have happened.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(4)).await;
}

async fn wait_for_commits(repo: &BareRepo, count: usize) {
    wait_for("the automation commit", || async {
        commit_count(repo) >= count
    })
    .await;
}

#[tokio::test]
async fn a_new_tag_is_released_to_an_automated_workload_in_one_commit() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = annotated_repo(&format!("{image}:0.4.0"), &[AUTOMATED]);
    let fluxd = automating_fluxd(&repo, &registry).await;
    let client = fluxd.client();
    let start = commit_count(&repo);
    settle().await;
    assert_eq!(commit_count(&repo), start, "already at the newest tag");

    registry
        .push_image(
            "sock-shop/front-end",
            "0.5.0",
            &ImageSpec::created("2017-06-01T10:00:00Z"),
        )
        .await;
    let pushed_at = jiff::Timestamp::now();
    let change = flux_api::Change::Image {
        name: image.clone(),
    };
    client.notify(&change).await.unwrap();
    wait_for_commits(&repo, start + 1).await;
    assert_eq!(
        last_commit_message(&repo),
        format!("Auto-release {image}:0.5.0")
    );
    assert_eq!(
        last_commit_lines(&repo),
        [
            format!("-        image: {image}:0.4.0"),
            format!("+        image: {image}:0.5.0"),
        ],
    );
    // The note keeps when the scanner first saw the tag.
    let note = repo.git(&["notes", "--ref=flux", "show", &repo.head(BRANCH)]);
    let note: serde_json::Value = serde_json::from_str(&note).unwrap();
    assert_eq!(note["spec"]["kind"], "automation", "{note}");
    assert_eq!(note["spec"]["workloads"][0], FRONT_END, "{note}");
    let seen: jiff::Timestamp = note["spec"]["first_seen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seen > pushed_at && seen <= jiff::Timestamp::now(), "{note}");
    settle().await;
    assert_eq!(commit_count(&repo), start + 1, "one commit, no repeats");

    // Three tags at once, a notification each: one commit, to the newest.
    for (tag, created) in [
        ("0.6.0", "2017-07-01T10:00:00Z"),
        ("0.6.1", "2017-07-02T10:00:00Z"),
        ("0.6.2", "2017-07-03T10:00:00Z"),
    ] {
        registry
            .push_image("sock-shop/front-end", tag, &ImageSpec::created(created))
            .await;
    }
    for _ in 0..3 {
        client.notify(&change).await.unwrap();
    }
    wait_for_commits(&repo, start + 2).await;
    settle().await;
    assert_eq!(commit_count(&repo), start + 2, "one commit for the burst");
    assert_eq!(
        last_commit_lines(&repo),
        [
            format!("-        image: {image}:0.5.0"),
            format!("+        image: {image}:0.6.2"),
        ],
    );
    drop(fluxd);

    // A fresh daemon (empty data dir) decides from git and the registry:
    // a tag created earlier than the one running is never released.
    let fluxd = automating_fluxd(&repo, &registry).await;
    registry
        .push_image(
            "sock-shop/front-end",
            "9.9.9",
            &ImageSpec::created("2015-01-01T10:00:00Z"),
        )
        .await;
    fluxd.client().notify(&change).await.unwrap();
    settle().await;
    assert_eq!(commit_count(&repo), start + 2, "no downgrade");
    assert!(
        repo.git(&["show", &format!("{BRANCH}:manifests/09-front-end-dep.yaml")])
            .contains(&format!("image: {image}:0.6.2"))
    );
}

#[tokio::test]
async fn a_semver_policy_restricts_what_automation_releases() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = annotated_repo(
        &format!("{image}:0.3.12"),
        &[AUTOMATED, ("fluxcd.io/tag.front-end", "semver:~0.3")],
    );
    let start = commit_count(&repo);
    // The check after the first read of the head finds 0.3.13 (0.4.0 is
    // outside the range).
    let _fluxd = automating_fluxd(&repo, &registry).await;
    wait_for_commits(&repo, start + 1).await;
    assert_eq!(
        last_commit_message(&repo),
        format!("Auto-release {image}:0.3.13")
    );
    assert_eq!(
        last_commit_lines(&repo),
        [
            format!("-        image: {image}:0.3.12"),
            format!("+        image: {image}:0.3.13"),
        ],
    );
    settle().await;
    assert_eq!(commit_count(&repo), start + 1);
}

#[tokio::test]
async fn a_locked_automated_workload_is_not_released() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = annotated_repo(
        &format!("{image}:0.3.12"),
        &[AUTOMATED, ("fluxcd.io/locked", "true")],
    );
    let start = commit_count(&repo);
    let fluxd = automating_fluxd(&repo, &registry).await;
    let change = flux_api::Change::Image { name: image };
    fluxd.client().notify(&change).await.unwrap();
    settle().await;
    assert_eq!(commit_count(&repo), start);
}

#[tokio::test]
async fn registry_platform_and_use_labels_decide_what_is_available() {
    let registry = Registry::start();
    let name = "sock-shop/front-end";
    registry
        .push_image(name, "0.3.12", &ImageSpec::created("2016-11-18T16:00:00Z"))
        .await;
    let arm = ImageSpec::created("2016-12-01T10:00:00Z")
        .platform("linux", "arm64")
        .label("org.opencontainers.image.created", "2024-05-01T12:00:00Z");
    registry.push_image(name, "0.4.0-arm", &arm).await;
    let image = registry.image(name);
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let platform = "--registry-platform=linux/arm64";
    let labels = format!("--registry-use-labels={}/sock-shop/*", registry.host());
    let include = format!("--registry-include-image={}/*", registry.host());
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[platform, &labels, &include]).await;
    let client = fluxd.client();
    let available = || async {
        let images = client.images(&[FRONT_END.to_string()], None).await.unwrap();
        images[0].containers[0].available.clone()
    };
    wait_for("the first scan", || async { !available().await.is_empty() }).await;

    // Only the arm64 image is wanted; its time is the label's, not the config's.
    let available = available().await;
    let tags: Vec<&str> = available.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, ["0.4.0-arm"]);
    assert_eq!(
        available[0].created.map(|c| c.to_string()).as_deref(),
        Some("2024-05-01T12:00:00Z")
    );
}

const CARTS: &str = "sock-shop:deployment/carts";

/// What the API says of carts's repository: its tags and its error.
async fn carts_images(client: &Client) -> (usize, Option<String>) {
    let images = client.images(&[CARTS.to_string()], None).await.unwrap();
    let container = &images[0].containers[0];
    (container.available.len(), container.error.clone())
}

#[tokio::test]
async fn a_registry_host_that_hangs_holds_up_no_other_hosts_tags() {
    let hanging = HangingHost::start();
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let carts = hanging.image("sock-shop/carts");
    let repo = annotated_repo_with_carts(
        &format!("{image}:0.4.0"),
        &[AUTOMATED],
        Some(&format!("{carts}:0.4.8")),
    );
    let include_local = format!("--registry-include-image={}/*", registry.host());
    let include_hanging = format!("--registry-include-image={}/*", hanging.host());
    let fluxd = Fluxd::start(
        fluxd_binary(),
        &repo,
        &[
            &include_local,
            &include_hanging,
            "--registry-poll-interval=1s",
            "--automation-interval=1h",
        ],
    )
    .await;
    let client = fluxd.client();
    wait_for("fluxd to ask the hanging host", || async {
        hanging.accepted() >= 1
    })
    .await;
    // The hanging host holds its request for the client's timeout, then
    // the retries: minutes. Front-end's host is polled meanwhile.
    wait_for("front-end's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await.unwrap();
        images[0].containers[0].available.len() == 3
    })
    .await;
    let start = commit_count(&repo);

    registry
        .push_image(
            "sock-shop/front-end",
            "0.5.0",
            &ImageSpec::created("2017-06-01T10:00:00Z"),
        )
        .await;
    let pushed_at = jiff::Timestamp::now();
    // No notification: only front-end's host's own clock brings the tag in.
    wait_for_commits(&repo, start + 1).await;
    assert_eq!(
        last_commit_message(&repo),
        format!("Auto-release {image}:0.5.0")
    );
    let note = repo.git(&["notes", "--ref=flux", "show", &repo.head(BRANCH)]);
    let note: serde_json::Value = serde_json::from_str(&note).unwrap();
    let seen: jiff::Timestamp = note["spec"]["first_seen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seen > pushed_at && seen <= jiff::Timestamp::now(), "{note}");

    // All the while, the hanging host's poll is still under way: carts's
    // repository is not scanned yet (a poll that ended, even in failure,
    // would say why), and its request was taken and never answered.
    assert_eq!(
        carts_images(&client).await,
        (0, Some("not scanned yet".to_string())),
        "{}",
        fluxd.log()
    );
    assert!(hanging.accepted() >= 1);
    assert!(
        !fluxd.log().contains("registry host unreachable"),
        "a host still being waited for is not judged yet:\n{}",
        fluxd.log()
    );
}

/// `flux_registry_requests_total` of `host` that got no response.
async fn requests_unanswered(fluxd: &Fluxd, host: &str) -> u64 {
    let metrics = reqwest::get(format!("{}/metrics", fluxd.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!(r#"flux_registry_requests_total{{host="{host}",status="error"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.parse().unwrap())
}

fn said(fluxd: &Fluxd, message: &str) -> usize {
    fluxd.log().matches(message).count()
}

#[tokio::test]
async fn an_unreachable_registry_host_is_said_once_and_a_notification_finds_it_back() {
    let down = refusing_host();
    let carts = format!("{down}/sock-shop/carts");
    let repo = annotated_repo_with_carts(
        "weaveworksdemos/front-end:0.3.12",
        &[],
        Some(&format!("{carts}:0.4.8")),
    );
    let include = format!("--registry-include-image={down}/*");
    // Polled hourly: after the first poll only notifications ask the host.
    let fluxd = Fluxd::start(fluxd_binary(), &repo, &[&include]).await;
    let client = fluxd.client();
    let host = down.to_string();
    wait_for("carts's error in the view", || async {
        carts_images(&client)
            .await
            .1
            .is_some_and(|e| e.contains("cannot connect"))
    })
    .await;
    wait_for("the host said unreachable", || async {
        said(&fluxd, "registry host unreachable") > 0
    })
    .await;

    // More polls that get no answer (a notification, then its re-checks).
    let change = flux_api::Change::Image {
        name: carts.clone(),
    };
    let before = requests_unanswered(&fluxd, &host).await;
    client.notify(&change).await.unwrap();
    wait_for("two more polls without an answer", || async {
        requests_unanswered(&fluxd, &host).await >= before + 10
    })
    .await;
    assert_eq!(
        said(&fluxd, "registry host unreachable"),
        1,
        "{}",
        fluxd.log()
    );
    assert!(!fluxd.log().contains("cannot list tags"), "{}", fluxd.log());

    // The host comes up: the next notification polls it at once, though
    // its clock would wait an hour.
    let registry = Registry::start_at(down);
    registry
        .push_image(
            "sock-shop/carts",
            "0.4.8",
            &ImageSpec::created("2017-01-10T10:00:00Z"),
        )
        .await;
    client.notify(&change).await.unwrap();
    wait_for("carts's tags in the view", || async {
        carts_images(&client).await == (1, None)
    })
    .await;
    wait_for("the host said reachable again", || async {
        said(&fluxd, "registry host reachable again") > 0
    })
    .await;
    assert_eq!(
        said(&fluxd, "registry host reachable again"),
        1,
        "{}",
        fluxd.log()
    );
    assert_eq!(
        said(&fluxd, "registry host unreachable"),
        1,
        "{}",
        fluxd.log()
    );
}

#[tokio::test]
async fn a_tag_seen_before_automation_was_on_carries_when_it_was_seen() {
    let registry = registry_with_front_end().await;
    let image = registry.image("sock-shop/front-end");
    let repo = annotated_repo(&format!("{image}:0.4.0"), &[]);
    let fluxd = automating_fluxd(&repo, &registry).await;
    let client = fluxd.client();
    registry
        .push_image(
            "sock-shop/front-end",
            "0.5.0",
            &ImageSpec::created("2017-06-01T10:00:00Z"),
        )
        .await;
    let pushed_at = jiff::Timestamp::now();
    client
        .notify(&flux_api::Change::Image {
            name: image.clone(),
        })
        .await
        .unwrap();
    wait_for("the scanner to see 0.5.0", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await.unwrap();
        images[0].containers[0]
            .available
            .iter()
            .any(|t| t.tag == "0.5.0")
    })
    .await;
    let seen_by = jiff::Timestamp::now();

    // Automation is turned on by a hand-made commit: the job that releases
    // 0.5.0 starts from the new head, not from the tag's own trigger.
    let path = "manifests/09-front-end-dep.yaml";
    let text = repo.git(&["show", &format!("{BRANCH}:{path}")]);
    let automated = text.replacen(
        "  annotations:\n",
        "  annotations:\n    fluxcd.io/automated: \"true\"\n",
        1,
    );
    assert_ne!(automated, text);
    let start = commit_count(&repo) + 1;
    repo.commit_file(BRANCH, path, &automated, "Automate front-end");
    client.sync().await.unwrap();
    wait_for_commits(&repo, start + 1).await;
    assert_eq!(
        last_commit_message(&repo),
        format!("Auto-release {image}:0.5.0")
    );

    // The job records its commit just after the push lands.
    let head = repo.head(BRANCH);
    wait_for("the automation job to record its commit", || async {
        client.jobs().await.is_ok_and(|jobs| {
            jobs.iter()
                .any(|j| j.commit.as_deref() == Some(head.as_str()))
        })
    })
    .await;
    let job = client
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.commit.as_deref() == Some(head.as_str()))
        .expect("the automation job");
    let seen = job
        .timeline
        .first_seen
        .expect("the job knows when its tag was first seen");
    assert!(
        seen > pushed_at && seen <= seen_by,
        "{seen} not in {pushed_at}..{seen_by}"
    );
    let note = repo.git(&["notes", "--ref=flux", "show", &repo.head(BRANCH)]);
    let note: serde_json::Value = serde_json::from_str(&note).unwrap();
    assert_eq!(
        note["spec"]["first_seen"],
        serde_json::json!(seen.to_string()),
        "{note}"
    );
}

#[tokio::test]
async fn git_path_dot_is_the_whole_repo_as_git_users_mean_it() {
    let extra = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: extra\n  namespace: sock-shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: extra\n        image: example/extra:1.0\n";
    for path in [".", "./"] {
        let repo = sock_shop_repo(None);
        let fluxd = Fluxd::start(fluxd_binary(), &repo, &["--git-path", path]).await;
        let client = fluxd.client();
        let pushed = repo.commit_file(BRANCH, "top-level-dep.yaml", extra, "Add extra");
        let answer = client.sync().await.unwrap();
        assert_eq!(answer.revision, pushed, "{path}");
        let workloads = client.workloads(None).await.unwrap();
        for id in [FRONT_END, "sock-shop:deployment/extra"] {
            assert!(workloads.iter().any(|w| w.id == id), "{path}: no {id}");
        }
        let status = client.sync_status(&pushed).await.unwrap();
        assert!(status.pending.is_empty(), "{path}: {status:?}");
    }
}

#[tokio::test]
async fn git_paths_spelled_with_dots_and_slashes_name_their_folder() {
    for path in ["manifests/", "./manifests", "./manifests/"] {
        let repo = sock_shop_repo(None);
        let fluxd = Fluxd::start(fluxd_binary(), &repo, &["--git-path", path]).await;
        let workloads = fluxd.client().workloads(Some("sock-shop")).await.unwrap();
        assert!(workloads.iter().any(|w| w.id == FRONT_END), "{path}");
    }
}

#[test]
fn a_git_path_outside_the_repo_is_refused_at_start() {
    for (path, why) in [("../elsewhere", "leaves the repo"), ("/etc", "absolute")] {
        let data = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_fluxd"))
            .env("HOME", data.path())
            .args([
                "--cluster=none",
                "--git-url",
                "file:///nowhere.git",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--git-path", path])
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{path}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--git-path") && stderr.contains(why),
            "{path}: {stderr}"
        );
    }
}
