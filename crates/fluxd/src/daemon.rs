//! The daemon assembled: the config repo and its refresh loop, the registry
//! scanner and its poll loop, the job worker, and what the API asks of them.
//!
//! Git, registry and jobs run as independent tasks. Whenever the branch head
//! moves, the manifests at the new head are read once, and the API's
//! [`View`] and the scanner's set of images in use are replaced. Each
//! registry host is polled on its own clock (see [`registry`]); after each
//! repository's poll the view's images are recomputed from the cache. Jobs edit
//! the manifests in the repo's write checkout and push through
//! [`flux_git::Repo::commit_and_push`], so a job that fails or changes
//! nothing leaves no commit.
//!
//! With a cluster, the manifests read at each new head are applied (see
//! [`cluster`]); the sync marker then moves there, and jobs whose commits it
//! contains are marked applied. With `--cluster=none` nothing is applied
//! and the marker never moves: a revision counts as synced once fluxd has
//! read the manifests at it, so `fluxctl sync` still tells when fluxd sees
//! a change.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flux_api::{
    AutomationSpec, ContainerUpdate, Identity, ImageUpdate, JobSpec, Manifest, PolicySpec,
    ReadState, ResultStatus, SyncRequested, SyncStatus, WorkloadResult,
};
use flux_git::{
    CommitMessage, CommitSpec, DeployKey, GitError, Person, Repo, RepoConfig, RepoState,
};
use flux_image::{Glob, ImageRef, Name};
use flux_manifests::release::{self, ReleaseSpec, Status, Targets, Update};
use flux_manifests::{
    BuildCache, Checkout, LoadError, LoadOptions, PolicyUpdate, ResourceId, Transaction,
};
use flux_registry::{
    Cache, Client, ClientConfig, Credentials, HostLimits, RepositoryInfo, ScanConfig, Scanner,
    TlsConfig, newest_admitted,
};
use jiff::Timestamp;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;

mod cluster;
mod registry;

use registry::Named;

use crate::config::{ClusterMode, Config};
use crate::identity::{self, KeyError, KeySecret};
use crate::jobs::{Jobs, Outcome};
use crate::metrics::{JobLabels, Metrics};
use crate::server::{Api, Control, Pending, View};

/// `--git-label`'s default: the sync tag; notes then go on `refs/notes/flux`.
const DEFAULT_LABEL: &str = "flux-sync";

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No cluster could be reached with `--cluster=kubeconfig`.
    #[error("{0} (run with --cluster=none to use fluxd without a cluster)")]
    Cluster(flux_cluster::ClusterError),
    /// The deploy key could not be made or read.
    #[error("deploy key in {dir}: {source}")]
    DeployKey {
        /// Where it lives.
        dir: PathBuf,
        /// What went wrong.
        source: GitError,
    },
    /// The deploy key could not be read from or written to its Secret.
    #[error(transparent)]
    DeployKeySecret(crate::identity::KeyError),
    /// The data folder could not be made.
    #[error("data folder {dir}: {source}")]
    DataDir {
        /// The folder.
        dir: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The secrets the API checks.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Bearer token of state-changing calls.
    pub api_token: String,
    /// Secret webhooks must present.
    pub webhook_secret: String,
}

/// The manifests at one revision, as last read.
struct Loaded {
    head: String,
    checkout: Arc<Checkout>,
    /// Where the checkout was read (gone since; its paths start with it).
    root: PathBuf,
    /// Workloads of files that could not be read at `head`, as last read.
    carried: Vec<crate::view::Carried>,
}

/// Everything the loops, the job worker and the API share.
struct Inner {
    config: Config,
    repo: Repo,
    scanner: Scanner,
    metrics: Arc<Metrics>,
    view: watch::Sender<View>,
    images: watch::Sender<BTreeSet<Name>>,
    loaded: Mutex<Option<Loaded>>,
    git_wake: Notify,
    /// The deploy key shown by the API; replaced by `POST /api/v1/identity`.
    deploy_key: std::sync::RwLock<Option<Identity>>,
    /// Where the deploy key outlives the pod, with a cluster and an ssh URL.
    key_secret: Option<KeySecret>,
    /// Asks automation to look; carries when a new tag was first seen.
    automation: mpsc::UnboundedSender<Option<Timestamp>>,
    /// The cluster and its sync, unless `--cluster=none`.
    cluster: Option<cluster::ClusterSide>,
    /// Kustomize builds kept from one read of the manifests to the next.
    builds: Arc<BuildCache>,
}

/// A started daemon.
pub struct Running {
    api: Arc<Api>,
    jobs: Jobs,
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
}

/// Starts fluxd's parts.
pub struct Daemon;

