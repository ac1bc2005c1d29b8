//! A real OCI registry for tests: the CNCF distribution registry from
//! Debian's `docker-registry` package, on a free loopback port with its
//! storage in a temporary folder, killed on drop; over plain http, or over
//! TLS with a test CA's certificate ([`Registry::start_tls`], optionally
//! requiring client certificates). Images are pushed through the registry's
//! HTTP API: blobs by POST + PUT, manifests by PUT.
//!
//! ```no_run
//! # async fn example() {
//! use flux_testkit::registry::{ImageSpec, Registry};
//! let registry = Registry::start();
//! registry
//!     .push_image("team/app", "1.0.0", &ImageSpec::created("2016-11-18T16:00:00Z"))
//!     .await;
//! println!("{}", registry.image("team/app"));
//! # }
//! ```

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::tls::{KeyedCertificate, TestCa};

/// The distribution registry binary of Debian's `docker-registry` package.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// Docker schema 2 or OCI media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `application/vnd.docker.distribution.manifest.v2+json` and friends.
    Docker,
    /// `application/vnd.oci.image.manifest.v1+json` and friends.
    Oci,
}

/// The image config to push: creation time, labels, platform.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The config's `created`, RFC 3339; `None` leaves it out.
    pub created: Option<String>,
    /// `config.Labels`.
    pub labels: Vec<(String, String)>,
    /// `os`.
    pub os: String,
    /// `architecture`.
    pub architecture: String,
    /// Media types to use.
    pub flavour: Flavour,
}

impl ImageSpec {
    /// A linux/amd64 Docker image created at `created`.
    pub fn created(created: &str) -> ImageSpec {
        ImageSpec {
            created: Some(created.to_string()),
            labels: Vec::new(),
            os: "linux".into(),
            architecture: "amd64".into(),
            flavour: Flavour::Docker,
        }
    }

    /// The same with OCI media types.
    pub fn oci(mut self) -> ImageSpec {
        self.flavour = Flavour::Oci;
        self
    }

    /// The same with a label.
    pub fn label(mut self, key: &str, value: &str) -> ImageSpec {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// The same for another platform.
    pub fn platform(mut self, os: &str, architecture: &str) -> ImageSpec {
        self.os = os.into();
        self.architecture = architecture.into();
        self
    }
}

/// How a registry serves TLS (the distribution registry's `http.tls`).
#[derive(Debug, Clone, Copy)]
pub struct ServeTls<'a> {
    /// The registry's certificate and key (`certificate`, `key`).
    pub certificate: &'a KeyedCertificate,
    /// When set, the registry requires a client certificate signed by this
    /// CA (`clientcas`); the registry's [`Pusher`] gets one.
    pub client_ca: Option<&'a TestCa>,
}

/// What a registry is started with.
#[derive(Default)]
struct Setup<'a> {
    auth: Option<(&'a str, &'a str)>,
    notifications: Option<&'a Notifications>,
    vars: &'a [(&'a str, &'a str)],
    tls: Option<ServeTls<'a>>,
    /// Where to listen; a free loopback port when `None`.
    addr: Option<SocketAddr>,
}

/// A running registry; killed when dropped. Pushes go through its
/// [`Pusher`] (the registry dereferences to it).
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    pusher: Pusher,
}

/// Pushes synthetic images to a registry over its HTTP API; also to a
/// registry started by another process ([`Pusher::new`]).
pub struct Pusher {
    base: String,
    basic_auth: Option<String>,
    http: reqwest::Client,
    pushed_blobs: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>,
}

