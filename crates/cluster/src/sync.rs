//! Sync: apply manifests with server-side apply in kind order, skip what is already
//! applied, and collect the garbage a previous sync left.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, ValidationDirective};
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{Catalog, ServedType};
use crate::checksum::{
    CHECKSUM_ANNOTATION, GC_MARK_LABEL, checksum, drop_nulls, gc_mark, unchanged_since_applied,
};
use crate::order::{RANKS, rank};
use crate::resource::{
    FORCE_CONFLICTS_ANNOTATION, IGNORE_ANNOTATION, IgnorePolicy, LEGACY_IGNORE_ANNOTATION,
    Manifest, ManifestSet, ResourceId,
};
use crate::watched::MarksKey;
use crate::{Cluster, ClusterError, describe};

/// Whether a sync deletes what it applied before and is no longer in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum GarbageCollection {
    /// Never delete (the default).
    #[default]
    Off,
    /// Only report (and log) what would be deleted.
    DryRun,
    /// Delete (`--sync-garbage-collection`).
    On,
}

/// How a sync writes.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Names the sync set; part of every object's GC mark, so two syncs with different
    /// names never collect each other's objects.
    pub set_name: String,
    /// Field manager for server-side apply (`fluxd`).
    pub field_manager: String,
    /// Take over fields other managers own (server-side apply `force`), except
    /// on manifests annotated `fluxcd.io/force-conflicts: "false"`.
    pub force: bool,
    /// Server-side dry run: the API server validates, nothing is stored.
    pub dry_run: bool,
    /// Garbage collection mode.
    pub garbage_collection: GarbageCollection,
    /// Requests in flight at once within a rank.
    pub parallelism: usize,
    /// How long to wait for the API server to serve the kinds of CRDs just applied.
    pub crd_wait: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            set_name: "fluxd".into(),
            field_manager: "fluxd".into(),
            force: false,
            dry_run: false,
            garbage_collection: GarbageCollection::Off,
            parallelism: 16,
            crd_wait: Duration::from_secs(30),
        }
    }
}

/// Why garbage collection left an object in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeepReason {
    /// The live object carries `fluxcd.io/ignore`.
    Ignored,
    /// Someone changed the object since it was applied (its fields no longer hash to
    /// its checksum).
    Changed,
}

/// An object garbage collection kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// The object.
    pub id: ResourceId,
    /// Why it was kept.
    pub reason: KeepReason,
}

/// A resource (or file) that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncError {
    /// The resource, when known (a file that could not be read has none).
    pub id: Option<ResourceId>,
    /// The file it came from (or the live object, for garbage collection).
    pub source: String,
    /// What went wrong.
    pub message: String,
}

/// What a sync did, resource by resource.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Written (server-side apply).
    pub applied: Vec<ResourceId>,
    /// Already as applied (same checksum): not written.
    pub unchanged: Vec<ResourceId>,
    /// Skipped for `fluxcd.io/ignore` on the manifest or the live object.
    pub ignored: Vec<ResourceId>,
    /// Deleted by garbage collection.
    pub deleted: Vec<ResourceId>,
    /// What garbage collection would delete, in its dry mode.
    pub would_delete: Vec<ResourceId>,
    /// Left in place by garbage collection, with the reason.
    pub kept: Vec<Kept>,
    /// Failures, by resource; the other resources were still synced.
    pub errors: Vec<SyncError>,
    /// Why garbage collection did not run, when it was asked for and did not.
    pub gc_skipped: Option<String>,
}

