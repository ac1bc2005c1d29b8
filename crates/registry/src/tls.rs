//! Which certificates a registry host is spoken to with, the way docker
//! does it: every host is checked against the system's trust store (or the
//! files `SSL_CERT_FILE` and `SSL_CERT_DIR` name, when set) and webpki's
//! roots; one host also trusts the CA files of a docker-layout
//! `certs.d/<host>/` folder (`*.crt`) and those named for it
//! (`--registry-ca-file`), and presents the client certificate of that
//! folder (`*.cert` with its `*.key`).
//!
//! Files are read when the client first talks to a host. A folder that does
//! not exist is nothing; a file that cannot be read or is not what its name
//! says is an error naming the host and the file, for every request to that
//! host until it is fixed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Docker's folder of per-host certificates, the default of
/// `--registry-certs-dir`.
pub const DOCKER_CERTS_DIR: &str = "/etc/docker/certs.d";

/// Where per-host certificates come from.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// A docker-layout folder: `<folder>/<host>/` (the host with its port
    /// when the registry has one, `registry.example:5000`) holds CA roots
    /// (`*.crt`) and a client certificate (`*.cert` with the `*.key` of the
    /// same name). `None` reads no folder.
    pub certs_dir: Option<PathBuf>,
    /// CA files for one host each (`--registry-ca-file HOST=FILE`).
    pub ca_files: Vec<HostCaFile>,
}

/// A CA file trusted for one registry host: `HOST=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCaFile {
    /// `name` (every port of it) or `name:port`.
    pub host: String,
    /// A PEM file of one or more CA certificates.
    pub path: PathBuf,
}

impl HostCaFile {
    fn applies_to(&self, host: &str) -> bool {
        self.host.eq_ignore_ascii_case(host)
            || (!self.host.contains(':') && self.host.eq_ignore_ascii_case(bare_host(host)))
    }
}

impl FromStr for HostCaFile {
    type Err = String;

    fn from_str(text: &str) -> Result<HostCaFile, String> {
        let (host, path) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not HOST=FILE"))?;
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "{text:?}: {host:?} is not a registry host (name or name:port)"
            ));
        }
        if path.is_empty() {
            return Err(format!("{text:?} names no file after `=`"));
        }
        Ok(HostCaFile {
            host: host.to_string(),
            path: PathBuf::from(path),
        })
    }
}

