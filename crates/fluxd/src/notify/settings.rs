//! The notification endpoints fluxd was given: from the `--notify-*` flags
//! and from a `--notify-config` file, with secrets read from files.
//!
//! The file is YAML (or JSON):
//!
//! ```yaml
//! endpoints:
//! - kind: slack                      # webhook, slack, teams or discord
//!   urlFile: /etc/fluxd/slack-url    # or url: https://...
//!   events: [release, automation]    # default: every kind
//!   workloads: ["sock-shop:*"]       # default: every workload
//! - kind: webhook
//!   url: https://ci.example.com/flux
//!   secretFile: /etc/fluxd/notify-secret
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::NoticeKind;
use super::deliver::{Endpoint, EndpointKind};
use super::select::Selection;
use crate::config::Config;

/// Why the notification settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A secret, URL or config file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret or URL file holds nothing.
    #[error("{}: the file is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The config file is not what it should be.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, for people.
        message: String,
    },
    /// Secret files and webhooks do not pair up.
    #[error(
        "--notify-webhook-secret-file: {secrets} given for {webhooks} --notify-webhook; give one for all or one per webhook, in order"
    )]
    SecretCount {
        /// Secret files given.
        secrets: usize,
        /// Webhooks given.
        webhooks: usize,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    endpoints: Vec<FileEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileEndpoint {
    kind: String,
    url: Option<String>,
    url_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    workloads: Vec<String>,
}

/// The text of a secret (or URL) file, without its trailing newline.
pub fn read_secret(path: &Path) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.trim().is_empty() {
        return Err(SettingsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

fn endpoint_kind(text: &str) -> Option<EndpointKind> {
    [
        EndpointKind::Webhook,
        EndpointKind::Slack,
        EndpointKind::Teams,
        EndpointKind::Discord,
    ]
    .into_iter()
    .find(|kind| kind.as_str() == text)
}

/// The endpoints of the flags, then those of the `--notify-config` file.
pub fn endpoints(config: &Config) -> Result<Vec<Endpoint>, SettingsError> {
    let selection = Selection {
        kinds: config.notify_events.iter().copied().collect(),
        workloads: config.notify_workloads.clone(),
    };
    let secrets = config
        .notify_webhook_secret_files
        .iter()
        .map(|path| read_secret(path))
        .collect::<Result<Vec<_>, _>>()?;
    let webhooks = config.notify_webhooks.len();
    if secrets.len() > 1 && secrets.len() != webhooks {
        return Err(SettingsError::SecretCount {
            secrets: secrets.len(),
            webhooks,
        });
    }
    let mut out = Vec::new();
    for (n, url) in config.notify_webhooks.iter().enumerate() {
        let secret = secrets.get(n).or(secrets.first()).cloned();
        out.push(Endpoint {
            kind: EndpointKind::Webhook,
            url: url.clone(),
            secret,
            selection: selection.clone(),
        });
    }
    let chats = [
        (EndpointKind::Slack, &config.notify_slack),
        (EndpointKind::Teams, &config.notify_teams),
        (EndpointKind::Discord, &config.notify_discord),
    ];
    for (kind, urls) in chats {
        out.extend(urls.iter().map(|url| Endpoint {
            kind,
            url: url.clone(),
            secret: None,
            selection: selection.clone(),
        }));
    }
    if let Some(path) = &config.notify_config {
        out.extend(from_file(path)?);
    }
    Ok(out)
}

/// The endpoints of a notification config file.
pub fn from_file(path: &Path) -> Result<Vec<Endpoint>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| SettingsError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let file: File = serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::new();
    for (n, entry) in file.endpoints.into_iter().enumerate() {
        let at = format!("endpoints[{n}]");
        let kind = endpoint_kind(&entry.kind).ok_or_else(|| {
            invalid(format!(
                "{at}.kind: {:?} is not one of webhook, slack, teams, discord",
                entry.kind
            ))
        })?;
        let url = match (entry.url, entry.url_file) {
            (Some(url), None) => url,
            (None, Some(file)) => read_secret(&file)?,
            _ => return Err(invalid(format!("{at}: give one of url and urlFile"))),
        };
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(invalid(format!("{at}: the URL must be http or https")));
        }
        let secret = entry.secret_file.as_deref().map(read_secret).transpose()?;
        let kinds = entry
            .events
            .iter()
            .map(|text| text.parse::<NoticeKind>())
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|e| invalid(format!("{at}.events: {e}")))?;
        out.push(Endpoint {
            kind,
            url,
            secret,
            selection: Selection {
                kinds,
                workloads: entry.workloads,
            },
        });
    }
    Ok(out)
}

/// fluxd's own Pod, from the `POD_NAME` and `POD_NAMESPACE` environment
/// variables (the downward API), for events that concern no object.
pub fn own_pod() -> Option<super::ObjectRef> {
    let name = std::env::var("POD_NAME").ok().filter(|n| !n.is_empty())?;
    let namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())?;
    Some(super::ObjectRef::new("v1", "Pod", Some(&namespace), &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_names_endpoints_with_their_selection_and_secrets() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").expect("writable");
        let file = dir.path().join("notify.yaml");
        let text = format!(
            "endpoints:\n- kind: webhook\n  url: https://ci.example.com/flux\n  secretFile: {}\n  events: [release, sync-error]\n  workloads: ['sock-shop:*']\n",
            secret.display()
        );
        std::fs::write(&file, text).expect("writable");
        let endpoints = from_file(&file).expect("a valid file");
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].secret.as_deref(), Some("s3cret"));
        assert_eq!(
            endpoints[0].selection.kinds,
            [NoticeKind::Release, NoticeKind::SyncError].into()
        );
        assert_eq!(endpoints[0].selection.workloads, vec!["sock-shop:*"]);
    }

    #[test]
    fn a_bad_kind_in_the_file_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("notify.yaml");
        std::fs::write(&file, "endpoints:\n- kind: irc\n  url: https://x\n").expect("writable");
        let error = from_file(&file).unwrap_err().to_string();
        assert!(error.contains("endpoints[0].kind: \"irc\""), "{error}");
    }

    #[test]
    fn an_empty_secret_file_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "\n").expect("writable");
        let error = read_secret(&secret).unwrap_err().to_string();
        assert!(error.ends_with("the file is empty"), "{error}");
    }
}
