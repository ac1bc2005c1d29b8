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
//!
//! One module per loop and per job kind: [`git`] (fetch and read),
//! [`registry`] (scan), [`automation`] (loop and job), [`cluster`] (sync and
//! rollouts); [`release`] and [`policy`] jobs on what [`job`] shares;
//! [`manifests`] reads a checkout; [`deploy_key`] and [`control`] (the API's
//! way in). [`Daemon::start`] is the one place the loops are started.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flux_api::Identity;
use flux_git::{GitError, Person, Repo, RepoConfig};
use flux_image::Name;
use flux_manifests::{BuildCache, Checkout};
use flux_registry::Scanner;
use jiff::Timestamp;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;

mod automation;
mod cluster;
mod control;
mod deploy_key;
mod explain;
mod git;
mod handover;
mod hold;
mod job;
pub mod leader;
mod manifests;
mod policy;
mod registry;
mod release;
mod revert;
mod signatures;

use control::Controls;
use leader::{Election, Leadership};
use registry::Named;

use crate::config::{ClusterMode, Config};
use crate::identity::KeySecret;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::server::{Api, View};

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
    /// The notification settings cannot be used.
    #[error("notifications: {0}")]
    Notify(crate::notify::settings::SettingsError),
    /// `--leader-election` cannot work as the flags say.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// `--git-verify-signatures` without a key for fluxd's own commits and
    /// sync tag, which would then never verify.
    #[error(
        "--git-verify-signatures needs --git-signing-key (fluxd's own commits and sync tag must verify too), or --git-readonly"
    )]
    Unsigned,
    /// A `--registry-verify-key` file cannot be used.
    #[error(transparent)]
    VerifyKey(flux_registry::KeyError),
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
    /// Automated containers' last image changes made by people, up to `head`.
    moves: Arc<Vec<hold::Moved>>,
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
    /// How many looks at repositories a change named are queued or under
    /// way: automation waits for what they may find before it decides.
    looking: watch::Sender<usize>,
    /// The cluster and its sync, unless `--cluster=none`.
    cluster: Option<cluster::ClusterSide>,
    /// Kustomize builds kept from one read of the manifests to the next.
    builds: Arc<BuildCache>,
    /// Where releases, automation, syncs and rollouts are told about.
    notices: crate::notify::Publisher,
    /// Whether this replica syncs, runs automation and runs jobs.
    leadership: Leadership,
    /// The id of the job running, for its commit's note: the worker runs
    /// one job at a time, so the one running is the one committing.
    running_job: std::sync::Mutex<Option<String>>,
    /// Automation jobs whose failed rollout was reverted.
    reverted_jobs: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Cosign signature verdicts, kept by digest.
    signatures: Arc<flux_registry::Signatures>,
    /// `--registry-verify-key`.
    verify_keys: Vec<flux_registry::VerifyKey>,
    /// The manifests last read, for the registry loop's signature checks,
    /// which must not wait for a read under way (`loaded` is held for all
    /// of one).
    checkout_read: std::sync::RwLock<Option<Arc<Checkout>>>,
}

