//! What a sync reads from watches instead of asking the API server again:
//! the catalog of served types, kept while a watch on the
//! CustomResourceDefinitions and APIServices says nothing changed, and the
//! objects carrying a GC mark, one metadata watch per type (per allowed
//! namespace when some are set).
//!
//! Each is used only while its watch is sound: listed, and no error in the
//! last [`QUIET_AFTER_ERROR`]. Otherwise the sync discovers or lists as it
//! would without watches, so a watch that is forbidden or broken costs
//! requests, never correctness.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, ServedType};
use crate::checksum::{CHECKSUM_ANNOTATION, GC_MARK_LABEL};
use crate::resource::{IGNORE_ANNOTATION, LEGACY_IGNORE_ANNOTATION, ResourceId};

/// A catalog older than this is discovered again even when the watch saw no
/// change: the safety net for a change a watch missed, as the rollouts'
/// relist is.
pub(crate) const CATALOG_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// A watch that failed is trusted again once it has gone this long without
/// failing: a watcher retries at least every 30 seconds (its longest
/// backoff), so a watch still failing reports again well within this.
const QUIET_AFTER_ERROR: Duration = Duration::from_secs(60);

/// How long the first sync waits for the definitions' watch to list before
/// discovering; a slower watch only costs one more discovery later.
const DEFINITIONS_WAIT: Duration = Duration::from_secs(10);

/// How long each watch asks to last, in seconds: the real server's shortest
/// default (`--min-request-timeout`). kube-runtime's own 290 s would reopen
/// every watch six times as often; the bookmarks the server sends about every
/// minute keep the watcher's idle timeout (this plus 5 s) from firing first.
pub(crate) const WATCH_TIMEOUT: u32 = 1800;

/// How one watcher is doing, shared with its task.
#[derive(Default)]
struct Health {
    /// The watcher has listed, and not started listing again since.
    listed: AtomicBool,
    /// When it last failed.
    failed_at: Mutex<Option<Instant>>,
}

impl Health {
    fn failed_at(&self) -> MutexGuard<'_, Option<Instant>> {
        self.failed_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn failed(&self) {
        *self.failed_at() = Some(Instant::now());
    }

    fn sound(&self) -> bool {
        self.listed.load(Ordering::SeqCst)
            && self
                .failed_at()
                .is_none_or(|at| at.elapsed() >= QUIET_AFTER_ERROR)
    }

    /// Listed or failed: waiting longer tells nothing new.
    fn settled(&self) -> bool {
        self.listed.load(Ordering::SeqCst) || self.failed_at().is_some()
    }
}

