//! The CI step on a config repository of 10,000 files and 5,000 commits
//! of history: `fluxctl release
//! --git-url` (clone, edit, commit, push) next to the shell script a
//! pipeline would run otherwise (`git clone --depth 1`, `sed -i` on the
//! files that use the image, `git commit -a`, `git push`), on the same
//! repository in the same run; and flux-git's clone-and-push with a
//! shallow clone next to a full one, the choice `--git-url` makes.
//!
//! Run with `cargo bench -p fluxctl --bench ci_step` (optionally
//! `-- <rounds>`, default 10). Prints the figures and the ratios.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flux_git::{CommitMessage, CommitSpec, Repo, RepoConfig};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv, fill_many_files};

const FILES: usize = 10_000;
/// The workload released to, and its repository (`fill_many_files` gives
/// every app an image of its own).
const WORKLOAD: &str = "default:deployment/app-4242";
const IMAGE: &str = "example.com/app-4242";
const EDITED: &str = "ns-042/app-04242.yaml";
/// Commits on top of the seed, each changing one file, as a config
/// repository gathers them: what a shallow clone leaves behind.
const HISTORY: usize = 5_000;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let remote = BareRepo::seeded_with(|dir| fill_many_files(dir, FILES));
    let env = IsolatedEnv::new();
    add_history(&env, &remote.path(), HISTORY);
    let work = tempfile::TempDir::new().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = remote.url();

    let (mut ours, mut script) = (Vec::new(), Vec::new());
    let (mut shallow, mut full) = (Vec::new(), Vec::new());
    // Each pair alternates which goes first; round 0 warms the caches and
    // is not counted.
    for round in 0..=rounds {
        let fluxctl = || {
            let tag = format!("{IMAGE}:2.0.{}", 2 * round);
            let started = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
                .args(["release", "--git-url", &url, "--git-branch", BRANCH])
                .args(["--workload", WORKLOAD, "--update-image", &tag])
                .envs(env.vars())
                .output()
                .expect("fluxctl runs");
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "fluxctl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        };
        let shell = || {
            let tag = format!("{IMAGE}:2.0.{}", 2 * round + 1);
            let dir = work.path().join(format!("script-{round}"));
            let started = Instant::now();
            run_script(&env, &url, &dir, &tag);
            let took = started.elapsed();
            std::fs::remove_dir_all(&dir).expect("the clone can be removed");
            took
        };
        let (a, b) = pair(round, fluxctl, shell);
        let clone_push = |depth_one: bool| {
            let data = work.path().join(format!("flux-git-{round}-{depth_one}"));
            let mut config = RepoConfig::new(url.clone(), BRANCH, &data);
            config.env = env.vars();
            config.shallow = depth_one;
            let repo = Repo::new(config);
            let started = Instant::now();
            runtime
                .block_on(repo.commit_and_push(|dir| {
                    append_line(&dir.join(EDITED), &format!("# {round} {depth_one}"))?;
                    let message = CommitMessage::plain(format!("bench {round}"));
                    Ok::<_, std::io::Error>(Some(CommitSpec::new(message)))
                }))
                .expect("flux-git commit and push");
            let took = started.elapsed();
            drop(repo);
            std::fs::remove_dir_all(&data).expect("the data folder can be removed");
            took
        };
        let (c, d) = pair(round, || clone_push(true), || clone_push(false));
        if round > 0 {
            ours.push(a);
            script.push(b);
            shallow.push(c);
            full.push(d);
        }
    }
    println!("{FILES} files, {HISTORY} commits of history, {rounds} rounds; medians (p90)");
    report("fluxctl release --git-url", &ours);
    report("shell: clone --depth 1, sed -i, commit -a, push", &script);
    report("flux-git clone and push, shallow", &shallow);
    report("flux-git clone and push, full", &full);
    println!(
        "ratio fluxctl / shell: {:.2}",
        ratio(median(&ours), median(&script))
    );
    println!(
        "ratio shallow / full clone and push: {:.2}",
        ratio(median(&shallow), median(&full))
    );
}

/// Adds `commits` commits to the branch with `git fast-import`, each
/// appending a comment to one of the files.
fn add_history(env: &IsolatedEnv, bare: &Path, commits: usize) {
    use std::io::Write as _;
    let mut stream = String::new();
    for n in 0..commits {
        let i = (n * 7919) % FILES;
        let path = format!("ns-{:03}/app-{i:05}.yaml", i / 100);
        let body = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: example.com/app-{i}:1.0.0\n# change {n}\n"
        );
        let message = format!("Change {n}");
        stream.push_str(&format!(
            "commit refs/heads/{BRANCH}\ncommitter History <history@example.com> {} +0000\ndata {}\n{message}\n",
            1_600_000_000 + n,
            message.len()
        ));
        if n == 0 {
            stream.push_str(&format!("from refs/heads/{BRANCH}^0\n"));
        }
        stream.push_str(&format!(
            "M 100644 inline {path}\ndata {}\n{body}\n",
            body.len()
        ));
    }
    let mut import = env
        .git(bare)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("git fast-import starts");
    import
        .stdin
        .take()
        .expect("piped")
        .write_all(stream.as_bytes())
        .expect("the stream is written");
    assert!(import.wait().expect("fast-import ends").success());
    let packed = env.git(bare).args(["repack", "-adq"]).status();
    assert!(packed.expect("git repack runs").success());
}

/// Runs both, the first one first on even rounds.
fn pair(
    round: usize,
    first: impl FnOnce() -> Duration,
    second: impl FnOnce() -> Duration,
) -> (Duration, Duration) {
    if round.is_multiple_of(2) {
        let a = first();
        (a, second())
    } else {
        let b = second();
        (first(), b)
    }
}

/// What a pipeline runs without fluxctl: no YAML parsing, no check of what
/// changed, no retry when someone else pushed first.
fn run_script(env: &IsolatedEnv, url: &str, dir: &Path, tag: &str) {
    let script = format!(
        "set -e\n\
         git clone -q --depth 1 -b {BRANCH} \"$1\" \"$2\"\n\
         cd \"$2\"\n\
         grep -rlF '{IMAGE}:' --include='*.yaml' . | xargs sed -i 's|{IMAGE}:[^ ]*|{tag}|'\n\
         git -c user.name=ci -c user.email=ci@example.com commit -q -a -m 'Release {tag}'\n\
         git push -q origin {BRANCH}\n"
    );
    let status = Command::new("sh")
        .args(["-c", &script, "sh", url])
        .arg(dir)
        .envs(env.vars())
        .status()
        .expect("sh runs");
    assert!(status.success(), "the shell script failed");
}

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(path)?;
    text.push_str(line);
    text.push('\n');
    std::fs::write(path, text)
}

fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 50)
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
        .get((sorted.len().saturating_sub(1)) * p / 100)
        .copied()
        .unwrap_or_default()
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON)
}

fn report(what: &str, samples: &[Duration]) {
    println!(
        "{what:<50} {:>8.1} ms ({:.1} ms)",
        median(samples).as_secs_f64() * 1000.0,
        percentile(samples, 90).as_secs_f64() * 1000.0
    );
}
