//! The user's current kubeconfig context (`KUBECONFIG`, else
//! `~/.kube/config`), probed so the playground can offer it: a real
//! cluster is never used unless asked for.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// How long the cluster may take to answer `/version`: a context whose
/// cluster is gone must not hold the playground up.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A current context whose cluster answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentContext {
    /// The context's name.
    pub name: String,
    /// Its cluster's API server.
    pub server: String,
}

/// The `KUBECONFIG` value that names the current context: the variable
/// when set (a file or a list of them), else `~/.kube/config` when it exists.
pub fn kubeconfig() -> Option<OsString> {
    if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return Some(value);
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let path = PathBuf::from(home).join(".kube/config");
    path.is_file().then(|| path.into_os_string())
}

/// The current context, when there is one and its cluster answers within
/// [`PROBE_TIMEOUT`]; `None` for anything else (no kubeconfig, no current
/// context, credentials that don't load, a cluster that doesn't answer).
pub async fn probe() -> Option<CurrentContext> {
    tokio::time::timeout(PROBE_TIMEOUT, answering())
        .await
        .ok()
        .flatten()
}

async fn answering() -> Option<CurrentContext> {
    let kubeconfig = Kubeconfig::read().ok()?;
    let name = kubeconfig.current_context.clone()?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .ok()?;
    config.default_retry = false;
    config.connect_timeout = Some(PROBE_TIMEOUT);
    config.read_timeout = Some(PROBE_TIMEOUT);
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::Client::try_from(config).ok()?;
    client.apiserver_version().await.ok()?;
    Some(CurrentContext { name, server })
}
