//! The HTTP side of the distribution API: ping, auth, tags, manifests and
//! config blobs, every request passing its host's gate and counted.
//!
//! A small client on `reqwest` rather than `oci-client`: the scanner must
//! count and pace every request (including token fetches and retries),
//! follow `Link` pages, learn page-size caps and honour `Retry-After`, and
//! `oci-client` performs those requests inside its own calls.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_image::Name;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use crate::auth::{Challenge, Credential, CredentialError, Credentials, parse_challenge};
use crate::limit::{HostGate, HostLimits};
use crate::manifest::{self, ACCEPT_MANIFESTS, ImageConfig, Manifest, ParseError};
use crate::metrics::{NO_RESPONSE, RequestCounters};
use crate::tls::{TlsConfig, TlsError, Transports};

/// How the client talks to registries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Pace and concurrency per host.
    pub limits: HostLimits,
    /// Hosts whose certificate is not checked and which are spoken to over
    /// plain http when https fails (`--registry-insecure-host`), besides
    /// `localhost`, `127.0.0.0/8` and `[::1]`, which always are.
    pub insecure_hosts: Vec<String>,
    /// CA roots and client certificates per host.
    pub tls: TlsConfig,
    /// Addresses to connect to for these host names instead of asking DNS
    /// (the port of the request is kept), as curl's `--resolve` does.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Attempts after the first for 429s, 5xx and timeouts.
    pub retries: u32,
    /// First backoff after a 5xx or timeout; doubles each attempt.
    pub backoff: Duration,
    /// A `Retry-After` longer than this fails the request at once (the
    /// repository's error says so) instead of holding the scan.
    pub max_retry_wait: Duration,
    /// Tags asked for per page (`n`).
    pub page_size: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            limits: HostLimits::default(),
            insecure_hosts: Vec::new(),
            tls: TlsConfig::default(),
            resolve: Vec::new(),
            timeout: Duration::from_secs(30),
            retries: 4,
            backoff: Duration::from_millis(250),
            max_retry_wait: Duration::from_secs(60),
            page_size: 1000,
        }
    }
}

/// What went wrong talking to a registry; the text is what `list-images`
/// shows in place of a creation time.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No answer: connection refused, TLS, timeout (after retries).
    #[error("{host}: {message}")]
    Transport {
        /// The host.
        host: String,
        /// reqwest's message.
        message: String,
    },
    /// A certificate was refused: the server's (unknown issuer, another
    /// name, expired) or ours; not retried, since waiting does not change it.
    #[error("{host}: {message}")]
    Certificate {
        /// The host.
        host: String,
        /// reqwest's message, and where a CA or client certificate can go.
        message: String,
    },
    /// An answer that is not what was asked for.
    #[error("{host}: {status} for {what}{}", with_detail(.detail))]
    Status {
        /// The host.
        host: String,
        /// The HTTP status.
        status: u16,
        /// What was asked (`tags of foo/bar`, `manifest foo/bar:1.0`).
        what: String,
        /// The registry's error code and message, when it gave them.
        detail: String,
    },
    /// Still rate limited after retries, or told to wait too long.
    #[error("{host}: rate limited (429), retry in {retry_in:?}")]
    Throttled {
        /// The host.
        host: String,
        /// How long the registry asked us to wait.
        retry_in: Duration,
    },
    /// A token endpoint refused or answered nonsense.
    #[error("token from {realm}: {message}")]
    Token {
        /// The realm asked.
        realm: String,
        /// What went wrong.
        message: String,
    },
    /// Credentials could not be found or read.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// A CA or client certificate file of the host cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A manifest or config that cannot be read.
    #[error("{what}: {source}")]
    Parse {
        /// Which document.
        what: String,
        /// Why.
        source: ParseError,
    },
    /// Content whose digest is not the one asked for.
    #[error("{what}: content digest {actual} is not the requested {expected}")]
    DigestMismatch {
        /// Which document.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what came.
        actual: String,
    },
}

