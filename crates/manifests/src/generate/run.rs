//! Running one `.flux.yaml` command: `sh -c`, in the `--git-path` folder,
//! with an empty environment but the documented variables, a timeout, and
//! bounded output.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Generation;

/// How a command run ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// `sh` could not be started.
    Spawn(std::io::Error),
    /// It exited unsuccessfully: its status and the last of its stderr.
    Exit { status: String, stderr: String },
    /// It ran past its timeout and was killed.
    Timeout { timeout: Duration, stderr: String },
    /// It printed more than the bound and was killed.
    TooMuchOutput { limit: usize, stderr: String },
}

/// How often the wait looks at the child; commands run for many
/// milliseconds at least, so this costs nothing and adds little latency.
const POLL: Duration = Duration::from_millis(10);

/// Runs `command` in `dir` with exactly the variables `env` plus `PATH`
/// and `HOME`; returns its stdout.
pub(crate) fn run(
    command: &str,
    timeout: Duration,
    dir: &Path,
    env: &[(&str, String)],
    settings: &Generation,
) -> Result<Vec<u8>, Failure> {
    // A fresh empty HOME: whatever fluxd keeps under its own (a kube
    // config, registry credentials, an SSH key) is not the command's.
    let home = tempfile::Builder::new()
        .prefix("flux-generate-home-")
        .tempdir()
        .map_err(Failure::Spawn)?;
    let mut child = {
        use std::os::unix::process::CommandExt as _;
        std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .env_clear()
            .env("PATH", &settings.path)
            .env("HOME", home.path())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills what it
            // started too, not only the shell.
            .process_group(0)
            .spawn()
            .map_err(Failure::Spawn)?
    };
    let group = rustix::process::Pid::from_child(&child);
    let (done, events) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let limit = settings.max_output_bytes;
    let out_done = done.clone();
    let out = std::thread::spawn(move || {
        let result = read_bounded(stdout, limit);
        let _ = out_done.send(result.is_none());
        result
    });
    let keep = settings.max_stderr_bytes;
    let err = std::thread::spawn(move || {
        let tail = read_tail(stderr, keep);
        let _ = done.send(false);
        tail
    });
    let deadline = Instant::now() + timeout;
    let ended = wait(&mut child, group, &events, deadline);
    let stdout = out.join().expect("the stdout reader does not panic");
    let stderr = tail_text(err.join().expect("the stderr reader does not panic"));
    match ended {
        Err(Ended::Timeout) => Err(Failure::Timeout { timeout, stderr }),
        Err(Ended::TooMuchOutput) => Err(Failure::TooMuchOutput { limit, stderr }),
        Ok(status) => {
            let Some(stdout) = stdout else {
                return Err(Failure::TooMuchOutput { limit, stderr });
            };
            if !status.success() {
                return Err(Failure::Exit {
                    status: status.to_string(),
                    stderr,
                });
            }
            Ok(stdout)
        }
    }
}

enum Ended {
    Timeout,
    TooMuchOutput,
}

/// Waits for the child to exit and both readers to finish, until the
/// deadline; a reader saying the output went over the bound ends it early.
/// A child killed here is reaped here.
fn wait(
    child: &mut Child,
    group: rustix::process::Pid,
    events: &mpsc::Receiver<bool>,
    deadline: Instant,
) -> Result<std::process::ExitStatus, Ended> {
    let mut status = None;
    let mut readers = 0;
    loop {
        while let Ok(over) = events.try_recv() {
            if over {
                kill(child);
                return Err(Ended::TooMuchOutput);
            }
            readers += 1;
        }
        if status.is_none() {
            status = child.try_wait().ok().flatten();
            if status.is_some() {
                // Whatever it left running in the background would hold
                // the pipes open: the group goes with the command.
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        }
        if let Some(status) = status
            && readers == 2
        {
            return Ok(status);
        }
        let now = Instant::now();
        if now >= deadline {
            kill(child);
            return Err(Ended::Timeout);
        }
        match events.recv_timeout(POLL.min(deadline - now)) {
            Ok(true) => {
                kill(child);
                return Err(Ended::TooMuchOutput);
            }
            Ok(false) => readers += 1,
            Err(_) => {}
        }
    }
}

fn kill(child: &mut Child) {
    let group = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// All of `from`, or `None` once it gives more than `limit` bytes.
fn read_bounded(from: impl Read, limit: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    from.take(bound).read_to_end(&mut bytes).ok()?;
    (bytes.len() <= limit).then_some(bytes)
}

/// The last `keep` bytes of `from`, read to its end.
fn read_tail(mut from: impl Read, keep: usize) -> (Vec<u8>, bool) {
    let mut tail = Vec::new();
    let mut cut = false;
    let mut chunk = [0u8; 8192];
    loop {
        match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                    cut = true;
                }
            }
        }
    }
    (tail, cut)
}

fn tail_text((tail, cut): (Vec<u8>, bool)) -> String {
    let text = String::from_utf8_lossy(&tail);
    let text = text.trim_end();
    if cut {
        format!("…{text}")
    } else {
        text.to_string()
    }
}
