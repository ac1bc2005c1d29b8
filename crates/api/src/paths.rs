//! The API's paths. Everything lives under a version prefix so that a later
//! incompatible change can sit beside this one.

/// The version prefix of every API path.
pub const PREFIX: &str = "/api/v1";
/// `GET`: workloads (`?namespace=`).
pub const WORKLOADS: &str = "/api/v1/workloads";
/// `GET`: the resources of the manifests at the revision read last, each
/// with its file and YAML text.
pub const MANIFESTS: &str = "/api/v1/manifests";
/// `GET`: images of workloads (`?workload=` repeated, `?namespace=`).
pub const IMAGES: &str = "/api/v1/images";
/// `GET`: per container of one workload (`?workload=`), why automation did
/// or did not move it.
pub const EXPLAIN: &str = "/api/v1/explain";
/// `POST`: submit a job (release or policy change); `GET`: recent jobs.
pub const JOBS: &str = "/api/v1/jobs";
/// `GET`: one job, `/api/v1/jobs/{id}`.
pub const JOB: &str = "/api/v1/jobs/{id}";
/// `POST`: fetch git now and sync; answers with the revision to apply.
/// `GET`: the revision read last and the files that could not be read.
pub const SYNC: &str = "/api/v1/sync";
/// `GET`: whether a revision has been applied, `/api/v1/sync/{rev}`.
pub const SYNC_STATUS: &str = "/api/v1/sync/{rev}";
/// `GET`: the deploy key.
pub const IDENTITY: &str = "/api/v1/identity";
/// `POST`: tell the daemon an image or the git repo changed.
pub const NOTIFY: &str = "/api/v1/notify";
/// `GET`: the daemon's version.
pub const VERSION: &str = "/api/v1/version";
/// `GET`: the OpenAPI document.
pub const OPENAPI: &str = "/api/openapi.json";

/// `JOB` with the id filled in.
pub fn job(id: &str) -> String {
    JOB.replace("{id}", id)
}

/// `SYNC_STATUS` with the revision filled in.
pub fn sync_status(rev: &str) -> String {
    SYNC_STATUS.replace("{rev}", rev)
}

/// `GET`: a page of workloads (`?namespace=&q=&offset=&limit=`), with the
/// total the filter selects.
pub const WORKLOAD_PAGE: &str = "/api/v1/workloads/page";
/// `GET`: server-sent events, one each time the workloads or the jobs change.
pub const STREAM: &str = "/api/v1/stream";
/// `POST`: a dry-run release with the manifest lines it would change.
pub const RELEASE_PREVIEW: &str = "/api/v1/release/preview";
/// `GET`: the tags a policy admits for a container
/// (`?workload=&container=&policy=`).
pub const POLICY_CHECK: &str = "/api/v1/policy/check";
