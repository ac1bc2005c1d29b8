//! Webhook receivers: turn a registry's or git host's notification into the
//! [`Change`]s the daemon acts on, after checking the sender's secret.
//!
//! Each sender proves itself its own way: an HMAC-SHA256 signature of the
//! body (GitHub, Gitea, GitHub packages, the generic receiver), a shared
//! token in a header (GitLab, Harbor, the distribution registry's
//! `Authorization` header), or, for senders that can do neither (Docker Hub,
//! Quay), a secret in the hook's URL.

use flux_api::Change;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// The senders we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The CNCF distribution registry's notifications.
    Registry,
    /// Docker Hub repository webhooks.
    DockerHub,
    /// Quay repository notifications.
    Quay,
    /// Harbor webhooks (`PUSH_ARTIFACT`).
    Harbor,
    /// GitHub `package` / `registry_package` events.
    GithubPackages,
    /// `{"image": "repo:tag"}` or `{"name": "repo"}`, signed with HMAC.
    Generic,
    /// GitHub `push` events.
    Github,
    /// GitLab push hooks.
    Gitlab,
    /// Gitea push hooks.
    Gitea,
}

impl Sender {
    /// The sender served at `/hooks/<name>`.
    pub fn from_path(name: &str) -> Option<Sender> {
        Some(match name {
            "registry" => Sender::Registry,
            "dockerhub" => Sender::DockerHub,
            "quay" => Sender::Quay,
            "harbor" => Sender::Harbor,
            "github-packages" => Sender::GithubPackages,
            "generic" => Sender::Generic,
            "github" => Sender::Github,
            "gitlab" => Sender::Gitlab,
            "gitea" => Sender::Gitea,
            _ => return None,
        })
    }
}

/// What a webhook request carries besides its body.
#[derive(Debug, Clone, Default)]
pub struct Delivery<'a> {
    /// Header lookup, case-insensitive names.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The secret given in the hook's URL, for senders that cannot sign.
    pub url_secret: Option<&'a str>,
}

impl Delivery<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The secret or signature is missing or wrong.
    #[error("webhook secret or signature missing or wrong")]
    Unauthenticated,
    /// The body is not what this sender sends.
    #[error("cannot read the {sender} webhook body: {message}")]
    Payload {
        /// The sender's name.
        sender: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// Checks the delivery against `secret` and reads the changes it announces.
///
/// Events that announce nothing we act on (a pull, a tag deletion, a ping)
/// yield no changes rather than an error, so senders don't retry them.
pub fn receive(
    sender: Sender,
    secret: &str,
    delivery: &Delivery<'_>,
    body: &[u8],
) -> Result<Vec<Change>, WebhookError> {
    authenticate(sender, secret, delivery, body)?;
    let name = sender_name(sender);
    let payload: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Payload {
        sender: name,
        message: e.to_string(),
    })?;
    let payload_error = |message: &str| WebhookError::Payload {
        sender: name,
        message: message.to_string(),
    };
    match sender {
        Sender::Registry => registry_changes(payload).map_err(|e| payload_error(&e)),
        Sender::DockerHub => one_image(pointer_str(&payload, "/repository/repo_name"))
            .ok_or_else(|| payload_error("no repository.repo_name")),
        Sender::Quay => one_image(pointer_str(&payload, "/docker_url"))
            .ok_or_else(|| payload_error("no docker_url")),
        Sender::Harbor => {
            harbor_changes(&payload).ok_or_else(|| payload_error("no event_data.resources"))
        }
        Sender::GithubPackages => Ok(github_package_changes(&payload, delivery)),
        Sender::Generic => {
            generic_changes(&payload).ok_or_else(|| payload_error("expected \"image\" or \"name\""))
        }
        Sender::Github | Sender::Gitea => Ok(git_push(&payload, delivery, sender)),
        Sender::Gitlab => Ok(git_push(&payload, delivery, sender)),
    }
}

/// Whether the sender proves itself with a signature of the body, which
/// can only be checked once the body is read (rather than with a token in a
/// header or the URL).
pub fn signs_the_body(sender: Sender) -> bool {
    matches!(
        sender,
        Sender::Github | Sender::GithubPackages | Sender::Gitea | Sender::Generic
    )
}

/// Checks a sender that proves itself with a token before its body is
/// read, so a stranger cannot make us read one; senders that sign the body
/// pass here and are checked by [`receive`].
pub fn admit(sender: Sender, secret: &str, delivery: &Delivery<'_>) -> Result<(), WebhookError> {
    if signs_the_body(sender) {
        return Ok(());
    }
    authenticate(sender, secret, delivery, &[])
}

fn sender_name(sender: Sender) -> &'static str {
    match sender {
        Sender::Registry => "registry",
        Sender::DockerHub => "Docker Hub",
        Sender::Quay => "Quay",
        Sender::Harbor => "Harbor",
        Sender::GithubPackages => "GitHub packages",
        Sender::Generic => "generic",
        Sender::Github => "GitHub",
        Sender::Gitlab => "GitLab",
        Sender::Gitea => "Gitea",
    }
}

