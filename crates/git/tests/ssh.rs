//! The deploy key and the SSH transport against a real `sshd` on loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flux_git::{
    CommitMessage, CommitSpec, DeployKey, GitError, Repo, RepoConfig, RepoState, SshOptions,
};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv, SshServer};

#[tokio::test]
async fn deploy_key_is_generated_once_private_and_fingerprinted() {
    let data = tempfile::TempDir::new().expect("temp dir");
    let key = DeployKey::ensure(data.path(), "flux@cluster")
        .await
        .expect("key");
    let mode = std::fs::metadata(key.private_key())
        .expect("private key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let identity = key.identity().await.expect("identity");
    assert!(
        identity.public_key.starts_with("ssh-ed25519 "),
        "{identity:?}"
    );
    assert!(
        identity.public_key.ends_with(" flux@cluster"),
        "{identity:?}"
    );
    assert!(identity.fingerprint.starts_with("SHA256:"), "{identity:?}");

    // What `ssh-keygen -l` prints, as a user would check it.
    let printed = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(key.private_key())
        .output()
        .expect("ssh-keygen");
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout).trim(),
        identity.fingerprint_line
    );
    assert!(identity.fingerprint_line.ends_with("(ED25519)"));

    // A second start keeps the key (and repairs loose permissions).
    std::fs::set_permissions(key.private_key(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let again = DeployKey::ensure(data.path(), "other comment")
        .await
        .expect("key");
    assert_eq!(again.identity().await.expect("identity"), identity);
    let mode = std::fs::metadata(again.private_key())
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

struct SshSetup {
    remote: BareRepo,
    server: SshServer,
    key: DeployKey,
    env: IsolatedEnv,
    data: tempfile::TempDir,
}

/// Starts sshd for a fresh deploy key; `None` (after saying so loudly) when
/// this machine cannot run sshd.
async fn ssh_setup(test: &str) -> Option<SshSetup> {
    ssh_setup_with(test, "").await
}

/// As [`ssh_setup`], with `authorized_keys` options before the key.
async fn ssh_setup_with(test: &str, key_options: &str) -> Option<SshSetup> {
    let data = tempfile::TempDir::new().expect("temp dir");
    let key = DeployKey::ensure(&data.path().join("keys"), "flux")
        .await
        .expect("deploy key");
    let public = key.identity().await.expect("identity").public_key;
    let server = match SshServer::start(&format!("{key_options}{public}\n")) {
        Ok(server) => server,
        Err(why) => {
            eprintln!("SKIPPED: {test}: sshd cannot start on this machine: {why}");
            eprintln!("SKIPPED: install openssh-server (scripts/test does) to run it");
            return None;
        }
    };
    std::fs::write(data.path().join("known_hosts"), server.known_hosts_line())
        .expect("known_hosts");
    Some(SshSetup {
        remote: BareRepo::seeded(&[("manifests/app.yaml", "image: app:1.0.0\n")]),
        server,
        key,
        env: IsolatedEnv::new(),
        data,
    })
}

impl SshSetup {
    fn config(&self, name: &str, key: &Path, known_hosts: &Path) -> RepoConfig {
        let mut config = RepoConfig::new(
            self.server.url(&self.remote.path()),
            BRANCH,
            self.data.path().join(name),
        );
        config.env = self.env.vars();
        config.ssh = Some(SshOptions {
            key: key.to_path_buf(),
            known_hosts: known_hosts.to_path_buf(),
            // The machine's own ssh_config is not part of the test.
            config_file: Some("/dev/null".into()),
        });
        config
    }
}

#[tokio::test]
async fn deploy_key_clones_commits_and_pushes_over_ssh() {
    let Some(setup) = ssh_setup("deploy_key_clones_commits_and_pushes_over_ssh").await else {
        return;
    };
    let known_hosts = setup.data.path().join("known_hosts");
    let repo = Repo::new(setup.config("deploy", setup.key.private_key(), &known_hosts));
    let status = repo
        .refresh()
        .await
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", setup.server.log()));
    assert_eq!(status.state, RepoState::Ready, "{status:?}");

    let pushed = repo
        .commit_and_push(|dir| {
            std::fs::write(dir.join("manifests/app.yaml"), "image: app:2.0.0\n")?;
            let message = CommitMessage::release("app:2.0.0", &["default:deployment/app"]);
            Ok::<_, std::io::Error>(Some(CommitSpec::new(message).note("{\"ok\":true}")))
        })
        .await
        .expect("pushed over ssh");
    assert_eq!(setup.remote.head(BRANCH), pushed.revision);
    assert_eq!(
        setup
            .remote
            .git(&["show", &format!("{BRANCH}:manifests/app.yaml")]),
        "image: app:2.0.0\n"
    );
    assert_eq!(
        setup
            .remote
            .git(&["notes", "--ref=flux", "show", &pushed.revision])
            .trim(),
        "{\"ok\":true}"
    );
    repo.move_sync_marker(&pushed.revision)
        .await
        .expect("marker pushed over ssh");
    assert_eq!(
        setup
            .remote
            .git(&["rev-parse", "flux-sync^{commit}"])
            .trim(),
        pushed.revision
    );
    let log = setup.server.log();
    assert!(
        log.contains("Accepted publickey"),
        "sshd saw the deploy key:\n{log}"
    );
}

#[tokio::test]
async fn unknown_key_and_unknown_host_key_are_told_apart() {
    let Some(setup) = ssh_setup("unknown_key_and_unknown_host_key_are_told_apart").await else {
        return;
    };
    let known_hosts = setup.data.path().join("known_hosts");
    let stranger = DeployKey::ensure(&setup.data.path().join("stranger"), "stranger")
        .await
        .expect("another key");
    let repo = Repo::new(setup.config("stranger", stranger.private_key(), &known_hosts));
    let error = repo.refresh().await.expect_err("key not authorised");
    assert!(
        matches!(error, GitError::Authentication { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("Permission denied (publickey)"),
        "{error}"
    );
    assert_eq!(repo.status().state, RepoState::Unreachable);

    let empty = setup.data.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("known_hosts");
    let repo = Repo::new(setup.config("untrusted-host", setup.key.private_key(), &empty));
    let error = repo.refresh().await.expect_err("host key not trusted");
    assert!(matches!(error, GitError::HostKey { .. }), "{error:?}");
    assert!(
        error.to_string().contains("Host key verification failed"),
        "{error}"
    );
}

#[tokio::test]
async fn read_only_deploy_key_makes_the_repository_read_only() {
    // What a git host does for a deploy key without write access: fetches
    // are served, pushes are refused.
    let options = r#"command="case \"$SSH_ORIGINAL_COMMAND\" in git-upload-pack*) eval \"$SSH_ORIGINAL_COMMAND\";; *) echo 'ERROR: this deploy key is read-only' >&2; exit 1;; esac" "#;
    let Some(setup) = ssh_setup_with(
        "read_only_deploy_key_makes_the_repository_read_only",
        options,
    )
    .await
    else {
        return;
    };
    let known_hosts = setup.data.path().join("known_hosts");
    let repo = Repo::new(setup.config("read-only", setup.key.private_key(), &known_hosts));
    let status = repo.refresh().await.expect("fetching works");
    assert_eq!(status.state, RepoState::ReadOnly, "{status:?}");
    let reason = status.last_error.expect("why");
    assert!(reason.contains("this deploy key is read-only"), "{reason}");
    assert!(repo.checkout().await.is_ok(), "reads still work");
}
