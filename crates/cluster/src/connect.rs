//! Reaching the cluster as kubectl does: a kubeconfig (`KUBECONFIG`, an explicit file,
//! a context) or, inside a pod, the in-cluster service account.

use std::path::PathBuf;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use crate::ClusterError;

/// Where the cluster's address and credentials come from.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// An explicit kubeconfig file (`--kubeconfig`); otherwise `KUBECONFIG` or
    /// `~/.kube/config`, and then the in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig (`--context`); otherwise its current context.
    pub context: Option<String>,
}

impl Connection {
    /// The client configuration this connection describes.
    pub async fn config(&self) -> Result<Config, ClusterError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        if let Some(path) = &self.kubeconfig {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                    origin: path.display().to_string(),
                    source,
                })?;
            return Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|source| ClusterError::Kubeconfig {
                    origin: path.display().to_string(),
                    source,
                });
        }
        if self.context.is_some() {
            return Config::from_kubeconfig(&options).await.map_err(|source| {
                ClusterError::Kubeconfig {
                    origin: "KUBECONFIG".into(),
                    source,
                }
            });
        }
        Config::infer()
            .await
            .map_err(|e| ClusterError::NoConfig(e.to_string()))
    }

    /// A client for the cluster.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        let config = self.config().await?;
        kube::Client::try_from(config).map_err(ClusterError::Api)
    }
}
