//! What can go wrong with the config repository, one variant per cause the
//! user can act on. Variants that come from a git run carry git's stderr.

use std::path::PathBuf;

/// Any error an edit closure may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from the git layer.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The server refused our credentials (deploy key not authorised, no
    /// credentials for HTTPS).
    #[error(
        "authentication to {url} failed: give the deploy key (or credentials) access to the repository\n{stderr}"
    )]
    Authentication {
        /// The repository URL.
        url: String,
        /// What git (and ssh) printed.
        stderr: String,
    },
    /// The SSH host key is unknown or changed.
    #[error("the SSH host key of {url} is not trusted: add it to the known_hosts file\n{stderr}")]
    HostKey {
        /// The repository URL.
        url: String,
        /// What git (and ssh) printed.
        stderr: String,
    },
    /// The host cannot be reached (name, network, refused connection).
    #[error("cannot reach {url}\n{stderr}")]
    Unreachable {
        /// The repository URL.
        url: String,
        /// What git printed.
        stderr: String,
    },
    /// A fetch or push took longer than the configured timeout; git was
    /// stopped.
    #[error("{url} did not answer within {after:?} (git was stopped; see --git-timeout)")]
    TimedOut {
        /// The repository URL.
        url: String,
        /// The timeout.
        after: std::time::Duration,
    },
    /// The host answered but has no repository at that path.
    #[error("no repository at {url}\n{stderr}")]
    NotFound {
        /// The repository URL.
        url: String,
        /// What git printed.
        stderr: String,
    },
    /// The configured branch does not exist in the repository.
    #[error("branch {branch:?} does not exist in {url}\n{stderr}")]
    UnknownBranch {
        /// The repository URL.
        url: String,
        /// The configured branch.
        branch: String,
        /// What git printed.
        stderr: String,
    },
    /// A configured path does not exist on the branch.
    #[error("path {path:?} does not exist on branch {branch:?} of {url}\n{stderr}")]
    MissingPath {
        /// The repository URL.
        url: String,
        /// The configured branch.
        branch: String,
        /// The missing path.
        path: String,
        /// What git printed.
        stderr: String,
    },
    /// The repository is read-only (by configuration or because the server
    /// refused a write); nothing is pushed.
    #[error("the repository {url} is read-only: {reason}")]
    ReadOnly {
        /// The repository URL.
        url: String,
        /// Why it is read-only.
        reason: String,
    },
    /// The edit left the files as they were: nothing to commit.
    #[error("nothing to commit: the change leaves the files as they are")]
    NothingToCommit,
    /// The edit closure failed on the first attempt.
    #[error("editing the checkout failed: {0}")]
    Edit(#[source] BoxError),
    /// After a concurrent push moved the branch, the same change could not be
    /// made again on the new head (it failed, or it no longer changes anything).
    #[error(
        "the change no longer applies to {branch:?} after someone else pushed (attempt {attempt}): {reason}"
    )]
    NoLongerApplies {
        /// The branch.
        branch: String,
        /// Which attempt found it (2 or more).
        attempt: u32,
        /// What happened.
        reason: String,
        /// The edit closure's error, when it failed.
        #[source]
        source: Option<BoxError>,
    },
    /// The server refused the push for a reason other than a race (a hook,
    /// branch protection).
    #[error("push to {url} rejected: {reason}\n{stderr}")]
    PushRejected {
        /// The repository URL.
        url: String,
        /// The rejection git reported for the ref.
        reason: String,
        /// What git printed.
        stderr: String,
    },
    /// Other writers kept moving the branch; gave up after the bounded retries.
    #[error(
        "push to {url} kept losing races with other writers; gave up after {attempts} attempts"
    )]
    RetriesExhausted {
        /// The repository URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A git (or ssh-keygen) run failed in a way not classified above.
    #[error("{program} {args} failed ({status})\n{stderr}")]
    Command {
        /// The program run.
        program: String,
        /// Its arguments, space separated.
        args: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A program could not be started at all.
    #[error("cannot run {program}: {source} (is it installed?)")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a file of our own failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A trusted key could not be put in fluxd's keyring
    /// (`--git-gpg-key-import`, `--git-verify-allowed-signers`, the
    /// signing key).
    #[error("cannot trust {what}: {reason}")]
    Trust {
        /// The key file, folder or key id.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// With `--git-verify-signatures`: the branch head does not verify, so
    /// no change is made on top of it.
    #[error("not writing to {branch:?}: {unverified}")]
    Unverified {
        /// The branch.
        branch: String,
        /// The commit (or sync tag) that does not verify.
        unverified: crate::verify::Unverified,
    },
    /// A program printed something we could not read.
    #[error("unexpected output from {program}: {detail}")]
    Output {
        /// The program.
        program: String,
        /// What was wrong.
        detail: String,
    },
}

impl GitError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether retrying later could help (the network, not the setup).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::RetriesExhausted { .. }
        )
    }
}

/// Classifies a failed remote operation (clone, fetch, push, ls-remote) by
/// what git and ssh print, so the user gets one clear message per cause.
pub(crate) fn classify_remote(url: &str, failure: CommandFailure) -> GitError {
    let lower = failure.stderr.to_ascii_lowercase();
    let url = url.to_string();
    let stderr = failure.stderr.clone();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "host key verification failed",
        "remote host identification has changed",
    ]) {
        return GitError::HostKey { url, stderr };
    }
    if has(&[
        "permission denied (publickey",
        "permission denied, please try again",
        "authentication failed",
        "could not read username",
        "could not read password",
        "invalid username or password",
        "http basic: access denied",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
    ]) {
        return GitError::Authentication { url, stderr };
    }
    if has(&[
        "could not resolve host",
        "could not resolve hostname",
        "connection refused",
        "connection timed out",
        "operation timed out",
        "no route to host",
        "network is unreachable",
        "failed to connect",
        "connection reset",
        "connection closed by",
        "unable to access",
    ]) {
        return GitError::Unreachable { url, stderr };
    }
    if has(&[
        "does not appear to be a git repository",
        "repository not found",
        "not found",
        "no such file or directory",
    ]) {
        return GitError::NotFound { url, stderr };
    }
    failure.into_error()
}

/// A program that ran and exited unsuccessfully.
#[derive(Debug, Clone)]
pub(crate) struct CommandFailure {
    pub program: String,
    pub args: String,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl CommandFailure {
    /// Removes credentials from what git printed: the user part of any URL,
    /// and `password` wherever it appears.
    pub(crate) fn scrub(&mut self, password: Option<&str>) {
        for text in [&mut self.stdout, &mut self.stderr, &mut self.args] {
            let mut clean = crate::credentials::redact_urls(text);
            if let Some(password) = password {
                clean = clean.replace(password, "***");
            }
            *text = clean;
        }
    }

    pub(crate) fn into_error(self) -> GitError {
        GitError::Command {
            program: self.program,
            args: self.args,
            status: self.status,
            stderr: self.stderr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_takes_credentials_out_of_everything_git_printed() {
        let mut failure = CommandFailure {
            program: "git".into(),
            args: "push https://bot:tok@host/r.git".into(),
            status: "exit status: 128".into(),
            stdout: "echoed tok".into(),
            stderr: "fatal: unable to access 'https://bot:tok@host/r.git/': tok refused".into(),
        };
        failure.scrub(Some("tok"));
        let all = format!("{} {} {}", failure.args, failure.stdout, failure.stderr);
        assert!(!all.contains("tok"), "{all}");
        assert!(all.contains("https://***@host/r.git"), "{all}");
    }
}
