//! Delivering notices to notification endpoints: one task per endpoint, so a
//! dead endpoint costs only its own retries, and notices in publishing order,
//! so each workload's notices arrive in the order they happened.
//!
//! A request that times out, cannot connect, or is answered 408, 429 or 5xx
//! is retried with doubling backoff up to [`Retry::attempts`] times, then
//! dropped; any other answer outside 2xx drops it at once. Each outcome is
//! counted in `flux_notifications_total{endpoint, result}`.

use std::fmt;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::task::JoinHandle;

use super::message::{self, WebRepo};
use super::select::Selection;
use super::{Notice, Publisher};
use crate::metrics::NotificationLabels;

/// The header carrying the body's signature: `sha256=<hex HMAC-SHA256 of the
/// body under the shared secret>`, the form fluxd's own generic webhook
/// receiver checks.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// The header naming the notice's kind (`release`).
pub const EVENT_HEADER: &str = "X-Flux-Event";
/// The header with an id that stays the same across retries of one delivery.
pub const DELIVERY_HEADER: &str = "X-Flux-Delivery";

/// What an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// The documented, versioned JSON body, signed when a secret is set.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams incoming webhook.
    Teams,
    /// A Discord webhook.
    Discord,
}

impl EndpointKind {
    /// The kind's name in flags, the config file and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Webhook => "webhook",
            EndpointKind::Slack => "slack",
            EndpointKind::Teams => "teams",
            EndpointKind::Discord => "discord",
        }
    }
}

/// One notification endpoint and the notices it gets.
#[derive(Clone)]
pub struct Endpoint {
    /// What it speaks.
    pub kind: EndpointKind,
    /// Where to POST. Chat webhook URLs carry their token: never logged.
    pub url: String,
    /// The shared secret signing generic webhook bodies.
    pub secret: Option<String>,
    /// Which notices it gets.
    pub selection: Selection,
}

impl Endpoint {
    /// The endpoint as logs show it: kind and host, never the path or secret.
    pub fn display(&self) -> String {
        let host = self
            .url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&self.url)
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or(host);
        format!("{} {host}", self.kind.as_str())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("endpoint", &self.display())
            .field("signed", &self.secret.is_some())
            .field("selection", &self.selection)
            .finish()
    }
}

/// How hard one delivery is tried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Requests per notice, the first included.
    pub attempts: u32,
    /// Wait before the second request; doubles after each.
    pub first_backoff: Duration,
    /// The longest wait between requests.
    pub max_backoff: Duration,
    /// The longest one request may take.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered 2xx after this many requests.
    Delivered(u32),
    /// Given up after this many requests, for this reason.
    Dropped(u32, String),
}

/// Sends notices to one endpoint.
pub struct Deliverer {
    endpoint: Endpoint,
    client: reqwest::Client,
    retry: Retry,
    repo: Option<WebRepo>,
    counts: Family<NotificationLabels, Counter>,
}

impl Deliverer {
    /// A deliverer for `endpoint`; `repo` makes commit links.
    pub fn new(
        endpoint: Endpoint,
        retry: Retry,
        repo: Option<WebRepo>,
        counts: Family<NotificationLabels, Counter>,
    ) -> Deliverer {
        let client = reqwest::Client::builder()
            .timeout(retry.timeout)
            .user_agent(concat!("fluxd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with a timeout and user agent builds");
        Deliverer {
            endpoint,
            client,
            retry,
            repo,
            counts,
        }
    }

    /// The body this endpoint gets for `notice`.
    pub fn body(&self, notice: &Notice) -> Vec<u8> {
        let repo = self.repo.as_ref();
        let body = match self.endpoint.kind {
            EndpointKind::Webhook => message::webhook_body(notice, repo),
            EndpointKind::Slack => message::slack_body(notice, repo),
            EndpointKind::Teams => message::teams_body(notice, repo),
            EndpointKind::Discord => message::discord_body(notice, repo),
        };
        serde_json::to_vec(&body).expect("JSON values serialise")
    }

    fn count(&self, result: &str) {
        self.counts
            .get_or_create(&NotificationLabels::new(
                self.endpoint.kind.as_str(),
                result,
            ))
            .inc();
    }

    /// Delivers `notice`, retrying as [`Retry`] says.
    pub async fn deliver(&self, notice: &Notice) -> Outcome {
        let body = self.body(notice);
        let delivery: String = hex::encode(rand::random::<[u8; 8]>());
        let signature = self
            .endpoint
            .secret
            .as_deref()
            .map(|secret| format!("sha256={}", crate::webhooks::sign(secret, &body)));
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .post(&self.endpoint.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(EVENT_HEADER, notice.kind.as_str())
                .header(DELIVERY_HEADER, &delivery)
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header(SIGNATURE_HEADER, signature);
            }
            let failure = match request.send().await {
                Ok(answer) if answer.status().is_success() => {
                    self.count("delivered");
                    return Outcome::Delivered(attempt);
                }
                Ok(answer) => {
                    let status = answer.status();
                    let retryable = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    if !retryable {
                        return self.drop(notice, attempt, format!("answered {status}"));
                    }
                    format!("answered {status}")
                }
                // The error names the URL, which may carry a token: say only what went wrong.
                Err(error) if error.is_timeout() => "timed out".to_string(),
                Err(error) if error.is_connect() => "could not connect".to_string(),
                Err(_) => "the request failed".to_string(),
            };
            if attempt >= self.retry.attempts {
                return self.drop(notice, attempt, failure);
            }
            self.count("retried");
            tracing::debug!(endpoint = %self.endpoint.display(), attempt, %failure, "notification retried");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    fn drop(&self, notice: &Notice, attempts: u32, reason: String) -> Outcome {
        self.count("dropped");
        tracing::warn!(
            endpoint = %self.endpoint.display(),
            kind = %notice.kind,
            attempts,
            %reason,
            "notification dropped"
        );
        Outcome::Dropped(attempts, reason)
    }

    /// Delivers every notice `publisher` publishes that the endpoint
    /// selects, in order, until the publisher is gone.
    pub fn spawn(self, publisher: &Publisher) -> JoinHandle<()> {
        let mut notices = publisher
            .subscribe()
            .counting(self.counts.clone(), self.endpoint.kind.as_str());
        tokio::spawn(async move {
            while let Some(notice) = notices.next().await {
                if !notice.repeat && self.endpoint.selection.wants(&notice) {
                    self.deliver(&notice).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_shows_its_host_only() {
        let endpoint = Endpoint {
            kind: EndpointKind::Slack,
            url: "https://hooks.slack.com/services/T000/B000/XXXXSECRET".into(),
            secret: Some("s3cret".into()),
            selection: Selection::default(),
        };
        assert_eq!(endpoint.display(), "slack hooks.slack.com");
        let debug = format!("{endpoint:?}");
        assert!(
            !debug.contains("XXXXSECRET") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
