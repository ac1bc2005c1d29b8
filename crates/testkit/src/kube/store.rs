//! The objects the double holds and the verbs on them: create, update, server-side
//! apply, merge patch, delete, list; with resourceVersion, generation, managedFields
//! and `Status` errors shaped as the real server's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value, json};

use super::selector::LabelSelector;
use super::types::{ResourceType, builtin_types, types_of_crd};

/// A failed request: the HTTP code, the `Status` reason and message.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    /// What the real API server answers a request its authenticators reject.
    pub fn unauthorized() -> Self {
        ApiError {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".to_string(),
            details: Value::Null,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: Value::Null,
        }
    }

    /// What RBAC answers a request no rule allows, as the real server words it.
    pub fn forbidden(request: &super::AuthorizedRequest, user: &str) -> Self {
        let qualified = if request.group.is_empty() {
            request.resource.clone()
        } else {
            format!("{}.{}", request.resource, request.group)
        };
        let scope = match &request.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        let object = request
            .name
            .as_deref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{qualified}{object} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
                request.verb, request.resource, request.group
            ),
            details: json!({"group": request.group, "kind": request.resource}),
        }
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", rt.qualified()),
            details: json!({"name": name, "group": rt.group, "kind": rt.plural}),
        }
    }

    pub fn path_not_found() -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
            details: Value::Null,
        }
    }

    pub fn method_not_allowed() -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".into(),
            details: Value::Null,
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!("the body of the request was in an unknown format: {content_type}"),
            details: Value::Null,
        }
    }

    fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", rt.qualified()),
            details: json!({"name": name, "group": rt.group, "kind": rt.plural}),
        }
    }

    fn stale(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.qualified()
            ),
            details: json!({"name": name, "group": rt.group, "kind": rt.plural}),
        }
    }

    fn invalid(rt: &ResourceType, name: &str, causes: Vec<(String, &'static str, String)>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(field, _, message)| format!("{field}: {message}"))
            .collect();
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, reason, message)| {
                json!({"reason": reason, "message": format!("{field}: {message}"), "field": field})
            })
            .collect();
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "{} \"{name}\" is invalid: {}",
                rt.qualified_kind(),
                summary.join(", ")
            ),
            details: json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}),
        }
    }

    /// The `Status` body the real server sends.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}

/// What a request addresses: a type, a namespace (for namespaced types), maybe a name.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Query parameters of writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
    /// `fieldValidation=Strict`: unknown fields are an error, not dropped.
    pub strict: bool,
}

/// Query parameters of lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// Items as `PartialObjectMetadata`.
    pub metadata_only: bool,
}

type Path = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
struct FieldOwner {
    manager: String,
    operation: &'static str,
    /// The subresource the fields were written through (`scale`), if any.
    subresource: Option<&'static str>,
    api_version: String,
    time: String,
    fields: BTreeSet<Path>,
}

#[derive(Debug, Clone)]
struct Stored {
    object: Value,
    owners: Vec<FieldOwner>,
}

/// (group, plural, namespace or "", name): versions of one type share objects.
type Key = (String, String, String, String);

/// How many changes the store remembers for watches; a watch from an older
/// resourceVersion is told it expired (410), as after an etcd compaction.
const HISTORY: usize = 10_000;

/// What a watch event says happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Modified,
    Deleted,
}

/// One change to one object, remembered for watches.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub revision: u64,
    group: String,
    plural: String,
    pub change: Change,
    /// The object after the change (its last state for a deletion).
    pub object: Value,
    /// The object before the change, to tell when it enters or leaves a selection.
    pub previous: Option<Value>,
}

/// Which objects of one type a list or watch asks for.
pub(crate) struct Selection {
    group: String,
    plural: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: Vec<(String, String, bool)>,
}

impl Selection {
    /// Whether `object` (of the selection's type) is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        let namespace = metadata["namespace"].as_str().unwrap_or_default();
        let name = metadata["name"].as_str().unwrap_or_default();
        self.namespace.as_ref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(object)
            && fields_match(&self.fields, namespace, name, object)
    }
}

/// Every object, the global revision counter, the recent changes and the write counts.
#[derive(Debug)]
pub(crate) struct Store {
    objects: BTreeMap<Key, Stored>,
    revision: u64,
    uids: u64,
    writes: BTreeMap<String, u64>,
    /// The latest changes, oldest first, for watches.
    events: VecDeque<Event>,
    /// Changes up to this revision are forgotten.
    compacted: u64,
    /// The revision, sent after each change to wake the watches.
    revisions: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            revision: 0,
            uids: 0,
            writes: BTreeMap::new(),
            events: VecDeque::new(),
            compacted: 0,
            revisions: tokio::sync::watch::Sender::new(0),
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn key_of(rt: &ResourceType, namespace: &str, name: &str) -> Key {
    (
        rt.group.clone(),
        rt.plural.clone(),
        namespace.to_string(),
        name.to_string(),
    )
}

/// `<namespace>:<Kind>/<name>`, `<cluster>` for cluster-scoped objects.
pub(crate) fn resource_id(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{}:{kind}/{name}", namespace.unwrap_or("<cluster>"))
}

impl Store {
    /// A store with the namespaces every cluster has.
    pub fn new() -> Self {
        let mut store = Store::default();
        let namespaces = builtin_types().into_iter().find(|t| t.kind == "Namespace");
        let namespaces = namespaces.expect("the built-in types include namespaces");
        for name in ["default", "kube-system", "kube-public"] {
            let target = Target {
                rt: namespaces.clone(),
                namespace: None,
                name: None,
            };
            let object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            store
                .create(&target, object, &WriteOptions::default())
                .expect("a fresh store accepts the standard namespaces");
        }
        store.writes.clear();
        store
    }

    /// Built-in types and those added by stored CRDs.
    pub fn types(&self) -> Vec<ResourceType> {
        let mut types = builtin_types();
        let group = "apiextensions.k8s.io".to_string();
        let plural = "customresourcedefinitions".to_string();
        let first = (group.clone(), plural.clone(), String::new(), String::new());
        // Keys sort by type first: the CRDs are one contiguous range.
        let crds = self
            .objects
            .range(first..)
            .take_while(|((g, p, _, _), _)| *g == group && *p == plural);
        for (_, stored) in crds {
            types.extend(types_of_crd(&stored.object));
        }
        types
    }

