//! The config repository: a bare mirror in the data folder, its state, and
//! everything that writes to the remote (commits with notes, the write-access
//! probe, the sync marker).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::checkout::Checkout;
use crate::command::{Git, RunError};
use crate::credentials::{HttpsCredentials, split_url};
use crate::deploy_key::SshOptions;
use crate::error::{BoxError, CommandFailure, GitError, classify_remote};
use crate::message::CommitMessage;
use crate::push::{POLITE_WINDOW, PushOutcome, backoff, polite_pause, read_push};
use crate::verify::{
    Keyring, SIGNATURE_FORMAT, SignatureCheck, SignatureTrust, Unverified, VerifiedCommits,
    read_signatures, tag_refusal,
};

/// A name and an email, as git records people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// How commits are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// An OpenPGP key id known to the `gpg` keyring in use.
    Gpg(String),
    /// An SSH private key file (`gpg.format=ssh`).
    Ssh(PathBuf),
}

/// Everything that defines one config repository and how we write to it.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// Where the repository lives (any transport git knows). Credentials in
    /// an HTTP(S) URL (`https://user:token@host/repo.git`) are taken out by
    /// [`Repo::new`] and given to git another way: [`Repo::config`] shows
    /// the URL without them.
    pub url: String,
    /// The branch fluxd reads and writes.
    pub branch: String,
    /// Folders (or files) in the repository that hold manifests; empty means
    /// the whole repository.
    pub paths: Vec<String>,
    /// Our folder: the mirror and the checkouts live below it. One `Repo`
    /// per folder: a new one sweeps away checkouts it did not make.
    pub data_dir: PathBuf,
    /// Committer, and author unless `set_author` names the requesting user.
    pub committer: Person,
    /// With `--git-set-author`: the author is the user who asked.
    pub set_author: bool,
    /// The CI skip marker to append (`--git-ci-skip`), e.g. `[ci skip]`.
    pub ci_skip: Option<String>,
    /// Commit (and sync tag) signing.
    pub signing: Option<SigningKey>,
    /// `--git-verify-signatures`: only commits (and a sync tag) signed by
    /// these keys are applied and built on; see [`Repo::check_signatures`].
    pub verify: Option<SignatureTrust>,
    /// Name of the annotated sync marker tag (`--git-label`).
    pub sync_tag: String,
    /// Notes go on `refs/notes/<notes_ref>`.
    pub notes_ref: String,
    /// `--git-readonly`: never push; the sync marker stays local.
    pub readonly: bool,
    /// SSH transport settings (the deploy key).
    pub ssh: Option<SshOptions>,
    /// A file holding the HTTPS token (`--git-https-token-file`), read
    /// again by every git run that asks for credentials, so a rotated token
    /// is used from the next fetch on. It wins over a password in the URL.
    pub https_token_file: Option<PathBuf>,
    /// The user name sent with the token file's token when the URL names
    /// none (`--git-https-user`).
    pub https_user: String,
    /// A credential helper of the user's (`--git-credential-helper`), as
    /// git's `credential.helper` takes it (`store --file=…`, `!command`),
    /// asked after the token file or the URL's credentials.
    pub credential_helper: Option<String>,
    /// How many times a push that lost a race is tried again, in all.
    pub push_attempts: u32,
    /// How long one fetch or push may take (`--git-timeout`).
    pub timeout: Duration,
    /// Extra environment for every git run (tests isolate `HOME` here).
    pub env: Vec<(OsString, OsString)>,
    /// Fetch only the branch, and only its head commit (`--depth 1`): for a
    /// one-off write, as `fluxctl --git-url` makes; history (sync status,
    /// commits since the marker) is then not there to read.
    pub shallow: bool,
}

impl RepoConfig {
    /// A configuration with the original's defaults: committer
    /// `Weave Flux <support@weave.works>`, tag `flux-sync`, notes `flux`,
    /// 20 push attempts, 20 s per fetch or push.
    pub fn new(
        url: impl Into<String>,
        branch: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            url: url.into(),
            branch: branch.into(),
            paths: Vec::new(),
            data_dir: data_dir.into(),
            committer: Person {
                name: "Weave Flux".into(),
                email: "support@weave.works".into(),
            },
            set_author: false,
            ci_skip: None,
            signing: None,
            verify: None,
            sync_tag: "flux-sync".into(),
            notes_ref: "flux".into(),
            readonly: false,
            ssh: None,
            https_token_file: None,
            https_user: crate::credentials::DEFAULT_HTTPS_USER.into(),
            credential_helper: None,
            push_attempts: 20,
            timeout: Duration::from_secs(20),
            env: Vec::new(),
            shallow: false,
        }
    }

    fn notes(&self) -> String {
        format!("refs/notes/{}", self.notes_ref)
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }
}

/// Where the repository stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoState {
    /// Nothing fetched yet.
    New,
    /// The mirror exists, but the branch or a path is missing (see the error).
    Cloned,
    /// Fetched and checked; we can write.
    Ready,
    /// Fetched and checked; we cannot (or must not) write.
    ReadOnly,
    /// The last fetch failed (network, authentication, no such repository).
    Unreachable,
}

/// The state and the last error that put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoStatus {
    /// The state.
    pub state: RepoState,
    /// The last error, with git's stderr; `None` when all went well.
    pub last_error: Option<String>,
    /// The branch head in the mirror after the last fetch.
    pub head: Option<String>,
}

/// What a commit carries: the message, who asked, the job's result.
#[derive(Debug, Clone)]
pub struct CommitSpec {
    /// The message (the CI skip marker is added from the configuration).
    pub message: CommitMessage,
    /// The requesting user (`fluxctl --user`), author with `set_author`.
    /// `Name <email>`, or a bare name (then the committer's email is used).
    pub author: Option<String>,
    /// The job's result (JSON), written as a note on the commit.
    pub note: Option<String>,
}

