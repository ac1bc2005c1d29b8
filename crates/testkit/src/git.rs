//! Git fixtures: bare repositories seeded with files, served over `file://`,
//! by a real `sshd` on loopback or by `git http-backend` behind Basic
//! authentication ([`HttpServer`]), and an environment that keeps git away
//! from the machine's own configuration.
//!
//! Everything here runs the real `git`, `ssh-keygen` and `sshd` binaries,
//! synchronously (tests and benchmarks call it before their async part).

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use crate::git_http::HttpServer;

/// The branch every seeded repository starts with.
pub const BRANCH: &str = "main";

/// An environment for git with no global or system configuration, no
/// terminal prompts and a private `HOME`, so a test sees only what it sets.
#[derive(Debug)]
pub struct IsolatedEnv {
    home: TempDir,
}

impl IsolatedEnv {
    /// A fresh environment with an empty temporary `HOME`.
    pub fn new() -> Self {
        let home = tempfile::Builder::new()
            .prefix("flux-git-home-")
            .tempdir()
            .expect("a temporary HOME can be created");
        Self { home }
    }

    /// The temporary `HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The variables to set on every git (and ssh) process.
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        [
            ("HOME", self.home.path().as_os_str().to_owned()),
            ("XDG_CONFIG_HOME", self.home.path().join(".config").into()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
            ("GIT_TERMINAL_PROMPT", "0".into()),
            ("GNUPGHOME", self.home.path().join(".gnupg").into()),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), v))
        .collect()
    }

    /// A `git` command in `dir` with this environment and a fixed identity.
    pub fn git(&self, dir: &Path) -> Command {
        let mut command = Command::new("git");
        // No background gc or maintenance: a fixture folder must be
        // removable as soon as the command returns.
        command.current_dir(dir).envs(self.vars()).args([
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
        ]);
        command
            .env("GIT_AUTHOR_NAME", "Fixture")
            .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
            .env("GIT_COMMITTER_NAME", "Fixture")
            .env("GIT_COMMITTER_EMAIL", "fixture@example.com");
        command
    }

    /// Runs git in `dir` and returns its standard output; panics with git's
    /// stderr when it fails (fixtures are set up before the behaviour under test).
    pub fn run(&self, dir: &Path, args: &[&str]) -> String {
        let output = self
            .git(dir)
            .args(args)
            .output()
            .expect("git can be started");
        assert!(
            output.status.success(),
            "git {args:?} in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("git prints UTF-8 here")
    }
}

impl Default for IsolatedEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A bare repository in a temporary folder, seeded with one commit on
/// [`BRANCH`].
#[derive(Debug)]
pub struct BareRepo {
    dir: TempDir,
    env: IsolatedEnv,
}

impl BareRepo {
    /// A bare repository whose first commit holds `files` (path, content).
    pub fn seeded(files: &[(&str, &str)]) -> Self {
        Self::seeded_with(|work| {
            for (path, content) in files {
                write_file(&work.join(path), content.as_bytes());
            }
        })
    }

    /// A bare repository whose first commit holds what `fill` writes into
    /// an empty work tree.
    pub fn seeded_with(fill: impl FnOnce(&Path)) -> Self {
        let env = IsolatedEnv::new();
        let dir = tempfile::Builder::new()
            .prefix("flux-git-bare-")
            .tempdir()
            .expect("a temporary folder can be created");
        let bare = dir.path().join("repo.git");
        let work = dir.path().join("seed");
        std::fs::create_dir_all(&work).expect("seed folder");
        env.run(
            dir.path(),
            &["init", "-q", "--bare", "-b", BRANCH, path_str(&bare)],
        );
        env.run(&work, &["init", "-q", "-b", BRANCH]);
        fill(&work);
        env.run(&work, &["add", "-A"]);
        env.run(&work, &["commit", "-q", "--no-verify", "-m", "Seed"]);
        env.run(&work, &["push", "-q", path_str(&bare), BRANCH]);
        std::fs::remove_dir_all(&work).expect("seed folder can be removed");
        Self { dir, env }
    }

