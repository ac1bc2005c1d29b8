//! The config repository against real bare repositories over `file://`.

use std::path::Path;

use flux_git::{
    CommitMessage, CommitSpec, GitError, PolicyChange, Repo, RepoConfig, RepoState, SigningKey,
};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv};
use tempfile::TempDir;

struct Setup {
    remote: BareRepo,
    env: IsolatedEnv,
    data: TempDir,
}

impl Setup {
    fn new() -> Self {
        let remote = BareRepo::seeded(&[
            ("manifests/app.yaml", "image: app:1.0.0\n"),
            ("manifests/db.yaml", "image: db:5\n"),
            ("README.md", "config\n"),
        ]);
        Self {
            remote,
            env: IsolatedEnv::new(),
            data: TempDir::new().expect("temp dir"),
        }
    }

    fn config(&self) -> RepoConfig {
        let mut config = RepoConfig::new(self.remote.url(), BRANCH, self.data.path().join("git"));
        config.env = self.env.vars();
        config.paths = vec!["manifests".into()];
        config.committer.name = "Flux Bot".into();
        config.committer.email = "flux@example.com".into();
        config
    }

    fn repo(&self) -> Repo {
        Repo::new(self.config())
    }
}

fn set_image(dir: &Path, image: &str) -> std::io::Result<Option<CommitSpec>> {
    std::fs::write(dir.join("manifests/app.yaml"), format!("image: {image}\n"))?;
    Ok(Some(CommitSpec::new(CommitMessage::release(
        image,
        &["default:deployment/app"],
    ))))
}

#[tokio::test]
async fn refresh_clones_the_mirror_and_becomes_ready() {
    let setup = Setup::new();
    let repo = setup.repo();
    assert_eq!(repo.status().state, RepoState::New);
    let status = repo.refresh().await.expect("refresh");
    assert_eq!(status.state, RepoState::Ready, "{status:?}");
    assert_eq!(status.last_error, None);
    assert_eq!(
        status.head.as_deref(),
        Some(setup.remote.head(BRANCH).as_str())
    );
    // The write probe left no tag behind.
    assert_eq!(setup.remote.git(&["tag", "--list"]), "");
}

