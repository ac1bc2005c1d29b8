//! The HTTP API, webhook receivers and `/metrics`.
//!
//! Handlers read the daemon's current [`View`] (what git and the registries
//! say, refreshed by the loops) and hand work to the loops through the job
//! queue and the change channel; none of them does git, registry or cluster
//! work inline, so a slow sync never slows an answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flux_api::{
    ApiError, Change, Explanation, Identity, Job, JobSpec, Manifest, PolicyCheck, ReadState,
    ReleasePreview, ReleaseSpec, Submitted, SyncRequested, SyncStatus, VersionInfo, Workload,
    WorkloadImages, WorkloadPage, WorkloadResult,
};
use jiff::Timestamp;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::jobs::Jobs;
use crate::metrics::{Format, Metrics};
use crate::webhooks::{self, Delivery, Sender};

/// What the API shows: refreshed by the loops, read by the handlers.
#[derive(Debug, Clone)]
pub struct View {
    /// Workloads from git (and the cluster, when there is one).
    pub workloads: crate::view::Workloads,
    /// Images of every workload's containers.
    pub images: crate::view::Images,
    /// What was read from git, `Err` with the reason until git has been read.
    pub read: Result<ReadState, String>,
}

impl Default for View {
    fn default() -> Self {
        View {
            workloads: crate::view::Workloads::default(),
            images: crate::view::Images::default(),
            read: Err("fluxd has not read the git repo yet".into()),
        }
    }
}

impl View {
    /// Why nothing can be listed yet: git has not been read.
    fn unread(&self) -> Option<Response> {
        let why = self.read.as_ref().err()?;
        Some(error(StatusCode::SERVICE_UNAVAILABLE, why.clone()))
    }
}

/// A boxed future, so [`Control`] can be a trait object.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The parts of the daemon the API asks things of directly.
pub trait Control: Send + Sync + 'static {
    /// Fetch git now and sync; answer with the revision to wait for.
    fn sync(&self) -> Pending<'_, SyncRequested>;
    /// Whether `revision` has been applied.
    fn sync_status(&self, revision: String) -> Pending<'_, SyncStatus>;
    /// What a release would do, without doing it.
    fn plan(&self, spec: JobSpec) -> Pending<'_, Vec<WorkloadResult>>;
    /// The deploy key, if the daemon has one.
    fn identity(&self) -> Option<Identity>;
    /// A new deploy key in place of the old one; None when the daemon has none.
    fn regenerate_identity(&self) -> Pending<'_, Option<Identity>> {
        Box::pin(async { Ok(None) })
    }
    /// Why the cluster's API server could not be reached at the last sync;
    /// None when it was (or there is no cluster).
    fn cluster_unreachable(&self) -> Option<String> {
        None
    }
    /// The resources of the manifests at the revision read last, as written.
    fn manifests(&self) -> Pending<'_, Vec<Manifest>> {
        Box::pin(async { Err("this daemon does not answer manifests".to_string()) })
    }
    /// Per container of a workload, why automation did or did not move it;
    /// `Ok(None)` when the manifests hold no such workload.
    fn explain(&self, _workload: String) -> Pending<'_, Option<Vec<Explanation>>> {
        Box::pin(async { Err("this daemon does not explain automation".to_string()) })
    }
}

/// Everything the handlers share.
pub struct Api {
    /// Whether commits are applied to a cluster (not `--cluster=none`).
    pub cluster: bool,
    /// The bearer token state-changing calls must carry.
    pub token: String,
    /// The secret webhooks must present.
    pub webhook_secret: String,
    /// The job queue.
    pub jobs: Jobs,
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// The current view.
    pub view: watch::Receiver<View>,
    /// Changes announced by `notify` and webhooks.
    pub changes: mpsc::UnboundedSender<Change>,
    /// The daemon.
    pub control: Arc<dyn Control>,
}

type Shared = Arc<Api>;

