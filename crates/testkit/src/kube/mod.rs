//! An in-memory Kubernetes API server double over HTTP on a loopback port.
//!
//! It speaks the wire protocol clients use: discovery (`/version`, `/api`, `/apis`,
//! group-version resource lists; a created CRD adds its resource), GET, LIST (label and
//! field selectors, `limit`/`continue`), POST, PUT, DELETE, server-side apply
//! (`application/apply-patch+yaml`, field managers, conflicts, `force`), merge patches,
//! `dryRun=All`, resourceVersion and generation, watches (`?watch=true`: event
//! streams, bookmarks, `410 Expired`, `sendInitialEvents`), server-side tables of the
//! workloads (`kubectl get deploy` columns), `pods/{name}/portforward` over a WebSocket
//! (bridged to local addresses a test registers), and `Status` errors with the real codes
//! and reasons. core/v1 and events.k8s.io/v1 `events` share one store, converted as the
//! real server does. `kubectl` is its judge: the tests run it against the double.
//!
//! Test hooks set a workload's status as a controller would, count write requests per
//! object (`<namespace>:<Kind>/<name>`), count every request by verb and path
//! ([`ApiServer::request_counts`]) and list every request in RBAC's terms
//! ([`ApiServer::requests`]), and forbid a verb on a resource with RBAC's 403
//! ([`ApiServer::forbid`]); a [`Controller`] beside it rolls workloads out.
//!
//! ```
//! let server = flux_testkit::kube::ApiServer::start();
//! let out = server
//!     .kubectl()
//!     .args(["get", "namespaces", "-o", "name"])
//!     .output()
//!     .expect("kubectl runs");
//! assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));
//! ```

mod controller;
mod events;
mod port_forward;
mod selector;
mod serving;
mod store;
mod table;
mod types;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use controller::{Controller, STEP};
pub use serving::Serving;
use store::{ApiError, ListOptions, Store, Target, WriteOptions};
use types::ResourceType;
pub use watch::BOOKMARK_INTERVAL;

/// Rollout states a test can put a workload in, as its controller would report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadState {
    /// Every replica updated and ready.
    Ready,
    /// A rollout under way: no replica of the new spec ready yet.
    Progressing,
    /// The rollout gave up (`ProgressDeadlineExceeded`, or a failed Job).
    Failed,
}

struct Shared {
    store: Mutex<Store>,
    address: SocketAddr,
    /// Group versions listed in `/apis` whose discovery answers 503, as an aggregated
    /// API whose backend is down does.
    unavailable: Mutex<Vec<(String, String)>>,
    /// Woken after every request that may have written, for the [`Controller`].
    changed: tokio::sync::Notify,
    /// Every request to a resource, in RBAC's terms, in arrival order.
    requests: Mutex<Vec<AuthorizedRequest>>,
    /// How clients reach it.
    serving: Serving,
    /// The pod ports tests made reachable through `pods/portforward`.
    forwards: Mutex<port_forward::Forwards>,
    /// How many requests each `(verb, path)` got, discovery included.
    counts: Mutex<BTreeMap<(String, String), u64>>,
    /// `(verb, group, resource)` that RBAC forbids ([`ApiServer::forbid`]).
    forbidden: Mutex<Vec<(String, String, String)>>,
    /// Each watch opened: its resource and the `timeoutSeconds` it asked for.
    watch_timeouts: Mutex<Vec<(String, Option<u64>)>>,
}

/// A request to a resource as the real API server's authorizer sees it: the
/// verb, group, resource (`deployments/scale` for a subresource), namespace
/// and name an RBAC rule is matched against. Discovery and OpenAPI reads are
/// not resource requests and are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// The API group, empty for the core group.
    pub group: String,
    /// The resource's plural, with `/<subresource>` when one was asked for.
    pub resource: String,
    /// The namespace of the request, none for cluster-wide ones.
    pub namespace: Option<String>,
    /// The object's name, none for collections.
    pub name: Option<String>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn counts(&self) -> MutexGuard<'_, BTreeMap<(String, String), u64>> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, verb: &str, path: &str) {
        *self
            .counts()
            .entry((verb.to_string(), path.to_string()))
            .or_default() += 1;
    }

    fn forbids(&self, request: &AuthorizedRequest) -> bool {
        self.forbidden
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|(verb, group, resource)| {
                *verb == request.verb && *group == request.group && *resource == request.resource
            })
    }

    fn unavailable(&self) -> Vec<(String, String)> {
        self.unavailable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The user a forbidden request is told it is.
const FORBIDDEN_USER: &str = "system:serviceaccount:flux:flux";

/// A running double: its URL, a kubeconfig pointing at it, and the test hooks.
/// Stops when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    dir: tempfile::TempDir,
}