    /// Counts a write request to one object (dry runs are not writes).
    pub fn record_write(&mut self, target: &Target, name: &str) {
        let id = resource_id(&target.rt.kind, target.namespace.as_deref(), name);
        *self.writes.entry(id).or_default() += 1;
    }

    pub fn writes(&self, id: &str) -> u64 {
        self.writes.get(id).copied().unwrap_or_default()
    }

    pub fn total_writes(&self) -> u64 {
        self.writes.values().sum()
    }

    pub fn reset_writes(&mut self) {
        self.writes.clear();
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Wakes on every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revisions.subscribe()
    }

    /// Remembers a change made at the current revision and wakes the watches.
    fn record(&mut self, key: &Key, change: Change, object: Value, previous: Option<Value>) {
        self.events.push_back(Event {
            revision: self.revision,
            group: key.0.clone(),
            plural: key.1.clone(),
            change,
            object,
            previous,
        });
        while self.events.len() > HISTORY {
            if let Some(forgotten) = self.events.pop_front() {
                self.compacted = forgotten.revision;
            }
        }
        self.revisions.send_replace(self.revision);
    }

    /// Forgets every change so far, as a compaction does: watches from an
    /// earlier resourceVersion expire.
    pub fn compact(&mut self) {
        self.events.clear();
        self.compacted = self.revision;
    }

    /// The objects a list or watch of `target` with these selectors selects.
    pub fn selection(
        &self,
        target: &Target,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Selection, ApiError> {
        Ok(Selection {
            group: target.rt.group.clone(),
            plural: target.rt.plural.clone(),
            namespace: target.namespace.clone(),
            labels: LabelSelector::parse(label_selector.unwrap_or_default())
                .map_err(ApiError::bad_request)?,
            fields: parse_field_selector(&target.rt.kind, field_selector.unwrap_or_default())?,
        })
    }

    /// The changes to objects of the selection's type after `revision`, oldest
    /// first; `None` when some of them are forgotten.
    pub fn changes_since(&self, selection: &Selection, revision: u64) -> Option<Vec<Event>> {
        if revision < self.compacted {
            return None;
        }
        let start = self.events.partition_point(|e| e.revision <= revision);
        let changes = self
            .events
            .range(start..)
            .filter(|e| e.group == selection.group && e.plural == selection.plural);
        Some(changes.cloned().collect())
    }

    /// The current objects of the selection, rendered as a list renders them.
    pub fn selected(&self, target: &Target, selection: &Selection) -> Vec<Value> {
        let rt = &target.rt;
        let first = (
            rt.group.clone(),
            rt.plural.clone(),
            String::new(),
            String::new(),
        );
        self.objects
            .range(first..)
            .take_while(|((g, p, _, _), _)| *g == rt.group && *p == rt.plural)
            .map(|(_, stored)| Self::render(stored))
            .filter(|object| selection.matches(object))
            .collect()
    }

    fn namespace_key(target: &Target) -> String {
        target.namespace.clone().unwrap_or_default()
    }

    fn render(stored: &Stored) -> Value {
        let mut object = stored.object.clone();
        if let Some(managed) = Self::managed_fields(stored) {
            object["metadata"]["managedFields"] = managed;
        }
        object
    }

    /// Only the metadata, as `PartialObjectMetadata` (no copy of the rest).
    fn render_metadata(stored: &Stored) -> Value {
        let mut metadata = stored.object["metadata"].clone();
        if let Some(managed) = Self::managed_fields(stored) {
            metadata["managedFields"] = managed;
        }
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata})
    }

    fn managed_fields(stored: &Stored) -> Option<Value> {
        let managed: Vec<Value> = stored
            .owners
            .iter()
            .map(|o| {
                let mut entry = json!({
                    "manager": o.manager,
                    "operation": o.operation,
                    "apiVersion": o.api_version,
                    "time": o.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields_v1(&o.fields),
                });
                if let Some(subresource) = o.subresource {
                    entry["subresource"] = json!(subresource);
                }
                entry
            })
            .collect();
        (!managed.is_empty()).then_some(Value::Array(managed))
    }

    pub fn get(&self, target: &Target) -> Result<Value, ApiError> {
        let name = target.name.clone().unwrap_or_default();
        let key = key_of(&target.rt, &Self::namespace_key(target), &name);
        self.objects
            .get(&key)
            .map(Self::render)
            .ok_or_else(|| ApiError::not_found(&target.rt, &name))
    }

