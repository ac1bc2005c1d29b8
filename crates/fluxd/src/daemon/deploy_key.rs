//! The deploy key: made or read at start, kept in its Secret with a
//! cluster, shown by the API and replaced on request.

use std::path::Path;

use flux_api::Identity;
use flux_git::DeployKey;

use super::{Inner, StartError};
use crate::config::{ClusterMode, Config};
use crate::identity::{self, KeyError, KeySecret};

/// The Secret of the deploy key: only with a cluster and an ssh URL (with
/// neither there is no key to keep, or nowhere to keep it but the data folder).
pub(super) async fn key_secret(config: &Config) -> Result<Option<KeySecret>, StartError> {
    if config.cluster == ClusterMode::None || !is_ssh_url(&config.git_url) {
        return Ok(None);
    }
    let client = flux_cluster::Connection::default()
        .client()
        .await
        .map_err(StartError::Cluster)?;
    Ok(Some(KeySecret::new(
        client,
        config.k8s_secret_namespace.as_deref(),
        &config.k8s_secret_name,
        &config.k8s_secret_data_key,
    )))
}

pub(super) async fn deploy_key(
    config: &Config,
    secret: Option<&KeySecret>,
) -> Result<(Option<Identity>, Option<flux_git::SshOptions>), StartError> {
    if !is_ssh_url(&config.git_url) {
        return Ok((None, None));
    }
    let dir = config.data_dir.join("ssh");
    let key = identity::ensure(&dir, secret).await.map_err(start_error)?;
    let shown = shown(&key).await.map_err(start_error)?;
    let ssh = key.ssh_options(dir.join("known_hosts"));
    Ok((Some(shown), Some(ssh)))
}

fn start_error(error: KeyError) -> StartError {
    match error {
        KeyError::File { dir, source } => StartError::DeployKey { dir, source },
        secret => StartError::DeployKeySecret(secret),
    }
}

/// What the API shows of `key`.
async fn shown(key: &DeployKey) -> Result<Identity, KeyError> {
    let identity = key.identity().await.map_err(|source| KeyError::File {
        dir: key
            .private_key()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        source,
    })?;
    Ok(Identity {
        public_key: identity.public_key,
        fingerprint: identity.fingerprint,
    })
}

impl Inner {
    /// Replaces the deploy key with a new one, in its Secret first when it
    /// has one, then in `<data-dir>/ssh`; git's ssh reads the key file at
    /// each fetch, so the next one uses it. None when the repo is not
    /// reached over ssh (there is no key).
    pub(super) async fn regenerate_deploy_key(&self) -> Result<Option<Identity>, String> {
        if self.identity_shown().is_none() {
            return Ok(None);
        }
        let dir = self.config.data_dir.join("ssh");
        let failed = |error: KeyError| format!("regenerating the deploy key: {error}");
        let key = identity::regenerate(&dir, self.key_secret.as_ref())
            .await
            .map_err(failed)?;
        let shown = shown(&key).await.map_err(failed)?;
        *self
            .deploy_key
            .write()
            .expect("the deploy key lock is never poisoned") = Some(shown.clone());
        tracing::info!(fingerprint = %shown.fingerprint, "new deploy key");
        Ok(Some(shown))
    }

    pub(super) fn identity_shown(&self) -> Option<Identity> {
        self.deploy_key
            .read()
            .expect("the deploy key lock is never poisoned")
            .clone()
    }
}

fn is_ssh_url(url: &str) -> bool {
    if url.starts_with("ssh://") || url.starts_with("git+ssh://") {
        return true;
    }
    // scp-like `user@host:path`: a colon before any slash, and no scheme.
    !url.contains("://")
        && url
            .split_once(':')
            .is_some_and(|(host, _)| !host.contains('/') && host.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_are_told_from_others() {
        for ssh in [
            "ssh://git@example.com/config.git",
            "git@github.com:team/config.git",
        ] {
            assert!(is_ssh_url(ssh), "{ssh}");
        }
        for other in [
            "https://github.com/team/config.git",
            "file:///tmp/repo.git",
            "/tmp/repo.git",
        ] {
            assert!(!is_ssh_url(other), "{other}");
        }
    }
}
