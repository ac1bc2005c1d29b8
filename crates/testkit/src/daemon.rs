//! A real `fluxd` for tests: started against a bare repo seeded with the
//! sock-shop manifests, with no cluster or with the one of a kubeconfig,
//! killed when dropped; and a registry holding a few tags of the front-end
//! image.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flux_api::{Client, Job, JobStatus};

use crate::git::{BRANCH, BareRepo, IsolatedEnv, free_port};
use crate::registry::{ImageSpec, Registry};

/// The workload the fixtures release to.
pub const FRONT_END: &str = "sock-shop:deployment/front-end";

/// A running `fluxd`, killed when dropped.
pub struct Fluxd {
    /// The process.
    pub child: Child,
    /// Its API, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The API token it generated.
    pub token: String,
    /// Its data folder.
    pub data: tempfile::TempDir,
    _env: IsolatedEnv,
}

impl Drop for Fluxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fluxd {
    /// Starts `binary` on `repo`'s `manifests` folder (or the `--git-path`s
    /// of `extra`), polling git and the
    /// registries hourly unless `extra` sets the interval (tests ask for
    /// what they need), plus `extra` flags; returns once it serves the manifests' workloads.
    pub async fn start(binary: &Path, repo: &BareRepo, extra: &[&str]) -> Fluxd {
        Fluxd::launch(binary, repo, None, free_port(), extra).await
    }

    /// The same with these environment variables set for it (on top of
    /// its isolated git environment), e.g. `HTTPS_PROXY`.
    pub async fn start_with_env(
        binary: &Path,
        repo: &BareRepo,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Fluxd {
        let fluxd = Fluxd::spawn(binary, &repo.url(), None, free_port(), extra, vars).await;
        fluxd.wait_for_workloads().await;
        fluxd
    }

    /// The same, syncing the cluster of `kubeconfig` (the API server
    /// double's, say) instead of running without one.
    pub async fn start_with_cluster(
        binary: &Path,
        repo: &BareRepo,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Fluxd {
        Fluxd::launch(binary, repo, Some(kubeconfig), free_port(), extra).await
    }

    /// Starts `binary` listening on `port` (chosen beforehand, so that a
    /// registry can be told where to send its notifications), with the
    /// cluster of `kubeconfig` or none.
    pub async fn launch(
        binary: &Path,
        repo: &BareRepo,
        kubeconfig: Option<&Path>,
        port: u16,
        extra: &[&str],
    ) -> Fluxd {
        let fluxd = Fluxd::spawn(binary, &repo.url(), kubeconfig, port, extra, &[]).await;
        fluxd.wait_for_workloads().await;
        fluxd
    }

    async fn wait_for_workloads(&self) {
        let client = Client::new(&self.url, None).expect("the URL is well formed");
        wait_for("the manifests to be read", || async {
            client.workloads(None).await.is_ok_and(|w| !w.is_empty())
        })
        .await;
    }

    /// Starts `binary` on the repo at `git_url` (its `manifests` folder)
    /// with `env` added to its environment; returns once it serves its API,
    /// whether or not it could read the repo.
    pub async fn spawn(
        binary: &Path,
        git_url: &str,
        kubeconfig: Option<&Path>,
        port: u16,
        extra: &[&str],
        added: &[(&str, &str)],
    ) -> Fluxd {
        let data = tempfile::tempdir().expect("a temporary folder can be made");
        let env = IsolatedEnv::new();
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(data.path().join("fluxd.log"))
            .expect("the data folder is writable");
        let mut command = Command::new(binary);
        match kubeconfig {
            Some(kubeconfig) => command
                .arg("--cluster=kubeconfig")
                .env("KUBECONFIG", kubeconfig),
            None => command.arg("--cluster=none"),
        };
        let child = command
            .args([
                "--git-url",
                git_url,
                "--git-branch",
                BRANCH,
                "--listen",
                &listen,
            ])
            .args(default_git_path(extra))
            .args(hourly_polls(extra))
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .envs(env.vars())
            .envs(added.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        let url = format!("http://{listen}");
        let mut fluxd = Fluxd {
            child,
            url,
            token: String::new(),
            data,
            _env: env,
        };
        let token_file = token_file(extra).unwrap_or_else(|| fluxd.data.path().join("api-token"));
        let client = Client::new(&fluxd.url, None).expect("the URL is well formed");
        wait_for("fluxd to answer", || async {
            client.version().await.is_ok() && token_file.exists()
        })
        .await;
        fluxd.token = std::fs::read_to_string(&token_file)
            .expect("the token file exists")
            .trim()
            .to_string();
        fluxd
    }

    /// What fluxd logged so far (its standard error).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("fluxd.log")).unwrap_or_default()
    }

    /// A client holding the token.
    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(self.token.clone())).expect("the URL is well formed")
    }

