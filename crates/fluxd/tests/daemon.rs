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
use flux_testkit::registry::ImageSpec;

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
    // Nothing applies with --cluster=none: the commit stays pending.
    let status = client.sync_status(&pushed).await.unwrap();
    assert!(status.pending.contains(&pushed), "{status:?}");
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
fn kubeconfig_mode_is_refused_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fluxd"))
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