/// The largest body an API call may carry (a job spec, a change): far more
/// than any real one, little enough that no request costs much memory.
pub const API_BODY_LIMIT: usize = 1 << 20;

/// The largest webhook body. A larger one (a push of very many commits) is
/// refused; the next git or registry poll picks up what it announced.
pub const HOOK_BODY_LIMIT: usize = 1 << 20;

#[derive(OpenApi)]
#[openapi(
    info(title = "fluxd", description = "The Flux daemon's API. State-changing calls need `Authorization: Bearer <token>`."),
    components(schemas(ApiError)),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", scheme);
    }
}

/// The API under `/api/v1`. Each route is registered with its handler's
/// OpenAPI operation, so the document lists exactly what is served.
fn api_routes(api: Shared) -> OpenApiRouter<Shared> {
    let guarded = OpenApiRouter::new()
        .routes(routes!(submit_job))
        .routes(routes!(sync))
        .routes(routes!(regenerate_identity))
        .routes(routes!(notify))
        .routes(routes!(preview_release))
        .route_layer(middleware::from_fn_with_state(api, require_token))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(middleware::from_fn(declared_within::<API_BODY_LIMIT>));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(workloads))
        .routes(routes!(manifests))
        .routes(routes!(images))
        .routes(routes!(explain))
        .routes(routes!(jobs))
        .routes(routes!(job))
        .routes(routes!(read_state))
        .routes(routes!(sync_status))
        .routes(routes!(identity))
        .routes(routes!(version))
        .routes(routes!(workload_page))
        .routes(routes!(policy_check))
        .routes(routes!(stream))
        .merge(guarded)
}

/// The router: API, webhooks and metrics.
pub fn router(api: Arc<Api>) -> Router {
    let (routes, document) = api_routes(api.clone()).split_for_parts();
    let document = Bytes::from(
        document
            .to_pretty_json()
            .expect("the OpenAPI document is plain data and serializes"),
    );
    routes
        .route(
            "/api/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }),
        )
        .merge(
            Router::new()
                .route("/hooks/{sender}", post(hook))
                .route("/hooks/{sender}/{secret}", post(hook_with_secret))
                .layer(DefaultBodyLimit::max(HOOK_BODY_LIMIT))
                .layer(middleware::from_fn(declared_within::<HOOK_BODY_LIMIT>)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(api.clone())
        .merge(metrics_router(api))
        .merge(crate::ui::router())
}

/// Liveness: the process serves requests.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the git repo was read once and, with a cluster, the last
/// sync reached its API server; otherwise 503 and why.
async fn readyz(State(api): State<Shared>) -> Response {
    if let Err(why) = &api.view.borrow().read {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    if let Some(why) = api.control.cluster_unreachable() {
        let message = format!("the cluster's API server did not answer the last sync: {why}\n");
        return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    }
    "ok\n".into_response()
}

/// `/metrics` alone, for `--listen-metrics`.
pub fn metrics_router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(api)
}

impl Api {
    /// A job as the API shows it: saying whether a cluster will apply it.
    fn told(&self, mut job: Job) -> Job {
        job.cluster = Some(self.cluster);
        job
    }
}

/// Refuses a request whose `Content-Length` is over `LIMIT` with 413,
/// before any of its body is read. A body that does not declare its length
/// (chunked) is read up to the limit only, by [`DefaultBodyLimit`], and
/// answered 413 as well.
async fn declared_within<const LIMIT: usize>(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > LIMIT as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {LIMIT} bytes"),
        );
    }
    next.run(request).await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

async fn require_token(State(api): State<Shared>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|t| webhooks::same(t, &api.token)) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    next.run(request).await
}

#[derive(Debug, Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

fn in_namespace(id: &str, namespace: Option<&str>) -> bool {
    namespace.is_none_or(|ns| id.split(':').next() == Some(ns))
}

/// Workloads, optionally of one namespace.
#[utoipa::path(get, path = "/api/v1/workloads", params(("namespace" = Option<String>, Query, description = "only this namespace")),
    responses((status = 200, description = "the workloads", body = Vec<Workload>),
        (status = 503, description = "git has not been read yet, and why", body = ApiError)))]
