//! `flux-git`: the config repository, through the `git` command line.
//!
//! It owns the bare mirror in the data folder (fetched on demand and on an
//! interval, with a state: new, cloned, ready, read-only, unreachable, and
//! the last error), checkouts made from it as `git worktree`s (one per read
//! job; writes reuse one, reset and cleaned first), commits in the original
//! Flux's message forms with optional signing, job results as git notes,
//! race-safe pushes (never forced; on a lost race the caller's edit is made
//! again on the new head), the `flux-sync` marker tag and its status,
//! signature verification of the commits after it (only verified commits
//! are applied or built on), and the SSH deploy key. It does not read manifests or talk to clusters: callers
//! edit files in a checkout folder.
//!
//! Git runs with `GIT_TERMINAL_PROMPT=0`, hooks off, and the C locale so
//! errors can be told apart; everything else (transports, ssh config) is
//! git's own. HTTPS credentials (a token file, or the user part of an
//! `https://user:token@host/…` URL, which is taken out of the URL) reach git
//! through a credential helper on its command line, never a URL or a file
//! we write.
//!
//! ```no_run
//! use flux_git::{CommitMessage, CommitSpec, Repo, RepoConfig};
//!
//! # async fn run() -> Result<(), flux_git::GitError> {
//! let mut config = RepoConfig::new("ssh://git@example.com/config.git", "main", "/var/lib/flux/git");
//! config.paths = vec!["manifests".into()];
//! let repo = Repo::new(config);
//! repo.refresh().await?;
//! let pushed = repo
//!     .commit_and_push(|dir| {
//!         std::fs::write(dir.join("manifests/app.yaml"), "image: app:1.2.0\n")?;
//!         let message = CommitMessage::release("app:1.2.0", &["default:deployment/app"]);
//!         Ok::<_, std::io::Error>(Some(CommitSpec::new(message).note(r#"{"result":"ok"}"#)))
//!     })
//!     .await?;
//! repo.move_sync_marker(&pushed.revision).await?;
//! assert!(repo.sync_status(&pushed.revision).await?.is_empty());
//! # Ok(()) }
//! ```

mod checkout;
mod command;
mod credentials;
pub mod deploy_key;
mod error;
pub mod message;
mod push;
mod repo;
mod verify;

pub use checkout::Checkout;
pub use credentials::{DEFAULT_HTTPS_USER, redact_urls};
pub use deploy_key::{DeployKey, Identity, SshOptions};
pub use error::{BoxError, GitError};
pub use message::{CommitMessage, PolicyChange};
pub use repo::{
    CommitSpec, CommitSummary, FileCommit, Person, Pushed, Repo, RepoConfig, RepoState, RepoStatus,
    SigningKey,
};
pub use verify::{SignatureCheck, SignatureTrust, Unverified};