/// A started daemon.
pub struct Running {
    api: Arc<Api>,
    jobs: Jobs,
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
    election: Option<Election>,
    leadership: Leadership,
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
        let key_secret = deploy_key::key_secret(&config).await?;
        let (deploy_key, ssh) = deploy_key::deploy_key(&config, key_secret.as_ref()).await?;
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
        repo_config.signing = config.signing_key();
        repo_config.verify = config.signature_trust();
        if repo_config.verify.is_some() && repo_config.signing.is_none() && !config.git_readonly {
            return Err(StartError::Unsigned);
        }
        let repo = Repo::new(repo_config);
        // From here on the URL is the one without credentials (the repo
        // took them out): every log line, error and answer shows this one.
        let mut config = config;
        config.git_url = repo.config().url.clone();
        let cluster = match config.cluster {
            ClusterMode::Kubeconfig => Some(connect(&config).await?),
            ClusterMode::None => None,
        };
        let candidacy = match (config.leader_election, &cluster) {
            (false, _) => None,
            (true, None) => {
                return Err(StartError::LeaderElection(
                    "--leader-election needs a cluster to hold its Lease (not --cluster=none)"
                        .into(),
                ));
            }
            (true, Some(_)) => Some(leader::candidate(&config, &sync_set_name(&config)).await?),
        };
        let leadership = candidacy
            .as_ref()
            .map_or_else(Leadership::sole, |(_, leadership, _)| leadership.clone());
        let metrics = Arc::new(Metrics::new());
        let endpoints = crate::notify::settings::endpoints(&config).map_err(StartError::Notify)?;
        let notices = crate::notify::Publisher::default();
        let recorder = cluster
            .as_ref()
            .filter(|_| config.k8s_events)
            .map(|side| crate::notify::recorder(side.client()));
        let repo_web = crate::notify::message::WebRepo::of_git_url(&config.git_url);
        let notifiers = crate::notify::start(
            &notices,
            recorder,
            endpoints,
            Default::default(),
            repo_web,
            &metrics.notifications,
        );
        let (view, view_rx) = watch::channel(View {
            read: Err(format!(
                "fluxd has not read the git repo {} yet: the first fetch is under way",
                config.git_url
            )),
            ..View::default()
        });
        let (images, images_rx) = watch::channel(BTreeSet::new());
        let (automation, automation_rx) = mpsc::unbounded_channel();
        let verify_keys = config
            .registry_verify_keys
            .iter()
            .map(|file| flux_registry::VerifyKey::read(file))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::VerifyKey)?;
        let scanner = registry::scanner(&config);
        let signatures = Arc::new(flux_registry::Signatures::new(scanner.client().clone()));
        let inner = Arc::new(Inner {
            scanner,
            signatures,
            verify_keys,
            checkout_read: std::sync::RwLock::new(None),
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
            looking: watch::Sender::new(0),
            cluster,
            builds: Arc::new(BuildCache::default()),
            notices,
            leadership: leadership.clone(),
            running_job: std::sync::Mutex::new(None),
            reverted_jobs: Default::default(),
        });
        let (stop, shutdown) = watch::channel(false);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (image_changes, image_changes_rx) = mpsc::unbounded_channel();
        let executor = inner.clone();
        let gate = leadership.clone();
        let jobs = Jobs::start_gated(
            move |id, spec| {
                let daemon = executor.clone();
                async move { daemon.execute(id, spec).await }
            },
            shutdown.clone(),
            move || {
                let leadership = gate.clone();
                async move { leadership.lead().await }
            },
        );
        let election = candidacy.map(|(lock, leadership, timing)| {
            let handover = Arc::new(handover::QueuedJobs::new(inner.clone(), jobs.clone()));
            leader::campaign(lock, leadership, timing, handover)
        });
        jobs.observe_steps(cluster::step_metrics(metrics.clone()));
        let mut loops = vec![
            tokio::spawn(git::git_loop(inner.clone(), shutdown.clone())),
            tokio::spawn(registry::registry_loop(
                inner.clone(),
                images_rx,
                (image_changes.clone(), image_changes_rx),
                shutdown.clone(),
            )),
            tokio::spawn(route_changes(inner.clone(), changes_rx, image_changes)),
            tokio::spawn(automation::automation_loop(
                inner.clone(),
                jobs.clone(),
                automation_rx,
                shutdown.clone(),
            )),
        ];
        loops.extend(notifiers);
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
            election,
            leadership,
        })
    }
}

impl Running {
    /// The HTTP API, webhooks and `/metrics`.
    pub fn router(&self) -> axum::Router {
        let router = crate::server::router(self.api.clone());
        match self.election {
            Some(_) => crate::forward::to_leader(router, self.leadership.clone()),
            None => router,
        }
    }

    /// This replica's role: always the leader without `--leader-election`.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// What the API handlers share (metrics included).
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// Stops the loops and waits for the job worker to finish the job it is
    /// running; queued jobs are left. A leader then gives its Lease up (it
    /// holds it until the job is done, so no other replica starts meanwhile).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.jobs.stopped().await;
        for task in self.loops {
            task.abort();
        }
        if let Some(election) = self.election {
            election.resign().await;
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

/// How long a shutdown waits for the running job before giving up on it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
