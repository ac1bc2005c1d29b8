//! A follower's state-changing calls, handed to the leader.
//!
//! With `--leader-election` only the leader runs jobs and syncs, and job ids
//! are the leader's; so a follower sends `POST /api/v1/jobs`,
//! `POST /api/v1/sync`, `POST /api/v1/identity` and the job status calls
//! (`GET /api/v1/jobs`, `GET /api/v1/jobs/{id}`) on to the leader's address
//! from the Lease, as they came (bearer token included), and answers with the
//! leader's answer. When no leader is known or it cannot be reached, the
//! call is refused with 503 naming the leader and why. Reads and webhooks
//! (which only wake loops) are answered where they arrive.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use flux_api::ApiError;

use crate::daemon::leader::{Leader, Leadership, Role};
use crate::server::API_BODY_LIMIT;

/// Set on a forwarded call: the follower that sent it. A replica that is
/// not the leader refuses such a call rather than sending it on again.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("x-flux-forwarded-by");

/// The headers a forwarded call keeps.
const KEPT: [HeaderName; 3] = [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];

#[derive(Clone)]
struct Forwarding {
    leadership: Leadership,
    http: reqwest::Client,
}

/// `router`, with the calls only the leader answers sent to it while this
/// replica follows.
pub fn to_leader(router: Router, leadership: Leadership) -> Router {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        // A job status call may long-poll; a leader that stops answering
        // altogether is given up on after this.
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client with timeouts only can be built");
    let forwarding = Forwarding { leadership, http };
    router.layer(middleware::from_fn_with_state(forwarding, forward))
}

/// Whether only the leader answers `method path`.
fn leaders_call(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => matches!(path, "/api/v1/jobs" | "/api/v1/sync" | "/api/v1/identity"),
        Method::GET => {
            path == "/api/v1/jobs"
                || path
                    .strip_prefix("/api/v1/jobs/")
                    .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        }
        _ => false,
    }
}

async fn forward(State(forwarding): State<Forwarding>, request: Request, next: Next) -> Response {
    if !leaders_call(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let leadership = &forwarding.leadership;
    let leader = match leadership.role() {
        Role::Leader => return next.run(request).await,
        Role::Follower(leader) => leader,
    };
    let lease = &leadership.lease;
    if let Some(by) = request.headers().get(&FORWARDED_BY) {
        let by = by.to_str().unwrap_or("another replica");
        return refuse(format!(
            "{by} sent this call to {} as the leader, but it no longer leads (the Lease {lease} changed hands); try again",
            leadership.identity
        ));
    }
    let Some(Leader {
        identity,
        address: Some(address),
    }) = leader
    else {
        return refuse(format!(
            "this fluxd ({}) is not the leader and knows no leader's address yet (Lease {lease}); try again in a few seconds",
            leadership.identity
        ));
    };
    match send(&forwarding, &address, request).await {
        Ok(answer) => answer,
        Err(error) => refuse(format!(
            "this fluxd ({}) is not the leader; the leader {identity} at {address} (Lease {lease}) could not be reached: {error}",
            leadership.identity
        )),
    }
}

async fn send(
    forwarding: &Forwarding,
    address: &str,
    request: Request,
) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = to_bytes(body, API_BODY_LIMIT)
        .await
        .map_err(|e| format!("reading the call's body: {e}"))?;
    let mut call = forwarding
        .http
        .request(parts.method.clone(), format!("http://{address}{path}"))
        .header(&FORWARDED_BY, &forwarding.leadership.identity)
        .body(body);
    for name in KEPT {
        if let Some(value) = parts.headers.get(&name) {
            call = call.header(name, value);
        }
    }
    let answer = call.send().await.map_err(|e| describe(&e))?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = answer.bytes().await.map_err(|e| describe(&e))?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}

/// reqwest's error with its causes (a refused connection says so only in
/// its source).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn refuse(message: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ApiError { error: message }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jobs_sync_and_identity_changes_are_the_leaders() {
        for (method, path) in [
            (Method::POST, "/api/v1/jobs"),
            (Method::POST, "/api/v1/sync"),
            (Method::POST, "/api/v1/identity"),
            (Method::GET, "/api/v1/jobs"),
            (Method::GET, "/api/v1/jobs/1764600000000-1"),
        ] {
            assert!(leaders_call(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/api/v1/workloads"),
            (Method::GET, "/api/v1/sync"),
            (Method::GET, "/api/v1/identity"),
            (Method::POST, "/api/v1/notify"),
            (Method::POST, "/hooks/github"),
            (Method::GET, "/metrics"),
            (Method::GET, "/readyz"),
        ] {
            assert!(!leaders_call(&method, path), "{method} {path}");
        }
    }
}
