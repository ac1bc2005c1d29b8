//! `fluxd --git-verify-signatures` with real `ssh-keygen -Y` signatures:
//! an unverified head is not read or built on, the reason is in the API
//! and the log, and the newest verified revision stays the one read.

use std::path::{Path, PathBuf};
use std::process::Command;

use flux_api::{ImageUpdate, JobSpec, JobStatus, ReleaseSpec, Targets};
use flux_testkit::daemon::{FRONT_END, Fluxd, finished, sock_shop_repo, wait_for};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv};
use tempfile::TempDir;

fn fluxd_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let private = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let public = std::fs::read_to_string(private.with_extension("pub")).expect("public key");
    (private, public.trim().to_string())
}

/// Someone outside fluxd: clones, edits, commits (signed with `key` when
/// given) and pushes.
struct Author {
    env: IsolatedEnv,
    dir: TempDir,
}

impl Author {
    fn new() -> Self {
        Self {
            env: IsolatedEnv::new(),
            dir: TempDir::new().expect("temp dir"),
        }
    }

    fn signing(key: Option<&Path>) -> Vec<String> {
        match key {
            Some(key) => vec![
                "-c".into(),
                "gpg.format=ssh".into(),
                "-c".into(),
                format!("user.signingKey={}", key.display()),
            ],
            None => Vec::new(),
        }
    }

    /// Tags the seed commit as the sync tag, signed.
    fn sign_sync_tag(&self, repo: &BareRepo, key: &Path) {
        let mut args = Self::signing(Some(key));
        args.extend(["tag", "-s", "-m", "Sync marker", "flux-sync", BRANCH].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.env.run(&repo.path(), &args);
    }

    fn set_front_end(&self, repo: &BareRepo, tag: &str, key: Option<&Path>) -> String {
        let work = self.dir.path().join(format!("clone-{tag}"));
        let url = repo.url();
        let work_str = work.to_str().expect("UTF-8 temp path");
        self.env.run(
            self.dir.path(),
            &["clone", "-q", "-b", BRANCH, &url, work_str],
        );
        let file = work.join("manifests/09-front-end-dep.yaml");
        let text = std::fs::read_to_string(&file).expect("front-end manifest");
        let start = text
            .find("weaveworksdemos/front-end:")
            .expect("front-end image");
        let end = start + text[start..].find('\n').expect("line end");
        let edited = format!(
            "{}weaveworksdemos/front-end:{tag}{}",
            &text[..start],
            &text[end..]
        );
        std::fs::write(&file, edited).expect("write");
        self.env.run(&work, &["add", "-A"]);
        let mut args = Self::signing(key);
        args.extend(["commit", "-q", "-m", tag].map(String::from));
        if key.is_some() {
            args.push("-S".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.env.run(&work, &args);
        self.env.run(&work, &["push", "-q", "origin", BRANCH]);
        self.env
            .run(&work, &["rev-parse", "HEAD"])
            .trim()
            .to_string()
    }
}

async fn front_end_image(fluxd: &Fluxd) -> String {
    let workloads = fluxd
        .client()
        .workloads(Some("sock-shop"))
        .await
        .expect("workloads");
    let front_end = workloads
        .iter()
        .find(|w| w.id == FRONT_END)
        .expect("front-end");
    front_end.containers[0].image.clone()
}

#[tokio::test]
async fn an_unverified_head_is_neither_applied_nor_built_on() {
    let keys = TempDir::new().expect("temp dir");
    let (alice, alice_public) = ssh_key(keys.path(), "alice");
    let (own, _) = ssh_key(keys.path(), "fluxd");
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("alice@example.com {alice_public}\n")).expect("file");
    let repo = sock_shop_repo(None);
    let author = Author::new();
    author.sign_sync_tag(&repo, &alice);
    let signed = author.set_front_end(&repo, "0.3.13", Some(&alice));

    let fluxd = Fluxd::start(
        fluxd_binary(),
        &repo,
        &[
            "--git-verify-signatures",
            "--git-verify-allowed-signers",
            allowed.to_str().expect("UTF-8"),
            "--git-signing-key",
            own.to_str().expect("UTF-8"),
            "--git-signing-format=ssh",
        ],
    )
    .await;
    let client = fluxd.client();
    let read = client.read_state().await.expect("read state");
    assert_eq!(read.revision, signed);
    assert_eq!(read.unverified, None);
    assert_eq!(
        front_end_image(&fluxd).await,
        "weaveworksdemos/front-end:0.3.13"
    );

    let unsigned = author.set_front_end(&repo, "0.3.99", None);
    let requested = client.sync().await.expect("sync");
    assert_eq!(requested.revision, signed, "the newest verified revision");
    let unverified = requested.unverified.expect("the head is not verified");
    assert_eq!(unverified.head, unsigned);
    assert_eq!(unverified.what, format!("commit {unsigned}"));
    assert_eq!(unverified.reason, "not signed");
    let read = client.read_state().await.expect("read state");
    assert_eq!(read.revision, signed);
    assert_eq!(
        read.unverified.map(|u| u.reason).as_deref(),
        Some("not signed")
    );
    assert_eq!(
        front_end_image(&fluxd).await,
        "weaveworksdemos/front-end:0.3.13"
    );
    wait_for("the log to say why", || async {
        fluxd.log().contains("not applying the branch head")
    })
    .await;

    // No job builds on the unverified head.
    let release = JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![FRONT_END.into()]),
        exclude: Vec::new(),
        update: ImageUpdate::Image("weaveworksdemos/front-end:0.4.0".into()),
        force: true,
        dry_run: false,
        message: None,
        user: None,
        containers: Default::default(),
    });
    let submitted = client.submit(&release).await.expect("submitted");
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(error.contains("is not verified"), "{error}");
    assert_eq!(repo.head(BRANCH), unsigned);

    // A signed commit on top does not make the unsigned one verified.
    let on_top = author.set_front_end(&repo, "0.4.0", Some(&alice));
    let requested = client.sync().await.expect("sync");
    assert_eq!(requested.revision, signed);
    assert_eq!(
        requested.unverified.map(|u| (u.head, u.what)),
        Some((on_top, format!("commit {unsigned}")))
    );
}

