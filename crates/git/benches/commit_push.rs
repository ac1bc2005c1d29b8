//! Commit and push of a one-line change in a repository of 10,000 files:
//! `flux-git` next to the same sequence of plain git commands in a kept
//! working tree (fetch, reset --hard, clean, edit, add, commit, push), and
//! next to a fresh `git worktree` per change (fetch, worktree add, edit,
//! add, commit, push, worktree remove).
//!
//! Run with `cargo bench -p flux-git --bench commit_push` (optionally
//! `-- <rounds>`, default 20). Prints the figures and the ratios.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flux_git::{CommitMessage, CommitSpec, Repo, RepoConfig};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv, fill_many_files};

const FILES: usize = 10_000;
const EDITED: &str = "ns-000/app-00000.yaml";

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let remote = BareRepo::seeded_with(|dir| fill_many_files(dir, FILES));
    let env = IsolatedEnv::new();
    let data = tempfile::TempDir::new().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut config = RepoConfig::new(remote.url(), BRANCH, data.path().join("flux"));
    config.env = env.vars();
    let repo = Repo::new(config);
    runtime.block_on(repo.fetch()).expect("mirror");
    let plain = PlainGit::clone(&env, &remote.url(), &data.path().join("plain"));
    let kept = KeptTree::clone(&env, &remote.url(), &data.path().join("kept"));

    let (mut ours, mut same, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
    // flux-git and the same sequence alternate, each going first every
    // other round; the first round warms the caches and is not counted.
    for round in 0..=rounds {
        // Each run is one change on its own: a write right after our own
        // push would take the short pause that lets other writers in.
        let settle = || std::thread::sleep(Duration::from_millis(200));
        let flux = || {
            settle();
            let started = Instant::now();
            runtime
                .block_on(repo.commit_and_push(|dir| {
                    append_line(&dir.join(EDITED), &format!("# flux {round}"))?;
                    let message =
                        CommitMessage::release(format!("app:{round}"), &["ns:deployment/app"]);
                    Ok::<_, std::io::Error>(Some(CommitSpec::new(message)))
                }))
                .expect("flux-git commit and push");
            started.elapsed()
        };
        let git = || {
            settle();
            let started = Instant::now();
            kept.commit_and_push(round);
            started.elapsed()
        };
        let (flux_time, git_time) = if round % 2 == 0 {
            (flux(), git())
        } else {
            let git_time = git();
            (flux(), git_time)
        };
        if round > 0 {
            ours.push(flux_time);
            same.push(git_time);
        }
    }
    // A fresh worktree writes and deletes every file: far slower, so fewer
    // rounds, after the others so its disk traffic does not disturb them.
    let fresh_rounds = rounds.clamp(1, 5);
    for round in 0..fresh_rounds {
        let started = Instant::now();
        plain.commit_and_push(round);
        fresh.push(started.elapsed());
    }
    let commits = remote.git(&["rev-list", "--count", BRANCH]);
    assert_eq!(
        commits.trim(),
        (2 * (rounds + 1) + fresh_rounds + 1).to_string()
    );

    println!("commit + push of a one-line change, {FILES} files, {rounds} rounds");
    report("flux-git", &mut ours);
    report("git, same sequence in a kept tree", &mut same);
    report(
        &format!("git, fresh worktree ({fresh_rounds} rounds)"),
        &mut fresh,
    );
    println!(
        "  ratio flux-git / git same sequence: {:.2}x (median)",
        ms(median(&mut ours)) / ms(median(&mut same))
    );
    println!(
        "  ratio flux-git / git fresh worktree: {:.2}x (median)",
        ms(median(&mut ours)) / ms(median(&mut fresh))
    );
}

fn report(name: &str, samples: &mut [Duration]) {
    println!(
        "  {name:<36} median {:>8.1} ms   mean {:>8.1} ms",
        ms(median(samples)),
        ms(mean(samples))
    );
}

/// A working clone kept between changes, as a CI script would keep one.
struct KeptTree<'a> {
    env: &'a IsolatedEnv,
    work: std::path::PathBuf,
}

impl<'a> KeptTree<'a> {
    fn clone(env: &'a IsolatedEnv, url: &str, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("folder");
        env.run(dir, &["clone", "-q", url, "work"]);
        Self {
            env,
            work: dir.join("work"),
        }
    }

    fn commit_and_push(&self, round: usize) {
        let (env, work) = (self.env, &self.work);
        env.run(work, &["fetch", "-q", "origin"]);
        env.run(
            work,
            &["reset", "-q", "--hard", &format!("origin/{BRANCH}")],
        );
        env.run(work, &["clean", "-q", "-ffdx"]);
        append_line(&work.join(EDITED), &format!("# kept {round}")).expect("edit");
        env.run(work, &["add", "-A"]);
        let message = format!("Release app:{round} to ns:deployment/app");
        run(env.git(work).args(["commit", "-q", "-m", &message]));
        env.run(
            work,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{BRANCH}")],
        );
    }
}

/// The plain git sequence a person or a shell script would run.
struct PlainGit<'a> {
    env: &'a IsolatedEnv,
    url: String,
    mirror: std::path::PathBuf,
    work: std::path::PathBuf,
}

impl<'a> PlainGit<'a> {
    fn clone(env: &'a IsolatedEnv, url: &str, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("folder");
        let mirror = dir.join("mirror.git");
        env.run(dir, &["clone", "-q", "--bare", url, "mirror.git"]);
        env.run(
            &mirror,
            &[
                "config",
                "remote.origin.fetch",
                "+refs/heads/*:refs/heads/*",
            ],
        );
        Self {
            env,
            url: url.to_string(),
            work: dir.join("work"),
            mirror,
        }
    }

    fn commit_and_push(&self, round: usize) {
        let (env, mirror, work) = (self.env, &self.mirror, &self.work);
        let work_str = work.to_str().expect("UTF-8 path");
        env.run(mirror, &["fetch", "-q", "--prune", "origin"]);
        env.run(
            mirror,
            &["worktree", "add", "-q", "--detach", work_str, BRANCH],
        );
        append_line(&work.join(EDITED), &format!("# plain {round}")).expect("edit");
        env.run(work, &["add", "-A"]);
        let message = format!("Release app:{round} to ns:deployment/app");
        run(env.git(work).args(["commit", "-q", "-m", &message]));
        env.run(
            work,
            &[
                "push",
                "-q",
                &self.url,
                &format!("HEAD:refs/heads/{BRANCH}"),
            ],
        );
        env.run(mirror, &["worktree", "remove", "--force", work_str]);
    }
}

fn run(command: &mut Command) {
    let status = command.status().expect("git runs");
    assert!(status.success(), "{command:?} failed");
}

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(path)?;
    text.push_str(line);
    text.push('\n');
    std::fs::write(path, text)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len() as u32
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
