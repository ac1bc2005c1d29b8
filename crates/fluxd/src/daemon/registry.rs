//! The registry side of the daemon: every registry host polled on its own
//! clock, every repository's result acted on as soon as it comes.
//!
//! [`registry_loop`] keeps one task per registry host in use and hands it
//! the host's repositories, and the changes (webhooks, `notify`) that name
//! one of them. A host's task polls its repositories together every poll
//! interval; a repository new in use, or named by a change, at once. A
//! host that gives no answer is polled less often ([`HostHealth`]) and said
//! unreachable once, and reachable again once. A repository's new tags
//! trigger automation the moment its own poll returns, and the view's
//! images are recomputed after each result (coalesced), so a host that
//! hangs holds up nothing but its own repositories.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flux_image::{Glob, Name};
use flux_registry::{
    Cache, Client, ClientConfig, Credentials, HealthChange, HostHealth, HostLimits, PollResult,
    RepositoryInfo, ScanConfig, Scanner, TlsConfig,
};
use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{Id, JoinHandle, JoinSet};
use tokio::time::Instant;

use super::Inner;
use crate::config::Config;
use crate::metrics::RegistryLabels;

/// When a change names a repository and its tags show nothing new, it is
/// looked at again after these pauses: the distribution registry notifies
/// of a manifest push before it tags the manifest, so a quick listing can
/// miss the tag the notification is about.
const RECHECKS: [Duration; 4] = [
    Duration::from_millis(20),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// A repository a change named, and how many times it was looked at since.
pub(super) type Named = (Name, usize);

/// Hands the images in use to their hosts' tasks, starting and stopping
/// those as hosts come into and go out of use, and routes changes naming
/// a repository to its host's task.
pub(super) async fn registry_loop(
    daemon: Arc<Inner>,
    mut images: watch::Receiver<BTreeSet<Name>>,
    (recheck, mut changed): (mpsc::UnboundedSender<Named>, mpsc::UnboundedReceiver<Named>),
    mut shutdown: watch::Receiver<bool>,
) {
    let results = Arc::new(Notify::new());
    let _view = Task(tokio::spawn(refresh_view(daemon.clone(), results.clone())));
    let mut hosts = Hosts {
        daemon,
        recheck,
        results,
        running: HashMap::new(),
    };
    let mut in_use = images.borrow_and_update().clone();
    hosts.assign(&in_use);
    loop {
        tokio::select! {
            result = images.changed() => {
                if result.is_err() {
                    return;
                }
                in_use = images.borrow_and_update().clone();
                hosts.assign(&in_use);
            }
            Some(named) = changed.recv() => hosts.route(named, &in_use),
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Recomputes the view's images after results came, once for all the
/// results that came while it last did; never waits for a host.
async fn refresh_view(daemon: Arc<Inner>, results: Arc<Notify>) {
    loop {
        results.notified().await;
        daemon.export_registry_counters();
        daemon.refresh_images().await;
    }
}

/// A task aborted when its handle is dropped (a host no longer in use, or
/// the loop stopping).
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The task of each registry host in use.
struct Hosts {
    daemon: Arc<Inner>,
    recheck: mpsc::UnboundedSender<Named>,
    results: Arc<Notify>,
    running: HashMap<String, Host>,
}

/// How the loop reaches one host's task.
struct Host {
    repositories: watch::Sender<BTreeSet<Name>>,
    named: mpsc::UnboundedSender<Named>,
    _task: Task,
}

impl Hosts {
    /// Gives each host its repositories among the images in use (those
    /// the include and exclude globs let be scanned).
    fn assign(&mut self, in_use: &BTreeSet<Name>) {
        let mut by_host: BTreeMap<String, BTreeSet<Name>> = BTreeMap::new();
        for name in in_use.iter().filter(|n| self.daemon.scanner.wants(n)) {
            by_host
                .entry(name.api_host().to_string())
                .or_default()
                .insert(name.clone());
        }
        self.running.retain(|host, _| by_host.contains_key(host));
        for (host, names) in by_host {
            if let Some(running) = self.running.get(&host) {
                running.repositories.send_if_modified(|current| {
                    let moved = *current != names;
                    *current = names;
                    moved
                });
                continue;
            }
            let started = self.start(&host, names);
            self.running.insert(host, started);
        }
    }

    fn start(&self, host: &str, names: BTreeSet<Name>) -> Host {
        let (repositories, repositories_rx) = watch::channel(names);
        let (named, named_rx) = mpsc::unbounded_channel();
        let polls = HostPolls::new(
            host.to_string(),
            self.daemon.clone(),
            self.recheck.clone(),
            self.results.clone(),
        );
        Host {
            repositories,
            named,
            _task: Task(tokio::spawn(polls.run(repositories_rx, named_rx))),
        }
    }

    /// Passes a change on to the task of the repository's host.
    fn route(&self, (name, looks): Named, in_use: &BTreeSet<Name>) {
        let host = self
            .running
            .get(name.api_host())
            .filter(|_| in_use.contains(&name) && self.daemon.scanner.wants(&name));
        match host {
            Some(host) => {
                let _ = host.named.send((name, looks));
            }
            None => {
                tracing::debug!(repository = %name.familiar(), "change for an image not in use");
            }
        }
    }
}

/// One repository to poll, and why.
#[derive(Debug, Clone)]
struct Poll {
    name: Name,
    /// Part of the host's scheduled poll.
    in_round: bool,
    /// Named by a change, looked at this many times since.
    looks: Option<usize>,
}

/// The host's scheduled poll of its repositories, under way.
struct Round {
    started: Instant,
    outstanding: usize,
    answered: bool,
    no_answer: Option<String>,
}

/// One host's repositories, polled on the host's own clock.
struct HostPolls {
    host: String,
    daemon: Arc<Inner>,
    recheck: mpsc::UnboundedSender<Named>,
    results: Arc<Notify>,
    interval: Duration,
    concurrency: usize,
    repositories: BTreeSet<Name>,
    health: HostHealth,
    /// Polls waiting for a slot, the first first.
    queue: VecDeque<Poll>,
    running: JoinSet<PollResult>,
    polls: HashMap<Id, Poll>,
    polling: HashSet<Name>,
    /// Repositories a change named while they were being polled: the
    /// listing under way may predate what the change is about.
    again: HashMap<Name, usize>,
    round: Option<Round>,
    /// When the next scheduled poll starts; `None` while one is under way.
    next_round: Option<Instant>,
    /// This host's share of [`Inner::looking`].
    published: usize,
    /// Repositories polled with an answer at least once.
    scanned: HashSet<Name>,
}

impl Drop for HostPolls {
    fn drop(&mut self) {
        let published = self.published;
        self.daemon
            .looking
            .send_modify(|looking| *looking = looking.saturating_sub(published));
    }
}

impl HostPolls {
    fn new(
        host: String,
        daemon: Arc<Inner>,
        recheck: mpsc::UnboundedSender<Named>,
        results: Arc<Notify>,
    ) -> HostPolls {
        HostPolls {
            host,
            interval: daemon.config.registry_poll_interval,
            concurrency: daemon.scanner.config().repository_concurrency.max(1),
            daemon,
            recheck,
            results,
            repositories: BTreeSet::new(),
            health: HostHealth::new(),
            queue: VecDeque::new(),
            running: JoinSet::new(),
            polls: HashMap::new(),
            polling: HashSet::new(),
            again: HashMap::new(),
            round: None,
            next_round: Some(Instant::now()),
            published: 0,
            scanned: HashSet::new(),
        }
    }

    async fn run(
        mut self,
        mut repositories: watch::Receiver<BTreeSet<Name>>,
        mut named: mpsc::UnboundedReceiver<Named>,
    ) {
        self.repositories = repositories.borrow_and_update().clone();
        loop {
            self.start_queued();
            let due = self.next_round;
            // Far enough never to come; the branch is off without a due time.
            let wake = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    match done {
                        Ok((id, result)) => self.finished(id, Some(result)),
                        Err(error) => {
                            tracing::warn!(host = %self.host, %error, "a registry poll failed");
                            self.finished(error.id(), None);
                        }
                    }
                }
                () = tokio::time::sleep_until(wake), if due.is_some() => self.start_round(),
                changed = repositories.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let current = repositories.borrow_and_update().clone();
                    self.in_use(current);
                }
                change = named.recv() => match change {
                    Some((name, looks)) => self.named(name, looks),
                    None => return,
                },
            }
            self.publish();
        }
    }

    /// Tells automation how many looks at repositories a change named are
    /// queued or under way here (rechecks waiting for their pause are not:
    /// they are for a tag the change may have announced too early).
    fn publish(&mut self) {
        let queued = self.queue.iter().filter(|p| p.looks.is_some()).count();
        let running = self.polls.values().filter(|p| p.looks.is_some()).count();
        let owed = queued + running + self.again.len();
        if owed == self.published {
            return;
        }
        let published = self.published;
        self.daemon
            .looking
            .send_modify(|looking| *looking = (*looking + owed).saturating_sub(published));
        self.published = owed;
    }

    /// Queues every repository not already waiting or being polled.
    fn start_round(&mut self) {
        self.next_round = None;
        let names: Vec<Name> = self
            .repositories
            .iter()
            .filter(|n| !self.pending(n))
            .cloned()
            .collect();
        if names.is_empty() {
            self.next_round = Some(Instant::now() + self.interval);
            return;
        }
        self.round = Some(Round {
            started: Instant::now(),
            outstanding: names.len(),
            answered: false,
            no_answer: None,
        });
        self.queue.extend(names.into_iter().map(|name| Poll {
            name,
            in_round: true,
            looks: None,
        }));
    }

    fn pending(&self, name: &Name) -> bool {
        self.polling.contains(name) || self.queue.iter().any(|p| &p.name == name)
    }

    /// Starts queued polls while there are free slots.
    fn start_queued(&mut self) {
        while self.running.len() < self.concurrency {
            let Some(poll) = self.queue.pop_front() else {
                return;
            };
            let daemon = self.daemon.clone();
            let name = poll.name.clone();
            let after_change = poll.looks.is_some();
            let started = self.running.spawn(async move {
                let result = if after_change {
                    daemon.scanner.poll_repository_after_change(&name).await
                } else {
                    daemon.scanner.poll_repository(&name).await
                };
                // Before automation hears of new tags, so it sees their verdicts.
                daemon.verify_signatures(&result.info).await;
                result
            });
            self.polling.insert(poll.name.clone());
            self.polls.insert(started.id(), poll);
        }
    }

    /// A repository new in use is polled at once, unless the host does not
    /// answer: then it waits for the host's next poll.
    fn in_use(&mut self, current: BTreeSet<Name>) {
        let fresh: Vec<Name> = current.difference(&self.repositories).cloned().collect();
        self.repositories = current;
        if self.health.is_unreachable() {
            return;
        }
        for name in fresh {
            if !self.pending(&name) {
                self.queue.push_back(Poll {
                    name,
                    in_round: false,
                    looks: None,
                });
            }
        }
    }

    /// A change named a repository: it is polled before anything else,
    /// whatever the host's clock says (a change means the host is up).
    fn named(&mut self, name: Name, looks: usize) {
        if !self.repositories.contains(&name) {
            return;
        }
        if self.polling.contains(&name) {
            self.again
                .entry(name)
                .and_modify(|l| *l = (*l).min(looks))
                .or_insert(looks);
            return;
        }
        let queued = self.queue.iter().position(|p| p.name == name);
        let mut poll = match queued.and_then(|i| self.queue.remove(i)) {
            Some(poll) => poll,
            None => Poll {
                name,
                in_round: false,
                looks: None,
            },
        };
        poll.looks = Some(looks);
        self.queue.push_front(poll);
    }

    /// One repository's poll ended (`None`: its task failed).
    fn finished(&mut self, id: Id, result: Option<PollResult>) {
        let Some(poll) = self.polls.remove(&id) else {
            return;
        };
        self.polling.remove(&poll.name);
        if !self.again.contains_key(&poll.name) {
            // Before the trigger, so automation does not wait for this look.
            self.publish();
        }
        // A poll that failed inside says nothing of the host.
        let no_answer = result.as_ref().and_then(|r| r.no_answer.clone());
        if let Some(result) = &result {
            let baseline = result.no_answer.is_none() && self.scanned.insert(poll.name.clone());
            self.act_on(&poll, result, baseline);
        }
        if poll.in_round {
            self.count_in_round(no_answer);
        } else {
            let answered = no_answer.is_none();
            self.observe(answered, no_answer.as_deref());
            // An answer ends a backoff: the next poll comes on the interval.
            if let (true, Some(next)) = (answered, self.next_round) {
                self.next_round = Some(next.min(Instant::now() + self.interval));
            }
        }
        if let Some(looks) = self.again.remove(&poll.name) {
            self.named(poll.name, looks);
        }
    }

    /// New tags trigger automation now, and so does a repository's first
    /// answer (its tags are the baseline, none of them new, but they may be
    /// newer than git's); a change's repository with nothing new is looked
    /// at again shortly; the view's images are recomputed.
    fn act_on(&self, poll: &Poll, result: &PollResult, baseline: bool) {
        for tag in &result.new_tags {
            tracing::info!(repository = %tag.name.familiar(), tag = %tag.tag, "new tag");
        }
        if !result.new_tags.is_empty() {
            let _ = self.daemon.automation.send(Some(Timestamp::now()));
        } else if baseline {
            let _ = self.daemon.automation.send(None);
        } else if let Some(looks) = poll.looks
            && let Some(pause) = RECHECKS.get(looks)
        {
            let recheck = self.recheck.clone();
            let name = poll.name.clone();
            let pause = *pause;
            tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                let _ = recheck.send((name, looks + 1));
            });
        }
        self.results.notify_one();
    }

    fn count_in_round(&mut self, no_answer: Option<String>) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        round.outstanding = round.outstanding.saturating_sub(1);
        match no_answer {
            None => round.answered = true,
            Some(why) => {
                round.no_answer.get_or_insert(why);
            }
        }
        if round.outstanding > 0 {
            return;
        }
        let Some(round) = self.round.take() else {
            return;
        };
        self.observe(round.answered, round.no_answer.as_deref());
        let now = Instant::now();
        self.next_round = Some(if self.health.is_unreachable() {
            // Counted from the end: a host that hangs takes its timeouts.
            now + self.health.wait_after(self.interval)
        } else {
            (round.started + self.interval).max(now)
        });
    }

    /// Records whether a poll got an answer; says so when that changed.
    fn observe(&mut self, answered: bool, no_answer: Option<&str>) {
        match self.health.observe(answered) {
            Some(HealthChange::Unreachable) => tracing::warn!(
                host = %self.host,
                error = no_answer.unwrap_or("no answer"),
                repositories = self.repositories.len(),
                "registry host unreachable; polling it less often until it answers"
            ),
            Some(HealthChange::Reachable) => {
                tracing::info!(host = %self.host, "registry host reachable again");
            }
            None => {}
        }
    }
}