impl SyncReport {
    /// True when nothing failed.
    pub fn is_success(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A manifest ready to apply.
#[derive(Debug, Clone)]
struct Planned {
    id: ResourceId,
    source: String,
    served: ServedType,
    rank: usize,
    object: Value,
    checksum: String,
    mark: String,
    ignore: IgnorePolicy,
}

/// A live object carrying a GC mark.
#[derive(Debug, Clone)]
struct Live {
    id: ResourceId,
    served: ServedType,
    object: Value,
}

impl Live {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.object["metadata"]["annotations"][key].as_str()
    }

    fn mark(&self) -> Option<&str> {
        self.object["metadata"]["labels"][GC_MARK_LABEL].as_str()
    }
}

/// The state of one sync as it goes.
#[derive(Default)]
struct Run<'m> {
    /// Manifests ready to apply.
    planned: Vec<Planned>,
    /// Manifests whose kind the API server does not serve (yet).
    unserved: Vec<&'m Manifest>,
    /// Where each planned resource came from (to name duplicates).
    sources: HashMap<ResourceId, String>,
    /// Every id the input names, in every form (collection spares them).
    input_ids: BTreeSet<ResourceId>,
    /// The types listed for marked objects.
    listed: Vec<ServedType>,
    /// Marked live objects.
    live: HashMap<ResourceId, Live>,
    /// Lists (and discoveries) that failed.
    list_failures: Vec<String>,
    report: SyncReport,
}

enum PlanProblem {
    /// The API server serves no such kind (yet).
    Unserved,
    /// The manifest may not be applied here.
    Refused(String),
}

enum Outcome {
    Applied,
    Unchanged,
    Ignored,
    Failed(String),
}

/// Whether a manifest opts out of forced ownership
/// (`fluxcd.io/force-conflicts: "false"`): then a field another manager owns
/// with another value fails the object with the API server's conflict.
fn keeps_conflicts(object: &Value) -> bool {
    object["metadata"]["annotations"][FORCE_CONFLICTS_ANNOTATION].as_str() == Some("false")
}

impl Cluster {
    /// Applies `set` to the cluster and, when asked, collects garbage. Per-resource
    /// failures are in the report; an error is returned only when the cluster cannot
    /// be asked at all (discovery fails).
    pub async fn sync(
        &self,
        set: &ManifestSet,
        options: &SyncOptions,
    ) -> Result<SyncReport, ClusterError> {
        let mut run = Run::default();
        for error in &set.errors {
            run.report.errors.push(SyncError {
                id: None,
                source: error.file.clone(),
                message: error.to_string(),
            });
        }
        let catalog = self
            .watched
            .catalog(&self.client)
            .await
            .map_err(ClusterError::Api)?;
        for manifest in &set.manifests {
            run.input_ids.insert(manifest.id.clone());
            let defaulted = manifest
                .id
                .with_namespace(Some(&self.scope.default_namespace));
            run.input_ids.insert(defaulted);
            self.plan_into(manifest, &catalog, options, &mut run);
        }
        run.listed = if options.garbage_collection == GarbageCollection::Off {
            distinct_types(&run.planned)
        } else {
            catalog.collectable()
        };
        let (live, failures) = self.list_marked(&run.listed, options.parallelism).await;
        run.live = live;
        run.list_failures = failures;
        run.list_failures
            .extend(catalog.failed().iter().map(|f| format!("discovery of {f}")));

        for current in 0..RANKS {
            let batch: Vec<Planned> = run
                .planned
                .iter()
                .filter(|p| p.rank == current)
                .cloned()
                .collect();
            self.apply_batch(batch, &run.live, options, &mut run.report)
                .await;
            if current == 0 {
                self.plan_after_crds(options, &mut run).await?;
            }
        }
        for manifest in std::mem::take(&mut run.unserved) {
            let api_version = manifest.object["apiVersion"].as_str().unwrap_or_default();
            let kind = manifest.object["kind"].as_str().unwrap_or_default();
            run.report.errors.push(SyncError {
                id: Some(manifest.id.clone()),
                source: manifest.source.clone(),
                message: format!(
                    "the cluster serves no {kind} in {api_version} (is its CRD installed?)"
                ),
            });
        }
        self.watched.keep_marks(&self.marks_keys(&run.listed));
        if options.garbage_collection != GarbageCollection::Off {
            self.collect_if_safe(set, options, &mut run).await;
        }
        Ok(run.report)
    }