async fn workloads(State(api): State<Shared>, Query(query): Query<NamespaceQuery>) -> Response {
    let selected = {
        let view = api.view.borrow();
        if let Some(unread) = view.unread() {
            return unread;
        }
        let namespace = query.namespace;
        view.workloads
            .selected(move |id| in_namespace(id, namespace.as_deref()))
    };
    json_stream(crate::view::json_pieces(selected))
}

/// A JSON answer written piece by piece as it is sent.
fn json_stream<I>(pieces: I) -> Response
where
    I: Iterator<Item = serde_json::Result<Vec<u8>>> + Send + 'static,
{
    let body = Body::from_stream(futures::stream::iter(pieces.map(|p| p.map(Bytes::from))));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// How many workloads a page holds when the query does not say.
const PAGE_DEFAULT: usize = 100;
/// The most a page holds, whatever the query asks.
const PAGE_MOST: usize = 1000;

#[derive(Debug, Deserialize)]
struct PageParams {
    namespace: Option<String>,
    q: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// A page of workloads: those of `namespace` whose id or image holds `q`,
/// `limit` of them from `offset`, with how many there are in all. The
/// dashboard lists a large repo through this without holding all of it.
#[utoipa::path(get, path = "/api/v1/workloads/page",
    params(("namespace" = Option<String>, Query, description = "only this namespace"),
        ("q" = Option<String>, Query, description = "only workloads whose id or an image holds this text, whatever its case"),
        ("offset" = Option<usize>, Query, description = "selected workloads to pass over"),
        ("limit" = Option<usize>, Query, description = "the most to answer with (100 unless given, at most 1000)")),
    responses((status = 200, description = "the page", body = WorkloadPage),
        (status = 503, description = "git has not been read yet, and why", body = ApiError)))]
async fn workload_page(State(api): State<Shared>, Query(params): Query<PageParams>) -> Response {
    let view = api.view.borrow();
    if let Some(unread) = view.unread() {
        return unread;
    }
    let query = crate::view::PageQuery {
        namespace: params.namespace.as_deref().filter(|ns| !ns.is_empty()),
        search: params.q.as_deref(),
        offset: params.offset,
        limit: params.limit.unwrap_or(PAGE_DEFAULT).min(PAGE_MOST),
    };
    json_body(serde_json::to_vec(&view.workloads.page(&query)))
}

#[derive(Debug, Deserialize)]
struct PolicyParams {
    workload: String,
    container: String,
    policy: String,
}

/// What a tag policy would admit for a container, from the tags the
/// scanner last listed for its repository: `fluxctl check-policy` through
/// the API, for a policy editor's preview.
#[utoipa::path(get, path = "/api/v1/policy/check",
    params(("workload" = String, Query, description = "workload id"),
        ("container" = String, Query, description = "container name"),
        ("policy" = String, Query, description = "a tag policy, e.g. `semver:~0.3`; empty for `glob:*`")),
    responses((status = 200, description = "the tags it admits, newest first", body = PolicyCheck),
        (status = 400, description = "workload, container or policy is missing from the query"),
        (status = 404, description = "no such workload or container", body = ApiError),
        (status = 422, description = "the policy does not parse, or the repository has not been scanned", body = ApiError)))]
async fn policy_check(State(api): State<Shared>, Query(params): Query<PolicyParams>) -> Response {
    let text = match params.policy.trim() {
        "" => "glob:*",
        text => text,
    };
    let policy: flux_image::Policy = match text.parse() {
        Ok(policy) => policy,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("{text}: {e}")),
    };
    let images = api.view.borrow().images.clone();
    match images.check_policy(&params.workload, &params.container, &policy) {
        Some(Ok(check)) => Json(check).into_response(),
        Some(Err(why)) => error(StatusCode::UNPROCESSABLE_ENTITY, why),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "no container {:?} in workload {:?}",
                params.container, params.workload
            ),
        ),
    }
}

