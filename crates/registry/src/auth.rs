//! Credentials and auth challenges.
//!
//! Credentials come from a docker `config.json` (`auths`, `credHelpers`,
//! `credsStore`) or from the data of Kubernetes image pull secrets
//! (`kubernetes.io/dockerconfigjson`, legacy `kubernetes.io/dockercfg`).
//! Challenges are the `WWW-Authenticate` headers of 401 answers:
//! `Bearer realm=…,service=…,scope=…` or `Basic realm=…`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The username.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The `Authorization: Basic …` value.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(pair))
    }
}

/// Credentials that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The JSON is malformed.
    #[error("{origin}: {message}")]
    Json {
        /// The file or secret key.
        origin: String,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// An `auth` field is not base64 of `user:password`.
    #[error("{origin}: the auth entry for {host} is not base64 of user:password")]
    BadAuth {
        /// The file or secret key.
        origin: String,
        /// The registry the entry is for.
        host: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} for {host}: {message}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry host asked about.
        host: String,
        /// What went wrong.
        message: String,
    },
}

/// Where to find credentials for registry hosts.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    static_entries: BTreeMap<String, Credential>,
    helpers: BTreeMap<String, String>,
    store: Option<String>,
    /// `PATH` used to find `docker-credential-<name>` programs; the
    /// process's own when `None`.
    pub helper_path: Option<OsString>,
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The key a registry is known by in docker configs: host (and port) only,
/// with Docker Hub's aliases folded onto its API host.
pub fn registry_key(server: &str) -> String {
    let without_scheme = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "docker.io" | "index.docker.io" | "registry.hub.docker.com" | "registry-1.docker.io" => {
            flux_image::reference::DOCKER_HUB_API_HOST.to_string()
        }
        other => other.to_ascii_lowercase(),
    }
}