    /// Once the CRDs of the set are applied, waits for their kinds to be served, plans
    /// the manifests of those kinds and reads their live objects.
    async fn plan_after_crds<'m>(
        &self,
        options: &SyncOptions,
        run: &mut Run<'m>,
    ) -> Result<(), ClusterError> {
        let defined = crd_kinds(&run.planned);
        let waiting = run
            .unserved
            .iter()
            .any(|m| defined.contains(&group_kind(&m.object)));
        if !waiting || options.dry_run {
            return Ok(());
        }
        let catalog = self
            .wait_for_kinds(&run.unserved, &defined, options.crd_wait)
            .await?;
        let before = run.planned.len();
        for manifest in std::mem::take(&mut run.unserved) {
            self.plan_into(manifest, &catalog, options, run);
        }
        let key = |t: &ServedType| format!("{}/{}", t.resource.api_version, t.resource.plural);
        let known: BTreeSet<String> = run.listed.iter().map(key).collect();
        let fresh: Vec<ServedType> = distinct_types(&run.planned[before..])
            .into_iter()
            .filter(|t| !known.contains(&key(t)))
            .collect();
        let (more, failures) = self.list_marked(&fresh, options.parallelism).await;
        run.live.extend(more);
        run.list_failures.extend(failures);
        run.listed.extend(fresh);
        Ok(())
    }

    /// Collects garbage unless what the sync saw is incomplete: unreadable files or
    /// failed lists would make live objects look orphaned.
    async fn collect_if_safe(&self, set: &ManifestSet, options: &SyncOptions, run: &mut Run<'_>) {
        let reason = if !set.errors.is_empty() {
            Some(format!(
                "{} manifest file(s) could not be read; their objects would look orphaned",
                set.errors.len()
            ))
        } else if !run.list_failures.is_empty() {
            Some(format!(
                "could not list marked objects: {}",
                run.list_failures.join("; ")
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => {
                tracing::warn!(%reason, "garbage collection skipped");
                run.report.gc_skipped = Some(reason);
            }
            None => {
                self.collect_garbage(&run.live, &run.input_ids, options, &mut run.report)
                    .await
            }
        }
    }

    /// Plans one manifest into the run: ready to apply, waiting for its kind to be
    /// served, or refused (duplicates, namespaces not allowed).
    fn plan_into<'m>(
        &self,
        manifest: &'m Manifest,
        catalog: &Catalog,
        options: &SyncOptions,
        run: &mut Run<'m>,
    ) {
        match self.plan(manifest, catalog, options) {
            Ok(plan) => {
                if let Some(first) = run.sources.get(&plan.id) {
                    run.report.errors.push(SyncError {
                        id: Some(plan.id.clone()),
                        source: manifest.source.clone(),
                        message: format!("duplicate of the resource in {first}"),
                    });
                    return;
                }
                run.sources.insert(plan.id.clone(), manifest.source.clone());
                run.input_ids.insert(plan.id.clone());
                run.planned.push(plan);
            }
            Err(PlanProblem::Unserved) => run.unserved.push(manifest),
            Err(PlanProblem::Refused(message)) => run.report.errors.push(SyncError {
                id: Some(manifest.id.clone()),
                source: manifest.source.clone(),
                message,
            }),
        }
    }

    /// Resolves the manifest's type and namespace and builds the object to apply:
    /// nulls and status dropped, GC mark label and checksum annotation added.
    fn plan(
        &self,
        manifest: &Manifest,
        catalog: &Catalog,
        options: &SyncOptions,
    ) -> Result<Planned, PlanProblem> {
        let api_version = manifest.object["apiVersion"].as_str().unwrap_or_default();
        let kind = manifest.object["kind"].as_str().unwrap_or_default();
        let served = catalog
            .resolve(api_version, kind)
            .ok_or(PlanProblem::Unserved)?;
        let namespace = served.namespaced.then(|| {
            manifest
                .id
                .namespace()
                .unwrap_or(&self.scope.default_namespace)
                .to_string()
        });
        let allowed = &self.scope.allowed_namespaces;
        let checked = match (&namespace, kind) {
            (Some(ns), _) => Some(ns.as_str()),
            (None, "Namespace") => Some(manifest.id.name()),
            (None, _) => None,
        };
        if let Some(ns) =
            checked.filter(|ns| !allowed.is_empty() && !allowed.iter().any(|a| a == ns))
        {
            return Err(PlanProblem::Refused(format!(
                "namespace {ns} is not among the allowed namespaces ({})",
                allowed.join(", ")
            )));
        }
        let id = manifest.id.with_namespace(namespace.as_deref());
        let mark = gc_mark(&options.set_name, &id);
        let mut object = drop_nulls(&manifest.object);
        let map = object.as_object_mut().expect("manifests are mappings");
        map.remove("status");
        let metadata = map.entry("metadata").or_insert_with(|| json!({}));
        match &namespace {
            Some(ns) => metadata["namespace"] = json!(ns),
            None => {
                metadata.as_object_mut().map(|m| m.remove("namespace"));
            }
        }
        if !metadata["labels"].is_object() {
            metadata["labels"] = json!({});
        }
        metadata["labels"][GC_MARK_LABEL] = json!(mark);
        let sum = checksum(&object);
        let metadata = &mut object["metadata"];
        if !metadata["annotations"].is_object() {
            metadata["annotations"] = json!({});
        }
        metadata["annotations"][CHECKSUM_ANNOTATION] = json!(sum);
        Ok(Planned {
            id,
            source: manifest.source.clone(),
            rank: rank(&served.resource.kind),
            served,
            object,
            checksum: sum,
            mark,
            ignore: manifest.ignore,
        })
    }

    async fn apply_batch(
        &self,
        batch: Vec<Planned>,
        live: &HashMap<ResourceId, Live>,
        options: &SyncOptions,
        report: &mut SyncReport,
    ) {
        let outcomes: Vec<(Planned, Outcome)> = stream::iter(batch)
            .map(|plan| async move {
                let outcome = self.apply_one(&plan, live.get(&plan.id), options).await;
                (plan, outcome)
            })
            .buffer_unordered(options.parallelism.max(1))
            .collect()
            .await;
        for (plan, outcome) in outcomes {
            match outcome {
                Outcome::Applied => report.applied.push(plan.id),
                Outcome::Unchanged => report.unchanged.push(plan.id),
                Outcome::Ignored => report.ignored.push(plan.id),
                Outcome::Failed(message) => {
                    // The caller reports failures (once); this is for tracing.
                    tracing::debug!(resource = %plan.id, source = %plan.source, %message, "apply failed");
                    report.errors.push(SyncError {
                        id: Some(plan.id),
                        source: plan.source,
                        message,
                    });
                }
            }
        }
    }

    async fn apply_one(
        &self,
        plan: &Planned,
        live: Option<&Live>,
        options: &SyncOptions,
    ) -> Outcome {
        if plan.ignore.skips_sync() {
            return Outcome::Ignored;
        }
        if let Some(live) = live {
            if IgnorePolicy::of(&live.object).skips_sync() {
                return Outcome::Ignored;
            }
            let same = live.annotation(CHECKSUM_ANNOTATION) == Some(plan.checksum.as_str())
                && live.mark() == Some(plan.mark.as_str());
            if same {
                return Outcome::Unchanged;
            }
        }
        // An object sync has not marked yet is only seen by asking for it. Without
        // force, server-side apply refuses to change another manager's fields anyway;
        // with force, read it first so that its `fluxcd.io/ignore` is honoured.
        let force = options.force && !keeps_conflicts(&plan.object);
        if live.is_none() && force {
            match self.ignored_in_cluster(plan).await {
                Ok(true) => return Outcome::Ignored,
                Ok(false) => {}
                Err(error) => return Outcome::Failed(describe(&error)),
            }
        }
        let mut params = PatchParams::apply(&options.field_manager);
        params.force = force;
        params.dry_run = options.dry_run;
        // Unknown fields (typos) fail the resource instead of being dropped silently.
        params.field_validation = Some(ValidationDirective::Strict);
        // Of the response (the whole object) only the metadata is read, for the
        // marks watch: no typed object is built.
        let url = self
            .api(&plan.served, plan.id.namespace())
            .resource_url()
            .to_string();
        let request = kube::core::Request::new(url)
            .patch(plan.id.name(), &params, &Patch::Apply(&plan.object))
            .map_err(kube::Error::BuildRequest);
        let sent = match request {
            Ok(request) => self.client.request_text(request).await,
            Err(error) => Err(error),
        };
        match sent {
            Ok(answer) => {
                if !options.dry_run {
                    self.remember_applied(plan, &answer);
                }
                Outcome::Applied
            }
            Err(error) => {
                // Not found on an apply: the kind may have stopped being served
                // (or the namespace is missing); either way discovery may be stale.
                if matches!(&error, kube::Error::Api(status) if status.code == 404) {
                    self.watched.mark_stale();
                }
                Outcome::Failed(describe(&error))
            }
        }
    }

    /// Tells the marks watch of the plan's type what the API server answered
    /// the apply with, so that a sync right after this one sees it unchanged
    /// even before the watch's event arrives.
    fn remember_applied(&self, plan: &Planned, answer: &str) {
        #[derive(serde::Deserialize)]
        struct Answer {
            metadata: kube::api::ObjectMeta,
        }
        match serde_json::from_str::<Answer>(answer) {
            Ok(answer) => {
                let key = self.marks_key(&plan.served, plan.id.namespace());
                self.watched.applied(&key, &plan.id, &answer.metadata);
            }
            Err(error) => {
                tracing::debug!(resource = %plan.id, %error, "the apply's answer is no object")
            }
        }
    }

    /// Whether the live object (if any) carries `fluxcd.io/ignore`.
    async fn ignored_in_cluster(&self, plan: &Planned) -> Result<bool, kube::Error> {
        let api = self.api(&plan.served, plan.id.namespace());
        let live = api.get_opt(plan.id.name()).await?;
        let annotations = live.as_ref().and_then(|o| o.metadata.annotations.as_ref());
        let ignored = annotations.is_some_and(|a| {
            let value = a
                .get(IGNORE_ANNOTATION)
                .or_else(|| a.get(LEGACY_IGNORE_ANNOTATION));
            matches!(value.map(String::as_str), Some("true" | "sync_only"))
        });
        Ok(ignored)
    }

    /// Polls discovery until the kinds the set's CRDs define are served, or `wait` ends.
    async fn wait_for_kinds(
        &self,
        unserved: &[&Manifest],
        defined: &BTreeSet<(String, String)>,
        wait: Duration,
    ) -> Result<Catalog, ClusterError> {
        let deadline = Instant::now() + wait;
        loop {
            let catalog = Catalog::discover(&self.client)
                .await
                .map_err(ClusterError::Api)?;
            let pending = unserved.iter().any(|m| {
                defined.contains(&group_kind(&m.object))
                    && catalog
                        .resolve(
                            m.object["apiVersion"].as_str().unwrap_or_default(),
                            m.object["kind"].as_str().unwrap_or_default(),
                        )
                        .is_none()
            });
            if !pending || Instant::now() >= deadline {
                return Ok(catalog);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Where the marked objects of `types` are: each type in each allowed
    /// namespace, or in all namespaces.
    fn marks_places(&self, types: &[ServedType]) -> Vec<(ServedType, Option<String>)> {
        let allowed = &self.scope.allowed_namespaces;
        let mut places = Vec::new();
        for served in types {
            if served.namespaced && !allowed.is_empty() {
                places.extend(allowed.iter().map(|ns| (served.clone(), Some(ns.clone()))));
            } else {
                places.push((served.clone(), None));
            }
        }
        places
    }

    /// The marks watch an object of `served` in `namespace` is seen by.
    fn marks_key(&self, served: &ServedType, namespace: Option<&str>) -> MarksKey {
        let per_namespace = !self.scope.allowed_namespaces.is_empty();
        MarksKey::new(served, namespace.filter(|_| per_namespace))
    }

    fn marks_keys(&self, types: &[ServedType]) -> BTreeSet<MarksKey> {
        self.marks_places(types)
            .iter()
            .map(|(served, namespace)| MarksKey::new(served, namespace.as_deref()))
            .collect()
    }

    /// Every object carrying a GC mark, of the given types, in the allowed namespaces;
    /// and the lists that failed. A type whose watch is sound is read from it, the
    /// others are listed.
    async fn list_marked(
        &self,
        types: &[ServedType],
        parallelism: usize,
    ) -> (HashMap<ResourceId, Live>, Vec<String>) {
        let mut live = HashMap::new();
        let mut unwatched = Vec::new();
        for (served, namespace) in self.marks_places(types) {
            let key = MarksKey::new(&served, namespace.as_deref());
            match self.watched.marked(&self.client, &served, &key) {
                Some(objects) => {
                    for (id, object) in objects {
                        let served = served.clone();
                        live.insert(id.clone(), Live { id, served, object });
                    }
                }
                None => unwatched.push((served, namespace)),
            }
        }
        let results: Vec<_> = stream::iter(unwatched)
            .map(|(served, namespace)| async move {
                let listed = self.list_type(&served, namespace.as_deref()).await;
                (served, namespace, listed)
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
        let mut failures = Vec::new();
        for (served, namespace, listed) in results {
            let objects = match listed {
                Ok(objects) => objects,
                Err(error) => {
                    let place = namespace.map(|ns| format!(" in {ns}")).unwrap_or_default();
                    failures.push(format!(
                        "{}{place}: {}",
                        served.resource.plural,
                        describe(&error)
                    ));
                    continue;
                }
            };
            for object in objects {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let namespace = object["metadata"]["namespace"]
                    .as_str()
                    .filter(|_| served.namespaced);
                let id = ResourceId::new(namespace, &served.resource.kind, name);
                live.insert(
                    id.clone(),
                    Live {
                        id,
                        served: served.clone(),
                        object,
                    },
                );
            }
        }
        (live, failures)
    }

    /// The metadata of the marked objects of one type: labels, annotations and
    /// managed fields are all a sync decides on, so the rest is not transferred.
    async fn list_type(
        &self,
        served: &ServedType,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>, kube::Error> {
        let api = self.api(served, namespace);
        let mut params = ListParams::default().labels(GC_MARK_LABEL).limit(500);
        let mut objects = Vec::new();
        loop {
            let page = api.list_metadata(&params).await?;
            for item in page.items {
                let metadata =
                    serde_json::to_value(item.metadata).map_err(kube::Error::SerdeError)?;
                objects.push(json!({ "metadata": metadata }));
            }
            match page.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(objects),
            }
        }
    }

    /// The whole live object (a list gave only its metadata); `None` once it is gone.
    async fn full_object(&self, live: &Live) -> Result<Option<Value>, kube::Error> {
        let api = self.api(&live.served, live.id.namespace());
        match api.get_opt(live.id.name()).await? {
            Some(object) => serde_json::to_value(object)
                .map(Some)
                .map_err(kube::Error::SerdeError),
            None => Ok(None),
        }
    }

    /// Of the orphans of one rank, those to delete: not ignored, and unchanged since
    /// applied (which needs their whole object).
    async fn doomed<'l>(
        &self,
        orphans: Vec<&'l Live>,
        options: &SyncOptions,
        report: &mut SyncReport,
    ) -> Vec<&'l Live> {
        let mut candidates = Vec::new();
        for orphan in orphans {
            if IgnorePolicy::of(&orphan.object).skips_sync() {
                report.kept.push(Kept {
                    id: orphan.id.clone(),
                    reason: KeepReason::Ignored,
                });
            } else {
                candidates.push(orphan);
            }
        }
        type Fetched<'l> = (&'l Live, Result<Option<Value>, kube::Error>);
        let fetches: Vec<Boxed<'_, Fetched<'l>>> = candidates
            .into_iter()
            .map(|orphan| boxed(async move { (orphan, self.full_object(orphan).await) }))
            .collect();
        let fetched: Vec<Fetched<'l>> = stream::iter(fetches)
            .buffer_unordered(options.parallelism.max(1))
            .collect()
            .await;
        let mut doomed = Vec::new();
        for (orphan, object) in fetched {
            match object {
                // The marks may come from a watch a moment behind: the whole
                // object has the last word on ignore too.
                Ok(Some(object)) if IgnorePolicy::of(&object).skips_sync() => {
                    report.kept.push(Kept {
                        id: orphan.id.clone(),
                        reason: KeepReason::Ignored,
                    });
                }
                Ok(Some(object)) if unchanged_since_applied(&object, &options.field_manager) => {
                    doomed.push(orphan)
                }
                Ok(Some(_)) => {
                    tracing::warn!(resource = %orphan.id, "not in the input but changed since applied; keeping it");
                    report.kept.push(Kept {
                        id: orphan.id.clone(),
                        reason: KeepReason::Changed,
                    });
                }
                Ok(None) => {}
                Err(error) => report.errors.push(SyncError {
                    source: format!("cluster object {}", orphan.id),
                    id: Some(orphan.id.clone()),
                    message: describe(&error),
                }),
            }
        }
        doomed
    }

    /// Deletes, in reverse kind order, the objects of this sync set that are no longer
    /// in the input; keeps those marked ignore and those changed since applied.
    async fn collect_garbage(
        &self,
        live: &HashMap<ResourceId, Live>,
        input: &BTreeSet<ResourceId>,
        options: &SyncOptions,
        report: &mut SyncReport,
    ) {
        let orphans: Vec<&Live> = live
            .values()
            .filter(|l| !input.contains(&l.id))
            .filter(|l| l.mark() == Some(gc_mark(&options.set_name, &l.id).as_str()))
            .collect();
        for current in (0..RANKS).rev() {
            let in_rank: Vec<&Live> = orphans
                .iter()
                .filter(|l| rank(&l.served.resource.kind) == current)
                .copied()
                .collect();
            let doomed = self.doomed(in_rank, options, report).await;
            if options.garbage_collection == GarbageCollection::DryRun {
                for orphan in doomed {
                    tracing::info!(resource = %orphan.id, "garbage collection (dry run) would delete");
                    report.would_delete.push(orphan.id.clone());
                }
                continue;
            }
            let deletes: Vec<Boxed<'_, (ResourceId, Result<(), kube::Error>)>> = doomed
                .into_iter()
                .map(|orphan| {
                    boxed(async move {
                        let api = self.api(&orphan.served, orphan.id.namespace());
                        let mut params = DeleteParams::background();
                        params.dry_run = options.dry_run;
                        let result = api.delete(orphan.id.name(), &params).await.map(|_| ());
                        (orphan.id.clone(), result)
                    })
                })
                .collect();
            let results: Vec<(ResourceId, Result<(), kube::Error>)> = stream::iter(deletes)
                .buffer_unordered(options.parallelism.max(1))
                .collect()
                .await;
            for (id, result) in results {
                match result {
                    Ok(()) => {
                        if !options.dry_run {
                            let served = &live[&id].served;
                            self.watched
                                .deleted(&self.marks_key(served, id.namespace()), &id);
                        }
                        tracing::info!(resource = %id, "garbage collection deleted");
                        report.deleted.push(id);
                    }
                    Err(error) => report.errors.push(SyncError {
                        source: format!("cluster object {id}"),
                        id: Some(id),
                        message: describe(&error),
                    }),
                }
            }
        }
    }
}

/// (group, kind) of a manifest.
fn group_kind(object: &Value) -> (String, String) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = api_version
        .split_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    (
        group.to_string(),
        object["kind"].as_str().unwrap_or_default().to_string(),
    )
}

/// (group, kind) of every CRD among the planned objects.
fn crd_kinds(planned: &[Planned]) -> BTreeSet<(String, String)> {
    planned
        .iter()
        .filter(|p| p.served.resource.kind == "CustomResourceDefinition")
        .map(|p| {
            let spec = &p.object["spec"];
            let group = spec["group"].as_str().unwrap_or_default().to_string();
            (
                group,
                spec["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn distinct_types(planned: &[Planned]) -> Vec<ServedType> {
    let mut seen = BTreeSet::new();
    planned
        .iter()
        .filter(|p| {
            seen.insert((
                p.served.resource.api_version.clone(),
                p.served.resource.plural.clone(),
            ))
        })
        .map(|p| p.served.clone())
        .collect()
}

/// A request's future, boxed: a stream of futures made by a closure over borrowed
/// objects trips the compiler's higher-ranked `Send` check (rust-lang/rust#102211)
/// when a caller spawns the sync; boxed futures made up front do not.
type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn boxed<'a, T>(work: impl std::future::Future<Output = T> + Send + 'a) -> Boxed<'a, T> {
    Box::pin(work)
}