    pub fn list(&self, target: &Target, options: &ListOptions) -> Result<Value, ApiError> {
        let selector = LabelSelector::parse(options.label_selector.as_deref().unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        let fields = parse_field_selector(
            &target.rt.kind,
            options.field_selector.as_deref().unwrap_or_default(),
        )?;
        let after = match &options.continue_token {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let rt = &target.rt;
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0usize;
        let first = (
            rt.group.clone(),
            rt.plural.clone(),
            String::new(),
            String::new(),
        );
        let of_type = self
            .objects
            .range(first..)
            .take_while(|((g, p, _, _), _)| *g == rt.group && *p == rt.plural);
        for ((_, _, namespace, name), stored) in of_type {
            if target.namespace.as_ref().is_some_and(|ns| ns != namespace) {
                continue;
            }
            if after
                .as_ref()
                .is_some_and(|(ans, aname)| (namespace, name) <= (ans, aname))
            {
                continue;
            }
            if !selector.matches(&stored.object)
                || !fields_match(&fields, namespace, name, &stored.object)
            {
                continue;
            }
            if options.limit.is_some_and(|limit| items.len() >= limit) {
                remaining += 1;
                continue;
            }
            if options.metadata_only {
                items.push(Self::render_metadata(stored));
            } else {
                let mut item = Self::render(stored);
                item["apiVersion"] = json!(rt.api_version());
                items.push(item);
            }
            next = Some((namespace.clone(), name.clone()));
        }
        let mut metadata = json!({"resourceVersion": self.revision.to_string()});
        if remaining > 0
            && let Some((namespace, name)) = next
        {
            metadata["continue"] = json!(encode_continue(&namespace, &name));
            metadata["remainingItemCount"] = json!(remaining);
        }
        let (kind, api_version) = if options.metadata_only {
            (
                "PartialObjectMetadataList".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (format!("{}List", rt.kind), rt.api_version())
        };
        Ok(json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}))
    }

    pub fn create(
        &mut self,
        target: &Target,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let name = check_identity(target, &object)?;
        check_fields(target, &object, options.strict, false)?;
        let key = key_of(&target.rt, &Self::namespace_key(target), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&target.rt, &name));
        }
        self.check_namespace(target)?;
        strip_server_fields(&mut object, &target.rt);
        let manager = options
            .field_manager
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let owner = FieldOwner {
            manager,
            operation: "Update",
            subresource: None,
            api_version: target.rt.api_version(),
            time: now(),
            fields: leaves(&object),
        };
        let stored = Stored {
            object,
            owners: vec![owner],
        };
        Ok((
            201,
            self.commit(target, key, None, stored, options.dry_run)?,
        ))
    }

    pub fn update(
        &mut self,
        target: &Target,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let name = check_identity(target, &object)?;
        check_fields(target, &object, options.strict, false)?;
        let (key, live) = self.stored(target, &name)?;
        let sent_version = object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        if sent_version.is_some_and(|v| {
            Some(v.as_str()) != live.object["metadata"]["resourceVersion"].as_str()
        }) {
            return Err(ApiError::stale(&target.rt, &name));
        }
        strip_server_fields(&mut object, &target.rt);
        self.finish_update(target, key, live, object, options, None)
    }

    /// The stored object `name` of the target's type and namespace, with its key.
    fn stored(&self, target: &Target, name: &str) -> Result<(Key, Stored), ApiError> {
        let key = key_of(&target.rt, &Self::namespace_key(target), name);
        let live = self.objects.get(&key).cloned();
        let live = live.ok_or_else(|| ApiError::not_found(&target.rt, name))?;
        Ok((key, live))
    }

    pub fn merge_patch(
        &mut self,
        target: &Target,
        patch: Value,
        options: &WriteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let name = target.name.clone().unwrap_or_default();
        let (key, live) = self.stored(target, &name)?;
        let mut object = live.object.clone();
        merge_patch(&mut object, &patch);
        strip_server_fields(&mut object, &target.rt);
        check_identity(target, &object)?;
        check_fields(target, &object, options.strict, false)?;
        self.finish_update(target, key, live, object, options, None)
    }

    /// The `scale` subresource of a workload with replicas, as `autoscaling/v1`
    /// `Scale`.
    pub fn scale(&self, target: &Target) -> Result<Value, ApiError> {
        Ok(scale_of(&self.get(target)?))
    }

    /// Writes the `scale` subresource: `change` turns the current `Scale` into the
    /// wanted one (a merge patch, or the body of a PUT). As on the real server the
    /// manager of the request then owns `.spec.replicas`, recorded with
    /// `subresource: scale`, so a later apply of another value conflicts.
    pub fn update_scale(
        &mut self,
        target: &Target,
        change: impl FnOnce(&mut Value),
        options: &WriteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let name = target.name.clone().unwrap_or_default();
        let (key, live) = self.stored(target, &name)?;
        let mut scale = scale_of(&live.object);
        change(&mut scale);
        if let Some(sent) = scale["metadata"]["resourceVersion"].as_str()
            && Some(sent) != live.object["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::stale(&target.rt, &name));
        }
        let Some(replicas) = scale["spec"]["replicas"].as_i64().filter(|r| *r >= 0) else {
            return Err(ApiError::invalid(
                &target.rt,
                &name,
                vec![(
                    "spec.replicas".into(),
                    "FieldValueInvalid",
                    "must be greater than or equal to 0".into(),
                )],
            ));
        };
        let mut object = live.object.clone();
        object["spec"]["replicas"] = json!(replicas);
        let (code, written) =
            self.finish_update(target, key, live, object, options, Some("scale"))?;
        Ok((code, scale_of(&written)))
    }

    fn finish_update(
        &mut self,
        target: &Target,
        key: Key,
        live: Stored,
        object: Value,
        options: &WriteOptions,
        subresource: Option<&'static str>,
    ) -> Result<(u16, Value), ApiError> {
        let manager = options
            .field_manager
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let before = leaves(&live.object);
        let after = leaves(&object);
        let changed: BTreeSet<Path> = after
            .iter()
            .filter(|p| get_path(&object, p) != get_path(&live.object, p))
            .chain(before.iter().filter(|p| get_path(&object, p).is_none()))
            .cloned()
            .collect();
        let mut owners = live.owners.clone();
        let same = |o: &FieldOwner| {
            o.manager == manager && o.operation == "Update" && o.subresource == subresource
        };
        for owner in owners.iter_mut().filter(|o| !same(o)) {
            owner
                .fields
                .retain(|q| !changed.iter().any(|p| overlaps(p, q)));
        }
        let mine: BTreeSet<Path> = changed
            .into_iter()
            .filter(|p| get_path(&object, p).is_some())
            .collect();
        if !mine.is_empty() {
            match owners.iter_mut().find(|o| same(o)) {
                Some(owner) => {
                    owner.fields.extend(mine);
                    owner.time = now();
                }
                None => owners.push(FieldOwner {
                    manager,
                    operation: "Update",
                    subresource,
                    api_version: target.rt.api_version(),
                    time: now(),
                    fields: mine,
                }),
            }
        }
        owners.retain(|o| !o.fields.is_empty());
        let stored = Stored { object, owners };
        Ok((
            200,
            self.commit(target, key, Some(live), stored, options.dry_run)?,
        ))
    }

    /// Server-side apply: create, or merge the configuration into the live object with
    /// field ownership per manager.
    pub fn apply(
        &mut self,
        target: &Target,
        mut config: Value,
        options: &WriteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let manager = options
            .field_manager
            .clone()
            .ok_or_else(|| ApiError::bad_request("PATCH /apply requests require fieldManager"))?;
        let name = check_identity(target, &config)?;
        check_fields(target, &config, options.strict, true)?;
        strip_server_fields(&mut config, &target.rt);
        if let Some(metadata) = config["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
        }
        let key = key_of(&target.rt, &Self::namespace_key(target), &name);
        let applied = leaves(&config);
        let Some(live) = self.objects.get(&key).cloned() else {
            self.check_namespace(target)?;
            let owner = FieldOwner {
                manager,
                operation: "Apply",
                subresource: None,
                api_version: target.rt.api_version(),
                time: now(),
                fields: applied,
            };
            let stored = Stored {
                object: config,
                owners: vec![owner],
            };
            return Ok((
                201,
                self.commit(target, key, None, stored, options.dry_run)?,
            ));
        };
        let mut owners = live.owners.clone();
        let mut conflicts: Vec<(String, Path)> = Vec::new();
        // A manager is its name with the operation (and subresource): the
        // same name's `Update` (say through `scale`) conflicts with its `Apply`.
        let applier = |o: &FieldOwner| o.manager == manager && o.operation == "Apply";
        for owner in owners.iter_mut().filter(|o| !applier(o)) {
            let contested: Vec<Path> = owner
                .fields
                .iter()
                .filter(|q| {
                    applied.iter().any(|p| {
                        overlaps(p, q) && get_path(&live.object, p) != get_path(&config, p)
                    })
                })
                .cloned()
                .collect();
            if contested.is_empty() {
                continue;
            }
            if options.force {
                owner.fields.retain(|q| !contested.contains(q));
            } else {
                let who = owner.described();
                conflicts.extend(contested.into_iter().map(|p| (who.clone(), p)));
            }
        }
        if !conflicts.is_empty() {
            return Err(apply_conflict(&target.rt, &name, &conflicts));
        }
        let mut object = live.object.clone();
        let previously: BTreeSet<Path> = owners
            .iter()
            .find(|o| o.manager == manager && o.operation == "Apply")
            .map(|o| o.fields.clone())
            .unwrap_or_default();
        for dropped in previously.difference(&applied) {
            let shared = owners
                .iter()
                .filter(|o| !(o.manager == manager && o.operation == "Apply"))
                .any(|o| o.fields.iter().any(|q| overlaps(dropped, q)));
            if !shared {
                remove_path(&mut object, dropped);
            }
        }
        deep_merge(&mut object, &config);
        match owners
            .iter_mut()
            .find(|o| o.manager == manager && o.operation == "Apply")
        {
            Some(owner) if owner.fields != applied => {
                owner.fields = applied;
                owner.time = now();
            }
            Some(_) => {}
            None => owners.push(FieldOwner {
                manager: manager.clone(),
                operation: "Apply",
                subresource: None,
                api_version: target.rt.api_version(),
                time: now(),
                fields: applied,
            }),
        }
        owners.retain(|o| !o.fields.is_empty() || (o.manager == manager && o.operation == "Apply"));
        let stored = Stored { object, owners };
        Ok((
            200,
            self.commit(target, key, Some(live), stored, options.dry_run)?,
        ))
    }

    pub fn delete(
        &mut self,
        target: &Target,
        options: &WriteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let name = target.name.clone().unwrap_or_default();
        let key = key_of(&target.rt, &Self::namespace_key(target), &name);
        let live = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&target.rt, &name))?;
        let uid = live.object["metadata"]["uid"].clone();
        if !options.dry_run
            && let Some(removed) = self.objects.remove(&key)
        {
            self.revision += 1;
            self.record_deletion(&key, &removed);
            self.cascade(&target.rt.kind, &name);
        }
        Ok((
            200,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": target.rt.group, "kind": target.rt.plural, "uid": uid},
            }),
        ))
    }

    /// Remembers the deletion of `removed`, made at the current revision.
    fn record_deletion(&mut self, key: &Key, removed: &Stored) {
        let mut last = Self::render(removed);
        last["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.record(key, Change::Deleted, last, None);
    }

    /// Deleting a namespace deletes what it holds; deleting a CRD deletes its objects.
    fn cascade(&mut self, kind: &str, name: &str) {
        let doomed: Vec<Key> = match kind {
            "Namespace" => self
                .objects
                .keys()
                .filter(|(_, _, namespace, _)| namespace == name)
                .cloned()
                .collect(),
            "CustomResourceDefinition" => {
                let (plural, group) = name.split_once('.').unwrap_or((name, ""));
                self.objects
                    .keys()
                    .filter(|(g, p, _, _)| g == group && p == plural)
                    .cloned()
                    .collect()
            }
            _ => Vec::new(),
        };
        for key in doomed {
            if let Some(removed) = self.objects.remove(&key) {
                self.revision += 1;
                self.record_deletion(&key, &removed);
            }
        }
    }

    /// Sets `.status` as a controller would (not counted as a write).
    pub fn set_status(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> bool {
        let key = key_of(rt, namespace.unwrap_or_default(), name);
        self.revision += 1;
        let revision = self.revision.to_string();
        let Some(stored) = self.objects.get_mut(&key) else {
            return false;
        };
        let previous = Self::render(stored);
        stored.object["status"] = status;
        stored.object["metadata"]["resourceVersion"] = json!(revision);
        let object = Self::render(stored);
        self.record(&key, Change::Modified, object, Some(previous));
        true
    }

    /// Every stored object of one type, in every namespace.
    pub fn all(&self, rt: &ResourceType) -> Vec<Value> {
        let first = (
            rt.group.clone(),
            rt.plural.clone(),
            String::new(),
            String::new(),
        );
        self.objects
            .range(first..)
            .take_while(|((g, p, _, _), _)| *g == rt.group && *p == rt.plural)
            .map(|(_, stored)| stored.object.clone())
            .collect()
    }

    /// The stored object as a client reads it.
    pub fn object(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.objects
            .get(&key_of(rt, namespace.unwrap_or_default(), name))
            .map(Self::render)
    }

    fn check_namespace(&self, target: &Target) -> Result<(), ApiError> {
        let Some(namespace) = &target.namespace else {
            return Ok(());
        };
        let key = (
            String::new(),
            "namespaces".to_string(),
            String::new(),
            namespace.clone(),
        );
        if self.objects.contains_key(&key) {
            return Ok(());
        }
        Err(ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("namespaces \"{namespace}\" not found"),
            details: json!({"name": namespace, "kind": "namespaces"}),
        })
    }

    /// Validates, stamps server metadata, and stores (unless dry run). An unchanged
    /// object keeps its resourceVersion, as on the real server.
    fn commit(
        &mut self,
        target: &Target,
        key: Key,
        live: Option<Stored>,
        mut stored: Stored,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        validate(&target.rt, &stored.object)?;
        if let Some(namespace) = &target.namespace {
            stored.object["metadata"]["namespace"] = json!(namespace);
        }
        stored.object["apiVersion"] = json!(target.rt.api_version());
        match &live {
            Some(live) => {
                let meta = &live.object["metadata"];
                for field in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
                    stored.object["metadata"][field] = meta[field].clone();
                }
                if target.rt.has_status && !live.object["status"].is_null() {
                    stored.object["status"] = live.object["status"].clone();
                }
                if stored.object == live.object && stored.owners == live.owners {
                    return Ok(Self::render(live));
                }
                if without_metadata(&stored.object) != without_metadata(&live.object) {
                    let generation = meta["generation"].as_u64().unwrap_or(1) + 1;
                    stored.object["metadata"]["generation"] = json!(generation);
                }
            }
            None => {
                self.uids += 1;
                let uid = format!("00000000-0000-4000-8000-{:012x}", self.uids);
                stored.object["metadata"]["uid"] = json!(uid);
                stored.object["metadata"]["creationTimestamp"] = json!(now());
                stored.object["metadata"]["generation"] = json!(1);
                if target.rt.kind == "CustomResourceDefinition" {
                    stored.object["status"] = json!({"conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                    ]});
                }
            }
        }
        if dry_run {
            stored.object["metadata"]["resourceVersion"] = live.map_or(json!(""), |l| {
                l.object["metadata"]["resourceVersion"].clone()
            });
            return Ok(Self::render(&stored));
        }
        self.revision += 1;
        stored.object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        let rendered = Self::render(&stored);
        let (change, previous) = match &live {
            Some(live) => (Change::Modified, Some(Self::render(live))),
            None => (Change::Added, None),
        };
        self.record(&key, change, rendered.clone(), previous);
        self.objects.insert(key, stored);
        Ok(rendered)
    }
}

fn without_metadata(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

fn strip_server_fields(object: &mut Value, rt: &ResourceType) {
    if rt.has_status
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for field in [
            "managedFields",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            metadata.remove(field);
        }
    }
}

/// The name of the object, after checking that it is the object the URL addresses.
fn check_identity(target: &Target, object: &Value) -> Result<String, ApiError> {
    let rt = &target.rt;
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    if api_version != rt.api_version() || kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) and kind ({kind}) do not match \
             the expected {} {}",
            rt.api_version(),
            rt.kind
        )));
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(url_name) = &target.name
        && !name.is_empty()
        && name != *url_name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    let body_namespace = object["metadata"]["namespace"].as_str();
    if let (Some(body), Some(url)) = (body_namespace, &target.namespace)
        && body != url
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if name.is_empty() {
        return Err(ApiError::invalid(
            rt,
            "",
            vec![(
                "metadata.name".into(),
                "FieldValueRequired",
                "Required value: name is required".into(),
            )],
        ));
    }
    Ok(name)
}