impl CommitSpec {
    /// A commit with this message, no author override and no note.
    pub fn new(message: CommitMessage) -> Self {
        Self {
            message,
            author: None,
            note: None,
        }
    }

    /// Sets the requesting user.
    pub fn author(mut self, user: impl Into<String>) -> Self {
        self.author = Some(user.into());
        self
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// A commit that reached the remote branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The new head of the branch.
    pub revision: String,
    /// How many attempts it took (1 when no one else pushed in between).
    pub attempts: u32,
}

/// One commit between the sync marker and a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// Full commit id.
    pub id: String,
    /// First line of the message.
    pub subject: String,
}

/// A commit that changed a file, newest first in [`Repo::file_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCommit {
    /// Full commit id.
    pub id: String,
    /// Its first parent; none for a root commit.
    pub parent: Option<String>,
    /// Who committed it.
    pub committer: Person,
}

/// A config repository. Cheap to clone; clones share the mirror, the state
/// and the writer queue, so two jobs of one fluxd never race each other.
#[derive(Debug, Clone)]
pub struct Repo {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RepoConfig,
    git: Git,
    mirror: PathBuf,
    checkouts: PathBuf,
    status: StdMutex<RepoStatus>,
    /// Set once a probe push succeeded; until then every refresh probes, so
    /// access granted later is noticed without a restart.
    writable: std::sync::atomic::AtomicBool,
    /// Set when the server refused an atomic push.
    no_atomic: std::sync::atomic::AtomicBool,
    last_push: StdMutex<Option<Instant>>,
    mirror_lock: Mutex<()>,
    /// The writer queue; it also keeps the write checkout between writes.
    writer: Mutex<Option<Checkout>>,
    /// Names this value's checkouts, so leftovers of earlier runs are told apart.
    token: String,
    swept: std::sync::atomic::AtomicBool,
    wake: Notify,
    /// The trusted keys, made on the first verification.
    keyring: Mutex<Option<Keyring>>,
    verified: StdMutex<VerifiedCommits>,
}

const FETCH_REFSPECS: [&str; 3] = [
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    "+refs/notes/*:refs/notes/*",
];

