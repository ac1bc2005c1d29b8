//! The running playground: a registry that notifies fluxd of pushes, a
//! bare git repo of the sock-shop manifests pointing at it, and fluxd on
//! that repo. Everything lives in temporary folders, removed on stop (or
//! drop), and every process it started is stopped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flux_api::Client;
use flux_testkit::git::{BRANCH, BareRepo, free_port};
use flux_testkit::kube::{ApiServer, Controller};
use flux_testkit::registry::{ImageSpec, Notifications, Pusher, REGISTRY_BINARY, Registry};

use crate::context::CurrentContext;
use crate::seed::{self, MovedImage};

/// The workload the printed commands use.
pub const FRONT_END: &str = "sock-shop:deployment/front-end";

/// How long fluxd may take to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How long fluxd may take to serve the manifests.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `fluxd` binary.
    pub fluxd: PathBuf,
    /// The `fluxctl` binary (named in the printed commands).
    pub fluxctl: PathBuf,
    /// The cluster fluxd applies to.
    pub cluster: Cluster,
    /// Where fluxd's log goes.
    pub fluxd_log: FluxdLog,
}

/// The cluster fluxd applies the repo to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// The testkit's Kubernetes API server double on loopback, with a
    /// simulated controller rolling out every workload change: the API is
    /// real Kubernetes wire protocol, no pods run.
    Simulated,
    /// A real cluster: this `KUBECONFIG` value (a file, or a list of them).
    Kubeconfig(std::ffi::OsString),
    /// No cluster (`fluxd --cluster=none`): nothing is applied.
    None,
}

/// Where fluxd's log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluxdLog {
    /// A file in the playground's folder (its path is printed).
    File,
    /// This process's standard error.
    Terminal,
}

/// A running playground.
pub struct Playground {
    fluxd: FluxdProcess,
    /// fluxd's API, `http://127.0.0.1:<port>`.
    pub url: String,
    /// fluxd's API token.
    pub token: String,
    /// The registry as image references name it, `localhost:<port>`.
    pub registry_host: String,
    /// The tags pushed, per repository, oldest first.
    pub pushed: Vec<(String, Vec<String>)>,
    options: Options,
    repo: BareRepo,
    registry: Registry,
    simulated: Option<SimulatedCluster>,
    folder: tempfile::TempDir,
}

/// The API server double and its controller.
struct SimulatedCluster {
    server: ApiServer,
    _controller: Controller,
}

impl SimulatedCluster {
    fn start() -> SimulatedCluster {
        let server = ApiServer::start();
        let controller = Controller::start(&server);
        SimulatedCluster {
            server,
            _controller: controller,
        }
    }
}

impl std::fmt::Debug for Playground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playground")
            .field("url", &self.url)
            .field("registry_host", &self.registry_host)
            .field("folder", &self.folder.path())
            .finish_non_exhaustive()
    }
}

/// fluxd's process, killed if dropped before a clean stop.
struct FluxdProcess {
    child: Child,
    stopped: bool,
}

impl Drop for FluxdProcess {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Playground {
    /// Starts the registry, pushes the sock-shop images' tags, seeds the
    /// repo and starts fluxd; returns once fluxd serves the workloads.
    pub async fn start(options: Options) -> anyhow::Result<Playground> {
        check_prerequisites(&options)?;
        let folder = tempfile::Builder::new()
            .prefix("flux-playground-")
            .tempdir()
            .context("making the playground's temporary folder")?;
        let secret_file = folder.path().join("webhook-secret");
        let secret = write_secret(&secret_file)?;
        let listen = format!("127.0.0.1:{}", free_port());
        let simulated = (options.cluster == Cluster::Simulated).then(SimulatedCluster::start);
        let kubeconfig = match (&simulated, &options.cluster) {
            (Some(simulated), _) => {
                let path = folder.path().join("kubeconfig");
                std::fs::copy(simulated.server.kubeconfig(), &path)
                    .context("writing the simulated cluster's kubeconfig")?;
                Some(path.into_os_string())
            }
            (None, Cluster::Kubeconfig(kubeconfig)) => Some(kubeconfig.clone()),
            (None, _) => None,
        };
        let registry = Registry::start_notifying(&Notifications {
            url: format!("http://{listen}/hooks/registry"),
            authorization: format!("Bearer {secret}"),
        });
        let registry_host = local_host(&registry.host());
        let (repo, images) = seed_repo(&registry_host)?;
        let pushed = push_tags(&registry_host, &images).await;
        let fluxd = spawn_fluxd(
            &options,
            kubeconfig.as_deref(),
            folder.path(),
            &repo,
            &listen,
            &secret_file,
            &registry_host,
        )?;
        let mut playground = Playground {
            fluxd,
            url: format!("http://{listen}"),
            token: String::new(),
            registry_host,
            pushed,
            options,
            repo,
            registry,
            simulated,
            folder,
        };
        playground.token = playground.wait_until_serving().await?;
        playground.wait_for_front_end_tags().await;
        std::fs::write(playground.env_file(), playground.env_lines())
            .context("writing the environment file")?;
        Ok(playground)
    }