#[tokio::test]
async fn commit_and_push_records_message_committer_and_note() {
    let setup = Setup::new();
    let repo = setup.repo();
    repo.refresh().await.expect("refresh");
    let pushed = repo
        .commit_and_push(|dir| {
            set_image(dir, "app:1.1.0").map(|spec| {
                spec.map(|s| {
                    CommitSpec {
                        message: s.message.headed_by(Some("Ship the fix")),
                        ..s
                    }
                    .note(r#"{"result":{"default:deployment/app":"success"}}"#)
                })
            })
        })
        .await
        .expect("pushed");
    assert_eq!(pushed.attempts, 1);
    assert_eq!(setup.remote.head(BRANCH), pushed.revision);
    let shown = setup.remote.git(&[
        "show",
        "-s",
        "--format=%an <%ae>|%cn <%ce>|%B",
        &pushed.revision,
    ]);
    assert_eq!(
        shown.trim_end(),
        "Flux Bot <flux@example.com>|Flux Bot <flux@example.com>|Ship the fix\n\nRelease app:1.1.0 to default:deployment/app"
    );
    let file = setup
        .remote
        .git(&["show", &format!("{}:manifests/app.yaml", pushed.revision)]);
    assert_eq!(file, "image: app:1.1.0\n");
    let note = setup
        .remote
        .git(&["notes", "--ref=flux", "show", &pushed.revision]);
    assert_eq!(
        note.trim_end(),
        r#"{"result":{"default:deployment/app":"success"}}"#
    );
    // A fresh Repo (a restarted fluxd) reads the note back from the remote.
    let restarted = Repo::new(RepoConfig {
        data_dir: setup.data.path().join("after-restart"),
        ..setup.config()
    });
    restarted.fetch().await.expect("fetch");
    assert_eq!(
        restarted
            .note(&pushed.revision)
            .await
            .expect("note")
            .as_deref()
            .map(str::trim_end),
        Some(r#"{"result":{"default:deployment/app":"success"}}"#)
    );
    assert!(
        restarted
            .note(&setup.remote.head(BRANCH))
            .await
            .expect("note")
            .is_some()
    );
}

#[tokio::test]
async fn set_author_makes_the_requesting_user_the_author() {
    let setup = Setup::new();
    let repo = Repo::new(RepoConfig {
        set_author: true,
        ..setup.config()
    });
    let by_name = repo
        .commit_and_push(|dir| set_image(dir, "app:2").map(|s| s.map(|s| s.author("jane"))))
        .await
        .expect("pushed");
    let by_address = repo
        .commit_and_push(|dir| {
            set_image(dir, "app:3").map(|s| s.map(|s| s.author("Jane Doe <jane@example.org>")))
        })
        .await
        .expect("pushed");
    let who = |rev: &str| {
        setup
            .remote
            .git(&["show", "-s", "--format=%an <%ae>|%cn <%ce>", rev])
            .trim_end()
            .to_string()
    };
    assert_eq!(
        who(&by_name.revision),
        "jane <flux@example.com>|Flux Bot <flux@example.com>"
    );
    assert_eq!(
        who(&by_address.revision),
        "Jane Doe <jane@example.org>|Flux Bot <flux@example.com>"
    );

    // Without --git-set-author the requesting user is not the author.
    let plain = setup.repo();
    let pushed = plain
        .commit_and_push(|dir| set_image(dir, "app:4").map(|s| s.map(|s| s.author("jane"))))
        .await
        .expect("pushed");
    assert_eq!(
        who(&pushed.revision),
        "Flux Bot <flux@example.com>|Flux Bot <flux@example.com>"
    );
}

#[tokio::test]
async fn ci_skip_marker_ends_the_commit_message() {
    let setup = Setup::new();
    let repo = Repo::new(RepoConfig {
        ci_skip: Some("[ci skip]".into()),
        ..setup.config()
    });
    let pushed = repo
        .commit_and_push(|dir| {
            std::fs::write(
                dir.join("manifests/app.yaml"),
                "image: app:1.0.0\n# locked\n",
            )?;
            let message = CommitMessage::policies(&[PolicyChange::Locked(vec![
                "default:deployment/app".into(),
            ])]);
            Ok::<_, std::io::Error>(Some(CommitSpec::new(message)))
        })
        .await
        .expect("pushed");
    let body = setup
        .remote
        .git(&["show", "-s", "--format=%B", &pushed.revision]);
    assert_eq!(
        body.trim_end(),
        "Locked: default:deployment/app\n\n[ci skip]"
    );
}

#[tokio::test]
async fn edit_that_changes_nothing_is_reported_and_nothing_is_pushed() {
    let setup = Setup::new();
    let before = setup.remote.head(BRANCH);
    let repo = setup.repo();
    let same = repo
        .commit_and_push(|dir| set_image(dir, "app:1.0.0"))
        .await
        .expect_err("nothing changed");
    assert!(matches!(same, GitError::NothingToCommit), "{same:?}");
    let declined = repo
        .commit_and_push(|_| Ok::<_, std::io::Error>(None))
        .await
        .expect_err("edit declined");
    assert!(
        matches!(declined, GitError::NothingToCommit),
        "{declined:?}"
    );
    let failed = repo
        .commit_and_push(|dir| -> std::io::Result<Option<CommitSpec>> {
            std::fs::read(dir.join("manifests/gone.yaml"))?;
            unreachable!("the file does not exist")
        })
        .await
        .expect_err("edit failed");
    assert!(matches!(failed, GitError::Edit(_)), "{failed:?}");
    assert!(failed.to_string().contains("No such file"), "{failed}");
    assert_eq!(setup.remote.head(BRANCH), before);
    // One checkout is kept for the next write, no more.
    let checkouts = setup.data.path().join("git/checkouts");
    assert_eq!(
        std::fs::read_dir(&checkouts)
            .map(|d| d.count())
            .unwrap_or(0),
        1
    );
}

#[tokio::test]
async fn lost_race_reapplies_the_edit_on_the_new_head() {
    let setup = Setup::new();
    let repo = setup.repo();
    let mut calls = 0;
    let pushed = repo
        .commit_and_push(|dir| {
            calls += 1;
            if calls == 1 {
                // Someone else pushes while we edit.
                setup
                    .remote
                    .commit_file(BRANCH, "manifests/db.yaml", "image: db:6\n", "Bump db");
            }
            set_image(dir, "app:1.2.0")
        })
        .await
        .expect("pushed on the second attempt");
    assert_eq!(calls, 2);
    assert_eq!(pushed.attempts, 2);
    let log = setup.remote.git(&["log", "--format=%s", BRANCH]);
    assert_eq!(
        log,
        "Release app:1.2.0 to default:deployment/app\nBump db\nSeed\n"
    );
    assert_eq!(setup.remote.git(&["rev-list", "--merges", BRANCH]), "");
}

#[tokio::test]
async fn change_that_no_longer_applies_after_a_race_is_reported() {
    let setup = Setup::new();
    let repo = setup.repo();
    let mut calls = 0;
    let error = repo
        .commit_and_push(|dir| -> std::io::Result<Option<CommitSpec>> {
            calls += 1;
            if calls == 1 {
                // Someone else sets the same image by hand meanwhile.
                setup.remote.commit_file(
                    BRANCH,
                    "manifests/app.yaml",
                    "image: app:9\n",
                    "Hand edit",
                );
            }
            set_image(dir, "app:9")
        })
        .await
        .expect_err("no longer applies");
    match &error {
        GitError::NoLongerApplies { attempt, .. } => assert_eq!(*attempt, 2),
        other => panic!("unexpected {other:?}"),
    }

    let mut calls = 0;
    let error = repo
        .commit_and_push(|dir| -> std::io::Result<Option<CommitSpec>> {
            calls += 1;
            if calls == 1 {
                setup
                    .remote
                    .commit_file(BRANCH, "manifests/db.yaml", "", "Empty db");
                std::fs::write(dir.join("manifests/db.yaml"), "image: db:7\n")?;
                return Ok(Some(CommitSpec::new(CommitMessage::plain("db 7"))));
            }
            // The edit reads what it needs and fails when it is gone.
            let text = std::fs::read_to_string(dir.join("manifests/db.yaml"))?;
            if text.is_empty() {
                return Err(std::io::Error::other(
                    "manifests/db.yaml: no image to update",
                ));
            }
            Ok(None)
        })
        .await
        .expect_err("no longer applies");
    assert!(
        matches!(
            &error,
            GitError::NoLongerApplies {
                source: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("no image to update"), "{error}");
}

#[tokio::test]
async fn push_refused_by_the_server_is_not_retried() {
    let setup = Setup::new();
    let hook = setup.remote.path().join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n").expect("hook");
    make_executable(&hook);
    let repo = setup.repo();
    let status = repo.refresh().await.expect("refresh");
    assert_eq!(status.state, RepoState::ReadOnly, "{status:?}");
    let reason = status.last_error.expect("why read-only");
    assert!(reason.contains("pre-receive hook declined"), "{reason}");
    assert!(reason.contains("branch is protected"), "{reason}");

    let mut calls = 0;
    let error = repo
        .commit_and_push(|dir| {
            calls += 1;
            set_image(dir, "app:5")
        })
        .await
        .expect_err("rejected");
    assert_eq!(calls, 1);
    assert!(matches!(error, GitError::PushRejected { .. }), "{error:?}");
    assert!(error.to_string().contains("branch is protected"), "{error}");
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test]
async fn unknown_branch_is_reported_with_git_stderr() {
    let setup = Setup::new();
    let repo = Repo::new(RepoConfig {
        branch: "production".into(),
        ..setup.config()
    });
    let error = repo.refresh().await.expect_err("unknown branch");
    assert!(matches!(error, GitError::UnknownBranch { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("branch \"production\" does not exist"),
        "{text}"
    );
    assert!(text.contains("fatal:"), "git's stderr attached: {text}");
    let status = repo.status();
    assert_eq!(status.state, RepoState::Cloned);
    assert_eq!(status.last_error, Some(text));
}

#[tokio::test]
async fn missing_path_is_reported_with_git_stderr() {
    let setup = Setup::new();
    let repo = Repo::new(RepoConfig {
        paths: vec!["manifests".into(), "clusters/prod".into()],
        ..setup.config()
    });
    let error = repo.refresh().await.expect_err("missing path");
    match &error {
        GitError::MissingPath { path, stderr, .. } => {
            assert_eq!(path, "clusters/prod");
            assert!(stderr.contains("clusters/prod"), "{stderr}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(repo.status().state, RepoState::Cloned);
}

#[tokio::test]
async fn absent_repository_and_unreachable_host_are_told_apart() {
    let setup = Setup::new();
    let absent = Repo::new(RepoConfig {
        url: format!("file://{}/nothing-here.git", setup.data.path().display()),
        ..setup.config()
    });
    let error = absent.refresh().await.expect_err("no repository");
    assert!(matches!(error, GitError::NotFound { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("does not appear to be a git repository"),
        "{error}"
    );
    assert_eq!(absent.status().state, RepoState::Unreachable);

    let port = flux_testkit::git::free_port();
    let unreachable = Repo::new(RepoConfig {
        url: format!("ssh://git@127.0.0.1:{port}/config.git"),
        ssh: Some(flux_git::SshOptions {
            key: setup.data.path().join("no-key"),
            known_hosts: setup.data.path().join("known_hosts"),
            config_file: Some("/dev/null".into()),
        }),
        ..setup.config()
    });
    let error = unreachable.refresh().await.expect_err("connection refused");
    assert!(matches!(error, GitError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("Connection refused"), "{error}");
    let status = unreachable.status();
    assert_eq!(status.state, RepoState::Unreachable);
    assert!(status.last_error.is_some());
}

#[tokio::test]
async fn sync_marker_moves_and_status_lists_unapplied_commits_on_the_paths() {
    let setup = Setup::new();
    let repo = setup.repo();
    repo.refresh().await.expect("refresh");
    assert_eq!(repo.sync_marker().await.expect("marker"), None);
    let seed = setup.remote.head(BRANCH);
    let pending = repo.sync_status(&seed).await.expect("status");
    assert_eq!(pending.len(), 1, "without a marker everything is pending");

    repo.move_sync_marker(&seed).await.expect("marker moved");
    assert_eq!(
        repo.sync_marker().await.expect("marker"),
        Some(seed.clone())
    );
    assert!(repo.sync_status(&seed).await.expect("status").is_empty());
    // The remote holds an annotated tag at the seed.
    assert_eq!(
        setup.remote.git(&["cat-file", "-t", "flux-sync"]).trim(),
        "tag"
    );
    assert_eq!(
        setup
            .remote
            .git(&["rev-parse", "flux-sync^{commit}"])
            .trim(),
        seed
    );

    let outside = setup
        .remote
        .commit_file(BRANCH, "README.md", "docs only\n", "Docs");
    let inside = setup
        .remote
        .commit_file(BRANCH, "manifests/db.yaml", "image: db:8\n", "Bump db");
    repo.fetch().await.expect("fetch");
    let pending = repo.sync_status(BRANCH).await.expect("status");
    assert_eq!(
        pending
            .iter()
            .map(|c| (c.id.as_str(), c.subject.as_str()))
            .collect::<Vec<_>>(),
        vec![(inside.as_str(), "Bump db")],
        "the docs commit {outside} is outside the paths"
    );

    // Moving the marker backwards is a forced update of the tag alone.
    repo.move_sync_marker(&inside).await.expect("moved");
    repo.move_sync_marker(&seed).await.expect("moved back");
    assert_eq!(
        setup
            .remote
            .git(&["rev-parse", "flux-sync^{commit}"])
            .trim(),
        seed
    );
    assert_eq!(setup.remote.head(BRANCH), inside);
    repo.fetch().await.expect("fetch keeps the marker");
    assert_eq!(repo.sync_marker().await.expect("marker"), Some(seed));
}

#[tokio::test]
async fn readonly_pushes_nothing_and_keeps_the_marker_locally() {
    let setup = Setup::new();
    let before = setup.remote.git(&["for-each-ref"]);
    let repo = Repo::new(RepoConfig {
        readonly: true,
        ..setup.config()
    });
    let status = repo.refresh().await.expect("refresh");
    assert_eq!(status.state, RepoState::ReadOnly);
    assert_eq!(status.last_error, None);
    let error = repo
        .commit_and_push(|dir| set_image(dir, "app:7"))
        .await
        .expect_err("read-only");
    assert!(matches!(error, GitError::ReadOnly { .. }), "{error:?}");
    let head = setup.remote.head(BRANCH);
    repo.move_sync_marker(&head).await.expect("local marker");
    repo.fetch()
        .await
        .expect("a fetch does not prune the local marker");
    assert_eq!(
        repo.sync_marker().await.expect("marker"),
        Some(head.clone())
    );
    assert!(repo.sync_status(&head).await.expect("status").is_empty());
    assert_eq!(
        setup.remote.git(&["for-each-ref"]),
        before,
        "nothing pushed"
    );
}

#[tokio::test]
async fn checkouts_are_removed_when_done_or_dropped() {
    let setup = Setup::new();
    let repo = setup.repo();
    repo.fetch().await.expect("fetch");
    let kept = repo.checkout().await.expect("checkout");
    assert_eq!(
        std::fs::read_to_string(kept.dir().join("manifests/app.yaml")).expect("file"),
        "image: app:1.0.0\n"
    );
    let dropped = repo.checkout().await.expect("checkout");
    let (kept_dir, dropped_dir) = (kept.dir().to_path_buf(), dropped.dir().to_path_buf());
    assert_ne!(kept_dir, dropped_dir);
    kept.remove().await.expect("removed");
    drop(dropped);
    assert!(!kept_dir.exists());
    assert!(!dropped_dir.exists());
    repo.refresh()
        .await
        .expect("refresh prunes worktree records");
    let list = flux_testkit::git::IsolatedEnv::new()
        .run(repo.mirror_dir(), &["worktree", "list", "--porcelain"]);
    assert_eq!(
        list.matches("worktree ").count(),
        1,
        "only the mirror: {list}"
    );
}

#[tokio::test]
async fn commits_are_signed_with_an_ssh_key() {
    let setup = Setup::new();
    let key = flux_git::DeployKey::ensure(&setup.data.path().join("signing"), "signer")
        .await
        .expect("key");
    let repo = Repo::new(RepoConfig {
        signing: Some(SigningKey::Ssh(key.private_key().to_path_buf())),
        ..setup.config()
    });
    let pushed = repo
        .commit_and_push(|dir| set_image(dir, "app:signed"))
        .await
        .expect("pushed");
    let raw = setup.remote.git(&["cat-file", "commit", &pushed.revision]);
    assert!(
        raw.contains("gpgsig -----BEGIN SSH SIGNATURE-----"),
        "{raw}"
    );
    let public = std::fs::read_to_string(key.public_key()).expect("public key");
    let allowed = setup.data.path().join("allowed_signers");
    std::fs::write(&allowed, format!("flux@example.com {public}")).expect("allowed signers");
    setup.remote.git(&[
        "-c",
        &format!("gpg.ssh.allowedSignersFile={}", allowed.display()),
        "verify-commit",
        &pushed.revision,
    ]);
}

#[tokio::test]
async fn refresh_loop_fetches_on_request() {
    let setup = Setup::new();
    let repo = setup.repo();
    let handle = repo.spawn_refresh_loop(std::time::Duration::from_secs(3600));
    let seed = setup.remote.head(BRANCH);
    wait_for_head(&repo, &seed).await;
    let next = setup
        .remote
        .commit_file(BRANCH, "manifests/db.yaml", "image: db:9\n", "Bump db");
    repo.request_refresh();
    wait_for_head(&repo, &next).await;
    assert_eq!(repo.status().state, RepoState::Ready);
    handle.abort();
}

async fn wait_for_head(repo: &Repo, head: &str) {
    for _ in 0..200 {
        if repo.status().head.as_deref() == Some(head) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("head never became {head}: {:?}", repo.status());
}

#[tokio::test]
async fn commits_are_signed_with_a_gpg_key() {
    let setup = Setup::new();
    let gnupg = setup.env.home().join(".gnupg");
    std::fs::create_dir_all(&gnupg).expect("gnupg home");
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let generated = std::process::Command::new("gpg")
        .envs(setup.env.vars())
        .args(["--batch", "--passphrase", "", "--quick-gen-key"])
        .args([
            "Flux Signer <signer@example.com>",
            "ed25519",
            "sign",
            "never",
        ])
        .output()
        .expect("gpg runs (Debian package gnupg)");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let repo = Repo::new(RepoConfig {
        signing: Some(SigningKey::Gpg("signer@example.com".into())),
        ..setup.config()
    });
    let pushed = repo
        .commit_and_push(|dir| set_image(dir, "app:gpg"))
        .await
        .expect("pushed");
    let raw = setup.remote.git(&["cat-file", "commit", &pushed.revision]);
    assert!(
        raw.contains("gpgsig -----BEGIN PGP SIGNATURE-----"),
        "{raw}"
    );
    let verified = setup
        .env
        .git(&setup.remote.path())
        .args(["verify-commit", "--raw", &pushed.revision])
        .output()
        .expect("git");
    let status = String::from_utf8_lossy(&verified.stderr);
    // gpg started an agent for this home; stop it rather than leave it.
    let _ = std::process::Command::new("gpgconf")
        .envs(setup.env.vars())
        .args(["--kill", "gpg-agent"])
        .status();
    assert!(verified.status.success(), "{status}");
    assert!(status.contains("GOODSIG"), "{status}");
}

#[tokio::test]
async fn nothing_an_edit_left_behind_reaches_the_next_write() {
    let setup = Setup::new();
    let repo = setup.repo();
    let failed = repo
        .commit_and_push(|dir| -> std::io::Result<Option<CommitSpec>> {
            std::fs::write(dir.join("manifests/app.yaml"), "half-written")?;
            std::fs::write(dir.join("scratch.txt"), "untracked")?;
            std::fs::write(dir.join(".gitignore"), "*.tmp\n")?;
            std::fs::write(dir.join("cache.tmp"), "ignored")?;
            Err(std::io::Error::other("gave up halfway"))
        })
        .await
        .expect_err("edit failed");
    assert!(matches!(failed, GitError::Edit(_)), "{failed:?}");
    let pushed = repo
        .commit_and_push(|dir| {
            for leftover in ["scratch.txt", ".gitignore", "cache.tmp"] {
                assert!(!dir.join(leftover).exists(), "{leftover} leaked");
            }
            let text = std::fs::read_to_string(dir.join("manifests/app.yaml"))?;
            assert_eq!(text, "image: app:1.0.0\n");
            set_image(dir, "app:1.0.1")
        })
        .await
        .expect("pushed");
    let files = setup
        .remote
        .git(&["ls-tree", "-r", "--name-only", &pushed.revision]);
    assert_eq!(files, "README.md\nmanifests/app.yaml\nmanifests/db.yaml\n");
}

#[tokio::test]
async fn checkouts_left_by_an_earlier_run_are_swept() {
    let setup = Setup::new();
    let checkouts = setup.data.path().join("git/checkouts");
    let first = setup.repo();
    first
        .commit_and_push(|dir| set_image(dir, "app:1.0.1"))
        .await
        .expect("pushed");
    assert_eq!(std::fs::read_dir(&checkouts).expect("checkouts").count(), 1);
    // A crashed process runs no destructor.
    std::mem::forget(first);
    let second = setup.repo();
    second
        .commit_and_push(|dir| set_image(dir, "app:1.0.2"))
        .await
        .expect("pushed");
    let names: Vec<String> = std::fs::read_dir(&checkouts)
        .expect("checkouts")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "only the new run's checkout: {names:?}");
    let list = setup
        .env
        .run(second.mirror_dir(), &["worktree", "list", "--porcelain"]);
    assert_eq!(
        list.matches("worktree ").count(),
        2,
        "mirror and one checkout: {list}"
    );
}

#[tokio::test]
async fn a_host_that_never_answers_times_out() {
    let setup = Setup::new();
    // Accepts the connection and says nothing, as a stuck proxy would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("address").port();
    let repo = Repo::new(RepoConfig {
        url: format!("ssh://git@127.0.0.1:{port}/config.git"),
        timeout: std::time::Duration::from_millis(1500),
        ssh: Some(flux_git::SshOptions {
            key: setup.data.path().join("no-key"),
            known_hosts: setup.data.path().join("known_hosts"),
            config_file: Some("/dev/null".into()),
        }),
        ..setup.config()
    });
    let started = std::time::Instant::now();
    let error = repo.refresh().await.expect_err("timed out");
    assert!(matches!(error, GitError::TimedOut { .. }), "{error:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(repo.status().state, RepoState::Unreachable);
    // git's ssh goes down with it (teardown takes a moment), though the
    // listener is still open.
    let needle = format!("-p\0{port}\0");
    let ssh_running = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .filter(|c| c.starts_with("ssh\0") && c.contains(&needle))
            .collect()
    };
    let mut lingering = ssh_running();
    for _ in 0..40 {
        if lingering.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        lingering = ssh_running();
    }
    assert!(lingering.is_empty(), "left running: {lingering:?}");
    drop(listener);
}

#[tokio::test]
async fn notes_reach_a_server_without_atomic_pushes() {
    let setup = Setup::new();
    setup
        .remote
        .git(&["config", "receive.advertiseAtomic", "false"]);
    let repo = setup.repo();
    for (image, note) in [("app:1.1", "{\"n\":1}"), ("app:1.2", "{\"n\":2}")] {
        let pushed = repo
            .commit_and_push(|dir| set_image(dir, image).map(|s| s.map(|s| s.note(note))))
            .await
            .expect("pushed");
        assert_eq!(setup.remote.head(BRANCH), pushed.revision);
        let stored = setup
            .remote
            .git(&["notes", "--ref=flux", "show", &pushed.revision]);
        assert_eq!(stored.trim_end(), note);
    }
}

#[tokio::test]
async fn a_shallow_repo_holds_only_the_branch_head_and_pushes_on_top_of_a_newer_one() {
    let setup = Setup::new();
    setup
        .remote
        .commit_file(BRANCH, "README.md", "second\n", "Second");
    setup
        .remote
        .git(&["branch", "other", &format!("refs/heads/{BRANCH}")]);
    let mut config = setup.config();
    config.shallow = true;
    let repo = Repo::new(config);
    let mut raced = false;
    let pushed = repo
        .commit_and_push(|dir| {
            // Another writer moves the branch after our fetch, once.
            if !raced {
                raced = true;
                setup
                    .remote
                    .commit_file(BRANCH, "README.md", "third\n", "Third");
            }
            set_image(dir, "app:2.0.0")
        })
        .await
        .expect("pushed");
    assert_eq!(pushed.attempts, 2, "the first push lost the race");
    let mirror = repo.mirror_dir();
    let git = |args: &[&str]| {
        let out = setup.env.git(mirror).args(args).output().expect("git runs");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    // Only the branch, at depth one: the head fetched for the retry.
    assert_eq!(
        git(&["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main\n"
    );
    assert_eq!(git(&["rev-list", "--count", "refs/heads/main"]), "2\n");
    assert_eq!(
        setup.remote.git(&["log", "--format=%s", BRANCH]),
        "Release app:2.0.0 to default:deployment/app\nThird\nSecond\nSeed\n"
    );
}

#[tokio::test]
async fn a_shallow_fetch_of_a_missing_branch_names_the_branch() {
    let setup = Setup::new();
    let mut config = setup.config();
    config.shallow = true;
    config.branch = "nope".into();
    let error = Repo::new(config)
        .commit_and_push(|dir| set_image(dir, "app:2.0.0"))
        .await
        .expect_err("no such branch");
    assert!(
        matches!(&error, GitError::UnknownBranch { branch, .. } if branch == "nope"),
        "{error:?}"
    );
}