/// Fields the double knows for built-in kinds: top level, metadata, and a
/// Deployment's spec and pod template. Custom resources may hold anything.
fn known_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "ConfigMap" => &["data", "binaryData", "immutable"],
        "Secret" => &["data", "stringData", "type", "immutable"],
        "ServiceAccount" => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "Role" => &["rules"],
        "ClusterRole" => &["rules", "aggregationRule"],
        "RoleBinding" | "ClusterRoleBinding" => &["subjects", "roleRef"],
        "Lease" => &["spec"],
        "Namespace"
        | "Service"
        | "Pod"
        | "PersistentVolumeClaim"
        | "PersistentVolume"
        | "ResourceQuota"
        | "LimitRange"
        | "Deployment"
        | "DaemonSet"
        | "StatefulSet"
        | "ReplicaSet"
        | "Job"
        | "CronJob"
        | "Ingress"
        | "CustomResourceDefinition" => &["spec", "status"],
        _ => return None,
    })
}

const METADATA_FIELDS: [&str; 14] = [
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];

const DEPLOYMENT_SPEC_FIELDS: [&str; 8] = [
    "replicas",
    "selector",
    "template",
    "strategy",
    "minReadySeconds",
    "revisionHistoryLimit",
    "paused",
    "progressDeadlineSeconds",
];