impl ApiServer {
    /// Starts a double with the standard namespaces on a free loopback port and writes
    /// its kubeconfig (plain http, no credentials).
    pub fn start() -> ApiServer {
        Self::start_serving(Serving::default())
    }

    /// Starts a double reached as `serving` says; its kubeconfig carries the CA and
    /// the token.
    pub fn start_serving(serving: Serving) -> ApiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kube-double")
            .enable_all()
            .build()
            .expect("a runtime for the API server double");
        // Bound outside the runtime so that tests already inside one can start a double.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            unavailable: Mutex::new(Vec::new()),
            forbidden: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
            requests: Mutex::new(Vec::new()),
            forwards: Mutex::new(port_forward::Forwards::new()),
            counts: Mutex::new(BTreeMap::new()),
            watch_timeouts: Mutex::new(Vec::new()),
            address,
            serving: serving.clone(),
        });
        let router = Router::new()
            .route(
                "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
                axum::routing::any(port_forward::handle),
            )
            .fallback(handle)
            .with_state(shared.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            serving::serve(listener, router, serving.tls).await;
        });
        let dir = tempfile::tempdir().expect("a temp dir for the kubeconfig");
        let server = ApiServer {
            shared,
            runtime: Some(runtime),
            dir,
        };
        std::fs::write(server.kubeconfig(), server.kubeconfig_text())
            .expect("the kubeconfig is writable");
        server
    }

    /// `http://127.0.0.1:<port>` (`https` when served over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.shared.serving.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.shared.address)
    }

    /// The loopback address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// The kubeconfig file for this double (context `double`, namespace `default`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubeconfig_text(&self) -> String {
        use base64::Engine as _;
        let serving = &self.shared.serving;
        let ca = serving.tls.as_ref().map_or(String::new(), |tls| {
            let pem = base64::engine::general_purpose::STANDARD.encode(&tls.ca_pem);
            format!("    certificate-authority-data: {pem}\n")
        });
        let user = serving
            .bearer_token
            .as_ref()
            .map_or("{}".to_string(), |token| format!("\n    token: {token}"));
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\n{ca}\
             contexts:\n- name: double\n  context:\n    cluster: double\n    user: tester\n    namespace: default\n\
             current-context: double\nusers:\n- name: tester\n  user: {user}\n",
            self.url()
        )
    }

    /// A `kubectl` command bound to this double (its kubeconfig, a private cache dir).
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .env("HOME", self.dir.path());
        command
    }

    /// Write requests (create, update, patch, delete; not dry runs) made to one object,
    /// named `<namespace>:<Kind>/<name>` (`<cluster>` for cluster-scoped objects).
    pub fn writes(&self, id: &str) -> u64 {
        self.shared.store().writes(id)
    }

    /// Every request to a resource so far, as RBAC sees it, in arrival order.
    pub fn requests(&self) -> Vec<AuthorizedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// How many requests each `(verb, path)` got since the start or the last
    /// reset: resource requests under their RBAC verb (`list`, `watch`, `get`,
    /// `patch`…), discovery and OpenAPI reads as `get`. A watch counts once,
    /// when it is opened.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.shared.counts().clone()
    }

    /// Each watch opened so far, in arrival order: its resource (the
    /// plural, with its group when it has one, e.g. `deployments.apps`) and
    /// the `timeoutSeconds` it asked for, none when it asked for none.
    pub fn watch_timeouts(&self) -> Vec<(String, Option<u64>)> {
        self.shared
            .watch_timeouts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Every request since the start or the last reset, discovery included.
    pub fn total_requests(&self) -> u64 {
        self.shared.counts().values().sum()
    }

    /// Forgets the request counts.
    pub fn reset_request_counts(&self) {
        self.shared.counts().clear();
    }

    /// Forgets every change so far, as a compaction of the real server's
    /// storage does: a watch from an older resourceVersion is told
    /// `410 Expired`.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Write requests made to any object since the start or the last reset.
    pub fn total_writes(&self) -> u64 {
        self.shared.store().total_writes()
    }

    /// Makes `port` of the pod `namespace/pod` reachable through
    /// `pods/{pod}/portforward`: a port-forward to it connects to `target`,
    /// where the real API server would reach the pod through its kubelet.
    /// The pod object itself is the test's to create.
    pub fn forward(&self, namespace: &str, pod: &str, port: u16, target: SocketAddr) {
        self.shared
            .forwards
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((namespace.to_string(), pod.to_string(), port), target);
    }

    /// Forgets the write counts.
    pub fn reset_writes(&self) {
        self.shared.store().reset_writes();
    }

    /// Lists `group/version` in `/apis` and answers its discovery with 503, as when
    /// an aggregated API (metrics, say) is down; its APIService, as registering
    /// an aggregated API makes it, says it is not available.
    pub fn add_unavailable_group(&self, group: &str, version: &str) {
        self.shared
            .unavailable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((group.to_string(), version.to_string()));
        let name = format!("{version}.{group}");
        let api_service = json!({
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "version": version,
                "service": {"namespace": "kube-system", "name": group.replace('.', "-")},
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        });
        let mut store = self.shared.store();
        let Some(rt) = store.types().into_iter().find(|t| t.kind == "APIService") else {
            return;
        };
        let target = Target {
            rt: rt.clone(),
            namespace: None,
            name: None,
        };
        let options = WriteOptions {
            dry_run: false,
            field_manager: Some("kube-apiserver".into()),
            force: false,
            strict: false,
        };
        if store.create(&target, api_service, &options).is_ok() {
            let condition = json!({
                "type": "Available", "status": "False", "reason": "FailedDiscoveryCheck",
                "message": "failing or missing response from the service",
            });
            store.set_status(&rt, None, &name, json!({"conditions": [condition]}));
        }
    }

    /// Answers `verb` on `resource` of `group` (empty for the core group) with
    /// 403 Forbidden from now on, as a cluster whose RBAC grants no such rule
    /// does; the request is still counted.
    pub fn forbid(&self, verb: &str, group: &str, resource: &str) {
        self.shared
            .forbidden
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((verb.to_string(), group.to_string(), resource.to_string()));
    }

    /// The current global resourceVersion.
    pub fn revision(&self) -> u64 {
        self.shared.store().revision()
    }

    /// The object as a client would read it, or `None`.
    pub fn object(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let store = self.shared.store();
        let rt = store.types().into_iter().find(|t| t.kind == kind)?;
        store.object(&rt, namespace, name)
    }

    /// Replaces an object's `.status` as its controller would; false when it does not exist.
    pub fn set_status(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> bool {
        let mut store = self.shared.store();
        let Some(rt) = store.types().into_iter().find(|t| t.kind == kind) else {
            return false;
        };
        store.set_status(&rt, namespace, name, status)
    }

    /// Puts a Deployment, DaemonSet, StatefulSet or Job in a rollout state; false when
    /// the object does not exist.
    pub fn set_workload_state(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        state: WorkloadState,
    ) -> bool {
        let Some(object) = self.object(kind, Some(namespace), name) else {
            return false;
        };
        let status = workload_status(kind, &object, state);
        self.set_status(kind, Some(namespace), name, status)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The status a controller writes for a workload in `state`.
fn workload_status(kind: &str, object: &Value, state: WorkloadState) -> Value {
    let generation = object["metadata"]["generation"].clone();
    let desired = object["spec"]["replicas"].as_u64().unwrap_or(1);
    let (updated, ready) = match state {
        WorkloadState::Ready => (desired, desired),
        WorkloadState::Progressing | WorkloadState::Failed => (desired.saturating_sub(1).min(1), 0),
    };
    match kind {
        "DaemonSet" => json!({
            "observedGeneration": generation,
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": desired - ready,
        }),
        "StatefulSet" => json!({
            "observedGeneration": generation,
            "replicas": desired,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "currentRevision": if state == WorkloadState::Ready { "r2" } else { "r1" },
            "updateRevision": "r2",
        }),
        "Job" => match state {
            WorkloadState::Ready => json!({"succeeded": 1, "conditions": [
                {"type": "Complete", "status": "True"}]}),
            WorkloadState::Progressing => json!({"active": 1}),
            WorkloadState::Failed => json!({"failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
        },
        _ => {
            let progressing = match state {
                WorkloadState::Ready => json!({"type": "Progressing", "status": "True",
                    "reason": "NewReplicaSetAvailable"}),
                WorkloadState::Progressing => json!({"type": "Progressing", "status": "True",
                    "reason": "ReplicaSetUpdated"}),
                WorkloadState::Failed => json!({"type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet has timed out progressing."}),
            };
            json!({
                "observedGeneration": generation,
                "replicas": desired,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": desired - ready,
                "conditions": [
                    {"type": "Available", "status": if ready == desired { "True" } else { "False" }},
                    progressing,
                ],
            })
        }
    }
}

fn respond(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = serde_json::to_vec(body).expect("JSON values serialise");
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn fail(error: &ApiError) -> Response {
    respond(error.code, &error.to_status())
}

/// The query string as (key, value) pairs, percent-decoded.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let Some(query) = uri.query() else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum Route {
    Version,
    CoreVersions,
    Groups,
    Resources(String, String),
    OpenApiIndex,
    OpenApi(String, String),
    Objects(Target, Option<String>),
}

fn route(path: &str, types: &[ResourceType]) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["openapi", "v3"] => return Ok(Route::OpenApiIndex),
        ["openapi", "v3", "api", version] => {
            return Ok(Route::OpenApi(String::new(), version.to_string()));
        }
        ["openapi", "v3", "apis", group, version] => {
            return Ok(Route::OpenApi(group.to_string(), version.to_string()));
        }
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["api", version] => return Ok(Route::Resources(String::new(), version.to_string())),
        ["apis", group, version] => {
            return Ok(Route::Resources(group.to_string(), version.to_string()));
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (namespace, plural, name, subresource) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !tail.is_empty() || *plural != "status" => (
            Some(ns.to_string()),
            *plural,
            tail.first().copied(),
            tail.get(1).copied(),
        ),
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => return Err(ApiError::path_not_found()),
    };
    let rt = types
        .iter()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
        .ok_or_else(ApiError::path_not_found)?;
    if rt.namespaced != namespace.is_some() && (name.is_some() || !rt.namespaced) {
        return Err(ApiError::path_not_found());
    }
    let target = Target {
        rt: rt.clone(),
        namespace,
        name: name.map(str::to_string),
    };
    Ok(Route::Objects(target, subresource.map(str::to_string)))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !serving::authorized(shared.serving.bearer_token.as_deref(), authorization) {
        return fail(&ApiError::unauthorized());
    }
    let mut store = shared.store();
    let types = store.types();
    let route = match route(uri.path(), &types) {
        Ok(route) => route,
        Err(error) => return fail(&error),
    };
    let read_only = method == Method::GET;
    if !matches!(route, Route::Objects(..)) {
        shared.count(if read_only { "get" } else { method.as_str() }, uri.path());
    }
    match route {
        Route::Version if read_only => respond(200, &version()),
        Route::CoreVersions if read_only => {
            respond(200, &types::core_versions(&shared.address.to_string()))
        }
        Route::Groups if read_only => {
            let mut groups = types::group_list(&types);
            for (group, version) in shared.unavailable() {
                let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
                let entry =
                    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv});
                if let Some(list) = groups["groups"].as_array_mut() {
                    list.push(entry);
                }
            }
            respond(200, &groups)
        }
        Route::Resources(group, version)
            if read_only
                && shared
                    .unavailable()
                    .contains(&(group.clone(), version.clone())) =>
        {
            fail(&ApiError {
                code: 503,
                reason: "ServiceUnavailable",
                message: "the server is currently unable to handle the request".into(),
                details: Value::Null,
            })
        }
        Route::Resources(group, version) if read_only => {
            match types::resource_list(&types, &group, &version) {
                Some(list) => respond(200, &list),
                None => fail(&ApiError::path_not_found()),
            }
        }
        Route::OpenApiIndex if read_only => respond(200, &types::openapi_index(&types)),
        Route::OpenApi(group, version) if read_only => {
            match types::openapi_document(&types, &group, &version) {
                Some(document) => respond(200, &document),
                None => fail(&ApiError::path_not_found()),
            }
        }
        Route::Objects(target, subresource) => {
            let query = query_pairs(&uri);
            let request = authorized_request(&method, &target, subresource.as_deref(), &query);
            shared.count(&request.verb, uri.path());
            if shared.forbids(&request) {
                drop(store);
                let error = ApiError::forbidden(&request, FORBIDDEN_USER);
                shared
                    .requests
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(request);
                return fail(&error);
            }
            if read_only && subresource.is_none() && watch::wanted(&query) {
                let metadata_only = headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"));
                let answer = watch::serve(shared.clone(), &store, &target, &query, metadata_only);
                drop(store);
                shared
                    .requests
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(request);
                return match answer {
                    Ok(response) => response,
                    Err(error) => fail(&error),
                };
            }
            let answer = objects(
                &mut store,
                &method,
                &headers,
                &target,
                subresource.as_deref(),
                &query,
                &body,
            );
            drop(store);
            if !read_only {
                shared.changed.notify_waiters();
            }
            let mut requests = shared
                .requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // An apply that makes the object is authorised as a create as well.
            if matches!(answer, Ok((201, _))) && request.verb == "patch" {
                requests.push(AuthorizedRequest {
                    verb: "create".into(),
                    ..request.clone()
                });
            }
            requests.push(request);
            match answer {
                Ok((code, value)) => respond(code, &value),
                Err(error) => fail(&error),
            }
        }
        _ => fail(&ApiError::method_not_allowed()),
    }
}

/// The verb and resource RBAC sees in a request to `target`.
fn authorized_request(
    method: &Method,
    target: &Target,
    subresource: Option<&str>,
    query: &[(String, String)],
) -> AuthorizedRequest {
    let named = target.name.is_some();
    let verb = match *method {
        Method::GET if watch::wanted(query) => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    let resource = match subresource {
        Some(sub) => format!("{}/{sub}", target.rt.plural),
        None => target.rt.plural.clone(),
    };
    AuthorizedRequest {
        verb: verb.into(),
        group: target.rt.group.clone(),
        resource,
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    }
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

fn list_options(query: &[(String, String)]) -> ListOptions {
    ListOptions {
        label_selector: query_value(query, "labelSelector").map(str::to_string),
        field_selector: query_value(query, "fieldSelector").map(str::to_string),
        limit: query_value(query, "limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0),
        continue_token: query_value(query, "continue").map(str::to_string),
        metadata_only: false,
    }
}

/// An object as `PartialObjectMetadata`: only its metadata travels.
fn partial(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

fn query_value<'q>(query: &'q [(String, String)], key: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

fn objects(
    store: &mut Store,
    method: &Method,
    headers: &HeaderMap,
    target: &Target,
    subresource: Option<&str>,
    query: &[(String, String)],
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    if events::is_events_v1(&target.rt) {
        let core = |store: &mut Store, core: &Target, query: &[(String, String)], body: &Bytes| {
            objects(store, method, headers, core, subresource, query, body)
        };
        return events::serve_v1(store, method, headers, target, query, body, core);
    }
    let mut options = WriteOptions {
        dry_run: query_value(query, "dryRun") == Some("All"),
        field_manager: query_value(query, "fieldManager").map(str::to_string),
        force: query_value(query, "force") == Some("true"),
        strict: query_value(query, "fieldValidation") == Some("Strict"),
    };
    // Only apply needs a named manager; other writes are put down to the
    // client's user agent (`kubectl/v1.33 …` is `kubectl`), as the real server does.
    let applying = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/apply-patch"));
    if options.field_manager.is_none() && !applying {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        options.field_manager = Some(agent.split('/').next().unwrap_or("unknown").to_string());
    }
    if subresource == Some("scale") && target.rt.has_scale() && target.name.is_some() {
        return scale(store, method, headers, target, &options, body);
    }
    if subresource.is_some_and(|s| s != "status")
        || (subresource.is_some() && *method != Method::GET)
    {
        return Err(ApiError::method_not_allowed());
    }
    let name = target.name.clone();
    if *method == Method::GET {
        if watch::wanted(query) {
            return Err(ApiError::method_not_allowed());
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let metadata_only = accept.contains("as=PartialObjectMetadata");
        if table::wanted(accept) {
            let answer = match &name {
                Some(_) => store.get(target)?,
                None => store.list(target, &list_options(query))?,
            };
            if let Some(table) = table::of(&target.rt.kind, &answer) {
                return Ok((200, table));
            }
            return Ok((200, answer));
        }
        return match &name {
            Some(_) if metadata_only => store.get(target).map(|v| (200, partial(&v))),
            Some(_) => store.get(target).map(|v| (200, v)),
            None => {
                let list = ListOptions {
                    metadata_only,
                    ..list_options(query)
                };
                store.list(target, &list).map(|v| (200, v))
            }
        };
    }
    let written = match (method.as_str(), &name) {
        ("POST", None) => parse_body(body)?["metadata"]["name"]
            .as_str()
            .map(str::to_string),
        ("POST", Some(_)) => return Err(ApiError::method_not_allowed()),
        (_, None) => return Err(ApiError::method_not_allowed()),
        (_, Some(name)) => Some(name.clone()),
    };
    if *method == Method::DELETE && !body.is_empty() {
        let delete_options = parse_body(body)?;
        let dry = delete_options["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
        options.dry_run |= dry;
    }
    if let Some(written) = written.filter(|_| !options.dry_run) {
        store.record_write(target, &written);
    }
    match method.as_str() {
        "POST" => store.create(target, parse_body(body)?, &options),
        "PUT" => store.update(target, parse_body(body)?, &options),
        "DELETE" => store.delete(target, &options),
        "PATCH" => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let media = content_type.split(';').next().unwrap_or_default().trim();
            match media {
                "application/apply-patch+yaml" => store.apply(target, parse_body(body)?, &options),
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    store.merge_patch(target, parse_body(body)?, &options)
                }
                other => Err(ApiError::unsupported_media_type(other)),
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `GET`, `PUT` and merge `PATCH` of a workload's `scale` subresource, as
/// `kubectl scale` and autoscalers use it.
fn scale(
    store: &mut Store,
    method: &Method,
    headers: &HeaderMap,
    target: &Target,
    options: &WriteOptions,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let change: Value = match method.as_str() {
        "GET" => return store.scale(target).map(|v| (200, v)),
        "PUT" | "PATCH" => parse_body(body)?,
        _ => return Err(ApiError::method_not_allowed()),
    };
    if *method == Method::PATCH {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if !matches!(
            media,
            "application/merge-patch+json" | "application/strategic-merge-patch+json"
        ) {
            return Err(ApiError::unsupported_media_type(media));
        }
    }
    if !options.dry_run
        && let Some(name) = &target.name
    {
        store.record_write(target, name);
    }
    let put = *method == Method::PUT;
    store.update_scale(
        target,
        |scale| {
            if put {
                *scale = change;
            } else {
                store::merge_patch(scale, &change);
            }
        },
        options,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_reads_selectors() {
        assert_eq!(
            percent_decode("fluxcd.io%2Fsync-gc-mark%3Dx"),
            "fluxcd.io/sync-gc-mark=x"
        );
        assert_eq!(percent_decode("a+in+%28b%29"), "a in (b)");
    }

    #[test]
    fn paths_route_to_types_namespaces_and_names() {
        let types = types::builtin_types();
        let Ok(Route::Objects(target, None)) =
            route("/apis/apps/v1/namespaces/x/deployments/web", &types)
        else {
            panic!("a namespaced object path")
        };
        assert_eq!(
            (target.namespace.as_deref(), target.name.as_deref()),
            (Some("x"), Some("web"))
        );
        let Ok(Route::Objects(target, None)) = route("/api/v1/namespaces/x", &types) else {
            panic!("a namespace path")
        };
        assert_eq!(
            (target.rt.kind.as_str(), target.name.as_deref()),
            ("Namespace", Some("x"))
        );
        assert!(route("/apis/apps/v1/nothings", &types).is_err());
    }
}