impl Credentials {
    /// No credentials: every registry is asked anonymously.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// Reads a docker `config.json`; a missing file gives no credentials.
    pub fn from_docker_config_file(path: &Path) -> Result<Credentials, CredentialError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::none()),
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Credentials::from_docker_config(&text, &path.display().to_string())
    }

    /// Reads the text of a docker `config.json`; `origin` names it in errors.
    pub fn from_docker_config(text: &str, origin: &str) -> Result<Credentials, CredentialError> {
        let config: DockerConfig =
            serde_json::from_str(text).map_err(|e| CredentialError::Json {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        let mut credentials = Credentials::from_auths(config.auths, origin)?;
        credentials.helpers = config
            .cred_helpers
            .into_iter()
            .map(|(host, helper)| (registry_key(&host), helper))
            .collect();
        credentials.store = config.creds_store.filter(|s| !s.is_empty());
        Ok(credentials)
    }

    /// Reads the data of a Kubernetes image pull secret, already base64
    /// decoded: key `.dockerconfigjson` (a whole `config.json`) or
    /// `.dockercfg` (just the `auths` map).
    pub fn from_kubernetes_secret(
        data: &BTreeMap<String, Vec<u8>>,
        origin: &str,
    ) -> Result<Credentials, CredentialError> {
        if let Some(bytes) = data.get(".dockerconfigjson") {
            let text = String::from_utf8_lossy(bytes);
            let mut credentials = Credentials::from_docker_config(&text, origin)?;
            // A secret in a cluster cannot run programs on our side.
            credentials.helpers.clear();
            credentials.store = None;
            return Ok(credentials);
        }
        if let Some(bytes) = data.get(".dockercfg") {
            let auths: BTreeMap<String, AuthEntry> =
                serde_json::from_slice(bytes).map_err(|e| CredentialError::Json {
                    origin: origin.to_string(),
                    message: e.to_string(),
                })?;
            return Credentials::from_auths(auths, origin);
        }
        Ok(Credentials::none())
    }

    fn from_auths(
        auths: BTreeMap<String, AuthEntry>,
        origin: &str,
    ) -> Result<Credentials, CredentialError> {
        let mut static_entries = BTreeMap::new();
        for (server, entry) in auths {
            let host = registry_key(&server);
            if let Some(credential) = entry_credential(&entry, origin, &host)? {
                static_entries.insert(host, credential);
            }
        }
        Ok(Credentials {
            static_entries,
            ..Credentials::default()
        })
    }

    /// Adds `other`'s entries; `other` wins where both name a host.
    pub fn merge(&mut self, other: Credentials) {
        self.static_entries.extend(other.static_entries);
        self.helpers.extend(other.helpers);
        if other.store.is_some() {
            self.store = other.store;
        }
    }

    /// Adds one credential for `host` (as in a reference: `quay.io`, `localhost:5000`).
    pub fn insert(&mut self, host: &str, credential: Credential) {
        self.static_entries.insert(registry_key(host), credential);
    }

    /// The credential for an API host: a per-host helper first, then a
    /// static entry, then the default store.
    pub async fn lookup(&self, api_host: &str) -> Result<Option<Credential>, CredentialError> {
        let key = registry_key(api_host);
        if let Some(helper) = self.helpers.get(&key) {
            return self.ask_helper(helper, &key).await;
        }
        if let Some(credential) = self.static_entries.get(&key) {
            return Ok(Some(credential.clone()));
        }
        match &self.store {
            Some(store) => self.ask_helper(store, &key).await,
            None => Ok(None),
        }
    }

    /// Runs `docker-credential-<helper> get` with the server on stdin.
    async fn ask_helper(
        &self,
        helper: &str,
        host: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        let failure = |message: String| CredentialError::Helper {
            helper: helper.to_string(),
            host: host.to_string(),
            message,
        };
        // Helpers file Docker Hub under its v1 index URL.
        let server = if host == flux_image::reference::DOCKER_HUB_API_HOST {
            "https://index.docker.io/v1/".to_string()
        } else {
            host.to_string()
        };
        let mut command = tokio::process::Command::new(format!("docker-credential-{helper}"));
        command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = &self.helper_path {
            command.env("PATH", path);
        }
        let mut child = command.spawn().map_err(|e| failure(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(server.as_bytes())
                .await
                .map_err(|e| failure(e.to_string()))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| failure(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            // The protocol's way of saying "nothing stored for this server".
            if stdout.contains("credentials not found") {
                return Ok(None);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(failure(format!(
                "{}: {}{}",
                output.status,
                stdout.trim(),
                stderr.trim()
            )));
        }
        let answer: HelperAnswer = serde_json::from_str(&stdout)
            .map_err(|e| failure(format!("unreadable answer: {e}")))?;
        Ok(Some(Credential {
            username: answer.username,
            password: answer.secret,
        }))
    }
}

fn entry_credential(
    entry: &AuthEntry,
    origin: &str,
    host: &str,
) -> Result<Option<Credential>, CredentialError> {
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credential {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let bad = || CredentialError::BadAuth {
        origin: origin.to_string(),
        host: host.to_string(),
    };
    let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credential {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// An auth challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Ask `realm` for a token for `service` and `scope`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service to name in the token request.
        service: Option<String>,
        /// The scope the registry asked for, when it said.
        scope: Option<String>,
    },
    /// Send the username and password with every request.
    Basic,
}

/// Reads a `WWW-Authenticate` header; `None` for schemes we do not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = challenge_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value",key=value` pairs; quoted values may hold commas.
fn challenge_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            read_quoted(quoted)
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

fn read_quoted(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &text[i + 1..]),
            other => value.push(other),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_scope_and_commas_in_quotes() {
        let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "a bearer challenge needs a realm"
        );
    }

    #[test]
    fn docker_config_auths_helpers_and_store() {
        let text = r#"{
          "auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "quay.io": {"username": "q", "password": "p"},
            "ghcr.io": {}
          },
          "credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"},
          "credsStore": "desktop"
        }"#;
        let credentials = Credentials::from_docker_config(text, "config.json").unwrap();
        assert_eq!(
            credentials.static_entries["registry-1.docker.io"],
            Credential {
                username: "user".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(credentials.static_entries["quay.io"].username, "q");
        assert!(!credentials.static_entries.contains_key("ghcr.io"));
        assert_eq!(
            credentials.helpers["123.dkr.ecr.eu-west-1.amazonaws.com"],
            "ecr-login"
        );
        assert_eq!(credentials.store.as_deref(), Some("desktop"));
    }

    #[test]
    fn malformed_config_names_its_origin_and_line() {
        let err =
            Credentials::from_docker_config("{\n \"auths\": [", "/home/u/.docker/config.json")
                .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/home/u/.docker/config.json"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_auth_field_is_refused_with_the_host() {
        let err = Credentials::from_docker_config(
            r#"{"auths":{"quay.io":{"auth":"bm9jb2xvbg=="}}}"#,
            "c",
        )
        .unwrap_err();
        assert!(err.to_string().contains("quay.io"));
    }

    #[tokio::test]
    async fn kubernetes_secrets_of_both_types() {
        let new_style = BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            br#"{"auths":{"registry.example:5000":{"username":"a","password":"b"}},"credsStore":"x"}"#.to_vec(),
        )]);
        let credentials =
            Credentials::from_kubernetes_secret(&new_style, "secret default/pull").unwrap();
        let found = credentials.lookup("registry.example:5000").await.unwrap();
        assert_eq!(found.map(|c| c.username), Some("a".into()));
        assert_eq!(
            credentials.lookup("other.example").await.unwrap(),
            None,
            "no helper runs for a secret"
        );

        let old_style = BTreeMap::from([(
            ".dockercfg".to_string(),
            br#"{"https://index.docker.io/v1/":{"auth":"dTpw"}}"#.to_vec(),
        )]);
        let credentials = Credentials::from_kubernetes_secret(&old_style, "secret").unwrap();
        let found = credentials.lookup("registry-1.docker.io").await.unwrap();
        assert_eq!(found.map(|c| c.password), Some("p".into()));
    }

    #[tokio::test]
    async fn helpers_are_run_with_the_server_on_stdin() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-fake");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n\
             case \"$server\" in\n\
               https://index.docker.io/v1/) echo '{\"ServerURL\":\"x\",\"Username\":\"hub\",\"Secret\":\"s1\"}';;\n\
               quay.io) echo '{\"ServerURL\":\"x\",\"Username\":\"quay\",\"Secret\":\"s2\"}';;\n\
               *) echo 'credentials not found in native keychain'; exit 1;;\n\
             esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut credentials = Credentials::from_docker_config(
            r#"{"credHelpers":{"quay.io":"fake"},"credsStore":"fake"}"#,
            "c",
        )
        .unwrap();
        credentials.helper_path = Some(format!("{}:/usr/bin:/bin", dir.path().display()).into());
        let quay = credentials.lookup("quay.io").await.unwrap().unwrap();
        assert_eq!(
            (quay.username.as_str(), quay.password.as_str()),
            ("quay", "s2")
        );
        let hub = credentials
            .lookup("registry-1.docker.io")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hub.username, "hub");
        assert_eq!(credentials.lookup("ghcr.io").await.unwrap(), None);
    }
}