fn authenticate(
    sender: Sender,
    secret: &str,
    delivery: &Delivery<'_>,
    body: &[u8],
) -> Result<(), WebhookError> {
    let ok = match sender {
        Sender::Github | Sender::GithubPackages => delivery
            .header("X-Hub-Signature-256")
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|sig| signature_matches(secret, body, sig)),
        Sender::Gitea => delivery
            .header("X-Gitea-Signature")
            .is_some_and(|sig| signature_matches(secret, body, sig)),
        Sender::Generic => delivery
            .header("X-Signature")
            .map(|s| s.strip_prefix("sha256=").unwrap_or(s))
            .is_some_and(|sig| signature_matches(secret, body, sig)),
        Sender::Gitlab => delivery
            .header("X-Gitlab-Token")
            .is_some_and(|t| same(t, secret)),
        Sender::Registry | Sender::Harbor => delivery
            .header("Authorization")
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
            .is_some_and(|t| same(t, secret)),
        Sender::DockerHub | Sender::Quay => delivery.url_secret.is_some_and(|t| same(t, secret)),
    };
    if ok {
        Ok(())
    } else {
        Err(WebhookError::Unauthenticated)
    }
}

/// Constant-time comparison of an HMAC-SHA256 hex signature of `body`.
fn signature_matches(secret: &str, body: &[u8], hex_signature: &str) -> bool {
    let Ok(signature) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Constant-time equality, so a token can't be guessed byte by byte:
/// digests of both are compared, which hides the secret's length too.
pub(crate) fn same(given: &str, secret: &str) -> bool {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    if secret.is_empty() {
        return false;
    }
    let given = Sha256::digest(given.as_bytes());
    let secret = Sha256::digest(secret.as_bytes());
    given.ct_eq(&secret).into()
}

/// The HMAC-SHA256 hex signature of `body` under `secret`, as senders compute it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn pointer_str<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// A repository name (with or without tag) as an image change.
fn one_image(name: Option<&str>) -> Option<Vec<Change>> {
    Some(vec![image_change(name?)])
}

fn image_change(reference: &str) -> Change {
    // Keep only the repository: the daemon rescans it whatever the tag.
    let name = flux_image::ImageRef::parse(reference)
        .map(|r| r.name().familiar())
        .unwrap_or_else(|_| reference.to_string());
    Change::Image { name }
}

#[derive(Deserialize)]
struct RegistryEnvelope {
    events: Vec<RegistryEvent>,
}

#[derive(Deserialize)]
struct RegistryEvent {
    action: String,
    target: RegistryTarget,
    #[serde(default)]
    request: RegistryRequest,
}

#[derive(Deserialize)]
struct RegistryTarget {
    repository: String,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize, Default)]
struct RegistryRequest {
    #[serde(default)]
    host: String,
}

/// Distribution registry events: a `push` of a tagged manifest names the
/// repository at the host the pusher used.
fn registry_changes(payload: Value) -> Result<Vec<Change>, String> {
    let envelope: RegistryEnvelope = serde_json::from_value(payload).map_err(|e| e.to_string())?;
    let mut changes: Vec<Change> = Vec::new();
    for event in envelope.events {
        if event.action != "push" || event.target.tag.is_none() {
            continue;
        }
        let name = if event.request.host.is_empty() {
            event.target.repository
        } else {
            format!("{}/{}", event.request.host, event.target.repository)
        };
        let change = image_change(&name);
        if !changes.contains(&change) {
            changes.push(change);
        }
    }
    Ok(changes)
}

fn harbor_changes(payload: &Value) -> Option<Vec<Change>> {
    let resources = payload.pointer("/event_data/resources")?.as_array()?;
    let mut changes: Vec<Change> = Vec::new();
    for url in resources
        .iter()
        .filter_map(|r| r.get("resource_url").and_then(Value::as_str))
    {
        let change = image_change(url);
        if !changes.contains(&change) {
            changes.push(change);
        }
    }
    Some(changes)
}

fn github_package_changes(payload: &Value, delivery: &Delivery<'_>) -> Vec<Change> {
    let event = delivery.header("X-GitHub-Event").unwrap_or("");
    if event == "ping" {
        return Vec::new();
    }
    let package = payload
        .get("package")
        .or_else(|| payload.get("registry_package"));
    let url = package.and_then(|p| pointer_str(p, "/package_version/package_url"));
    url.map(|u| vec![image_change(u)]).unwrap_or_default()
}

fn generic_changes(payload: &Value) -> Option<Vec<Change>> {
    let name = payload
        .get("image")
        .or_else(|| payload.get("name"))?
        .as_str()?;
    Some(vec![image_change(name)])
}

/// A push to any branch is a reason to fetch; the daemon knows its branch.
fn git_push(payload: &Value, delivery: &Delivery<'_>, sender: Sender) -> Vec<Change> {
    let event_header = match sender {
        Sender::Github => "X-GitHub-Event",
        Sender::Gitea => "X-Gitea-Event",
        _ => "X-Gitlab-Event",
    };
    let event = delivery
        .header(event_header)
        .unwrap_or("push")
        .to_ascii_lowercase();
    if !(event == "push" || event == "push hook") {
        return Vec::new();
    }
    let branch = pointer_str(payload, "/ref")
        .and_then(|r| r.strip_prefix("refs/heads/"))
        .map(str::to_string);
    vec![Change::Git { branch }]
}