impl Inner {
    pub(super) fn export_registry_counters(&self) {
        for ((host, status), count) in self.scanner.client().counters().snapshot() {
            let status = if status == flux_registry::metrics::NO_RESPONSE {
                "error".to_string()
            } else {
                status.to_string()
            };
            let counter = self
                .metrics
                .registry_requests
                .get_or_create(&RegistryLabels { host, status });
            counter.inc_by(count.saturating_sub(counter.get()));
        }
        let (hits, _) = self.scanner.cache().counters().get();
        let counter = &self.metrics.cache_hits;
        counter.inc_by(hits.saturating_sub(counter.get()));
    }
}

pub(super) fn scanner(config: &Config) -> Scanner {
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

impl Inner {
    /// Recomputes the view's images from the cache.
    async fn refresh_images(&self) {
        let loaded = self.loaded.lock().await;
        let Some(loaded) = loaded.as_ref() else {
            return;
        };
        let images = crate::view::images(
            &loaded.checkout,
            |name| self.cached(name),
            |policies, container, info, tag| self.signature_shown(policies, container, info, tag),
        );
        // Whether a person's move was a rollback can depend on the tags'
        // creation times, which the cache may have only now.
        let holds = self.holds(&loaded.checkout, &loaded.moves);
        self.view.send_modify(|view| {
            view.images = images;
            view.workloads.show_holds(holds);
        });
    }

    /// What the cache knows of a repository; `None` until it was polled.
    pub(super) fn cached(&self, name: &Name) -> Option<RepositoryInfo> {
        self.scanner
            .cache()
            .repository(&name.canonical())
            .map(|_| self.scanner.info(name))
    }

    pub(super) fn cached_all(&self, names: BTreeSet<Name>) -> HashMap<Name, RepositoryInfo> {
        names
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.cached(&name)?)))
            .collect()
    }
}