/// Where a registry sends its notifications (the distribution registry's
/// `notifications: endpoints:`): every push and pull, as JSON envelopes.
#[derive(Debug, Clone)]
pub struct Notifications {
    /// The endpoint's URL.
    pub url: String,
    /// The `Authorization` header value sent with each delivery.
    pub authorization: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Registry {
    /// Starts an open registry (no auth).
    pub fn start() -> Registry {
        Registry::launch(Setup::default())
    }

    /// Starts an open registry on `addr`: a host that did not answer
    /// before (see [`crate::unreachable::refusing_host`]) coming up.
    pub fn start_at(addr: SocketAddr) -> Registry {
        Registry::launch(Setup {
            addr: Some(addr),
            ..Setup::default()
        })
    }

    /// Starts an open registry serving TLS with `tls`'s certificate on
    /// `127.0.0.1`; the certificate decides the names it is valid for.
    pub fn start_tls(tls: ServeTls<'_>) -> Registry {
        Registry::launch(Setup {
            tls: Some(tls),
            ..Setup::default()
        })
    }

    /// Starts an open registry with these environment variables set for
    /// its process, e.g. `GOGC` to tune the Go runtime's garbage collector
    /// the way an operator would for a busy registry.
    pub fn start_with_env(vars: &[(&str, &str)]) -> Registry {
        Registry::launch(Setup {
            vars,
            ..Setup::default()
        })
    }

    /// Starts a registry that wants HTTP basic auth (htpasswd, bcrypt).
    pub fn start_with_basic_auth(username: &str, password: &str) -> Registry {
        Registry::launch(Setup {
            auth: Some((username, password)),
            ..Setup::default()
        })
    }

    /// Starts an open registry that notifies `notifications` of every
    /// event, retrying each delivery every second while the endpoint is
    /// down (so it may start later than the registry).
    pub fn start_notifying(notifications: &Notifications) -> Registry {
        Registry::launch(Setup {
            notifications: Some(notifications),
            ..Setup::default()
        })
    }

    fn launch(setup: Setup<'_>) -> Registry {
        let Setup {
            auth,
            notifications,
            vars,
            tls,
            addr,
        } = setup;
        let dir = tempfile::tempdir().expect("a temporary folder for the registry");
        let addr = addr.unwrap_or_else(free_loopback_port);
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 cache:\n    blobdescriptor: inmemory\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: flux-testkit\n",
            storage = storage.display(),
        );
        if let Some(tls) = &tls {
            config.push_str(&tls_config(dir.path(), tls));
        }
        if let Some((username, password)) = auth {
            let hash = bcrypt::hash_with_result(password, 4)
                .expect("bcrypt hashing of a short password")
                .format_for_version(bcrypt::Version::TwoY);
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{username}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: flux-testkit\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if let Some(notifications) = notifications {
            config.push_str(&notifications_config(notifications));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).expect("create registry log");
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {REGISTRY_BINARY} (Debian package docker-registry): {e}")
            });
        let mut pusher = match &tls {
            None => Pusher::new(&addr.to_string()),
            Some(tls) => Pusher::over_tls(&addr.to_string(), tls.client_ca),
        };
        pusher.basic_auth = auth.map(|(u, p)| basic(u, p));
        let mut registry = Registry {
            child,
            addr,
            dir,
            pusher,
        };
        registry.wait_until_listening(&log_path);
        registry
    }

    fn wait_until_listening(&mut self, log_path: &PathBuf) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                panic!("registry exited with {status}: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("registry did not listen on {} within 20s", self.addr);
    }

    /// The registry's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:<port>`, the host part of image names.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port, for image names with another host name
    /// (`registry.test:<port>`) that tests resolve to `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:<port>/<repository>`.
    pub fn image(&self, repository: &str) -> String {
        format!("{}/{repository}", self.addr)
    }

    /// The folder holding the registry's config, storage and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl std::ops::Deref for Registry {
    type Target = Pusher;

    fn deref(&self) -> &Pusher {
        &self.pusher
    }
}

/// A client that opens a connection per request: a kept-alive one the
/// registry has just closed as idle makes a busy machine's request fail with
/// "connection reset" (seen on a blob DELETE with both cores loaded).
fn fresh_connections(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.pool_max_idle_per_host(0)
}

impl Pusher {
    /// Pushes over plain http to the registry at `host` (`host:port`). The
    /// host is also what the registry's notifications name as the
    /// request's host, so use the name image references use.
    pub fn new(host: &str) -> Pusher {
        Pusher {
            base: format!("http://{host}"),
            basic_auth: None,
            http: fresh_connections(reqwest::Client::builder())
                .build()
                .expect("an http client for the pusher"),
            pushed_blobs: Mutex::default(),
        }
    }