    /// The bare repository's folder.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo.git")
    }

    /// `file://` URL of the repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Runs git inside the bare repository (for assertions and for moving
    /// the branch behind a writer's back).
    pub fn git(&self, args: &[&str]) -> String {
        self.env.run(&self.path(), args)
    }

    /// The commit id at the tip of `branch`.
    pub fn head(&self, branch: &str) -> String {
        self.git(&["rev-parse", &format!("refs/heads/{branch}")])
            .trim()
            .to_string()
    }

    /// Commits `content` to `path` on `branch` from outside, as another
    /// person would, and returns the new commit id.
    pub fn commit_file(&self, branch: &str, path: &str, content: &str, message: &str) -> String {
        let work = self.dir.path().join(format!("outside-{}", unique_suffix()));
        self.env.run(
            self.dir.path(),
            &["clone", "-q", "-b", branch, &self.url(), path_str(&work)],
        );
        write_file(&work.join(path), content.as_bytes());
        self.env.run(&work, &["add", "-A"]);
        self.env
            .run(&work, &["commit", "-q", "--no-verify", "-m", message]);
        self.env.run(&work, &["push", "-q", "origin", branch]);
        let id = self
            .env
            .run(&work, &["rev-parse", "HEAD"])
            .trim()
            .to_string();
        std::fs::remove_dir_all(&work).expect("outside clone can be removed");
        id
    }
}

/// Writes `content` to `path`, creating parent folders.
pub fn write_file(path: &Path, content: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent folders can be created");
    }
    std::fs::write(path, content).expect("fixture file can be written");
}

/// Fills `dir` with `count` small YAML files spread over folders of 100,
/// the shape of a large config repository (for benchmarks).
pub fn fill_many_files(dir: &Path, count: usize) {
    for i in 0..count {
        let path = dir.join(format!("ns-{:03}/app-{i:05}.yaml", i / 100));
        let body = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: example.com/app-{i}:1.0.0\n"
        );
        write_file(&path, body.as_bytes());
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a loopback port can be bound")
}

/// A real OpenSSH server on a free loopback port, run as the current user
/// with a temporary configuration and host key, accepting one public key.
/// Stopped when dropped.
#[derive(Debug)]
pub struct SshServer {
    child: Child,
    dir: TempDir,
    port: u16,
    user: String,
}

impl SshServer {
    /// Starts `sshd` accepting `authorized_key` (a public key line). Returns
    /// why not when this machine cannot run it (no binary, refuses to start).
    pub fn start(authorized_key: &str) -> Result<Self, String> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("no sshd binary (Debian package openssh-server)")?;
        ensure_privilege_separation_dir();
        let dir = tempfile::Builder::new()
            .prefix("flux-sshd-")
            .tempdir()
            .map_err(|e| format!("temporary folder: {e}"))?;
        let host_key = dir.path().join("host_ed25519");
        run_quiet(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key),
        )?;
        std::fs::write(dir.path().join("authorized_keys"), authorized_key)
            .map_err(|e| format!("authorized_keys: {e}"))?;
        let user = current_user()?;
        let port = free_port();
        let config = dir.path().join("sshd_config");
        let text = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
            host = host_key.display(),
            pid = dir.path().join("sshd.pid").display(),
            keys = dir.path().join("authorized_keys").display(),
        );
        std::fs::write(&config, text).map_err(|e| format!("sshd_config: {e}"))?;
        let log = std::fs::File::create(dir.path().join("sshd.log"))
            .map_err(|e| format!("sshd log: {e}"))?;
        let child = Command::new(&sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", sshd.display()))?;
        let mut server = Self {
            child,
            dir,
            port,
            user,
        };
        server.wait_listening()?;
        Ok(server)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("sshd exited ({status}): {}", self.log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("sshd did not listen within 10s: {}", self.log()))
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The port it listens on (loopback).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user it lets in (the current one).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `ssh://` URL of a repository at `path` on this server.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// A `known_hosts` line that trusts this server's host key.
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.dir.path().join("host_ed25519.pub"))
            .expect("host public key was written at start");
        let mut parts = public.split_whitespace();
        let kind = parts.next().unwrap_or_default();
        let key = parts.next().unwrap_or_default();
        format!("[127.0.0.1]:{} {kind} {key}\n", self.port)
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sshd refuses to start without its privilege separation folder, which the
/// Debian service creates at boot; a test run creates it the same way.
fn ensure_privilege_separation_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        let _ = std::fs::create_dir_all(dir);
    }
}

fn current_user() -> Result<String, String> {
    let output = Command::new("id")
        .arg("-un")
        .output()
        .map_err(|e| format!("id -un: {e}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn run_quiet(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    ))
}
