//! Signature verification with real `gpg` and `ssh-keygen -Y` keys: only
//! commits signed by trusted keys, after a verified sync tag, are applied
//! and built on.

use std::path::{Path, PathBuf};
use std::process::Command;

use flux_git::{
    CommitMessage, CommitSpec, DeployKey, GitError, Repo, RepoConfig, SignatureTrust, SigningKey,
};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv, write_file};
use tempfile::TempDir;

struct Setup {
    remote: BareRepo,
    env: IsolatedEnv,
    data: TempDir,
}

impl Setup {
    fn new() -> Self {
        let setup = Self {
            remote: BareRepo::seeded(&[("manifests/app.yaml", "image: app:1.0.0\n")]),
            env: IsolatedEnv::new(),
            data: TempDir::new().expect("temp dir"),
        };
        let gnupg = setup.env.home().join(".gnupg");
        std::fs::create_dir_all(&gnupg).expect("gnupg home");
        std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        setup
    }

    fn config(&self, signing: Option<SigningKey>, verify: Option<SignatureTrust>) -> RepoConfig {
        let mut config = RepoConfig::new(self.remote.url(), BRANCH, self.data.path().join("git"));
        config.env = self.env.vars();
        config.committer.email = "flux@example.com".into();
        config.signing = signing;
        config.verify = verify;
        config
    }

    /// A GPG key in the signers' keyring (the isolated `HOME`'s); returns
    /// the file its public part was exported to.
    fn gpg_key(&self, email: &str) -> PathBuf {
        let generated = self
            .gpg(&["--passphrase", "", "--quick-gen-key"])
            .args([&format!("Signer <{email}>"), "ed25519", "sign", "never"])
            .output()
            .expect("gpg runs (Debian package gnupg)");
        assert!(
            generated.status.success(),
            "{}",
            String::from_utf8_lossy(&generated.stderr)
        );
        let exported = self
            .gpg(&["--armor", "--export", email])
            .output()
            .expect("gpg export");
        assert!(exported.status.success());
        let file = self.data.path().join(format!("keys/{email}.asc"));
        write_file(&file, &exported.stdout);
        file
    }

    fn gpg(&self, args: &[&str]) -> Command {
        let mut command = Command::new("gpg");
        command.envs(self.env.vars()).arg("--batch").args(args);
        command
    }