fn with_detail(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

impl RegistryError {
    /// The HTTP status, for answers that had one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What [`Client::get_by_digest`] fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A manifest, from `/manifests/`.
    Manifest,
    /// A blob, from `/blobs/`.
    Blob,
}

/// A manifest as fetched: its digest and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The digest the registry serves it under.
    pub digest: String,
    /// The reduced manifest.
    pub manifest: Manifest,
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TagPage {
    tags: Option<Vec<String>>,
}

/// How an insecure host answered: over https (its certificate unchecked)
/// or, when https failed, plain http.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// A distribution API client shared by all scans.
#[derive(Debug)]
pub struct Client {
    transports: Transports,
    config: ClientConfig,
    credentials: Credentials,
    gates: Mutex<HashMap<String, Arc<HostGate>>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
    resolved: tokio::sync::Mutex<HashMap<String, Option<Credential>>>,
    page_caps: Mutex<HashMap<String, usize>>,
    /// The scheme each insecure host answered on, until it fails to.
    schemes: Mutex<HashMap<String, Scheme>>,
    /// Held while an insecure host's scheme is being found, so concurrent
    /// first requests wait for one answer instead of each trying https.
    probes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: Arc<RequestCounters>,
}

/// Whether `host` (with optional port) is insecure as docker means it: its
/// certificate is not checked, and plain http is used when https fails.
pub fn is_insecure_host(host: &str, configured: &[String]) -> bool {
    let bare = strip_port(host);
    if bare == "localhost" || bare == "[::1]" {
        return true;
    }
    if let Ok(ip) = bare.parse::<std::net::Ipv4Addr>()
        && ip.octets()[0] == 127
    {
        return true;
    }
    configured
        .iter()
        .any(|c| c.eq_ignore_ascii_case(host) || c.eq_ignore_ascii_case(bare))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("client maps are never left poisoned: no panics under their locks")
}

impl Client {
    /// A client with these settings and credentials.
    pub fn new(config: ClientConfig, credentials: Credentials) -> Client {
        let transports =
            Transports::new(config.tls.clone(), config.timeout, config.resolve.clone());
        Client {
            transports,
            config,
            credentials,
            gates: Mutex::default(),
            challenges: Mutex::default(),
            tokens: Mutex::default(),
            resolved: tokio::sync::Mutex::default(),
            page_caps: Mutex::default(),
            schemes: Mutex::default(),
            probes: Mutex::default(),
            counters: Arc::new(RequestCounters::default()),
        }
    }

    /// Requests made so far, by host and status.
    pub fn counters(&self) -> Arc<RequestCounters> {
        self.counters.clone()
    }

    /// The settings in force.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The gate of `host`, created on first use.
    pub fn gate(&self, host: &str) -> Arc<HostGate> {
        lock(&self.gates)
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(HostGate::new(self.config.limits.clone())))
            .clone()
    }

    /// The scheme `host` is spoken to on: https, or for an insecure host
    /// the one it last answered on (https until it has answered).
    pub fn scheme(&self, host: &str) -> &'static str {
        self.known_scheme(host).unwrap_or(Scheme::Https).as_str()
    }

    fn base_url(&self, host: &str) -> String {
        format!("{}://{host}", self.scheme(host))
    }

    fn is_insecure(&self, host: &str) -> bool {
        is_insecure_host(host, &self.config.insecure_hosts)
    }

    fn known_scheme(&self, host: &str) -> Option<Scheme> {
        lock(&self.schemes).get(host).copied()
    }

    /// `GET /v2/`: the host speaks the API (200) or wants auth (401, whose
    /// challenge is remembered so later requests authenticate up front).
    pub async fn ping(&self, host: &str) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base_url(host));
        let response = self.send_once(host, Method::GET, &url, None, None).await?;
        match response.status() {
            StatusCode::OK => Ok(()),
            StatusCode::UNAUTHORIZED => {
                self.learn_challenge(host, response.headers());
                Ok(())
            }
            status => Err(status_error(host, status, "ping /v2/".into(), response).await),
        }
    }

    /// Every tag of a repository, following `Link` pages and falling back
    /// to `last` where a registry caps the page silently.
    pub async fn list_tags(&self, name: &Name) -> Result<Vec<String>, RegistryError> {
        let host = name.api_host();
        let base = self.base_url(host);
        let page_size = self.page_size(host);
        let mut url = format!("{base}/v2/{}/tags/list?n={page_size}", name.path());
        let mut tags: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let what = format!("tags of {}", name.path());
        for _ in 0..10_000 {
            let response = self
                .send(host, Some(name.path()), Method::GET, &url, None)
                .await?;
            if response.status() != StatusCode::OK {
                return Err(status_error(host, response.status(), what, response).await);
            }
            let next_link = next_link(response.headers(), &base);
            let page: TagPage = response
                .json()
                .await
                .map_err(|e| RegistryError::Transport {
                    host: host.to_string(),
                    message: format!("reading {what}: {e}"),
                })?;
            let page = page.tags.unwrap_or_default();
            let count = page.len();
            let last = page.last().cloned();
            let before = tags.len();
            tags.extend(page.into_iter().filter(|t| seen.insert(t.clone())));
            let fresh = tags.len() - before;
            if fresh == 0 {
                break;
            }
            let asked = self.page_size(host);
            if next_link.is_some() && count < asked {
                self.learn_page_cap(host, count);
            }
            url = match (next_link, last) {
                (Some(link), _) => link,
                // A page exactly as long as asked (or as a cap seen before)
                // with no Link may have more behind it; a longer one means
                // the registry ignored `n` and sent everything.
                (None, Some(last)) if count == asked => {
                    format!(
                        "{base}/v2/{}/tags/list?n={}&last={last}",
                        name.path(),
                        self.page_size(host)
                    )
                }
                _ => break,
            };
        }
        Ok(tags)
    }

    fn page_size(&self, host: &str) -> usize {
        self.known_cap(host).unwrap_or(self.config.page_size).max(1)
    }

    fn known_cap(&self, host: &str) -> Option<usize> {
        lock(&self.page_caps).get(host).copied()
    }

    fn learn_page_cap(&self, host: &str, count: usize) {
        if count > 0 {
            lock(&self.page_caps).insert(host.to_string(), count);
        }
    }

    /// `HEAD` a manifest: its digest, or `None` when the registry does not
    /// say (some omit `Docker-Content-Digest` on HEAD).
    pub async fn head_manifest(
        &self,
        name: &Name,
        reference: &str,
    ) -> Result<Option<String>, RegistryError> {
        let host = name.api_host();
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(host),
            name.path()
        );
        let response = self
            .send(
                host,
                Some(name.path()),
                Method::HEAD,
                &url,
                Some(ACCEPT_MANIFESTS),
            )
            .await?;
        if response.status() != StatusCode::OK {
            let what = format!("manifest {}:{reference}", name.path());
            return Err(status_error(host, response.status(), what, response).await);
        }
        Ok(content_digest(response.headers()))
    }

    /// `GET` a manifest by tag or digest. By digest, the content is checked
    /// against it.
    pub async fn get_manifest(
        &self,
        name: &Name,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let host = name.api_host();
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(host),
            name.path()
        );
        let what = format!("manifest {}@{reference}", name.path());
        let response = self
            .send(
                host,
                Some(name.path()),
                Method::GET,
                &url,
                Some(ACCEPT_MANIFESTS),
            )
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(host, response.status(), what, response).await);
        }
        let header_digest = content_digest(response.headers());
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self.body(host, &what, response).await?;
        let manifest =
            manifest::parse_manifest(&body, content_type.as_deref()).map_err(|source| {
                RegistryError::Parse {
                    what: what.clone(),
                    source,
                }
            })?;
        let computed = manifest::sha256_digest(&body);
        let digest = if reference.contains(':') {
            // Signed schema 1 bodies carry signatures outside the digest.
            if computed != reference && !matches!(manifest, Manifest::Schema1 { .. }) {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: reference.to_string(),
                    actual: computed,
                });
            }
            reference.to_string()
        } else {
            header_digest.unwrap_or(computed)
        };
        Ok(FetchedManifest { digest, manifest })
    }

    /// `GET` a config blob by digest and read it; the content is checked
    /// against the digest.
    pub async fn get_config(
        &self,
        name: &Name,
        digest: &str,
    ) -> Result<ImageConfig, RegistryError> {
        let host = name.api_host();
        let url = format!("{}/v2/{}/blobs/{digest}", self.base_url(host), name.path());
        let what = format!("config {}@{digest}", name.path());
        let response = self
            .send(host, Some(name.path()), Method::GET, &url, None)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(host, response.status(), what, response).await);
        }
        let body = self.body(host, &what, response).await?;
        if digest.starts_with("sha256:") {
            let actual = manifest::sha256_digest(&body);
            if actual != digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: digest.to_string(),
                    actual,
                });
            }
        }
        manifest::parse_config(&body).map_err(|source| RegistryError::Parse { what, source })
    }

    /// `GET` a document by digest as it is stored: a manifest (with
    /// `accept`) or a blob. The content is checked against the digest.
    pub async fn get_by_digest(
        &self,
        name: &Name,
        digest: &str,
        kind: DocumentKind,
    ) -> Result<Vec<u8>, RegistryError> {
        let host = name.api_host();
        let (path, accept, noun) = match kind {
            DocumentKind::Manifest => ("manifests", Some(ACCEPT_MANIFESTS), "manifest"),
            DocumentKind::Blob => ("blobs", None, "blob"),
        };
        let url = format!("{}/v2/{}/{path}/{digest}", self.base_url(host), name.path());
        let what = format!("{noun} {}@{digest}", name.path());
        let response = self
            .send(host, Some(name.path()), Method::GET, &url, accept)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(host, response.status(), what, response).await);
        }
        let body = self.body(host, &what, response).await?;
        let actual = manifest::sha256_digest(&body);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    async fn body(
        &self,
        host: &str,
        what: &str,
        response: Response,
    ) -> Result<Vec<u8>, RegistryError> {
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| RegistryError::Transport {
                host: host.to_string(),
                message: format!("reading {what}: {e}"),
            })
    }

    /// One request with auth, pacing and retries. Answers other than 401,
    /// 429 and 5xx come back as they are, for the caller to judge.
    async fn send(
        &self,
        host: &str,
        repository: Option<&str>,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut reauthenticated = false;
        let mut attempt = 0;
        loop {
            let authorization = self.authorization(host, repository).await?;
            let result = self
                .send_once(host, method.clone(), url, accept, authorization.as_deref())
                .await;
            let retry_delay = match result {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    if reauthenticated || !self.learn_challenge(host, response.headers()) {
                        return Ok(response);
                    }
                    reauthenticated = true;
                    continue;
                }
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after(response.headers());
                    self.gate(host).throttled(wait);
                    let wait = wait.unwrap_or(Duration::from_secs(1));
                    if attempt >= self.config.retries || wait > self.config.max_retry_wait {
                        return Err(RegistryError::Throttled {
                            host: host.to_string(),
                            retry_in: wait,
                        });
                    }
                    // The gate holds the pause; no extra sleep here.
                    Duration::ZERO
                }
                Ok(response) if response.status().is_server_error() => {
                    if attempt >= self.config.retries {
                        return Ok(response);
                    }
                    self.backoff(attempt)
                }
                Ok(response) => return Ok(response),
                Err(error @ (RegistryError::Certificate { .. } | RegistryError::Tls(_))) => {
                    return Err(error);
                }
                Err(error) => {
                    if attempt >= self.config.retries {
                        return Err(error);
                    }
                    self.backoff(attempt)
                }
            };
            attempt += 1;
            tracing::debug!(
                host,
                url,
                attempt,
                ?retry_delay,
                "retrying registry request"
            );
            tokio::time::sleep(retry_delay).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff * 2u32.saturating_pow(attempt.min(10));
        // Jitter spreads the retries of many repositories on one host.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }

    async fn send_once(
        &self,
        host: &str,
        method: Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let gate = self.gate(host);
        if let Some(wait) = gate.paused_for()
            && wait > self.config.max_retry_wait
        {
            return Err(RegistryError::Throttled {
                host: host.to_string(),
                retry_in: wait,
            });
        }
        let _slot = gate.enter().await;
        let request = Request {
            method,
            accept,
            authorization,
        };
        if !self.is_insecure(host) {
            let http = self.transports.for_host(host, true)?;
            return self.exchange(host, &http, &request, url).await;
        }
        let http = self.transports.for_host(host, false)?;
        if let Some(scheme) = self.known_scheme(host) {
            return self.exchange_on(host, &http, &request, url, scheme).await;
        }
        let probe = lock(&self.probes)
            .entry(host.to_string())
            .or_default()
            .clone();
        let _probing = probe.lock().await;
        if let Some(scheme) = self.known_scheme(host) {
            return self.exchange_on(host, &http, &request, url, scheme).await;
        }
        self.find_scheme(host, &http, &request, url).await
    }

    /// One request to an insecure host whose scheme is unknown, docker's
    /// way: https first, and plain http when https fails without an answer
    /// (refused, reset, a TLS failure, a plain-http server's reply). The
    /// scheme that answers is remembered, so this costs one attempt more
    /// only at the first request and after a failure. The https attempt
    /// that fails is no registry request and is not counted. A registry
    /// that refuses our client certificate speaks TLS, so that is its
    /// answer (plain http would only get a 400 from it).
    async fn find_scheme(
        &self,
        host: &str,
        http: &reqwest::Client,
        request: &Request<'_>,
        url: &str,
    ) -> Result<Response, RegistryError> {
        let https_url = with_scheme(url, host, Scheme::Https);
        let https_error = match request.send(http, &https_url).await {
            Ok(response) => {
                self.answered_on(host, Scheme::Https, &response);
                return Ok(response);
            }
            Err(error) if certificate_problem(&error) == Some(CertificateProblem::Client) => {
                self.counters.record(host, NO_RESPONSE);
                return Err(self.no_answer(host, &error));
            }
            Err(error) => transport_message(&error),
        };
        tracing::debug!(host, error = %https_error, "https failed; trying plain http");
        let http_url = with_scheme(url, host, Scheme::Http);
        match request.send(http, &http_url).await {
            Ok(response) => {
                self.answered_on(host, Scheme::Http, &response);
                Ok(response)
            }
            Err(error) => {
                self.counters.record(host, NO_RESPONSE);
                Err(RegistryError::Transport {
                    host: host.to_string(),
                    message: format!("https: {https_error}; http: {}", transport_message(&error)),
                })
            }
        }
    }

    /// Remembers the scheme an insecure host answered on, and counts the answer.
    fn answered_on(&self, host: &str, scheme: Scheme, response: &Response) {
        lock(&self.schemes).insert(host.to_string(), scheme);
        self.counters.record(host, response.status().as_u16());
    }

    /// One request on the scheme an insecure host answered on before; when
    /// it fails without an answer the scheme is forgotten, so the next
    /// request looks again (the registry may have moved to or from TLS).
    async fn exchange_on(
        &self,
        host: &str,
        http: &reqwest::Client,
        request: &Request<'_>,
        url: &str,
        scheme: Scheme,
    ) -> Result<Response, RegistryError> {
        let result = self
            .exchange(host, http, request, &with_scheme(url, host, scheme))
            .await;
        if let Err(RegistryError::Transport { .. }) = result {
            lock(&self.schemes).remove(host);
        }
        result
    }

    async fn exchange(
        &self,
        host: &str,
        http: &reqwest::Client,
        request: &Request<'_>,
        url: &str,
    ) -> Result<Response, RegistryError> {
        match request.send(http, url).await {
            Ok(response) => {
                self.counters.record(host, response.status().as_u16());
                Ok(response)
            }
            Err(error) => {
                self.counters.record(host, NO_RESPONSE);
                Err(self.no_answer(host, &error))
            }
        }
    }

    /// The error of a request that got no answer; a refused certificate
    /// says where the missing CA or client certificate goes.
    fn no_answer(&self, host: &str, error: &reqwest::Error) -> RegistryError {
        let message = transport_message(error);
        let tls = self.transports.config();
        let hint = match certificate_problem(error) {
            None => {
                return RegistryError::Transport {
                    host: host.to_string(),
                    message,
                };
            }
            Some(CertificateProblem::Server) => format!(
                "a private CA for {host} can go in {}",
                tls.where_a_ca_goes(host)
            ),
            Some(CertificateProblem::Client) => format!(
                "the registry wants a client certificate it trusts: {}",
                tls.where_a_client_certificate_goes(host)
            ),
        };
        RegistryError::Certificate {
            host: host.to_string(),
            message: format!("{message} ({hint})"),
        }
    }

    /// Remembers the challenge of a 401; false when there is none we can
    /// answer, or nothing would change by answering it again.
    fn learn_challenge(&self, host: &str, headers: &HeaderMap) -> bool {
        let Some(challenge) = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge)
        else {
            return false;
        };
        let previous = lock(&self.challenges).insert(host.to_string(), challenge.clone());
        if previous.as_ref() == Some(&challenge) {
            // Same challenge again: a token we hold may have expired early.
            if let Challenge::Basic = challenge {
                return false;
            }
            lock(&self.tokens).retain(|key, _| !key.starts_with(&format!("{host}|")));
        }
        true
    }

    async fn credential(&self, host: &str) -> Result<Option<Credential>, RegistryError> {
        let mut resolved = self.resolved.lock().await;
        if let Some(found) = resolved.get(host) {
            return Ok(found.clone());
        }
        let found = self.credentials.lookup(host).await?;
        resolved.insert(host.to_string(), found.clone());
        Ok(found)
    }

    async fn authorization(
        &self,
        host: &str,
        repository: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let challenge = lock(&self.challenges).get(host).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credential(host).await?.map(|c| c.basic_header())),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = repository.map(|r| format!("repository:{r}:pull")).or(scope);
                let token = self
                    .token(host, &realm, service.as_deref(), scope.as_deref())
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let key = format!(
            "{host}|{realm}|{}|{}",
            service.unwrap_or(""),
            scope.unwrap_or("")
        );
        if let Some(token) = lock(&self.tokens).get(&key)
            && token.expires > Instant::now()
        {
            return Ok(token.value.clone());
        }
        let failure = |message: String| RegistryError::Token {
            realm: realm.to_string(),
            message,
        };
        // Docker asks a registry's token service with the registry's own
        // TLS settings.
        let http = self.transports.for_host(host, !self.is_insecure(host))?;
        let mut request = http.get(realm);
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        if let Some(scope) = scope {
            query.push(("scope", scope));
        }
        request = request.query(&query);
        if let Some(credential) = self.credential(host).await? {
            request = request.header(AUTHORIZATION, credential.basic_header());
        }
        let realm_host = reqwest::Url::parse(realm)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| realm.to_string());
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                self.counters.record(&realm_host, NO_RESPONSE);
                return Err(failure(transport_message(&e)));
            }
        };
        self.counters
            .record(&realm_host, response.status().as_u16());
        if !response.status().is_success() {
            return Err(failure(format!("status {}", response.status())));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| failure(format!("unreadable answer: {e}")))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failure("answer holds no token".into()))?;
        // The spec's default lifetime is 60s; renew a little early.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(10));
        let expires = Instant::now() + lifetime - Duration::from_secs(5);
        lock(&self.tokens).insert(
            key,
            Token {
                value: value.clone(),
                expires,
            },
        );
        Ok(value)
    }
}

