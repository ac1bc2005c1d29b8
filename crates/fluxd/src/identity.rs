//! The deploy key kept in a Kubernetes Secret, so that it outlives the pod.
//!
//! With a cluster and an ssh repo URL, fluxd reads the private key from the
//! Secret's data key (`--k8s-secret-name`, `--k8s-secret-data-key`) at every
//! start and writes it to the data folder for git's ssh. When the Secret is
//! missing or holds no key, the key in the data folder (made if absent) is
//! written into it. A new key from `POST /api/v1/identity` goes into the
//! Secret before it replaces the one in the data folder, so the two never
//! disagree for longer than a rename. Without a cluster the data folder is
//! the only home of the key.

use std::path::{Path, PathBuf};

use flux_git::{DeployKey, GitError};

use crate::secret::{ClusterSecret, SecretError};

/// Comment on keys fluxd makes.
const COMMENT: &str = "fluxd";

/// Why the deploy key could not be read, made or kept.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The API server refused or failed a read or write of the Secret.
    #[error("deploy key {0}")]
    Secret(#[from] SecretError),
    /// The key files in the data folder could not be made or read.
    #[error("deploy key in {dir}: {source}")]
    File {
        /// The folder of the key files.
        dir: PathBuf,
        /// What went wrong.
        source: GitError,
    },
}

/// Where in the cluster the deploy key lives: a data key of a Secret.
#[derive(Clone)]
pub struct KeySecret {
    secret: ClusterSecret,
    key: String,
}

impl KeySecret {
    /// The Secret `name` in `namespace`, or in the client's own namespace
    /// (inside a pod, the service account's) when none is given; the key
    /// sits under `key` in its data.
    pub fn new(client: kube::Client, namespace: Option<&str>, name: &str, key: &str) -> Self {
        Self {
            secret: ClusterSecret::new(client, namespace, name),
            key: key.to_string(),
        }
    }

    /// The private key the Secret holds; None when the Secret is missing or
    /// has nothing under the data key.
    pub async fn read(&self) -> Result<Option<Vec<u8>>, KeyError> {
        Ok(self.secret.read(&self.key).await?)
    }

    /// Puts `private` under the data key (other data keys are left as they are).
    pub async fn write(&self, private: &[u8]) -> Result<(), KeyError> {
        Ok(self.secret.write(&self.key, private).await?)
    }
}

/// The deploy key in `dir`: the Secret's when it holds one, else the one in
/// `dir` (made if absent), then stored in the Secret.
pub async fn ensure(dir: &Path, secret: Option<&KeySecret>) -> Result<DeployKey, KeyError> {
    let file = |source| KeyError::File {
        dir: dir.to_path_buf(),
        source,
    };
    let Some(secret) = secret else {
        return DeployKey::ensure(dir, COMMENT).await.map_err(file);
    };
    if let Some(private) = secret.read().await? {
        restore(dir, &private).await.map_err(file)?;
        tracing::info!(secret = %secret.secret, "deploy key read from the Secret");
        return DeployKey::ensure(dir, COMMENT).await.map_err(file);
    }
    let key = DeployKey::ensure(dir, COMMENT).await.map_err(file)?;
    let private = read(key.private_key()).await.map_err(file)?;
    secret.write(&private).await?;
    tracing::info!(secret = %secret.secret, "deploy key stored in the Secret");
    Ok(key)
}

/// Makes a new key, stores it in the Secret (if any), then puts it in `dir`
/// in place of the old one. A Secret that refuses the write leaves the old
/// key everywhere.
pub async fn regenerate(dir: &Path, secret: Option<&KeySecret>) -> Result<DeployKey, KeyError> {
    let file = |source| KeyError::File {
        dir: dir.to_path_buf(),
        source,
    };
    let staging = dir.join("next");
    remove_dir(&staging).await.map_err(file)?;
    let staged = DeployKey::ensure(&staging, COMMENT).await.map_err(file)?;
    if let Some(secret) = secret {
        let private = read(staged.private_key()).await.map_err(file)?;
        secret.write(&private).await?;
    }
    let key = DeployKey::at(dir.join(flux_git::deploy_key::KEY_FILE));
    for (from, to) in [
        (
            staged.private_key().to_path_buf(),
            key.private_key().to_path_buf(),
        ),
        (staged.public_key(), key.public_key()),
    ] {
        tokio::fs::rename(&from, &to)
            .await
            .map_err(|e| file(io_error(&from, e)))?;
    }
    remove_dir(&staging).await.map_err(file)?;
    Ok(key)
}

/// Writes `private` (0600 from the start) and the public key derived from it
/// into `dir`.
async fn restore(dir: &Path, private: &[u8]) -> Result<(), GitError> {
    use tokio::io::AsyncWriteExt;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io_error(dir, e))?;
    let key = DeployKey::at(dir.join(flux_git::deploy_key::KEY_FILE));
    let path = key.private_key().to_path_buf();
    // Replace rather than overwrite: an old file may have other modes.
    let _ = tokio::fs::remove_file(&path).await;
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .await
        .map_err(|e| io_error(&path, e))?;
    out.write_all(private)
        .await
        .map_err(|e| io_error(&path, e))?;
    // ssh-keygen refuses a key without its final newline.
    if !private.ends_with(b"\n") {
        out.write_all(b"\n").await.map_err(|e| io_error(&path, e))?;
    }
    out.flush().await.map_err(|e| io_error(&path, e))?;
    let derived = tokio::process::Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&path)
        .output()
        .await
        .map_err(|e| io_error(&path, e))?;
    if !derived.status.success() {
        return Err(GitError::Output {
            program: "ssh-keygen -y".into(),
            detail: format!(
                "the key from the Secret is not a private key ssh reads: {}",
                String::from_utf8_lossy(&derived.stderr).trim()
            ),
        });
    }
    let public = key.public_key();
    tokio::fs::write(&public, &derived.stdout)
        .await
        .map_err(|e| io_error(&public, e))
}

async fn read(path: &Path) -> Result<Vec<u8>, GitError> {
    tokio::fs::read(path).await.map_err(|e| io_error(path, e))
}

async fn remove_dir(dir: &Path) -> Result<(), GitError> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(dir, e)),
        _ => Ok(()),
    }
}

fn io_error(path: impl Into<PathBuf>, source: std::io::Error) -> GitError {
    GitError::Io {
        path: path.into(),
        source,
    }
}