    fn ssh_key(&self, name: &str) -> (PathBuf, String) {
        let private = self.data.path().join(name);
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success());
        let public = std::fs::read_to_string(private.with_extension("pub")).expect("public key");
        (private, public.trim().to_string())
    }

    /// Commits a file from outside, signed with `-c` options `signing`
    /// (none: unsigned), and pushes; returns the commit id.
    fn commit(&self, content: &str, signing: &[&str]) -> String {
        let work = self.data.path().join(format!("outside-{content}"));
        let url = self.remote.url();
        self.env.run(
            self.data.path(),
            &["clone", "-q", "-b", BRANCH, &url, path_str(&work)],
        );
        write_file(&work.join("manifests/app.yaml"), content.as_bytes());
        self.env.run(&work, &["add", "-A"]);
        let mut args: Vec<&str> = signing.to_vec();
        args.extend(["commit", "-q", "-m", content]);
        if !signing.is_empty() {
            args.push("-S");
        }
        self.env.run(&work, &args);
        self.env.run(&work, &["push", "-q", "origin", BRANCH]);
        let id = self
            .env
            .run(&work, &["rev-parse", "HEAD"])
            .trim()
            .to_string();
        std::fs::remove_dir_all(&work).expect("outside clone removed");
        id
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // gpg started an agent for the signers' home; stop it.
        let _ = Command::new("gpgconf")
            .envs(self.env.vars())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn gpg_signing(email: &str) -> [String; 4] {
    [
        "-c".into(),
        "gpg.format=openpgp".into(),
        "-c".into(),
        format!("user.signingKey={email}"),
    ]
}

fn ssh_signing(key: &Path) -> [String; 4] {
    [
        "-c".into(),
        "gpg.format=ssh".into(),
        "-c".into(),
        format!("user.signingKey={}", key.display()),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn gpg_commits_verify_up_to_the_first_one_that_does_not() {
    let setup = Setup::new();
    let trusted = setup.gpg_key("trusted@example.com");
    setup.gpg_key("stranger@example.com");
    let keys = trusted.parent().expect("keys folder").to_path_buf();
    std::fs::remove_file(keys.join("stranger@example.com.asc")).expect("only one key imported");
    let repo = Repo::new(setup.config(
        Some(SigningKey::Gpg("trusted@example.com".into())),
        Some(SignatureTrust {
            gpg_keys: vec![keys],
            allowed_signers: None,
        }),
    ));
    repo.refresh().await.expect("refresh");
    repo.move_sync_marker(&setup.remote.head(BRANCH))
        .await
        .expect("a signed sync tag");

    let signed = setup.commit(
        "image: app:1.1.0\n",
        &strs(&gpg_signing("trusted@example.com")),
    );
    repo.refresh().await.expect("refresh");
    let check = repo.check_signatures().await.expect("check");
    assert!(check.head_verified(), "{check:?}");
    assert_eq!(check.verified.as_deref(), Some(signed.as_str()));

    let unsigned = setup.commit("image: app:1.2.0\n", &[]);
    setup.commit(
        "image: app:1.3.0\n",
        &strs(&gpg_signing("trusted@example.com")),
    );
    repo.refresh().await.expect("refresh");
    let check = repo.check_signatures().await.expect("check");
    assert_eq!(
        check.verified.as_deref(),
        Some(signed.as_str()),
        "{check:?}"
    );
    let refused = check.refused.expect("the unsigned commit is refused");
    assert_eq!(refused.what, format!("commit {unsigned}"));
    assert_eq!(refused.reason, "not signed");
}

#[tokio::test]
async fn a_gpg_key_that_was_not_imported_does_not_verify() {
    let setup = Setup::new();
    setup.gpg_key("stranger@example.com");
    let trusted = setup.gpg_key("trusted@example.com");
    let repo = Repo::new(setup.config(
        Some(SigningKey::Gpg("trusted@example.com".into())),
        Some(SignatureTrust {
            gpg_keys: vec![trusted],
            allowed_signers: None,
        }),
    ));
    repo.refresh().await.expect("refresh");
    let seed = setup.remote.head(BRANCH);
    repo.move_sync_marker(&seed).await.expect("marker");
    let foreign = setup.commit(
        "image: app:6.6.6\n",
        &strs(&gpg_signing("stranger@example.com")),
    );
    repo.refresh().await.expect("refresh");
    let check = repo.check_signatures().await.expect("check");
    assert_eq!(check.verified.as_deref(), Some(seed.as_str()), "{check:?}");
    let refused = check.refused.expect("refused");
    assert_eq!(refused.what, format!("commit {foreign}"));
    assert!(
        refused.reason.contains("does not have"),
        "{}",
        refused.reason
    );
}

#[tokio::test]
async fn ssh_signatures_verify_against_the_allowed_signers_file() {
    let setup = Setup::new();
    let (alice, alice_public) = setup.ssh_key("alice");
    let (mallory, _) = setup.ssh_key("mallory");
    let allowed = setup.data.path().join("allowed_signers");
    std::fs::write(&allowed, format!("alice@example.com {alice_public}\n")).expect("file");
    let own = DeployKey::ensure(&setup.data.path().join("own"), "fluxd")
        .await
        .expect("own key");
    let repo = Repo::new(setup.config(
        Some(SigningKey::Ssh(own.private_key().to_path_buf())),
        Some(SignatureTrust {
            gpg_keys: Vec::new(),
            allowed_signers: Some(allowed),
        }),
    ));
    repo.refresh().await.expect("refresh");
    repo.move_sync_marker(&setup.remote.head(BRANCH))
        .await
        .expect("marker signed with fluxd's own key");

    let by_alice = setup.commit("image: app:2.0.0\n", &strs(&ssh_signing(&alice)));
    // fluxd's own commit verifies: its key is trusted without being listed.
    let own_commit = repo
        .commit_and_push(|dir| {
            std::fs::write(dir.join("manifests/app.yaml"), "image: app:2.0.1\n")?;
            Ok::<_, std::io::Error>(Some(CommitSpec::new(CommitMessage::release(
                "app:2.0.1",
                &["default:deployment/app"],
            ))))
        })
        .await
        .expect("fluxd builds on a verified head");
    let check = repo.check_signatures().await.expect("check");
    assert!(check.head_verified(), "{check:?}");
    assert_eq!(
        check.verified.as_deref(),
        Some(own_commit.revision.as_str())
    );

    let by_mallory = setup.commit("image: app:6.6.6\n", &strs(&ssh_signing(&mallory)));
    repo.refresh().await.expect("refresh");
    let check = repo.check_signatures().await.expect("check");
    assert_eq!(
        check.verified.as_deref(),
        Some(own_commit.revision.as_str()),
        "{check:?}"
    );
    let refused = check.refused.expect("refused");
    assert_eq!(refused.what, format!("commit {by_mallory}"));
    assert!(refused.reason.contains("not trusted"), "{}", refused.reason);
    assert_ne!(by_alice, by_mallory);

    // No change is built on the unverified head.
    let refused = repo
        .commit_and_push(|dir| {
            std::fs::write(dir.join("manifests/app.yaml"), "image: app:2.0.2\n")?;
            Ok::<_, std::io::Error>(Some(CommitSpec::new(CommitMessage::release(
                "app:2.0.2",
                &["default:deployment/app"],
            ))))
        })
        .await
        .expect_err("the head does not verify");
    assert!(
        matches!(refused, GitError::Unverified { .. }),
        "{refused:?}"
    );
    assert_eq!(setup.remote.head(BRANCH), by_mallory);
}

#[tokio::test]
async fn an_unsigned_sync_tag_verifies_nothing() {
    let setup = Setup::new();
    let (alice, alice_public) = setup.ssh_key("alice");
    let allowed = setup.data.path().join("allowed_signers");
    std::fs::write(&allowed, format!("alice@example.com {alice_public}\n")).expect("file");
    // A marker made without a signing key (before verification was on).
    let unsigned_marker = Repo::new(setup.config(None, None));
    unsigned_marker.refresh().await.expect("refresh");
    unsigned_marker
        .move_sync_marker(&setup.remote.head(BRANCH))
        .await
        .expect("marker");
    setup.commit("image: app:2.0.0\n", &strs(&ssh_signing(&alice)));

    let repo = Repo::new(RepoConfig {
        data_dir: setup.data.path().join("verifying"),
        ..setup.config(
            None,
            Some(SignatureTrust {
                gpg_keys: Vec::new(),
                allowed_signers: Some(allowed),
            }),
        )
    });
    repo.refresh().await.expect("refresh");
    let check = repo.check_signatures().await.expect("check");
    assert_eq!(check.verified, None, "{check:?}");
    let refused = check.refused.expect("refused");
    assert_eq!(refused.what, "the sync tag flux-sync");
    assert_eq!(refused.reason, "not signed");
}

#[tokio::test]
async fn without_a_sync_tag_all_history_must_verify() {
    let setup = Setup::new();
    let (alice, alice_public) = setup.ssh_key("alice");
    let allowed = setup.data.path().join("allowed_signers");
    std::fs::write(&allowed, format!("alice@example.com {alice_public}\n")).expect("file");
    setup.commit("image: app:2.0.0\n", &strs(&ssh_signing(&alice)));
    let repo = Repo::new(setup.config(
        None,
        Some(SignatureTrust {
            gpg_keys: Vec::new(),
            allowed_signers: Some(allowed),
        }),
    ));
    repo.refresh().await.expect("refresh");
    let check = repo.check_signatures().await.expect("check");
    // The seed commit is unsigned: nothing may be applied.
    assert_eq!(check.verified, None, "{check:?}");
    assert_eq!(check.refused.expect("refused").reason, "not signed");
}

#[tokio::test]
async fn a_missing_key_file_is_an_error_naming_it() {
    let setup = Setup::new();
    let missing = setup.data.path().join("no-such-keys");
    let repo = Repo::new(setup.config(
        None,
        Some(SignatureTrust {
            gpg_keys: vec![missing.clone()],
            allowed_signers: None,
        }),
    ));
    repo.refresh().await.expect("refresh");
    let error = repo.check_signatures().await.expect_err("no keys");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
}
