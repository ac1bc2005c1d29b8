//! The scanner: polls the repositories of the images in use, keeps the
//! cache up to date and reports new tags.
//!
//! One poll of a repository lists its tags (one request when nothing is
//! new), resolves tags never seen before, and re-checks with a HEAD only
//! the tags that move in practice (`latest` and the like, or any tag seen
//! moving), each on its own interval that doubles while the tag holds still.
//! Everything addressed by digest comes from the cache when it is there.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_image::{Candidate, Glob, Name};
use futures::StreamExt as _;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tokio::sync::{OnceCell, mpsc, watch};

use crate::cache::{Cache, CacheWrite, RepositoryState, TagState};
use crate::client::{Client, RegistryError};
use crate::manifest::{ImageConfig, IndexEntry, Manifest, Platform};

/// How the scanner polls and reads images.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Wanted platforms, first preferred (default `linux/amd64`).
    pub platforms: Vec<Platform>,
    /// Image names (globs over the familiar and canonical names) whose
    /// creation time comes from labels when they carry one
    /// (`--registry-use-labels`).
    pub use_labels: Vec<Glob>,
    /// Only images matching one of these are scanned; empty scans all
    /// (`--registry-include-image`).
    pub include: Vec<Glob>,
    /// Images matching one of these are never scanned (`--registry-exclude-image`).
    pub exclude: Vec<Glob>,
    /// Time between polls.
    pub poll_interval: Duration,
    /// Tags (globs) re-checked as movable from the start.
    pub mutable_tags: Vec<Glob>,
    /// First re-check interval of a movable tag, and the interval again after it moves.
    pub recheck_min: Duration,
    /// Longest re-check interval.
    pub recheck_max: Duration,
    /// Repositories polled at once.
    pub repository_concurrency: usize,
    /// Tags of one repository resolved at once.
    pub tag_concurrency: usize,
    /// Hosts where new tags are resolved with HEAD first, then GET by
    /// digest only for unknown digests: on Docker Hub a HEAD is not a pull,
    /// so re-tagged images cost no pull. Elsewhere one GET by tag is cheaper.
    pub head_first_hosts: Vec<String>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            platforms: vec![Platform::linux_amd64()],
            use_labels: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            poll_interval: Duration::from_secs(5 * 60),
            mutable_tags: vec![Glob::new("latest")],
            recheck_min: Duration::from_secs(5 * 60),
            recheck_max: Duration::from_secs(24 * 60 * 60),
            repository_concurrency: 8,
            tag_concurrency: 8,
            head_first_hosts: vec![flux_image::reference::DOCKER_HUB_API_HOST.to_string()],
        }
    }
}

/// What is known of one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagInfo {
    /// The tag.
    pub tag: String,
    /// The digest the tag points to (an index or a manifest).
    pub digest: Option<String>,
    /// The creation time of the image for the selected platform.
    pub created: Option<Timestamp>,
    /// Every platform the tag carries.
    pub platforms: Vec<Platform>,
    /// The platform selected among the wanted ones; `None` when the tag
    /// has no image for any wanted platform (or it is not known yet).
    pub platform: Option<Platform>,
    /// The manifest digest of the selected platform's image.
    pub image_digest: Option<String>,
    /// Why the tag could not be read.
    pub error: Option<String>,
    /// When a poll first found the tag here (or found it moved); `None` for
    /// tags present at the first poll.
    pub first_seen: Option<Timestamp>,
}

impl TagInfo {
    /// Whether an image for a wanted platform was found.
    pub fn runs_here(&self) -> bool {
        self.platform.is_some() && self.error.is_none()
    }

    /// The tag as a policy candidate.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            tag: self.tag.clone(),
            created: self.created,
        }
    }
}

/// What is known of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositoryInfo {
    /// The repository.
    #[serde(serialize_with = "serialize_name")]
    pub name: Name,
    /// Its tags, in tag order.
    pub tags: Vec<TagInfo>,
    /// Why the last poll failed, when it did.
    pub error: Option<String>,
    /// When its tags were last listed.
    pub listed_at: Option<Timestamp>,
}