const POD_TEMPLATE_FIELDS: [&str; 2] = ["metadata", "spec"];

const POD_SPEC_FIELDS: [&str; 40] = [
    "activeDeadlineSeconds",
    "affinity",
    "automountServiceAccountToken",
    "containers",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "ephemeralContainers",
    "hostAliases",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "hostUsers",
    "hostname",
    "imagePullSecrets",
    "initContainers",
    "nodeName",
    "nodeSelector",
    "os",
    "overhead",
    "preemptionPolicy",
    "priority",
    "priorityClassName",
    "readinessGates",
    "resourceClaims",
    "resources",
    "restartPolicy",
    "runtimeClassName",
    "schedulerName",
    "schedulingGates",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "terminationGracePeriodSeconds",
    "tolerations",
    "topologySpreadConstraints",
    "volumes",
];

const POD_SECURITY_CONTEXT_FIELDS: [&str; 13] = [
    "appArmorProfile",
    "fsGroup",
    "fsGroupChangePolicy",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seLinuxChangePolicy",
    "seLinuxOptions",
    "seccompProfile",
    "supplementalGroups",
    "supplementalGroupsPolicy",
    "sysctls",
    "windowsOptions",
];

const CONTAINER_FIELDS: [&str; 24] = [
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "lifecycle",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "securityContext",
    "startupProbe",
    "stdin",
    "stdinOnce",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "tty",
    "volumeDevices",
    "volumeMounts",
    "workingDir",
];

const SECURITY_CONTEXT_FIELDS: [&str; 12] = [
    "allowPrivilegeEscalation",
    "appArmorProfile",
    "capabilities",
    "privileged",
    "procMount",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seLinuxOptions",
    "seccompProfile",
    "windowsOptions",
];