impl Repo {
    /// A repository as configured; nothing is touched until [`Repo::refresh`]
    /// (or a write) needs the mirror.
    pub fn new(mut config: RepoConfig) -> Self {
        let ssh = config.ssh.as_ref().map(SshOptions::command);
        let (url, from_url) = split_url(&config.url);
        config.url = url;
        let https = HttpsCredentials::choose(
            from_url,
            config.https_token_file.as_ref(),
            &config.https_user,
        );
        let git = Git::new(
            config.env.clone(),
            ssh,
            https,
            config.credential_helper.clone(),
        );
        let mirror = config.data_dir.join("mirror.git");
        let checkouts = config.data_dir.join("checkouts");
        Self {
            inner: Arc::new(Inner {
                config,
                git,
                mirror,
                checkouts,
                status: StdMutex::new(RepoStatus {
                    state: RepoState::New,
                    last_error: None,
                    head: None,
                }),
                writable: std::sync::atomic::AtomicBool::new(false),
                no_atomic: std::sync::atomic::AtomicBool::new(false),
                last_push: StdMutex::new(None),
                mirror_lock: Mutex::new(()),
                writer: Mutex::new(None),
                token: crate::push::unique_token(),
                swept: std::sync::atomic::AtomicBool::new(false),
                wake: Notify::new(),
                keyring: Mutex::new(None),
                verified: StdMutex::new(VerifiedCommits::default()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RepoConfig {
        &self.inner.config
    }

    /// The bare mirror's folder.
    pub fn mirror_dir(&self) -> &Path {
        &self.inner.mirror
    }

    /// The current state.
    pub fn status(&self) -> RepoStatus {
        self.inner
            .status
            .lock()
            .expect("status lock is never held across a panic")
            .clone()
    }

    fn set_status(&self, state: RepoState, last_error: Option<String>, head: Option<String>) {
        let mut status = self
            .inner
            .status
            .lock()
            .expect("status lock is never held across a panic");
        status.state = state;
        status.last_error = last_error;
        if head.is_some() {
            status.head = head;
        }
    }

    /// Fetches (cloning the mirror first if needed), checks the branch and
    /// the paths, and probes write access (until it is found). Records the
    /// resulting state, and returns it, or the error that set it.
    pub async fn refresh(&self) -> Result<RepoStatus, GitError> {
        if let Err(error) = self.fetch().await {
            let state = if is_remote_failure(&error) {
                RepoState::Unreachable
            } else if self.inner.mirror.exists() {
                RepoState::Cloned
            } else {
                self.status().state
            };
            self.set_status(state, Some(error.to_string()), None);
            return Err(error);
        }
        // Checkouts dropped without `remove` leave records behind.
        if let Err(error) = self
            .inner
            .git
            .ok(&self.inner.mirror, ["worktree", "prune"])
            .await
        {
            tracing::warn!(%error, "pruning worktree records failed");
        }
        let head = match self.verify().await {
            Ok(head) => head,
            Err(error) => {
                self.set_status(RepoState::Cloned, Some(error.to_string()), None);
                return Err(error);
            }
        };
        self.collect_garbage().await;
        let (state, error) = self.write_access(&head).await;
        match error {
            Some(error) if is_remote_failure(&error) => {
                self.set_status(RepoState::Unreachable, Some(error.to_string()), Some(head));
                Err(error)
            }
            error => {
                self.set_status(state, error.map(|e| e.to_string()), Some(head));
                Ok(self.status())
            }
        }
    }

    /// Runs [`Repo::refresh`] every `interval`, and at once when
    /// [`Repo::request_refresh`] is called. Abort the handle to stop.
    pub fn spawn_refresh_loop(&self, interval: Duration) -> JoinHandle<()> {
        let repo = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = repo.refresh().await {
                    tracing::warn!(url = %repo.inner.config.url, %error, "git refresh failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = repo.inner.wake.notified() => {}
                }
            }
        })
    }

    /// Asks the refresh loop to fetch now (a webhook said the branch moved).
    pub fn request_refresh(&self) {
        self.inner.wake.notify_one();
    }

    /// Brings the mirror up to date with the remote, cloning it first if it
    /// does not exist.
    pub async fn fetch(&self) -> Result<(), GitError> {
        let _mirror = self.inner.mirror_lock.lock().await;
        if !self.inner.mirror.join("HEAD").exists() {
            self.clone_mirror().await?;
            if self.status().state == RepoState::New {
                self.set_status(RepoState::Cloned, None, None);
            }
            return Ok(());
        }
        self.fetch_into(&self.inner.mirror).await
    }

    async fn clone_mirror(&self) -> Result<(), GitError> {
        let parent = &self.inner.config.data_dir;
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| GitError::io(parent, e))?;
        let partial = parent.join("mirror.git.partial");
        if partial.exists() {
            tokio::fs::remove_dir_all(&partial)
                .await
                .map_err(|e| GitError::io(&partial, e))?;
        }
        let git = &self.inner.git;
        git.ok(
            parent,
            [
                "init".as_ref(),
                "-q".as_ref(),
                "--bare".as_ref(),
                partial.as_os_str(),
            ],
        )
        .await?;
        let url = self.inner.config.url.as_str();
        git.ok(&partial, ["config", "remote.origin.url", url])
            .await?;
        for refspec in FETCH_REFSPECS {
            git.ok(
                &partial,
                ["config", "--add", "remote.origin.fetch", refspec],
            )
            .await?;
        }
        // Worktrees of this mirror run `git gc` on their own schedule; never
        // let an automatic one race a job.
        git.ok(&partial, ["config", "gc.auto", "0"]).await?;
        // Config repositories can hold many files: a smaller, unhashed index
        // and the untracked cache make every reset, add and commit cheaper.
        git.ok(&partial, ["config", "feature.manyFiles", "true"])
            .await?;
        self.fetch_into(&partial).await?;
        tokio::fs::rename(&partial, &self.inner.mirror)
            .await
            .map_err(|e| GitError::io(&self.inner.mirror, e))
    }

    async fn fetch_into(&self, dir: &Path) -> Result<(), GitError> {
        let mut args = vec!["fetch", "-q", "--prune", "--no-write-fetch-head"];
        let branch = self.inner.config.branch_ref();
        let only_branch = format!("+{branch}:{branch}");
        if self.inner.config.shallow {
            args.extend(["--depth=1", "--no-tags", "origin", &only_branch]);
        } else {
            args.push("origin");
        }
        match self.remote(self.inner.git.run(dir, &args)).await? {
            Ok(_) => Ok(()),
            // Naming the branch makes a missing one git's error, not ours.
            Err(RunError::Failed(failure))
                if self.inner.config.shallow
                    && failure.stderr.contains("couldn't find remote ref") =>
            {
                Err(GitError::UnknownBranch {
                    url: self.inner.config.url.clone(),
                    branch: self.inner.config.branch.clone(),
                    stderr: failure.stderr,
                })
            }
            Err(error) => Err(self.remote_error(error)),
        }
    }

    /// Bounds a run that talks to the remote by the configured timeout; the
    /// git process is killed when it runs out.
    async fn remote<T>(
        &self,
        run: impl std::future::Future<Output = Result<T, RunError>>,
    ) -> Result<Result<T, RunError>, GitError> {
        let after = self.inner.config.timeout;
        tokio::time::timeout(after, run)
            .await
            .map_err(|_| GitError::TimedOut {
                url: self.inner.config.url.clone(),
                after,
            })
    }

    fn remote_error(&self, error: RunError) -> GitError {
        match error {
            RunError::Failed(failure) => self.classify(failure),
            RunError::Other(error) => error,
        }
    }

    /// Classifies a failed remote run, with git's output scrubbed of any
    /// credential first (git prints URLs; a helper may echo what it read).
    fn classify(&self, mut failure: CommandFailure) -> GitError {
        failure.scrub(self.inner.git.password_now().as_deref());
        classify_remote(&self.inner.config.url, failure)
    }

    /// Checks that the branch and every configured path exist; returns the
    /// branch head.
    async fn verify(&self) -> Result<String, GitError> {
        let head = self.head().await?;
        let config = &self.inner.config;
        for path in &config.paths {
            // `<rev>:` names the root tree; `<rev>:.` names nothing.
            let in_tree = path.trim_matches('/');
            let spec = format!("{head}:{}", if in_tree == "." { "" } else { in_tree });
            if let Err(error) = self
                .inner
                .git
                .run(&self.inner.mirror, ["rev-parse", "-q", "--verify", &spec])
                .await
            {
                let stderr = match error {
                    RunError::Failed(f) if !f.stderr.is_empty() => f.stderr,
                    _ => format!("fatal: path '{path}' does not exist in '{head}'"),
                };
                return Err(GitError::MissingPath {
                    url: config.url.clone(),
                    branch: config.branch.clone(),
                    path: path.clone(),
                    stderr,
                });
            }
        }
        Ok(head)
    }

    /// The branch head in the mirror.
    pub async fn head(&self) -> Result<String, GitError> {
        let config = &self.inner.config;
        let spec = format!("{}^{{commit}}", config.branch_ref());
        match self
            .inner
            .git
            .run(&self.inner.mirror, ["rev-parse", "--verify", &spec])
            .await
        {
            Ok(printed) => Ok(printed.stdout.trim().to_string()),
            Err(RunError::Failed(failure)) => Err(GitError::UnknownBranch {
                url: config.url.clone(),
                branch: config.branch.clone(),
                stderr: failure.stderr,
            }),
            Err(RunError::Other(error)) => Err(error),
        }
    }

    /// Packs loose objects when git's usual threshold is passed. Automatic
    /// gc is off in the mirror so that it never runs in the middle of a job;
    /// here no write or fetch is running.
    async fn collect_garbage(&self) {
        let _writer = self.inner.writer.lock().await;
        let _mirror = self.inner.mirror_lock.lock().await;
        let args = [
            "-c",
            "gc.auto=6700",
            "-c",
            "gc.autoDetach=false",
            "gc",
            "--auto",
            "--quiet",
        ];
        if let Err(error) = self.inner.git.ok(&self.inner.mirror, args).await {
            tracing::warn!(%error, "git gc in the mirror failed");
        }
    }

    /// Probes write access by pushing a throwaway tag and deleting it
    /// again, until one probe succeeds.
    async fn write_access(&self, head: &str) -> (RepoState, Option<GitError>) {
        let config = &self.inner.config;
        if config.readonly {
            return (RepoState::ReadOnly, None);
        }
        if self.inner.writable.load(Ordering::Relaxed) {
            return (RepoState::Ready, None);
        }
        let _writer = self.inner.writer.lock().await;
        let tag = format!("refs/tags/flux-write-check-{}", crate::push::unique_token());
        let create = format!("{head}:{tag}");
        let delete = format!(":{tag}");
        let result = match self.push_refs(&self.inner.mirror, &[&create]).await {
            Ok(()) => self.push_refs(&self.inner.mirror, &[&delete]).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                self.inner.writable.store(true, Ordering::Relaxed);
                (RepoState::Ready, None)
            }
            // The fetch just worked, so a refused push (authentication
            // included: a read-only key or token) means read-only.
            Err(error @ (GitError::Unreachable { .. } | GitError::TimedOut { .. })) => {
                (RepoState::Unreachable, Some(error))
            }
            Err(error) => (
                RepoState::ReadOnly,
                Some(GitError::ReadOnly {
                    url: config.url.clone(),
                    reason: error.to_string(),
                }),
            ),
        }
    }

    /// Pushes refspecs (no retry); a rejection of any kind is an error.
    async fn push_refs(&self, dir: &Path, refspecs: &[&str]) -> Result<(), GitError> {
        match self.push(dir, refspecs).await? {
            PushOutcome::Pushed => Ok(()),
            PushOutcome::Conflict { stderr, reason } | PushOutcome::Rejected { stderr, reason } => {
                Err(GitError::PushRejected {
                    url: self.inner.config.url.clone(),
                    reason,
                    stderr,
                })
            }
        }
    }

    async fn push(&self, dir: &Path, refspecs: &[&str]) -> Result<PushOutcome, GitError> {
        let mut args: Vec<&str> = vec!["push", "--porcelain", "--no-verify"];
        if refspecs.len() > 1 {
            args.push("--atomic");
        }
        args.push(&self.inner.config.url);
        args.extend_from_slice(refspecs);
        match self.remote(self.inner.git.run(dir, &args)).await? {
            Ok(_) => Ok(PushOutcome::Pushed),
            Err(RunError::Failed(failure)) => match read_push(&failure.stdout, &failure.stderr) {
                Some(outcome) => Ok(outcome),
                None => Err(self.classify(failure)),
            },
            Err(RunError::Other(error)) => Err(error),
        }
    }

    /// A checkout of the branch head as the mirror has it now (call
    /// [`Repo::fetch`] first for the newest).
    pub async fn checkout(&self) -> Result<Checkout, GitError> {
        let head = self.head().await?;
        self.checkout_at(&head).await
    }

    /// A checkout of any revision the mirror has.
    pub async fn checkout_at(&self, revision: &str) -> Result<Checkout, GitError> {
        self.sweep_leftovers().await;
        Checkout::create(
            &self.inner.git,
            &self.inner.mirror,
            &self.inner.checkouts,
            &self.inner.token,
            revision,
        )
        .await
    }

    /// Removes checkouts that an earlier run (a crashed or killed fluxd)
    /// left in the data folder, once per `Repo` value.
    async fn sweep_leftovers(&self) {
        if self.inner.swept.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(mut entries) = tokio::fs::read_dir(&self.inner.checkouts).await else {
            return;
        };
        let ours = format!("job-{}-", self.inner.token);
        while let Ok(Some(entry)) = entries.next_entry().await {
            if !entry.file_name().to_string_lossy().starts_with(&ours) {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
        let _ = self
            .inner
            .git
            .ok(&self.inner.mirror, ["worktree", "prune"])
            .await;
    }

    /// Makes a change and pushes it to the branch, safely.
    ///
    /// Fetches, checks out the branch head, calls `edit` on the checkout
    /// folder, commits what it changed with the message (and note) it
    /// returns, and pushes the commit (and note) without force. When another
    /// writer moved the branch first, it starts again from the new head,
    /// calling `edit` again, with jittered backoff, up to `push_attempts`
    /// times in all. `edit` returns `None` when there is nothing to change.
    ///
    /// Writes of one `Repo` (and its clones) are queued: one at a time.
    ///
    /// Errors: [`GitError::NothingToCommit`] or [`GitError::Edit`] on the
    /// first attempt; [`GitError::NoLongerApplies`] when a later attempt finds
    /// the same; [`GitError::RetriesExhausted`]; [`GitError::ReadOnly`];
    /// with signature verification, [`GitError::Unverified`] when the head
    /// does not verify (nothing is built on it).
    pub async fn commit_and_push<F, E>(&self, mut edit: F) -> Result<Pushed, GitError>
    where
        F: FnMut(&Path) -> Result<Option<CommitSpec>, E>,
        E: Into<BoxError>,
    {
        let config = &self.inner.config;
        if config.readonly {
            return Err(GitError::ReadOnly {
                url: config.url.clone(),
                reason: "configured read-only (--git-readonly)".into(),
            });
        }
        let mut slot = self.inner.writer.lock().await;
        self.yield_after_recent_push().await;
        let attempts = config.push_attempts.max(1);
        self.fetch().await?;
        let mut checkout = self.write_checkout(slot.take()).await?;
        let mut outcome = Err(GitError::RetriesExhausted {
            url: config.url.clone(),
            attempts,
        });
        for attempt in 1..=attempts {
            if attempt > 1 {
                let delay = backoff(attempt - 1);
                tracing::debug!(attempt, ?delay, branch = %config.branch, "push lost a race; retrying");
                tokio::time::sleep(delay).await;
                // A fresh tree at the new head, made by rewriting only the
                // files that differ: the retry's window stays short, so a
                // writer that lost once is not starved by a busy one.
                if let Err(error) = self.refetch_into(&mut checkout).await {
                    outcome = Err(error);
                    break;
                }
            }
            if let Err(error) = self.refuse_unverified_head().await {
                outcome = Err(error);
                break;
            }
            match self.attempt(&checkout, attempt, &mut edit).await {
                Ok(Some(revision)) => {
                    *self
                        .inner
                        .last_push
                        .lock()
                        .expect("lock is never held across a panic") = Some(Instant::now());
                    outcome = Ok(Pushed {
                        revision,
                        attempts: attempt,
                    });
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        // Kept for the next write, which resets and cleans it first.
        *slot = Some(checkout);
        outcome
    }

    /// The checkout writes happen in: the one kept from the last write,
    /// reset to the branch head and cleaned of anything an edit left (a
    /// fresh tree at a fraction of the cost of writing every file again),
    /// or a new one.
    async fn write_checkout(&self, kept: Option<Checkout>) -> Result<Checkout, GitError> {
        if let Some(mut checkout) = kept {
            // By ref name: one git run fewer; a missing branch is reported
            // by the fresh checkout below.
            match checkout.reset_to(&self.inner.config.branch_ref()).await {
                Ok(()) => return Ok(checkout),
                Err(error) => {
                    tracing::warn!(%error, "write checkout unusable; making a new one");
                    let _ = checkout.remove().await;
                }
            }
        }
        let head = self.head().await?;
        self.checkout_at(&head).await
    }

    /// A writer with back-to-back commits waits a short random time before
    /// the next one, so a writer elsewhere that lost a race to it (and is
    /// redoing its edit) gets its turn instead of losing every round.
    async fn yield_after_recent_push(&self) {
        let last = *self
            .inner
            .last_push
            .lock()
            .expect("lock is never held across a panic");
        if last.is_some_and(|at| at.elapsed() < POLITE_WINDOW) {
            tokio::time::sleep(polite_pause()).await;
        }
    }

    async fn refetch_into(&self, checkout: &mut Checkout) -> Result<(), GitError> {
        self.fetch().await?;
        checkout.reset_to(&self.inner.config.branch_ref()).await
    }

    /// One edit-commit-push round; `Ok(None)` when the push lost a race.
    async fn attempt<F, E>(
        &self,
        checkout: &Checkout,
        attempt: u32,
        edit: &mut F,
    ) -> Result<Option<String>, GitError>
    where
        F: FnMut(&Path) -> Result<Option<CommitSpec>, E>,
        E: Into<BoxError>,
    {
        let spec = match edit(checkout.dir()) {
            Ok(Some(spec)) => spec,
            Ok(None) => return Err(self.no_change(attempt, None)),
            Err(error) => return Err(self.edit_failed(attempt, error.into())),
        };
        checkout.git().ok(checkout.dir(), ["add", "-A"]).await?;
        let Some(revision) = self.commit(checkout, &spec).await? else {
            return Err(self.no_change(attempt, None));
        };
        let config = &self.inner.config;
        if let Some(note) = &spec.note {
            self.add_note(checkout, &revision, note).await?;
        }
        let atomic = spec.note.is_some() && !self.inner.no_atomic.load(Ordering::Relaxed);
        let outcome = self.push_commit(checkout.dir(), &revision, atomic).await?;
        match outcome {
            PushOutcome::Pushed => {
                self.inner
                    .git
                    .ok(
                        &self.inner.mirror,
                        ["update-ref", &config.branch_ref(), &revision],
                    )
                    .await?;
                let note_pending = atomic && self.inner.no_atomic.load(Ordering::Relaxed);
                if let (Some(note), true) = (&spec.note, note_pending || !atomic) {
                    self.push_note_alone(checkout, &revision, note).await;
                }
                Ok(Some(revision))
            }
            PushOutcome::Conflict { .. } => Ok(None),
            PushOutcome::Rejected { stderr, reason } => Err(GitError::PushRejected {
                url: config.url.clone(),
                reason,
                stderr,
            }),
        }
    }

    /// Pushes the commit to the branch, with the notes ref in the same
    /// atomic push when asked; a server without atomic pushes gets the
    /// branch alone (and is remembered).
    async fn push_commit(
        &self,
        dir: &Path,
        revision: &str,
        atomic: bool,
    ) -> Result<PushOutcome, GitError> {
        let config = &self.inner.config;
        let branch = format!("{revision}:{}", config.branch_ref());
        if !atomic {
            return self.push(dir, &[&branch]).await;
        }
        let notes = config.notes();
        let notes_spec = format!("{notes}:{notes}");
        match self.push(dir, &[&branch, &notes_spec]).await {
            Err(GitError::Command { stderr, .. })
                if stderr.contains("does not support --atomic") =>
            {
                tracing::info!(url = %config.url, "server has no atomic push; pushing notes after the branch");
                self.inner.no_atomic.store(true, Ordering::Relaxed);
                self.push(dir, &[&branch]).await
            }
            other => other,
        }
    }

    /// Pushes the note of a commit already on the branch, for servers
    /// without atomic pushes. The commit is in either way, so a note that
    /// cannot be pushed is logged, not an error.
    async fn push_note_alone(&self, checkout: &Checkout, revision: &str, note: &str) {
        let notes = self.inner.config.notes();
        let notes_spec = format!("{notes}:{notes}");
        for _ in 0..5 {
            let outcome = match self.push(checkout.dir(), &[&notes_spec]).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::warn!(%error, revision, "pushing the job's note failed");
                    return;
                }
            };
            match outcome {
                PushOutcome::Pushed => return,
                PushOutcome::Rejected { reason, .. } => {
                    tracing::warn!(%reason, revision, "the job's note was refused");
                    return;
                }
                PushOutcome::Conflict { .. } => {}
            }
            // Someone else added notes: take theirs and add ours again.
            let again = match self.fetch().await {
                Ok(()) => self.add_note(checkout, revision, note).await,
                Err(error) => Err(error),
            };
            if let Err(error) = again {
                tracing::warn!(%error, revision, "pushing the job's note failed");
                return;
            }
        }
        tracing::warn!(revision, "the job's note kept losing races; not pushed");
    }

    fn no_change(&self, attempt: u32, source: Option<BoxError>) -> GitError {
        if attempt == 1 {
            return GitError::NothingToCommit;
        }
        GitError::NoLongerApplies {
            branch: self.inner.config.branch.clone(),
            attempt,
            reason: "on the new head the change leaves the files as they are".into(),
            source,
        }
    }

    fn edit_failed(&self, attempt: u32, error: BoxError) -> GitError {
        if attempt == 1 {
            return GitError::Edit(error);
        }
        GitError::NoLongerApplies {
            branch: self.inner.config.branch.clone(),
            attempt,
            reason: error.to_string(),
            source: Some(error),
        }
    }

    /// Stages everything; whether anything differs from the checkout's commit.
    /// Whether the index differs from the checkout's commit.
    async fn has_staged_changes(&self, checkout: &Checkout) -> Result<bool, GitError> {
        match checkout
            .git()
            .run(
                checkout.dir(),
                ["diff", "--cached", "--quiet", "--no-ext-diff"],
            )
            .await
        {
            Ok(_) => Ok(false),
            Err(RunError::Failed(f)) if f.status.ends_with("exit status: 1") => Ok(true),
            Err(error) => Err(error.into()),
        }
    }

    /// Commits what is staged; `None` when nothing is. The commit is tried
    /// first and the index only looked at when it fails, which saves a git
    /// run on every change that does change something.
    async fn commit(
        &self,
        checkout: &Checkout,
        spec: &CommitSpec,
    ) -> Result<Option<String>, GitError> {
        let config = &self.inner.config;
        let mut args = identity_args(&config.committer);
        args.extend(signing_args(config.signing.as_ref()));
        args.extend(["commit", "-q", "--no-verify"].map(OsString::from));
        if let Some(author) = self.author(spec) {
            args.push(format!("--author={author}").into());
        }
        args.extend(commit_sign_flag(config.signing.as_ref()));
        args.extend(["-F", "-"].map(OsString::from));
        let message = spec.message.render(config.ci_skip.as_deref());
        let committed = checkout
            .git()
            .run_with_input(checkout.dir(), &args, Some(message.as_bytes()))
            .await;
        if let Err(error) = committed {
            if !self.has_staged_changes(checkout).await? {
                return Ok(None);
            }
            return Err(error.into());
        }
        let printed = checkout
            .git()
            .ok(checkout.dir(), ["rev-parse", "HEAD"])
            .await?;
        Ok(Some(printed.stdout.trim().to_string()))
    }

    fn author(&self, spec: &CommitSpec) -> Option<String> {
        let config = &self.inner.config;
        if !config.set_author {
            return None;
        }
        let user = spec.author.as_deref()?.trim();
        if user.is_empty() {
            return None;
        }
        // `--author` treats anything but `Name <email>` as a search pattern
        // over past authors; always give the explicit form.
        if user.ends_with('>') && user.contains(" <") {
            return Some(user.to_string());
        }
        Some(format!("{user} <{}>", config.committer.email))
    }

    async fn add_note(
        &self,
        checkout: &Checkout,
        revision: &str,
        note: &str,
    ) -> Result<(), GitError> {
        let config = &self.inner.config;
        let mut args = identity_args(&config.committer);
        let notes_ref = format!("--ref={}", config.notes());
        args.extend(["notes", &notes_ref, "add", "-f", "-F", "-", revision].map(OsString::from));
        checkout
            .git()
            .run_with_input(checkout.dir(), &args, Some(note.as_bytes()))
            .await?;
        Ok(())
    }

    /// The note (job result) on `revision`, if any.
    pub async fn note(&self, revision: &str) -> Result<Option<String>, GitError> {
        let notes_ref = format!("--ref={}", self.inner.config.notes());
        match self
            .inner
            .git
            .run(&self.inner.mirror, ["notes", &notes_ref, "show", revision])
            .await
        {
            Ok(printed) => Ok(Some(printed.stdout)),
            Err(RunError::Failed(f)) if f.stderr.contains("no note found") => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn marker_ref(&self) -> String {
        let tag = &self.inner.config.sync_tag;
        if self.inner.config.readonly {
            // Outside the fetched namespaces, so a fetch never prunes it.
            format!("refs/flux/sync/{tag}")
        } else {
            format!("refs/tags/{tag}")
        }
    }

    /// Moves the sync marker (an annotated tag) to `revision` after it has
    /// been applied, and pushes it; the one ref we force. Read-only: the
    /// marker is only kept in the mirror.
    pub async fn move_sync_marker(&self, revision: &str) -> Result<(), GitError> {
        let _writer = self.inner.writer.lock().await;
        let git = &self.inner.git;
        let mirror = &self.inner.mirror;
        let commit = git
            .ok(
                mirror,
                ["rev-parse", "--verify", &format!("{revision}^{{commit}}")],
            )
            .await?
            .stdout
            .trim()
            .to_string();
        let tag_object = self.make_tag(&commit).await?;
        let marker = self.marker_ref();
        git.ok(mirror, ["update-ref", &marker, &tag_object]).await?;
        if self.inner.config.readonly {
            return Ok(());
        }
        let refspec = format!("+{tag_object}:{marker}");
        self.push_refs(mirror, &[&refspec]).await
    }

    async fn make_tag(&self, commit: &str) -> Result<String, GitError> {
        let config = &self.inner.config;
        if let (Some(signing), false) = (&config.signing, config.readonly) {
            return self.make_signed_tag(signing, commit).await;
        }
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let text = format!(
            "object {commit}\ntype commit\ntag {tag}\ntagger {name} <{email}> {seconds} +0000\n\nSync marker: applied to the cluster\n",
            tag = config.sync_tag,
            name = config.committer.name,
            email = config.committer.email,
        );
        let printed = self
            .inner
            .git
            .run_with_input(&self.inner.mirror, ["mktag"], Some(text.as_bytes()))
            .await?;
        Ok(printed.stdout.trim().to_string())
    }

    /// A signed annotated tag made by `git tag`, which signs the way
    /// `verify-tag` checks; it also moves the local tag ref.
    async fn make_signed_tag(
        &self,
        signing: &SigningKey,
        commit: &str,
    ) -> Result<String, GitError> {
        let config = &self.inner.config;
        let mut args = identity_args(&config.committer);
        args.extend(signing_args(Some(signing)));
        args.extend(["tag", "-f", "-m", "Sync marker: applied to the cluster"].map(OsString::from));
        match signing {
            SigningKey::Gpg(id) => args.push(format!("--local-user={id}").into()),
            SigningKey::Ssh(_) => args.push("--sign".into()),
        }
        args.extend([config.sync_tag.as_str(), commit].map(OsString::from));
        self.inner.git.ok(&self.inner.mirror, &args).await?;
        let printed = self
            .inner
            .git
            .ok(
                &self.inner.mirror,
                ["rev-parse", "--verify", &self.marker_ref()],
            )
            .await?;
        Ok(printed.stdout.trim().to_string())
    }

    /// Verifies the branch as the mirror has it, from the sync marker to
    /// the head (`--git-verify-signatures`, in the sense of the original
    /// Flux): the marker's tag must verify, and so must every commit after
    /// it up to the one applied. The answer is the newest commit that
    /// itself and all commits before it (back to the marker) verify, and
    /// the first that does not. Commits once verified are remembered, so a
    /// refresh with an unchanged head runs no verification.
    ///
    /// In read-only mode the marker is a local ref of our own and is not
    /// checked. Without verification configured every head verifies.
    pub async fn check_signatures(&self) -> Result<SignatureCheck, GitError> {
        let head = self.head().await?;
        let Some(trust) = &self.inner.config.verify else {
            return Ok(SignatureCheck {
                verified: Some(head.clone()),
                head,
                refused: None,
            });
        };
        let keyring = self.keyring(trust).await?;
        let git = self.inner.git.with_env(keyring.git_env());
        let marker = self.sync_marker().await?;
        if let (Some(_), false) = (&marker, self.inner.config.readonly) {
            let mut args = keyring.git_args();
            args.extend(["verify-tag".into(), self.marker_ref().into()]);
            if let Err(error) = git.run(&self.inner.mirror, &args).await {
                return Ok(SignatureCheck {
                    head,
                    verified: None,
                    refused: Some(Unverified {
                        what: format!("the sync tag {}", self.inner.config.sync_tag),
                        reason: tag_refusal(error)?,
                    }),
                });
            }
        }
        let range = match &marker {
            Some(marker) => format!("{marker}..{head}"),
            None => head.clone(),
        };
        // Oldest first, parents before children: everything before the
        // first refusal has all its ancestors (after the marker) verified.
        let listed = self
            .inner
            .git
            .ok(
                &self.inner.mirror,
                ["rev-list", "--reverse", "--topo-order", &range],
            )
            .await?;
        let ids: Vec<&str> = listed.stdout.lines().collect();
        let known = {
            let verified = self
                .inner
                .verified
                .lock()
                .expect("lock is never held across a panic");
            ids.iter().take_while(|id| verified.contains(id)).count()
        };
        let mut verified = match known {
            0 => marker,
            known => Some(ids[known - 1].to_string()),
        };
        if known == ids.len() {
            return Ok(SignatureCheck {
                head,
                verified,
                refused: None,
            });
        }
        let remaining = match (&verified, known) {
            (Some(base), 1..) => format!("{base}..{head}"),
            _ => range,
        };
        let mut args = keyring.git_args();
        args.extend(
            [
                "log",
                "-z",
                "--reverse",
                "--topo-order",
                SIGNATURE_FORMAT,
                &remaining,
            ]
            .map(OsString::from),
        );
        let printed = git.ok(&self.inner.mirror, &args).await?;
        for signed in read_signatures(&printed.stdout) {
            if let Some(reason) = signed.refusal() {
                tracing::warn!(commit = %signed.id, %reason, "commit not verified");
                return Ok(SignatureCheck {
                    head,
                    verified,
                    refused: Some(Unverified {
                        what: format!("commit {}", signed.id),
                        reason,
                    }),
                });
            }
            self.inner
                .verified
                .lock()
                .expect("lock is never held across a panic")
                .insert(signed.id.clone());
            verified = Some(signed.id);
        }
        Ok(SignatureCheck {
            head,
            verified,
            refused: None,
        })
    }

    /// The keyring, made on first use; a failure is returned and tried
    /// again next time (a key file mounted late).
    async fn keyring(&self, trust: &SignatureTrust) -> Result<Keyring, GitError> {
        let mut slot = self.inner.keyring.lock().await;
        if let Some(keyring) = slot.as_ref() {
            return Ok(keyring.clone());
        }
        let config = &self.inner.config;
        let keyring = Keyring::make(
            &config.data_dir,
            trust,
            config.signing.as_ref(),
            &config.committer.email,
            &config.env,
        )
        .await?;
        *slot = Some(keyring.clone());
        Ok(keyring)
    }

    /// With verification on, refuses to build on a head that does not verify.
    async fn refuse_unverified_head(&self) -> Result<(), GitError> {
        if self.inner.config.verify.is_none() {
            return Ok(());
        }
        let check = self.check_signatures().await?;
        match check.refused {
            None => Ok(()),
            Some(unverified) => Err(GitError::Unverified {
                branch: self.inner.config.branch.clone(),
                unverified,
            }),
        }
    }

    /// The commit the sync marker points at, if there is one.
    pub async fn sync_marker(&self) -> Result<Option<String>, GitError> {
        let spec = format!("{}^{{commit}}", self.marker_ref());
        match self
            .inner
            .git
            .run(&self.inner.mirror, ["rev-parse", "-q", "--verify", &spec])
            .await
        {
            Ok(printed) => Ok(Some(printed.stdout.trim().to_string())),
            Err(RunError::Failed(f)) if f.stderr.is_empty() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The commits between the sync marker and `revision` that touch the
    /// configured paths, newest first. Empty means `revision` is applied.
    /// Without a marker, every commit up to `revision` touching the paths.
    pub async fn sync_status(&self, revision: &str) -> Result<Vec<CommitSummary>, GitError> {
        let marker = self.sync_marker().await?;
        self.commits_since(marker.as_deref(), revision).await
    }

    /// Whether `commit` is `revision` or one of its ancestors.
    pub async fn is_ancestor(&self, commit: &str, revision: &str) -> Result<bool, GitError> {
        let asked = ["merge-base", "--is-ancestor", commit, revision];
        match self.inner.git.run(&self.inner.mirror, asked).await {
            Ok(_) => Ok(true),
            // Exit 1 with nothing said: not an ancestor. Anything else (an
            // unknown commit) is an error.
            Err(RunError::Failed(f)) if f.stderr.trim().is_empty() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// The last `limit` commits up to `revision` that changed `path`
    /// (relative to the repo's root), newest first, first parents only.
    pub async fn file_history(
        &self,
        revision: &str,
        path: &str,
        limit: usize,
    ) -> Result<Vec<FileCommit>, GitError> {
        let count = format!("-n{limit}");
        let args = [
            "log",
            "-z",
            "--first-parent",
            &count,
            "--format=%H%x1f%P%x1f%cn%x1f%ce",
            revision,
            "--",
            path,
        ];
        let printed = self.inner.git.ok(&self.inner.mirror, &args).await?;
        Ok(printed
            .stdout
            .split('\0')
            .filter_map(|record| {
                let mut fields = record.trim_start_matches('\n').split('\x1f');
                let id = fields.next().filter(|id| !id.is_empty())?;
                let parent = fields.next()?.split(' ').next().filter(|p| !p.is_empty());
                Some(FileCommit {
                    id: id.to_string(),
                    parent: parent.map(str::to_string),
                    committer: Person {
                        name: fields.next()?.to_string(),
                        email: fields.next()?.trim_end().to_string(),
                    },
                })
            })
            .collect())
    }

    /// The text of `path` at `revision`; none when it has no such file.
    pub async fn file_at(&self, revision: &str, path: &str) -> Result<Option<String>, GitError> {
        let object = format!("{revision}:{path}");
        match self
            .inner
            .git
            .run(&self.inner.mirror, ["show", &object])
            .await
        {
            Ok(printed) => Ok(Some(printed.stdout)),
            Err(RunError::Failed(f))
                if f.stderr.contains("does not exist") || f.stderr.contains("exists on disk") =>
            {
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Whether this fluxd made `commit`: it carries a note of ours, or our
    /// committer identity.
    pub async fn made(&self, commit: &FileCommit) -> Result<bool, GitError> {
        if commit.committer == self.inner.config.committer {
            return Ok(true);
        }
        Ok(self.note(&commit.id).await?.is_some())
    }

    /// The commits after `since` (all of history when `None`) up to
    /// `revision` that touch the configured paths, newest first.
    pub async fn commits_since(
        &self,
        since: Option<&str>,
        revision: &str,
    ) -> Result<Vec<CommitSummary>, GitError> {
        let range = match since {
            Some(since) => format!("{since}..{revision}"),
            None => revision.to_string(),
        };
        let mut args: Vec<&str> = vec!["log", "-z", "--format=%H %s", &range, "--"];
        args.extend(self.inner.config.paths.iter().map(String::as_str));
        let printed = self.inner.git.ok(&self.inner.mirror, &args).await?;
        Ok(printed
            .stdout
            .split('\0')
            .filter(|record| !record.trim().is_empty())
            .map(|record| {
                let record = record.trim_start_matches('\n');
                let (id, subject) = record.split_once(' ').unwrap_or((record, ""));
                CommitSummary {
                    id: id.to_string(),
                    subject: subject.to_string(),
                }
            })
            .collect())
    }
}

fn is_remote_failure(error: &GitError) -> bool {
    matches!(
        error,
        GitError::Unreachable { .. }
            | GitError::TimedOut { .. }
            | GitError::Authentication { .. }
            | GitError::HostKey { .. }
            | GitError::NotFound { .. }
    )
}

fn identity_args(person: &Person) -> Vec<OsString> {
    vec![
        "-c".into(),
        format!("user.name={}", person.name).into(),
        "-c".into(),
        format!("user.email={}", person.email).into(),
    ]
}

fn signing_args(signing: Option<&SigningKey>) -> Vec<OsString> {
    match signing {
        None => vec!["-c".into(), "commit.gpgSign=false".into()],
        Some(SigningKey::Gpg(_)) => vec!["-c".into(), "gpg.format=openpgp".into()],
        Some(SigningKey::Ssh(key)) => {
            let mut key_config = OsString::from("user.signingKey=");
            key_config.push(key.as_os_str());
            vec![
                "-c".into(),
                "gpg.format=ssh".into(),
                "-c".into(),
                key_config,
            ]
        }
    }
}

fn commit_sign_flag(signing: Option<&SigningKey>) -> Option<OsString> {
    match signing {
        None => None,
        Some(SigningKey::Gpg(id)) => Some(format!("-S{id}").into()),
        Some(SigningKey::Ssh(_)) => Some("-S".into()),
    }
}