    /// Pushes over https to the registry at `host`, accepting its
    /// certificate whatever it is (the tests check the client under test,
    /// not the pusher), and presenting a client certificate of
    /// `client_ca` when given.
    pub fn over_tls(host: &str, client_ca: Option<&TestCa>) -> Pusher {
        let mut http =
            fresh_connections(reqwest::Client::builder()).danger_accept_invalid_certs(true);
        if let Some(ca) = client_ca {
            let client = ca.client_certificate("flux-testkit pusher");
            let pem = format!("{}\n{}", client.cert_pem, client.key_pem);
            let identity =
                reqwest::Identity::from_pem(pem.as_bytes()).expect("a PEM client certificate");
            http = http.identity(identity);
        }
        Pusher {
            base: format!("https://{host}"),
            basic_auth: None,
            http: http.build().expect("a TLS client for the pusher"),
            pushed_blobs: Mutex::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.basic_auth {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    /// Uploads a blob (once per repository and digest, even when pushes
    /// run concurrently: parallel uploads of one blob race in the
    /// registry); returns its digest.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let cell = self
            .pushed_blobs
            .lock()
            .expect("not poisoned")
            .entry(format!("{repository}@{digest}"))
            .or_default()
            .clone();
        cell.get_or_init(|| self.upload_blob(repository, &digest, bytes))
            .await;
        digest
    }

    async fn upload_blob(&self, repository: &str, digest: &str, bytes: &[u8]) {
        let start = self
            .request(
                reqwest::Method::POST,
                &self.url(&format!("/v2/{repository}/blobs/uploads/")),
            )
            .send()
            .await
            .expect("POST blob upload");
        assert_eq!(start.status().as_u16(), 202, "start upload: {start:?}");
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location")
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            self.url(&location)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = self
            .request(
                reqwest::Method::PUT,
                &format!("{location}{separator}digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT blob");
        assert_eq!(done.status().as_u16(), 201, "finish upload: {done:?}");
    }

    /// Puts a manifest under a tag (or digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let response = self
            .request(
                reqwest::Method::PUT,
                &self.url(&format!("/v2/{repository}/manifests/{reference}")),
            )
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(
            status.as_u16(),
            201,
            "put manifest {repository}:{reference}: {text}"
        );
        sha256(body)
    }

    /// Pushes a one-layer image and tags it; returns the manifest digest.
    pub async fn push_image(&self, repository: &str, tag: &str, spec: &ImageSpec) -> String {
        let (media_type, body) = self.image_manifest(repository, spec).await;
        self.push_manifest(repository, tag, media_type, &body).await
    }

    /// Pushes one image per spec and an index (manifest list) over them
    /// under `tag`; returns the index digest.
    pub async fn push_index(
        &self,
        repository: &str,
        tag: &str,
        flavour: Flavour,
        specs: &[ImageSpec],
    ) -> String {
        let mut entries = Vec::new();
        for spec in specs {
            let (media_type, body) = self.image_manifest(repository, spec).await;
            let digest = self
                .push_manifest(repository, &sha256(&body), media_type, &body)
                .await;
            entries.push(json!({
                "mediaType": media_type,
                "size": body.len(),
                "digest": digest,
                "platform": {"os": spec.os, "architecture": spec.architecture},
            }));
        }
        let media_type = match flavour {
            Flavour::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
            Flavour::Oci => "application/vnd.oci.image.index.v1+json",
        };
        let index = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": entries});
        let body = serde_json::to_vec(&index).expect("JSON");
        self.push_manifest(repository, tag, media_type, &body).await
    }

    /// Deletes a blob from a repository (the registry has deletes enabled),
    /// leaving manifests that point at it broken.
    pub async fn delete_blob(&self, repository: &str, digest: &str) {
        let response = self
            .request(
                reqwest::Method::DELETE,
                &self.url(&format!("/v2/{repository}/blobs/{digest}")),
            )
            .send()
            .await
            .expect("DELETE blob");
        assert_eq!(response.status().as_u16(), 202, "delete blob: {response:?}");
    }

    /// Tags an existing manifest again under `tag` (a re-push of its bytes).
    pub async fn retag(&self, repository: &str, digest: &str, tag: &str) {
        let response = self
            .request(
                reqwest::Method::GET,
                &self.url(&format!("/v2/{repository}/manifests/{digest}")),
            )
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json",
            )
            .send()
            .await
            .expect("GET manifest");
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .expect("manifest content type")
            .to_string();
        let body = response.bytes().await.expect("manifest body");
        self.push_manifest(repository, tag, &media_type, &body)
            .await;
    }

    async fn image_manifest(&self, repository: &str, spec: &ImageSpec) -> (&'static str, Vec<u8>) {
        let layer = format!("layer of {repository}").into_bytes();
        let layer_digest = self.push_blob(repository, &layer).await;
        let mut config = json!({
            "architecture": spec.architecture,
            "os": spec.os,
            "config": {"Labels": spec.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        if let Some(created) = &spec.created {
            config["created"] = Value::String(created.clone());
        }
        let config = serde_json::to_vec(&config).expect("JSON");
        let config_digest = self.push_blob(repository, &config).await;
        let (manifest_type, config_type, layer_type) = match spec.flavour {
            Flavour::Docker => (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            Flavour::Oci => (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": layer_type, "size": layer.len(), "digest": layer_digest}],
        });
        (manifest_type, serde_json::to_vec(&manifest).expect("JSON"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry config's `http.tls` (indented under `http:`), its files
/// written into `dir`.
fn tls_config(dir: &std::path::Path, tls: &ServeTls<'_>) -> String {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    tls.certificate.write(&cert, &key);
    let mut config = format!(
        "\x20 tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = tls.client_ca {
        let path = dir.join("client-ca.crt");
        ca.write(&path);
        config.push_str(&format!("    clientcas:\n      - {}\n", path.display()));
    }
    config
}

/// The registry config's `notifications:` section for one endpoint.
fn notifications_config(notifications: &Notifications) -> String {
    format!(
        "notifications:\n  endpoints:\n    - name: flux\n      url: {url}\n      \
         headers:\n        Authorization: [{authorization:?}]\n      \
         timeout: 2s\n      threshold: 1\n      backoff: 1s\n",
        url = notifications.url,
        authorization = notifications.authorization,
    )
}

fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("bound address")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn environment_given_at_start_reaches_the_registry_process() {
        let registry = Registry::start_with_env(&[("GOGC", "400")]);
        let environ = std::fs::read(format!("/proc/{}/environ", registry.pid()))
            .expect("the registry's environment is readable");
        assert!(
            environ.split(|b| *b == 0).any(|var| var == b"GOGC=400"),
            "GOGC=400 not in the registry's environment"
        );
        let digest = registry
            .push_image(
                "team/app",
                "1.0.0",
                &ImageSpec::created("2016-11-18T16:00:00Z"),
            )
            .await;
        assert!(digest.starts_with("sha256:"));
    }
}