    /// How many syncs fluxd ran, from its `/metrics`.
    pub async fn syncs(&self) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("fluxd answers")
            .text()
            .await
            .expect("a body");
        text.lines()
            .filter(|line| line.starts_with("flux_sync_duration_seconds_count"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// `--git-poll-interval 1h` and `--registry-poll-interval 1h`, each unless
/// `extra` sets it (fluxd refuses a flag given twice).
fn hourly_polls(extra: &[&str]) -> Vec<&'static str> {
    ["--git-poll-interval", "--registry-poll-interval"]
        .into_iter()
        .filter(|flag| !extra.iter().any(|e| e.split('=').next() == Some(*flag)))
        .flat_map(|flag| [flag, "1h"])
        .collect()
}

/// The file of `--api-token-file` when `extra` names one (replicas sharing
/// a token, say).
fn token_file(extra: &[&str]) -> Option<std::path::PathBuf> {
    let mut args = extra.iter();
    while let Some(arg) = args.next() {
        if let Some(file) = arg.strip_prefix("--api-token-file=") {
            return Some(file.into());
        }
        if *arg == "--api-token-file" {
            return args.next().map(Into::into);
        }
    }
    None
}

/// `--git-path manifests`, unless `extra` names git paths of its own.
fn default_git_path(extra: &[&str]) -> &'static [&'static str] {
    if extra
        .iter()
        .any(|a| *a == "--git-path" || a.starts_with("--git-path="))
    {
        return &[];
    }
    &["--git-path", "manifests"]
}

/// Polls `done` every 100 ms; panics after a minute naming `what`.
pub async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The job once it is no longer queued or running.
pub async fn finished(client: &Client, id: &str) -> Job {
    let mut job = client.job(id).await.expect("the job exists");
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(job.status, JobStatus::Queued | JobStatus::Running) {
        assert!(Instant::now() < deadline, "job {id} did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
        job = client.job(id).await.expect("the job exists");
    }
    job
}

/// A bare repo whose `manifests` folder holds the sock-shop manifests, with
/// front-end's image moved to `image` when given.
pub fn sock_shop_repo(image: Option<&str>) -> BareRepo {
    BareRepo::seeded_with(|work| {
        let manifests = work.join("manifests");
        crate::copy_dir(&crate::sock_shop_manifests(), &manifests)
            .expect("the fixtures can be copied");
        if let Some(image) = image {
            let path = manifests.join("09-front-end-dep.yaml");
            let text = std::fs::read_to_string(&path).expect("the fixture exists");
            let moved = text.replace("weaveworksdemos/front-end:0.3.12", image);
            assert_ne!(moved, text, "the fixture names front-end 0.3.12");
            std::fs::write(&path, moved).expect("the copy is writable");
        }
    })
}

/// A registry with three tags of `sock-shop/front-end`, newest last.
pub async fn registry_with_front_end() -> Registry {
    let registry = Registry::start();
    for (tag, created) in [
        ("0.3.12", "2016-11-18T16:00:00Z"),
        ("0.3.13", "2017-01-10T10:00:00Z"),
        ("0.4.0", "2017-03-01T10:00:00Z"),
    ] {
        registry
            .push_image("sock-shop/front-end", tag, &ImageSpec::created(created))
            .await;
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::hourly_polls;

    #[test]
    fn the_fixture_polls_hourly_unless_the_flags_say_otherwise() {
        assert_eq!(
            hourly_polls(&["--automation-batch-window=1s"]),
            [
                "--git-poll-interval",
                "1h",
                "--registry-poll-interval",
                "1h"
            ]
        );
        assert_eq!(
            hourly_polls(&["--registry-poll-interval=1s"]),
            ["--git-poll-interval", "1h"]
        );
        assert_eq!(
            hourly_polls(&["--git-poll-interval", "5s"]),
            ["--registry-poll-interval", "1h"]
        );
    }
}
