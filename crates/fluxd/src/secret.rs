//! Secrets fluxd keeps: the API bearer token and the webhook secret, in files
//! or, with `--k8s-api-secret-name`, in a Kubernetes Secret so that they
//! outlive the pod. Made on first start (random; files 0600) so that a fresh
//! daemon is never open, and read on every start after.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// Reads the secret in `path`, or makes a new one there when the file is
/// absent. Returns the secret and whether it was just made.
pub fn load_or_create(path: &Path) -> io::Result<(String, bool)> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().to_string();
            if secret.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is empty; delete it to have a new secret made",
                        path.display()
                    ),
                ));
            }
            Ok((secret, false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path).map(|s| (s, true)),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("reading {}: {e}", path.display()),
        )),
    }
}

/// A new random secret: 32 bytes, hex.
fn random() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn create(path: &Path) -> io::Result<String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let secret = random();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    writeln!(file, "{secret}")?;
    Ok(secret)
}

/// The API server refused or failed a read or write of a Secret.
#[derive(Debug, thiserror::Error)]
#[error("Secret {secret}: {source}")]
pub struct SecretError {
    /// `<namespace>/<name>`.
    pub secret: String,
    /// What the API server said.
    pub source: kube::Error,
}

/// A Secret fluxd keeps some of its state in, one data key per thing kept.
#[derive(Clone)]
pub struct ClusterSecret {
    api: Api<Secret>,
    namespace: String,
    name: String,
}

impl std::fmt::Display for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ClusterSecret {
    /// The Secret `name` in `namespace`, or in the client's own namespace
    /// (inside a pod, the service account's) when none is given.
    pub fn new(client: kube::Client, namespace: Option<&str>, name: &str) -> Self {
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| client.default_namespace().to_string());
        Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: name.to_string(),
        }
    }

    fn failed(&self, source: kube::Error) -> SecretError {
        SecretError {
            secret: self.to_string(),
            source,
        }
    }

    /// What the Secret holds under `key`; None when the Secret is missing or
    /// holds nothing there.
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, SecretError> {
        let secret = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(secret
            .and_then(|secret| secret.data)
            .and_then(|mut data| data.remove(key))
            .map(|bytes| bytes.0)
            .filter(|bytes| !bytes.is_empty()))
    }

    /// Puts `value` under `key`: creates the Secret when missing, patches it
    /// otherwise (other data keys are left as they are).
    pub async fn write(&self, key: &str, value: &[u8]) -> Result<(), SecretError> {
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.failed(e))?;
        let data = [(key.to_string(), ByteString(value.to_vec()))].into();
        if existing.is_none() {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..Secret::default()
            };
            self.api
                .create(&PostParams::default(), &secret)
                .await
                .map_err(|e| self.failed(e))?;
            return Ok(());
        }
        let patch = serde_json::json!({ "data": data });
        self.api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// The secret under `key`, or a new random one stored there when it holds
    /// none. Returns it and whether it was just made. Replicas starting at
    /// once agree: the write carries the resourceVersion it read (a create,
    /// none), so of two writers the API server keeps one and the other reads
    /// what was kept.
    pub async fn load_or_create(&self, key: &str) -> Result<(String, bool), SecretError> {
        loop {
            let existing = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| self.failed(e))?;
            if let Some(kept) = existing.as_ref().and_then(|secret| text_under(secret, key)) {
                return Ok((kept, false));
            }
            let made = random();
            let data = (key.to_string(), ByteString(made.as_bytes().to_vec()));
            let written = match existing {
                None => {
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            namespace: Some(self.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        data: Some([data].into()),
                        ..Secret::default()
                    };
                    self.api.create(&PostParams::default(), &secret).await
                }
                Some(mut secret) => {
                    secret.data.get_or_insert_default().insert(data.0, data.1);
                    self.api
                        .replace(&self.name, &PostParams::default(), &secret)
                        .await
                }
            };
            match written {
                Ok(_) => return Ok((made, true)),
                // Another replica wrote first: read what it kept.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => return Err(self.failed(error)),
            }
        }
    }
}

/// The text a Secret holds under `key`, trimmed; none when empty.
fn text_under(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8_lossy(&bytes.0).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_secret_is_made_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/api-token");
        let (first, made) = load_or_create(&path).unwrap();
        assert!(made);
        assert_eq!(first.len(), 64);
        let (again, made) = load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(again, first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn replicas_starting_at_once_keep_one_secret() {
        let cluster = flux_testkit::kube::ApiServer::start();
        let connection = flux_cluster::Connection {
            kubeconfig: Some(cluster.kubeconfig()),
            context: None,
        };
        let client = connection.client().await.unwrap();
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let kept = ClusterSecret::new(client.clone(), Some("default"), "flux-api");
                tokio::spawn(async move { kept.load_or_create("api-token").await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for start in starts {
            seen.push(start.await.unwrap());
        }
        let made = seen.iter().filter(|(_, made)| *made).count();
        assert_eq!(made, 1, "{seen:?}");
        assert!(
            seen.iter().all(|(token, _)| *token == seen[0].0),
            "{seen:?}"
        );
    }

    #[test]
    fn an_empty_secret_file_is_an_error_not_an_open_door() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        fs::write(&path, "\n").unwrap();
        assert!(load_or_create(&path).is_err());
    }
}