const PROBE_FIELDS: [&str; 10] = [
    "exec",
    "failureThreshold",
    "grpc",
    "httpGet",
    "initialDelaySeconds",
    "periodSeconds",
    "successThreshold",
    "tcpSocket",
    "terminationGracePeriodSeconds",
    "timeoutSeconds",
];

const VOLUME_MOUNT_FIELDS: [&str; 7] = [
    "mountPath",
    "mountPropagation",
    "name",
    "readOnly",
    "recursiveReadOnly",
    "subPath",
    "subPathExpr",
];

/// The unknown fields of a Deployment's pod template, down to its
/// containers' security contexts, probes and mounts, each as a path: with
/// list items by index (`[0]`), or keyed by name as apply's schema names
/// them (`[name="app"]`).
fn unknown_pod_template_fields(template: &Value, keyed: bool) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut check = |value: &Value, path: &str, known: &[&str]| {
        for key in value.as_object().into_iter().flat_map(|m| m.keys()) {
            if !known.contains(&key.as_str()) {
                unknown.push(format!("{path}.{key}"));
            }
        }
    };
    let base = "spec.template";
    check(template, base, &POD_TEMPLATE_FIELDS);
    let pod = &template["spec"];
    check(pod, &format!("{base}.spec"), &POD_SPEC_FIELDS);
    check(
        &pod["securityContext"],
        &format!("{base}.spec.securityContext"),
        &POD_SECURITY_CONTEXT_FIELDS,
    );
    for list in ["initContainers", "containers"] {
        let containers = pod[list].as_array().map(Vec::as_slice).unwrap_or_default();
        for (index, container) in containers.iter().enumerate() {
            let item = if keyed {
                format!("[name={}]", container["name"])
            } else {
                format!("[{index}]")
            };
            let path = format!("{base}.spec.{list}{item}");
            check(container, &path, &CONTAINER_FIELDS);
            check(
                &container["securityContext"],
                &format!("{path}.securityContext"),
                &SECURITY_CONTEXT_FIELDS,
            );
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                check(&container[probe], &format!("{path}.{probe}"), &PROBE_FIELDS);
            }
            let mounts = container["volumeMounts"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (index, mount) in mounts.iter().enumerate() {
                let item = if keyed {
                    format!("[mountPath={}]", mount["mountPath"])
                } else {
                    format!("[{index}]")
                };
                check(
                    mount,
                    &format!("{path}.volumeMounts{item}"),
                    &VOLUME_MOUNT_FIELDS,
                );
            }
        }
    }
    unknown
}

/// Under `fieldValidation=Strict`, refuses fields the kind does not have, with the
/// real server's wording (apply and the other verbs word it differently).
fn check_fields(
    target: &Target,
    object: &Value,
    strict: bool,
    apply: bool,
) -> Result<(), ApiError> {
    let Some(allowed) = known_fields(&target.rt.kind).filter(|_| strict) else {
        return Ok(());
    };
    let mut unknown: Vec<String> = Vec::new();
    let keys = |value: &Value| {
        value
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    for key in keys(object) {
        if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
            && !allowed.contains(&key.as_str())
        {
            unknown.push(key);
        }
    }
    for key in keys(&object["metadata"]) {
        if !METADATA_FIELDS.contains(&key.as_str()) {
            unknown.push(format!("metadata.{key}"));
        }
    }
    if target.rt.kind == "Deployment" {
        for key in keys(&object["spec"]) {
            if !DEPLOYMENT_SPEC_FIELDS.contains(&key.as_str()) {
                unknown.push(format!("spec.{key}"));
            }
        }
        unknown.extend(unknown_pod_template_fields(
            &object["spec"]["template"],
            apply,
        ));
    }
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let message = if apply {
        format!(
            "failed to create typed patch object ({}/{name}; {}, Kind={}): .{first}: field not declared in schema",
            target.namespace.as_deref().unwrap_or_default(),
            target.rt.api_version(),
            target.rt.kind
        )
    } else {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            target.rt.kind,
            target.rt.version,
            target.rt.kind,
            fields.join(", ")
        )
    };
    Err(ApiError::bad_request(message))
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

fn is_label_value(text: &str) -> bool {
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && text
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

/// The checks the real server makes that matter to a client: names, labels, and the
/// workload shape (selector, template labels, containers).
fn validate(rt: &ResourceType, object: &Value) -> Result<(), ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let mut causes: Vec<(String, &'static str, String)> = Vec::new();
    let name_ok = match rt.kind.as_str() {
        "Namespace" | "Service" => is_dns_label(name),
        _ => is_dns_subdomain(name),
    };
    if !name_ok {
        causes.push((
            "metadata.name".into(),
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'"),
        ));
    }
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        for (key, value) in labels {
            let text = value.as_str();
            if text.is_none_or(|t| !is_label_value(t)) {
                causes.push((
                    format!("metadata.labels.{key}"),
                    "FieldValueInvalid",
                    format!("Invalid value: {value}: a valid label must be 63 characters or less, alphanumeric, '-', '_' or '.'"),
                ));
            }
        }
    }
    if matches!(
        rt.kind.as_str(),
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet"
    ) {
        validate_workload(object, &mut causes);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name, causes))
    }
}

