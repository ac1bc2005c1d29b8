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

mod binaries;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use binaries::{fluxctl, stderr, stdout};
use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo};
use flux_testkit::git::BRANCH;

const NEWER: &str = "weaveworksdemos/front-end:0.3.13";

/// `release --workload front-end -i <NEWER> --timeout 1s` plus `extra`, timed.
fn release(fluxd: &Fluxd, extra: &[&str]) -> (Output, Duration) {
    let base = [
        "--url",
        &fluxd.url,
        "--token",
        &fluxd.token,
        "release",
        "--workload",
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
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let (out, took) = release(&fluxd, &["-o", "json"]);
    let job: flux_api::Job = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("-o json is the job ({e}): {}", stdout(&out)));
    let head = repo.head(BRANCH);
    assert_eq!(job.commit.as_deref(), Some(head.as_str()));
    assert_eq!(job.applied, None, "nothing applies without a cluster");
    assert!(took < Duration::from_secs(30), "ended in {took:?}");
    let message = stderr(&out);
    assert!(message.contains("--cluster=none"), "{message}");
    assert_eq!(job.cluster, Some(false), "fluxd says it has no cluster");
    // A daemon that says it has no cluster is not waited for.
    assert_eq!(out.status.code(), Some(0), "{message}");
    assert!(message.contains("runs without a cluster"), "{message}");
}

#[tokio::test]
async fn release_prints_the_result_and_the_commit_before_waiting_for_it_to_be_applied() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
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
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
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
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
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
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
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
            "--workload",
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