impl Daemon {
    /// Starts the git and registry loops and the job worker, as `config`
    /// says; the HTTP server is the caller's (see [`Running::router`]).
    pub async fn start(config: Config, secrets: Secrets) -> Result<Running, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            dir: config.data_dir.clone(),
            source,
        })?;
        let key_secret = key_secret(&config).await?;
        let (deploy_key, ssh) = deploy_key(&config, key_secret.as_ref()).await?;
        let mut repo_config = RepoConfig::new(
            config.git_url.clone(),
            config.git_branch.clone(),
            config.data_dir.join("git"),
        );
        repo_config.paths = config.git_paths.clone();
        repo_config.committer = Person {
            name: config.git_user.clone(),
            email: config.git_email.clone(),
        };
        repo_config.set_author = config.git_set_author;
        repo_config.ci_skip = config.git_ci_skip.then(|| "[ci skip]".to_string());
        repo_config.readonly = config.git_readonly;
        repo_config.sync_tag = config.git_label.clone();
        // As in the original, a label of one's own names both refs; the
        // default label leaves notes on `refs/notes/flux`.
        if config.git_label != DEFAULT_LABEL {
            repo_config.notes_ref = config.git_label.clone();
        }
        repo_config.ssh = ssh;
        repo_config.https_token_file = config.git_https_token_file.clone();
        repo_config.https_user = config.git_https_user.clone();
        repo_config.credential_helper = config.git_credential_helper.clone();
        let repo = Repo::new(repo_config);
        // From here on the URL is the one without credentials (the repo
        // took them out): every log line, error and answer shows this one.
        let mut config = config;
        config.git_url = repo.config().url.clone();
        let cluster = match config.cluster {
            ClusterMode::Kubeconfig => Some(connect(&config).await?),
            ClusterMode::None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let (view, view_rx) = watch::channel(View {
            read: Err(format!(
                "fluxd has not read the git repo {} yet: the first fetch is under way",
                config.git_url
            )),
            ..View::default()
        });
        let (images, images_rx) = watch::channel(BTreeSet::new());
        let (automation, automation_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            scanner: scanner(&config),
            repo,
            config,
            metrics: metrics.clone(),
            view,
            images,
            loaded: Mutex::new(None),
            git_wake: Notify::new(),
            deploy_key: std::sync::RwLock::new(deploy_key),
            key_secret,
            automation,
            cluster,
            builds: Arc::new(BuildCache::default()),
        });
        let (stop, shutdown) = watch::channel(false);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (image_changes, image_changes_rx) = mpsc::unbounded_channel();
        let executor = inner.clone();
        let jobs = Jobs::start(
            move |spec| {
                let daemon = executor.clone();
                async move { daemon.execute(spec).await }
            },
            shutdown.clone(),
        );
        jobs.observe_steps(cluster::step_metrics(metrics.clone()));
        let mut loops = vec![
            tokio::spawn(git_loop(inner.clone(), shutdown.clone())),
            tokio::spawn(registry::registry_loop(
                inner.clone(),
                images_rx,
                (image_changes.clone(), image_changes_rx),
                shutdown.clone(),
            )),
            tokio::spawn(route_changes(inner.clone(), changes_rx, image_changes)),
            tokio::spawn(automation_loop(
                inner.clone(),
                jobs.clone(),
                automation_rx,
                shutdown.clone(),
            )),
        ];
        if inner.cluster.is_some() {
            loops.push(tokio::spawn(cluster::sync_loop(
                inner.clone(),
                jobs.clone(),
                shutdown.clone(),
            )));
            loops.push(tokio::spawn(cluster::rollout_loop(
                inner.clone(),
                jobs.clone(),
                shutdown.clone(),
            )));
        }
        let api = Arc::new(Api {
            cluster: inner.cluster.is_some(),
            token: secrets.api_token,
            webhook_secret: secrets.webhook_secret,
            jobs: jobs.clone(),
            metrics,
            view: view_rx,
            changes,
            control: Arc::new(Controls(inner)),
        });
        Ok(Running {
            api,
            jobs,
            stop,
            loops,
        })
    }
}

impl Running {
    /// The HTTP API, webhooks and `/metrics`.
    pub fn router(&self) -> axum::Router {
        crate::server::router(self.api.clone())
    }

    /// What the API handlers share (metrics included).
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// Stops the loops and waits for the job worker to finish the job it is
    /// running; queued jobs are left.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.jobs.stopped().await;
        for task in self.loops {
            task.abort();
        }
    }
}

/// The cluster of the kubeconfig (`KUBECONFIG`, `~/.kube/config`) or the
/// in-cluster configuration, and how fluxd syncs it.
async fn connect(config: &Config) -> Result<cluster::ClusterSide, StartError> {
    let scope = flux_cluster::Scope {
        allowed_namespaces: config.k8s_allow_namespaces.clone(),
        ..flux_cluster::Scope::default()
    };
    let connection = flux_cluster::Connection::default();
    let cluster = flux_cluster::Cluster::connect(&connection, scope)
        .await
        .map_err(StartError::Cluster)?;
    let options = flux_cluster::SyncOptions {
        set_name: sync_set_name(config),
        garbage_collection: if config.sync_garbage_collection {
            flux_cluster::GarbageCollection::On
        } else {
            flux_cluster::GarbageCollection::Off
        },
        force: config.sync_force_conflicts,
        ..flux_cluster::SyncOptions::default()
    };
    Ok(cluster::ClusterSide::new(cluster, options))
}

/// Names what this repo, branch and paths apply, so that two fluxd syncing
/// different sources into one cluster never collect each other's objects.
fn sync_set_name(config: &Config) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in [config.git_url.as_str(), config.git_branch.as_str()]
        .into_iter()
        .chain(config.git_paths.iter().map(String::as_str))
    {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("git-{}", &hex::encode(hash.finalize())[..16])
}

/// The Secret of the deploy key: only with a cluster and an ssh URL (with
/// neither there is no key to keep, or nowhere to keep it but the data folder).
async fn key_secret(config: &Config) -> Result<Option<KeySecret>, StartError> {
    if config.cluster == ClusterMode::None || !is_ssh_url(&config.git_url) {
        return Ok(None);
    }
    let client = flux_cluster::Connection::default()
        .client()
        .await
        .map_err(StartError::Cluster)?;
    Ok(Some(KeySecret::new(
        client,
        config.k8s_secret_namespace.as_deref(),
        &config.k8s_secret_name,
        &config.k8s_secret_data_key,
    )))
}

async fn deploy_key(
    config: &Config,
    secret: Option<&KeySecret>,
) -> Result<(Option<Identity>, Option<flux_git::SshOptions>), StartError> {
    if !is_ssh_url(&config.git_url) {
        return Ok((None, None));
    }
    let dir = config.data_dir.join("ssh");
    let key = identity::ensure(&dir, secret).await.map_err(start_error)?;
    let shown = shown(&key).await.map_err(start_error)?;
    let ssh = key.ssh_options(dir.join("known_hosts"));
    Ok((Some(shown), Some(ssh)))
}

fn start_error(error: KeyError) -> StartError {
    match error {
        KeyError::File { dir, source } => StartError::DeployKey { dir, source },
        secret => StartError::DeployKeySecret(secret),
    }
}

/// What the API shows of `key`.
async fn shown(key: &DeployKey) -> Result<Identity, KeyError> {
    let identity = key.identity().await.map_err(|source| KeyError::File {
        dir: key
            .private_key()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        source,
    })?;
    Ok(Identity {
        public_key: identity.public_key,
        fingerprint: identity.fingerprint,
    })
}