fn validate_workload(object: &Value, causes: &mut Vec<(String, &'static str, String)>) {
    let spec = &object["spec"];
    let selector = &spec["selector"]["matchLabels"];
    if spec["selector"].is_null() {
        causes.push((
            "spec.selector".into(),
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    let template_labels = &spec["template"]["metadata"]["labels"];
    if let Some(wanted) = selector.as_object() {
        let matched = wanted
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v));
        if !matched {
            causes.push((
                "spec.template.metadata.labels".into(),
                "FieldValueInvalid",
                "Invalid value: `selector` does not match template `labels`".into(),
            ));
        }
    }
    let containers = spec["template"]["spec"]["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push((
            "spec.template.spec.containers".into(),
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    for (i, container) in containers.into_iter().flatten().enumerate() {
        if container["image"].as_str().is_none_or(str::is_empty) {
            causes.push((
                format!("spec.template.spec.containers[{i}].image"),
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
    }
}

fn apply_conflict(rt: &ResourceType, name: &str, conflicts: &[(String, Path)]) -> ApiError {
    let field = |path: &Path| format!(".{}", path.join("."));
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(who, path)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {who}"),
                "field": field(path),
            })
        })
        .collect();
    // The real server's wording: one conflict on one line, several grouped by manager.
    let described = match conflicts {
        [(who, path)] => format!("conflict with {who}: {}", field(path)),
        _ => {
            let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (who, path) in conflicts {
                by_manager.entry(who).or_default().push(field(path));
            }
            let mut lines = Vec::new();
            for (who, paths) in by_manager {
                lines.push(format!("conflicts with {who}:"));
                lines.extend(paths.into_iter().map(|p| format!("- {p}")));
            }
            lines.join("\n")
        }
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Apply failed with {} conflict{}: {described}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
        ),
        details: json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
    }
}

impl FieldOwner {
    /// How the real server names a manager in conflicts:
    /// `"kubectl" with subresource "scale" using apps/v1`.
    fn described(&self) -> String {
        match self.subresource {
            Some(sub) => format!(
                "{:?} with subresource {sub:?} using {}",
                self.manager, self.api_version
            ),
            None => format!("{:?} using {}", self.manager, self.api_version),
        }
    }
}

/// The `autoscaling/v1` `Scale` of a workload object.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let labels = &object["spec"]["selector"]["matchLabels"];
    let selector: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector.join(","),
        },
    })
}

/// Field paths a client sets: maps are walked, lists and scalars are leaves (atomic),
/// identity and server-owned fields are not owned by anyone.
fn leaves(object: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let Some(metadata) = value.as_object() else {
                    continue;
                };
                for (field, inner) in metadata {
                    if matches!(
                        field.as_str(),
                        "name"
                            | "namespace"
                            | "uid"
                            | "resourceVersion"
                            | "generation"
                            | "creationTimestamp"
                            | "managedFields"
                            | "selfLink"
                    ) {
                        continue;
                    }
                    walk(inner, vec!["metadata".into(), field.clone()], &mut out);
                }
            }
            _ => walk(value, vec![key.clone()], &mut out),
        }
    }
    out
}

fn walk(value: &Value, path: Path, out: &mut BTreeSet<Path>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, inner) in map {
                let mut deeper = path.clone();
                deeper.push(key.clone());
                walk(inner, deeper, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn get_path<'v>(value: &'v Value, path: &Path) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(key))
}

fn remove_path(value: &mut Value, path: &Path) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let holder = parents
        .iter()
        .try_fold(&mut *value, |v, k| v.as_object_mut()?.get_mut(k));
    let Some(map) = holder.and_then(Value::as_object_mut) else {
        return;
    };
    map.remove(last);
    prune_empty(value, parents);
}

/// Drops maps left empty by a removal, innermost first.
fn prune_empty(value: &mut Value, parents: &[String]) {
    for depth in (1..=parents.len()).rev() {
        let (last, above) = parents[..depth]
            .split_last()
            .expect("depth is at least one");
        let holder = above
            .iter()
            .try_fold(&mut *value, |v, k| v.as_object_mut()?.get_mut(k));
        let Some(holder) = holder.and_then(Value::as_object_mut) else {
            return;
        };
        if holder
            .get(last)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            holder.remove(last);
        } else {
            return;
        }
    }
}

fn deep_merge(target: &mut Value, config: &Value) {
    match (target.as_object_mut(), config.as_object()) {
        (Some(live), Some(applied)) => {
            for (key, value) in applied {
                match live.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        live.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => *target = config.clone(),
    }
}

/// RFC 7386 JSON merge patch (strategic merge patches are read the same way here).
/// RFC 7386 merge patch of `target` by `patch`.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_map {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for key in path {
            let entry = node.entry(format!("f:{key}")).or_insert_with(|| json!({}));
            node = entry.as_object_mut().expect("field sets are built of maps");
        }
    }
    Value::Object(root)
}

/// Fields an Event list may be selected by besides `metadata.name` and
/// `metadata.namespace`, as the real server's field label conversion allows.
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn parse_field_selector(kind: &str, text: &str) -> Result<Vec<(String, String, bool)>, ApiError> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            (f, v, true)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid field selector: {part}"
            )));
        };
        let field_allowed = matches!(field.trim(), "metadata.name" | "metadata.namespace")
            || (kind == "Event" && EVENT_FIELDS.contains(&field.trim()));
        if !field_allowed {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {}",
                field.trim()
            )));
        }
        out.push((field.trim().to_string(), value.trim().to_string(), equal));
    }
    Ok(out)
}

fn fields_match(
    fields: &[(String, String, bool)],
    namespace: &str,
    name: &str,
    object: &Value,
) -> bool {
    fields.iter().all(|(field, value, equal)| {
        let actual = match field.as_str() {
            "metadata.name" => name,
            "metadata.namespace" => namespace,
            // An Event's `source` field label is its source's component.
            "source" => object["source"]["component"].as_str().unwrap_or_default(),
            path => path
                .split('.')
                .fold(object, |value, key| &value[key])
                .as_str()
                .unwrap_or_default(),
        };
        (actual == value) == *equal
    })
}

