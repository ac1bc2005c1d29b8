//! Two independent writers (separate mirrors, separate `Repo` values, as two
//! fluxd or a fluxd and a CI job would be) push to one branch at once.

use std::path::Path;

use flux_git::{CommitMessage, CommitSpec, Pushed, Repo, RepoConfig};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv};

const COMMITS_EACH: usize = 50;

fn writer(remote: &BareRepo, env: &IsolatedEnv, data: &Path, name: &str) -> Repo {
    let mut config = RepoConfig::new(remote.url(), BRANCH, data.join(name));
    config.env = env.vars();
    config.committer.name = name.into();
    Repo::new(config)
}

async fn write_all(repo: Repo, name: &'static str) -> Vec<Pushed> {
    let mut pushed = Vec::new();
    for i in 0..COMMITS_EACH {
        // Both writers append to the same file: every lost race needs the
        // edit made again on the other's commit.
        let result = repo
            .commit_and_push(|dir| {
                let path = dir.join("releases.log");
                let mut text = std::fs::read_to_string(&path)?;
                text.push_str(&format!("{name} {i}\n"));
                std::fs::write(&path, text)?;
                let message = CommitMessage::release(format!("{name}:{i}"), &["ns:deployment/app"]);
                Ok::<_, std::io::Error>(Some(
                    CommitSpec::new(message).note(format!("{{\"writer\":\"{name}\",\"n\":{i}}}")),
                ))
            })
            .await;
        pushed.push(result.unwrap_or_else(|e| panic!("{name} commit {i}: {e}")));
    }
    pushed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_lose_no_commit_and_make_no_merge() {
    let remote = BareRepo::seeded(&[("releases.log", "")]);
    let seed = remote.head(BRANCH);
    let env = IsolatedEnv::new();
    let data = tempfile::TempDir::new().expect("temp dir");
    let a = writer(&remote, &env, data.path(), "alpha");
    let b = writer(&remote, &env, data.path(), "beta");

    let (pushed_a, pushed_b) = tokio::join!(write_all(a, "alpha"), write_all(b, "beta"));

    let count = remote.git(&["rev-list", "--count", &format!("{seed}..{BRANCH}")]);
    assert_eq!(count.trim(), (2 * COMMITS_EACH).to_string());
    assert_eq!(
        remote.git(&["rev-list", "--merges", BRANCH]),
        "",
        "no merge commits"
    );

    let log = remote.git(&["show", &format!("{BRANCH}:releases.log")]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2 * COMMITS_EACH, "every edit survived");
    for name in ["alpha", "beta"] {
        let mine: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(name))
            .collect();
        let expected: Vec<String> = (0..COMMITS_EACH).map(|i| format!("{name} {i}")).collect();
        assert_eq!(mine, expected, "{name}'s edits in order");
    }

    // Every reported revision is on the branch, and carries its note.
    let on_branch = remote.git(&["rev-list", BRANCH]);
    for pushed in pushed_a.iter().chain(&pushed_b) {
        assert!(
            on_branch.contains(&pushed.revision),
            "{} lost",
            pushed.revision
        );
    }
    let notes = remote.git(&["notes", "--ref=flux", "list"]);
    assert_eq!(
        notes.lines().count(),
        2 * COMMITS_EACH,
        "every note survived"
    );

    let retried = pushed_a
        .iter()
        .chain(&pushed_b)
        .filter(|p| p.attempts > 1)
        .count();
    let most = pushed_a.iter().chain(&pushed_b).map(|p| p.attempts).max();
    eprintln!(
        "race: {retried} of {} commits lost at least one race; most attempts {most:?}",
        2 * COMMITS_EACH
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_repo_are_queued_and_never_race_each_other() {
    let remote = BareRepo::seeded(&[("releases.log", "")]);
    let env = IsolatedEnv::new();
    let data = tempfile::TempDir::new().expect("temp dir");
    let repo = writer(&remote, &env, data.path(), "fluxd");
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.commit_and_push(move |dir| {
                    let path = dir.join("releases.log");
                    let mut text = std::fs::read_to_string(&path)?;
                    text.push_str(&format!("job {i}\n"));
                    std::fs::write(&path, text)?;
                    Ok::<_, std::io::Error>(Some(CommitSpec::new(CommitMessage::plain(format!(
                        "job {i}"
                    )))))
                })
                .await
            })
        })
        .collect();
    for job in jobs {
        let pushed = job.await.expect("job ran").expect("pushed");
        assert_eq!(
            pushed.attempts, 1,
            "a job of the same repo never loses a race"
        );
    }
    let log = remote.git(&["show", &format!("{BRANCH}:releases.log")]);
    assert_eq!(log.lines().count(), 8);
}