impl Inner {
    /// Replaces the deploy key with a new one, in its Secret first when it
    /// has one, then in `<data-dir>/ssh`; git's ssh reads the key file at
    /// each fetch, so the next one uses it. None when the repo is not
    /// reached over ssh (there is no key).
    async fn regenerate_deploy_key(&self) -> Result<Option<Identity>, String> {
        if self.identity_shown().is_none() {
            return Ok(None);
        }
        let dir = self.config.data_dir.join("ssh");
        let failed = |error: KeyError| format!("regenerating the deploy key: {error}");
        let key = identity::regenerate(&dir, self.key_secret.as_ref())
            .await
            .map_err(failed)?;
        let shown = shown(&key).await.map_err(failed)?;
        *self
            .deploy_key
            .write()
            .expect("the deploy key lock is never poisoned") = Some(shown.clone());
        tracing::info!(fingerprint = %shown.fingerprint, "new deploy key");
        Ok(Some(shown))
    }

    fn identity_shown(&self) -> Option<Identity> {
        self.deploy_key
            .read()
            .expect("the deploy key lock is never poisoned")
            .clone()
    }
}

fn is_ssh_url(url: &str) -> bool {
    if url.starts_with("ssh://") || url.starts_with("git+ssh://") {
        return true;
    }
    // scp-like `user@host:path`: a colon before any slash, and no scheme.
    !url.contains("://")
        && url
            .split_once(':')
            .is_some_and(|(host, _)| !host.contains('/') && host.contains('@'))
}

fn scanner(config: &Config) -> Scanner {
    let client = ClientConfig {
        limits: HostLimits {
            rps: if config.registry_rps > 0.0 {
                config.registry_rps
            } else {
                f64::INFINITY
            },
            burst: config.registry_burst.max(1),
            ..HostLimits::default()
        },
        insecure_hosts: config.registry_insecure_hosts.clone(),
        tls: TlsConfig {
            certs_dir: Some(config.registry_certs_dir.clone()),
            ca_files: config.registry_ca_files.clone(),
        },
        ..ClientConfig::default()
    };
    let credentials = docker_credentials();
    let cache = Cache::open(&config.data_dir.join("registry.redb"));
    let scan = ScanConfig {
        include: config
            .registry_include_images
            .iter()
            .map(|g| Glob::new(g))
            .collect(),
        exclude: config
            .registry_exclude_images
            .iter()
            .map(|g| Glob::new(g))
            .collect(),
        poll_interval: config.registry_poll_interval,
        platforms: config.registry_platforms.clone(),
        use_labels: config
            .registry_use_labels
            .iter()
            .map(|g| Glob::new(g))
            .collect(),
        ..ScanConfig::default()
    };
    Scanner::new(
        Arc::new(Client::new(client, credentials)),
        Arc::new(cache),
        scan,
    )
}

/// Credentials from the docker config (`$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`) when there is one; anonymous otherwise.
fn docker_credentials() -> Credentials {
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(|dir| PathBuf::from(dir).join("config.json"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")));
    let Some(path) = path.filter(|p| p.exists()) else {
        return Credentials::none();
    };
    match Credentials::from_docker_config_file(&path) {
        Ok(credentials) => credentials,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "registry credentials not read");
            Credentials::none()
        }
    }
}

