//! The client `fluxctl` talks to `fluxd` with.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::paths;
use crate::types::{
    ApiError, Change, Explanation, Identity, Job, JobSpec, Manifest, ReadState, Submitted,
    SyncRequested, SyncStatus, VersionInfo, Workload, WorkloadImages,
};

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL does not parse.
    #[error("invalid daemon URL {url:?}: {message}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// No answer: connection refused, timeout, TLS.
    #[error("cannot reach fluxd at {url}: {source}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// 401: the token is missing or wrong.
    #[error("fluxd refused the request: missing or wrong API token (set --token or FLUX_TOKEN)")]
    Unauthorized,
    /// Any other non-success answer, with the daemon's message.
    #[error("fluxd answered {status} for {url}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The URL called.
        url: String,
        /// The daemon's error text.
        message: String,
    },
    /// The answer is not the JSON expected.
    #[error("unexpected answer from fluxd at {url}: {message}")]
    Decode {
        /// The URL called.
        url: String,
        /// The decoding error.
        message: String,
    },
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    base: reqwest::Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the daemon at `base` (`http://127.0.0.1:3030`), sending
    /// `token` as a bearer token when given.
    pub fn new(base: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = reqwest::Url::parse(base).map_err(|e| ClientError::Url {
            url: base.to_string(),
            message: e.to_string(),
        })?;
        Ok(Client {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    /// The daemon's base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Workloads, optionally of one namespace.
    pub async fn workloads(&self, namespace: Option<&str>) -> Result<Vec<Workload>, ClientError> {
        let query: Vec<(&str, &str)> = namespace.map(|n| ("namespace", n)).into_iter().collect();
        self.get(paths::WORKLOADS, &query).await
    }

    /// The resources of the manifests at the revision fluxd read last.
    pub async fn manifests(&self) -> Result<Vec<Manifest>, ClientError> {
        self.get(paths::MANIFESTS, &[]).await
    }

    /// Images of the given workloads (all when empty), optionally of one namespace.
    pub async fn images(
        &self,
        workloads: &[String],
        namespace: Option<&str>,
    ) -> Result<Vec<WorkloadImages>, ClientError> {
        let mut query: Vec<(&str, &str)> =
            workloads.iter().map(|w| ("workload", w.as_str())).collect();
        query.extend(namespace.map(|n| ("namespace", n)));
        self.get(paths::IMAGES, &query).await
    }

    /// Per container of `workload`, why automation did or did not move it.
    pub async fn explain(&self, workload: &str) -> Result<Vec<Explanation>, ClientError> {
        self.get(paths::EXPLAIN, &[("workload", workload)]).await
    }

    /// Submits a release or policy change.
    pub async fn submit(&self, spec: &JobSpec) -> Result<Submitted, ClientError> {
        self.post(paths::JOBS, spec).await
    }

    /// The jobs the daemon keeps, newest first.
    pub async fn jobs(&self) -> Result<Vec<Job>, ClientError> {
        self.get(paths::JOBS, &[]).await
    }

    /// A job by id.
    pub async fn job(&self, id: &str) -> Result<Job, ClientError> {
        self.get(&paths::job(id), &[]).await
    }

    /// Asks the daemon to fetch git now; answers with the revision to wait for.
    pub async fn sync(&self) -> Result<SyncRequested, ClientError> {
        self.post(paths::SYNC, &serde_json::json!({})).await
    }

    /// The revision fluxd read last and the files it could not read there.
    pub async fn read_state(&self) -> Result<ReadState, ClientError> {
        self.get(paths::SYNC, &[]).await
    }

    /// Whether `revision` has been applied.
    pub async fn sync_status(&self, revision: &str) -> Result<SyncStatus, ClientError> {
        self.get(&paths::sync_status(revision), &[]).await
    }

    /// Replaces the daemon's deploy key with a new one; answers the new key.
    pub async fn regenerate_identity(&self) -> Result<Identity, ClientError> {
        self.post(paths::IDENTITY, &serde_json::json!({})).await
    }

    /// The deploy key.
    pub async fn identity(&self) -> Result<Identity, ClientError> {
        self.get(paths::IDENTITY, &[]).await
    }

    /// The daemon's version.
    pub async fn version(&self) -> Result<VersionInfo, ClientError> {
        self.get(paths::VERSION, &[]).await
    }

    /// Tells the daemon something changed.
    pub async fn notify(&self, change: &Change) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(paths::NOTIFY, change).await?;
        Ok(())
    }

    fn endpoint(&self, path: &str) -> Result<reqwest::Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::Url {
            url: format!("{}{path}", self.base),
            message: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let mut url = self.endpoint(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.send(self.http.get(url.clone()), url).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.endpoint(path)?;
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let request = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request, url).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
        url: reqwest::Url,
    ) -> Result<T, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Status {
                status: status.as_u16(),
                url: url.to_string(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })
    }
}