fn encode_continue(namespace: &str, name: &str) -> String {
    hex::encode(format!("{namespace}/{name}"))
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError {
        code: 410,
        reason: "Expired",
        message: "the provided continue parameter is not valid".into(),
        details: Value::Null,
    };
    let bytes = hex::decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (namespace, name) = text.split_once('/').ok_or_else(invalid)?;
    Ok((namespace.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> ResourceType {
        builtin_types()
            .into_iter()
            .find(|t| t.kind == "Deployment")
            .unwrap()
    }

    fn target(name: Option<&str>) -> Target {
        Target {
            rt: deployments(),
            namespace: Some("default".into()),
            name: name.map(Into::into),
        }
    }

    fn deployment(replicas: u64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}},
            },
        })
    }

    fn apply(
        store: &mut Store,
        manager: &str,
        object: Value,
        force: bool,
    ) -> Result<(u16, Value), ApiError> {
        let options = WriteOptions {
            field_manager: Some(manager.into()),
            force,
            dry_run: false,
            strict: true,
        };
        store.apply(&target(Some("web")), object, &options)
    }

    #[test]
    fn apply_creates_then_an_identical_apply_keeps_the_resource_version() {
        let mut store = Store::new();
        let (code, created) = apply(&mut store, "fluxd", deployment(1, "nginx:1"), false).unwrap();
        assert_eq!(code, 201);
        let (code, again) = apply(&mut store, "fluxd", deployment(1, "nginx:1"), false).unwrap();
        assert_eq!(code, 200);
        assert_eq!(
            created["metadata"]["resourceVersion"],
            again["metadata"]["resourceVersion"]
        );
        assert_eq!(again["metadata"]["generation"], 1);
    }

    #[test]
    fn spec_change_bumps_generation_and_label_change_does_not() {
        let mut store = Store::new();
        apply(&mut store, "fluxd", deployment(1, "nginx:1"), false).unwrap();
        let (_, changed) = apply(&mut store, "fluxd", deployment(1, "nginx:2"), false).unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
        let mut relabelled = deployment(1, "nginx:2");
        relabelled["metadata"]["labels"]["tier"] = json!("front");
        let (_, relabelled) = apply(&mut store, "fluxd", relabelled, false).unwrap();
        assert_eq!(relabelled["metadata"]["generation"], 2);
    }

    #[test]
    fn another_manager_changing_an_owned_field_conflicts_unless_forced() {
        let mut store = Store::new();
        apply(&mut store, "fluxd", deployment(1, "nginx:1"), false).unwrap();
        let error = apply(&mut store, "kubectl", deployment(3, "nginx:1"), false).unwrap_err();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        assert!(
            error.message.contains(".spec.replicas"),
            "{}",
            error.message
        );
        let (_, forced) = apply(&mut store, "kubectl", deployment(3, "nginx:1"), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let fluxd = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["manager"] == "fluxd")
            .unwrap();
        assert!(fluxd["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    }

    #[test]
    fn same_value_from_another_manager_is_shared_not_a_conflict() {
        let mut store = Store::new();
        apply(&mut store, "fluxd", deployment(1, "nginx:1"), false).unwrap();
        assert!(apply(&mut store, "kubectl", deployment(1, "nginx:1"), false).is_ok());
    }

    #[test]
    fn field_dropped_from_the_configuration_is_removed() {
        let mut store = Store::new();
        let mut labelled = deployment(1, "nginx:1");
        labelled["metadata"]["labels"]["tier"] = json!("front");
        apply(&mut store, "fluxd", labelled, false).unwrap();
        let (_, applied) = apply(&mut store, "fluxd", deployment(1, "nginx:1"), false).unwrap();
        assert!(applied["metadata"]["labels"].get("tier").is_none());
    }

    #[test]
    fn invalid_workload_is_refused_with_causes() {
        let mut store = Store::new();
        let mut broken = deployment(1, "nginx:1");
        broken["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
        let error = apply(&mut store, "fluxd", broken, false).unwrap_err();
        assert_eq!((error.code, error.reason), (422, "Invalid"));
        assert_eq!(
            error.to_status()["details"]["causes"][0]["field"],
            "spec.template.metadata.labels"
        );
    }

    #[test]
    fn strict_validation_refuses_unknown_fields() {
        let mut store = Store::new();
        let mut typo = deployment(1, "nginx:1");
        typo["spec"]["replicsa"] = json!(2);
        let error = apply(&mut store, "fluxd", typo.clone(), false).unwrap_err();
        assert_eq!((error.code, error.reason), (400, "BadRequest"));
        assert!(
            error
                .message
                .contains(".spec.replicsa: field not declared in schema"),
            "{}",
            error.message
        );
        let lenient = WriteOptions {
            field_manager: Some("x".into()),
            ..WriteOptions::default()
        };
        assert!(store.apply(&target(Some("web")), typo, &lenient).is_ok());
    }

    #[test]
    fn dry_run_stores_nothing() {
        let mut store = Store::new();
        let options = WriteOptions {
            field_manager: Some("fluxd".into()),
            force: false,
            dry_run: true,
            strict: true,
        };
        store
            .apply(&target(Some("web")), deployment(1, "nginx:1"), &options)
            .unwrap();
        assert!(store.get(&target(Some("web"))).is_err());
    }

    #[test]
    fn list_pages_with_limit_and_continue() {
        let mut store = Store::new();
        for name in ["a", "b", "c"] {
            let mut object = deployment(1, "nginx:1");
            object["metadata"]["name"] = json!(name);
            store
                .create(&target(None), object, &WriteOptions::default())
                .unwrap();
        }
        let page = ListOptions {
            limit: Some(2),
            ..Default::default()
        };
        let first = store.list(&target(None), &page).unwrap();
        assert_eq!(first["items"].as_array().unwrap().len(), 2);
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        let rest = ListOptions {
            continue_token: Some(token),
            ..page
        };
        let second = store.list(&target(None), &rest).unwrap();
        assert_eq!(second["items"][0]["metadata"]["name"], "c");
        assert!(second["metadata"].get("continue").is_none());
        let metadata = ListOptions {
            metadata_only: true,
            ..ListOptions::default()
        };
        let partial = store.list(&target(None), &metadata).unwrap();
        assert_eq!(partial["kind"], "PartialObjectMetadataList");
        assert_eq!(partial["items"][0]["kind"], "PartialObjectMetadata");
        assert!(partial["items"][0].get("spec").is_none());
        assert_eq!(partial["items"][0]["metadata"]["name"], "a");
    }

    #[test]
    fn update_with_a_stale_resource_version_conflicts() {
        let mut store = Store::new();
        let (_, created) = store
            .create(
                &target(None),
                deployment(1, "nginx:1"),
                &WriteOptions::default(),
            )
            .unwrap();
        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let error = store
            .update(&target(Some("web")), stale, &WriteOptions::default())
            .unwrap_err();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        let error = store
            .create(
                &target(None),
                deployment(1, "nginx:1"),
                &WriteOptions::default(),
            )
            .unwrap_err();
        assert_eq!(error.reason, "AlreadyExists");
    }
}