/// Fetches on an interval and on request; reads the manifests again when
/// the head moved.
async fn git_loop(daemon: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        daemon.refresh().await;
        tokio::select! {
            () = tokio::time::sleep(daemon.config.git_poll_interval) => {}
            () = daemon.git_wake.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Runs automation when asked (a new tag, a new head) and every
/// `--automation-interval`, after gathering the requests of one batch
/// window, so a burst of new tags makes one job, one commit, one push.
async fn automation_loop(
    daemon: Arc<Inner>,
    jobs: Jobs,
    mut requests: mpsc::UnboundedReceiver<Option<Timestamp>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: Option<Submitted> = None;
    loop {
        let mut first_seen = tokio::select! {
            () = tokio::time::sleep(daemon.config.automation_interval) => None,
            request = requests.recv() => match request {
                Some(seen) => seen,
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let window = daemon.config.automation_batch_window;
        match gather(&mut requests, first_seen, window, &mut shutdown).await {
            Some(seen) => first_seen = seen,
            None => return,
        }
        if daemon.config.git_readonly {
            // Nothing could be pushed; a failing job per new tag helps no one.
            continue;
        }
        let Some((moving, head)) = daemon.automation_plan().await else {
            continue;
        };
        if last.as_ref().is_some_and(|l| l.still_pending(&jobs, &head)) {
            // Its commit is not read yet; reading it asks again.
            continue;
        }
        if moving.is_empty() {
            continue;
        }
        tracing::info!(workloads = ?moving, "automation: newer images admitted");
        let spec = JobSpec::Automation(AutomationSpec {
            workloads: moving,
            first_seen,
        });
        let id = jobs.submit(spec, first_seen);
        daemon.metrics.queue_length.set(jobs.queued() as i64);
        last = Some(Submitted { id, head });
    }
}

/// Gathers automation's triggers into one batch: until they stop coming for
/// a quarter of the batch window, and at most the whole window after the
/// first. A lone new tag is acted on a quarter-window later; a burst makes
/// one job. Answers with the earliest first-seen time, or `None` when
/// fluxd stops.
async fn gather(
    requests: &mut mpsc::UnboundedReceiver<Option<Timestamp>>,
    mut first_seen: Option<Timestamp>,
    window: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Option<Timestamp>> {
    let quiet = window / 4;
    let last_chance = tokio::time::Instant::now() + window;
    let mut settles = (tokio::time::Instant::now() + quiet).min(last_chance);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(settles) => return Some(first_seen),
            request = requests.recv() => {
                first_seen = earliest(first_seen, request?);
                settles = (tokio::time::Instant::now() + quiet).min(last_chance);
            }
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
    }
}

/// The automation job last queued, and the head it was planned on.
struct Submitted {
    id: String,
    head: String,
}

impl Submitted {
    /// Whether planning again now would repeat this job: it has not
    /// finished, or it pushed a commit the manifests last read predate.
    fn still_pending(&self, jobs: &Jobs, head: &str) -> bool {
        let Some(job) = jobs.get(&self.id) else {
            return false;
        };
        match job.status {
            flux_api::JobStatus::Queued | flux_api::JobStatus::Running => true,
            _ => job.commit.is_some() && self.head == head,
        }
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sends webhook and `notify` changes to the loop they concern.
async fn route_changes(
    daemon: Arc<Inner>,
    mut changes: mpsc::UnboundedReceiver<flux_api::Change>,
    images: mpsc::UnboundedSender<Named>,
) {
    while let Some(change) = changes.recv().await {
        match change {
            flux_api::Change::Git { branch } => {
                if branch.is_none_or(|b| b == daemon.config.git_branch) {
                    daemon.git_wake.notify_one();
                }
            }
            flux_api::Change::Image { name } => match name.parse::<Name>() {
                Ok(name) => {
                    let _ = images.send((name, 0));
                }
                Err(error) => tracing::warn!(%name, %error, "image change names no repository"),
            },
        }
    }
}

impl Inner {
    /// Fetches, then reads the manifests again if the head moved.
    async fn refresh(&self) {
        match self.repo.refresh().await {
            Ok(status) => {
                let ready = matches!(status.state, RepoState::Ready | RepoState::ReadOnly);
                self.metrics.git_ready.set(i64::from(ready));
                if let Some(error) = status.last_error {
                    tracing::warn!(url = %self.config.git_url, %error, "git repo");
                    self.not_read(&error).await;
                }
            }
            Err(error) => {
                self.metrics.git_ready.set(0);
                tracing::warn!(url = %self.config.git_url, %error, "git refresh failed");
                self.not_read(&error.to_string()).await;
                return;
            }
        }
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "reading the manifests failed");
            self.not_read(&error).await;
        }
    }

    /// Until the manifests were read once, listings answer why they cannot
    /// be made (a wrong URL, a missing branch) instead of an empty list.
    async fn not_read(&self, why: &str) {
        if self.loaded.lock().await.is_some() {
            return;
        }
        let why = format!(
            "fluxd has not read the git repo {} yet: {why}",
            self.config.git_url
        );
        self.view.send_modify(|view| view.read = Err(why));
    }

    /// Reads the manifests at the mirror's head when it is not the one last
    /// read, and replaces the view and the images in use (and, with a
    /// cluster, what the sync applies); true when it read a new head.
    async fn reload(&self) -> Result<bool, String> {
        let mut loaded = self.loaded.lock().await;
        let head = self.repo.head().await.map_err(|e| e.to_string())?;
        if loaded.as_ref().is_some_and(|l| l.head == head) {
            return Ok(false);
        }
        let files = self
            .repo
            .checkout_at(&head)
            .await
            .map_err(|e| e.to_string())?;
        let paths = manifest_paths(files.dir(), &self.config.git_paths);
        let root = files.dir().to_path_buf();
        let applying = self.cluster.is_some();
        let at = root.clone();
        let options = self.load_options(&root);
        let (checkout, set) = tokio::task::spawn_blocking(move || {
            let checkout = Checkout::load(&paths, options);
            let set = applying.then(|| sync_set(&at, &checkout));
            (checkout, set)
        })
        .await
        .map_err(|e| format!("reading the manifests at {head}: {e}"))?;
        if let Err(error) = files.remove().await {
            tracing::warn!(%error, "removing a read checkout failed");
        }
        let errors = crate::view::file_errors(&checkout, &root);
        for error in &errors {
            tracing::warn!(revision = %head, "{}", error.message);
        }
        let in_use: BTreeSet<Name> = checkout
            .workloads
            .iter()
            .flat_map(|w| &w.containers)
            .map(|c| c.image.name().clone())
            .collect();
        let mut workloads = crate::view::workloads(&checkout);
        let before = loaded.as_ref().map(|l| crate::view::Before {
            checkout: &l.checkout,
            root: &l.root,
            carried: &l.carried,
        });
        let carried = crate::view::carried(&errors, &workloads, before);
        workloads.extend(carried.iter().map(|c| c.workload.clone()));
        let mut view = View {
            workloads,
            images: crate::view::images(&checkout, |name| self.cached(name)),
            read: Ok(ReadState {
                revision: head.clone(),
                errors,
            }),
        };
        if let Some(side) = &self.cluster {
            side.decorate(&mut view.workloads);
        }
        tracing::info!(revision = %head, workloads = view.workloads.len(), "read the manifests");
        self.view.send_replace(view);
        self.images.send_if_modified(|images| {
            let moved = *images != in_use;
            *images = in_use;
            moved
        });
        if let (Some(side), Some(set)) = (&self.cluster, set) {
            side.want(cluster::Desired {
                revision: head.clone(),
                files: Arc::new(set),
                unbuilt: Arc::new(unbuilt(&checkout, &root)),
            });
        }
        *loaded = Some(Loaded {
            head,
            checkout: Arc::new(checkout),
            root,
            carried,
        });
        let _ = self.automation.send(None);
        Ok(true)
    }

    /// The resources of the manifests at the head read last, each with its
    /// text as written: a checkout of that head, read and removed again.
    async fn manifests(&self) -> Result<Vec<Manifest>, String> {
        let head = self.loaded.lock().await.as_ref().map(|l| l.head.clone());
        let Some(head) = head else {
            return Err("fluxd has not read the git repo yet".to_string());
        };
        let files = self
            .repo
            .checkout_at(&head)
            .await
            .map_err(|e| format!("checking out {head}: {e}"))?;
        let root = files.dir().to_path_buf();
        let paths = manifest_paths(&root, &self.config.git_paths);
        let options = self.load_options(&root);
        let answer = tokio::task::spawn_blocking(move || {
            let checkout = Checkout::load(&paths, options);
            manifests_of(&checkout, &root)
        })
        .await
        .map_err(|e| format!("reading the manifests at {head}: {e}"));
        if let Err(error) = files.remove().await {
            tracing::warn!(%error, "removing a read checkout failed");
        }
        answer?.map_err(|e| format!("reading the manifests at {head}: {e}"))
    }

    /// Recomputes the view's images from the cache.
    async fn refresh_images(&self) {
        let loaded = self.loaded.lock().await;
        let Some(loaded) = loaded.as_ref() else {
            return;
        };
        let images = crate::view::images(&loaded.checkout, |name| self.cached(name));
        self.view.send_modify(|view| view.images = images);
    }

    /// What the cache knows of a repository; `None` until it was polled.
    fn cached(&self, name: &Name) -> Option<RepositoryInfo> {
        self.scanner
            .cache()
            .repository(&name.canonical())
            .map(|_| self.scanner.info(name))
    }

    fn cached_all(&self, names: BTreeSet<Name>) -> HashMap<Name, RepositoryInfo> {
        names
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.cached(&name)?)))
            .collect()
    }

    /// Runs one job: edits, commit and push; the outcome the queue records.
    async fn execute(&self, spec: JobSpec) -> Result<Outcome, String> {
        let started = std::time::Instant::now();
        let kind = match &spec {
            JobSpec::Release(_) => "release",
            JobSpec::Policy(_) => "policy",
            JobSpec::Automation(_) => "automation",
        };
        let outcome = match spec.clone() {
            JobSpec::Release(release) => self.release(release).await,
            JobSpec::Policy(policy) => self.policy(policy).await,
            JobSpec::Automation(automation) => self.automate(automation).await,
        };
        let status = if outcome.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        self.metrics
            .job_duration
            .get_or_create(&JobLabels {
                kind: kind.into(),
                status: status.into(),
            })
            .observe(started.elapsed().as_secs_f64());
        if let Err(error) = &outcome {
            tracing::warn!(kind, %error, "job failed");
        }
        outcome
    }

    async fn release(&self, wire: flux_api::ReleaseSpec) -> Result<Outcome, String> {
        let base = release_spec(&wire)?;
        let chosen = crate::selection::chosen(&wire)?;
        let message = release_message(&wire);
        let job = JobSpec::Release(wire.clone());
        self.edit_and_push(&job, wire.user.as_deref(), |checkout, transaction| {
            let mut spec = base.clone();
            if wire.update == ImageUpdate::AllLatest {
                spec.update = Update::PerContainer(self.newest_targets(checkout, &spec));
            }
            if let Some(chosen) = &chosen {
                crate::selection::narrow(checkout, &mut spec, chosen);
            }
            let results = release::execute(transaction, &spec);
            Ok((
                results.iter().map(wire_result).collect(),
                Some(message.clone()),
            ))
        })
        .await
    }

    /// Moves each automated workload's containers to their newest admitted
    /// tags, decided again on the manifests being edited and the registry
    /// cache; one commit for all of them, none when nothing moves.
    async fn automate(&self, wire: AutomationSpec) -> Result<Outcome, String> {
        let job = JobSpec::Automation(wire.clone());
        self.edit_and_push(&job, None, |checkout, transaction| {
            let spec = self.automation_spec(checkout);
            let made = release::execute(transaction, &spec);
            let images: BTreeSet<String> = made
                .iter()
                .filter(|r| r.status == Status::Success)
                .flat_map(|r| &r.updates)
                .map(|u| flux_manifests::respell(&u.current, &u.target))
                .collect();
            let results = made
                .iter()
                .filter(|r| !r.updates.is_empty())
                .map(wire_result)
                .collect();
            let images: Vec<String> = images.into_iter().collect();
            let message = (!images.is_empty()).then(|| CommitMessage::auto_release(&images));
            Ok((results, message))
        })
        .await
    }

    /// Runs a job's edit in the repo's write checkout and pushes the commit:
    /// `edit` makes its changes in the transaction and answers with the
    /// per-workload results and the commit message (none: nothing to commit).
    /// It may run more than once, when another writer pushed first.
    async fn edit_and_push<F>(
        &self,
        job: &JobSpec,
        user: Option<&str>,
        mut edit: F,
    ) -> Result<Outcome, String>
    where
        F: for<'c> FnMut(
            &'c Checkout,
            &mut Transaction<'c>,
        ) -> std::io::Result<(Vec<WorkloadResult>, Option<CommitMessage>)>,
    {
        let mut results = Vec::new();
        let mut committed = None;
        let mut first_seen = None;
        let pushed = self
            .repo
            .commit_and_push(|dir| {
                let checkout = blocking(|| self.load(dir));
                let mut transaction = Transaction::new(&checkout);
                let (made, message) = edit(&checkout, &mut transaction)?;
                results = made;
                let Some(message) = message else {
                    return Ok(None);
                };
                transaction.write()?;
                committed = Some(Timestamp::now());
                first_seen = self.first_seen(job, &results);
                let spec = with_first_seen(job, first_seen);
                Ok::<_, std::io::Error>(Some(commit(message, user, note(&spec, &results))))
            })
            .await;
        let mut outcome = self.finish(pushed, results, committed)?;
        outcome.first_seen = first_seen;
        Ok(outcome)
    }

    /// For automation: when the scanner first saw the tags the job moves
    /// to (the earliest), whatever trigger started the job; a trigger's own
    /// time counts too.
    fn first_seen(&self, job: &JobSpec, results: &[WorkloadResult]) -> Option<Timestamp> {
        let JobSpec::Automation(automation) = job else {
            return None;
        };
        let cache = self.scanner.cache();
        results
            .iter()
            .flat_map(|r| &r.updates)
            .filter_map(|u| {
                let image = ImageRef::parse(&u.target).ok()?;
                let state = cache.repository(&image.name().canonical())?;
                state.tags.get(image.tag()?)?.first_seen
            })
            .fold(automation.first_seen, |a, b| earliest(a, Some(b)))
    }

    /// A release of every automated, unlocked workload to the newest tags
    /// its policies admit (locked and ignored ones are left by the release
    /// rules themselves).
    fn automation_spec(&self, checkout: &Checkout) -> ReleaseSpec {
        let automated = checkout
            .workloads
            .iter()
            .filter(|w| w.policies.automated && !w.policies.locked)
            .map(|w| w.id.clone())
            .collect();
        let mut spec = ReleaseSpec {
            targets: Targets::Only(automated),
            excludes: Vec::new(),
            update: Update::PerContainer(release::ContainerTargets::new()),
            containers: Vec::new(),
            force: false,
        };
        spec.update = Update::PerContainer(self.newest_targets(checkout, &spec));
        spec
    }

    /// The automated workloads that would move, on the manifests last
    /// read, and the head they were read at; `None` before the first read.
    async fn automation_plan(&self) -> Option<(Vec<String>, String)> {
        let (checkout, head) = {
            let loaded = self.loaded.lock().await;
            let loaded = loaded.as_ref()?;
            (loaded.checkout.clone(), loaded.head.clone())
        };
        let spec = self.automation_spec(&checkout);
        let moving = release::plan(&checkout, &spec)
            .into_iter()
            .filter(|r| r.status == Status::Success && !r.updates.is_empty())
            .map(|r| r.id.to_string())
            .collect();
        Some((moving, head))
    }

    async fn policy(&self, wire: PolicySpec) -> Result<Outcome, String> {
        let updates = policy_updates(&wire)?;
        let message = policy_message(&wire);
        let job = JobSpec::Policy(wire.clone());
        self.edit_and_push(&job, wire.user.as_deref(), |_, transaction| {
            let mut results = Vec::new();
            for (id, update) in &updates {
                let changed = transaction
                    .update_policies(id, update)
                    .map_err(|e| std::io::Error::other(format!("{id}: {e}")))?;
                results.push(WorkloadResult {
                    workload: id.to_string(),
                    status: if changed {
                        ResultStatus::Success
                    } else {
                        ResultStatus::Skipped
                    },
                    error: (!changed).then(|| "no changes".to_string()),
                    updates: Vec::new(),
                });
            }
            Ok((results, Some(message.clone())))
        })
        .await
    }

    /// The job's outcome from its push: a commit, no commit when nothing
    /// changed, or the error.
    fn finish(
        &self,
        pushed: Result<flux_git::Pushed, GitError>,
        result: Vec<WorkloadResult>,
        committed: Option<Timestamp>,
    ) -> Result<Outcome, String> {
        match pushed {
            Ok(pushed) => {
                self.git_wake.notify_one();
                Ok(Outcome {
                    result,
                    commit: Some(pushed.revision),
                    committed,
                    pushed: Some(Timestamp::now()),
                    first_seen: None,
                })
            }
            Err(GitError::NothingToCommit) => Ok(Outcome {
                result,
                ..Outcome::default()
            }),
            Err(error) => Err(error.to_string()),
        }
    }

    /// How a checkout at `root` is read: confined to it, reusing earlier
    /// kustomize builds.
    fn load_options(&self, root: &Path) -> LoadOptions {
        LoadOptions {
            builds: Some(self.builds.clone()),
            manifest_generation: self.config.manifest_generation,
            generation_timeout: self.config.manifest_generation_timeout,
            ..load_options(&self.config, root)
        }
    }

    /// The manifests in a checkout folder.
    fn load(&self, dir: &Path) -> Checkout {
        let checkout = Checkout::load(
            &manifest_paths(dir, &self.config.git_paths),
            self.load_options(dir),
        );
        for error in &checkout.errors {
            tracing::warn!("{error}");
        }
        checkout
    }

    /// `--update-all-images`: each considered container's newest admitted
    /// tag, from what the scanner has cached.
    fn newest_targets(&self, checkout: &Checkout, spec: &ReleaseSpec) -> release::ContainerTargets {
        let repositories = self.cached_all(release::repositories(checkout, spec));
        release::per_container_targets(checkout, spec, |image, policy| {
            newest_admitted(image, policy, &repositories)
        })
    }

    async fn plan(&self, spec: JobSpec) -> Result<Vec<WorkloadResult>, String> {
        let JobSpec::Release(wire) = spec else {
            return Err("only releases can be planned".into());
        };
        let mut spec = release_spec(&wire)?;
        let chosen = crate::selection::chosen(&wire)?;
        let checkout = {
            let loaded = self.loaded.lock().await;
            let Some(loaded) = loaded.as_ref() else {
                let status = self.repo.status();
                return Err(format!(
                    "the git repo has not been read yet{}",
                    status
                        .last_error
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            };
            loaded.checkout.clone()
        };
        if wire.update == ImageUpdate::AllLatest {
            spec.update = Update::PerContainer(self.newest_targets(&checkout, &spec));
        }
        if let Some(chosen) = &chosen {
            crate::selection::narrow(&checkout, &mut spec, chosen);
        }
        Ok(release::plan(&checkout, &spec)
            .iter()
            .map(wire_result)
            .collect())
    }
}

/// Runs file work that may take a while (reading every manifest) from
/// inside an async edit: on a multi-threaded runtime the other tasks (the
/// API's handlers) move to other threads meanwhile.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// What a sync applies: the texts of the files the checkout read, named as
/// in the repo, but kustomization files, which configure kustomize rather
/// than the cluster. Kept as text: parsed, they would take a hundred times
/// the room for as long as they are kept.
fn sync_set(root: &Path, checkout: &Checkout) -> Vec<(String, String)> {
    checkout
        .files
        .iter()
        .filter(|f| f.kustomization.is_none())
        .filter_map(|f| {
            let name = f.path.strip_prefix(root).unwrap_or(&f.path);
            if let Some(built) = &f.built {
                return Some((name.display().to_string(), built.to_string()));
            }
            match std::fs::read_to_string(&f.path) {
                Ok(text) => Some((name.display().to_string(), text)),
                Err(error) => {
                    tracing::warn!(file = %name.display(), %error, "not synced: unreadable");
                    None
                }
            }
        })
        .collect()
}

/// The kustomize trees that did not build and the `.flux.yaml` paths whose
/// commands failed, `(file, why)`
/// each: the sync holds garbage collection back for them as for a file
/// that does not parse, since what they built before is not in the set.
fn unbuilt(checkout: &Checkout, root: &Path) -> Vec<(String, String)> {
    checkout
        .errors
        .iter()
        .filter(|error| matches!(error, LoadError::Build { .. } | LoadError::Generate(_)))
        .map(|error| {
            let path = error.path();
            let file = path
                .strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string();
            (file, error.to_string())
        })
        .collect()
}

/// How a checkout at `root` is read: nothing outside `root`, and no file
/// larger than `--manifest-max-file-size`.
fn load_options(config: &Config, root: &Path) -> LoadOptions {
    LoadOptions {
        root: Some(root.to_path_buf()),
        max_file_bytes: config.manifest_max_file_size,
        ..LoadOptions::default()
    }
}

/// The folders `--git-path` names in a checkout at `dir`; the paths are
/// normalised when the flags are read, `.` being the whole repo (which
/// holds every other path).
fn manifest_paths(dir: &Path, paths: &[String]) -> Vec<PathBuf> {
    if paths.is_empty() || paths.iter().any(|p| p == ".") {
        return vec![dir.to_path_buf()];
    }
    paths.iter().map(|p| dir.join(p)).collect()
}

/// Every resource of `checkout` (read under `root`) with its file, relative
/// to `root`, and its text there. Each file is read once.
fn manifests_of(checkout: &Checkout, root: &Path) -> Result<Vec<Manifest>, String> {
    let mut manifests = Vec::with_capacity(checkout.resources.len());
    let mut text: Option<(&Path, String)> = None;
    for resource in &checkout.resources {
        let path = resource.location.file.as_path();
        if text.as_ref().is_none_or(|(read, _)| *read != path) {
            let read = match checkout.built_output(path) {
                Some(built) => built.to_string(),
                None => std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?,
            };
            text = Some((path, read));
        }
        let Some((_, file_text)) = &text else {
            continue;
        };
        let relative = path.strip_prefix(root).unwrap_or(path);
        let document = resource.location.text_in(file_text).ok_or_else(|| {
            format!(
                "{}: the document of {} is not where it was read",
                relative.display(),
                resource.id
            )
        })?;
        manifests.push(Manifest {
            id: resource.id.to_string(),
            kind: resource.kind.clone(),
            file: relative.to_string_lossy().into_owned(),
            text: document.into_owned(),
        });
    }
    Ok(manifests)
}

fn parse_id(text: &str) -> Result<ResourceId, String> {
    text.parse()
        .map_err(|e| format!("invalid workload id {text:?}: {e}"))
}

/// The release as flux-manifests plans it; with all-latest, the targets are
/// decided later, on the manifests the job edits.
fn release_spec(wire: &flux_api::ReleaseSpec) -> Result<ReleaseSpec, String> {
    let targets = match &wire.targets {
        flux_api::Targets::All => Targets::All,
        flux_api::Targets::Workloads(ids) => Targets::Only(
            ids.iter()
                .map(|id| parse_id(id))
                .collect::<Result<_, _>>()?,
        ),
    };
    let excludes = wire
        .exclude
        .iter()
        .map(|id| parse_id(id))
        .collect::<Result<_, _>>()?;
    let update = match &wire.update {
        ImageUpdate::Image(text) => {
            let image =
                ImageRef::parse(text).map_err(|e| format!("invalid image {text:?}: {e}"))?;
            if image.tag().is_none() && image.digest().is_none() {
                return Err(format!("image {text:?} names no tag or digest"));
            }
            Update::Image(image)
        }
        ImageUpdate::AllLatest => Update::PerContainer(release::ContainerTargets::new()),
    };
    Ok(ReleaseSpec {
        targets,
        excludes,
        update,
        containers: Vec::new(),
        force: wire.force,
    })
}

/// `Release <image> to <workloads>`, as the original wrote it (`all latest`
/// and `all` for the specs).
fn release_message(wire: &flux_api::ReleaseSpec) -> CommitMessage {
    let image = match &wire.update {
        ImageUpdate::Image(image) => image.clone(),
        ImageUpdate::AllLatest => "<all latest>".to_string(),
    };
    let workloads = match &wire.targets {
        flux_api::Targets::All => vec!["<all>".to_string()],
        flux_api::Targets::Workloads(ids) => ids.clone(),
    };
    CommitMessage::release(image, &workloads).headed_by(wire.message.as_deref())
}

/// Each workload's annotation changes; refused as a whole when one is invalid.
fn policy_updates(wire: &PolicySpec) -> Result<Vec<(ResourceId, PolicyUpdate)>, String> {
    if wire.changes.is_empty() {
        return Err("no policy changes given".into());
    }
    wire.changes
        .iter()
        .map(|change| {
            let id = parse_id(&change.workload)?;
            let mut update = PolicyUpdate::default();
            match change.automated {
                Some(true) => update = update.and(PolicyUpdate::automate()),
                Some(false) => update = update.and(PolicyUpdate::deautomate()),
                None => {}
            }
            match change.locked {
                Some(true) => {
                    let lock = PolicyUpdate::lock(wire.message.as_deref(), wire.user.as_deref());
                    update = update.and(lock);
                }
                Some(false) => update = update.and(PolicyUpdate::unlock()),
                None => {}
            }
            for (container, policy) in &change.tags {
                let policy = if policy.is_empty() { "glob:*" } else { policy };
                let tag = PolicyUpdate::tag(container, policy)
                    .map_err(|e| format!("{id}: tag policy of {container}: {e}"))?;
                update = update.and(tag);
            }
            if update.is_empty() {
                return Err(format!("{id}: no policy change given"));
            }
            Ok((id, update))
        })
        .collect()
}

/// `Automated: …`, `Locked: …` and the rest, grouped by kind as the
/// original did; a user's message heads a list of them.
fn policy_message(wire: &PolicySpec) -> CommitMessage {
    use flux_git::PolicyChange as Kind;
    let mut automated = Vec::new();
    let mut deautomated = Vec::new();
    let mut locked = Vec::new();
    let mut unlocked = Vec::new();
    let mut updated = Vec::new();
    for change in &wire.changes {
        let id = change.workload.clone();
        match change.automated {
            Some(true) => automated.push(id.clone()),
            Some(false) => deautomated.push(id.clone()),
            None => {}
        }
        match change.locked {
            Some(true) => locked.push(id.clone()),
            Some(false) => unlocked.push(id.clone()),
            None => {}
        }
        if !change.tags.is_empty() {
            updated.push(id);
        }
    }
    let kinds: Vec<Kind> = [
        (automated, Kind::Automated as fn(Vec<String>) -> Kind),
        (deautomated, Kind::Deautomated),
        (locked, Kind::Locked),
        (unlocked, Kind::Unlocked),
        (updated, Kind::UpdatedPolicies),
    ]
    .into_iter()
    .filter(|(ids, _)| !ids.is_empty())
    .map(|(ids, kind)| kind(ids))
    .collect();
    match wire.message.as_deref() {
        Some(user) => CommitMessage::policies_with_user_message(user, &kinds),
        None => CommitMessage::policies(&kinds),
    }
}

fn commit(message: CommitMessage, user: Option<&str>, note: String) -> CommitSpec {
    let spec = CommitSpec::new(message).note(note);
    match user {
        Some(user) => spec.author(user),
        None => spec,
    }
}

/// The git note of a job: what was asked and what it did.
/// The spec as the note records it: an automation job with the time its
/// tags were first seen.
fn with_first_seen(job: &JobSpec, first_seen: Option<Timestamp>) -> JobSpec {
    match job {
        JobSpec::Automation(automation) => JobSpec::Automation(AutomationSpec {
            first_seen,
            ..automation.clone()
        }),
        other => other.clone(),
    }
}

fn note(spec: &JobSpec, result: &[WorkloadResult]) -> String {
    serde_json::json!({ "spec": spec, "result": result }).to_string()
}

fn wire_result(result: &release::WorkloadResult) -> WorkloadResult {
    WorkloadResult {
        workload: result.id.to_string(),
        status: match result.status {
            Status::Success => ResultStatus::Success,
            Status::Failed => ResultStatus::Failed,
            Status::Skipped => ResultStatus::Skipped,
            Status::Ignored => ResultStatus::Ignored,
        },
        error: result.reason.clone(),
        updates: result
            .updates
            .iter()
            .map(|u| ContainerUpdate {
                container: u.container.clone(),
                current: u.current.clone(),
                target: flux_manifests::respell(&u.current, &u.target),
            })
            .collect(),
    }
}

/// The API's way into the daemon.
struct Controls(Arc<Inner>);

impl Control for Controls {
    fn sync(&self) -> Pending<'_, SyncRequested> {
        Box::pin(async move {
            let daemon = &self.0;
            daemon.repo.refresh().await.map_err(|e| e.to_string())?;
            let moved = daemon.reload().await?;
            // A new head is synced as soon as it is read; only an unmoved
            // one needs asking.
            if let Some(side) = daemon.cluster.as_ref().filter(|_| !moved) {
                side.wake.notify_one();
            }
            let revision = daemon.repo.head().await.map_err(|e| e.to_string())?;
            Ok(SyncRequested {
                branch: daemon.config.git_branch.clone(),
                revision,
            })
        })
    }

    fn sync_status(&self, revision: String) -> Pending<'_, SyncStatus> {
        Box::pin(async move {
            let daemon = &self.0;
            let pending = if daemon.cluster.is_some() {
                daemon.repo.sync_status(&revision).await
            } else {
                let read = daemon.loaded.lock().await.as_ref().map(|l| l.head.clone());
                daemon.repo.commits_since(read.as_deref(), &revision).await
            };
            let pending = pending.map_err(|e| e.to_string())?;
            let errors = match &daemon.view.borrow().read {
                Ok(read) => read.errors.clone(),
                Err(_) => Vec::new(),
            };
            Ok(SyncStatus {
                revision,
                pending: pending.into_iter().map(|c| c.id).collect(),
                errors,
            })
        })
    }

    fn plan(&self, spec: JobSpec) -> Pending<'_, Vec<WorkloadResult>> {
        Box::pin(self.0.plan(spec))
    }

    fn identity(&self) -> Option<Identity> {
        self.0.identity_shown()
    }

    fn cluster_unreachable(&self) -> Option<String> {
        let side = self.0.cluster.as_ref()?;
        side.unreachable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn regenerate_identity(&self) -> Pending<'_, Option<Identity>> {
        Box::pin(self.0.regenerate_deploy_key())
    }

    fn manifests(&self) -> Pending<'_, Vec<Manifest>> {
        Box::pin(self.0.manifests())
    }
}