/// A certificate setting that cannot be used; the text names the host and
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or folder that cannot be read.
    #[error("{host}: cannot read {}: {error}", .path.display())]
    Read {
        /// The registry host.
        host: String,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A file whose content is not what its name says.
    #[error("{host}: {}: {problem}", .path.display())]
    Invalid {
        /// The registry host.
        host: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The trust store that `SSL_CERT_FILE` or `SSL_CERT_DIR` names cannot
    /// be read.
    #[error("{host}: trust store of {source_names}: {problem}")]
    TrustStore {
        /// The registry host.
        host: String,
        /// The variables and what they say, `SSL_CERT_FILE=/etc/ca.pem`.
        source_names: String,
        /// What went wrong, with the file.
        problem: String,
    },
}

/// The CA roots and client certificate one host has beyond the shared
/// trust store.
#[derive(Default)]
struct HostCertificates {
    roots: Vec<reqwest::Certificate>,
    client: Option<ClientCertificate>,
}

struct ClientCertificate {
    cert: PathBuf,
    key: PathBuf,
    identity: reqwest::Identity,
}

impl HostCertificates {
    fn is_empty(&self) -> bool {
        self.roots.is_empty() && self.client.is_none()
    }
}

impl TlsConfig {
    fn host_certificates(&self, host: &str) -> Result<HostCertificates, TlsError> {
        let mut found = HostCertificates::default();
        for file in self.ca_files.iter().filter(|f| f.applies_to(host)) {
            found.roots.extend(read_roots(host, &file.path)?);
        }
        if let Some(dir) = &self.certs_dir {
            read_host_folder(host, &dir.join(host), &mut found)?;
        }
        Ok(found)
    }

    /// Where a client certificate for `host` goes, for errors about a
    /// refused one.
    pub(crate) fn where_a_client_certificate_goes(&self, host: &str) -> String {
        match &self.certs_dir {
            Some(dir) => format!(
                "{} with its {}",
                dir.join(host).join("client.cert").display(),
                dir.join(host).join("client.key").display()
            ),
            None => format!("client.cert and client.key in a certs.d/{host}/ folder"),
        }
    }

    /// Where a CA for `host` can go, for errors about an unknown issuer.
    pub(crate) fn where_a_ca_goes(&self, host: &str) -> String {
        match &self.certs_dir {
            Some(dir) => format!(
                "the system trust store, SSL_CERT_FILE or {}",
                dir.join(host).join("ca.crt").display()
            ),
            None => "the system trust store or SSL_CERT_FILE".to_string(),
        }
    }
}

/// Reads `<certs.d>/<host>/` the way docker does: `*.crt` are CA roots,
/// `*.cert` a client certificate whose key is the `*.key` of the same name;
/// other files are left alone. Of several client certificates the first
/// by name is used.
fn read_host_folder(
    host: &str,
    folder: &Path,
    found: &mut HostCertificates,
) -> Result<(), TlsError> {
    let unreadable = |error: io::Error| TlsError::Read {
        host: host.to_string(),
        path: folder.to_path_buf(),
        error,
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(unreadable(error)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(unreadable)?.path());
    }
    paths.sort();
    for path in paths {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => found.roots.extend(read_roots(host, &path)?),
            Some("cert") => {
                let key = path.with_extension("key");
                if !key.exists() {
                    return Err(invalid(
                        host,
                        &path,
                        format!(
                            "client certificate without its key {} (CA certificates end in .crt)",
                            key.display()
                        ),
                    ));
                }
                if found.client.is_none() {
                    found.client = Some(read_client_certificate(host, &path, &key)?);
                }
            }
            Some("key") => {
                let cert = path.with_extension("cert");
                if !cert.exists() {
                    return Err(invalid(
                        host,
                        &path,
                        format!("key without its client certificate {}", cert.display()),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn invalid(host: &str, path: &Path, problem: String) -> TlsError {
    TlsError::Invalid {
        host: host.to_string(),
        path: path.to_path_buf(),
        problem,
    }
}

fn read_file(host: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        host: host.to_string(),
        path: path.to_path_buf(),
        error,
    })
}

fn read_pem_certificates(
    host: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(host, path, format!("not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(host, path, "no PEM certificate in it".into()));
    }
    Ok(certificates)
}

/// The CA certificates of a PEM file, each checked to be usable as a root.
fn read_roots(host: &str, path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let bytes = read_file(host, path)?;
    let mut roots = Vec::new();
    for (index, der) in read_pem_certificates(host, path, &bytes)?
        .into_iter()
        .enumerate()
    {
        let unusable = |e: &dyn std::fmt::Display| {
            invalid(
                host,
                path,
                format!("certificate {} is not a usable CA: {e}", index + 1),
            )
        };
        RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| unusable(&e))?;
        roots.push(reqwest::Certificate::from_der(&der).map_err(|e| unusable(&e))?);
    }
    Ok(roots)
}

fn read_client_certificate(
    host: &str,
    cert: &Path,
    key: &Path,
) -> Result<ClientCertificate, TlsError> {
    let cert_bytes = read_file(host, cert)?;
    read_pem_certificates(host, cert, &cert_bytes)?;
    let key_bytes = read_file(host, key)?;
    PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| invalid(host, key, format!("no usable PEM private key: {e}")))?;
    let mut pem = cert_bytes;
    pem.push(b'\n');
    pem.extend_from_slice(&key_bytes);
    let identity = reqwest::Identity::from_pem(&pem)
        .map_err(|e| invalid(host, cert, format!("with key {}: {e}", key.display())))?;
    Ok(ClientCertificate {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        identity,
    })
}

fn bare_host(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The HTTP clients of a registry client: one for the hosts with nothing
/// of their own (one that verifies, one that does not), one per host with
/// certificates of its own.
pub(crate) struct Transports {
    tls: TlsConfig,
    timeout: Duration,
    resolve: Vec<(String, SocketAddr)>,
    trust_store: OnceLock<Result<Vec<reqwest::Certificate>, (String, String)>>,
    shared: Mutex<HashMap<bool, reqwest::Client>>,
    by_host: Mutex<HashMap<String, reqwest::Client>>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("tls", &self.tls)
            .field("resolve", &self.resolve)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("transport maps are never left poisoned: no panics under their locks")
}

impl Transports {
    pub(crate) fn new(
        tls: TlsConfig,
        timeout: Duration,
        resolve: Vec<(String, SocketAddr)>,
    ) -> Transports {
        Transports {
            tls,
            timeout,
            resolve,
            trust_store: OnceLock::new(),
            shared: Mutex::default(),
            by_host: Mutex::default(),
        }
    }

    pub(crate) fn config(&self) -> &TlsConfig {
        &self.tls
    }

    /// The client for `host`; `verify` false accepts any server certificate
    /// (for the hosts docker calls insecure) but still presents the host's
    /// client certificate.
    pub(crate) fn for_host(&self, host: &str, verify: bool) -> Result<reqwest::Client, TlsError> {
        if let Some(client) = lock(&self.by_host).get(host) {
            return Ok(client.clone());
        }
        let certificates = self.tls.host_certificates(host)?;
        let client = if certificates.is_empty() {
            self.shared(host, verify)?
        } else {
            self.build(host, verify, certificates)?
        };
        lock(&self.by_host).insert(host.to_string(), client.clone());
        Ok(client)
    }

    fn shared(&self, host: &str, verify: bool) -> Result<reqwest::Client, TlsError> {
        if let Some(client) = lock(&self.shared).get(&verify) {
            return Ok(client.clone());
        }
        let client = self.build(host, verify, HostCertificates::default())?;
        lock(&self.shared).insert(verify, client.clone());
        Ok(client)
    }

    fn build(
        &self,
        host: &str,
        verify: bool,
        certificates: HostCertificates,
    ) -> Result<reqwest::Client, TlsError> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("flux-registry/", env!("CARGO_PKG_VERSION")));
        for (name, addr) in &self.resolve {
            builder = builder.resolve(name, *addr);
        }
        if verify {
            for root in self.trust_store(host)? {
                builder = builder.add_root_certificate(root.clone());
            }
            for root in certificates.roots {
                builder = builder.add_root_certificate(root);
            }
        } else {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let Some(client) = certificates.client else {
            return builder.build().map_err(|e| TlsError::Invalid {
                host: host.to_string(),
                path: self
                    .tls
                    .certs_dir
                    .as_ref()
                    .map_or_else(PathBuf::new, |d| d.join(host)),
                problem: format!("cannot be used: {}", error_chain(&e)),
            });
        };
        builder.identity(client.identity).build().map_err(|e| {
            invalid(
                host,
                &client.cert,
                format!(
                    "does not go with key {}: {}",
                    client.key.display(),
                    error_chain(&e)
                ),
            )
        })
    }

    /// The system's roots (or `SSL_CERT_FILE`'s and `SSL_CERT_DIR`'s),
    /// read once. An unreadable part of the system store is a warning; an
    /// unreadable file the variables name is an error.
    fn trust_store(&self, host: &str) -> Result<&[reqwest::Certificate], TlsError> {
        self.trust_store
            .get_or_init(load_trust_store)
            .as_deref()
            .map_err(|(source_names, problem)| TlsError::TrustStore {
                host: host.to_string(),
                source_names: source_names.clone(),
                problem: problem.clone(),
            })
    }
}

fn load_trust_store() -> Result<Vec<reqwest::Certificate>, (String, String)> {
    let named: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .filter_map(|var| {
            std::env::var_os(var).map(|value| format!("{var}={}", value.to_string_lossy()))
        })
        .collect();
    let loaded = rustls_native_certs::load_native_certs();
    if !loaded.errors.is_empty() {
        let problem = loaded
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if !named.is_empty() {
            return Err((named.join(" "), problem));
        }
        tracing::warn!(%problem, "part of the system trust store cannot be read");
    }
    // System stores carry some certificates rustls cannot use as roots
    // (very old ones); they are skipped, as reqwest's own loader does.
    let mut check = RootCertStore::empty();
    Ok(loaded
        .certs
        .into_iter()
        .filter(|der| check.add(der.clone()).is_ok())
        .filter_map(|der| reqwest::Certificate::from_der(&der).ok())
        .collect())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_flags_read_host_equals_file() {
        let parsed: HostCaFile = "registry.example:5000=/etc/ca.pem".parse().unwrap();
        assert_eq!(parsed.host, "registry.example:5000");
        assert_eq!(parsed.path, PathBuf::from("/etc/ca.pem"));
        assert!("registry.example".parse::<HostCaFile>().is_err());
        assert!("=/etc/ca.pem".parse::<HostCaFile>().is_err());
        assert!("registry.example=".parse::<HostCaFile>().is_err());
        assert!(
            "https://registry.example=/ca.pem"
                .parse::<HostCaFile>()
                .is_err()
        );
    }

    #[test]
    fn a_ca_file_without_a_port_applies_to_every_port_of_its_host() {
        let any_port: HostCaFile = "Registry.Example=/ca.pem".parse().unwrap();
        assert!(any_port.applies_to("registry.example"));
        assert!(any_port.applies_to("registry.example:5000"));
        assert!(!any_port.applies_to("other.example:5000"));
        let one_port: HostCaFile = "registry.example:5000=/ca.pem".parse().unwrap();
        assert!(one_port.applies_to("registry.example:5000"));
        assert!(!one_port.applies_to("registry.example:6000"));
        assert!(!one_port.applies_to("registry.example"));
    }

    #[test]
    fn a_missing_certs_folder_is_nothing_and_a_broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsConfig {
            certs_dir: Some(dir.path().to_path_buf()),
            ca_files: Vec::new(),
        };
        assert!(tls.host_certificates("nowhere:5000").unwrap().is_empty());

        let folder = dir.path().join("registry.example:5000");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("ca.crt"), "not a certificate\n").unwrap();
        let error = tls
            .host_certificates("registry.example:5000")
            .err()
            .expect("a broken CA file is an error")
            .to_string();
        assert!(error.starts_with("registry.example:5000: "), "{error}");
        assert!(error.contains(&format!("{}", folder.join("ca.crt").display())));
        assert!(error.contains("no PEM certificate"), "{error}");

        std::fs::remove_file(folder.join("ca.crt")).unwrap();
        std::fs::write(folder.join("client.cert"), "").unwrap();
        let error = tls
            .host_certificates("registry.example:5000")
            .err()
            .expect("a client certificate without its key is an error")
            .to_string();
        assert!(error.contains("client.cert"), "{error}");
        assert!(error.contains("client.key"), "{error}");
    }

    #[test]
    fn an_unreadable_ca_file_names_the_host_and_the_file() {
        let tls = TlsConfig {
            certs_dir: None,
            ca_files: vec!["registry.example=/nonexistent/ca.pem".parse().unwrap()],
        };
        let error = tls
            .host_certificates("registry.example:443")
            .err()
            .expect("a missing named CA file is an error")
            .to_string();
        assert!(
            error.starts_with("registry.example:443: cannot read /nonexistent/ca.pem: "),
            "{error}"
        );
        assert!(tls.host_certificates("other.example").unwrap().is_empty());
    }
}