#[tokio::test]
async fn fluxds_own_commits_verify() {
    let keys = TempDir::new().expect("temp dir");
    let (alice, alice_public) = ssh_key(keys.path(), "alice");
    let (own, _) = ssh_key(keys.path(), "fluxd");
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("alice@example.com {alice_public}\n")).expect("file");
    let repo = sock_shop_repo(None);
    Author::new().sign_sync_tag(&repo, &alice);
    let fluxd = Fluxd::start(
        fluxd_binary(),
        &repo,
        &[
            "--git-verify-signatures",
            "--git-verify-allowed-signers",
            allowed.to_str().expect("UTF-8"),
            "--git-signing-key",
            own.to_str().expect("UTF-8"),
            "--git-signing-format=ssh",
        ],
    )
    .await;
    let client = fluxd.client();
    let release = JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![FRONT_END.into()]),
        exclude: Vec::new(),
        update: ImageUpdate::Image("weaveworksdemos/front-end:0.3.13".into()),
        force: true,
        dry_run: false,
        message: None,
        user: None,
        containers: Default::default(),
    });
    let submitted = client.submit(&release).await.expect("submitted");
    let job = finished(&client, &submitted.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    let requested = client.sync().await.expect("sync");
    assert_eq!(requested.unverified, None);
    assert_eq!(requested.revision, repo.head(BRANCH));
    assert_eq!(
        front_end_image(&fluxd).await,
        "weaveworksdemos/front-end:0.3.13"
    );
}

#[tokio::test]
async fn verification_without_a_signing_key_is_refused_at_start() {
    let repo = sock_shop_repo(None);
    let data = TempDir::new().expect("temp dir");
    let output = Command::new(fluxd_binary())
        .args([
            "--cluster=none",
            "--git-url",
            &repo.url(),
            "--git-branch",
            BRANCH,
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--git-verify-signatures")
        .output()
        .expect("fluxd runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--git-signing-key"), "{stderr}");
}