/// A release planned, not made: the plan a dry run answers and the
/// manifest lines it would rewrite, before and after.
#[utoipa::path(post, path = "/api/v1/release/preview", request_body = ReleaseSpec,
    responses((status = 200, description = "the plan and the lines it changes", body = ReleasePreview),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 422, description = "the release cannot be planned", body = ApiError)),
    security(("bearer" = [])))]
async fn preview_release(State(api): State<Shared>, Json(mut spec): Json<ReleaseSpec>) -> Response {
    spec.dry_run = true;
    let plan = match api.control.plan(JobSpec::Release(spec)).await {
        Ok(plan) => plan,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let manifests = match api.control.manifests().await {
        Ok(manifests) => manifests,
        Err(message) => return error(StatusCode::SERVICE_UNAVAILABLE, message),
    };
    let lines = crate::view::changed_lines(&plan, &manifests);
    Json(ReleasePreview { plan, lines }).into_response()
}

/// Server-sent events: `workloads` with the ids of the workloads that
/// changed (and the revision read) each time the view changes, `jobs` each
/// time a job moves. A client re-fetches only what it shows of those.
#[utoipa::path(get, path = "/api/v1/stream",
    responses((status = 200, description = "`text/event-stream` of `workloads` and `jobs` events", content_type = "text/event-stream", body = String)))]
async fn stream(State(api): State<Shared>) -> Response {
    crate::ui::changes(&api.view, &api.jobs).into_response()
}

/// The resources of the manifests at the revision read last, each with its
/// file and its YAML text as written there.
#[utoipa::path(get, path = "/api/v1/manifests",
    responses((status = 200, description = "every resource of the manifests at the revision read last, in file order", body = Vec<Manifest>),
        (status = 503, description = "git has not been read yet (or its checkout could not be read again), and why", body = ApiError)))]
async fn manifests(State(api): State<Shared>) -> Response {
    if let Some(unread) = api.view.borrow().unread() {
        return unread;
    }
    match api.control.manifests().await {
        Ok(manifests) => Json(manifests).into_response(),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// A JSON answer written from the view while it is borrowed: no copy of
/// the selected part of the view is made, only its JSON.
fn json_body(json: serde_json::Result<Vec<u8>>) -> Response {
    match json {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Images of workloads: `?workload=` (repeatable) and `?namespace=`.
#[utoipa::path(get, path = "/api/v1/images",
    params(("workload" = Option<Vec<String>>, Query, description = "workload ids"), ("namespace" = Option<String>, Query, description = "only this namespace")),
    responses((status = 200, description = "each workload's containers with the images available to them", body = Vec<WorkloadImages>),
        (status = 503, description = "git has not been read yet, and why", body = ApiError)))]
async fn images(State(api): State<Shared>, Query(query): Query<Vec<(String, String)>>) -> Response {
    if let Some(unread) = api.view.borrow().unread() {
        return unread;
    }
    let wanted: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "workload")
        .map(|(_, v)| v.clone())
        .collect();
    let namespace = query
        .iter()
        .find(|(k, _)| k == "namespace")
        .map(|(_, v)| v.clone());
    let images = api.view.borrow().images.clone();
    json_stream(images.json_pieces(move |id| {
        (wanted.is_empty() || wanted.iter().any(|w| w == id))
            && in_namespace(id, namespace.as_deref())
    }))
}

/// Why automation did or did not move each container of `?workload=`.
#[utoipa::path(get, path = "/api/v1/explain",
    params(("workload" = String, Query, description = "the workload id")),
    responses((status = 200, description = "per container, the tag automation moves it to next (if any) and why not (further)", body = Vec<Explanation>),
        (status = 400, description = "no workload asked for", body = ApiError),
        (status = 404, description = "the manifests hold no such workload", body = ApiError),
        (status = 503, description = "git has not been read yet, and why", body = ApiError)))]
