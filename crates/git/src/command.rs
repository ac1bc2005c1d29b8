//! Running `git` (and `ssh-keygen`): one place that sets the environment
//! every run needs and turns a failed exit into a [`CommandFailure`].

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::credentials::HttpsCredentials;
use crate::error::{CommandFailure, GitError};

/// How to run git for one repository: extra environment, the SSH command
/// and the HTTPS credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct Git {
    env: Arc<Vec<(OsString, OsString)>>,
    ssh_command: Option<String>,
    https: Option<Arc<HttpsCredentials>>,
    /// The user's own credential helper, asked after ours.
    credential_helper: Option<Arc<str>>,
}

/// What a successful run printed.
#[derive(Debug)]
pub(crate) struct Printed {
    pub stdout: String,
}

/// Either git ran and failed (exit status, output), or something else broke.
pub(crate) enum RunError {
    Failed(CommandFailure),
    Other(GitError),
}

impl From<RunError> for GitError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::Failed(failure) => failure.into_error(),
            RunError::Other(error) => error,
        }
    }
}

impl Git {
    pub(crate) fn new(
        env: Vec<(OsString, OsString)>,
        ssh_command: Option<String>,
        https: Option<HttpsCredentials>,
        credential_helper: Option<String>,
    ) -> Self {
        Self {
            env: Arc::new(env),
            ssh_command,
            https: https.map(Arc::new),
            credential_helper: credential_helper.map(Arc::from),
        }
    }

    /// The same, with `extra` variables on top (the verifying runs'
    /// `GNUPGHOME`).
    pub(crate) fn with_env(&self, extra: Vec<(OsString, OsString)>) -> Self {
        let mut env = self.env.as_ref().clone();
        env.extend(extra);
        Self {
            env: Arc::new(env),
            ..self.clone()
        }
    }

    /// The password git is given (the URL's, or the token file's as it
    /// reads now), if any, so what git prints can be scrubbed of it.
    pub(crate) fn password_now(&self) -> Option<String> {
        self.https
            .as_deref()
            .and_then(HttpsCredentials::password_now)
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new("git");
        // Git of our own: identity, signing and config come from our settings,
        // never from the variables or config files of whoever started us (a
        // `GIT_AUTHOR_NAME` would author fluxd's commits, a global
        // `core.autocrlf` would rewrite the bytes we edit).
        for (name, _) in std::env::vars_os() {
            if !inherited(&name) {
                command.env_remove(&name);
            }
        }
        command
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .current_dir(dir)
            // Hooks in a repository we fetched are not ours to run.
            .args(["-c", "core.hooksPath=/dev/null"])
            .env("GIT_TERMINAL_PROMPT", "0")
            // Error classification reads git's messages: keep them in English.
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C")
            .kill_on_drop(true);
        if let Some(ssh) = &self.ssh_command {
            command.env("GIT_SSH_COMMAND", ssh);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if self.https.is_some() || self.credential_helper.is_some() {
            // The empty value drops any helper configured before ours.
            command.args(["-c", "credential.helper="]);
        }
        if let Some(https) = &self.https {
            command
                .args(HttpsCredentials::config_args())
                .envs(https.env());
        }
        if let Some(helper) = &self.credential_helper {
            command.arg("-c").arg(format!("credential.helper={helper}"));
        }
        command
    }

    /// Runs `git <args>` in `dir`.
    pub(crate) async fn run<I, S>(&self, dir: &Path, args: I) -> Result<Printed, RunError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_input(dir, args, None).await
    }

    /// Runs `git <args>` in `dir`, feeding `input` on stdin.
    pub(crate) async fn run_with_input<I, S>(
        &self,
        dir: &Path,
        args: I,
        input: Option<&[u8]>,
    ) -> Result<Printed, RunError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut command = self.command(dir);
        command.args(&args);
        execute(command, "git", &args, input).await
    }

    /// Runs `git <args>` and maps a failure to [`GitError`].
    pub(crate) async fn ok<I, S>(&self, dir: &Path, args: I) -> Result<Printed, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Ok(self.run(dir, args).await?)
    }
}

/// Whether a variable of our own environment reaches git: everything but
/// git's own variables and `EMAIL` (which name the author and committer,
/// point at other config or repositories), except those that only shape the
/// transport or git's diagnostics.
fn inherited(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return true;
    };
    if name == "EMAIL" {
        return false;
    }
    let Some(rest) = name.strip_prefix("GIT_") else {
        return true;
    };
    const TRANSPORT: &[&str] = &[
        "SSH",
        "SSH_COMMAND",
        "SSH_VARIANT",
        "SSL_CAINFO",
        "SSL_CAPATH",
        "PROXY_COMMAND",
        "HTTP_USER_AGENT",
        "HTTP_LOW_SPEED_LIMIT",
        "HTTP_LOW_SPEED_TIME",
        "CURL_VERBOSE",
        "EXEC_PATH",
    ];
    TRANSPORT.contains(&rest) || rest.starts_with("TRACE")
}

/// Runs a prepared command to completion and collects its output.
pub(crate) async fn execute(
    mut command: Command,
    program: &str,
    args: &[OsString],
    input: Option<&[u8]>,
) -> Result<Printed, RunError> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a run given up on (a timeout, a dropped
    // job) takes git's children (ssh, credential helpers) down with it.
    command.process_group(0);
    let started = std::time::Instant::now();
    let mut child = command.spawn().map_err(|source| {
        RunError::Other(GitError::Spawn {
            program: program.to_string(),
            source,
        })
    })?;
    let mut group = GroupGuard(child.id());
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(bytes)
            .await
            .map_err(|e| RunError::Other(GitError::io(program, e)))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| RunError::Other(GitError::io(program, e)))?;
    group.0 = None;
    tracing::trace!(program, ?args, elapsed = ?started.elapsed(), status = %output.status, "ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_string();
    if output.status.success() {
        return Ok(Printed { stdout });
    }
    Err(RunError::Failed(CommandFailure {
        program: program.to_string(),
        args: args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        status: output.status.to_string(),
        stdout,
        stderr,
    }))
}

/// Kills a process group unless the run finished.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // `kill` the program: no unsafe signal call from here.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    #[test]
    fn identity_and_config_variables_do_not_reach_git() {
        for name in [
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "GIT_COMMITTER_NAME",
            "GIT_COMMITTER_DATE",
            "EMAIL",
            "GIT_CONFIG_PARAMETERS",
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_KEY_0",
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
        ] {
            assert!(!super::inherited(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn transport_and_ordinary_variables_do() {
        for name in [
            "HOME",
            "PATH",
            "SSH_AUTH_SOCK",
            "https_proxy",
            "GIT_SSH_COMMAND",
            "GIT_SSL_CAINFO",
            "GIT_TRACE",
            "GIT_TRACE_PACKET",
        ] {
            assert!(super::inherited(OsStr::new(name)), "{name}");
        }
    }
}