/// What `send_once` sends, whatever the scheme.
struct Request<'a> {
    method: Method,
    accept: Option<&'a str>,
    authorization: Option<&'a str>,
}

impl Request<'_> {
    async fn send(&self, http: &reqwest::Client, url: &str) -> reqwest::Result<Response> {
        let mut request = http.request(self.method.clone(), url);
        if let Some(accept) = self.accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(value) = self.authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.send().await
    }
}

/// `url` on `scheme` when it points at `host`; a URL of another host (a
/// `Link` to elsewhere) is left as it is.
fn with_scheme<'a>(url: &'a str, host: &str, scheme: Scheme) -> Cow<'a, str> {
    let rest = ["https://", "http://"]
        .into_iter()
        .find_map(|prefix| url.strip_prefix(prefix))
        .filter(|rest| {
            rest.strip_prefix(host)
                .is_some_and(|after| after.is_empty() || after.starts_with(['/', '?']))
        });
    match rest {
        Some(rest) => Cow::Owned(format!("{}://{rest}", scheme.as_str())),
        None => Cow::Borrowed(url),
    }
}

/// A certificate refused on either side of a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertificateProblem {
    /// We refused the server's (unknown issuer, another name, expired).
    Server,
    /// The server refused ours, or wanted one and got none.
    Client,
}