async fn explain(
    State(api): State<Shared>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(unread) = api.view.borrow().unread() {
        return unread;
    }
    let Some((_, workload)) = query.into_iter().find(|(k, _)| k == "workload") else {
        return error(
            StatusCode::BAD_REQUEST,
            "name the workload to explain: ?workload=<namespace>:<kind>/<name>",
        );
    };
    match api.control.explain(workload.clone()).await {
        Ok(Some(explained)) => Json(explained).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("the manifests hold no workload {workload}"),
        ),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// Submit a release or policy change. A dry-run release answers with its plan.
#[utoipa::path(post, path = "/api/v1/jobs", request_body = JobSpec,
    responses(
        (status = 202, description = "queued: the job's id", body = Submitted),
        (status = 200, description = "a dry-run release: its plan, nothing queued", body = Submitted),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 422, description = "an automation job, or a dry run that cannot be planned", body = ApiError)),
    security(("bearer" = [])))]
async fn submit_job(State(api): State<Shared>, Json(spec): Json<JobSpec>) -> Response {
    if matches!(spec, JobSpec::Automation(_) | JobSpec::Revert(_)) {
        // Automation decides for itself what moves; a client asks for a
        // release (or automates a workload with a policy change).
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "automation jobs are fluxd's own: submit a release, or automate workloads with a policy change",
        );
    }
    if let JobSpec::Release(release) = &spec
        && release.dry_run
    {
        return match api.control.plan(spec.clone()).await {
            Ok(plan) => (
                StatusCode::OK,
                Json(Submitted {
                    id: String::new(),
                    plan: Some(plan),
                }),
            )
                .into_response(),
            Err(message) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
        };
    }
    let id = api.jobs.submit(spec, None);
    api.metrics.queue_length.set(api.jobs.queued() as i64);
    (StatusCode::ACCEPTED, Json(Submitted { id, plan: None })).into_response()
}

/// The jobs kept (queued, running, and the last finished ones), newest
/// first: what automation did lately, with each job's timeline.
#[utoipa::path(get, path = "/api/v1/jobs", responses((status = 200, description = "the jobs kept, newest first", body = Vec<Job>)))]
async fn jobs(State(api): State<Shared>) -> Response {
    let jobs: Vec<Job> = api.jobs.list().into_iter().map(|j| api.told(j)).collect();
    Json(jobs).into_response()
}

/// A job by id.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "the job", body = Job), (status = 404, description = "no such job", body = ApiError)))]
async fn job(State(api): State<Shared>, Path(id): Path<String>) -> Response {
    match api.jobs.get(&id) {
        Some(job) => Json(api.told(job)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
    }
}

/// Fetch git now and sync; answers with the revision to wait for.
#[utoipa::path(post, path = "/api/v1/sync", responses(
        (status = 200, description = "the revision to wait for", body = SyncRequested),
        (status = 401, description = "missing or wrong bearer token", body = ApiError),
        (status = 503, description = "git could not be fetched or its manifests read", body = ApiError)),
    security(("bearer" = [])))]
async fn sync(State(api): State<Shared>) -> Response {
    match api.control.sync().await {
        Ok(answer) => Json(answer).into_response(),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// The revision read last from git and the files that could not be read there.
#[utoipa::path(get, path = "/api/v1/sync", responses(
    (status = 200, description = "the revision read last and the files that could not be read there", body = ReadState),
    (status = 503, description = "git has not been read yet, and why", body = ApiError)))]
async fn read_state(State(api): State<Shared>) -> Response {
    match &api.view.borrow().read {
        Ok(read) => Json(read).into_response(),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, why.clone()),
    }
}

/// Whether a revision has been applied: empty `pending` means it has.
#[utoipa::path(get, path = "/api/v1/sync/{rev}", params(("rev" = String, Path, description = "a commit or ref")),
    responses((status = 200, description = "what of the revision is still to apply", body = SyncStatus), (status = 404, description = "the revision is not known", body = ApiError)))]
