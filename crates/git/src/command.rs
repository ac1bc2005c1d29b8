//! Running `git` (and `ssh-keygen`): one place that sets the environment
//! every run needs and turns a failed exit into a [`CommandFailure`].

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::{CommandFailure, GitError};

/// How to run git for one repository: extra environment and the SSH command.
#[derive(Debug, Clone, Default)]
pub(crate) struct Git {
    env: Arc<Vec<(OsString, OsString)>>,
    ssh_command: Option<String>,
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
    pub(crate) fn new(env: Vec<(OsString, OsString)>, ssh_command: Option<String>) -> Self {
        Self {
            env: Arc::new(env),
            ssh_command,
        }
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new("git");
        command
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
