//! What `fluxctl release` does after the push, against a real `fluxd`
//! started with `--cluster=none` on a bare repo seeded with sock-shop:
//! waiting for the commit to be applied ends with an explanation instead of
//! hanging, `--watch` says there is no cluster to watch, `-v` prints the
//! job's timeline, `-o json` is the job, and `--interactive` wants a
//! terminal.
//!
//! The `fluxd` binary is the one built next to `fluxctl` (`cargo test
//! --workspace` builds both; with `-p fluxctl` alone, `cargo build -p fluxd`
//! first).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo};
use flux_testkit::git::BRANCH;

const NEWER: &str = "weaveworksdemos/front-end:0.3.13";

fn fluxd_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_fluxctl")).with_file_name("fluxd");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p fluxd`",
        path.display()
    );
    path
}

/// Runs fluxctl with `args`, free of the caller's FLUX_* variables.
fn fluxctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env_remove("FLUX_URL")
        .env_remove("FLUX_TOKEN")
        .env_remove("FLUX_USER")
        .output()
        .expect("fluxctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `release -w front-end -i <NEWER> --timeout 1s` plus `extra`, timed.
fn release(fluxd: &Fluxd, extra: &[&str]) -> (Output, Duration) {
    let base = [
        "--url",
        &fluxd.url,
        "--token",
        &fluxd.token,
        "release",
        "-w",
        FRONT_END,
        "-i",
        NEWER,
        "--timeout",
        "1s",
    ];
    let started = Instant::now();
    let out = fluxctl(&[&base[..], extra].concat());
    (out, started.elapsed())
}

#[tokio::test]
async fn a_release_without_a_cluster_ends_and_explains_why_the_commit_is_not_applied() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&fluxd_binary(), &repo, &[]).await;
    let (out, took) = release(&fluxd, &["-o", "json"]);
    let job: flux_api::Job = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("-o json is the job ({e}): {}", stdout(&out)));
    let head = repo.head(BRANCH);
    assert_eq!(job.commit.as_deref(), Some(head.as_str()));
    assert_eq!(job.applied, None, "nothing applies without a cluster");
    assert!(took < Duration::from_secs(30), "ended in {took:?}");
    let message = stderr(&out);
    assert!(message.contains("--cluster=none"), "{message}");
    match job.cluster {
        // A daemon that says it has no cluster is not waited for.
        Some(false) => {
            assert_eq!(out.status.code(), Some(0), "{message}");
            assert!(message.contains("runs without a cluster"), "{message}");
        }
        // One that does not say is waited for until --timeout.
        None => {
            assert_eq!(out.status.code(), Some(1), "{message}");
            let short = &head[..7];
            assert!(
                message.contains(&format!("{short} was not applied within 1s")),
                "{message}"
            );
        }
        Some(true) => panic!("fluxd --cluster=none says it has a cluster"),
    }
}

#[tokio::test]
async fn release_prints_the_result_and_the_commit_before_waiting_for_it_to_be_applied() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&fluxd_binary(), &repo, &[]).await;
    let (out, _) = release(&fluxd, &[]);
    let text = stdout(&out);
    let head = repo.head(BRANCH);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("WORKLOAD"), "{text}");
    assert!(
        lines[1].starts_with(&format!("{FRONT_END}  success  front-end: ")),
        "{text}"
    );
    assert_eq!(
        lines[2],
        format!("Commit pushed:\t{}", &head[..7]),
        "{text}"
    );
    assert!(!text.contains("Commit applied"), "{text}");
    assert!(stderr(&out).starts_with("Submitting release ...\n"));
}

#[tokio::test]
async fn watch_without_a_cluster_says_there_is_no_rollout_to_follow() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&fluxd_binary(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let (out, took) = release(&fluxd, &["--watch"]);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(message.contains("--cluster=none"), "{message}");
    assert!(!message.contains("All workloads ready."), "{message}");
    assert!(took < Duration::from_secs(30), "ended in {took:?}");
    assert_ne!(repo.head(BRANCH), before, "the release itself was pushed");
    assert!(stdout(&out).contains("Commit pushed:"), "{}", stdout(&out));
}

#[tokio::test]
async fn verbose_release_prints_the_timeline_after_the_result() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&fluxd_binary(), &repo, &[]).await;
    let (out, _) = release(&fluxd, &["-v"]);
    let text = stdout(&out);
    let after_commit = text
        .split_once("Commit pushed:")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no commit line: {text}"));
    let steps: Vec<&str> = after_commit.lines().skip(1).collect();
    assert_eq!(steps.len(), 3, "queued, committed, pushed: {text}");
    assert!(steps[0].starts_with("queued     "), "{text}");
    assert!(steps[0].ends_with(" UTC"), "{text}");
    assert!(steps[1].starts_with("committed  +"), "{text}");
    assert!(steps[2].starts_with("pushed     +"), "{text}");
    assert!(steps[2].ends_with('s'), "{text}");
}

#[tokio::test]
async fn interactive_is_refused_without_a_terminal_before_anything_is_asked() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&fluxd_binary(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let (out, _) = release(&fluxd, &["--interactive"]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("--interactive needs a terminal"),
        "{message}"
    );
    assert!(!message.contains("Submitting"), "{message}");
    assert_eq!(repo.head(BRANCH), before);
}

#[test]
fn watch_and_interactive_cannot_go_with_a_dry_run() {
    for flag in ["--watch", "--interactive"] {
        let out = fluxctl(&[
            "--url",
            "http://127.0.0.1:9",
            "release",
            "-w",
            FRONT_END,
            "-i",
            NEWER,
            "--dry-run",
            flag,
        ]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
    }
}