/// The watches on CustomResourceDefinitions and APIServices: any change to
/// either may change what discovery says.
struct Definitions {
    health: Vec<Arc<Health>>,
    /// Counts the changes seen (a relist included).
    changes: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Definitions {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A catalog and the definitions' change count it was discovered after.
struct Cached {
    catalog: Arc<Catalog>,
    changes: u64,
    at: Instant,
}

/// What a GC decision needs of a marked object; nothing else is kept.
#[derive(Debug, Clone)]
struct Marked {
    mark: String,
    checksum: Option<String>,
    /// The value of `fluxcd.io/ignore` (or its legacy spelling).
    ignore: Option<String>,
    resource_version: Option<String>,
}

impl Marked {
    fn of(metadata: &kube::api::ObjectMeta) -> Option<Marked> {
        let mark = metadata.labels.as_ref()?.get(GC_MARK_LABEL)?.clone();
        let annotations = metadata.annotations.as_ref();
        let annotation = |key: &str| annotations.and_then(|a| a.get(key)).cloned();
        Some(Marked {
            mark,
            checksum: annotation(CHECKSUM_ANNOTATION),
            ignore: annotation(IGNORE_ANNOTATION).or_else(|| annotation(LEGACY_IGNORE_ANNOTATION)),
            resource_version: metadata.resource_version.clone(),
        })
    }

    /// Whether this is older than `other` (a watch event may trail the
    /// sync's own write). resourceVersions are compared as numbers when both
    /// are, as etcd's revisions are; otherwise the later arrival wins.
    fn older_than(&self, other: &Marked) -> bool {
        let number = |m: &Marked| {
            m.resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
        };
        matches!((number(self), number(other)), (Some(a), Some(b)) if a < b)
    }

    /// The object as a list of its metadata would give it, as far as a sync
    /// reads it.
    fn object(&self, id: &ResourceId) -> Value {
        let mut annotations = serde_json::Map::new();
        if let Some(checksum) = &self.checksum {
            annotations.insert(CHECKSUM_ANNOTATION.into(), json!(checksum));
        }
        if let Some(ignore) = &self.ignore {
            annotations.insert(IGNORE_ANNOTATION.into(), json!(ignore));
        }
        let mut metadata = json!({
            "name": id.name(),
            "labels": { GC_MARK_LABEL: self.mark },
            "annotations": annotations,
        });
        if let Some(ns) = id.namespace() {
            metadata["namespace"] = json!(ns);
        }
        json!({ "metadata": metadata })
    }
}

/// Where a marks watch looks: one type, in one namespace or all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MarksKey {
    api_version: String,
    plural: String,
    namespace: Option<String>,
}

impl MarksKey {
    pub fn new(served: &ServedType, namespace: Option<&str>) -> MarksKey {
        MarksKey {
            api_version: served.resource.api_version.clone(),
            plural: served.resource.plural.clone(),
            namespace: namespace.filter(|_| served.namespaced).map(str::to_string),
        }
    }
}

type Objects = Arc<Mutex<HashMap<ResourceId, Marked>>>;

/// One marks watch: its objects and its task.
struct MarksWatch {
    health: Arc<Health>,
    objects: Objects,
    task: JoinHandle<()>,
}

impl Drop for MarksWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The watches a [`crate::Cluster`] keeps for its syncs; they start with the
/// first sync and end when the last handle is dropped.
#[derive(Default)]
pub(crate) struct Watched {
    definitions: Mutex<Option<Definitions>>,
    catalog: Mutex<Option<Cached>>,
    /// Set when an apply suggests the catalog is out of date.
    stale: AtomicBool,
    /// Logged once: the definitions cannot be watched.
    unwatchable_logged: AtomicBool,
    marks: Mutex<HashMap<MarksKey, MarksWatch>>,
}

impl Watched {
    /// Asks for discovery again at the next sync.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// The catalog to sync with: the kept one while nothing says it may be
    /// out of date, otherwise a new discovery (kept when the definitions are
    /// watched).
    pub async fn catalog(&self, client: &kube::Client) -> Result<Arc<Catalog>, kube::Error> {
        let changes = self.definitions_changes(client).await;
        if let Some(changes) = changes
            && let Some(cached) = self.fresh_catalog(changes)
        {
            return Ok(cached);
        }
        // Cleared before discovering: a mark made meanwhile holds for the next
        // sync, and a discovery that fails leaves no catalog to fall back on.
        self.stale.store(false, Ordering::SeqCst);
        *lock(&self.catalog) = None;
        let catalog = Arc::new(Catalog::discover(client).await?);
        *lock(&self.catalog) = changes.map(|changes| Cached {
            catalog: catalog.clone(),
            changes,
            at: Instant::now(),
        });
        Ok(catalog)
    }

    fn fresh_catalog(&self, changes: u64) -> Option<Arc<Catalog>> {
        if self.stale.load(Ordering::SeqCst) {
            return None;
        }
        let cached = lock(&self.catalog);
        let cached = cached.as_ref()?;
        let fresh = cached.changes == changes
            && cached.at.elapsed() < CATALOG_MAX_AGE
            && cached.catalog.failed().is_empty();
        fresh.then(|| cached.catalog.clone())
    }

    /// The definitions' change count, once their watches are sound; `None`
    /// while they are not (then every sync discovers).
    async fn definitions_changes(&self, client: &kube::Client) -> Option<u64> {
        let (health, changes) = {
            let mut definitions = lock(&self.definitions);
            let definitions = definitions.get_or_insert_with(|| watch_definitions(client));
            (definitions.health.clone(), definitions.changes.clone())
        };
        let deadline = Instant::now() + DEFINITIONS_WAIT;
        while !health.iter().all(|h| h.settled()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Read before deciding: a change from here on makes the next sync discover.
        let count = changes.load(Ordering::SeqCst);
        if health.iter().all(|h| h.sound()) {
            return Some(count);
        }
        if !self.unwatchable_logged.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                "cannot watch CustomResourceDefinitions and APIServices; discovering on every sync"
            );
        }
        None
    }

    /// The marked objects of `key` as its watch knows them, starting the
    /// watch if there is none; `None` until the watch is sound (the caller
    /// lists instead).
    pub fn marked(
        &self,
        client: &kube::Client,
        served: &ServedType,
        key: &MarksKey,
    ) -> Option<Vec<(ResourceId, Value)>> {
        let mut marks = lock(&self.marks);
        let watch = marks
            .entry(key.clone())
            .or_insert_with(|| watch_marks(client, served, key));
        if !watch.health.sound() {
            return None;
        }
        let objects = lock(&watch.objects);
        Some(
            objects
                .iter()
                .map(|(id, marked)| (id.clone(), marked.object(id)))
                .collect(),
        )
    }

    /// Stops the marks watches of types no longer synced.
    pub fn keep_marks(&self, keys: &BTreeSet<MarksKey>) {
        lock(&self.marks).retain(|key, _| keys.contains(key));
    }