/// How long a shutdown waits for the running job before giving up on it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends a trigger after each pause, then waits for the batch.
    async fn batch_after(pauses: &[u64]) -> (Duration, Option<Timestamp>) {
        let (triggers, mut requests) = mpsc::unbounded_channel();
        let (_stop, mut shutdown) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let sender = tokio::spawn({
            let pauses = pauses.to_vec();
            async move {
                for (n, pause) in pauses.into_iter().enumerate() {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let seen = Timestamp::from_second(1_000 + n as i64).expect("a valid time");
                    let _ = triggers.send(Some(seen));
                }
                // Keeps the channel open for the rest of the test.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        let window = Duration::from_secs(1);
        let gathered = gather(&mut requests, None, window, &mut shutdown).await;
        sender.abort();
        (started.elapsed(), gathered.expect("fluxd did not stop"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_trigger_is_acted_on_a_quarter_window_later() {
        let (took, _) = batch_after(&[]).await;
        assert_eq!(took, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_triggers_is_one_batch_with_the_earliest_first_seen() {
        let (took, seen) = batch_after(&[100, 100, 100]).await;
        assert_eq!(
            took,
            Duration::from_millis(550),
            "a quarter-window after the last"
        );
        assert_eq!(seen, Some(Timestamp::from_second(1_000).unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_that_keep_coming_are_cut_at_the_whole_window() {
        let (took, _) = batch_after(&[200; 20]).await;
        assert_eq!(took, Duration::from_secs(1));
    }

    #[test]
    fn ssh_urls_are_told_from_others() {
        for ssh in [
            "ssh://git@example.com/config.git",
            "git@github.com:team/config.git",
        ] {
            assert!(is_ssh_url(ssh), "{ssh}");
        }
        for other in [
            "https://github.com/team/config.git",
            "file:///tmp/repo.git",
            "/tmp/repo.git",
        ] {
            assert!(!is_ssh_url(other), "{other}");
        }
    }

    #[test]
    fn policy_messages_take_the_original_forms() {
        let change = |automated, locked| flux_api::PolicyChange {
            workload: "sock-shop:deployment/front-end".into(),
            automated,
            locked,
            ..Default::default()
        };
        let spec = |changes, message: Option<&str>| PolicySpec {
            changes,
            message: message.map(str::to_string),
            user: None,
        };
        assert_eq!(
            policy_message(&spec(vec![change(Some(true), None)], None)).as_str(),
            "Automated: sock-shop:deployment/front-end"
        );
        assert_eq!(
            policy_message(&spec(vec![change(None, Some(false))], Some("thaw"))).as_str(),
            "thaw\n\n- Unlocked: sock-shop:deployment/front-end"
        );
    }

    #[test]
    fn an_invalid_tag_policy_refuses_the_whole_job() {
        let spec = PolicySpec {
            changes: vec![flux_api::PolicyChange {
                workload: "sock-shop:deployment/front-end".into(),
                tags: [("front-end".to_string(), "semver:>=>1".to_string())].into(),
                ..Default::default()
            }],
            message: None,
            user: None,
        };
        assert!(policy_updates(&spec).is_err());
    }
}
