//! Reaching the cluster as kubectl does: a kubeconfig (`KUBECONFIG`, an explicit file,
//! a context) or, inside a pod, the in-cluster service account.

use std::path::PathBuf;
use std::time::Duration;

use kube::client::ClientBuilder;
use kube::client::retry::RetryPolicy;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;

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

    /// A client for the cluster. Requests answered 429, 503 or 504 are retried three
    /// times within a few seconds (honouring `Retry-After`), not kube's default of
    /// fifteen times over minutes: an aggregated API that is down must not stall
    /// every sync's discovery.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        let mut config = self.config().await?;
        config.default_retry = false;
        let policy = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(2), 3, true)
            .expect("the retry delays are in order");
        let builder = ClientBuilder::try_from(config).map_err(ClusterError::Api)?;
        // Retrying needs a service it can clone: a buffer in front of the stack.
        let client = builder
            .with_layer(&BufferLayer::new(1024))
            .with_layer(&RetryLayer::new(policy))
            .build();
        Ok(client)
    }
}