async fn sync_status(State(api): State<Shared>, Path(rev): Path<String>) -> Response {
    match api.control.sync_status(rev).await {
        Ok(status) => Json(status).into_response(),
        Err(message) => error(StatusCode::NOT_FOUND, message),
    }
}

/// The deploy key to add to the git host.
#[utoipa::path(get, path = "/api/v1/identity", responses((status = 200, description = "the public deploy key", body = Identity), (status = 404, description = "no deploy key: the repo is not reached over ssh", body = ApiError)))]
async fn identity(State(api): State<Shared>) -> Response {
    match api.control.identity() {
        Some(identity) => Json(identity).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "fluxd has no deploy key (the repo is not reached over ssh)",
        ),
    }
}

/// Replace the deploy key with a new one; answers the new key, to add to
/// the git host in place of the old one.
#[utoipa::path(post, path = "/api/v1/identity", responses(
    (status = 200, description = "the new deploy key", body = Identity),
    (status = 401, description = "missing or wrong bearer token", body = ApiError),
    (status = 404, description = "fluxd has no deploy key", body = ApiError),
    (status = 500, description = "the new key could not be made", body = ApiError)),
    security(("bearer" = [])))]
async fn regenerate_identity(State(api): State<Shared>) -> Response {
    match api.control.regenerate_identity().await {
        Ok(Some(identity)) => Json(identity).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "fluxd has no deploy key (the repo is not reached over ssh)",
        ),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// Tell the daemon an image or the git repo changed.
#[utoipa::path(post, path = "/api/v1/notify", request_body = Change,
    responses((status = 202, description = "accepted"), (status = 401, description = "missing or wrong bearer token", body = ApiError)), security(("bearer" = [])))]
async fn notify(State(api): State<Shared>, Json(change): Json<Change>) -> Response {
    let _ = api.changes.send(change);
    (StatusCode::ACCEPTED, Json(serde_json::json!({}))).into_response()
}

/// The daemon's version.
#[utoipa::path(get, path = "/api/v1/version", responses((status = 200, description = "the version", body = VersionInfo)))]
async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// The metrics in the format the scraper's `Accept` asks for: OpenMetrics
/// for Prometheus, the Prometheus text format for everyone else.
async fn metrics(State(api): State<Shared>, headers: HeaderMap) -> Response {
    api.metrics.queue_length.set(api.jobs.queued() as i64);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "accept"),
        ],
        api.metrics.render(format),
    )
        .into_response()
}

async fn hook(state: State<Shared>, Path(sender): Path<String>, request: Request) -> Response {
    receive_hook(state, sender, None, request).await
}

async fn hook_with_secret(
    state: State<Shared>,
    Path((sender, secret)): Path<(String, String)>,
    request: Request,
) -> Response {
    receive_hook(state, sender, Some(secret), request).await
}

async fn receive_hook(
    State(api): State<Shared>,
    sender: String,
    secret: Option<String>,
    request: Request,
) -> Response {
    let Some(kind) = Sender::from_path(&sender) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no webhook receiver {sender:?}"),
        );
    };
    let (parts, body) = request.into_parts();
    let header_pairs: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let delivery = Delivery {
        headers: header_pairs,
        url_secret: secret.as_deref(),
    };
    // A token is checked before the body is read; a signature after.
    if let Err(e) = webhooks::admit(kind, &api.webhook_secret, &delivery) {
        return error(StatusCode::UNAUTHORIZED, e.to_string());
    }
    // Read within the route's body limit; over it, the rejection is a 413.
    let request = Request::from_parts(parts.clone(), body);
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    match webhooks::receive(kind, &api.webhook_secret, &delivery, &body) {
        Ok(changes) => {
            let count = changes.len();
            for change in changes {
                let _ = api.changes.send(change);
            }
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "changes": count, "at": Timestamp::now() })),
            )
                .into_response()
        }
        Err(e @ webhooks::WebhookError::Unauthenticated) => {
            error(StatusCode::UNAUTHORIZED, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