/// What rustls said about certificates, inside the I/O errors hyper gives.
fn certificate_problem(error: &reqwest::Error) -> Option<CertificateProblem> {
    use rustls::AlertDescription::{BadCertificate, CertificateRequired, UnknownCA};
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = source {
        match rustls_error(inner) {
            Some(rustls::Error::InvalidCertificate(_)) => return Some(CertificateProblem::Server),
            Some(rustls::Error::AlertReceived(
                BadCertificate | CertificateRequired | UnknownCA,
            )) => {
                return Some(CertificateProblem::Client);
            }
            _ => {}
        }
        source = inner.source();
    }
    None
}

/// The rustls error `error` is or wraps in (nested) I/O errors.
fn rustls_error<'a>(mut error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        error = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

fn transport_message(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut message = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    message
}

async fn status_error(
    host: &str,
    status: StatusCode,
    what: String,
    response: Response,
) -> RegistryError {
    let text = response.text().await.unwrap_or_default();
    RegistryError::Status {
        host: host.to_string(),
        status: status.as_u16(),
        what,
        detail: error_detail(&text),
    }
}

/// The first `code: message` of a distribution error body, or the body's
/// first line.
fn error_detail(body: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(errors) = serde_json::from_str::<Errors>(body)
        && let Some(first) = errors.errors.first()
    {
        return [first.code.as_deref(), first.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
    }
    body.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

fn content_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| s.contains(':'))
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(Duration::try_from(when.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// The `rel="next"` target of a `Link` header, made absolute.
fn next_link(headers: &HeaderMap, base: &str) -> Option<String> {
    for value in headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()) {
        for part in value.split(',') {
            let (target, params) = part.split_once(';').unwrap_or((part, ""));
            if !params.replace(' ', "").contains("rel=\"next\"") && !params.contains("rel=next") {
                continue;
            }
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            if target.starts_with("http://") || target.starts_with("https://") {
                return Some(target.to_string());
            }
            return Some(format!("{base}{target}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn insecure_hosts_are_loopback_and_the_configured_ones() {
        let configured = vec!["registry.internal:5000".to_string(), "plain.example".into()];
        assert!(is_insecure_host("localhost:5000", &[]));
        assert!(is_insecure_host("127.0.0.1:5000", &[]));
        assert!(is_insecure_host("127.8.9.10", &[]));
        assert!(is_insecure_host("[::1]:5000", &[]));
        assert!(!is_insecure_host("128.0.0.1:5000", &[]));
        assert!(!is_insecure_host("localhost.example.com", &[]));
        assert!(is_insecure_host("registry.internal:5000", &configured));
        assert!(!is_insecure_host("registry.internal:6000", &configured));
        assert!(is_insecure_host("plain.example:443", &configured));
        assert!(!is_insecure_host("quay.io", &configured));
    }

    #[test]
    fn urls_of_the_host_change_scheme_and_others_do_not() {
        let host = "127.0.0.1:5000";
        assert_eq!(
            with_scheme(
                "https://127.0.0.1:5000/v2/a/tags/list?n=2",
                host,
                Scheme::Http
            ),
            "http://127.0.0.1:5000/v2/a/tags/list?n=2"
        );
        assert_eq!(
            with_scheme("http://127.0.0.1:5000/v2/", host, Scheme::Https),
            "https://127.0.0.1:5000/v2/"
        );
        assert_eq!(
            with_scheme("https://127.0.0.1:50001/v2/", host, Scheme::Http),
            "https://127.0.0.1:50001/v2/"
        );
        assert_eq!(
            with_scheme("https://cdn.example/blob", host, Scheme::Http),
            "https://cdn.example/blob"
        );
    }

    #[test]
    fn link_header_next_is_made_absolute() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static("</v2/a/tags/list?last=x&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&headers, "http://h:1").as_deref(),
            Some("http://h:1/v2/a/tags/list?last=x&n=2")
        );
        headers.insert(
            LINK,
            HeaderValue::from_static("<https://o/x>; rel=\"prev\""),
        );
        assert_eq!(next_link(&headers, "http://h:1"), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a past date means now"
        );
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let body = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{}}]}"#;
        assert_eq!(
            error_detail(body),
            "NAME_UNKNOWN repository name not known to registry"
        );
        assert_eq!(error_detail("<html>\nx"), "<html>");
    }
}