fn serialize_name<S: serde::Serializer>(name: &Name, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&name.canonical())
}

impl RepositoryInfo {
    /// A tag by name.
    pub fn tag(&self, tag: &str) -> Option<&TagInfo> {
        self.tags.iter().find(|t| t.tag == tag)
    }

    /// Candidates for a policy: tags with an image for a wanted platform.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.tags
            .iter()
            .filter(|t| t.runs_here())
            .map(TagInfo::candidate)
            .collect()
    }
}

/// A tag that appeared, or moved to another digest, since the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTag {
    /// The repository.
    pub name: Name,
    /// The tag.
    pub tag: String,
    /// Where it points now.
    pub digest: String,
    /// Where it pointed before, for a tag that moved.
    pub previous: Option<String>,
    /// The image's creation time for the selected platform.
    pub created: Option<Timestamp>,
}

/// The result of one poll of one repository.
#[derive(Debug, Clone)]
pub struct PollResult {
    /// What is known now.
    pub info: RepositoryInfo,
    /// Tags new or moved since the previous poll (none on the first poll,
    /// which is the baseline).
    pub new_tags: Vec<NewTag>,
    /// Why the host gave no answer to the tags listing, when it gave none
    /// (no connection, a timeout, a 5xx after retries). A refusal (401,
    /// 404) is an answer: the repository's error says it, and the host is
    /// up. This is what tells that a host is unreachable ([`crate::health`]).
    pub no_answer: Option<String>,
}

/// Documents fetched during one poll, so concurrent tags pointing at the
/// same digest fetch it once.
#[derive(Default)]
struct Fetches {
    manifests: Mutex<HashMap<String, Arc<OnceCell<Manifest>>>>,
    configs: Mutex<HashMap<String, Arc<OnceCell<ImageConfig>>>>,
}

impl Fetches {
    fn manifest_cell(&self, digest: &str) -> Arc<OnceCell<Manifest>> {
        lock(&self.manifests)
            .entry(digest.to_string())
            .or_default()
            .clone()
    }

    fn config_cell(&self, digest: &str) -> Arc<OnceCell<ImageConfig>> {
        lock(&self.configs)
            .entry(digest.to_string())
            .or_default()
            .clone()
    }

    fn into_write(self) -> CacheWrite {
        let manifests = take_cells(self.manifests);
        let configs = take_cells(self.configs);
        CacheWrite {
            manifests,
            configs,
            repositories: Vec::new(),
        }
    }
}

fn take_cells<T: Clone>(cells: Mutex<HashMap<String, Arc<OnceCell<T>>>>) -> Vec<(String, T)> {
    cells
        .into_inner()
        .expect("fetch maps are never left poisoned")
        .into_iter()
        .filter_map(|(digest, cell)| cell.get().cloned().map(|v| (digest, v)))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("fetch maps are never left poisoned")
}

/// What a poll does with tags that could not be read before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// They wait out their retry interval.
    Wait,
    /// They are tried again now.
    RetryNow,
}

/// Where one tag stands after this poll's work on it.
struct TagOutcome {
    tag: String,
    state: TagState,
    event: Option<(String, Option<String>)>,
}

/// Polls repositories through a [`Client`], keeping a [`Cache`].
#[derive(Debug, Clone)]
pub struct Scanner {
    client: Arc<Client>,
    cache: Arc<Cache>,
    config: ScanConfig,
}

impl Scanner {
    /// A scanner over this client and cache.
    pub fn new(client: Arc<Client>, cache: Arc<Cache>, config: ScanConfig) -> Scanner {
        Scanner {
            client,
            cache,
            config,
        }
    }

    /// The client (for its counters).
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The cache (for its counters).
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The settings in force.
    pub fn config(&self) -> &ScanConfig {
        &self.config
    }