    /// Records what a sync just applied, before its watch event arrives: the
    /// next sync then sees it unchanged.
    pub fn applied(&self, key: &MarksKey, id: &ResourceId, metadata: &kube::api::ObjectMeta) {
        let Some(marked) = Marked::of(metadata) else {
            return;
        };
        if let Some(watch) = lock(&self.marks).get(key) {
            record(&mut lock(&watch.objects), id.clone(), marked);
        }
    }

    /// Forgets what a sync just deleted.
    pub fn deleted(&self, key: &MarksKey, id: &ResourceId) {
        if let Some(watch) = lock(&self.marks).get(key) {
            lock(&watch.objects).remove(id);
        }
    }

    /// Whether the definitions' watches and every marks watch are sound: a
    /// sync then asks nothing but its writes (and the objects it collects).
    pub fn sound(&self) -> bool {
        let definitions = lock(&self.definitions);
        let Some(definitions) = definitions.as_ref() else {
            return false;
        };
        definitions.health.iter().all(|h| h.sound())
            && lock(&self.marks).values().all(|w| w.health.sound())
    }
}

fn record(objects: &mut HashMap<ResourceId, Marked>, id: ResourceId, marked: Marked) {
    match objects.get(&id) {
        Some(known) if marked.older_than(known) => {}
        _ => {
            objects.insert(id, marked);
        }
    }
}

fn watch_definitions(client: &kube::Client) -> Definitions {
    let changes = Arc::new(AtomicU64::new(0));
    let mut definitions = Definitions {
        health: Vec::new(),
        changes: changes.clone(),
        tasks: Vec::new(),
    };
    let kinds = [
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        ),
        ("apiregistration.k8s.io", "APIService", "apiservices"),
    ];
    for (group, kind, plural) in kinds {
        let resource = ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: format!("{group}/v1"),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &resource);
        let health = Arc::new(Health::default());
        let shared = health.clone();
        let changes = changes.clone();
        let config = watcher::Config::default().timeout(WATCH_TIMEOUT);
        let events = watcher(api, config).default_backoff();
        definitions.tasks.push(tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init) => shared.listed.store(false, Ordering::SeqCst),
                    Ok(watcher::Event::InitApply(_)) => {}
                    Ok(watcher::Event::InitDone) => {
                        // What changed before the list is unknown: count it.
                        changes.fetch_add(1, Ordering::SeqCst);
                        shared.listed.store(true, Ordering::SeqCst);
                    }
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                        changes.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(error) => {
                        tracing::debug!(%error, plural, "watch failed");
                        changes.fetch_add(1, Ordering::SeqCst);
                        shared.failed();
                    }
                }
            }
        }));
        definitions.health.push(health);
    }
    definitions
}

fn watch_marks(client: &kube::Client, served: &ServedType, key: &MarksKey) -> MarksWatch {
    let api: Api<PartialObjectMeta<DynamicObject>> = match &key.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &served.resource),
        None => Api::all_with(client.clone(), &served.resource),
    };
    let health = Arc::new(Health::default());
    let objects: Objects = Arc::default();
    let config = watcher::Config::default()
        .labels(GC_MARK_LABEL)
        .timeout(WATCH_TIMEOUT);
    let events = watcher(api, config).default_backoff();
    let (shared, into) = (health.clone(), objects.clone());
    let (kind, namespaced) = (served.resource.kind.clone(), served.namespaced);
    let id_of = move |metadata: &kube::api::ObjectMeta| {
        let namespace = metadata.namespace.as_deref().filter(|_| namespaced);
        ResourceId::new(
            namespace,
            &kind,
            metadata.name.as_deref().unwrap_or_default(),
        )
    };
    let plural = served.resource.plural.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        let mut relisted: HashMap<ResourceId, Marked> = HashMap::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => {
                    shared.listed.store(false, Ordering::SeqCst);
                    relisted.clear();
                }
                Ok(watcher::Event::InitApply(object)) => {
                    if let Some(marked) = Marked::of(&object.metadata) {
                        relisted.insert(id_of(&object.metadata), marked);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    *lock(&into) = std::mem::take(&mut relisted);
                    shared.listed.store(true, Ordering::SeqCst);
                }
                Ok(watcher::Event::Apply(object)) => {
                    let id = id_of(&object.metadata);
                    match Marked::of(&object.metadata) {
                        Some(marked) => record(&mut lock(&into), id, marked),
                        None => {
                            lock(&into).remove(&id);
                        }
                    }
                }
                Ok(watcher::Event::Delete(object)) => {
                    let id = id_of(&object.metadata);
                    let mut objects = lock(&into);
                    let gone = Marked::of(&object.metadata);
                    // Not when the sync has since made the object again.
                    let outdated =
                        matches!((&gone, objects.get(&id)), (Some(g), Some(k)) if g.older_than(k));
                    if !outdated {
                        objects.remove(&id);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, %plural, "watch of marked objects failed");
                    shared.failed();
                }
            }
        }
    });
    MarksWatch {
        health,
        objects,
        task,
    }
}