/// fluxctl running in a pseudo-terminal (util-linux `script`), with its
/// screen collected as it is drawn and keys sent as a person would type.
struct Terminal {
    child: std::process::Child,
    keys: std::process::ChildStdin,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    fn run(args: &[&str]) -> Terminal {
        use std::io::Read;
        use std::process::Stdio;
        let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_fluxctl"))
            .chain(args.iter().copied())
            .map(|arg| format!("'{}'", arg.replace('\'', "'\\''")))
            .collect();
        // A fixed size, so the checklist is drawn the same everywhere.
        let command = format!("stty rows 40 cols 200; exec {}", quoted.join(" "));
        let mut child = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .env_remove("FLUX_URL")
            .env_remove("FLUX_TOKEN")
            .env_remove("FLUX_USER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("script (util-linux) runs");
        let keys = child.stdin.take().expect("stdin is piped");
        let mut output = child.stdout.take().expect("stdout is piped");
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let filling = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = output.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                filling
                    .lock()
                    .expect("the reader holds the lock briefly")
                    .extend_from_slice(&buffer[..n]);
            }
        });
        Terminal {
            child,
            keys,
            screen,
        }
    }

    fn screen(&self) -> String {
        let bytes = self.screen.lock().expect("not poisoned").clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits until `text` is on the screen (then a moment more, for the
    /// prompt to start reading keys).
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.screen().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} never shown:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    fn type_keys(&mut self, keys: &str) {
        use std::io::Write;
        for key in keys.chars() {
            write!(self.keys, "{key}").expect("the terminal takes keys");
            self.keys.flush().expect("the terminal takes keys");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for fluxctl to end; its exit code and everything shown.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("script can be waited for") {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), self.screen());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("fluxctl did not end:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const PROMPT: &str = "Updates to release";

fn interactive(fluxd: &Fluxd, target: &[&str]) -> Terminal {
    let base = [
        "--url",
        &fluxd.url,
        "--token",
        &fluxd.token,
        "release",
        "--interactive",
        "--timeout",
        "1s",
    ];
    Terminal::run(&[&base[..], target].concat())
}

#[tokio::test]
async fn interactive_with_every_row_ticked_releases_the_plan() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let mut terminal = interactive(&fluxd, &["--workload", FRONT_END, "-i", NEWER]);
    terminal.wait_for(PROMPT);
    assert!(
        terminal.screen().contains(&format!(
            "{FRONT_END}  front-end: weaveworksdemos/front-end:0.3.12 -> {NEWER}"
        )),
        "{}",
        terminal.screen()
    );
    terminal.type_keys("\r");
    let (_, screen) = terminal.finish();
    assert!(
        screen.contains("Submitting dry-run release ..."),
        "{screen}"
    );
    assert!(
        screen.contains("Submitting selected release ..."),
        "{screen}"
    );
    let after = repo.head(BRANCH);
    assert_ne!(after, before, "{screen}");
    assert!(
        screen.contains(&format!("Commit pushed:\t{}", &after[..7])),
        "{screen}"
    );
    let manifest = repo.git(&["show", "HEAD:manifests/09-front-end-dep.yaml"]);
    assert!(manifest.contains(NEWER), "{manifest}");
}

/// `mongo` runs in carts-db and orders-db: two rows; unticking carts-db
/// releases orders-db alone.
#[tokio::test]
async fn interactive_releases_only_the_ticked_workloads() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let mut terminal = interactive(&fluxd, &["--all", "-i", "mongo:3.6"]);
    terminal.wait_for(PROMPT);
    let shown = terminal.screen();
    assert!(
        shown.contains("sock-shop:deployment/carts-db   carts-db: mongo -> mongo:3.6"),
        "{shown}"
    );
    assert!(
        shown.contains("sock-shop:deployment/orders-db  orders-db: mongo -> mongo:3.6"),
        "{shown}"
    );
    terminal.type_keys(" \r");
    let (_, screen) = terminal.finish();
    let after = repo.head(BRANCH);
    assert_ne!(after, before, "{screen}");
    let changed = repo.git(&["diff", "--name-only", &before, &after]);
    assert_eq!(
        changed.trim(),
        "manifests/13-orders-db-dep.yaml",
        "{screen}"
    );
}

const CACHE: &str = "sock-shop:deployment/cache";
const CACHE_FILE: &str = "manifests/99-cache-dep.yaml";
const CACHE_YAML: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: cache
  namespace: sock-shop
spec:
  template:
    spec:
      containers:
      - name: main
        image: mongo
      - name: mirror
        image: mongo
";

/// Two containers of one workload run `mongo`: unticking `main` must never
/// release it. A daemon that knows the choice releases `mirror` alone; one
/// that does not would release both, which the second plan catches before
/// anything is pushed.
#[tokio::test]
async fn interactive_never_releases_an_unticked_container_of_a_ticked_workload() {
    let repo = flux_testkit::git::BareRepo::seeded_with(|work| {
        let manifests = work.join("manifests");
        flux_testkit::copy_dir(&flux_testkit::sock_shop_manifests(), &manifests)
            .expect("the fixtures can be copied");
        std::fs::write(work.join(CACHE_FILE), CACHE_YAML).expect("the copy is writable");
    });
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let mut terminal = interactive(&fluxd, &["--workload", CACHE, "-i", "mongo:3.6"]);
    terminal.wait_for(PROMPT);
    let shown = terminal.screen();
    assert!(
        shown.contains(&format!("{CACHE}  main: mongo -> mongo:3.6")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{CACHE}  mirror: mongo -> mongo:3.6")),
        "{shown}"
    );
    terminal.type_keys(" \r");
    let (code, screen) = terminal.finish();
    let after = repo.head(BRANCH);
    assert_ne!(after, before, "the ticked container is released: {screen}");
    assert_eq!(code, Some(0), "{screen}");
    let released = repo.git(&["show", &format!("{after}:{CACHE_FILE}")]);
    let expected = CACHE_YAML.replace(
        "- name: mirror\n        image: mongo\n",
        "- name: mirror\n        image: mongo:3.6\n",
    );
    assert_eq!(released, expected, "{screen}");
}

#[tokio::test]
async fn interactive_with_nothing_ticked_pushes_nothing() {
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(&binaries::fluxd(), &repo, &[]).await;
    let before = repo.head(BRANCH);
    let mut terminal = interactive(&fluxd, &["--workload", FRONT_END, "-i", NEWER]);
    terminal.wait_for(PROMPT);
    terminal.type_keys(" \r");
    let (code, screen) = terminal.finish();
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("Nothing chosen; nothing released."),
        "{screen}"
    );
    assert_eq!(repo.head(BRANCH), before);
}