    /// Whether the include and exclude globs let `name` be scanned.
    pub fn wants(&self, name: &Name) -> bool {
        let matches = |globs: &[Glob]| {
            globs
                .iter()
                .any(|g| g.matches(&name.familiar()) || g.matches(&name.canonical()))
        };
        (self.config.include.is_empty() || matches(&self.config.include))
            && !matches(&self.config.exclude)
    }

    fn uses_labels(&self, name: &Name) -> bool {
        self.config
            .use_labels
            .iter()
            .any(|g| g.matches(&name.familiar()) || g.matches(&name.canonical()))
    }

    /// Polls these repositories concurrently; each one's failure stays its own.
    pub async fn poll(&self, names: &[Name]) -> Vec<PollResult> {
        let wanted: Vec<&Name> = names.iter().filter(|n| self.wants(n)).collect();
        // Futures built in a loop rather than in a stream closure keep the
        // result `Send` (closures over borrowed names trip higher-ranked lifetimes).
        let mut polls = Vec::with_capacity(wanted.len());
        for name in wanted {
            polls.push(self.poll_repository(name));
        }
        futures::stream::iter(polls)
            .buffer_unordered(self.config.repository_concurrency.max(1))
            .collect()
            .await
    }

    /// Polls one repository.
    pub async fn poll_repository(&self, name: &Name) -> PollResult {
        self.poll_with(name, Failed::Wait).await
    }

    /// Polls one repository that a change (a registry notification) named:
    /// tags that could not be read are tried again now, whatever their retry
    /// interval says. A registry that notifies of a push can list the tag
    /// before it serves its manifest, so the first looks after the
    /// notification may fail where a later one succeeds.
    pub async fn poll_repository_after_change(&self, name: &Name) -> PollResult {
        self.poll_with(name, Failed::RetryNow).await
    }

    async fn poll_with(&self, name: &Name, failed: Failed) -> PollResult {
        let key = name.canonical();
        let previous = self.cache.repository(&key);
        let now = Timestamp::now();
        let tags = match self.client.list_tags(name).await {
            Ok(tags) => tags,
            Err(error) => {
                let no_answer = is_no_answer(&error).then(|| error.to_string());
                if no_answer.is_some() {
                    // Said once per host by whoever keeps its health, not at every poll.
                    tracing::debug!(repository = %key, %error, "cannot list tags");
                } else {
                    tracing::warn!(repository = %key, %error, "cannot list tags");
                }
                let mut state = previous.unwrap_or_default();
                state.error = Some(error.to_string());
                self.cache.write(CacheWrite {
                    repositories: vec![(key, state)],
                    ..CacheWrite::default()
                });
                return PollResult {
                    info: self.info(name),
                    new_tags: Vec::new(),
                    no_answer,
                };
            }
        };
        let baseline = previous.as_ref().is_none_or(|p| p.listed_at.is_none());
        let previous_tags = previous.map(|p| p.tags).unwrap_or_default();
        let fetches = Fetches::default();
        let mut work = Vec::with_capacity(tags.len());
        for tag in tags {
            let known = previous_tags.get(&tag).cloned();
            work.push(self.tag_work(name, tag, known, now, failed, &fetches));
        }
        let outcomes: Vec<TagOutcome> = futures::stream::iter(work)
            .buffer_unordered(self.config.tag_concurrency.max(1))
            .collect()
            .await;
        let mut write = fetches.into_write();
        let mut state = RepositoryState {
            listed_at: Some(now),
            ..RepositoryState::default()
        };
        let mut events = Vec::new();
        for mut outcome in outcomes {
            if let Some((digest, previous)) = outcome.event
                && !baseline
            {
                // Recorded with the tag itself, so whoever reads the cache
                // next (automation) knows when it arrived.
                outcome.state.first_seen = Some(now);
                events.push((outcome.tag.clone(), digest, previous));
            }
            state.tags.insert(outcome.tag, outcome.state);
        }
        write.repositories.push((key, state));
        self.cache.write(write);
        let info = self.info(name);
        let new_tags = events
            .into_iter()
            .map(|(tag, digest, previous)| NewTag {
                created: info.tag(&tag).and_then(|t| t.created),
                name: name.clone(),
                tag,
                digest,
                previous,
            })
            .collect();
        PollResult {
            info,
            new_tags,
            no_answer: None,
        }
    }