    /// The playground's temporary folder (fluxd's data, log, env file).
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// The file to `source` for `FLUX_URL`, `FLUX_TOKEN`, the registry and `PATH`.
    pub fn env_file(&self) -> PathBuf {
        self.folder.path().join("env")
    }

    /// fluxd's log file (empty when it logs to the terminal).
    pub fn fluxd_log(&self) -> PathBuf {
        self.folder.path().join("fluxd.log")
    }

    /// The simulated cluster's kubeconfig, when fluxd runs on it.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        self.simulated
            .as_ref()
            .map(|_| self.folder.path().join("kubeconfig"))
    }

    /// The bare git repo fluxd works on.
    pub fn repo(&self) -> PathBuf {
        self.repo.path()
    }

    /// The registry's process id.
    pub fn registry_pid(&self) -> u32 {
        self.registry.pid()
    }

    /// fluxd's process id.
    pub fn fluxd_pid(&self) -> u32 {
        self.fluxd.child.id()
    }

    /// fluxd's exit status, once it has exited by itself.
    pub fn fluxd_exited(&mut self) -> Option<ExitStatus> {
        self.fluxd.child.try_wait().ok().flatten()
    }

    fn env_lines(&self) -> String {
        let bin = self
            .options
            .fluxctl
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!(
            "export FLUX_URL={url} FLUX_TOKEN={token} FLUX_PLAYGROUND_REGISTRY={registry}\n\
             export PATH={bin}:\"$PATH\"\n",
            url = self.url,
            token = self.token,
            registry = self.registry_host,
        )
    }

    /// What to try, ready to paste; `current` is the user's kubeconfig
    /// context when its cluster answers, offered, never used unasked.
    pub fn instructions(&self, current: Option<&CurrentContext>) -> String {
        let mut text = String::new();
        let cluster = match &self.options.cluster {
            Cluster::Simulated => "the simulated cluster".to_string(),
            Cluster::Kubeconfig(kubeconfig) => {
                format!("the cluster of {}", Path::new(kubeconfig).display())
            }
            Cluster::None => "no cluster (--cluster=none: workloads come from git)".to_string(),
        };
        let _ = writeln!(text, "The playground is up:");
        let _ = writeln!(text, "  fluxd     {} with {cluster}", self.url);
        if let Some(simulated) = &self.simulated {
            let _ = writeln!(
                text,
                "  cluster   {}, simulated: the API is real Kubernetes wire protocol, no pods run",
                simulated.server.url()
            );
        }
        let _ = writeln!(
            text,
            "  registry  {} ({} repositories; it notifies fluxd of every push)",
            self.registry_host,
            self.pushed.len()
        );
        let _ = writeln!(
            text,
            "  git repo  {} (branch {BRANCH})",
            self.repo().display()
        );
        if self.options.fluxd_log == FluxdLog::File {
            let _ = writeln!(text, "  fluxd log {}", self.fluxd_log().display());
        }
        if let Some(kubeconfig) = self.kubeconfig() {
            let _ = writeln!(text, "  kubeconfig {}", kubeconfig.display());
        }
        let _ = writeln!(text);
        let _ = writeln!(text, "In another terminal:");
        let _ = writeln!(text);
        let _ = writeln!(text, "  source {}", self.env_file().display());
        let _ = writeln!(text, "  fluxctl list-workloads");
        let _ = writeln!(text, "  fluxctl list-images -w {FRONT_END}");
        let watch = if self.options.cluster == Cluster::None {
            ""
        } else {
            " --watch"
        };
        let _ = writeln!(
            text,
            "  fluxctl release --workload {FRONT_END} --update-all-images{watch}"
        );
        let _ = writeln!(text, "  fluxctl automate -w {FRONT_END}");
        let _ = writeln!(
            text,
            "  {} push weaveworksdemos/front-end:0.3.14",
            self.push_command()
        );
        let _ = writeln!(text, "  fluxctl list-workloads -c front-end");
        let _ = writeln!(
            text,
            "  git --git-dir {} log --oneline -p -3",
            self.repo().display()
        );
        let _ = writeln!(text, "  fluxctl sync");
        if let Some(kubeconfig) = self.kubeconfig() {
            let _ = writeln!(
                text,
                "  kubectl --kubeconfig {} get deploy -n sock-shop",
                kubeconfig.display()
            );
        }
        let _ = writeln!(text);
        let _ = writeln!(
            text,
            "The release moves front-end from 0.3.12 to 0.3.13 in one commit; once automated, \
             a new tag pushed is committed a fraction of a second later (the registry \
             notifies fluxd at once, and automation decides a lone new tag at once)."
        );
        match self.options.cluster {
            Cluster::Simulated => {
                let _ = writeln!(
                    text,
                    "fluxd applies each commit to the simulated cluster, whose controller \
                     rolls every changed workload out in a second or two: `release` waits \
                     until its commit is applied, `--watch` follows the rollout."
                );
            }
            Cluster::Kubeconfig(_) => {}
            Cluster::None => {
                let _ = writeln!(
                    text,
                    "Without a cluster nothing is applied: `fluxctl sync` fetches, names the \
                     revision and is done once fluxd has read it."
                );
            }
        }
        if let Some(current) = current {
            let _ = writeln!(
                text,
                "The current kubeconfig context {} ({}) answers: `--use-current-context` \
                 runs the playground on that cluster instead.",
                current.name, current.server
            );
        }
        let _ = writeln!(
            text,
            "Ctrl-C stops fluxd{} and the registry and removes every temporary folder.",
            if self.simulated.is_some() {
                ", the simulated cluster"
            } else {
                ""
            }
        );
        text
    }