    /// What one tag needs this poll: nothing, a re-check, or resolving.
    async fn tag_work(
        &self,
        name: &Name,
        tag: String,
        known: Option<TagState>,
        now: Timestamp,
        failed: Failed,
        fetches: &Fetches,
    ) -> TagOutcome {
        match known {
            Some(state) if state.digest.is_some() && state.error.is_none() => {
                match state.recheck_at {
                    Some(at) if at <= now => self.recheck(name, tag, state, now, fetches).await,
                    _ => TagOutcome {
                        tag,
                        state,
                        event: None,
                    },
                }
            }
            // A tag that failed waits out its retry interval, unless a change
            // named its repository.
            Some(state)
                if failed == Failed::Wait && state.recheck_at.is_some_and(|at| at > now) =>
            {
                TagOutcome {
                    tag,
                    state,
                    event: None,
                }
            }
            known => self.resolve_new(name, tag, known, now, fetches).await,
        }
    }

    async fn resolve_new(
        &self,
        name: &Name,
        tag: String,
        known: Option<TagState>,
        now: Timestamp,
        fetches: &Fetches,
    ) -> TagOutcome {
        let mut state = known.unwrap_or_default();
        match self.resolve_tag(name, &tag, fetches).await {
            Ok(digest) => {
                let event = Some((digest.clone(), None));
                state.digest = Some(digest);
                state.error = None;
                state.recheck_at = None;
                state.recheck_interval = 0;
                if self.config.mutable_tags.iter().any(|g| g.matches(&tag)) {
                    self.schedule(&mut state, now, self.config.recheck_min);
                }
                TagOutcome { tag, state, event }
            }
            Err(error) => {
                tracing::debug!(repository = %name, tag, %error, "cannot resolve tag");
                state.error = Some(error.to_string());
                // Retried at the next poll (a tag listed an instant before its
                // manifest is served, as a registry notifying of a push can
                // show), then after a minute, then twice as long each time, so
                // a broken tag does not cost requests on every poll.
                let wait = if state.recheck_interval == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs(state.recheck_interval.saturating_mul(2).max(60))
                        .min(self.config.recheck_max.max(Duration::from_secs(60)))
                };
                state.recheck_interval = wait.as_secs().max(1);
                let delay = SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
                state.recheck_at = Some(now.saturating_add(delay).unwrap_or(now));
                TagOutcome {
                    tag,
                    state,
                    event: None,
                }
            }
        }
    }

    async fn recheck(
        &self,
        name: &Name,
        tag: String,
        mut state: TagState,
        now: Timestamp,
        fetches: &Fetches,
    ) -> TagOutcome {
        let head = self.client.head_manifest(name, &tag).await;
        let digest = match head {
            Ok(Some(digest)) => Ok(digest),
            // Without a digest on HEAD, only a GET tells.
            Ok(None) => self.get_by_tag(name, &tag, fetches).await,
            Err(error) => Err(error),
        };
        let digest = match digest {
            Ok(digest) => digest,
            Err(error) => {
                tracing::debug!(repository = %name, tag, %error, "re-check failed; keeping what was known");
                self.schedule(&mut state, now, self.config.recheck_min);
                return TagOutcome {
                    tag,
                    state,
                    event: None,
                };
            }
        };
        if state.digest.as_deref() == Some(digest.as_str()) {
            let longer = Duration::from_secs(state.recheck_interval.saturating_mul(2));
            self.schedule(&mut state, now, longer);
            return TagOutcome {
                tag,
                state,
                event: None,
            };
        }
        let previous = state.digest.replace(digest.clone());
        state.moves = state.moves.saturating_add(1);
        self.schedule(&mut state, now, self.config.recheck_min);
        if let Err(error) = self.describe(name, &digest, fetches).await {
            state.error = Some(error.to_string());
            return TagOutcome {
                tag,
                state,
                event: None,
            };
        }
        TagOutcome {
            tag,
            state,
            event: Some((digest, previous)),
        }
    }

    fn schedule(&self, state: &mut TagState, now: Timestamp, interval: Duration) {
        let interval = interval
            .max(self.config.recheck_min)
            .min(self.config.recheck_max);
        state.recheck_interval = interval.as_secs();
        let delay = SignedDuration::try_from(interval).unwrap_or(SignedDuration::MAX);
        state.recheck_at = Some(now.saturating_add(delay).unwrap_or(now));
    }

    /// Finds the digest of a new tag and fetches what describes it.
    async fn resolve_tag(
        &self,
        name: &Name,
        tag: &str,
        fetches: &Fetches,
    ) -> Result<String, RegistryError> {
        let head_first = self
            .config
            .head_first_hosts
            .iter()
            .any(|h| h == name.api_host());
        let digest = if head_first {
            match self.client.head_manifest(name, tag).await? {
                Some(digest) => digest,
                None => self.get_by_tag(name, tag, fetches).await?,
            }
        } else {
            self.get_by_tag(name, tag, fetches).await?
        };
        self.describe(name, &digest, fetches).await?;
        Ok(digest)
    }

    async fn get_by_tag(
        &self,
        name: &Name,
        tag: &str,
        fetches: &Fetches,
    ) -> Result<String, RegistryError> {
        let fetched = self.client.get_manifest(name, tag).await?;
        let cell = fetches.manifest_cell(&fetched.digest);
        // Already set means another tag fetched the same digest just now.
        let _ = cell.set(fetched.manifest);
        Ok(fetched.digest)
    }

    /// Makes sure the manifest, the selected platform's manifest and its
    /// config are in the cache or this poll's fetches.
    async fn describe(
        &self,
        name: &Name,
        digest: &str,
        fetches: &Fetches,
    ) -> Result<(), RegistryError> {
        let manifest = self.manifest(name, digest, fetches).await?;
        let config = match manifest {
            Manifest::Image { config } => config,
            Manifest::Schema1 { .. } => return Ok(()),
            Manifest::Index { entries } => {
                let Some(entry) = select_platform(&self.config.platforms, &entries) else {
                    return Ok(());
                };
                match self.manifest(name, &entry.digest, fetches).await? {
                    Manifest::Image { config } => config,
                    _ => return Ok(()),
                }
            }
        };
        self.image_config(name, &config, fetches).await?;
        Ok(())
    }

    async fn manifest(
        &self,
        name: &Name,
        digest: &str,
        fetches: &Fetches,
    ) -> Result<Manifest, RegistryError> {
        let cell = fetches.manifest_cell(digest);
        if let Some(found) = cell.get() {
            return Ok(found.clone());
        }
        if let Some(found) = self.cache.manifest(digest) {
            return Ok(found);
        }
        cell.get_or_try_init(|| async {
            Ok(self.client.get_manifest(name, digest).await?.manifest)
        })
        .await
        .cloned()
    }

    async fn image_config(
        &self,
        name: &Name,
        digest: &str,
        fetches: &Fetches,
    ) -> Result<ImageConfig, RegistryError> {
        let cell = fetches.config_cell(digest);
        if let Some(found) = cell.get() {
            return Ok(found.clone());
        }
        if let Some(found) = self.cache.config(digest) {
            return Ok(found);
        }
        cell.get_or_try_init(|| self.client.get_config(name, digest))
            .await
            .cloned()
    }

    /// What the cache knows of a repository, without asking the registry.
    pub fn info(&self, name: &Name) -> RepositoryInfo {
        let state = self.cache.repository(&name.canonical()).unwrap_or_default();
        let tags = state
            .tags
            .iter()
            .map(|(tag, tag_state)| self.tag_info(name, tag, tag_state))
            .collect();
        RepositoryInfo {
            name: name.clone(),
            tags,
            error: state.error,
            listed_at: state.listed_at,
        }
    }

    fn tag_info(&self, name: &Name, tag: &str, state: &TagState) -> TagInfo {
        let mut info = TagInfo {
            tag: tag.to_string(),
            digest: state.digest.clone(),
            created: None,
            platforms: Vec::new(),
            platform: None,
            image_digest: None,
            error: state.error.clone(),
            first_seen: state.first_seen,
        };
        let Some(digest) = &state.digest else {
            return info;
        };
        let Some(manifest) = self.cache.stored_manifest(digest) else {
            return info;
        };
        let (image_digest, config) = match manifest {
            Manifest::Schema1 { created, platform } => {
                info.platforms.extend(platform.clone());
                info.platform = platform.filter(|p| self.wanted(p));
                info.created = created;
                info.image_digest = Some(digest.clone());
                return info;
            }
            Manifest::Image { config } => (digest.clone(), config),
            Manifest::Index { entries } => {
                info.platforms = entries.iter().filter_map(|e| e.platform.clone()).collect();
                let Some(entry) = select_platform(&self.config.platforms, &entries) else {
                    return info;
                };
                info.platform = entry.platform.clone();
                match self.cache.stored_manifest(&entry.digest) {
                    Some(Manifest::Image { config }) => (entry.digest.clone(), config),
                    _ => return info,
                }
            }
        };
        info.image_digest = Some(image_digest);
        let Some(config) = self.cache.stored_config(&config) else {
            return info;
        };
        if info.platforms.is_empty() {
            info.platforms.extend(config.platform.clone());
            // A config that names no platform is taken to run anywhere wanted.
            info.platform = match &config.platform {
                Some(p) => Some(p.clone()).filter(|p| self.wanted(p)),
                None => self.config.platforms.first().cloned(),
            };
        }
        info.created = if self.uses_labels(name) {
            config.label_created.or(config.created)
        } else {
            config.created
        };
        if info.platform.is_none() {
            info.created = None;
        }
        info
    }

    fn wanted(&self, offered: &Platform) -> bool {
        self.config.platforms.iter().any(|w| w.accepts(offered))
    }

    /// Polls the images on `images` every poll interval, and new images as
    /// soon as they appear, sending new tags on `events`. Returns when the
    /// image set's sender or the events' receiver is gone.
    pub async fn run(
        &self,
        mut images: watch::Receiver<BTreeSet<Name>>,
        events: mpsc::Sender<NewTag>,
    ) {
        let mut polled: BTreeSet<Name>;
        loop {
            let names: Vec<Name> = images.borrow_and_update().iter().cloned().collect();
            if !self.send_all(self.poll(&names).await, &events).await {
                return;
            }
            polled = names.into_iter().collect();
            let deadline = tokio::time::Instant::now() + self.config.poll_interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    changed = images.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let current: BTreeSet<Name> = images.borrow_and_update().clone();
                        let fresh: Vec<Name> = current.difference(&polled).cloned().collect();
                        if !self.send_all(self.poll(&fresh).await, &events).await {
                            return;
                        }
                        polled = current;
                    }
                }
            }
        }
    }

    async fn send_all(&self, results: Vec<PollResult>, events: &mpsc::Sender<NewTag>) -> bool {
        for event in results.into_iter().flat_map(|r| r.new_tags) {
            if events.send(event).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Whether `error` means the host did not answer at all: nothing came
/// back, or only server errors after the retries.
fn is_no_answer(error: &RegistryError) -> bool {
    match error {
        RegistryError::Transport { .. } => true,
        RegistryError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// The entry for the first wanted platform the index offers.
pub fn select_platform<'a>(
    wanted: &[Platform],
    entries: &'a [IndexEntry],
) -> Option<&'a IndexEntry> {
    wanted.iter().find_map(|w| {
        entries
            .iter()
            .find(|e| e.platform.as_ref().is_some_and(|p| w.accepts(p)))
    })
}