    fn push_command(&self) -> String {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "flux-playground".to_string())
    }

    /// Stops fluxd (SIGTERM, then SIGKILL after a grace period) and the
    /// registry, and removes every temporary folder.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let stopped = stop_child(&mut self.fluxd.child, STOP_GRACE);
        self.fluxd.stopped = true;
        let Playground {
            registry,
            repo,
            simulated,
            folder,
            ..
        } = self;
        drop(registry);
        drop(repo);
        drop(simulated);
        let path = folder.path().to_path_buf();
        folder
            .close()
            .with_context(|| format!("removing {}", path.display()))?;
        stopped.map(|_| ())
    }

    async fn wait_until_serving(&mut self) -> anyhow::Result<String> {
        let token_file = self.folder.path().join("fluxd/api-token");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.fluxd_exited() {
                bail!(
                    "fluxd exited with {status} while starting{}",
                    self.log_tail()
                );
            }
            if let Ok(token) = std::fs::read_to_string(&token_file) {
                let client = Client::new(&self.url, Some(token.trim().to_string()))?;
                if client.workloads(None).await.is_ok_and(|w| !w.is_empty()) {
                    return Ok(token.trim().to_string());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "fluxd did not serve the workloads within {}s{}",
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (a little) for fluxd's first scan, so the first `list-images`
    /// shows the tags; a slow scan is not an error, fluxd keeps scanning.
    async fn wait_for_front_end_tags(&self) {
        let Ok(client) = Client::new(&self.url, Some(self.token.clone())) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let images = client.images(&[FRONT_END.to_string()], None).await;
            let scanned = images.is_ok_and(|workloads| {
                workloads
                    .iter()
                    .flat_map(|w| &w.containers)
                    .any(|c| !c.available.is_empty())
            });
            if scanned {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.fluxd_log()).unwrap_or_default();
        let tail = fluxd_error(&log);
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its log ends with:\n{tail}")
        }
    }
}

/// The error fluxd stopped with (without the backtrace `RUST_BACKTRACE`
/// adds), or the last lines of its log.
fn fluxd_error(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if let Some(start) = lines.iter().rposition(|l| l.starts_with("Error:")) {
        return lines[start..]
            .iter()
            .take_while(|l| !l.starts_with("Stack backtrace:"))
            .take(10)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_string();
    }
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn check_prerequisites(options: &Options) -> anyhow::Result<()> {
    for (binary, what) in [
        (
            options.fluxd.as_path(),
            "fluxd (build it: cargo build -p fluxd)",
        ),
        (
            Path::new(REGISTRY_BINARY),
            "the registry (Debian package docker-registry)",
        ),
    ] {
        if !binary.is_file() {
            bail!("{} is missing: {what}", binary.display());
        }
    }
    let git = Command::new("git").arg("--version").output();
    if !git.is_ok_and(|o| o.status.success()) {
        bail!("git is missing (Debian package git)");
    }
    Ok(())
}

/// The webhook secret, random, in a file only the user can read.
fn write_secret(path: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// `127.0.0.1:5000` → `localhost:5000`: image references and pushes both
/// use `localhost`, so the registry's notifications name the host the
/// manifests name.
fn local_host(address: &str) -> String {
    let port = address.rsplit(':').next().unwrap_or(address);
    format!("localhost:{port}")
}

fn seed_repo(registry_host: &str) -> anyhow::Result<(BareRepo, Vec<MovedImage>)> {
    let fixtures = flux_testkit::sock_shop_manifests();
    if !fixtures.is_dir() {
        bail!(
            "the sock-shop manifests are missing: {}",
            fixtures.display()
        );
    }
    let mut images = Ok(Vec::new());
    let repo = BareRepo::seeded_with(|work| {
        images = seed::copy_moved(&fixtures, &work.join("manifests"), registry_host);
    });
    let images = images.with_context(|| format!("copying {}", fixtures.display()))?;
    Ok((repo, images))
}

/// Pushes the tags around each image's tag, oldest first; returns them.
async fn push_tags(registry_host: &str, images: &[MovedImage]) -> Vec<(String, Vec<String>)> {
    let pusher = Pusher::new(registry_host);
    let mut plan: Vec<(String, Vec<String>)> = Vec::new();
    for image in images {
        match plan.iter_mut().find(|(repo, _)| *repo == image.repository) {
            Some((_, tags)) => {
                for tag in seed::tags_around(&image.tag) {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
            }
            None => plan.push((image.repository.clone(), seed::tags_around(&image.tag))),
        }
    }
    let pushes = plan.iter().map(|(repository, tags)| {
        let pusher = &pusher;
        async move {
            for (tag, created) in tags.iter().zip(seed::creation_times(tags.len())) {
                pusher
                    .push_image(repository, tag, &ImageSpec::created(&created.to_string()))
                    .await;
            }
        }
    });
    futures::future::join_all(pushes).await;
    plan
}

fn spawn_fluxd(
    options: &Options,
    kubeconfig: Option<&std::ffi::OsStr>,
    folder: &Path,
    repo: &BareRepo,
    listen: &str,
    secret_file: &Path,
    registry_host: &str,
) -> anyhow::Result<FluxdProcess> {
    let home = folder.join("home");
    std::fs::create_dir_all(&home).context("making fluxd's HOME")?;
    let mut command = Command::new(&options.fluxd);
    command
        .args([
            "--git-url",
            &repo.url(),
            "--git-branch",
            BRANCH,
            "--git-path",
            "manifests",
        ])
        .args(["--listen", listen])
        // Short intervals for a demo; new tags arrive by notification anyway.
        .args(["--git-poll-interval", "10s", "--sync-interval", "30s"])
        .args([
            "--registry-poll-interval",
            "30s",
            "--automation-interval",
            "10s",
        ])
        .arg(format!("--registry-include-image={registry_host}/*"))
        .arg("--data-dir")
        .arg(folder.join("fluxd"))
        .arg("--webhook-secret-file")
        .arg(secret_file)
        // git sees none of the user's configuration: the demo behaves the
        // same on every machine.
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match kubeconfig {
        Some(kubeconfig) => {
            command
                .arg("--cluster=kubeconfig")
                .env("KUBECONFIG", kubeconfig);
        }
        None => {
            command.arg("--cluster=none");
        }
    }
    match options.fluxd_log {
        FluxdLog::File => {
            let log = std::fs::File::create(folder.join("fluxd.log"))
                .context("creating fluxd's log file")?;
            command.stderr(log).env("NO_COLOR", "1");
        }
        FluxdLog::Terminal => {
            command.stderr(Stdio::inherit());
        }
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", options.fluxd.display()))?;
    Ok(FluxdProcess {
        child,
        stopped: false,
    })
}

/// SIGTERM, then SIGKILL if the child has not exited within `grace`.
fn stop_child(child: &mut Child, grace: Duration) -> anyhow::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = rustix::process::Pid::from_child(child);
    // It may have exited since try_wait: then there is nothing to signal.
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    Ok(child.wait()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluxd_error_is_its_error_line_without_the_backtrace() {
        let log = "INFO listening\nError: no cluster configuration: no kubeconfig found\n\nStack backtrace:\n  0: main\n";
        assert_eq!(
            fluxd_error(log),
            "Error: no cluster configuration: no kubeconfig found"
        );
        assert_eq!(fluxd_error("a\nb\n"), "a\nb");
    }

    #[test]
    fn image_references_and_pushes_name_the_registry_localhost() {
        assert_eq!(local_host("127.0.0.1:38305"), "localhost:38305");
    }
}
